//! Everything that turns events and plans into text for people or machines. The executor emits
//! events; the [`Reporter`] fans each one out to the terminal (bars or plain lines), the JSON
//! Lines stream and the journal.

mod ci;
pub mod plan;
mod terminal;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::events::Event;
pub use ci::CiReports;
pub use terminal::Terminal;

/// Fans events out to every sink. Journal writes are flushed before the call returns, so the
/// journal is never behind the next remote action.
pub struct Reporter {
    terminal: Terminal,
    events: Option<Mutex<Box<dyn Write + Send>>>,
    journal: Option<Mutex<BufWriter<File>>>,
    ci: CiReports,
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
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Some(Mutex::new(BufWriter::new(
                    std::fs::OpenOptions::new().create(true).append(true).open(p)?,
                )))
            }
        };
        Ok(Reporter {
            terminal,
            events,
            journal,
            ci: CiReports::default(),
        })
    }

    pub fn report(&self, e: &Event) {
        let line = e.to_json_line();
        if let Some(j) = &self.journal {
            let mut j = j.lock().expect("journal lock");
            let _ = writeln!(j, "{line}");
            let _ = j.flush();
        }
        if let Some(w) = &self.events {
            let mut w = w.lock().expect("events lock");
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
        if self.ci.is_active() {
            self.ci.record(e);
        }
        self.terminal.report(e);
    }

    /// Also write a JUnit report and a Markdown summary at the end.
    pub fn with_ci(mut self, junit: Option<std::path::PathBuf>, summary: Option<std::path::PathBuf>) -> Self {
        self.ci.junit = junit;
        self.ci.summary = summary;
        self
    }

    /// Ask the operator a yes/no question on the terminal.
    pub fn ask(&self, question: &str) -> bool {
        self.terminal.ask(question)
    }

    pub fn finish(&self) {
        self.terminal.finish();
        if self.ci.is_active() {
            for e in self.ci.write() {
                eprintln!("warning: {e}");
            }
        }
    }
}
