//! Turning the playbook's YAML into a [`Playbook`], collecting every problem with its position:
//! the top level and the sections without a file of their own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::decoder::Decoder;
use super::template::TemplateBuilder;
use super::*;
use crate::error::{Diagnostic, Diagnostics};
use crate::yaml::{self, Node};

const TOP_KEYS: &[&str] = &[
    "service", "version", "hosts", "artifact", "layout", "rollout", "registry", "stop", "start", "health", "hooks",
    "become", "silence", "notify", "annotate", "metrics",
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

impl Decoder<'_> {
    fn playbook(&mut self, root: &Node, extra_vars: &[(String, String)]) -> Option<Playbook> {
        let keys: Vec<&str> = TOP_KEYS.iter().chain(super::strategy::KEYS).copied().collect();
        let top = self.map(root, "", &keys)?;
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
            None => Some(Layout::default_for(service.as_deref().unwrap_or("service"))),
        };
        let rollout = match top.get("rollout") {
            Some(n) => self.rollout(n),
            None => Some(Rollout::default()),
        };
        let registry = match top.get("registry") {
            Some(n) => self.registry(n),
            None => Some(Registry::none()),
        };
        let registry_retry = match top.get("registry").and_then(|n| n.get("retry")) {
            Some(n) => self.duration(n, "registry.retry", check::WAIT_MAX),
            None => Some(DEFAULT_REGISTRY_RETRY),
        };
        let stop = match top.get("stop") {
            Some(n) => self.stop(n),
            None => Some(Stop::default()),
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
        let metrics = top.get("metrics").and_then(|n| self.metrics(n));
        if top.get("silence").is_some() && silence.is_none() {
            return None;
        }
        let notify = top.get("notify").map(|n| self.notify(n));
        let annotate = top.get("annotate").map(|n| self.annotate(n));
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
        let strategy = self.strategy(top.get("strategy"), top.get("blue_green"));
        if let (Some(s), Some(r)) = (&strategy, &rollout) {
            self.blue_green_needs(s, r.gate.is_some());
        }
        if let (Some(Strategy::BlueGreen(bg)), Some(reg)) = (&strategy, &registry) {
            let at = top.get("blue_green").and_then(|b| b.get("canary_weight"));
            if let (Some(at), Some((msg, hint))) = (at, check::canary_weight_problem(bg.canary_weight, reg.kind())) {
                self.error_hint(at, msg, hint);
            }
        }
        // Two slots of a container image on one host: the default stop stops every container of
        // the service there, the live slot's too.
        if let (
            Some(Strategy::BlueGreen(bg)),
            Some(Artifact {
                source: ArtifactSource::Image(_),
                ..
            }),
        ) = (&strategy, &artifact)
        {
            if let (Shape::Slots { .. }, Some(at)) = (&bg.shape, top.get("blue_green").and_then(|b| b.get("slots"))) {
                self.error_hint(
                    at,
                    "blue-green `slots` with a container image are not supported: stopping the idle slot's container would stop the live slot's too",
                    "use two host groups (`blue_green: {blue: GROUP, green: GROUP}`), or a tarball artifact",
                );
            }
        }
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
            notify: notify.unwrap_or(Some(vec![]))?,
            annotate: match annotate {
                Some(a) => Some(a?),
                None => None,
            },
            metrics,
            strategy: strategy?,
            side: Side::Blue,
        })
    }

    fn artifact(&mut self, node: &Node) -> Option<Artifact> {
        let keys: Vec<&str> = ["path", "url", "sha256"]
            .into_iter()
            .chain(super::artifact_store::KEYS)
            .chain(super::image::IMAGE_KEYS.iter().copied())
            .collect();
        let m = self.map(node, "artifact", &keys)?;
        if m.get("image").is_some() {
            if let Some(other) = ["path", "url", "sha256"]
                .into_iter()
                .chain(super::artifact_store::KEYS)
                .find_map(|k| m.get(k))
            {
                self.error_hint(
                    other,
                    "`artifact` takes `image` or a file (`path`/`url`), not both",
                    "an image is pinned by its digest (`image: NAME@sha256:...` or `digest:`)",
                );
                return None;
            }
            let image = self.image_artifact(&m, node)?;
            return Some(Artifact {
                source: ArtifactSource::Image(Box::new(image)),
                sha256: None,
                pos: node.pos,
                store: Default::default(),
            });
        }
        if let Some(n) = super::image::IMAGE_KEYS.iter().find_map(|k| m.get(k)) {
            self.error_hint(
                n,
                "this key of `artifact` belongs to a container image, and `artifact.image` is not given",
                "a tarball takes `path` or `url`, and `sha256`",
            );
            return None;
        }
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
        let store = self.artifact_store(&m, source.as_ref());
        Some(Artifact {
            source: source?,
            sha256: if bad_sha { return None } else { sha256 },
            pos: node.pos,
            store: store?,
        })
    }

    fn layout(&mut self, node: &Node, service: &str) -> Option<Layout> {
        let m = self.map(node, "layout", &["root", "keep"])?;
        let default = Layout::default_for(service);
        let root = match m.get("root") {
            Some(n) => {
                let r = self.string(n, "layout.root")?;
                if let Some(problem) = check::layout_root_problem(&r) {
                    self.error(n, format!("`layout.root` \"{}\" {problem}", r.escape_debug()));
                    return None;
                }
                r.trim_end_matches('/').to_string()
            }
            None => default.root,
        };
        let keep = match m.get("keep") {
            Some(n) => self.int(n, "layout.keep", 1, 1000)? as u32,
            None => default.keep,
        };
        Some(Layout { root, keep })
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

    fn stop(&mut self, node: &Node) -> Option<Stop> {
        let m = self.map(node, "stop", &["command", "timeout", "kill_command"])?;
        let command = m.get("command").and_then(|n| self.template(n, "stop.command", true));
        let timeout = m
            .get("timeout")
            .map(|n| self.duration(n, "stop.timeout", check::WAIT_MAX))
            .unwrap_or(Some(Stop::default().timeout));
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
