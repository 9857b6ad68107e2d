//! The events of a run folded into what the page shows: the header, the plan, one timeline row
//! per host with a segment per step, the batches and pauses, and the failures. Pure: the same
//! events give the same view, whether they come live or from the journal.

use std::collections::HashMap;

use crate::events::{Event, EventKind, PlanSummary, Status, Step};

/// A run as the page shows it. Times are milliseconds from the first event.
#[derive(Debug, Default, Clone)]
pub struct RunView {
    pub run: String,
    pub service: String,
    pub version: String,
    pub mode: String,
    /// The plan of the first `run_started` (a resume plans only the hosts left).
    pub plan: Option<PlanSummary>,
    /// The envelope time of the first event.
    pub started: String,
    /// Every `run_started`: the first run and each resume appended to the same journal.
    pub attempts: Vec<u64>,
    pub finished: Option<Finished>,
    /// The time of the last event.
    pub end_ms: u64,
    pub hosts: Vec<HostView>,
    pub batches: Vec<BatchSpan>,
    pub pauses: Vec<PauseSpan>,
    pub warnings: Vec<(Option<String>, String)>,
}

/// The `run_finished` of the last attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub ok: usize,
    pub failed: usize,
    pub reverted: usize,
    pub skipped: usize,
    pub exit_code: i32,
    pub ms: u64,
    pub msg: String,
}

#[derive(Debug, Default, Clone)]
pub struct HostView {
    pub name: String,
    pub batch: Option<usize>,
    pub segments: Vec<Segment>,
    /// How its pipeline ended (`host_finished`), if it did.
    pub status: Option<Status>,
    pub msg: String,
    pub ms: u64,
    /// The first step that failed: step, message, stderr tail.
    pub failure: Option<(Step, String, Option<String>)>,
    /// A step failed in this attempt (later steps are the way back), or its pipeline ended and
    /// steps go on (the rollback pass).
    reverting: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub step: Step,
    pub start_ms: u64,
    pub end_ms: u64,
    /// None: still running.
    pub status: Option<Status>,
    /// Part of taking the host back to its previous release.
    pub revert: bool,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpan {
    /// 0 for the first run, 1 for the first resume, ...
    pub attempt: usize,
    pub number: usize,
    pub hosts: usize,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    /// ok, skipped, failed.
    pub result: Option<(usize, usize, usize)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PauseSpan {
    pub batch: usize,
    pub reason: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
}

impl HostView {
    /// Whether the host failed (a step failed, or its pipeline ended failed).
    pub fn is_failed(&self) -> bool {
        self.failure.is_some() || self.status == Some(Status::Failed)
    }
}

impl RunView {
    /// Whether the last attempt has no `run_finished` yet.
    pub fn in_progress(&self) -> bool {
        self.finished.is_none()
    }

    pub fn from_events(events: &[Event]) -> RunView {
        let mut v = RunView::default();
        let mut index: HashMap<String, usize> = HashMap::new();
        let t0 = events.first().and_then(|e| parse_ms(&e.ts));
        let mut last = 0u64;
        for e in events {
            // Envelope times are milliseconds; one that does not parse keeps the last time.
            let at = match (t0, parse_ms(&e.ts)) {
                (Some(t0), Some(t)) => t.saturating_sub(t0).max(last),
                _ => last,
            };
            last = at;
            if v.run.is_empty() {
                v.run = e.run.clone();
                v.started = e.ts.clone();
            }
            v.apply(&mut index, &e.kind, at);
        }
        v.end_ms = last;
        for h in &mut v.hosts {
            for s in &mut h.segments {
                if s.status.is_none() {
                    s.end_ms = last;
                }
            }
        }
        for b in &mut v.batches {
            if b.end_ms.is_none() && v.finished.is_some() {
                b.end_ms = Some(last);
            }
        }
        v
    }

    fn host<'a>(hosts: &'a mut Vec<HostView>, index: &mut HashMap<String, usize>, name: &str) -> &'a mut HostView {
        let i = *index.entry(name.to_string()).or_insert_with(|| {
            hosts.push(HostView {
                name: name.to_string(),
                ..HostView::default()
            });
            hosts.len() - 1
        });
        &mut hosts[i]
    }

    fn apply(&mut self, index: &mut HashMap<String, usize>, kind: &EventKind, at: u64) {
        match kind {
            EventKind::RunStarted {
                service,
                version,
                mode,
                plan,
                ..
            } => {
                if self.attempts.is_empty() {
                    self.service = service.clone();
                    self.version = version.clone();
                    self.mode = mode.clone();
                    self.plan = Some(plan.clone());
                }
                self.attempts.push(at);
                self.finished = None;
                for b in &plan.batches {
                    for h in &b.hosts {
                        let hv = Self::host(&mut self.hosts, index, &h.name);
                        hv.batch.get_or_insert(b.number);
                    }
                }
                for h in &mut self.hosts {
                    h.reverting = false;
                }
            }
            EventKind::BatchStarted { batch, hosts } => {
                self.batches.push(BatchSpan {
                    attempt: self.attempts.len().saturating_sub(1),
                    number: *batch,
                    hosts: hosts.len(),
                    start_ms: at,
                    end_ms: None,
                    result: None,
                });
            }
            EventKind::BatchFinished {
                batch,
                ok,
                skipped,
                failed,
                ..
            } => {
                if let Some(b) = self
                    .batches
                    .iter_mut()
                    .rev()
                    .find(|b| b.number == *batch && b.end_ms.is_none())
                {
                    b.end_ms = Some(at);
                    b.result = Some((*ok, *skipped, *failed));
                }
            }
            EventKind::HostStarted { batch, host, .. } => {
                let h = Self::host(&mut self.hosts, index, host);
                h.batch.get_or_insert(*batch);
                h.reverting = false;
                h.status = None;
            }
            EventKind::StepStarted { host, step, .. } => {
                let h = Self::host(&mut self.hosts, index, host);
                let revert = h.reverting || *step == Step::Revert;
                h.segments.push(Segment {
                    step: *step,
                    start_ms: at,
                    end_ms: at,
                    status: None,
                    revert,
                    msg: String::new(),
                });
            }
            EventKind::StepFinished {
                host,
                step,
                status,
                ms,
                msg,
                stderr,
                ..
            } => {
                let h = Self::host(&mut self.hosts, index, host);
                let open = h
                    .segments
                    .iter_mut()
                    .rev()
                    .find(|s| s.step == *step && s.status.is_none());
                let seg = match open {
                    Some(s) => s,
                    None => {
                        // Finished without a start (a skipped stage): it lasted `ms` up to now.
                        let revert = h.reverting || *step == Step::Revert;
                        h.segments.push(Segment {
                            step: *step,
                            start_ms: at.saturating_sub(*ms),
                            end_ms: at,
                            status: None,
                            revert,
                            msg: String::new(),
                        });
                        h.segments.last_mut().expect("just pushed")
                    }
                };
                seg.end_ms = at.max(seg.start_ms);
                seg.status = Some(*status);
                seg.msg = msg.clone();
                if *status == Status::Failed {
                    if h.failure.is_none() {
                        h.failure = Some((*step, msg.clone(), stderr.clone()));
                    }
                    h.reverting = true;
                }
            }
            EventKind::HostFinished {
                batch,
                host,
                status,
                ms,
                msg,
            } => {
                let h = Self::host(&mut self.hosts, index, host);
                h.batch.get_or_insert(*batch);
                h.status = Some(*status);
                h.ms = *ms;
                h.msg = msg.clone();
                // Steps after this one are the rollback pass taking the host back.
                h.reverting = true;
            }
            EventKind::Paused { batch, reason } => self.pauses.push(PauseSpan {
                batch: *batch,
                reason: reason.clone(),
                start_ms: at,
                end_ms: None,
            }),
            EventKind::Resumed { batch } => {
                if let Some(p) = self
                    .pauses
                    .iter_mut()
                    .rev()
                    .find(|p| p.batch == *batch && p.end_ms.is_none())
                {
                    p.end_ms = Some(at);
                }
            }
            EventKind::Warning { host, msg } => self.warnings.push((host.clone(), msg.clone())),
            EventKind::GateChecked { .. } | EventKind::Switched { .. } | EventKind::Retired { .. } => {}
            EventKind::RunFinished {
                ok,
                failed,
                reverted,
                skipped,
                exit_code,
                ms,
                msg,
            } => {
                self.finished = Some(Finished {
                    ok: *ok,
                    failed: *failed,
                    reverted: *reverted,
                    skipped: *skipped,
                    exit_code: *exit_code,
                    ms: *ms,
                    msg: msg.clone(),
                });
                for p in &mut self.pauses {
                    p.end_ms.get_or_insert(at);
                }
            }
        }
    }

    /// How long the run took: the last attempt's own count when there was one attempt, else
    /// the time from the first event to the last.
    pub fn duration_ms(&self) -> u64 {
        match &self.finished {
            Some(f) if self.attempts.len() <= 1 => f.ms,
            _ => self.end_ms,
        }
    }
}

/// `2026-11-21T10:00:00.123Z` as milliseconds since the epoch.
fn parse_ms(ts: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts_ms: u64, kind: EventKind) -> Event {
        let mut e = Event::new("r1", kind);
        e.ts = format!("2026-11-21T10:00:{:02}.{:03}Z", ts_ms / 1000, ts_ms % 1000);
        e
    }

    #[test]
    fn steps_after_a_failure_and_after_the_host_ended_are_reverts() {
        let step = |t, host: &str, step, status: Option<Status>| match status {
            None => ev(
                t,
                EventKind::StepStarted {
                    batch: 1,
                    host: host.into(),
                    step,
                },
            ),
            Some(status) => ev(
                t,
                EventKind::StepFinished {
                    batch: 1,
                    host: host.into(),
                    step,
                    status,
                    ms: 1,
                    msg: "m".into(),
                    stderr: None,
                    hint: None,
                },
            ),
        };
        let events = vec![
            step(0, "a", Step::Start, None),
            step(100, "a", Step::Start, Some(Status::Failed)),
            step(100, "a", Step::Deploy, None),
            step(200, "a", Step::Deploy, Some(Status::Ok)),
            step(200, "b", Step::Deploy, None),
            step(300, "b", Step::Deploy, Some(Status::Ok)),
            ev(
                300,
                EventKind::HostFinished {
                    batch: 1,
                    host: "b".into(),
                    status: Status::Ok,
                    ms: 1,
                    msg: "on 2".into(),
                },
            ),
            step(400, "b", Step::Deploy, None),
        ];
        let v = RunView::from_events(&events);
        let a = &v.hosts[0];
        assert_eq!(
            a.segments
                .iter()
                .map(|s| (s.step, s.revert, s.start_ms, s.end_ms))
                .collect::<Vec<_>>(),
            [(Step::Start, false, 0, 100), (Step::Deploy, true, 100, 200)]
        );
        assert!(a.is_failed());
        let b = &v.hosts[1];
        assert_eq!(b.segments.iter().map(|s| s.revert).collect::<Vec<_>>(), [false, true]);
        // Still running at the last event.
        assert_eq!(b.segments[1].status, None);
        assert_eq!(b.segments[1].end_ms, 400);
        assert!(!b.is_failed());
        assert!(v.in_progress());
    }
}
