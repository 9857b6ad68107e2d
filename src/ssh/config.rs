//! The OpenSSH client config (`~/.ssh/config` or `--ssh-config`), parsed by ssh2-config and
//! applied under the inventory's own variables, as OpenSSH would: Host patterns, HostName, User,
//! Port, IdentityFile, ProxyJump, and for host keys UserKnownHostsFile, GlobalKnownHostsFile,
//! StrictHostKeyChecking, HostKeyAlias and HashKnownHosts. `Match` blocks are not supported; the
//! directives a config sets that tranche does not apply are named in a warning ([`warnings`]).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use super::host_keys::{self, HostKeyPolicy, Learning};
use super::{Endpoint, SshSettings};

/// Directives tranche applies (lowercase, as ssh2-config keys them).
const APPLIED: &[&str] = &[
    "host",
    "include",
    "hostname",
    "user",
    "port",
    "identityfile",
    "proxyjump",
    "userknownhostsfile",
    "globalknownhostsfile",
    "stricthostkeychecking",
    "hostkeyalias",
    "hashknownhosts",
];

/// Directives tranche does not apply and need no warning: without them tranche still reaches
/// the same host, trusts the same keys and logs in as the same user (it never prompts for a host
/// key, never forwards anything, keeps its connections alive itself).
const HARMLESS: &[&str] = &[
    "batchmode",
    "loglevel",
    "logverbose",
    "syslogfacility",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "serveraliveinterval",
    "serveralivecountmax",
    "tcpkeepalive",
    "escapechar",
    "visualhostkey",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "addkeystoagent",
    "usekeychain",
    "compression",
    "requesttty",
    "ignoreunknown",
];

/// OpenSSH's spelling of the directives ssh2-config knows (it keys them lowercase).
const SPELLING: &[&str] = &[
    "AddressFamily",
    "BindAddress",
    "BindInterface",
    "CASignatureAlgorithms",
    "CanonicalDomains",
    "CanonicalizeFallbackLocal",
    "CanonicalizeHostname",
    "CanonicalizeMaxDots",
    "CanonicalizePermittedCNAMEs",
    "CertificateFile",
    "CheckHostIP",
    "Ciphers",
    "ClearAllForwardings",
    "ConnectTimeout",
    "ConnectionAttempts",
    "DynamicForward",
    "EnableSSHKeysign",
    "ExitOnForwardFailure",
    "FingerprintHash",
    "ForkAfterAuthentication",
    "GatewayPorts",
    "GSSAPIAuthentication",
    "GSSAPIDelegateCredentials",
    "HostKeyAlgorithms",
    "HostbasedAcceptedAlgorithms",
    "HostbasedAuthentication",
    "HostbasedKeyTypes",
    "IdentitiesOnly",
    "IdentityAgent",
    "IPQoS",
    "KbdInteractiveAuthentication",
    "KbdInteractiveDevices",
    "KexAlgorithms",
    "KnownHostsCommand",
    "LocalCommand",
    "LocalForward",
    "MACs",
    "NoHostAuthenticationForLocalhost",
    "NumberOfPasswordPrompts",
    "PasswordAuthentication",
    "PermitLocalCommand",
    "PermitRemoteOpen",
    "PKCS11Provider",
    "PreferredAuthentications",
    "ProxyCommand",
    "ProxyUseFdpass",
    "PubkeyAcceptedAlgorithms",
    "PubkeyAcceptedKeyTypes",
    "PubkeyAuthentication",
    "RekeyLimit",
    "RemoteForward",
    "RevokedHostKeys",
    "SecurityKeyProvider",
    "SendEnv",
    "SessionType",
    "SetEnv",
    "StdinNull",
    "StreamLocalBindMask",
    "UpdateHostKeys",
    "VerifyHostKeyDNS",
    "XAuthLocation",
];

fn spelled(lower: &str) -> String {
    SPELLING
        .iter()
        .find(|s| s.eq_ignore_ascii_case(lower))
        .map(|s| s.to_string())
        .unwrap_or_else(|| lower.to_string())
}

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

/// The endpoint of `spec`: the inventory's settings, then the SSH config's for the name SSH
/// would be given (the address when the inventory sets one, else the host's name), then the
/// command line's defaults.
pub fn resolve(spec: &HostSpec, settings: &SshSettings) -> Endpoint {
    let typed = spec.address.clone().unwrap_or_else(|| spec.name.clone());
    let params = settings.config.as_ref().map(|c| c.query(&typed));
    let mut ep = endpoint(spec, settings, &typed, params.as_ref());
    ep.host_keys = host_key_policy(&ep, &typed, params.as_ref(), settings);
    if let (Some(config), Some(params)) = (&settings.config, &params) {
        ep.ignored_directives = ignored_directives(config, params);
    }
    ep
}

fn endpoint(
    spec: &HostSpec,
    settings: &SshSettings,
    typed: &str,
    params: Option<&ssh2_config::HostParams>,
) -> Endpoint {
    let typed = typed.to_string();
    let from_config = |f: fn(&ssh2_config::HostParams) -> Option<String>| params.and_then(f);
    let mut identities: Vec<PathBuf> = spec.identity.iter().cloned().collect();
    if let Some(files) = params.and_then(|p| p.identity_file.clone()) {
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
        port: spec.port.or_else(|| params.and_then(|p| p.port)).unwrap_or(22),
        user: spec
            .user
            .clone()
            .or_else(|| from_config(|p| p.user.clone()))
            .unwrap_or_else(|| settings.default_user.clone()),
        identities,
        jump: spec
            .jump
            .clone()
            .or_else(|| params.and_then(|p| p.proxy_jump.as_ref()).map(|j| j.join(","))),
        host_keys: HostKeyPolicy {
            name: String::new(),
            user_files: Vec::new(),
            global_files: Vec::new(),
            learning: Learning::Refused,
            hash_names: false,
        },
        ignored_directives: Vec::new(),
    }
}

/// The arguments of a directive ssh2-config keeps unparsed (first match wins, as in OpenSSH),
/// without their quotes.
fn directive(params: Option<&ssh2_config::HostParams>, name: &str) -> Option<Vec<String>> {
    let args = params?.unsupported_fields.get(name)?;
    Some(args.iter().map(|a| a.trim_matches('"').to_string()).collect())
}

/// How `ep`'s host key is checked: the name (HostKeyAlias or the address), the files
/// (`--known-hosts`, else UserKnownHostsFile, else OpenSSH's defaults; GlobalKnownHostsFile),
/// and whether a new key is recorded (StrictHostKeyChecking, else `--accept-new-host-keys`).
fn host_key_policy(
    ep: &Endpoint,
    typed: &str,
    params: Option<&ssh2_config::HostParams>,
    settings: &SshSettings,
) -> HostKeyPolicy {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let alias = directive(params, "hostkeyalias").and_then(|a| a.into_iter().next());
    let name = host_keys::lookup_name(alias.as_deref(), &ep.address, ep.port);
    let tokens = Tokens {
        home: &home,
        address: &ep.address,
        typed,
        port: ep.port,
        user: &ep.user,
        alias: alias.as_deref().unwrap_or(&ep.address),
    };
    let files = |directive_name: &str, defaults: &[&str]| -> Vec<PathBuf> {
        match directive(params, directive_name) {
            Some(list) => list
                .iter()
                .filter(|f| !f.eq_ignore_ascii_case("none") && f.as_str() != "/dev/null")
                .map(|f| PathBuf::from(tokens.expand(f)))
                .collect(),
            None => defaults.iter().map(|f| PathBuf::from(tokens.expand(f))).collect(),
        }
    };
    let user_files = match &settings.known_hosts {
        Some(file) => vec![file.clone()],
        None => files("userknownhostsfile", &["~/.ssh/known_hosts", "~/.ssh/known_hosts2"]),
    };
    let global_files = files(
        "globalknownhostsfile",
        &["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"],
    );
    let strict = directive(params, "stricthostkeychecking")
        .and_then(|a| a.into_iter().next())
        .map(|v| v.to_ascii_lowercase());
    let learning = match strict.as_deref() {
        None if settings.accept_new_host_keys => Learning::Allowed("--accept-new-host-keys".into()),
        None => Learning::Refused,
        Some("accept-new") => Learning::Allowed("StrictHostKeyChecking accept-new".into()),
        Some(v @ ("no" | "off" | "false")) => Learning::Allowed(format!("StrictHostKeyChecking {v}")),
        // `yes`, `ask` (nobody is asked in a run) and anything unknown: the strictest reading.
        Some(v) => Learning::ForbiddenByConfig(v.to_string()),
    };
    let hash_names = directive(params, "hashknownhosts")
        .and_then(|a| a.into_iter().next())
        .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    HostKeyPolicy {
        name,
        user_files,
        global_files,
        learning,
        hash_names,
    }
}

/// The values OpenSSH's `%` tokens and `~` stand for in a known_hosts path.
struct Tokens<'a> {
    home: &'a Path,
    address: &'a str,
    typed: &'a str,
    port: u16,
    user: &'a str,
    alias: &'a str,
}

impl Tokens<'_> {
    /// `~` and `~/` at the start; `%d %u %h %n %p %r %k %%`. Other tokens are left as written.
    fn expand(&self, path: &str) -> String {
        let path = match path.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{}{rest}", self.home.display()),
            _ => path.to_string(),
        };
        let mut out = String::new();
        let mut chars = path.chars();
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

/// The directives the config sets for a host that tranche does not apply (sorted), `Match`
/// whenever the config has one (ssh2-config does not read its blocks: their lines count for the
/// block above them).
fn ignored_directives(config: &SshConfig, params: &ssh2_config::HostParams) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for key in params.unsupported_fields.keys() {
        let lower = key.to_ascii_lowercase();
        if !APPLIED.contains(&lower.as_str()) && !HARMLESS.contains(&lower.as_str()) {
            names.insert(spelled(&lower));
        }
    }
    for key in params.ignored_fields.keys() {
        let lower = key.to_ascii_lowercase();
        if !HARMLESS.contains(&lower.as_str()) && lower != "match" {
            names.insert(key.clone());
        }
    }
    let set = |on: bool, name: &str, names: &mut std::collections::BTreeSet<String>| {
        if on {
            names.insert(name.to_string());
        }
    };
    set(params.bind_address.is_some(), "BindAddress", &mut names);
    set(params.bind_interface.is_some(), "BindInterface", &mut names);
    set(params.certificate_file.is_some(), "CertificateFile", &mut names);
    set(params.connect_timeout.is_some(), "ConnectTimeout", &mut names);
    set(params.connection_attempts.is_some(), "ConnectionAttempts", &mut names);
    set(
        params.pubkey_authentication.is_some(),
        "PubkeyAuthentication",
        &mut names,
    );
    set(!params.remote_forward.is_empty(), "RemoteForward", &mut names);
    set(!params.ciphers.is_default(), "Ciphers", &mut names);
    set(!params.kex_algorithms.is_default(), "KexAlgorithms", &mut names);
    set(!params.mac.is_default(), "MACs", &mut names);
    set(
        !params.host_key_algorithms.is_default(),
        "HostKeyAlgorithms",
        &mut names,
    );
    set(
        !params.pubkey_accepted_algorithms.is_default(),
        "PubkeyAcceptedAlgorithms",
        &mut names,
    );
    set(
        !params.ca_signature_algorithms.is_default(),
        "CASignatureAlgorithms",
        &mut names,
    );
    // A `Match` of the file itself stands as a block for no host; one of an included file
    // is only seen as an unknown directive.
    let has_match = config.get_hosts().iter().any(|h| {
        h.pattern.iter().any(|c| c.pattern == MATCH_BLOCK)
            || h.params.ignored_fields.keys().any(|k| k.eq_ignore_ascii_case("match"))
    });
    set(has_match, "Match", &mut names);
    names.into_iter().collect()
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
