//! Blue-green test support shared by tests/bluegreen*.rs: the two host groups, tranche with an
//! extra inventory, green made live by hand, the `switched` events, and the error-rate gate.

use std::path::{Path, PathBuf};

use super::{Fleet, Service};

/// The fleet's inventory, plus groups `blue` (hosts 1 to n/2) and `green` (the rest).
pub fn groups(fleet: &Fleet) -> PathBuf {
    let half = fleet.hosts / 2;
    let names =
        |r: std::ops::RangeInclusive<usize>| -> String { r.map(|i| format!("        h{i:02}: {{}}\n")).collect() };
    let text = format!(
        "all:\n  children:\n    blue:\n      hosts:\n{}    green:\n      hosts:\n{}",
        names(1..=half),
        names(half + 1..=fleet.hosts)
    );
    let path = fleet.dir.join("groups.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `tranche ARGS[0] -i <the fleet's inventory> [-i extra] ARGS[1..]`: its exit code and stderr.
pub fn tranche_with(fleet: &Fleet, args: &[&str], extra: Option<&Path>) -> (Option<i32>, String) {
    let main = fleet.inventory();
    let mut all = vec![args[0], "-i", main.to_str().unwrap()];
    if let Some(inv) = extra {
        all.extend(["-i", inv.to_str().unwrap()]);
    }
    all.extend(&args[1..]);
    let out = fleet.tranche(&all);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// `fleet.install` leaves every host in traffic, as rolling releases would: make green live by
/// hand (`switch --to green`), so that the first blue-green release may stop blue's hosts (it
/// refuses otherwise).
pub fn green_live_first(fleet: &Fleet, pb: &Path, inv: &Path) {
    let (code, stderr) = tranche_with(fleet, &["switch", pb.to_str().unwrap(), "--to", "green"], Some(inv));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("from none to green"), "{stderr}");
}

/// The `switched` events of a JSON Lines text.
pub fn switched_events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "switched")
        .collect()
}

/// A real Prometheus on `port` scraping the demo service on `service_port` of every host.
pub fn prometheus(fleet: &Fleet, port: u16, service_port: u16) -> Service {
    let targets: Vec<String> = (1..=fleet.hosts)
        .map(|i| format!("{}.{i}:{service_port}", fleet.net))
        .collect();
    Service::up("prometheus", port, &["--scrape", &targets.join(","), "--wait-scrape"])
}

/// Put `rollout.gate` on the demo's error rate into the playbook at `pb` (its `rollout` starts
/// with `canary:`): at most 0.01 errors a second, watched `hold` long.
pub fn add_error_gate(pb: &Path, prom: &Service, query_tail: &str, hold: &str) {
    let gate = format!(
        "  gate:\n    prometheus: {}\n    query: 'sum(rate(demo_errors_total{{job=\"demo\"}}[5s])){query_tail}'\n    max: 0.01\n    for: {hold}\n",
        prom.url()
    );
    let text = std::fs::read_to_string(pb).unwrap();
    assert!(
        text.contains("rollout:\n  canary:"),
        "no `rollout:` with `canary:` in {}",
        pb.display()
    );
    std::fs::write(pb, text.replacen("rollout:\n", &format!("rollout:\n{gate}"), 1)).unwrap();
}
