//! Preflight: every host reached and checked (layout, space, lock, the version's target)
//! before anything changes, with the registry's own links and the monitoring; the run is
//! refused here when the policy says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::{fan_out, wants_become, Executor, Mode, RunStats, STEP_TIMEOUT};
use crate::events::{EventKind, Status, Step};
use crate::inventory::Host;
use crate::policy::{self, FailureBudget};
use crate::registry::LinkRole;
use crate::remote::lock::LockState;
use crate::remote::{HostExit, PreflightReport, RemoteHost};
use crate::report::summary;
use crate::ssh::Connection;

/// Why preflight refused a host.
pub(super) struct PreflightError {
    msg: String,
    /// Another run holds the host's lock: the whole run is refused, whatever the budget.
    locked: bool,
    /// Advice from the layer that failed (an SSH error's hint).
    hint: Option<&'static str>,
    /// Programs staging needs that the host lacks: the whole run is refused.
    missing: Vec<String>,
}

impl From<String> for PreflightError {
    fn from(msg: String) -> Self {
        PreflightError {
            msg,
            locked: false,
            hint: None,
            missing: vec![],
        }
    }
}

/// Why a program staging needs is needed, for the refusal.
fn needed_for(program: &str) -> &'static str {
    match program {
        "zstd" => "it unpacks .tar.zst artifacts",
        "curl" => "it reads the artifact store's credentials on stdin, where `ps` cannot see them",
        _ => "staging needs it",
    }
}

/// "zstd is not installed on h2, h3 (it unpacks .tar.zst artifacts)", one clause per program.
fn missing_tools(per_host: &[(String, Vec<String>)]) -> Option<String> {
    let mut programs: Vec<&str> = per_host
        .iter()
        .flat_map(|(_, m)| m.iter().map(String::as_str))
        .collect();
    programs.sort_unstable();
    programs.dedup();
    let clauses: Vec<String> = programs
        .iter()
        .map(|p| {
            let hosts: Vec<&str> = per_host
                .iter()
                .filter(|(_, m)| m.iter().any(|x| x == p))
                .map(|(h, _)| h.as_str())
                .collect();
            format!("{p} is not installed on {} ({})", hosts.join(", "), needed_for(p))
        })
        .collect();
    (!clauses.is_empty()).then(|| clauses.join("; "))
}

/// What preflight learned about a host.
pub(super) struct HostState {
    pub conn: Arc<dyn RemoteHost>,
    /// The release `current` pointed to before the run.
    pub previous: Option<String>,
    /// The checksum recorded in `releases/<version>` when it is already there.
    pub staged_sha: Option<String>,
    /// The size of an upload or download of this artifact that was cut earlier (0: none).
    pub part: u64,
    /// What `.tranche-previous` said at preflight (the release before the current one).
    pub recorded_previous: Option<String>,
    /// The release this run moves the host to.
    pub target: String,
    /// This run holds the host's lock.
    pub locked: bool,
}

/// What preflight decided.
pub(super) enum Preflight {
    /// Go on, with these hosts (None: the host failed preflight).
    Go(Vec<Option<HostState>>),
    /// The run ends here (a check, or a refusal): its statistics and last line.
    Stop(RunStats, String),
}

impl Executor {
    /// Preflight on every host (at most `--max-connecting` connecting at once), then the
    /// registry's links and the monitoring; the policy's verdict.
    pub(super) async fn preflight_all(&self, batch_of: &HashMap<usize, usize>) -> Preflight {
        let r = self.release.clone();
        let states: Vec<Result<HostState, PreflightError>> =
            fan_out::bounded(r.targets.iter().enumerate(), self.settings.max_connecting, |(i, h)| {
                let batch = batch_of[&i];
                async move {
                    let st = self.preflight(h, batch).await;
                    // A check keeps no connection: open files stay bounded by --max-connecting.
                    if let (Mode::Check, Ok(st)) = (&self.mode, &st) {
                        st.conn.close().await;
                    }
                    st
                }
            })
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
        // A program staging needs is missing somewhere: the run is refused whatever the budget,
        // before any host changes.
        let missing: Vec<(String, Vec<String>)> = states
            .iter()
            .zip(&r.targets)
            .filter_map(|(s, h)| match s {
                Err(e) if !e.missing.is_empty() => Some((h.name.clone(), e.missing.clone())),
                _ => None,
            })
            .collect();
        let missing = missing_tools(&missing);
        let lock_holders: Vec<String> = holders
            .iter()
            .map(|(m, hs)| format!("{} ({m})", hs.join(", ")))
            .collect();
        if self.mode == Mode::Check {
            for s in states.iter().flatten() {
                s.conn.close().await;
            }
            let stats = RunStats {
                exit_code: policy::check_exit_code(preflight_failed),
                ok: r.targets.len() - preflight_failed,
                failed: preflight_failed,
                ..Default::default()
            };
            return Preflight::Stop(stats, summary::checked(r.targets.len(), preflight_failed));
        }
        // The registry's own link (a `command` delegate, an HAProxy load balancer host), the
        // registry itself, and the monitoring the run relies on must answer before any host
        // changes.
        let delegate_error = match missing {
            Some(m) => Some(m),
            None => match self.connect_registry().await {
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
            let stats = RunStats {
                exit_code: code,
                failed: preflight_failed,
                ..Default::default()
            };
            let refusal = match delegate_error {
                Some(e) => summary::Refusal::Unreachable(e),
                None if !lock_holders.is_empty() => summary::Refusal::Locked(lock_holders),
                None => summary::Refusal::OverBudget {
                    failed: preflight_failed,
                    budget: r.budget,
                },
            };
            return Preflight::Stop(stats, summary::refused(&refusal));
        }
        self.failed.store(
            preflight_failed + self.carried.failed,
            std::sync::atomic::Ordering::SeqCst,
        );
        Preflight::Go(states.into_iter().map(Result::ok).collect())
    }

    /// The registry must answer before anything changes. The host its calls go through is
    /// connected first: a `command` delegate (a host of the inventory, not a released one), or
    /// the load balancer host of `registry.address: ssh://[user@]lb-host[:port]/path` (an
    /// inventory host by that name, or any host the SSH config resolves).
    async fn connect_registry(&self) -> Result<(), String> {
        let r = &self.release;
        if let Some(link) = self.registry.link() {
            let target = &link.target;
            let host = r.inventory.host(target);
            let ep = crate::registry::link_endpoint(r, &link, &self.settings)?;
            let t = Instant::now();
            let mut conn = match (Connection::open(&ep, &self.settings).await, link.role) {
                (Ok(conn), _) => conn,
                (Err(e), LinkRole::Delegate) => {
                    self.step_done(
                        0,
                        target,
                        Step::Preflight,
                        Status::Failed,
                        t,
                        format!("registry delegate: {e}"),
                    );
                    return Err(format!("the registry delegate {target} cannot be reached: {e}"));
                }
                (Err(e), LinkRole::LoadBalancer) => return Err(format!("the load balancer host {target}: {e}")),
            };
            if let (Some(h), LinkRole::LoadBalancer) = (host, link.role) {
                conn.become_root = wants_become(&r.playbook, h);
            }
            self.registry.attach(conn);
        }
        self.registry.preflight().await.map_err(String::from)
    }

    /// Before anything changes: the gate's query answers, and Alertmanager answers.
    async fn check_monitoring(&self) -> Result<(), String> {
        let r = &self.release;
        if let (Some(g), Some(first)) = (&r.playbook.rollout.gate, r.targets.first()) {
            let query = r.render(&g.query, first, &self.run_id, None)?;
            let v = self
                .gate_probe
                .value(g, &query)
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
            Err(e) => self.step_failed(
                batch,
                &host.name,
                Step::Preflight,
                t,
                super::StepFailure {
                    msg: e.msg.clone(),
                    stderr: None,
                    hint: e.hint,
                    may_have_acted: true,
                },
            ),
        }
        result
    }

    async fn preflight_checks(&self, host: &Host) -> Result<HostState, PreflightError> {
        let r = &self.release;
        let check = self.mode == Mode::Check;
        let conn = self
            .connector
            .connect(host, wants_become(&r.playbook, host))
            .await
            .map_err(|e| PreflightError {
                msg: e.to_string(),
                locked: false,
                hint: e.hint(),
                missing: vec![],
            })?;
        if conn.becomes_root() {
            let out = conn.exec("true", STEP_TIMEOUT).await.map_err(|e| e.to_string())?;
            if !out.success() {
                let why = out.stderr.trim().lines().last().unwrap_or("").to_string();
                return Err(format!(
                    "become: `sudo -n` does not work for {} ({why}); it needs passwordless sudo",
                    conn.user()
                )
                .into());
            }
        }
        for learned in conn.take_learned_keys() {
            self.event(EventKind::Warning {
                host: Some(host.name.clone()),
                msg: learned,
            });
        }
        let root_path = &r.playbook.layout.root;
        // One round trip: the layout (created unless this is a check), what is there, the free
        // space, and the lock (only looked at for a check).
        // What staging needs (`zstd`, `curl`): looked at first, before anything is created.
        let needs = match self.mode {
            Mode::Release | Mode::Check => r.playbook.artifact.store.needs(),
            Mode::Rollback { .. } => vec![],
        };
        let cmd = crate::remote::preflight_needing(
            root_path,
            &r.playbook.version,
            &r.sha256,
            check,
            conn.becomes_root(),
            &self.lease.to_file(),
            &needs,
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
        if HostExit::of(&out) == Some(HostExit::MissingTools) && !report.missing.is_empty() {
            // Nothing was created nor locked on this host.
            conn.close().await;
            let msg = report
                .missing
                .iter()
                .map(|p| format!("{p} is not installed ({})", needed_for(p)))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PreflightError {
                msg,
                locked: false,
                hint: None,
                missing: report.missing,
            });
        }
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
                                return fail(
                                    st,
                                    PreflightError {
                                        msg,
                                        locked: true,
                                        hint: None,
                                        missing: vec![],
                                    },
                                )
                                .await;
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
                            hint: None,
                            missing: vec![],
                        },
                    )
                    .await
                }
                None => {
                    let msg = format!("{root_path}/.tranche-lock exists without an owner file; if no run is going on, `tranche unlock` removes it");
                    return fail(
                        st,
                        PreflightError {
                            msg,
                            locked: true,
                            hint: None,
                            missing: vec![],
                        },
                    )
                    .await;
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
        if let crate::playbook::ArtifactSource::Image(img) = &r.playbook.artifact.source {
            // The container runtime the image needs (`artifact.runtime`, or whichever it has).
            if let Err(e) = super::image::preflight(&*st.conn, img, &r.playbook).await {
                return fail(st, e.into()).await;
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
}
