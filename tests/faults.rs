//! Fault tests against the real fleet (issue: safe under failure). Each one asserts the exit
//! code, the HAProxy state of every server and the release on every host afterwards.

mod common;

use common::{events, signal, wait_event, wait_exit, Fleet};

const SLOW_STOP: &str = "stop:\n  command: \"sleep 1; /srv/demo/current/bin/stop\"\n  timeout: 30s\n";

fn releases(fleet: &Fleet) -> Vec<String> {
    (1..=fleet.hosts)
        .map(|i| fleet.current(i).unwrap_or_default())
        .collect()
}

fn args<'a>(fleet_inv: &'a str, pb: &'a str, ev: &'a str) -> Vec<&'a str> {
    vec!["release", "-i", fleet_inv, pb, "--events", ev]
}

#[test]
fn sshd_killed_mid_batch_fails_that_host_only_and_keeps_it_serving() {
    let fleet = Fleet::up(9, 4);
    fleet.install("1.0.0");
    let body = format!("artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n  max_failures: 1\n{SLOW_STOP}");
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &[]);
    // h03's sshd dies (with the connection tranche holds to it) while batch 2 runs, before h03's
    // turn. (Killed during one of h03's own commands, that command may go on running on the
    // host, and the outcome would depend on what it does.)
    wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h02" && e["step"] == "stop"
    });
    fleet.kill_sshd(3);
    let code = wait_exit(&mut child, 120);
    let stderr = fleet.stderr_of("run");
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0", "2.0.0", "1.0.0", "2.0.0"], "{stderr}");
    // h03 still serves 1.0.0 (its stop could not run), so it is put back.
    assert!(
        stderr.contains("it still serves 1.0.0 and is back in the registry"),
        "{stderr}"
    );
    assert!(fleet.all_up(), "{:?}\n{stderr}", fleet.servers());
    let last = events(&ev).pop().unwrap();
    assert_eq!(last["exit_code"], 1);
}

#[test]
fn connection_cut_during_upload_fails_the_host_before_it_leaves_the_balancer() {
    let fleet = Fleet::up(10, 3);
    fleet.install("1.0.0");
    // A 24 MB artifact, uploaded at 4 MiB/s: the upload takes a few seconds.
    let big = fleet.dir.join("big");
    std::fs::create_dir_all(&big).unwrap();
    let ok = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; cd {d}; tar xzf ../artifacts/demo-2.0.0.tar.gz; head -c 24000000 /dev/urandom > big.bin; tar czf ../artifacts/demo-big.tar.gz .",
            d = big.display()
        ))
        .status()
        .unwrap();
    assert!(ok.success());
    let body = "artifact:\n  path: artifacts/demo-big.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n  max_failures: 1\n  stage:\n    concurrency: 3\n    bandwidth: 4MiB/s\n";
    let pb = fleet.playbook("r.yml", "2.0.0", body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &[]);
    wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h02" && e["step"] == "stage"
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fleet.kill_sshd(2);
    let code = wait_exit(&mut child, 180);
    let stderr = fleet.stderr_of("run");
    assert_eq!(code, Some(1), "{stderr}");
    let evs = events(&ev);
    assert!(
        !evs.iter().any(|e| e["host"] == "h02" && e["step"] == "deregister"),
        "h02 must not leave the balancer"
    );
    let stage = evs
        .iter()
        .find(|e| e["type"] == "step_finished" && e["host"] == "h02" && e["step"] == "stage")
        .unwrap();
    assert_eq!(stage["status"], "failed", "{stage}");
    assert_eq!(releases(&fleet), ["2.0.0", "1.0.0", "2.0.0"]);
    assert!(
        !fleet.srv(2).join("demo/releases/2.0.0").exists(),
        "a cut upload must not be unpacked"
    );
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

#[test]
fn a_failing_host_past_the_budget_rolls_back_every_host_the_run_changed() {
    let fleet = Fleet::up(11, 4);
    fleet.install("1.0.0");
    // 2.0.0 starts everywhere, but h03 fails its after_start hook.
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 0\n  batch: 2\n  max_failures: 0\n  on_failure: rollback\nhooks:\n  after_start: \"test {{ host.name }} != h03\"\n";
    let pb = fleet.playbook("r.yml", "2.0.0", body);
    let ev = fleet.dir.join("ev.jsonl");
    let inv = fleet.inventory();
    let out = fleet.tranche(&args(inv.to_str().unwrap(), pb.to_str().unwrap(), ev.to_str().unwrap()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(releases(&fleet), ["1.0.0"; 4], "{stderr}");
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    let evs = events(&ev);
    let rolled: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "host_finished" && e["status"] == "reverted")
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    // h03 failed and was reverted; h04 (same batch) and h01, h02 had passed: rolled back.
    assert_eq!(rolled.len(), 4, "{rolled:?}");

    // The same with a budget of 1: h03 is reverted, the run goes on, exit 1. The CI reports
    // say so: JUnit (well-formed, a failure for h03 naming the step and its stderr) and the
    // Markdown summary, also appended to $GITHUB_STEP_SUMMARY.
    let loud = body.replace("max_failures: 0", "max_failures: 1").replace(
        "\"test {{ host.name }} != h03\"",
        "\"test {{ host.name }} != h03 || { echo cache warm-up failed on {{ host.name }} >&2; exit 1; }\"",
    );
    let pb = fleet.playbook("r1.yml", "2.0.0", &loud);
    let (junit, summary, gh) = (fleet.dir.join("j.xml"), fleet.dir.join("s.md"), fleet.dir.join("gh.md"));
    std::fs::write(&gh, "earlier step\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args([
            "release",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--no-progress",
        ])
        .args(["--known-hosts", fleet.known_hosts().to_str().unwrap()])
        .args([
            "--junit",
            junit.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ])
        .env("GITHUB_STEP_SUMMARY", &gh)
        .current_dir(&fleet.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0", "2.0.0", "1.0.0", "2.0.0"], "{stderr}");
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    let parsed = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); print(len(d.getElementsByTagName('testcase')), len(d.getElementsByTagName('failure')))"])
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        "4 1",
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testcase name=\"h03\" classname=\"batch 2\""), "{xml}");
    assert!(
        xml.contains(
            "<failure type=\"start\" message=\"start: hooks.after_start failed: exit 1: cache warm-up failed on h03\">"
        ),
        "{xml}"
    );
    assert!(
        xml.contains("stderr (last lines):\ncache warm-up failed on h03"),
        "{xml}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("## tranche: release demo 2.0.0 completed with reverted hosts (exit 1)"),
        "{md}"
    );
    assert!(
        md.contains("| h03 | 2 | start | reverted | hooks.after_start failed: exit 1: cache warm-up failed on h03 |"),
        "{md}"
    );
    assert_eq!(std::fs::read_to_string(&gh).unwrap(), format!("earlier step\n{md}"));

    // A version whose health check never passes, budget 1: the canary is reverted, the next
    // batch fails too, past the budget: everything this run touched is back on its release.
    let bad = fleet.playbook(
        "bad.yml",
        "bad",
        "artifact:\n  path: artifacts/demo-bad.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n  max_failures: 1\n",
    );
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0", "2.0.0", "1.0.0", "2.0.0"], "{stderr}");
    assert!(fleet.all_up(), "{:?}", fleet.servers());

    // `tranche rollback` takes the hosts back to the release before (h03 is already there).
    let pb = fleet.playbook("plain.yml", "2.0.0", "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n");
    let out = fleet.tranche(&["rollback", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(releases(&fleet), ["1.0.0"; 4], "{stderr}");
    // The last line says where the hosts went, not the playbook's version.
    assert!(
        stderr.contains("demo is back on its previous release on every targeted host"),
        "{stderr}"
    );
    assert!(!stderr.contains("demo 2.0.0 is on every targeted host"), "{stderr}");
    // And --to a release still on the hosts.
    let out = fleet.tranche(&[
        "rollback",
        "-i",
        inv.to_str().unwrap(),
        pb.to_str().unwrap(),
        "--to",
        "2.0.0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(releases(&fleet), ["2.0.0"; 4]);
    let out = fleet.tranche(&[
        "rollback",
        "-i",
        inv.to_str().unwrap(),
        pb.to_str().unwrap(),
        "--to",
        "9.9.9",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("release 9.9.9 is not on the host"), "{stderr}");
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

#[test]
fn sigint_once_lets_the_batch_finish_then_resume_continues() {
    let fleet = Fleet::up(12, 4);
    fleet.install("1.0.0");
    let body =
        format!("artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n{SLOW_STOP}");
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &[]);
    wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h02" && e["step"] == "stop"
    });
    signal(&child, "-INT");
    let code = wait_exit(&mut child, 60);
    let stderr = fleet.stderr_of("run");
    assert_eq!(code, Some(130), "{stderr}");
    // h02 was in flight and finished its pipeline; h03 and h04 never started.
    assert_eq!(releases(&fleet), ["2.0.0", "2.0.0", "1.0.0", "1.0.0"], "{stderr}");
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    assert!(stderr.contains("tranche resume"), "{stderr}");

    let out = fleet.tranche(&["resume", "--events", fleet.dir.join("resume.jsonl").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("2 of 4 hosts left"), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0"; 4]);
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    // Staging ran ahead: the resumed hosts already had the artifact and got nothing again.
    let evs = events(&fleet.dir.join("resume.jsonl"));
    assert!(evs
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "stage")
        .all(|e| e["status"] == "skipped"));
}

#[test]
fn sigint_twice_stops_at_once_and_resume_brings_the_host_back() {
    let fleet = Fleet::up(13, 3);
    fleet.install("1.0.0");
    let body =
        format!("artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n{SLOW_STOP}");
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_release("run", &pb, &ev, &[]);
    wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h02" && e["step"] == "stop"
    });
    signal(&child, "-INT");
    std::thread::sleep(std::time::Duration::from_millis(200));
    signal(&child, "-INT");
    let code = wait_exit(&mut child, 30);
    assert_eq!(code, Some(130), "{}", fleet.stderr_of("run"));
    let stopped = wait_event(&ev, 5, |e| {
        e["type"] == "warning" && e["msg"].as_str().unwrap_or("").starts_with("stopped at once")
    });
    assert!(stopped["msg"].as_str().unwrap().contains("h02 (stop)"), "{stopped}");
    // h02 was cut off mid-pipeline: out of the balancer. Resume puts it through again.
    let out = fleet.tranche(&["resume"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0"; 3], "{stderr}");
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

#[test]
fn controller_killed_then_resume_finishes_the_same_as_an_uninterrupted_run() {
    let fleet = Fleet::up(14, 4);
    fleet.install("1.0.0");
    let body =
        format!("artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n{SLOW_STOP}");
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let inv = fleet.inventory();
    let mut child = fleet.spawn_release("run", &pb, &ev, &[]);
    let started = wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h02" && e["step"] == "stop"
    });
    let run_id = started["run"].as_str().unwrap().to_string();
    signal(&child, "-KILL");
    wait_exit(&mut child, 10);
    // The lock is still held by the dead run: another run is refused...
    let other = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("locked by run {run_id}")), "{stderr}");
    // ... a changed playbook is refused by resume unless --force ...
    let original = std::fs::read_to_string(&pb).unwrap();
    std::fs::write(&pb, format!("{original}# edited\n")).unwrap();
    let out = fleet.tranche(&["resume", &run_id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the playbook changed"), "{stderr}");
    std::fs::write(&pb, original).unwrap();
    // ... and resume (the same run) takes its locks back and finishes.
    let rev = fleet.dir.join("resume.jsonl");
    let out = fleet.tranche(&["resume", &run_id, "--events", rev.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0"; 4], "{stderr}");
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    let evs = events(&rev);
    assert!(
        !evs.iter().any(|e| e["host"] == "h01" && e["type"] == "host_started"),
        "h01 had finished"
    );
    assert!(evs
        .iter()
        .any(|e| e["host"] == "h02" && e["type"] == "host_finished" && e["status"] == "ok"));
    // Every lock is released at the end.
    for i in 1..=4 {
        assert!(
            !fleet.srv(i).join("demo/.tranche-lock").exists(),
            "host {i} still locked"
        );
    }
}

#[test]
fn two_runs_at_once_on_overlapping_hosts_and_unlock() {
    let fleet = Fleet::up(15, 3);
    fleet.install("1.0.0");
    let body =
        format!("artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n{SLOW_STOP}");
    let pb = fleet.playbook("r.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let inv = fleet.inventory();
    let mut first = fleet.spawn_release("first", &pb, &ev, &[]);
    let started = wait_event(&ev, 60, |e| e["type"] == "batch_started");
    let run_id = started["run"].as_str().unwrap().to_string();
    // A second run on h02..h03 overlaps: refused, naming the holder; nothing of it happens.
    let pb1 = fleet.playbook("r1.yml", "1.0.0", "artifact:\n  path: artifacts/demo-1.0.0.tar.gz\n");
    let second = fleet.tranche(&[
        "release",
        "-i",
        inv.to_str().unwrap(),
        pb1.to_str().unwrap(),
        "--limit",
        "h02:h03",
    ]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("locked by run {run_id} by ")), "{stderr}");
    // plan --check reports the lock too, and takes none; --events has it host by host.
    let check_ev = fleet.dir.join("check.jsonl");
    let check = fleet.tranche_raw(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        pb1.to_str().unwrap(),
        "--check",
        "--known-hosts",
        fleet.known_hosts().to_str().unwrap(),
        "--events",
        check_ev.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("locked by run"), "{stderr}");
    let evs = events(&check_ev);
    let mut locked: Vec<&str> = evs
        .iter()
        .filter(|e| e["type"] == "step_finished" && e["step"] == "preflight")
        .filter(|e| e["status"] == "failed" && e["msg"].as_str().unwrap().contains(&format!("locked by run {run_id}")))
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    locked.sort();
    assert_eq!(locked, ["h01", "h02", "h03"], "{evs:?}");
    assert_eq!(evs.last().unwrap()["exit_code"], 3);
    assert_eq!(wait_exit(&mut first, 120), Some(0), "{}", fleet.stderr_of("first"));
    assert_eq!(releases(&fleet), ["2.0.0"; 3]);
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    // With the first run done, plan --check passes and changes nothing.
    let check = fleet.tranche_raw(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        pb1.to_str().unwrap(),
        "--check",
        "--known-hosts",
        fleet.known_hosts().to_str().unwrap(),
        "--events",
        "-",
    ]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!fleet.srv(1).join("demo/.tranche-lock").exists());
    let ok: Vec<serde_json::Value> = String::from_utf8_lossy(&check.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["type"] == "step_finished" && e["step"] == "preflight" && e["status"] == "ok")
        .collect();
    assert_eq!(ok.len(), 3, "{ok:?}");

    // A lock left by a dead run (not expired) blocks; `tranche unlock` breaks it.
    let lock = fleet.srv(2).join("demo/.tranche-lock");
    std::fs::create_dir_all(&lock).unwrap();
    let far = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3000;
    std::fs::write(
        lock.join("owner"),
        format!("run=dead-run\noperator=bob\ncontroller=ci-7\nstarted=2026-11-22T00:00:00.000Z\nexpires={far}\n"),
    )
    .unwrap();
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb1.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("locked by run dead-run by bob on ci-7"), "{stderr}");
    assert_eq!(releases(&fleet), ["2.0.0"; 3], "nothing may change when a lock is held");
    let out = fleet.tranche_raw(&[
        "unlock",
        "-i",
        inv.to_str().unwrap(),
        pb1.to_str().unwrap(),
        "--known-hosts",
        fleet.known_hosts().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("h02: removed the lock of run dead-run"), "{stderr}");
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb1.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(releases(&fleet), ["1.0.0"; 3]);

    // An expired lock is taken over with a warning.
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(
        lock.join("owner"),
        "run=old-run\noperator=bob\ncontroller=ci-7\nstarted=2026-11-22T00:00:00.000Z\nexpires=1\n",
    )
    .unwrap();
    let out = fleet.tranche(&["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("took over an expired lock (run old-run"), "{stderr}");
}
