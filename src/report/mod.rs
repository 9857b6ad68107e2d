//! Everything that turns events and plans into text for people or machines. The executor emits
//! events; the [`Reporter`] fans each one out to the terminal (bars or plain lines), the JSON
//! Lines stream and the journal ([`crate::journal::JournalWriter`]).

mod ci;
pub mod html;
pub mod plan;
mod sink;
pub mod summary;
mod terminal;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::events::Event;
use crate::journal::{JournalError, JournalWriter};
pub use ci::CiReports;
pub use sink::Sink;
pub use terminal::Terminal;

/// Fans events out to every sink. The journal is written (and synced before a step that changes
/// a host) before the call returns, so it is never behind the next remote action.
pub struct Reporter {
    terminal: Terminal,
    events: Option<Mutex<Box<dyn Write + Send>>>,
    journal: Option<Mutex<Journal>>,
    ci: CiReports,
    sinks: Vec<Box<dyn Sink>>,
}

/// The journal, and its first write error: after one, nothing more is written to it (a torn
/// line must stay the last one), and every report says so.
struct Journal {
    writer: JournalWriter,
    failed: Option<JournalError>,
}

impl Reporter {
    pub fn new(terminal: Terminal, events: Option<&str>, journal: Option<&Path>) -> std::io::Result<Reporter> {
        let events: Option<Mutex<Box<dyn Write + Send>>> = match events {
            None => None,
            Some("-") => Some(Mutex::new(Box::new(std::io::stdout()))),
            Some(path) => Some(Mutex::new(Box::new(BufWriter::new(File::create(path)?)))),
        };
        let journal = match journal {
            None => None,
            Some(p) => Some(Mutex::new(Journal {
                writer: JournalWriter::open(p).map_err(|e| std::io::Error::new(e.source.kind(), e.to_string()))?,
                failed: None,
            })),
        };
        Ok(Reporter {
            terminal,
            events,
            journal,
            ci: CiReports::default(),
            sinks: Vec::new(),
        })
    }

    /// Report an event to every sink. An error: the journal could not be written, now or
    /// before; the other sinks got the event all the same.
    pub fn report(&self, e: &Event) -> Result<(), JournalError> {
        let mut res = Ok(());
        if let Some(j) = &self.journal {
            let mut j = j.lock().expect("journal lock");
            if j.failed.is_none() {
                if let Err(err) = j.writer.append(e) {
                    j.failed = Some(err);
                }
            }
            if let Some(err) = &j.failed {
                res = Err(err.clone());
            }
        }
        let line = e.to_json_line();
        if let Some(w) = &self.events {
            let mut w = w.lock().expect("events lock");
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
        if self.ci.is_active() {
            self.ci.record(e);
        }
        for s in &self.sinks {
            s.event(e);
        }
        self.terminal.report(e);
        res
    }

    /// The first journal write that failed, if one did.
    pub fn journal_error(&self) -> Option<JournalError> {
        self.journal.as_ref()?.lock().expect("journal lock").failed.clone()
    }

    /// Also write a JUnit report and a Markdown summary at the end.
    pub fn with_ci(mut self, junit: Option<std::path::PathBuf>, summary: Option<std::path::PathBuf>) -> Self {
        self.ci.junit = junit;
        self.ci.summary = summary;
        self
    }

    /// Also send every event to `sink` (notifications, metrics, the HTML report).
    pub fn with_sink(mut self, sink: Box<dyn Sink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Ask the operator a yes/no question on the terminal.
    pub fn ask(&self, question: &str) -> bool {
        self.terminal.ask(question)
    }

    pub fn finish(&self) {
        self.terminal.finish();
        for s in &self.sinks {
            for w in s.finish() {
                eprintln!("warning: {w}");
            }
        }
        if self.ci.is_active() {
            for e in self.ci.write() {
                eprintln!("warning: {e}");
            }
        }
    }
}
