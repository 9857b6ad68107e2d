//! A listener on the event stream that is not the terminal, the JSON Lines file, the journal or
//! the CI reports: notifications, dashboards, the HTML report. A sink must never slow the run:
//! `event` is called on the run's path, so a sink that talks to the network queues the event
//! and sends it from its own task, and `finish` waits for what is queued for a bounded time.

use crate::events::Event;

pub trait Sink: Send + Sync {
    /// One event, as every other sink gets it (already redacted).
    fn event(&self, e: &Event);

    /// The run is over: flush, within a bounded time. Problems are returned as warnings, never
    /// as a changed outcome.
    fn finish(&self) -> Vec<String> {
        Vec::new()
    }
}
