//! The dispatcher: one `select!` loop that owns the run between preflight and the rollback
//! pass. Its inputs: the host pipelines of the current batch as they end, staging (which runs
//! ahead of the batches), the interruption, the lease renewal timer, and the wait in progress (a
//! pause before a batch, or the metric gate's window after one). Its state: which batch, what
//! each host came to, and why the run stopped ([`Cancel`], which only escalates).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::future::{BoxFuture, Fuse, FusedFuture, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;

use super::stage::Staged;
use super::{Executor, HostState};
use crate::events::{EventKind, Status};
use crate::policy::{Cancel, CancelReason, FailureBudget};

/// What the dispatcher is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting before batch `i` (index into the batches).
    Pause(usize),
    /// The hosts of batch `i` are in their pipeline.
    Batch(usize),
    /// Watching the metric gate after batch `i`.
    Gate(usize),
    /// No batch starts any more (all done, or the run stopped); staging may still be ending.
    Done,
}

/// A wait that ended: a pause (true: go on) or the gate (true: it passed).
type Wait<'a> = Fuse<BoxFuture<'a, bool>>;

struct Dispatch<'a> {
    exec: &'a Executor,
    states: &'a [Option<HostState>],
    stage_done: Vec<Staged>,
    phase: Phase,
    running: FuturesUnordered<BoxFuture<'a, (usize, Status)>>,
    /// The outcomes of the current batch so far, and when it started.
    batch: Vec<(usize, Status)>,
    batch_started: Instant,
    wait: Wait<'a>,
    results: HashMap<usize, Status>,
    cancel: Cancel,
}

impl Executor {
    /// Stage ahead and run the batches; how each host ended (by target index) and why the run
    /// stopped, if it did.
    pub(super) async fn dispatch(
        &self,
        states: &[Option<HostState>],
        batch_of: &HashMap<usize, usize>,
    ) -> (HashMap<usize, Status>, Cancel) {
        let (stage_done, staging) = self.staging(states, batch_of);
        let mut staging = staging.fuse();
        let mut d = Dispatch {
            exec: self,
            states,
            stage_done,
            phase: Phase::Done,
            running: FuturesUnordered::new(),
            batch: Vec::new(),
            batch_started: Instant::now(),
            wait: Fuse::terminated(),
            results: HashMap::new(),
            cancel: Cancel::default(),
        };
        d.begin(0);
        let mut interrupted = self.interrupt_signal.subscribe();
        let mut seen_interrupt = false;
        // The locks are renewed every `renew_every` however long a batch, a window or a pause
        // takes; the next renewal is counted from the end of the last one.
        let renew_at = tokio::time::sleep(self.renew_every);
        tokio::pin!(renew_at);
        let mut renewing: Fuse<BoxFuture<'_, ()>> = Fuse::terminated();
        while d.phase != Phase::Done || !staging.is_terminated() {
            tokio::select! {
                Some((i, status)) = d.running.next(), if !d.running.is_empty() => {
                    d.batch.push((i, status));
                    if d.running.is_empty() {
                        d.batch_finished();
                    }
                }
                go_on = &mut d.wait, if !d.wait.is_terminated() => d.waited(go_on),
                _ = &mut staging, if !staging.is_terminated() => {}
                _ = interrupted.wait_for(|v| *v), if !seen_interrupt => {
                    // Hosts in flight finish; the waits end by themselves (they race it too).
                    seen_interrupt = true;
                    d.cancel.escalate(CancelReason::Signal);
                }
                _ = &mut renew_at, if renewing.is_terminated() => {
                    renewing = self.renew_locks(states).boxed().fuse();
                }
                _ = &mut renewing, if !renewing.is_terminated() => {
                    renew_at.as_mut().reset(tokio::time::Instant::now() + self.renew_every);
                    if !self.lost_locks.lock().expect("lost locks").is_empty() {
                        d.cancel.escalate(CancelReason::LockLost);
                    }
                }
            }
        }
        (d.results, d.cancel)
    }
}

impl<'a> Dispatch<'a> {
    /// Before batch `i`: stop if the run was stopped, wait if a pause comes first, start it.
    fn begin(&mut self, i: usize) {
        let r = &self.exec.release;
        if self.exec.is_interrupted() {
            self.cancel.escalate(CancelReason::Signal);
        }
        if !self.exec.lost_locks.lock().expect("lost locks").is_empty() {
            self.cancel.escalate(CancelReason::LockLost);
        }
        if i >= r.batches.len() || self.cancel.is_cancelled() {
            self.phase = Phase::Done;
            return;
        }
        if i == 0 {
            self.start(0);
            return;
        }
        let p = &r.playbook;
        let b = &r.batches[i];
        let pause = if b.number == 2 && r.batches[0].canary {
            p.rollout.canary_pause
        } else {
            p.rollout.pause
        };
        self.phase = Phase::Pause(i);
        self.wait = self.exec.pause(b.number, pause).boxed().fuse();
    }

    /// A pause or the gate ended.
    fn waited(&mut self, go_on: bool) {
        match self.phase {
            Phase::Pause(_) if !go_on => {
                self.cancel.escalate(CancelReason::Declined);
                self.exec.stage_halted.store(true, Ordering::SeqCst);
                self.phase = Phase::Done;
            }
            // Woken by an interruption: no batch starts.
            Phase::Pause(_) if self.exec.is_interrupted() => self.phase = Phase::Done,
            Phase::Pause(i) => self.start(i),
            Phase::Gate(i) => {
                if !go_on {
                    let number = self.exec.release.batches[i].number;
                    self.cancel.escalate(CancelReason::GateBreached(number));
                    self.exec.stage_halted.store(true, Ordering::SeqCst);
                }
                self.begin(i + 1);
            }
            Phase::Batch(_) | Phase::Done => unreachable!("no wait in {:?}", self.phase),
        }
    }

    /// Batch `i`'s hosts into their pipeline (`rollout.window`: the batch after the canary
    /// holds every other host; at most the window's width are in their pipeline at once, the
    /// next starting as one ends).
    fn start(&mut self, i: usize) {
        let exec = self.exec;
        let r = &exec.release;
        let b = &r.batches[i];
        self.phase = Phase::Batch(i);
        self.batch.clear();
        self.batch_started = Instant::now();
        exec.event(EventKind::BatchStarted {
            batch: b.number,
            hosts: b.hosts.iter().map(|&h| r.targets[h].name.clone()).collect(),
        });
        let window = r.window.filter(|_| !b.canary).map(|w| Arc::new(Semaphore::new(w)));
        let states = self.states;
        for &h in &b.hosts {
            let mut staged = self.stage_done[h].clone();
            let st = states[h].as_ref();
            let window = window.clone();
            let number = b.number;
            self.running.push(
                async move {
                    let _slot = match window {
                        Some(w) => w.acquire_owned().await.ok(),
                        None => None,
                    };
                    let host = &exec.release.targets[h];
                    let status = match st {
                        Some(st) => exec.host_pipeline(host, st, number, &mut staged).await,
                        None => exec.preflight_failed(host, number),
                    };
                    (h, status)
                }
                .boxed(),
            );
        }
        if b.hosts.is_empty() {
            self.batch_finished();
        }
    }

    /// Every host of the current batch ended: count, then the budget, then the gate.
    fn batch_finished(&mut self) {
        let Phase::Batch(i) = self.phase else {
            unreachable!("a batch ends in {:?}", self.phase)
        };
        let exec = self.exec;
        let r = &exec.release;
        let b = &r.batches[i];
        let count = |want: Status| self.batch.iter().filter(|(_, s)| *s == want).count();
        let (ok, skipped) = (count(Status::Ok), count(Status::Skipped));
        let failed = self.batch.len() - ok - skipped;
        self.results.extend(self.batch.drain(..));
        exec.event(EventKind::BatchFinished {
            batch: b.number,
            ok,
            skipped,
            failed,
            ms: self.batch_started.elapsed().as_millis() as u64,
        });
        if FailureBudget::new(r.budget).is_exceeded(exec.failed.load(Ordering::SeqCst)) {
            self.cancel.escalate(CancelReason::BudgetExceeded);
            exec.stage_halted.store(true, Ordering::SeqCst);
            self.phase = Phase::Done;
        } else if let (Some(g), true) = (&r.playbook.rollout.gate, ok > 0) {
            // The metric gate: the batch's hosts serve traffic now; watch the metric.
            self.phase = Phase::Gate(i);
            self.wait = exec.gate_passes(b.number, g).boxed().fuse();
        } else {
            self.begin(i + 1);
        }
    }
}

impl Executor {
    /// A host of a batch that failed preflight: counted as failed; named when an interrupted
    /// run had started on it (it may be out of the registry, and cannot be reached).
    fn preflight_failed(&self, host: &crate::inventory::Host, batch: usize) -> Status {
        if self.carried.started.contains(&host.name) {
            self.leave_out(
                host,
                "the interrupted run had started on it and preflight failed now; it may be out of the registry".into(),
            );
        }
        self.event(EventKind::HostFinished {
            batch,
            host: host.name.clone(),
            status: Status::Failed,
            ms: 0,
            msg: "preflight failed".into(),
        });
        Status::Failed
    }
}
