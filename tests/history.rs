//! `tranche history` and `tranche status --history` end to end: a release from one controller
//! and a rollback from another (two state directories, two host names, two operators) on a
//! real fleet (slot 100), then both commands see both runs. Each controller runs in its own UTS
//! namespace (`unshare --uts`) with its own host name, which is what tranche records as the
//! controller. And the bad input of `history` and `status --history`, with exit 2.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Fleet;

fn tranche() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tranche"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_input_of_history_and_status_history_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-state-dir");
    let out = tranche()
        .args(["history", "--state-dir"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("the state directory {} does not exist", missing.display())),
        "{}",
        stderr(&out)
    );
    for bad in ["0", "-1", "ten", ""] {
        let out = tranche()
            .args(["history", "--limit", bad, "--state-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--limit {bad:?}: {}", stderr(&out));
    }
    let out = tranche().args(["history", "--format", "xml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // -n without --history, and a count out of range.
    for args in [
        &["status", "-n", "3", "p.yml"][..],
        &["status", "--history", "-n", "0", "p.yml"],
    ] {
        let out = tranche().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    // An empty state directory is an empty history, not an error.
    let out = tranche()
        .args(["history", "--format", "json", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

/// tranche run by `operator` on the controller `controller` (its own UTS namespace and host
/// name), in the fleet's folder, with `state_dir` (for a run).
fn from_controller(fleet: &Fleet, controller: &str, operator: &str, state_dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--uts",
        "sh",
        "-c",
        "hostname \"$1\" && shift && exec \"$@\"",
        "sh",
        controller,
    ])
    .arg(env!("CARGO_BIN_EXE_tranche"))
    .args(args)
    .args(
        state_dir
            .iter()
            .flat_map(|d| [std::ffi::OsStr::new("--state-dir"), d.as_os_str()]),
    )
    .args(["--known-hosts", fleet.known_hosts().to_str().unwrap(), "--no-progress"])
    .env("USER", operator)
    .env("CI", "true")
    .current_dir(&fleet.dir);
    cmd.output().expect("run unshare")
}

#[test]
fn history_and_status_history_across_two_controllers() {
    let fleet = Fleet::up(100, 2);
    fleet.install("1.0.0");
    let inv = fleet.inventory();
    let inv = inv.to_str().unwrap();
    let pb = fleet.playbook(
        "r.yml",
        "2.0.0",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n",
    );
    let pb = pb.to_str().unwrap();
    let (a, b) = (fleet.dir.join("state-a"), fleet.dir.join("state-b"));

    let out = from_controller(&fleet, "ctl-a", "alice", Some(&a), &["release", "-i", inv, pb]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = from_controller(&fleet, "ctl-b", "bob", Some(&b), &["rollback", "-i", inv, pb]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (fleet.current(1), fleet.current(2)),
        (Some("1.0.0".into()), Some("1.0.0".into()))
    );

    // The controller's history: both runs, the rollback first.
    let out = tranche()
        .args(["history", "--format", "json", "--state-dir"])
        .arg(&a)
        .arg("--state-dir")
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(String, String, String, String, u64, String)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["operator"].as_str().unwrap().to_string(),
                r["controller"].as_str().unwrap().to_string(),
                r["mode"].as_str().unwrap().to_string(),
                r["service"].as_str().unwrap().to_string(),
                r["hosts"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |o: &str, c: &str, m: &str| (o.into(), c.into(), m.into(), "demo".into(), 2, "ok".into());
    assert_eq!(
        got,
        vec![row("bob", "ctl-b", "rollback"), row("alice", "ctl-a", "release")],
        "{runs:#}"
    );
    assert_eq!(runs[1]["version"], "2.0.0");
    // The table, for people, and --limit.
    let out = tranche()
        .arg("history")
        .arg("--state-dir")
        .arg(&a)
        .arg("--state-dir")
        .arg(&b)
        .output()
        .unwrap();
    let table = stderr(&out);
    assert_eq!(table.lines().count(), 3, "{table}");
    println!("{table}");
    let out = tranche()
        .args(["history", "--limit", "1", "--state-dir"])
        .arg(&a)
        .arg("--state-dir")
        .arg(&b)
        .output()
        .unwrap();
    let table = stderr(&out);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.lines().nth(1).unwrap().contains("bob"), "{table}");
    println!("{table}");

    // Each host's own history: both changes, whoever made them and from wherever.
    let out = from_controller(
        &fleet,
        "ctl-c",
        "carol",
        None,
        &["status", "--history", "--format", "json", "-i", inv, pb],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for h in st["hosts"].as_array().unwrap() {
        let lines: Vec<(&str, &str, &str, &str, &str)> = h["history"]
            .as_array()
            .unwrap_or_else(|| panic!("{st:#}"))
            .iter()
            .map(|l| {
                (
                    l["operator"].as_str().unwrap(),
                    l["controller"].as_str().unwrap(),
                    l["from"].as_str().unwrap(),
                    l["to"].as_str().unwrap(),
                    l["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                ("alice", "ctl-a", "1.0.0", "2.0.0", "ok"),
                ("bob", "ctl-b", "2.0.0", "1.0.0", "rolled_back"),
            ],
            "{st:#}"
        );
        assert_eq!(h["history"][0]["run"], runs[1]["run_id"]);
        assert_eq!(h["history"][1]["run"], runs[0]["run_id"]);
    }
    let out = from_controller(&fleet, "ctl-c", "carol", None, &["status", "--history", "-i", inv, pb]);
    let table = stderr(&out);
    assert_eq!(table.matches("by alice@ctl-a").count(), 2, "{table}");
    println!("{table}");
    let out = from_controller(
        &fleet,
        "ctl-c",
        "carol",
        None,
        &["status", "--history", "-n", "1", "-i", inv, pb],
    );
    let table = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert_eq!(
        table.matches("2.0.0 -> 1.0.0  rolled_back  by bob@ctl-b").count(),
        2,
        "{table}"
    );
    assert!(!table.contains("alice"), "{table}");
    println!("{table}");
}
