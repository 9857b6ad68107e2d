//! `rollout`: how the hosts are batched and paced, what a failure does, and the gate between
//! batches; its defaults, written once.

use std::time::Duration;

use serde::Serialize;

use super::decoder::{describe, Decoder};
use super::{check, HttpAuth, Template};
use crate::error::did_you_mean;
use crate::units;
use crate::yaml::Node;

/// A batch size: a count or a percentage of the targeted hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSize {
    Count(usize),
    Percent(u32),
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchSize::Count(n) => write!(f, "{n}"),
            BatchSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A wait between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    For(Duration),
    Confirm,
}

impl std::fmt::Display for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pause::For(d) if d.is_zero() => write!(f, "none"),
            Pause::For(d) => write!(f, "{}", crate::units::human_duration(*d)),
            Pause::Confirm => write!(f, "confirm"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    Rollback,
    RevertFailed,
    Halt,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Rollback => "rollback",
            OnFailure::RevertFailed => "revert-failed",
            OnFailure::Halt => "halt",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rollout {
    pub canary: usize,
    pub canary_pause: Pause,
    pub batch: Vec<BatchSize>,
    pub pause: Pause,
    pub max_failures: BatchSize,
    pub on_failure: OnFailure,
    pub stage_concurrency: usize,
    /// Bytes per second per transfer; 0: no cap.
    pub stage_bandwidth: u64,
    /// `spread: zone`: order the hosts round-robin over their zones before batching.
    pub spread_zones: bool,
    /// At most this many hosts of one zone out of traffic at once.
    pub max_per_zone: Option<usize>,
    /// A metric that must stay under a limit after each batch.
    pub gate: Option<Gate>,
    /// After the canary, start the next host as soon as one finishes (never more than the
    /// batch size out at once) instead of waiting for the slowest host of each batch.
    pub window: bool,
}

/// `rollout.gate`: after each batch, `query` (PromQL) must stay at or under `max` for `hold`.
#[derive(Debug, Clone)]
pub struct Gate {
    pub prometheus: String,
    /// `rollout.gate.token` or `rollout.gate.basic_auth`.
    pub auth: HttpAuth,
    pub query: Template,
    pub max: f64,
    pub hold: Duration,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            canary: 1,
            canary_pause: Pause::For(Duration::ZERO),
            batch: vec![BatchSize::Percent(25)],
            pause: Pause::For(Duration::ZERO),
            max_failures: BatchSize::Count(0),
            on_failure: OnFailure::Rollback,
            stage_concurrency: 10,
            stage_bandwidth: 0,
            spread_zones: false,
            max_per_zone: None,
            gate: None,
            window: false,
        }
    }
}

impl Decoder<'_> {
    pub(super) fn rollout(&mut self, node: &Node) -> Option<Rollout> {
        let m = self.map(
            node,
            "rollout",
            &[
                "canary",
                "canary_pause",
                "batch",
                "pause",
                "max_failures",
                "on_failure",
                "stage",
                "spread",
                "gate",
                "window",
                "max_per_zone",
            ],
        )?;
        let mut r = Rollout::default();
        let mut ok = true;
        if let Some(n) = m.get("spread") {
            match n.scalar() {
                Some("zone") => r.spread_zones = true,
                Some("none") => r.spread_zones = false,
                _ => {
                    let v = n.scalar().unwrap_or("?").to_string();
                    self.error_hint(
                        n,
                        format!("`rollout.spread` must be zone or none, not \"{v}\""),
                        "`spread: zone` orders the hosts round-robin over their zones before batching",
                    );
                    ok = false;
                }
            }
        }
        if let Some(n) = m.get("window") {
            match n.to_json() {
                serde_json::Value::Bool(b) => r.window = b,
                _ => {
                    self.error_hint(n, format!("`rollout.window` must be true or false, not {}", n.type_name()), "window: true starts the next host as soon as one finishes, never more than a batch out at once");
                    ok = false;
                }
            }
        }
        if let Some(n) = m.get("gate") {
            match self.gate(n) {
                Some(g) => r.gate = Some(g),
                None => ok = false,
            }
        }
        if let Some(n) = m.get("max_per_zone") {
            match self.int(n, "rollout.max_per_zone", 1, 100_000) {
                Some(v) => r.max_per_zone = Some(v as usize),
                None => ok = false,
            }
        }
        if let Some(n) = m.get("canary") {
            match self.int(n, "rollout.canary", 0, 100_000) {
                Some(c) => r.canary = c as usize,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("canary_pause") {
            match self.pause(n, "rollout.canary_pause") {
                Some(p) => r.canary_pause = p,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("pause") {
            match self.pause(n, "rollout.pause") {
                Some(p) => r.pause = p,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("batch") {
            let sizes: Vec<Option<BatchSize>> = match n.as_seq() {
                Some([]) => {
                    self.error(n, "`rollout.batch` must not be an empty list");
                    vec![None]
                }
                Some(items) => items.iter().map(|i| self.size(i, "rollout.batch", 1, 100)).collect(),
                None => vec![self.size(n, "rollout.batch", 1, 100)],
            };
            match sizes.into_iter().collect::<Option<Vec<_>>>() {
                Some(s) => r.batch = s,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("max_failures") {
            match self.size(n, "rollout.max_failures", 0, 100) {
                Some(s) => r.max_failures = s,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("on_failure") {
            match n.scalar() {
                Some("rollback") => r.on_failure = OnFailure::Rollback,
                Some("revert-failed") => r.on_failure = OnFailure::RevertFailed,
                Some("halt") => r.on_failure = OnFailure::Halt,
                _ => {
                    let s = n.scalar().unwrap_or("?").to_string();
                    let hint = match did_you_mean(&s, &["rollback", "revert-failed", "halt"]) {
                        Some(x) => format!("did you mean `{x}`?"),
                        None => "one of: rollback, revert-failed, halt".to_string(),
                    };
                    self.error_hint(
                        n,
                        format!("`rollout.on_failure` must be rollback, revert-failed or halt, not \"{s}\""),
                        hint,
                    );
                    ok = false;
                }
            }
        }
        if let Some(n) = m.get("stage") {
            match self.map(n, "rollout.stage", &["concurrency", "bandwidth"]) {
                Some(s) => {
                    if let Some(c) = s.get("concurrency") {
                        match self.int(c, "rollout.stage.concurrency", 1, 10_000) {
                            Some(v) => r.stage_concurrency = v as usize,
                            None => ok = false,
                        }
                    }
                    if let Some(b) = s.get("bandwidth") {
                        let text = b.to_json().to_string().trim_matches('"').to_string();
                        match units::parse_rate(&text) {
                            Ok(v) if v > 0 && v < 1024 => {
                                self.error_hint(
                                    b,
                                    format!(
                                        "`rollout.stage.bandwidth` must be 0 (no cap) or at least 1KiB/s, not {text}"
                                    ),
                                    "at under 1KiB/s an artifact would take days to reach each host",
                                );
                                ok = false;
                            }
                            Ok(v) => r.stage_bandwidth = v,
                            Err(e) => {
                                self.error(b, format!("`rollout.stage.bandwidth`: {e}"));
                                ok = false;
                            }
                        }
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(r)
    }

    pub(super) fn gate(&mut self, node: &Node) -> Option<Gate> {
        let m = self.map(
            node,
            "rollout.gate",
            &["prometheus", "token", "basic_auth", "query", "max", "for"],
        )?;
        let auth = self.auth(&m, "rollout.gate");
        let prometheus = self
            .required(&m, "prometheus", "rollout.gate")
            .and_then(|n| self.url(n, "rollout.gate.prometheus"));
        self.credentials_once(&m, "prometheus", &prometheus, &auth, "rollout.gate");
        let query = self
            .required(&m, "query", "rollout.gate")
            .and_then(|n| self.template(n, "rollout.gate.query", false));
        let max = self
            .required(&m, "max", "rollout.gate")
            .and_then(|n| match n.to_json().as_f64() {
                Some(v) if v.is_finite() => Some(v),
                _ => {
                    self.error(n, format!("`rollout.gate.max` must be a number, not {}", describe(n)));
                    None
                }
            });
        let hold = match m.get("for") {
            Some(n) => self.duration(n, "rollout.gate.for", check::WAIT_MAX),
            None => Some(Duration::ZERO),
        };
        Some(Gate {
            prometheus: prometheus?,
            auth: auth?,
            query: query?,
            max: max?,
            hold: hold?,
        })
    }

    pub(super) fn pause(&mut self, node: &Node, what: &str) -> Option<Pause> {
        if node.scalar() == Some("confirm") {
            return Some(Pause::Confirm);
        }
        match node.to_json() {
            serde_json::Value::String(s) => match units::parse_duration(&s) {
                Ok(d) => self.bounded(node, what, d, check::WAIT_MAX).map(Pause::For),
                Err(e) => {
                    self.error_hint(
                        node,
                        format!("`{what}`: {e}"),
                        "a pause is a duration, or `confirm` to ask before going on",
                    );
                    None
                }
            },
            _ => self.duration(node, what, check::WAIT_MAX).map(Pause::For),
        }
    }

    pub(super) fn size(&mut self, node: &Node, what: &str, min_count: usize, max_percent: u32) -> Option<BatchSize> {
        match node.to_json() {
            serde_json::Value::Number(n) => match n.as_u64() {
                _ if n.as_f64().is_some_and(|f| f > crate::inventory::HOSTS_MAX as f64) => {
                    self.error_hint(
                        node,
                        format!(
                            "`{what}` must be at most {} hosts, not {}",
                            crate::inventory::HOSTS_MAX,
                            node.scalar().unwrap_or_default()
                        ),
                        "an inventory holds at most that many hosts; `\"100%\"` means all of them",
                    );
                    None
                }
                Some(c) if c as usize >= min_count => Some(BatchSize::Count(c as usize)),
                _ => {
                    self.error_hint(
                        node,
                        format!("`{what}` must be a whole number of at least {min_count}, or a percentage, not {n}"),
                        "write a host count such as `5`, or a share such as `\"25%\"`",
                    );
                    None
                }
            },
            serde_json::Value::String(s) => {
                let pct = s.trim().strip_suffix('%').and_then(|p| p.trim().parse::<u32>().ok());
                match pct {
                    Some(p) if (min_count.min(1) as u32..=max_percent).contains(&p) => Some(BatchSize::Percent(p)),
                    Some(p) => {
                        self.error(
                            node,
                            format!(
                                "`{what}` must be a percentage from {}% to {max_percent}%, not {p}%",
                                min_count.min(1)
                            ),
                        );
                        None
                    }
                    None => {
                        self.error_hint(
                            node,
                            format!("`{what}` must be a number or a percentage, not \"{s}\""),
                            "write a host count such as `5`, or a share such as `\"25%\"`",
                        );
                        None
                    }
                }
            }
            _ => {
                self.error(
                    node,
                    format!("`{what}` must be a number or a percentage, not {}", node.type_name()),
                );
                None
            }
        }
    }
}
