//! `tranche switch` and `tranche retire` as runs of their own: a record under the state folder
//! and a journal (`run_started`, the `switched` or `retired` event, `run_finished`), so that
//! `tranche history` and `tranche report` show who moved traffic or stopped a side by hand, when,
//! and how it went; `--events` streams the same events.

use std::time::Instant;

use anyhow::Context;

use super::run;
use crate::cli::{Files, TrafficOutput};
use crate::events::{Event, EventKind};
use crate::journal;
use crate::release::{Release, ReleaseRequest};
use crate::report::{Reporter, Terminal};

/// A run by hand, started: its events go to the terminal, the journal and `--events`.
pub(super) struct ByHand {
    reporter: Reporter,
    run_id: String,
    secrets: Vec<String>,
    started: Instant,
}

impl ByHand {
    /// Claim a run id, write the record and `run_started` (`mode`: `switch` or `retire`).
    pub(super) fn start(
        files: &Files,
        req: &ReleaseRequest,
        r: &Release,
        command: &str,
        to: Option<String>,
        out: &TrafficOutput,
    ) -> anyhow::Result<ByHand> {
        let run_id = journal::claim_run_id(&out.state_dir, crate::events::new_run_id)
            .with_context(|| format!("cannot create a run under {}", out.state_dir.display()))?;
        let record = run::new_record(files, req, r, &run_id, command, to)?;
        record
            .save(&out.state_dir)
            .with_context(|| format!("cannot write the run record under {}", out.state_dir.display()))?;
        let journal = journal::journal_path(&out.state_dir, &run_id);
        let reporter = Reporter::new(Terminal::new(true, false), out.events.as_deref(), Some(&journal))
            .context("cannot open the event stream or the journal")?;
        let run = ByHand {
            reporter,
            run_id,
            secrets: crate::redact::secrets_of(r),
            started: Instant::now(),
        };
        run.event(EventKind::RunStarted {
            service: r.playbook.service.clone(),
            version: r.playbook.version.clone(),
            hosts: super::switch::all_hosts(r)?.len(),
            mode: command.to_string(),
            plan: crate::report::plan::summary(r),
        });
        Ok(run)
    }

    pub(super) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Report `kind`, its secrets scrubbed. A journal that cannot be written is a warning on
    /// the terminal: what was done on the hosts is done.
    pub(super) fn event(&self, mut kind: EventKind) {
        kind.redact(&self.secrets);
        if let Err(e) = self.reporter.report(&Event::new(&self.run_id, kind)) {
            eprintln!("warning: {e}");
        }
    }

    /// `run_finished` with the exit code and the line that says how it ended.
    pub(super) fn finish(self, exit_code: i32, msg: String) -> i32 {
        self.event(EventKind::RunFinished {
            ok: 0,
            failed: 0,
            reverted: 0,
            skipped: 0,
            exit_code,
            ms: self.started.elapsed().as_millis() as u64,
            msg,
        });
        self.reporter.finish();
        exit_code
    }
}
