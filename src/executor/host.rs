//! One host of a batch through its pipeline (SPEC §1 steps 3 to 10), and the revert ladder when
//! a step fails: back to the previous release through the same steps; failing that, back into
//! the registry if it still serves that release; failing that, named as left out.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::stage::Staged;
use super::{Executor, HostState, Mode, STEP_TIMEOUT};
use crate::events::{EventKind, Status, Step};
use crate::inventory::Host;
use crate::policy::{self, FailureBudget};
use crate::registry::RegistryError;
use crate::remote::history::HostOutcome;
use crate::remote::{ExecOutput, RemoteError};

/// A failed step: the message, the tail of the command's stderr when a command failed, and the
/// advice of the layer that failed.
pub(super) struct StepFailure {
    pub msg: String,
    pub stderr: Option<String>,
    pub hint: Option<&'static str>,
    /// Whether the step may have acted before it failed (read after a failed deregister).
    pub may_have_acted: bool,
}

impl StepFailure {
    fn of(prefix: &str, out: &ExecOutput) -> StepFailure {
        StepFailure {
            msg: format!("{prefix}{}", out.describe()),
            stderr: Some(out.stderr_tail(20)).filter(|s| !s.is_empty()),
            hint: None,
            may_have_acted: true,
        }
    }
}

impl From<String> for StepFailure {
    fn from(msg: String) -> Self {
        StepFailure {
            msg,
            stderr: None,
            hint: None,
            may_have_acted: true,
        }
    }
}

impl From<RemoteError> for StepFailure {
    fn from(e: RemoteError) -> Self {
        StepFailure {
            msg: e.to_string(),
            stderr: None,
            hint: e.hint(),
            may_have_acted: true,
        }
    }
}

impl From<RegistryError> for StepFailure {
    fn from(e: RegistryError) -> Self {
        StepFailure {
            may_have_acted: e.may_have_acted(),
            hint: Some(e.hint()),
            msg: e.to_string(),
            stderr: None,
        }
    }
}

impl Executor {
    /// Record (in the events and the run's summary) that a host stays out of the registry.
    pub(super) fn leave_out(&self, host: &Host, msg: String) {
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
        crate::health::wait_healthy(r, host, &*st.conn, &self.run_id, prev, &self.http)
            .await
            .map_err(|e| format!("its health check on {prev} fails too ({e}); it is left out of the registry"))?;
        self.registrar
            .register(host, &*st.conn)
            .await
            .map_err(|e| format!("putting it back failed ({e}); it is left out of the registry"))?;
        Ok(format!("it still serves {prev} and is back in the registry"))
    }

    /// Silence the host's alerts before it leaves the registry (lifecycle step 3).
    pub(super) async fn silence(&self, host: &Host, batch: usize) -> Result<Option<String>, String> {
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
    pub(super) async fn unsilence(&self, host: &Host, batch: usize, id: Option<String>) {
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
    /// Steps 4 to 9 for one host of a batch; on failure, back to its previous release.
    pub(super) async fn host_pipeline(&self, host: &Host, st: &HostState, batch: usize, staged: &mut Staged) -> Status {
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
        // `changed`: the switch went past deregister, so the host's history gets a line.
        let (status, msg, changed) = match self.switch(host, st, batch, &version).await {
            Ok(()) => (Status::Ok, format!("on {version}"), true),
            Err((step, e, may_have_acted)) => {
                let failed_now = self.failed.fetch_add(1, Ordering::SeqCst) + 1;
                let halt = policy::leaves_failed_host_out(
                    r.playbook.rollout.on_failure,
                    FailureBudget::new(r.budget),
                    failed_now,
                );
                let status = if step == Step::Deregister && !may_have_acted {
                    // The registry refused (a 4xx, an explicit no) or was never reached: the
                    // host is still in traffic, and there is nothing to undo.
                    Status::Failed
                } else if step == Step::Deregister {
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
                (status, msg, step != Step::Deregister)
            }
        };
        self.unsilence(host, batch, silence_id).await;
        if changed {
            let outcome = match (status, &self.mode) {
                (Status::Ok, Mode::Rollback { .. }) => HostOutcome::RolledBack,
                (Status::Ok, _) => HostOutcome::Ok,
                (Status::Reverted, _) => HostOutcome::Reverted,
                _ => HostOutcome::Failed,
            };
            self.record_history(host, st, st.previous.as_deref(), &version, outcome)
                .await;
        }
        self.host_done(batch, &host.name, status, t, msg);
        status
    }

    /// Append the change to the host's `.tranche-history` (`remote::history`). A host whose
    /// history cannot be written is a warning: the change itself is done.
    pub(super) async fn record_history(
        &self,
        host: &Host,
        st: &HostState,
        from: Option<&str>,
        to: &str,
        outcome: HostOutcome,
    ) {
        let line = crate::remote::history::HistoryLine {
            time: crate::events::now_rfc3339(),
            run: self.run_id.clone(),
            operator: self.lease.operator.clone(),
            controller: self.lease.controller.clone(),
            from: from.unwrap_or_default().to_string(),
            to: to.to_string(),
            outcome: outcome.as_str().to_string(),
        };
        let cmd = crate::remote::history::append(&self.release.playbook.layout.root, &line).to_command();
        let why = match st.conn.exec(&cmd, STEP_TIMEOUT).await {
            Ok(out) if out.success() => return,
            Ok(out) => out.describe(),
            Err(e) => e.to_string(),
        };
        self.event(EventKind::Warning {
            host: Some(host.name.clone()),
            msg: format!("the change was not written to its .tranche-history: {why}"),
        });
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
        // The revert is a step of its own around the pipeline's steps it runs again.
        let t = Instant::now();
        self.event(EventKind::StepStarted {
            batch,
            host: host.name.clone(),
            step: Step::Revert,
        });
        let Err((s2, e2, _)) = self.switch(host, st, batch, prev).await else {
            self.step_done(
                batch,
                &host.name,
                Step::Revert,
                Status::Ok,
                t,
                format!("back on {prev}"),
            );
            return Status::Reverted;
        };
        match self.restore_traffic(host, st, prev).await {
            Ok(note) => {
                self.step_done(
                    batch,
                    &host.name,
                    Step::Revert,
                    Status::Ok,
                    t,
                    format!("stopped at {}; {note}", s2.as_str()),
                );
                self.event(EventKind::Warning {
                    host: Some(host.name.clone()),
                    msg: format!("revert stopped at {}: {e2}; {note}", s2.as_str()),
                });
                Status::Reverted
            }
            Err(e3) => {
                self.step_done(
                    batch,
                    &host.name,
                    Step::Revert,
                    Status::Failed,
                    t,
                    format!("{} failed: {e2}; {e3}", s2.as_str()),
                );
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
    fn warn_leaked(&self, host: &Host, what: &str, out: &ExecOutput) {
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
        match self.registrar.register(host, &*st.conn).await {
            Ok(note) => {
                self.step_done(batch, &host.name, Step::Register, Status::Ok, t, note);
                Ok(())
            }
            Err(e) => {
                let e = e.to_string();
                self.step_done(batch, &host.name, Step::Register, Status::Failed, t, e.clone());
                Err(e)
            }
        }
    }

    /// Deregister, stop, point `current` at `version`, start, wait healthy, register.
    pub(super) async fn switch(
        &self,
        host: &Host,
        st: &HostState,
        batch: usize,
        version: &str,
    ) -> Result<(), (Step, String, bool)> {
        let r = &self.release;
        let p = &r.playbook;
        let conn = &*st.conn;
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
                        let (msg, acted) = (e.msg.clone(), e.may_have_acted);
                        self.step_failed(batch, &name, $step, t, e);
                        return Err(($step, msg, acted));
                    }
                }
            }};
        }
        step!(Step::Deregister, self.registrar.deregister(host, conn));
        step!(Step::Stop, async {
            let Some(cmd) = &p.stop.command else {
                if let crate::playbook::ArtifactSource::Image(img) = &p.artifact.source {
                    return super::image::stop(conn, img, p).await.map_err(StepFailure::from);
                }
                return Ok("no stop command".to_string());
            };
            // Blue-green slots: a slot with no release yet has no instance that tranche started
            // (each slot's instance runs from the slot's own `current`): nothing to stop.
            let slots = matches!(
                p.strategy.blue_green().map(|b| &b.shape),
                Some(crate::playbook::Shape::Slots { .. })
            );
            if prev.is_none() && slots {
                return Ok("no release in this slot yet: nothing to stop".to_string());
            }
            let cmd = super::image::render_command(r, conn, host, &self.run_id, prev, cmd).await?;
            match conn.exec(&cmd, p.stop.timeout).await {
                Ok(out) if out.success() => Ok("stopped".to_string()),
                Ok(out) => Err(StepFailure::of("", &out)),
                Err(RemoteError::Timeout(_)) => match &p.stop.kill_command {
                    Some(k) => {
                        let k = super::image::render_command(r, conn, host, &self.run_id, prev, k).await?;
                        let out = conn.exec(&k, STEP_TIMEOUT).await?;
                        if out.success() {
                            Ok(format!("killed after {}", crate::units::human_duration(p.stop.timeout)))
                        } else {
                            Err(StepFailure::of("kill_command failed: ", &out))
                        }
                    }
                    None => Err(format!("did not stop within {}", crate::units::human_duration(p.stop.timeout)).into()),
                },
                Err(e) => Err(e.into()),
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
            let out = conn.exec(&cmd, STEP_TIMEOUT).await?;
            if out.success() {
                Ok(format!("current -> releases/{version}"))
            } else {
                Err(StepFailure::of("", &out))
            }
        });
        step!(Step::Start, async {
            let Some(cmd) = &p.start else {
                if let crate::playbook::ArtifactSource::Image(img) = &p.artifact.source {
                    return super::image::start(r, conn, host, &self.run_id, img, version).await;
                }
                return Ok("no start command".to_string());
            };
            let cmd = super::image::render_command(r, conn, host, &self.run_id, prev, cmd).await?;
            let out = conn.exec(&cmd, STEP_TIMEOUT).await?;
            self.warn_leaked(host, "start.command", &out);
            if !out.success() {
                return Err(StepFailure::of("", &out));
            }
            if let Some(after) = &p.hooks.after_start {
                let a = super::image::render_command(r, conn, host, &self.run_id, prev, after).await?;
                let out = conn.exec(&a, STEP_TIMEOUT).await?;
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
        step!(Step::Register, self.registrar.register(host, conn));
        Ok(())
    }

    /// A place among the hosts of `host`'s zone out of traffic (`rollout.max_per_zone`), held
    /// until dropped; none without the limit.
    pub(super) async fn zone_permit(&self, host: &Host) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let gate = self.zone_gates.get(&host.zone.clone().unwrap_or_default())?;
        gate.clone().acquire_owned().await.ok()
    }
}
