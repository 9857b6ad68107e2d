//! tranche: release a new version of a service to a fleet of hosts over SSH, in batches.
//!
//! Data flows one way: files -> model -> plan (batches) -> executor -> events -> reporters.

// Diagnostics and templates are carried by value on purpose: they are built once per problem.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod cli;
pub mod error;
pub mod events;
pub mod executor;
pub mod exit_code;
pub mod health;
pub mod inventory;
pub mod planner;
pub mod playbook;
pub mod registry;
pub mod release;
pub mod report;
pub mod ssh;
pub mod status;
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
        Command::Release { files, run, ssh } => match load(&files) {
            Ok(r) => release(r, &run, &ssh),
            Err(code) => code,
        },
        Command::Status { files, format, ssh } => match load(&files) {
            Ok(r) => status(r, format, &ssh),
            Err(code) => code,
        },
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The SSH settings of a run, from the options and the defaults.
fn ssh_settings(o: &cli::SshOptions) -> Result<ssh::SshSettings, i32> {
    use std::io::IsTerminal;
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let mut identities: Vec<std::path::PathBuf> = o.identity.iter().cloned().collect();
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        identities.push(home.join(".ssh").join(name));
    }
    let (config_path, explicit) = match &o.ssh_config {
        Some(p) => (p.clone(), true),
        None => (home.join(".ssh/config"), false),
    };
    let config = ssh::config::load(&config_path, explicit).map_err(|e| {
        eprintln!("error: {e}");
        exit_code::CONFIG
    })?;
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    Ok(ssh::SshSettings {
        known_hosts: o.known_hosts.clone().unwrap_or_else(|| home.join(".ssh/known_hosts")),
        accept_new_host_keys: o.accept_new_host_keys,
        identities,
        use_agent: true,
        ask_passphrase: !ci && std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        config: config.map(std::sync::Arc::new),
        connect_timeout: o.connect_timeout,
        default_user: o
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into()),
    })
}

fn release(r: Release, run: &cli::RunOptions, ssh: &cli::SshOptions) -> i32 {
    use std::io::IsTerminal;
    let confirms = [r.playbook.rollout.canary_pause, r.playbook.rollout.pause].contains(&playbook::Pause::Confirm);
    if confirms && !run.yes && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        eprintln!("error: the playbook pauses for confirmation, but there is no terminal to ask on");
        eprintln!("  = hint: pass --yes to answer yes, or use a duration for `rollout.canary_pause`/`rollout.pause`");
        return exit_code::CONFIG;
    }
    let run_id = events::new_run_id();
    let journal = run.state_dir.join("runs").join(&run_id).join("journal.jsonl");
    let terminal = report::Terminal::new(run.no_progress, false);
    let reporter = match report::Reporter::new(terminal, run.events.as_deref(), Some(&journal)) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => {
            eprintln!("error: cannot open the event stream or the journal: {e}");
            return exit_code::CONFIG;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sink = reporter.clone();
    let settings = match ssh_settings(ssh) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut exec = executor::Executor::new(r, settings, run_id, std::sync::Arc::new(move |e| sink.report(&e)));
    exec.assume_yes = run.yes;
    let outcome = runtime.block_on(exec.run());
    reporter.finish();
    outcome.exit_code
}

/// `tranche status`: exit 0 when every host was reached and runs the same release, 1 otherwise.
fn status(r: Release, format: Format, ssh: &cli::SshOptions) -> i32 {
    let settings = match ssh_settings(ssh) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let s = runtime.block_on(status::query(&r, &settings, executor::CONNECT_CONCURRENCY));
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&s).expect("status serialises")),
        Format::Table => eprint!("{}", status::to_table(&s)),
    }
    if s.mixed || s.unreachable > 0 {
        exit_code::HOSTS_FAILED
    } else {
        exit_code::SUCCESS
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
