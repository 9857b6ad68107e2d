//! The run record and its journal under `<state-dir>/runs/<run-id>/`: `run.json` says what was
//! asked (files, their checksums, the command), `journal.jsonl` holds every event. Together
//! they are the source of truth for `tranche resume`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::executor::Carried;

/// What a run was asked to do, saved when it starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    /// `release` or `rollback`.
    pub command: String,
    /// `rollback --to`.
    pub to: Option<String>,
    pub inventories: Vec<PathBuf>,
    pub playbook: PathBuf,
    pub limit: Option<String>,
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
}

pub fn run_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(run_id)
}

pub fn journal_path(state_dir: &Path, run_id: &str) -> PathBuf {
    run_dir(state_dir, run_id).join("journal.jsonl")
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
        std::fs::write(
            dir.join("run.json"),
            serde_json::to_string_pretty(self).expect("record serialises"),
        )
    }

    pub fn load(state_dir: &Path, run_id: &str) -> Result<RunRecord, String> {
        let path = run_dir(state_dir, run_id).join("run.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("no run {run_id} in {}: {e}", state_dir.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))
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

/// What the journal says about a run.
#[derive(Debug, Clone, Default)]
pub struct JournalSummary {
    /// Hosts whose pipeline ended (ok, failed or reverted), or that were already there.
    pub done: HashSet<String>,
    pub carried: Carried,
    /// Whether some host passed (so a resumed run needs no canary).
    pub any_ok: bool,
    /// The exit code of the last `run_finished`, if the run got that far.
    pub exit_code: Option<i64>,
}

/// Read a journal. A torn last line (the controller killed mid-write) is ignored.
pub fn read_journal(path: &Path) -> Result<JournalSummary, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut last: HashMap<String, (String, String)> = HashMap::new();
    let mut sum = JournalSummary::default();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let host = e["host"].as_str().unwrap_or_default().to_string();
        match e["type"].as_str() {
            Some("host_started") => {
                sum.carried.started.insert(host.clone());
                if let Some(prev) = e["previous"].as_str() {
                    // The first run's view wins: later resumes may already see the new release.
                    sum.carried.previous.entry(host).or_insert_with(|| prev.to_string());
                }
            }
            Some("host_finished") => {
                last.insert(
                    host,
                    (
                        e["status"].as_str().unwrap_or_default().to_string(),
                        e["msg"].as_str().unwrap_or_default().to_string(),
                    ),
                );
            }
            Some("run_finished") => sum.exit_code = e["exit_code"].as_i64(),
            _ => {}
        }
    }
    for (host, (status, msg)) in last {
        match status.as_str() {
            "ok" => {
                sum.any_ok = true;
                sum.done.insert(host);
            }
            "failed" | "reverted" => {
                sum.carried.failed += 1;
                sum.done.insert(host);
            }
            "skipped" if !msg.starts_with("not started") => {
                sum.done.insert(host);
            }
            _ => {}
        }
    }
    // Hosts that finished need nothing carried.
    sum.carried.started.retain(|h| !sum.done.contains(h));
    Ok(sum)
}

/// The newest run in `state_dir` that did not finish (no `run_finished`, or exit 130).
pub fn latest_unfinished(state_dir: &Path) -> Option<String> {
    let mut runs: Vec<String> = std::fs::read_dir(state_dir.join("runs"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    runs.sort();
    runs.into_iter()
        .rev()
        .find(|id| match read_journal(&journal_path(state_dir, id)) {
            Ok(s) => matches!(s.exit_code, None | Some(130)),
            Err(_) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_summary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        std::fs::write(
            &p,
            [
                r#"{"type":"host_started","host":"a","previous":"1"}"#,
                r#"{"type":"host_finished","host":"a","status":"ok","msg":"on 2"}"#,
                r#"{"type":"host_started","host":"b","previous":"1"}"#,
                r#"{"type":"host_finished","host":"c","status":"failed","msg":"x"}"#,
                r#"{"type":"host_finished","host":"d","status":"skipped","msg":"not started: the run was interrupted"}"#,
                r#"{"type":"host_fin"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let s = read_journal(&p).unwrap();
        assert_eq!(s.done, HashSet::from(["a".to_string(), "c".to_string()]));
        assert_eq!(s.carried.started, HashSet::from(["b".to_string()]));
        assert_eq!(s.carried.previous.get("b").map(String::as_str), Some("1"));
        assert_eq!(s.carried.failed, 1);
        assert!(s.any_ok);
        assert_eq!(s.exit_code, None);
    }
}
