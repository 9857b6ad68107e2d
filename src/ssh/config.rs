//! The OpenSSH client config (`~/.ssh/config` or `--ssh-config`) applied under the inventory's
//! own variables: HostName, User, Port, IdentityFile, CertificateFile, ProxyJump, ProxyCommand,
//! and for host keys UserKnownHostsFile, GlobalKnownHostsFile, StrictHostKeyChecking,
//! HostKeyAlias and HashKnownHosts. Resolved by the OpenSSH client itself (`ssh -G`, see
//! [`openssh`]) where one is installed, so `Match`, `Include` and tokens mean what they mean to
//! OpenSSH; by ssh2-config otherwise (no `Match`). The directives a config sets that tranche does
//! not apply are named in a warning ([`warnings`]).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use super::host_keys::{self, HostKeyPolicy, Learning};
use super::{Endpoint, SshSettings};

mod ignored;
pub mod openssh;

pub use openssh::{OpenSsh, Query};

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
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the SSH config {}: {e}", path.display())),
    };
    parse(&text)
        .map(Some)
        .map_err(|e| format!("cannot parse the SSH config {}: {e}", path.display()))
}

/// The `Host` that stands for a `Match` line: it matches no host, so the block's directives
/// apply to none (ssh2-config does not read `Match`, and would otherwise add the block's
/// directives to the block above it).
const MATCH_BLOCK: &str = "tranche-ignores-this-match-block.invalid";

fn parse(text: &str) -> Result<SshConfig, ssh2_config::SshParserError> {
    let text: String = text
        .lines()
        .map(|line| {
            let keyword = line.trim_start().split([' ', '\t', '=']).next().unwrap_or("");
            if keyword.eq_ignore_ascii_case("match") {
                format!("Host {MATCH_BLOCK}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    SshConfig::default().parse(
        &mut BufReader::new(text.as_bytes()),
        ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
    )
}

/// What an SSH config says about one host, from `ssh -G` or the built-in parser: the values
/// as written (tokens not yet expanded); `None` or empty where the config says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directives {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub certificate_files: Vec<String>,
    /// `ProxyCommand`, unless `none`.
    pub proxy_command: Option<String>,
    pub proxy_jump: Option<String>,
    pub user_known_hosts: Option<Vec<String>>,
    pub global_known_hosts: Option<Vec<String>>,
    pub strict_host_key_checking: Option<String>,
    pub host_key_alias: Option<String>,
    pub hash_known_hosts: Option<bool>,
    /// `ConnectTimeout`, unless `none`.
    pub connect_timeout: Option<std::time::Duration>,
}

impl Directives {
    /// What ssh2-config read for a host.
    fn of(params: &ssh2_config::HostParams) -> Directives {
        let first = |name: &str| directive(params, name).and_then(|a| a.into_iter().next());
        let proxy_command = params
            .unsupported_fields
            .get("proxycommand")
            .map(|args| args.join(" "))
            .filter(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("none"));
        Directives {
            hostname: params.host_name.clone(),
            user: params.user.clone(),
            port: params.port,
            identity_files: params
                .identity_file
                .iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect(),
            certificate_files: params
                .certificate_file
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            proxy_command,
            proxy_jump: params.proxy_jump.as_ref().map(|j| j.join(",")),
            user_known_hosts: directive(params, "userknownhostsfile"),
            global_known_hosts: directive(params, "globalknownhostsfile"),
            strict_host_key_checking: first("stricthostkeychecking"),
            host_key_alias: first("hostkeyalias"),
            hash_known_hosts: first("hashknownhosts").map(|v| v.eq_ignore_ascii_case("yes")),
            connect_timeout: params.connect_timeout.filter(|t| !t.is_zero()),
        }
    }
}

/// The endpoint of `spec`: the inventory's settings, then the SSH config's for the name SSH
/// would be given (the address when the inventory sets one, else the host's name), then the
/// command line's defaults. The config is asked through `ssh -G` when the run has an OpenSSH
/// client ([`SshSettings::openssh`]), through the built-in parser otherwise (and when `ssh -G`
/// fails for this host: the endpoint then says why, for a warning).
pub fn resolve(spec: &HostSpec, settings: &SshSettings) -> Endpoint {
    let typed = spec.address.clone().unwrap_or_else(|| spec.name.clone());
    let params = settings.config.as_ref().map(|c| c.query(&typed));
    let builtin = || params.as_ref().map(Directives::of).unwrap_or_default();
    let (directives, failed) = match &settings.openssh {
        Some(openssh) => match openssh.query(&Query::of(spec)) {
            Ok(d) => (d, None),
            Err(e) => (builtin(), Some(e)),
        },
        None => (builtin(), None),
    };
    let mut ep = endpoint(spec, settings, &typed, &directives);
    if let (Some(config), Some(params)) = (&settings.config, &params) {
        let by_openssh = settings.openssh.is_some() && failed.is_none();
        ep.ignored_directives = ignored::ignored_directives(config, params, by_openssh);
    }
    ep.ssh_g_failed = failed;
    ep
}

/// How this run reads the SSH config, for the operator: "`ssh -G` (OpenSSH_9.2p1) on
/// ~/.ssh/config", the built-in parser, or no config.
pub fn describe(settings: &SshSettings) -> String {
    match (&settings.openssh, &settings.config) {
        (Some(openssh), _) => openssh.describe(),
        (None, Some(_)) => "the built-in parser (no OpenSSH client, or TRANCHE_SSH_G=0)".to_string(),
        (None, None) => "no SSH config file".to_string(),
    }
}

/// Ask `ssh -G` about every host of `specs` at once, a few at a time, so that resolving them
/// one by one afterwards finds every answer cached. Nothing to do without an OpenSSH client.
pub fn prefetch<'a>(settings: &SshSettings, specs: impl IntoIterator<Item = &'a HostSpec>) {
    if let Some(openssh) = &settings.openssh {
        openssh.prefetch(specs.into_iter().map(Query::of).collect());
    }
}

fn endpoint(spec: &HostSpec, settings: &SshSettings, typed: &str, d: &Directives) -> Endpoint {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let address = spec
        .address
        .clone()
        .or_else(|| d.hostname.clone())
        .unwrap_or_else(|| typed.to_string());
    let port = spec.port.or(d.port).unwrap_or(22);
    let user = spec
        .user
        .clone()
        .or_else(|| d.user.clone())
        .unwrap_or_else(|| settings.default_user.clone());
    let tokens = Tokens {
        home: &home,
        address: &address,
        typed,
        port,
        user: &user,
        alias: d.host_key_alias.as_deref().unwrap_or(&address),
    };
    let mut identities: Vec<PathBuf> = spec.identity.iter().cloned().collect();
    for f in &d.identity_files {
        let f = PathBuf::from(tokens.path(f));
        if !identities.contains(&f) {
            identities.push(f);
        }
    }
    let jump = spec.jump.clone().or_else(|| d.proxy_jump.clone());
    // ProxyJump and ProxyCommand exclude each other; a bastion the inventory names wins.
    let proxy_command = match jump {
        Some(_) => None,
        None => d.proxy_command.as_deref().map(|c| tokens.expand(c)),
    };
    let certificates = d
        .certificate_files
        .iter()
        .map(|f| PathBuf::from(tokens.path(f)))
        .collect();
    let host_keys = host_key_policy(&tokens, d, settings);
    Endpoint {
        name: spec.name.clone(),
        address,
        port,
        user,
        identities,
        jump,
        proxy_command,
        certificates,
        host_keys,
        connect_timeout: d.connect_timeout,
        ignored_directives: Vec::new(),
        ssh_g_failed: None,
    }
}

/// The arguments of a directive ssh2-config keeps unparsed (first match wins, as in OpenSSH),
/// without their quotes.
fn directive(params: &ssh2_config::HostParams, name: &str) -> Option<Vec<String>> {
    let args = params.unsupported_fields.get(name)?;
    Some(args.iter().map(|a| a.trim_matches('"').to_string()).collect())
}

/// How a host's key is checked: the name (HostKeyAlias or the address), the files
/// (`--known-hosts`, else UserKnownHostsFile, else OpenSSH's defaults; GlobalKnownHostsFile),
/// and whether a new key is recorded (StrictHostKeyChecking, else `--accept-new-host-keys`).
fn host_key_policy(tokens: &Tokens, d: &Directives, settings: &SshSettings) -> HostKeyPolicy {
    let name = host_keys::lookup_name(d.host_key_alias.as_deref(), tokens.address, tokens.port);
    let files = |given: &Option<Vec<String>>, defaults: &[&str]| -> Vec<PathBuf> {
        match given {
            Some(list) => list
                .iter()
                .filter(|f| !f.eq_ignore_ascii_case("none") && f.as_str() != "/dev/null")
                .map(|f| PathBuf::from(tokens.path(f)))
                .collect(),
            None => defaults.iter().map(|f| PathBuf::from(tokens.path(f))).collect(),
        }
    };
    let user_files = match &settings.known_hosts {
        Some(file) => vec![file.clone()],
        None => files(&d.user_known_hosts, &["~/.ssh/known_hosts", "~/.ssh/known_hosts2"]),
    };
    let global_files = files(
        &d.global_known_hosts,
        &["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"],
    );
    let strict = d.strict_host_key_checking.as_ref().map(|v| v.to_ascii_lowercase());
    let learning = match strict.as_deref() {
        None if settings.accept_new_host_keys => Learning::Allowed("--accept-new-host-keys".into()),
        None => Learning::Refused,
        Some("accept-new") => Learning::Allowed("StrictHostKeyChecking accept-new".into()),
        Some(v @ ("no" | "off" | "false")) => Learning::Allowed(format!("StrictHostKeyChecking {v}")),
        // `yes`, `ask` (nobody is asked in a run) and anything unknown: the strictest reading.
        Some(v) => Learning::ForbiddenByConfig(v.to_string()),
    };
    HostKeyPolicy {
        name,
        user_files,
        global_files,
        learning,
        hash_names: d.hash_known_hosts.unwrap_or(false),
    }
}

/// The values OpenSSH's `%` tokens and `~` stand for in a path or a ProxyCommand.
struct Tokens<'a> {
    home: &'a Path,
    address: &'a str,
    typed: &'a str,
    port: u16,
    user: &'a str,
    alias: &'a str,
}

impl Tokens<'_> {
    /// A path: `~` and `~/` at the start, then the tokens.
    fn path(&self, path: &str) -> String {
        match path.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                self.expand(&format!("{}{rest}", self.home.display()))
            }
            _ => self.expand(path),
        }
    }

    /// `%d %u %h %n %p %r %k %%`. Other tokens are left as written.
    fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(&self.home.display().to_string()),
                Some('u') => out.push_str(&crate::operator::current_user()),
                Some('h') => out.push_str(self.address),
                Some('n') => out.push_str(self.typed),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(self.user),
                Some('k') => out.push_str(self.alias),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

/// The warnings of a run about its hosts' SSH config, once each: the directives tranche does
/// not apply, and `StrictHostKeyChecking no`, which tranche takes as `accept-new`.
pub fn warnings(endpoints: &[Endpoint]) -> Vec<String> {
    let mut out = Vec::new();
    let ignored: std::collections::BTreeSet<&String> = endpoints.iter().flat_map(|e| &e.ignored_directives).collect();
    if !ignored.is_empty() {
        let names: Vec<&str> = ignored.iter().map(|s| s.as_str()).collect();
        out.push(format!(
            "the SSH config sets directives that tranche does not apply: {}",
            names.join(", ")
        ));
    }
    let mut loose: Vec<(&str, &str)> = Vec::new();
    for e in endpoints {
        if let Learning::Allowed(by) = &e.host_keys.learning {
            if let Some(v) = by.strip_prefix("StrictHostKeyChecking ").filter(|v| *v != "accept-new") {
                loose.push((v, &e.name));
            }
        }
    }
    let failed: Vec<(&str, &str)> = endpoints
        .iter()
        .filter_map(|e| Some((e.name.as_str(), e.ssh_g_failed.as_deref()?)))
        .collect();
    if let Some((_, why)) = failed.first() {
        let hosts: Vec<&str> = failed.iter().map(|(h, _)| *h).collect();
        out.push(format!(
            "`ssh -G` failed for {} ({why}): the built-in parser of the SSH config was used for them",
            hosts.join(", ")
        ));
    }
    if let Some((value, _)) = loose.first() {
        let hosts: Vec<&str> = loose.iter().map(|(_, h)| *h).collect();
        out.push(format!(
            "the SSH config says `StrictHostKeyChecking {value}` for {}: tranche takes it as `accept-new` (it records the keys of new hosts and never accepts a changed one)",
            hosts.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests;
