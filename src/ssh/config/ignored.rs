//! The directives of an SSH config that tranche does not apply, named in a warning.

use ssh2_config::SshConfig;

use super::MATCH_BLOCK;

/// Directives tranche applies (lowercase, as ssh2-config keys them).
const APPLIED: &[&str] = &[
    "host",
    "include",
    "hostname",
    "user",
    "port",
    "identityfile",
    "proxyjump",
    "proxycommand",
    "certificatefile",
    "userknownhostsfile",
    "globalknownhostsfile",
    "stricthostkeychecking",
    "hostkeyalias",
    "hashknownhosts",
    "connecttimeout",
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

/// The directives the config sets for a host that tranche does not apply (sorted), `Match`
/// whenever the config has one (ssh2-config does not read its blocks: their lines count for the
/// block above them).
/// With `ssh -G` (`by_openssh`), `Match` is applied.
pub(super) fn ignored_directives(
    config: &SshConfig,
    params: &ssh2_config::HostParams,
    by_openssh: bool,
) -> Vec<String> {
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
    set(has_match && !by_openssh, "Match", &mut names);
    names.into_iter().collect()
}
