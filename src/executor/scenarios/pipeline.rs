//! One host through its pipeline, and the revert ladder at each step.

use std::time::Duration;

use super::super::fake::{Answer, Kind};
use super::*;
use crate::events::{EventKind, Status, Step::*};

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
async fn a_deregister_the_registry_refused_is_not_undone() {
    // A 4xx: the registry did not act, so there is nothing to put back.
    let s = Scenario::new(2, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    s.fleet.script("h2", Kind::Deregister, [Answer::Exit(409, "conflict")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 1, 1, 0, 0));
    let (status, msg) = o.host("h2");
    assert_eq!(status, Status::Failed);
    assert!(msg.ends_with("the host was not stopped"), "{msg}");
    assert_eq!(o.steps("h2")[2..], [(Deregister, Status::Failed)]);
    assert!(!s.fleet.seen(Kind::Register).iter().any(|(h, _)| h == "h2"));
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
