//! The operator's OpenSSH setup against the real fleet: the SSH config resolved by `ssh -G`
//! (`Match` blocks that the built-in parser cannot read), a `ProxyCommand` through `nc`, user
//! certificates signed by a CA made with `ssh-keygen -s`, and `@cert-authority` host
//! certificates. Fleet slots 86–89.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Fleet;

const ARTIFACT: &str = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n";

fn keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn new_key(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    keygen(&["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path.to_str().unwrap()]);
}

/// The fleet's inventory with `from` replaced by `to`, written as `name`.
fn inventory_with(fleet: &Fleet, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(fleet.inventory()).unwrap();
    assert!(text.contains(from), "{from} not in the inventory");
    let path = fleet.dir.join(name);
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

/// `plan --check` (preflight on every host: connect, authenticate, look; nothing changed).
fn check(fleet: &Fleet, inventory: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let pb = fleet.playbook("check.yml", "2.0.0", ARTIFACT);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tranche"));
    cmd.args([
        "plan",
        "--check",
        "-i",
        inventory.to_str().unwrap(),
        pb.to_str().unwrap(),
    ])
    .args(extra)
    .args(["--known-hosts", fleet.known_hosts().to_str().unwrap()])
    .args(["--no-progress", "--connect-timeout", "5s"])
    .env("CI", "true")
    .env_remove("SSH_AUTH_SOCK")
    .current_dir(&fleet.dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn a_release_goes_through_a_proxy_command_of_nc_which_ends_with_the_run() {
    let fleet = Fleet::up(86, 2);
    fleet.install("1.0.0");
    let net = &fleet.net;
    // The ProxyCommand records its pid and arguments, runs `nc`, and then lingers (as a tunnel
    // client may after the connection is over): tranche has to end it.
    let script = fleet.dir.join("proxy.sh");
    let log = fleet.dir.join("proxy.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$$ $1 $2 $3\" >> {}\nnc \"$1\" \"$2\"\nsleep 60\n",
            log.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let cfg = fleet.dir.join("proxy.ssh_config");
    std::fs::write(
        &cfg,
        format!("Host {net}.*\n  ProxyCommand {} %h %p %r\n", script.display()),
    )
    .unwrap();
    let pb = fleet.playbook("pb.yml", "2.0.0", ARTIFACT);
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "--ssh-config",
        cfg.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
    // Every connection went through the command, its tokens expanded, and no command outlives
    // the run.
    let lines = std::fs::read_to_string(&log).unwrap();
    for i in 1..=2 {
        assert!(
            lines.lines().any(|l| l.ends_with(&format!(" {net}.{i} 22 root"))),
            "h{i} was not reached through the ProxyCommand:\n{lines}"
        );
    }
    let pids: Vec<u32> = lines
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let still: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(still.is_empty(), "ProxyCommands still running after the run: {still:?}");
    assert!(!stderr.contains("does not apply"), "{stderr}");

    // A ProxyCommand that fails: the error names the command and what it said.
    std::fs::write(
        &cfg,
        format!("Host {net}.*\n  ProxyCommand sh -c 'echo tunnel to %h refused >&2; exit 3'\n"),
    )
    .unwrap();
    let (code, stderr) = check(
        &fleet,
        &fleet.inventory(),
        &["--ssh-config", cfg.to_str().unwrap()],
        &[],
    );
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "through the ProxyCommand `sh -c 'echo tunnel to {net}.1 refused >&2; exit 3'`"
        )) && stderr.contains("the command exited with status 3")
            && stderr.contains(&format!("its stderr: tunnel to {net}.1 refused")),
        "{stderr}"
    );
}

#[test]
fn ssh_g_resolves_match_blocks_that_the_built_in_parser_cannot() {
    let fleet = Fleet::up(87, 2);
    let net = &fleet.net;
    // The hosts by name only: their addresses come from `Match` blocks of the SSH config.
    let inv = inventory_with(&fleet, "by_name.yml", &format!("ansible_host: {net}.1, "), "");
    let text = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(&inv, text.replace(&format!("ansible_host: {net}.2, "), "")).unwrap();
    let cfg = fleet.dir.join("match.ssh_config");
    std::fs::write(
        &cfg,
        format!("Match originalhost h01\n  HostName {net}.1\n\nMatch originalhost h02 user root\n  HostName {net}.2\n"),
    )
    .unwrap();
    let args = ["--ssh-config", cfg.to_str().unwrap()];
    let (code, stderr) = check(&fleet, &inv, &args, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("SSH config: `ssh -G` (OpenSSH_") && stderr.contains(cfg.to_str().unwrap()),
        "the resolver is named:\n{stderr}"
    );
    assert!(!stderr.contains("does not apply"), "{stderr}");

    // Without ssh -G: the built-in parser, which names `Match` as not applied, and the hosts'
    // names do not resolve.
    let (code, stderr) = check(&fleet, &inv, &args, &[("TRANCHE_SSH_G", "0")]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("SSH config: the built-in parser") && stderr.contains("does not apply: Match"),
        "{stderr}"
    );
}

#[test]
fn a_user_certificate_signed_by_a_ca_logs_in_and_its_absence_is_named() {
    let fleet = Fleet::up(88, 1);
    let dir = &fleet.dir;
    let (ca, user) = (dir.join("user_ca"), dir.join("cert_user_key"));
    new_key(&ca);
    new_key(&user);
    keygen(&[
        "-q",
        "-s",
        ca.to_str().unwrap(),
        "-I",
        "tranche-test",
        "-n",
        "root",
        "-V",
        "-5m:+1h",
        user.with_extension("pub").to_str().unwrap(),
    ]);
    let cert = dir.join("cert_user_key-cert.pub");
    assert!(cert.exists());
    // The host trusts the CA; the user key itself is in no authorized_keys.
    fleet.add_sshd_config(
        1,
        &format!("TrustedUserCAKeys {}\n", ca.with_extension("pub").display()),
    );
    let inv = inventory_with(
        &fleet,
        "cert.yml",
        &format!("ansible_ssh_private_key_file: {}", dir.join("id_ed25519").display()),
        &format!("ansible_ssh_private_key_file: {}", user.display()),
    );

    // The certificate beside the key (KEY-cert.pub), as OpenSSH finds it.
    let (code, stderr) = check(&fleet, &inv, &[], &[]);
    assert_eq!(code, Some(0), "{stderr}");

    // Moved away: authentication fails, naming the key tried and pointing at certificates.
    let elsewhere = dir.join("certs/user-cert.pub");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    std::fs::rename(&cert, &elsewhere).unwrap();
    let (code, stderr) = check(&fleet, &inv, &[], &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("authentication as root@h01 failed (tried: {}", user.display()))
            && stderr.contains("TrustedUserCAKeys")
            && stderr.contains("CertificateFile"),
        "{stderr}"
    );

    // Named by CertificateFile in the SSH config (with a token): it logs in again.
    let cfg = dir.join("cert.ssh_config");
    std::fs::write(
        &cfg,
        format!("Host *\n  CertificateFile {}/certs/%r-cert.pub\n", dir.display()),
    )
    .unwrap();
    std::fs::rename(&elsewhere, dir.join("certs/root-cert.pub")).unwrap();
    let (code, stderr) = check(&fleet, &inv, &["--ssh-config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    // Also through the built-in parser.
    let (code, stderr) = check(
        &fleet,
        &inv,
        &["--ssh-config", cfg.to_str().unwrap()],
        &[("TRANCHE_SSH_G", "0")],
    );
    assert_eq!(code, Some(0), "{stderr}");

    // Held by ssh-agent (ssh-add loads the key and the certificate beside it), and no key file
    // at all: the agent's certificate logs in.
    std::fs::rename(dir.join("certs/root-cert.pub"), &cert).unwrap();
    let sock = dir.join("agent.sock");
    let out = Command::new("ssh-agent")
        .arg("-s")
        .arg("-a")
        .arg(&sock)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pid = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("ssh-agent said: {text}"))
        .to_string();
    let _agent = Agent(pid);
    let add = Command::new("ssh-add")
        .arg(&user)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&add.stderr);
    assert!(add.status.success() && said.contains("Certificate added"), "{said}");
    std::fs::remove_file(&cert).unwrap();
    let no_file = inventory_with(
        &fleet,
        "agent.yml",
        &format!("ansible_ssh_private_key_file: {}", dir.join("id_ed25519").display()),
        &format!("ansible_ssh_private_key_file: {}", dir.join("no_such_key").display()),
    );
    let (code, stderr) = check(&fleet, &no_file, &[], &[("SSH_AUTH_SOCK", sock.to_str().unwrap())]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// An ssh-agent started by a test, stopped (by its pid) when dropped.
struct Agent(String);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.0).status();
    }
}

#[test]
fn host_certificates_are_verified_against_cert_authority_lines() {
    let fleet = Fleet::up(89, 2);
    let dir = &fleet.dir;
    let net = &fleet.net;
    let ca = dir.join("host_ca");
    new_key(&ca);
    let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    // h01 gets a certificate for its address; h02 none.
    let sign = |principal: &str| {
        let key = dir.join("hosts/h1/ssh_host_ed25519_key.pub");
        let _ = std::fs::remove_file(dir.join("hosts/h1/ssh_host_ed25519_key-cert.pub"));
        keygen(&[
            "-q",
            "-s",
            ca.to_str().unwrap(),
            "-I",
            "h01",
            "-h",
            "-n",
            principal,
            "-V",
            "-5m:+1h",
            key.to_str().unwrap(),
        ]);
    };
    sign(&format!("{net}.1"));
    fleet.add_sshd_config(
        1,
        &format!(
            "HostCertificate {}\n",
            dir.join("hosts/h1/ssh_host_ed25519_key-cert.pub").display()
        ),
    );
    // Only the authority is known: no plain key of either host.
    let kh = dir.join("ca_known_hosts");
    std::fs::write(&kh, format!("@cert-authority {net}.* {ca_pub}")).unwrap();
    let run = |hosts: &str| {
        let pb = fleet.playbook_with("ca.yml", "2.0.0", hosts, ARTIFACT, "");
        let out = Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args([
                "plan",
                "--check",
                "-i",
                fleet.inventory().to_str().unwrap(),
                pb.to_str().unwrap(),
            ])
            .args([
                "--known-hosts",
                kh.to_str().unwrap(),
                "--no-progress",
                "--connect-timeout",
                "5s",
            ])
            .env("CI", "true")
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(&fleet.dir)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = run("h01");
    assert_eq!(code, Some(0), "h01's certificate is trusted:\n{stderr}");
    assert!(!stderr.contains("recorded a new"), "{stderr}");

    // h02 offers a plain key: refused, saying so and how to fix it.
    let (code, stderr) = run("h02");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "host key verification for h02: {} line 1 trusts a certificate authority for it, but it offered a plain ssh-ed25519 key",
            kh.display()
        )) && stderr.contains("HostCertificate"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        format!("@cert-authority {net}.* {ca_pub}")
    );

    // A certificate for another name: refused, naming the principals.
    sign("someone-else.example.com");
    fleet.add_sshd_config(1, "");
    let (code, stderr) = run("h01");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "its host certificate is signed by a trusted authority, but it names the principals someone-else.example.com, not {net}.1"
        )),
        "{stderr}"
    );
}

/// The SSH config's `ConnectTimeout` bounds the wait for a host that takes the TCP connection
/// and never speaks (read by `ssh -G` and by the built-in parser alike); `--connect-timeout`
/// wins over it. No fleet: a listener that never accepts is such a host.
#[test]
fn the_ssh_configs_connect_timeout_bounds_a_silent_host() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("app.tar.gz"), b"x").unwrap();
    std::fs::write(
        d.join("inventory.yml"),
        format!("all:\n  hosts:\n    h1: {{ ansible_host: 127.0.0.1, ansible_port: {port} }}\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("playbook.yml"),
        "service: demo\nversion: \"2.0.0\"\nartifact:\n  path: app.tar.gz\n",
    )
    .unwrap();
    std::fs::write(d.join("ssh_config"), "Host *\n  ConnectTimeout 1\n").unwrap();
    let run = |extra: &[&str], ssh_g: &str| {
        let t = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args([
                "plan",
                "--check",
                "-i",
                "inventory.yml",
                "playbook.yml",
                "--no-progress",
            ])
            .args(["--ssh-config", "ssh_config"])
            .args(extra)
            .env("CI", "true")
            .env("HOME", d)
            .env("TRANCHE_SSH_G", ssh_g)
            .env_remove("TRANCHE_CONNECT_TIMEOUT")
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(d)
            .output()
            .unwrap();
        (t.elapsed(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for ssh_g in ["1", "0"] {
        let (took, err) = run(&[], ssh_g);
        assert!(err.contains("no answer within 1.0s"), "TRANCHE_SSH_G={ssh_g}: {err}");
        assert!(!err.contains("ConnectTimeout"), "named as not applied: {err}");
        assert!(took < std::time::Duration::from_secs(6), "took {took:?}: {err}");
    }
    let (took, err) = run(&["--connect-timeout", "2s"], "1");
    assert!(err.contains("no answer within 2.0s"), "{err}");
    assert!(took >= std::time::Duration::from_secs(2), "took {took:?}");
}
