//! Notifications and release markers (`notify`, `annotate`) against a recording HTTP server in
//! this process (tokio): each kind's documented payload shape, each signature recomputed here
//! from what the server received, Grafana's create-then-patch region; notifiers that stall,
//! refuse or fail cost the run a bounded time and only warnings; and on the real fleet
//! (slots 93-94) a release's exit code and outcome do not change, nor does it get slower than a
//! second, with a notifier that never answers and one that refuses.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use tranche::events::{Event, EventKind, PlanBatch, PlanFailure, PlanSummary, Status, Step};
use tranche::notify::NotifySink;
use tranche::report::Sink;

// ---------------------------------------------------------------------------------------------
// The recording server.

#[derive(Debug, Clone)]
struct Req {
    method: String,
    /// Path and query.
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{} {}: {e}", self.method, self.target))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An HTTP/1.1 server on loopback that records every request and answers as each service
/// does (Slack `ok`, Feishu `{"code":0}`, DingTalk and WeCom `{"errcode":0}`, Grafana the
/// created annotation's id). Paths starting with `/stall` are read, recorded and never
/// answered; `/fail` answers 500; `/feishu-refuses` answers 200 with Feishu's signature error.
struct Recorder {
    port: u16,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                loop {
                    let Ok((s, _)) = listener.accept().await else { continue };
                    tokio::spawn(serve(s, l.clone()));
                }
            });
        });
        Recorder {
            port: rx.recv().unwrap(),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self, prefix: &str) -> Vec<Req> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target.starts_with(prefix))
            .cloned()
            .collect()
    }
}

async fn serve(mut s: tokio::net::TcpStream, log: Arc<Mutex<Vec<Req>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..(head_end + len).min(buf.len())].to_vec();
    log.lock().unwrap().push(Req {
        method: method.clone(),
        target: target.clone(),
        headers,
        body,
    });
    let (status, reply) = if target.starts_with("/stall") {
        // Accepted, read, and never answered.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    } else if target.starts_with("/fail") {
        (500, "internal error".to_string())
    } else if target.starts_with("/feishu-refuses") {
        (
            200,
            r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#.into(),
        )
    } else if target.starts_with("/slack") {
        (200, "ok".into())
    } else if target.starts_with("/feishu") {
        (200, r#"{"code":0,"msg":"success","data":{}}"#.into())
    } else if target.starts_with("/dingtalk") || target.starts_with("/wecom") {
        (200, r#"{"errcode":0,"errmsg":"ok"}"#.into())
    } else if target.starts_with("/grafana/api/annotations") && method == "POST" {
        (200, r#"{"message":"Annotation added","id":42}"#.into())
    } else if target.starts_with("/grafana/api/annotations/42") && method == "PATCH" {
        (200, r#"{"message":"Annotation patched"}"#.into())
    } else if target.starts_with("/hook") {
        (204, String::new())
    } else {
        (404, "not found".into())
    };
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// A port nothing listens on: connections are refused.
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// Signatures, recomputed here from what the server received.

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha2_011::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------------
// A run, as events.

const RUN: &str = "20261202-013000-ab12";

fn run_events() -> Vec<Event> {
    let kinds = vec![
        EventKind::RunStarted {
            service: "demo".into(),
            version: "2.0.0".into(),
            hosts: 3,
            mode: "release".into(),
            plan: PlanSummary {
                batches: vec![
                    PlanBatch {
                        number: 1,
                        canary: true,
                        size: 1,
                        ..PlanBatch::default()
                    },
                    PlanBatch {
                        number: 2,
                        size: 2,
                        ..PlanBatch::default()
                    },
                ],
                failure: PlanFailure {
                    max_failures: "1".into(),
                    budget: 1,
                    on_failure: "rollback".into(),
                },
                ..PlanSummary::default()
            },
        },
        EventKind::HostFinished {
            batch: 1,
            host: "h01".into(),
            status: Status::Ok,
            ms: 900,
            msg: "on 2.0.0".into(),
        },
        EventKind::StepFinished {
            batch: 2,
            host: "h02".into(),
            step: Step::Health,
            status: Status::Failed,
            ms: 10_000,
            msg: "503 after 20 tries".into(),
            stderr: None,
            hint: None,
        },
        EventKind::HostFinished {
            batch: 2,
            host: "h02".into(),
            status: Status::Reverted,
            ms: 12_000,
            msg: "back on 1.0.0".into(),
        },
        EventKind::HostFinished {
            batch: 2,
            host: "h03".into(),
            status: Status::Ok,
            ms: 3_000,
            msg: "on 2.0.0".into(),
        },
        EventKind::BatchFinished {
            batch: 2,
            ok: 1,
            skipped: 0,
            failed: 1,
            ms: 12_100,
        },
        EventKind::RunFinished {
            ok: 2,
            failed: 1,
            reverted: 1,
            skipped: 0,
            exit_code: 1,
            ms: 14_500,
            msg: "1 host(s) failed within the budget of 1".into(),
        },
    ];
    kinds.into_iter().map(|k| Event::new(RUN, k)).collect()
}

/// A playbook with `notify_yaml` in a temporary folder, loaded.
fn load(dir: &tempfile::TempDir, notify_yaml: &str) -> tranche::playbook::Playbook {
    std::fs::write(dir.path().join("app.tar.gz"), b"x").unwrap();
    let path = dir.path().join("pb.yml");
    std::fs::write(
        &path,
        format!("service: demo\nversion: \"2.0.0\"\nartifact: {{ path: app.tar.gz }}\n{notify_yaml}"),
    )
    .unwrap();
    tranche::playbook::Playbook::load(&path, &[]).unwrap_or_else(|d| panic!("{d:?}"))
}

fn sink_for(p: &tranche::playbook::Playbook) -> NotifySink {
    let secrets: Vec<String> = p.notify.iter().flat_map(|n| n.secrets()).collect();
    NotifySink::start(p, secrets).expect("notifiers configured")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_kind_sends_its_documented_shape_with_a_valid_signature() {
    let srv = Recorder::start();
    std::env::set_var("NT_SLACK_URL", srv.url("/slack/services/T000/B000/XXXXsecretpath"));
    std::env::set_var("NT_FEISHU_URL", srv.url("/feishu/open-apis/bot/v2/hook/feishu-hook-id"));
    std::env::set_var("NT_FEISHU_SECRET", "feishu-s3cret");
    std::env::set_var("NT_DING_URL", srv.url("/dingtalk/robot/send?access_token=ding-t0ken"));
    std::env::set_var("NT_DING_SECRET", "SECding-s3cret");
    std::env::set_var("NT_HOOK_SECRET", "hook-s3cret");
    std::env::set_var("NT_GRAFANA_TOKEN", "glsa_grafana-t0ken");
    let dir = tempfile::tempdir().unwrap();
    let p = load(
        &dir,
        &format!(
            "notify:
  - kind: slack
    url_env: NT_SLACK_URL
  - kind: feishu
    url_env: NT_FEISHU_URL
    secret_env: NT_FEISHU_SECRET
  - kind: dingtalk
    url_env: NT_DING_URL
    secret_env: NT_DING_SECRET
  - kind: wecom
    url: {wecom}
  - kind: webhook
    url: {hook}
    secret_env: NT_HOOK_SECRET
    on: [start, end]
annotate:
  grafana: {grafana}
  token_env: NT_GRAFANA_TOKEN
  tags: [deploy, prod]
",
            wecom = srv.url("/wecom/cgi-bin/webhook/send?key=wecom-k3y"),
            hook = srv.url("/hook"),
            grafana = srv.url("/grafana"),
        ),
    );
    let sink = sink_for(&p);
    let before = now_secs();
    for e in run_events() {
        sink.event(&e);
    }
    let warnings = sink.finish();
    assert!(warnings.is_empty(), "{warnings:?}");

    // Slack: `text` and Block Kit `blocks` (header, mrkdwn sections, context); start, the
    // failed batch and the end.
    let slack = srv.requests("/slack/services/T000/B000/XXXXsecretpath");
    assert_eq!(slack.len(), 3, "{slack:?}");
    for r in &slack {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert!(v["text"].is_string(), "{v}");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        for b in &blocks[1..blocks.len() - 1] {
            assert_eq!(b["type"], "section");
            assert_eq!(b["text"]["type"], "mrkdwn");
            assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 3000);
        }
        assert_eq!(blocks.last().unwrap()["type"], "context");
    }
    let texts: Vec<String> = slack
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        texts,
        [
            "demo 2.0.0: release started on 3 hosts",
            "demo 2.0.0: release: batch 2 of 2 failed (1 of 2 hosts)",
            "demo 2.0.0: release finished with failed hosts",
        ]
    );
    // The end: the outcome, counts, duration and the failed host with its step and reason.
    let end = serde_json::to_string(&slack[2].json()["blocks"]).unwrap();
    for want in [
        "outcome: finished with failed hosts (exit 1)",
        "hosts: 2 ok, 1 failed, 1 reverted, 0 skipped of 3",
        "duration: 14.5s",
        "*Failed hosts*\\n• h02: health: 503 after 20 tries",
    ] {
        assert!(end.contains(want), "{want}\n{end}");
    }

    // Feishu: `msg_type: post`, `content.post.zh_cn` {title, content: [[{tag: text}]]}, and
    // `timestamp` (seconds, a string) + `sign` = base64(HMAC-SHA256(key "ts\nsecret", "")).
    let feishu = srv.requests("/feishu/open-apis/bot/v2/hook/feishu-hook-id");
    assert_eq!(feishu.len(), 3);
    for r in &feishu {
        let v = r.json();
        assert_eq!(v["msg_type"], "post");
        let post = &v["content"]["post"]["zh_cn"];
        assert!(post["title"].is_string());
        for line in post["content"].as_array().unwrap() {
            let el = &line.as_array().unwrap()[0];
            assert_eq!(el["tag"], "text");
            assert!(el["text"].is_string());
        }
        let ts = v["timestamp"].as_str().expect("timestamp is a string");
        let secs: u64 = ts.parse().unwrap();
        assert!(secs >= before && secs <= now_secs(), "{ts}");
        let want = b64(&hmac_sha256(format!("{ts}\nfeishu-s3cret").as_bytes(), b""));
        assert_eq!(v["sign"], want.as_str());
    }

    // DingTalk: `msgtype: markdown` {title, text}; `timestamp` (ms) and `sign` in the query:
    // urlencode(base64(HMAC-SHA256(key secret, "ts\nsecret"))).
    let ding = srv.requests("/dingtalk/robot/send");
    assert_eq!(ding.len(), 3);
    for r in &ding {
        let q = query(&r.target);
        assert_eq!(q["access_token"], "ding-t0ken");
        let ms: u64 = q["timestamp"].parse().unwrap();
        assert!(ms / 1000 >= before && ms / 1000 <= now_secs(), "{ms}");
        let want = b64(&hmac_sha256(
            b"SECding-s3cret",
            format!("{ms}\nSECding-s3cret").as_bytes(),
        ));
        assert_eq!(percent_decode(&q["sign"]), want);
        let v = r.json();
        assert_eq!(v["msgtype"], "markdown");
        assert!(v["markdown"]["title"].is_string() && v["markdown"]["text"].is_string());
    }
    assert!(ding[2].json()["markdown"]["text"]
        .as_str()
        .unwrap()
        .contains("- h02: health: 503 after 20 tries"));

    // WeCom: `msgtype: markdown` {content}, at most 4,096 bytes.
    let wecom = srv.requests("/wecom/cgi-bin/webhook/send?key=wecom-k3y");
    assert_eq!(wecom.len(), 3);
    for r in &wecom {
        let v = r.json();
        assert_eq!(v["msgtype"], "markdown");
        assert!(v["markdown"]["content"].as_str().unwrap().len() <= 4096);
    }

    // Webhook: only `on: [start, end]`; the event as the events file has it; the signature is
    // the hex HMAC-SHA256 of the body as received.
    let hook = srv.requests("/hook");
    assert_eq!(hook.len(), 2);
    for (r, (moment, kind)) in hook.iter().zip([("start", "run_started"), ("end", "run_finished")]) {
        let sig = r.header("x-tranche-signature").unwrap();
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(hmac_sha256(b"hook-s3cret", &r.body)))
        );
        assert_eq!(r.header("x-tranche-moment"), Some(moment));
        let v = r.json();
        assert_eq!(v["moment"], moment);
        assert_eq!(v["event"]["type"], kind);
        assert_eq!(v["event"]["run"], RUN);
    }
    let end = hook[1].json();
    assert_eq!(end["event"]["exit_code"], 1);
    assert_eq!(
        end["failed"],
        serde_json::json!([{"host": "h02", "batch": 2, "step": "health", "reason": "503 after 20 tries"}])
    );

    // Grafana: POST /api/annotations at the start, PATCH /api/annotations/42 with `timeEnd`.
    let g = srv.requests("/grafana/");
    assert_eq!(g.len(), 2, "{g:?}");
    assert_eq!(
        (g[0].method.as_str(), g[0].target.as_str()),
        ("POST", "/grafana/api/annotations")
    );
    assert_eq!(
        (g[1].method.as_str(), g[1].target.as_str()),
        ("PATCH", "/grafana/api/annotations/42")
    );
    for r in &g {
        assert_eq!(r.header("authorization"), Some("Bearer glsa_grafana-t0ken"));
        let tags = r.json()["tags"].clone();
        assert_eq!(
            tags,
            serde_json::json!([
                "tranche",
                "service:demo",
                "version:2.0.0",
                format!("run:{RUN}"),
                "deploy",
                "prod"
            ])
        );
        assert!(r.json()["text"].is_string());
    }
    let (start, patch) = (g[0].json(), g[1].json());
    assert!(start["time"].as_u64().unwrap() / 1000 >= before);
    assert!(start.get("timeEnd").is_none());
    assert!(patch["timeEnd"].as_u64().unwrap() >= start["time"].as_u64().unwrap());
    assert!(patch["text"].as_str().unwrap().contains("finished with failed hosts"));
}

#[test]
fn failing_notifiers_are_warnings_in_bounded_time_and_never_show_their_secrets() {
    let srv = Recorder::start();
    std::env::set_var("NT2_STALL_URL", srv.url("/stall/hooks/stall-k3y-123"));
    std::env::set_var("NT2_SECRET", "never-sh0wn-secret");
    let dir = tempfile::tempdir().unwrap();
    let p = load(
        &dir,
        &format!(
            "notify:
  - kind: slack
    url_env: NT2_STALL_URL
  - kind: webhook
    url: http://127.0.0.1:{refused}/refused?token=refused-t0ken
  - kind: slack
    url: {fail}
  - kind: feishu
    url: {refuses}
    secret_env: NT2_SECRET
",
            refused = refused_port(),
            fail = srv.url("/fail/services/fail-k3y-456"),
            refuses = srv.url("/feishu-refuses/hook/feishu-k3y-789"),
        ),
    );
    let sink = sink_for(&p);
    let t = Instant::now();
    for e in run_events() {
        sink.event(&e);
    }
    let sent = t.elapsed();
    // Let the answering notifiers answer, as they would during a run.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let warnings = sink.finish();
    let waited = t.elapsed();
    assert!(sent < Duration::from_millis(50), "event() took {sent:?}");
    assert!(
        waited < Duration::from_secs(1),
        "finish() took {waited:?}: {warnings:?}"
    );
    let all = warnings.join("\n");
    for want in [
        "notify slack (NT2_STALL_URL): not sent by the end of the run (it has not answered during the run): start",
        "notify webhook (127.0.0.1:",
        "the start message was not sent: cannot connect",
        "notify slack (127.0.0.1:",
        "POST answered 500: internal error",
        "notify feishu (127.0.0.1:",
        "the service refused it (code 19021)",
    ] {
        assert!(all.contains(want), "{want}\n{all}");
    }
    for secret in [
        "stall-k3y-123",
        "refused-t0ken",
        "fail-k3y-456",
        "feishu-k3y-789",
        "never-sh0wn-secret",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

#[test]
fn an_answering_notifier_is_waited_for_at_the_end() {
    // The end message is queued when the run finishes; a notifier that answered before gets
    // it delivered even when a stalled one is configured beside it.
    let srv = Recorder::start();
    let dir = tempfile::tempdir().unwrap();
    let p = load(
        &dir,
        &format!(
            "notify:\n  - kind: slack\n    url: {}\n  - kind: slack\n    url: {}\n",
            srv.url("/slack/ok"),
            srv.url("/stall/x"),
        ),
    );
    let sink = sink_for(&p);
    let events = run_events();
    sink.event(&events[0]);
    std::thread::sleep(Duration::from_millis(300));
    for e in &events[1..] {
        sink.event(e);
    }
    let warnings = sink.finish();
    assert_eq!(srv.requests("/slack/ok").len(), 3);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("start, batch_failed, end"), "{warnings:?}");
}

// ---------------------------------------------------------------------------------------------
// On the real fleet.

/// `tranche release` of `pb` on the fleet with `--events`, `--yes` and `env`; its output and
/// how long the process took.
fn release(
    fleet: &common::Fleet,
    pb: &std::path::Path,
    events: &std::path::Path,
    env: &[(&str, String)],
) -> (std::process::Output, Duration) {
    let inv = fleet.inventory();
    let kh = fleet.known_hosts();
    let t = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tranche"))
        .args(["release", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()])
        .args(["--events", events.to_str().unwrap(), "--yes", "--no-progress"])
        .args(["--known-hosts", kh.to_str().unwrap()])
        .env("CI", "true")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&fleet.dir)
        .output()
        .unwrap();
    (out, t.elapsed())
}

fn last_event(path: &std::path::Path) -> Value {
    common::events(path).pop().expect("events")
}

#[test]
fn a_real_release_tells_its_outcome_and_failed_host_and_marks_grafana() {
    let srv = Recorder::start();
    let fleet = common::Fleet::up(93, 3);
    fleet.install("1.0.0");
    let body = format!(
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  canary_pause: 0s\n  batch: 2\n  max_failures: 1\n\
         health:\n  command: \"test {{{{ host.name }}}} != h03\"\n  interval: 200ms\n  timeout: 2s\n\
         notify:\n  - kind: webhook\n    url_env: NT_FLEET_HOOK\n    secret_env: NT_FLEET_SECRET\n  - kind: slack\n    url: {slack}\n    on: [end]\n\
         annotate:\n  grafana: {grafana}\n  token_env: NT_FLEET_TOKEN\n",
        slack = srv.url("/slack/services/T1/B1/fleet"),
        grafana = srv.url("/grafana"),
    );
    let pb = fleet.playbook("notify.yml", "2.0.0", &body);
    let ev = fleet.dir.join("ev.jsonl");
    let env = [
        ("NT_FLEET_HOOK", srv.url("/hook/fleet-k3y")),
        ("NT_FLEET_SECRET", "fleet-s3cret".to_string()),
        ("NT_FLEET_TOKEN", "glsa_fleet".to_string()),
    ];
    let (out, _) = release(&fleet, &pb, &ev, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("notify"), "no notifier warning expected:\n{stderr}");
    assert!(
        !stderr.contains("fleet-k3y") && !stderr.contains("fleet-s3cret"),
        "{stderr}"
    );

    let hook = srv.requests("/hook/fleet-k3y");
    let moments: Vec<String> = hook
        .iter()
        .map(|r| r.json()["moment"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(moments, ["start", "batch_failed", "end"], "{stderr}");
    for r in &hook {
        let sig = format!("sha256={}", hex::encode(hmac_sha256(b"fleet-s3cret", &r.body)));
        assert_eq!(r.header("x-tranche-signature"), Some(sig.as_str()));
    }
    let end = hook[2].json();
    // The end message carries the run's own outcome: the same as its last event and exit code.
    let last = last_event(&ev);
    assert_eq!(end["event"], last);
    assert_eq!(end["event"]["exit_code"], 1);
    let failed = end["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{end}");
    assert_eq!(failed[0]["host"], "h03");
    assert_eq!(failed[0]["step"], "health");
    assert!(failed[0]["reason"].as_str().unwrap().len() > 3, "{end}");
    assert!(
        end["lines"][1].as_str().unwrap().starts_with("hosts: 2 ok, 1 failed"),
        "{end}"
    );

    let slack = srv.requests("/slack/services/T1/B1/fleet");
    assert_eq!(slack.len(), 1, "on: [end] only");
    assert_eq!(
        slack[0].json()["text"],
        "demo 2.0.0: release finished with failed hosts"
    );

    let g = srv.requests("/grafana/");
    assert_eq!(
        g.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["POST", "PATCH"]
    );
    let run = last["run"].as_str().unwrap();
    assert!(g[0].json()["tags"]
        .as_array()
        .unwrap()
        .contains(&Value::from(format!("run:{run}"))));
    assert!(g[1].json()["timeEnd"].as_u64().unwrap() > g[0].json()["time"].as_u64().unwrap());
}

#[test]
fn a_notifier_that_never_answers_and_one_that_refuses_change_nothing_and_cost_under_a_second() {
    let srv = Recorder::start();
    let fleet = common::Fleet::up(94, 3);
    let plain = "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 0\n  batch: 3\n";
    let notified = format!(
        "{plain}notify:\n  - kind: slack\n    url: {stall}\n  - kind: webhook\n    url: http://127.0.0.1:{refused}/hook\n\
         annotate:\n  grafana: {grafana}\n",
        stall = srv.url("/stall/slack"),
        refused = refused_port(),
        grafana = srv.url("/stall/grafana"),
    );
    let with = fleet.playbook("with.yml", "2.0.0", &notified);
    let without = fleet.playbook("without.yml", "2.0.0", plain);

    // The same release twice from the same start (1.0.0 installed, nothing staged): first with
    // the failing notifiers, then without.
    let mut runs = Vec::new();
    for (name, pb) in [("with", &with), ("without", &without)] {
        fleet.install("1.0.0");
        for i in 1..=fleet.hosts {
            fleet.ssh(i, "rm -rf /srv/demo/releases/2.0.0");
        }
        assert!(fleet.wait_all_up(30), "{:?}", fleet.servers());
        let ev = fleet.dir.join(format!("{name}.jsonl"));
        let (out, took) = release(&fleet, pb, &ev, &[]);
        let current: Vec<Option<String>> = (1..=fleet.hosts).map(|i| fleet.current(i)).collect();
        runs.push((name, out, took, last_event(&ev), current));
    }
    let (with_run, without_run) = (&runs[0], &runs[1]);
    let stderr = String::from_utf8_lossy(&with_run.1.stderr);
    eprintln!(
        "with the failing notifiers: {:?}; without: {:?}",
        with_run.2, without_run.2
    );
    assert_eq!(with_run.1.status.code(), Some(0), "{stderr}");
    assert_eq!(with_run.1.status.code(), without_run.1.status.code());
    // The same outcome: the same counts and message, every host on 2.0.0 and serving.
    for key in ["ok", "failed", "reverted", "skipped", "exit_code", "msg"] {
        assert_eq!(with_run.3[key], without_run.3[key], "{key}");
    }
    assert_eq!(with_run.4, vec![Some("2.0.0".to_string()); 3]);
    assert_eq!(with_run.4, without_run.4);
    assert!(fleet.all_up(), "{:?}", fleet.servers());
    // The notifiers were tried, and their failure is a warning.
    assert!(
        !srv.requests("/stall/slack").is_empty(),
        "the stalled notifier was never called"
    );
    assert!(stderr.contains("warning: notify slack (127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("warning: notify webhook (127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    // Not slower than a second.
    assert!(
        with_run.2 < without_run.2 + Duration::from_secs(1),
        "with the failing notifiers {:?}, without {:?}",
        with_run.2,
        without_run.2
    );
}
