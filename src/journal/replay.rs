//! Replaying a journal: the typed events of every run appended to it (the first and each
//! resume) folded into what a resume needs. Decisions come from `type`, `step`, `status` and the
//! versions, never from message text.

use std::collections::HashMap;

use super::JournalSummary;
use crate::events::{Event, EventKind, Status, Step};

/// Whether a step that started on a host may have left it halfway: out of the registry,
/// stopped, on another release. (A silence alone leaves it serving; the next run finds it as it
/// is.)
fn leaves_host_halfway(step: Step) -> bool {
    match step {
        Step::Deregister | Step::Stop | Step::Deploy | Step::Start | Step::Health | Step::Register | Step::Revert => {
            true
        }
        Step::Preflight | Step::Stage | Step::Silence | Step::Unsilence => false,
    }
}

/// How a host's pipeline ended, as far as the journal says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Ok,
    /// Failed or reverted by its own revert ladder: counted against the budget.
    Failed,
    /// Put back by the rollback pass after it had passed: done, not a failure of its own.
    RolledBack,
    /// Skipped because it already had the release: nothing to do.
    AlreadyThere,
}

/// One host, replayed.
#[derive(Debug, Default)]
struct HostReplay {
    end: Option<End>,
    /// Its pipeline started (`host_started`) in the current run and did not end.
    pending: bool,
    /// A step that may leave it halfway started in the current run, and its pipeline did not
    /// end with ok, failed or reverted.
    touched: bool,
    /// An earlier run left it pending or touched, and no run settled it since.
    unsettled: bool,
    /// In the current run: what it had before, and whether staging found the artifact there.
    previous: Option<String>,
    stage_skipped: bool,
}

/// The typed replay of a journal: decisions come from `type`, `step`, `status` and the
/// versions, never from message text.
#[derive(Debug, Default)]
pub(super) struct Replay {
    hosts: HashMap<String, HostReplay>,
    previous: HashMap<String, String>,
    /// The release the current run moves hosts to (`run_started.version`).
    version: String,
    exit_code: Option<i64>,
    /// Blue-green: the run moved traffic (a `switched` event that went well).
    switched: Option<String>,
}

impl Replay {
    pub(super) fn apply(&mut self, e: &Event) {
        match &e.kind {
            EventKind::RunStarted { version, .. } => {
                // A resume appends to the same journal: what the run before left unsettled stays
                // so until this one settles it.
                self.version = version.clone();
                self.exit_code = None;
                for h in self.hosts.values_mut() {
                    h.unsettled |= h.pending || h.touched;
                    h.pending = false;
                    h.touched = false;
                    h.previous = None;
                    h.stage_skipped = false;
                }
            }
            EventKind::HostStarted { host, previous, .. } => {
                if let Some(prev) = previous {
                    // The first run's view wins: later resumes may already see the new release.
                    self.previous.entry(host.clone()).or_insert_with(|| prev.clone());
                }
                let h = self.hosts.entry(host.clone()).or_default();
                h.pending = true;
                h.previous = previous.clone();
                h.stage_skipped = false;
            }
            EventKind::StepStarted { host, step, .. } if leaves_host_halfway(*step) => {
                self.hosts.entry(host.clone()).or_default().touched = true;
            }
            EventKind::StepFinished {
                host,
                step: Step::Stage,
                status: Status::Skipped,
                ..
            } => {
                self.hosts.entry(host.clone()).or_default().stage_skipped = true;
            }
            EventKind::HostFinished { host, status, .. } => {
                let version = &self.version;
                let h = self.hosts.entry(host.clone()).or_default();
                match status {
                    Status::Ok | Status::Failed | Status::Reverted => {
                        h.end = Some(match status {
                            Status::Ok => End::Ok,
                            Status::Reverted if h.end == Some(End::Ok) => End::RolledBack,
                            _ => End::Failed,
                        });
                        h.pending = false;
                        h.touched = false;
                        h.unsettled = false;
                    }
                    Status::Skipped => {
                        // Skipped: not started (interrupted, budget exceeded), or already on the
                        // release. Already there only when nothing says otherwise: this run found
                        // it on its version with the artifact staged, and no run left it halfway.
                        h.pending = false;
                        let there = !h.touched
                            && !h.unsettled
                            && h.stage_skipped
                            && h.previous.as_deref() == Some(version.as_str());
                        h.end = there.then_some(End::AlreadyThere);
                    }
                }
            }
            EventKind::RunFinished { exit_code, .. } => self.exit_code = Some(i64::from(*exit_code)),
            EventKind::Switched {
                to, status: Status::Ok, ..
            } => self.switched = Some(to.clone()),
            _ => {}
        }
    }

    pub(super) fn summary(self) -> JournalSummary {
        let mut sum = JournalSummary {
            exit_code: self.exit_code,
            switched: self.switched,
            ..JournalSummary::default()
        };
        for (name, h) in self.hosts {
            match h.end {
                // A host rolled back by the rollback pass had passed.
                Some(End::Ok | End::RolledBack) => sum.any_ok = true,
                Some(End::Failed) => sum.carried.failed += 1,
                Some(End::AlreadyThere) | None => {}
            }
            if h.end.is_some() {
                sum.done.insert(name);
            } else if h.pending || h.touched || h.unsettled {
                sum.carried.started.insert(name);
            }
        }
        sum.carried.previous = self.previous;
        sum
    }
}
