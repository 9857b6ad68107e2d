//! `tranche validate`: read the inventory and the playbook, listing every problem at once.

use super::inputs;
use crate::cli::Files;
use crate::exit_code;
use crate::units::plural;

pub fn validate(files: &Files) -> anyhow::Result<i32> {
    let (_, r) = inputs::release(files)?;
    eprintln!(
        "ok: {} {} on {} host{} in {} batch{}",
        r.playbook.service,
        r.playbook.version,
        r.targets.len(),
        plural(r.targets.len()),
        r.batches.len(),
        if r.batches.len() == 1 { "" } else { "es" }
    );
    Ok(exit_code::SUCCESS)
}
