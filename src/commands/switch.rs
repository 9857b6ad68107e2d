//! `tranche switch [--back]`: move all traffic of a blue-green service to its other side in one
//! step, and record the live side on every host. Also the blue-green `release`: the idle side
//! through the ordinary executor, then the switch, the watch, and the switch back on a breach.

use std::time::Duration;

use super::{inputs, run, CommandError};
use crate::bluegreen::{self, BlueGreenError};
use crate::cli::{Files, RunOptions, SshOptions};
use crate::exit_code;
use crate::journal::{Carried, RunRecord};
use crate::playbook::Side;
use crate::release::Release;
use crate::remote::bluegreen::LiveRecord;
use crate::ssh::SshSettings;

/// `tranche switch`: to the other side; `--back`: to the side live before the last switch.
pub fn switch(files: &Files, back: bool, ssh: &SshOptions) -> anyhow::Result<i32> {
    let (_, r) = inputs::release(files)?;
    bluegreen::settings(&r).map_err(plan_error)?;
    let settings = inputs::ssh_settings(ssh)?;
    let records = live_records(&r, &settings)?;
    let live = bluegreen::agreed_live(&records).map_err(plan_error)?;
    let to = match (live, back) {
        (None, _) => {
            return Err(
                CommandError::new("no side of this service is live yet: there is nothing to switch")
                    .hint("`tranche release` releases the idle side and switches to it")
                    .code(exit_code::PREFLIGHT)
                    .into(),
            )
        }
        (Some(l), false) => l.other(),
        (Some(l), true) => match records
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
    let run_id = crate::events::new_run_id();
    let took = switch_to(&r, &settings, to, &run_id)?;
    eprintln!(
        "switched {} from {} to {to} in {} (first to last server)",
        r.playbook.service,
        live.map_or("none", Side::as_str),
        switch_time(took)
    );
    Ok(exit_code::SUCCESS)
}

/// The blue-green release: the idle side through the executor (stage, stop, deploy, start,
/// health, under the usual limits; no traffic moves), then every server switched at once, then
/// the gate's watch; on a breach, traffic goes back to the side that was live.
pub fn release(r: Release, record: RunRecord, run: &RunOptions, ssh: &SshOptions) -> anyhow::Result<i32> {
    let bg = bluegreen::settings(&r).map_err(plan_error)?.clone();
    let settings = inputs::ssh_settings(ssh)?;
    let records = live_records(&r, &settings)?;
    let live = bluegreen::agreed_live(&records).map_err(plan_error)?;
    let idle = live.map_or(Side::Blue, Side::other);
    let run_id = record.run_id.clone();
    eprintln!(
        "blue-green ({}): {} live; releasing {} on the {idle} side",
        bg.shape.as_str(),
        live.map_or("no side".to_string(), |l| format!("{l} is")),
        r.playbook.version
    );
    let idle_r = bluegreen::idle_release(&r, idle).map_err(plan_error)?;
    let code = run::execute(
        idle_r,
        record,
        crate::executor::Mode::Release,
        Carried::default(),
        run,
        ssh,
    )?;
    if code != exit_code::SUCCESS {
        eprintln!("the {idle} side did not come up whole: traffic was not switched");
        return Ok(code);
    }
    let rt = inputs::runtime();
    let http = reqwest::Client::new();
    let gate = r.playbook.rollout.gate.clone();
    let query = match (&gate, r.targets.first()) {
        (Some(g), Some(h)) => Some(r.render(&g.query, h, &run_id, None).map_err(CommandError::new)?),
        _ => None,
    };
    // The canary period: the new side takes `canary_weight` percent while the gate watches.
    if let (Some(g), Some(q), true) = (&gate, &query, bg.canary_weight > 0) {
        let w = bluegreen::weights(&r, idle, Some(bg.canary_weight), &run_id).map_err(plan_error)?;
        rt.block_on(bluegreen::switch_haproxy(&r, &w)).map_err(plan_error)?;
        eprintln!("canary: the {idle} side takes {}% of the traffic", bg.canary_weight);
        if let Err(breach) = rt.block_on(crate::monitor::watch_gate(&http, g, q)) {
            let back = live.unwrap_or(idle.other());
            let w = bluegreen::weights(&r, back, None, &run_id).map_err(plan_error)?;
            rt.block_on(bluegreen::switch_haproxy(&r, &w)).map_err(plan_error)?;
            eprintln!("gate breached during the canary ({breach}): all traffic back on {back}");
            return Ok(exit_code::BUDGET_EXCEEDED);
        }
    }
    let took = switch_to(&r, &settings, idle, &run_id)?;
    eprintln!(
        "switched {} to {idle} in {} (first to last server)",
        r.playbook.service,
        switch_time(took)
    );
    if let (Some(g), Some(q)) = (&gate, &query) {
        if let Err(breach) = rt.block_on(crate::monitor::watch_gate(&http, g, q)) {
            match live {
                Some(back) => {
                    let took = switch_to(&r, &settings, back, &run_id)?;
                    eprintln!(
                        "gate breached after the switch ({breach}): switched back to {back} in {}",
                        switch_time(took)
                    );
                }
                None => eprintln!(
                    "gate breached after the switch ({breach}); no side was live before: nothing to switch back to"
                ),
            }
            return Ok(exit_code::BUDGET_EXCEEDED);
        }
    }
    Ok(exit_code::SUCCESS)
}

/// Every server to `to` in one step, then `to` recorded live on every host of both sides.
pub fn switch_to(r: &Release, settings: &SshSettings, to: Side, run_id: &str) -> anyhow::Result<Duration> {
    let w = bluegreen::weights(r, to, None, run_id).map_err(plan_error)?;
    let rt = inputs::runtime();
    let took = rt.block_on(bluegreen::switch_haproxy(r, &w)).map_err(plan_error)?;
    let hosts = all_hosts(r)?;
    let script = crate::remote::bluegreen::set(&r.playbook.layout.root, to.as_str(), run_id);
    let mut failed = vec![];
    for (host, res) in rt.block_on(run::on_each_host(&r.playbook, &hosts, settings, &script)) {
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
    Ok(took)
}

/// What every host of both sides records.
fn live_records(r: &Release, settings: &SshSettings) -> anyhow::Result<Vec<(String, LiveRecord)>> {
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

fn all_hosts(r: &Release) -> anyhow::Result<Vec<crate::inventory::Host>> {
    let mut hosts = bluegreen::hosts_of(r, Side::Blue).map_err(plan_error)?;
    for h in bluegreen::hosts_of(r, Side::Green).map_err(plan_error)? {
        if !hosts.iter().any(|x| x.name == h.name) {
            hosts.push(h);
        }
    }
    Ok(hosts)
}

fn plan_error(e: BlueGreenError) -> CommandError {
    let code = match e {
        BlueGreenError::Plan(_) => exit_code::CONFIG,
        BlueGreenError::Switch(_) => exit_code::BUDGET_EXCEEDED,
    };
    CommandError::new(e.to_string()).code(code)
}

/// The switch time to a tenth of a millisecond: it is usually under one.
fn switch_time(took: Duration) -> String {
    format!("{:.1}ms", took.as_secs_f64() * 1000.0)
}
