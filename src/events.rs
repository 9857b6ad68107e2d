//! The Event type: the only thing the executor emits. Reporters (terminal, plain lines, JSON
//! Lines) and the journal consume it. The JSON form is SPEC §5; fields are only ever added.

use serde::{Deserialize, Serialize};

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
            EventKind::StepFinished { msg, stderr, .. } => {
                r.scrub(msg);
                if let Some(s) = stderr {
                    r.scrub(s);
                }
            }
            EventKind::HostFinished { msg, .. }
            | EventKind::Warning { msg, .. }
            | EventKind::GateChecked { msg, .. }
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

/// The plan of a run as `run_started` carries it: the same document as `tranche plan --format
/// json` (schema version 1, documented in the README). Fields are only ever added; a journal
/// written by an older tranche, with fewer fields, still reads (missing fields take their
/// defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanSummary {
    pub v: u32,
    pub service: String,
    pub version: String,
    /// The playbook's `hosts:` pattern.
    pub hosts: String,
    pub targeted: usize,
    pub batches: Vec<PlanBatch>,
    pub stage: PlanStage,
    pub layout: PlanLayout,
    pub failure: PlanFailure,
    pub pauses: PlanPauses,
    /// The registry kind (`none`, `command`, `haproxy`, or an HTTP preset).
    pub registry: String,
    /// `zone` or `none`.
    pub spread: String,
    pub max_per_zone: Option<usize>,
    pub window: Option<usize>,
    pub gate: Option<PlanGate>,
    pub silence: Option<PlanSilence>,
    #[serde(rename = "become")]
    pub become_root: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanBatch {
    pub number: usize,
    pub canary: bool,
    pub size: usize,
    pub zones: Vec<String>,
    pub hosts: Vec<PlanHost>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanStage {
    /// `push` (the controller uploads) or `pull` (each host downloads).
    pub mode: String,
    /// The artifact's path or URL.
    pub source: String,
    pub sha256: String,
    /// Bytes, for a pushed artifact.
    pub size: Option<u64>,
    pub concurrency: usize,
    /// Bytes per second per host; 0: unlimited.
    pub bandwidth: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanLayout {
    pub root: String,
    pub release_dir: String,
    pub keep: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanFailure {
    /// As written in the playbook (`1`, `10%`).
    pub max_failures: String,
    /// Hosts that may fail, worked out for this run.
    pub budget: usize,
    pub on_failure: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanPauses {
    pub canary: PlanPause,
    pub between_batches: PlanPause,
}

/// A pause: milliseconds, or `"confirm"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanPause {
    Ms(u64),
    Word(PauseWord),
}

impl Default for PlanPause {
    fn default() -> Self {
        PlanPause::Ms(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseWord {
    Confirm,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanGate {
    /// Without credentials.
    pub prometheus: String,
    /// `token`, `basic_auth`, or none.
    pub auth: Option<String>,
    pub query: String,
    pub max: f64,
    pub for_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanSilence {
    /// Without credentials.
    pub alertmanager: String,
    pub auth: Option<String>,
    pub matchers: Vec<PlanMatcher>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanMatcher {
    pub name: String,
    pub value: String,
    pub regex: bool,
}

impl PlanSummary {
    /// Scrub every text of the plan (a test fills every text field with a secret, so a field
    /// added without a line here fails it).
    pub fn redact_with(&mut self, r: &crate::redact::Redactor) {
        let PlanSummary {
            v: _,
            service,
            version,
            hosts,
            targeted: _,
            batches,
            stage,
            layout,
            failure,
            pauses: _,
            registry,
            spread,
            max_per_zone: _,
            window: _,
            gate,
            silence,
            become_root: _,
        } = self;
        for s in [service, version, hosts, registry, spread] {
            r.scrub(s);
        }
        for b in batches {
            b.zones.iter_mut().for_each(|z| r.scrub(z));
            for h in &mut b.hosts {
                r.scrub(&mut h.name);
                r.scrub(&mut h.address);
                h.zone.iter_mut().for_each(|z| r.scrub(z));
            }
        }
        for s in [&mut stage.mode, &mut stage.source, &mut stage.sha256] {
            r.scrub(s);
        }
        r.scrub(&mut layout.root);
        r.scrub(&mut layout.release_dir);
        r.scrub(&mut failure.max_failures);
        r.scrub(&mut failure.on_failure);
        if let Some(g) = gate {
            r.scrub(&mut g.prometheus);
            g.auth.iter_mut().for_each(|a| r.scrub(a));
            r.scrub(&mut g.query);
        }
        if let Some(s) = silence {
            r.scrub(&mut s.alertmanager);
            s.auth.iter_mut().for_each(|a| r.scrub(a));
            for m in &mut s.matchers {
                r.scrub(&mut m.name);
                r.scrub(&mut m.value);
            }
        }
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

    /// A plan with every field set, and at least one entry in every list.
    fn full_plan() -> PlanSummary {
        PlanSummary {
            v: 1,
            service: "demo".into(),
            version: "2.0.0".into(),
            hosts: "frontend".into(),
            targeted: 2,
            batches: vec![PlanBatch {
                number: 1,
                canary: true,
                size: 1,
                zones: vec!["dc1".into()],
                hosts: vec![PlanHost {
                    name: "web-01".into(),
                    address: "10.0.1.11".into(),
                    port: 2222,
                    zone: Some("dc1".into()),
                }],
            }],
            stage: PlanStage {
                mode: "pull".into(),
                source: "https://dl/app.tgz".into(),
                sha256: "ab".repeat(32),
                size: Some(1234),
                concurrency: 4,
                bandwidth: 1 << 20,
            },
            layout: PlanLayout {
                root: "/srv/demo".into(),
                release_dir: "/srv/demo/releases/2.0.0".into(),
                keep: 3,
            },
            failure: PlanFailure {
                max_failures: "10%".into(),
                budget: 1,
                on_failure: "rollback".into(),
            },
            pauses: PlanPauses {
                canary: PlanPause::Word(PauseWord::Confirm),
                between_batches: PlanPause::Ms(5000),
            },
            registry: "consul".into(),
            spread: "zone".into(),
            max_per_zone: Some(1),
            window: Some(3),
            gate: Some(PlanGate {
                prometheus: "http://prom:9090".into(),
                auth: Some("token".into()),
                query: "sum(errors)".into(),
                max: 0.01,
                for_ms: 120_000,
            }),
            silence: Some(PlanSilence {
                alertmanager: "http://am:9093".into(),
                auth: Some("basic_auth".into()),
                matchers: vec![PlanMatcher {
                    name: "instance".into(),
                    value: "{{ host.name }}".into(),
                    regex: false,
                }],
            }),
            become_root: true,
        }
    }

    /// Every text of the plan, whichever field it is in, is scrubbed: each string of the JSON
    /// form is set to a secret, then the typed plan is redacted.
    #[test]
    fn every_text_of_the_plan_is_redacted() {
        fn fill(v: &mut serde_json::Value) -> usize {
            match v {
                serde_json::Value::String(s) => {
                    *s = "x-s3cr3t-x".into();
                    1
                }
                serde_json::Value::Array(a) => a.iter_mut().map(fill).sum(),
                serde_json::Value::Object(o) => o.values_mut().map(fill).sum(),
                _ => 0,
            }
        }
        let mut v = serde_json::to_value(full_plan()).unwrap();
        let texts = fill(&mut v);
        assert!(texts >= 20, "{texts} texts");
        // `confirm` is a word of the format, not a text: put it back.
        v["pauses"]["canary"] = "confirm".into();
        let mut plan: PlanSummary = serde_json::from_value(v).unwrap();
        plan.redact_with(&crate::redact::Redactor::new(&["s3cr3t".to_string()]));
        let out = serde_json::to_string(&plan).unwrap();
        assert!(!out.contains("s3cr3t"), "{out}");
        assert_eq!(out.matches("x-***-x").count(), texts - 1, "{out}");
    }

    /// One event of every kind, with every optional field set one way or the other.
    fn every_kind() -> Vec<EventKind> {
        vec![
            EventKind::RunStarted {
                service: "demo".into(),
                version: "2.0.0".into(),
                hosts: 2,
                mode: "release".into(),
                plan: full_plan(),
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
            },
            EventKind::StepFinished {
                batch: 1,
                host: "a".into(),
                step: Step::Revert,
                status: Status::Ok,
                ms: 3,
                msg: String::new(),
                stderr: None,
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
                EventKind::RunFinished { .. } => "run_finished",
            });
        }
        assert_eq!(seen.len(), 12);
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

    /// The plan in `run_started` keeps the documented field names and shapes.
    #[test]
    fn the_plan_keeps_its_documented_shape() {
        let v = serde_json::to_value(full_plan()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "v",
                "service",
                "version",
                "hosts",
                "targeted",
                "batches",
                "stage",
                "layout",
                "failure",
                "pauses",
                "registry",
                "spread",
                "max_per_zone",
                "window",
                "gate",
                "silence",
                "become"
            ]
        );
        assert_eq!(
            v["pauses"],
            serde_json::json!({"canary": "confirm", "between_batches": 5000})
        );
        assert_eq!(v["batches"][0]["hosts"][0]["port"], 2222);
        // A plan from an older journal, with fewer fields, still reads.
        let old: PlanSummary = serde_json::from_str(r#"{"v":1,"service":"demo","batches":[{"number":1}]}"#).unwrap();
        assert_eq!(old.batches.len(), 1);
        assert_eq!(old.service, "demo");
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
            },
        );
        e.ts = "2026-11-21T10:00:00.123Z".into();
        assert_eq!(
            e.to_json_line(),
            r#"{"v":1,"ts":"2026-11-21T10:00:00.123Z","run":"20261121-100000-ab12","type":"step_finished","batch":2,"host":"web-03","step":"health","status":"ok","ms":1834,"msg":"200 after 4 tries"}"#
        );
    }
}
