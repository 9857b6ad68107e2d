//! The release plan (the "playbook"): its model, loading with positioned errors, and templates.

pub mod check;
mod decoder;
mod load;
mod metrics;
mod model;
mod notify;
mod presets;
mod registry;
mod rollout;
mod strategy;
pub mod template;

pub use metrics::Metrics;
pub use model::*;
pub use notify::{Annotate, Moment, Notifier, NotifyKind};
pub use presets::{Preset, Unset, PRESETS};
pub use registry::{kinds as registry_kinds, HttpCall, Registry, RegistrySpec, DEFAULT_REGISTRY_RETRY};
pub use rollout::{BatchSize, Gate, OnFailure, Pause, Rollout};
pub use strategy::{BlueGreen, Shape, Side, Strategy};
pub use template::{shell_quote, Template, Templates};

impl Playbook {
    /// Load and check a playbook; every problem is reported at once.
    pub fn load(
        path: &std::path::Path,
        extra_vars: &[(String, String)],
    ) -> Result<Playbook, crate::error::Diagnostics> {
        load::load(path, extra_vars)
    }
}
