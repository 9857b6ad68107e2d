//! Registry presets. consul, nacos, eureka and dubbo servers cannot be installed here: their
//! exact requests are checked against a recording HTTP server. etcd runs for real (Debian's
//! etcd-server, started by the test).

mod common;

use common::{events, http, wait_event, wait_exit, Fleet, Recorder, Service};

fn calls(rec: &Recorder) -> Vec<String> {
    rec.requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn consul_nacos_eureka_dubbo_send_their_documented_calls() {
    let fleet = Fleet::up(18, 2);
    fleet.install("1.0.0");
    let rec = Recorder::start(200);
    let a = format!("http://127.0.0.1:{}", rec.port);
    let presets = [
        (
            "consul",
            format!("registry:\n  kind: consul\n  address: {a}\n  service_id: \"web {{{{ host.name }}}}\"\n  token: \"{{{{ env.TRANCHE_CONSUL_TOKEN }}}}\"\n"),
            vec![
                "PUT /v1/agent/service/maintenance/web%20h01?enable=true&reason=tranche%20release%202.0.0",
                "PUT /v1/agent/service/maintenance/web%20h01?enable=false",
            ],
        ),
        (
            "nacos",
            format!("registry:\n  kind: nacos\n  address: {a}\n  service_name: demo\n  port: 8080\n  namespace: prod\n  group: DEFAULT_GROUP\n"),
            vec![
                "PUT /nacos/v1/ns/instance?serviceName=demo&ip=127.0.38.1&port=8080&namespaceId=prod&groupName=DEFAULT_GROUP&enabled=false",
                "PUT /nacos/v1/ns/instance?serviceName=demo&ip=127.0.38.1&port=8080&namespaceId=prod&groupName=DEFAULT_GROUP&enabled=true",
            ],
        ),
        (
            "eureka",
            format!("registry:\n  kind: eureka\n  address: {a}/eureka\n  instance_id: \"{{{{ host.address }}}}:demo:8080\"\n"),
            vec![
                "PUT /eureka/apps/DEMO/127.0.38.1%3Ademo%3A8080/status?value=OUT_OF_SERVICE",
                "DELETE /eureka/apps/DEMO/127.0.38.1%3Ademo%3A8080/status?value=UP",
            ],
        ),
        ("dubbo", format!("registry:\n  kind: dubbo\n  address: {a}\n  service: com.example.Demo\n"), vec!["GET /offline?service=com.example.Demo", "GET /online?service=com.example.Demo"]),
    ];
    let mut version = "2.0.0";
    for (kind, registry, want) in presets {
        let before = rec.requests().len();
        let body = format!("artifact:\n  path: artifacts/demo-{version}.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n");
        let pb = fleet.playbook_with(&format!("{kind}.yml"), version, "fleet", &body, &registry);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
            .args([
                "release",
                "-i",
                fleet.inventory().to_str().unwrap(),
                pb.to_str().unwrap(),
                "--no-progress",
            ])
            .args(["--known-hosts", fleet.known_hosts().to_str().unwrap()])
            .env("TRANCHE_CONSUL_TOKEN", "c0nsul-t0ken")
            .current_dir(&fleet.dir)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = calls(&rec)[before..].to_vec();
        assert_eq!(got.len(), 4, "{kind}: {got:?}");
        // The canary (h01) goes out and back before h02.
        assert_eq!(got[..2], want[..], "{kind}");
        if kind == "consul" {
            let r = &rec.requests()[before];
            assert!(
                r.headers.contains(&("x-consul-token".into(), "c0nsul-t0ken".into())),
                "{:?}",
                r.headers
            );
        }
        version = if version == "2.0.0" { "1.0.0" } else { "2.0.0" };
    }
    // HAProxy is not the registry here.
    assert!(fleet.wait_all_up(5), "{:?}", fleet.servers());
}

#[test]
fn etcd_instance_key_is_deleted_while_the_host_is_out_and_restored_after() {
    let fleet = Fleet::up(19, 2);
    fleet.install("1.0.0");
    let etcd = Service::up("etcd", 23919, &[]);
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let key = |h: &str| b64(&format!("/services/demo/{h}"));
    let range = |h: &str| {
        http(
            "POST",
            &format!("{}/v3/kv/range", etcd.url()),
            Some(&format!("{{\"key\": \"{}\"}}", key(h))),
        )
    };
    let registry = format!(
        "registry:\n  kind: etcd\n  address: {}\n  key: \"/services/demo/{{{{ host.name }}}}\"\n  value: '{{\"addr\": \"{{{{ host.address }}}}:8080\"}}'\n",
        etcd.url()
    );
    let body = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 1\nstop:\n  command: \"sleep 1; /srv/demo/current/bin/stop\"\n  timeout: 30s\n";
    let pb = fleet.playbook_with("etcd.yml", "2.0.0", "fleet", body, &registry);
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
    // While h01 is stopping, its key is gone and h02's is not there yet either (it was never
    // registered in this etcd); after the run both are present with the templated value.
    wait_event(&ev, 60, |e| {
        e["type"] == "step_started" && e["host"] == "h01" && e["step"] == "stop"
    });
    let (code, during) = range("h01");
    assert_eq!(code, 200);
    assert!(
        !during.contains("\"kvs\""),
        "h01's key must be deleted while it is out: {during}"
    );
    assert_eq!(wait_exit(&mut child, 60), Some(0), "{}", fleet.stderr_of("run"));
    for (i, h) in ["h01", "h02"].iter().enumerate() {
        let (code, after) = range(h);
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&after).unwrap();
        let value = v["kvs"][0]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{h} not restored: {after}"));
        let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(value).unwrap()).unwrap();
        assert_eq!(decoded, format!("{{\"addr\": \"127.0.39.{}:8080\"}}", i + 1));
    }
    let evs = events(&ev);
    assert!(evs
        .iter()
        .any(|e| e["step"] == "deregister" && e["msg"].as_str().unwrap_or("").contains("/v3/kv/deleterange -> 200")));
}
