//! The last line of a run (`run_finished.msg`): what happened, in words, from the run's
//! statistics and why it stopped. The executor gathers the facts; the words are here.

use crate::exit_code;
use crate::policy::CancelReason;

/// Where the run took the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `release`: the playbook's version.
    Version(String),
    /// `rollback --to VERSION`.
    RollbackTo(String),
    /// `rollback`: each host's previous release.
    RollbackPrevious,
}

/// How a blue-green release ended after its hosts: the last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch<'a> {
    /// All traffic on `to`: `servers` (`unit`: HAProxy servers, or a registry's instances)
    /// switched in `took` (already formatted).
    Done {
        to: &'a str,
        servers: usize,
        unit: &'a str,
        took: &'a str,
    },
    /// The gate failed (`during_canary`, or after the switch); traffic is on `back` (none: no
    /// side was live before, nothing to go back to).
    GateFailed { during_canary: bool, back: Option<&'a str> },
    /// The switch itself failed.
    Failed { to: &'a str, error: &'a str },
}

/// The last line of a blue-green release whose idle side came up whole.
pub fn switched(service: &str, version: &str, s: &Switch) -> String {
    match s {
        Switch::Done {
            to,
            servers,
            unit,
            took,
        } => {
            format!("{service} {version} is live on the {to} side ({servers} {unit} switched in {took})")
        }
        Switch::GateFailed { during_canary, back } => {
            let when = if *during_canary {
                "during the canary"
            } else {
                "after the switch"
            };
            match back {
                Some(b) => format!("the metric gate failed {when}; all traffic is back on the {b} side"),
                None => format!("the metric gate failed {when}; no side was live before: traffic stays on {version}"),
            }
        }
        Switch::Failed { to, error } => {
            format!("{service} {version} is up on the {to} side, but the switch failed: {error}")
        }
    }
}

/// A run that got past preflight.
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    pub service: &'a str,
    pub destination: Destination,
    pub exit_code: i32,
    pub cancel: Option<CancelReason>,
    pub run_id: &'a str,
    pub hosts: usize,
    /// Hosts whose pipeline ended (ok, skipped, failed or reverted).
    pub done: usize,
    pub failed: usize,
    pub reverted: usize,
    pub budget: usize,
    /// `rollout.on_failure` as written.
    pub on_failure: &'a str,
    pub lost_locks: &'a [String],
    pub left_out: &'a [String],
}

/// The last line of a run that got past preflight.
pub fn finished(f: &Finished) -> String {
    let not_done = f.hosts - f.done;
    let msg = match f.exit_code {
        exit_code::SUCCESS => match &f.destination {
            Destination::RollbackTo(v) | Destination::Version(v) => {
                format!("{} {v} is on every targeted host", f.service)
            }
            Destination::RollbackPrevious => {
                format!("{} is back on its previous release on every targeted host", f.service)
            }
        },
        exit_code::INTERRUPTED if f.cancel == Some(CancelReason::Declined) => {
            "stopped at a confirmation; hosts not reached keep their release".to_string()
        }
        exit_code::INTERRUPTED => format!(
            "interrupted: {not_done} of {} hosts not done; `tranche resume {}` continues",
            f.hosts, f.run_id
        ),
        exit_code::HOSTS_FAILED if f.failed == 0 => {
            format!("stopped with {not_done} of {} hosts not done", f.hosts)
        }
        exit_code::HOSTS_FAILED => format!(
            "{} host(s) failed within the budget of {} ({} reverted to the release they had; a host that failed before it left the registry was not changed)",
            f.failed, f.budget, f.reverted
        ),
        _ => match f.cancel {
            Some(CancelReason::GateBreached(b)) => {
                format!("the metric gate failed after batch {b}; on_failure: {}", f.on_failure)
            }
            _ => format!(
                "{} host(s) failed, over the budget of {}; on_failure: {}",
                f.failed, f.budget, f.on_failure
            ),
        },
    };
    let msg = if f.lost_locks.is_empty() {
        msg
    } else {
        format!(
            "{msg}; THIS RUN LOST THE LOCK OF {} (another run may be changing them)",
            f.lost_locks.join(", ")
        )
    };
    if f.left_out.is_empty() {
        msg
    } else {
        format!("{msg}; LEFT OUT OF THE REGISTRY: {}", f.left_out.join(", "))
    }
}

/// The last line of a run stopped at once (a second Ctrl-C): where each host in flight was,
/// as "h1 (start)".
pub fn stopped_at_once(in_flight: &[String]) -> String {
    if in_flight.is_empty() {
        "stopped at once; no host was in flight".to_string()
    } else {
        format!(
            "stopped at once; in flight: {}; `tranche resume` continues",
            in_flight.join(", ")
        )
    }
}

/// The last line of `plan --check`.
pub fn checked(hosts: usize, failed: usize) -> String {
    if failed == 0 {
        format!("preflight passed on all {hosts} hosts; nothing was changed")
    } else {
        format!("preflight failed on {failed} of {hosts} hosts; nothing was changed")
    }
}

/// Why preflight refused the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A registry delegate, the load balancer or the monitoring cannot be reached.
    Unreachable(String),
    /// Other runs hold locks: "h03, h04 (locked by ...)", one entry per holder.
    Locked(Vec<String>),
    /// More hosts failed preflight than the budget allows.
    OverBudget { failed: usize, budget: usize },
}

/// The last line of a run refused at preflight.
pub fn refused(r: &Refusal) -> String {
    match r {
        Refusal::Unreachable(e) => format!("{e}; nothing was changed"),
        Refusal::Locked(holders) => format!(
            "another run holds the lock of {}; nothing was changed",
            holders.join("; ")
        ),
        Refusal::OverBudget { failed, budget } => {
            format!("preflight failed on {failed} host(s), over the budget of {budget}; nothing was changed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_with(code: i32, cancel: Option<CancelReason>) -> Finished<'static> {
        Finished {
            service: "demo",
            destination: Destination::Version("2.0.0".into()),
            exit_code: code,
            cancel,
            run_id: "r1",
            hosts: 4,
            done: 3,
            failed: 1,
            reverted: 1,
            budget: 1,
            on_failure: "rollback",
            lost_locks: &[],
            left_out: &[],
        }
    }

    #[test]
    fn last_lines() {
        let rollback_to = Finished {
            destination: Destination::RollbackTo("1.0.0".into()),
            ..finished_with(0, None)
        };
        assert_eq!(finished(&rollback_to), "demo 1.0.0 is on every targeted host");
        assert_eq!(
            finished(&finished_with(130, Some(CancelReason::Signal))),
            "interrupted: 1 of 4 hosts not done; `tranche resume r1` continues"
        );
        assert_eq!(
            finished(&finished_with(1, None)),
            "1 host(s) failed within the budget of 1 (1 reverted to the release they had; a host that failed before it left the registry was not changed)"
        );
        assert_eq!(
            finished(&finished_with(4, Some(CancelReason::GateBreached(2)))),
            "the metric gate failed after batch 2; on_failure: rollback"
        );
        let left = ["web-02".to_string()];
        let with_left = Finished {
            left_out: &left,
            ..finished_with(4, Some(CancelReason::BudgetExceeded))
        };
        assert_eq!(
            finished(&with_left),
            "1 host(s) failed, over the budget of 1; on_failure: rollback; LEFT OUT OF THE REGISTRY: web-02"
        );
        assert_eq!(stopped_at_once(&[]), "stopped at once; no host was in flight");
        assert_eq!(checked(3, 0), "preflight passed on all 3 hosts; nothing was changed");
        assert_eq!(
            refused(&Refusal::OverBudget { failed: 2, budget: 1 }),
            "preflight failed on 2 host(s), over the budget of 1; nothing was changed"
        );
    }
}
