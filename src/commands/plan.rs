//! `tranche plan`: which host lands in which batch, the staging schedule and the limits, as a
//! table (stderr) or JSON (stdout); with `--check`, preflight on every host too.

use super::error::CommandError;
use super::{inputs, run};
use crate::cli::{Files, Format, SshOptions};
use crate::{exit_code, report};

pub fn plan(
    files: &Files,
    format: Format,
    check: bool,
    events_to: Option<&str>,
    ssh: &SshOptions,
) -> anyhow::Result<i32> {
    if format == Format::Json && events_to == Some("-") {
        return Err(
            CommandError::new("--format json and --events - would both write to stdout; give --events a file").into(),
        );
    }
    let (_, r) = inputs::release(files)?;
    let redact = crate::redact::Redactor::new(crate::redact::secrets_of(&r));
    match format {
        Format::Json => {
            let mut plan = report::plan::to_json(&r);
            redact.json(&mut plan);
            let json = serde_json::to_string_pretty(&plan).expect("plan serialises");
            super::print_data(format!("{json}\n").as_bytes())?;
        }
        Format::Table => eprint!("{}", redact.text(&report::plan::to_table(&r))),
    }
    if !check {
        return Ok(exit_code::SUCCESS);
    }
    let settings = inputs::ssh_settings(ssh)?;
    run::check(r, settings, events_to)
}
