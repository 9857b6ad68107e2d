//! From the event stream to the moments a team is told about: the run started, a batch
//! failed, the run was interrupted, halted or rolled back, the run ended. Pure: events in,
//! [`Message`]s out, so every moment is table-tested without a network.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::events::{Event, EventKind, Status, Step};
use crate::playbook::Moment;
use crate::units::{human_duration, plural};

/// A host that failed, with the step that failed and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedHost {
    pub host: String,
    pub batch: usize,
    pub step: String,
    pub reason: String,
}

/// One moment, ready to be rendered for any service.
#[derive(Debug, Clone)]
pub struct Message {
    pub moment: Moment,
    pub service: String,
    pub version: String,
    pub run: String,
    /// One line: what happened (`demo 2.0.0: release succeeded`).
    pub title: String,
    /// Facts, one per line, plain text.
    pub lines: Vec<String>,
    /// The failed hosts this message is about (the batch's, or the whole run's at the end).
    pub failed: Vec<FailedHost>,
    /// Whether this is bad news (the services that colour messages use it).
    pub bad: bool,
    /// The event that made the moment, as the events file has it.
    pub event: Event,
}

/// The run as the events tell it, so far.
#[derive(Debug, Default)]
pub struct Tracker {
    service: String,
    version: String,
    mode: String,
    hosts: usize,
    batches: usize,
    budget: usize,
    on_failure: String,
    /// How each host's pipeline ended first (a rollback pass reports a host again).
    first_status: HashMap<String, Status>,
    /// The first step that failed on each host, and its message.
    failed_step: HashMap<String, (Step, String)>,
    failed: Vec<FailedHost>,
    sent: HashSet<Moment>,
    started_by: String,
}

/// At most this many failed hosts are listed in one message; the rest are counted.
pub const MAX_LISTED: usize = 20;

impl Tracker {
    pub fn new(started_by: String) -> Tracker {
        Tracker {
            started_by,
            ..Tracker::default()
        }
    }

    /// The messages `e` makes, in the order they should be sent.
    pub fn on_event(&mut self, e: &Event) -> Vec<Message> {
        let mut out = Vec::new();
        match &e.kind {
            EventKind::RunStarted {
                service,
                version,
                hosts,
                mode,
                plan,
            } => {
                self.service = service.clone();
                self.version = version.clone();
                self.mode = mode.clone();
                self.hosts = *hosts;
                self.batches = plan.batches.len();
                self.budget = plan.failure.budget;
                self.on_failure = plan.failure.on_failure.clone();
                let sizes: Vec<String> = plan.batches.iter().map(|b| b.size.to_string()).collect();
                let mut lines = vec![format!("run {}", e.run), format!("started by {}", self.started_by)];
                if !sizes.is_empty() {
                    lines.push(format!(
                        "{} batch{}: {}{}",
                        sizes.len(),
                        if sizes.len() == 1 { "" } else { "es" },
                        sizes.join(", "),
                        if plan.batches.first().is_some_and(|b| b.canary) {
                            " (canary first)"
                        } else {
                            ""
                        }
                    ));
                }
                lines.push(format!(
                    "failure budget: {} host{}; on failure: {}",
                    self.budget,
                    plural(self.budget),
                    self.on_failure
                ));
                out.push(self.message(
                    Moment::Start,
                    format!("{} started on {} host{}", self.what(), hosts, plural(*hosts)),
                    lines,
                    vec![],
                    false,
                    e,
                ));
            }
            EventKind::StepFinished {
                host,
                step,
                status: Status::Failed,
                msg,
                batch,
                ..
            } if *step != Step::Revert => {
                self.failed_step
                    .entry(host.clone())
                    .or_insert_with(|| (*step, msg.clone()));
                // A host that fails preflight has no `host_finished`.
                if *step == Step::Preflight {
                    self.add_failed(host, *batch, msg);
                }
            }
            EventKind::HostFinished {
                batch,
                host,
                status,
                msg,
                ..
            } => {
                if self.first_status.contains_key(host) {
                    return out;
                }
                self.first_status.insert(host.clone(), *status);
                if matches!(status, Status::Failed | Status::Reverted) {
                    self.add_failed(host, *batch, msg);
                    if self.failed.len() > self.budget {
                        let why = format!(
                            "{} host{} failed, over the budget of {}",
                            self.failed.len(),
                            plural(self.failed.len()),
                            self.budget
                        );
                        out.extend(self.over_budget(why, e));
                    }
                }
            }
            EventKind::GateChecked {
                batch,
                status: Status::Failed,
                msg,
                ..
            } => {
                let why = format!("the metric gate failed after batch {batch}: {msg}");
                out.extend(self.over_budget(why, e));
            }
            EventKind::BatchFinished {
                batch,
                ok,
                skipped,
                failed,
                ..
            } if *failed > 0 => {
                let of = ok + skipped + failed;
                let these: Vec<FailedHost> = self.failed.iter().filter(|f| f.batch == *batch).cloned().collect();
                out.push(self.message(
                    Moment::BatchFailed,
                    format!(
                        "{}: batch {batch} of {} failed ({failed} of {of} host{})",
                        self.what(),
                        self.batches,
                        plural(of)
                    ),
                    vec![
                        format!("{ok} ok, {failed} failed, {skipped} skipped"),
                        format!(
                            "{} host{} failed in the run so far; the budget is {}",
                            self.failed.len(),
                            plural(self.failed.len()),
                            self.budget
                        ),
                    ],
                    these,
                    true,
                    e,
                ));
            }
            EventKind::Warning { host: None, msg } if msg.starts_with("interrupted") => {
                out.extend(self.interrupted(msg.clone(), e));
            }
            EventKind::RunFinished {
                ok,
                failed,
                reverted,
                skipped,
                exit_code,
                ms,
                msg,
            } => {
                if *exit_code == crate::exit_code::INTERRUPTED {
                    out.extend(self.interrupted(msg.clone(), e));
                }
                if *exit_code == crate::exit_code::BUDGET_EXCEEDED {
                    out.extend(self.over_budget(msg.clone(), e));
                }
                let outcome = self.outcome(*exit_code);
                let mut lines = vec![
                    format!("outcome: {outcome} (exit {exit_code})"),
                    format!(
                        "hosts: {ok} ok, {failed} failed, {reverted} reverted, {skipped} skipped of {}",
                        self.hosts
                    ),
                    format!("duration: {}", human_duration(Duration::from_millis(*ms))),
                ];
                if !msg.is_empty() {
                    lines.push(msg.clone());
                }
                lines.push(format!("run {}", e.run));
                let failed_hosts = self.failed.clone();
                out.push(self.message(
                    Moment::End,
                    format!("{} {outcome}", self.what()),
                    lines,
                    failed_hosts,
                    *exit_code != crate::exit_code::SUCCESS,
                    e,
                ));
            }
            _ => {}
        }
        out
    }

    fn add_failed(&mut self, host: &str, batch: usize, msg: &str) {
        if self.failed.iter().any(|f| f.host == host) {
            return;
        }
        let (step, reason) = match self.failed_step.get(host) {
            Some((step, reason)) => (step.as_str().to_string(), reason.clone()),
            None => ("-".to_string(), msg.to_string()),
        };
        self.failed.push(FailedHost {
            host: host.to_string(),
            batch,
            step,
            reason,
        });
    }

    /// `demo 2.0.0: release` or `demo: rollback to 1.0.0`.
    fn what(&self) -> String {
        match self.mode.as_str() {
            "rollback" => format!("{}: rollback to {}", self.service, self.version),
            mode => format!("{} {}: {mode}", self.service, self.version),
        }
    }

    fn outcome(&self, code: i32) -> String {
        use crate::exit_code::*;
        match code {
            SUCCESS => "succeeded".into(),
            HOSTS_FAILED => "finished with failed hosts".into(),
            PREFLIGHT => "stopped at preflight; nothing was changed".into(),
            BUDGET_EXCEEDED => match self.on_failure.as_str() {
                "halt" => "failed and halted".into(),
                "revert-failed" => "failed; the failed hosts were reverted".into(),
                _ => "failed and was rolled back".into(),
            },
            INTERRUPTED => "interrupted".into(),
            code => format!("failed (exit {code})"),
        }
    }

    fn interrupted(&mut self, why: String, e: &Event) -> Option<Message> {
        if !self.sent.insert(Moment::Interrupted) {
            return None;
        }
        Some(self.message(
            Moment::Interrupted,
            format!("{} interrupted", self.what()),
            vec![why, format!("`tranche resume {}` continues it", e.run)],
            vec![],
            true,
            e,
        ))
    }

    /// The failure budget is exceeded (or the gate failed): `on_failure` applies, once.
    fn over_budget(&mut self, why: String, e: &Event) -> Option<Message> {
        let (moment, doing) = match self.on_failure.as_str() {
            "halt" => (
                Moment::Halted,
                "halted: no new host starts; failed hosts stay out of the registry for inspection",
            ),
            "revert-failed" => (
                Moment::RolledBack,
                "no new host starts; the failed hosts go back to their previous release",
            ),
            _ => (
                Moment::RolledBack,
                "rolling back: every host this run changed goes back to its previous release",
            ),
        };
        if self.sent.contains(&Moment::Halted) || !self.sent.insert(moment) {
            return None;
        }
        let title = match moment {
            Moment::Halted => format!("{} halted", self.what()),
            _ => format!("{} is being rolled back", self.what()),
        };
        let failed = self.failed.clone();
        Some(self.message(
            moment,
            title,
            vec![why, format!("{doing} (on_failure: {})", self.on_failure)],
            failed,
            true,
            e,
        ))
    }

    fn message(
        &self,
        moment: Moment,
        title: String,
        lines: Vec<String>,
        failed: Vec<FailedHost>,
        bad: bool,
        e: &Event,
    ) -> Message {
        Message {
            moment,
            service: self.service.clone(),
            version: self.version.clone(),
            run: e.run.clone(),
            title,
            lines,
            failed,
            bad,
            event: e.clone(),
        }
    }
}

impl Message {
    /// The failed hosts as lines (`web-03: health: 503 after 10 tries`), at most
    /// [`MAX_LISTED`], then how many more.
    pub fn failed_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .failed
            .iter()
            .take(MAX_LISTED)
            .map(|f| format!("{}: {}: {}", f.host, f.step, one_line(&f.reason, 300)))
            .collect();
        if self.failed.len() > MAX_LISTED {
            out.push(format!("... and {} more", self.failed.len() - MAX_LISTED));
        }
        out
    }
}

/// `s` on one line, cut to at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::{PlanBatch, PlanFailure, PlanSummary};

    pub(crate) fn started(on_failure: &str, budget: usize) -> EventKind {
        EventKind::RunStarted {
            service: "demo".into(),
            version: "2.0.0".into(),
            hosts: 3,
            mode: "release".into(),
            plan: PlanSummary {
                batches: vec![
                    PlanBatch {
                        number: 1,
                        canary: true,
                        size: 1,
                        ..PlanBatch::default()
                    },
                    PlanBatch {
                        number: 2,
                        size: 2,
                        ..PlanBatch::default()
                    },
                ],
                failure: PlanFailure {
                    max_failures: budget.to_string(),
                    budget,
                    on_failure: on_failure.into(),
                },
                ..PlanSummary::default()
            },
        }
    }

    pub(crate) fn failing_run(on_failure: &str, budget: usize, exit_code: i32) -> Vec<Event> {
        let kinds = vec![
            started(on_failure, budget),
            EventKind::HostFinished {
                batch: 1,
                host: "h01".into(),
                status: Status::Ok,
                ms: 5,
                msg: "on 2.0.0".into(),
            },
            EventKind::StepFinished {
                batch: 2,
                host: "h02".into(),
                step: Step::Health,
                status: Status::Failed,
                ms: 10,
                msg: "503 after 10 tries".into(),
                stderr: None,
                hint: None,
            },
            EventKind::StepFinished {
                batch: 2,
                host: "h02".into(),
                step: Step::Revert,
                status: Status::Failed,
                ms: 10,
                msg: "revert failed too".into(),
                stderr: None,
                hint: None,
            },
            EventKind::HostFinished {
                batch: 2,
                host: "h02".into(),
                status: Status::Reverted,
                ms: 20,
                msg: "back on 1.0.0".into(),
            },
            EventKind::HostFinished {
                batch: 2,
                host: "h03".into(),
                status: Status::Ok,
                ms: 20,
                msg: "on 2.0.0".into(),
            },
            EventKind::BatchFinished {
                batch: 2,
                ok: 1,
                skipped: 0,
                failed: 1,
                ms: 30,
            },
            EventKind::RunFinished {
                ok: 2,
                failed: 1,
                reverted: 1,
                skipped: 0,
                exit_code,
                ms: 72_000,
                msg: "1 host(s) failed".into(),
            },
        ];
        kinds
            .into_iter()
            .map(|k| Event::new("20261202-010000-ab12", k))
            .collect()
    }

    fn moments(events: &[Event]) -> (Vec<Moment>, Vec<Message>) {
        let mut t = Tracker::new("alice on laptop".into());
        let msgs: Vec<Message> = events.iter().flat_map(|e| t.on_event(e)).collect();
        (msgs.iter().map(|m| m.moment).collect(), msgs)
    }

    #[test]
    fn a_failure_within_the_budget_is_a_batch_failure_then_the_end() {
        let (m, msgs) = moments(&failing_run("rollback", 1, 1));
        assert_eq!(m, [Moment::Start, Moment::BatchFailed, Moment::End]);
        assert_eq!(msgs[0].title, "demo 2.0.0: release started on 3 hosts");
        assert!(msgs[0].lines.contains(&"2 batches: 1, 2 (canary first)".to_string()));
        assert!(msgs[0].lines.contains(&"started by alice on laptop".to_string()));
        assert_eq!(msgs[1].title, "demo 2.0.0: release: batch 2 of 2 failed (1 of 2 hosts)");
        let end = &msgs[2];
        assert_eq!(end.title, "demo 2.0.0: release finished with failed hosts");
        assert_eq!(end.lines[1], "hosts: 2 ok, 1 failed, 1 reverted, 0 skipped of 3");
        assert_eq!(end.lines[2], "duration: 1m12s");
        // The step that failed first, not the revert after it.
        assert_eq!(end.failed_lines(), ["h02: health: 503 after 10 tries"]);
        assert!(end.bad);
    }

    #[test]
    fn over_the_budget_the_on_failure_moment_comes_once_before_the_end() {
        for (on_failure, want, outcome) in [
            ("rollback", Moment::RolledBack, "failed and was rolled back"),
            (
                "revert-failed",
                Moment::RolledBack,
                "failed; the failed hosts were reverted",
            ),
            ("halt", Moment::Halted, "failed and halted"),
        ] {
            let (m, msgs) = moments(&failing_run(on_failure, 0, crate::exit_code::BUDGET_EXCEEDED));
            assert_eq!(
                m,
                [Moment::Start, want, Moment::BatchFailed, Moment::End],
                "{on_failure}"
            );
            assert!(
                msgs[1].lines[0].contains("1 host failed, over the budget of 0"),
                "{:?}",
                msgs[1]
            );
            assert!(msgs[3].title.ends_with(outcome), "{}", msgs[3].title);
        }
    }

    #[test]
    fn an_interruption_is_told_once() {
        let run = "20261202-010000-ab12";
        let events: Vec<Event> = [
            started("rollback", 1),
            EventKind::Warning {
                host: None,
                msg: "interrupted: no new host starts".into(),
            },
            EventKind::RunFinished {
                ok: 1,
                failed: 0,
                reverted: 0,
                skipped: 2,
                exit_code: crate::exit_code::INTERRUPTED,
                ms: 10,
                msg: "interrupted: 2 of 3 hosts not done".into(),
            },
        ]
        .into_iter()
        .map(|k| Event::new(run, k))
        .collect();
        let (m, msgs) = moments(&events);
        assert_eq!(m, [Moment::Start, Moment::Interrupted, Moment::End]);
        assert_eq!(msgs[2].title, "demo 2.0.0: release interrupted");
        // Without the warning (a second Ctrl-C), the end still brings the moment.
        let (m, _) = moments(&[events[0].clone(), events[2].clone()]);
        assert_eq!(m, [Moment::Start, Moment::Interrupted, Moment::End]);
    }

    #[test]
    fn a_failed_gate_applies_on_failure() {
        let events: Vec<Event> = [
            started("halt", 5),
            EventKind::GateChecked {
                batch: 1,
                status: Status::Failed,
                ms: 1,
                msg: "error rate 0.2 > 0.05".into(),
            },
        ]
        .into_iter()
        .map(|k| Event::new("r", k))
        .collect();
        let (m, msgs) = moments(&events);
        assert_eq!(m, [Moment::Start, Moment::Halted]);
        assert!(msgs[1].lines[0].contains("error rate 0.2"), "{:?}", msgs[1].lines);
    }

    #[test]
    fn long_lists_and_reasons_are_bounded() {
        let mut t = Tracker::new("x".into());
        t.on_event(&Event::new("r", started("rollback", 100)));
        for i in 0..25 {
            t.on_event(&Event::new(
                "r",
                EventKind::HostFinished {
                    batch: 2,
                    host: format!("h{i:02}"),
                    status: Status::Failed,
                    ms: 1,
                    msg: "x\n".repeat(400),
                },
            ));
        }
        let end = t.on_event(&Event::new(
            "r",
            EventKind::RunFinished {
                ok: 0,
                failed: 25,
                reverted: 0,
                skipped: 0,
                exit_code: 1,
                ms: 1,
                msg: String::new(),
            },
        ));
        let lines = end[0].failed_lines();
        assert_eq!(lines.len(), MAX_LISTED + 1);
        assert_eq!(lines.last().unwrap(), "... and 5 more");
        assert!(
            lines[0].chars().count() < 320 && !lines[0].contains('\n'),
            "{}",
            lines[0]
        );
    }
}
