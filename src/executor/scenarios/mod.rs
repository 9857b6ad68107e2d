//! Offline scenarios: the executor against a scripted fleet ([`super::fake`]) on tokio's paused
//! clock, asserting on the events it emits and the statistics it returns. No root, no network.

mod history;
mod interrupts;
mod pipeline;
mod policy;
mod scale;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake::{FakeFleet, FakeGate};
use super::{Executor, RunStats};
use crate::events::{EventKind, Status, Step};
use crate::release::{Release, ReleaseRequest};

/// Hosts h1..hN on 1.0.0 going to 2.0.0; `rollout` and `extra` are YAML put into the playbook.
pub(super) struct Scenario {
    pub fleet: FakeFleet,
    pub gate: Arc<FakeGate>,
    pub release: Release,
    _dir: tempfile::TempDir,
}

impl Scenario {
    pub(super) fn new(hosts: usize, rollout: &str, extra: &str) -> Scenario {
        Scenario::zoned(&vec![""; hosts], rollout, extra)
    }

    /// Hosts h1..hN in these zones ("": none).
    pub(super) fn zoned(zones: &[&str], rollout: &str, extra: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (1..=zones.len()).map(|i| format!("h{i}")).collect();
        let inventory: String = names
            .iter()
            .zip(zones)
            .enumerate()
            .map(|(i, (n, z))| match *z {
                "" => format!("{n} ansible_host=10.0.0.{}\n", i + 1),
                z => format!("{n} ansible_host=10.0.0.{} zone={z}\n", i + 1),
            })
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

    pub(super) fn executor(&self, events: Events) -> Executor {
        let settings = crate::ssh::SshSettings {
            known_hosts: None,
            accept_new_host_keys: false,
            identities: Vec::new(),
            use_agent: false,
            ask_passphrase: false,
            config: None,
            openssh: None,
            bastions: Default::default(),
            max_connecting: 8,
            connect_timeout: Some(Duration::from_secs(10)),
            default_user: "deploy".into(),
        };
        let emit = Arc::new(move |e: crate::events::Event| {
            let full = events.disk_full(&e.kind);
            events.push(e.kind);
            match full {
                true => Err(crate::journal::JournalError {
                    path: "journal.jsonl".into(),
                    source: Arc::new(std::io::Error::from_raw_os_error(28)),
                }),
                false => Ok(()),
            }
        });
        Executor::new(self.release.clone(), settings, "run-1".into(), emit).with_seams(
            Arc::new(self.fleet.clone()),
            Arc::new(self.fleet.clone()),
            self.gate.clone(),
        )
    }

    /// Run to the end.
    pub(super) async fn run(&self) -> Outcome {
        self.run_with(|_| {}).await
    }

    pub(super) async fn run_with(&self, setup: impl FnOnce(&mut Executor)) -> Outcome {
        let events = Events::default();
        let mut exec = self.executor(events.clone());
        setup(&mut exec);
        let stats = exec.run().await;
        Outcome { stats, events }
    }

    /// Run, and call `act` on the executor once an event matches `when`.
    pub(super) async fn run_acting(
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

/// Whether an event is the one a scenario waits for.
pub(super) type Matcher = Box<dyn Fn(&EventKind) -> bool + Send + Sync>;
pub(super) type Trigger = (Matcher, Arc<tokio::sync::Notify>);

/// The events of a run, and a trigger that fires once on the first that matches.
#[derive(Clone, Default)]
pub(super) struct Events {
    pub list: Arc<Mutex<Vec<EventKind>>>,
    pub trigger: Arc<Mutex<Option<Trigger>>>,
    /// The journal's disk is full from the first event that matches on.
    pub full_from: Arc<Mutex<Option<Matcher>>>,
    full: Arc<std::sync::atomic::AtomicBool>,
}

impl Events {
    fn disk_full(&self, e: &EventKind) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some(when) = self.full_from.lock().unwrap().as_ref() {
            if when(e) {
                self.full.store(true, SeqCst);
            }
        }
        self.full.load(SeqCst)
    }

    pub(super) fn push(&self, e: EventKind) {
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

pub(super) struct Outcome {
    pub stats: RunStats,
    pub events: Events,
}

impl Outcome {
    pub(super) fn events(&self) -> Vec<EventKind> {
        self.events.list.lock().unwrap().clone()
    }

    /// How a host ended (its last `host_finished`: a rollback finishes it again).
    pub(super) fn host(&self, name: &str) -> (Status, String) {
        self.events()
            .into_iter()
            .rev()
            .find_map(|e| match e {
                EventKind::HostFinished { host, status, msg, .. } if host == name => Some((status, msg)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} never finished: {:#?}", self.events()))
    }

    pub(super) fn finished(&self, name: &str) -> bool {
        self.events()
            .iter()
            .any(|e| matches!(e, EventKind::HostFinished { host, .. } if host == name))
    }

    /// The steps `name` finished, in order.
    pub(super) fn steps(&self, name: &str) -> Vec<(Step, Status)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                EventKind::StepFinished { host, step, status, .. } if host == name => Some((step, status)),
                _ => None,
            })
            .collect()
    }

    pub(super) fn last_line(&self) -> String {
        match self.events().last() {
            Some(EventKind::RunFinished { msg, .. }) => msg.clone(),
            other => panic!("the run did not end with run_finished: {other:?}"),
        }
    }

    pub(super) fn warnings(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                EventKind::Warning { msg, .. } => Some(msg),
                _ => None,
            })
            .collect()
    }

    /// The most hosts out of traffic at once (from `deregister` started to `register`
    /// finished), among `hosts`.
    pub(super) fn most_out_at_once(&self, hosts: &[&str]) -> usize {
        let mut out = std::collections::HashSet::new();
        let mut most = 0;
        for e in self.events() {
            match e {
                EventKind::StepStarted {
                    host,
                    step: Step::Deregister,
                    ..
                } if hosts.contains(&host.as_str()) => {
                    out.insert(host);
                    most = most.max(out.len());
                }
                EventKind::HostFinished { host, .. } => {
                    out.remove(&host);
                }
                _ => {}
            }
        }
        most
    }

    pub(super) fn batches_started(&self) -> Vec<usize> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                EventKind::BatchStarted { batch, .. } => Some(batch),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn stats(exit_code: i32, ok: usize, failed: usize, reverted: usize, skipped: usize) -> RunStats {
    RunStats {
        exit_code,
        ok,
        failed,
        reverted,
        skipped,
    }
}

/// The steps of a host that went through the pipeline once (no silence configured).
pub(super) const PIPELINE: [Step; 6] = [
    Step::Deregister,
    Step::Stop,
    Step::Deploy,
    Step::Start,
    Step::Health,
    Step::Register,
];

pub(super) fn ok_steps(steps: &[Step]) -> Vec<(Step, Status)> {
    steps.iter().map(|s| (*s, Status::Ok)).collect()
}

pub(super) const ONE_BY_ONE: &str = "  canary: 1\n  canary_pause: 0s\n  batch: 1";
