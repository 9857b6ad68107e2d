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
