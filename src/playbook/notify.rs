//! `notify` (chat messages and webhooks about the run) and `annotate` (a Grafana release
//! marker), as the playbook writes them. Webhook URLs carry their credential in the path or the
//! query, so they may come from the environment (`url_env`), and signing secrets and tokens
//! come from it only (`secret_env`, `token_env`): none of them is ever shown.

use super::check;
use super::decoder::{Decoder, Map};
use crate::error::did_you_mean;
use crate::yaml::Node;

/// The services a notifier can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    /// Slack incoming webhook.
    Slack,
    /// Feishu (Lark) custom bot.
    Feishu,
    /// DingTalk custom robot.
    Dingtalk,
    /// WeCom (WeChat Work) group robot.
    Wecom,
    /// Any HTTP endpoint: the event as JSON, optionally HMAC-signed.
    Webhook,
}

impl NotifyKind {
    pub const ALL: [NotifyKind; 5] = [
        NotifyKind::Slack,
        NotifyKind::Feishu,
        NotifyKind::Dingtalk,
        NotifyKind::Wecom,
        NotifyKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Slack => "slack",
            NotifyKind::Feishu => "feishu",
            NotifyKind::Dingtalk => "dingtalk",
            NotifyKind::Wecom => "wecom",
            NotifyKind::Webhook => "webhook",
        }
    }

    /// Whether the service signs with a shared secret (`secret_env`).
    pub fn takes_secret(self) -> bool {
        matches!(self, NotifyKind::Feishu | NotifyKind::Dingtalk | NotifyKind::Webhook)
    }
}

/// The moments of a run a notifier can be told about (`on:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Moment {
    Start,
    BatchFailed,
    Interrupted,
    Halted,
    RolledBack,
    End,
}

impl Moment {
    pub const ALL: [Moment; 6] = [
        Moment::Start,
        Moment::BatchFailed,
        Moment::Interrupted,
        Moment::Halted,
        Moment::RolledBack,
        Moment::End,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Moment::Start => "start",
            Moment::BatchFailed => "batch_failed",
            Moment::Interrupted => "interrupted",
            Moment::Halted => "halted",
            Moment::RolledBack => "rolled_back",
            Moment::End => "end",
        }
    }
}

/// One entry of `notify`.
#[derive(Clone)]
pub struct Notifier {
    pub kind: NotifyKind,
    /// The webhook URL: a secret (its path or query is the credential).
    pub url: String,
    /// How warnings name this notifier without its URL: `slack (SLACK_WEBHOOK_URL)` or
    /// `slack (hooks.slack.com)`.
    pub label: String,
    /// The signing secret (`secret_env`).
    pub secret: Option<String>,
    /// The moments sent, in [`Moment::ALL`]'s order.
    pub on: Vec<Moment>,
}

impl Notifier {
    /// The values to redact: the URL, its path and query alone, and the secret.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = vec![self.url.clone()];
        if let Some(rest) = self.url.split_once("://").map(|(_, r)| r) {
            if let Some(i) = rest.find(['/', '?']) {
                out.push(rest[i..].to_string());
            }
        }
        out.extend(self.secret.iter().cloned());
        out
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("on", &self.on)
            .finish()
    }
}

/// `annotate`: a Grafana annotation marking the run on every dashboard of the service.
#[derive(Clone)]
pub struct Annotate {
    /// Grafana's base URL, without a trailing `/`.
    pub grafana: String,
    /// `token_env`: a service account token, sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Added to `tranche`, the service, the version and the run id.
    pub tags: Vec<String>,
}

impl std::fmt::Debug for Annotate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Annotate")
            .field("grafana", &host_of(&self.grafana))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tags", &self.tags)
            .finish()
    }
}

impl Decoder<'_> {
    pub(super) fn notify(&mut self, node: &Node) -> Option<Vec<Notifier>> {
        let Some(items) = node.as_seq() else {
            self.error_hint(
                node,
                format!("`notify` must be a list, not {}", node.type_name()),
                "e.g. `notify: [{kind: slack, url_env: SLACK_WEBHOOK_URL}]`",
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.notifier(item, &format!("notify[{i}]")) {
                Some(n) => out.push(n),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn notifier(&mut self, node: &Node, what: &str) -> Option<Notifier> {
        const KEYS: [&str; 5] = ["kind", "url", "url_env", "secret_env", "on"];
        let m = self.map(node, what, &[&KEYS[..], &["secret"]].concat())?;
        self.secret_in_file(&m, what, "secret");
        let kind = self.required(&m, "kind", what).and_then(|n| {
            let s = n.scalar().unwrap_or_default();
            let found = NotifyKind::ALL.into_iter().find(|k| k.as_str() == s);
            if found.is_none() {
                let names: Vec<&str> = NotifyKind::ALL.iter().map(|k| k.as_str()).collect();
                let hint = match did_you_mean(s, &names) {
                    Some(x) => format!("did you mean `{x}`?"),
                    None => format!("kind is one of: {}", names.join(", ")),
                };
                self.error_hint(n, format!("unknown notifier kind \"{s}\" in `{what}`"), hint);
            }
            found
        });
        let url = self.url_or_env(&m, node, what);
        let secret = match (m.get("secret_env"), kind) {
            (Some(n), Some(k)) if !k.takes_secret() => {
                self.error_hint(
                    n,
                    format!("`{what}`: a {} notifier takes no `secret_env`", k.as_str()),
                    "feishu, dingtalk and webhook sign their messages; slack and wecom carry their key in the URL",
                );
                return None;
            }
            (Some(n), _) => Some(self.env_value(n, &format!("{what}.secret_env"))?.1),
            (None, _) => None,
        };
        let on = match m.get("on") {
            Some(n) => self.moments(n, &format!("{what}.on"))?,
            None => Moment::ALL.to_vec(),
        };
        let (kind, (url, label)) = (kind?, url?);
        Some(Notifier {
            kind,
            url,
            label: format!("{} ({label})", kind.as_str()),
            secret,
            on,
        })
    }

    /// `url` (written in the playbook) or `url_env` (the name of an environment variable that
    /// holds it), checked as an http(s) URL; with the label warnings use for it.
    fn url_or_env(&mut self, m: &Map, node: &Node, what: &str) -> Option<(String, String)> {
        match (m.get("url"), m.get("url_env")) {
            (Some(_), Some(e)) => {
                self.error(e, format!("`{what}` takes `url` or `url_env`, not both"));
                None
            }
            (None, None) => {
                let at = m.entries.first().map_or(node, |(k, _)| k);
                self.error_hint(
                    at,
                    format!("`{what}` needs `url` or `url_env`"),
                    "`url_env: NAME` reads the webhook URL from the environment variable NAME, which keeps its key out of the file",
                );
                None
            }
            (Some(u), None) => {
                let key = format!("{what}.url");
                let url = self.string(u, &key)?;
                if let Some(problem) = check::url_problem(&url) {
                    self.error_hint(
                        u,
                        format!("`{key}` {problem}"),
                        "a webhook URL is http:// or https://, with its special characters percent-encoded",
                    );
                    return None;
                }
                let host = host_of(&url);
                Some((url, host))
            }
            (None, Some(e)) => {
                let key = format!("{what}.url_env");
                let (name, url) = self.env_value(e, &key)?;
                if let Some(problem) = check::url_problem(url.trim()) {
                    // The value is a secret: say what is wrong with it, never what it is.
                    self.error_hint(
                        e,
                        format!("`{key}`: the URL in {name} {problem}"),
                        "a webhook URL is http:// or https://, with its special characters percent-encoded",
                    );
                    return None;
                }
                Some((url.trim().to_string(), name))
            }
        }
    }

    /// `on:` a list of moments, or one moment.
    fn moments(&mut self, node: &Node, what: &str) -> Option<Vec<Moment>> {
        let items: Vec<&Node> = match node.as_seq() {
            Some(items) if !items.is_empty() => items.iter().collect(),
            Some(_) => {
                self.error_hint(
                    node,
                    format!("`{what}` must not be empty"),
                    "leave `on` out to send every moment",
                );
                return None;
            }
            None if node.scalar().is_some() && node.as_map().is_none() => vec![node],
            None => {
                self.error(
                    node,
                    format!("`{what}` must be a list of moments, not {}", node.type_name()),
                );
                return None;
            }
        };
        let names: Vec<&str> = Moment::ALL.iter().map(|m| m.as_str()).collect();
        let mut on = Vec::new();
        let mut ok = true;
        for n in items {
            let s = n.scalar().unwrap_or_default();
            match Moment::ALL.into_iter().find(|m| m.as_str() == s) {
                Some(m) => on.push(m),
                None => {
                    let hint = match did_you_mean(s, &names) {
                        Some(x) => format!("did you mean `{x}`?"),
                        None => format!("a moment is one of: {}", names.join(", ")),
                    };
                    self.error_hint(n, format!("unknown moment \"{s}\" in `{what}`"), hint);
                    ok = false;
                }
            }
        }
        on.sort();
        on.dedup();
        ok.then_some(on)
    }

    pub(super) fn annotate(&mut self, node: &Node) -> Option<Annotate> {
        let m = self.map(node, "annotate", &["grafana", "token_env", "tags", "token"])?;
        self.secret_in_file(&m, "annotate", "token");
        let grafana = self.required(&m, "grafana", "annotate").and_then(|n| {
            let u = self.url(n, "annotate.grafana")?;
            match check::url_problem(&u) {
                Some(problem) => {
                    self.error(n, format!("`annotate.grafana` {problem}"));
                    None
                }
                None => Some(u),
            }
        });
        let token = match m.get("token_env") {
            Some(n) => Some(self.env_value(n, "annotate.token_env")?.1),
            None => None,
        };
        let mut tags = Vec::new();
        if let Some(n) = m.get("tags") {
            match n.as_seq() {
                Some(items) => {
                    for t in items {
                        if let Some(s) = self.string(t, "annotate.tags") {
                            tags.push(s);
                        }
                    }
                }
                None => self.error_hint(
                    n,
                    format!("`annotate.tags` must be a list, not {}", n.type_name()),
                    "e.g. `tags: [deploy, production]`",
                ),
            }
        }
        Some(Annotate {
            grafana: grafana?,
            token,
            tags,
        })
    }

    /// `secret:` or `token:` written in the file: refused, pointing at the `_env` key.
    fn secret_in_file(&mut self, m: &Map, what: &str, key: &str) {
        if let Some((k, _)) = m.entries.iter().find(|(k, _)| k.scalar() == Some(key)) {
            self.error_hint(
                k,
                format!("`{what}.{key}`: secrets are read from the environment only"),
                format!("name the environment variable that holds it: `{key}_env: NAME`"),
            );
        }
    }

    /// An environment variable's name, and its value: set and not empty.
    fn env_value(&mut self, node: &Node, what: &str) -> Option<(String, String)> {
        let name = self.string(node, what)?;
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if name.contains("://") {
            // Never echo it: a webhook URL carries its key.
            self.error_hint(
                node,
                format!("`{what}` names an environment variable; this looks like a URL"),
                "put the URL in an environment variable and name it here (`url_env: SLACK_WEBHOOK_URL`), or write it in `url:`",
            );
            return None;
        }
        if !valid {
            self.error_hint(
                node,
                format!(
                    "`{what}` must name an environment variable, not \"{}\"",
                    name.escape_debug()
                ),
                "letters, digits and `_`, such as SLACK_WEBHOOK_URL",
            );
            return None;
        }
        match std::env::var(&name) {
            Ok(v) if !v.trim().is_empty() => Some((name, v)),
            _ => {
                self.error_hint(
                    node,
                    format!("`{what}`: the environment variable {name} is not set"),
                    "set it in the environment tranche runs in (a CI secret, for instance)",
                );
                None
            }
        }
    }
}

/// The host of `url`, for labels.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rsplit('@').next().unwrap_or(authority).to_string()
}
