//! Notifications and release markers (`notify`, `annotate`): a [`Sink`] that turns the run's
//! events into moments ([`moment`]) and sends each to the configured services ([`payload`],
//! [`grafana`]) from its own thread, so that no notifier can stop or slow the run.
//!
//! - `event` never blocks: it hands the few events that matter to a bounded queue (a full queue
//!   drops the event and says so at the end).
//! - Each notifier has its own task and bounded queue, in order (the start before the end),
//!   and every request has [`SEND_TIMEOUT`].
//! - `finish` waits for what is queued at most [`FINISH_WAIT`] in total, and only
//!   [`SILENT_WAIT`] for notifiers that have not answered once during the run: a notifier that
//!   stalls or refuses costs the run at most that much. Failures come back as warnings.

pub mod grafana;
pub mod moment;
pub mod payload;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::events::{Event, EventKind, Status};
use crate::playbook::{Annotate, Moment, Notifier, Playbook};
use crate::redact::Redactor;
use crate::report::Sink;
use moment::{Message, Tracker};
use payload::{Answer, Request};

/// How long one request may take, connection included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the end of the run waits, at most, for queued messages to go out.
pub const FINISH_WAIT: Duration = Duration::from_secs(5);
/// How long it waits when every notifier still sending has not answered once in this run
/// (stalled, or far too slow): the end of the run is then not held up by more than this.
pub const SILENT_WAIT: Duration = Duration::from_millis(300);

/// Events queued for the notifier thread, and messages queued per notifier.
const EVENT_QUEUE: usize = 4096;
const MESSAGE_QUEUE: usize = 64;

/// Where messages go: a chat service or webhook, or Grafana.
#[derive(Debug, Clone)]
enum Target {
    Notifier(Notifier),
    Grafana(Annotate),
}

impl Target {
    fn label(&self) -> String {
        match self {
            Target::Notifier(n) => format!("notify {}", n.label),
            Target::Grafana(_) => "annotate (grafana)".into(),
        }
    }

    fn wants(&self, m: Moment) -> bool {
        match self {
            Target::Notifier(n) => n.on.contains(&m),
            Target::Grafana(_) => matches!(m, Moment::Start | Moment::End),
        }
    }
}

/// What a target has done so far: whether it ever answered, what is still to send.
#[derive(Debug, Default)]
struct Progress {
    answered: bool,
    /// The moments queued or in flight.
    pending: Vec<Moment>,
    warnings: Vec<String>,
}

struct Shared {
    labels: Vec<String>,
    progress: Vec<Mutex<Progress>>,
    dropped_events: AtomicUsize,
    /// Set once the notifier thread has routed every event it was given.
    routed: AtomicBool,
}

/// The sink: see the module documentation.
pub struct NotifySink {
    tx: Mutex<Option<mpsc::Sender<Event>>>,
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    shared: Arc<Shared>,
    redactor: Redactor,
}

impl NotifySink {
    /// The sink for `p`'s `notify` and `annotate`, if it has any; `secrets` are redacted from
    /// every warning (the webhook URLs and signing secrets are among them).
    pub fn start(p: &Playbook, secrets: Vec<String>) -> Option<NotifySink> {
        let mut targets: Vec<Target> = p.notify.iter().cloned().map(Target::Notifier).collect();
        targets.extend(p.annotate.clone().map(Target::Grafana));
        if targets.is_empty() {
            return None;
        }
        let controller = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let started_by = format!("{} on {controller}", crate::operator::current_user());
        Some(NotifySink::with_targets(targets, started_by, secrets))
    }

    /// The sink for the given notifiers and Grafana (tests and `start`).
    pub fn new(
        notifiers: Vec<Notifier>,
        annotate: Option<Annotate>,
        started_by: String,
        secrets: Vec<String>,
    ) -> NotifySink {
        let mut targets: Vec<Target> = notifiers.into_iter().map(Target::Notifier).collect();
        targets.extend(annotate.map(Target::Grafana));
        NotifySink::with_targets(targets, started_by, secrets)
    }

    fn with_targets(targets: Vec<Target>, started_by: String, secrets: Vec<String>) -> NotifySink {
        let mut all_secrets = secrets;
        for t in &targets {
            match t {
                Target::Notifier(n) => all_secrets.extend(n.secrets()),
                Target::Grafana(a) => all_secrets.extend(a.token.iter().cloned()),
            }
        }
        let shared = Arc::new(Shared {
            labels: targets.iter().map(Target::label).collect(),
            progress: targets.iter().map(|_| Mutex::new(Progress::default())).collect(),
            dropped_events: AtomicUsize::new(0),
            routed: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("tranche-notify".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        if let Ok(mut p) = sh.progress[0].lock() {
                            p.warnings.push(format!("cannot start: {e}"));
                        }
                        sh.routed.store(true, Ordering::SeqCst);
                        let _ = done_tx.send(());
                        return;
                    }
                };
                rt.block_on(dispatch(rx, targets, started_by, sh));
                let _ = done_tx.send(());
            });
        let done = match spawned {
            Ok(_) => Some(done_rx),
            Err(_) => None,
        };
        NotifySink {
            tx: Mutex::new(Some(tx)),
            done: Mutex::new(done),
            shared,
            redactor: Redactor::new(all_secrets),
        }
    }
}

/// Whether a notifier needs `e` at all: the rest of the stream is not even queued.
fn matters(e: &Event) -> bool {
    match &e.kind {
        EventKind::RunStarted { .. }
        | EventKind::HostFinished { .. }
        | EventKind::BatchFinished { .. }
        | EventKind::RunFinished { .. } => true,
        EventKind::StepFinished { status, .. } | EventKind::GateChecked { status, .. } => *status == Status::Failed,
        EventKind::Warning { host, .. } => host.is_none(),
        _ => false,
    }
}

impl Sink for NotifySink {
    fn event(&self, e: &Event) {
        if !matters(e) {
            return;
        }
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = guard.as_ref() {
            if tx.try_send(e.clone()).is_err() {
                self.shared.dropped_events.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn finish(&self) -> Vec<String> {
        // Closing the queue ends the notifier thread once everything queued is sent.
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(done) = self.done.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Vec::new();
        };
        let started = Instant::now();
        loop {
            match done.recv_timeout(Duration::from_millis(10)) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            let limit = if !self.shared.routed.load(Ordering::SeqCst) || self.any_answered_pending() {
                FINISH_WAIT
            } else {
                SILENT_WAIT
            };
            if started.elapsed() >= limit {
                break;
            }
        }
        self.warnings()
    }
}

impl NotifySink {
    /// Whether a target that has answered during the run still has messages to send.
    fn any_answered_pending(&self) -> bool {
        self.shared.progress.iter().any(|p| {
            let p = p.lock().unwrap_or_else(|e| e.into_inner());
            p.answered && !p.pending.is_empty()
        })
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (label, p) in self.shared.labels.iter().zip(&self.shared.progress) {
            let p = p.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(p.warnings.iter().map(|w| format!("{label}: {w}")));
            if !p.pending.is_empty() {
                let names: Vec<&str> = p.pending.iter().map(|m| m.as_str()).collect();
                out.push(format!(
                    "{label}: not sent by the end of the run ({}): {}",
                    if p.answered {
                        format!("waited {}", crate::units::human_duration(FINISH_WAIT))
                    } else {
                        "it has not answered during the run".to_string()
                    },
                    names.join(", ")
                ));
            }
        }
        let dropped = self.shared.dropped_events.load(Ordering::Relaxed);
        if dropped > 0 {
            out.push(format!(
                "notify: {dropped} event(s) arrived faster than they could be handled and were left out of the messages"
            ));
        }
        out.into_iter().map(|w| self.redactor.text(&w)).collect()
    }
}

/// The notifier thread: route each event's moments to the targets that want them.
async fn dispatch(mut rx: mpsc::Receiver<Event>, targets: Vec<Target>, started_by: String, shared: Arc<Shared>) {
    let client = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .connect_timeout(SEND_TIMEOUT)
        .user_agent(concat!("tranche/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let (qtx, qrx) = mpsc::channel::<Message>(MESSAGE_QUEUE);
        queues.push(qtx);
        tasks.push(tokio::spawn(run_target(
            t.clone(),
            qrx,
            client.clone(),
            shared.clone(),
            i,
        )));
    }
    let mut tracker = Tracker::new(started_by);
    while let Some(e) = rx.recv().await {
        for m in tracker.on_event(&e) {
            for (i, t) in targets.iter().enumerate() {
                if !t.wants(m.moment) {
                    continue;
                }
                let mut p = shared.progress[i].lock().unwrap_or_else(|e| e.into_inner());
                p.pending.push(m.moment);
                if queues[i].try_send(m.clone()).is_err() {
                    p.pending.pop();
                    p.warnings.push(format!(
                        "the {} message was dropped: too many were waiting",
                        m.moment.as_str()
                    ));
                }
            }
        }
    }
    shared.routed.store(true, Ordering::SeqCst);
    drop(queues);
    for t in tasks {
        let _ = t.await;
    }
}

/// One target's task: its messages, in order.
async fn run_target(
    target: Target,
    mut rx: mpsc::Receiver<Message>,
    client: reqwest::Client,
    shared: Arc<Shared>,
    i: usize,
) {
    // Grafana: when the run started, and the annotation created then.
    let mut start_ms: Option<u64> = None;
    let mut id: Option<u64> = None;
    while let Some(m) = rx.recv().await {
        let result = match &target {
            Target::Notifier(n) => {
                let (req, answer) = payload::request(n, &m, SystemTime::now());
                send(&client, &req, answer).await.map(|_| ())
            }
            Target::Grafana(a) => {
                let at = grafana::epoch_ms(&m.event.ts).unwrap_or_else(now_ms);
                match m.moment {
                    Moment::Start => {
                        start_ms = Some(at);
                        let r = send(&client, &grafana::create(a, &m, at), Answer::Status).await;
                        if let Ok((_, body)) = &r {
                            id = grafana::created_id(body);
                        }
                        r.map(|_| ())
                    }
                    _ => {
                        let req = match id {
                            Some(id) => grafana::close(a, id, &m, at),
                            None => grafana::create_region(a, &m, start_ms.unwrap_or(at), at),
                        };
                        send(&client, &req, Answer::Status).await.map(|_| ())
                    }
                }
            }
        };
        let mut p = shared.progress[i].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = p.pending.iter().position(|x| *x == m.moment) {
            p.pending.remove(at);
        }
        match result {
            Ok(()) => p.answered = true,
            Err(SendError { answered, why }) => {
                p.answered |= answered;
                p.warnings
                    .push(format!("the {} message was not sent: {why}", m.moment.as_str()));
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a request failed, and whether the server answered at all.
struct SendError {
    answered: bool,
    why: String,
}

/// Send `req`; its status and body when the answer is a success by `answer`'s rule.
async fn send(client: &reqwest::Client, req: &Request, answer: Answer) -> Result<(u16, String), SendError> {
    let silent = |why: String| SendError { answered: false, why };
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut b = client.request(method, &req.url).body(req.body.clone());
    for (k, v) in &req.headers {
        b = b.header(*k, v);
    }
    let exchange = async {
        let resp = b.send().await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let (status, body) = match tokio::time::timeout(SEND_TIMEOUT, exchange).await {
        Err(_) => {
            return Err(silent(format!(
                "no answer within {}",
                crate::units::human_duration(SEND_TIMEOUT)
            )))
        }
        Ok(Err(e)) => return Err(silent(describe(&e))),
        Ok(Ok(x)) => x,
    };
    let failed = |why: String| SendError { answered: true, why };
    if !(200..300).contains(&status) {
        return Err(failed(format!(
            "{} answered {status}: {}",
            req.method,
            payload::describe_body(&body)
        )));
    }
    let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    let code = |key: &str| json.as_ref().and_then(|v| v.get(key)).and_then(|c| c.as_i64());
    let refused = match answer {
        Answer::Status => None,
        Answer::FeishuCode => code("code").or_else(|| code("StatusCode")).filter(|c| *c != 0),
        Answer::ErrCode => code("errcode").filter(|c| *c != 0),
    };
    if let Some(c) = refused {
        return Err(failed(format!(
            "the service refused it (code {c}): {}",
            payload::describe_body(&body)
        )));
    }
    Ok((status, body))
}

/// A request error without its URL (which holds the webhook's key), with its causes.
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn webhook_urls_signing_secrets_and_the_grafana_token_are_secrets() {
        std::env::set_var("TRANCHE_NOTIFY_TEST_SECRET", "s1gning-secret");
        std::env::set_var("TRANCHE_NOTIFY_TEST_TOKEN", "glsa_t0ken");
        let (_d, r) = crate::http_body::tests::test_release(
            "notify:\n  - kind: feishu\n    url: https://open.feishu.cn/open-apis/bot/v2/hook/h00k-id\n    secret_env: TRANCHE_NOTIFY_TEST_SECRET\nannotate:\n  grafana: https://grafana.example\n  token_env: TRANCHE_NOTIFY_TEST_TOKEN\n",
        );
        let s = crate::redact::secrets_of(&r);
        for want in [
            "https://open.feishu.cn/open-apis/bot/v2/hook/h00k-id",
            "/open-apis/bot/v2/hook/h00k-id",
            "s1gning-secret",
            "glsa_t0ken",
        ] {
            assert!(s.contains(&want.to_string()), "{want}: {s:?}");
        }
        let shown =
            crate::redact::Redactor::new(&s).text("POST https://open.feishu.cn/open-apis/bot/v2/hook/h00k-id failed");
        assert!(!shown.contains("h00k-id"), "{shown}");
    }

    #[test]
    fn notifiers_decode_with_their_defaults() {
        use crate::playbook::{Moment, NotifyKind};
        std::env::set_var(
            "TRANCHE_NOTIFY_TEST_URL",
            " https://hooks.slack.com/services/T0/B0/k3y ",
        );
        let (_d, r) = crate::http_body::tests::test_release(
            "notify:\n  - kind: slack\n    url_env: TRANCHE_NOTIFY_TEST_URL\n  - kind: wecom\n    url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k\n    on: end\n",
        );
        let n = &r.playbook.notify;
        assert_eq!(n.len(), 2);
        assert_eq!(
            (n[0].kind, n[0].label.as_str()),
            (NotifyKind::Slack, "slack (TRANCHE_NOTIFY_TEST_URL)")
        );
        assert_eq!(n[0].url, "https://hooks.slack.com/services/T0/B0/k3y");
        assert_eq!(n[0].on, Moment::ALL);
        assert_eq!(
            (n[1].label.as_str(), n[1].on.as_slice()),
            ("wecom (qyapi.weixin.qq.com)", &[Moment::End][..])
        );
        assert!(r.playbook.annotate.is_none());
        assert!(!format!("{:?}", n[0]).contains("k3y"), "Debug shows no URL");
    }
}
