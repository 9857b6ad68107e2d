//! The waits between batches: a pause (a duration, or a confirmation) and the metric gate's
//! window after a batch. Each races the interruption.

use std::time::Instant;

use super::Executor;
use crate::events::{EventKind, Status};

impl Executor {
    /// Wait before batch `batch`. False when the operator said no.
    pub(super) async fn pause(&self, batch: usize, pause: crate::playbook::Pause) -> bool {
        use crate::playbook::Pause;
        match pause {
            Pause::For(d) if d.is_zero() => true,
            Pause::For(d) => {
                self.event(EventKind::Paused {
                    batch,
                    reason: format!("waiting {} before batch {batch}", crate::units::human_duration(d)),
                });
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = self.until_interrupted() => return true,
                }
                self.event(EventKind::Resumed { batch });
                true
            }
            Pause::Confirm if self.assume_yes => {
                self.event(EventKind::Paused {
                    batch,
                    reason: format!("confirm before batch {batch}"),
                });
                self.event(EventKind::Resumed { batch });
                true
            }
            Pause::Confirm => {
                self.event(EventKind::Paused {
                    batch,
                    reason: format!("confirm before batch {batch}"),
                });
                let ask = self.confirm.clone();
                // The question waits on the terminal; an interruption ends the wait (the caller
                // sees the run interrupted and starts no batch).
                let answer = match ask {
                    Some(ask) => tokio::select! {
                        a = tokio::task::spawn_blocking(move || ask(batch)) => a.unwrap_or(false),
                        _ = self.until_interrupted() => return true,
                    },
                    None => false,
                };
                if answer {
                    self.event(EventKind::Resumed { batch });
                } else {
                    self.event(EventKind::Warning {
                        host: None,
                        msg: format!("the operator stopped the run before batch {batch}"),
                    });
                }
                answer
            }
        }
    }
    /// Watch the metric gate after batch `batch`; false on a breach (or an error).
    pub(super) async fn gate_passes(&self, batch: usize, g: &crate::playbook::Gate) -> bool {
        let r = &self.release;
        let t = Instant::now();
        let query = match r.targets.first().map(|h| r.render(&g.query, h, &self.run_id, None)) {
            Some(Ok(q)) => q,
            Some(Err(e)) => {
                self.event(EventKind::GateChecked {
                    batch,
                    status: Status::Failed,
                    ms: 0,
                    msg: e,
                });
                return false;
            }
            None => return true,
        };
        // The window (`for:`) can be long: an interruption ends it. The batch's hosts are done
        // and serving; no new host starts, so the gate's verdict no longer matters.
        let res = tokio::select! {
            res = self.gate_probe.watch(g, &query) => res,
            _ = self.until_interrupted() => {
                self.event(EventKind::GateChecked {
                    batch,
                    status: Status::Skipped,
                    ms: t.elapsed().as_millis() as u64,
                    msg: "not finished: the run was interrupted".into(),
                });
                return true;
            }
        };
        let ms = t.elapsed().as_millis() as u64;
        match res {
            Ok(msg) => {
                self.event(EventKind::GateChecked {
                    batch,
                    status: Status::Ok,
                    ms,
                    msg,
                });
                true
            }
            Err(msg) => {
                self.event(EventKind::GateChecked {
                    batch,
                    status: Status::Failed,
                    ms,
                    msg,
                });
                false
            }
        }
    }
}
