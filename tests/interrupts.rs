//! Waits that see the operator, and hosts that are never left out of the registry silently
//! (issue 11, findings 7 and 10), against the real fleet. Slots 65-70.

mod common;

use common::{events, signal, wait_event, wait_exit, Fleet, Service};

const SLOW_STOP: &str = "stop:\n  command: \"sleep 2; /srv/demo/current/bin/stop\"\n  timeout: 30s\n";

fn releases(fleet: &Fleet) -> Vec<String> {
    (1..=fleet.hosts)
        .map(|i| fleet.current(i).unwrap_or_default())
        .collect()
}

fn release_args<'a>(inv: &'a str, pb: &'a str, ev: &'a str) -> Vec<&'a str> {
    vec!["release", "-i", inv, pb, "--events", ev, "--yes"]
}

/// An hour's pause after the canary; `sig` while it waits ends the run at once (exit 130), the
/// canary on the new release and the rest untouched, every host in HAProxy.
fn signal_during_a_pause(slot: u16, sig: &str) {
    let fleet = Fleet::up(slot, 2);
    fleet.install("1.0.0");
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  canary_pause: 1h\n";
    let pb = fleet.playbook("r.yml", "2.0.0", body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &["--yes"]);
    wait_event(&ev, 60, |e| e["type"] == "paused");
    let t = std::time::Instant::now();
    signal(&child, sig);
    let code = wait_exit(&mut child, 20);
    let stderr = fleet.stderr_of("run");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(t.elapsed().as_secs() < 10, "took {:?} after {sig}", t.elapsed());
    assert_eq!(releases(&fleet), ["2.0.0", "1.0.0"], "{stderr}");
    assert!(fleet.all_up(), "{:?}\n{stderr}", fleet.servers());
    let last = events(&ev).pop().unwrap();
    assert_eq!(last["type"], "run_finished", "{last}");
    assert_eq!(last["exit_code"], 130, "{last}");
    assert!(stderr.contains("`tranche resume"), "{stderr}");
}

#[test]
fn ctrl_c_during_a_pause_ends_the_run_at_once() {
    signal_during_a_pause(65, "-INT");
}

#[test]
fn sighup_during_a_pause_is_an_interruption_with_the_record_written() {
    signal_during_a_pause(66, "-HUP");
}

/// The metric gate watches for ten minutes after the canary; Ctrl-C during that window ends
/// the run at once (a real Prometheus scraping the hosts).
#[test]
fn ctrl_c_during_the_gate_window_ends_the_run_at_once() {
    let fleet = Fleet::up(70, 2);
    fleet.install("1.0.0");
    let targets: Vec<String> = (1..=2).map(|i| format!("{}.{i}:8080", fleet.net)).collect();
    let prom = Service::up("prometheus", 29370, &["--scrape", &targets.join(","), "--wait-scrape"]);
    let body = format!(
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  gate:\n    prometheus: {}\n    query: 'sum(rate(demo_errors_total[5s]))'\n    max: 0.01\n    for: 10m\n",
        prom.url()
    );
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &["--yes"]);
    wait_event(&ev, 60, |e| e["type"] == "batch_finished" && e["batch"] == 1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = std::time::Instant::now();
    signal(&child, "-INT");
    let code = wait_exit(&mut child, 30);
    let stderr = fleet.stderr_of("run");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
    assert_eq!(releases(&fleet), ["2.0.0", "1.0.0"], "{stderr}");
    assert!(fleet.all_up(), "{:?}\n{stderr}", fleet.servers());
}

/// What a CI cancel does (GitHub Actions: SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after
/// that): the SIGTERM does not abandon the host in flight, which finishes and is back in
/// HAProxy; the log names it while it finishes.
#[test]
fn ci_cancel_sigint_then_sigterm_lets_the_host_in_flight_finish() {
    let fleet = Fleet::up(67, 3);
    fleet.install("1.0.0");
    let body =
        format!("artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n{SLOW_STOP}");
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &["--yes"]);
    wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h02" && e["step"] == "stop"
    });
    signal(&child, "-INT");
    std::thread::sleep(std::time::Duration::from_millis(300));
    signal(&child, "-TERM");
    let code = wait_exit(&mut child, 60);
    let stderr = fleet.stderr_of("run");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("SIGTERM again: hosts in flight go on finishing: h02 (stop)"),
        "{stderr}"
    );
    // h02 finished its pipeline: on 2.0.0 and back in HAProxy; h03 was not started.
    assert_eq!(releases(&fleet), ["2.0.0", "2.0.0", "1.0.0"], "{stderr}");
    assert!(fleet.all_up(), "{:?}\n{stderr}", fleet.servers());
    assert!(events(&ev)
        .iter()
        .any(|e| e["type"] == "host_finished" && e["host"] == "h02" && e["status"] == "ok"));
}

/// A deregister command that takes the host out of HAProxy and then fails (as a drain cut
/// short, or an HTTP answer lost after the server acted, would): the host is put back, not
/// reported as "not changed" while it sits in MAINT.
#[test]
fn a_deregister_that_acted_before_it_failed_puts_the_host_back() {
    let fleet = Fleet::up(68, 2);
    fleet.install("1.0.0");
    let helper = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/fleet_helper.py");
    let api = format!("/usr/bin/python3 {} api 127.0.0.1:{}", helper.display(), fleet.api_port);
    let registry = format!(
        "registry:\n  kind: command\n  deregister: \"{api} set server demo/{{{{ host.name }}}} state maint >/dev/null; exit 1\"\n  register: \"{api} set server demo/{{{{ host.name }}}} state ready\"\n"
    );
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  max_failures: 2\n";
    let pb = fleet.playbook_with("r.yml", "2.0.0", "fleet", body, &registry);
    let ev = fleet.dir.join("ev.jsonl");
    let inv = fleet.inventory();
    let out = fleet.tranche(&release_args(
        inv.to_str().unwrap(),
        pb.to_str().unwrap(),
        ev.to_str().unwrap(),
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(releases(&fleet), ["1.0.0", "1.0.0"], "{stderr}");
    // Both were put back into HAProxy by the register command.
    assert!(fleet.wait_all_up(10), "{:?}\n{stderr}", fleet.servers());
    assert!(stderr.contains("deregister failed"), "{stderr}");
    let evs = events(&ev);
    for h in ["h01", "h02"] {
        assert!(
            evs.iter().any(|e| e["type"] == "step_finished"
                && e["host"] == h
                && e["step"] == "register"
                && e["status"] == "ok"),
            "{h} was not put back: {stderr}"
        );
    }
}

/// Repack `from` with one more file: the same release, rebuilt (another sha256).
fn rebuild(fleet: &Fleet, from: &std::path::Path, to: &std::path::Path) {
    let work = fleet.dir.join("rebuild");
    std::fs::create_dir_all(&work).unwrap();
    let sh = format!(
        "set -e; tar -xzf '{}' -C '{w}'; echo rebuilt > '{w}/REBUILT'; tar -czf '{}' -C '{w}' .",
        from.display(),
        to.display(),
        w = work.display()
    );
    assert!(std::process::Command::new("sh")
        .args(["-c", &sh])
        .status()
        .unwrap()
        .success());
}

/// A run stopped at once while h02 was out of HAProxy. The artifact is rebuilt under the same
/// version: `resume` refuses, since the run record holds the artifact's sha256. With the
/// original artifact back, h02's staging fails on resume (its releases/2.0.0 now holds another
/// build's checksum), and h02, which the interrupted run had taken out and stopped, is brought
/// back to 1.0.0 and into HAProxy instead of being reported "not changed".
#[test]
fn resume_refuses_a_rebuilt_artifact_and_never_leaves_a_cut_off_host_out() {
    let fleet = Fleet::up(69, 3);
    fleet.install("1.0.0");
    let artifact = fleet.dir.join("artifacts/build.tar.gz");
    std::fs::copy(fleet.artifact("2.0.0"), &artifact).unwrap();
    let body = format!(
        "artifact:\n  path: artifacts/build.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n  max_failures: 1\n{SLOW_STOP}"
    );
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &["--yes"]);
    let started = wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h02" && e["step"] == "stop"
    });
    let run_id = started["run"].as_str().unwrap().to_string();
    signal(&child, "-INT");
    std::thread::sleep(std::time::Duration::from_millis(200));
    signal(&child, "-INT");
    assert_eq!(wait_exit(&mut child, 30), Some(130), "{}", fleet.stderr_of("run"));

    rebuild(&fleet, &fleet.artifact("2.0.0"), &artifact);
    let out = fleet.tranche(&["resume", &run_id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the artifact changed"), "{stderr}");
    std::fs::copy(fleet.artifact("2.0.0"), &artifact).unwrap();

    let marker = fleet.srv(2).join("demo/releases/2.0.0/.tranche-sha256");
    assert!(marker.exists(), "h02 was staged before the interruption");
    std::fs::write(&marker, format!("{}\n", "0".repeat(64))).unwrap();
    let rev = fleet.dir.join("resume.jsonl");
    let out = fleet.tranche(&["resume", &run_id, "--events", rev.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0", "1.0.0", "2.0.0"], "{stderr}");
    assert!(fleet.wait_all_up(10), "{:?}\n{stderr}", fleet.servers());
    let h02 = events(&rev)
        .into_iter()
        .find(|e| e["type"] == "host_finished" && e["host"] == "h02")
        .expect("h02 finished");
    assert_eq!(h02["status"], "reverted", "{h02}");
    assert!(h02["msg"].as_str().unwrap().contains("back on 1.0.0"), "{h02}");
}
