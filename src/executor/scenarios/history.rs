//! The line each changed host gets in its `.tranche-history`: after its pipeline (ok,
//! reverted, failed), after the rollback pass, and for a `tranche rollback`; a history that
//! cannot be written is a warning, never a failed host.

use super::super::fake::{Answer, Kind};
use super::*;

/// The appends the fleet saw, as `(host, "FROM->TO OUTCOME")`, and whether each carried the
/// run's operator and controller.
fn appends(s: &Scenario) -> Vec<(String, String)> {
    let lease = crate::lock::Lease::new("x", "");
    s.fleet
        .seen(Kind::History)
        .into_iter()
        .map(|(h, d)| {
            let who = format!("{} {} ", lease.operator, lease.controller);
            let rest = d.strip_prefix(&who).unwrap_or_else(|| panic!("{d:?} lacks {who:?}"));
            (h, rest.to_string())
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test(start_paused = true)]
async fn each_changed_host_gets_a_line_with_its_outcome() {
    let s = Scenario::new(3, &format!("{ONE_BY_ONE}\n  max_failures: 1"), "");
    s.fleet.script("h2", Kind::Start, [Answer::Exit(1, "boom")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(1, 2, 1, 1, 0));
    assert_eq!(
        appends(&s),
        pairs(&[
            ("h1", "1.0.0->2.0.0 ok"),
            ("h2", "1.0.0->2.0.0 reverted"),
            ("h3", "1.0.0->2.0.0 ok"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_that_was_not_changed_gets_no_line() {
    // A failed stage: nothing changed on the host.
    let s = Scenario::new(1, "  canary: 0\n  batch: 1", "");
    s.fleet.script("h1", Kind::Stage, [Answer::Exit(1, "no space")]);
    let o = s.run().await;
    assert_eq!(o.host("h1").0, Status::Failed);
    assert_eq!(appends(&s), vec![]);
}

#[tokio::test(start_paused = true)]
async fn the_rollback_pass_writes_rolled_back() {
    let s = Scenario::new(
        3,
        &format!("{ONE_BY_ONE}\n  max_failures: 0\n  on_failure: rollback"),
        "",
    );
    s.fleet.script("h2", Kind::Start, [Answer::Exit(1, "x")]);
    let _ = s.run().await;
    assert_eq!(
        appends(&s),
        pairs(&[
            ("h1", "1.0.0->2.0.0 ok"),
            ("h2", "1.0.0->2.0.0 reverted"),
            ("h1", "2.0.0->1.0.0 rolled_back"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_run_writes_rolled_back() {
    let s = Scenario::new(1, "  canary: 0\n  batch: 1", "");
    s.fleet.host("h1", Some("2.0.0"));
    s.fleet.staged("h1", "1.0.0", "x");
    let o = s
        .run_with(|e| {
            e.mode = crate::executor::Mode::Rollback {
                to: Some("1.0.0".into()),
            }
        })
        .await;
    assert_eq!(o.host("h1").0, Status::Ok, "{:?}", o.events());
    assert_eq!(appends(&s), pairs(&[("h1", "2.0.0->1.0.0 rolled_back")]));
}

#[tokio::test(start_paused = true)]
async fn a_history_that_cannot_be_written_is_a_warning() {
    let s = Scenario::new(1, "  canary: 0\n  batch: 1", "");
    s.fleet
        .script("h1", Kind::History, [Answer::Exit(10, "read-only file system")]);
    let o = s.run().await;
    assert_eq!(o.stats, stats(0, 1, 0, 0, 0));
    assert_eq!(o.host("h1").0, Status::Ok);
    let w = o.warnings();
    assert!(
        w.iter()
            .any(|m| m.contains(".tranche-history") && m.contains("read-only file system")),
        "{w:?}"
    );
}
