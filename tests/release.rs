//! End-to-end releases against the real local fleet: sshd per host in its own mount namespace,
//! HAProxy with its runtime API, the sample service on every host.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{events, FileServer, Fleet, Requests};

/// The largest number of hosts whose `stage` step was in progress at once, from the events.
fn max_concurrent_stage(evs: &[serde_json::Value]) -> usize {
    let (mut cur, mut max) = (0usize, 0usize);
    for e in evs {
        if e["step"] == "stage" {
            match e["type"].as_str() {
                Some("step_started") => {
                    cur += 1;
                    max = max.max(cur);
                }
                Some("step_finished") => cur -= 1,
                _ => {}
            }
        }
    }
    max
}

#[test]
fn releases_twelve_hosts_through_haproxy_without_dropping_a_request() {
    let fleet = Fleet::up(1, 12);
    fleet.install("1.0.0");
    let pb = fleet.playbook(
        "release.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 4\n  stage:\n    concurrency: 3\n",
    );
    let requests = Requests::start(fleet.lb_port);
    let events_file = fleet.dir.join("events.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        events_file.to_str().unwrap(),
    ]);
    let (ok, failed, errors) = requests.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(failed, 0, "failed requests: {errors:?}\n{stderr}");
    assert!(ok > 50, "the request loop barely ran: {ok}");
    for i in 1..=12 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"), "host {i}");
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    let evs = events(&events_file);
    let staged = max_concurrent_stage(&evs);
    assert!(
        (1..=3).contains(&staged),
        "up to 3 hosts may stage at once, saw {staged}"
    );
    let batches: Vec<usize> = evs
        .iter()
        .filter(|e| e["type"] == "batch_started")
        .map(|e| e["hosts"].as_array().unwrap().len())
        .collect();
    assert_eq!(batches, [1, 4, 4, 3]);
    assert_eq!(evs.last().unwrap()["type"], "run_finished");
    assert_eq!(evs.last().unwrap()["exit_code"], 0);
    // The journal holds the same events.
    let run = evs[0]["run"].as_str().unwrap();
    let journal = events(&fleet.dir.join(".tranche/runs").join(run).join("journal.jsonl"));
    assert_eq!(journal.len(), evs.len());

    // The same release again changes nothing and uploads nothing.
    let again_file = fleet.dir.join("again.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        again_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&again_file);
    let stages: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "stage")
        .collect();
    assert_eq!(stages.len(), 12);
    assert!(stages.iter().all(|e| e["status"] == "skipped"), "{stages:?}");
    assert!(
        !evs.iter().any(|e| e["step"] == "deregister"),
        "a second run must not touch the registry"
    );
    assert_eq!(
        evs.iter()
            .filter(|e| e["type"] == "host_finished" && e["status"] == "skipped")
            .count(),
        12
    );
}

#[test]
fn pull_mode_and_a_wrong_checksum() {
    let fleet = Fleet::up(2, 3);
    fleet.install("1.0.0");
    // A file server on loopback for the hosts to pull from.
    let port = 18200 + (std::process::id() % 500) as u16;
    let dir = fleet.dir.join("artifacts");
    let server = FileServer::start(
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
    let sha2 = fleet.sha256("2.0.0");
    let pb = fleet.playbook(
        "pull.yml",
        "2.0.0",
        &format!("artifact:\n  url: \"http://127.0.0.1:{port}/demo-2.0.0.tar.gz\"\n  sha256: \"{sha2}\"\nrollout:\n  canary: 1\n  batch: 2\n"),
    );
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }

    // 3.0.0 is announced with the checksum of another file: every host fails at stage, before
    // any host leaves the load balancer.
    let sha1 = fleet.sha256("1.0.0");
    let bad = fleet.playbook(
        "bad-sum.yml",
        "3.0.0",
        &format!("artifact:\n  url: \"http://127.0.0.1:{port}/demo-2.0.0.tar.gz\"\n  sha256: \"{sha1}\"\nrollout:\n  canary: 1\n  batch: 2\n  max_failures: 5\n"),
    );
    let ev = fleet.dir.join("bad.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        bad.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    drop(server);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
    let evs = events(&ev);
    assert!(
        !evs.iter().any(|e| e["step"] == "deregister"),
        "no host may be deregistered after a failed stage"
    );
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
        assert!(
            !fleet.srv(i).join("demo/releases/3.0.0").exists(),
            "a bad download must not be unpacked"
        );
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

#[test]
fn unknown_host_key_and_unreachable_host_fail_preflight_and_change_nothing() {
    let fleet = Fleet::up(3, 3);
    fleet.install("1.0.0");
    let pb = fleet.playbook(
        "release.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n",
    );

    // A known_hosts file that lacks the hosts: refused, nothing touched.
    let empty = fleet.dir.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let out = fleet.release_with_known_hosts(&pb, &empty, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("host key verification for h01"), "{stderr}");
    assert!(stderr.contains("--accept-new-host-keys"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "an unknown key must not be recorded without the flag"
    );

    // A changed key: the known_hosts line names another key.
    let other = std::fs::read_to_string(fleet.known_hosts()).unwrap();
    let mut lines: Vec<String> = other.lines().map(str::to_string).collect();
    let second_key = lines[1].split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    lines[0] = format!("{}.1 {second_key}", fleet.net);
    let changed = fleet.dir.join("changed_known_hosts");
    std::fs::write(&changed, lines.join("\n") + "\n").unwrap();
    let out = fleet.release_with_known_hosts(&pb, &changed, &["--accept-new-host-keys"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("does NOT match"), "{stderr}");

    // An unreachable host in the inventory: preflight fails for it, nothing is changed anywhere.
    let inv = std::fs::read_to_string(fleet.inventory()).unwrap();
    let with_dead = inv.replace(
        "      hosts:\n",
        &format!(
            "      hosts:\n        dead: {{ ansible_host: {}.99, zone: z9 }}\n",
            fleet.net
        ),
    );
    let inv2 = fleet.dir.join("with-dead.yml");
    std::fs::write(&inv2, with_dead).unwrap();
    let out = fleet.tranche(&["release", "-i", inv2.to_str().unwrap(), pb.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("connecting to") && stderr.contains(".99:22"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"), "host {i}");
        assert!(
            !fleet.srv(i).join("demo/releases/2.0.0").exists(),
            "nothing may be staged when preflight fails"
        );
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());

    // With --accept-new-host-keys unknown keys are trusted on first use, recorded once, and the
    // run says so.
    let tofu = fleet.dir.join("tofu_known_hosts");
    let out = fleet.release_with_known_hosts(&pb, &tofu, &["--accept-new-host-keys"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("recorded a new").count(), 3, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&tofu)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count(),
        3
    );
}

#[test]
fn a_failing_health_check_reverts_the_canary_and_stops() {
    let fleet = Fleet::up(4, 3);
    fleet.install("1.0.0");
    // 1.0.0 was installed by another tool: releasing the same 1.0.0 adopts the identical folder
    // (a checksum marker is added) instead of refusing or replacing the live release.
    let same = fleet.playbook("same.yml", "1.0.0", "artifact:\n  path: artifacts/demo-1.0.0.tar.gz\n");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        same.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(fleet.srv(1).join("demo/releases/1.0.0/.tranche-sha256"))
            .unwrap()
            .trim(),
        fleet.sha256("1.0.0")
    );
    let pb = fleet.playbook(
        "bad.yml",
        "bad",
        "artifact:\n  path: artifacts/demo-bad.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n",
    );
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("answered 500"), "{stderr}");
    for i in 1..=3 {
        assert_eq!(
            fleet.current(i).as_deref(),
            Some("1.0.0"),
            "host {i} must be back on 1.0.0"
        );
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

/// The nice value of every `curl` whose command line contains `needle` (the fleet's hosts share
/// this machine's process table).
fn nice_of_curl(needle: &str) -> Vec<i64> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.starts_with("curl ") || !cmdline.contains(needle) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Field 19 is the nice value; the fields after the `(comm)` start at field 3.
        if let Some(n) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(16))
            .and_then(|n| n.parse().ok())
        {
            found.push(n);
        }
    }
    found
}

#[test]
fn staging_yields_the_cpu_to_the_service() {
    // Staging is background work on hosts that still serve: a pull's download (and the hash and
    // unpacking after it) runs under `nice -n 10`. A file server that sends 64 KiB every 100 ms
    // makes the download of a 1 MiB artifact last long enough to find curl on the hosts and read
    // its nice value (curl's own --limit-rate lets a download this small through at once).
    let fleet = Fleet::up(26, 2);
    fleet.install("1.0.0");
    let (_, sha) = fleet.big_artifact("2.0.0", 1024);
    let port = 18750 + (std::process::id() % 100) as u16;
    let slow = r#"
import http.server, os, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        data = open(os.path.join(sys.argv[2], self.path.lstrip('/')), 'rb').read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        for i in range(0, len(data), 65536):
            self.wfile.write(data[i:i + 65536])
            self.wfile.flush()
            time.sleep(0.1)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"#;
    let dir = fleet.dir.join("artifacts");
    let server = FileServer::start(
        port,
        &["-c".as_ref(), slow.as_ref(), port.to_string().as_ref(), dir.as_os_str()],
    );
    let url = format!("http://127.0.0.1:{port}/big-2.0.0.tar.gz");
    let pb = fleet.playbook(
        "niced.yml",
        "2.0.0",
        &format!("artifact:\n  url: \"{url}\"\n  sha256: \"{sha}\"\nrollout:\n  canary: 0\n  batch: 2\n  stage: {{ concurrency: 2 }}\n"),
    );
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args([
            "release",
            "-i",
            fleet.inventory().to_str().unwrap(),
            pb.to_str().unwrap(),
        ])
        .args(["--known-hosts", fleet.known_hosts().to_str().unwrap(), "--no-progress"])
        .env("CI", "true")
        .current_dir(&fleet.dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while run.try_wait().unwrap().is_none() && Instant::now() < deadline {
        seen.extend(nice_of_curl(&url));
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = run.wait().unwrap();
    let mut stderr = String::new();
    run.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    drop(server);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!seen.is_empty(), "curl was never seen downloading on the hosts");
    assert!(seen.iter().all(|n| *n == 10), "nice values of the downloads: {seen:?}");
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}
