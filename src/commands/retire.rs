//! `tranche retire`: stop the blue-green side that is not live (its instances on the idle slot,
//! or the hosts of the idle group) and record it retired on every host, so `status` shows it.
//! Each host refuses on its own when the side asked is the one it records live.

use super::{inputs, run, CommandError};
use crate::bluegreen::{self, BlueGreenError};
use crate::cli::{Files, SshOptions, TrafficOutput};
use crate::events::{EventKind, Status};
use crate::exit_code;
use crate::playbook::Side;
use crate::release::Release;
use crate::ssh::SshSettings;

pub fn retire(files: &Files, out: &TrafficOutput, ssh: &SshOptions) -> anyhow::Result<i32> {
    let (req, r) = inputs::release(files)?;
    bluegreen::settings(&r).map_err(plan_error)?;
    let settings = inputs::ssh_settings(ssh)?;
    let records = super::switch::live_records(&r, &settings)?;
    let Some(live) = bluegreen::agreed_live(&records).map_err(plan_error)? else {
        return Err(
            CommandError::new("no side of this service is live yet: there is nothing to retire")
                .code(exit_code::PREFLIGHT)
                .into(),
        );
    };
    let old = live.other();
    // From here on hosts change: the retire is a run of its own, journaled.
    let run = super::by_hand::ByHand::start(files, &req, &r, "retire", Some(old.to_string()), out)?;
    let (code, event) = match inputs::runtime().block_on(retire_side(&r, &settings, old)) {
        Ok(stopped) => (exit_code::SUCCESS, retired_event(&r, old, live, Ok(stopped))),
        Err(e) => (exit_code::HOSTS_FAILED, retired_event(&r, old, live, Err(e))),
    };
    let msg = match &event {
        EventKind::Retired { msg, .. } => msg.clone(),
        _ => String::new(),
    };
    run.event(event);
    Ok(run.finish(code, msg))
}

/// The `retired` event of stopping `old` while `live` serves: the hosts stopped, or why not
/// everywhere.
pub(super) fn retired_event(r: &Release, old: Side, live: Side, res: Result<usize, String>) -> EventKind {
    let (status, hosts, msg) = match res {
        Ok(n) => (
            Status::Ok,
            n,
            format!(
                "retired the {old} side of {}: stopped on {n} host{}; {live} stays live",
                r.playbook.service,
                if n == 1 { "" } else { "s" }
            ),
        ),
        Err(e) => (Status::Failed, 0, e),
    };
    EventKind::Retired {
        side: old.to_string(),
        hosts,
        status,
        msg,
    }
}

/// Stop `old` (the side not live) and record it retired on every host: the old side's hosts
/// run its stop command; with groups, the live side's hosts only record it. The hosts where
/// `old` was stopped, or why not everywhere.
pub(super) async fn retire_side(r: &Release, settings: &SshSettings, old: Side) -> Result<usize, String> {
    let old_hosts = bluegreen::hosts_of(r, old).map_err(|e| e.to_string())?;
    let view = bluegreen::side_view(r, old);
    let run_id = crate::events::new_run_id();
    let hosts = super::switch::all_hosts(r).map_err(|e| e.to_string())?;
    // The old side's hosts run its stop command; the others only record it.
    let stops = |h: &crate::inventory::Host| old_hosts.iter().any(|o| o.name == h.name);
    // Every host at once (at most `max_connecting` at a time).
    let timeout = r.playbook.stop.timeout + std::time::Duration::from_secs(30);
    let results = run::on_hosts_with(&r.playbook, &hosts, settings, timeout, |h| {
        let stop = match &r.playbook.stop.command {
            Some(cmd) if stops(h) => view.render(cmd, h, &run_id, None)?,
            _ => String::new(),
        };
        Ok(crate::remote::bluegreen::retire(&r.playbook.layout.root, old.as_str(), &stop).to_command())
    })
    .await;
    let mut failed = vec![];
    let mut stopped = 0;
    for ((host, res), h) in results.into_iter().zip(&hosts) {
        match res {
            Ok(_) if stops(h) && r.playbook.stop.command.is_some() => stopped += 1,
            Ok(_) => {}
            Err(e) => failed.push(format!("{host}: {e}")),
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "the {old} side of {} could not be retired on: {}",
            r.playbook.service,
            failed.join("; ")
        ));
    }
    Ok(stopped)
}

fn plan_error(e: BlueGreenError) -> CommandError {
    CommandError::new(e.to_string()).code(exit_code::CONFIG)
}
