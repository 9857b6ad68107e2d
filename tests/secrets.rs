//! A run that leaks nothing: secrets from every source (an `env.*` value in a command and a URL,
//! a `-e KEY=@env:NAME` value, a registry token, Alertmanager userinfo, a Prometheus token) and a
//! failing step whose stderr prints them; no output of the run, nor the plan, holds any of them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common::{events, Fleet, Recorder};

/// (method, path, Authorization header) of every request the fake monitoring server got.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A fake Alertmanager and Prometheus (the few calls tranche makes) that records credentials.
fn fake_monitoring() -> (u16, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    match k.to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_string(),
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let answer = match (method.as_str(), path.split('?').next().unwrap_or("")) {
                ("POST", "/api/v2/silences") => r#"{"silenceID":"s-1"}"#,
                ("GET", "/api/v1/query") => r#"{"status":"success","data":{"resultType":"scalar","result":[0,"0.5"]}}"#,
                _ => "{}",
            };
            log.lock().unwrap().push((method, path, auth));
            let mut w = stream;
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (port, seen)
}

/// tranche in the fleet's folder with `env` set.
fn tranche(fleet: &Fleet, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args(args)
        .envs(env.iter().copied())
        .env("CI", "true")
        .current_dir(&fleet.dir)
        .output()
        .expect("run tranche")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_run_with_secrets_everywhere_leaks_none_of_them() {
    let fleet = Fleet::up(60, 2);
    fleet.install("1.0.0");
    let tag = std::process::id();
    let env_secret = format!("env-s3cret-{tag}");
    let e_secret = format!("e-s3cret-{tag}");
    let reg_token = format!("reg-t0ken-{tag}");
    let am_pass = format!("am-pa55-{tag}");
    let prom_token = format!("prom-t0ken-{tag}");
    let secrets = [&env_secret, &e_secret, &reg_token, &am_pass, &prom_token];

    let consul = Recorder::start(200);
    let (mon, seen) = fake_monitoring();
    // The env secret is in a registry URL (consul's service id) and in commands; h02's
    // after_start prints every secret on stderr and fails.
    let body = format!(
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\n\
         rollout:\n  canary: 1\n  batch: 1\n  max_failures: 1\n  on_failure: revert-failed\n\
         \x20 gate:\n    prometheus: http://127.0.0.1:{mon}\n    token: \"{{{{ env.LEAK_PROM }}}}\"\n    query: up\n    max: 1\n\
         silence:\n  alertmanager: http://tranche:{am_pass}@127.0.0.1:{mon}\n  matchers: {{instance: \"{{{{ host.name }}}}\"}}\n\
         hooks:\n  precheck: \"test -n {{{{ env.LEAK_ENV }}}}\"\n\
         \x20 after_start: \"echo leaked {{{{ api_key }}}} {{{{ env.LEAK_ENV }}}} {reg_token} {am_pass} {{{{ env.LEAK_PROM }}}} >&2; test {{{{ host.name }}}} != h02\"\n"
    );
    let registry = format!(
        "registry:\n  kind: consul\n  address: http://127.0.0.1:{}\n  token: \"{reg_token}\"\n  service_id: \"svc-{{{{ env.LEAK_ENV }}}}\"\n",
        consul.port
    );
    let pb = fleet.playbook_with("leak.yml", "2.0.0", "fleet", &body, &registry);
    let env = [
        ("LEAK_ENV", env_secret.as_str()),
        ("LEAK_E", e_secret.as_str()),
        ("LEAK_PROM", prom_token.as_str()),
    ];
    let inv = fleet.inventory();
    let (ev, junit, summary) = (
        fleet.dir.join("ev.jsonl"),
        fleet.dir.join("junit.xml"),
        fleet.dir.join("summary.md"),
    );
    let kh = fleet.known_hosts();
    let run = tranche(
        &fleet,
        &[
            "release",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "-e",
            "api_key=@env:LEAK_E",
            "--events",
            ev.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--known-hosts",
            kh.to_str().unwrap(),
            "--no-progress",
        ],
        &env,
    );
    let run_err = String::from_utf8_lossy(&run.stderr).to_string();
    // h01 released, h02 failed in after_start and was reverted.
    assert_eq!(run.status.code(), Some(1), "{run_err}");
    assert_eq!(fleet.current(1).as_deref(), Some("2.0.0"));

    // The secrets were used: the credentials arrived, the commands ran with the values.
    let seen = seen.lock().unwrap().clone();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("tranche:{am_pass}"))
    );
    assert!(
        seen.iter()
            .any(|(m, p, a)| m == "POST" && p == "/api/v2/silences" && *a == basic),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(_, p, a)| p.starts_with("/api/v1/query") && *a == format!("Bearer {prom_token}")),
        "{seen:?}"
    );
    let reqs = consul.requests();
    assert!(
        reqs.iter().any(|r| r.path.contains(&format!("svc-{env_secret}"))
            && r.headers.iter().any(|(k, v)| k == "x-consul-token" && *v == reg_token)),
        "{reqs:?}"
    );
    // h02's failing step carried a stderr, masked.
    let evs = events(&ev);
    let failed = evs
        .iter()
        .find(|e| e["type"] == "step_finished" && e["host"] == "h02" && e["status"] == "failed")
        .expect("h02 failed a step");
    assert_eq!(
        failed["stderr"].as_str(),
        Some("leaked *** *** *** *** ***"),
        "{failed}"
    );

    let plan = tranche(
        &fleet,
        &[
            "plan",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "-e",
            "api_key=@env:LEAK_E",
            "--format",
            "json",
        ],
        &env,
    );
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan_table = tranche(
        &fleet,
        &[
            "plan",
            "-i",
            inv.to_str().unwrap(),
            pb.to_str().unwrap(),
            "-e",
            "api_key=@env:LEAK_E",
        ],
        &env,
    );
    assert_eq!(plan_table.status.code(), Some(0));

    // Every output: stdout, stderr, events, JUnit, summary, the plan, and everything under
    // the state directory (run.json, journal.jsonl).
    let mut outputs: Vec<(String, String)> = vec![
        ("release stdout".into(), String::from_utf8_lossy(&run.stdout).into()),
        ("release stderr".into(), run_err.clone()),
        ("plan json".into(), String::from_utf8_lossy(&plan.stdout).into()),
        ("plan stderr".into(), String::from_utf8_lossy(&plan.stderr).into()),
        ("plan table".into(), String::from_utf8_lossy(&plan_table.stderr).into()),
    ];
    for p in [&ev, &junit, &summary] {
        outputs.push((p.display().to_string(), std::fs::read_to_string(p).unwrap()));
    }
    let state = files_under(&fleet.dir.join(".tranche"));
    assert!(state.iter().any(|p| p.ends_with("run.json")), "{state:?}");
    assert!(state.iter().any(|p| p.ends_with("journal.jsonl")), "{state:?}");
    for p in &state {
        outputs.push((p.display().to_string(), std::fs::read_to_string(p).unwrap()));
    }
    let run_json = outputs.iter().find(|(n, _)| n.ends_with("run.json")).unwrap();
    assert!(run_json.1.contains("@env:LEAK_E"), "{}", run_json.1);
    let junit_text = std::fs::read_to_string(&junit).unwrap();
    assert!(junit_text.contains("leaked *** ***"), "{junit_text}");
    for (name, text) in &outputs {
        for s in secrets {
            assert!(!text.contains(s.as_str()), "{name} holds the secret {s}:\n{text}");
        }
    }
}

/// A run whose `-e` value came from the environment stores `@env:NAME` in run.json; resuming it
/// reads NAME again, and refuses (exit 2) when it is not set, rather than run without it.
#[test]
fn resume_reads_a_secret_extra_var_from_the_environment_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("app.tar.gz"), b"x").unwrap();
    std::fs::write(
        d.join("inventory.yml"),
        "all:\n  hosts:\n    h1: { ansible_host: 127.0.0.1 }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("playbook.yml"),
        "service: demo\nversion: \"2.0.0\"\nartifact:\n  path: app.tar.gz\nhooks:\n  precheck: \"test -n {{ api_key }}\"\n",
    )
    .unwrap();
    let (inventories, playbook) = (vec![d.join("inventory.yml")], d.join("playbook.yml"));
    let record = tranche::journal::RunRecord {
        run_id: "20261201-000000-abcd".into(),
        command: "release".into(),
        to: None,
        inventory_sha256: tranche::journal::files_sha256(&inventories).unwrap(),
        playbook_sha256: tranche::journal::files_sha256(std::slice::from_ref(&playbook)).unwrap(),
        inventories,
        playbook,
        limit: None,
        shard: None,
        extra_vars: vec![("api_key".into(), "@env:TRANCHE_TEST_RESUME_KEY".into())],
        artifact_sha256: None,
        started: "2026-12-01T00:00:00.000Z".into(),
        operator: None,
        controller: None,
    };
    let state = d.join("state");
    record.save(&state).unwrap();
    std::fs::write(tranche::journal::journal_path(&state, &record.run_id), "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args([
            "resume",
            "20261201-000000-abcd",
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
        ])
        .env_remove("TRANCHE_TEST_RESUME_KEY")
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`-e api_key=@env:TRANCHE_TEST_RESUME_KEY` reads the environment variable TRANCHE_TEST_RESUME_KEY, which is not set"),
        "{stderr}"
    );
}
