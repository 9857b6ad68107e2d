//! `tranche history`: every run one or more state directories hold (`<state-dir>/runs/<id>/`),
//! newest first: when, who, from which controller, what it did and how it ended. Several state
//! directories (two controllers' copies) are merged by start time. A table (stderr) for people,
//! JSON (stdout) for scripts.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::CommandError;
use crate::cli::Format;
use crate::events::{Event, EventKind};
use crate::exit_code;
use crate::journal::{self, RunRecord};

/// One run, as its record and its journal tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub run_id: String,
    /// When the run started (UTC, RFC 3339).
    pub started: String,
    pub operator: Option<String>,
    /// The host name of the machine that ran tranche.
    pub controller: Option<String>,
    pub service: Option<String>,
    pub version: Option<String>,
    /// `release` or `rollback`.
    pub mode: String,
    /// `--shard K/N` of the run, if it had one (JSON only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The hosts the run targeted.
    pub hosts: Option<usize>,
    /// `ok`, `hosts_failed`, `preflight_failed`, `budget_exceeded`, `config_error`,
    /// `interrupted`, `unfinished` (no `run_finished` after the last start) or
    /// `unreadable` (the journal is damaged).
    pub outcome: String,
    pub exit_code: Option<i32>,
    /// From the run's start to its last event.
    pub duration_ms: Option<u64>,
    /// The state directory the run is in.
    pub state_dir: PathBuf,
}

/// What `run_finished`'s exit code means, as a word.
fn outcome_of(code: i32) -> String {
    match code {
        exit_code::SUCCESS => "ok".into(),
        exit_code::HOSTS_FAILED => "hosts_failed".into(),
        exit_code::CONFIG => "config_error".into(),
        exit_code::PREFLIGHT => "preflight_failed".into(),
        exit_code::BUDGET_EXCEEDED => "budget_exceeded".into(),
        exit_code::INTERRUPTED => "interrupted".into(),
        c => format!("exit_{c}"),
    }
}

fn millis(ts: &str) -> Option<i128> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() / 1_000_000)
}

/// The entry of one run folder; `None` when it holds no readable `run.json`.
pub fn entry(state_dir: &Path, run_id: &str) -> Option<HistoryEntry> {
    let record = RunRecord::load(state_dir, run_id).ok()?;
    let mut e = HistoryEntry {
        run_id: record.run_id.clone(),
        started: record.started.clone(),
        operator: record.operator.clone(),
        controller: record.controller.clone(),
        service: None,
        version: record.to.clone(),
        mode: record.command.clone(),
        shard: record.shard.map(|s| s.to_string()),
        hosts: None,
        outcome: "unfinished".into(),
        exit_code: None,
        duration_ms: None,
        state_dir: state_dir.to_path_buf(),
    };
    let events: Vec<Event> = match crate::report::html::read_events(&journal::journal_path(state_dir, run_id)) {
        Ok(ev) => ev,
        // No journal yet: the run stopped before its first event.
        Err(journal::ReplayError::Read { .. }) => Vec::new(),
        Err(journal::ReplayError::Damaged { .. }) => {
            e.outcome = "unreadable".into();
            return Some(e);
        }
    };
    for ev in &events {
        match &ev.kind {
            EventKind::RunStarted {
                service,
                version,
                hosts,
                mode,
                ..
            } => {
                // The first start names the run; a resume starts again and may end otherwise.
                if e.service.is_none() {
                    e.service = Some(service.clone());
                    e.version = Some(version.clone());
                    e.hosts = Some(*hosts);
                    e.mode = mode.clone();
                }
                e.exit_code = None;
            }
            EventKind::RunFinished { exit_code, .. } => e.exit_code = Some(*exit_code),
            _ => {}
        }
    }
    if let Some(code) = e.exit_code {
        e.outcome = outcome_of(code);
    }
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        if let (Some(a), Some(b)) = (millis(&first.ts), millis(&last.ts)) {
            e.duration_ms = u64::try_from(b - a).ok();
        }
    }
    Some(e)
}

/// Every run of every state directory, newest first. A state directory that does not exist is
/// an error (a mistyped path must not look like an empty history); one without runs is not.
pub fn collect(state_dirs: &[PathBuf]) -> Result<Vec<HistoryEntry>, CommandError> {
    let mut out = Vec::new();
    for dir in state_dirs {
        if !dir.is_dir() {
            return Err(
                CommandError::new(format!("the state directory {} does not exist", dir.display())).hint(
                    "pass the --state-dir runs were started with (the default is .tranche in the current directory)",
                ),
            );
        }
        let Ok(runs) = std::fs::read_dir(dir.join("runs")) else {
            continue;
        };
        for run in runs.flatten() {
            if let Some(id) = run.file_name().to_str() {
                out.extend(entry(dir, id));
            }
        }
    }
    // Merged by start time (the same instant format everywhere), then by run id.
    out.sort_by(|a, b| {
        let ka = (millis(&a.started), &a.run_id);
        let kb = (millis(&b.started), &b.run_id);
        kb.cmp(&ka)
    });
    Ok(out)
}

fn duration_text(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => {
            let s = ms / 1000;
            if s < 3600 {
                format!("{}m{:02}s", s / 60, s % 60)
            } else {
                format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
            }
        }
    }
}

/// The runs as a table for people.
pub fn to_table(entries: &[HistoryEntry]) -> String {
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let head = [
        "STARTED",
        "OPERATOR",
        "CONTROLLER",
        "SERVICE",
        "VERSION",
        "MODE",
        "HOSTS",
        "OUTCOME",
        "DURATION",
        "RUN",
    ];
    let rows: Vec<[String; 10]> = entries
        .iter()
        .map(|e| {
            [
                // To the second: `2026-12-02T02:15:06Z`.
                match e.started.split_once('.') {
                    Some((s, _)) => format!("{s}Z"),
                    None => e.started.clone(),
                },
                dash(&e.operator),
                dash(&e.controller),
                dash(&e.service),
                dash(&e.version),
                e.mode.clone(),
                e.hosts.map_or("-".into(), |h| h.to_string()),
                e.outcome.clone(),
                duration_text(e.duration_ms),
                e.run_id.clone(),
            ]
        })
        .collect();
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        l.push('\n');
        l
    };
    let mut out = line(head.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push_str("(no runs)\n");
    }
    out
}

/// `tranche history`.
pub fn history(
    state_dirs: &[PathBuf],
    service: Option<&str>,
    limit: Option<usize>,
    format: Format,
) -> anyhow::Result<i32> {
    let mut entries = collect(state_dirs)?;
    if let Some(s) = service {
        entries.retain(|e| e.service.as_deref() == Some(s));
    }
    if let Some(n) = limit {
        entries.truncate(n);
    }
    match format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&entries).expect("history serialises");
            super::print_data(format!("{json}\n").as_bytes())?;
        }
        Format::Table => eprint!("{}", to_table(&entries)),
    }
    Ok(exit_code::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Path, id: &str, started: &str, command: &str, operator: &str, controller: Option<&str>) {
        let r = RunRecord {
            run_id: id.into(),
            command: command.into(),
            to: None,
            inventories: vec![],
            playbook: "p.yml".into(),
            limit: None,
            shard: None,
            extra_vars: vec![],
            inventory_sha256: String::new(),
            playbook_sha256: String::new(),
            artifact_sha256: None,
            started: started.into(),
            operator: Some(operator.into()),
            controller: controller.map(Into::into),
        };
        r.save(dir).unwrap();
    }

    fn journal(dir: &Path, id: &str, lines: &[String]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(journal::journal_path(dir, id), text).unwrap();
    }

    fn ev(id: &str, ts: &str, body: &str) -> String {
        format!(r#"{{"v":1,"ts":"{ts}","run":"{id}",{body}}}"#)
    }

    fn started(id: &str, ts: &str, service: &str, version: &str, mode: &str) -> String {
        ev(
            id,
            ts,
            &format!(
                r#""type":"run_started","service":"{service}","version":"{version}","hosts":3,"mode":"{mode}","plan":{{"v":1}}"#
            ),
        )
    }

    fn finished(id: &str, ts: &str, code: i32) -> String {
        ev(
            id,
            ts,
            &format!(
                r#""type":"run_finished","ok":3,"failed":0,"reverted":0,"skipped":0,"exit_code":{code},"ms":1,"msg":"m""#
            ),
        )
    }

    /// Two controllers' state directories: a release from A, an interrupted release from B, a
    /// rollback from A, an unfinished run from B, one run without a journal and one damaged.
    fn two_controllers() -> (tempfile::TempDir, tempfile::TempDir) {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (pa, pb) = (a.path(), b.path());
        record(pa, "r1", "2026-12-01T10:00:00.000Z", "release", "alice", Some("ctl-a"));
        journal(
            pa,
            "r1",
            &[
                started("r1", "2026-12-01T10:00:00.100Z", "web", "2.0.0", "release"),
                finished("r1", "2026-12-01T10:01:05.100Z", 0),
            ],
        );
        record(pb, "r2", "2026-12-01T11:00:00.000Z", "release", "bob", Some("ctl-b"));
        journal(
            pb,
            "r2",
            &[
                started("r2", "2026-12-01T11:00:00.000Z", "api", "3.0.0", "release"),
                finished("r2", "2026-12-01T11:00:02.500Z", 130),
            ],
        );
        record(pa, "r3", "2026-12-01T12:00:00.000Z", "rollback", "alice", None);
        journal(
            pa,
            "r3",
            &[
                started("r3", "2026-12-01T12:00:00.000Z", "web", "1.0.0", "rollback"),
                finished("r3", "2026-12-01T12:00:01.000Z", 1),
            ],
        );
        record(pb, "r4", "2026-12-01T13:00:00.000Z", "release", "bob", Some("ctl-b"));
        journal(
            pb,
            "r4",
            &[started("r4", "2026-12-01T13:00:00.000Z", "web", "2.1.0", "release")],
        );
        record(pb, "r5", "2026-12-01T14:00:00.000Z", "release", "bob", Some("ctl-b"));
        record(pa, "r6", "2026-12-01T09:00:00.000Z", "release", "alice", Some("ctl-a"));
        std::fs::write(journal::journal_path(pa, "r6"), "not json\n{}\n").unwrap();
        (a, b)
    }

    #[test]
    fn runs_of_two_state_dirs_merge_newest_first_with_their_outcome() {
        let (a, b) = two_controllers();
        let all = collect(&[a.path().to_path_buf(), b.path().to_path_buf()]).unwrap();
        let got: Vec<(&str, &str, Option<&str>, Option<&str>)> = all
            .iter()
            .map(|e| {
                (
                    e.run_id.as_str(),
                    e.outcome.as_str(),
                    e.operator.as_deref(),
                    e.controller.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("r5", "unfinished", Some("bob"), Some("ctl-b")),
                ("r4", "unfinished", Some("bob"), Some("ctl-b")),
                ("r3", "hosts_failed", Some("alice"), None),
                ("r2", "interrupted", Some("bob"), Some("ctl-b")),
                ("r1", "ok", Some("alice"), Some("ctl-a")),
                ("r6", "unreadable", Some("alice"), Some("ctl-a")),
            ]
        );
        let r1 = all.iter().find(|e| e.run_id == "r1").unwrap();
        assert_eq!(r1.service.as_deref(), Some("web"));
        assert_eq!(r1.version.as_deref(), Some("2.0.0"));
        assert_eq!(r1.hosts, Some(3));
        assert_eq!(r1.duration_ms, Some(65_000));
        assert_eq!(r1.state_dir, a.path());
        let r3 = all.iter().find(|e| e.run_id == "r3").unwrap();
        assert_eq!((r3.mode.as_str(), r3.version.as_deref()), ("rollback", Some("1.0.0")));
        let r5 = all.iter().find(|e| e.run_id == "r5").unwrap();
        assert_eq!((r5.service.as_deref(), r5.duration_ms), (None, None));
    }

    #[test]
    fn a_resumed_run_ends_as_its_last_run_finished_says() {
        let a = tempfile::tempdir().unwrap();
        record(a.path(), "r1", "2026-12-01T10:00:00.000Z", "release", "al", None);
        journal(
            a.path(),
            "r1",
            &[
                started("r1", "2026-12-01T10:00:00.000Z", "web", "2.0.0", "release"),
                finished("r1", "2026-12-01T10:00:01.000Z", 130),
                started("r1", "2026-12-01T10:05:00.000Z", "web", "2.0.0", "release"),
                finished("r1", "2026-12-01T10:05:02.000Z", 0),
            ],
        );
        let e = entry(a.path(), "r1").unwrap();
        assert_eq!(
            (e.outcome.as_str(), e.exit_code, e.duration_ms),
            ("ok", Some(0), Some(302_000))
        );
        journal(
            a.path(),
            "r1",
            &[
                started("r1", "2026-12-01T10:00:00.000Z", "web", "2.0.0", "release"),
                finished("r1", "2026-12-01T10:00:01.000Z", 130),
                started("r1", "2026-12-01T10:05:00.000Z", "web", "2.0.0", "release"),
            ],
        );
        assert_eq!(entry(a.path(), "r1").unwrap().outcome, "unfinished");
    }

    #[test]
    fn a_missing_state_dir_is_an_error_and_an_empty_one_is_not() {
        let a = tempfile::tempdir().unwrap();
        assert_eq!(collect(&[a.path().to_path_buf()]).unwrap(), vec![]);
        let missing = a.path().join("nope");
        let err = collect(&[a.path().to_path_buf(), missing.clone()]).unwrap_err();
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
        assert_eq!(super::super::code_of(&anyhow::Error::from(err)), exit_code::CONFIG);
    }

    #[test]
    fn the_table_has_a_row_per_run_and_the_json_every_field() {
        let (a, b) = two_controllers();
        let all = collect(&[a.path().to_path_buf(), b.path().to_path_buf()]).unwrap();
        let table = to_table(&all);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 7, "{table}");
        assert!(lines[0].starts_with("STARTED "), "{table}");
        let r1: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(
            r1,
            [
                "2026-12-01T10:00:00Z",
                "alice",
                "ctl-a",
                "web",
                "2.0.0",
                "release",
                "3",
                "ok",
                "1m05s",
                "r1"
            ]
        );
        assert!(lines[1].ends_with("r5"), "{table}");
        assert!(to_table(&[]).ends_with("RUN\n(no runs)\n"));
        let json: serde_json::Value = serde_json::to_value(&all).unwrap();
        let r2 = &json[3];
        assert_eq!(r2["run_id"], "r2");
        assert_eq!(r2["operator"], "bob");
        assert_eq!(r2["controller"], "ctl-b");
        assert_eq!(r2["service"], "api");
        assert_eq!(r2["version"], "3.0.0");
        assert_eq!(r2["mode"], "release");
        assert_eq!(r2["hosts"], 3);
        assert_eq!(r2["outcome"], "interrupted");
        assert_eq!(r2["exit_code"], 130);
        assert_eq!(r2["duration_ms"], 2500);
        assert_eq!(r2["started"], "2026-12-01T11:00:00.000Z");
    }
}
