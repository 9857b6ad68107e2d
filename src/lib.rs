//! tranche: release a new version of a service to a fleet of hosts over SSH, in batches.
//!
//! Data flows one way: files -> model -> plan (batches) -> executor -> events -> reporters.

// Diagnostics and templates are carried by value on purpose: they are built once per problem.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod ansible_cfg;
pub mod artifact_store;
pub mod bluegreen;
pub mod cli;
pub mod commands;
pub mod error;
pub mod events;
pub mod executor;
pub mod exit_code;
pub mod health;
pub mod http_body;
pub mod inventory;
pub mod journal;
pub mod lock;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod operator;
pub mod planner;
pub mod playbook;
pub mod policy;
pub mod quote;
pub mod reach;
pub mod redact;
pub mod registry;
pub mod release;
pub mod remote;
pub mod report;
pub mod settings;
pub mod shard;
pub mod ssh;
pub mod status;
pub mod units;
pub mod yaml;

use std::ffi::OsString;

use clap::Parser;

/// Run the command line and return the process exit code.
pub fn run<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    match cli::Cli::try_parse_from(args) {
        Ok(cli) => commands::run(cli),
        Err(e) => {
            let code = if e.use_stderr() {
                exit_code::CONFIG
            } else {
                exit_code::SUCCESS
            };
            let _ = e.print();
            code
        }
    }
}
