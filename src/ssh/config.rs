//! The OpenSSH client config (`~/.ssh/config` or `--ssh-config`), parsed by ssh2-config and
//! applied under the inventory's own variables, as OpenSSH would: Host patterns, HostName, User,
//! Port, IdentityFile, ProxyJump. `Match` blocks and `%h`-style tokens are not supported.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use super::{Endpoint, SshSettings};

/// What the inventory says about how to reach a host; `None` leaves a setting to the SSH config.
#[derive(Debug, Clone, Default)]
pub struct HostSpec {
    pub name: String,
    /// `address`/`ansible_host` when the inventory sets it.
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity: Option<PathBuf>,
    pub jump: Option<String>,
}

/// Read an OpenSSH client config. A missing default file is no config; a missing file named
/// on the command line is an error.
pub fn load(path: &Path, explicit: bool) -> Result<Option<SshConfig>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the SSH config {}: {e}", path.display())),
    };
    SshConfig::default()
        .parse(
            &mut BufReader::new(file),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map(Some)
        .map_err(|e| format!("cannot parse the SSH config {}: {e}", path.display()))
}

/// The endpoint of `spec`: the inventory's settings, then the SSH config's for the name SSH
/// would be given (the address when the inventory sets one, else the host's name), then the
/// command line's defaults.
pub fn resolve(spec: &HostSpec, settings: &SshSettings) -> Endpoint {
    let typed = spec.address.clone().unwrap_or_else(|| spec.name.clone());
    let params = settings.config.as_ref().map(|c| c.query(&typed));
    let from_config = |f: fn(&ssh2_config::HostParams) -> Option<String>| params.as_ref().and_then(f);
    let mut identities: Vec<PathBuf> = spec.identity.iter().cloned().collect();
    if let Some(files) = params.as_ref().and_then(|p| p.identity_file.clone()) {
        for f in files {
            if !identities.contains(&f) {
                identities.push(f);
            }
        }
    }
    Endpoint {
        name: spec.name.clone(),
        address: spec
            .address
            .clone()
            .or_else(|| from_config(|p| p.host_name.clone()))
            .unwrap_or(typed),
        port: spec.port.or_else(|| params.as_ref().and_then(|p| p.port)).unwrap_or(22),
        user: spec
            .user
            .clone()
            .or_else(|| from_config(|p| p.user.clone()))
            .unwrap_or_else(|| settings.default_user.clone()),
        identities,
        jump: spec
            .jump
            .clone()
            .or_else(|| params.as_ref().and_then(|p| p.proxy_jump.as_ref()).map(|j| j.join(","))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(config: &str) -> SshSettings {
        let cfg = SshConfig::default()
            .parse(&mut config.as_bytes(), ParseRule::ALLOW_UNKNOWN_FIELDS)
            .unwrap();
        SshSettings {
            known_hosts: PathBuf::from("/dev/null"),
            accept_new_host_keys: false,
            identities: vec![],
            use_agent: false,
            ask_passphrase: false,
            config: Some(std::sync::Arc::new(cfg)),
            bastions: Default::default(),
            max_connecting: 8,
            connect_timeout: Duration::from_secs(1),
            default_user: "me".into(),
        }
    }

    #[test]
    fn config_applies_under_the_inventory() {
        let s = settings("Host web-*\n  HostName 10.0.0.5\n  User deploy\n  Port 2222\n  IdentityFile /keys/web\n\nHost *\n  User fallback\n");
        let ep = resolve(
            &HostSpec {
                name: "web-01".into(),
                ..Default::default()
            },
            &s,
        );
        assert_eq!(
            (ep.address.as_str(), ep.port, ep.user.as_str()),
            ("10.0.0.5", 2222, "deploy")
        );
        assert_eq!(ep.identities, vec![PathBuf::from("/keys/web")]);
        // The inventory wins.
        let spec = HostSpec {
            name: "web-01".into(),
            address: Some("10.9.9.9".into()),
            port: Some(22),
            user: None,
            identity: Some("/keys/mine".into()),
            jump: None,
        };
        let ep = resolve(&spec, &s);
        assert_eq!(
            (ep.address.as_str(), ep.port, ep.user.as_str()),
            ("10.9.9.9", 22, "fallback")
        );
        let ep = resolve(
            &HostSpec {
                user: Some("ops".into()),
                ..spec
            },
            &s,
        );
        assert_eq!(ep.user, "ops");
        assert_eq!(ep.identities[0], PathBuf::from("/keys/mine"));
        // No match: the defaults.
        let ep = resolve(
            &HostSpec {
                name: "db-01".into(),
                ..Default::default()
            },
            &s,
        );
        assert_eq!(
            (ep.address.as_str(), ep.port, ep.user.as_str()),
            ("db-01", 22, "fallback")
        );
    }

    #[test]
    fn proxy_jump_is_kept() {
        let s = settings("Host web-*\n  ProxyJump bastion\n");
        let ep = resolve(
            &HostSpec {
                name: "web-01".into(),
                ..Default::default()
            },
            &s,
        );
        assert_eq!(ep.jump.as_deref(), Some("bastion"));
    }
}
