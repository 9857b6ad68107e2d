//! Zones against the real fleet: `spread: zone` orders the hosts round-robin over zones, and
//! `max_per_zone` caps how many hosts of a zone are out of traffic at once.

mod common;

use std::collections::HashMap;

use common::{events, Fleet};

#[test]
fn never_more_than_max_per_zone_hosts_of_a_zone_out_at_once() {
    // Zones alternate z1, z2, z3: h01 z1, h02 z2, h03 z3, h04 z1, h05 z2, h06 z3.
    let fleet = Fleet::up(16, 6);
    fleet.install("1.0.0");
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 0\n  batch: 6\n  spread: zone\n  max_per_zone: 1\n\
                stop:\n  command: \"sleep 0.5; /srv/demo/current/bin/stop\"\n  timeout: 30s\n";
    let pb = fleet.playbook("z.yml", "2.0.0", body);
    let ev = fleet.dir.join("ev.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&ev);
    let zone = |h: &str| match h {
        "h01" | "h04" => "z1",
        "h02" | "h05" => "z2",
        _ => "z3",
    };
    // Out of traffic: from deregister started to register finished.
    let (mut out_now, mut max_zone, mut max_all): (HashMap<&str, usize>, usize, usize) = (HashMap::new(), 0, 0);
    for e in &evs {
        let (Some(h), Some(step)) = (e["host"].as_str(), e["step"].as_str()) else {
            continue;
        };
        if e["type"] == "step_started" && step == "deregister" {
            *out_now.entry(zone(h)).or_default() += 1;
        } else if e["type"] == "step_finished" && step == "register" {
            *out_now.entry(zone(h)).or_default() -= 1;
        } else {
            continue;
        }
        max_zone = max_zone.max(*out_now.values().max().unwrap());
        max_all = max_all.max(out_now.values().sum());
    }
    assert_eq!(max_zone, 1, "a zone had more than one host out at once");
    assert!(
        max_all >= 2,
        "hosts of different zones must still go at once (saw {max_all})"
    );
    // The batch lists the hosts round-robin over zones.
    let batch: Vec<&str> = evs.iter().find(|e| e["type"] == "batch_started").unwrap()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(batch, ["h01", "h02", "h03", "h04", "h05", "h06"]);
    for i in 1..=6 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

#[test]
fn a_window_starts_the_next_host_as_soon_as_one_ends() {
    let fleet = Fleet::up(23, 6);
    fleet.install("1.0.0");
    // h02 is slow to stop; with a window of 2 the other hosts go on past it.
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n  window: true\n\
                stop:\n  command: \"sleep {{ 3 if host.name == 'h02' else 0 }}; /srv/demo/current/bin/stop\"\n  timeout: 30s\n";
    let pb = fleet.playbook("w.yml", "2.0.0", body);
    let plan = fleet.tranche_raw(&["plan", "-i", fleet.inventory().to_str().unwrap(), pb.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&plan.stderr);
    assert!(
        table.contains("window    after the canary, up to 2 hosts out at once"),
        "{table}"
    );
    let ev = fleet.dir.join("ev.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&ev);
    let pos = |ty: &str, h: &str| evs.iter().position(|e| e["type"] == ty && e["host"] == h).unwrap();
    // h04, h05 and h06 all started while h02 was still stopping.
    for h in ["h04", "h05", "h06"] {
        assert!(
            pos("host_started", h) < pos("host_finished", "h02"),
            "{h} waited for h02"
        );
    }
    // Never more than 2 hosts in their pipeline at once after the canary.
    let (mut now, mut max) = (0i32, 0i32);
    for e in &evs {
        match e["type"].as_str() {
            Some("host_started") => now += 1,
            Some("host_finished") => now -= 1,
            _ => {}
        }
        max = max.max(now);
    }
    assert_eq!(max, 2);
    assert_eq!(
        evs.iter().filter(|e| e["type"] == "batch_started").count(),
        2,
        "the canary, then one window"
    );
    for i in 1..=6 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}
