//! What the commands read before they work: the inventory sources (`-i`, else `ansible.cfg`),
//! the `-e` values, the release and the SSH settings. Each returns an error for
//! [`super::error`] to show; none prints one.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::{CommandError, Invalid};
use crate::cli::{Files, SshOptions};
use crate::release::{Release, ReleaseRequest};
use crate::settings::Settings;
use crate::shard::Shard;
use crate::ssh;
use crate::units::plural;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn request(files: &Files) -> anyhow::Result<ReleaseRequest> {
    Ok(ReleaseRequest {
        inventories: inventories(&files.inventories)?,
        playbook: files.playbook.clone(),
        limit: files.limit.clone(),
        extra_vars: resolve_extra_vars(&extra_vars(&files.extra_vars)?)?,
    })
}

/// The `ansible.cfg` Ansible would read here, if any, read once; a `host_key_checking = False`
/// in it is said to be ignored (tranche never checks host keys less).
pub fn ansible_cfg() -> Option<&'static crate::ansible_cfg::AnsibleCfg> {
    static CFG: std::sync::OnceLock<Option<crate::ansible_cfg::AnsibleCfg>> = std::sync::OnceLock::new();
    CFG.get_or_init(|| {
        let env = Settings::get();
        let home = env.home.as_deref();
        let cwd = std::env::current_dir().ok()?;
        let path = crate::ansible_cfg::find(&cwd, home, env.ansible_config.as_deref())?;
        match crate::ansible_cfg::load(&path, home) {
            Ok(cfg) => {
                if cfg.host_key_checking_off {
                    eprintln!(
                        "warning: {} sets host_key_checking = False; tranche checks host keys anyway (see --accept-new-host-keys)",
                        path.display()
                    );
                }
                Some(cfg)
            }
            Err(e) => {
                eprintln!("warning: {e}; it is not used");
                None
            }
        }
    })
    .as_ref()
}

/// The inventory sources: `-i`, else the `inventory` of `ansible.cfg`.
pub fn inventories(given: &[PathBuf]) -> Result<Vec<PathBuf>, CommandError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    match ansible_cfg().filter(|c| !c.inventory.is_empty()) {
        Some(cfg) => Ok(cfg.inventory.clone()),
        None => Err(CommandError::new(
            "no inventory: pass -i INVENTORY (or set `inventory` in ansible.cfg)",
        )),
    }
}

/// The `-e` values split into `KEY=VALUE`. A malformed one is named by its place only: it may
/// be a secret given without its key, so no part of it is shown.
pub fn extra_vars(given: &[String]) -> Result<Vec<(String, String)>, CommandError> {
    given
        .iter()
        .enumerate()
        .map(|(i, s)| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                Ok((k.to_string(), v.to_string()))
            }
            _ => Err(CommandError::new(format!(
                "-e value {} of {} is not KEY=VALUE with KEY made of letters, digits and `_` (it is not shown: it may be a secret)",
                i + 1,
                given.len()
            ))
            .hint("write -e NAME=VALUE, or -e NAME=@env:VAR to read a secret from the environment")),
        })
        .collect()
}

/// The `-e` values as templates see them: `KEY=@env:NAME` read from the environment (and made
/// a secret, see `crate::redact`).
pub fn resolve_extra_vars(vars: &[(String, String)]) -> Result<Vec<(String, String)>, CommandError> {
    vars.iter()
        .map(|(k, v)| match crate::redact::resolve_extra_var(k, v) {
            Ok(value) => Ok((k.clone(), value)),
            Err(e) => Err(CommandError::new(e).hint(format!(
                "export {} before running tranche",
                &v[crate::redact::ENV_PREFIX.len()..]
            ))),
        })
        .collect()
}

/// Load the release; every problem in the files is in the error.
pub fn load(req: &ReleaseRequest) -> Result<Release, Invalid> {
    Release::load(req).map_err(Invalid)
}

/// The SSH settings of a run, from the options, `ansible.cfg` and the defaults.
pub fn ssh_settings(o: &SshOptions) -> anyhow::Result<ssh::SshSettings> {
    let env = Settings::get();
    let home = env.home.clone().unwrap_or_default();
    let cfg = ansible_cfg();
    let mut identities: Vec<PathBuf> = o.identity.iter().cloned().collect();
    identities.extend(cfg.and_then(|c| c.private_key_file.clone()));
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        identities.push(home.join(".ssh").join(name));
    }
    let (config_path, explicit) = match &o.ssh_config {
        Some(p) => (p.clone(), true),
        None => (home.join(".ssh/config"), false),
    };
    let config = ssh::config::load(&config_path, explicit).map_err(CommandError::new)?;
    let openssh = match &config {
        Some(_) => ssh::config::OpenSsh::detect(&config_path).unwrap_or_else(|e| {
            eprintln!("warning: {e}; tranche reads the SSH config with its built-in parser");
            None
        }),
        None => None,
    };
    Ok(ssh::SshSettings {
        known_hosts: o.known_hosts.clone(),
        accept_new_host_keys: o.accept_new_host_keys,
        identities,
        use_agent: true,
        // A passphrase prompt would hang a CI job that happens to have a terminal.
        ask_passphrase: !env.ci && env.can_ask(),
        config: config.map(Arc::new),
        openssh: openssh.map(Arc::new),
        bastions: ssh::Bastions::default(),
        max_connecting: o.max_connecting,
        connect_timeout: o.connect_timeout,
        default_user: o
            .user
            .clone()
            .or_else(|| cfg.and_then(|c| c.remote_user.clone()))
            .unwrap_or_else(crate::operator::current_user),
    })
}

/// Read the files the way every command that touches hosts does: the request, then the release
/// (narrowed to `--shard`, if given).
pub fn release(files: &Files) -> anyhow::Result<(ReleaseRequest, Release)> {
    let req = request(files)?;
    let mut r = load(&req)?;
    if let Some(shard) = files.shard {
        narrow_to_shard(&mut r, shard)?;
    }
    Ok((req, r))
}

/// Keep the targets of `shard` and plan their rollout as a fleet of its own: canary, batch
/// sizes and the failure budget are worked out from the shard's hosts.
pub fn narrow_to_shard(r: &mut Release, shard: Shard) -> Result<(), CommandError> {
    let members: Vec<crate::shard::Member> = r
        .targets
        .iter()
        .map(|h| crate::shard::Member {
            name: &h.name,
            zone: h.zone.as_deref(),
        })
        .collect();
    let (mine, info) = crate::shard::select(&members, shard);
    let of = info.of;
    if mine.is_empty() {
        return Err(CommandError::new(format!(
            "--shard {shard} selects no host: only {of} host{} {} targeted, fewer than {} shards",
            plural(of),
            if of == 1 { "is" } else { "are" },
            shard.count
        ))
        .hint(format!(
            "use at most {of} shard{}, or widen `hosts`/`--limit`",
            plural(of)
        )));
    }
    let canary = r.playbook.rollout.canary;
    if canary > mine.len() {
        return Err(CommandError::new(format!(
            "`rollout.canary` is {canary} but shard {shard} has only {} host{}",
            mine.len(),
            plural(mine.len())
        ))
        .hint("lower `rollout.canary`, or use fewer shards"));
    }
    let keep: std::collections::HashSet<String> = mine.iter().map(|&i| r.targets[i].name.clone()).collect();
    r.narrow(|h| keep.contains(&h.name), true);
    r.budget = crate::planner::resolve_budget(r.playbook.rollout.max_failures, r.targets.len());
    r.shard = Some(info);
    Ok(())
}
