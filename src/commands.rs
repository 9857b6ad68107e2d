//! The commands: each turns parsed options into work and an exit code. Library code below
//! reports through events; this is where it is decided how people see them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::{Files, Format, RunOptions, SshOptions};
use crate::executor::{Executor, Mode};
use crate::journal::{self, Carried, RunRecord};
use crate::release::{Release, ReleaseRequest};
use crate::units::plural;
use crate::{events, exit_code, report, ssh, status};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn request(files: &Files) -> Result<ReleaseRequest, i32> {
    Ok(ReleaseRequest {
        inventories: inventories(&files.inventories)?,
        playbook: files.playbook.clone(),
        limit: files.limit.clone(),
        extra_vars: resolve_extra_vars(&files.extra_vars)?,
    })
}

/// The `ansible.cfg` Ansible would read here, if any, read once; a `host_key_checking = False`
/// in it is said to be ignored (tranche never checks host keys less).
pub fn ansible_cfg() -> Option<&'static crate::ansible_cfg::AnsibleCfg> {
    static CFG: std::sync::OnceLock<Option<crate::ansible_cfg::AnsibleCfg>> = std::sync::OnceLock::new();
    CFG.get_or_init(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let cwd = std::env::current_dir().ok()?;
        let env = std::env::var("ANSIBLE_CONFIG").ok();
        let path = crate::ansible_cfg::find(&cwd, home.as_deref(), env.as_deref())?;
        match crate::ansible_cfg::load(&path, home.as_deref()) {
            Ok(cfg) => {
                if cfg.host_key_checking_off {
                    eprintln!(
                        "warning: {} sets host_key_checking = False; tranche checks host keys anyway (see --accept-new-host-keys)",
                        path.display()
                    );
                }
                Some(cfg)
            }
            Err(e) => {
                eprintln!("warning: {e}; it is not used");
                None
            }
        }
    })
    .as_ref()
}

/// The inventory sources: `-i`, else the `inventory` of `ansible.cfg`.
pub fn inventories(given: &[PathBuf]) -> Result<Vec<PathBuf>, i32> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    match ansible_cfg().filter(|c| !c.inventory.is_empty()) {
        Some(cfg) => Ok(cfg.inventory.clone()),
        None => {
            eprintln!("error: no inventory: pass -i INVENTORY (or set `inventory` in ansible.cfg)");
            Err(exit_code::CONFIG)
        }
    }
}

/// The `-e` values as templates see them: `KEY=@env:NAME` read from the environment (and made
/// a secret, see `crate::redact`).
fn resolve_extra_vars(vars: &[(String, String)]) -> Result<Vec<(String, String)>, i32> {
    vars.iter()
        .map(|(k, v)| match crate::redact::resolve_extra_var(k, v) {
            Ok(value) => Ok((k.clone(), value)),
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!(
                    "  = hint: export {} before running tranche",
                    &v[crate::redact::ENV_PREFIX.len()..]
                );
                Err(exit_code::CONFIG)
            }
        })
        .collect()
}

/// Load the release, printing every problem to stderr on failure.
pub fn load(req: &ReleaseRequest) -> Result<Release, i32> {
    Release::load(req).map_err(|d| {
        eprintln!("{d}");
        eprintln!("\n{} problem{} found; nothing was touched", d.len(), plural(d.len()));
        exit_code::CONFIG
    })
}

pub fn validate(files: &Files) -> i32 {
    match request(files).and_then(|req| load(&req)) {
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
    }
}

pub fn plan(files: &Files, format: Format, check: bool, events_to: Option<&str>, ssh: &SshOptions) -> i32 {
    if format == Format::Json && events_to == Some("-") {
        eprintln!("error: --format json and --events - would both write to stdout; give --events a file");
        return exit_code::CONFIG;
    }
    let r = match request(files).and_then(|req| load(&req)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let redact = crate::redact::Redactor::new(crate::redact::secrets_of(&r));
    match format {
        Format::Json => {
            let mut plan = report::plan::to_json(&r);
            redact.json(&mut plan);
            println!("{}", serde_json::to_string_pretty(&plan).expect("plan serialises"));
        }
        Format::Table => eprint!("{}", redact.text(&report::plan::to_table(&r))),
    }
    if !check {
        return exit_code::SUCCESS;
    }
    let settings = match ssh_settings(ssh) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Preflight alone: plain lines, no journal, nothing changed on the hosts.
    eprintln!();
    eprintln!("SSH config: {}", ssh::config::describe(&settings));
    let terminal = report::Terminal::new(true, false);
    let reporter = match report::Reporter::new(terminal, events_to, None) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("error: --events {}: {e}", events_to.unwrap_or(""));
            return exit_code::CONFIG;
        }
    };
    let sink = reporter.clone();
    let mut exec = Executor::new(r, settings, events::new_run_id(), Arc::new(move |e| sink.report(&e)));
    exec.mode = Mode::Check;
    runtime().block_on(exec.run()).exit_code
}

/// The SSH settings of a run, from the options and the defaults.
pub fn ssh_settings(o: &SshOptions) -> Result<ssh::SshSettings, i32> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cfg = ansible_cfg();
    let mut identities: Vec<PathBuf> = o.identity.iter().cloned().collect();
    identities.extend(cfg.and_then(|c| c.private_key_file.clone()));
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
    let openssh = match &config {
        Some(_) => ssh::config::OpenSsh::detect(&config_path).unwrap_or_else(|e| {
            eprintln!("warning: {e}; tranche reads the SSH config with its built-in parser");
            None
        }),
        None => None,
    };
    Ok(ssh::SshSettings {
        known_hosts: o.known_hosts.clone(),
        accept_new_host_keys: o.accept_new_host_keys,
        identities,
        use_agent: true,
        ask_passphrase: !in_ci() && std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        config: config.map(Arc::new),
        openssh: openssh.map(Arc::new),
        bastions: ssh::Bastions::default(),
        max_connecting: o.max_connecting,
        connect_timeout: o.connect_timeout,
        default_user: o
            .user
            .clone()
            .or_else(|| cfg.and_then(|c| c.remote_user.clone()))
            .unwrap_or_else(crate::operator::current_user),
    })
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `tranche release` and `tranche rollback`.
pub fn release(files: &Files, mode: Mode, run: &RunOptions, ssh: &SshOptions) -> i32 {
    let req = match request(files) {
        Ok(req) => req,
        Err(code) => return code,
    };
    let r = match load(&req) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let run_id = events::new_run_id();
    let (command, to) = match &mode {
        Mode::Rollback { to } => ("rollback", to.clone()),
        _ => ("release", None),
    };
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let record = RunRecord {
        run_id: run_id.clone(),
        command: command.into(),
        to,
        inventories: req.inventories.iter().map(absolute).collect(),
        playbook: absolute(&req.playbook),
        limit: req.limit.clone(),
        // As written: `@env:NAME` stays a reference, so no secret value reaches run.json.
        extra_vars: files.extra_vars.clone(),
        inventory_sha256: journal::files_sha256(&crate::inventory::Inventory::input_files(
            &req.inventories,
            req.playbook.parent(),
        ))
        .unwrap_or_default(),
        playbook_sha256: journal::files_sha256(std::slice::from_ref(&req.playbook)).unwrap_or_default(),
        artifact_sha256: Some(r.sha256.clone()),
        started: events::now_rfc3339(),
    };
    execute(r, record, mode, Carried::default(), run, ssh)
}

/// `tranche resume`: the hosts of an interrupted run that did not finish, re-planned.
pub fn resume(run_id: Option<String>, force: bool, run: &RunOptions, ssh: &SshOptions) -> i32 {
    let Some(run_id) = run_id.or_else(|| journal::latest_unfinished(&run.state_dir)) else {
        eprintln!("error: no unfinished run in {}", run.state_dir.display());
        return exit_code::CONFIG;
    };
    let record = match RunRecord::load(&run.state_dir, &run_id) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::CONFIG;
        }
    };
    let changes = record.changes();
    if !changes.is_empty() && !force {
        eprintln!("error: cannot resume run {run_id}: {}", changes.join(", "));
        eprintln!("  = hint: `tranche resume {run_id} --force` resumes with the files as they are now");
        return exit_code::CONFIG;
    }
    let summary = match journal::read_journal(&journal::journal_path(&run.state_dir, &run_id)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::CONFIG;
        }
    };
    if summary
        .exit_code
        .is_some_and(|c| c != i64::from(exit_code::INTERRUPTED))
    {
        eprintln!(
            "error: run {run_id} already finished (exit {}); nothing to resume",
            summary.exit_code.unwrap_or_default()
        );
        return exit_code::CONFIG;
    }
    let extra_vars = match resolve_extra_vars(&record.extra_vars) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let req = ReleaseRequest {
        inventories: record.inventories.clone(),
        playbook: record.playbook.clone(),
        limit: record.limit.clone(),
        extra_vars,
    };
    let mut r = match load(&req) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Some(was) = record.artifact_sha256.as_deref().filter(|was| *was != r.sha256) {
        if !force {
            eprintln!(
                "error: cannot resume run {run_id}: the artifact changed (sha256 {}, the run started with {})",
                &r.sha256[..12.min(r.sha256.len())],
                &was[..12.min(was.len())]
            );
            eprintln!("  = hint: a rebuilt artifact under the same version would leave a mixed fleet; release it under a new version, or `tranche resume {run_id} --force`");
            return exit_code::CONFIG;
        }
    }
    let total = r.targets.len();
    r.narrow(|h| !summary.done.contains(&h.name), !summary.any_ok);
    eprintln!(
        "resuming run {run_id}: {} of {total} host{} left",
        r.targets.len(),
        plural(total)
    );
    if r.targets.is_empty() {
        eprintln!("every host of run {run_id} already finished");
        return exit_code::SUCCESS;
    }
    let mode = match record.command.as_str() {
        "rollback" => Mode::Rollback { to: record.to.clone() },
        _ => Mode::Release,
    };
    let done: Vec<crate::inventory::Host> = r
        .inventory
        .hosts
        .iter()
        .filter(|h| summary.done.contains(&h.name))
        .cloned()
        .collect();
    let (root, id, playbook) = (
        r.playbook.layout.root.clone(),
        record.run_id.clone(),
        r.playbook.clone(),
    );
    let code = execute(r, record, mode, summary.carried, run, ssh);
    // The interrupted run still holds the locks of the hosts it had finished.
    if code != exit_code::INTERRUPTED && !done.is_empty() {
        if let Ok(settings) = ssh_settings(ssh) {
            for (host, res) in runtime().block_on(on_each_host(
                &playbook,
                &done,
                &settings,
                &crate::remote::lock::release(&root, &id),
            )) {
                if let Err(e) = res {
                    eprintln!("warning: {host}: could not release the lock: {e}; it expires by itself");
                }
            }
        }
    }
    code
}

/// Run the executor with the reporters, the journal and the signal handlers.
fn execute(r: Release, record: RunRecord, mode: Mode, carried: Carried, run: &RunOptions, ssh: &SshOptions) -> i32 {
    let confirms =
        [r.playbook.rollout.canary_pause, r.playbook.rollout.pause].contains(&crate::playbook::Pause::Confirm);
    if confirms && !run.yes && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        eprintln!("error: the playbook pauses for confirmation, but there is no terminal to ask on");
        eprintln!("  = hint: pass --yes to answer yes, or use a duration for `rollout.canary_pause`/`rollout.pause`");
        return exit_code::CONFIG;
    }
    let settings = match ssh_settings(ssh) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = record.save(&run.state_dir) {
        eprintln!(
            "error: cannot write the run record under {}: {e}",
            run.state_dir.display()
        );
        return exit_code::CONFIG;
    }
    let journal = journal::journal_path(&run.state_dir, &record.run_id);
    let terminal = report::Terminal::new(run.no_progress, run.quiet);
    let reporter = match report::Reporter::new(terminal, run.events.as_deref(), Some(&journal)) {
        Ok(r) => Arc::new(r.with_ci(run.junit.clone(), run.summary.clone())),
        Err(e) => {
            eprintln!("error: cannot open the event stream or the journal: {e}");
            return exit_code::CONFIG;
        }
    };
    let rt = runtime();
    let sink = reporter.clone();
    let record_id = record.run_id.clone();
    let mut exec = Executor::new(r, settings, record.run_id.clone(), Arc::new(move |e| sink.report(&e)));
    exec.assume_yes = run.yes;
    let asker = reporter.clone();
    exec.confirm = Some(Arc::new(move |batch| {
        asker.ask(&format!("continue with batch {batch}?"))
    }));
    exec.mode = mode;
    exec.carried = carried;
    let exec = Arc::new(exec);
    // The first Ctrl-C, SIGTERM or SIGHUP: no new host starts; hosts in flight finish. A second
    // Ctrl-C: stop now, with the record written. A later SIGTERM or SIGHUP does not abandon the
    // hosts in flight (a CI cancel sends SIGINT, then SIGTERM a few seconds later, then
    // SIGKILL): they go on, and the log names them and how to bring them back.
    let on_signal = exec.clone();
    let signal_reporter = reporter.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let mut count = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => "SIGHUP",
            };
            count += 1;
            if count == 1 {
                on_signal.interrupt();
            } else if name == "SIGINT" || !on_signal.still_finishing(name) {
                on_signal.stop_now();
                signal_reporter.finish();
                std::process::exit(exit_code::INTERRUPTED);
            }
        }
    });
    let outcome = rt.block_on(exec.run());
    reporter.finish();
    if let Some(e) = reporter.journal_error() {
        // The run stopped starting hosts when the journal failed; resume reads what did reach it.
        eprintln!("error: {e}; the run stopped there: no host started after it");
        eprintln!(
            "  = hint: free the space or fix {}, then `tranche resume {}` continues",
            run.state_dir.display(),
            record_id
        );
        rt.shutdown_background();
        return match outcome.exit_code {
            exit_code::SUCCESS => exit_code::INTERRUPTED,
            code => code,
        };
    }
    // A confirmation question left waiting on the terminal (the run was interrupted while it
    // asked) must not keep the process alive.
    rt.shutdown_background();
    outcome.exit_code
}

/// `tranche status`: exit 0 when every host was reached and runs the same release, 1 otherwise.
pub fn status(files: &Files, format: Format, ssh: &SshOptions) -> i32 {
    let (r, settings) = match request(files)
        .and_then(|req| load(&req))
        .and_then(|r| Ok((r, ssh_settings(ssh)?)))
    {
        Ok(x) => x,
        Err(code) => return code,
    };
    let s = runtime().block_on(status::query(&r, &settings, settings.max_connecting));
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

/// Run `script` on every host (a few connections at a time); its output, or why not.
async fn on_each_host(
    p: &crate::playbook::Playbook,
    hosts: &[crate::inventory::Host],
    settings: &ssh::SshSettings,
    script: &crate::remote::RemoteCommand,
) -> Vec<(String, Result<ssh::ExecOutput, String>)> {
    let script = &script.to_command();
    let specs: Vec<_> = hosts.iter().map(crate::executor::host_spec).collect();
    ssh::config::prefetch(settings, &specs);
    let gate = Arc::new(tokio::sync::Semaphore::new(settings.max_connecting.max(1)));
    futures::future::join_all(hosts.iter().map(|h| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.expect("gate");
            let res = async {
                let mut conn = ssh::Connection::open(&crate::executor::endpoint(h, settings), settings)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.become_root = crate::executor::wants_become(p, h);
                let out = conn.exec(script, std::time::Duration::from_secs(30)).await;
                conn.close().await;
                let out = out.map_err(|e| e.to_string())?;
                if out.success() {
                    Ok(out)
                } else {
                    Err(out.describe())
                }
            }
            .await;
            (h.name.clone(), res)
        }
    }))
    .await
}

/// `tranche unlock`: break the lock on every targeted host, saying whose it was.
pub fn unlock(files: &Files, ssh: &SshOptions) -> i32 {
    let (r, settings) = match request(files)
        .and_then(|req| load(&req))
        .and_then(|r| Ok((r, ssh_settings(ssh)?)))
    {
        Ok(x) => x,
        Err(code) => return code,
    };
    let script = crate::remote::lock::break_lock(&r.playbook.layout.root);
    let results = runtime().block_on(on_each_host(&r.playbook, &r.targets, &settings, &script));
    let mut failed = 0;
    for (host, res) in results {
        use crate::remote::lock::{LockReport, LockState};
        match res.map(|out| LockReport::parse(&out.stdout)) {
            Ok(LockReport {
                state: LockState::Held,
                owner: Some(owner),
            }) => eprintln!("{host}: removed the lock of {}", owner.describe()),
            Ok(LockReport {
                state: LockState::Held,
                owner: None,
            }) => eprintln!("{host}: removed a lock without an owner file"),
            Ok(_) => eprintln!("{host}: not locked"),
            Err(e) => {
                failed += 1;
                eprintln!("{host}: {e}");
            }
        }
    }
    if failed > 0 {
        exit_code::PREFLIGHT
    } else {
        exit_code::SUCCESS
    }
}
