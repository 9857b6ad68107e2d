//! tranche: release a new version of a service to a fleet of hosts over SSH, in batches.
//!
//! Data flows one way: files -> model -> plan (batches) -> executor -> events -> reporters.

// Diagnostics and templates are carried by value on purpose: they are built once per problem.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod ansible_cfg;
pub mod cli;
pub mod commands;
pub mod error;
pub mod events;
pub mod executor;
pub mod exit_code;
pub mod health;
pub mod http_body;
pub mod inventory;
pub mod inventory_cmd;
pub mod journal;
pub mod lock;
pub mod monitor;
pub mod operator;
pub mod planner;
pub mod playbook;
pub mod policy;
pub mod redact;
pub mod registry;
pub mod release;
pub mod remote;
pub mod report;
pub mod ssh;
pub mod status;
pub mod units;
pub mod yaml;

use std::ffi::OsString;

use clap::Parser;

use cli::{Cli, Command};
use executor::Mode;

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
        Command::Validate { files, .. } => commands::validate(&files),
        Command::Inventory {
            inventories,
            list: _,
            host,
            graph,
            group,
            playbook_dir,
            output: _,
        } => {
            let show = match (host, graph) {
                (Some(h), _) => inventory_cmd::Show::Host(h),
                (None, true) => inventory_cmd::Show::Graph(group),
                (None, false) => inventory_cmd::Show::List,
            };
            match commands::inventories(&inventories) {
                Ok(inventories) => inventory_cmd::run(&inventories, playbook_dir.as_deref(), show),
                Err(code) => code,
            }
        }
        Command::Plan {
            files,
            format,
            check,
            events,
            ssh,
            ..
        } => commands::plan(&files, format, check, events.as_deref(), &ssh),
        Command::Release { files, run, ssh } => commands::release(&files, Mode::Release, &run, &ssh),
        Command::Rollback { files, to, run, ssh } => commands::release(&files, Mode::Rollback { to }, &run, &ssh),
        Command::Resume {
            run_id,
            force,
            run,
            ssh,
        } => commands::resume(run_id, force, &run, &ssh),
        Command::Status { files, format, ssh, .. } => commands::status(&files, format, &ssh),
        Command::Unlock { files, ssh, .. } => commands::unlock(&files, &ssh),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "tranche", &mut std::io::stdout());
            exit_code::SUCCESS
        }
        Command::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => exit_code::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    exit_code::CONFIG
                }
            }
        }
    }
}
