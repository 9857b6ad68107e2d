use super::*;
use crate::release::ReleaseRequest;

fn load(playbook: &str) -> Release {
    let dir = std::env::current_dir().unwrap().join("tests/fixtures");
    Release::load(&ReleaseRequest {
        inventories: vec![dir.join("inventory.yml")],
        playbook: dir.join(playbook),
        limit: None,
        extra_vars: vec![],
    })
    .unwrap()
}

#[test]
fn the_idle_slot_has_its_own_folder_port_and_no_registry() {
    let r = load("bluegreen-slots.yml");
    let idle = idle_release(&r, Side::Green).unwrap();
    assert_eq!(idle.playbook.layout.root, "/srv/demo/green");
    assert_eq!(idle.playbook.registry.kind(), "none");
    assert!(idle.playbook.rollout.gate.is_none());
    assert_eq!(idle.targets.len(), 3);
    let start = idle.playbook.start.as_ref().unwrap();
    let cmd = idle.render(start, &idle.targets[0], "run", None).unwrap();
    assert!(
        cmd.contains("/srv/demo/green/current/bin/start") && cmd.contains("8082"),
        "{cmd}"
    );
    // The original release is untouched: its templates see the blue slot.
    assert_eq!(r.playbook.layout.root, "/srv/demo");
}

#[test]
fn a_switch_sets_every_server_of_both_slots() {
    let r = load("bluegreen-slots.yml");
    let w = weights(&r, Side::Green, None, "run").unwrap();
    assert_eq!(w.len(), 6);
    assert!(w.contains(&("demo".into(), "web-01-green".into(), 100)));
    assert!(w.contains(&("demo".into(), "web-01-blue".into(), 0)));
    let canary = weights(&r, Side::Blue, Some(10), "run").unwrap();
    assert!(canary.contains(&("demo".into(), "web-03-blue".into(), 10)));
    assert!(canary.contains(&("demo".into(), "web-03-green".into(), 90)));
}

#[test]
fn slots_that_share_a_server_name_are_refused() {
    let mut r = load("bluegreen-slots.yml");
    let groups = load("bluegreen-groups.yml");
    // The groups fixture names servers `{{ host.name }}` alone: with slots, both are one server.
    r.playbook.registry = groups.playbook.registry.clone();
    r.playbook.templates = groups.playbook.templates.clone();
    let e = weights(&r, Side::Green, None, "run").unwrap_err().to_string();
    assert!(e.contains("both sides of web-01") && e.contains("slot.name"), "{e}");
}

#[test]
fn groups_switch_between_their_own_hosts() {
    let r = load("bluegreen-groups.yml");
    let blue: Vec<String> = hosts_of(&r, Side::Blue).unwrap().into_iter().map(|h| h.name).collect();
    let green: Vec<String> = hosts_of(&r, Side::Green).unwrap().into_iter().map(|h| h.name).collect();
    assert_eq!(blue, ["web-01", "web-02", "web-03"]);
    assert_eq!(green, ["db-01"]);
    let idle = idle_release(&r, Side::Green).unwrap();
    assert_eq!(idle.targets.len(), 1);
    assert_eq!(idle.playbook.layout.root, "/srv/demo");
    let w = weights(&r, Side::Green, None, "run").unwrap();
    assert_eq!(w.iter().filter(|(_, _, w)| *w == 100).count(), 1);
    assert_eq!(w.iter().filter(|(_, _, w)| *w == 0).count(), 3);
}

#[test]
fn hosts_must_agree_on_the_live_side() {
    let rec = |live: Option<Side>| LiveRecord {
        live: live.map(|s| s.as_str().to_string()),
        ..Default::default()
    };
    assert_eq!(agreed_live(&[]).unwrap(), None);
    let same = [
        ("a".to_string(), rec(Some(Side::Blue))),
        ("b".to_string(), rec(Some(Side::Blue))),
    ];
    assert_eq!(agreed_live(&same).unwrap(), Some(Side::Blue));
    let mixed = [("a".to_string(), rec(Some(Side::Blue))), ("b".to_string(), rec(None))];
    let e = agreed_live(&mixed).unwrap_err().to_string();
    assert!(e.contains("a says blue, b says none"), "{e}");
}

#[test]
fn the_plan_shows_both_sides_and_the_switch() {
    let lines = plan_lines(&load("bluegreen-slots.yml")).join("\n");
    assert!(lines.contains("blue      /srv/demo/blue port 8081, 3 hosts"), "{lines}");
    assert!(
        lines.contains("green     /srv/demo/green port 8082, 3 hosts"),
        "{lines}"
    );
    assert!(lines.contains("all 6 HAProxy servers switch at once"), "{lines}");
    let lines = plan_lines(&load("bluegreen-groups.yml")).join("\n");
    assert!(lines.contains("green     group db, 1 host"), "{lines}");
    assert!(
        lines.contains("after 10% of the traffic while the gate watches"),
        "{lines}"
    );
}
