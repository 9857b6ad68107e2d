//! tranche: release a new version of a service to a fleet of hosts over SSH, in batches.
//!
//! Data flows one way: files -> model -> plan (batches) -> executor -> events -> reporters.

pub mod cli;
pub mod error;
pub mod exit_code;
pub mod inventory;
pub mod planner;
pub mod playbook;
pub mod release;
pub mod report;
pub mod units;
pub mod yaml;

use std::ffi::OsString;

use clap::Parser;

use cli::{Cli, Command, Files, Format};
use release::{Release, ReleaseRequest};

/// Run the command line and return the process exit code.
pub fn run<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit_code::CONFIG
            } else {
                exit_code::SUCCESS
            };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Validate { files } => match load(&files) {
            Ok(r) => {
                eprintln!(
                    "ok: {} {} on {} host{} in {} batch{}",
                    r.playbook.service,
                    r.playbook.version,
                    r.targets.len(),
                    plural(r.targets.len()),
                    r.batches.len(),
                    if r.batches.len() == 1 { "" } else { "es" }
                );
                exit_code::SUCCESS
            }
            Err(code) => code,
        },
        Command::Plan {
            files,
            format,
            check: _,
            ssh: _,
        } => match load(&files) {
            Ok(r) => {
                match format {
                    Format::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&report::plan::to_json(&r)).expect("plan serialises")
                    ),
                    Format::Table => eprint!("{}", report::plan::to_table(&r)),
                }
                exit_code::SUCCESS
            }
            Err(code) => code,
        },
        Command::Release { .. } | Command::Status { .. } => {
            eprintln!("error: not implemented yet");
            exit_code::CONFIG
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Load the release, printing every problem to stderr on failure.
fn load(files: &Files) -> Result<Release, i32> {
    let req = ReleaseRequest {
        inventories: files.inventories.clone(),
        playbook: files.playbook.clone(),
        limit: files.limit.clone(),
        extra_vars: files.extra_vars.clone(),
    };
    Release::load(&req).map_err(|d| {
        eprintln!("{d}");
        eprintln!("\n{} problem{} found; nothing was touched", d.len(), plural(d.len()));
        exit_code::CONFIG
    })
}
