//! Turning the playbook's YAML into a [`Playbook`], collecting every problem with its position.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::template::TemplateBuilder;
use super::*;
use crate::error::{did_you_mean, Diagnostic, Diagnostics, Pos};
use crate::units;
use crate::yaml::{self, Node};

const TOP_KEYS: &[&str] = &[
    "service", "version", "hosts", "artifact", "layout", "rollout", "registry", "stop", "start", "health", "hooks",
    "become", "silence",
];

pub(super) fn load(path: &Path, extra_vars: &[(String, String)]) -> Result<Playbook, Diagnostics> {
    let text = yaml::read_file(path)
        .map_err(|e| Diagnostics::from(Diagnostic::new(path, None, format!("cannot read the playbook: {e}"))))?;
    let root = match yaml::parse(path, &text)? {
        Some(root) => root,
        None => {
            return Err(Diagnostic::new(path, None, "the playbook is empty")
                .hint("a playbook needs at least `service`, `version` and `artifact`")
                .into())
        }
    };
    let mut d = Decoder {
        file: path,
        diags: Diagnostics::default(),
        templates: TemplateBuilder::default(),
        positions: Default::default(),
    };
    let playbook = d.playbook(&root, extra_vars);
    let mut diags = d.diags;
    diags.attach_sources(path, &text);
    match playbook {
        Some(p) if diags.is_empty() => Ok(p),
        _ => Err(diags),
    }
}

/// A preset's HTTP call as template sources: method, URL, body.
type CallSource = (&'static str, String, Option<String>);

struct Decoder<'a> {
    file: &'a Path,
    diags: Diagnostics,
    templates: TemplateBuilder,
    positions: std::collections::HashMap<String, Pos>,
}

/// A checked mapping: its entries, with unknown keys already reported.
struct Map<'n> {
    node: &'n Node,
    entries: &'n [(Node, Node)],
}

impl<'n> Map<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(key))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }
}

impl Decoder<'_> {
    fn error(&mut self, node: &Node, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(self.file, Some(node.pos), msg));
    }

    fn error_hint(&mut self, node: &Node, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(self.file, Some(node.pos), msg).hint(hint));
    }

    /// `node` as a mapping whose keys are among `allowed`; unknown keys are reported.
    fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Map<'n>> {
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

    fn required<'n>(&mut self, map: &Map<'n>, key: &str, what: &str) -> Option<&'n Node> {
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

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
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

    fn int(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<u64> {
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
    fn duration(&mut self, node: &Node, what: &str, max: Duration) -> Option<Duration> {
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

    fn bounded(&mut self, node: &Node, what: &str, d: Duration, max: Duration) -> Option<Duration> {
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

    fn pause(&mut self, node: &Node, what: &str) -> Option<Pause> {
        if node.scalar() == Some("confirm") {
            return Some(Pause::Confirm);
        }
        match node.to_json() {
            serde_json::Value::String(s) => match units::parse_duration(&s) {
                Ok(d) => self.bounded(node, what, d, check::WAIT_MAX).map(Pause::For),
                Err(e) => {
                    self.error_hint(
                        node,
                        format!("`{what}`: {e}"),
                        "a pause is a duration, or `confirm` to ask before going on",
                    );
                    None
                }
            },
            _ => self.duration(node, what, check::WAIT_MAX).map(Pause::For),
        }
    }

    fn template(&mut self, node: &Node, what: &str, shell: bool) -> Option<Template> {
        let source = self.string(node, what)?;
        match self.templates.add(self.file, node.pos, &source, shell) {
            Ok(t) => Some(t),
            Err(d) => {
                self.diags.push(d);
                None
            }
        }
    }

    fn size(&mut self, node: &Node, what: &str, min_count: usize, max_percent: u32) -> Option<BatchSize> {
        match node.to_json() {
            serde_json::Value::Number(n) => match n.as_u64() {
                _ if n.as_f64().is_some_and(|f| f > crate::inventory::HOSTS_MAX as f64) => {
                    self.error_hint(
                        node,
                        format!(
                            "`{what}` must be at most {} hosts, not {}",
                            crate::inventory::HOSTS_MAX,
                            node.scalar().unwrap_or_default()
                        ),
                        "an inventory holds at most that many hosts; `\"100%\"` means all of them",
                    );
                    None
                }
                Some(c) if c as usize >= min_count => Some(BatchSize::Count(c as usize)),
                _ => {
                    self.error_hint(
                        node,
                        format!("`{what}` must be a whole number of at least {min_count}, or a percentage, not {n}"),
                        "write a host count such as `5`, or a share such as `\"25%\"`",
                    );
                    None
                }
            },
            serde_json::Value::String(s) => {
                let pct = s.trim().strip_suffix('%').and_then(|p| p.trim().parse::<u32>().ok());
                match pct {
                    Some(p) if (min_count.min(1) as u32..=max_percent).contains(&p) => Some(BatchSize::Percent(p)),
                    Some(p) => {
                        self.error(
                            node,
                            format!(
                                "`{what}` must be a percentage from {}% to {max_percent}%, not {p}%",
                                min_count.min(1)
                            ),
                        );
                        None
                    }
                    None => {
                        self.error_hint(
                            node,
                            format!("`{what}` must be a number or a percentage, not \"{s}\""),
                            "write a host count such as `5`, or a share such as `\"25%\"`",
                        );
                        None
                    }
                }
            }
            _ => {
                self.error(
                    node,
                    format!("`{what}` must be a number or a percentage, not {}", node.type_name()),
                );
                None
            }
        }
    }

    fn playbook(&mut self, root: &Node, extra_vars: &[(String, String)]) -> Option<Playbook> {
        let top = self.map(root, "", TOP_KEYS)?;
        let service = self
            .required(&top, "service", "")
            .and_then(|n| self.string(n, "service"));
        if let (Some(s), Some(n)) = (&service, top.get("service")) {
            if !s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                self.error_hint(
                    n,
                    format!("`service` must be a simple name, not \"{s}\""),
                    "letters, digits, `-`, `_` and `.`: it names the lock, the journal and the events",
                );
            }
        }
        let version = self.required(&top, "version", "").and_then(|n| {
            let v = n.to_json();
            match v {
                serde_json::Value::Number(num) => Some(num.to_string()),
                _ => self.string(n, "version"),
            }
        });
        if let (Some(v), Some(n)) = (&version, top.get("version")) {
            if let Some(problem) = check::version_problem(v) {
                self.error_hint(
                    n,
                    format!("`version` \"{}\" {problem}", v.escape_debug()),
                    "the version names a folder on every host and reaches their shell: letters, digits, `.`, `_`, `+` and `-`",
                );
            }
        }
        let (hosts, hosts_pos) = match top.get("hosts") {
            Some(n) => (self.string(n, "hosts").unwrap_or_default(), Some(n.pos)),
            None => ("all".to_string(), None),
        };
        let artifact = self.required(&top, "artifact", "").and_then(|n| self.artifact(n));
        let layout = match top.get("layout") {
            Some(n) => self.layout(n, service.as_deref().unwrap_or("service")),
            None => Some(Layout {
                root: format!("/srv/{}", service.as_deref().unwrap_or("service")),
                keep: 5,
            }),
        };
        let rollout = match top.get("rollout") {
            Some(n) => self.rollout(n),
            None => Some(default_rollout()),
        };
        let registry = match top.get("registry") {
            Some(n) => self.registry(n),
            None => Some(Registry::None),
        };
        let registry_retry = match top.get("registry").and_then(|n| n.get("retry")) {
            Some(n) => self.duration(n, "registry.retry", check::WAIT_MAX),
            None => Some(DEFAULT_REGISTRY_RETRY),
        };
        let stop = match top.get("stop") {
            Some(n) => self.stop(n),
            None => Some(Stop {
                command: None,
                timeout: Duration::from_secs(30),
                kill_command: None,
            }),
        };
        let start = match top.get("start") {
            Some(n) => self.map(n, "start", &["command"]).and_then(|m| {
                let c = self.required(&m, "command", "start")?;
                self.template(c, "start.command", true)
            }),
            None => None,
        };
        let health = top.get("health").and_then(|n| self.health(n));
        let hooks = match top.get("hooks") {
            Some(n) => self.hooks(n),
            None => Some(Hooks::default()),
        };
        let silence = top.get("silence").and_then(|n| self.silence(n));
        if top.get("silence").is_some() && silence.is_none() {
            return None;
        }
        let become_root = match top.get("become") {
            Some(n) => match n.to_json() {
                serde_json::Value::Bool(b) => b,
                _ => {
                    self.error(n, format!("`become` must be true or false, not {}", n.type_name()));
                    false
                }
            },
            None => false,
        };
        let templates = std::mem::take(&mut self.templates).build();
        if top.get("start").is_some() && start.is_none() || top.get("health").is_some() && health.is_none() {
            return None;
        }
        Some(Playbook {
            file: self.file.to_path_buf(),
            service: service?,
            version: version?,
            hosts,
            hosts_pos,
            artifact: artifact?,
            layout: layout?,
            rollout: rollout?,
            registry: registry?,
            registry_retry: registry_retry?,
            stop: stop?,
            start,
            health,
            hooks: hooks?,
            templates,
            extra_vars: extra_vars.to_vec(),
            positions: std::mem::take(&mut self.positions),
            become_root,
            silence,
        })
    }

    fn artifact(&mut self, node: &Node) -> Option<Artifact> {
        let m = self.map(node, "artifact", &["path", "url", "sha256"])?;
        let sha256 = m.get("sha256").and_then(|n| {
            let s = self.string(n, "artifact.sha256")?;
            let s = s.trim().trim_start_matches("sha256:").to_ascii_lowercase();
            if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
                Some(s)
            } else {
                self.error_hint(
                    n,
                    format!(
                        "`artifact.sha256` must be 64 hexadecimal digits, not \"{s}\" ({} characters)",
                        s.len()
                    ),
                    "compute it with `sha256sum FILE`",
                );
                None
            }
        });
        let bad_sha = m.get("sha256").is_some() && sha256.is_none();
        let source = match (m.get("path"), m.get("url")) {
            (Some(_), Some(u)) => {
                self.error_hint(
                    u,
                    "`artifact` takes either `path` (push) or `url` (pull), not both",
                    "`path` is uploaded from this machine; `url` is downloaded by each host",
                );
                None
            }
            (None, None) => {
                self.error_hint(
                    node,
                    "`artifact` needs `path` (pushed from this machine) or `url` (pulled by each host)",
                    "e.g. `artifact: {path: dist/demo-2.0.0.tar.gz}`",
                );
                None
            }
            (Some(p), None) => {
                let s = self.string(p, "artifact.path")?;
                let base = self.file.parent().unwrap_or(Path::new("."));
                let full: PathBuf = if Path::new(&s).is_absolute() {
                    PathBuf::from(&s)
                } else {
                    base.join(&s)
                };
                match std::fs::metadata(&full) {
                    Ok(md) if md.is_file() => Some(ArtifactSource::Path(full)),
                    Ok(_) => {
                        self.error(p, format!("artifact `{}` is not a file", full.display()));
                        None
                    }
                    Err(e) => {
                        self.error_hint(
                            p,
                            format!("artifact `{}` cannot be read: {e}", full.display()),
                            "`artifact.path` is relative to the playbook's folder",
                        );
                        None
                    }
                }
            }
            (None, Some(u)) => {
                let t = self.template(u, "artifact.url", false)?;
                if sha256.is_none() && !bad_sha {
                    self.error_hint(
                        u,
                        "`artifact.url` needs `artifact.sha256`",
                        "hosts verify what they download against it; compute it with `sha256sum FILE`",
                    );
                }
                // A literal URL is checked now; a templated one once per targeted host, when
                // the release is planned (`release::check_host_values`).
                let problem = if t.is_literal() {
                    check::url_problem(&t.source)
                } else if !(t.source.starts_with("http://")
                    || t.source.starts_with("https://")
                    || t.source.starts_with("{{"))
                {
                    Some("must start with http:// or https://".into())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    self.error_hint(
                        u,
                        format!("`artifact.url` \"{}\" {problem}", t.source.escape_debug()),
                        check::URL_CHARS_HINT,
                    );
                }
                Some(ArtifactSource::Url(t))
            }
        };
        Some(Artifact {
            source: source?,
            sha256: if bad_sha { return None } else { sha256 },
            pos: node.pos,
        })
    }

    fn layout(&mut self, node: &Node, service: &str) -> Option<Layout> {
        let m = self.map(node, "layout", &["root", "keep"])?;
        let root = match m.get("root") {
            Some(n) => {
                let r = self.string(n, "layout.root")?;
                if let Some(problem) = check::layout_root_problem(&r) {
                    self.error(n, format!("`layout.root` \"{}\" {problem}", r.escape_debug()));
                    return None;
                }
                r.trim_end_matches('/').to_string()
            }
            None => format!("/srv/{service}"),
        };
        let keep = match m.get("keep") {
            Some(n) => self.int(n, "layout.keep", 1, 1000)? as u32,
            None => 5,
        };
        Some(Layout { root, keep })
    }

    fn rollout(&mut self, node: &Node) -> Option<Rollout> {
        let m = self.map(
            node,
            "rollout",
            &[
                "canary",
                "canary_pause",
                "batch",
                "pause",
                "max_failures",
                "on_failure",
                "stage",
                "spread",
                "gate",
                "window",
                "max_per_zone",
            ],
        )?;
        let mut r = default_rollout();
        let mut ok = true;
        if let Some(n) = m.get("spread") {
            match n.scalar() {
                Some("zone") => r.spread_zones = true,
                Some("none") => r.spread_zones = false,
                _ => {
                    let v = n.scalar().unwrap_or("?").to_string();
                    self.error_hint(
                        n,
                        format!("`rollout.spread` must be zone or none, not \"{v}\""),
                        "`spread: zone` orders the hosts round-robin over their zones before batching",
                    );
                    ok = false;
                }
            }
        }
        if let Some(n) = m.get("window") {
            match n.to_json() {
                serde_json::Value::Bool(b) => r.window = b,
                _ => {
                    self.error_hint(n, format!("`rollout.window` must be true or false, not {}", n.type_name()), "window: true starts the next host as soon as one finishes, never more than a batch out at once");
                    ok = false;
                }
            }
        }
        if let Some(n) = m.get("gate") {
            match self.gate(n) {
                Some(g) => r.gate = Some(g),
                None => ok = false,
            }
        }
        if let Some(n) = m.get("max_per_zone") {
            match self.int(n, "rollout.max_per_zone", 1, 100_000) {
                Some(v) => r.max_per_zone = Some(v as usize),
                None => ok = false,
            }
        }
        if let Some(n) = m.get("canary") {
            match self.int(n, "rollout.canary", 0, 100_000) {
                Some(c) => r.canary = c as usize,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("canary_pause") {
            match self.pause(n, "rollout.canary_pause") {
                Some(p) => r.canary_pause = p,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("pause") {
            match self.pause(n, "rollout.pause") {
                Some(p) => r.pause = p,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("batch") {
            let sizes: Vec<Option<BatchSize>> = match n.as_seq() {
                Some([]) => {
                    self.error(n, "`rollout.batch` must not be an empty list");
                    vec![None]
                }
                Some(items) => items.iter().map(|i| self.size(i, "rollout.batch", 1, 100)).collect(),
                None => vec![self.size(n, "rollout.batch", 1, 100)],
            };
            match sizes.into_iter().collect::<Option<Vec<_>>>() {
                Some(s) => r.batch = s,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("max_failures") {
            match self.size(n, "rollout.max_failures", 0, 100) {
                Some(s) => r.max_failures = s,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("on_failure") {
            match n.scalar() {
                Some("rollback") => r.on_failure = OnFailure::Rollback,
                Some("revert-failed") => r.on_failure = OnFailure::RevertFailed,
                Some("halt") => r.on_failure = OnFailure::Halt,
                _ => {
                    let s = n.scalar().unwrap_or("?").to_string();
                    let hint = match did_you_mean(&s, &["rollback", "revert-failed", "halt"]) {
                        Some(x) => format!("did you mean `{x}`?"),
                        None => "one of: rollback, revert-failed, halt".to_string(),
                    };
                    self.error_hint(
                        n,
                        format!("`rollout.on_failure` must be rollback, revert-failed or halt, not \"{s}\""),
                        hint,
                    );
                    ok = false;
                }
            }
        }
        if let Some(n) = m.get("stage") {
            match self.map(n, "rollout.stage", &["concurrency", "bandwidth"]) {
                Some(s) => {
                    if let Some(c) = s.get("concurrency") {
                        match self.int(c, "rollout.stage.concurrency", 1, 10_000) {
                            Some(v) => r.stage_concurrency = v as usize,
                            None => ok = false,
                        }
                    }
                    if let Some(b) = s.get("bandwidth") {
                        let text = b.to_json().to_string().trim_matches('"').to_string();
                        match units::parse_rate(&text) {
                            Ok(v) if v > 0 && v < 1024 => {
                                self.error_hint(
                                    b,
                                    format!(
                                        "`rollout.stage.bandwidth` must be 0 (no cap) or at least 1KiB/s, not {text}"
                                    ),
                                    "at under 1KiB/s an artifact would take days to reach each host",
                                );
                                ok = false;
                            }
                            Ok(v) => r.stage_bandwidth = v,
                            Err(e) => {
                                self.error(b, format!("`rollout.stage.bandwidth`: {e}"));
                                ok = false;
                            }
                        }
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(r)
    }

    fn registry(&mut self, node: &Node) -> Option<Registry> {
        let Some(kind_node) = node.get("kind") else {
            if node.as_map().is_some() {
                self.error_hint(
                    node,
                    "missing required key `kind` in `registry`",
                    "kind is one of: none, command, http, haproxy, consul, nacos, eureka, dubbo, etcd",
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
                Some(Registry::None)
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
                Some(Registry::Command {
                    deregister: dereg?,
                    register: reg?,
                    delegate,
                    drain: drain?,
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
                Some(Registry::Http {
                    deregister: dereg?,
                    register: reg?,
                    drain: drain?,
                    preset: "http",
                })
            }
            "consul" => self.preset(node, "consul"),
            "nacos" => self.preset(node, "nacos"),
            "eureka" => self.preset(node, "eureka"),
            "dubbo" => self.preset(node, "dubbo"),
            "etcd" => self.preset(node, "etcd"),
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
                Some(Registry::Haproxy {
                    address: address?,
                    backend: backend?,
                    server: server?,
                    drain: drain?,
                })
            }
            other => {
                let kinds = [
                    "none", "command", "http", "haproxy", "consul", "nacos", "eureka", "dubbo", "etcd",
                ];
                let hint = match did_you_mean(other, &kinds) {
                    Some(x) => format!("did you mean `{x}`?"),
                    None => "kind is one of: none, command, http, haproxy, consul, nacos, eureka, dubbo, etcd".into(),
                };
                self.error_hint(kind_node, format!("unknown registry kind \"{other}\""), hint);
                None
            }
        }
    }

    /// The registry presets: HTTP calls built from a few settings (documented in the README,
    /// with the API call each one makes).
    fn preset(&mut self, node: &Node, kind: &'static str) -> Option<Registry> {
        const COMMON: [&str; 5] = ["kind", "address", "token", "drain", "retry"];
        let extra: &[&str] = match kind {
            "consul" => &["service_id"],
            "nacos" => &["service_name", "ip", "port", "namespace", "group", "cluster"],
            "eureka" => &["app", "instance_id"],
            "dubbo" => &["service"],
            _ => &["key", "value"],
        };
        let allowed: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
        let m = self.map(node, "registry", &allowed)?;
        // A setting's template source, or its default; URL parts are URL-encoded when rendered.
        let get = |d: &mut Self, key: &str, default: Option<&str>| -> Option<String> {
            match m.get(key) {
                Some(n) => d.string(n, &format!("registry.{key}")),
                None => match default {
                    Some(v) => Some(v.to_string()),
                    None => {
                        d.required(&m, key, "registry");
                        None
                    }
                },
            }
        };
        let enc = |src: &str| format!("{{% filter urlencode %}}{src}{{% endfilter %}}");
        let default_address = match kind {
            "consul" => Some("http://{{ host.address }}:8500"),
            "dubbo" => Some("http://{{ host.address }}:22222"),
            "nacos" | "eureka" | "etcd" => None,
            _ => None,
        };
        let address = get(self, "address", default_address)?;
        let address = address.trim_end_matches('/').to_string();
        let token = m.get("token").and_then(|n| self.string(n, "registry.token"));
        let drain = match m.get("drain") {
            Some(n) => self.duration(n, "registry.drain", check::WAIT_MAX)?,
            None => Duration::ZERO,
        };
        // (method, url, body) for deregister and register, as template sources.
        let (out, back): (CallSource, CallSource) = match kind {
            "consul" => {
                let id = enc(&get(self, "service_id", Some("{{ service }}"))?);
                let url = format!("{address}/v1/agent/service/maintenance/{id}");
                (
                    (
                        "PUT",
                        format!("{url}?enable=true&reason=tranche%20release%20{{{{ version | urlencode }}}}"),
                        None,
                    ),
                    ("PUT", format!("{url}?enable=false"), None),
                )
            }
            "nacos" => {
                let mut q = format!(
                    "serviceName={}&ip={}&port={}",
                    enc(&get(self, "service_name", Some("{{ service }}"))?),
                    enc(&get(self, "ip", Some("{{ host.address }}"))?),
                    enc(&get(self, "port", None)?)
                );
                for (key, param) in [
                    ("namespace", "namespaceId"),
                    ("group", "groupName"),
                    ("cluster", "clusterName"),
                ] {
                    if m.get(key).is_some() {
                        q.push_str(&format!("&{param}={}", enc(&get(self, key, None)?)));
                    }
                }
                let url = format!("{address}/nacos/v1/ns/instance?{q}");
                (
                    ("PUT", format!("{url}&enabled=false"), None),
                    ("PUT", format!("{url}&enabled=true"), None),
                )
            }
            "eureka" => {
                let app = enc(&get(self, "app", Some("{{ service | upper }}"))?);
                let id = enc(&get(self, "instance_id", None)?);
                let url = format!("{address}/apps/{app}/{id}/status");
                (
                    ("PUT", format!("{url}?value=OUT_OF_SERVICE"), None),
                    ("DELETE", format!("{url}?value=UP"), None),
                )
            }
            "dubbo" => {
                let svc = match m.get("service") {
                    Some(_) => format!("?service={}", enc(&get(self, "service", None)?)),
                    None => String::new(),
                };
                (
                    ("GET", format!("{address}/offline{svc}"), None),
                    ("GET", format!("{address}/online{svc}"), None),
                )
            }
            _ => {
                let key = get(self, "key", None)?;
                let value = get(self, "value", None)?;
                let k = format!("{{% filter b64encode %}}{key}{{% endfilter %}}");
                let v = format!("{{% filter b64encode %}}{value}{{% endfilter %}}");
                (
                    (
                        "POST",
                        format!("{address}/v3/kv/deleterange"),
                        Some(format!("{{\"key\": \"{k}\"}}")),
                    ),
                    (
                        "POST",
                        format!("{address}/v3/kv/put"),
                        Some(format!("{{\"key\": \"{k}\", \"value\": \"{v}\"}}")),
                    ),
                )
            }
        };
        let header = match (kind, &token) {
            (_, None) => None,
            ("consul", Some(t)) => Some(("X-Consul-Token".to_string(), t.clone())),
            (_, Some(t)) => Some(("Authorization".to_string(), format!("Bearer {t}"))),
        };
        let pos = node.pos;
        let call = |d: &mut Self, (method, url, body): CallSource| -> Option<HttpCall> {
            let compile = |d: &mut Self, src: &str| match d.templates.add(d.file, pos, src, false) {
                Ok(t) => Some(t),
                Err(e) => {
                    d.diags.push(e);
                    None
                }
            };
            let url = compile(d, &url)?;
            let body = match body {
                Some(b) => Some(compile(d, &b)?),
                None => None,
            };
            let headers = match &header {
                Some((name, value)) => vec![(name.clone(), compile(d, value)?)],
                None => vec![],
            };
            Some(HttpCall {
                method: method.to_string(),
                url,
                headers,
                body,
                expect_status: vec![],
            })
        };
        let deregister = call(self, out)?;
        let register = call(self, back)?;
        Some(Registry::Http {
            deregister,
            register,
            drain,
            preset: kind,
        })
    }

    fn url(&mut self, node: &Node, what: &str) -> Option<String> {
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

    fn gate(&mut self, node: &Node) -> Option<Gate> {
        let m = self.map(
            node,
            "rollout.gate",
            &["prometheus", "token", "basic_auth", "query", "max", "for"],
        )?;
        let auth = self.auth(&m, "rollout.gate");
        let prometheus = self
            .required(&m, "prometheus", "rollout.gate")
            .and_then(|n| self.url(n, "rollout.gate.prometheus"));
        self.credentials_once(&m, "prometheus", &prometheus, &auth, "rollout.gate");
        let query = self
            .required(&m, "query", "rollout.gate")
            .and_then(|n| self.template(n, "rollout.gate.query", false));
        let max = self
            .required(&m, "max", "rollout.gate")
            .and_then(|n| match n.to_json().as_f64() {
                Some(v) if v.is_finite() => Some(v),
                _ => {
                    self.error(n, format!("`rollout.gate.max` must be a number, not {}", describe(n)));
                    None
                }
            });
        let hold = match m.get("for") {
            Some(n) => self.duration(n, "rollout.gate.for", check::WAIT_MAX),
            None => Some(Duration::ZERO),
        };
        Some(Gate {
            prometheus: prometheus?,
            auth: auth?,
            query: query?,
            max: max?,
            hold: hold?,
        })
    }

    /// `token` or `basic_auth: {username, password}` of a monitoring endpoint, rendered now
    /// from the controller's environment (`"{{ env.AM_TOKEN }}"`).
    fn auth(&mut self, m: &Map, what: &str) -> Option<HttpAuth> {
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
    fn credentials_once(&mut self, m: &Map, url_key: &str, url: &Option<String>, auth: &Option<HttpAuth>, what: &str) {
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

    /// A credential setting: a string, rendered with the controller's environment as `env`.
    fn credential(&mut self, node: &Node, what: &str) -> Option<String> {
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

    fn silence(&mut self, node: &Node) -> Option<Silence> {
        let m = self.map(
            node,
            "silence",
            &["alertmanager", "token", "basic_auth", "matchers", "duration"],
        )?;
        let auth = self.auth(&m, "silence");
        let alertmanager = self
            .required(&m, "alertmanager", "silence")
            .and_then(|n| self.url(n, "silence.alertmanager"));
        self.credentials_once(&m, "alertmanager", &alertmanager, &auth, "silence");
        let mut matchers = Vec::new();
        if let Some(n) = self.required(&m, "matchers", "silence") {
            match n.as_map() {
                Some(entries) if !entries.is_empty() => {
                    for (k, v) in entries {
                        let name = k.scalar().unwrap_or_default().to_string();
                        let raw = v.scalar().unwrap_or_default();
                        let (regex, src) = match raw.strip_prefix("=~") {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, raw.to_string()),
                        };
                        if src.is_empty() {
                            self.error(v, format!("`silence.matchers.{name}` must not be empty"));
                            continue;
                        }
                        match self.templates.add(self.file, v.pos, &src, false) {
                            Ok(t) => matchers.push((name, t, regex)),
                            Err(d) => self.diags.push(d),
                        }
                    }
                }
                _ => self.error_hint(
                    n,
                    "`silence.matchers` must be a mapping of label names to values",
                    "e.g. `matchers: {instance: \"{{ host.name }}\"}`; `=~` starts a regex",
                ),
            }
        }
        let duration = match m.get("duration") {
            Some(n) => self.duration(n, "silence.duration", check::SILENCE_MAX)?,
            None => Duration::from_secs(1800),
        };
        Some(Silence {
            alertmanager: alertmanager?,
            auth: auth?,
            matchers,
            duration,
        })
    }

    fn http_call(&mut self, node: &Node, what: &str) -> Option<HttpCall> {
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

    fn stop(&mut self, node: &Node) -> Option<Stop> {
        let m = self.map(node, "stop", &["command", "timeout", "kill_command"])?;
        let command = m.get("command").and_then(|n| self.template(n, "stop.command", true));
        let timeout = m
            .get("timeout")
            .map(|n| self.duration(n, "stop.timeout", check::WAIT_MAX))
            .unwrap_or(Some(Duration::from_secs(30)));
        let kill_command = m
            .get("kill_command")
            .and_then(|n| self.template(n, "stop.kill_command", true));
        if m.get("command").is_some() && command.is_none() {
            return None;
        }
        Some(Stop {
            command,
            timeout: timeout?,
            kill_command,
        })
    }

    fn health(&mut self, node: &Node) -> Option<Health> {
        let m = self.map(
            node,
            "health",
            &[
                "http",
                "tcp",
                "command",
                "expect_status",
                "expect_body",
                "interval",
                "timeout",
            ],
        )?;
        let given: Vec<&str> = ["http", "tcp", "command"]
            .into_iter()
            .filter(|k| m.get(k).is_some())
            .collect();
        let check = match given.as_slice() {
            ["http"] => self
                .template(m.get("http")?, "health.http", false)
                .map(HealthCheck::Http),
            ["tcp"] => self.template(m.get("tcp")?, "health.tcp", false).map(HealthCheck::Tcp),
            ["command"] => self
                .template(m.get("command")?, "health.command", true)
                .map(HealthCheck::Command),
            [] => {
                self.error_hint(
                    node,
                    "`health` needs one of `http`, `tcp` or `command`",
                    "e.g. `http: \"http://{{ host.address }}:8080/health\"`",
                );
                None
            }
            _ => {
                let second = m.get(given[1])?;
                self.error(
                    second,
                    format!("`health` takes one check, not both `{}` and `{}`", given[0], given[1]),
                );
                None
            }
        };
        let expect_status = match m.get("expect_status") {
            Some(n) => self.int(n, "health.expect_status", 100, 599).map(|v| v as u16),
            None => Some(200),
        };
        let expect_body = m
            .get("expect_body")
            .and_then(|n| self.template(n, "health.expect_body", false));
        let interval = m
            .get("interval")
            .map(|n| self.duration(n, "health.interval", check::WAIT_MAX))
            .unwrap_or(Some(Duration::from_secs(1)));
        let timeout = m
            .get("timeout")
            .map(|n| self.duration(n, "health.timeout", check::WAIT_MAX))
            .unwrap_or(Some(Duration::from_secs(60)));
        if let (Some(i), Some(n)) = (interval, m.get("interval")) {
            if i.is_zero() {
                self.error(n, "`health.interval` must be more than 0");
                return None;
            }
        }
        Some(Health {
            check: check?,
            expect_status: expect_status?,
            expect_body,
            interval: interval?,
            timeout: timeout?,
        })
    }

    fn hooks(&mut self, node: &Node) -> Option<Hooks> {
        let m = self.map(node, "hooks", &["precheck", "after_start"])?;
        let non_empty = |n: &&Node| n.scalar().is_none_or(|s| !s.trim().is_empty());
        Some(Hooks {
            precheck: m
                .get("precheck")
                .filter(non_empty)
                .and_then(|n| self.template(n, "hooks.precheck", true)),
            after_start: m
                .get("after_start")
                .filter(non_empty)
                .and_then(|n| self.template(n, "hooks.after_start", true)),
        })
    }
}

fn default_rollout() -> Rollout {
    Rollout {
        canary: 1,
        canary_pause: Pause::For(Duration::ZERO),
        batch: vec![BatchSize::Percent(25)],
        pause: Pause::For(Duration::ZERO),
        max_failures: BatchSize::Count(0),
        on_failure: OnFailure::Rollback,
        stage_concurrency: 10,
        stage_bandwidth: 0,
        spread_zones: false,
        max_per_zone: None,
        gate: None,
        window: false,
    }
}

fn describe(node: &Node) -> String {
    match node.to_json() {
        serde_json::Value::String(s) => format!("\"{s}\""),
        serde_json::Value::Null => "null".into(),
        v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => v.to_string(),
        _ => node.type_name().to_string(),
    }
}
