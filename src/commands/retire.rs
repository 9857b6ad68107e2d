//! `tranche retire`: stop the blue-green side that is not live (its instances on the idle slot,
//! or the hosts of the idle group) and record it retired on every host, so `status` shows it.
//! Each host refuses on its own when the side asked is the one it records live.

use super::{inputs, run, CommandError};
use crate::bluegreen::{self, BlueGreenError};
use crate::cli::{Files, SshOptions};
use crate::exit_code;

pub fn retire(files: &Files, ssh: &SshOptions) -> anyhow::Result<i32> {
    let (_, r) = inputs::release(files)?;
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
    let old_hosts = bluegreen::hosts_of(&r, old).map_err(plan_error)?;
    let view = bluegreen::side_view(&r, old);
    let run_id = crate::events::new_run_id();
    let rt = inputs::runtime();
    let mut failed = vec![];
    let mut stopped = 0;
    // The old side's hosts stop its instance; with groups, the live side's hosts only record it.
    for h in super::switch::all_hosts(&r)? {
        let stop = match (&r.playbook.stop.command, old_hosts.iter().any(|o| o.name == h.name)) {
            (Some(cmd), true) => view.render(cmd, &h, &run_id, None).map_err(CommandError::new)?,
            _ => String::new(),
        };
        let script = crate::remote::bluegreen::retire(&r.playbook.layout.root, old.as_str(), &stop);
        for (host, res) in rt.block_on(run::on_each_host(
            &r.playbook,
            std::slice::from_ref(&h),
            &settings,
            &script,
        )) {
            match res {
                Ok(_) if !stop.is_empty() => stopped += 1,
                Ok(_) => {}
                Err(e) => failed.push(format!("{host}: {e}")),
            }
        }
    }
    if !failed.is_empty() {
        return Err(CommandError::new(format!(
            "the {old} side of {} could not be retired on: {}",
            r.playbook.service,
            failed.join("; ")
        ))
        .code(exit_code::HOSTS_FAILED)
        .into());
    }
    eprintln!(
        "retired the {old} side of {}: stopped on {stopped} host{}; {live} stays live",
        r.playbook.service,
        if stopped == 1 { "" } else { "s" }
    );
    Ok(exit_code::SUCCESS)
}

fn plan_error(e: BlueGreenError) -> CommandError {
    CommandError::new(e.to_string()).code(exit_code::CONFIG)
}
