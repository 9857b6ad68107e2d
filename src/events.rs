//! The Event type: the only thing the executor emits. Reporters (terminal, plain lines, JSON
//! Lines) and the journal consume it. The JSON form is SPEC §5; fields are only ever added.

use serde::{Deserialize, Serialize};

mod plan;
pub use plan::{
    PauseWord, PlanBatch, PlanBlueGreen, PlanFailure, PlanGate, PlanHost, PlanLayout, PlanMatcher, PlanPause,
    PlanPauses, PlanShard, PlanSide, PlanSilence, PlanStage, PlanSummary,
};

/// The pipeline steps of SPEC §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Preflight,
    Stage,
    Silence,
    Deregister,
    Stop,
    Deploy,
    Start,
    Health,
    Register,
    Unsilence,
    /// Going back to the previous release after a failure.
    Revert,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::Stage => "stage",
            Step::Silence => "silence",
            Step::Deregister => "deregister",
            Step::Stop => "stop",
            Step::Deploy => "deploy",
            Step::Start => "start",
            Step::Health => "health",
            Step::Register => "register",
            Step::Unsilence => "unsilence",
            Step::Revert => "revert",
        }
    }

    /// Whether the step changes a host or what it serves (its registration, its alerts): the
    /// journal is on disk before such a step starts.
    pub fn changes_host(self) -> bool {
        match self {
            Step::Silence
            | Step::Deregister
            | Step::Stop
            | Step::Deploy
            | Step::Start
            | Step::Register
            | Step::Unsilence
            | Step::Revert => true,
            Step::Preflight | Step::Stage | Step::Health => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
    Reverted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Reverted => "reverted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        service: String,
        version: String,
        hosts: usize,
        /// `release`, `rollback` (to the previous release, or `--to`) or `check` (preflight only).
        mode: String,
        plan: PlanSummary,
    },
    BatchStarted {
        batch: usize,
        hosts: Vec<String>,
    },
    HostStarted {
        batch: usize,
        host: String,
        /// The release the host had before this run (what a revert or a resume goes back to).
        #[serde(skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
    },
    StepStarted {
        batch: usize,
        host: String,
        step: Step,
    },
    StepFinished {
        batch: usize,
        host: String,
        step: Step,
        status: Status,
        ms: u64,
        msg: String,
        /// The last lines of the failed command's stderr.
        #[serde(skip_serializing_if = "Option::is_none")]
        stderr: Option<String>,
        /// Advice for the operator from the layer that failed (an SSH error's `hint`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
    HostFinished {
        batch: usize,
        host: String,
        status: Status,
        ms: u64,
        msg: String,
    },
    BatchFinished {
        batch: usize,
        ok: usize,
        /// Hosts already on the release, or not started because the run was interrupted.
        skipped: usize,
        /// Failed or reverted.
        failed: usize,
        ms: u64,
    },
    /// The metric gate after a batch (`rollout.gate`).
    GateChecked {
        batch: usize,
        status: Status,
        ms: u64,
        msg: String,
    },
    Paused {
        batch: usize,
        reason: String,
    },
    Resumed {
        batch: usize,
    },
    Warning {
        host: Option<String>,
        msg: String,
    },
    /// Blue-green: traffic moved, every HAProxy server of both sides given its new weight in
    /// one step, or (a registry without weights) the new side registered, then the old
    /// deregistered.
    Switched {
        /// The side live before (none before the first switch).
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        to: String,
        /// `release` (the switch of a release), `canary` (the new side takes `weight` percent
        /// while the gate watches), `back` (the gate failed: traffic back on `to`; or `tranche
        /// switch --back`), `manual` (`tranche switch`, `--to`).
        why: String,
        /// The weight of `to`'s servers: 100, or the canary's percent.
        weight: u32,
        /// HAProxy servers set, or registry instances, both sides.
        servers: usize,
        /// From the first command sent to HAProxy (or registry call) to the last answer, to a
        /// tenth of a millisecond.
        ms: f64,
        status: Status,
        msg: String,
    },
    /// Blue-green: the side not live was stopped (`tranche retire`, or `retire_after` at the end
    /// of a release) and recorded retired on the hosts.
    Retired {
        side: String,
        /// The hosts where the side's instances were stopped.
        hosts: usize,
        status: Status,
        msg: String,
    },
    RunFinished {
        ok: usize,
        failed: usize,
        reverted: usize,
        skipped: usize,
        exit_code: i32,
        ms: u64,
        msg: String,
    },
}

impl EventKind {
    /// Apply the redaction policy (`crate::redact`) with `secrets` to every text of the event:
    /// secrets become `***`, URLs lose their userinfo and query values.
    pub fn redact(&mut self, secrets: &[String]) {
        self.redact_with(&crate::redact::Redactor::new(secrets));
    }

    pub fn redact_with(&mut self, r: &crate::redact::Redactor) {
        match self {
            EventKind::RunStarted {
                service, version, plan, ..
            } => {
                r.scrub(service);
                r.scrub(version);
                plan.redact_with(r);
            }
            EventKind::StepFinished { msg, stderr, hint, .. } => {
                r.scrub(msg);
                for s in [stderr, hint].into_iter().flatten() {
                    r.scrub(s);
                }
            }
            EventKind::HostFinished { msg, .. }
            | EventKind::Warning { msg, .. }
            | EventKind::GateChecked { msg, .. }
            | EventKind::Switched { msg, .. }
            | EventKind::Retired { msg, .. }
            | EventKind::RunFinished { msg, .. } => r.scrub(msg),
            EventKind::Paused { reason, .. } => r.scrub(reason),
            EventKind::BatchStarted { .. }
            | EventKind::HostStarted { .. }
            | EventKind::StepStarted { .. }
            | EventKind::BatchFinished { .. }
            | EventKind::Resumed { .. } => {}
        }
    }
}

/// One event with its envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    pub ts: String,
    pub run: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn new(run: &str, kind: EventKind) -> Event {
        Event {
            v: 1,
            ts: now_rfc3339(),
            run: run.to_string(),
            kind,
        }
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("events serialise")
    }
}

/// The current UTC time as `2026-11-21T10:00:00.123Z`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    now.format(&fmt).unwrap_or_default()
}

/// A run id: `20261121-100000-ab12`.
pub fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    format!("{}-{:04x}", now.format(&fmt).unwrap_or_default(), rand::random::<u16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let mut k = EventKind::Warning {
            host: None,
            msg: "GET http://x/?t=s3cr3t answered 500".into(),
        };
        k.redact(&["s3cr3t".to_string()]);
        assert_eq!(
            k,
            EventKind::Warning {
                host: None,
                msg: "GET http://x/?t=*** answered 500".into()
            }
        );
    }

    #[test]
    fn stderr_and_the_plan_are_redacted_too() {
        let mut k = EventKind::StepFinished {
            batch: 1,
            host: "h".into(),
            step: Step::Start,
            status: Status::Failed,
            ms: 1,
            msg: "exit 1".into(),
            stderr: Some("curl: http://u:pw@x/ said s3cr3t".into()),
            hint: None,
        };
        k.redact(&["s3cr3t".to_string()]);
        let EventKind::StepFinished { stderr, .. } = &k else {
            unreachable!()
        };
        assert_eq!(stderr.as_deref(), Some("curl: http://***@x/ said ***"));
        let mut k = EventKind::RunStarted {
            service: "demo".into(),
            version: "2".into(),
            hosts: 1,
            mode: "release".into(),
            plan: PlanSummary {
                silence: Some(PlanSilence {
                    alertmanager: "http://am:s3cr3t@am:9093".into(),
                    ..PlanSilence::default()
                }),
                ..PlanSummary::default()
            },
        };
        k.redact(&[]);
        let EventKind::RunStarted { plan, .. } = &k else {
            unreachable!()
        };
        assert_eq!(plan.silence.as_ref().unwrap().alertmanager, "http://***@am:9093");
    }

    /// One event of every kind, with every optional field set one way or the other.
    fn every_kind() -> Vec<EventKind> {
        vec![
            EventKind::RunStarted {
                service: "demo".into(),
                version: "2.0.0".into(),
                hosts: 2,
                mode: "release".into(),
                plan: plan::tests::full_plan(),
            },
            EventKind::RunStarted {
                service: "demo".into(),
                version: "the previous release".into(),
                hosts: 0,
                mode: "rollback".into(),
                plan: PlanSummary::default(),
            },
            EventKind::BatchStarted {
                batch: 1,
                hosts: vec!["a".into(), "b".into()],
            },
            EventKind::HostStarted {
                batch: 1,
                host: "a".into(),
                previous: Some("1.0.0".into()),
            },
            EventKind::HostStarted {
                batch: 1,
                host: "b".into(),
                previous: None,
            },
            EventKind::StepStarted {
                batch: 1,
                host: "a".into(),
                step: Step::Deregister,
            },
            EventKind::StepFinished {
                batch: 1,
                host: "a".into(),
                step: Step::Start,
                status: Status::Failed,
                ms: 3,
                msg: "exit 1".into(),
                stderr: Some("boom".into()),
                hint: None,
            },
            EventKind::StepFinished {
                batch: 1,
                host: "a".into(),
                step: Step::Revert,
                status: Status::Ok,
                ms: 3,
                msg: String::new(),
                stderr: None,
                hint: None,
            },
            EventKind::HostFinished {
                batch: 1,
                host: "a".into(),
                status: Status::Reverted,
                ms: 9,
                msg: "back on 1.0.0".into(),
            },
            EventKind::BatchFinished {
                batch: 1,
                ok: 1,
                skipped: 2,
                failed: 3,
                ms: 10,
            },
            EventKind::GateChecked {
                batch: 1,
                status: Status::Skipped,
                ms: 5,
                msg: "not finished".into(),
            },
            EventKind::Paused {
                batch: 2,
                reason: "canary_pause".into(),
            },
            EventKind::Resumed { batch: 2 },
            EventKind::Switched {
                from: Some("blue".into()),
                to: "green".into(),
                why: "release".into(),
                weight: 100,
                servers: 12,
                ms: 0.4,
                status: Status::Ok,
                msg: "switched demo to green in 0.4ms (first to last server)".into(),
            },
            EventKind::Switched {
                from: None,
                to: "blue".into(),
                why: "canary".into(),
                weight: 10,
                servers: 4,
                ms: 0.0,
                status: Status::Failed,
                msg: "switch to blue failed".into(),
            },
            EventKind::Retired {
                side: "blue".into(),
                hosts: 6,
                status: Status::Ok,
                msg: "retired the blue side of demo: stopped on 6 hosts; green stays live".into(),
            },
            EventKind::Warning {
                host: Some("a".into()),
                msg: "slow".into(),
            },
            EventKind::Warning {
                host: None,
                msg: "interrupted".into(),
            },
            EventKind::RunFinished {
                ok: 1,
                failed: 1,
                reverted: 1,
                skipped: 0,
                exit_code: 2,
                ms: 100,
                msg: "done".into(),
            },
        ]
    }

    #[test]
    fn every_event_round_trips() {
        let kinds = every_kind();
        // Every variant is here (the match fails to compile when one is added).
        let mut seen = std::collections::BTreeSet::new();
        for k in &kinds {
            seen.insert(match k {
                EventKind::RunStarted { .. } => "run_started",
                EventKind::BatchStarted { .. } => "batch_started",
                EventKind::HostStarted { .. } => "host_started",
                EventKind::StepStarted { .. } => "step_started",
                EventKind::StepFinished { .. } => "step_finished",
                EventKind::HostFinished { .. } => "host_finished",
                EventKind::BatchFinished { .. } => "batch_finished",
                EventKind::GateChecked { .. } => "gate_checked",
                EventKind::Paused { .. } => "paused",
                EventKind::Resumed { .. } => "resumed",
                EventKind::Warning { .. } => "warning",
                EventKind::Switched { .. } => "switched",
                EventKind::Retired { .. } => "retired",
                EventKind::RunFinished { .. } => "run_finished",
            });
        }
        assert_eq!(seen.len(), 14);
        for kind in kinds {
            let e = Event::new("20261121-100000-ab12", kind);
            let line = e.to_json_line();
            let back: Event = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{line}: {err}"));
            assert_eq!(back, e, "{line}");
            assert_eq!(back.to_json_line(), line);
        }
        for s in [
            Step::Preflight,
            Step::Stage,
            Step::Silence,
            Step::Deregister,
            Step::Stop,
            Step::Deploy,
            Step::Start,
            Step::Health,
            Step::Register,
            Step::Unsilence,
            Step::Revert,
        ] {
            let text = serde_json::to_string(&s).unwrap();
            assert_eq!(text, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Step>(&text).unwrap(), s);
        }
        for s in [Status::Ok, Status::Failed, Status::Skipped, Status::Reverted] {
            let text = serde_json::to_string(&s).unwrap();
            assert_eq!(text, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), s);
        }
    }

    #[test]
    fn wire_format_matches_the_spec() {
        let mut e = Event::new(
            "20261121-100000-ab12",
            EventKind::StepFinished {
                batch: 2,
                host: "web-03".into(),
                step: Step::Health,
                status: Status::Ok,
                ms: 1834,
                msg: "200 after 4 tries".into(),
                stderr: None,
                hint: None,
            },
        );
        e.ts = "2026-11-21T10:00:00.123Z".into();
        assert_eq!(
            e.to_json_line(),
            r#"{"v":1,"ts":"2026-11-21T10:00:00.123Z","run":"20261121-100000-ab12","type":"step_finished","batch":2,"host":"web-03","step":"health","status":"ok","ms":1834,"msg":"200 after 4 tries"}"#
        );
    }
}
