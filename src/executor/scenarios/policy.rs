//! The failure budget, `on_failure`, the gate, a declined confirmation, resume carry-over.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::super::fake::{Answer, Kind};
use super::*;
use crate::events::{EventKind, Status, Step::*};
use crate::journal::Carried;

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
            e.mode = crate::executor::Mode::Rollback {
                to: Some("1.0.0".into()),
            }
        })
        .await;
    // Already on 1.0.0: nothing to do, and the last line names the version rolled back to.
    assert_eq!(o.stats, stats(0, 0, 0, 0, 2));
    assert_eq!(o.last_line(), "demo 1.0.0 is on every targeted host");
}

#[tokio::test(start_paused = true)]
async fn never_more_than_max_per_zone_hosts_of_a_zone_out_at_once_revert_included() {
    let s = Scenario::zoned(
        &["a", "a", "a", "b"],
        "  canary: 0\n  batch: 4\n  max_failures: 1\n  max_per_zone: 1",
        "",
    );
    for h in ["h1", "h2", "h3", "h4"] {
        s.fleet.delay(h, Kind::Start, Duration::from_secs(5));
    }
    // h2's revert runs while it still holds its zone's place.
    s.fleet.script("h2", Kind::Start, [Answer::Exit(1, "x")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 3, 1, 1, 0));
    assert_eq!(o.most_out_at_once(&["h1", "h2", "h3"]), 1);
    // The other zone is not held back by zone a.
    assert_eq!(o.most_out_at_once(&["h1", "h2", "h3", "h4"]), 2);
}

#[tokio::test(start_paused = true)]
async fn a_window_keeps_at_most_its_width_of_hosts_out() {
    // `window: true`: the hosts after the canary in one batch, at most a batch size (2) out.
    let s = Scenario::new(5, "  canary: 1\n  canary_pause: 0s\n  batch: 2\n  window: true", "");
    for i in 1..=5 {
        s.fleet.delay(&format!("h{i}"), Kind::Start, Duration::from_secs(3 + i));
    }
    let o = s.run().await;
    assert_eq!(o.stats, stats(0, 5, 0, 0, 0));
    assert_eq!(o.batches_started(), [1, 2]);
    assert_eq!(o.most_out_at_once(&["h2", "h3", "h4", "h5"]), 2);
}
