//! What the dashboards are told about a run: its state, folded from the event stream, and its
//! Prometheus text exposition (format 0.0.4), as pushed to a Pushgateway. Pure: no clock, no
//! network; times come from the events.

use std::collections::BTreeMap;

use crate::events::{Event, EventKind, Status, Step};

/// Where a host is in the run, as the `state` label of `tranche_hosts` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    Pending,
    Running,
    Done,
    Failed,
    Reverted,
    Skipped,
}

impl HostState {
    pub const ALL: [HostState; 6] = [
        HostState::Pending,
        HostState::Running,
        HostState::Done,
        HostState::Failed,
        HostState::Reverted,
        HostState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Pending => "pending",
            HostState::Running => "running",
            HostState::Done => "done",
            HostState::Failed => "failed",
            HostState::Reverted => "reverted",
            HostState::Skipped => "skipped",
        }
    }

    fn finished(status: Status) -> HostState {
        match status {
            Status::Ok => HostState::Done,
            Status::Failed => HostState::Failed,
            Status::Reverted => HostState::Reverted,
            Status::Skipped => HostState::Skipped,
        }
    }
}

/// One run as the metrics show it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    /// The run id, from the first event.
    pub run: String,
    pub service: String,
    pub version: String,
    /// Every targeted host and where it is; in the plan's order.
    hosts: BTreeMap<String, HostState>,
    pub batch_current: usize,
    pub batches_total: usize,
    /// Per step: (sum of milliseconds, count) of the steps that finished.
    steps: BTreeMap<&'static str, (u64, u64)>,
    /// Unix time in milliseconds.
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub exit_code: Option<i32>,
    /// `finish` was called: the process is done with the run, whatever the events said.
    pub over: bool,
}

impl RunState {
    /// Whether a `run_started` was seen (the metrics have a service to be pushed under).
    pub fn started(&self) -> bool {
        self.started_ms.is_some()
    }

    pub fn in_progress(&self) -> bool {
        self.started() && self.ended_ms.is_none() && !self.over
    }

    pub fn count(&self, state: HostState) -> usize {
        self.hosts.values().filter(|s| **s == state).count()
    }

    pub fn apply(&mut self, e: &Event) {
        if self.run.is_empty() {
            self.run = e.run.clone();
        }
        match &e.kind {
            EventKind::RunStarted {
                service, version, plan, ..
            } => {
                self.service = service.clone();
                self.version = version.clone();
                self.batches_total = plan.batches.len();
                for h in plan.batches.iter().flat_map(|b| &b.hosts) {
                    self.hosts.insert(h.name.clone(), HostState::Pending);
                }
                self.started_ms = Some(unix_ms(&e.ts));
            }
            EventKind::BatchStarted { batch, hosts } => {
                self.batch_current = *batch;
                for h in hosts {
                    self.hosts.entry(h.clone()).or_insert(HostState::Pending);
                }
            }
            EventKind::HostStarted { host, .. } => {
                self.hosts.insert(host.clone(), HostState::Running);
            }
            EventKind::StepFinished { step, ms, .. } => {
                let s = self.steps.entry(step_name(*step)).or_default();
                s.0 += ms;
                s.1 += 1;
            }
            EventKind::HostFinished { host, status, .. } => {
                self.hosts.insert(host.clone(), HostState::finished(*status));
            }
            EventKind::RunFinished { exit_code, .. } => {
                self.exit_code = Some(*exit_code);
                self.ended_ms = Some(unix_ms(&e.ts));
            }
            EventKind::StepStarted { .. }
            | EventKind::BatchFinished { .. }
            | EventKind::GateChecked { .. }
            | EventKind::Switched { .. }
            | EventKind::Retired { .. }
            | EventKind::Paused { .. }
            | EventKind::Resumed { .. }
            | EventKind::Warning { .. } => {}
        }
    }

    /// The run in the Prometheus text format. Every series carries `service` and `version`
    /// (the Pushgateway sets `job`, `service` and `run_id` from the push URL as well).
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        let base = format!(
            "service=\"{}\",version=\"{}\"",
            escape(&self.service),
            escape(&self.version)
        );
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (suffix_labels, value) in samples {
                out.push_str(&format!("{suffix_labels} {value}\n"));
            }
        };
        let hosts: Vec<(String, String)> = HostState::ALL
            .iter()
            .map(|s| {
                (
                    format!("tranche_hosts{{{base},state=\"{}\"}}", s.as_str()),
                    self.count(*s).to_string(),
                )
            })
            .collect();
        family(
            "tranche_hosts",
            "gauge",
            "Hosts of the run by state (pending, running, done, failed, reverted, skipped).",
            &hosts,
        );
        family(
            "tranche_batch_current",
            "gauge",
            "The batch the run is in (0 before the first).",
            &[(
                format!("tranche_batch_current{{{base}}}"),
                self.batch_current.to_string(),
            )],
        );
        // Not `tranche_batches_total`: `_total` is reserved for counters, and promtool's lint
        // (tests/metrics.rs) refuses it on a gauge.
        family(
            "tranche_batches",
            "gauge",
            "The number of batches in the run's plan.",
            &[(format!("tranche_batches{{{base}}}"), self.batches_total.to_string())],
        );
        family(
            "tranche_run_in_progress",
            "gauge",
            "1 while the run goes on, 0 once it ended.",
            &[(
                format!("tranche_run_in_progress{{{base}}}"),
                u8::from(self.in_progress()).to_string(),
            )],
        );
        if let Some(ms) = self.started_ms {
            family(
                "tranche_run_start_timestamp_seconds",
                "gauge",
                "When the run started, in seconds since the Unix epoch.",
                &[(format!("tranche_run_start_timestamp_seconds{{{base}}}"), seconds(ms))],
            );
        }
        if let Some(ms) = self.ended_ms {
            family(
                "tranche_run_end_timestamp_seconds",
                "gauge",
                "When the run ended, in seconds since the Unix epoch.",
                &[(format!("tranche_run_end_timestamp_seconds{{{base}}}"), seconds(ms))],
            );
        }
        if let Some(code) = self.exit_code {
            family(
                "tranche_run_exit_code",
                "gauge",
                "The run's exit code: 0 success, 1 hosts failed and reverted, 3 preflight failed, 4 stopped by the failure budget or the gate, 130 interrupted.",
                &[(format!("tranche_run_exit_code{{{base}}}"), code.to_string())],
            );
        }
        if !self.steps.is_empty() {
            let mut samples = Vec::new();
            for (step, (ms, n)) in &self.steps {
                samples.push((
                    format!("tranche_step_duration_seconds_sum{{{base},step=\"{step}\"}}"),
                    seconds(*ms as i64),
                ));
                samples.push((
                    format!("tranche_step_duration_seconds_count{{{base},step=\"{step}\"}}"),
                    n.to_string(),
                ));
            }
            family(
                "tranche_step_duration_seconds",
                "summary",
                "Time spent in each pipeline step, summed over the run's hosts.",
                &samples,
            );
        }
        out
    }
}

fn step_name(s: Step) -> &'static str {
    s.as_str()
}

/// Milliseconds as seconds, exactly: `1834` -> `1.834`.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
}

/// A label value in the text format: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// An event's `ts` (`2026-11-21T10:00:00.123Z`) in Unix milliseconds; now if it does not parse.
fn unix_ms(ts: &str) -> i64 {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{PlanBatch, PlanHost, PlanSummary};

    fn at(ts: &str, kind: EventKind) -> Event {
        let mut e = Event::new("20261121-100000-ab12", kind);
        e.ts = ts.into();
        e
    }

    fn plan(batches: &[&[&str]]) -> PlanSummary {
        PlanSummary {
            batches: batches
                .iter()
                .enumerate()
                .map(|(i, hosts)| PlanBatch {
                    number: i + 1,
                    hosts: hosts
                        .iter()
                        .map(|h| PlanHost {
                            name: h.to_string(),
                            ..PlanHost::default()
                        })
                        .collect(),
                    ..PlanBatch::default()
                })
                .collect(),
            ..PlanSummary::default()
        }
    }

    fn started() -> Event {
        at(
            "2026-11-21T10:00:00.123Z",
            EventKind::RunStarted {
                service: "demo".into(),
                version: "2.0.0".into(),
                hosts: 3,
                mode: "release".into(),
                plan: plan(&[&["h01"], &["h02", "h03"]]),
            },
        )
    }

    fn step(host: &str, step: Step, ms: u64) -> Event {
        at(
            "2026-11-21T10:00:01.000Z",
            EventKind::StepFinished {
                batch: 1,
                host: host.into(),
                step,
                status: Status::Ok,
                ms,
                msg: String::new(),
                stderr: None,
                hint: None,
            },
        )
    }

    #[test]
    fn nothing_is_known_before_the_run_starts() {
        let s = RunState::default();
        assert!(!s.started());
        assert!(!s.in_progress());
    }

    #[test]
    fn the_exposition_during_a_run() {
        let mut s = RunState::default();
        for e in [
            started(),
            at(
                "2026-11-21T10:00:00.500Z",
                EventKind::BatchStarted {
                    batch: 1,
                    hosts: vec!["h01".into()],
                },
            ),
            at(
                "2026-11-21T10:00:00.600Z",
                EventKind::HostStarted {
                    batch: 1,
                    host: "h01".into(),
                    previous: Some("1.0.0".into()),
                },
            ),
            step("h01", Step::Stop, 1200),
            step("h01", Step::Health, 1834),
            step("h02", Step::Preflight, 40),
            step("h01", Step::Preflight, 35),
        ] {
            s.apply(&e);
        }
        assert_eq!(s.run, "20261121-100000-ab12");
        assert!(s.in_progress());
        assert_eq!(
            s.exposition(),
            r#"# HELP tranche_hosts Hosts of the run by state (pending, running, done, failed, reverted, skipped).
# TYPE tranche_hosts gauge
tranche_hosts{service="demo",version="2.0.0",state="pending"} 2
tranche_hosts{service="demo",version="2.0.0",state="running"} 1
tranche_hosts{service="demo",version="2.0.0",state="done"} 0
tranche_hosts{service="demo",version="2.0.0",state="failed"} 0
tranche_hosts{service="demo",version="2.0.0",state="reverted"} 0
tranche_hosts{service="demo",version="2.0.0",state="skipped"} 0
# HELP tranche_batch_current The batch the run is in (0 before the first).
# TYPE tranche_batch_current gauge
tranche_batch_current{service="demo",version="2.0.0"} 1
# HELP tranche_batches The number of batches in the run's plan.
# TYPE tranche_batches gauge
tranche_batches{service="demo",version="2.0.0"} 2
# HELP tranche_run_in_progress 1 while the run goes on, 0 once it ended.
# TYPE tranche_run_in_progress gauge
tranche_run_in_progress{service="demo",version="2.0.0"} 1
# HELP tranche_run_start_timestamp_seconds When the run started, in seconds since the Unix epoch.
# TYPE tranche_run_start_timestamp_seconds gauge
tranche_run_start_timestamp_seconds{service="demo",version="2.0.0"} 1795255200.123
# HELP tranche_step_duration_seconds Time spent in each pipeline step, summed over the run's hosts.
# TYPE tranche_step_duration_seconds summary
tranche_step_duration_seconds_sum{service="demo",version="2.0.0",step="health"} 1.834
tranche_step_duration_seconds_count{service="demo",version="2.0.0",step="health"} 1
tranche_step_duration_seconds_sum{service="demo",version="2.0.0",step="preflight"} 0.075
tranche_step_duration_seconds_count{service="demo",version="2.0.0",step="preflight"} 2
tranche_step_duration_seconds_sum{service="demo",version="2.0.0",step="stop"} 1.200
tranche_step_duration_seconds_count{service="demo",version="2.0.0",step="stop"} 1
"#
        );
    }

    #[test]
    fn the_end_of_a_run_with_a_failure_and_a_revert() {
        let mut s = RunState::default();
        s.apply(&started());
        for (host, status) in [("h01", Status::Ok), ("h02", Status::Reverted), ("h03", Status::Failed)] {
            s.apply(&at(
                "2026-11-21T10:00:02.000Z",
                EventKind::HostStarted {
                    batch: 1,
                    host: host.into(),
                    previous: None,
                },
            ));
            s.apply(&at(
                "2026-11-21T10:00:03.000Z",
                EventKind::HostFinished {
                    batch: 1,
                    host: host.into(),
                    status,
                    ms: 1000,
                    msg: String::new(),
                },
            ));
        }
        s.apply(&at(
            "2026-11-21T10:01:40.007Z",
            EventKind::RunFinished {
                ok: 1,
                failed: 1,
                reverted: 1,
                skipped: 0,
                exit_code: 1,
                ms: 99884,
                msg: "1 host failed".into(),
            },
        ));
        assert!(!s.in_progress());
        let text = s.exposition();
        for line in [
            r#"tranche_hosts{service="demo",version="2.0.0",state="pending"} 0"#,
            r#"tranche_hosts{service="demo",version="2.0.0",state="done"} 1"#,
            r#"tranche_hosts{service="demo",version="2.0.0",state="failed"} 1"#,
            r#"tranche_hosts{service="demo",version="2.0.0",state="reverted"} 1"#,
            r#"tranche_run_in_progress{service="demo",version="2.0.0"} 0"#,
            r#"tranche_run_start_timestamp_seconds{service="demo",version="2.0.0"} 1795255200.123"#,
            r#"tranche_run_end_timestamp_seconds{service="demo",version="2.0.0"} 1795255300.007"#,
            r#"tranche_run_exit_code{service="demo",version="2.0.0"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        // No step finished: no empty summary family.
        assert!(!text.contains("tranche_step_duration_seconds"), "{text}");
    }

    #[test]
    fn a_run_that_ends_without_run_finished_is_no_longer_in_progress() {
        let mut s = RunState::default();
        s.apply(&started());
        s.over = true;
        let text = s.exposition();
        assert!(
            text.contains("tranche_run_in_progress{service=\"demo\",version=\"2.0.0\"} 0"),
            "{text}"
        );
        assert!(!text.contains("tranche_run_exit_code"), "{text}");
    }

    #[test]
    fn label_values_are_escaped_and_times_are_exact() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), r"a\nb");
        assert_eq!(seconds(1834), "1.834");
        assert_eq!(seconds(5), "0.005");
        assert_eq!(seconds(-1500), "-1.500");
        assert_eq!(unix_ms("1970-01-01T00:00:01.250Z"), 1250);
    }
}
