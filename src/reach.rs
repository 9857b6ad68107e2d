//! How to reach an inventory host: its SSH endpoint (its own variables, then the SSH config,
//! then defaults) and whether commands run through `become`. Used by the executor, the
//! commands that reach hosts outside a run, and the registries and blue-green switch that
//! open their own links.

use crate::inventory::Host;
use crate::ssh::{Endpoint, SshSettings};

/// The SSH endpoint of an inventory host: its own variables, then the SSH config, then defaults.
pub fn endpoint(host: &Host, settings: &SshSettings) -> Endpoint {
    crate::ssh::config::resolve(&host_spec(host), settings)
}

/// What the inventory says about how to reach `host`.
pub fn host_spec(host: &Host) -> crate::ssh::config::HostSpec {
    let explicit_address = crate::inventory::ADDRESS_VARS
        .iter()
        .any(|k| host.vars.contains_key(*k));
    crate::ssh::config::HostSpec {
        name: host.name.clone(),
        address: explicit_address.then(|| host.address.clone()),
        port: host.port,
        user: host.user.clone(),
        identity: host.identity_file.clone(),
        jump: host.jump.clone(),
    }
}

/// Whether commands on `host` run through `sudo -n`: the playbook's `become`, or the host's
/// `become`/`ansible_become`.
pub fn wants_become(p: &crate::playbook::Playbook, host: &Host) -> bool {
    p.become_root
        || ["become", "ansible_become"].iter().any(|k| {
            host.vars
                .get(*k)
                .is_some_and(|v| v == &serde_json::json!(true) || v == "true" || v == "yes")
        })
}
