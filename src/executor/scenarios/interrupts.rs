//! Signals during each step, stop now, lock renewal, and the time the scenarios take.

use std::sync::Arc;
use std::time::Duration;

use super::super::fake::{Answer, Kind};
use super::*;
use crate::events::{EventKind, Status, Step::*};

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

/// What runs after the hosts (blue-green's switch, its watch and `retire_after`) may wait long:
/// the locks stay renewed meanwhile. Before, nothing renewed them after the last batch.
#[tokio::test(start_paused = true)]
async fn locks_are_renewed_while_the_after_hosts_hook_waits() {
    let s = Scenario::new(2, "  canary: 1\n  canary_pause: 0s\n  batch: 1", "");
    let o = s
        .run_with(|e| {
            e.renew_every = Duration::from_secs(120);
            e.after_hosts = Some(Arc::new(|_emit| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
                    (0, "waited".to_string())
                })
            }));
        })
        .await;
    let renewals = s
        .fleet
        .seen(Kind::Lock)
        .into_iter()
        .filter(|(_, a)| a == "renew")
        .count();
    // 30 minutes at one renewal every 2 minutes, for 2 hosts.
    assert!(renewals >= 2 * 14, "{renewals} renewals");
    assert_eq!(o.stats.exit_code, 0);
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_be_written_stops_starting_hosts() {
    let s = Scenario::new(3, "  canary: 1\n  canary_pause: 0s\n  batch: 1", "");
    let events = Events::default();
    // The disk fills up while h1 stops: h1 finishes, nothing else starts.
    *events.full_from.lock().unwrap() = Some(Box::new(
        |e: &EventKind| matches!(e, EventKind::StepStarted { host, step: Stop, .. } if host == "h1"),
    ));
    let stats = s.executor(events.clone()).run().await;
    let o = Outcome { stats, events };
    assert_eq!(o.host("h1").0, Status::Ok);
    assert!(!o.finished("h2") && !o.finished("h3"));
    assert_eq!(o.stats, super::stats(130, 1, 0, 0, 0));
    assert!(
        o.warnings()
            .iter()
            .any(|w| w.ends_with("the run stops: no new host starts, hosts in flight finish")),
        "{:?}",
        o.warnings()
    );
    assert_eq!(s.fleet.current("h2").as_deref(), Some("1.0.0"));
}
