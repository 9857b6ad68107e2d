//! The executor: preflight on every host, staging ahead of the batches under a fleet-wide
//! limit, then the batches, each host through its pipeline (SPEC §1), a failure budget over the
//! whole run. It only emits events; it never prints, and it returns [`RunStats`]; the exit code
//! comes from `policy`, the last line from `report::summary`.
//!
//! Its parts: `preflight` (every host before anything changes), `stage` (the artifact onto the
//! hosts, under the `StageLimit`), `dispatcher` (one `select!` loop over the batch's hosts,
//! staging, the interruption, lease renewal and the wait in progress), `waits` (pauses and the
//! gate's window), `host` (one host's pipeline and its revert ladder), `rollback` (the
//! `on_failure` pass), `leases` (renew, release). Hosts, the registry and the metric gate are
//! reached through `seams` (SSH, the registry adapter and Prometheus in a real run; a scripted fake
//! in the offline scenarios).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::{watch, Semaphore};

use crate::events::{Event, EventKind, Status, Step};
use crate::exit_code;
use crate::inventory::Host;
use crate::journal::Carried;
use crate::policy::{self, CancelReason, FailureBudget};
use crate::registry::Registry;
use crate::release::Release;
use crate::report::summary;
use crate::ssh::{Endpoint, SshSettings};

mod dispatcher;
pub mod fan_out;
mod host;
mod image;
mod leases;
mod preflight;
mod rollback;
mod seams;
mod stage;
mod waits;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod scenarios;

use host::StepFailure;
use preflight::{HostState, Preflight};
pub use seams::{ClientRegistrar, Connector, GateProbe, PrometheusGate, Registrar, SshConnector};

/// A remote script or playbook command that has no timeout of its own gets this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where events go. An error: the journal could not be written; the run stops starting hosts.
pub type Emit = Arc<dyn Fn(Event) -> Result<(), crate::journal::JournalError> + Send + Sync>;

/// The question of a `confirm` pause, answered by whoever runs the executor (the terminal).
pub type Confirm = Arc<dyn Fn(usize) -> bool + Send + Sync>;

/// Sends one event of the run (redacted, into the run's journal and reports).
pub type EmitKind = Arc<dyn Fn(EventKind) + Send + Sync>;

/// Runs after every host of a release finished well, before the locks are released and the run
/// ends (blue-green: the switch and the watch). It may emit events; its answer (an exit code and
/// the last line) replaces the run's.
pub type AfterHosts = Arc<dyn Fn(EmitKind) -> futures::future::LocalBoxFuture<'static, (i32, String)> + Send + Sync>;

pub use crate::reach::{endpoint, host_spec, wants_become};

/// What a run does to the hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    /// Release the playbook's version.
    #[default]
    Release,
    /// Go back to the previous release, or to `to` if it is still on the hosts.
    Rollback { to: Option<String> },
    /// Preflight only (`plan --check`): change nothing, take no lock.
    Check,
}

/// How a run ended: the counts of `run_finished` and the exit code the policy gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub exit_code: i32,
    pub ok: usize,
    pub failed: usize,
    pub reverted: usize,
    pub skipped: usize,
}

pub struct Executor {
    /// `confirm` pauses are answered yes (`--yes`); otherwise asked on the terminal.
    pub assume_yes: bool,
    release: Arc<Release>,
    settings: SshSettings,
    run_id: String,
    emit: Emit,
    http: reqwest::Client,
    /// The registry's own links (a delegate host, the load balancer host), checked at preflight.
    registry: Arc<dyn Registry>,
    connector: Arc<dyn Connector>,
    registrar: Arc<dyn Registrar>,
    gate_probe: Arc<dyn GateProbe>,
    /// Hosts failed so far in this run, preflight included.
    failed: AtomicUsize,
    /// Values that never appear in events.
    secrets: Vec<String>,
    pub mode: Mode,
    pub carried: Carried,
    /// Asks the operator whether to go on with batch N (a `confirm` pause); none: the answer is no.
    pub confirm: Option<Confirm>,
    lease: crate::lock::Lease,
    /// Set by the first Ctrl-C, SIGTERM or SIGHUP: no new host starts.
    interrupted: AtomicBool,
    /// Wakes the waits (pauses, a confirmation, the gate's window) when the run is interrupted.
    interrupt_signal: watch::Sender<bool>,
    /// `rollout.max_per_zone`: one gate per zone (hosts without a zone share one).
    zone_gates: HashMap<String, Arc<Semaphore>>,
    /// Hosts that could not be put back into the registry, named in the summary.
    left_out: std::sync::Mutex<Vec<String>>,
    /// The step each host is in, for the record of a run stopped at once.
    in_flight: std::sync::Mutex<BTreeMap<String, Step>>,
    /// How often the locks are renewed while the run goes on (rollback pass included).
    pub renew_every: Duration,
    /// Hosts whose lock this run found gone or taken when renewing it.
    lost_locks: std::sync::Mutex<Vec<String>>,
    /// How each host's pipeline ended so far, and when the run started: the counts of a run
    /// stopped at once.
    finished: std::sync::Mutex<HashMap<String, Status>>,
    run_started: std::sync::OnceLock<Instant>,
    /// The journal could not be written: set once, by the first failed write.
    journal_failed: AtomicBool,
    /// No more host is staged: the run stopped (budget, gate, a declined confirmation).
    stage_halted: AtomicBool,
    /// What a release does once every host finished well (blue-green: the switch).
    pub after_hosts: Option<AfterHosts>,
}

impl Executor {
    pub fn new(release: Release, settings: SshSettings, run_id: String, emit: Emit) -> Self {
        let secrets = crate::redact::secrets_of(&release);
        let lease = crate::lock::Lease::new(&run_id, &crate::events::now_rfc3339());
        let zone_gates = match release.playbook.rollout.max_per_zone {
            Some(n) => release
                .targets
                .iter()
                .map(|h| (h.zone.clone().unwrap_or_default(), Arc::new(Semaphore::new(n))))
                .collect(),
            None => HashMap::new(),
        };
        let release = Arc::new(release);
        let http = reqwest::Client::new();
        let registry: Arc<dyn Registry> = Arc::from(crate::registry::build(&release.playbook));
        let registrar = Arc::new(ClientRegistrar {
            registry: registry.clone(),
            release: release.clone(),
            run_id: run_id.clone(),
        });
        let connector = Arc::new(SshConnector {
            settings: settings.clone(),
        });
        Executor {
            assume_yes: false,
            release,
            settings,
            run_id,
            emit,
            http: http.clone(),
            registry,
            connector,
            registrar,
            gate_probe: Arc::new(PrometheusGate { http }),
            failed: AtomicUsize::new(0),
            secrets,
            mode: Mode::Release,
            carried: Carried::default(),
            confirm: None,
            lease,
            interrupted: AtomicBool::new(false),
            interrupt_signal: watch::channel(false).0,
            in_flight: std::sync::Mutex::new(BTreeMap::new()),
            left_out: std::sync::Mutex::new(Vec::new()),
            renew_every: Duration::from_secs(600),
            lost_locks: std::sync::Mutex::new(Vec::new()),
            zone_gates,
            finished: std::sync::Mutex::new(HashMap::new()),
            run_started: std::sync::OnceLock::new(),
            journal_failed: AtomicBool::new(false),
            stage_halted: AtomicBool::new(false),
            after_hosts: None,
        }
    }

    /// Reach hosts, the registry and the metric gate through these instead (the offline
    /// scenarios' scripted fakes).
    pub fn with_seams(
        mut self,
        connector: Arc<dyn Connector>,
        registrar: Arc<dyn Registrar>,
        gate_probe: Arc<dyn GateProbe>,
    ) -> Self {
        self.connector = connector;
        self.registrar = registrar;
        self.gate_probe = gate_probe;
        self
    }

    /// The first Ctrl-C or SIGTERM: no new host starts; hosts in flight finish their pipeline.
    pub fn interrupt(&self) {
        // In this order: the warning is in the record before anything that reads the flag can
        // end the run, and a wait woken by the signal finds the flag set.
        if !self.is_interrupted() {
            self.event(EventKind::Warning {
                host: None,
                msg: "interrupted: no new host starts; hosts in flight finish (press Ctrl-C again to stop now)".into(),
            });
        }
        self.stop_starting_hosts();
    }

    /// The second Ctrl-C: record where every host in flight was and end the run record.
    /// The caller exits the process right after.
    pub fn stop_now(&self) {
        let where_: Vec<String> = self
            .in_flight
            .lock()
            .expect("in flight")
            .iter()
            .map(|(h, s)| format!("{h} ({})", s.as_str()))
            .collect();
        let msg = summary::stopped_at_once(&where_);
        self.event(EventKind::Warning {
            host: None,
            msg: msg.clone(),
        });
        let finished = self.finished.lock().expect("finished").clone();
        let count = |want: Status| finished.values().filter(|s| **s == want).count();
        self.event(EventKind::RunFinished {
            ok: count(Status::Ok),
            failed: self.failed.load(Ordering::SeqCst),
            reverted: count(Status::Reverted),
            skipped: count(Status::Skipped),
            exit_code: policy::STOPPED_AT_ONCE,
            ms: self.run_started.get().map_or(0, |t| t.elapsed().as_millis() as u64),
            msg,
        });
    }

    /// The journal could not be written: resume could not trust it past this point, so the run
    /// stops as if interrupted (no new host starts; hosts in flight finish), and says why.
    fn journal_failed(&self, e: &crate::journal::JournalError) {
        if self.journal_failed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.event(EventKind::Warning {
            host: None,
            msg: format!("{e}; the run stops: no new host starts, hosts in flight finish"),
        });
        self.stop_starting_hosts();
    }

    /// Why no new host may start now, if so: the run was interrupted, or (with a window or zone
    /// gates, hosts of a batch still wait) failures already exceed the budget.
    fn no_new_host(&self) -> Option<&'static str> {
        if self.journal_failed.load(Ordering::SeqCst) {
            Some("the journal cannot be written")
        } else if self.is_interrupted() {
            Some("the run was interrupted")
        } else if !self.lost_locks.lock().expect("lost locks").is_empty() {
            Some("this run lost the lock of a host")
        } else if FailureBudget::new(self.release.budget).is_exceeded(self.failed.load(Ordering::SeqCst)) {
            Some("the failure budget was exceeded")
        } else {
            None
        }
    }

    /// No new host starts from now on, and every wait (a pause, a confirmation, the gate's
    /// window) ends: what an interruption and an unwritable journal both do.
    fn stop_starting_hosts(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.interrupt_signal.send_replace(true);
    }

    fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Resolves once the run is interrupted (at once if it already is): every wait races it.
    async fn until_interrupted(&self) {
        let mut rx = self.interrupt_signal.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// A later SIGTERM or SIGHUP (a CI cancel sends SIGINT, then SIGTERM, then SIGKILL): the
    /// hosts in flight go on finishing their pipeline, and the log names them and how to bring
    /// them back should the process be killed before they are done.
    /// False when no host is in flight: then there is nothing to wait for.
    pub fn still_finishing(&self, signal: &str) -> bool {
        let where_: Vec<String> = self
            .in_flight
            .lock()
            .expect("in flight")
            .iter()
            .map(|(h, s)| format!("{h} ({})", s.as_str()))
            .collect();
        if where_.is_empty() {
            return false;
        }
        let msg = format!(
            "{signal} again: hosts in flight go on finishing: {}; if this process is killed first, `tranche resume {}` brings them back (Ctrl-C again stops at once)",
            where_.join(", "),
            self.run_id
        );
        self.event(EventKind::Warning { host: None, msg });
        true
    }

    fn event(&self, mut kind: EventKind) {
        kind.redact(&self.secrets);
        match &kind {
            EventKind::StepStarted { host, step, .. } => {
                self.in_flight.lock().expect("in flight").insert(host.clone(), *step);
            }
            EventKind::HostFinished { host, .. }
            | EventKind::StepFinished {
                host,
                step: Step::Preflight | Step::Stage,
                ..
            } => {
                self.in_flight.lock().expect("in flight").remove(host);
            }
            EventKind::RunStarted { .. } => {
                self.run_started.get_or_init(Instant::now);
            }
            _ => {}
        }
        if let EventKind::HostFinished { host, status, .. } = &kind {
            self.finished.lock().expect("finished").insert(host.clone(), *status);
        }
        if let Err(e) = (self.emit)(Event::new(&self.run_id, kind)) {
            self.journal_failed(&e);
        }
    }

    fn host_done(&self, batch: usize, host: &str, status: Status, started: Instant, msg: impl Into<String>) {
        self.event(EventKind::HostFinished {
            batch,
            host: host.into(),
            status,
            ms: started.elapsed().as_millis() as u64,
            msg: msg.into(),
        });
    }

    fn step_done(
        &self,
        batch: usize,
        host: &str,
        step: Step,
        status: Status,
        started: Instant,
        msg: impl Into<String>,
    ) {
        self.event(EventKind::StepFinished {
            batch,
            host: host.into(),
            step,
            status,
            ms: started.elapsed().as_millis() as u64,
            msg: msg.into(),
            stderr: None,
            hint: None,
        });
    }

    /// A step that failed: its message, the tail of the command's stderr, the advice of the
    /// layer that failed.
    fn step_failed(&self, batch: usize, host: &str, step: Step, started: Instant, e: StepFailure) {
        self.event(EventKind::StepFinished {
            batch,
            host: host.into(),
            step,
            status: Status::Failed,
            ms: started.elapsed().as_millis() as u64,
            msg: e.msg,
            stderr: e.stderr,
            hint: e.hint.map(str::to_string),
        });
    }

    /// The SSH endpoint of an inventory host.
    pub fn endpoint(&self, host: &Host) -> Endpoint {
        endpoint(host, &self.settings)
    }

    pub async fn run(&self) -> RunStats {
        let started = Instant::now();
        let r: &Release = &self.release;
        let p = &r.playbook;
        let (mode, version) = match &self.mode {
            Mode::Release => ("release", p.version.clone()),
            Mode::Rollback { to: Some(v) } => ("rollback", v.clone()),
            Mode::Rollback { to: None } => ("rollback", "the previous release".to_string()),
            Mode::Check => ("check", p.version.clone()),
        };
        self.event(EventKind::RunStarted {
            service: p.service.clone(),
            version,
            mode: mode.to_string(),
            hosts: r.targets.len(),
            plan: crate::report::plan::summary(r),
        });
        let specs: Vec<_> = r.targets.iter().map(host_spec).collect();
        crate::ssh::config::prefetch(&self.settings, &specs);
        let endpoints: Vec<Endpoint> = r.targets.iter().map(|h| self.endpoint(h)).collect();
        for msg in crate::ssh::config::warnings(&endpoints) {
            self.event(EventKind::Warning { host: None, msg });
        }
        let batch_of: HashMap<usize, usize> = r
            .batches
            .iter()
            .flat_map(|b| b.hosts.iter().map(move |&h| (h, b.number)))
            .collect();

        // 1. Preflight, every host, before anything changes.
        let states = match self.preflight_all(&batch_of).await {
            Preflight::Go(states) => states,
            Preflight::Stop(stats, msg) => {
                self.finish(&stats, started, msg);
                return stats;
            }
        };
        // 2. and 3. Staging ahead of the batches, and the batches.
        let (mut results, mut cancel) = self.dispatch(&states, &batch_of).await;
        // 4. Over budget or past a breached gate: apply on_failure to hosts this run changed.
        let undo = policy::undo(p.rollout.on_failure, cancel);
        self.rollback_pass(undo, &states, &mut results, &batch_of).await;

        if self.is_interrupted() {
            cancel.escalate(CancelReason::Signal);
        }
        let all_done = results.len() == r.targets.len();
        let interrupted = self.is_interrupted() && !all_done;
        let after = match &self.after_hosts {
            Some(hook)
                if self.mode == Mode::Release
                    && !self.is_interrupted()
                    && policy::exit_code(cancel, self.failed.load(Ordering::SeqCst), all_done)
                        == exit_code::SUCCESS =>
            {
                let (emit, secrets, run_id) = (self.emit.clone(), self.secrets.clone(), self.run_id.clone());
                let send: EmitKind = Arc::new(move |mut kind: EventKind| {
                    kind.redact(&secrets);
                    let _ = emit(Event::new(&run_id, kind));
                });
                // The hook may wait long (blue-green's `retire_after`): the locks stay renewed.
                tokio::select! {
                    answer = hook(send) => Some(answer),
                    _ = self.keep_renewing(&states) => unreachable!("renewing never ends"),
                }
            }
            _ => None,
        };
        // Every host at once (as the lease renewals): one after the other, a 1,000-host run
        // spent a round trip a host here, most of a minute after its last batch.
        join_all(states.iter().flatten().map(|st| async move {
            // An interrupted run keeps its locks for `tranche resume`; they expire otherwise.
            if !interrupted {
                self.release_lock(st).await;
            }
            st.conn.close().await;
        }))
        .await;
        self.registry.close().await;
        self.settings.bastions.close().await;
        let count = |want: Status| results.values().filter(|s| **s == want).count();
        let failed = self.failed.load(Ordering::SeqCst);
        let lost_locks = self.lost_locks.lock().expect("lost locks").clone();
        if !lost_locks.is_empty() {
            cancel.escalate(CancelReason::LockLost);
        }
        // The hook's answer stands only if nothing went wrong after it (a lost lock).
        let after = after.filter(|_| policy::exit_code(cancel, failed, all_done) == exit_code::SUCCESS);
        let stats = RunStats {
            exit_code: after
                .as_ref()
                .map_or(policy::exit_code(cancel, failed, all_done), |a| a.0),
            ok: count(Status::Ok),
            failed,
            reverted: count(Status::Reverted),
            skipped: count(Status::Skipped),
        };
        let left_out = self.left_out.lock().expect("left out").clone();
        let msg = summary::finished(&summary::Finished {
            service: &p.service,
            destination: match &self.mode {
                Mode::Rollback { to: Some(v) } => summary::Destination::RollbackTo(v.clone()),
                Mode::Rollback { to: None } => summary::Destination::RollbackPrevious,
                _ => summary::Destination::Version(p.version.clone()),
            },
            exit_code: stats.exit_code,
            cancel: cancel.reason(),
            run_id: &self.run_id,
            hosts: r.targets.len(),
            done: results.len(),
            failed,
            reverted: stats.reverted,
            budget: r.budget,
            on_failure: p.rollout.on_failure.as_str(),
            lost_locks: &lost_locks,
            left_out: &left_out,
        });
        let msg = after.map_or(msg, |a| a.1);
        self.finish(&stats, started, msg);
        stats
    }

    fn finish(&self, o: &RunStats, started: Instant, msg: String) {
        self.event(EventKind::RunFinished {
            ok: o.ok,
            failed: o.failed,
            reverted: o.reverted,
            skipped: o.skipped,
            exit_code: o.exit_code,
            ms: started.elapsed().as_millis() as u64,
            msg,
        });
    }
}
