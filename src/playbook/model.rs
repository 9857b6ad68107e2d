//! The playbook as the rest of tranche reads it: what to release, where it goes on the hosts,
//! how it is stopped, started and checked. `rollout` and `registry` have files of their own.

use std::path::PathBuf;
use std::time::Duration;

use super::{Annotate, Notifier, Registry, Rollout, Template, Templates};
use crate::error::Pos;

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
    pub registry_retry: Duration,
    pub stop: Stop,
    pub start: Option<Template>,
    pub health: Option<Health>,
    pub hooks: Hooks,
    /// `become: true`: every command on the hosts runs through `sudo -n` (hosts may also set
    /// `become` or `ansible_become`).
    pub become_root: bool,
    /// Alert silences around each host's time out of traffic.
    pub silence: Option<Silence>,
    /// `notify`: messages about the run to chat services and webhooks.
    pub notify: Vec<Notifier>,
    /// `annotate`: a Grafana annotation over the run.
    pub annotate: Option<Annotate>,
    /// `metrics`: the run's progress pushed to a Prometheus Pushgateway.
    pub metrics: Option<super::Metrics>,
    /// `strategy`: rolling batches (the default) or blue-green.
    pub strategy: super::Strategy,
    /// Blue-green: the side templates are rendered for (`slot.name`, `slot.port`, and the
    /// slot's release folder); the blue one when loaded, the idle one while it is released.
    pub side: super::Side,
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
    /// A container image pulled by each host's runtime, pinned by digest (`playbook::image`).
    Image(Box<super::Image>),
}

#[derive(Debug, Clone)]
pub struct Artifact {
    pub source: ArtifactSource,
    /// Lowercase hex; computed for a pushed file when the playbook leaves it out.
    pub sha256: Option<String>,
    pub pos: Pos,
    /// Its format and the credentials of the store it is pulled from (artifact_store.rs).
    pub store: super::ArtifactStore,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: String,
    pub keep: u32,
}

impl Layout {
    /// `layout` when the playbook leaves it (or a part of it) out: `/srv/SERVICE`, keeping 5
    /// releases.
    pub fn default_for(service: &str) -> Layout {
        Layout {
            root: format!("/srv/{service}"),
            keep: 5,
        }
    }
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

#[derive(Debug, Clone)]
pub struct Stop {
    pub command: Option<Template>,
    pub timeout: Duration,
    pub kill_command: Option<Template>,
}

/// `stop` when the playbook leaves it (or a part of it) out: no command, 30 s to stop.
impl Default for Stop {
    fn default() -> Self {
        Stop {
            command: None,
            timeout: Duration::from_secs(30),
            kill_command: None,
        }
    }
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
