//! Alert silences against a real Alertmanager, and the metric gate against a real Prometheus
//! scraping the sample service's /metrics on every host (Debian's packages, started here).

mod common;

use common::{events, http, wait_event, wait_exit, Fleet, Service};

#[test]
fn each_host_is_silenced_while_out_and_the_silence_expires_after() {
    let fleet = Fleet::up(20, 2);
    fleet.install("1.0.0");
    let am = Service::up("alertmanager", 29320, &[]);
    let body = format!(
        "silence:\n  alertmanager: {}\n  matchers:\n    instance: \"{{{{ host.name }}}}\"\n    alertname: \"=~.+\"\n  duration: 20m\n\
         artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n\
         stop:\n  command: \"sleep 1; /srv/demo/current/bin/stop\"\n  timeout: 30s\n",
        am.url()
    );
    let pb = fleet.playbook("s.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let mut child = fleet.spawn_tranche(
        "run",
        &[
            "release",
            "-i",
            fleet.inventory().to_str().unwrap(),
            pb.to_str().unwrap(),
            "--events",
            ev.to_str().unwrap(),
        ],
    );
    // While h01 is out, Alertmanager holds an active silence for it, and none for h02 yet.
    wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h01" && e["step"] == "stop"
    });
    let (code, list) = http("GET", &format!("{}/api/v2/silences", am.url()), None);
    assert_eq!(code, 200);
    let silences: serde_json::Value = serde_json::from_str(&list).unwrap();
    let active: Vec<&serde_json::Value> = silences
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"]["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{list}");
    let matchers = active[0]["matchers"].as_array().unwrap();
    assert!(
        matchers
            .iter()
            .any(|m| m["name"] == "instance" && m["value"] == "h01" && m["isRegex"] == false),
        "{list}"
    );
    assert!(
        matchers
            .iter()
            .any(|m| m["name"] == "alertname" && m["value"] == ".+" && m["isRegex"] == true),
        "{list}"
    );
    assert_eq!(wait_exit(&mut child, 60), Some(0), "{}", fleet.stderr_of("run"));
    // Afterwards: one silence per host, all expired.
    let (_, list) = http("GET", &format!("{}/api/v2/silences", am.url()), None);
    let silences: serde_json::Value = serde_json::from_str(&list).unwrap();
    let all = silences.as_array().unwrap();
    assert_eq!(all.len(), 2, "{list}");
    assert!(all.iter().all(|s| s["status"]["state"] == "expired"), "{list}");
    let evs = events(&ev);
    assert_eq!(
        evs.iter()
            .filter(|e| e["step"] == "unsilence" && e["type"] == "step_finished" && e["status"] == "ok")
            .count(),
        2
    );

    // Alertmanager gone: refused before any host changes.
    drop(am);
    let pb1 = fleet.playbook("s1.yml", "1.0.0", &body.replace("2.0.0", "1.0.0"));
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb1.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Alertmanager at http://127.0.0.1:29320"), "{stderr}");
    assert_eq!(fleet.current(1).as_deref(), Some("2.0.0"));
}

#[test]
fn a_metric_gate_breach_after_the_canary_rolls_back_and_a_clean_version_passes() {
    let fleet = Fleet::up(21, 3);
    fleet.install("1.0.0");
    let targets: Vec<String> = (1..=3).map(|i| format!("{}.{i}:8080", fleet.net)).collect();
    let prom = Service::up("prometheus", 29321, &["--scrape", &targets.join(","), "--wait-scrape"]);
    let gate = |hold: &str| {
        format!(
            "artifact:\n  path: artifacts/demo-VERSION.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n  gate:\n    prometheus: {}\n    query: 'sum(rate(demo_errors_total{{job=\"demo\"}}[5s]))'\n    max: 0.01\n    for: {hold}\n",
            prom.url()
        )
    };
    // The flaky release is healthy but reports errors: the gate after the canary catches it.
    let pb = fleet.playbook("flaky.yml", "flaky", &gate("8s").replace("VERSION", "flaky"));
    let ev = fleet.dir.join("flaky.jsonl");
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
    let evs = events(&ev);
    let gates: Vec<&serde_json::Value> = evs.iter().filter(|e| e["type"] == "gate_checked").collect();
    assert_eq!(gates.len(), 1, "{stderr}");
    assert_eq!(gates[0]["batch"], 1);
    assert_eq!(gates[0]["status"], "failed");
    assert!(
        gates[0]["msg"].as_str().unwrap().contains("over the limit of 0.01"),
        "{}",
        gates[0]
    );
    assert!(
        !evs.iter().any(|e| e["type"] == "batch_started" && e["batch"] == 2),
        "no batch after a breach"
    );
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"), "host {i}");
    }
    assert!(fleet.all_up(), "{:?}", fleet.servers());

    // Wait until the errors are out of the 5s window, then a clean release passes every gate.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, body) = http(
            "GET",
            &format!("{}/api/v1/query?query=sum(rate(demo_errors_total%5B5s%5D))", prom.url()),
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let value = v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("0")
            .parse::<f64>()
            .unwrap_or(0.0);
        if value == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "errors never left the window: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let pb = fleet.playbook("good.yml", "2.0.0", &gate("3s").replace("VERSION", "2.0.0"));
    let ev = fleet.dir.join("good.jsonl");
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        pb.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let passed = events(&ev)
        .iter()
        .filter(|e| e["type"] == "gate_checked" && e["status"] == "ok")
        .count();
    assert_eq!(passed, 2, "the gate runs after each batch: {stderr}");
    for i in 1..=3 {
        assert_eq!(fleet.current(i).as_deref(), Some("2.0.0"));
    }

    // A query Prometheus rejects is refused before anything changes.
    let bad = fleet.playbook(
        "badq.yml",
        "1.0.0",
        &gate("3s")
            .replace("VERSION", "1.0.0")
            .replace("sum(rate(", "sum(rate(("),
    );
    let out = fleet.tranche(&[
        "release",
        "-i",
        fleet.inventory().to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the metric gate cannot be evaluated"), "{stderr}");
    assert_eq!(fleet.current(1).as_deref(), Some("2.0.0"));
}
