//! `--shard K/N`: bad values refused before anything happens, the plan of a shard, resume
//! picking a shard's run, and two shards released at once on the real fleet.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

fn tranche(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env("TRANCHE_STATE_DIR", state_dir)
        .env("CI", "true")
        .env_remove("TRANCHE_LIMIT")
        .env_remove("TRANCHE_SHARD")
        .output()
        .unwrap()
}

/// The fixture inventory's `web` group: web-01..03, all in zone dc1.
const FILES: [&str; 3] = ["-i", "tests/fixtures/inventory.yml", "tests/fixtures/playbook.yml"];

fn refused(args: &[&str], says: &str) {
    let state = tempfile::tempdir().unwrap();
    let out = tranche(state.path(), args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?}: expected `{says}` in\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout must stay empty");
    // Nothing written on the controller (and nothing could reach a host: none is reachable).
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "{args:?} wrote to the state dir"
    );
}

fn release_with(shard: &str) -> Vec<&str> {
    let mut a = vec!["release"];
    a.extend(FILES);
    a.extend(["--yes", "--shard", shard]);
    a
}

#[test]
fn shard_zero_is_refused() {
    refused(&release_with("0/2"), "`0/2`: K counts from 1");
}

#[test]
fn shard_past_the_count_is_refused() {
    refused(&release_with("3/2"), "`3/2`: K is more than N");
}

#[test]
fn zero_shards_are_refused() {
    refused(&release_with("1/0"), "`1/0`: N, the number of shards, is at least 1");
}

#[test]
fn a_shard_that_is_not_numbers_is_refused() {
    refused(&release_with("a/b"), "expected K/N (for example 1/3), not `a/b`");
}

#[test]
fn a_shard_of_three_numbers_is_refused() {
    refused(&release_with("1/2/3"), "expected K/N (for example 1/3), not `1/2/3`");
}

#[test]
fn a_shard_with_no_host_is_refused() {
    // `hosts: web` targets three hosts: of four shards, the first has none.
    refused(
        &release_with("1/4"),
        "--shard 1/4 selects no host: only 3 hosts are targeted, fewer than 4 shards",
    );
    let mut plan = vec!["plan"];
    plan.extend(FILES);
    plan.extend(["--shard", "1/4"]);
    refused(&plan, "use at most 3 shards");
}

#[test]
fn a_shard_smaller_than_the_canary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("pb.yml");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/playbook.yml"))
        .unwrap()
        .replace("canary: 1", "canary: 2")
        .replace(
            "path: app.tar.gz",
            &format!("path: {}/tests/fixtures/app.tar.gz", env!("CARGO_MANIFEST_DIR")),
        );
    std::fs::write(&pb, text).unwrap();
    let pb = pb.to_str().unwrap();
    refused(
        &["plan", "-i", "tests/fixtures/inventory.yml", pb, "--shard", "1/2"],
        "`rollout.canary` is 2 but shard 1/2 has only 1 host",
    );
}

fn plan_json(extra: &[&str]) -> serde_json::Value {
    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["plan"];
    args.extend(FILES);
    args.extend(["--format", "json"]);
    args.extend(extra);
    let out = tranche(state.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hosts_of(plan: &serde_json::Value) -> Vec<String> {
    plan["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["hosts"].as_array().unwrap().iter())
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_plan_of_a_shard_names_its_hosts_and_the_whole() {
    let whole = plan_json(&[]);
    assert_eq!(whole["shard"], serde_json::Value::Null);
    let one = plan_json(&["--shard", "1/2"]);
    let two = plan_json(&["--shard", "2/2"]);
    // Sorted by zone (all dc1), then name, cut in two at 3 × 1 / 2: 1 + 2.
    assert_eq!(hosts_of(&one), ["web-01"]);
    assert_eq!(hosts_of(&two), ["web-02", "web-03"]);
    assert_eq!(one["targeted"], 1);
    assert_eq!(
        one["shard"],
        serde_json::json!({"index": 1, "count": 2, "of": 3, "shared_zones": ["dc1"]})
    );
    // Each shard is planned as a fleet of its own: its own canary.
    assert_eq!(one["batches"][0]["canary"], true);
    assert_eq!(two["batches"][0]["canary"], true);
    let mut both: Vec<String> = hosts_of(&one).into_iter().chain(hosts_of(&two)).collect();
    both.sort();
    let mut all = hosts_of(&whole);
    all.sort();
    assert_eq!(both, all);

    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["plan"];
    args.extend(FILES);
    args.extend(["--shard", "1/2"]);
    let out = tranche(state.path(), &args);
    let table = String::from_utf8_lossy(&out.stderr);
    assert!(
        table.contains("shard 1/2: 1 of the 3 targeted hosts (sorted by zone, then name, cut in 2 runs)"),
        "{table}"
    );
    assert!(
        table.contains("shared with another shard: zone dc1 (per-zone limits hold per shard there)"),
        "{table}"
    );
}

/// A run folder as an interrupted run leaves it: its record and a journal without
/// `run_finished`.
fn unfinished_run(state: &Path, id: &str, shard: Option<&str>) {
    let dir = state.join("runs").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut record = serde_json::json!({
        "run_id": id, "command": "release", "to": null,
        "inventories": ["/nowhere/inventory.yml"], "playbook": "/nowhere/playbook.yml",
        "limit": null, "extra_vars": [], "inventory_sha256": "", "playbook_sha256": "",
        "started": "2026-12-02T04:00:00Z"
    });
    if let Some(s) = shard {
        record["shard"] = s.into();
    }
    std::fs::write(dir.join("run.json"), record.to_string()).unwrap();
    std::fs::write(
        dir.join("journal.jsonl"),
        format!(
            "{{\"v\":1,\"ts\":\"2026-12-02T04:00:00.000Z\",\"run\":\"{id}\",\"type\":\"run_started\",\"service\":\"demo\",\"version\":\"2.0.0\",\"hosts\":1,\"mode\":\"release\",\"plan\":{{\"v\":1}}}}\n"
        ),
    )
    .unwrap();
}

#[test]
fn resume_without_a_run_does_not_take_another_shards_run() {
    let state = tempfile::tempdir().unwrap();
    unfinished_run(state.path(), "20261202-040000-aaaa", Some("1/2"));
    unfinished_run(state.path(), "20261202-040000-bbbb", Some("2/2"));
    let out = tranche(state.path(), &["resume", "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("several unfinished runs in")
            && stderr.contains("20261202-040000-bbbb (shard 2/2), 20261202-040000-aaaa (shard 1/2)"),
        "{stderr}"
    );
    assert!(stderr.contains("tranche resume --shard K/N"), "{stderr}");
    // With --shard: that shard's run (here it cannot go further: its files are gone).
    let out = tranche(state.path(), &["resume", "--yes", "--shard", "1/2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot resume run 20261202-040000-aaaa"), "{stderr}");
    let out = tranche(state.path(), &["resume", "--yes", "--shard", "3/3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no unfinished run of shard 3/3 in"), "{stderr}");
}

/// Two shards released at the same time from one controller folder (one state directory):
/// every host released exactly once, by the shard the split gives it, and both together cover
/// the fleet.
#[test]
fn two_shards_at_once_release_every_host_exactly_once() {
    // h01..h06 in zones z1 z2 z3 z1 z2 z3: sorted by zone then name, the halves are
    // h01 h04 h02 | h05 h03 h06.
    let fleet = common::Fleet::up(112, 6);
    fleet.install("1.0.0");
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  canary_pause: 0s\n  batch: 2\n  max_per_zone: 1\n";
    let pb = fleet.playbook("shard.yml", "2.0.0", body);
    let (ev1, ev2) = (fleet.dir.join("ev1.jsonl"), fleet.dir.join("ev2.jsonl"));
    let mut one = fleet.spawn_release("one", &pb, &ev1, &["--shard", "1/2", "--yes"]);
    let mut two = fleet.spawn_release("two", &pb, &ev2, &["--shard", "2/2", "--yes"]);
    let (c1, c2) = (common::wait_exit(&mut one, 120), common::wait_exit(&mut two, 120));
    assert_eq!(c1, Some(0), "shard 1/2:\n{}", fleet.stderr_of("one"));
    assert_eq!(c2, Some(0), "shard 2/2:\n{}", fleet.stderr_of("two"));

    // Both ran at once: each started before the other finished.
    let (e1, e2) = (common::events(&ev1), common::events(&ev2));
    let at = |evs: &[serde_json::Value], t: &str| {
        evs.iter().find(|e| e["type"] == t).unwrap()["ts"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(at(&e1, "run_started") < at(&e2, "run_finished") && at(&e2, "run_started") < at(&e1, "run_finished"));

    // Two runs in the one state directory, each with its shard in its record and its plan.
    let runs: Vec<_> = std::fs::read_dir(fleet.dir.join(".tranche/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let mut by_run: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut shards = BTreeSet::new();
    for dir in &runs {
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        shards.insert(record["shard"].as_str().unwrap().to_string());
        let journal = common::events(&dir.join("journal.jsonl"));
        let started = journal.iter().find(|e| e["type"] == "run_started").unwrap();
        assert_eq!(started["plan"]["shard"]["of"], 6);
        assert_eq!(started["plan"]["shard"]["shared_zones"], serde_json::json!(["z2"]));
        let ok: BTreeSet<String> = journal
            .iter()
            .filter(|e| e["type"] == "host_finished" && e["status"] == "ok")
            .map(|e| e["host"].as_str().unwrap().to_string())
            .collect();
        by_run.insert(record["run_id"].as_str().unwrap().to_string(), ok);
    }
    assert_eq!(shards, BTreeSet::from(["1/2".to_string(), "2/2".to_string()]));
    let sets: Vec<&BTreeSet<String>> = by_run.values().collect();
    assert!(sets[0].is_disjoint(sets[1]), "{by_run:?}");
    let all: BTreeSet<String> = sets[0].union(sets[1]).cloned().collect();
    let fleet_hosts: BTreeSet<String> = (1..=6).map(|i| format!("h{i:02}")).collect();
    assert_eq!(all, fleet_hosts);
    let shard_one: BTreeSet<String> = ["h01", "h02", "h04"].map(String::from).into();
    assert!(sets.contains(&&shard_one), "{by_run:?}");

    // On the hosts: one change each to 2.0.0 in `.tranche-history`, by the run that journaled it.
    for i in 1..=6 {
        let name = format!("h{i:02}");
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"), "{name}");
        let history = std::fs::read_to_string(fleet.srv(i).join("demo/.tranche-history")).unwrap_or_default();
        let changes: Vec<&str> = history
            .lines()
            .filter(|l| l.split('\t').nth(5) == Some("2.0.0"))
            .collect();
        assert_eq!(changes.len(), 1, "{name}: {history}");
        let run = changes[0].split('\t').nth(1).unwrap();
        assert!(by_run[run].contains(&name), "{name} changed by {run}: {by_run:?}");
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());

    // `tranche history --format json` lists both runs with their shard.
    let out = fleet.tranche_raw(&["history", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut listed: Vec<(String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["shard"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("1/2".to_string(), "ok".to_string()),
            ("2/2".to_string(), "ok".to_string())
        ]
    );
}
