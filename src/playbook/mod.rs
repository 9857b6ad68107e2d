//! The release plan (the "playbook"): its model, loading with positioned errors, and templates.

pub mod check;
mod load;
pub mod template;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::Pos;
pub use template::{shell_quote, Template, Templates};

/// A loaded, checked playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub file: PathBuf,
    pub service: String,
    pub version: String,
    /// The host pattern, and where it was written (for errors about it).
    pub hosts: String,
    pub hosts_pos: Option<Pos>,
    pub artifact: Artifact,
    pub layout: Layout,
    pub rollout: Rollout,
    pub registry: Registry,
    /// `registry.retry`: how long registry, load balancer and monitoring calls retry a
    /// transient failure (refused, reset, timeout, 5xx, 429) before the step fails; zero turns
    /// retries off.
    pub registry_retry: std::time::Duration,
    pub stop: Stop,
    pub start: Option<Template>,
    pub health: Option<Health>,
    pub hooks: Hooks,
    /// `become: true`: every command on the hosts runs through `sudo -n` (hosts may also set
    /// `become` or `ansible_become`).
    pub become_root: bool,
    /// Alert silences around each host's time out of traffic.
    pub silence: Option<Silence>,
    pub templates: Templates,
    /// `-e KEY=VALUE` variables, reachable at the top level of templates.
    pub extra_vars: Vec<(String, String)>,
    /// Where scalar settings were written (`rollout.canary`, `artifact.sha256`, ...), for
    /// errors found after loading.
    pub positions: std::collections::HashMap<String, Pos>,
}

impl Playbook {
    pub fn pos(&self, key: &str) -> Option<Pos> {
        self.positions.get(key).copied()
    }
}

#[derive(Debug, Clone)]
pub enum ArtifactSource {
    /// Pushed from the controller (absolute, resolved against the playbook's folder).
    Path(PathBuf),
    /// Pulled by each host.
    Url(Template),
}

#[derive(Debug, Clone)]
pub struct Artifact {
    pub source: ArtifactSource,
    /// Lowercase hex; computed for a pushed file when the playbook leaves it out.
    pub sha256: Option<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: String,
    pub keep: u32,
}

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

/// `silence`: an Alertmanager silence for the host while it is out of traffic.
#[derive(Debug, Clone)]
pub struct Silence {
    pub alertmanager: String,
    /// `silence.token` or `silence.basic_auth`.
    pub auth: HttpAuth,
    /// Label name, value template, and whether the value is a regex (written `=~...`).
    pub matchers: Vec<(String, Template, bool)>,
    /// How long a silence lasts if tranche cannot expire it.
    pub duration: Duration,
}

/// Credentials for a monitoring endpoint, rendered from their templates (`"{{ env.AM_TOKEN }}"`)
/// when the playbook loads. They are secrets: never shown, and `Debug` hides them.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum HttpAuth {
    #[default]
    None,
    /// `token`: `Authorization: Bearer <token>`.
    Bearer(String),
    /// `basic_auth: {username, password}`.
    Basic { username: String, password: String },
}

impl HttpAuth {
    /// The values to redact (the username of basic auth is not a secret).
    pub fn secrets(&self) -> Vec<String> {
        match self {
            HttpAuth::None => vec![],
            HttpAuth::Bearer(t) => vec![t.clone()],
            HttpAuth::Basic { password, .. } => vec![password.clone()],
        }
    }

    /// How the credentials are described in the plan: their kind, never their value.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            HttpAuth::None => None,
            HttpAuth::Bearer(_) => Some("token"),
            HttpAuth::Basic { .. } => Some("basic_auth"),
        }
    }
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpAuth::None => f.write_str("None"),
            HttpAuth::Bearer(_) => f.write_str("Bearer(***)"),
            HttpAuth::Basic { username, .. } => write!(f, "Basic {{ username: {username:?}, password: *** }}"),
        }
    }
}

/// `registry.retry` when the playbook does not set it.
pub const DEFAULT_REGISTRY_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// How a host is taken out of traffic and put back.
#[derive(Debug, Clone)]
pub enum Registry {
    None,
    Command {
        deregister: Template,
        register: Template,
        /// Run the commands on this inventory host instead of the released one.
        delegate: Option<String>,
        drain: Duration,
    },
    Http {
        deregister: HttpCall,
        register: HttpCall,
        drain: Duration,
        /// `http`, or the preset the calls were built from: consul, nacos, eureka, dubbo, etcd.
        preset: &'static str,
    },
    Haproxy {
        address: String,
        backend: Template,
        server: Template,
        drain: Duration,
    },
}

impl Registry {
    pub fn kind(&self) -> &'static str {
        match self {
            Registry::None => "none",
            Registry::Command { .. } => "command",
            Registry::Http { preset, .. } => preset,
            Registry::Haproxy { .. } => "haproxy",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpCall {
    pub method: String,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    /// Accepted statuses; empty: any 2xx.
    pub expect_status: Vec<u16>,
}

#[derive(Debug, Clone)]
pub struct Stop {
    pub command: Option<Template>,
    pub timeout: Duration,
    pub kill_command: Option<Template>,
}

#[derive(Debug, Clone)]
pub enum HealthCheck {
    Http(Template),
    Tcp(Template),
    Command(Template),
}

#[derive(Debug, Clone)]
pub struct Health {
    pub check: HealthCheck,
    pub expect_status: u16,
    pub expect_body: Option<Template>,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub precheck: Option<Template>,
    pub after_start: Option<Template>,
}

impl Playbook {
    /// Load and check a playbook; every problem is reported at once.
    pub fn load(
        path: &std::path::Path,
        extra_vars: &[(String, String)],
    ) -> Result<Playbook, crate::error::Diagnostics> {
        load::load(path, extra_vars)
    }
}
