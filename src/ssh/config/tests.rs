use super::*;
use std::time::Duration;

fn settings(config: &str) -> SshSettings {
    let cfg = parse(config).unwrap();
    SshSettings {
        known_hosts: None,
        accept_new_host_keys: false,
        identities: vec![],
        use_agent: false,
        ask_passphrase: false,
        config: Some(std::sync::Arc::new(cfg)),
        openssh: None,
        bastions: Default::default(),
        max_connecting: 8,
        connect_timeout: Some(Duration::from_secs(1)),
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

fn web01(s: &SshSettings) -> Endpoint {
    resolve(
        &HostSpec {
            name: "web-01".into(),
            ..Default::default()
        },
        s,
    )
}

#[test]
fn host_key_directives_are_applied() {
    let home = std::env::var("HOME").unwrap_or_default();
    let s = settings(
        "Host web-*\n  HostName 10.0.0.5\n  Port 2222\n  HostKeyAlias Front\n  UserKnownHostsFile ~/a \"/b c\" /dev/null /kh/%h-%p-%k\n  GlobalKnownHostsFile none\n  StrictHostKeyChecking accept-new\n  HashKnownHosts yes\n\nHost *\n  UserKnownHostsFile /ignored\n",
    );
    let p = web01(&s).host_keys;
    // The alias is looked up as written (lowercased), without the port.
    assert_eq!(p.name, "front");
    assert_eq!(
        p.user_files,
        vec![
            PathBuf::from(format!("{home}/a")),
            PathBuf::from("/b c"),
            PathBuf::from("/kh/10.0.0.5-2222-Front"),
        ]
    );
    assert!(p.global_files.is_empty());
    assert_eq!(p.learning, Learning::Allowed("StrictHostKeyChecking accept-new".into()));
    assert!(p.hash_names);

    // --known-hosts given explicitly wins over UserKnownHostsFile; the global files stay.
    let s2 = SshSettings {
        known_hosts: Some(PathBuf::from("/flag/kh")),
        ..settings("Host *\n  UserKnownHostsFile /cfg/kh\n  GlobalKnownHostsFile /cfg/global\n")
    };
    let p = web01(&s2).host_keys;
    assert_eq!(p.user_files, vec![PathBuf::from("/flag/kh")]);
    assert_eq!(p.global_files, vec![PathBuf::from("/cfg/global")]);
    assert_eq!(p.name, "web-01");

    // No directive: OpenSSH's defaults; the flag decides learning.
    let mut s3 = settings("Host db\n  User x\n");
    let p = web01(&s3).host_keys;
    assert_eq!(
        p.user_files,
        vec![
            PathBuf::from(format!("{home}/.ssh/known_hosts")),
            PathBuf::from(format!("{home}/.ssh/known_hosts2"))
        ]
    );
    assert_eq!(
        p.global_files,
        vec![
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2")
        ]
    );
    assert_eq!(p.learning, Learning::Refused);
    s3.accept_new_host_keys = true;
    assert_eq!(
        web01(&s3).host_keys.learning,
        Learning::Allowed("--accept-new-host-keys".into())
    );
    assert_eq!(
        resolve(
            &HostSpec {
                name: "web-01".into(),
                port: Some(2200),
                ..Default::default()
            },
            &s3
        )
        .host_keys
        .name,
        "[web-01]:2200"
    );
}

#[test]
fn strict_host_key_checking_wins_over_the_flag() {
    for (value, want) in [
        ("yes", Learning::ForbiddenByConfig("yes".into())),
        ("ask", Learning::ForbiddenByConfig("ask".into())),
        (
            "Accept-New",
            Learning::Allowed("StrictHostKeyChecking accept-new".into()),
        ),
        ("no", Learning::Allowed("StrictHostKeyChecking no".into())),
        ("off", Learning::Allowed("StrictHostKeyChecking off".into())),
        ("maybe", Learning::ForbiddenByConfig("maybe".into())),
    ] {
        for flag in [false, true] {
            let s = SshSettings {
                accept_new_host_keys: flag,
                ..settings(&format!("Host *\n  StrictHostKeyChecking {value}\n"))
            };
            assert_eq!(web01(&s).host_keys.learning, want, "{value} (flag: {flag})");
        }
    }
    // `no` is named in a warning: tranche takes it as accept-new.
    let s = settings("Host web-*\n  StrictHostKeyChecking no\n");
    let w = warnings(&[web01(&s)]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("`StrictHostKeyChecking no` for web-01") && w[0].contains("never accepts a changed one"),
        "{w:?}"
    );
}

#[test]
fn ignored_directives_are_named_once() {
    let s = settings(
        "Host web-*\n  ProxyCommand nc %h %p\n  CertificateFile /c\n  CanonicalizeHostname yes\n  VerifyHostKeyDNS yes\n  UpdateHostKeys yes\n  LogLevel ERROR\n  BatchMode yes\n  IdentitiesOnly yes\n  Ciphers aes128-ctr\n  SomethingNew 1\n  UserKnownHostsFile /kh\n\nMatch host foo\n  User bar\n",
    );
    let eps = [web01(&s), web01(&s)];
    // The Match block's directives apply to no host (not to the block above it).
    assert_eq!(eps[0].user, "me");
    assert_eq!(
        eps[0].ignored_directives,
        [
            "CanonicalizeHostname",
            "Ciphers",
            "IdentitiesOnly",
            "Match",
            "SomethingNew",
            "UpdateHostKeys",
            "VerifyHostKeyDNS"
        ]
    );
    let w = warnings(&eps);
    assert_eq!(
        w,
        ["the SSH config sets directives that tranche does not apply: CanonicalizeHostname, Ciphers, IdentitiesOnly, Match, SomethingNew, UpdateHostKeys, VerifyHostKeyDNS"]
    );
    // A config of applied and harmless directives only: no warning.
    let s = settings("Host web-*\n  User deploy\n  LogLevel ERROR\n  StrictHostKeyChecking yes\n");
    assert!(warnings(&[web01(&s)]).is_empty());
}

#[test]
fn proxy_command_and_certificate_file_are_applied() {
    let s = settings(
        "Host web-*\n  HostName 10.0.0.5\n  User deploy\n  ProxyCommand /usr/bin/nc -w 5 %h %p -- %r %n %%\n  CertificateFile ~/certs/%r-cert.pub\n\nHost db-*\n  ProxyCommand none\n  ProxyJump bastion\n",
    );
    let home = std::env::var("HOME").unwrap_or_default();
    let ep = resolve(
        &HostSpec {
            name: "web-01".into(),
            port: Some(2222),
            ..Default::default()
        },
        &s,
    );
    // %h is the HostName, %n the name as typed, %p the inventory's port.
    assert_eq!(
        ep.proxy_command.as_deref(),
        Some("/usr/bin/nc -w 5 10.0.0.5 2222 -- deploy web-01 %")
    );
    assert_eq!(
        ep.certificates,
        [PathBuf::from(format!("{home}/certs/deploy-cert.pub"))]
    );
    assert!(ep.ignored_directives.is_empty(), "{:?}", ep.ignored_directives);
    // `none` is no command; a bastion excludes a ProxyCommand.
    let db = resolve(
        &HostSpec {
            name: "db-01".into(),
            ..Default::default()
        },
        &s,
    );
    assert_eq!((db.proxy_command, db.jump.as_deref()), (None, Some("bastion")));
    let behind = resolve(
        &HostSpec {
            name: "web-02".into(),
            jump: Some("gw".into()),
            ..Default::default()
        },
        &s,
    );
    assert_eq!((behind.proxy_command, behind.jump.as_deref()), (None, Some("gw")));
}

#[test]
fn connect_timeout_comes_from_the_command_line_else_the_config_else_10s() {
    let mut s = settings("Host web-*\n  ConnectTimeout 3\n");
    s.connect_timeout = None;
    let ep = web01(&s);
    assert!(ep.ignored_directives.is_empty(), "{:?}", ep.ignored_directives);
    assert_eq!(s.connect_timeout_for(&ep), Duration::from_secs(3));
    let db = resolve(
        &HostSpec {
            name: "db-01".into(),
            ..Default::default()
        },
        &s,
    );
    assert_eq!(s.connect_timeout_for(&db), crate::ssh::DEFAULT_CONNECT_TIMEOUT);
    s.connect_timeout = Some(Duration::from_secs(7));
    assert_eq!(s.connect_timeout_for(&ep), Duration::from_secs(7));
}
