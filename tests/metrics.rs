//! Live metrics (`metrics:` in the playbook) end to end: a release on the fleet pushes its
//! progress to Debian's real `prometheus-pushgateway`, a real Prometheus scrapes the
//! Pushgateway, and the test reads the run's progress and its end through Prometheus' HTTP API.
//! And a Pushgateway that never answers changes neither the outcome nor, by more than a
//! second, the time of a release. Fleet slots 96 and 97; run under the fleet lock.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{events, wait_event, wait_exit, Fleet};

/// A server of ours (pushgateway, prometheus) in the background, killed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    name: &'static str,
}

impl Server {
    fn start(name: &'static str, dir: &Path, program: &str, args: &[&str], ready_url: &str) -> Server {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup.sh installs it)"));
        let mut s = Server {
            child,
            dir: dir.to_path_buf(),
            name,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(ready_url).0 != 200 {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("{name} exited ({status}) before it was ready:\n{}", s.log());
            }
            assert!(Instant::now() < deadline, "{name} not ready after 30s:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url` (curl, 5 s at most): (status, body).
fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// An instant query through Prometheus' HTTP API: each series' labels and value.
fn query(prom: &str, q: &str) -> Vec<(serde_json::Value, f64)> {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-G",
            &format!("{prom}/api/v1/query"),
            "--data-urlencode",
        ])
        .arg(format!("query={q}"))
        .output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_ne!(v["status"], "error", "{q}: {v}");
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    let value = s["value"][1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN);
                    (s["metric"].clone(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The single value of `q`, once Prometheus has one equal to `want` (at most `secs`); the
/// last answer in the panic message otherwise.
fn wait_value(prom: &str, q: &str, want: f64, secs: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = query(prom, q);
        if let [(labels, v)] = r.as_slice() {
            if *v == want {
                return labels.clone();
            }
        }
        assert!(Instant::now() < deadline, "{q}: wanted {want}, Prometheus has {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Pushgateway on `pg_port` and a Prometheus on `prom_port` scraping it every second (with
/// `honor_labels`, so the pushed `job` stays `job`), both ready, the Pushgateway scraped once.
fn monitoring(dir: &Path, pg_port: u16, prom_port: u16) -> (Server, Server) {
    let pg_addr = format!("127.0.0.1:{pg_port}");
    let pg = Server::start(
        "pushgateway",
        dir,
        "/usr/bin/prometheus-pushgateway",
        &["--web.listen-address", &pg_addr, "--log.level", "warn"],
        &format!("http://{pg_addr}/-/ready"),
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: pushgateway\n    honor_labels: true\n    static_configs:\n      - targets: [\"{pg_addr}\"]\n"
        ),
    )
    .unwrap();
    let prom_addr = format!("127.0.0.1:{prom_port}");
    let data = dir.join("prometheus.data");
    let prom = Server::start(
        "prometheus",
        dir,
        "/usr/bin/prometheus",
        &[
            "--config.file",
            config.to_str().unwrap(),
            "--storage.tsdb.path",
            data.to_str().unwrap(),
            "--web.listen-address",
            &prom_addr,
            "--log.level",
            "warn",
        ],
        &format!("http://{prom_addr}/-/ready"),
    );
    // Prometheus 2.x hands targets to its scrapers ~5 s after it starts.
    wait_value(&format!("http://{prom_addr}"), "up{job=\"pushgateway\"}", 1.0, 30);
    (pg, prom)
}

#[test]
fn prometheus_sees_the_release_progress_and_its_end_through_the_pushgateway() {
    let fleet = Fleet::up(96, 3);
    fleet.install("1.0.0");
    let (pg, prom) = monitoring(&fleet.dir, 29396, 29397);
    let pg_url = "http://127.0.0.1:29396";
    let prom_url = "http://127.0.0.1:29397";
    let body = format!(
        "artifact:\n  path: artifacts/demo-2.0.0.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n  canary_pause: 8s\n\
         metrics:\n  pushgateway: {pg_url}\n  job: deploys\n  interval: 1s\n"
    );
    let pb = fleet.playbook("m.yml", "2.0.0", &body);
    let ev = fleet.dir.join("m.jsonl");
    let mut child = fleet.spawn_release("m", &pb, &ev, &[]);

    // During the pause after the canary: one host done, two pending, batch 1 of 2, in progress.
    let paused = wait_event(&ev, 60, |e| e["type"] == "paused");
    let run_id = paused["run"].as_str().unwrap().to_string();
    let sel = format!("service=\"demo\",run_id=\"{run_id}\"");
    let labels = wait_value(prom_url, &format!("tranche_hosts{{{sel},state=\"done\"}}"), 1.0, 8);
    assert_eq!(labels["job"], "deploys", "{labels}");
    assert_eq!(labels["version"], "2.0.0", "{labels}");
    wait_value(prom_url, &format!("tranche_hosts{{{sel},state=\"pending\"}}"), 2.0, 5);
    wait_value(prom_url, &format!("tranche_run_in_progress{{{sel}}}"), 1.0, 5);
    wait_value(prom_url, &format!("tranche_batch_current{{{sel}}}"), 1.0, 5);
    wait_value(prom_url, &format!("tranche_batches{{{sel}}}"), 2.0, 5);
    // The README's panel query sees the release in progress.
    wait_value(
        prom_url,
        "max by (service, version) (tranche_run_in_progress{service=\"demo\"})",
        1.0,
        5,
    );
    assert!(
        !events(&ev).iter().any(|e| e["type"] == "resumed"),
        "the run went on before Prometheus was asked: the pause is too short for this machine"
    );

    assert_eq!(wait_exit(&mut child, 120), Some(0), "{}", fleet.stderr_of("m"));
    let stderr = fleet.stderr_of("m");
    assert!(!stderr.contains("metrics:"), "a warning about metrics:\n{stderr}");

    // The final state: every host done, batch 2 of 2, over, exit code 0, and the times.
    wait_value(prom_url, &format!("tranche_run_in_progress{{{sel}}}"), 0.0, 10);
    wait_value(prom_url, &format!("tranche_hosts{{{sel},state=\"done\"}}"), 3.0, 5);
    for state in ["pending", "running", "failed", "reverted", "skipped"] {
        wait_value(prom_url, &format!("tranche_hosts{{{sel},state=\"{state}\"}}"), 0.0, 5);
    }
    wait_value(prom_url, &format!("tranche_batch_current{{{sel}}}"), 2.0, 5);
    wait_value(prom_url, &format!("tranche_run_exit_code{{{sel}}}"), 0.0, 5);
    wait_value(
        prom_url,
        &format!("tranche_step_duration_seconds_count{{{sel},step=\"deploy\"}}"),
        3.0,
        5,
    );
    let health = query(
        prom_url,
        &format!("tranche_step_duration_seconds_sum{{{sel},step=\"health\"}}"),
    );
    assert!(matches!(health.as_slice(), [(_, v)] if *v > 0.0), "{health:?}");
    let took = query(
        prom_url,
        &format!("tranche_run_end_timestamp_seconds{{{sel}}} - tranche_run_start_timestamp_seconds{{{sel}}}"),
    );
    let finished = events(&ev).into_iter().find(|e| e["type"] == "run_finished").unwrap();
    let ms = finished["ms"].as_f64().unwrap();
    assert!(
        matches!(took.as_slice(), [(_, v)] if *v >= 8.0 && (*v * 1000.0 - ms).abs() < 1000.0),
        "{took:?}, the run took {ms} ms"
    );
    wait_value(
        prom_url,
        "max by (service, version) (tranche_run_in_progress{service=\"demo\"})",
        0.0,
        5,
    );
    // The group as the Pushgateway holds it, with its own push time.
    let (code, text) = get(&format!("{pg_url}/metrics"));
    assert_eq!(code, 200);
    assert!(
        text.lines()
            .any(|l| l.starts_with("push_time_seconds{") && l.contains(&run_id)),
        "{text}"
    );
    drop(prom);
    drop(pg);
}

/// Accepts connections and never answers (bounded: the thread ends with the process).
fn stalling_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().take(1000).flatten() {
            held.push(s);
        }
    });
    port
}

#[test]
fn a_pushgateway_that_stalls_changes_neither_the_outcome_nor_the_time_of_a_release() {
    let fleet = Fleet::up(97, 2);
    fleet.install("1.0.0");
    let release = |version: &str, metrics: &str| {
        let body =
            format!("artifact:\n  path: artifacts/demo-{version}.tar.gz\nrollout:\n  canary: 1\n  batch: 1\n{metrics}");
        let pb = fleet.playbook(&format!("s-{version}.yml"), version, &body);
        let ev = fleet.dir.join(format!("s-{version}.jsonl"));
        let t = Instant::now();
        let out = fleet.tranche(&[
            "release",
            "-i",
            fleet.inventory().to_str().unwrap(),
            pb.to_str().unwrap(),
            "--events",
            ev.to_str().unwrap(),
        ]);
        (out, t.elapsed(), events(&ev))
    };
    // The same work both ways: two hosts from 1.0.0 to 2.0.0, then back.
    let (base, base_took, base_events) = release("2.0.0", "");
    assert_eq!(base.status.code(), Some(0), "{}", String::from_utf8_lossy(&base.stderr));
    let port = stalling_server();
    let metrics = format!("metrics:\n  pushgateway: http://127.0.0.1:{port}\n  interval: 1s\n");
    let (out, took, evs) = release("1.0.0", &metrics);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for i in 1..=2 {
        assert_eq!(fleet.current(i).as_deref(), Some("1.0.0"), "host {i}");
    }
    let outcome = |evs: &[serde_json::Value]| {
        let f = evs.iter().find(|e| e["type"] == "run_finished").unwrap().clone();
        (f["ok"].clone(), f["failed"].clone(), f["exit_code"].clone())
    };
    assert_eq!(outcome(&evs), outcome(&base_events));
    // One warning, at the end.
    assert_eq!(stderr.matches("warning: metrics:").count(), 1, "{stderr}");
    let _ = std::io::stderr().write_all(
        format!("without metrics: {base_took:?}; with a stalled Pushgateway: {took:?}\n{stderr}").as_bytes(),
    );
    assert!(
        took < base_took + Duration::from_secs(1),
        "with a stalled Pushgateway the release took {took:?}, without metrics {base_took:?}"
    );
}

/// Prometheus' own linter accepts the exposition tranche pushes (names, types, help, units).
#[test]
fn promtool_accepts_the_exposition() {
    use tranche::events::{Event, EventKind, PlanBatch, PlanHost, PlanSummary, Status, Step};
    let mut s = tranche::metrics::RunState::default();
    let plan = PlanSummary {
        batches: vec![PlanBatch {
            number: 1,
            hosts: vec![PlanHost {
                name: "h01".into(),
                ..PlanHost::default()
            }],
            ..PlanBatch::default()
        }],
        ..PlanSummary::default()
    };
    for kind in [
        EventKind::RunStarted {
            service: "demo".into(),
            version: "2.0.0".into(),
            hosts: 1,
            mode: "release".into(),
            plan,
        },
        EventKind::StepFinished {
            batch: 1,
            host: "h01".into(),
            step: Step::Deploy,
            status: Status::Ok,
            ms: 120,
            msg: String::new(),
            stderr: None,
            hint: None,
        },
        EventKind::RunFinished {
            ok: 1,
            failed: 0,
            reverted: 0,
            skipped: 0,
            exit_code: 0,
            ms: 500,
            msg: String::new(),
        },
    ] {
        s.apply(&Event::new("20261121-100000-ab12", kind));
    }
    let text = s.exposition();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
