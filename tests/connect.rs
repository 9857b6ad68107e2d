//! How tranche reaches hosts, against the real local fleet: the OpenSSH client config,
//! ssh-agent, SFTP and its exec fallback, `tranche status`, and `--yes` for confirm pauses.

mod common;

use std::process::Command;

use common::{events, Fleet};

/// The fleet's inventory without the connection settings that the SSH config or the agent
/// must then provide.
fn bare_inventory(fleet: &Fleet) -> std::path::PathBuf {
    let inv = std::fs::read_to_string(fleet.inventory()).unwrap();
    let bare: String = inv
        .lines()
        .filter(|l| !l.contains("ansible_ssh_private_key_file") && !l.contains("ansible_user:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = fleet.dir.join("bare.yml");
    std::fs::write(&path, bare).unwrap();
    path
}

/// tranche with an empty HOME (no default keys, no ~/.ssh/config) and no agent unless given.
fn tranche(fleet: &Fleet, args: &[&str], agent: Option<&std::path::Path>) -> std::process::Output {
    let home = fleet.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_tranche"));
    c.args(args)
        .current_dir(&fleet.dir)
        .env("HOME", &home)
        .env("CI", "true")
        .env_remove("SSH_AUTH_SOCK");
    if let Some(sock) = agent {
        c.env("SSH_AUTH_SOCK", sock);
    }
    c.output().unwrap()
}

#[test]
fn ssh_config_agent_sftp_fallback_status_and_yes() {
    let fleet = Fleet::up(5, 3);
    fleet.install("1.0.0");
    let inv = bare_inventory(&fleet);
    let kh = fleet.known_hosts();
    let kh = kh.to_str().unwrap();
    let pb = fleet.playbook(
        "release.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  canary_pause: confirm\n  batch: 2\n",
    );

    // Without a key from anywhere, authentication fails at preflight and names what was tried.
    let out = tranche(
        &fleet,
        &[
            "status",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--known-hosts",
            kh,
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("authentication as root@h01 failed"), "{stderr}");

    // The SSH config names the key (`Host 127.0.K.*`, IdentityFile): status works.
    let cfg = fleet.dir.join("ssh_config");
    let out = tranche(
        &fleet,
        &[
            "status",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--known-hosts",
            kh,
            "--ssh-config",
            cfg.to_str().unwrap(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("demo: 1.0.0 on 3 hosts"), "{stderr}");

    // ssh-agent holding the key: status works without any identity file.
    let sock = fleet.dir.join("agent.sock");
    let agent = Command::new("ssh-agent")
        .args(["-D", "-a", sock.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Kill(agent);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() {
        assert!(std::time::Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(fleet.dir.join("id_ed25519"))
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let out = tranche(
        &fleet,
        &[
            "status",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--known-hosts",
            kh,
            "--format",
            "json",
        ],
        Some(&sock),
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mixed"], false);
    assert_eq!(v["releases"][0]["release"], "1.0.0");
    assert_eq!(v["releases"][0]["hosts"], 3);

    // Host 2 offers no SFTP subsystem: its upload falls back to exec `cat`, the others use SFTP.
    // It also holds the first 1000 bytes of a cut upload: `cat` appends the rest.
    let part = fleet
        .srv(2)
        .join(format!("demo/.tranche-stage/{}.part", fleet.sha256("2.0.0")));
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, &std::fs::read(fleet.artifact("2.0.0")).unwrap()[..1000]).unwrap();
    fleet.set_sftp_subsystem(2, None);

    // The playbook pauses for confirmation after the canary; --yes answers it.
    let ev = fleet.dir.join("events.jsonl");
    let out = tranche(
        &fleet,
        &[
            "release",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--known-hosts",
            kh,
            "--no-progress",
            "--yes",
            "--events",
            ev.to_str().unwrap(),
        ],
        Some(&sock),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let evs = events(&ev);
    let stage_msg = |h: &str| {
        evs.iter()
            .find(|e| e["type"] == "step_finished" && e["step"] == "stage" && e["host"] == h)
            .map(|e| e["msg"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert!(stage_msg("h01").contains("over sftp"), "{}", stage_msg("h01"));
    assert!(
        stage_msg("h02").contains("over exec, resumed at 1000 B, sha256 verified"),
        "{}",
        stage_msg("h02")
    );
    assert!(evs
        .iter()
        .any(|e| e["type"] == "warning" && e["host"] == "h02" && e["msg"].as_str().unwrap().contains("no SFTP")));
    let paused: Vec<&serde_json::Value> = evs.iter().filter(|e| e["type"] == "paused").collect();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0]["batch"], 2);
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());

    // status flags a mixed fleet and exits 1.
    std::os::unix::fs::symlink("releases/1.0.0", fleet.srv(3).join("demo/current.new")).unwrap();
    std::fs::rename(fleet.srv(3).join("demo/current.new"), fleet.srv(3).join("demo/current")).unwrap();
    let out = tranche(
        &fleet,
        &[
            "status",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--known-hosts",
            kh,
        ],
        Some(&sock),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("MIXED fleet: 2.0.0 on 2 hosts, 1.0.0 on 1 host"),
        "{stderr}"
    );
    assert!(stderr.contains("1.0.0  <- differs"), "{stderr}");
}

/// Run tranche on a pseudo-terminal (util-linux `script`), typing `input`.
fn on_a_terminal(fleet: &Fleet, args: &[&str], input: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut cmdline = env!("CARGO_BIN_EXE_tranche").to_string();
    for a in args {
        cmdline.push(' ');
        cmdline.push_str(&format!("'{a}'"));
    }
    let mut child = Command::new("script")
        .args(["-qefc", &cmdline, "/dev/null"])
        .current_dir(&fleet.dir)
        .env_remove("CI")
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn confirm_asks_on_a_terminal() {
    let fleet = Fleet::up(25, 3);
    fleet.install("1.0.0");
    let pb = fleet.playbook(
        "c.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  canary_pause: confirm\n  batch: 2\n",
    );
    let inv = fleet.inventory();
    let kh = fleet.known_hosts();
    let args = [
        "release",
        "-i",
        inv.to_str().unwrap(),
        pb.to_str().unwrap(),
        "--known-hosts",
        kh.to_str().unwrap(),
        "--no-progress",
    ];
    // "n": the canary stays on 2.0.0, nothing else moves, exit 130.
    let (code, screen) = on_a_terminal(&fleet, &args, "n\n");
    assert!(screen.contains("continue with batch 2? [y/N]"), "{screen}");
    assert_eq!(code, Some(130), "{screen}");
    assert_eq!(
        (fleet.current(1).as_deref(), fleet.current(2).as_deref()),
        (Some("2.0.0"), Some("1.0.0"))
    );
    // "y": the rest follows.
    let (code, screen) = on_a_terminal(&fleet, &args, "y\n");
    assert_eq!(code, Some(0), "{screen}");
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

#[test]
fn a_server_that_takes_only_small_sftp_packets_gets_the_upload_again_in_small_writes() {
    // h02's SFTP server takes no packet over 34000 bytes and does not announce its limits: the
    // first (128 KiB) write makes it close the session; tranche uploads again in packets of
    // 34000 bytes, the length every SFTP server must take.
    // h01 keeps OpenSSH's own SFTP server, which takes the large writes.
    let fleet = Fleet::up(27, 2);
    fleet.install("1.0.0");
    let (art, _) = fleet.big_artifact("2.0.0", 1024);
    let log = fleet.dir.join("strict-sftp.log");
    let proxy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/strict_sftp.py");
    fleet.set_sftp_subsystem(
        2,
        Some(&format!("/usr/bin/python3 {} {}", proxy.display(), log.display())),
    );

    let pb = fleet.playbook(
        "strict.yml",
        "2.0.0",
        &format!(
            "artifact:\n  path: {}\nrollout:\n  canary: 0\n  batch: 2\n",
            art.display()
        ),
    );
    let ev = fleet.dir.join("strict.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let log = std::fs::read_to_string(&log).unwrap();
    let rejected = log.lines().filter(|l| l.starts_with("rejected a packet")).count();
    let writes: Vec<usize> = log
        .lines()
        .filter_map(|l| l.strip_prefix("write ")?.strip_suffix(" bytes")?.parse().ok())
        .collect();
    assert_eq!(rejected, 1, "{log}");
    assert!(!writes.is_empty() && writes.iter().all(|n| *n < 34000), "{log}");
    assert!(
        writes.iter().sum::<usize>() as u64 >= std::fs::metadata(&art).unwrap().len(),
        "{log}"
    );
    let stages: Vec<String> = events(&ev)
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "stage")
        .map(|e| format!("{} {}", e["host"], e["msg"]))
        .collect();
    assert!(
        stages.iter().all(|m| m.contains("over sftp, sha256 verified")),
        "{stages:?}"
    );
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}
