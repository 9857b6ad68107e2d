//! `registry`: how a host is taken out of traffic and put back, as the playbook writes it. The
//! decoder also records what the rest of the release needs to know of it (its templates, its
//! delegate, its credentials), so that only `registry::build` tells the kinds apart.

use std::time::Duration;

use super::decoder::{Decoder, Map};
use super::presets::PRESETS;
use super::{check, Template};
use crate::error::did_you_mean;
use crate::yaml::Node;

/// `registry.retry` when the playbook does not set it.
pub const DEFAULT_REGISTRY_RETRY: Duration = Duration::from_secs(30);

/// The kinds of registry that are not presets; the presets are in [`PRESETS`].
const KINDS: [&str; 4] = ["none", "command", "http", "haproxy"];

/// Every registry kind, presets last: for errors and the README.
pub fn kinds() -> Vec<&'static str> {
    KINDS.into_iter().chain(PRESETS.iter().map(|p| p.name)).collect()
}

/// The playbook's `registry`.
#[derive(Debug, Clone)]
pub struct Registry {
    /// `none`, `command`, `http`, `haproxy`, or a preset's name.
    pub kind: &'static str,
    /// What the adapter is built from: matched by `registry::build` only.
    pub spec: RegistrySpec,
    /// `registry.drain`: how long a host is left to drain once out of traffic.
    pub drain: Duration,
    /// `registry.delegate`: the inventory host `command` calls run on instead.
    pub delegate: Option<String>,
    /// Every template rendered for a host, checked for every targeted host when planned.
    pub templates: Vec<Template>,
    /// Rendered names HAProxy's runtime API parses, checked for every targeted host.
    pub haproxy_names: Vec<(&'static str, Template)>,
    /// Values that may carry credentials, by the header (or setting) they go in: redacted.
    pub credentials: Vec<(String, Template)>,
}

impl Registry {
    /// `kind: none`, the default: hosts are not taken out of traffic.
    pub fn none() -> Registry {
        Registry {
            kind: "none",
            ..Registry::of(RegistrySpec::None)
        }
    }

    pub(super) fn of(spec: RegistrySpec) -> Registry {
        Registry {
            kind: "none",
            spec,
            drain: Duration::ZERO,
            delegate: None,
            templates: vec![],
            haproxy_names: vec![],
            credentials: vec![],
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// The settings of each kind of registry.
#[derive(Debug, Clone)]
pub enum RegistrySpec {
    None,
    Command {
        deregister: Template,
        register: Template,
    },
    Http {
        deregister: HttpCall,
        register: HttpCall,
    },
    /// A preset: its settings (given, or their defaults) as templates, by name; the HTTP calls
    /// they make are built by `registry::presets`.
    Preset {
        name: &'static str,
        settings: Vec<(&'static str, Template)>,
    },
    Haproxy {
        address: String,
        backend: Template,
        server: Template,
    },
}

#[derive(Debug, Clone)]
pub struct HttpCall {
    pub method: String,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    /// Accepted statuses; empty: any 2xx.
    pub expect_status: Vec<u16>,
}

impl Decoder<'_> {
    pub(super) fn registry(&mut self, node: &Node) -> Option<Registry> {
        let Some(kind_node) = node.get("kind") else {
            if node.as_map().is_some() {
                self.error_hint(
                    node,
                    "missing required key `kind` in `registry`",
                    format!("kind is one of: {}", kinds().join(", ")),
                );
            } else {
                self.error(node, format!("`registry` must be a mapping, not {}", node.type_name()));
            }
            return None;
        };
        let kind = kind_node.scalar().unwrap_or("").to_string();
        let drain_of = |d: &mut Self, m: &Map| {
            m.get("drain")
                .map(|n| d.duration(n, "registry.drain", check::WAIT_MAX))
                .unwrap_or(Some(Duration::ZERO))
        };
        match kind.as_str() {
            "none" => {
                self.map(node, "registry", &["kind", "retry"])?;
                Some(Registry::none())
            }
            "command" => {
                let m = self.map(
                    node,
                    "registry",
                    &["kind", "deregister", "register", "delegate", "drain", "retry"],
                )?;
                let dereg = self
                    .required(&m, "deregister", "registry")
                    .and_then(|n| self.template(n, "registry.deregister", true));
                let reg = self
                    .required(&m, "register", "registry")
                    .and_then(|n| self.template(n, "registry.register", true));
                let delegate = m.get("delegate").and_then(|n| self.string(n, "registry.delegate"));
                let drain = drain_of(self, &m);
                let (deregister, register) = (dereg?, reg?);
                Some(Registry {
                    kind: "command",
                    drain: drain?,
                    delegate,
                    templates: vec![deregister.clone(), register.clone()],
                    ..Registry::of(RegistrySpec::Command { deregister, register })
                })
            }
            "http" => {
                let m = self.map(node, "registry", &["kind", "deregister", "register", "drain", "retry"])?;
                let dereg = self
                    .required(&m, "deregister", "registry")
                    .and_then(|n| self.http_call(n, "registry.deregister"));
                let reg = self
                    .required(&m, "register", "registry")
                    .and_then(|n| self.http_call(n, "registry.register"));
                let drain = drain_of(self, &m);
                let (deregister, register) = (dereg?, reg?);
                let mut templates = Vec::new();
                let mut credentials = Vec::new();
                for c in [&deregister, &register] {
                    templates.push(c.url.clone());
                    templates.extend(c.headers.iter().map(|(_, v)| v.clone()));
                    templates.extend(c.body.iter().cloned());
                    credentials.extend(c.headers.iter().cloned());
                }
                Some(Registry {
                    kind: "http",
                    drain: drain?,
                    templates,
                    credentials,
                    ..Registry::of(RegistrySpec::Http { deregister, register })
                })
            }
            name if PRESETS.iter().any(|p| p.name == name) => {
                let preset = PRESETS.iter().find(|p| p.name == name)?;
                self.preset(node, preset)
            }
            "haproxy" => {
                let m = self.map(
                    node,
                    "registry",
                    &["kind", "address", "backend", "server", "drain", "retry"],
                )?;
                let address = self.required(&m, "address", "registry").and_then(|n| {
                    let a = self.string(n, "registry.address")?;
                    if a.starts_with("ssh://")
                        || a.starts_with('/')
                        || a.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                    {
                        Some(a)
                    } else {
                        self.error_hint(
                            n,
                            format!(
                                "`registry.address` must be `host:port` or `ssh://HOST/path/to/socket`, not \"{a}\""
                            ),
                            "this is HAProxy's runtime API (`stats socket` in haproxy.cfg)",
                        );
                        None
                    }
                });
                let backend = self
                    .required(&m, "backend", "registry")
                    .and_then(|n| self.template(n, "registry.backend", false));
                let server = match m.get("server") {
                    Some(n) => self.template(n, "registry.server", false),
                    None => self.templates.add(self.file, node.pos, "{{ host.name }}", false).ok(),
                };
                let drain = drain_of(self, &m);
                let (backend, server) = (backend?, server?);
                Some(Registry {
                    kind: "haproxy",
                    drain: drain?,
                    templates: vec![backend.clone(), server.clone()],
                    haproxy_names: vec![
                        ("registry.backend", backend.clone()),
                        ("registry.server", server.clone()),
                    ],
                    ..Registry::of(RegistrySpec::Haproxy {
                        address: address?,
                        backend,
                        server,
                    })
                })
            }
            other => {
                let kinds = kinds();
                let hint = match did_you_mean(other, &kinds) {
                    Some(x) => format!("did you mean `{x}`?"),
                    None => format!("kind is one of: {}", kinds.join(", ")),
                };
                self.error_hint(kind_node, format!("unknown registry kind \"{other}\""), hint);
                None
            }
        }
    }

    pub(super) fn http_call(&mut self, node: &Node, what: &str) -> Option<HttpCall> {
        if node.scalar().is_some() {
            let url = self.template(node, what, false)?;
            return Some(HttpCall {
                method: "PUT".into(),
                url,
                headers: vec![],
                body: None,
                expect_status: vec![],
            });
        }
        let m = self.map(node, what, &["method", "url", "headers", "body", "expect_status"])?;
        let method = match m.get("method") {
            Some(n) => {
                let s = self.string(n, &format!("{what}.method"))?.to_ascii_uppercase();
                if !["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"].contains(&s.as_str()) {
                    self.error(
                        n,
                        format!("`{what}.method` must be an HTTP method such as PUT, not \"{s}\""),
                    );
                    return None;
                }
                s
            }
            None => "PUT".into(),
        };
        let url = self
            .required(&m, "url", what)
            .and_then(|n| self.template(n, &format!("{what}.url"), false));
        let mut headers = Vec::new();
        if let Some(h) = m.get("headers") {
            match h.as_map() {
                Some(entries) => {
                    for (k, v) in entries {
                        let name = k.scalar().unwrap_or_default().to_string();
                        if let Some(t) = self.template(v, &format!("{what}.headers.{name}"), false) {
                            headers.push((name, t));
                        }
                    }
                }
                None => self.error(h, format!("`{what}.headers` must be a mapping")),
            }
        }
        let body = m
            .get("body")
            .and_then(|n| self.template(n, &format!("{what}.body"), false));
        let expect_status = match m.get("expect_status") {
            Some(n) => match n.as_seq() {
                Some(items) => items
                    .iter()
                    .filter_map(|i| {
                        self.int(i, &format!("{what}.expect_status"), 100, 599)
                            .map(|v| v as u16)
                    })
                    .collect(),
                None => vec![self.int(n, &format!("{what}.expect_status"), 100, 599)? as u16],
            },
            None => vec![],
        };
        Some(HttpCall {
            method,
            url: url?,
            headers,
            body,
            expect_status,
        })
    }
}
