//! The run record and its journal under `<state-dir>/runs/<run-id>/`: `run.json` says what was
//! asked (files, their checksums, the command), `journal.jsonl` holds every event. Together
//! they are the source of truth for `tranche resume`.
//!
//! The journal is written here ([`JournalWriter`]: every event a line, on disk before any step
//! that changes a host) and read here ([`read_journal`]: typed events replayed, never their
//! message text).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::Event;

mod replay;
mod writer;
use replay::Replay;
pub use writer::{needs_sync, JournalError, JournalWriter};

/// What a resumed run carries over from the journal of the interrupted one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried {
    /// The release each host had before the interrupted run changed it.
    pub previous: HashMap<String, String>,
    /// Hosts whose pipeline had started: they go through it again whatever they look like now.
    pub started: HashSet<String>,
    /// Hosts that already failed, counted against the budget.
    pub failed: usize,
}

/// What a run was asked to do, saved when it starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    /// `release` or `rollback`; `switch` or `retire` for a blue-green run by hand (not resumed).
    pub command: String,
    /// `rollback --to`.
    pub to: Option<String>,
    pub inventories: Vec<PathBuf>,
    pub playbook: PathBuf,
    pub limit: Option<String>,
    /// `--shard K/N`; absent for a run of every targeted host (and in records of older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::Shard>,
    /// The `-e` values as written: a secret one is `@env:NAME`, read again on resume, so no
    /// secret value is ever stored here.
    pub extra_vars: Vec<(String, String)>,
    /// sha256 of the inventory files (in order) and of the playbook, to refuse a changed plan.
    pub inventory_sha256: String,
    pub playbook_sha256: String,
    /// sha256 of the artifact: a rebuilt artifact under the same version is another release.
    #[serde(default)]
    pub artifact_sha256: Option<String>,
    pub started: String,
    /// Who started the run (for its report); absent in records of older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The host name of the machine that ran it; absent in records of older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
}

pub fn run_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(run_id)
}

pub fn journal_path(state_dir: &Path, run_id: &str) -> PathBuf {
    run_dir(state_dir, run_id).join("journal.jsonl")
}

/// Create the folder of a new run under an id from `new_id`, taking another id while the one
/// given is already a run's: two runs started on one controller in the same second (two shards
/// of one fleet, say) must not share a record and a journal. The folder is created atomically,
/// so of two runs drawing the same id only one gets it.
pub fn claim_run_id(state_dir: &Path, mut new_id: impl FnMut() -> String) -> std::io::Result<String> {
    std::fs::create_dir_all(state_dir.join("runs"))?;
    let mut last = String::new();
    for _ in 0..100 {
        last = new_id();
        match std::fs::create_dir(run_dir(state_dir, &last)) {
            Ok(()) => return Ok(last),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!(
            "no free run id: {} and 99 others are taken",
            run_dir(state_dir, &last).display()
        ),
    ))
}

/// The combined sha256 of files, in order.
pub fn files_sha256(paths: &[PathBuf]) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p)?);
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

impl RunRecord {
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let dir = run_dir(state_dir, &self.run_id);
        std::fs::create_dir_all(&dir)?;
        // On disk before the journal's first event: resume needs both.
        let mut f = File::create(dir.join("run.json"))?;
        f.write_all(
            serde_json::to_string_pretty(self)
                .expect("record serialises")
                .as_bytes(),
        )?;
        f.sync_all()
    }

    pub fn load(state_dir: &Path, run_id: &str) -> Result<RunRecord, RecordError> {
        let path = run_dir(state_dir, run_id).join("run.json");
        let text = std::fs::read_to_string(&path).map_err(|cause| RecordError::Missing {
            run_id: run_id.to_string(),
            state_dir: state_dir.to_path_buf(),
            cause,
        })?;
        serde_json::from_str(&text).map_err(|cause| RecordError::Damaged { path, cause })
    }

    /// What changed in the files since the run started, if anything.
    pub fn changes(&self) -> Vec<String> {
        let mut out = Vec::new();
        match files_sha256(&crate::inventory::Inventory::input_files(
            &self.inventories,
            self.playbook.parent(),
        )) {
            Ok(s) if s == self.inventory_sha256 => {}
            Ok(_) => out.push("the inventory changed".to_string()),
            Err(e) => out.push(format!("the inventory cannot be read: {e}")),
        }
        match files_sha256(std::slice::from_ref(&self.playbook)) {
            Ok(s) if s == self.playbook_sha256 => {}
            Ok(_) => out.push("the playbook changed".to_string()),
            Err(e) => out.push(format!("the playbook cannot be read: {e}")),
        }
        out
    }
}

/// Why a run's record (`run.json`) cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("no run {run_id} in {}: {cause}", state_dir.display())]
    Missing {
        run_id: String,
        state_dir: PathBuf,
        cause: std::io::Error,
    },
    #[error("{} is damaged: {cause}", path.display())]
    Damaged { path: PathBuf, cause: serde_json::Error },
}

impl RecordError {
    pub fn hint(&self) -> Option<String> {
        match self {
            RecordError::Missing { state_dir, .. } => Some(format!(
                "the runs are the folders of {}; pass the --state-dir the run was started with",
                state_dir.join("runs").display()
            )),
            RecordError::Damaged { .. } => None,
        }
    }
}

/// Why a journal (`journal.jsonl`) cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{} is damaged: line {line} is not an event ({cause}); `tranche resume` cannot trust it", path.display())]
    Damaged {
        path: PathBuf,
        line: usize,
        cause: serde_json::Error,
    },
}

impl ReplayError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ReplayError::Read { .. } => None,
            ReplayError::Damaged { .. } => Some(
                "`tranche status` shows the release each host runs now; `tranche unlock` frees the hosts the run left locked".into(),
            ),
        }
    }
}

/// What the journal says about a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalSummary {
    /// Hosts whose pipeline ended (ok, failed or reverted), or that were already on the release.
    pub done: HashSet<String>,
    pub carried: Carried,
    /// Whether some host passed (so a resumed run needs no canary).
    pub any_ok: bool,
    /// The exit code of the `run_finished` of the last run (the first or a resume), if it got
    /// that far.
    pub exit_code: Option<i64>,
    /// Blue-green: the side the run last moved traffic to, if it did.
    pub switched: Option<String>,
}

/// Read a journal. A torn last line (the controller killed mid-write) is ignored; any other
/// line that is not an event is an error naming it.
pub fn read_journal(path: &Path) -> Result<JournalSummary, ReplayError> {
    let bytes = std::fs::read(path).map_err(|cause| ReplayError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut replay = Replay::default();
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        let torn = !raw.ends_with(b"\n");
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(e) => replay.apply(&e),
            // Only the last line can be torn: a write cut short never wrote its newline.
            Err(_) if torn => break,
            Err(cause) => {
                return Err(ReplayError::Damaged {
                    path: path.to_path_buf(),
                    line: i + 1,
                    cause,
                })
            }
        }
    }
    Ok(replay.summary())
}
/// The newest run in `state_dir` that did not finish (no `run_finished`, or exit 130). A run
/// whose journal is damaged counts: resuming it says what is wrong, rather than picking an
/// older run.
pub fn latest_unfinished(state_dir: &Path) -> Option<String> {
    unfinished_runs(state_dir).into_iter().next()
}

/// Every run in `state_dir` that did not finish, newest first (see [`latest_unfinished`]).
pub fn unfinished_runs(state_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(state_dir.join("runs")) else {
        return Vec::new();
    };
    let mut runs: Vec<String> = dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    runs.sort();
    runs.reverse();
    runs.retain(|id| {
        let path = journal_path(state_dir, id);
        match read_journal(&path) {
            Ok(s) => matches!(s.exit_code, None | Some(130)),
            Err(_) => path.exists(),
        }
    });
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_never_takes_the_folder_of_another() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim_run_id(dir.path(), || "20261202-040506-ab12".into()).unwrap();
        assert_eq!(first, "20261202-040506-ab12");
        // The same second, the same random part: the second run draws again.
        let mut ids = ["20261202-040506-ab12", "20261202-040506-ab12", "20261202-040506-cd34"].into_iter();
        let second = claim_run_id(dir.path(), || ids.next().unwrap().into()).unwrap();
        assert_eq!(second, "20261202-040506-cd34");
        // A generator that only ever draws taken ids ends in an error, not a loop.
        let e = claim_run_id(dir.path(), || "20261202-040506-ab12".into()).unwrap_err();
        assert!(e.to_string().contains("no free run id"), "{e}");
    }

    /// An event line as the journal holds it, from the fields after the envelope.
    fn ev(body: &str) -> String {
        format!(r#"{{"v":1,"ts":"2026-11-21T10:00:00.000Z","run":"20261121-100000-ab12",{body}}}"#)
    }

    fn run_started(version: &str) -> String {
        ev(&format!(
            r#""type":"run_started","service":"demo","version":"{version}","hosts":4,"mode":"release","plan":{{"v":1}}"#
        ))
    }
    fn host_started(host: &str, previous: &str) -> String {
        ev(&format!(
            r#""type":"host_started","batch":1,"host":"{host}","previous":"{previous}""#
        ))
    }
    fn step_started(host: &str, step: &str) -> String {
        ev(&format!(
            r#""type":"step_started","batch":1,"host":"{host}","step":"{step}""#
        ))
    }
    fn step_finished(host: &str, step: &str, status: &str) -> String {
        ev(&format!(
            r#""type":"step_finished","batch":1,"host":"{host}","step":"{step}","status":"{status}","ms":1,"msg":"""#
        ))
    }
    fn host_finished(host: &str, status: &str, msg: &str) -> String {
        ev(&format!(
            r#""type":"host_finished","batch":1,"host":"{host}","status":"{status}","ms":1,"msg":"{msg}""#
        ))
    }
    fn run_finished(code: i32) -> String {
        ev(&format!(
            r#""type":"run_finished","ok":0,"failed":0,"reverted":0,"skipped":0,"exit_code":{code},"ms":1,"msg":"m""#
        ))
    }

    fn read(lines: &[String], tail: &str) -> Result<JournalSummary, ReplayError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        text.push_str(tail);
        std::fs::write(&p, text).unwrap();
        read_journal(&p)
    }

    fn set(hosts: &[&str]) -> HashSet<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    /// What each journal says: done, started (goes through the pipeline again), failed, any ok,
    /// exit code.
    #[test]
    fn typed_replay_table() {
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Vec<String>, &[&str], &[&str], usize, bool, Option<i64>)> = vec![
            (
                "a host that passed is done",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "1.0.0"),
                    step_started("a", "deregister"),
                    step_started("a", "register"),
                    host_finished("a", "ok", "on 2.0.0"),
                ],
                &["a"],
                &[],
                0,
                true,
                None,
            ),
            (
                "failed, and reverted by its own ladder: done and counted",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "1.0.0"),
                    step_started("a", "start"),
                    host_finished("a", "reverted", "x"),
                    host_started("b", "1.0.0"),
                    host_finished("b", "failed", "x"),
                ],
                &["a", "b"],
                &[],
                2,
                false,
                None,
            ),
            (
                "preflight failed: a host_finished without host_started",
                vec![run_started("2.0.0"), host_finished("a", "failed", "preflight failed")],
                &["a"],
                &[],
                1,
                false,
                None,
            ),
            (
                "cut off at stop: started, whatever it looks like now",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "1.0.0"),
                    step_started("a", "deregister"),
                    step_finished("a", "deregister", "ok"),
                    step_started("a", "stop"),
                ],
                &[],
                &["a"],
                0,
                false,
                None,
            ),
            (
                "cut off while its pipeline waited for staging: started too",
                vec![run_started("2.0.0"), host_started("a", "1.0.0")],
                &[],
                &["a"],
                0,
                false,
                None,
            ),
            (
                "skipped before any step that changes it: neither done nor started",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "1.0.0"),
                    step_finished("a", "stage", "ok"),
                    step_started("a", "silence"),
                    host_finished("a", "skipped", "already on 2.0.0"),
                    run_finished(130),
                ],
                &[],
                &[],
                0,
                false,
                Some(130),
            ),
            (
                "already there (on the version, staged): done, whatever the message says",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "2.0.0"),
                    step_finished("a", "stage", "skipped"),
                    host_finished("a", "skipped", "not started: the run was interrupted"),
                ],
                &["a"],
                &[],
                0,
                false,
                None,
            ),
            (
                "on the version but staged again (a rebuilt artifact): not done",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "2.0.0"),
                    step_finished("a", "stage", "ok"),
                    host_finished("a", "skipped", "already on 2.0.0"),
                ],
                &[],
                &[],
                0,
                false,
                None,
            ),
            (
                "rolled back by the rollback pass after it passed: done, not a failure",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "1.0.0"),
                    host_finished("a", "ok", "on 2.0.0"),
                    step_started("a", "deregister"),
                    host_finished("a", "reverted", "rolled back to 1.0.0"),
                    run_finished(3),
                ],
                &["a"],
                &[],
                0,
                true,
                Some(3),
            ),
            (
                "a resume that skipped a host the first run left halfway: still started",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "1.0.0"),
                    step_started("a", "deploy"),
                    run_finished(130),
                    run_started("2.0.0"),
                    host_started("a", "2.0.0"),
                    step_finished("a", "stage", "skipped"),
                    host_finished("a", "skipped", "already on 2.0.0"),
                ],
                &[],
                &["a"],
                0,
                false,
                None,
            ),
            (
                "a resume that finished the host settles it; the exit code is the last run's",
                vec![
                    run_started("2.0.0"),
                    host_started("a", "1.0.0"),
                    step_started("a", "deploy"),
                    run_finished(130),
                    run_started("2.0.0"),
                    host_started("a", "2.0.0"),
                    host_finished("a", "ok", "on 2.0.0"),
                    run_finished(0),
                ],
                &["a"],
                &[],
                0,
                true,
                Some(0),
            ),
        ];
        for (name, lines, done, started, failed, any_ok, code) in cases {
            let s = read(&lines, "").unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.done, set(done), "{name}: done");
            assert_eq!(s.carried.started, set(started), "{name}: started");
            assert_eq!(s.carried.failed, failed, "{name}: failed");
            assert_eq!(s.any_ok, any_ok, "{name}: any ok");
            assert_eq!(s.exit_code, code, "{name}: exit code");
        }
    }

    #[test]
    fn the_first_runs_previous_release_wins() {
        let s = read(
            &[
                run_started("2.0.0"),
                host_started("a", "1.0.0"),
                step_started("a", "stop"),
                run_finished(130),
                run_started("2.0.0"),
                host_started("a", "2.0.0"),
            ],
            "",
        )
        .unwrap();
        assert_eq!(s.carried.previous.get("a").map(String::as_str), Some("1.0.0"));
    }

    #[test]
    fn a_torn_last_line_is_ignored_a_corrupt_one_is_an_error() {
        let lines = [run_started("2.0.0"), host_started("a", "1.0.0")];
        // Torn: cut mid-line, even mid-character.
        let s = read(&lines, r#"{"v":1,"type":"host_fin"#).unwrap();
        assert_eq!(s.carried.started, set(&["a"]));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut bytes = format!("{}\n", lines[0]).into_bytes();
        bytes.extend_from_slice(&"{\"msg\":\"é".as_bytes()[..9]);
        std::fs::write(&p, bytes).unwrap();
        assert!(read_journal(&p).is_ok());
        // A whole event without its newline still counts.
        let s = read(&lines[..1], &host_started("a", "1.0.0")).unwrap();
        assert_eq!(s.carried.started, set(&["a"]));
        // A bad line with lines after it, or a whole bad last line: an error naming it.
        let e = read(&[lines[0].clone(), r#"{"type":"host_fin"#.into(), lines[1].clone()], "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2 is not an event"), "{e}");
        let e = read(&[lines[0].clone(), r#"{"type":"host_exploded"}"#.into()], "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2 is not an event"), "{e}");
        assert!(e.contains("journal.jsonl is damaged"), "{e}");
    }

    #[test]
    fn the_latest_unfinished_run_may_be_a_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let write = |id: &str, lines: &[String]| {
            let p = journal_path(dir.path(), id);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        };
        write("20261121-100000-aaaa", &[run_started("2.0.0"), run_finished(130)]);
        write("20261121-110000-bbbb", &[run_started("2.0.0"), run_finished(0)]);
        assert_eq!(latest_unfinished(dir.path()).as_deref(), Some("20261121-100000-aaaa"));
        write(
            "20261121-120000-cccc",
            &[run_started("2.0.0"), "garbage".into(), host_started("a", "1")],
        );
        assert_eq!(latest_unfinished(dir.path()).as_deref(), Some("20261121-120000-cccc"));
        // A run without a journal is no candidate.
        std::fs::create_dir_all(run_dir(dir.path(), "20261121-130000-dddd")).unwrap();
        assert_eq!(latest_unfinished(dir.path()).as_deref(), Some("20261121-120000-cccc"));
    }
}
