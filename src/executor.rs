//! The executor: preflight on every host, staging ahead of the batches under a fleet-wide
//! limit, then the batches, each host through its pipeline (SPEC §1), a failure budget over the
//! whole run. It only emits events; it never prints.

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
use crate::playbook::ArtifactSource;
use crate::policy::{self, Cancel, CancelReason, FailureBudget, Undo};
use crate::registry::RegistryClient;
use crate::release::Release;
use crate::remote::lock::LockState;
use crate::remote::{HostExit, PreflightReport, Transfer};
use crate::ssh::{Connection, Endpoint, SshSettings};

const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where events go. An error: the journal could not be written; the run stops starting hosts.
pub type Emit = Arc<dyn Fn(Event) -> Result<(), crate::journal::JournalError> + Send + Sync>;

/// The question of a `confirm` pause, answered by whoever runs the executor (the terminal).
pub type Confirm = Arc<dyn Fn(usize) -> bool + Send + Sync>;

/// The SSH endpoint of an inventory host: its own variables, then the SSH config, then defaults.
pub fn endpoint(host: &Host, settings: &SshSettings) -> Endpoint {
    crate::ssh::config::resolve(&host_spec(host), settings)
}

/// What the inventory says about how to reach `host`.
pub fn host_spec(host: &Host) -> crate::ssh::config::HostSpec {
    let explicit_address = crate::inventory::ADDRESS_VARS
        .iter()
        .any(|k| host.vars.contains_key(*k));
    crate::ssh::config::HostSpec {
        name: host.name.clone(),
        address: explicit_address.then(|| host.address.clone()),
        port: host.port,
        user: host.user.clone(),
        identity: host.identity_file.clone(),
        jump: host.jump.clone(),
    }
}

/// A failed step: the message, and the tail of the command's stderr when a command failed.
struct StepFailure {
    msg: String,
    stderr: Option<String>,
}

impl StepFailure {
    fn of(prefix: &str, out: &crate::ssh::ExecOutput) -> StepFailure {
        StepFailure {
            msg: format!("{prefix}{}", out.describe()),
            stderr: Some(out.stderr_tail(20)).filter(|s| !s.is_empty()),
        }
    }
}

impl From<String> for StepFailure {
    fn from(msg: String) -> Self {
        StepFailure { msg, stderr: None }
    }
}

/// How many bytes of `local` the host already has in `part` (an upload cut earlier, `n` bytes
/// long at preflight): `n`, when those bytes have the same sha256 as the start of the local
/// file; 0 otherwise.
async fn resumable(conn: &Connection, local: &std::path::Path, part: &str, n: u64, size: u64) -> u64 {
    if n == 0 || n >= size {
        return 0;
    }
    let cmd = crate::remote::hash(part).to_command();
    let Ok(out) = conn.exec(&cmd, STEP_TIMEOUT).await else {
        return 0;
    };
    let remote = crate::remote::parse_hash(&out.stdout).unwrap_or_default();
    let path = local.to_path_buf();
    let local_hash = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use sha2::Digest;
        use std::io::Read;
        let mut f = std::fs::File::open(path)?.take(n);
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(hex::encode(h.finalize()))
    })
    .await;
    match local_hash {
        Ok(Ok(h)) if out.success() && !remote.is_empty() && h == remote => n,
        _ => 0,
    }
}

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

/// Why preflight refused a host.
struct PreflightError {
    msg: String,
    /// Another run holds the host's lock: the whole run is refused, whatever the budget.
    locked: bool,
}

impl From<String> for PreflightError {
    fn from(msg: String) -> Self {
        PreflightError { msg, locked: false }
    }
}

/// Whether commands on `host` run through `sudo -n`: the playbook's `become`, or the host's
/// `become`/`ansible_become`.
pub fn wants_become(p: &crate::playbook::Playbook, host: &Host) -> bool {
    p.become_root
        || ["become", "ansible_become"].iter().any(|k| {
            host.vars
                .get(*k)
                .is_some_and(|v| v == &serde_json::json!(true) || v == "true" || v == "yes")
        })
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub exit_code: i32,
    pub ok: usize,
    pub failed: usize,
    pub reverted: usize,
    pub skipped: usize,
}

/// What preflight learned about a host.
struct HostState {
    conn: Connection,
    /// The release `current` pointed to before the run.
    previous: Option<String>,
    /// The checksum recorded in `releases/<version>` when it is already there.
    staged_sha: Option<String>,
    /// The size of an upload or download of this artifact that was cut earlier (0: none).
    part: u64,
    /// What `.tranche-previous` said at preflight (the release before the current one).
    recorded_previous: Option<String>,
    /// The release this run moves the host to.
    target: String,
    /// This run holds the host's lock.
    locked: bool,
}

pub struct Executor {
    /// `confirm` pauses are answered yes (`--yes`); otherwise asked on the terminal.
    pub assume_yes: bool,
    release: Arc<Release>,
    settings: SshSettings,
    run_id: String,
    emit: Emit,
    http: reqwest::Client,
    registry: RegistryClient,
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
        Executor {
            assume_yes: false,
            release: Arc::new(release),
            settings,
            run_id,
            emit,
            http: reqwest::Client::new(),
            registry: RegistryClient::new(None),
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
        }
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
        let msg = if where_.is_empty() {
            "stopped at once; no host was in flight".to_string()
        } else {
            format!(
                "stopped at once; in flight: {}; `tranche resume` continues",
                where_.join(", ")
            )
        };
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
            exit_code: exit_code::INTERRUPTED,
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
        });
    }

    /// The SSH endpoint of an inventory host.
    pub fn endpoint(&self, host: &Host) -> Endpoint {
        endpoint(host, &self.settings)
    }

    pub async fn run(&self) -> Outcome {
        let started = Instant::now();
        let release = self.release.clone();
        let r: &Release = &release;
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
        let gate = Arc::new(Semaphore::new(self.settings.max_connecting.max(1)));
        let states: Vec<Result<HostState, PreflightError>> = join_all(r.targets.iter().enumerate().map(|(i, h)| {
            let gate = gate.clone();
            let batch = batch_of[&i];
            async move {
                let _permit = gate.acquire().await.expect("gate");
                let st = self.preflight(h, batch).await;
                // A check keeps no connection: open files stay bounded by --max-connecting.
                if let (Mode::Check, Ok(st)) = (&self.mode, &st) {
                    st.conn.close().await;
                }
                st
            }
        }))
        .await;
        let preflight_failed = states.iter().filter(|s| s.is_err()).count();
        // "h03, h04 (locked by run X by alice on laptop since ...)", one entry per holder.
        let mut holders: Vec<(String, Vec<String>)> = Vec::new();
        for (s, h) in states.iter().zip(&r.targets) {
            if let Err(e) = s {
                if e.locked {
                    match holders.iter_mut().find(|(m, _)| *m == e.msg) {
                        Some((_, hosts)) => hosts.push(h.name.clone()),
                        None => holders.push((e.msg.clone(), vec![h.name.clone()])),
                    }
                }
            }
        }
        let lock_holders: Vec<String> = holders
            .iter()
            .map(|(m, hs)| format!("{} ({m})", hs.join(", ")))
            .collect();
        if self.mode == Mode::Check {
            for s in states.iter().flatten() {
                s.conn.close().await;
            }
            let code = if preflight_failed > 0 {
                exit_code::PREFLIGHT
            } else {
                exit_code::SUCCESS
            };
            let outcome = Outcome {
                exit_code: code,
                ok: r.targets.len() - preflight_failed,
                failed: preflight_failed,
                ..Default::default()
            };
            let msg = if preflight_failed == 0 {
                format!("preflight passed on all {} hosts; nothing was changed", r.targets.len())
            } else {
                format!(
                    "preflight failed on {preflight_failed} of {} hosts; nothing was changed",
                    r.targets.len()
                )
            };
            self.finish(&outcome, started, msg);
            return outcome;
        }
        // The delegate of a `command` registry must be reachable too; it is not a released
        // host, so failing to reach it stops the run before anything changes.
        let delegate_error = match &p.registry {
            crate::playbook::Registry::Command {
                delegate: Some(name), ..
            } => match r.inventory.host(name) {
                Some(h) => {
                    let t = Instant::now();
                    match Connection::open(&self.endpoint(h), &self.settings).await {
                        Ok(conn) => {
                            self.registry.set_delegate(conn).await;
                            None
                        }
                        Err(e) => {
                            self.step_done(
                                0,
                                name,
                                Step::Preflight,
                                Status::Failed,
                                t,
                                format!("registry delegate: {e}"),
                            );
                            Some(format!("the registry delegate {name} cannot be reached: {e}"))
                        }
                    }
                }
                None => Some(format!("the registry delegate {name} is not in the inventory")),
            },
            _ => None,
        };
        // The load balancer host of an `ssh://` HAProxy address, and the monitoring the run
        // relies on, must answer before any host changes.
        let delegate_error = match delegate_error {
            Some(e) => Some(e),
            None => match self.connect_lb().await {
                Err(e) => Some(e),
                Ok(()) => self.check_monitoring().await.err(),
            },
        };
        let budget = FailureBudget::new(r.budget);
        if let Some(code) = policy::preflight_verdict(
            budget,
            preflight_failed,
            !lock_holders.is_empty(),
            delegate_error.is_some(),
        ) {
            for s in states.into_iter().flatten() {
                self.release_lock(&s).await;
                s.conn.close().await;
            }
            self.registry.close().await;
            let outcome = Outcome {
                exit_code: code,
                failed: preflight_failed,
                ..Default::default()
            };
            self.finish(
                &outcome,
                started,
                match delegate_error {
                    Some(e) => format!("{e}; nothing was changed"),
                    None if !lock_holders.is_empty() => {
                        format!(
                            "another run holds the lock of {}; nothing was changed",
                            lock_holders.join("; ")
                        )
                    }
                    None => format!(
                        "preflight failed on {preflight_failed} host(s), over the budget of {}; nothing was changed",
                        r.budget
                    ),
                },
            );
            return outcome;
        }
        let mut states: Vec<Option<HostState>> = states.into_iter().map(Result::ok).collect();
        self.failed
            .store(preflight_failed + self.carried.failed, Ordering::SeqCst);

        // 2. Staging, ahead of the batches, at most `stage.concurrency` hosts at once.
        let stage_limit = Arc::new(Semaphore::new(p.rollout.stage_concurrency));
        let halted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut stage_done: Vec<watch::Receiver<Option<Result<(), String>>>> = Vec::new();
        let mut stage_tasks = Vec::new();
        for (i, st) in states.iter().enumerate() {
            let (tx, rx) = watch::channel(None);
            stage_done.push(rx);
            let Some(st) = st else {
                let _ = tx.send(Some(Err("preflight failed".into())));
                continue;
            };
            let limit = stage_limit.clone();
            let halted = halted.clone();
            let host = &r.targets[i];
            let batch = batch_of[&i];
            let staged = st.staged_sha.clone();
            let part = st.part;
            let target = st.target.clone();
            let conn = &st.conn;
            stage_tasks.push(async move {
                let res = {
                    let _permit = limit.acquire().await.expect("stage limit");
                    if halted.load(std::sync::atomic::Ordering::SeqCst) {
                        Err("the run stopped before this host was staged".to_string())
                    } else {
                        self.stage(host, conn, batch, staged.as_deref(), part, &target).await
                    }
                };
                let _ = tx.send(Some(res));
            });
        }
        let staging = join_all(stage_tasks);

        // 3. Batches.
        let mut results: HashMap<usize, Status> = HashMap::new();
        let mut cancel = Cancel::default();
        let batches_fut = async {
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
                        halted.store(true, std::sync::atomic::Ordering::SeqCst);
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
                    halted.store(true, std::sync::atomic::Ordering::SeqCst);
                } else if let Some(g) = &p.rollout.gate {
                    // The metric gate: the batch's hosts serve traffic now; watch the metric.
                    if ok > 0 && !self.gate_passes(b.number, g).await {
                        cancel.escalate(CancelReason::GateBreached(b.number));
                        halted.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        };
        // Staging runs on while the batches go; a batch waits for its own hosts only. Beside
        // them: an interruption stops staging too, and the locks are renewed every ten minutes,
        // however long a batch (or a window) takes.
        let watch_interrupt = async {
            let mut renewed = Instant::now();
            loop {
                if self.is_interrupted() || !self.lost_locks.lock().expect("lost locks").is_empty() {
                    halted.store(true, Ordering::SeqCst);
                }
                if renewed.elapsed() > self.renew_every {
                    self.renew_locks(&states).await;
                    renewed = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = async { tokio::join!(batches_fut, staging) } => {}
            _ = watch_interrupt => {}
        }

        // 4. Over budget: apply on_failure to hosts this run changed.
        let mut reverted = results.values().filter(|s| **s == Status::Reverted).count();
        let undo = policy::undo(p.rollout.on_failure, cancel);
        if undo != Undo::Nothing {
            // rollback: every host this run moved; revert-failed after a gate breach: the hosts of
            // the batch that breached it.
            let changed: Vec<usize> = results
                .iter()
                .filter(|(i, s)| {
                    **s == Status::Ok
                        && match undo {
                            Undo::Batch(n) => r.batches[n - 1].hosts.contains(i),
                            _ => true,
                        }
                })
                .map(|(i, _)| *i)
                .collect();
            // The same limits as the release: a batch at a time (the latest first), each host
            // through the same pipeline.
            let mut rolled = Vec::new();
            let rollback_pass = async {
                for b in r.batches.iter().rev() {
                    let these: Vec<usize> = changed.iter().copied().filter(|i| b.hosts.contains(i)).collect();
                    let res = join_all(these.iter().map(|&i| {
                        let st = states[i].as_ref().expect("changed hosts passed preflight");
                        self.rollback_host(&r.targets[i], st, batch_of[&i])
                    }))
                    .await;
                    rolled.extend(these.into_iter().zip(res));
                }
            };
            // The locks are renewed through the rollback pass too.
            tokio::select! {
                _ = rollback_pass => {}
                _ = self.keep_renewing(&states) => {}
            }
            for (i, ok) in rolled {
                if ok {
                    results.insert(i, Status::Reverted);
                    reverted += 1;
                }
            }
        }
        if self.is_interrupted() {
            cancel.escalate(CancelReason::Signal);
        }
        let all_done = results.len() == r.targets.len();
        let interrupted = self.is_interrupted() && !all_done;
        for st in states.iter_mut().flatten() {
            // An interrupted run keeps its locks for `tranche resume`; they expire otherwise.
            if !interrupted {
                self.release_lock(st).await;
            }
            st.conn.close().await;
        }
        self.registry.close().await;
        self.settings.bastions.close().await;
        let ok = results.values().filter(|s| **s == Status::Ok).count();
        let skipped = results.values().filter(|s| **s == Status::Skipped).count();
        let failed = self.failed.load(Ordering::SeqCst);
        let lost_locks = self.lost_locks.lock().expect("lost locks").clone();
        if !lost_locks.is_empty() {
            cancel.escalate(CancelReason::LockLost);
        }
        let code = policy::exit_code(cancel, failed, all_done);
        let outcome = Outcome {
            exit_code: code,
            ok,
            failed,
            reverted,
            skipped,
        };
        let msg = match code {
            exit_code::SUCCESS => match &self.mode {
                Mode::Rollback { to: Some(v) } => format!("{} {v} is on every targeted host", p.service),
                Mode::Rollback { to: None } => {
                    format!("{} is back on its previous release on every targeted host", p.service)
                }
                _ => format!("{} {} is on every targeted host", p.service, p.version),
            },
            exit_code::INTERRUPTED if cancel.reason() == Some(CancelReason::Declined) => {
                "stopped at a confirmation; hosts not reached keep their release".to_string()
            }
            exit_code::INTERRUPTED => format!(
                "interrupted: {} of {} hosts not done; `tranche resume {}` continues",
                r.targets.len() - results.len(),
                r.targets.len(),
                self.run_id
            ),
            exit_code::HOSTS_FAILED if failed == 0 => format!(
                "stopped with {} of {} hosts not done",
                r.targets.len() - results.len(),
                r.targets.len()
            ),
            exit_code::HOSTS_FAILED => format!(
                "{failed} host(s) failed within the budget of {} ({} reverted to the release they had; a host that failed before it left the registry was not changed)",
                r.budget,
                results.values().filter(|s| **s == Status::Reverted).count()
            ),
            _ => match cancel.reason() {
                Some(CancelReason::GateBreached(b)) => format!(
                    "the metric gate failed after batch {b}; on_failure: {}",
                    p.rollout.on_failure.as_str()
                ),
                _ => format!(
                    "{failed} host(s) failed, over the budget of {}; on_failure: {}",
                    r.budget,
                    p.rollout.on_failure.as_str()
                ),
            },
        };
        let msg = if lost_locks.is_empty() {
            msg
        } else {
            format!(
                "{msg}; THIS RUN LOST THE LOCK OF {} (another run may be changing them)",
                lost_locks.join(", ")
            )
        };
        let left_out = self.left_out.lock().expect("left out").clone();
        let msg = if left_out.is_empty() {
            msg
        } else {
            format!("{msg}; LEFT OUT OF THE REGISTRY: {}", left_out.join(", "))
        };
        self.finish(&outcome, started, msg);
        outcome
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

    /// Record (in the events and the run's summary) that a host stays out of the registry.
    fn leave_out(&self, host: &Host, msg: String) {
        self.left_out.lock().expect("left out").push(host.name.clone());
        self.event(EventKind::Warning {
            host: Some(host.name.clone()),
            msg,
        });
    }

    /// Last resort after a failed revert (often: the host's SSH connection is gone): if the
    /// host still passes its health check on `prev` from here, put it back into the registry.
    async fn restore_traffic(&self, host: &Host, st: &HostState, prev: &str) -> Result<String, String> {
        let r = &self.release;
        crate::health::wait_healthy(r, host, &st.conn, &self.run_id, prev, &self.http)
            .await
            .map_err(|e| format!("its health check on {prev} fails too ({e}); it is left out of the registry"))?;
        self.registry
            .register(r, host, &st.conn, &self.run_id)
            .await
            .map_err(|e| format!("putting it back failed ({e}); it is left out of the registry"))?;
        Ok(format!("it still serves {prev} and is back in the registry"))
    }

    /// HAProxy's runtime API must answer before anything changes. With
    /// `registry.address: ssh://[user@]lb-host[:port]/path/to/haproxy.sock`, connect to the load
    /// balancer host first (an inventory host by that name, or any host the SSH config resolves).
    async fn connect_lb(&self) -> Result<(), String> {
        let r = &self.release;
        let crate::playbook::Registry::Haproxy { address, .. } = &r.playbook.registry else {
            return Ok(());
        };
        let Some((target, _)) = crate::registry::ssh_address(address) else {
            return self.registry.check_haproxy(address).await;
        };
        let ep = match r.inventory.host(target) {
            Some(h) => self.endpoint(h),
            None => {
                let (user, rest) = match target.split_once('@') {
                    Some((u, r)) => (Some(u.to_string()), r),
                    None => (None, target),
                };
                let (name, port) = match rest.rsplit_once(':') {
                    Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().ok()),
                    _ => (rest.to_string(), None),
                };
                let spec = crate::ssh::config::HostSpec {
                    name,
                    address: None,
                    port,
                    user,
                    identity: None,
                    jump: None,
                };
                crate::ssh::config::resolve(&spec, &self.settings)
            }
        };
        let mut conn = Connection::open(&ep, &self.settings)
            .await
            .map_err(|e| format!("the load balancer host {target}: {e}"))?;
        if let Some(h) = r.inventory.host(target) {
            conn.become_root = wants_become(&r.playbook, h);
        }
        self.registry.set_lb(conn);
        self.registry.check_haproxy(address).await
    }

    /// Before anything changes: the gate's query answers, and Alertmanager answers.
    async fn check_monitoring(&self) -> Result<(), String> {
        let r = &self.release;
        if let (Some(g), Some(first)) = (&r.playbook.rollout.gate, r.targets.first()) {
            let query = r.render(&g.query, first, &self.run_id, None)?;
            let v = crate::monitor::gate_value(&self.http, g, &query)
                .await
                .map_err(|e| format!("the metric gate cannot be evaluated: {e}"))?;
            if v > g.max {
                return Err(format!(
                    "the metric gate is already breached before the release: `{query}` is {v}, over {}",
                    g.max
                ));
            }
        }
        if let Some(sil) = &r.playbook.silence {
            crate::monitor::check_alertmanager(&self.http, sil).await?;
        }
        Ok(())
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
            res = crate::monitor::watch_gate(&self.http, g, &query) => res,
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

    /// Silence the host's alerts before it leaves the registry (lifecycle step 3).
    async fn silence(&self, host: &Host, batch: usize) -> Result<Option<String>, String> {
        let Some(sil) = &self.release.playbook.silence else {
            return Ok(None);
        };
        let t = Instant::now();
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Silence,
        });
        match crate::monitor::create_silence(&self.http, &self.release, sil, host, &self.run_id).await {
            Ok((id, retried)) => {
                self.step_done(
                    batch,
                    &host.name,
                    Step::Silence,
                    Status::Ok,
                    t,
                    format!("silence {id}{retried}"),
                );
                Ok(Some(id))
            }
            Err(e) => {
                self.step_done(batch, &host.name, Step::Silence, Status::Failed, t, e.clone());
                Err(e)
            }
        }
    }

    /// Expire the silence once the host is back (lifecycle step 10); a failure is a warning:
    /// the silence ends by itself.
    async fn unsilence(&self, host: &Host, batch: usize, id: Option<String>) {
        let (Some(sil), Some(id)) = (&self.release.playbook.silence, id) else {
            return;
        };
        let t = Instant::now();
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Unsilence,
        });
        match crate::monitor::expire_silence(&self.http, sil, &id, self.release.playbook.registry_retry).await {
            Ok(retried) => self.step_done(
                batch,
                &host.name,
                Step::Unsilence,
                Status::Ok,
                t,
                format!("silence {id} expired{retried}"),
            ),
            Err(e) => self.step_done(
                batch,
                &host.name,
                Step::Unsilence,
                Status::Failed,
                t,
                format!(
                    "{e}; it ends by itself in {}",
                    crate::units::human_duration(sil.duration)
                ),
            ),
        }
    }

    async fn release_lock(&self, st: &HostState) {
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
                host: Some(st.conn.endpoint.name.clone()),
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
            .filter(|s| s.locked && !lost.contains(&s.conn.endpoint.name))
            .collect();
        let results = join_all(locked.iter().map(|s| s.conn.exec(&cmd, STEP_TIMEOUT))).await;
        for (st, res) in locked.into_iter().zip(results) {
            let host = st.conn.endpoint.name.clone();
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
    async fn keep_renewing(&self, states: &[Option<HostState>]) {
        loop {
            tokio::time::sleep(self.renew_every).await;
            self.renew_locks(states).await;
        }
    }

    fn finish(&self, o: &Outcome, started: Instant, msg: String) {
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

    async fn preflight(&self, host: &Host, batch: usize) -> Result<HostState, PreflightError> {
        let t = Instant::now();
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Preflight,
        });
        let result = self.preflight_checks(host).await;
        match &result {
            Ok(st) => {
                let note = match st.previous.as_deref() {
                    Some(p) if *p != st.target => format!("current release: {p}; going to {}", st.target),
                    Some(p) => format!("current release: {p}"),
                    None => format!("no current release; going to {}", st.target),
                };
                self.step_done(batch, &host.name, Step::Preflight, Status::Ok, t, note)
            }
            Err(e) => self.step_done(batch, &host.name, Step::Preflight, Status::Failed, t, e.msg.clone()),
        }
        result
    }

    async fn preflight_checks(&self, host: &Host) -> Result<HostState, PreflightError> {
        let r = &self.release;
        let check = self.mode == Mode::Check;
        let conn = Connection::open(&self.endpoint(host), &self.settings)
            .await
            .map_err(|e| match e.hint() {
                Some(h) => format!("{e} (hint: {h})"),
                None => e.to_string(),
            })?;
        let mut conn = conn;
        conn.become_root = wants_become(&r.playbook, host);
        if conn.become_root {
            let out = conn.exec("true", STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
            if !out.success() {
                let why = out.stderr.trim().lines().last().unwrap_or("").to_string();
                return Err(format!(
                    "become: `sudo -n` does not work for {} ({why}); it needs passwordless sudo",
                    conn.endpoint.user
                )
                .into());
            }
        }
        for learned in conn.take_learned_keys() {
            self.event(EventKind::Warning {
                host: Some(host.name.clone()),
                msg: learned.to_string(),
            });
        }
        let root_path = &r.playbook.layout.root;
        // One round trip: the layout (created unless this is a check), what is there, the free
        // space, and the lock (only looked at for a check).
        let cmd = crate::remote::preflight(
            root_path,
            &r.playbook.version,
            &r.sha256,
            check,
            conn.become_root,
            &self.lease.to_file(),
        );
        let out = match conn.exec(&cmd.to_command(), STEP_TIMEOUT).await {
            Ok(out) => out,
            Err(e) => {
                // The script may have taken the lock before the connection or the time ran out.
                if !check {
                    let release = crate::remote::lock::release(root_path, &self.run_id);
                    let _ = conn.exec(&release.to_command(), STEP_TIMEOUT).await;
                }
                conn.close().await;
                return Err(e.to_string().into());
            }
        };
        let report = PreflightReport::parse(&out.stdout);
        let acquired = report.lock.state == LockState::Acquired;
        if !out.success() {
            if acquired {
                let release = crate::remote::lock::release(root_path, &self.run_id);
                let _ = conn.exec(&release.to_command(), STEP_TIMEOUT).await;
            }
            conn.close().await;
            return Err(format!("checking the layout: {}", out.describe()).into());
        }
        let current = report.current.clone();
        let releases = report.releases.clone();
        let avail = report.avail_kib;
        // A resumed run knows what the host had before the interrupted run touched it.
        let previous = self.carried.previous.get(&host.name).cloned().or(current.clone());
        let mut st = HostState {
            conn,
            previous,
            staged_sha: report.staged.clone(),
            part: report.part,
            recorded_previous: report.previous.clone(),
            target: r.playbook.version.clone(),
            locked: acquired,
        };
        let fail = |st: HostState, e: PreflightError| async move {
            self.release_lock(&st).await;
            st.conn.close().await;
            Err(e)
        };
        if report.lock.state == LockState::Held {
            match report.lock.owner {
                Some(o) if o.run == self.run_id || o.is_expired() => {
                    if !check {
                        // Atomic: the stale lock is renamed away, then ours is put in place; of
                        // two runs taking it over at once, one wins and the other is refused.
                        let cmd = crate::remote::lock::take_over(root_path, &o, &self.lease);
                        match st.conn.exec(&cmd.to_command(), STEP_TIMEOUT).await {
                            Ok(out) if out.success() => st.locked = true,
                            Ok(out) if HostExit::of(&out) == Some(HostExit::LockLost) => {
                                let msg = match crate::remote::lock::LockReport::parse(&out.stdout).owner {
                                    Some(w) => {
                                        format!("locked by {} (it took over the expired lock first)", w.describe())
                                    }
                                    None => "another run took over the expired lock first".to_string(),
                                };
                                return fail(st, PreflightError { msg, locked: true }).await;
                            }
                            Ok(out) => {
                                // The takeover may have got as far as our new lock.
                                st.locked = true;
                                return fail(st, format!("taking over the lock: {}", out.describe()).into()).await;
                            }
                            Err(e) => {
                                st.locked = true;
                                return fail(st, format!("taking over the lock: {e}").into()).await;
                            }
                        }
                        if o.run != self.run_id {
                            self.event(EventKind::Warning {
                                host: Some(host.name.clone()),
                                msg: format!("took over an expired lock ({})", o.describe()),
                            });
                        }
                    }
                }
                Some(o) => {
                    return fail(
                        st,
                        PreflightError {
                            msg: format!("locked by {}", o.describe()),
                            locked: true,
                        },
                    )
                    .await
                }
                None => {
                    let msg = format!("{root_path}/.tranche-lock exists without an owner file; if no run is going on, `tranche unlock` removes it");
                    return fail(st, PreflightError { msg, locked: true }).await;
                }
            }
        }
        // Where this host goes.
        match &self.mode {
            Mode::Rollback { to: Some(v) } => {
                if !releases.contains(v) {
                    return fail(
                        st,
                        format!("release {v} is not on the host (it has: {})", releases.join(", ")).into(),
                    )
                    .await;
                }
                st.target = v.clone();
            }
            Mode::Rollback { to: None } => {
                // Only a release tranche recorded as the one before: staging runs ahead, so the
                // newest folder on a host may be a release it never ran.
                match (st.recorded_previous.clone().filter(|p| releases.contains(p)), &current) {
                    (Some(v), _) => st.target = v,
                    (None, Some(cur)) => {
                        self.event(EventKind::Warning {
                            host: Some(host.name.clone()),
                            msg: format!("no previous release recorded; it stays on {cur} (use --to VERSION)"),
                        });
                        st.target = cur.clone();
                    }
                    (None, None) => return fail(st, "no release on the host to roll back to".to_string().into()).await,
                }
            }
            Mode::Release | Mode::Check => {}
        }
        if let (Mode::Release | Mode::Check, Some(size), Some(avail)) = (&self.mode, r.artifact_size, avail) {
            // The archive and its unpacked copy.
            if st.staged_sha.is_none() && avail * 1024 < size * 3 {
                let msg = format!(
                    "only {} free under {}, the artifact needs about {}",
                    crate::units::human_size(avail * 1024),
                    root_path,
                    crate::units::human_size(size * 3)
                );
                return fail(st, msg.into()).await;
            }
        }
        if let Some(pre) = &r.playbook.hooks.precheck {
            let cmd = match r.render(pre, host, &self.run_id, st.previous.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(st, e.into()).await,
            };
            match st.conn.exec(&cmd, STEP_TIMEOUT).await {
                Ok(out) if out.success() => {}
                Ok(out) => return fail(st, format!("hooks.precheck failed: {}", out.describe()).into()).await,
                Err(e) => return fail(st, format!("hooks.precheck: {e}").into()).await,
            }
        }
        Ok(st)
    }

    /// Put the artifact on the host, verified, unpacked into `releases/<version>`.
    async fn stage(
        &self,
        host: &Host,
        conn: &Connection,
        batch: usize,
        staged_sha: Option<&str>,
        part_size: u64,
        target: &str,
    ) -> Result<(), String> {
        let t = Instant::now();
        let r = &self.release;
        let p = &r.playbook;
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Stage,
        });
        if matches!(self.mode, Mode::Rollback { .. }) {
            // Preflight checked that the release is on the host.
            self.step_done(
                batch,
                &host.name,
                Step::Stage,
                Status::Skipped,
                t,
                format!("{target} is on the host"),
            );
            return Ok(());
        }
        if staged_sha == Some(r.sha256.as_str()) {
            self.step_done(
                batch,
                &host.name,
                Step::Stage,
                Status::Skipped,
                t,
                "already staged with the same sha256",
            );
            return Ok(());
        }
        let root = &p.layout.root;
        let part = r.part_path();
        let rel = r.release_dir(&p.version);
        // After the transfer, in the same shell: check the sha256, unpack into a fresh directory,
        // mark it with the checksum and rename it into place (a release folder another tool
        // left, without the marker, is replaced unless it is live). One channel and one shell.
        let stage = |how: Transfer<'_>| {
            crate::remote::stage(root, &p.version, &r.sha256, how, p.rollout.stage_bandwidth).to_command()
        };
        let result = async {
            if staged_sha.is_some() {
                return Err(format!(
                    "{rel} already exists with another sha256 ({}); remove it or release under a new version",
                    staged_sha.unwrap_or_default()
                ));
            }
            let bw = p.rollout.stage_bandwidth;
            let (via, out) = match &p.artifact.source {
                ArtifactSource::Path(local) => {
                    // An upload cut earlier goes on from where it stopped, if what is there is
                    // the start of this artifact.
                    let size = r.artifact_size.unwrap_or(0);
                    let offset = resumable(conn, local, &part, part_size, size).await;
                    let resumed = match offset {
                        0 => String::new(),
                        n => format!(", resumed at {}", crate::units::human_size(n)),
                    };
                    // SFTP, whose acknowledged writes keep few bytes in flight (cheaper for
                    // sshd, see `upload_sftp`), then the check in one exec. Under `become`, or
                    // without an SFTP server, through the stdin of `sudo`/`sh` into `cat`, with
                    // the check in the same shell.
                    let sftp = if conn.become_root {
                        None
                    } else {
                        match conn.upload_sftp(local, &part, offset, bw, UPLOAD_TIMEOUT).await {
                            Ok(()) => Some(()),
                            Err(crate::ssh::SshError::NoSftp(why)) => {
                                self.event(EventKind::Warning {
                                    host: Some(host.name.clone()),
                                    msg: format!("no SFTP ({why}); uploading through `cat`"),
                                });
                                None
                            }
                            Err(e) => return Err(format!("uploading: {e}")),
                        }
                    };
                    match sftp {
                        Some(()) => {
                            let out = conn
                                .exec(&stage(Transfer::Sftp), STEP_TIMEOUT)
                                .await
                                .map_err(|e| e.to_string())?;
                            (format!("sftp{resumed}"), out)
                        }
                        None => {
                            let out = conn
                                .exec_with_input(&stage(Transfer::Stdin { offset }), local, offset, bw, UPLOAD_TIMEOUT)
                                .await
                                .map_err(|e| format!("uploading: {e}"))?;
                            (format!("exec{resumed}"), out)
                        }
                    }
                }
                ArtifactSource::Url(u) => {
                    let url = r.render(u, host, &self.run_id, None)?;
                    let cmd = stage(Transfer::Pull { url: &url });
                    let out = conn
                        .exec(&cmd, UPLOAD_TIMEOUT)
                        .await
                        .map_err(|e| format!("downloading: {e}"))?;
                    ("pull".to_string(), out)
                }
            };
            if !out.success() {
                return Err(match HostExit::of(&out) {
                    Some(HostExit::PartChanged) => format!("{}; the next run uploads it again", out.describe()),
                    _ => out.describe(),
                });
            }
            Ok((via, crate::remote::parse_staged(&out.stdout)))
        }
        .await;
        match &result {
            Ok((via, staged)) => {
                let note = match r.artifact_size {
                    Some(size) => format!("{} sent over {via}, sha256 verified", crate::units::human_size(size)),
                    None => "downloaded by the host, sha256 verified".into(),
                };
                let note = match staged {
                    Some(crate::remote::Staged::Adopted) => {
                        format!("{note}; the live {rel} was this artifact already: marked, left in place")
                    }
                    _ => note,
                };
                self.step_done(batch, &host.name, Step::Stage, Status::Ok, t, note)
            }
            Err(e) => self.step_done(batch, &host.name, Step::Stage, Status::Failed, t, e.clone()),
        }
        result.map(|_| ())
    }

    /// Steps 4 to 9 for one host of a batch; on failure, back to its previous release.
    async fn host_pipeline(
        &self,
        host: &Host,
        st: &HostState,
        batch: usize,
        staged: &mut watch::Receiver<Option<Result<(), String>>>,
    ) -> Status {
        let t = Instant::now();
        let r = &self.release;
        let version = st.target.clone();
        self.event(EventKind::HostStarted {
            batch,
            host: host.name.clone(),
            previous: st.previous.clone(),
        });
        // Wait for this host's staging.
        let stage = loop {
            if let Some(res) = staged.borrow().clone() {
                break res;
            }
            if staged.changed().await.is_err() {
                break Err("staging did not finish".into());
            }
        };
        if let Err(e) = stage {
            // A host an interrupted run had started on may be out of the registry, stopped, or
            // halfway: whatever staging says, it goes back to the release it had, or is named.
            if self.carried.started.contains(&host.name) {
                self.failed.fetch_add(1, Ordering::SeqCst);
                let back = self.bring_back(host, st, batch).await;
                let msg = match (back, st.previous.as_deref()) {
                    (Status::Reverted, Some(prev)) => format!("stage failed: {e}; back on {prev}"),
                    _ => format!("stage failed: {e}"),
                };
                self.host_done(batch, &host.name, back, t, msg);
                return back;
            }
            if self.is_interrupted() {
                self.host_done(
                    batch,
                    &host.name,
                    Status::Skipped,
                    t,
                    "not started: the run was interrupted",
                );
                return Status::Skipped;
            }
            // Nothing was changed: the host is still registered on its old release.
            self.failed.fetch_add(1, Ordering::SeqCst);
            self.host_done(batch, &host.name, Status::Failed, t, format!("stage failed: {e}"));
            return Status::Failed;
        }
        // Already there (and, for a release, with the same checksum): nothing to do, unless an
        // interrupted run had started on it, which may have left it out of the registry.
        let same = match self.mode {
            Mode::Release => st.staged_sha.as_deref() == Some(r.sha256.as_str()),
            _ => true,
        };
        let current = st.previous.as_deref() == Some(version.as_str());
        if current && same && !self.carried.started.contains(&host.name) {
            self.host_done(batch, &host.name, Status::Skipped, t, format!("already on {version}"));
            return Status::Skipped;
        }
        // At most `max_per_zone` hosts of a zone out of traffic at once, revert included.
        let _zone = self.zone_permit(host).await;
        if let Some(why) = self.no_new_host() {
            self.host_done(batch, &host.name, Status::Skipped, t, format!("not started: {why}"));
            return Status::Skipped;
        }
        let silence_id = match self.silence(host, batch).await {
            Ok(id) => id,
            Err(e) => {
                // Nothing was changed: the host is still registered on its old release.
                self.failed.fetch_add(1, Ordering::SeqCst);
                self.host_done(
                    batch,
                    &host.name,
                    Status::Failed,
                    t,
                    format!("silence failed: {e}; the host was not changed"),
                );
                return Status::Failed;
            }
        };
        let (status, msg) = match self.switch(host, st, batch, &version).await {
            Ok(()) => (Status::Ok, format!("on {version}")),
            Err((step, e)) => {
                let failed_now = self.failed.fetch_add(1, Ordering::SeqCst) + 1;
                let halt = policy::leaves_failed_host_out(
                    r.playbook.rollout.on_failure,
                    FailureBudget::new(r.budget),
                    failed_now,
                );
                let status = if step == Step::Deregister {
                    // The call failed, but the registry may have acted before it did (a drain
                    // cut short, an answer lost after the server took the host out): put it
                    // back. The host was not stopped; it still serves its old release.
                    match self.put_back(host, st, batch).await {
                        Ok(()) => Status::Failed,
                        Err(e2) => {
                            self.leave_out(
                                host,
                                format!("deregister failed ({e}) and putting it back failed too ({e2}); it may be out of the registry"),
                            );
                            Status::Failed
                        }
                    }
                } else if halt {
                    self.leave_out(
                        host,
                        format!(
                            "left out of the registry for inspection (on_failure: halt) after {} failed",
                            step.as_str()
                        ),
                    );
                    Status::Failed
                } else {
                    self.bring_back(host, st, batch).await
                };
                let msg = match status {
                    _ if step == Step::Deregister => format!("deregister failed: {e}; the host was not stopped"),
                    Status::Reverted => format!(
                        "{} failed: {e}; back on {}",
                        step.as_str(),
                        st.previous.as_deref().unwrap_or("?")
                    ),
                    _ => format!("{} failed: {e}", step.as_str()),
                };
                (status, msg)
            }
        };
        self.unsilence(host, batch, silence_id).await;
        self.host_done(batch, &host.name, status, t, msg);
        status
    }

    /// After a failure that may have taken `host` out of the registry: back to the release it
    /// had through the pipeline; failing that (its connection gone, say), back into the registry
    /// if it still serves that release; failing that, named as left out. Reverted or Failed.
    async fn bring_back(&self, host: &Host, st: &HostState, batch: usize) -> Status {
        let Some(prev) = st.previous.as_deref() else {
            self.leave_out(
                host,
                "no previous release to go back to; it is left out of the registry".into(),
            );
            return Status::Failed;
        };
        let Err((s2, e2)) = self.switch(host, st, batch, prev).await else {
            return Status::Reverted;
        };
        match self.restore_traffic(host, st, prev).await {
            Ok(note) => {
                self.event(EventKind::Warning {
                    host: Some(host.name.clone()),
                    msg: format!("revert stopped at {}: {e2}; {note}", s2.as_str()),
                });
                Status::Reverted
            }
            Err(e3) => {
                self.leave_out(
                    host,
                    format!(
                        "could not be brought back to {prev}: {} failed: {e2}; {e3}",
                        s2.as_str()
                    ),
                );
                Status::Failed
            }
        }
    }

    /// A command of the playbook exited while something it started still held its output: say
    /// so, since the step no longer waits for it (and the process may die with the session).
    fn warn_leaked(&self, host: &Host, what: &str, out: &crate::ssh::ExecOutput) {
        if let Some(stream) = out.leaked {
            self.event(EventKind::Warning {
                host: Some(host.name.clone()),
                msg: format!(
                    "{what} exited, but a process it left running still holds its {stream}; tranche stopped waiting for it. Redirect the output of what it starts in the background (`... >/dev/null 2>&1 &`, or a log file)"
                ),
            });
        }
    }

    /// Register `host` again (a `register` step of its own in the events).
    async fn put_back(&self, host: &Host, st: &HostState, batch: usize) -> Result<(), String> {
        let t = Instant::now();
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Register,
        });
        match self
            .registry
            .register(&self.release, host, &st.conn, &self.run_id)
            .await
        {
            Ok(note) => {
                self.step_done(batch, &host.name, Step::Register, Status::Ok, t, note);
                Ok(())
            }
            Err(e) => {
                self.step_done(batch, &host.name, Step::Register, Status::Failed, t, e.clone());
                Err(e)
            }
        }
    }

    /// Deregister, stop, point `current` at `version`, start, wait healthy, register.
    async fn switch(&self, host: &Host, st: &HostState, batch: usize, version: &str) -> Result<(), (Step, String)> {
        let r = &self.release;
        let p = &r.playbook;
        let conn = &st.conn;
        let name = host.name.clone();
        let prev = st.previous.as_deref();
        macro_rules! step {
            ($step:expr, $body:expr) => {{
                let t = Instant::now();
                self.event(EventKind::StepStarted {
                    batch,
                    host: name.clone(),
                    step: $step,
                });
                let res: Result<String, StepFailure> = $body.await.map_err(Into::into);
                match res {
                    Ok(note) => self.step_done(batch, &name, $step, Status::Ok, t, note),
                    Err(e) => {
                        self.event(EventKind::StepFinished {
                            batch,
                            host: name.clone(),
                            step: $step,
                            status: Status::Failed,
                            ms: t.elapsed().as_millis() as u64,
                            msg: e.msg.clone(),
                            stderr: e.stderr,
                        });
                        return Err(($step, e.msg));
                    }
                }
            }};
        }
        step!(Step::Deregister, self.registry.deregister(r, host, conn, &self.run_id));
        step!(Step::Stop, async {
            let Some(cmd) = &p.stop.command else {
                return Ok("no stop command".to_string());
            };
            let cmd = r.render(cmd, host, &self.run_id, prev)?;
            match conn.exec(&cmd, p.stop.timeout).await {
                Ok(out) if out.success() => Ok("stopped".to_string()),
                Ok(out) => Err(StepFailure::of("", &out)),
                Err(crate::ssh::SshError::Timeout(_)) => match &p.stop.kill_command {
                    Some(k) => {
                        let k = r.render(k, host, &self.run_id, prev)?;
                        let out = conn.exec(&k, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
                        if out.success() {
                            Ok(format!("killed after {}", crate::units::human_duration(p.stop.timeout)))
                        } else {
                            Err(StepFailure::of("kill_command failed: ", &out))
                        }
                    }
                    None => Err(format!("did not stop within {}", crate::units::human_duration(p.stop.timeout)).into()),
                },
                Err(e) => Err(e.to_string().into()),
            }
        });
        step!(Step::Deploy, async {
            let keep = p.layout.keep.max(1) as usize;
            // Where the host came from, for `tranche rollback`: the release it leaves, or, when
            // it goes back to that release (a revert), what was recorded before.
            let came_from = match prev {
                Some(p) if p != version => Some(p),
                _ => st.recorded_previous.as_deref(),
            };
            let cmd = crate::remote::switch(
                &p.layout.root,
                version,
                keep,
                prev.unwrap_or(""),
                came_from.unwrap_or(""),
            )
            .to_command();
            let out = conn.exec(&cmd, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
            if out.success() {
                Ok(format!("current -> releases/{version}"))
            } else {
                Err(StepFailure::of("", &out))
            }
        });
        step!(Step::Start, async {
            let Some(cmd) = &p.start else {
                return Ok("no start command".to_string());
            };
            let cmd = r.render(cmd, host, &self.run_id, prev)?;
            let out = conn.exec(&cmd, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
            self.warn_leaked(host, "start.command", &out);
            if !out.success() {
                return Err(StepFailure::of("", &out));
            }
            if let Some(after) = &p.hooks.after_start {
                let a = r.render(after, host, &self.run_id, prev)?;
                let out = conn.exec(&a, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
                self.warn_leaked(host, "hooks.after_start", &out);
                if !out.success() {
                    return Err(StepFailure::of("hooks.after_start failed: ", &out));
                }
            }
            Ok("started".to_string())
        });
        step!(
            Step::Health,
            crate::health::wait_healthy(r, host, conn, &self.run_id, version, &self.http)
        );
        step!(Step::Register, self.registry.register(r, host, conn, &self.run_id));
        Ok(())
    }

    /// Return a host this run changed to the release it had before.
    async fn zone_permit(&self, host: &Host) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let gate = self.zone_gates.get(&host.zone.clone().unwrap_or_default())?;
        gate.clone().acquire_owned().await.ok()
    }

    async fn rollback_host(&self, host: &Host, st: &HostState, batch: usize) -> bool {
        let t = Instant::now();
        let _zone = self.zone_permit(host).await;
        let Some(prev) = st.previous.clone() else {
            self.event(EventKind::Warning {
                host: Some(host.name.clone()),
                msg: "no previous release to roll back to".into(),
            });
            return false;
        };
        // A silence that cannot be made does not stop a rollback: the host must go back.
        let silence_id = self.silence(host, batch).await.unwrap_or(None);
        let result = self.switch(host, st, batch, &prev).await;
        self.unsilence(host, batch, silence_id).await;
        match result {
            Ok(()) => {
                self.host_done(batch, &host.name, Status::Reverted, t, format!("rolled back to {prev}"));
                true
            }
            Err((step, e)) => {
                self.leave_out(
                    host,
                    format!(
                        "rollback to {prev} failed at {}: {e}; check its registry state",
                        step.as_str()
                    ),
                );
                false
            }
        }
    }
}
