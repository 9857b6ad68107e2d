//! The HTML report of a run: one self-contained file (inline CSS and SVG, no script, nothing
//! fetched) with the header, the plan, a timeline of every host's steps, the per-step
//! durations and the failed hosts. [`render`] is a pure function of the events, so the page
//! written live during a run ([`LiveReport`], `--report FILE`) and the one rebuilt from the
//! journal (`tranche report RUN_ID`) are the same document.
//!
//! Every text from an event is escaped ([`esc`]): host names, messages and stderr come from
//! inventories and hosts, which are not trusted.

mod live;
mod model;
mod page;
mod timeline;

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::events::Event;
use crate::journal::ReplayError;
pub use live::{write_atomically, LiveReport};

/// What the page shows beyond the events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageOptions {
    /// Who started the run (from its record).
    pub operator: Option<String>,
    /// The run is going on: a page without `run_finished` says "in progress" and reloads
    /// itself every 5 seconds. Off, it says the journal ends before the run did.
    pub live: bool,
}

/// The report of the run that `events` tell, as one HTML document.
pub fn render(events: &[Event], opts: &PageOptions) -> String {
    page::document(&model::RunView::from_events(events), opts)
}

/// `text` made safe for HTML text and attribute values (and for SVG inside HTML): markup
/// characters become entities, and control characters other than tab and newline are dropped.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `123 ms`, `4.2 s`, `2m 05s`, `1h 02m`.
pub fn duration_text(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Every event of a journal, in order. A torn last line (the controller killed mid-write) is
/// left out, as `tranche resume` leaves it; any other line that is not an event is an error
/// naming it.
pub fn read_events(path: &Path) -> Result<Vec<Event>, ReplayError> {
    let bytes = std::fs::read(path).map_err(|cause| ReplayError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut out = Vec::new();
    for (i, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let torn = !raw.ends_with(b"\n");
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(e) => out.push(e),
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
    Ok(out)
}
