//! Each service's request for one [`Message`], in the shape that service documents, with its
//! signature. Pure: the clock is an argument, so every shape and signature is tested.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};

use super::moment::{one_line, Message};
use crate::playbook::{Notifier, NotifyKind};

/// One HTTP request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What a successful answer looks like, besides a 2xx status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The status is enough.
    Status,
    /// Feishu answers 200 with `{"code": 0}` (older: `"StatusCode": 0`); anything else failed.
    FeishuCode,
    /// DingTalk and WeCom answer 200 with `{"errcode": 0}`.
    ErrCode,
}

/// HMAC-SHA256 of `msg` keyed by `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The request `n` sends for `m` at `now`, and how its answer is judged.
pub fn request(n: &Notifier, m: &Message, now: SystemTime) -> (Request, Answer) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let post = |url: String, body: Value| Request {
        method: "POST",
        url,
        headers: vec![("content-type", "application/json".into())],
        body: serde_json::to_vec(&body).expect("JSON"),
    };
    match n.kind {
        NotifyKind::Slack => (post(n.url.clone(), slack(m)), Answer::Status),
        NotifyKind::Feishu => {
            let mut body = feishu(m);
            if let Some(secret) = &n.secret {
                let (ts, sign) = feishu_sign(since.as_secs(), secret);
                body["timestamp"] = ts.into();
                body["sign"] = sign.into();
            }
            (post(n.url.clone(), body), Answer::FeishuCode)
        }
        NotifyKind::Dingtalk => {
            let url = match &n.secret {
                Some(secret) => {
                    let ms = since.as_millis() as u64;
                    let sep = if n.url.contains('?') { '&' } else { '?' };
                    format!("{}{sep}timestamp={ms}&sign={}", n.url, dingtalk_sign(ms, secret))
                }
                None => n.url.clone(),
            };
            (post(url, dingtalk(m)), Answer::ErrCode)
        }
        NotifyKind::Wecom => (post(n.url.clone(), wecom(m)), Answer::ErrCode),
        NotifyKind::Webhook => {
            let mut r = post(n.url.clone(), webhook(m));
            r.headers.push(("x-tranche-moment", m.moment.as_str().into()));
            if let Some(secret) = &n.secret {
                r.headers
                    .push(("x-tranche-signature", webhook_signature(secret, &r.body)));
            }
            (r, Answer::Status)
        }
    }
}

/// Slack incoming webhook: `text` (the notification's fallback) and Block Kit `blocks`: a
/// header (plain text, at most 150 characters), sections (mrkdwn, at most 3,000 characters)
/// and a context line. mrkdwn needs `&`, `<` and `>` escaped.
/// <https://api.slack.com/messaging/webhooks>, <https://api.slack.com/reference/block-kit/blocks>,
/// <https://api.slack.com/reference/surfaces/formatting#escaping>
pub fn slack(m: &Message) -> Value {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let icon = if m.bad { ":red_circle:" } else { ":large_green_circle:" };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&m.title, 150), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("{icon} {}", esc(&m.lines.join("\n"))), 3000)}}),
    ];
    let failed = m.failed_lines();
    if !failed.is_empty() {
        let list: Vec<String> = failed.iter().map(|l| format!("• {}", esc(l))).collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("*Failed hosts*\n{}", list.join("\n")), 3000)}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": esc(&format!("tranche · {} · run {}", m.moment.as_str(), m.run))}]}));
    json!({"text": m.title, "blocks": blocks})
}

/// Feishu (Lark) custom bot: `msg_type: post` with a title and lines of `text` elements;
/// signed bots add `timestamp` (seconds, as a string) and `sign`.
/// <https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot>
pub fn feishu(m: &Message) -> Value {
    let mut content: Vec<Value> = m.lines.iter().map(|l| json!([{"tag": "text", "text": l}])).collect();
    let failed = m.failed_lines();
    if !failed.is_empty() {
        content.push(json!([{"tag": "text", "text": "Failed hosts:"}]));
        content.extend(
            failed
                .iter()
                .map(|l| json!([{"tag": "text", "text": format!("• {l}")}])),
        );
    }
    json!({
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": m.title, "content": content}}},
    })
}

/// Feishu's signature: base64 of HMAC-SHA256 keyed by `timestamp + "\n" + secret` over an
/// empty message (the same page as [`feishu`]). The timestamp is in seconds and must be within
/// an hour of Feishu's clock.
pub fn feishu_sign(secs: u64, secret: &str) -> (String, String) {
    let ts = secs.to_string();
    (ts.clone(), b64(&hmac_sha256(format!("{ts}\n{secret}").as_bytes(), b"")))
}

/// DingTalk custom robot: `msgtype: markdown` with a `title` (the notification) and `text`.
/// <https://open.dingtalk.com/document/robots/custom-robot-access>,
/// <https://open.dingtalk.com/document/orgapp/robot-message-types-and-data-format>
pub fn dingtalk(m: &Message) -> Value {
    let mut text = format!("#### {}\n\n", m.title);
    for l in &m.lines {
        text.push_str(&format!("- {l}\n"));
    }
    let failed = m.failed_lines();
    if !failed.is_empty() {
        text.push_str("\n**Failed hosts**\n\n");
        for l in failed {
            text.push_str(&format!("- {l}\n"));
        }
    }
    json!({"msgtype": "markdown", "markdown": {"title": m.title, "text": text}})
}

/// DingTalk's signature, sent as the URL's `timestamp` (milliseconds) and `sign`: the
/// URL-encoded base64 of HMAC-SHA256 keyed by the secret over `timestamp + "\n" + secret`
/// (<https://open.dingtalk.com/document/robots/customize-robot-security-settings>).
pub fn dingtalk_sign(ms: u64, secret: &str) -> String {
    let sig = b64(&hmac_sha256(secret.as_bytes(), format!("{ms}\n{secret}").as_bytes()));
    sig.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

/// WeCom group robot: `msgtype: markdown` with `content` (at most 4,096 bytes of UTF-8), which
/// may colour text with `<font color="info|comment|warning">`.
/// <https://developer.work.weixin.qq.com/document/path/91770>
pub fn wecom(m: &Message) -> Value {
    let colour = if m.bad { "warning" } else { "info" };
    let mut text = format!("**<font color=\"{colour}\">{}</font>**\n", m.title);
    for l in &m.lines {
        text.push_str(&format!("> {l}\n"));
    }
    let failed = m.failed_lines();
    if !failed.is_empty() {
        text.push_str("**Failed hosts**\n");
        for l in failed {
            text.push_str(&format!("> {l}\n"));
        }
    }
    json!({"msgtype": "markdown", "markdown": {"content": cut_bytes(&text, 4096)}})
}

/// `webhook`: the moment with the event that made it, as the events file writes it (SPEC §5).
pub fn webhook(m: &Message) -> Value {
    json!({
        "moment": m.moment.as_str(),
        "service": m.service,
        "version": m.version,
        "run": m.run,
        "title": m.title,
        "lines": m.lines,
        "failed": m.failed,
        "event": m.event,
    })
}

/// `X-Tranche-Signature`: `sha256=` and the hex HMAC-SHA256 of the body keyed by the secret
/// (the form GitHub's `X-Hub-Signature-256` made familiar).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), body)))
}

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - "…".len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A one-line, bounded form of a response body for warnings.
pub fn describe_body(body: &str) -> String {
    one_line(body, 200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::moment::{tests::failing_run, Tracker};
    use crate::playbook::Moment;

    fn end_message() -> Message {
        let mut t = Tracker::new("alice on laptop".into());
        let msgs: Vec<Message> = failing_run("rollback", 1, 1)
            .iter()
            .flat_map(|e| t.on_event(e))
            .collect();
        msgs.into_iter().find(|m| m.moment == Moment::End).unwrap()
    }

    fn notifier(kind: NotifyKind, url: &str, secret: Option<&str>) -> Notifier {
        Notifier {
            kind,
            url: url.into(),
            label: kind.as_str().into(),
            secret: secret.map(String::from),
            on: Moment::ALL.to_vec(),
        }
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn dingtalk_signs_the_url() {
        let n = notifier(
            NotifyKind::Dingtalk,
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            Some("SECxyz"),
        );
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let (r, answer) = request(&n, &end_message(), now);
        assert_eq!(answer, Answer::ErrCode);
        let want = b64(&hmac_sha256(b"SECxyz", b"1700000000123\nSECxyz"));
        let (base, query) = r.url.split_once("&timestamp=").unwrap();
        assert_eq!(base, "https://oapi.dingtalk.com/robot/send?access_token=abc");
        let (ts, sign) = query.split_once("&sign=").unwrap();
        assert_eq!(ts, "1700000000123");
        assert!(!sign.contains(['+', '/', '=']), "{sign}");
        assert_eq!(sign.replace("%2B", "+").replace("%2F", "/").replace("%3D", "="), want);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["msgtype"], "markdown");
        assert!(body["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("- h02: health: 503 after 10 tries"));
    }

    #[test]
    fn slack_escapes_mrkdwn_and_bounds_blocks() {
        let mut m = end_message();
        m.lines.push("a <b> & c".into());
        m.title = "t".repeat(200);
        let v = slack(&m);
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["text"]["text"].as_str().unwrap().chars().count(), 150);
        assert!(blocks[1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("a &lt;b&gt; &amp; c"));
        assert_eq!(
            blocks[2]["text"]["text"],
            "*Failed hosts*\n• h02: health: 503 after 10 tries"
        );
    }

    #[test]
    fn wecom_content_fits_4096_bytes() {
        let mut m = end_message();
        m.lines = vec!["发布".repeat(2000)];
        let v = wecom(&m);
        let c = v["markdown"]["content"].as_str().unwrap();
        assert!(c.len() <= 4096, "{}", c.len());
        assert!(c.starts_with("**<font color=\"warning\">"));
    }
}
