//! The decoder's primitives: checked mappings, scalars, numbers, durations, templates, URLs and
//! credentials, each problem collected with its position. The sections of the playbook are
//! decoded by the files named after them (load.rs, rollout.rs, registry.rs, presets.rs).

use std::path::Path;
use std::time::Duration;

use super::template::TemplateBuilder;
use super::{HttpAuth, Template};
use crate::error::{did_you_mean, Diagnostic, Diagnostics, Pos};
use crate::units;
use crate::yaml::Node;

pub(super) struct Decoder<'a> {
    pub(super) file: &'a Path,
    pub(super) diags: Diagnostics,
    pub(super) templates: TemplateBuilder,
    pub(super) positions: std::collections::HashMap<String, Pos>,
}

/// A checked mapping: its entries, with unknown keys already reported.
pub(super) struct Map<'n> {
    pub(super) node: &'n Node,
    pub(super) entries: &'n [(Node, Node)],
}

impl<'n> Map<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(key))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }
}

impl Decoder<'_> {
    pub(super) fn error(&mut self, node: &Node, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(self.file, Some(node.pos), msg));
    }

    pub(super) fn error_hint(&mut self, node: &Node, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(self.file, Some(node.pos), msg).hint(hint));
    }

    /// `node` as a mapping whose keys are among `allowed`; unknown keys are reported.
    pub(super) fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Map<'n>> {
        let Some(entries) = node.as_map() else {
            if what.is_empty() {
                self.error_hint(
                    node,
                    format!("the playbook must be a mapping of keys, not {}", node.type_name()),
                    "a playbook starts with `service: NAME`, `version: \"X\"` and `artifact: {path: FILE}`",
                );
            } else {
                self.error(node, format!("`{what}` must be a mapping, not {}", node.type_name()));
            }
            return None;
        };
        for (k, _) in entries {
            let key = k.scalar().unwrap_or("?");
            if !allowed.contains(&key) {
                let place = if what.is_empty() {
                    "the playbook".to_string()
                } else {
                    format!("`{what}`")
                };
                let hint = match did_you_mean(key, allowed) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("{place} accepts: {}", allowed.join(", ")),
                };
                self.error_hint(k, format!("unknown key `{key}` in {place}"), hint);
            }
        }
        Some(Map { node, entries })
    }

    pub(super) fn required<'n>(&mut self, map: &Map<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let v = map.get(key);
        if v.is_none() {
            let place = if what.is_empty() {
                "the playbook".to_string()
            } else {
                format!("`{what}`")
            };
            let pos = map.entries.first().map(|(k, _)| k.pos).unwrap_or(map.node.pos);
            self.diags.push(Diagnostic::new(
                self.file,
                Some(pos),
                format!("missing required key `{key}` in {place}"),
            ));
        }
        v
    }

    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        self.positions.insert(what.to_string(), node.pos);
        match node.scalar() {
            Some(s) if node.as_map().is_none() => {
                if s.trim().is_empty() {
                    self.error(node, format!("`{what}` must not be empty"));
                    None
                } else {
                    Some(s.to_string())
                }
            }
            _ => {
                self.error(node, format!("`{what}` must be a string, not {}", node.type_name()));
                None
            }
        }
    }

    pub(super) fn int(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<u64> {
        self.positions.insert(what.to_string(), node.pos);
        match node.to_json().as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.error(node, format!("`{what}` must be between {min} and {max}, not {n}"));
                None
            }
            None => {
                self.error(node, format!("`{what}` must be a whole number, not {}", describe(node)));
                None
            }
        }
    }

    /// A duration of at most `max` (so that no deadline computed from it can overflow).
    pub(super) fn duration(&mut self, node: &Node, what: &str, max: Duration) -> Option<Duration> {
        let text = match node.to_json() {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                self.error(
                    node,
                    format!("`{what}` must be a duration such as `5s`, not {}", node.type_name()),
                );
                return None;
            }
        };
        match units::parse_duration(&text) {
            Ok(d) => self.bounded(node, what, d, max),
            Err(e) => {
                self.error(node, format!("`{what}`: {e}"));
                None
            }
        }
    }

    pub(super) fn bounded(&mut self, node: &Node, what: &str, d: Duration, max: Duration) -> Option<Duration> {
        if d <= max {
            return Some(d);
        }
        let text = node.scalar().unwrap_or_default().trim().to_string();
        self.error_hint(
            node,
            format!("`{what}` must be at most {}, not {text}", units::bound_text(max)),
            "a silence lasts at most 7d; timeouts, pauses, drains and gate windows at most 24h",
        );
        None
    }

    pub(super) fn template(&mut self, node: &Node, what: &str, shell: bool) -> Option<Template> {
        let source = self.string(node, what)?;
        match self.templates.add(self.file, node.pos, &source, shell) {
            Ok(t) => Some(t),
            Err(d) => {
                self.diags.push(d);
                None
            }
        }
    }

    pub(super) fn url(&mut self, node: &Node, what: &str) -> Option<String> {
        let u = self.string(node, what)?;
        if u.starts_with("http://") || u.starts_with("https://") {
            Some(u.trim_end_matches('/').to_string())
        } else {
            self.error(
                node,
                format!("`{what}` must be an http:// or https:// URL, not \"{u}\""),
            );
            None
        }
    }

    /// `token` or `basic_auth: {username, password}` of a monitoring endpoint, rendered now
    /// from the controller's environment (`"{{ env.AM_TOKEN }}"`).
    pub(super) fn auth(&mut self, m: &Map, what: &str) -> Option<HttpAuth> {
        match (m.get("token"), m.get("basic_auth")) {
            (None, None) => Some(HttpAuth::None),
            (Some(_), Some(b)) => {
                self.error(b, format!("`{what}` takes `token` or `basic_auth`, not both"));
                None
            }
            (Some(t), None) => Some(HttpAuth::Bearer(self.credential(t, &format!("{what}.token"))?)),
            (None, Some(b)) => {
                let ba = format!("{what}.basic_auth");
                let bm = self.map(b, &ba, &["username", "password"])?;
                let username = self
                    .required(&bm, "username", &ba)
                    .and_then(|n| self.credential(n, &format!("{ba}.username")));
                let password = self
                    .required(&bm, "password", &ba)
                    .and_then(|n| self.credential(n, &format!("{ba}.password")));
                Some(HttpAuth::Basic {
                    username: username?,
                    password: password?,
                })
            }
        }
    }

    /// Credentials in the URL's userinfo and in `token`/`basic_auth` would both be sent.
    pub(super) fn credentials_once(
        &mut self,
        m: &Map,
        url_key: &str,
        url: &Option<String>,
        auth: &Option<HttpAuth>,
        what: &str,
    ) {
        let in_url = url.as_deref().is_some_and(|u| {
            let rest = u.split_once("://").map_or(u, |(_, r)| r);
            rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())].contains('@')
        });
        if let (true, Some(HttpAuth::Bearer(_) | HttpAuth::Basic { .. }), Some(n)) = (in_url, auth, m.get(url_key)) {
            self.error_hint(
                n,
                format!("`{what}.{url_key}` carries credentials, and `{what}` sets them too"),
                "keep them out of the URL: it is shown (redacted) while `token`/`basic_auth` never are",
            );
        }
    }

    /// A password setting: it must come from the controller's environment (a playbook is
    /// committed and shown), e.g. `"{{ env.VAR }}"` with `VAR` as `example`; rendered.
    pub(super) fn env_password(&mut self, node: &Node, what: &str, example: &str) -> Option<String> {
        let src = self.string(node, what)?;
        if !src.contains("env.") {
            self.error_hint(
                node,
                format!("`{what}` must come from the controller's environment"),
                format!("e.g. `password: \"{{{{ env.{example} }}}}\"`: a playbook is committed and shown"),
            );
            return None;
        }
        self.credential(node, what)
    }

    /// A credential setting: a string, rendered with the controller's environment as `env`.
    pub(super) fn credential(&mut self, node: &Node, what: &str) -> Option<String> {
        let src = self.string(node, what)?;
        if !src.contains("{{") && !src.contains("{%") {
            return Some(src);
        }
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        match env.render_str(&src, minijinja::context! { env => vars }) {
            Ok(v) if v.trim().is_empty() => {
                self.error_hint(
                    node,
                    format!("`{what}` is empty once rendered"),
                    "is the environment variable it reads set?",
                );
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                self.error_hint(
                    node,
                    format!("`{what}` cannot be rendered: {e}"),
                    "credentials read the controller's environment only, e.g. \"{{ env.AM_TOKEN }}\"; is the variable set?",
                );
                None
            }
        }
    }
}

pub(super) fn describe(node: &Node) -> String {
    match node.to_json() {
        serde_json::Value::String(s) => format!("\"{s}\""),
        serde_json::Value::Null => "null".into(),
        v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => v.to_string(),
        _ => node.type_name().to_string(),
    }
}
