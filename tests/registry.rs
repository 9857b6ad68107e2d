//! Registries other than HAProxy, against the real fleet: `command` on a delegate host, and
//! `http` against a recording server (answering 200, then 500), with secrets kept out of output.

mod common;

use common::{events, Fleet, Recorder};

#[test]
fn command_registry_runs_on_the_delegate_one_host_at_a_time() {
    let fleet = Fleet::up(6, 3);
    fleet.install("1.0.0");
    // h01 is the "registry": it records who goes out and comes back; h02 and h03 are released.
    let registry = "registry:\n  kind: command\n  delegate: h01\n  deregister: \"echo out {{ host.name }} >> /srv/registry.log\"\n  register: \"echo in {{ host.name }} >> /srv/registry.log\"\n";
    let pb = fleet.playbook_with(
        "cmd.yml",
        "2.0.0",
        "fleet:!h01",
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n",
        registry,
    );
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let log = std::fs::read_to_string(fleet.srv(1).join("registry.log")).unwrap();
    assert_eq!(log, "out h02\nin h02\nout h03\nin h03\n");
    assert!(
        !fleet.srv(2).join("registry.log").exists(),
        "the commands must run on the delegate only"
    );
    assert_eq!(
        fleet.current(1).as_deref(),
        Some("1.0.0"),
        "the delegate is not released"
    );
    assert_eq!(fleet.current(2).as_deref(), Some("2.0.0"));
    assert_eq!(fleet.current(3).as_deref(), Some("2.0.0"));
}

#[test]
fn http_registry_sends_the_templated_calls_and_a_500_stops_the_run_untouched() {
    let fleet = Fleet::up(7, 3);
    fleet.install("1.0.0");
    let rec = Recorder::start(200);
    let registry = format!(
        "registry:\n  kind: http\n  deregister:\n    method: POST\n    url: \"http://127.0.0.1:{p}/out/{{{{ host.name }}}}?token={{{{ env.TRANCHE_TEST_TOKEN }}}}\"\n    headers: {{ Authorization: \"Bearer {{{{ env.TRANCHE_TEST_TOKEN }}}}\" }}\n    body: '{{\"host\": \"{{{{ host.address }}}}\"}}'\n  register:\n    method: PUT\n    url: \"http://127.0.0.1:{p}/in/{{{{ host.name }}}}?token={{{{ env.TRANCHE_TEST_TOKEN }}}}\"\n",
        p = rec.port
    );
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n";
    let pb = fleet.playbook_with("http.yml", "2.0.0", "fleet", body, &registry);
    let token = "sekrit-token-4711";
    let run = |pb: &std::path::Path, ev: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args([
                "release",
                "-i",
                fleet.inventory().to_str().unwrap(),
                pb.to_str().unwrap(),
            ])
            .args([
                "--known-hosts",
                fleet.known_hosts().to_str().unwrap(),
                "--no-progress",
                "--events",
                ev.to_str().unwrap(),
            ])
            .env("TRANCHE_TEST_TOKEN", token)
            .current_dir(&fleet.dir)
            .output()
            .unwrap()
    };
    let ev = fleet.dir.join("ok.jsonl");
    let out = run(&pb, &ev);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let reqs = rec.requests();
    let calls: Vec<String> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method, r.path.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        calls[..2],
        ["POST /out/h01", "PUT /in/h01"],
        "the canary goes out and back first: {calls:?}"
    );
    assert_eq!(calls.len(), 6);
    assert!(reqs[0].path.ends_with(&format!("token={token}")));
    assert!(reqs[0]
        .headers
        .contains(&("authorization".into(), format!("Bearer {token}"))));
    assert_eq!(reqs[0].body, r#"{"host": "127.0.27.1"}"#);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(token) && !std::fs::read_to_string(&ev).unwrap().contains(token),
        "the token leaked"
    );

    // The registry now answers 500 (with retries off: `registry.retry: 0s`): the canary's
    // deregister fails and the run stops at once. No
    // host was stopped; but a registry that answered 500 may still have acted, so the canary is
    // registered again, and as that fails too it is named as possibly out of the registry.
    rec.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let before = rec.requests().len();
    let pb3 = fleet.playbook_with(
        "http3.yml",
        "1.0.0",
        "fleet",
        &body.replace("2.0.0", "1.0.0"),
        &format!("{registry}  retry: 0s\n"),
    );
    let ev = fleet.dir.join("fail.jsonl");
    let out = run(&pb3, &ev);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("answered 500")
            && stderr.contains("the host was not stopped")
            && stderr.contains("LEFT OUT OF THE REGISTRY: h01"),
        "{stderr}"
    );
    assert_eq!(
        rec.requests().len() - before,
        2,
        "only the canary's deregister call and the call putting it back may be made"
    );
    assert!(stderr.contains("token=***"), "{stderr}");
    assert!(!stderr.contains(token), "the token leaked: {stderr}");
    let journal_run = events(&ev)[0]["run"].as_str().unwrap().to_string();
    let journal =
        std::fs::read_to_string(fleet.dir.join(".tranche/runs").join(journal_run).join("journal.jsonl")).unwrap();
    assert!(!journal.contains(token), "the token leaked into the journal");
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"), "host {i} must be untouched");
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());
}

#[test]
fn haproxy_runtime_api_on_another_host_over_ssh() {
    let fleet = Fleet::up(24, 3);
    fleet.install("1.0.0");
    // h01 plays the load balancer host: HAProxy's admin socket is reached through it.
    let sock = fleet.dir.join("haproxy.sock");
    let registry = |path: &str| {
        format!("registry:\n  kind: haproxy\n  address: \"ssh://h01{path}\"\n  backend: demo\n  drain: 5s\n")
    };
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n";
    let pb = fleet.playbook_with(
        "ssh.yml",
        "2.0.0",
        "fleet:!h01",
        body,
        &registry(sock.to_str().unwrap()),
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
    let drained = events(&ev)
        .iter()
        .filter(|e| e["step"] == "deregister" && e["msg"] == "drained, in maintenance")
        .count();
    assert_eq!(drained, 2);
    assert_eq!(
        (fleet.current(2).as_deref(), fleet.current(3).as_deref()),
        (Some("2.0.0"), Some("2.0.0"))
    );
    assert!(fleet.all_up(), "{:?}", fleet.servers());

    // A socket that is not there: refused before any host changes.
    let pb = fleet.playbook_with(
        "nosock.yml",
        "1.0.0",
        "fleet:!h01",
        &body.replace("2.0.0", "1.0.0"),
        &registry("/nowhere/haproxy.sock"),
    );
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("HAProxy runtime API at ssh://h01/nowhere/haproxy.sock"),
        "{stderr}"
    );
    assert_eq!(fleet.current(2).as_deref(), Some("2.0.0"));

    // An API that does not answer at all: the same.
    let tcp = "registry:\n  kind: haproxy\n  address: 127.0.0.1:1\n  backend: demo\n";
    let pb = fleet.playbook_with("dead.yml", "1.0.0", "fleet:!h01", &body.replace("2.0.0", "1.0.0"), tcp);
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("HAProxy runtime API at 127.0.0.1:1"), "{stderr}");
    assert_eq!(fleet.current(2).as_deref(), Some("2.0.0"));
}

/// A registry that refuses the canary's deregister with a 404 did not act: the host is still in
/// traffic, so it is not put back (no `register` call), not named as left out, and not changed.
#[test]
fn a_refused_deregister_is_not_undone() {
    let fleet = Fleet::up(90, 2);
    fleet.install("1.0.0");
    let rec = Recorder::start(404);
    let registry = format!(
        "registry:\n  kind: http\n  deregister: \"http://127.0.0.1:{p}/out/{{{{ host.name }}}}\"\n  register: \"http://127.0.0.1:{p}/in/{{{{ host.name }}}}\"\n",
        p = rec.port
    );
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n";
    let pb = fleet.playbook_with("refused.yml", "2.0.0", "fleet", body, &registry);
    let ev = fleet.dir.join("ev.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("answered 404") && stderr.contains("the host was not stopped"),
        "{stderr}"
    );
    let calls: Vec<String> = rec
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(calls, ["PUT /out/h01"], "a refused deregister has nothing to undo");
    assert!(!stderr.contains("LEFT OUT OF THE REGISTRY"), "{stderr}");
    assert!(
        !events(&ev).iter().any(|e| e["step"] == "register"),
        "no register step after a refusal"
    );
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"), "host {i} must be untouched");
    }
}
