//! Blue-green on the real local fleet (slots 102 to 105, 121 and 122): two host groups behind one HAProxy
//! backend, traffic moved by weights over the runtime API, under a request loop.

mod common;

use std::path::PathBuf;

use common::bluegreen::{add_error_gate, green_live_first, groups, prometheus, switched_events, tranche_with};
use common::{Fleet, Requests};

fn tranche(fleet: &Fleet, args: &[&str], inventory: &std::path::Path) -> (Option<i32>, String) {
    tranche_with(fleet, args, Some(inventory))
}

fn playbook(fleet: &Fleet, name: &str, version: &str, extra: &str) -> PathBuf {
    let registry = format!(
        "registry:\n  kind: haproxy\n  address: 127.0.0.1:{}\n  backend: demo\n  server: \"{{{{ host.name }}}}\"\n",
        fleet.api_port
    );
    let body = format!(
        "artifact:\n  path: artifacts/demo-{version}.tar.gz\nrollout:\n  canary: 1\n  batch: 3\n  stage:\n    concurrency: 3\n\
         strategy: blue-green\nblue_green:\n  blue: blue\n  green: green\n{extra}"
    );
    fleet.playbook_with(name, version, "all", &body, &registry)
}

/// HAProxy's weight of each server of backend `demo` (`show servers state`, column 8).
fn weights(fleet: &Fleet) -> Vec<(String, u32)> {
    fleet
        .api("show servers state demo")
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[3].to_string(), c[7].parse().unwrap())
        })
        .collect()
}

/// The hosts (1-based) whose server has weight.
fn live(fleet: &Fleet) -> Vec<usize> {
    weights(fleet)
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(s, _)| s.trim_start_matches('h').parse().unwrap())
        .collect()
}

/// `tranche release` of `pb` in the background, its events to `ev` (`fleet.stderr_of(name)`).
fn spawn_release(
    fleet: &Fleet,
    name: &str,
    pb: &std::path::Path,
    inv: &std::path::Path,
    ev: &std::path::Path,
) -> std::process::Child {
    let main = fleet.inventory();
    fleet.spawn_tranche(
        name,
        &[
            "release",
            "-i",
            main.to_str().unwrap(),
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--events",
            ev.to_str().unwrap(),
        ],
    )
}

/// The switch time tranche printed, in milliseconds.
fn switch_ms(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("(first to last server)"))
        .unwrap_or_else(|| panic!("no switch line:\n{stderr}"));
    let t = line.split(" in ").nth(1).unwrap().split_whitespace().next().unwrap();
    t.strip_suffix("ms").unwrap().parse::<f64>().unwrap() as u64
}

#[test]
fn groups_release_switch_and_switch_back_without_dropping_a_request() {
    let fleet = Fleet::up(102, 12);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    // The first blue-green release onto a fleet that rolling releases left with every host in
    // traffic: no side is recorded live and blue's hosts run 1.0.0, so releasing blue would stop
    // hosts that serve. Refused, nothing changed.
    let requests = Requests::start(fleet.lb_port);
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", "");
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("no side of demo is recorded live yet, and the blue side's hosts already run a release (h01 runs 1.0.0, h02 runs 1.0.0, h03 runs 1.0.0, h04 runs 1.0.0, h05 runs 1.0.0 and 1 more)"),
        "{stderr}"
    );
    assert!(stderr.contains("`tranche switch --to green`"), "{stderr}");
    for i in 1..=12 {
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"), "host {i}");
    }
    assert!(!fleet.srv(1).join("demo/.tranche-live").exists());
    // Green made live by hand, then blue gets 2.0.0 and all traffic, under load.
    green_live_first(&fleet, &pb, &inv);
    assert_eq!(live(&fleet), (7..=12).collect::<Vec<_>>(), "{:?}", weights(&fleet));
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("releasing 2.0.0 on the blue side"), "{stderr}");
    assert_eq!(live(&fleet), (1..=6).collect::<Vec<_>>(), "{:?}", weights(&fleet));
    let (ok, failed, errors) = requests.finish();
    assert_eq!(failed, 0, "failed requests in the first release: {errors:?}");
    assert!(ok > 20, "the request loop barely ran: {ok}");

    // Under load: 1.0.0 onto the idle green side, then every server switched at once.
    let requests = Requests::start(fleet.lb_port);
    let pb = playbook(&fleet, "bg-1.yml", "1.0.0", "");
    let (ev, junit, md) = (
        fleet.dir.join("bg-1.jsonl"),
        fleet.dir.join("bg-1.xml"),
        fleet.dir.join("bg-1.md"),
    );
    let (code, stderr) = tranche(
        &fleet,
        &[
            "release",
            pb.to_str().unwrap(),
            "--events",
            ev.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--summary",
            md.to_str().unwrap(),
        ],
        &inv,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("releasing 1.0.0 on the green side"), "{stderr}");
    // The switch is an event of the run (in the stream and the journal, before `run_finished`),
    // a JUnit test case (beside the 6 green hosts of the run), a row of the summary, and the
    // run's last line.
    let events = std::fs::read_to_string(&ev).unwrap();
    let switched = switched_events(&events);
    assert_eq!(switched.len(), 1, "{events}");
    let sw = &switched[0];
    assert_eq!(
        (&sw["from"], &sw["to"], &sw["why"], &sw["servers"], &sw["status"]),
        (
            &"blue".into(),
            &"green".into(),
            &"release".into(),
            &12.into(),
            &"ok".into()
        ),
        "{sw}"
    );
    assert!(sw["ms"].as_f64().unwrap() < 1000.0, "{sw}");
    println!("{}", events.lines().find(|l| l.contains("\"switched\"")).unwrap());
    let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "run_finished", "{events}");
    let msg = last["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("demo 1.0.0 is live on the green side (12 HAProxy servers switched in "),
        "{msg}"
    );
    println!("{msg}");
    let run = sw["run"].as_str().unwrap();
    let journal = std::fs::read_to_string(fleet.dir.join(format!(".tranche/runs/{run}/journal.jsonl"))).unwrap();
    assert_eq!(switched_events(&journal), switched, "{journal}");
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.contains("tests=\"7\" failures=\"0\""), "{junit}");
    assert!(
        junit.contains("<testcase name=\"switch to green (from blue)\" classname=\"blue-green\""),
        "{junit}"
    );
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("### Blue-green switches"), "{md}");
    assert!(md.contains("| switch to green (from blue) | 12 | "), "{md}");
    assert!(md.contains(msg), "{md}");
    assert_eq!(live(&fleet), (7..=12).collect::<Vec<_>>(), "{:?}", weights(&fleet));
    let ms = switch_ms(&stderr);
    println!(
        "{}",
        stderr.lines().find(|l| l.contains("(first to last server)")).unwrap()
    );
    assert!(ms < 1000, "12 hosts switched in {ms} ms:\n{stderr}");
    // The old side stays warm: still running its release, in HAProxy with no weight.
    for i in 1..=6 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"), "host {i}");
    }
    for i in 7..=12 {
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"), "host {i}");
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());

    // By hand, back to blue: a run of its own, journaled and streamed like a release's switch.
    let back_ev = fleet.dir.join("back.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &[
            "switch",
            pb.to_str().unwrap(),
            "--back",
            "--events",
            back_ev.to_str().unwrap(),
        ],
        &inv,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("from green to blue"), "{stderr}");
    let back = std::fs::read_to_string(&back_ev).unwrap();
    let kinds: Vec<serde_json::Value> = back.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = kinds.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["run_started", "switched", "run_finished"], "{back}");
    assert_eq!(kinds[0]["mode"], "switch", "{back}");
    assert_eq!(
        (
            &kinds[1]["from"],
            &kinds[1]["to"],
            &kinds[1]["why"],
            &kinds[1]["servers"]
        ),
        (&"green".into(), &"blue".into(), &"back".into(), &12.into()),
        "{back}"
    );
    assert_eq!(kinds[2]["exit_code"], 0, "{back}");
    println!("{}", back.lines().nth(1).unwrap());
    let back_run = kinds[0]["run"].as_str().unwrap();
    let journal = std::fs::read_to_string(fleet.dir.join(format!(".tranche/runs/{back_run}/journal.jsonl"))).unwrap();
    assert_eq!(journal.lines().count(), 3, "{journal}");
    let history = fleet.tranche_raw(&["history", "--format", "json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let entry = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["run_id"] == back_run)
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(
        (&entry["mode"], &entry["outcome"]),
        (&"switch".into(), &"ok".into()),
        "{entry}"
    );
    assert_eq!(live(&fleet), (1..=6).collect::<Vec<_>>(), "{:?}", weights(&fleet));
    assert!(switch_ms(&stderr) < 1000, "{stderr}");
    let (ok, failed, errors) = requests.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(ok > 50, "the request loop barely ran: {ok}");

    // The live side is recorded on every host, for `switch` and the next release.
    let rec = std::fs::read_to_string(fleet.srv(3).join("demo/.tranche-live")).unwrap();
    assert!(rec.starts_with("live=blue\nprevious=green\n"), "{rec}");
    let (_, stderr) = tranche(&fleet, &["status", pb.to_str().unwrap()], &inv);
    let h12 = stderr
        .lines()
        .find(|l| l.starts_with("h12"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(h12.contains("1.0.0") && h12.ends_with("live: blue"), "{stderr}");

    // Retire: the side not live (green, hosts 7 to 12) is stopped and recorded retired; blue
    // serves on without a failed request.
    let requests = Requests::start(fleet.lb_port);
    let retire_ev = fleet.dir.join("retire.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &["retire", pb.to_str().unwrap(), "--events", retire_ev.to_str().unwrap()],
        &inv,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("retired the green side of demo: stopped on 6 hosts; blue stays live"),
        "{stderr}"
    );
    let retired: Vec<serde_json::Value> = std::fs::read_to_string(&retire_ev)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(retired.len(), 3, "{retired:?}");
    assert_eq!(retired[0]["mode"], "retire");
    println!("{}", serde_json::to_string(&retired[1]).unwrap());
    assert_eq!(
        (
            &retired[1]["type"],
            &retired[1]["side"],
            &retired[1]["hosts"],
            &retired[1]["status"]
        ),
        (&"retired".into(), &"green".into(), &6.into(), &"ok".into()),
        "{retired:?}"
    );
    // HAProxy's health checks see the green instances gone (operational state 0: down).
    let down = |fleet: &Fleet| -> Vec<usize> {
        fleet
            .servers()
            .iter()
            .filter(|(_, op, _)| *op == 0)
            .map(|(s, _, _)| s.trim_start_matches('h').parse().unwrap())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while down(&fleet) != (7..=12).collect::<Vec<_>>() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(down(&fleet), (7..=12).collect::<Vec<_>>(), "{:?}", fleet.servers());
    let (ok, failed, errors) = requests.finish();
    assert_eq!(failed, 0, "failed requests while retiring: {errors:?}");
    assert!(ok > 10, "{ok}");
    let (_, stderr) = tranche(&fleet, &["status", pb.to_str().unwrap()], &inv);
    let h03 = stderr
        .lines()
        .find(|l| l.starts_with("h03"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(h03.ends_with("live: blue, green retired"), "{stderr}");
    // Switching to the retired side is refused: its servers are not up in HAProxy.
    let (code, stderr) = tranche(&fleet, &["switch", pb.to_str().unwrap()], &inv);
    assert_ne!(code, Some(0), "{stderr}");
    assert_eq!(live(&fleet), (1..=6).collect::<Vec<_>>(), "{:?}", weights(&fleet));
}

#[test]
fn a_new_side_that_fails_its_health_check_is_never_switched_to() {
    let fleet = Fleet::up(103, 4);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", "");
    green_live_first(&fleet, &pb, &inv);
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    let requests = Requests::start(fleet.lb_port);
    let pb = playbook(&fleet, "bg-bad.yml", "bad", "");
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    let (ok, failed, errors) = requests.finish();
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("traffic was not switched"), "{stderr}");
    assert!(!stderr.contains("(first to last server)"), "{stderr}");
    assert_eq!(live(&fleet), vec![1, 2], "{:?}", weights(&fleet));
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(ok > 10, "{ok}");
}

#[test]
fn a_gate_breach_after_the_switch_switches_back() {
    let fleet = Fleet::up(104, 4);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", "");
    green_live_first(&fleet, &pb, &inv);
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    let prom = prometheus(&fleet, 29402, 8080);
    // The flaky release is healthy but counts errors: the gate's watch after the switch sees
    // them, and traffic goes back to blue.
    let pb = playbook(&fleet, "bg-flaky.yml", "flaky", "");
    add_error_gate(&pb, &prom, "", "8s");
    let ev = fleet.dir.join("bg-flaky.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &["release", pb.to_str().unwrap(), "--events", ev.to_str().unwrap()],
        &inv,
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("switched demo to green"), "{stderr}");
    assert!(stderr.contains("switched back to blue"), "{stderr}");
    let events = std::fs::read_to_string(&ev).unwrap();
    let moves: Vec<(String, String)> = switched_events(&events)
        .iter()
        .map(|e| (e["why"].as_str().unwrap().into(), e["to"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        moves,
        [("release".into(), "green".into()), ("back".into(), "blue".into())],
        "{events}"
    );
    let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["type"], &last["exit_code"], &last["msg"]),
        (
            &"run_finished".into(),
            &4.into(),
            &"the metric gate failed after the switch; all traffic is back on the blue side".into()
        ),
        "{events}"
    );
    assert_eq!(live(&fleet), vec![1, 2], "{:?}", weights(&fleet));
    let rec = std::fs::read_to_string(fleet.srv(4).join("demo/.tranche-live")).unwrap();
    assert!(rec.starts_with("live=blue\n"), "{rec}");
}

#[test]
fn a_gate_breach_during_the_canary_weight_never_switches() {
    let fleet = Fleet::up(105, 4);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", "");
    green_live_first(&fleet, &pb, &inv);
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    let prom = prometheus(&fleet, 29405, 8080);
    let pb = playbook(&fleet, "bg-flaky.yml", "flaky", "  canary_weight: 10\n");
    add_error_gate(&pb, &prom, "", "8s");
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("canary: the green side takes 10% of the traffic"),
        "{stderr}"
    );
    assert!(stderr.contains("gate breached during the canary"), "{stderr}");
    assert!(!stderr.contains("switched demo to green"), "{stderr}");
    let w = weights(&fleet);
    assert_eq!(live(&fleet), vec![1, 2], "{w:?}");
    assert!(w.iter().all(|(_, w)| *w == 0 || *w == 100), "{w:?}");
    let rec = std::fs::read_to_string(fleet.srv(4).join("demo/.tranche-live")).unwrap();
    assert!(rec.starts_with("live=blue\n"), "{rec}");
}

/// Offline: a blue-green service goes back with `switch --back`, never with a host-by-host
/// rollback (which would deploy outside the slots); nothing is touched.
#[test]
fn rollback_of_a_blue_green_service_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "rollback",
            "-i",
            "tests/fixtures/inventory.yml",
            "tests/fixtures/bluegreen-slots.yml",
            "--yes",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tranche switch --back"), "{stderr}");
}

/// Offline: `plan --format json` (and so `run_started`'s plan) names the strategy and both
/// sides: each side's folder, port or group, and its hosts.
#[test]
fn the_json_plan_shows_both_sides() {
    let plan = |pb: &str| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["plan", "-i", "tests/fixtures/inventory.yml", pb, "--format", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let slots = plan("tests/fixtures/bluegreen-slots.yml");
    assert_eq!(slots["strategy"], "blue-green");
    let bg = &slots["blue_green"];
    assert_eq!(bg["shape"], "slots");
    assert_eq!(bg["sides"][0]["side"], "blue");
    assert_eq!(bg["sides"][0]["root"], "/srv/demo/blue");
    assert_eq!(bg["sides"][1]["root"], "/srv/demo/green");
    assert_eq!(bg["sides"][1]["port"], 8082);
    assert_eq!(
        bg["sides"][1]["hosts"],
        serde_json::json!(["web-01", "web-02", "web-03"])
    );
    let groups = plan("tests/fixtures/bluegreen-groups.yml");
    let bg = &groups["blue_green"];
    assert_eq!(bg["shape"], "groups");
    assert_eq!(bg["canary_weight"], 10);
    assert_eq!(bg["sides"][0]["group"], "web");
    assert_eq!(bg["sides"][0]["port"], serde_json::Value::Null);
    assert_eq!(bg["sides"][1]["hosts"], serde_json::json!(["db-01"]));
    let rolling = plan("tests/fixtures/playbook.yml");
    assert_eq!(rolling["strategy"], "rolling");
    assert_eq!(rolling["blue_green"], serde_json::Value::Null);
}

/// Offline: the plan of two host groups batches each side among its own hosts (a release goes
/// to the side not live only), and says when the gate watches. Before, the table mixed both
/// groups' hosts in one set of batches that no run follows, and said "after each batch".
#[test]
fn the_plan_of_two_groups_batches_each_side_on_its_own() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "plan",
            "-i",
            "tests/fixtures/inventory.yml",
            "tests/fixtures/bluegreen-groups.yml",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("demo 2.0.0 to 4 hosts (hosts: all), one blue-green side at a time\n"),
        "{text}"
    );
    assert!(
        text.contains("  when green is live, the blue side: 3 hosts in 3 batches\n  BATCH     HOSTS  ZONES  MEMBERS\n  1 canary      1  dc1    web-01\n"),
        "{text}"
    );
    assert!(
        text.contains("  when blue is live, the green side: 1 host in 1 batch\n  BATCH     HOSTS  ZONES  MEMBERS\n  1 canary      1  dc2    db-01\n"),
        "{text}"
    );
    assert!(
        text.contains("  gate      during the canary weight and after the switch: "),
        "{text}"
    );
}

/// Offline: a `tranche switch` by hand that died before its end (its journal has no
/// `run_finished`) is never resumed: `resume` without a run id leaves it out, and with its id
/// says why.
#[test]
fn a_switch_by_hand_is_not_resumed() {
    let state = tempfile::tempdir().unwrap();
    let id = "20261202-070000-5w17";
    let dir = state.path().join("runs").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let record = serde_json::json!({
        "run_id": id, "command": "switch", "to": "green",
        "inventories": ["/nowhere/inventory.yml"], "playbook": "/nowhere/playbook.yml",
        "limit": null, "extra_vars": [], "inventory_sha256": "", "playbook_sha256": "",
        "started": "2026-12-02T07:00:00Z"
    });
    std::fs::write(dir.join("run.json"), record.to_string()).unwrap();
    std::fs::write(
        dir.join("journal.jsonl"),
        format!("{{\"v\":1,\"ts\":\"2026-12-02T07:00:00.000Z\",\"run\":\"{id}\",\"type\":\"run_started\",\"service\":\"demo\",\"version\":\"2.0.0\",\"hosts\":4,\"mode\":\"switch\",\"plan\":{{\"v\":1}}}}\n"),
    )
    .unwrap();
    let resume = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args(["resume", "--yes", "--state-dir", state.path().to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, stderr) = resume(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no unfinished run in"), "{stderr}");
    let (code, stderr) = resume(&[id]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("run {id} is a `tranche switch` by hand: it is not resumed")),
        "{stderr}"
    );
}

/// `retire_after`: the old side stops once the new one held that long; an interrupt during the
/// wait leaves both sides up and says so, and that run is not resumed (it had switched).
#[test]
fn retire_after_stops_the_old_side_and_an_interrupt_leaves_both_up() {
    let fleet = Fleet::up(121, 4);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", "");
    green_live_first(&fleet, &pb, &inv);
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    let pb = playbook(&fleet, "bg-1.yml", "1.0.0", "  retire_after: 2s\n");
    let ev = fleet.dir.join("bg-1.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &["release", pb.to_str().unwrap(), "--events", ev.to_str().unwrap()],
        &inv,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("demo 1.0.0 is live on the green side (4 HAProxy servers switched in "),
        "{stderr}"
    );
    assert!(
        stderr.contains("; the blue side retired after 2.0s (2 hosts stopped)"),
        "{stderr}"
    );
    // The retire is an event of the release's run, after its switch and before its end.
    let types: Vec<String> = std::fs::read_to_string(&ev)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|t| ["switched", "retired", "run_finished"].contains(&t.as_str()))
        .collect();
    assert_eq!(types, ["switched", "retired", "run_finished"]);
    let down = |fleet: &Fleet| -> Vec<String> {
        fleet
            .servers()
            .into_iter()
            .filter(|(_, op, _)| *op == 0)
            .map(|(s, _, _)| s)
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while down(&fleet) != ["h01", "h02"] && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(down(&fleet), ["h01", "h02"], "{:?}", fleet.servers());
    let rec = std::fs::read_to_string(fleet.srv(1).join("demo/.tranche-live")).unwrap();
    assert!(rec.contains("live=green\n") && rec.contains("retired=blue\n"), "{rec}");

    // 2.0.0 onto the retired blue side (started again), then an interrupt during the wait.
    let pb = playbook(&fleet, "bg-2b.yml", "2.0.0", "  retire_after: 60s\n");
    let ev = fleet.dir.join("bg-2b.jsonl");
    let mut child = spawn_release(&fleet, "bg-2b", &pb, &inv, &ev);
    common::wait_event(&ev, 90, |e| e["type"] == "switched");
    std::thread::sleep(std::time::Duration::from_millis(500));
    common::signal(&child, "-INT");
    let code = common::wait_exit(&mut child, 30);
    let stderr = fleet.stderr_of("bg-2b");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted before retire_after: both sides are up (`tranche retire` stops green)"),
        "{stderr}"
    );
    assert_eq!(live(&fleet), vec![1, 2], "{:?}", weights(&fleet));
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    let rec = std::fs::read_to_string(fleet.srv(3).join("demo/.tranche-live")).unwrap();
    assert!(rec.contains("live=blue\n") && rec.contains("retired=\n"), "{rec}");
    // Traffic had moved: the interrupted run is not resumed.
    let out = fleet.tranche(&["resume", "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("had switched traffic to the blue side before it stopped: there is nothing to resume"),
        "{stderr}"
    );
}

/// A blue-green release interrupted before its switch (here during the pause after its canary
/// host) resumes under the same run: the idle side's canary host, already on the version, is
/// skipped, the other is released, then every server switches; no failed request throughout.
#[test]
fn an_interrupted_blue_green_release_resumes_and_switches() {
    let fleet = Fleet::up(122, 4);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", "");
    let text = std::fs::read_to_string(&pb)
        .unwrap()
        .replace("  canary: 1\n", "  canary: 1\n  canary_pause: 3s\n");
    std::fs::write(&pb, text).unwrap();
    green_live_first(&fleet, &pb, &inv);
    let requests = Requests::start(fleet.lb_port);
    let ev = fleet.dir.join("bg-2.jsonl");
    let mut child = spawn_release(&fleet, "bg-2", &pb, &inv, &ev);
    common::wait_event(&ev, 90, |e| e["type"] == "paused");
    common::signal(&child, "-INT");
    let code = common::wait_exit(&mut child, 30);
    let stderr = fleet.stderr_of("bg-2");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(!stderr.contains("(first to last server)"), "{stderr}");
    assert_eq!(live(&fleet), vec![3, 4], "{:?}", weights(&fleet));
    assert_eq!(fleet.current(1).as_deref(), Some("2.0.0"));
    assert_eq!(fleet.current(2).as_deref(), Some("1.0.0"));

    let out = fleet.tranche(&["resume", "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (ok, failed, errors) = requests.finish();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resuming blue-green run"), "{stderr}");
    println!("{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[1] h01") && l.ends_with("already on 2.0.0")),
        "{stderr}"
    );
    assert!(!stderr.contains("[1] h01          stop"), "{stderr}");
    assert!(
        stderr.contains("demo 2.0.0 is live on the blue side (4 HAProxy servers switched in "),
        "{stderr}"
    );
    assert_eq!(live(&fleet), vec![1, 2], "{:?}", weights(&fleet));
    assert_eq!(fleet.current(2).as_deref(), Some("2.0.0"));
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(ok > 10, "{ok}");
    // One run: the resume appended to the interrupted run's journal, ending with the switch.
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&ev).unwrap().lines().next().unwrap()).unwrap();
    let run = first["run"].as_str().unwrap();
    let journal = std::fs::read_to_string(fleet.dir.join(format!(".tranche/runs/{run}/journal.jsonl"))).unwrap();
    let switched = switched_events(&journal);
    assert_eq!(switched.len(), 1, "{journal}");
    assert_eq!(
        (&switched[0]["to"], &switched[0]["status"]),
        (&"blue".into(), &"ok".into())
    );
}
