//! Inventories read as ansible-core reads them: every case under tests/fixtures/inventories is
//! compared with what ansible-core 2.19 printed for it (recorded once by record.sh, so this
//! suite needs no Python): `--list`, `--graph`, `--host H` for every host, and the hosts that
//! host patterns (and `--limit`) select, in order.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tranche::inventory::{output, select, select_limit, Inventory};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventories")
}

fn cases() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("sources").is_file())
        .collect();
    out.sort();
    assert!(out.len() >= 6, "the corpus is missing: {out:?}");
    out
}

fn sources(case: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(case.join("sources"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| case.join(l))
        .collect()
}

fn expected(case: &Path, name: &str) -> String {
    std::fs::read_to_string(case.join("expected").join(name)).unwrap()
}

fn tranche(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tranche")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn inventory_args<'a>(srcs: &'a [PathBuf], rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["inventory"];
    for s in srcs {
        args.push("-i");
        args.push(s.to_str().unwrap());
    }
    args.extend_from_slice(rest);
    args
}

/// Values equal as JSON, except that a float equal to an integer (`3.0`) compares as a float
/// on both sides, which serde_json keeps apart from `3`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.is_f64() == y.is_f64() && x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn list_matches_ansible_inventory() {
    let mut failures = Vec::new();
    for case in cases() {
        let srcs = sources(&case);
        let (code, out, err) = tranche(&inventory_args(&srcs, &["--list"]));
        let want: Value = serde_json::from_str(&expected(&case, "list.json")).unwrap();
        let got: Value = match serde_json::from_str(&out) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: exit {code}, not JSON ({e}): {err}", case.display()));
                continue;
            }
        };
        if !same(&got, &want) {
            failures.push(format!(
                "{}:\n--- tranche\n{}\n--- ansible\n{}",
                case.display(),
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&want).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn graph_matches_ansible_inventory() {
    let mut failures = Vec::new();
    for case in cases() {
        let srcs = sources(&case);
        let (_, out, err) = tranche(&inventory_args(&srcs, &["--graph"]));
        let want = expected(&case, "graph.txt");
        if out.trim_end() != want.trim_end() {
            failures.push(format!(
                "{}:\n--- tranche\n{out}{err}\n--- ansible\n{want}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn host_vars_match_ansible_inventory_host() {
    let mut failures = Vec::new();
    for case in cases() {
        let inv = Inventory::load(&sources(&case)).unwrap_or_else(|d| panic!("{}: {d}", case.display()));
        let want: serde_json::Map<String, Value> = serde_json::from_str(&expected(&case, "hosts.json")).unwrap();
        for (host, vars) in &want {
            let got = output::host_vars(&inv, host);
            if !got.as_ref().is_some_and(|g| same(g, vars)) {
                failures.push(format!("{} {host}: tranche {got:?}, ansible {vars}", case.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn host_command_prints_one_hosts_vars() {
    let case = fixtures().join("kubespray");
    let srcs = sources(&case);
    let (code, out, _) = tranche(&inventory_args(&srcs, &["--host", "node3"]));
    assert_eq!(code, 0);
    let want: Value = serde_json::from_str(&expected(&case, "hosts.json")).unwrap();
    assert!(same(&serde_json::from_str(&out).unwrap(), &want["node3"]), "{out}");
    let (code, _, err) = tranche(&inventory_args(&srcs, &["--host", "nope"]));
    assert_ne!(code, 0);
    assert!(err.contains("no host `nope`"), "{err}");
}

#[test]
fn patterns_select_the_hosts_ansible_selects_in_order() {
    let mut failures = Vec::new();
    for case in cases() {
        let inv = Inventory::load(&sources(&case)).unwrap_or_else(|d| panic!("{}: {d}", case.display()));
        let want: Vec<Value> = serde_json::from_str(&expected(&case, "patterns.json")).unwrap();
        for w in want {
            let pattern = w["pattern"].as_str().unwrap();
            let limit = w.get("limit").and_then(Value::as_str).map(|l| {
                // `@file` is relative to the case, where record.sh ran.
                l.split(',')
                    .map(|p| match p.strip_prefix('@') {
                        Some(f) => format!("@{}", case.join(f).display()),
                        None => p.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let got = select(&inv, pattern).and_then(|mut s| {
                if let Some(l) = &limit {
                    let l = select_limit(&inv, l)?;
                    s.retain(|i| l.contains(i));
                }
                Ok(s.into_iter().map(|i| inv.hosts[i].name.clone()).collect::<Vec<_>>())
            });
            let ok = match (&got, w.get("hosts")) {
                (Ok(g), Some(h)) => serde_json::to_value(g).unwrap() == *h,
                (Err(_), None) => true,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{} `{pattern}` {limit:?}: tranche {got:?}, ansible {w}",
                    case.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
