//! Host keys against the real local fleet (slots 40-42): with --accept-new-host-keys, a key that
//! a known_hosts line refuses (a pattern line with another key, `@revoked`, another key type,
//! `@cert-authority`) fails preflight, changes nothing and is never learned; a host that no line
//! concerns is learned; the SSH config's UserKnownHostsFile, HostKeyAlias and
//! StrictHostKeyChecking are obeyed.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{events, Fleet};

/// A key no fleet host has, and one of another type (ssh-keygen output).
const OTHER_ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF24ckmbXQpZtcGaMpVYr+EDvkHVbMLviVA0OUx2q+Kf";
const OTHER_ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKCHVs7Z615310GQe6UUoURopEiajtd9QVELA2EdOwxoTHX7SsIneM/BEpHyKJ+P1y1KlQh8Tn6WfcyjZIQTIyM=";

/// tranche in the fleet's folder with an empty HOME (no ~/.ssh/known_hosts, no ~/.ssh/config),
/// no agent and no TRANCHE_* settings from outside.
fn tranche(fleet: &Fleet, args: &[&str]) -> Output {
    let home = fleet.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_tranche"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TRANCHE_") {
            c.env_remove(k);
        }
    }
    c.args(args);
    if args[0] == "release" {
        c.arg("--no-progress");
    }
    c.args(["--connect-timeout", "5s"])
        .current_dir(&fleet.dir)
        .env("HOME", &home)
        .env("CI", "true")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
}

/// The fleet's known_hosts lines, one per host: `<address> <type> <key>`.
fn host_lines(fleet: &Fleet) -> Vec<String> {
    std::fs::read_to_string(fleet.known_hosts())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// `<type> <key>` of a known_hosts line.
fn key_of(line: &str) -> String {
    line.split_once(' ').unwrap().1.to_string()
}

/// Failed expectations, collected so that one run names every case that fails.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn expect(&mut self, ok: bool, why: impl FnOnce() -> String) {
        if !ok {
            self.0.push(why());
        }
    }

    fn assert_none(self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n\n"));
    }
}

fn nothing_changed(fleet: &Fleet, what: &str, problems: &mut Problems) {
    for i in 1..=fleet.hosts {
        problems.expect(fleet.current(i).as_deref() == Some("1.0.0"), || {
            format!("{what}: host {i} is on {:?}", fleet.current(i))
        });
        problems.expect(!fleet.srv(i).join("demo/releases/2.0.0").exists(), || {
            format!("{what}: host {i}: nothing may be staged when preflight fails")
        });
    }
    problems.expect(fleet.all_up(), || format!("{what}: {:?}", fleet.servers()));
}

#[test]
fn keys_a_known_hosts_line_refuses_are_never_learned() {
    let fleet = Fleet::up(40, 2);
    fleet.install("1.0.0");
    let pb = fleet.playbook(
        "release.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n",
    );
    let (inv, pb) = (fleet.inventory(), pb);
    let lines = host_lines(&fleet);
    let (h1, h2) = (&lines[0], &lines[1]);
    let net = &fleet.net;
    // In every file h02 is known with its own key; what concerns h01 refuses its key.
    let cases = [
        (
            "a pattern line with another key",
            format!("{h2}\n{net}.* {OTHER_ED25519}\n"),
            "h01: the key does NOT match",
            "line 2",
        ),
        (
            "a revoked key (also listed as the host's key)",
            format!("{h1}\n{h2}\n@revoked * {}\n", key_of(h1)),
            "h01: its ssh-ed25519 key is REVOKED",
            "line 3",
        ),
        (
            "a key of another type",
            format!("{net}.1 {OTHER_ECDSA}\n{h2}\n"),
            "h01: the key does NOT match",
            "line 1",
        ),
        (
            "a certificate authority for the host",
            format!("@cert-authority {net}.* {OTHER_ED25519}\n{h2}\n"),
            "trusts a certificate authority for it, but it offered a plain ssh-ed25519 key",
            "line 1",
        ),
    ];
    let mut problems = Problems::default();
    for (i, (what, text, says, line)) in cases.iter().enumerate() {
        let kh = fleet.dir.join(format!("refusing_known_hosts_{i}"));
        std::fs::write(&kh, text).unwrap();
        let out = tranche(
            &fleet,
            &[
                "release",
                "-i",
                inv.to_str().unwrap(),
                pb.to_str().unwrap(),
                "--known-hosts",
                kh.to_str().unwrap(),
                "--accept-new-host-keys",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        problems.expect(out.status.code() == Some(3), || {
            format!("{what}: exit {:?}, not 3:\n{stderr}", out.status.code())
        });
        problems.expect(
            stderr.contains(says) && stderr.contains(&format!("{} {line}", kh.display())),
            || format!("{what}: the message names the reason, the file and the line:\n{stderr}"),
        );
        let after = std::fs::read_to_string(&kh).unwrap();
        problems.expect(after == *text && !stderr.contains("recorded a new"), || {
            format!("{what}: nothing may be learned; the file is now:\n{after}")
        });
        nothing_changed(&fleet, what, &mut problems);
    }
    problems.assert_none();

    // A host that no line concerns (here h01, excluded from a pattern by `!`) is learned, once.
    let kh = fleet.dir.join("negated_known_hosts");
    let text = format!("{net}.*,!{net}.1 {OTHER_ED25519}\n{h2}\n");
    std::fs::write(&kh, &text).unwrap();
    let out = tranche(
        &fleet,
        &[
            "release",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--known-hosts",
            kh.to_str().unwrap(),
            "--accept-new-host-keys",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches(&format!(
                "recorded a new ssh-ed25519 host key in {} (--accept-new-host-keys)",
                kh.display()
            ))
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), format!("{text}{h1}\n"));
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
}

/// `plan --check` (preflight on every host, nothing changed) with `config` as the SSH config
/// and `extra` arguments; the exit code, stderr and the events.
fn check_with_config(
    fleet: &Fleet,
    name: &str,
    config: &str,
    extra: &[&str],
) -> (Option<i32>, String, Vec<serde_json::Value>) {
    let cfg = fleet.dir.join(format!("{name}.ssh_config"));
    std::fs::write(&cfg, config).unwrap();
    let ev = fleet.dir.join(format!("{name}.jsonl"));
    let pb = fleet.dir.join("check.yml");
    let inv = fleet.inventory();
    let mut args = vec![
        "plan",
        "--check",
        "-i",
        inv.to_str().unwrap(),
        pb.to_str().unwrap(),
        "--ssh-config",
        cfg.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = tranche(fleet, &args);
    let evs = if ev.exists() { events(&ev) } else { vec![] };
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        evs,
    )
}

fn warnings(evs: &[serde_json::Value]) -> Vec<String> {
    evs.iter()
        .filter(|e| e["type"] == "warning")
        .map(|e| format!("{} {}", e["host"], e["msg"].as_str().unwrap()))
        .collect()
}

#[test]
fn the_ssh_configs_host_key_directives_are_obeyed() {
    let fleet = Fleet::up(41, 2);
    fleet.install("1.0.0");
    fleet.playbook("check.yml", "2.0.0", "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n");
    let lines = host_lines(&fleet);
    let (h1, h2) = (&lines[0], &lines[1]);
    let net = &fleet.net;
    let dir = fleet.dir.display().to_string();
    let mut problems = Problems::default();

    // UserKnownHostsFile (several files, `none` skipped): the hosts are found there.
    std::fs::write(fleet.dir.join("kh_one"), format!("{h1}\n")).unwrap();
    std::fs::write(fleet.dir.join("kh_two"), format!("{h2}\n")).unwrap();
    let (code, stderr, _) = check_with_config(
        &fleet,
        "user_files",
        &format!("Host {net}.*\n  UserKnownHostsFile {dir}/kh_one none {dir}/kh_two\n"),
        &[],
    );
    problems.expect(code == Some(0), || {
        format!("UserKnownHostsFile: exit {code:?}, not 0:\n{stderr}")
    });

    // HostKeyAlias: the alias is the name looked up, not the address.
    let aliased = fleet.dir.join("kh_aliased");
    std::fs::write(&aliased, format!("alpha {}\nbeta {}\n", key_of(h1), key_of(h2))).unwrap();
    let alias_cfg = format!(
        "Host {net}.1\n  HostKeyAlias alpha\nHost {net}.2\n  HostKeyAlias beta\nHost *\n  UserKnownHostsFile {}\n",
        aliased.display()
    );
    let (code, stderr, _) = check_with_config(&fleet, "alias", &alias_cfg, &[]);
    problems.expect(code == Some(0), || {
        format!("HostKeyAlias: exit {code:?}, not 0:\n{stderr}")
    });
    // ... and the aliases swapped: h01's key is not alpha's key.
    let swapped = alias_cfg
        .replace("HostKeyAlias alpha", "HostKeyAlias x")
        .replace("HostKeyAlias beta", "HostKeyAlias alpha");
    let (code, stderr, _) = check_with_config(&fleet, "alias_swapped", &swapped, &[]);
    problems.expect(code == Some(3), || {
        format!("HostKeyAlias swapped: exit {code:?}, not 3:\n{stderr}")
    });
    problems.expect(stderr.contains("h02: the key does NOT match"), || {
        format!("HostKeyAlias swapped: h02's key is not alpha's:\n{stderr}")
    });

    // StrictHostKeyChecking yes: nothing is learned, even with --accept-new-host-keys.
    let empty = fleet.dir.join("kh_empty");
    std::fs::write(&empty, "").unwrap();
    let (code, stderr, evs) = check_with_config(
        &fleet,
        "strict_yes",
        &format!(
            "Host {net}.*\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
            empty.display()
        ),
        &["--accept-new-host-keys"],
    );
    problems.expect(code == Some(3), || {
        format!("StrictHostKeyChecking yes: exit {code:?}, not 3:\n{stderr}")
    });
    problems.expect(
        stderr.contains("`StrictHostKeyChecking yes` forbids recording it"),
        || format!("StrictHostKeyChecking yes: the message says why:\n{stderr}"),
    );
    let after = std::fs::read_to_string(&empty).unwrap();
    problems.expect(
        after.is_empty() && warnings(&evs).iter().all(|w| !w.contains("recorded a new")),
        || format!("StrictHostKeyChecking yes: nothing may be learned; the file is now:\n{after}"),
    );

    // StrictHostKeyChecking no is accept-new, never "accept a changed key".
    let changed = fleet.dir.join("kh_changed");
    let changed_text = format!("{net}.1 {OTHER_ED25519}\n{h2}\n");
    std::fs::write(&changed, &changed_text).unwrap();
    let (code, stderr, _) = check_with_config(
        &fleet,
        "strict_no",
        &format!(
            "Host {net}.*\n  UserKnownHostsFile {}\n  StrictHostKeyChecking no\n",
            changed.display()
        ),
        &[],
    );
    problems.expect(
        code == Some(3) && stderr.contains("h01: the key does NOT match"),
        || format!("StrictHostKeyChecking no: a changed key is refused (exit {code:?}):\n{stderr}"),
    );
    let after = std::fs::read_to_string(&changed).unwrap();
    problems.expect(after == changed_text, || {
        format!("StrictHostKeyChecking no: nothing may be learned; the file is now:\n{after}")
    });

    // --known-hosts given explicitly overrides the config's UserKnownHostsFile.
    let (code, stderr, _) = check_with_config(
        &fleet,
        "flag_wins",
        &format!(
            "Host {net}.*\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
            empty.display()
        ),
        &["--known-hosts", fleet.known_hosts().to_str().unwrap()],
    );
    problems.expect(code == Some(0), || {
        format!("--known-hosts: exit {code:?}, not 0:\n{stderr}")
    });

    // StrictHostKeyChecking accept-new learns without the flag, into UserKnownHostsFile; the
    // directives tranche does not apply are named once.
    let learned = fleet.dir.join("sub/kh_learned");
    let (code, stderr, evs) = check_with_config(
        &fleet,
        "accept_new",
        &format!(
            "Host {net}.*\n  UserKnownHostsFile {}\n  StrictHostKeyChecking accept-new\n  VerifyHostKeyDNS yes\n  CertificateFile /nowhere/cert.pub\n  LogLevel ERROR\n",
            learned.display()
        ),
        &[],
    );
    problems.expect(code == Some(0), || {
        format!("StrictHostKeyChecking accept-new: exit {code:?}, not 0:\n{stderr}")
    });
    let mut written: Vec<String> = std::fs::read_to_string(&learned)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    written.sort();
    problems.expect(written == [h1.clone(), h2.clone()], || {
        format!("StrictHostKeyChecking accept-new: both keys are recorded, not {written:?}")
    });
    let w = warnings(&evs);
    problems.expect(
        w.iter()
            .filter(|m| m.contains("(StrictHostKeyChecking accept-new)") && m.contains("recorded a new"))
            .count()
            == 2,
        || format!("StrictHostKeyChecking accept-new: one warning per recorded key: {w:?}"),
    );
    problems.expect(
        w.iter()
            .filter(|m| m.contains("the SSH config sets directives that tranche does not apply: VerifyHostKeyDNS"))
            .count()
            == 1,
        || format!("the ignored directives are named once: {w:?}"),
    );
    for i in 1..=2 {
        assert_eq!(
            fleet.current(i).as_deref(),
            Some("1.0.0"),
            "plan --check changes nothing"
        );
    }
    problems.assert_none();
}

#[test]
fn a_bastion_is_checked_under_its_own_name() {
    // h01 is reached through h02 as its bastion. A pattern line covering the bastion with
    // another key refuses it, whatever the flag; nothing is learned.
    let fleet = Fleet::up(42, 2);
    fleet.install("1.0.0");
    fleet.playbook_with(
        "one.yml",
        "2.0.0",
        "h01",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n",
        "",
    );
    let lines = host_lines(&fleet);
    let (h1, h2) = (&lines[0], &lines[1]);
    let net = &fleet.net;
    let inv = std::fs::read_to_string(fleet.inventory()).unwrap();
    let jumped = fleet.dir.join("jumped.yml");
    std::fs::write(
        &jumped,
        inv.replace(
            &format!("h01: {{ ansible_host: {net}.1,"),
            &format!("h01: {{ ansible_host: {net}.1, jump: \"root@{net}.2\","),
        ),
    )
    .unwrap();
    assert_ne!(
        std::fs::read_to_string(&jumped).unwrap(),
        inv,
        "the inventory has a jump"
    );
    let pb = fleet.dir.join("one.yml");
    let run = |kh: &Path| {
        tranche(
            &fleet,
            &[
                "plan",
                "--check",
                "-i",
                jumped.to_str().unwrap(),
                pb.to_str().unwrap(),
                "--known-hosts",
                kh.to_str().unwrap(),
                "--accept-new-host-keys",
            ],
        )
    };
    let kh = fleet.dir.join("bastion_refused");
    let text = format!("{h1}\n{net}.2,{net}.3 {OTHER_ECDSA}\n");
    std::fs::write(&kh, &text).unwrap();
    let out = run(&kh);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Problems::default();
    problems.expect(out.status.code() == Some(3), || {
        format!("exit {:?}, not 3:\n{stderr}", out.status.code())
    });
    problems.expect(
        stderr.contains(&format!(
            "host key verification for {net}.2: the key does NOT match {} line 2",
            kh.display()
        )),
        || format!("the bastion's name, the file and the line are named:\n{stderr}"),
    );
    let after = std::fs::read_to_string(&kh).unwrap();
    problems.expect(after == text, || {
        format!("nothing may be learned; the file is now:\n{after}")
    });
    problems.assert_none();
    // With the bastion's own line, it passes.
    let kh = fleet.dir.join("bastion_known");
    std::fs::write(&kh, format!("{h1}\n{h2}\n")).unwrap();
    let out = run(&kh);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // A bastion that no line concerns is learned under its own name, and the run says so.
    let kh = fleet.dir.join("bastion_new");
    std::fs::write(&kh, format!("{h1}\n")).unwrap();
    let out = run(&kh);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), format!("{h1}\n{h2}\n"));
    assert_eq!(
        stderr
            .matches(&format!(
                "h01: recorded a new ssh-ed25519 host key of the bastion {net}.2 in {} (--accept-new-host-keys)",
                kh.display()
            ))
            .count(),
        1,
        "{stderr}"
    );
}
