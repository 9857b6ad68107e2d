//! `tranche release`, `rollback` and `resume`, and preflight alone for `plan --check`: the
//! commands that drive the executor, with the reporters, the journal and the signal handlers.
//! Every use of the executor by the commands is in this file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::error::CommandError;
use super::inputs::{self, runtime};
use crate::cli::{Files, RunOptions, SshOptions};
use crate::executor::{Executor, Mode};
use crate::journal::{self, Carried, RunRecord};
use crate::release::{Release, ReleaseRequest};
use crate::settings::Settings;
use crate::units::plural;
use crate::{events, exit_code, report, ssh};

/// `tranche release`.
pub fn release(files: &Files, run: &RunOptions, ssh: &SshOptions) -> anyhow::Result<i32> {
    start(files, Mode::Release, run, ssh)
}

/// `tranche rollback [--to VERSION]`.
pub fn rollback(files: &Files, to: Option<String>, run: &RunOptions, ssh: &SshOptions) -> anyhow::Result<i32> {
    start(files, Mode::Rollback { to }, run, ssh)
}

/// A new run: its record, then the executor.
fn start(files: &Files, mode: Mode, run: &RunOptions, ssh: &SshOptions) -> anyhow::Result<i32> {
    let (req, r) = inputs::release(files)?;
    // The folders this run creates, removed again (when empty) if it is refused before it starts.
    let runs = run.state_dir.join("runs");
    let created: Vec<PathBuf> = [runs.clone(), run.state_dir.clone()]
        .into_iter()
        .filter(|d| !d.exists())
        .collect();
    let run_id = journal::claim_run_id(&run.state_dir, events::new_run_id)
        .with_context(|| format!("cannot create a run under {}", run.state_dir.display()))?;
    let (command, to) = match &mode {
        Mode::Rollback { to } => ("rollback", to.clone()),
        _ => ("release", None),
    };
    let record = new_record(files, &req, &r, &run_id, command, to)?;
    let result = if r.playbook.strategy.blue_green().is_none() {
        execute(r, record, mode, Carried::default(), run, ssh)
    } else if mode != Mode::Release {
        Err(
            CommandError::new("a blue-green service is not rolled back host by host")
                .hint("`tranche switch --back` moves all traffic back to the side that was live before")
                .into(),
        )
    } else {
        super::switch::release(r, record, Carried::default(), run, ssh)
    };
    // A run refused before its record was written leaves no folder behind (remove_dir removes
    // only empty ones: a run that started keeps its record).
    if std::fs::remove_dir(journal::run_dir(&run.state_dir, &run_id)).is_ok() {
        for d in &created {
            let _ = std::fs::remove_dir(d);
        }
    }
    result
}

/// The record of a new run (`run.json`): what `resume` needs to plan it again, and what
/// `history` shows.
pub(super) fn new_record(
    files: &Files,
    req: &ReleaseRequest,
    r: &Release,
    run_id: &str,
    command: &str,
    to: Option<String>,
) -> anyhow::Result<RunRecord> {
    Ok(RunRecord {
        run_id: run_id.to_string(),
        command: command.into(),
        to,
        inventories: req.inventories.iter().map(absolute).collect(),
        playbook: absolute(&req.playbook),
        limit: req.limit.clone(),
        shard: files.shard,
        // As written: `@env:NAME` stays a reference, so no secret value reaches run.json.
        extra_vars: inputs::extra_vars(&files.extra_vars)?,
        inventory_sha256: journal::files_sha256(&crate::inventory::Inventory::input_files(
            &req.inventories,
            req.playbook.parent(),
        ))
        .unwrap_or_default(),
        playbook_sha256: journal::files_sha256(std::slice::from_ref(&req.playbook)).unwrap_or_default(),
        artifact_sha256: Some(r.sha256.clone()),
        started: events::now_rfc3339(),
        operator: Some(crate::operator::current_user()),
        controller: Some(crate::operator::controller_host()),
    })
}

fn absolute(p: &PathBuf) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.clone())
}

/// `tranche resume`: the hosts of an interrupted run that did not finish, re-planned.
pub fn resume(
    run_id: Option<String>,
    shard: Option<crate::shard::Shard>,
    force: bool,
    run: &RunOptions,
    ssh: &SshOptions,
) -> anyhow::Result<i32> {
    let run_id = match run_id {
        Some(id) => id,
        None => latest_unfinished(&run.state_dir, shard)?,
    };
    let record = RunRecord::load(&run.state_dir, &run_id)?;
    if !resumable(&record.command) {
        return Err(CommandError::new(format!(
            "run {run_id} is a `tranche {}` by hand: it is not resumed",
            record.command
        ))
        .hint("`tranche status` shows the live side on each host; run the command again if it is still wanted")
        .into());
    }
    let changes = record.changes();
    if !changes.is_empty() && !force {
        return Err(
            CommandError::new(format!("cannot resume run {run_id}: {}", changes.join(", ")))
                .hint(format!(
                    "`tranche resume {run_id} --force` resumes with the files as they are now"
                ))
                .into(),
        );
    }
    let summary = journal::read_journal(&journal::journal_path(&run.state_dir, &run_id))?;
    if let Some(code) = summary.exit_code.filter(|c| *c != i64::from(exit_code::INTERRUPTED)) {
        return Err(CommandError::new(format!(
            "run {run_id} already finished (exit {code}); nothing to resume"
        ))
        .into());
    }
    let req = ReleaseRequest {
        inventories: record.inventories.clone(),
        playbook: record.playbook.clone(),
        limit: record.limit.clone(),
        extra_vars: inputs::resolve_extra_vars(&record.extra_vars)?,
    };
    let mut r = inputs::load(&req)?;
    if let Some(shard) = record.shard {
        inputs::narrow_to_shard(&mut r, shard)?;
    }
    if let Some(was) = record.artifact_sha256.as_deref().filter(|was| *was != r.sha256) {
        if !force {
            return Err(CommandError::new(format!(
                "cannot resume run {run_id}: the artifact changed (sha256 {}, the run started with {})",
                &r.sha256[..12.min(r.sha256.len())],
                &was[..12.min(was.len())]
            ))
            .hint(format!("a rebuilt artifact under the same version would leave a mixed fleet; release it under a new version, or `tranche resume {run_id} --force`"))
            .into());
        }
    }
    if r.playbook.strategy.blue_green().is_some() {
        return resume_blue_green(r, record, summary, run, ssh);
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
        return Ok(exit_code::SUCCESS);
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
    let result = execute(r, record, mode, summary.carried, run, ssh);
    // The interrupted run still holds the locks of the hosts it had finished.
    let interrupted = match &result {
        Ok(code) => *code == exit_code::INTERRUPTED,
        Err(e) => super::error::code_of(e) == exit_code::INTERRUPTED,
    };
    if !interrupted && !done.is_empty() {
        if let Ok(settings) = inputs::ssh_settings(ssh) {
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
    result
}

/// The run `tranche resume` continues when none is named: the newest unfinished one (of
/// `shard`, if given). Unfinished runs of several shards in one state directory are two jobs'
/// runs: taking the newest could resume the other job's, so one must be named.
/// A blue-green release interrupted before its switch: the idle side is released again under
/// the same run (its hosts already on the version are skipped, those the run had started go
/// through again), then the switch. One that had switched is not resumed: traffic already moved.
fn resume_blue_green(
    r: Release,
    record: RunRecord,
    summary: journal::JournalSummary,
    run: &RunOptions,
    ssh: &SshOptions,
) -> anyhow::Result<i32> {
    let run_id = record.run_id.clone();
    if record.command != "release" {
        return Err(CommandError::new(format!(
            "cannot resume run {run_id}: a blue-green service is not rolled back host by host"
        ))
        .hint("`tranche switch --back` moves all traffic back to the side that was live before")
        .into());
    }
    if let Some(to) = &summary.switched {
        return Err(CommandError::new(format!(
            "run {run_id} had switched traffic to the {to} side before it stopped: there is nothing to resume"
        ))
        .hint("`tranche status` shows the live side; `tranche retire` stops the old side, `tranche switch --back` goes back")
        .into());
    }
    eprintln!(
        "resuming blue-green run {run_id}: the idle side again (its hosts already on {} are skipped), then the switch",
        r.playbook.version
    );
    // Every host of the idle side goes through preflight again: those that finished are seen
    // on the version as they are now (not as the first run found them) and skipped; those that
    // failed are tried again, so their failures are not counted twice.
    let mut carried = summary.carried;
    carried.previous.retain(|h, _| !summary.done.contains(h));
    carried.failed = 0;
    super::switch::release(r, record, carried, run, ssh)
}

/// Runs of `release` and `rollback` are resumed; a `switch` or `retire` by hand is not.
fn resumable(command: &str) -> bool {
    matches!(command, "release" | "rollback")
}

fn latest_unfinished(state_dir: &std::path::Path, shard: Option<crate::shard::Shard>) -> Result<String, CommandError> {
    // A `tranche switch` or `retire` that died before its end is not resumed: left out.
    let runs: Vec<(String, Option<crate::shard::Shard>)> = journal::unfinished_runs(state_dir)
        .into_iter()
        .filter_map(|id| {
            let record = RunRecord::load(state_dir, &id).ok();
            if record.as_ref().is_some_and(|r| !resumable(&r.command)) {
                return None;
            }
            Some((id, record.and_then(|r| r.shard)))
        })
        .collect();
    let none = |what: String| CommandError::new(format!("no unfinished run{what} in {}", state_dir.display()));
    if let Some(want) = shard {
        return runs
            .into_iter()
            .find(|(_, s)| *s == Some(want))
            .map(|(id, _)| id)
            .ok_or_else(|| none(format!(" of shard {want}")));
    }
    let Some((newest, _)) = runs.first() else {
        return Err(none(String::new()));
    };
    let mut shards: Vec<String> = runs
        .iter()
        .map(|(id, s)| match s {
            Some(s) => format!("{id} (shard {s})"),
            None => id.clone(),
        })
        .collect();
    let sharded = runs
        .iter()
        .filter_map(|(_, s)| *s)
        .collect::<std::collections::BTreeSet<_>>();
    if sharded.len() > 1 || (!sharded.is_empty() && runs.len() > 1) {
        shards.truncate(10);
        return Err(CommandError::new(format!(
            "several unfinished runs in {}: {}",
            state_dir.display(),
            shards.join(", ")
        ))
        .hint("name the run (`tranche resume RUN_ID`) or its shard (`tranche resume --shard K/N`)"));
    }
    Ok(newest.clone())
}

/// `plan --check`: preflight alone, with plain lines, no journal, nothing changed on the hosts.
pub fn check(r: Release, settings: ssh::SshSettings, events_to: Option<&str>) -> anyhow::Result<i32> {
    eprintln!();
    eprintln!("SSH config: {}", ssh::config::describe(&settings));
    let terminal = report::Terminal::new(true, false);
    let reporter = report::Reporter::new(terminal, events_to, None)
        .map(Arc::new)
        .with_context(|| format!("--events {}", events_to.unwrap_or("")))?;
    let sink = reporter.clone();
    let mut exec = Executor::new(r, settings, events::new_run_id(), Arc::new(move |e| sink.report(&e)));
    exec.mode = Mode::Check;
    Ok(runtime().block_on(exec.run()).exit_code)
}

/// Run the executor with the reporters, the journal and the signal handlers.
pub(super) fn execute(
    r: Release,
    record: RunRecord,
    mode: Mode,
    carried: Carried,
    run: &RunOptions,
    ssh: &SshOptions,
) -> anyhow::Result<i32> {
    execute_then(r, record, mode, carried, run, ssh, None)
}

/// `execute`, with what the release does once every host finished well (blue-green's switch).
pub(super) fn execute_then(
    r: Release,
    record: RunRecord,
    mode: Mode,
    carried: Carried,
    run: &RunOptions,
    ssh: &SshOptions,
    after: Option<crate::executor::AfterHosts>,
) -> anyhow::Result<i32> {
    let confirms =
        [r.playbook.rollout.canary_pause, r.playbook.rollout.pause].contains(&crate::playbook::Pause::Confirm);
    if confirms && !run.yes && !Settings::get().can_ask() {
        return Err(
            CommandError::new("the playbook pauses for confirmation, but there is no terminal to ask on")
                .hint("pass --yes to answer yes, or use a duration for `rollout.canary_pause`/`rollout.pause`")
                .into(),
        );
    }
    let settings = inputs::ssh_settings(ssh)?;
    // `--report`: written once before anything else (a resumed run's page starts with what its
    // journal holds), so a path that cannot be written stops the run here.
    let html = match &run.report {
        Some(file) => Some(super::report::live(file, &run.state_dir, &record)?),
        None => None,
    };
    record
        .save(&run.state_dir)
        .with_context(|| format!("cannot write the run record under {}", run.state_dir.display()))?;
    let journal = journal::journal_path(&run.state_dir, &record.run_id);
    let terminal = report::Terminal::new(run.no_progress, run.quiet);
    let mut reporter = report::Reporter::new(terminal, run.events.as_deref(), Some(&journal))
        .map(|r| r.with_ci(run.junit.clone(), run.summary.clone()))
        .map(|r| html.into_iter().fold(r, report::Reporter::with_sink))
        .map(|rep| match r.playbook.metrics.clone() {
            Some(m) => rep.with_sink(Box::new(crate::metrics::Pushgateway::start(m))),
            None => rep,
        })
        .context("cannot open the event stream or the journal")?;
    if let Some(n) = crate::notify::NotifySink::start(&r.playbook, crate::redact::secrets_of(&r)) {
        reporter = reporter.with_sink(Box::new(n));
    }
    let reporter = Arc::new(reporter);
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
    exec.after_hosts = after;
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
    // A confirmation question left waiting on the terminal (the run was interrupted while it
    // asked) must not keep the process alive.
    rt.shutdown_background();
    if let Some(e) = reporter.journal_error() {
        // The run stopped starting hosts when the journal failed; resume reads what did reach it.
        let code = match outcome.exit_code {
            exit_code::SUCCESS => exit_code::INTERRUPTED,
            code => code,
        };
        return Err(
            CommandError::new(format!("{e}; the run stopped there: no host started after it"))
                .hint(format!(
                    "free the space or fix {}, then `tranche resume {record_id}` continues",
                    run.state_dir.display()
                ))
                .code(code)
                .into(),
        );
    }
    Ok(outcome.exit_code)
}

/// Run `script` on every host (a few connections at a time); its output, or why not.
pub async fn on_each_host(
    p: &crate::playbook::Playbook,
    hosts: &[crate::inventory::Host],
    settings: &ssh::SshSettings,
    script: &crate::remote::RemoteCommand,
) -> Vec<(String, Result<ssh::ExecOutput, String>)> {
    let script = script.to_command();
    on_hosts_with(p, hosts, settings, std::time::Duration::from_secs(30), |_| {
        Ok(script.clone())
    })
    .await
}

/// Run on every host at once (at most `max_connecting` at a time) the command `script_for`
/// gives it, each within `timeout`; its output, or why not.
pub async fn on_hosts_with(
    p: &crate::playbook::Playbook,
    hosts: &[crate::inventory::Host],
    settings: &ssh::SshSettings,
    timeout: std::time::Duration,
    script_for: impl Fn(&crate::inventory::Host) -> Result<String, String>,
) -> Vec<(String, Result<ssh::ExecOutput, String>)> {
    let specs: Vec<_> = hosts.iter().map(crate::reach::host_spec).collect();
    ssh::config::prefetch(settings, &specs);
    let gate = Arc::new(tokio::sync::Semaphore::new(settings.max_connecting.max(1)));
    let script_for = &script_for;
    futures::future::join_all(hosts.iter().map(|h| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.expect("gate");
            let res = async {
                let script = script_for(h)?;
                let mut conn = ssh::Connection::open(&crate::reach::endpoint(h, settings), settings)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.become_root = crate::reach::wants_become(p, h);
                let out = conn.exec(&script, timeout).await;
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
