//! The failure policy as plain values: the budget, why a run stops, what it undoes then, and
//! its exit code. Pure and table-tested; the executor asks, it does not decide.

use crate::exit_code;
use crate::playbook::OnFailure;

/// How many hosts may fail over the whole run (`rollout.max_failures`, resolved against the
/// number of targeted hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureBudget {
    pub max: usize,
}

impl FailureBudget {
    pub fn new(max: usize) -> Self {
        FailureBudget { max }
    }

    /// More hosts failed than the budget allows.
    pub fn is_exceeded(self, failed: usize) -> bool {
        failed > self.max
    }
}

/// Why a run stops starting hosts. Ordered: a reason is only ever replaced by a greater one
/// (an operator's Ctrl-C does not hide a budget exceeded by the hosts that were in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CancelReason {
    /// The operator answered no to a `confirm` pause.
    Declined,
    /// The first Ctrl-C, SIGTERM or SIGHUP.
    Signal,
    /// This run lost the lock of a host (another run or `tranche unlock` took it): another run
    /// may be changing the hosts, so this one starts nothing more, and cannot be resumed as if
    /// nothing happened.
    LockLost,
    /// The metric gate was breached after this batch.
    GateBreached(usize),
    /// More hosts failed than the budget allows.
    BudgetExceeded,
}

/// The reason a run stops, if any; only escalates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cancel(Option<CancelReason>);

impl Cancel {
    pub fn escalate(&mut self, reason: CancelReason) {
        if self.0.is_none_or(|r| reason > r) {
            self.0 = Some(reason);
        }
    }

    pub fn reason(self) -> Option<CancelReason> {
        self.0
    }

    /// No further batch starts.
    pub fn is_cancelled(self) -> bool {
        self.0.is_some()
    }

    /// `on_failure` applies: the budget was exceeded or the gate breached.
    pub fn is_failure(self) -> bool {
        matches!(
            self.0,
            Some(CancelReason::BudgetExceeded | CancelReason::GateBreached(_))
        )
    }
}

/// What the run takes back once it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    Nothing,
    /// Every host this run moved to the new release (`rollback`).
    EveryChangedHost,
    /// The hosts of the batch that breached the gate (`revert-failed` after a breach).
    Batch(usize),
}

/// What `on_failure` undoes for the reason the run stopped. Failed hosts are reverted one by
/// one as they fail (unless `halt`), so `revert-failed` past the budget has nothing left to do.
pub fn undo(on_failure: OnFailure, cancel: Cancel) -> Undo {
    match (cancel.reason(), on_failure) {
        (Some(CancelReason::BudgetExceeded | CancelReason::GateBreached(_)), OnFailure::Rollback) => {
            Undo::EveryChangedHost
        }
        (Some(CancelReason::GateBreached(b)), OnFailure::RevertFailed) => Undo::Batch(b),
        _ => Undo::Nothing,
    }
}

/// A host that just failed (the `failed`-th of the run) stays out of the registry for
/// inspection instead of being reverted: `halt`, once the budget is exceeded.
pub fn leaves_failed_host_out(on_failure: OnFailure, budget: FailureBudget, failed: usize) -> bool {
    on_failure == OnFailure::Halt && budget.is_exceeded(failed)
}

/// The exit code of a run that got past preflight. `all_done`: every targeted host finished
/// (an interruption that came after the last host does not make the run interrupted).
pub fn exit_code(cancel: Cancel, failed: usize, all_done: bool) -> i32 {
    match cancel.reason() {
        Some(CancelReason::BudgetExceeded | CancelReason::GateBreached(_)) => exit_code::BUDGET_EXCEEDED,
        Some(CancelReason::LockLost) => exit_code::HOSTS_FAILED,
        Some(CancelReason::Declined) => exit_code::INTERRUPTED,
        Some(CancelReason::Signal) if !all_done => exit_code::INTERRUPTED,
        _ if failed > 0 => exit_code::HOSTS_FAILED,
        _ => exit_code::SUCCESS,
    }
}

/// The exit code after preflight: 3 when a lock is held by another run, a registry delegate or
/// the monitoring cannot be reached, or more hosts failed preflight than the budget allows;
/// none when the run goes on.
pub fn preflight_verdict(budget: FailureBudget, failed: usize, lock_held: bool, other_error: bool) -> Option<i32> {
    (lock_held || other_error || budget.is_exceeded(failed)).then_some(exit_code::PREFLIGHT)
}

/// The exit code of a run stopped at once (a second Ctrl-C), whatever happened before.
pub const STOPPED_AT_ONCE: i32 = exit_code::INTERRUPTED;

/// The exit code of `plan --check` (preflight only): 3 when a host failed it.
pub fn check_exit_code(failed: usize) -> i32 {
    if failed > 0 {
        exit_code::PREFLIGHT
    } else {
        exit_code::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::CancelReason::*;
    use super::*;

    fn cancel(reasons: &[CancelReason]) -> Cancel {
        let mut c = Cancel::default();
        for r in reasons {
            c.escalate(*r);
        }
        c
    }

    #[test]
    fn budget_edges() {
        for (max, failed, exceeded) in [(0, 0, false), (0, 1, true), (1, 1, false), (1, 2, true), (5, 5, false)] {
            assert_eq!(
                FailureBudget::new(max).is_exceeded(failed),
                exceeded,
                "max {max} failed {failed}"
            );
        }
    }

    #[test]
    fn a_reason_is_only_replaced_by_a_greater_one() {
        let table: &[(&[CancelReason], Option<CancelReason>)] = &[
            (&[], None),
            (&[Signal], Some(Signal)),
            (&[Signal, Declined], Some(Signal)),
            (&[Declined, Signal], Some(Signal)),
            (&[Signal, BudgetExceeded], Some(BudgetExceeded)),
            (&[BudgetExceeded, Signal], Some(BudgetExceeded)),
            (&[GateBreached(2), Signal], Some(GateBreached(2))),
            (&[GateBreached(2), BudgetExceeded], Some(BudgetExceeded)),
            (&[BudgetExceeded, GateBreached(3)], Some(BudgetExceeded)),
            (&[Signal, Signal], Some(Signal)),
            (&[LockLost, Signal], Some(LockLost)),
            (&[LockLost, GateBreached(1)], Some(GateBreached(1))),
        ];
        for (reasons, want) in table {
            assert_eq!(cancel(reasons).reason(), *want, "{reasons:?}");
        }
    }

    #[test]
    fn exit_codes() {
        // (reasons, failed, all hosts done) -> exit code
        let table: &[(&[CancelReason], usize, bool, i32)] = &[
            (&[], 0, true, 0),
            (&[], 1, true, 1),
            (&[], 2, true, 1),
            (&[Signal], 0, false, 130),
            (&[Signal], 1, false, 130),
            // The signal came after the last host finished: the run completed.
            (&[Signal], 0, true, 0),
            (&[Signal], 1, true, 1),
            (&[Declined], 0, false, 130),
            (&[Declined], 0, true, 130),
            (&[BudgetExceeded], 1, false, 4),
            (&[Signal, BudgetExceeded], 2, false, 4),
            (&[GateBreached(1)], 0, false, 4),
            (&[GateBreached(1), Signal], 0, true, 4),
            // A lost lock is a failure of the run even when no host failed or it was interrupted.
            (&[LockLost], 0, true, 1),
            (&[Signal, LockLost], 0, false, 1),
            (&[LockLost, BudgetExceeded], 3, false, 4),
        ];
        for (reasons, failed, all_done, code) in table {
            assert_eq!(
                exit_code(cancel(reasons), *failed, *all_done),
                *code,
                "{reasons:?} failed {failed} all_done {all_done}"
            );
        }
    }

    #[test]
    fn what_is_undone() {
        use OnFailure::*;
        let table: &[(&[CancelReason], OnFailure, Undo)] = &[
            (&[], Rollback, Undo::Nothing),
            (&[Signal], Rollback, Undo::Nothing),
            (&[Declined], Rollback, Undo::Nothing),
            (&[BudgetExceeded], Rollback, Undo::EveryChangedHost),
            (&[BudgetExceeded], RevertFailed, Undo::Nothing),
            (&[BudgetExceeded], Halt, Undo::Nothing),
            (&[GateBreached(2)], Rollback, Undo::EveryChangedHost),
            (&[GateBreached(2)], RevertFailed, Undo::Batch(2)),
            (&[GateBreached(2)], Halt, Undo::Nothing),
            (&[Signal, BudgetExceeded], Rollback, Undo::EveryChangedHost),
        ];
        for (reasons, on_failure, want) in table {
            assert_eq!(undo(*on_failure, cancel(reasons)), *want, "{reasons:?} {on_failure:?}");
        }
    }

    #[test]
    fn halt_leaves_the_host_out_only_past_the_budget() {
        use OnFailure::*;
        for (on_failure, max, failed, out) in [
            (Halt, 0, 1, true),
            (Halt, 1, 1, false),
            (Halt, 1, 2, true),
            (Rollback, 0, 1, false),
            (RevertFailed, 0, 3, false),
        ] {
            assert_eq!(
                leaves_failed_host_out(on_failure, FailureBudget::new(max), failed),
                out,
                "{on_failure:?} max {max} failed {failed}"
            );
        }
    }

    #[test]
    fn preflight() {
        let b = FailureBudget::new(1);
        assert_eq!(preflight_verdict(b, 0, false, false), None);
        assert_eq!(preflight_verdict(b, 1, false, false), None);
        assert_eq!(preflight_verdict(b, 2, false, false), Some(3));
        // A lock held by another run refuses the run whatever the budget.
        assert_eq!(preflight_verdict(b, 0, true, false), Some(3));
        assert_eq!(preflight_verdict(b, 0, false, true), Some(3));
        assert_eq!(check_exit_code(0), 0);
        assert_eq!(check_exit_code(1), 3);
    }
}
