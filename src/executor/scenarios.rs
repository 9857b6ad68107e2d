//! Offline scenarios: the executor against a scripted fleet ([`super::fake`]) on tokio's paused
//! clock, asserting on the events it emits and the statistics it returns. No root, no network.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake::{Answer, FakeFleet, FakeGate, Kind};
use super::{Executor, RunStats};
use crate::events::{EventKind, Status, Step};
use crate::journal::Carried;
use crate::release::{Release, ReleaseRequest};

/// Hosts h1..hN on 1.0.0 going to 2.0.0; `rollout` and `extra` are YAML put into the playbook.
struct Scenario {
    fleet: FakeFleet,
    gate: Arc<FakeGate>,
    release: Release,
    _dir: tempfile::TempDir,
}

impl Scenario {
    fn new(hosts: usize, rollout: &str, extra: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (1..=hosts).map(|i| format!("h{i}")).collect();
        let inventory: String = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n} ansible_host=10.0.0.{}\n", i + 1))
            .collect();
        std::fs::write(dir.path().join("hosts.ini"), format!("[web]\n{inventory}")).unwrap();
        std::fs::write(dir.path().join("app.tar.gz"), b"the artifact").unwrap();
        // A scenario may bring its own `stop`.
        let stop = if extra.contains("stop:") {
            ""
        } else {
            "stop:\n  command: \"stop-svc\"\n"
        };
        let playbook = format!(
            r#"service: demo
version: "2.0.0"
hosts: web
artifact:
  path: app.tar.gz
layout:
  root: /srv/demo
rollout:
{rollout}
registry:
  kind: none
{stop}start:
  command: "start-svc"
health:
  command: "check-health {{{{ version }}}}"
  interval: 1s
  timeout: 10s
{extra}"#
        );
        std::fs::write(dir.path().join("playbook.yml"), playbook).unwrap();
        let release = Release::load(&ReleaseRequest {
            inventories: vec![dir.path().join("hosts.ini")],
            playbook: dir.path().join("playbook.yml"),
            limit: None,
            extra_vars: Vec::new(),
        })
        .unwrap_or_else(|e| panic!("{e:?}"));
        let fleet = FakeFleet::default();
        for n in &names {
            fleet.host(n, Some("1.0.0"));
        }
        Scenario {
            fleet,
            gate: Arc::new(FakeGate::default()),
            release,
            _dir: dir,
        }
    }

    fn executor(&self, events: Events) -> Executor {
        let settings = crate::ssh::SshSettings {
            known_hosts: None,
            accept_new_host_keys: false,
            identities: Vec::new(),
            use_agent: false,
            ask_passphrase: false,
            config: None,
            bastions: Default::default(),
            max_connecting: 8,
            connect_timeout: Duration::from_secs(10),
            default_user: "deploy".into(),
        };
        let emit = Arc::new(move |e: crate::events::Event| {
            events.push(e.kind);
            Ok(())
        });
        Executor::new(self.release.clone(), settings, "run-1".into(), emit).with_seams(
            Arc::new(self.fleet.clone()),
            Arc::new(self.fleet.clone()),
            self.gate.clone(),
        )
    }

    /// Run to the end.
    async fn run(&self) -> Outcome {
        self.run_with(|_| {}).await
    }

    async fn run_with(&self, setup: impl FnOnce(&mut Executor)) -> Outcome {
        let events = Events::default();
        let mut exec = self.executor(events.clone());
        setup(&mut exec);
        let stats = exec.run().await;
        Outcome { stats, events }
    }

    /// Run, and call `act` on the executor once an event matches `when`.
    async fn run_acting(
        &self,
        when: impl Fn(&EventKind) -> bool + Send + Sync + 'static,
        act: impl FnOnce(&Executor) + Send + 'static,
    ) -> Outcome {
        let events = Events::default();
        let fired = Arc::new(tokio::sync::Notify::new());
        *events.trigger.lock().unwrap() = Some((Box::new(when), fired.clone()));
        let exec = Arc::new(self.executor(events.clone()));
        let actor = exec.clone();
        tokio::spawn(async move {
            fired.notified().await;
            act(&actor);
        });
        let stats = exec.run().await;
        Outcome { stats, events }
    }
}

type Trigger = (Box<dyn Fn(&EventKind) -> bool + Send + Sync>, Arc<tokio::sync::Notify>);

/// The events of a run, and a trigger that fires once on the first that matches.
#[derive(Clone, Default)]
struct Events {
    list: Arc<Mutex<Vec<EventKind>>>,
    trigger: Arc<Mutex<Option<Trigger>>>,
}

impl Events {
    fn push(&self, e: EventKind) {
        let fire = {
            let mut t = self.trigger.lock().unwrap();
            match t.as_ref() {
                Some((when, _)) if when(&e) => t.take().map(|(_, n)| n),
                _ => None,
            }
        };
        self.list.lock().unwrap().push(e);
        if let Some(n) = fire {
            n.notify_one();
        }
    }
}

struct Outcome {
    stats: RunStats,
    events: Events,
}

impl Outcome {
    fn events(&self) -> Vec<EventKind> {
        self.events.list.lock().unwrap().clone()
    }

    /// How a host ended (its last `host_finished`: a rollback finishes it again).
    fn host(&self, name: &str) -> (Status, String) {
        self.events()
            .into_iter()
            .rev()
            .find_map(|e| match e {
                EventKind::HostFinished { host, status, msg, .. } if host == name => Some((status, msg)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} never finished: {:#?}", self.events()))
    }

    fn finished(&self, name: &str) -> bool {
        self.events()
            .iter()
            .any(|e| matches!(e, EventKind::HostFinished { host, .. } if host == name))
    }

    /// The steps `name` finished, in order.
    fn steps(&self, name: &str) -> Vec<(Step, Status)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                EventKind::StepFinished { host, step, status, .. } if host == name => Some((step, status)),
                _ => None,
            })
            .collect()
    }

    fn last_line(&self) -> String {
        match self.events().last() {
            Some(EventKind::RunFinished { msg, .. }) => msg.clone(),
            other => panic!("the run did not end with run_finished: {other:?}"),
        }
    }

    fn warnings(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                EventKind::Warning { msg, .. } => Some(msg),
                _ => None,
            })
            .collect()
    }

    fn batches_started(&self) -> Vec<usize> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                EventKind::BatchStarted { batch, .. } => Some(batch),
                _ => None,
            })
            .collect()
    }
}

fn stats(exit_code: i32, ok: usize, failed: usize, reverted: usize, skipped: usize) -> RunStats {
    RunStats {
        exit_code,
        ok,
        failed,
        reverted,
        skipped,
    }
}

use Step::*;

/// The steps of a host that went through the pipeline once (no silence configured).
const PIPELINE: [Step; 6] = [Deregister, Stop, Deploy, Start, Health, Register];

fn ok_steps(steps: &[Step]) -> Vec<(Step, Status)> {
    steps.iter().map(|s| (*s, Status::Ok)).collect()
}

const ONE_BY_ONE: &str = "  canary: 1\n  canary_pause: 0s\n  batch: 1";

#[tokio::test(start_paused = true)]
async fn every_host_goes_through_the_pipeline() {
    let s = Scenario::new(3, "  canary: 1\n  canary_pause: 0s\n  batch: 2", "");
    let o = s.run().await;
    assert_eq!(o.stats, stats(0, 3, 0, 0, 0));
    assert_eq!(o.batches_started(), [1, 2]);
    for h in ["h1", "h2", "h3"] {
        let mut want = vec![(Preflight, Status::Ok), (Stage, Status::Ok)];
        want.extend(ok_steps(&PIPELINE));
        assert_eq!(o.steps(h), want, "{h}");
        assert_eq!(s.fleet.current(h).as_deref(), Some("2.0.0"));
    }
    assert_eq!(o.last_line(), "demo 2.0.0 is on every targeted host");
    // The locks are released at the end.
    assert_eq!(
        s.fleet
            .seen(Kind::Lock)
            .into_iter()
            .filter(|(_, a)| a == "release")
            .count(),
        3
    );
}

/// A failed step within the budget: the host goes back to 1.0.0 through a `revert` step that
/// wraps the pipeline's steps again.
async fn revert_after(kind: Kind, failed_step: Step) {
    let s = Scenario::new(2, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    s.fleet.script("h2", kind, [Answer::Exit(1, "boom")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 1, 1, 1, 0));
    let (status, msg) = o.host("h2");
    assert_eq!(status, Status::Reverted);
    assert!(msg.starts_with(&format!("{} failed: ", failed_step.as_str())), "{msg}");
    assert!(msg.ends_with("; back on 1.0.0"), "{msg}");
    let steps = o.steps("h2");
    let at = steps
        .iter()
        .position(|s| *s == (failed_step, Status::Failed))
        .expect("failed step");
    assert_eq!(steps.last(), Some(&(Revert, Status::Ok)), "{steps:?}");
    // After the failure: the whole pipeline again, then the revert's own step.
    let mut again = ok_steps(&PIPELINE);
    again.push((Revert, Status::Ok));
    assert_eq!(steps[at + 1..], again[..], "{steps:?}");
    assert!(o.events().iter().any(|e| matches!(
        e,
        EventKind::StepStarted { host, step: Revert, .. } if host == "h2"
    )));
    assert_eq!(s.fleet.current("h2").as_deref(), Some("1.0.0"));
    assert_eq!(s.fleet.current("h1").as_deref(), Some("2.0.0"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_stop_is_reverted() {
    revert_after(Kind::Stop, Stop).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_switch_is_reverted() {
    revert_after(Kind::Switch, Deploy).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_is_reverted() {
    revert_after(Kind::Start, Start).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_register_is_reverted() {
    revert_after(Kind::Register, Register).await;
}

#[tokio::test(start_paused = true)]
async fn a_health_check_that_never_passes_is_reverted_at_its_deadline() {
    let s = Scenario::new(2, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    s.fleet.unhealthy_on("h2", "2.0.0");
    let started = tokio::time::Instant::now();
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 1, 1, 1, 0));
    let (status, msg) = o.host("h2");
    assert_eq!(status, Status::Reverted);
    assert!(msg.starts_with("health failed: not healthy within 10.0s"), "{msg}");
    // Polled every second up to the deadline (paused clock: no real waiting).
    let polls = s.fleet.seen(Kind::Health).iter().filter(|(h, _)| h == "h2").count();
    assert!((9..=12).contains(&polls), "{polls} health polls");
    assert!(started.elapsed() >= Duration::from_secs(9), "{:?}", started.elapsed());
    assert_eq!(s.fleet.current("h2").as_deref(), Some("1.0.0"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_deregister_puts_the_host_back_without_stopping_it() {
    let s = Scenario::new(2, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    s.fleet.script("h2", Kind::Deregister, [Answer::Exit(1, "refused")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 1, 1, 0, 0));
    let (status, msg) = o.host("h2");
    assert_eq!(status, Status::Failed);
    assert!(msg.ends_with("the host was not stopped"), "{msg}");
    assert_eq!(
        o.steps("h2")[2..],
        [(Deregister, Status::Failed), (Register, Status::Ok)]
    );
    assert!(!s.fleet.seen(Kind::Stop).iter().any(|(h, _)| h == "h2"));
}

#[tokio::test(start_paused = true)]
async fn a_revert_that_stops_still_restores_traffic_when_the_old_release_is_healthy() {
    let s = Scenario::new(2, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    // The start fails on the way there and on the way back.
    s.fleet
        .script("h2", Kind::Start, [Answer::Exit(1, "boom"), Answer::Exit(1, "boom")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 1, 1, 1, 0));
    assert_eq!(o.host("h2").0, Status::Reverted);
    assert!(
        o.warnings().iter().any(|w| w
            .starts_with("revert stopped at start: exit 1: boom; it still serves 1.0.0 and is back in the registry")),
        "{:?}",
        o.warnings()
    );
    assert_eq!(o.steps("h2").last(), Some(&(Revert, Status::Ok)));
}

#[tokio::test(start_paused = true)]
async fn a_revert_whose_connection_is_gone_names_the_host_left_out() {
    let s = Scenario::new(2, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    s.fleet.script("h2", Kind::Start, [Answer::Gone]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 1, 1, 0, 0));
    let (status, msg) = o.host("h2");
    assert_eq!(status, Status::Failed);
    assert_eq!(msg, "start failed: connection closed");
    assert_eq!(o.steps("h2").last(), Some(&(Revert, Status::Failed)));
    assert!(
        o.warnings()
            .iter()
            .any(|w| w.starts_with("could not be brought back to 1.0.0: deregister failed")),
        "{:?}",
        o.warnings()
    );
    assert!(
        o.last_line().ends_with("; LEFT OUT OF THE REGISTRY: h2"),
        "{}",
        o.last_line()
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_past_its_timeout_is_killed() {
    let s = Scenario::new(
        1,
        "  canary: 0\n  batch: 1",
        "stop:\n  command: stop-svc\n  timeout: 5s\n  kill_command: kill-svc\n",
    );
    s.fleet.script("h1", Kind::Stop, [Answer::Hang]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(0, 1, 0, 0, 0));
    assert_eq!(s.fleet.seen(Kind::Kill).len(), 1);
    let stop_msg = o.events().into_iter().find_map(|e| match e {
        EventKind::StepFinished { step: Stop, msg, .. } => Some(msg),
        _ => None,
    });
    assert_eq!(stop_msg.as_deref(), Some("killed after 5.0s"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_stage_leaves_the_host_untouched() {
    let s = Scenario::new(2, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    s.fleet.script("h2", Kind::Stage, [Answer::Exit(4, "sha256 mismatch")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 1, 1, 0, 0));
    let (status, msg) = o.host("h2");
    assert_eq!(
        (status, msg.as_str()),
        (Status::Failed, "stage failed: exit 4: sha256 mismatch")
    );
    assert_eq!(o.steps("h2"), [(Preflight, Status::Ok), (Stage, Status::Failed)]);
    assert!(!s.fleet.seen(Kind::Deregister).iter().any(|(h, _)| h == "h2"));
    // Nothing reverted: the last line says the host was not changed.
    assert!(o.last_line().contains("(0 reverted"), "{}", o.last_line());
}

#[tokio::test(start_paused = true)]
async fn failures_exactly_at_the_budget_let_the_run_finish() {
    let s = Scenario::new(4, &format!("{ONE_BY_ONE}\n  max_failures: 2"), "");
    s.fleet.script("h2", Kind::Start, [Answer::Exit(1, "x")]);
    s.fleet.script("h3", Kind::Start, [Answer::Exit(1, "x")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 2, 2, 2, 0));
    assert_eq!(o.batches_started(), [1, 2, 3, 4]);
    assert_eq!(s.fleet.current("h4").as_deref(), Some("2.0.0"));
}

#[tokio::test(start_paused = true)]
async fn one_failure_past_the_budget_stops_and_rolls_back_in_reverse_batch_order() {
    let s = Scenario::new(
        4,
        &format!("{ONE_BY_ONE}\n  max_failures: 0\n  on_failure: rollback"),
        "",
    );
    s.fleet.script("h3", Kind::Start, [Answer::Exit(1, "x")]);
    let o = s.run().await;
    // h1 and h2 rolled back, h3 reverted by its own ladder, h4 never started.
    assert_eq!(o.stats, stats(4, 0, 1, 3, 0));
    assert_eq!(o.batches_started(), [1, 2, 3]);
    assert!(!o.finished("h4"));
    let back: Vec<String> = s
        .fleet
        .seen(Kind::Switch)
        .into_iter()
        .filter(|(_, v)| v == "1.0.0")
        .map(|(h, _)| h)
        .collect();
    assert_eq!(back, ["h3", "h2", "h1"]);
    assert_eq!(o.host("h1"), (Status::Reverted, "rolled back to 1.0.0".into()));
    assert_eq!(
        o.last_line(),
        "1 host(s) failed, over the budget of 0; on_failure: rollback"
    );
    for h in ["h1", "h2", "h3", "h4"] {
        assert_eq!(s.fleet.current(h).as_deref(), Some("1.0.0"), "{h}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_percentage_budget_is_counted_against_the_targeted_hosts() {
    // 50% of 4 hosts: 2 may fail.
    let s = Scenario::new(4, &format!("{ONE_BY_ONE}\n  max_failures: \"50%\""), "");
    s.fleet.script("h1", Kind::Start, [Answer::Exit(1, "x")]);
    s.fleet.script("h2", Kind::Start, [Answer::Exit(1, "x")]);
    let o = s.run().await;
    assert_eq!(o.stats.exit_code, 1);
    assert_eq!(o.batches_started(), [1, 2, 3, 4]);
    let s = Scenario::new(4, &format!("{ONE_BY_ONE}\n  max_failures: \"50%\""), "");
    for h in ["h1", "h2", "h3"] {
        s.fleet.script(h, Kind::Start, [Answer::Exit(1, "x")]);
    }
    let o = s.run().await;
    assert_eq!(o.stats.exit_code, 4);
    assert!(!o.finished("h4"));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_host_counts_against_the_budget_and_carries_the_hint() {
    let s = Scenario::new(3, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    s.fleet
        .script("h2", Kind::Connect, [Answer::Exit(255, "connection refused")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 2, 1, 0, 0));
    assert_eq!(o.host("h2"), (Status::Failed, "preflight failed".into()));
    let hint = o.events().into_iter().find_map(|e| match e {
        EventKind::StepFinished {
            host,
            step: Preflight,
            status: Status::Failed,
            msg,
            hint,
            ..
        } if host == "h2" => Some((msg, hint)),
        _ => None,
    });
    assert_eq!(
        hint,
        Some((
            "connecting to h2: connection refused".to_string(),
            Some("is the host up?".to_string())
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn unreachable_hosts_over_the_budget_refuse_the_run() {
    let s = Scenario::new(3, &format!("{ONE_BY_ONE}\n  max_failures: 0"), "");
    s.fleet.script("h3", Kind::Connect, [Answer::Error("no route to host")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(3, 0, 1, 0, 0));
    assert!(s.fleet.seen(Kind::Switch).is_empty());
    assert!(s.fleet.seen(Kind::Stage).is_empty());
    assert_eq!(
        o.last_line(),
        "preflight failed on 1 host(s), over the budget of 0; nothing was changed"
    );
    // The locks preflight took are given back.
    assert_eq!(s.fleet.seen(Kind::Lock).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn halt_leaves_the_failed_host_out_and_the_others_where_they_are() {
    let s = Scenario::new(3, &format!("{ONE_BY_ONE}\n  max_failures: 0\n  on_failure: halt"), "");
    s.fleet.script("h2", Kind::Start, [Answer::Exit(1, "x")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(4, 1, 1, 0, 0));
    assert_eq!(o.host("h2"), (Status::Failed, "start failed: exit 1: x".into()));
    assert!(!o.steps("h2").iter().any(|(s, _)| *s == Revert));
    assert_eq!(s.fleet.current("h1").as_deref(), Some("2.0.0"));
    assert!(
        o.last_line()
            .ends_with("on_failure: halt; LEFT OUT OF THE REGISTRY: h2"),
        "{}",
        o.last_line()
    );
}

#[tokio::test(start_paused = true)]
async fn revert_failed_past_the_budget_reverts_only_the_failed_host() {
    let s = Scenario::new(
        3,
        &format!("{ONE_BY_ONE}\n  max_failures: 0\n  on_failure: revert-failed"),
        "",
    );
    s.fleet.script("h2", Kind::Start, [Answer::Exit(1, "x")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(4, 1, 1, 1, 0));
    assert_eq!(o.host("h2").0, Status::Reverted);
    assert_eq!(s.fleet.current("h1").as_deref(), Some("2.0.0"));
    assert_eq!(s.fleet.current("h2").as_deref(), Some("1.0.0"));
    assert!(!o.finished("h3"));
}

#[tokio::test(start_paused = true)]
async fn a_resumed_run_skips_hosts_done_and_redoes_hosts_started() {
    let s = Scenario::new(3, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    let sha = s.release.sha256.clone();
    // h1 finished in the interrupted run; h2 was halfway (already switched, out of traffic).
    s.fleet.host("h1", Some("2.0.0"));
    s.fleet.staged("h1", "2.0.0", &sha);
    s.fleet.host("h2", Some("2.0.0"));
    s.fleet.staged("h2", "2.0.0", &sha);
    let carried = Carried {
        previous: [("h2".to_string(), "1.0.0".to_string())].into(),
        started: HashSet::from(["h2".to_string()]),
        failed: 1,
    };
    let o = s.run_with(|e| e.carried = carried).await;
    assert_eq!(o.host("h1"), (Status::Skipped, "already on 2.0.0".into()));
    assert_eq!(o.host("h2").0, Status::Ok);
    assert_eq!(o.host("h3").0, Status::Ok);
    assert!(!s.fleet.seen(Kind::Deregister).iter().any(|(h, _)| h == "h1"));
    // h2 went through the pipeline again, without a new upload.
    assert_eq!(o.steps("h2")[1], (Stage, Status::Skipped));
    assert!(o.steps("h2").contains(&(Register, Status::Ok)));
    // The failure of the interrupted run still counts.
    assert_eq!(o.stats, stats(1, 2, 1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn failures_carried_from_the_interrupted_run_can_exceed_the_budget() {
    let s = Scenario::new(
        3,
        &format!("{ONE_BY_ONE}\n  max_failures: 1\n  on_failure: revert-failed"),
        "",
    );
    s.fleet.script("h1", Kind::Start, [Answer::Exit(1, "x")]);
    let carried = Carried {
        failed: 1,
        ..Default::default()
    };
    let o = s.run_with(|e| e.carried = carried).await;
    assert_eq!(o.stats.exit_code, 4);
    assert_eq!(o.stats.failed, 2);
    assert_eq!(o.batches_started(), [1]);
}

/// The first signal while `h1` (the canary) is in `step`: h1 finishes its pipeline, no later
/// host starts, exit 130 and the resume hint.
async fn interrupt_during(step: Step) {
    let s = Scenario::new(3, "  canary: 1\n  canary_pause: 0s\n  batch: 2", "");
    for k in [
        Kind::Deregister,
        Kind::Stop,
        Kind::Switch,
        Kind::Start,
        Kind::Health,
        Kind::Register,
    ] {
        s.fleet.delay("h1", k, Duration::from_secs(3));
    }
    let o = s
        .run_acting(
            move |e| matches!(e, EventKind::StepStarted { host, step: st, .. } if host == "h1" && *st == step),
            |e| e.interrupt(),
        )
        .await;
    assert_eq!(o.host("h1").0, Status::Ok, "{step:?}");
    assert_eq!(s.fleet.current("h1").as_deref(), Some("2.0.0"));
    assert_eq!(o.batches_started(), [1], "{step:?}");
    assert!(!o.finished("h2") && !o.finished("h3"));
    assert_eq!(o.stats, stats(130, 1, 0, 0, 0));
    assert_eq!(
        o.last_line(),
        "interrupted: 2 of 3 hosts not done; `tranche resume run-1` continues"
    );
    assert_eq!(s.fleet.current("h2").as_deref(), Some("1.0.0"));
    // An interrupted run keeps its locks for resume.
    assert!(!s.fleet.seen(Kind::Lock).iter().any(|(_, a)| a == "release"));
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_deregister() {
    interrupt_during(Deregister).await;
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_stop() {
    interrupt_during(Stop).await;
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_deploy() {
    interrupt_during(Deploy).await;
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_start() {
    interrupt_during(Start).await;
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_health() {
    interrupt_during(Health).await;
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_register() {
    interrupt_during(Register).await;
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_staging_starts_no_host() {
    let s = Scenario::new(2, ONE_BY_ONE, "");
    s.fleet.delay("h1", Kind::Upload, Duration::from_secs(5));
    let o = s
        .run_acting(
            |e| matches!(e, EventKind::StepStarted { host, step: Stage, .. } if host == "h1"),
            |e| e.interrupt(),
        )
        .await;
    assert_eq!(
        o.host("h1"),
        (Status::Skipped, "not started: the run was interrupted".into())
    );
    assert!(s.fleet.seen(Kind::Deregister).is_empty());
    assert_eq!(o.stats.exit_code, 130);
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_a_pause_ends_the_wait_and_starts_no_batch() {
    let s = Scenario::new(2, "  canary: 1\n  canary_pause: 1h\n  batch: 1", "");
    let t = tokio::time::Instant::now();
    let o = s
        .run_acting(|e| matches!(e, EventKind::Paused { .. }), |e| e.interrupt())
        .await;
    assert_eq!(o.stats, stats(130, 1, 0, 0, 0));
    assert_eq!(o.batches_started(), [1]);
    assert!(t.elapsed() < Duration::from_secs(3600), "{:?}", t.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_stops_at_once_and_records_where_hosts_were() {
    let s = Scenario::new(2, ONE_BY_ONE, "");
    s.fleet.delay("h1", Kind::Start, Duration::from_secs(30));
    let events = Events::default();
    let fired = Arc::new(tokio::sync::Notify::new());
    *events.trigger.lock().unwrap() = Some((
        Box::new(|e: &EventKind| matches!(e, EventKind::StepStarted { step: Start, .. })),
        fired.clone(),
    ));
    let exec = Arc::new(s.executor(events.clone()));
    let run = exec.run();
    let signals = async {
        fired.notified().await;
        exec.interrupt();
        exec.stop_now();
    };
    // The caller exits the process after `stop_now`: the run is dropped where it is.
    tokio::select! {
        _ = run => panic!("the run ended on its own"),
        _ = signals => {}
    }
    let list = events.list.lock().unwrap().clone();
    match list.last() {
        Some(EventKind::RunFinished { exit_code, msg, ok, .. }) => {
            assert_eq!(*exit_code, 130);
            assert_eq!(*ok, 0);
            assert_eq!(
                msg,
                "stopped at once; in flight: h1 (start); `tranche resume` continues"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_breached_gate_rolls_back_the_batch_that_breached_it() {
    let gate = "  gate:\n    prometheus: http://prometheus.invalid:9090\n    query: errors\n    max: 0.01\n    for: 1m";
    let s = Scenario::new(3, &format!("{ONE_BY_ONE}\n  on_failure: rollback\n{gate}"), "");
    s.gate
        .verdicts
        .lock()
        .unwrap()
        .extend([Ok("0".to_string()), Err("errors is 0.5, over 0.01".to_string())]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(4, 0, 0, 2, 0));
    assert_eq!(o.batches_started(), [1, 2]);
    assert_eq!(
        o.last_line(),
        "the metric gate failed after batch 2; on_failure: rollback"
    );
    let gates: Vec<Status> = o
        .events()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::GateChecked { status, .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(gates, [Status::Ok, Status::Failed]);
    assert_eq!(s.fleet.current("h1").as_deref(), Some("1.0.0"));
    assert_eq!(s.fleet.current("h3").as_deref(), Some("1.0.0"));
}

#[tokio::test(start_paused = true)]
async fn a_breached_gate_with_revert_failed_reverts_that_batch_only() {
    let gate = "  gate:\n    prometheus: http://prometheus.invalid:9090\n    query: errors\n    max: 0.01\n    for: 1m";
    let s = Scenario::new(3, &format!("{ONE_BY_ONE}\n  on_failure: revert-failed\n{gate}"), "");
    s.gate
        .verdicts
        .lock()
        .unwrap()
        .extend([Ok("0".to_string()), Err("over".to_string())]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(4, 1, 0, 1, 0));
    assert_eq!(s.fleet.current("h1").as_deref(), Some("2.0.0"));
    assert_eq!(s.fleet.current("h2").as_deref(), Some("1.0.0"));
    assert!(!o.finished("h3"));
}

#[tokio::test(start_paused = true)]
async fn declining_a_confirmation_stops_before_the_batch() {
    let s = Scenario::new(3, "  canary: 1\n  canary_pause: confirm\n  batch: 2", "");
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let o = s
        .run_with(move |e| {
            e.confirm = Some(Arc::new(move |batch| {
                log.lock().unwrap().push(batch);
                false
            }))
        })
        .await;
    assert_eq!(*asked.lock().unwrap(), [2]);
    assert_eq!(o.stats, stats(130, 1, 0, 0, 0));
    assert_eq!(o.batches_started(), [1]);
    assert_eq!(
        o.last_line(),
        "stopped at a confirmation; hosts not reached keep their release"
    );
    assert!(o
        .warnings()
        .contains(&"the operator stopped the run before batch 2".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_run_goes_back_to_the_recorded_release() {
    let s = Scenario::new(2, "  canary: 0\n  batch: 2", "");
    let o = s
        .run_with(|e| {
            e.mode = super::Mode::Rollback {
                to: Some("1.0.0".into()),
            }
        })
        .await;
    // Already on 1.0.0: nothing to do, and the last line names the version rolled back to.
    assert_eq!(o.stats, stats(0, 0, 0, 0, 2));
    assert_eq!(o.last_line(), "demo 1.0.0 is on every targeted host");
}

#[tokio::test(start_paused = true)]
async fn the_scenarios_take_no_real_time() {
    // A 10-host run with long steps: minutes of tokio time, no real waiting.
    let s = Scenario::new(10, "  canary: 1\n  canary_pause: 5m\n  batch: 3\n  pause: 2m", "");
    for i in 1..=10 {
        s.fleet.delay(&format!("h{i}"), Kind::Start, Duration::from_secs(20));
    }
    let real = std::time::Instant::now();
    let o = s.run().await;
    assert_eq!(o.stats, stats(0, 10, 0, 0, 0));
    assert!(real.elapsed() < Duration::from_secs(5), "{:?}", real.elapsed());
}

#[tokio::test(start_paused = true)]
async fn locks_are_renewed_during_pauses_and_a_lost_lock_stops_the_run() {
    let s = Scenario::new(3, "  canary: 1\n  canary_pause: 5m\n  batch: 1\n  pause: 5m", "");
    // The first renewal finds h2's lock gone (`tranche unlock`).
    s.fleet.script("h2", Kind::Lock, [Answer::Exit(16, "")]);
    let o = s.run_with(|e| e.renew_every = Duration::from_secs(120)).await;
    let renewals = s
        .fleet
        .seen(Kind::Lock)
        .into_iter()
        .filter(|(_, a)| a == "renew")
        .count();
    // Two renewals of the three locks inside the first 5-minute pause; h2's is lost at the first.
    assert!(renewals >= 5, "{renewals} renewals");
    assert!(
        o.warnings()
            .iter()
            .any(|w| w.starts_with("LOST THE LOCK: this run no longer holds the lock of h2")),
        "{:?}",
        o.warnings()
    );
    assert_eq!(o.stats.exit_code, 1);
    assert_eq!(o.host("h1").0, Status::Ok);
    assert_ne!(o.host("h2").0, Status::Ok);
    assert!(!o.finished("h3"));
    assert_eq!(s.fleet.current("h2").as_deref(), Some("1.0.0"));
    assert!(
        o.last_line().contains("THIS RUN LOST THE LOCK OF h2"),
        "{}",
        o.last_line()
    );
}
