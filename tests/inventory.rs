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

/// `playbook_dir` in the case: group_vars/ and host_vars/ beside a playbook there.
fn playbook_dir(case: &Path) -> Option<PathBuf> {
    std::fs::read_to_string(case.join("playbook_dir"))
        .ok()
        .map(|d| case.join(d.trim()))
}

fn load(case: &Path) -> Inventory {
    Inventory::load_with(&sources(case), playbook_dir(case).as_deref())
        .unwrap_or_else(|d| panic!("{}: {d}", case.display()))
}

fn expected(case: &Path, name: &str) -> String {
    std::fs::read_to_string(case.join("expected").join(name)).unwrap()
}

fn tranche(args: &[String]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tranche")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn inventory_args(case: &Path, rest: &[&str]) -> Vec<String> {
    let mut args = vec!["inventory".to_string()];
    for s in sources(case) {
        args.push("-i".into());
        args.push(s.display().to_string());
    }
    if let Some(d) = playbook_dir(case) {
        args.push("--playbook-dir".into());
        args.push(d.display().to_string());
    }
    args.extend(rest.iter().map(|s| s.to_string()));
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
        let (code, out, err) = tranche(&inventory_args(&case, &["--list"]));
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
        let (_, out, err) = tranche(&inventory_args(&case, &["--graph"]));
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
        let inv = load(&case);
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
    let (code, out, _) = tranche(&inventory_args(&case, &["--host", "node3"]));
    assert_eq!(code, 0);
    let want: Value = serde_json::from_str(&expected(&case, "hosts.json")).unwrap();
    assert!(same(&serde_json::from_str(&out).unwrap(), &want["node3"]), "{out}");
    let (code, _, err) = tranche(&inventory_args(&case, &["--host", "nope"]));
    assert_ne!(code, 0);
    assert!(err.contains("no host `nope`"), "{err}");
}

#[test]
fn patterns_select_the_hosts_ansible_selects_in_order() {
    let mut failures = Vec::new();
    for case in cases() {
        let inv = load(&case);
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

/// `ansible-inventory --list > inv.json`, then `-i inv.json`: Ansible itself refuses the saved
/// file (its YAML plugin wants `children` as a mapping); tranche reads it as the script form.
#[test]
fn a_saved_list_is_read_back_as_the_same_inventory() {
    for case in cases() {
        let list = case.join("expected/list.json");
        let (code, out, err) = tranche(&[
            "inventory".into(),
            "-i".into(),
            list.display().to_string(),
            "--list".into(),
        ]);
        assert_eq!(code, 0, "{}: {err}", case.display());
        let want: Value = serde_json::from_str(&expected(&case, "list.json")).unwrap();
        assert!(
            same(&serde_json::from_str(&out).unwrap(), &want),
            "{}: {out}",
            case.display()
        );
    }
}

#[test]
fn vault_encrypted_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("group_vars")).unwrap();
    std::fs::write(dir.path().join("hosts.yml"), "all:\n  hosts:\n    h1:\n").unwrap();
    std::fs::write(
        dir.path().join("group_vars/all.yml"),
        "db_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6231\n",
    )
    .unwrap();
    let (code, _, err) = tranche(&[
        "inventory".into(),
        "-i".into(),
        dir.path().join("hosts.yml").display().to_string(),
        "--list".into(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("variable `db_password` is encrypted with Ansible Vault"),
        "{err}"
    );
    assert!(err.contains("group_vars/all.yml"), "{err}");
}

/// `hosts:` of a release and `--limit @retry-file` select as Ansible does, and group_vars/
/// beside the playbook reach the hosts (`tranche plan --format json` shows the targets).
#[test]
fn plan_uses_ansible_order_limit_files_and_playbook_group_vars() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("inv")).unwrap();
    std::fs::create_dir_all(d.join("group_vars")).unwrap();
    std::fs::write(
        d.join("inv/hosts"),
        "[control]\ncp1\n\n[workers]\nw1\nw2\n\n[cluster:children]\nworkers\ncontrol\n",
    )
    .unwrap();
    std::fs::write(d.join("group_vars/workers.yml"), "ansible_port: 2201\n").unwrap();
    std::fs::write(d.join("retry"), "cp1\nw2\n").unwrap();
    let playbook =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/playbook.yml")).unwrap();
    let playbook: String = playbook
        .lines()
        .map(|l| if l.starts_with("hosts:") { "hosts: cluster" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(d.join("release.yml"), playbook).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/app.tar.gz"),
        d.join("app.tar.gz"),
    )
    .unwrap();
    let (code, out, err) = tranche(&[
        "plan".into(),
        "-i".into(),
        d.join("inv/hosts").display().to_string(),
        d.join("release.yml").display().to_string(),
        "--format".into(),
        "json".into(),
        "--limit".into(),
        format!("@{}", d.join("retry").display()),
    ]);
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let hosts: Vec<(String, u64)> = plan["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["hosts"].as_array().unwrap().clone())
        .map(|h| (h["name"].as_str().unwrap().to_string(), h["port"].as_u64().unwrap()))
        .collect();
    // Ansible's order for `cluster`: workers (its first child), then control.
    assert_eq!(hosts, [("w2".to_string(), 2201), ("cp1".to_string(), 22)], "{out}");
}

/// The address, port and user tranche connects with are the ones Ansible's ssh plugin takes from
/// the recorded host variables: `ansible_ssh_*` over `ansible_*`, else the name and no port or
/// user (left to the SSH config); a plain `user`, `port` or `address` does not count.
#[test]
fn connection_settings_are_ansibles() {
    let s = |v: Option<&Value>| {
        v.map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    for case in cases() {
        let inv = load(&case);
        let want: serde_json::Map<String, Value> = serde_json::from_str(&expected(&case, "hosts.json")).unwrap();
        for h in &inv.hosts {
            let empty = serde_json::Map::new();
            let vars = want.get(&h.name).and_then(Value::as_object).unwrap_or(&empty);
            let pick = |names: [&str; 2]| s(vars.get(names[0]).or(vars.get(names[1])));
            let address = pick(["ansible_ssh_host", "ansible_host"]).unwrap_or_else(|| h.name.clone());
            let port = pick(["ansible_ssh_port", "ansible_port"]).map(|p| p.parse::<u16>().unwrap());
            let user = pick(["ansible_ssh_user", "ansible_user"]);
            assert_eq!(
                (&h.address, h.port, &h.user),
                (&address, port, &user),
                "{} {}",
                case.display(),
                h.name
            );
        }
    }
}

#[test]
fn plain_user_port_and_address_are_ordinary_variables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts");
    std::fs::write(
        &path,
        "[all:vars]\nuser=ansible\nport=8080\naddress=10.9.9.9\n\n[web]\nw1 ansible_user=deploy ansible_ssh_user=ops ansible_host=10.0.0.1 ansible_port=2201\nw2\n",
    )
    .unwrap();
    let inv = Inventory::load(&[path]).unwrap();
    let w1 = inv.host("w1").unwrap();
    assert_eq!(
        (w1.address.as_str(), w1.port, w1.user.as_deref()),
        ("10.0.0.1", Some(2201), Some("ops"))
    );
    let w2 = inv.host("w2").unwrap();
    assert_eq!((w2.address.as_str(), w2.port, w2.user.as_deref()), ("w2", None, None));
    assert_eq!(w2.vars["user"], "ansible");
    assert_eq!(w2.vars["port"], 8080);
}

/// A resumed run refuses a changed inventory: with a directory of sources (which used to be
/// unreadable as a file) and with a changed `group_vars/` file beside it or the playbook.
#[test]
fn a_run_notices_changed_group_vars_and_reads_inventory_directories() {
    use tranche::journal::{files_sha256, RunRecord};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("inv/group_vars")).unwrap();
    std::fs::create_dir_all(d.join("play/host_vars")).unwrap();
    std::fs::write(d.join("inv/hosts.ini"), "[web]\nw1\n").unwrap();
    std::fs::write(d.join("inv/group_vars/web.yml"), "ansible_port: 2201\n").unwrap();
    std::fs::write(d.join("play/host_vars/w1.yml"), "x: 1\n").unwrap();
    std::fs::write(d.join("play/release.yml"), "service: demo\n").unwrap();
    let inventories = vec![d.join("inv")];
    let playbook = d.join("play/release.yml");
    let sha = |p: &Path| files_sha256(&Inventory::input_files(&inventories, p.parent())).unwrap();
    let record = RunRecord {
        run_id: "r".into(),
        command: "release".into(),
        to: None,
        inventories: inventories.clone(),
        playbook: playbook.clone(),
        limit: None,
        shard: None,
        extra_vars: Vec::new(),
        inventory_sha256: sha(&playbook),
        playbook_sha256: files_sha256(std::slice::from_ref(&playbook)).unwrap(),
        artifact_sha256: None,
        started: String::new(),
        operator: None,
        controller: None,
    };
    assert!(record.changes().is_empty(), "{:?}", record.changes());
    std::fs::write(d.join("inv/group_vars/web.yml"), "ansible_port: 2202\n").unwrap();
    assert_eq!(record.changes(), ["the inventory changed"]);
    std::fs::write(d.join("inv/group_vars/web.yml"), "ansible_port: 2201\n").unwrap();
    assert!(record.changes().is_empty());
    std::fs::write(d.join("play/host_vars/w1.yml"), "x: 2\n").unwrap();
    assert_eq!(record.changes(), ["the inventory changed"]);
}

/// `-i inventory` names the script in the current directory, never a program on $PATH.
#[test]
fn a_relative_script_is_run_from_its_path() {
    let case = fixtures().join("script-host");
    let out = Command::new(env!("CARGO_BIN_EXE_tranche"))
        .current_dir(&case)
        .env("PATH", "/nonexistent")
        .args(["inventory", "-i", "inventory", "--list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: Value = serde_json::from_str(&expected(&case, "list.json")).unwrap();
    assert!(same(&serde_json::from_slice(&out.stdout).unwrap(), &want));
}

/// A bad connection value in `group_vars/` is a positioned error, not a silent port 22.
#[test]
fn bad_connection_values_in_group_vars_are_positioned_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("group_vars")).unwrap();
    std::fs::write(d.join("hosts"), "[web]\nw1\n").unwrap();
    std::fs::write(d.join("group_vars/web.yml"), "x: 1\nansible_port: ssh\n").unwrap();
    let (code, _, err) = tranche(&[
        "inventory".into(),
        "-i".into(),
        d.join("hosts").display().to_string(),
        "--list".into(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`ansible_port` must be a port number from 1 to 65535, not \"ssh\""),
        "{err}"
    );
    assert!(err.contains("group_vars/web.yml:2:15"), "{err}");
}

/// Where Ansible's ssh plugin really connects (recorded from `ansible -m ping -vvv` against
/// loopback addresses): tranche resolves the same address, port and user for every host.
#[test]
fn connections_go_where_ansibles_ssh_plugin_goes() {
    let mut checked = 0;
    for case in cases() {
        let Ok(text) = std::fs::read_to_string(case.join("expected/connection.json")) else {
            continue;
        };
        let inv = load(&case);
        let want: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(want.len(), inv.hosts.len(), "{}", case.display());
        for (name, w) in &want {
            let h = inv.host(name).unwrap_or_else(|| panic!("{} {name}", case.display()));
            let got = serde_json::json!({"address": h.address, "port": h.port, "user": h.user});
            assert_eq!(&got, w, "{} {name}", case.display());
            checked += 1;
        }
    }
    assert!(checked >= 4, "no connection was recorded");
}
