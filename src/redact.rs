//! The one redaction policy: what counts as a secret, and how text is scrubbed before it leaves
//! the process (terminal, events, journal, run.json, JUnit, summary, plan JSON, error messages).
//!
//! Two rules, always applied together by [`Redactor`]:
//! - every `http(s)://` URL shown loses its userinfo and the values of its query string and
//!   fragment: `http://u:p@h:8500/x?t=v` is shown `http://***@h:8500/x?t=***`;
//! - every secret value is replaced by `***`. Secrets are the values of the `env.*` variables the
//!   playbook's templates use, registry tokens and credential headers, the monitoring
//!   credentials (`token`, `basic_auth`, URL userinfo), and `-e KEY=@env:NAME` values (marked
//!   with [`mark_secret`] when they are read), the notifiers' webhook URLs and signing secrets
//!   and the Grafana token (`notify`, `annotate`).

use std::sync::RwLock;

use serde_json::Value;

use crate::playbook::Playbook;
use crate::release::Release;

/// What a secret is replaced by.
pub const MASK: &str = "***";

/// Values shorter than this are not treated as secrets: replacing `1` or `on` everywhere would
/// garble every line (and a secret that short protects nothing).
pub const MIN_SECRET_LEN: usize = 4;

/// The `-e KEY=@env:NAME` value prefix: the value is read from the controller's environment
/// variable NAME, is a secret, and is never written to run.json (resume reads it again).
pub const ENV_PREFIX: &str = "@env:";

/// Secrets learnt while the command line was read (`-e KEY=@env:NAME`): every [`Redactor`] of
/// the process knows them.
static MARKED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Make `value` a secret for every [`Redactor`] of this process.
pub fn mark_secret(value: &str) {
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut m = MARKED.write().unwrap_or_else(|e| e.into_inner());
    if !m.iter().any(|v| v == value) {
        m.push(value.to_string());
    }
}

/// Resolve one `-e` value: `@env:NAME` reads the controller's environment (and marks the value
/// secret); anything else is taken as written.
pub fn resolve_extra_var(key: &str, value: &str) -> Result<String, String> {
    let Some(name) = value.strip_prefix(ENV_PREFIX) else {
        return Ok(value.to_string());
    };
    match std::env::var(name) {
        Ok(v) => {
            mark_secret(&v);
            Ok(v)
        }
        Err(_) => Err(format!(
            "`-e {key}={value}` reads the environment variable {name}, which is not set"
        )),
    }
}

/// Scrubs text, JSON and events by the policy above.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Secret values and their encoded forms, longest first (so a secret that contains
    /// another is replaced whole).
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for `values` and the secrets marked in this process.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Redactor {
        let marked = MARKED.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut secrets: Vec<String> = Vec::new();
        let mut add = |s: String| {
            if s.len() >= MIN_SECRET_LEN && !secrets.contains(&s) {
                secrets.push(s);
            }
        };
        for v in values.into_iter().map(|v| v.as_ref().to_string()).chain(marked) {
            if v.len() < MIN_SECRET_LEN {
                continue;
            }
            // The forms a value takes in a URL and in a shell command.
            add(percent_encode(&v));
            add(crate::playbook::shell_quote(&v));
            add(v);
        }
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Redactor { secrets }
    }

    /// `s` with its URLs stripped and its secrets replaced.
    pub fn text(&self, s: &str) -> String {
        let mut out = strip_urls(s);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    pub fn scrub(&self, s: &mut String) {
        let clean = self.text(s);
        if clean != *s {
            *s = clean;
        }
    }

    /// Every string in `v`, at any depth.
    pub fn json(&self, v: &mut Value) {
        match v {
            Value::String(s) => self.scrub(s),
            Value::Array(a) => a.iter_mut().for_each(|x| self.json(x)),
            Value::Object(o) => o.values_mut().for_each(|x| self.json(x)),
            _ => {}
        }
    }
}

/// The secrets of a release: see the module documentation. `-e @env:` values are added by
/// every [`Redactor`] on its own.
pub fn secrets_of(r: &Release) -> Vec<String> {
    let p = &r.playbook;
    let mut out: Vec<String> = env_values(p);
    for (name, value) in &p.registry.credentials {
        if !is_credential_header(name) {
            continue;
        }
        // Once per host only when the value depends on the host (a 1,000-host run
        // renders it once).
        let hosts = if value.source.contains("host") {
            &r.targets[..]
        } else {
            &r.targets[..r.targets.len().min(1)]
        };
        for host in hosts {
            let Ok(v) = r.render(value, host, "redact", None) else {
                continue;
            };
            // `Bearer abc`: both the header value and the credential alone.
            if let Some((_, cred)) = v.split_once(' ') {
                out.push(cred.trim().to_string());
            }
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    if let Some(g) = &p.rollout.gate {
        out.extend(g.auth.secrets());
        out.extend(userinfo_password(&g.prometheus));
    }
    if let Some(s) = &p.silence {
        out.extend(s.auth.secrets());
        out.extend(userinfo_password(&s.alertmanager));
    }
    out.extend(p.notify.iter().flat_map(|n| n.secrets()));
    out.extend(p.artifact.store.auth.secrets());
    if let crate::playbook::ArtifactSource::Image(img) = &p.artifact.source {
        out.extend(img.login.iter().map(|l| l.password.clone()));
    }
    if let Some(a) = &p.annotate {
        out.extend(a.token.iter().cloned());
        out.extend(userinfo_password(&a.grafana));
    }
    out.retain(|v| v.len() >= MIN_SECRET_LEN);
    out.sort();
    out.dedup();
    out
}

/// Headers whose values are credentials.
fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["authorization", "cookie", "token", "secret", "key", "auth", "password"]
        .iter()
        .any(|w| n.contains(w))
}

/// The values of the controller's environment variables that templates use (`env.NAME`).
fn env_values(p: &Playbook) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for t in crate::release::all_templates(p) {
        let mut rest = t.source.as_str();
        while let Some(i) = rest.find("env.") {
            let name: String = rest[i + 4..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
            rest = &rest[i + 4..];
        }
    }
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .filter(|v| v.len() >= MIN_SECRET_LEN)
        .collect()
}

/// The password of `http://user:password@host`, if any.
fn userinfo_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(userinfo.split_once(':').map_or(userinfo, |(_, p)| p).to_string())
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One URL as it may be shown: no userinfo, no query or fragment values.
pub fn url(u: &str) -> String {
    let Some(sep) = u.find("://") else {
        return u.to_string();
    };
    let (scheme, rest) = u.split_at(sep + 3);
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let mut out = String::from(scheme);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (tail, fragment) = match tail.find('#') {
        Some(i) => (&tail[..i], Some(&tail[i + 1..])),
        None => (tail, None),
    };
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => format!("{k}={MASK}"),
                    None if pair.is_empty() => String::new(),
                    None => MASK.to_string(),
                })
                .collect();
            out.push_str(&masked.join("&"));
        }
        None => out.push_str(tail),
    }
    if let Some(f) = fragment {
        out.push('#');
        if !f.is_empty() {
            out.push_str(MASK);
        }
    }
    out
}

/// `s` with every `http://` and `https://` URL in it passed through [`url`]. A URL ends at
/// whitespace, a quote, `<`, `>`, `)` or a backtick; trailing `.,;:` are left outside it.
pub fn strip_urls(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(start) = next_url(&lower, i) {
        out.push_str(&s[i..start]);
        let len = s[start..]
            .find(|c: char| c.is_whitespace() || "\"'<>)`".contains(c))
            .unwrap_or(s.len() - start);
        let token = s[start..start + len].trim_end_matches(['.', ',', ';', ':']);
        out.push_str(&url(token));
        i = start + token.len();
    }
    out.push_str(&s[i..]);
    out
}

/// Where the next `http://` or `https://` starts in `lower` (already lowercase), from `from`.
fn next_url(lower: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(rel) = lower[at..].find("http") {
        let start = at + rel;
        let rest = &lower[start + 4..];
        if rest.starts_with("://") || rest.starts_with("s://") {
            return Some(start);
        }
        at = start + 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_and_query_values() {
        let table = [
            ("http://u:p@host:8500", "http://***@host:8500"),
            ("http://u:p@host:8500/", "http://***@host:8500/"),
            ("https://u:p@host/v1/x", "https://***@host/v1/x"),
            ("http://token@host", "http://***@host"),
            ("http://a@b:c@host:1/p", "http://***@host:1/p"),
            ("http://host:8500", "http://host:8500"),
            ("http://host/p?t=s3cr3t", "http://host/p?t=***"),
            ("http://host?t=s3cr3t&x=1", "http://host?t=***&x=***"),
            ("http://host/p?s3cr3t", "http://host/p?***"),
            ("http://host/p#frag", "http://host/p#***"),
            ("http://host/p@x", "http://host/p@x"),
            ("http://u:p@host?q=1", "http://***@host?q=***"),
            ("not a url", "not a url"),
        ];
        for (input, want) in table {
            assert_eq!(url(input), want, "{input}");
        }
    }

    #[test]
    fn urls_in_free_text_are_stripped() {
        let table = [
            (
                "POST http://u:p@am:9093/api/v2/silences: connection refused",
                "POST http://***@am:9093/api/v2/silences: connection refused",
            ),
            (
                "Alertmanager at http://u:p@am:9093.",
                "Alertmanager at http://***@am:9093.",
            ),
            (
                "error sending request for url (http://h/x?token=abc)",
                "error sending request for url (http://h/x?token=***)",
            ),
            (
                "a HTTPS://U:P@H/x and http://ok/ then \"http://k@h\"",
                "a HTTPS://***@H/x and http://ok/ then \"http://***@h\"",
            ),
            ("httpd is up; http is fine", "httpd is up; http is fine"),
            ("ends with http://", "ends with http://"),
        ];
        for (input, want) in table {
            assert_eq!(strip_urls(input), want, "{input}");
        }
    }

    #[test]
    fn secrets_are_replaced_in_every_form() {
        let r = Redactor::new(["s3cr3t-value", "it's/secret", "abc"]);
        let table = [
            ("token s3cr3t-value leaked", "token *** leaked"),
            ("echo 's3cr3t-value' >&2", "echo '***' >&2"),
            // Shell-quoted, and percent-encoded in a URL path.
            ("echo 'it'\\''s/secret'", "echo ***"),
            ("GET http://h/v/it%27s%2Fsecret/x", "GET http://h/v/***/x"),
            // Too short to be a secret.
            ("abc def", "abc def"),
        ];
        for (input, want) in table {
            assert_eq!(r.text(input), want, "{input}");
        }
    }

    #[test]
    fn json_is_scrubbed_at_any_depth() {
        let r = Redactor::new(["hunter22"]);
        let mut v = serde_json::json!({
            "silence": {"alertmanager": "http://u:hunter22@am:9093"},
            "list": ["x hunter22 y", 3, null],
        });
        r.json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "silence": {"alertmanager": "http://***@am:9093"},
                "list": ["x *** y", 3, null],
            })
        );
    }

    #[test]
    fn env_references_in_extra_vars_are_read_and_marked() {
        std::env::set_var("TRANCHE_REDACT_TEST_E", "from-the-env-9f3");
        assert_eq!(
            resolve_extra_var("K", "@env:TRANCHE_REDACT_TEST_E").unwrap(),
            "from-the-env-9f3"
        );
        assert_eq!(resolve_extra_var("K", "plain").unwrap(), "plain");
        assert!(resolve_extra_var("K", "@env:TRANCHE_REDACT_TEST_UNSET")
            .unwrap_err()
            .contains("TRANCHE_REDACT_TEST_UNSET"));
        // Any redactor of the process now knows it.
        assert_eq!(Redactor::new(Vec::<String>::new()).text("v=from-the-env-9f3"), "v=***");
    }

    #[test]
    fn registry_tokens_and_credential_headers_are_secrets() {
        use crate::http_body::tests::test_release;
        let (_d, r) =
            test_release("registry:\n  kind: consul\n  address: http://127.0.0.1:8500\n  token: \"c0nsul-t0ken\"\n");
        assert!(
            secrets_of(&r).contains(&"c0nsul-t0ken".to_string()),
            "{:?}",
            secrets_of(&r)
        );
        let (_d, r) = test_release(
            "registry:\n  kind: etcd\n  address: http://127.0.0.1:2379\n  token: \"etcd-t0ken\"\n  key: k\n  value: v\n",
        );
        // The preset's token is a secret (hidden in its `Authorization: Bearer ...` header too).
        let s = secrets_of(&r);
        assert!(s.contains(&"etcd-t0ken".to_string()), "{s:?}");
        let (_d, r) = test_release(
            "registry:\n  kind: http\n  deregister:\n    url: http://x/out\n    headers: {X-Api-Key: \"k3y-{{ host.name }}\", Accept: \"text/plain\"}\n  register: http://x/in\n",
        );
        assert_eq!(secrets_of(&r), ["k3y-h1"]);
    }

    #[test]
    fn userinfo_passwords() {
        assert_eq!(userinfo_password("http://u:pw12@h:1/x").as_deref(), Some("pw12"));
        assert_eq!(userinfo_password("http://tok123@h").as_deref(), Some("tok123"));
        assert_eq!(userinfo_password("http://h/x@y"), None);
    }
}
