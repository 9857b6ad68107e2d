//! `tranche report RUN_ID -o FILE`: the HTML report of a past run, rebuilt from its journal;
//! and the `--report FILE` sink of a run, started here with what the journal already holds.

use std::path::Path;

use super::error::CommandError;
use crate::journal::{self, RunRecord};
use crate::report::html::{self, LiveReport, PageOptions};
use crate::report::Sink;

/// `tranche report`.
pub fn report(run_id: Option<String>, output: &Path, state_dir: &Path) -> anyhow::Result<i32> {
    let run_id = match run_id {
        Some(id) => id,
        None => latest(state_dir)?,
    };
    if run_id.is_empty()
        || run_id.starts_with('.')
        || !run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(
            CommandError::new(format!("`{}` is not a run id", run_id.escape_debug()))
                .hint("a run id looks like 20261121-100000-ab12; `tranche report --latest` takes the newest")
                .into(),
        );
    }
    if !journal::run_dir(state_dir, &run_id).is_dir() {
        return Err(
            CommandError::new(format!("no run {run_id} in {}", state_dir.join("runs").display()))
                .hint(format!(
                    "the runs are the folders of {}; pass the --state-dir the run was started with",
                    state_dir.join("runs").display()
                ))
                .into(),
        );
    }
    let events = html::read_events(&journal::journal_path(state_dir, &run_id)).map_err(|e| {
        let why = match e {
            // ReplayError's own text speaks of resume.
            journal::ReplayError::Damaged { path, line, cause } => {
                format!("{} is damaged: line {line} is not an event ({cause})", path.display())
            }
            e => e.to_string(),
        };
        CommandError::new(format!("cannot rebuild the report of run {run_id}: {why}"))
    })?;
    if events.is_empty() {
        return Err(CommandError::new(format!(
            "cannot rebuild the report of run {run_id}: its journal holds no events"
        ))
        .into());
    }
    let operator = RunRecord::load(state_dir, &run_id).ok().and_then(|r| r.operator);
    let page = html::render(&events, &PageOptions { operator, live: false });
    if output == Path::new("-") {
        super::print_data(page.as_bytes())?;
    } else {
        html::write_atomically(output, &page)
            .map_err(|e| CommandError::new(format!("cannot write {}: {e}", output.display())))?;
        eprintln!("wrote the report of run {run_id} to {}", output.display());
    }
    Ok(crate::exit_code::SUCCESS)
}

/// The newest run of `state_dir` (run ids begin with their start time).
fn latest(state_dir: &Path) -> Result<String, CommandError> {
    let runs = state_dir.join("runs");
    let mut ids: Vec<String> = std::fs::read_dir(&runs)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.pop().ok_or_else(|| {
        CommandError::new(format!("no runs in {}", runs.display()))
            .hint("pass the --state-dir the run was started with")
    })
}

/// The `--report FILE` sink of a run: its first page is written now (with the events a resumed
/// run's journal already holds), so a file that cannot be written stops the run before it
/// starts.
pub fn live(file: &Path, state_dir: &Path, record: &RunRecord) -> anyhow::Result<Box<dyn Sink>> {
    let journal = journal::journal_path(state_dir, &record.run_id);
    let earlier = if journal.exists() {
        html::read_events(&journal).unwrap_or_else(|e| {
            eprintln!("warning: the HTML report starts without the earlier events: {e}");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let sink = LiveReport::start(file, earlier, record.operator.clone())
        .map_err(|e| CommandError::new(format!("cannot write the HTML report {}: {e}", file.display())))?;
    Ok(Box::new(sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resumed run's page starts with what its journal already holds.
    #[test]
    fn the_live_page_of_a_resumed_run_starts_with_the_journal() {
        let d = tempfile::tempdir().unwrap();
        let record = RunRecord {
            run_id: "20261121-100000-ab12".into(),
            command: "release".into(),
            to: None,
            inventories: Vec::new(),
            playbook: "p.yml".into(),
            limit: None,
            shard: None,
            extra_vars: Vec::new(),
            inventory_sha256: String::new(),
            playbook_sha256: String::new(),
            artifact_sha256: None,
            started: String::new(),
            operator: Some("alice".into()),
            controller: None,
        };
        let journal = journal::journal_path(d.path(), &record.run_id);
        std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
        let earlier = crate::events::Event::new(
            &record.run_id,
            crate::events::EventKind::Warning {
                host: Some("h1".into()),
                msg: "from the first run".into(),
            },
        );
        std::fs::write(&journal, earlier.to_json_line() + "\n").unwrap();
        let file = d.path().join("r.html");
        let sink = live(&file, d.path(), &record).unwrap();
        let page = std::fs::read_to_string(&file).unwrap();
        assert!(page.contains("h1: from the first run"), "{page}");
        assert!(page.contains("<dd>alice</dd>"), "{page}");
        assert!(sink.finish().is_empty());
    }
}
