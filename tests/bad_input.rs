//! The corpus of malformed inventories and playbooks under `tests/bad/`: every case must exit 2
//! with a message naming the file (and line and column where there is one), never panic, and
//! the messages are snapshotted so their quality is reviewed in diffs.

use std::process::Command;

fn tranche() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tranche"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env("NO_COLOR", "1").env_remove("TRANCHE_LIMIT");
    c
}

#[test]
fn every_malformed_file_is_a_positioned_error() {
    let mut count = 0;
    insta::glob!("bad/*.{yml,ini}", |path| {
        count += 1;
        let name = path.file_name().unwrap().to_str().unwrap();
        let rel = std::path::Path::new("tests/bad").join(name);
        let text = std::fs::read_to_string(path).unwrap();
        let mut cmd = tranche();
        cmd.arg("validate");
        if name.starts_with("inv-") {
            cmd.args(["-i", rel.to_str().unwrap(), "tests/fixtures/playbook.yml"]);
        } else {
            cmd.args(["-i", "tests/fixtures/inventory.yml", rel.to_str().unwrap()]);
        }
        if let Some(args) = text.lines().next().and_then(|l| l.strip_prefix("# args: ")) {
            cmd.args(args.split_whitespace());
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{name}: expected exit 2\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name} panicked:\n{stderr}");
        assert!(out.stdout.is_empty(), "{name}: stdout must stay empty on errors");
        assert!(stderr.contains("error: "), "{name}: no error line\n{stderr}");
        // The file at fault is named, with line and column when the problem has a place.
        let named = stderr.contains(&format!("--> {}", rel.display()))
            || stderr.contains("--> tests/fixtures/")
            || stderr.contains("--> --limit");
        assert!(named, "{name}: the message does not name the file\n{stderr}");
        insta::assert_snapshot!(stderr);
    });
    assert!(count >= 30, "the corpus has only {count} cases");
}

#[test]
fn validate_lists_every_problem_at_once() {
    let out = tranche()
        .args([
            "validate",
            "-i",
            "tests/fixtures/inventory.yml",
            "tests/bad/pb-bad-duration.yml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("error: ").count(), 2, "{stderr}");
    assert!(stderr.contains("tests/bad/pb-bad-duration.yml:7:12"), "{stderr}");
    assert!(stderr.contains("tests/bad/pb-bad-duration.yml:10:13"), "{stderr}");
}

#[test]
fn both_files_are_checked_in_one_run() {
    let out = tranche()
        .args([
            "validate",
            "-i",
            "tests/bad/inv-bad-port.yml",
            "tests/bad/pb-unknown-nested-key.yml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("inv-bad-port.yml:5:58"), "{stderr}");
    assert!(stderr.contains("pb-unknown-nested-key.yml:7:3"), "{stderr}");
}

#[test]
fn confirm_without_a_terminal_is_refused_before_anything_starts() {
    // canary-percent.yml pauses with `confirm`; stdin and stderr are pipes here.
    let out = tranche()
        .args([
            "release",
            "-i",
            "inventories/prod.yml",
            "playbooks/canary-percent.yml",
            "--no-progress",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no terminal to ask on") && stderr.contains("--yes"),
        "{stderr}"
    );
    assert!(!stderr.contains("preflight"), "nothing may start: {stderr}");
}

#[test]
fn plan_json_is_the_documented_document() {
    let out = tranche()
        .args([
            "plan",
            "-i",
            "inventories/prod.yml",
            "playbooks/order.yml",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(v["targeted"], 7);
    let sizes: Vec<u64> = v["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["size"].as_u64().unwrap())
        .collect();
    // 7 hosts, canary 1, 25% of 7 = 1 per batch.
    assert_eq!(sizes, [1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(v["batches"][0]["canary"], true);
    assert_eq!(v["stage"]["mode"], "push");
    assert_eq!(v["failure"]["on_failure"], "rollback");
}

#[test]
fn plan_table_snapshot() {
    let out = tranche()
        .args(["plan", "-i", "inventories/prod.ini", "playbooks/order.yml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plan_shows_gate_silence_and_registry_preset() {
    let out = tranche()
        .args(["plan", "-i", "inventories/prod.yml", "playbooks/guarded.yml"])
        .env("CONSUL_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}

#[test]
fn plan_spreads_over_zones() {
    let out = tranche()
        .args(["plan", "-i", "inventories/prod.yml", "playbooks/zones.yml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
    let out = tranche()
        .args([
            "plan",
            "-i",
            "inventories/prod.yml",
            "playbooks/zones.yml",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let zones: Vec<&str> = v["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["zone"].as_str().unwrap())
        })
        .collect();
    assert_eq!(zones, ["dc1", "dc2", "dc1", "dc2", "dc1", "dc2", "dc1"]);
    assert_eq!(v["spread"], "zone");
    assert_eq!(v["max_per_zone"], 1);
}

#[test]
fn completions_and_man_page_come_from_the_cli() {
    let out = tranche().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    for word in ["release", "rollback", "resume", "--accept-new-host-keys", "--junit"] {
        assert!(script.contains(word), "completion lacks {word}");
    }
    let path = std::env::temp_dir().join(format!("tranche-completion-{}.bash", std::process::id()));
    std::fs::write(&path, &script).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    std::fs::remove_file(&path).ok();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    for shell in ["zsh", "fish"] {
        let out = tranche().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("rollback"));
    }
    let man = tranche().arg("man").output().unwrap();
    assert_eq!(man.status.code(), Some(0));
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH tranche 1") && page.contains("rollback"), "{page}");
}

/// Values that only exist once a template is rendered for a host (inventory variables, `-e`
/// values, the environment) are checked for every targeted host by `validate` and by `plan`:
/// exit 2, naming the host, the variable and the template's position, secrets shown as `***`.
#[test]
fn rendered_urls_and_haproxy_names_are_checked_per_host() {
    let cases: &[(&str, &[&str], &str, &str)] = &[
        // (playbook, extra args, expected position, what the message must name)
        ("url-host-var.yml", &[], "url-host-var.yml:5:8", "`host.zone` is \"$(touch /tmp/x)\""),
        (
            "url-extra-var.yml",
            &["-e", "mirror=mirror.example;touch${IFS}x"],
            "url-extra-var.yml:5:8",
            "`-e mirror` is \"mirror.example;touch${IFS}x\"",
        ),
        ("url-secret.yml", &[], "url-secret.yml:5:8", "`env.TRANCHE_TEST_MIRROR_TOKEN` is \"***\""),
        (
            "haproxy-server.yml",
            &[],
            "haproxy-server.yml:9:11",
            "`host.lb_name` is \"web-02;disable frontend www\"",
        ),
        // The space is the template's own: no variable is blamed.
        ("haproxy-backend.yml", &["-e", "extra=x"], "haproxy-backend.yml:8:12", "to \"app x\" for host `web-01`, which may only contain letters, digits, `-`, `_`, `.` and `:` (HAProxy's name characters), not a space\n"),
    ];
    for (playbook, args, position, names) in cases {
        let path = format!("tests/bad/hosts/{playbook}");
        let mut stderrs = Vec::new();
        for command in ["validate", "plan"] {
            let out = tranche()
                .args([command, "-i", "tests/bad/hosts/inventory.yml", &path])
                .args(*args)
                .env("TRANCHE_TEST_MIRROR_TOKEN", "s3cr3t`reboot`")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} {playbook}: expected exit 2\n{stderr}"
            );
            assert!(out.stdout.is_empty(), "{command} {playbook}: stdout must stay empty");
            assert!(
                stderr.contains(&format!("--> tests/bad/hosts/{position}")),
                "{playbook}:\n{stderr}"
            );
            assert!(
                stderr.contains(names),
                "{playbook} does not name the variable:\n{stderr}"
            );
            assert!(!stderr.contains("s3cr3t"), "{playbook} shows a secret:\n{stderr}");
            stderrs.push(stderr);
        }
        assert_eq!(stderrs[0], stderrs[1], "validate and plan disagree on {playbook}");
        insta::assert_snapshot!(format!("hosts-{playbook}"), stderrs[0]);
    }
}

/// `tranche rollback --to VERSION` names a folder on every host, like `version`.
#[test]
fn rollback_to_a_version_with_shell_characters_is_refused() {
    let out = tranche()
        .args([
            "rollback",
            "-i",
            "tests/fixtures/inventory.yml",
            "tests/fixtures/playbook.yml",
            "--to",
            "1.0$(touch${IFS}x)",
            "--connect-timeout",
            "1s",
            "--no-progress",
        ])
        // Were the version let through, the run would write its journal here.
        .arg("--state-dir")
        .arg(std::env::temp_dir().join(format!("tranche-rollback-to-{}", std::process::id())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--to") && stderr.contains("`$`"), "{stderr}");
    assert!(!stderr.contains("preflight"), "nothing may start: {stderr}");
}

/// A device or a runaway file given as the inventory or the playbook is refused once it passes
/// the size cap, instead of being read until the memory runs out.
#[test]
fn endless_files_are_refused() {
    for args in [
        ["-i", "/dev/zero", "tests/fixtures/playbook.yml"],
        ["-i", "tests/fixtures/inventory.yml", "/dev/zero"],
    ] {
        let out = tranche().arg("validate").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("larger than 64 MiB") && stderr.contains("--> /dev/zero"),
            "{stderr}"
        );
    }
}

/// `--connect-timeout` is bounded like the playbook's waits.
#[test]
fn connect_timeout_is_bounded() {
    let out = tranche()
        .args([
            "plan",
            "-i",
            "tests/fixtures/inventory.yml",
            "tests/fixtures/playbook.yml",
            "--connect-timeout",
            "100000y",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is more than 24h"), "{stderr}");
}

/// An inventory of exactly the largest size loads (one range of 100,000 hosts, in one group).
#[test]
fn the_largest_inventory_loads() {
    let dir = std::env::temp_dir().join(format!("tranche-largest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("inventory.yml");
    std::fs::write(
        &inv,
        "all:\n  children:\n    web:\n      hosts:\n        web-[00000:99999]:\n",
    )
    .unwrap();
    let out = tranche()
        .args(["validate", "-i", inv.to_str().unwrap(), "tests/fixtures/playbook.yml"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("on 100000 hosts"), "{stderr}");
}
