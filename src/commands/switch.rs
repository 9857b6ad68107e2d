//! `tranche switch [--back]`: move all traffic of a blue-green service to its other side in one
//! step, and record the live side on every host. Also the blue-green `release`: the idle side
//! through the ordinary executor, then the switch, the watch, and the switch back on a breach.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{inputs, run, CommandError};
use crate::bluegreen::{self, BlueGreenError};
use crate::cli::{Files, RunOptions, SshOptions, TrafficOutput};
use crate::events::{EventKind, Status};
use crate::executor::EmitKind;
use crate::exit_code;
use crate::journal::{Carried, RunRecord};
use crate::playbook::Side;
use crate::release::Release;
use crate::remote::bluegreen::LiveRecord;
use crate::report::summary::{self, Switch};
use crate::ssh::SshSettings;

/// `tranche switch`: to the other side; `--back`: to the side live before the last switch;
/// `--to SIDE`: to that side, also when no side is live yet.
pub fn switch(
    files: &Files,
    back: bool,
    to: Option<Side>,
    out: &TrafficOutput,
    ssh: &SshOptions,
) -> anyhow::Result<i32> {
    let (req, r) = inputs::release(files)?;
    bluegreen::settings(&r).map_err(plan_error)?;
    let settings = inputs::ssh_settings(ssh)?;
    let records = live_records(&r, &settings)?;
    let live = bluegreen::agreed_live(&records).map_err(plan_error)?;
    let to = match (to, live, back) {
        (Some(to), _, _) => to,
        (None, None, _) => {
            return Err(
                CommandError::new("no side of this service is live yet: there is nothing to switch")
                    .hint("`tranche switch --to blue` (or green) makes a side live; `tranche release` releases the idle side and switches to it")
                    .code(exit_code::PREFLIGHT)
                    .into(),
            )
        }
        (None, Some(l), false) => l.other(),
        (None, Some(l), true) => match records
            .first()
            .and_then(|(_, rec)| rec.previous.as_deref().and_then(Side::parse))
        {
            Some(p) if p != l => p,
            _ => {
                return Err(CommandError::new(format!(
                    "{l} is live and no other side was live before it: there is nothing to switch back to"
                ))
                .code(exit_code::PREFLIGHT)
                .into())
            }
        },
    };
    // A retired side's instances are stopped: refuse at once rather than after HAProxy's wait
    // for servers that will never come UP.
    if let Some(host) = retired_on(&records, to) {
        return Err(CommandError::new(format!(
            "{to} is retired (stopped by `tranche retire`, recorded on {host}): traffic stays on {}",
            live.map_or("none", Side::as_str)
        ))
        .hint(format!(
            "`tranche release` onto {to} starts it again and switches to it"
        ))
        .code(exit_code::PREFLIGHT)
        .into());
    }
    // From here on hosts change: the switch is a run of its own, journaled.
    let run = super::by_hand::ByHand::start(files, &req, &r, "switch", Some(to.to_string()), out)?;
    let why = if back { "back" } else { "manual" };
    let from = live.map(|l| l.to_string());
    let service = r.playbook.service.clone();
    let moved = inputs::runtime().block_on(switch_to_async(&r, &settings, to, run.run_id()));
    let (code, msg) = match moved {
        Ok(moved) => {
            let line = format!(
                "switched {service} from {} to {to} in {} (first to last {})",
                live.map_or("none", Side::as_str),
                switch_time(moved.0),
                bluegreen::unit(&r).0
            );
            run.event(switched_event(from, to, why, 100, Some(moved), Ok(line.clone())));
            (exit_code::SUCCESS, line)
        }
        Err(e) => {
            let error = e.to_string();
            run.event(switched_event(from, to, why, 100, None, Err(&error)));
            let stays = live.map_or("no side".to_string(), |l| format!("{l}"));
            (
                code_of(&e),
                format!("the switch to {to} failed; traffic stays on {stays}"),
            )
        }
    };
    Ok(run.finish(code, msg))
}

/// The blue-green release: the idle side through the executor (stage, stop, deploy, start,
/// health, under the usual limits; no traffic moves), then, still inside the run (its events,
/// journal, JUnit and summary line), every server switched at once and the gate's watch; on a
/// breach, traffic goes back to the side that was live.
pub fn release(
    r: Release,
    record: RunRecord,
    carried: Carried,
    run: &RunOptions,
    ssh: &SshOptions,
) -> anyhow::Result<i32> {
    let bg = bluegreen::settings(&r).map_err(plan_error)?.clone();
    let settings = inputs::ssh_settings(ssh)?;
    let records = live_records(&r, &settings)?;
    let live = bluegreen::agreed_live(&records).map_err(plan_error)?;
    let idle = live.map_or(Side::Blue, Side::other);
    let serving = bluegreen::serving_before_first_switch(&r, live, idle, &records).map_err(plan_error)?;
    if !serving.is_empty() {
        let shown: Vec<String> = serving.iter().take(5).map(|(h, v)| format!("{h} runs {v}")).collect();
        let more = serving.len().saturating_sub(shown.len());
        return Err(CommandError::new(format!(
            "no side of {} is recorded live yet, and the {idle} side's hosts already run a release ({}{}): \
             releasing it would stop them while they may serve; nothing was changed",
            r.playbook.service,
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ))
        .hint(format!(
            "`tranche switch --to {}` moves all traffic to the {} side and records it live; then `tranche release` releases the {idle} side",
            idle.other(),
            idle.other()
        ))
        .code(exit_code::PREFLIGHT)
        .into());
    }
    let run_id = record.run_id.clone();
    eprintln!(
        "blue-green ({}): {} live; releasing {} on the {idle} side",
        bg.shape.as_str(),
        live.map_or("no side".to_string(), |l| format!("{l} is")),
        r.playbook.version
    );
    let idle_r = bluegreen::idle_release(&r, idle).map_err(plan_error)?;
    // Checked before any host changes: a switch that cannot be planned stops the run here.
    bluegreen::switch_count(&r, idle, &run_id).map_err(plan_error)?;
    let query = match (&r.playbook.rollout.gate, r.targets.first()) {
        (Some(g), Some(h)) => Some(r.render(&g.query, h, &run_id, None).map_err(CommandError::new)?),
        _ => None,
    };
    // A retired idle side was stopped: its hosts go through the whole pipeline (stop, deploy,
    // start, health) even where its slot already holds this version, as a resumed run's do.
    let mut carried = carried;
    let idle_name = idle.as_str();
    for (host, rec) in &records {
        if rec.retired.as_deref() == Some(idle_name) && idle_r.targets.iter().any(|h| &h.name == host) {
            carried.started.insert(host.clone());
        }
    }
    let reached = Arc::new(AtomicBool::new(false));
    let plan = Arc::new(SwitchPlan {
        r,
        settings,
        canary: bg.canary_weight,
        retire_after: bg.retire_after,
        live,
        idle,
        run_id,
        query,
    });
    let seen = reached.clone();
    let after: crate::executor::AfterHosts = Arc::new(move |emit| {
        seen.store(true, Ordering::SeqCst);
        let plan = plan.clone();
        Box::pin(async move { plan.go(&emit).await })
    });
    let code = run::execute_then(
        idle_r,
        record,
        crate::executor::Mode::Release,
        carried,
        run,
        ssh,
        Some(after),
    )?;
    if !reached.load(Ordering::SeqCst) {
        eprintln!("the {idle} side did not come up whole: traffic was not switched");
    }
    Ok(code)
}

/// What the switch of a release needs, once the idle side is up.
struct SwitchPlan {
    r: Release,
    settings: SshSettings,
    canary: u8,
    retire_after: Option<Duration>,
    live: Option<Side>,
    idle: Side,
    run_id: String,
    /// The gate's query, rendered; none without a gate.
    query: Option<String>,
}

impl SwitchPlan {
    /// The canary period (if any), the switch, the watch, and the switch back on a breach:
    /// each move a `switched` event. The exit code and the run's last line.
    async fn go(&self, emit: &EmitKind) -> (i32, String) {
        let (r, idle) = (&self.r, self.idle);
        let (service, version) = (r.playbook.service.as_str(), r.playbook.version.as_str());
        let http = reqwest::Client::new();
        let gate = r.playbook.rollout.gate.clone();
        let from = self.live.map(|s| s.as_str().to_string());
        let failed = |to: Side, e: BlueGreenError, emit: &EmitKind| {
            let error = e.to_string();
            emit(switched_event(from.clone(), to, "release", 100, None, Err(&error)));
            let code = code_of(&e);
            (
                code,
                summary::switched(
                    service,
                    version,
                    &Switch::Failed {
                        to: to.as_str(),
                        error: &error,
                    },
                ),
            )
        };
        // The canary period: the new side takes `canary_weight` percent while the gate watches.
        if let (Some(g), Some(q), true) = (&gate, &self.query, self.canary > 0) {
            match bluegreen::move_traffic(r, &self.settings, idle, Some(self.canary), &self.run_id).await {
                Ok(moved) => emit(switched_event(
                    from.clone(),
                    idle,
                    "canary",
                    self.canary.into(),
                    Some(moved),
                    Ok(format!("canary: the {idle} side takes {}% of the traffic", self.canary)),
                )),
                Err(e) => return failed(idle, e, emit),
            }
            if let Err(breach) = crate::monitor::watch_gate(&http, g, q).await {
                let back = self.live.unwrap_or(idle.other());
                return match self.go_back(back, true, &breach, emit).await {
                    Ok(done) => done,
                    Err(e) => failed(back, e, emit),
                };
            }
        }
        let (took, servers) = match switch_to_async(r, &self.settings, idle, &self.run_id).await {
            Ok(done) => done,
            Err(e) => return failed(idle, e, emit),
        };
        let t = switch_time(took);
        emit(switched_event(
            from.clone(),
            idle,
            "release",
            100,
            Some((took, servers)),
            Ok(format!(
                "switched {service} to {idle} in {t} (first to last {})",
                bluegreen::unit(r).0
            )),
        ));
        if let (Some(g), Some(q)) = (&gate, &self.query) {
            if let Err(breach) = crate::monitor::watch_gate(&http, g, q).await {
                let Some(back) = self.live else {
                    emit(EventKind::Warning {
                        host: None,
                        msg: format!(
                            "gate breached after the switch ({breach}); no side was live before: nothing to switch back to"
                        ),
                    });
                    let s = Switch::GateFailed {
                        during_canary: false,
                        back: None,
                    };
                    return (exit_code::BUDGET_EXCEEDED, summary::switched(service, version, &s));
                };
                return match self.go_back(back, false, &breach, emit).await {
                    Ok(done) => done,
                    Err(e) => failed(back, e, emit),
                };
            }
        }
        let s = Switch::Done {
            to: idle.as_str(),
            servers,
            unit: bluegreen::unit(r).1,
            took: &t,
        };
        let done = summary::switched(service, version, &s);
        match (self.retire_after, self.live) {
            (Some(wait), Some(old)) => self.retire_after(wait, old, &http, done, emit).await,
            _ => (exit_code::SUCCESS, done),
        }
    }

    /// The gate breached: all traffic back on `back`, a `switched` event of why `back`, exit 4.
    /// During the canary the live side never changed, so only the traffic moves; after the
    /// switch, `back` is recorded live again on every host.
    async fn go_back(
        &self,
        back: Side,
        during_canary: bool,
        breach: &str,
        emit: &EmitKind,
    ) -> Result<(i32, String), BlueGreenError> {
        let (r, idle) = (&self.r, self.idle);
        let (moved, msg) = if during_canary {
            let moved = bluegreen::move_traffic(r, &self.settings, back, None, &self.run_id).await?;
            (
                moved,
                format!("gate breached during the canary ({breach}): all traffic back on {back}"),
            )
        } else {
            let moved = switch_to_async(r, &self.settings, back, &self.run_id).await?;
            let t = switch_time(moved.0);
            (
                moved,
                format!("gate breached after the switch ({breach}): switched back to {back} in {t}"),
            )
        };
        emit(switched_event(
            Some(idle.to_string()),
            back,
            "back",
            100,
            Some(moved),
            Ok(msg),
        ));
        let s = Switch::GateFailed {
            during_canary,
            back: Some(back.as_str()),
        };
        let done = summary::switched(&r.playbook.service, &r.playbook.version, &s);
        Ok((exit_code::BUDGET_EXCEEDED, done))
    }

    /// `retire_after`: wait `wait` (the gate watching, if there is one), then stop `old`. A
    /// breach switches back instead; an interrupt (SIGINT, SIGTERM) leaves both sides up.
    async fn retire_after(
        &self,
        wait: Duration,
        old: Side,
        http: &reqwest::Client,
        done: String,
        emit: &EmitKind,
    ) -> (i32, String) {
        use tokio::signal::unix::{signal, SignalKind};
        let (r, idle) = (&self.r, self.idle);
        let (service, version) = (r.playbook.service.as_str(), r.playbook.version.as_str());
        eprintln!(
            "retire_after: the {old} side stops in {} unless the gate fails",
            crate::units::human_duration(wait)
        );
        let watch = async {
            match (&r.playbook.rollout.gate, &self.query) {
                (Some(g), Some(q)) => {
                    let mut g = g.clone();
                    g.hold = wait;
                    crate::monitor::watch_gate(http, &g, q).await.map(|_| ())
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    Ok(())
                }
            }
        };
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return (exit_code::SUCCESS, done);
        };
        let watched = tokio::select! {
            w = watch => Some(w),
            _ = int.recv() => None,
            _ = term.recv() => None,
        };
        match watched {
            None => (
                exit_code::INTERRUPTED,
                format!("{done}; interrupted before retire_after: both sides are up (`tranche retire` stops {old})"),
            ),
            Some(Err(breach)) => match switch_to_async(r, &self.settings, old, &self.run_id).await {
                Ok(moved) => {
                    let line = format!(
                        "gate breached before retire_after ({breach}): switched back to {old} in {}",
                        switch_time(moved.0)
                    );
                    emit(switched_event(
                        Some(idle.to_string()),
                        old,
                        "back",
                        100,
                        Some(moved),
                        Ok(line),
                    ));
                    let s = Switch::GateFailed {
                        during_canary: false,
                        back: Some(old.as_str()),
                    };
                    (exit_code::BUDGET_EXCEEDED, summary::switched(service, version, &s))
                }
                Err(e) => (
                    code_of(&e),
                    summary::switched(
                        service,
                        version,
                        &Switch::Failed {
                            to: old.as_str(),
                            error: &e.to_string(),
                        },
                    ),
                ),
            },
            Some(Ok(())) => {
                let res = super::retire::retire_side(r, &self.settings, old).await;
                emit(super::retire::retired_event(r, old, idle, res.clone()));
                match res {
                    Ok(n) => (
                        exit_code::SUCCESS,
                        format!(
                            "{done}; the {old} side retired after {} ({n} hosts stopped)",
                            crate::units::human_duration(wait)
                        ),
                    ),
                    Err(e) => (
                        exit_code::HOSTS_FAILED,
                        format!("{done}; retire_after failed: {e}; {idle} stays live"),
                    ),
                }
            }
        }
    }
}

/// The `switched` event of a move: `Ok(line)` with its time and servers, or `Err(why)`.
fn switched_event(
    from: Option<String>,
    to: Side,
    why: &str,
    weight: u32,
    moved: Option<(Duration, usize)>,
    res: Result<String, &str>,
) -> EventKind {
    let (took, servers) = moved.unwrap_or_default();
    let (status, msg) = match res {
        Ok(m) => (Status::Ok, m),
        Err(e) => (Status::Failed, format!("switch to {to} failed: {e}")),
    };
    EventKind::Switched {
        from,
        to: to.to_string(),
        why: why.to_string(),
        weight,
        servers,
        ms: (took.as_secs_f64() * 10_000.0).round() / 10.0,
        status,
        msg,
    }
}

/// Every server to `to` in one step, then `to` recorded live on every host of both sides: the
/// time and the number of servers set.
async fn switch_to_async(
    r: &Release,
    settings: &SshSettings,
    to: Side,
    run_id: &str,
) -> Result<(Duration, usize), BlueGreenError> {
    let (took, servers) = bluegreen::move_traffic(r, settings, to, None, run_id).await?;
    let hosts = all_hosts(r).map_err(|e| BlueGreenError::Plan(e.to_string()))?;
    let script = crate::remote::bluegreen::set(&r.playbook.layout.root, to.as_str(), run_id);
    let mut failed = vec![];
    for (host, res) in run::on_each_host(&r.playbook, &hosts, settings, &script).await {
        if let Err(e) = res {
            failed.push(format!("{host}: {e}"));
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "warning: traffic is on {to}, but the live side could not be recorded on: {}",
            failed.join("; ")
        );
    }
    Ok((took, servers))
}

/// The first host that records `side` retired.
fn retired_on(records: &[(String, LiveRecord)], side: Side) -> Option<&str> {
    records
        .iter()
        .find(|(_, rec)| rec.retired.as_deref() == Some(side.as_str()))
        .map(|(host, _)| host.as_str())
}

/// What every host of both sides records.
pub(super) fn live_records(r: &Release, settings: &SshSettings) -> anyhow::Result<Vec<(String, LiveRecord)>> {
    let hosts = all_hosts(r)?;
    let script = crate::remote::bluegreen::get(&r.playbook.layout.root);
    let mut out = vec![];
    for (host, res) in inputs::runtime().block_on(run::on_each_host(&r.playbook, &hosts, settings, &script)) {
        match res {
            Ok(o) => out.push((host, LiveRecord::parse(&o.stdout))),
            Err(e) => {
                return Err(CommandError::new(format!("cannot read the live side on {host}: {e}"))
                    .code(exit_code::PREFLIGHT)
                    .into())
            }
        }
    }
    Ok(out)
}

pub(super) fn all_hosts(r: &Release) -> anyhow::Result<Vec<crate::inventory::Host>> {
    let mut hosts = bluegreen::hosts_of(r, Side::Blue).map_err(plan_error)?;
    for h in bluegreen::hosts_of(r, Side::Green).map_err(plan_error)? {
        if !hosts.iter().any(|x| x.name == h.name) {
            hosts.push(h);
        }
    }
    Ok(hosts)
}

fn plan_error(e: BlueGreenError) -> CommandError {
    let code = code_of(&e);
    CommandError::new(e.to_string()).code(code)
}

fn code_of(e: &BlueGreenError) -> i32 {
    match e {
        BlueGreenError::Plan(_) => exit_code::CONFIG,
        BlueGreenError::Switch(_) => exit_code::BUDGET_EXCEEDED,
    }
}

/// The switch time to a tenth of a millisecond: it is usually under one.
fn switch_time(took: Duration) -> String {
    format!("{:.1}ms", took.as_secs_f64() * 1000.0)
}
