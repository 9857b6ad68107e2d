//! Hosts that are not Debian with OpenSSH: a busybox host (root's login shell, `/bin/sh` and
//! the whole `PATH` are busybox) and a Dropbear host (no SFTP subsystem), next to plain
//! OpenSSH hosts, released through HAProxy while requests run. Fleet slots 44-49.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{events, FileServer, Fleet, HostKind, Requests};

/// Hosts 1 and 2 OpenSSH, 3 busybox, 4 Dropbear.
const BUSYBOX: usize = 3;
const DROPBEAR: usize = 4;

fn mixed_fleet(slot: u16) -> Fleet {
    Fleet::up_with(slot, 4, &[(BUSYBOX, HostKind::Busybox), (DROPBEAR, HostKind::Dropbear)])
}

/// Run `args` of tranche on the fleet while requests run through HAProxy; assert exit 0, zero
/// failed requests, a request loop that really ran, every host on `version` and UP.
fn run_without_a_failed_request(fleet: &Fleet, args: &[&str], version: &str) -> String {
    let requests = Requests::start(fleet.lb_port);
    // Some requests before the run starts, so the loop is known to work.
    std::thread::sleep(Duration::from_millis(300));
    let out = fleet.tranche(args);
    let (ok, failed, errors) = requests.finish();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(failed, 0, "failed requests: {errors:?}\n{stderr}");
    assert!(ok > 50, "the request loop barely ran: {ok}\n{stderr}");
    for i in 1..=fleet.hosts {
        assert_eq!(fleet.current(i).as_deref(), Some(version), "host {i}\n{stderr}");
        let (code, body) = common::http("GET", &format!("http://{}.{i}:8080/health", fleet.net), None);
        assert_eq!((code, body.trim()), (200, version), "host {i} serves\n{stderr}");
    }
    assert!(fleet.all_up(), "{:?}\n{stderr}", fleet.servers());
    stderr
}

/// `command -v NAME` for each name on host `i`, through its login shell: NAME -> path, or
/// None when the name is not reachable.
fn resolve(fleet: &Fleet, i: usize, names: &[&str]) -> Vec<(String, Option<String>)> {
    let script = format!(
        "for c in {}; do p=$(command -v \"$c\") || p=-; echo \"$c $p\"; done",
        names.join(" ")
    );
    let out = fleet.ssh(i, &script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (c, p) = l.split_once(' ').unwrap();
            (c.to_string(), (p != "-").then(|| p.to_string()))
        })
        .collect()
}

#[test]
fn the_busybox_and_dropbear_hosts_are_what_they_claim() {
    let fleet = mixed_fleet(45);
    let bin = fleet.dir.join(format!("hosts/h{BUSYBOX}/bin"));
    let busybox = std::fs::canonicalize("/usr/bin/busybox").unwrap();

    // The busybox host: login shell, /bin/sh and PATH.
    let out = fleet.ssh(
        BUSYBOX,
        "echo \"$0|$PATH\"; sh --help 2>&1 | head -n 1; /bin/sh --help 2>&1 | head -n 1",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("sh|{}", bin.display()).as_str()),
        "{text}"
    );
    assert!(
        lines.len() == 3 && lines[1..].iter().all(|l| l.starts_with("BusyBox v")),
        "{text}"
    );

    // Not reachable by name at all.
    let absent = [
        "bash", "dash", "curl", "openssl", "nice", "nohup", "python3", "perl", "sudo",
    ];
    for (name, path) in resolve(&fleet, BUSYBOX, &absent) {
        assert_eq!(path, None, "{name} must not be reachable on the busybox host");
    }
    // GNU coreutils' (and tar's, wget's) names are busybox's applets, or nothing.
    let coreutils = [
        "cat",
        "cp",
        "mv",
        "rm",
        "ln",
        "ls",
        "mkdir",
        "readlink",
        "realpath",
        "stat",
        "date",
        "sleep",
        "head",
        "tail",
        "sort",
        "env",
        "id",
        "sha256sum",
        "md5sum",
        "mktemp",
        "timeout",
        "du",
        "df",
        "chmod",
        "touch",
        "tr",
        "wc",
        "tee",
        "dirname",
        "basename",
        "stdbuf",
        "numfmt",
        "tar",
        "gzip",
        "wget",
    ];
    let resolved = resolve(&fleet, BUSYBOX, &coreutils);
    assert_eq!(resolved.len(), coreutils.len());
    for (name, path) in &resolved {
        let Some(path) = path else { continue };
        assert!(
            path.starts_with(bin.to_str().unwrap()),
            "{name} resolves to {path}, outside the busybox applets"
        );
        assert_eq!(std::fs::canonicalize(path).unwrap(), busybox, "{name}: {path}");
    }
    for must in ["sha256sum", "tar", "wget", "mv", "readlink"] {
        assert!(
            resolved.iter().any(|(n, p)| n == must && p.is_some()),
            "busybox's {must} should be there: {resolved:?}"
        );
    }
    let out = fleet.ssh(BUSYBOX, "ls --version 2>&1; sha256sum --version 2>&1; true");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("GNU"), "GNU coreutils answered: {text}");

    // The OpenSSH hosts are untouched: bash and GNU coreutils are there.
    let plain = resolve(&fleet, 1, &["bash", "curl", "nice", "sha256sum"]);
    assert!(plain.iter().all(|(_, p)| p.is_some()), "{plain:?}");

    // The Dropbear host: Dropbear's banner, logins work, no SFTP subsystem.
    let mut s = std::net::TcpStream::connect((format!("{}.{DROPBEAR}", fleet.net), 22)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut banner = [0u8; 64];
    let n = s.read(&mut banner).unwrap();
    let banner = String::from_utf8_lossy(&banner[..n]).into_owned();
    assert!(banner.starts_with("SSH-2.0-dropbear"), "{banner}");
    drop(s);
    let out = fleet.ssh(DROPBEAR, "echo $0; ls /srv");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sftp = |i: usize| {
        let mut child = std::process::Command::new("sftp")
            .arg("-F")
            .arg(fleet.dir.join("ssh_config"))
            .args(["-b", "-", &format!("{}.{i}", fleet.net)])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"ls /\n").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = sftp(DROPBEAR);
    assert!(
        !out.status.success(),
        "the Dropbear host has an SFTP subsystem: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(sftp(1).status.success(), "SFTP to an OpenSSH host");

    // `status` names each host's kind; `down` stops Dropbear and sshd alike.
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fleet/fleet.sh"))
        .args(["status", "--dir", fleet.dir.to_str().unwrap()])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    let kinds: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("h0"))
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(kinds, ["openssh", "openssh", "busybox", "dropbear"], "{status}");
    let pids: Vec<String> = (1..=4)
        .map(|i| {
            std::fs::read_to_string(fleet.dir.join(format!("hosts/h{i}/sshd.pid")))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fleet/fleet.sh"))
        .args(["down", "--dir", fleet.dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "pid {pid} survived down"
        );
    }
}

#[test]
fn a_push_release_through_haproxy_on_a_mixed_fleet_drops_no_request() {
    let fleet = mixed_fleet(46);
    fleet.install("1.0.0");
    let pb = fleet.playbook(
        "release.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n",
    );
    let ev = fleet.dir.join("events.jsonl");
    let (inv, pb) = (fleet.inventory(), pb);
    let args = [
        "release",
        "-i",
        inv.to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ];
    run_without_a_failed_request(&fleet, &args, "2.0.0");
    let evs = events(&ev);
    assert_eq!(evs.last().unwrap()["exit_code"], 0);
    let staged = evs
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "stage" && e["status"] == "ok")
        .count();
    assert_eq!(staged, 4, "every host staged the artifact");
}

#[test]
fn a_pull_release_through_haproxy_on_a_mixed_fleet_drops_no_request() {
    let fleet = mixed_fleet(47);
    fleet.install("1.0.0");
    // The hosts download from here: curl on the OpenSSH and Dropbear hosts, busybox's wget on
    // the busybox host. Port 17147: no fleet's (they use 18100 + slot and 19100 + slot).
    let port: u16 = 17147;
    let dir = fleet.dir.join("artifacts");
    let _server = FileServer::start(
        port,
        &[
            "-m".as_ref(),
            "http.server".as_ref(),
            "--bind".as_ref(),
            "127.0.0.1".as_ref(),
            port.to_string().as_ref(),
            "--directory".as_ref(),
            dir.as_os_str(),
        ],
    );
    let sha = fleet.sha256("2.0.0");
    let pb = fleet.playbook(
        "pull.yml",
        "2.0.0",
        &format!(
            "artifact:\n  url: \"http://127.0.0.1:{port}/demo-2.0.0.tar.gz\"\n  sha256: \"{sha}\"\nrollout:\n  canary: 1\n  batch: 2\n"
        ),
    );
    let inv = fleet.inventory();
    let args = ["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()];
    run_without_a_failed_request(&fleet, &args, "2.0.0");
}

#[test]
fn a_rollback_through_haproxy_on_a_mixed_fleet_drops_no_request() {
    let fleet = mixed_fleet(48);
    fleet.install("1.0.0");
    let pb = fleet.playbook(
        "release.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n",
    );
    let inv = fleet.inventory();
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for i in 1..=4 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"), "host {i}");
    }
    // Back to the release before tranche's change (recorded on each host), while serving.
    let args = ["rollback", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()];
    run_without_a_failed_request(&fleet, &args, "1.0.0");
    // And forward again to a release still on the hosts.
    let args = [
        "rollback",
        "-i",
        inv.to_str().unwrap(),
        pb.to_str().unwrap(),
        "--to",
        "2.0.0",
    ];
    run_without_a_failed_request(&fleet, &args, "2.0.0");
}

#[test]
fn a_fleet_brought_up_under_flock_leaves_the_lock_free() {
    // `flock LOCK fleet.sh up` (as by hand, or `flock LOCK cargo test`): once `up` returned,
    // nothing of the fleet may hold LOCK. Dropbear and HAProxy keep inherited descriptors.
    let dir = std::env::temp_dir().join(format!("tranche-fleet-49-{}", std::process::id()));
    let lock = std::env::temp_dir().join(format!("tranche-hosts-{}.lock", std::process::id()));
    let fleet_sh = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fleet/fleet.sh");
    struct Down(std::path::PathBuf, std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = std::process::Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fleet/fleet.sh"))
                .args(["down", "--dir", self.0.to_str().unwrap()])
                .output();
            let _ = std::fs::remove_dir_all(&self.0);
            let _ = std::fs::remove_file(&self.1);
        }
    }
    let _down = Down(dir.clone(), lock.clone());
    let out = std::process::Command::new("flock")
        .arg(&lock)
        .args(["bash", fleet_sh, "up", "--dir", dir.to_str().unwrap(), "--hosts", "3"])
        .args(["--busybox", "2", "--dropbear", "3", "--net", "127.0.69"])
        .args(["--lb-port", "18149", "--api-port", "19149"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let free = std::process::Command::new("flock")
        .args(["-n"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap();
    let holders: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| {
            std::fs::read_dir(e.path().join("fd"))
                .map(|fds| {
                    fds.filter_map(|f| f.ok())
                        .any(|f| std::fs::read_link(f.path()).ok() == Some(lock.clone()))
                })
                .unwrap_or(false)
        })
        .map(|e| {
            std::fs::read_to_string(e.path().join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ")
        })
        .collect();
    assert!(free.success(), "the fleet holds the lock: {holders:?}");
}

#[test]
fn the_live_release_installed_by_hand_is_recognised_on_a_busybox_host() {
    // `install-service` puts releases/1.0.0 there without tranche's checksum marker, and
    // `current` points to it. Releasing 1.0.0 again must recognise the same content (no
    // change) on every kind of host. The stage script once compared the folders with GNU
    // `diff -x`, which busybox's diff does not have (slot 44).
    let fleet = Fleet::up_with(44, 3, &[(2, HostKind::Busybox), (3, HostKind::Dropbear)]);
    fleet.install("1.0.0");
    let pb = fleet.playbook(
        "same.yml",
        "1.0.0",
        "artifact:\n  path: artifacts/demo-1.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n",
    );
    let inv = fleet.inventory();
    let args = ["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()];
    run_without_a_failed_request(&fleet, &args, "1.0.0");
}
