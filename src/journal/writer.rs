//! Writing the journal: every event a line, on disk before any step that changes a host.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::events::{Event, EventKind};

/// The journal a run appends its events to.
///
/// Every event is written with one `write` and no buffer. Before a step that changes a host
/// (and at `host_started` and `run_finished`) the file is `fdatasync`ed, so what resume reads is
/// on disk before the host can change: a few syncs per host.
#[derive(Debug)]
pub struct JournalWriter {
    path: PathBuf,
    file: File,
}

/// A journal write that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot write the journal {}: {source}", path.display())]
pub struct JournalError {
    pub path: PathBuf,
    #[source]
    pub source: std::sync::Arc<std::io::Error>,
}

/// Whether the journal must be on disk once this event is written.
pub fn needs_sync(kind: &EventKind) -> bool {
    match kind {
        EventKind::HostStarted { .. } | EventKind::RunFinished { .. } => true,
        EventKind::StepStarted { step, .. } => step.changes_host(),
        _ => false,
    }
}

impl JournalWriter {
    /// Open (or create) the journal for appending. A torn last line, left by a controller
    /// killed mid-write, is cut off first: the events appended next must not be glued to it.
    pub fn open(path: &Path) -> Result<JournalWriter, JournalError> {
        let err = |source| JournalError {
            path: path.to_path_buf(),
            source: std::sync::Arc::new(source),
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        cut_torn_tail(&mut file).map_err(err)?;
        // The journal's name in its folder is on disk too.
        if let Some(dir) = dir {
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(JournalWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event; on disk before returning when [`needs_sync`] says so.
    pub fn append(&mut self, e: &Event) -> Result<(), JournalError> {
        let mut line = e.to_json_line();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| {
                if needs_sync(&e.kind) {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(|source| JournalError {
                path: self.path.clone(),
                source: std::sync::Arc::new(source),
            })
    }
}

/// End the file with a whole line: a torn last line that is a whole event gets its newline,
/// any other is cut off (as [`super::read_journal`] ignores it).
fn cut_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    // Look back in chunks for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 4096];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep == len {
        return Ok(());
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(keep))?;
    file.read_to_end(&mut tail)?;
    if serde_json::from_slice::<Event>(&tail).is_ok() {
        file.write_all(b"\n")
    } else {
        file.set_len(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Status, Step};
    use crate::journal::read_journal;

    fn event(kind: EventKind) -> Event {
        Event::new("r", kind)
    }

    #[test]
    fn the_writer_appends_whole_lines_after_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs/r/journal.jsonl");
        let first = event(EventKind::HostStarted {
            batch: 1,
            host: "a".into(),
            previous: Some("1".into()),
        });
        {
            let mut w = JournalWriter::open(&p).unwrap();
            w.append(&first).unwrap();
        }
        // Killed mid-write.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"v":1,"ts":"x","run":"r","type":"host_fini"#).unwrap();
        drop(f);
        let second = event(EventKind::Resumed { batch: 2 });
        let mut w = JournalWriter::open(&p).unwrap();
        w.append(&second).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("{}\n{}\n", first.to_json_line(), second.to_json_line()));
        read_journal(&p).unwrap();

        // A whole event left without its newline is kept, and ended.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(first.to_json_line().as_bytes()).unwrap();
        drop(f);
        let mut w = JournalWriter::open(&p).unwrap();
        w.append(&second).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 4);
        read_journal(&p).unwrap();
    }

    #[test]
    fn a_full_disk_is_an_error_naming_the_journal() {
        let mut w = JournalWriter::open(Path::new("/dev/full")).unwrap();
        let e = w
            .append(&event(EventKind::Resumed { batch: 1 }))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot write the journal /dev/full: "), "{e}");
        assert!(e.contains("No space left on device"), "{e}");
    }

    #[test]
    fn synced_before_every_step_that_changes_a_host() {
        let step = |step| EventKind::StepStarted {
            batch: 1,
            host: "a".into(),
            step,
        };
        for (s, want) in [
            (Step::Preflight, false),
            (Step::Stage, false),
            (Step::Silence, true),
            (Step::Deregister, true),
            (Step::Stop, true),
            (Step::Deploy, true),
            (Step::Start, true),
            (Step::Health, false),
            (Step::Register, true),
            (Step::Unsilence, true),
            (Step::Revert, true),
        ] {
            assert_eq!(needs_sync(&step(s)), want, "{s:?}");
        }
        assert!(needs_sync(&EventKind::HostStarted {
            batch: 1,
            host: "a".into(),
            previous: None
        }));
        assert!(needs_sync(&EventKind::RunFinished {
            ok: 0,
            failed: 0,
            reverted: 0,
            skipped: 0,
            exit_code: 0,
            ms: 0,
            msg: String::new()
        }));
        assert!(!needs_sync(&EventKind::StepFinished {
            batch: 1,
            host: "a".into(),
            step: Step::Stop,
            status: Status::Ok,
            ms: 0,
            msg: String::new(),
            stderr: None,
            hint: None
        }));
    }
}
