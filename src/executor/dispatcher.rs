//! The dispatcher: batches one after another while staging runs ahead, with the pauses between
//! them, the metric gate after each, and the locks renewed every `renew_every` beside it all.
//! Every wait (a pause, a confirmation, the gate's window) races the interruption.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use tokio::sync::Semaphore;

use super::{Executor, HostState, STEP_TIMEOUT};
use crate::events::{EventKind, Status};
use crate::policy::{Cancel, CancelReason, FailureBudget};
use crate::release::Release;
use crate::remote::lock::LockState;
use crate::remote::HostExit;

impl Executor {
    /// Stage ahead and run the batches; how each host ended (by target index) and why the run
    /// stopped, if it did.
    pub(super) async fn dispatch(
        &self,
        states: &[Option<HostState>],
        batch_of: &HashMap<usize, usize>,
    ) -> (HashMap<usize, Status>, Cancel) {
        let (stage_done, staging) = self.staging(states, batch_of);
        let mut results: HashMap<usize, Status> = HashMap::new();
        let mut cancel = Cancel::default();
        let batches = self.batches(states, &stage_done, &mut results, &mut cancel);
        // Staging runs on while the batches go; a batch waits for its own hosts only. The locks
        // are renewed however long a batch (or a window, or a pause) takes.
        tokio::select! {
            _ = async { tokio::join!(batches, staging) } => {}
            _ = self.keep_renewing(states) => {}
        }
        (results, cancel)
    }

    async fn batches(
        &self,
        states: &[Option<HostState>],
        stage_done: &[super::stage::Staged],
        results: &mut HashMap<usize, Status>,
        cancel: &mut Cancel,
    ) {
        let r: &Release = &self.release;
        let p = &r.playbook;
        let budget = FailureBudget::new(r.budget);
        for b in &r.batches {
            if self.is_interrupted() {
                cancel.escalate(CancelReason::Signal);
            }
            if !self.lost_locks.lock().expect("lost locks").is_empty() {
                cancel.escalate(CancelReason::LockLost);
            }
            if cancel.is_cancelled() {
                break;
            }
            if b.number > 1 {
                let pause = if b.number == 2 && r.batches[0].canary {
                    p.rollout.canary_pause
                } else {
                    p.rollout.pause
                };
                if !self.pause(b.number, pause).await {
                    cancel.escalate(CancelReason::Declined);
                    self.stage_halted.store(true, Ordering::SeqCst);
                    break;
                }
                if self.is_interrupted() {
                    break;
                }
            }
            let names: Vec<String> = b.hosts.iter().map(|&i| r.targets[i].name.clone()).collect();
            let bstart = Instant::now();
            self.event(EventKind::BatchStarted {
                batch: b.number,
                hosts: names,
            });
            // rollout.window: the batch after the canary holds every other host; at most the
            // window's width are in their pipeline at once, the next starting as one ends.
            let window = r.window.filter(|_| !b.canary).map(|w| Arc::new(Semaphore::new(w)));
            let outcomes = join_all(b.hosts.iter().map(|&i| {
                let mut rx = stage_done[i].clone();
                let st = states[i].as_ref();
                let window = window.clone();
                async move {
                    let _slot = match window {
                        Some(w) => w.acquire_owned().await.ok(),
                        None => None,
                    };
                    let host = &r.targets[i];
                    let Some(st) = st else {
                        if self.carried.started.contains(&host.name) {
                            // The interrupted run had started on it: it may be out of the
                            // registry, and cannot be reached to bring it back.
                            self.leave_out(
                                host,
                                "the interrupted run had started on it and preflight failed now; it may be out of the registry".into(),
                            );
                        }
                        self.event(EventKind::HostFinished {
                            batch: b.number,
                            host: host.name.clone(),
                            status: Status::Failed,
                            ms: 0,
                            msg: "preflight failed".into(),
                        });
                        return (i, Status::Failed);
                    };
                    (i, self.host_pipeline(host, st, b.number, &mut rx).await)
                }
            }))
            .await;
            let count = |want: Status| outcomes.iter().filter(|(_, s)| *s == want).count();
            let (ok, skipped) = (count(Status::Ok), count(Status::Skipped));
            let failed = outcomes.len() - ok - skipped;
            for (i, s) in outcomes {
                results.insert(i, s);
            }
            self.event(EventKind::BatchFinished {
                batch: b.number,
                ok,
                skipped,
                failed,
                ms: bstart.elapsed().as_millis() as u64,
            });
            if budget.is_exceeded(self.failed.load(Ordering::SeqCst)) {
                cancel.escalate(CancelReason::BudgetExceeded);
                self.stage_halted.store(true, Ordering::SeqCst);
            } else if let Some(g) = &p.rollout.gate {
                // The metric gate: the batch's hosts serve traffic now; watch the metric.
                if ok > 0 && !self.gate_passes(b.number, g).await {
                    cancel.escalate(CancelReason::GateBreached(b.number));
                    self.stage_halted.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Wait before batch `batch`. False when the operator said no.
    async fn pause(&self, batch: usize, pause: crate::playbook::Pause) -> bool {
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
    async fn gate_passes(&self, batch: usize, g: &crate::playbook::Gate) -> bool {
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

    pub(super) async fn release_lock(&self, st: &HostState) {
        if st.locked {
            // The script removes the lock only if this run still holds it.
            let cmd = crate::remote::lock::release(&self.release.playbook.layout.root, &self.run_id);
            let res = st.conn.exec(&cmd.to_command(), STEP_TIMEOUT).await;
            let why = match res {
                Ok(out) if out.success() => return,
                Ok(out) => out.describe(),
                Err(e) => e.to_string(),
            };
            self.event(EventKind::Warning {
                host: Some(st.conn.name().to_string()),
                msg: format!("could not release the lock: {why}; it expires by itself"),
            });
        }
    }

    /// Renew the lease on every host this run locked. A host whose lock is gone or held by
    /// another run (`tranche unlock`, then another run) is a loud warning, and the run ends
    /// failed: no new host starts, and the summary names it. A renewal that cannot run is a
    /// warning; the next one tries again.
    async fn renew_locks(&self, states: &[Option<HostState>]) {
        let cmd = crate::remote::lock::renew(&self.release.playbook.layout.root, &self.lease.renewed()).to_command();
        let lost = self.lost_locks.lock().expect("lost locks").clone();
        let locked: Vec<&HostState> = states
            .iter()
            .flatten()
            .filter(|s| s.locked && !lost.iter().any(|h| h == s.conn.name()))
            .collect();
        let results = join_all(locked.iter().map(|s| s.conn.exec(&cmd, STEP_TIMEOUT))).await;
        for (st, res) in locked.into_iter().zip(results) {
            let host = st.conn.name().to_string();
            let msg = match res {
                Ok(out) if out.success() => continue,
                Ok(out) if HostExit::of(&out) == Some(HostExit::NotOurs) => {
                    let report = crate::remote::lock::LockReport::parse(&out.stdout);
                    let now = match (report.state, report.owner) {
                        (LockState::Taken, Some(o)) => format!("{} holds it now", o.describe()),
                        (LockState::Taken, None) => "another lock without an owner file is there".into(),
                        _ => "it was removed (`tranche unlock`?)".into(),
                    };
                    self.lost_locks.lock().expect("lost locks").push(host.clone());
                    format!("LOST THE LOCK: this run no longer holds the lock of {host}: {now}; no new host starts and the run fails")
                }
                Ok(out) => format!(
                    "could not renew the lock: {}; the next renewal tries again",
                    out.describe()
                ),
                Err(e) => format!("could not renew the lock: {e}; the next renewal tries again"),
            };
            self.event(EventKind::Warning { host: Some(host), msg });
        }
    }

    /// Renew the locks every `renew_every`, forever: run it beside whatever must hold them.
    pub(super) async fn keep_renewing(&self, states: &[Option<HostState>]) {
        loop {
            tokio::time::sleep(self.renew_every).await;
            self.renew_locks(states).await;
        }
    }
}
