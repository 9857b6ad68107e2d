//! `tranche status`: the release `current` points to on every host (with `--history`: the last
//! lines of each host's `.tranche-history`); exit 0 when every host was
//! reached and runs the same release, 1 otherwise.

use super::inputs;
use crate::cli::{Files, Format, SshOptions};
use crate::{exit_code, status};

pub fn status(files: &Files, format: Format, history: Option<usize>, ssh: &SshOptions) -> anyhow::Result<i32> {
    let (_, r) = inputs::release(files)?;
    let settings = inputs::ssh_settings(ssh)?;
    let s = inputs::runtime().block_on(status::query(&r, &settings, settings.max_connecting, history));
    match format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&s).expect("status serialises");
            super::print_data(format!("{json}\n").as_bytes())?;
        }
        Format::Table => eprint!("{}", status::to_table(&s)),
    }
    Ok(if s.mixed || s.unreachable > 0 {
        exit_code::HOSTS_FAILED
    } else {
        exit_code::SUCCESS
    })
}
