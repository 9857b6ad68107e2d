//! The executor: preflight on every host, staging ahead of the batches under a fleet-wide
//! limit, then the batches, each host through its pipeline (SPEC §1), a failure budget over the
//! whole run. It only emits events; it never prints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::{watch, Semaphore};

use crate::events::{Event, EventKind, Status, Step};
use crate::exit_code;
use crate::inventory::Host;
use crate::playbook::{shell_quote, ArtifactSource, OnFailure};
use crate::registry::RegistryClient;
use crate::release::Release;
use crate::ssh::{Connection, Endpoint, SshSettings};

/// Connections being set up at once (sshd's MaxStartups refuses bursts past 10 by default).
pub const CONNECT_CONCURRENCY: usize = 8;
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

pub type Emit = Arc<dyn Fn(Event) + Send + Sync>;

/// The SSH endpoint of an inventory host: its own variables, then the SSH config, then defaults.
pub fn endpoint(host: &Host, settings: &SshSettings) -> Endpoint {
    let explicit_address = ["address", "ansible_host", "ansible_ssh_host"]
        .iter()
        .any(|k| host.vars.contains_key(*k));
    let spec = crate::ssh::config::HostSpec {
        name: host.name.clone(),
        address: explicit_address.then(|| host.address.clone()),
        port: host.port,
        user: host.user.clone(),
        identity: host.identity_file.clone(),
        jump: host.jump.clone(),
    };
    crate::ssh::config::resolve(&spec, settings)
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
}

impl Executor {
    pub fn new(release: Release, settings: SshSettings, run_id: String, emit: Emit) -> Self {
        let secrets = release.secrets();
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
        }
    }

    fn event(&self, mut kind: EventKind) {
        kind.redact(&self.secrets);
        (self.emit)(Event::new(&self.run_id, kind));
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
        self.event(EventKind::RunStarted {
            service: p.service.clone(),
            version: p.version.clone(),
            hosts: r.targets.len(),
            plan: crate::report::plan::to_json(r),
        });
        let batch_of: HashMap<usize, usize> = r
            .batches
            .iter()
            .flat_map(|b| b.hosts.iter().map(move |&h| (h, b.number)))
            .collect();

        // 1. Preflight, every host, before anything changes.
        let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
        let states: Vec<Result<HostState, String>> = join_all(r.targets.iter().enumerate().map(|(i, h)| {
            let gate = gate.clone();
            let batch = batch_of[&i];
            async move {
                let _permit = gate.acquire().await.expect("gate");
                self.preflight(h, batch).await
            }
        }))
        .await;
        let preflight_failed = states.iter().filter(|s| s.is_err()).count();
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
        if preflight_failed > r.budget || delegate_error.is_some() {
            for s in states.into_iter().flatten() {
                s.conn.close().await;
            }
            let outcome = Outcome {
                exit_code: exit_code::PREFLIGHT,
                failed: preflight_failed,
                ..Default::default()
            };
            self.finish(
                &outcome,
                started,
                match delegate_error {
                    Some(e) => format!("{e}; nothing was changed"),
                    None => format!(
                        "preflight failed on {preflight_failed} host(s), over the budget of {}; nothing was changed",
                        r.budget
                    ),
                },
            );
            return outcome;
        }
        let mut states: Vec<Option<HostState>> = states.into_iter().map(Result::ok).collect();
        self.failed.store(preflight_failed, Ordering::SeqCst);

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
            let conn = &st.conn;
            stage_tasks.push(async move {
                let res = {
                    let _permit = limit.acquire().await.expect("stage limit");
                    if halted.load(std::sync::atomic::Ordering::SeqCst) {
                        Err("the run stopped before this host was staged".to_string())
                    } else {
                        self.stage(host, conn, batch, staged.as_deref()).await
                    }
                };
                let _ = tx.send(Some(res));
            });
        }
        let staging = join_all(stage_tasks);

        // 3. Batches.
        let mut results: HashMap<usize, Status> = HashMap::new();
        let mut over_budget = false;
        let mut declined = false;
        let batches_fut = async {
            for b in &r.batches {
                if over_budget {
                    break;
                }
                if b.number > 1 {
                    let pause = if b.number == 2 && r.batches[0].canary {
                        p.rollout.canary_pause
                    } else {
                        p.rollout.pause
                    };
                    if !self.pause(b.number, pause).await {
                        declined = true;
                        halted.store(true, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                }
                let names: Vec<String> = b.hosts.iter().map(|&i| r.targets[i].name.clone()).collect();
                let bstart = Instant::now();
                self.event(EventKind::BatchStarted {
                    batch: b.number,
                    hosts: names,
                });
                let outcomes = join_all(b.hosts.iter().map(|&i| {
                    let mut rx = stage_done[i].clone();
                    let st = states[i].as_ref();
                    async move {
                        let host = &r.targets[i];
                        let Some(st) = st else {
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
                let failed = outcomes
                    .iter()
                    .filter(|(_, s)| *s != Status::Ok && *s != Status::Skipped)
                    .count();
                for (i, s) in outcomes {
                    results.insert(i, s);
                }
                self.event(EventKind::BatchFinished {
                    batch: b.number,
                    ok: b.hosts.len() - failed,
                    failed,
                    ms: bstart.elapsed().as_millis() as u64,
                });
                if self.failed.load(Ordering::SeqCst) > r.budget {
                    over_budget = true;
                    halted.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        };
        // Staging runs on while the batches go; a batch waits for its own hosts only.
        tokio::join!(batches_fut, staging);

        // 4. Over budget: apply on_failure to hosts this run changed.
        let mut reverted = results.values().filter(|s| **s == Status::Reverted).count();
        if over_budget && p.rollout.on_failure == OnFailure::Rollback {
            let changed: Vec<usize> = results
                .iter()
                .filter(|(_, s)| **s == Status::Ok)
                .map(|(i, _)| *i)
                .collect();
            let rolled = join_all(changed.iter().map(|&i| {
                let st = states[i].as_ref().expect("changed hosts passed preflight");
                self.rollback_host(&r.targets[i], st, batch_of[&i])
            }))
            .await;
            for (&i, ok) in changed.iter().zip(rolled) {
                if ok {
                    results.insert(i, Status::Reverted);
                    reverted += 1;
                }
            }
        }
        for st in states.iter_mut().flatten() {
            st.conn.close().await;
        }
        self.registry.close().await;
        let ok = results.values().filter(|s| **s == Status::Ok).count();
        let skipped = results.values().filter(|s| **s == Status::Skipped).count();
        let failed = self.failed.load(Ordering::SeqCst);
        let code = if over_budget {
            exit_code::BUDGET_EXCEEDED
        } else if declined {
            exit_code::INTERRUPTED
        } else if failed > 0 {
            exit_code::HOSTS_FAILED
        } else {
            exit_code::SUCCESS
        };
        let outcome = Outcome {
            exit_code: code,
            ok,
            failed,
            reverted,
            skipped,
        };
        let msg = match code {
            exit_code::SUCCESS => format!("{} {} is on every targeted host", p.service, p.version),
            exit_code::INTERRUPTED => "stopped at a confirmation; hosts not reached keep their release".to_string(),
            exit_code::HOSTS_FAILED => format!(
                "{failed} host(s) failed within the budget of {} and were reverted",
                r.budget
            ),
            _ => format!(
                "{failed} host(s) failed, over the budget of {}; on_failure: {}",
                r.budget,
                p.rollout.on_failure.as_str()
            ),
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
                tokio::time::sleep(d).await;
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
                let answer = tokio::task::spawn_blocking(|| {
                    eprint!("continue with the next batch? [y/N] ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).ok();
                    matches!(line.trim(), "y" | "Y" | "yes")
                })
                .await
                .unwrap_or(false);
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

    async fn preflight(&self, host: &Host, batch: usize) -> Result<HostState, String> {
        let t = Instant::now();
        let r = &self.release;
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Preflight,
        });
        let result = async {
            let conn = Connection::open(&self.endpoint(host), &self.settings).await.map_err(|e| match e.hint() {
                Some(h) => format!("{e} (hint: {h})"),
                None => e.to_string(),
            })?;
            if let Some(algo) = &conn.learned_key {
                self.event(EventKind::Warning { host: Some(host.name.clone()), msg: format!("recorded a new {algo} host key in {} (--accept-new-host-keys)", self.settings.known_hosts.display()) });
            }
            let root = shell_quote(&r.playbook.layout.root);
            let rel = shell_quote(&r.release_dir(&r.playbook.version));
            let script = format!(
                "mkdir -p {root}/releases {root}/.tranche-stage && test -w {root} || {{ echo \"layout root {root} is not writable\" >&2; exit 10; }}; \
                 cur=$(readlink {root}/current 2>/dev/null || true); echo \"current=${{cur##*/}}\"; \
                 if [ -f {rel}/.tranche-sha256 ]; then echo \"staged=$(cat {rel}/.tranche-sha256)\"; fi; \
                 df -Pk {root} | awk 'NR==2 {{print \"avail=\" $4}}'"
            );
            let out = conn.exec(&script, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
            if !out.success() {
                return Err(format!("checking the layout: {}", out.describe()));
            }
            let field = |k: &str| out.stdout.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
            let previous = field("current=");
            let staged_sha = field("staged=");
            if let (Some(size), Some(avail)) = (r.artifact_size, field("avail=").and_then(|a| a.parse::<u64>().ok())) {
                // The archive and its unpacked copy.
                if staged_sha.is_none() && avail * 1024 < size * 3 {
                    return Err(format!("only {} free under {}, the artifact needs about {}", crate::units::human_size(avail * 1024), r.playbook.layout.root, crate::units::human_size(size * 3)));
                }
            }
            if let Some(pre) = &r.playbook.hooks.precheck {
                let cmd = r.render(pre, host, &self.run_id, previous.as_deref())?;
                let out = conn.exec(&cmd, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!("hooks.precheck failed: {}", out.describe()));
                }
            }
            Ok(HostState { conn, previous, staged_sha })
        }
        .await;
        match &result {
            Ok(st) => self.step_done(
                batch,
                &host.name,
                Step::Preflight,
                Status::Ok,
                t,
                format!("current release: {}", st.previous.as_deref().unwrap_or("none")),
            ),
            Err(e) => self.step_done(batch, &host.name, Step::Preflight, Status::Failed, t, e.clone()),
        }
        result
    }

    /// Put the artifact on the host, verified, unpacked into `releases/<version>`.
    async fn stage(
        &self,
        host: &Host,
        conn: &Connection,
        batch: usize,
        staged_sha: Option<&str>,
    ) -> Result<(), String> {
        let t = Instant::now();
        let r = &self.release;
        let p = &r.playbook;
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Stage,
        });
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
        let part = format!("{root}/.tranche-stage/{}.part", r.sha256);
        let rel = r.release_dir(&p.version);
        let (q_part, q_rel, q_sha) = (shell_quote(&part), shell_quote(&rel), shell_quote(&r.sha256));
        // A release folder another tool left (no checksum marker) is replaced, unless it is live.
        let (q_root, q_link) = (shell_quote(root), shell_quote(&format!("releases/{}", p.version)));
        let result = async {
            if staged_sha.is_some() {
                return Err(format!("{rel} already exists with another sha256 ({}); remove it or release under a new version", staged_sha.unwrap_or_default()));
            }
            let via = match &p.artifact.source {
                ArtifactSource::Path(local) => {
                    let bw = p.rollout.stage_bandwidth;
                    match conn.upload_sftp(local, &part, bw, UPLOAD_TIMEOUT).await {
                        Ok(()) => "sftp",
                        Err(crate::ssh::SshError::NoSftp(why)) => {
                            self.event(EventKind::Warning {
                                host: Some(host.name.clone()),
                                msg: format!("no SFTP ({why}); uploading through `cat`"),
                            });
                            let out = conn
                                .exec_with_input(&format!("cat > {q_part}"), local, bw, UPLOAD_TIMEOUT)
                                .await
                                .map_err(|e| format!("uploading: {e}"))?;
                            if !out.success() {
                                return Err(format!("uploading: {}", out.describe()));
                            }
                            "exec"
                        }
                        Err(e) => return Err(format!("uploading: {e}")),
                    }
                }
                ArtifactSource::Url(u) => {
                    let url = shell_quote(&r.render(u, host, &self.run_id, None)?);
                    let rate = p.rollout.stage_bandwidth;
                    let (curl_rate, wget_rate) = if rate > 0 { (format!(" --limit-rate {rate}"), format!(" --limit-rate={rate}")) } else { (String::new(), String::new()) };
                    let cmd = format!(
                        "if command -v curl >/dev/null; then curl -fsSL --retry 3{curl_rate} -o {q_part} {url}; \
                         elif command -v wget >/dev/null; then wget -q{wget_rate} -O {q_part} {url}; \
                         else echo 'neither curl nor wget is installed' >&2; exit 127; fi"
                    );
                    let out = conn.exec(&cmd, UPLOAD_TIMEOUT).await.map_err(|e| format!("downloading: {e}"))?;
                    if !out.success() {
                        return Err(format!("downloading {url}: {}", out.describe()));
                    }
                    "pull"
                }
            };
            let check = format!(
                "set -e; got=$(sha256sum {q_part} | cut -d' ' -f1); if [ \"$got\" != {q_sha} ]; then rm -f {q_part}; echo \"sha256 mismatch: got $got, expected {}\" >&2; exit 11; fi; \
                 rm -rf {q_rel}.tmp; mkdir -p {q_rel}.tmp; tar -xzf {q_part} -C {q_rel}.tmp; echo {q_sha} > {q_rel}.tmp/.tranche-sha256; \
                 if [ -e {q_rel} ] && [ \"$(readlink {q_root}/current)\" = {q_link} ]; then \
                   if diff -rq -x .tranche-sha256 {q_rel}.tmp {q_rel} >/dev/null 2>&1; then \
                     mv {q_rel}.tmp/.tranche-sha256 {q_rel}/; rm -rf {q_rel}.tmp {q_part}; exit 0; fi; \
                   echo {q_rel} 'is the current release, was not put there by tranche and differs from the artifact; release under another version' >&2; exit 12; \
                 fi; \
                 rm -rf {q_rel}; mv -T {q_rel}.tmp {q_rel}; rm -f {q_part}",
                r.sha256
            );
            let out = conn.exec(&check, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
            if !out.success() {
                return Err(out.describe());
            }
            Ok(via)
        }
        .await;
        match &result {
            Ok(via) => {
                let note = match r.artifact_size {
                    Some(size) => format!("{} sent over {via}, sha256 verified", crate::units::human_size(size)),
                    None => "downloaded by the host, sha256 verified".into(),
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
        let version = r.playbook.version.clone();
        self.event(EventKind::HostStarted {
            batch,
            host: host.name.clone(),
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
            // Nothing was changed: the host is still registered on its old release.
            self.failed.fetch_add(1, Ordering::SeqCst);
            self.host_done(batch, &host.name, Status::Failed, t, format!("stage failed: {e}"));
            return Status::Failed;
        }
        if st.previous.as_deref() == Some(version.as_str()) && st.staged_sha.as_deref() == Some(r.sha256.as_str()) {
            self.host_done(batch, &host.name, Status::Skipped, t, format!("already on {version}"));
            return Status::Skipped;
        }
        match self.switch(host, st, batch, &version).await {
            Ok(()) => {
                self.host_done(batch, &host.name, Status::Ok, t, format!("on {version}"));
                Status::Ok
            }
            Err((step, e)) => {
                let failed_now = self.failed.fetch_add(1, Ordering::SeqCst) + 1;
                let halt = r.playbook.rollout.on_failure == OnFailure::Halt && failed_now > r.budget;
                let status = if step == Step::Deregister {
                    // The host was never taken out: it still serves its old release.
                    Status::Failed
                } else if halt {
                    self.event(EventKind::Warning {
                        host: Some(host.name.clone()),
                        msg: format!(
                            "left out of the registry for inspection (on_failure: halt) after {} failed",
                            step.as_str()
                        ),
                    });
                    Status::Failed
                } else {
                    match &st.previous {
                        Some(prev) => match self.switch(host, st, batch, prev).await {
                            Ok(()) => Status::Reverted,
                            Err((s2, e2)) => {
                                self.event(EventKind::Warning { host: Some(host.name.clone()), msg: format!("could not be brought back to {prev}: {} failed: {e2}; it may be out of the registry", s2.as_str()) });
                                Status::Failed
                            }
                        },
                        None => {
                            self.event(EventKind::Warning {
                                host: Some(host.name.clone()),
                                msg: "no previous release to go back to; it is left out of the registry".into(),
                            });
                            Status::Failed
                        }
                    }
                };
                let msg = match status {
                    _ if step == Step::Deregister => format!("deregister failed: {e}; the host was not changed"),
                    Status::Reverted => format!(
                        "{} failed: {e}; back on {}",
                        step.as_str(),
                        st.previous.as_deref().unwrap_or("?")
                    ),
                    _ => format!("{} failed: {e}", step.as_str()),
                };
                self.host_done(batch, &host.name, status, t, msg);
                status
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
                let res: Result<String, String> = $body.await;
                match res {
                    Ok(note) => self.step_done(batch, &name, $step, Status::Ok, t, note),
                    Err(e) => {
                        self.step_done(batch, &name, $step, Status::Failed, t, e.clone());
                        return Err(($step, e));
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
                Ok(out) => Err(out.describe()),
                Err(crate::ssh::SshError::Timeout(_)) => match &p.stop.kill_command {
                    Some(k) => {
                        let k = r.render(k, host, &self.run_id, prev)?;
                        let out = conn.exec(&k, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
                        if out.success() {
                            Ok(format!("killed after {}", crate::units::human_duration(p.stop.timeout)))
                        } else {
                            Err(format!("kill_command failed: {}", out.describe()))
                        }
                    }
                    None => Err(format!(
                        "did not stop within {}",
                        crate::units::human_duration(p.stop.timeout)
                    )),
                },
                Err(e) => Err(e.to_string()),
            }
        });
        step!(Step::Deploy, async {
            let root = shell_quote(&p.layout.root);
            let rel = shell_quote(&format!("releases/{version}"));
            let keep = p.layout.keep.max(1) as usize;
            let keep_prev = shell_quote(prev.unwrap_or(""));
            let cmd = format!(
                "cd {root} && test -d {rel} && ln -sfn {rel} .current.tmp && mv -T .current.tmp current && \
                 ls -1t releases | while read -r d; do case \"$d\" in *.tmp) continue;; esac; n=$((n+1)); \
                 if [ $n -gt {keep} ] && [ \"$d\" != {v} ] && [ \"$d\" != {keep_prev} ]; then rm -rf \"releases/$d\"; fi; done",
                v = shell_quote(version)
            );
            let out = conn.exec(&cmd, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
            if out.success() {
                Ok(format!("current -> releases/{version}"))
            } else {
                Err(out.describe())
            }
        });
        step!(Step::Start, async {
            let Some(cmd) = &p.start else {
                return Ok("no start command".to_string());
            };
            let cmd = r.render(cmd, host, &self.run_id, prev)?;
            let out = conn.exec(&cmd, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
            if !out.success() {
                return Err(out.describe());
            }
            if let Some(after) = &p.hooks.after_start {
                let a = r.render(after, host, &self.run_id, prev)?;
                let out = conn.exec(&a, STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!("hooks.after_start failed: {}", out.describe()));
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
    async fn rollback_host(&self, host: &Host, st: &HostState, batch: usize) -> bool {
        let Some(prev) = st.previous.clone() else {
            self.event(EventKind::Warning {
                host: Some(host.name.clone()),
                msg: "no previous release to roll back to".into(),
            });
            return false;
        };
        match self.switch(host, st, batch, &prev).await {
            Ok(()) => {
                self.event(EventKind::HostFinished {
                    batch,
                    host: host.name.clone(),
                    status: Status::Reverted,
                    ms: 0,
                    msg: format!("rolled back to {prev}"),
                });
                true
            }
            Err((step, e)) => {
                self.event(EventKind::Warning {
                    host: Some(host.name.clone()),
                    msg: format!(
                        "rollback to {prev} failed at {}: {e}; check its registry state",
                        step.as_str()
                    ),
                });
                false
            }
        }
    }
}
