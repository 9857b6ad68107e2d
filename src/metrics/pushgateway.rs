//! The [`Sink`] that pushes the run's state to a Prometheus Pushgateway: PUT of the whole group
//! `<pushgateway>/metrics/job/<job>/service/<service>/run_id/<id>` (PUT replaces every metric
//! of the group), from a thread of its own, every `interval` and once at the end.
//!
//! The release never waits for it: `event` only updates the state under a lock. The thread
//! pushes the state as it is when the push starts, so nothing queues behind a slow
//! Pushgateway: the states it missed are simply never sent. Each push has a short timeout;
//! `finish` abandons a push in flight, makes the final one, and waits for it at most
//! [`FINISH_WAIT`]. Every failure of the run makes one warning, returned by `finish`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::RunState;
use crate::events::{Event, EventKind};
use crate::playbook::Metrics;
use crate::report::Sink;

/// The longest a push during the run may take.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest `finish` waits for the final push: the run is over, and the process must not
/// linger on a Pushgateway that does not answer.
pub const FINISH_WAIT: Duration = Duration::from_millis(400);
const FINAL_PUSH_TIMEOUT: Duration = Duration::from_millis(300);

pub struct Pushgateway {
    shared: Arc<Shared>,
    done: Mutex<Option<mpsc::Receiver<()>>>,
}

struct Shared {
    config: Metrics,
    /// [`FINISH_WAIT`] and [`FINAL_PUSH_TIMEOUT`]; a test that checks what the final push
    /// carries (not how long it may take) gives a loaded machine more time.
    finish_wait: Duration,
    final_timeout: Duration,
    state: Mutex<RunState>,
    /// `finish` was called: abandon the push in flight, make the final one, stop.
    finishing: AtomicBool,
    /// The run started: push at once rather than at the next tick.
    started: tokio::sync::Notify,
    /// `finish` was called.
    stop: tokio::sync::Notify,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    pushes: usize,
    failed: usize,
    first: Option<String>,
}

impl Pushgateway {
    /// Start the pushing thread; nothing is pushed before `run_started`.
    pub fn start(config: Metrics) -> Pushgateway {
        Self::start_with(config, FINISH_WAIT, FINAL_PUSH_TIMEOUT)
    }

    fn start_with(config: Metrics, finish_wait: Duration, final_timeout: Duration) -> Pushgateway {
        let shared = Arc::new(Shared {
            config,
            finish_wait,
            final_timeout,
            state: Mutex::new(RunState::default()),
            finishing: AtomicBool::new(false),
            started: tokio::sync::Notify::new(),
            stop: tokio::sync::Notify::new(),
            failures: Mutex::new(Failures::default()),
        });
        let (tx, rx) = mpsc::channel();
        let worker = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("tranche-metrics".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(rt) = rt {
                    rt.block_on(worker.run());
                }
                let _ = tx.send(());
            });
        if let Err(e) = spawned {
            shared.failed(format!("could not start the thread that pushes: {e}"));
        }
        Pushgateway {
            shared,
            done: Mutex::new(Some(rx)),
        }
    }

    /// The group's URL for `state`.
    pub fn group_url(config: &Metrics, state: &RunState) -> String {
        format!(
            "{}/metrics/{}/{}/{}",
            config.pushgateway,
            segment("job", &config.job),
            segment("service", &state.service),
            segment("run_id", &state.run)
        )
    }
}

/// One label of the grouping key as path segments: `name/value` when the value is made of
/// characters a path takes as they are (service names, run ids and checked job names are),
/// else `name@base64/<base64url>`, as the Pushgateway documents for `/` and empty values.
fn segment(name: &str, value: &str) -> String {
    use base64::Engine;
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        format!("{name}/{value}")
    } else if value.is_empty() {
        format!("{name}@base64/=")
    } else {
        format!(
            "{name}@base64/{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value)
        )
    }
}

impl Sink for Pushgateway {
    fn event(&self, e: &Event) {
        self.shared.state.lock().expect("metrics state").apply(e);
        if matches!(e.kind, EventKind::RunStarted { .. }) {
            self.shared.started.notify_one();
        }
    }

    fn finish(&self) -> Vec<String> {
        let Some(done) = self.done.lock().expect("metrics done").take() else {
            return Vec::new();
        };
        self.shared.state.lock().expect("metrics state").over = true;
        self.shared.finishing.store(true, Ordering::SeqCst);
        self.shared.stop.notify_one();
        if done.recv_timeout(self.shared.finish_wait).is_err() {
            self.shared.failed(format!(
                "the final push did not finish within {} ms",
                self.shared.finish_wait.as_millis()
            ));
        }
        self.shared.warning().into_iter().collect()
    }
}

impl Shared {
    async fn run(&self) {
        let client = match reqwest::Client::builder()
            .connect_timeout(PUSH_TIMEOUT)
            .timeout(PUSH_TIMEOUT)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                self.failed(format!("could not make an HTTP client: {e}"));
                return;
            }
        };
        let mut tick = tokio::time::interval(self.config.interval);
        // A push slower than the interval delays the next one; missed ticks are not made up.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.finishing.load(Ordering::SeqCst) {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.started.notified() => {}
                _ = self.stop.notified() => break,
            }
            if self.finishing.load(Ordering::SeqCst) {
                break;
            }
            let Some((url, body)) = self.snapshot() else {
                continue;
            };
            tokio::select! {
                res = push(&client, &url, body) => self.record(res),
                // `finish`: this push is stale; the final one replaces it.
                _ = self.stop.notified() => break,
            }
        }
        if let Some((url, body)) = self.snapshot() {
            let res = match tokio::time::timeout(self.final_timeout, push(&client, &url, body)).await {
                Ok(res) => res,
                Err(_) => Err(format!("timed out after {} ms", self.final_timeout.as_millis())),
            };
            self.record(res);
        }
    }

    /// The group's URL and the exposition of the current state, once the run started.
    fn snapshot(&self) -> Option<(String, String)> {
        let state = self.state.lock().expect("metrics state");
        state
            .started()
            .then(|| (Pushgateway::group_url(&self.config, &state), state.exposition()))
    }

    fn record(&self, res: Result<(), String>) {
        let mut f = self.failures.lock().expect("metrics failures");
        f.pushes += 1;
        if let Err(e) = res {
            f.failed += 1;
            f.first.get_or_insert(e);
        }
    }

    fn failed(&self, msg: String) {
        let mut f = self.failures.lock().expect("metrics failures");
        f.failed += 1;
        f.first.get_or_insert(msg);
    }

    /// One warning for every failure of the run.
    fn warning(&self) -> Option<String> {
        let f = self.failures.lock().expect("metrics failures");
        let first = f.first.as_ref()?;
        let shown = crate::redact::url(&self.config.pushgateway);
        Some(format!(
            "metrics: {} of {} pushes to the Pushgateway at {shown} failed (first: {}); the release went on without them",
            f.failed,
            f.pushes.max(f.failed),
            crate::redact::strip_urls(first)
        ))
    }
}

async fn push(client: &reqwest::Client, url: &str, body: String) -> Result<(), String> {
    let resp = client
        .put(url)
        .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let text: String = text.trim().chars().take(200).collect();
    Err(format!("PUT answered {status}: {text}"))
}

/// A reqwest error with its causes (reqwest's own message is often just "error sending request").
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", PUSH_TIMEOUT.as_secs());
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;
    use crate::events::{PlanBatch, PlanHost, PlanSummary};

    fn config(url: String, interval: Duration) -> Metrics {
        Metrics {
            pushgateway: url,
            job: "tranche".into(),
            interval,
        }
    }

    fn run_started() -> Event {
        Event::new(
            "20261121-100000-ab12",
            EventKind::RunStarted {
                service: "demo".into(),
                version: "2.0.0".into(),
                hosts: 1,
                mode: "release".into(),
                plan: PlanSummary {
                    batches: vec![PlanBatch {
                        number: 1,
                        hosts: vec![PlanHost {
                            name: "h01".into(),
                            ..PlanHost::default()
                        }],
                        ..PlanBatch::default()
                    }],
                    ..PlanSummary::default()
                },
            },
        )
    }

    fn run_finished() -> Event {
        Event::new(
            "20261121-100000-ab12",
            EventKind::RunFinished {
                ok: 1,
                failed: 0,
                reverted: 0,
                skipped: 0,
                exit_code: 0,
                ms: 10,
                msg: String::new(),
            },
        )
    }

    #[test]
    fn grouping_key_segments() {
        assert_eq!(segment("service", "demo"), "service/demo");
        assert_eq!(segment("run_id", "20261121-100000-ab12"), "run_id/20261121-100000-ab12");
        assert_eq!(segment("path", "/var/tmp"), "path@base64/L3Zhci90bXA");
        assert_eq!(segment("x", ""), "x@base64/=");
        let mut s = RunState::default();
        s.apply(&run_started());
        assert_eq!(
            Pushgateway::group_url(&config("http://pg:9091".into(), Duration::from_secs(5)), &s),
            "http://pg:9091/metrics/job/tranche/service/demo/run_id/20261121-100000-ab12"
        );
    }

    /// Reads one HTTP request (head and a Content-Length body) and answers 200.
    /// Answer connections until one carries a request holding `wanted`; return that request.
    /// A push abandoned by the sink (its connection dropped while still queued) is answered and
    /// passed over, so the push that matters is never left in the backlog.
    fn answer_until(listener: &TcpListener, wanted: &str) -> String {
        loop {
            let req = answer_one(listener);
            if req.contains(wanted) {
                return req;
            }
        }
    }

    fn answer_one(listener: &TcpListener) -> String {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk) {
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        // The client may be gone (an abandoned push): nothing to answer then.
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        String::from_utf8_lossy(&buf).to_string()
    }

    #[test]
    fn the_run_is_pushed_when_it_starts_and_at_the_end() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // What the pushes carry, not how fast: a loaded test machine gets seconds, not 0.4 s.
        let sink = Pushgateway::start_with(
            config(url, Duration::from_secs(300)),
            Duration::from_secs(10),
            Duration::from_secs(9),
        );
        sink.event(&run_started());
        let first = answer_until(&listener, "tranche_run_in_progress");
        assert!(
            first.starts_with("PUT /metrics/job/tranche/service/demo/run_id/20261121-100000-ab12 HTTP/1.1\r\n"),
            "{first}"
        );
        assert!(
            first.contains("tranche_run_in_progress{service=\"demo\",version=\"2.0.0\"} 1\n"),
            "{first}"
        );
        sink.event(&run_finished());
        let server = std::thread::spawn(move || answer_until(&listener, "tranche_run_exit_code"));
        assert_eq!(sink.finish(), Vec::<String>::new());
        let last = server.join().unwrap();
        assert!(
            last.contains("tranche_run_in_progress{service=\"demo\",version=\"2.0.0\"} 0\n"),
            "{last}"
        );
        assert!(
            last.contains("tranche_run_exit_code{service=\"demo\",version=\"2.0.0\"} 0\n"),
            "{last}"
        );
        // A second finish (the signal handler's and the run's) neither waits nor warns.
        assert!(sink.finish().is_empty());
    }

    #[test]
    fn a_pushgateway_that_never_answers_costs_at_most_the_finish_wait_and_one_warning() {
        // Accepts connections (the kernel's backlog does) and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sink = Pushgateway::start(config(url, Duration::from_secs(1)));
        let t = Instant::now();
        sink.event(&run_started());
        for _ in 0..1000 {
            sink.event(&run_finished());
        }
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "events took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(2500));
        let t = Instant::now();
        let warnings = sink.finish();
        let took = t.elapsed();
        assert!(took <= FINISH_WAIT + Duration::from_millis(150), "finish took {took:?}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("metrics: "), "{warnings:?}");
        assert!(warnings[0].contains("timed out"), "{warnings:?}");
        drop(listener);
    }

    #[test]
    fn a_pushgateway_that_is_down_is_one_warning_without_its_credentials() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let sink = Pushgateway::start(config(
            format!("http://u:s3cr3t@127.0.0.1:{port}"),
            Duration::from_secs(1),
        ));
        sink.event(&run_started());
        std::thread::sleep(Duration::from_millis(1500));
        let warnings = sink.finish();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(!warnings[0].contains("s3cr3t"), "{warnings:?}");
        assert!(warnings[0].contains("http://***@127.0.0.1:"), "{warnings:?}");
    }
}
