//! Blue-green's slots shape on the real local fleet (slots 115 to 117): two instances of the
//! service on every host (blue on :8081 from `/srv/demo/blue`, green on :8082 from
//! `/srv/demo/green`), HAProxy with one server per host and slot (`hNN-blue`, `hNN-green`),
//! traffic moved by weights over the runtime API, under a request loop.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::bluegreen::{add_error_gate, prometheus, switched_events, tranche_with};
use common::{Fleet, Requests};

fn tranche(fleet: &Fleet, args: &[&str]) -> (Option<i32>, String) {
    tranche_with(fleet, args, None)
}

const SLOTS: &[(&str, u16)] = &[("blue", 8081), ("green", 8082)];

/// A slots playbook: each slot's instance starts and stops from its own folder
/// (`layout.root` is `/srv/demo/<slot>` in its templates), on its own port.
fn playbook(fleet: &Fleet, name: &str, version: &str, extra: &str) -> PathBuf {
    let text = format!(
        "service: demo\nversion: \"{version}\"\nhosts: fleet\nartifact:\n  path: artifacts/demo-{version}.tar.gz\n\
         rollout:\n  canary: 1\n  batch: 3\n  stage:\n    concurrency: 3\n\
         strategy: blue-green\nblue_green:\n  slots:\n    blue: {{ port: 8081 }}\n    green: {{ port: 8082 }}\n{extra}\
         registry:\n  kind: haproxy\n  address: 127.0.0.1:{}\n  backend: demo\n  server: \"{{{{ host.name }}}}-{{{{ slot.name }}}}\"\n\
         start:\n  command: \"{{{{ layout.root }}}}/current/bin/start {{{{ host.address }}}} --port {{{{ slot.port }}}}\"\n\
         stop:\n  command: \"{{{{ layout.root }}}}/current/bin/stop --port {{{{ slot.port }}}}\"\n  timeout: 30s\n\
         health:\n  http: \"http://{{{{ host.address }}}}:{{{{ slot.port }}}}/health\"\n  expect_body: \"{{{{ version }}}}\"\n  interval: 200ms\n  timeout: 10s\n",
        fleet.api_port
    );
    let path = fleet.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// (server, operational state, weight) of every server of backend `demo`.
fn servers(fleet: &Fleet) -> Vec<(String, u32, u32)> {
    fleet
        .api("show servers state demo")
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[3].to_string(), c[5].parse().unwrap(), c[7].parse().unwrap())
        })
        .collect()
}

/// Every one of the fleet's servers of `slot` has the weight and the others none.
fn live_is(fleet: &Fleet, slot: &str) -> bool {
    let s = servers(fleet);
    s.len() == 2 * fleet.hosts
        && s.iter()
            .all(|(name, _, w)| (*w > 0) == name.ends_with(&format!("-{slot}")))
}

/// The pid of slot `port`'s instance on every host.
fn pids(fleet: &Fleet, port: u16) -> Vec<Option<u32>> {
    (1..=fleet.hosts)
        .map(|i| fleet.pid_of(i, &format!("app-{port}.pid")))
        .collect()
}

/// Each process is alive (not a zombie).
fn alive(pids: &[Option<u32>]) -> bool {
    pids.iter().all(|p| {
        p.is_some_and(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| s.split_whitespace().nth(2) != Some("Z"))
                .unwrap_or(false)
        })
    })
}

/// The servers of `slot` all reach HAProxy operational state `op` (0 down, 2 up) within 20 s.
fn wait_state(fleet: &Fleet, slot: &str, op: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = servers(fleet);
        let of: Vec<_> = s.iter().filter(|(n, _, _)| n.ends_with(&format!("-{slot}"))).collect();
        if of.len() == fleet.hosts && of.iter().all(|(_, o, _)| *o == op) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The host's line of `tranche status`.
fn status_line(stderr: &str, host: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with(host))
        .unwrap_or_else(|| panic!("no {host} in:\n{stderr}"))
        .to_string()
}

#[test]
fn slots_release_switch_back_gate_and_retire_under_load() {
    let fleet = Fleet::up_slots(115, 6, SLOTS);
    assert_eq!(servers(&fleet).len(), 12, "{:?}", servers(&fleet));

    // The first release: no side is live, so blue gets 2.0.0 and all traffic. Nothing served
    // before it (every server DOWN), so the request loop starts once it has.
    let pb2 = playbook(&fleet, "slots-2.yml", "2.0.0", "");
    let (code, stderr) = tranche(&fleet, &["release", pb2.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("releasing 2.0.0 on the blue side"), "{stderr}");
    assert!(
        stderr.contains("no release in this slot yet: nothing to stop"),
        "{stderr}"
    );
    assert!(live_is(&fleet, "blue"), "{:?}", servers(&fleet));
    let blue_pids = pids(&fleet, 8081);
    assert!(alive(&blue_pids), "{blue_pids:?}");
    assert!(pids(&fleet, 8082).iter().all(Option::is_none));

    // Under load: 1.0.0 onto the idle green slot, then all 12 servers switched at once.
    let requests = Requests::start(fleet.lb_port);
    std::thread::sleep(Duration::from_millis(300));
    let pb1 = playbook(&fleet, "slots-1.yml", "1.0.0", "");
    let ev = fleet.dir.join("slots-1.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &["release", pb1.to_str().unwrap(), "--events", ev.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("blue-green (slots): blue is live; releasing 1.0.0 on the green side"),
        "{stderr}"
    );
    println!(
        "{}",
        stderr.lines().find(|l| l.contains("(first to last server)")).unwrap()
    );
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
    let ms = sw["ms"].as_f64().unwrap();
    assert!(ms < 1000.0, "{sw}");
    println!("{}", events.lines().find(|l| l.contains("\"switched\"")).unwrap());
    let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "run_finished", "{events}");
    let msg = last["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("demo 1.0.0 is live on the green side (12 HAProxy servers switched in "),
        "{msg}"
    );
    println!("{msg}");
    assert!(live_is(&fleet, "green"), "{:?}", servers(&fleet));
    // Each slot's folder holds its own release; the blue instances ran on, untouched, through
    // green's release (same processes), and stay warm in HAProxy with no weight.
    for i in 1..=fleet.hosts {
        assert_eq!(fleet.slot_current(i, "blue").as_deref(), Some("2.0.0"), "host {i}");
        assert_eq!(fleet.slot_current(i, "green").as_deref(), Some("1.0.0"), "host {i}");
        assert!(!fleet.srv(i).join("demo/blue/releases/1.0.0").exists(), "host {i}");
        assert!(!fleet.srv(i).join("demo/green/releases/2.0.0").exists(), "host {i}");
        assert!(!fleet.srv(i).join("demo/current").exists(), "host {i}");
    }
    assert_eq!(pids(&fleet, 8081), blue_pids);
    assert!(alive(&blue_pids), "{blue_pids:?}");
    let green_pids = pids(&fleet, 8082);
    assert!(alive(&green_pids), "{green_pids:?}");
    assert!(
        servers(&fleet).iter().all(|(_, op, _)| *op == 2),
        "{:?}",
        servers(&fleet)
    );

    // `status`: the live slot, each slot's release, and the host runs its live slot's release.
    let (code, stderr) = tranche(&fleet, &["status", pb1.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let h04 = status_line(&stderr, "h04");
    assert!(
        h04.ends_with("1.0.0  live: green (blue 2.0.0, green 1.0.0)"),
        "{stderr}"
    );
    println!("{h04}");

    // By hand, back to blue; the green instances run on.
    let (code, stderr) = tranche(&fleet, &["switch", pb1.to_str().unwrap(), "--back"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("switched demo from green to blue in "), "{stderr}");
    println!("{}", stderr.trim());
    assert!(live_is(&fleet, "blue"), "{:?}", servers(&fleet));
    assert_eq!(pids(&fleet, 8082), green_pids);
    let rec = std::fs::read_to_string(fleet.srv(5).join("demo/.tranche-live")).unwrap();
    assert!(rec.starts_with("live=blue\nprevious=green\n"), "{rec}");
    let (ok, failed, errors) = requests.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(ok > 50, "the request loop barely ran: {ok}");
    println!("{ok} requests, none failed, through the release, the switch and the switch back");

    // A gate breach after the switch: the flaky release (healthy, but its users get 500s and
    // every scrape counts an error) goes onto green; Prometheus scrapes the green slot.
    let prom = prometheus(&fleet, 29415, 8082);
    let pbf = playbook(&fleet, "slots-flaky.yml", "flaky", "");
    add_error_gate(&pbf, &prom, "", "8s");
    let requests = Requests::start(fleet.lb_port);
    let ev = fleet.dir.join("slots-flaky.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &["release", pbf.to_str().unwrap(), "--events", ev.to_str().unwrap()],
    );
    let (ok, _, errors) = requests.finish();
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("switched demo to green"), "{stderr}");
    assert!(stderr.contains("switched back to blue"), "{stderr}");
    let events = std::fs::read_to_string(&ev).unwrap();
    let moves: Vec<(String, String, u64)> = switched_events(&events)
        .iter()
        .map(|e| {
            (
                e["why"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
                e["servers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("release".into(), "green".into(), 12),
            ("back".into(), "blue".into(), 12)
        ],
        "{events}"
    );
    let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["exit_code"], &last["msg"]),
        (
            &4.into(),
            &"the metric gate failed after the switch; all traffic is back on the blue side".into()
        ),
        "{events}"
    );
    assert!(live_is(&fleet, "blue"), "{:?}", servers(&fleet));
    // While the flaky release had the traffic its users got its own 500s; no request was
    // dropped or refused by the load balancer (no connection error, no 502/503).
    assert!(
        errors.iter().all(|e| e.starts_with("HTTP/1.") && e.contains(" 500 ")),
        "{errors:?}"
    );
    assert!(ok > 10, "{ok}");
    // Blue served on through green's release and the switch back: the same processes.
    assert_eq!(pids(&fleet, 8081), blue_pids);
    assert!(alive(&blue_pids), "{blue_pids:?}");
    for i in 1..=fleet.hosts {
        assert_eq!(fleet.slot_current(i, "green").as_deref(), Some("flaky"), "host {i}");
        assert_eq!(fleet.slot_current(i, "blue").as_deref(), Some("2.0.0"), "host {i}");
    }
    drop(prom);

    // Retire: the idle green instances stop, HAProxy sees them DOWN, blue serves on.
    let requests = Requests::start(fleet.lb_port);
    let (code, stderr) = tranche(&fleet, &["retire", pbf.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("retired the green side of demo: stopped on 6 hosts; blue stays live"),
        "{stderr}"
    );
    println!("{}", stderr.trim());
    assert!(wait_state(&fleet, "green", 0), "{:?}", servers(&fleet));
    assert!(
        pids(&fleet, 8082).iter().all(Option::is_none),
        "{:?}",
        pids(&fleet, 8082)
    );
    assert!(wait_state(&fleet, "blue", 2), "{:?}", servers(&fleet));
    let (ok, failed, errors) = requests.finish();
    assert_eq!(failed, 0, "failed requests while retiring: {errors:?}");
    assert!(ok > 10, "{ok}");
    assert_eq!(pids(&fleet, 8081), blue_pids);
    let (_, stderr) = tranche(&fleet, &["status", pbf.to_str().unwrap()]);
    let h02 = status_line(&stderr, "h02");
    assert!(
        h02.ends_with("2.0.0  live: blue (blue 2.0.0, green flaky), green retired"),
        "{stderr}"
    );
    println!("{h02}");

    // A switch to the retired side is refused at once, from the hosts' records, and nothing moves.
    let t = Instant::now();
    let (code, stderr) = tranche(&fleet, &["switch", pbf.to_str().unwrap()]);
    let took = t.elapsed();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("green is retired"), "{stderr}");
    assert!(took < Duration::from_secs(10), "refused after {took:?}:\n{stderr}");
    println!("{}", stderr.trim());
    assert!(live_is(&fleet, "blue"), "{:?}", servers(&fleet));
}

/// Offline: `tranche plan` of a slots playbook says the release goes into one of the two slot
/// folders, not into `layout.root/releases` (where nothing of a slots service lives).
#[test]
fn plan_shows_the_slot_folders() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CI", "true")
        .args([
            "plan",
            "-i",
            "tests/fixtures/inventory.yml",
            "tests/fixtures/bluegreen-slots.yml",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let layout = text
        .lines()
        .find(|l| l.trim_start().starts_with("layout "))
        .unwrap_or_else(|| panic!("no layout line:\n{text}"));
    assert_eq!(
        layout.trim(),
        "layout    /srv/demo/blue/releases/2.0.0 or /srv/demo/green/releases/2.0.0 (the idle slot's; keep 5 in each)",
        "{text}"
    );
}

/// `retire_after` on slots stops the old slot's instances; the next release onto that retired
/// slot starts them again (its hosts go through the whole pipeline although the slot already
/// holds the version), with a canary weight while a passing gate watches, under a request loop.
#[test]
fn a_retired_slot_comes_back_through_a_canary_without_a_failed_request() {
    let fleet = Fleet::up_slots(116, 4, SLOTS);
    let pb2 = playbook(&fleet, "slots-2.yml", "2.0.0", "");
    let (code, stderr) = tranche(&fleet, &["release", pb2.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let requests = Requests::start(fleet.lb_port);
    let pb1 = playbook(&fleet, "slots-1.yml", "1.0.0", "  retire_after: 2s\n");
    let (code, stderr) = tranche(&fleet, &["release", pb1.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("demo 1.0.0 is live on the green side (8 HAProxy servers switched in "),
        "{stderr}"
    );
    assert!(
        stderr.contains("; the blue side retired after 2.0s (4 hosts stopped)"),
        "{stderr}"
    );
    assert!(wait_state(&fleet, "blue", 0), "{:?}", servers(&fleet));
    assert!(
        pids(&fleet, 8081).iter().all(Option::is_none),
        "{:?}",
        pids(&fleet, 8081)
    );
    let rec = std::fs::read_to_string(fleet.srv(2).join("demo/.tranche-live")).unwrap();
    assert!(rec.contains("live=green\n") && rec.contains("retired=blue\n"), "{rec}");
    let green_pids = pids(&fleet, 8082);
    assert!(alive(&green_pids), "{green_pids:?}");

    // 2.0.0 again onto the retired blue slot, which still holds it: started again, 10% of the
    // traffic while the gate (no errors on blue) watches, then the switch.
    let prom = prometheus(&fleet, 29416, 8081);
    let pb = playbook(&fleet, "slots-2b.yml", "2.0.0", "  canary_weight: 10\n");
    add_error_gate(&pb, &prom, " or vector(0)", "3s");
    let ev = fleet.dir.join("slots-2b.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &["release", pb.to_str().unwrap(), "--events", ev.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("canary: the blue side takes 10% of the traffic"),
        "{stderr}"
    );
    let events = std::fs::read_to_string(&ev).unwrap();
    let moves: Vec<(String, String, u64, u64)> = switched_events(&events)
        .iter()
        .map(|e| {
            (
                e["why"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
                e["weight"].as_u64().unwrap(),
                e["servers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("canary".into(), "blue".into(), 10, 8),
            ("release".into(), "blue".into(), 100, 8)
        ],
        "{events}"
    );
    let (ok, failed, errors) = requests.finish();
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(ok > 50, "{ok}");
    assert!(live_is(&fleet, "blue"), "{:?}", servers(&fleet));
    let blue_pids = pids(&fleet, 8081);
    assert!(alive(&blue_pids), "{blue_pids:?}");
    assert_eq!(pids(&fleet, 8082), green_pids);
    let rec = std::fs::read_to_string(fleet.srv(2).join("demo/.tranche-live")).unwrap();
    assert!(
        rec.starts_with("live=blue\nprevious=green\n") && rec.contains("retired=\n"),
        "{rec}"
    );
    for i in 1..=fleet.hosts {
        assert_eq!(fleet.slot_current(i, "blue").as_deref(), Some("2.0.0"), "host {i}");
        assert_eq!(fleet.slot_current(i, "green").as_deref(), Some("1.0.0"), "host {i}");
    }
}

/// Under `become`, the host-side record is written only into a `layout.root` no other user can
/// write to: `tranche retire` is refused on the host whose `/srv/demo` the login user could
/// write (exit 15 there, before the stop command runs), and its instance keeps running.
#[test]
fn under_become_retire_refuses_a_layout_root_another_user_can_write() {
    use std::os::unix::fs::MetadataExt;
    common::ensure_user("tranche-deploy", true);
    let fleet = Fleet::up_slots(117, 2, SLOTS);
    let inv = fleet.dir.join("deploy.yml");
    let text = std::fs::read_to_string(fleet.inventory())
        .unwrap()
        .replace("ansible_user: root", "ansible_user: tranche-deploy");
    std::fs::write(&inv, text).unwrap();
    let run = |args: &[&str]| {
        let mut all = vec![args[0], "-i", inv.to_str().unwrap()];
        all.extend(&args[1..]);
        let out = fleet.tranche(&all);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let pb2 = playbook(&fleet, "slots-2.yml", "2.0.0", "become: true\n");
    let (code, stderr) = run(&["release", pb2.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let pb1 = playbook(&fleet, "slots-1.yml", "1.0.0", "become: true\n");
    let (code, stderr) = run(&["release", pb1.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(live_is(&fleet, "green"), "{:?}", servers(&fleet));
    let rec = fleet.srv(1).join("demo/.tranche-live");
    assert_eq!(std::fs::metadata(&rec).unwrap().uid(), 0, "written through sudo");

    // h01's layout root becomes the login user's: root must not write its record there.
    let out = std::process::Command::new("id")
        .args(["-u", "tranche-deploy"])
        .output()
        .unwrap();
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let root1 = fleet.srv(1).join("demo");
    assert!(std::process::Command::new("chown")
        .args([uid.as_str(), root1.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let blue = pids(&fleet, 8081);
    assert!(alive(&blue), "{blue:?}");
    let (code, stderr) = run(&["retire", pb1.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the blue side of demo could not be retired on: h01:") && stderr.contains("under become"),
        "{stderr}"
    );
    // h01: refused before its stop command ran, its blue instance still up, nothing recorded;
    // h02: retired.
    assert!(alive(&blue[..1]), "{:?}", pids(&fleet, 8081));
    assert!(fleet.pid_of(2, "app-8081.pid").is_none());
    let rec1 = std::fs::read_to_string(&rec).unwrap();
    assert!(rec1.contains("retired=\n"), "{rec1}");
    let rec2 = std::fs::read_to_string(fleet.srv(2).join("demo/.tranche-live")).unwrap();
    assert!(rec2.contains("retired=blue\n"), "{rec2}");
}
