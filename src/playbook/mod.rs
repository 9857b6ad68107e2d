//! The release plan (the "playbook"): its model, loading with positioned errors, and templates.

mod artifact_store;
pub mod check;
mod decoder;
mod image;
mod load;
mod metrics;
mod model;
mod notify;
mod presets;
mod registry;
mod rollout;
mod strategy;
pub mod template;

pub use artifact_store::{ArtifactFormat, ArtifactStore, S3Credentials, S3Store, StoreAuth};
pub use image::{check_digest, parse_reference, Image, RegistryLogin, Runtime};
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
