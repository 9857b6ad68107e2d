//! The host lifecycle's options against the real fleet: stop timeout then kill_command, tcp and
//! command health checks, pruning old releases, hashed known_hosts, and an encrypted key in CI.

mod common;

use std::process::Command;

use common::{events, Fleet};

fn step_msg(evs: &[serde_json::Value], host: &str, step: &str) -> String {
    evs.iter()
        .find(|e| e["type"] == "step_finished" && e["host"] == host && e["step"] == step)
        .map(|e| format!("{} {}", e["status"].as_str().unwrap(), e["msg"].as_str().unwrap()))
        .unwrap_or_default()
}

#[test]
fn stop_timeout_kill_health_kinds_pruning_and_keys() {
    let fleet = Fleet::up(8, 2);
    fleet.install("1.0.0");
    let inv = fleet.inventory();
    let inv = inv.to_str().unwrap();

    // Old releases, older than 1.0.0: with keep 2 they go; 1.0.0 stays as the previous release.
    for (i, v) in ["0.1", "0.2", "0.3"].iter().enumerate() {
        for h in 1..=2 {
            let d = fleet.srv(h).join("demo/releases").join(v);
            std::fs::create_dir_all(&d).unwrap();
            let stamp = format!("2020010{}0000", i + 1);
            assert!(Command::new("touch")
                .args(["-t", &stamp])
                .arg(&d)
                .status()
                .unwrap()
                .success());
        }
    }
    // Uploads cut earlier: h01 holds the first 1000 bytes of the artifact (resumed from there),
    // h02 holds 1000 wrong bytes (sent again whole).
    let artifact = std::fs::read(fleet.artifact("2.0.0")).unwrap();
    let part = |h: usize| {
        fleet
            .srv(h)
            .join(format!("demo/.tranche-stage/{}.part", fleet.sha256("2.0.0")))
    };
    std::fs::create_dir_all(part(1).parent().unwrap()).unwrap();
    std::fs::create_dir_all(part(2).parent().unwrap()).unwrap();
    std::fs::write(part(1), &artifact[..1000]).unwrap();
    std::fs::write(part(2), vec![b'x'; 1000]).unwrap();
    // A stop command that hangs: after 1s the kill_command stops the service. Health over tcp.
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nlayout:\n  root: /srv/demo\n  keep: 2\nrollout:\n  canary: 0\n  batch: 2\n\
                stop:\n  command: sleep 30\n  timeout: 1s\n  kill_command: /srv/demo/current/bin/stop\n\
                health:\n  tcp: \"{{ host.address }}:8080\"\n  interval: 100ms\n  timeout: 10s\n";
    let pb = fleet.playbook("kill.yml", "2.0.0", body);
    let ev = fleet.dir.join("kill.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        inv,
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&ev);
    let h01_stage = step_msg(&evs, "h01", "stage");
    assert!(
        h01_stage.contains("over sftp, resumed at 1000 B, sha256 verified"),
        "{h01_stage}"
    );
    let h02_stage = step_msg(&evs, "h02", "stage");
    assert!(
        h02_stage.starts_with("ok") && !h02_stage.contains("resumed"),
        "{h02_stage}"
    );
    assert!(
        step_msg(&evs, "h01", "stop").starts_with("ok killed after 1.0s"),
        "{}",
        step_msg(&evs, "h01", "stop")
    );
    assert!(
        step_msg(&evs, "h01", "health").contains("accepts"),
        "{}",
        step_msg(&evs, "h01", "health")
    );
    for h in 1..=2 {
        let mut left: Vec<String> = std::fs::read_dir(fleet.srv(h).join("demo/releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["1.0.0", "2.0.0"], "host {h}");
    }

    // Without kill_command, a stop that does not finish in time fails the host, which goes back.
    let body = "artifact:\n  path: artifacts/demo-1.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n  max_failures: 1\n\
                stop:\n  command: sleep 30\n  timeout: 1s\n";
    let pb = fleet.playbook("hang.yml", "1.0.0", body);
    let ev = fleet.dir.join("hang.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        inv,
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("did not stop within 1.0s"), "{stderr}");

    // Health through a command on the host, matching the body.
    let body = "artifact:\n  path: artifacts/demo-1.0.0.tar.gz\nrollout:\n  canary: 0\n  batch: 2\n\
                health:\n  command: \"/usr/bin/curl -fsS http://{{ host.address }}:8080/health\"\n  expect_body: \"{{ version }}\"\n  interval: 100ms\n  timeout: 10s\n";
    let pb = fleet.playbook("cmd-health.yml", "1.0.0", body);
    let ev = fleet.dir.join("cmd.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        inv,
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(step_msg(&events(&ev), "h02", "health").starts_with("ok passed"));
    assert_eq!(fleet.current(2).as_deref(), Some("1.0.0"));

    // Hashed known_hosts entries (`ssh-keygen -H`) are understood.
    let hashed = fleet.dir.join("hashed_known_hosts");
    std::fs::copy(fleet.known_hosts(), &hashed).unwrap();
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&hashed)
        .output()
        .unwrap()
        .status
        .success());
    assert!(std::fs::read_to_string(&hashed).unwrap().starts_with("|1|"));
    let out = fleet.tranche_raw(&[
        "status",
        "-i",
        inv,
        pb.to_str().unwrap(),
        "--known-hosts",
        hashed.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // An encrypted key in CI: a clear error, never a prompt.
    let enc = fleet.dir.join("enc_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "s3cret-pass", "-f"])
        .arg(&enc)
        .output()
        .unwrap();
    assert!(made.status.success());
    let text = std::fs::read_to_string(inv).unwrap().replace(
        &fleet.dir.join("id_ed25519").display().to_string(),
        &enc.display().to_string(),
    );
    let inv2 = fleet.dir.join("enc.yml");
    std::fs::write(&inv2, text).unwrap();
    let home = fleet.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args([
            "status",
            "-i",
            inv2.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--known-hosts",
            fleet.known_hosts().to_str().unwrap(),
        ])
        .env("CI", "true")
        .env("HOME", &home)
        .env_remove("SSH_AUTH_SOCK")
        .current_dir(&fleet.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("encrypted, and there is no terminal to ask for its passphrase"),
        "{stderr}"
    );
}
