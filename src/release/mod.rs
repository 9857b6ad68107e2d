//! A release as planned: the inventory, the playbook, the targeted hosts and their batches,
//! resolved and checked together so that every problem in either file is reported at once.

mod groups;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{Diagnostic, Diagnostics};
use crate::inventory::{self, Host, Inventory};
use crate::planner::{self, Batch};
use crate::playbook::{check, ArtifactSource, HealthCheck, Playbook, Template};

/// What the operator asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct ReleaseRequest {
    pub inventories: Vec<PathBuf>,
    pub playbook: PathBuf,
    pub limit: Option<String>,
    pub extra_vars: Vec<(String, String)>,
}

/// A release ready to run or show.
#[derive(Debug, Clone)]
pub struct Release {
    pub inventory: Inventory,
    pub playbook: Playbook,
    /// The targeted hosts, in inventory order.
    pub targets: Vec<Host>,
    pub batches: Vec<Batch>,
    /// How many hosts may fail before `on_failure` applies.
    pub budget: usize,
    /// The artifact's sha256, computed on the controller for a pushed file.
    pub sha256: String,
    /// The pushed file's size; `None` for a pulled artifact.
    pub artifact_size: Option<u64>,
    /// `rollout.window`: the hosts after the canary form one batch in which at most this many
    /// are out at once.
    pub window: Option<usize>,
    /// `--shard K/N`: this run's part of the targeted hosts (see `crate::shard`).
    pub shard: Option<crate::shard::ShardOf>,
}

impl Release {
    pub fn load(req: &ReleaseRequest) -> Result<Release, Diagnostics> {
        let playbook_dir = req
            .playbook
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let inventory = Inventory::load_with(&req.inventories, Some(playbook_dir));
        let playbook = Playbook::load(&req.playbook, &req.extra_vars);
        let (inventory, playbook) = match (inventory, playbook) {
            (Ok(i), Ok(p)) => (i, p),
            (i, p) => {
                let mut d = Diagnostics::default();
                if let Err(e) = i {
                    d.extend(e);
                }
                if let Err(e) = p {
                    d.extend(e);
                }
                return Err(d);
            }
        };
        let mut diags = Diagnostics::default();
        let file = playbook.file.clone();
        let mut selected = match inventory::select(&inventory, &playbook.hosts) {
            Ok(s) => s,
            Err(e) => {
                diags.push(pattern_error(&file, playbook.hosts_pos, e.to_string(), &inventory));
                Vec::new()
            }
        };
        if let Some(limit) = &req.limit {
            match inventory::select_limit(&inventory, limit) {
                Ok(l) => selected.retain(|i| l.contains(i)),
                Err(e) => diags.push(pattern_error(Path::new("--limit"), None, e.to_string(), &inventory)),
            }
        }
        let targets: Vec<Host> = selected.iter().map(|&i| inventory.hosts[i].clone()).collect();
        if diags.is_empty() && targets.is_empty() {
            let what = match &req.limit {
                Some(l) => format!("`hosts: {}` with `--limit {l}` selects no host", playbook.hosts),
                None => format!("`hosts: {}` selects no host", playbook.hosts),
            };
            diags.push(
                Diagnostic::new(&file, playbook.hosts_pos, what)
                    .hint("check the pattern against `tranche plan` on the whole inventory"),
            );
        }
        let n = targets.len();
        let r = &playbook.rollout;
        if n > 0 && r.canary > n {
            diags.push(
                Diagnostic::new(
                    &file,
                    playbook.pos("rollout.canary"),
                    format!(
                        "`rollout.canary` is {} but only {n} host{} are targeted",
                        r.canary,
                        if n == 1 { "" } else { "s" }
                    ),
                )
                .hint("lower `rollout.canary`, or widen `hosts`/`--limit`"),
            );
        }
        if let Some(crate::playbook::Shape::Groups { blue, green }) = playbook.strategy.blue_green().map(|b| &b.shape) {
            groups::check_groups(&playbook, &inventory, &targets, [blue, green], &mut diags);
        }
        // Render every template once per targeted host, so an unknown variable is an error now.
        if diags.is_empty() {
            check_templates(&playbook, &targets, &inventory, &mut diags);
        }
        // What reaches a host's shell or HAProxy's runtime API, rendered for each host.
        if diags.is_empty() {
            check_host_values(&playbook, &targets, &mut diags);
        }
        let (sha256, artifact_size) = match &playbook.artifact.source {
            ArtifactSource::Path(p) => match file_sha256(p) {
                Ok((sum, size)) => {
                    if let Some(want) = &playbook.artifact.sha256 {
                        if *want != sum {
                            diags.push(
                                Diagnostic::new(
                                    &file,
                                    playbook.pos("artifact.sha256").or(Some(playbook.artifact.pos)),
                                    format!(
                                        "artifact `{}` has sha256 {sum}, but the playbook says {want}",
                                        p.display()
                                    ),
                                )
                                .hint("rebuild the artifact or correct `artifact.sha256`"),
                            );
                        }
                    }
                    (sum, Some(size))
                }
                Err(e) => {
                    diags.push(Diagnostic::new(
                        &file,
                        Some(playbook.artifact.pos),
                        format!("cannot read artifact `{}`: {e}", p.display()),
                    ));
                    (String::new(), None)
                }
            },
            ArtifactSource::Url(_) => (playbook.artifact.sha256.clone().unwrap_or_default(), None),
            // The image's digest plays the part of the sha256 (recorded in the release folder).
            ArtifactSource::Image(img) => (img.digest_hex().to_string(), None),
        };
        if let Ok(text) = crate::yaml::read_file(&file) {
            diags.attach_sources(&file, &text);
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let mut targets = targets;
        if r.spread_zones {
            let zones: Vec<Option<String>> = targets.iter().map(|h| h.zone.clone()).collect();
            targets = planner::spread_by_zone(&zones)
                .into_iter()
                .map(|i| targets[i].clone())
                .collect();
        }
        let (batches, window) = planner::plan_with_window(n, r.canary, &r.batch, r.window);
        let budget = planner::resolve_budget(r.max_failures, n);
        Ok(Release {
            window,
            shard: None,
            inventory,
            playbook,
            targets,
            batches,
            budget,
            sha256,
            artifact_size,
        })
    }

    /// Keep only the targets `keep` accepts and plan their batches again (for a resumed run;
    /// the failure budget stays that of the whole fleet). No canary when `canary` is false.
    pub fn narrow(&mut self, keep: impl Fn(&Host) -> bool, canary: bool) {
        self.targets.retain(|h| keep(h));
        let r = &self.playbook.rollout;
        let c = if canary { r.canary.min(self.targets.len()) } else { 0 };
        (self.batches, self.window) = planner::plan_with_window(self.targets.len(), c, &r.batch, r.window);
    }

    /// The release directory on a host.
    pub fn release_dir(&self, version: &str) -> String {
        format!("{}/releases/{version}", self.playbook.layout.root)
    }

    /// Where an upload or a download is written before it is checked: named after the checksum,
    /// so that a cut transfer of the same artifact can go on from where it stopped.
    pub fn part_path(&self) -> String {
        format!("{}/.tranche-stage/{}.part", self.playbook.layout.root, self.sha256)
    }

    /// The variables templates see for `host`.
    pub fn context(&self, host: &Host, run_id: &str, previous_version: Option<&str>) -> Value {
        template_context(&self.playbook, host, run_id, previous_version)
    }

    /// Render `t` for `host`.
    pub fn render(&self, t: &Template, host: &Host, run_id: &str, previous: Option<&str>) -> Result<String, String> {
        self.playbook.templates.render(t, &self.context(host, run_id, previous))
    }

    /// Render `t` for `host` with `{{ image }}` set to `image`: the image of the release a step
    /// acts on, which on a revert or a rollback is not the playbook's.
    pub fn render_with_image(
        &self,
        t: &Template,
        host: &Host,
        run_id: &str,
        previous: Option<&str>,
        image: &str,
    ) -> Result<String, String> {
        let mut ctx = self.context(host, run_id, previous);
        if let Value::Object(m) = &mut ctx {
            m.insert("image".into(), json!(image));
        }
        self.playbook.templates.render(t, &ctx)
    }
}

fn pattern_error(file: &Path, pos: Option<crate::error::Pos>, msg: String, inv: &Inventory) -> Diagnostic {
    let mut groups: Vec<&str> = inv
        .groups
        .values()
        .filter(|g| g.name != "ungrouped" || !g.hosts.is_empty())
        .map(|g| g.name.as_str())
        .collect();
    groups.sort_unstable();
    Diagnostic::new(file, pos, msg).hint(format!("groups in the inventory: {}", groups.join(", ")))
}

/// The variables of SPEC §4 for one host.
pub fn template_context(p: &Playbook, host: &Host, run_id: &str, previous_version: Option<&str>) -> Value {
    let mut h = serde_json::Map::new();
    for (k, v) in &host.vars {
        h.insert(k.clone(), v.clone());
    }
    h.insert("name".into(), json!(host.name));
    h.insert("address".into(), json!(host.address));
    h.insert("port".into(), json!(host.port.unwrap_or(22)));
    h.insert("user".into(), json!(host.user.clone().unwrap_or_else(|| "root".into())));
    h.insert("zone".into(), json!(host.zone.clone().unwrap_or_default()));
    h.insert("groups".into(), json!(host.groups));
    // The controller's environment, read once per process.
    static ENV: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| Value::Object(std::env::vars().map(|(k, v)| (k, Value::String(v))).collect()));
    let mut ctx = serde_json::Map::new();
    for (k, v) in &p.extra_vars {
        ctx.insert(k.clone(), json!(v));
    }
    ctx.insert("service".into(), json!(p.service));
    ctx.insert("version".into(), json!(p.version));
    ctx.insert("previous_version".into(), json!(previous_version.unwrap_or("")));
    ctx.insert("run_id".into(), json!(run_id));
    ctx.insert("host".into(), Value::Object(h));
    ctx.insert(
        "release_dir".into(),
        json!(format!("{}/releases/{}", p.layout.root, p.version)),
    );
    ctx.insert("layout".into(), json!({"root": p.layout.root, "keep": p.layout.keep}));
    ctx.insert("env".into(), ENV.clone());
    if let ArtifactSource::Image(img) = &p.artifact.source {
        ctx.insert("image".into(), json!(img.pinned()));
    }
    // Blue-green on slots: the slot being rendered for (its name and port).
    if let Some(port) = p.strategy.blue_green().and_then(|b| b.shape.port(p.side)) {
        ctx.insert("slot".into(), json!({"name": p.side.as_str(), "port": port}));
    }
    Value::Object(ctx)
}

/// Every template of the playbook.
pub fn all_templates(p: &Playbook) -> Vec<&Template> {
    let mut t: Vec<&Template> = Vec::new();
    match &p.artifact.source {
        ArtifactSource::Url(u) => t.push(u),
        ArtifactSource::Image(img) => t.extend(img.templates()),
        ArtifactSource::Path(_) => {}
    }
    t.extend(&p.registry.templates);
    t.extend(
        p.stop
            .command
            .iter()
            .chain(p.stop.kill_command.iter())
            .chain(p.start.iter()),
    );
    if let Some(h) = &p.health {
        t.push(match &h.check {
            HealthCheck::Http(x) | HealthCheck::Tcp(x) | HealthCheck::Command(x) => x,
        });
        t.extend(h.expect_body.iter());
    }
    t.extend(p.hooks.precheck.iter().chain(p.hooks.after_start.iter()));
    if let Some(g) = &p.rollout.gate {
        t.push(&g.query);
    }
    if let Some(sil) = &p.silence {
        t.extend(sil.matchers.iter().map(|(_, v, _)| v));
    }
    t
}

fn check_templates(p: &Playbook, targets: &[Host], inv: &Inventory, diags: &mut Diagnostics) {
    for t in all_templates(p) {
        if t.is_literal() {
            continue;
        }
        for host in targets {
            let ctx = template_context(p, host, "check", Some("0"));
            if let Err(e) = p.templates.render(t, &ctx) {
                let detail = e.rsplit(": ").next().unwrap_or(&e).to_string();
                // Only an undefined value is blamed on a name (a loop's own variable is not in
                // the context, so any other error would be misread as one).
                let undefined = find_undefined(&t.source, &ctx).filter(|_| detail.contains("undefined"));
                let (msg, hint) = match undefined {
                    Some((name, Some(near))) => (
                        format!("`{name}` is not defined for host `{}`", host.name),
                        format!("did you mean `{near}`?"),
                    ),
                    Some((name, None)) => (
                        format!("`{name}` is not defined for host `{}`", host.name),
                        VARIABLES_HINT.to_string(),
                    ),
                    None => (
                        format!("template cannot be rendered for host `{}`: {detail}", host.name),
                        VARIABLES_HINT.to_string(),
                    ),
                };
                diags.push(Diagnostic::new(&t.file, Some(t.pos), msg).hint(hint));
                break;
            }
        }
    }
    if let Some(d) = &p.registry.delegate {
        if inv.host(d).is_none() {
            diags.push(Diagnostic::new(
                &p.file,
                p.pos("registry.delegate"),
                format!("`registry.delegate` names `{d}`, which is not a host of the inventory"),
            ));
        }
    }
}

/// The rendered values that leave the controller as text another program parses: the artifact
/// URL (a host's curl or wget) and the HAProxy backend and server names (HAProxy's runtime API,
/// which splits commands on `;`). Each is checked for every targeted host; a problem names the
/// first host, the variables the template uses with their values (secrets as `***`), and the
/// template's position.
fn check_host_values(p: &Playbook, targets: &[Host], diags: &mut Diagnostics) {
    type Problem = fn(&str) -> Option<String>;
    type CharOk = fn(char) -> bool;
    let mut checks: Vec<(&str, &Template, Problem, CharOk, &str)> = Vec::new();
    if let ArtifactSource::Url(u) = &p.artifact.source {
        checks.push((
            "artifact.url",
            u,
            check::url_problem,
            check::url_char_ok,
            check::URL_CHARS_HINT,
        ));
    }
    for (what, name) in &p.registry.haproxy_names {
        let hint = "the names go into HAProxy's runtime API, where `;` starts another command";
        let (problem, ok): (Problem, CharOk) = (check::haproxy_name_problem, check::haproxy_char_ok);
        checks.push((what, name, problem, ok, hint));
    }
    let secrets = secret_values(p);
    for (what, t, problem_of, char_ok, hint) in checks {
        // The first host with a problem (with what it rendered), and the names of the others.
        let mut first: Option<(&Host, String, String, Value)> = None;
        let mut others: Vec<&str> = Vec::new();
        for host in targets {
            let ctx = template_context(p, host, "check", Some("0"));
            // A template that does not render was reported by `check_templates`.
            let Ok(value) = p.templates.render(t, &ctx) else {
                continue;
            };
            if let Some(problem) = problem_of(&value) {
                match first {
                    None => first = Some((host, value, problem, ctx)),
                    Some(_) => others.push(&host.name),
                }
            }
            if t.is_literal() {
                break;
            }
        }
        let Some((host, value, problem, ctx)) = &first else {
            continue;
        };
        let shown = redact(&value_for_message(what, value), &secrets)
            .escape_debug()
            .to_string();
        let mut msg = if t.is_literal() {
            format!("`{what}` \"{shown}\" {problem}")
        } else {
            format!(
                "`{what}` renders to \"{shown}\" for host `{}`, which {problem}",
                host.name
            )
        };
        // The variables that brought a character in that is not allowed.
        let mut vars = used_values(&t.source, ctx, p);
        vars.retain(|(_, v, _)| !v.chars().all(char_ok));
        if !vars.is_empty() {
            let list: Vec<String> = vars
                .iter()
                .map(|(name, _, shown)| format!("{name} is \"{}\"", redact(shown, &secrets).escape_debug()))
                .collect();
            msg.push_str(&format!(" ({})", list.join(", ")));
        }
        let mut hint = hint.to_string();
        if !others.is_empty() {
            let more = others.len().saturating_sub(3);
            hint = format!(
                "{hint}; also for {}{}",
                others[..others.len().min(3)].join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        diags.push(Diagnostic::new(&t.file, Some(t.pos), msg).hint(hint));
    }
}

/// A rendered value as an error message may show it: a URL without its userinfo and query
/// string (where credentials sit).
fn value_for_message(what: &str, value: &str) -> String {
    let mut v = value.to_string();
    if what == "artifact.url" {
        if let Some((scheme, rest)) = v.split_once("://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority
                .rsplit_once('@')
                .map_or(authority.to_string(), |(_, h)| format!("***@{h}"));
            let path = path
                .split_once('?')
                .map_or(path.to_string(), |(p, _)| format!("{p}?***"));
            v = format!("{scheme}://{host}{path}");
        }
    }
    v
}

/// The values of the controller's environment that templates may use (`env.*`): never shown.
fn secret_values(p: &Playbook) -> Vec<String> {
    let mut out = Vec::new();
    for t in all_templates(p) {
        for name in template_names(&t.source) {
            if let Some(var) = name.strip_prefix("env.") {
                if let Ok(v) = std::env::var(var) {
                    if v.len() >= 4 {
                        out.push(v);
                    }
                }
            }
        }
    }
    out
}

fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

/// The variables `source` uses that are strings or numbers in `ctx`: the name as the operator
/// writes it (`host.zone`, `-e KEY`), the value, and the value as shown (`***` for `env.*`).
fn used_values(source: &str, ctx: &Value, p: &Playbook) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for name in template_names(source) {
        let value = match name.split('.').try_fold(ctx, |cur, part| cur.get(part)) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        let shown = if name.starts_with("env.") {
            "***".to_string()
        } else {
            value.clone()
        };
        // `-e service=...` and the like do not override the context's own variables.
        let label = if p.extra_vars.iter().any(|(k, v)| *k == name && *v == value) {
            format!("`-e {name}`")
        } else {
            format!("`{name}`")
        };
        if !out.iter().any(|(l, ..)| *l == label) {
            out.push((label, value, shown));
        }
    }
    out
}

const VARIABLES_HINT: &str = "variables: service, version, previous_version, run_id, release_dir, layout.root, env.NAME, host.name, host.address, host.port, host.user, host.zone, host.VAR, and -e KEY=VALUE";

/// The dotted names used inside `{{ }}` or `{% %}` of `source`, keywords left out.
fn template_names(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{").or_else(|| rest.find("{%")) {
        let after = &rest[start + 2..];
        let end = after.find("}}").or_else(|| after.find("%}")).unwrap_or(after.len());
        let expr = &after[..end];
        let mut chars = expr.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if !(c.is_ascii_alphabetic() || c == '_')
                || (i > 0
                    && expr[..i].ends_with(|p: char| {
                        p.is_ascii_alphanumeric() || p == '_' || p == '.' || p == '|' || p == '\'' || p == '"'
                    }))
            {
                continue;
            }
            let word: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            for _ in 1..word.len() {
                chars.next();
            }
            let parts: Vec<&str> = word.split('.').filter(|s| !s.is_empty()).collect();
            if matches!(
                parts.first(),
                Some(
                    &("true"
                        | "false"
                        | "none"
                        | "if"
                        | "else"
                        | "endif"
                        | "for"
                        | "in"
                        | "endfor"
                        | "not"
                        | "and"
                        | "or"
                        | "is"
                        | "defined"
                        | "safe"
                        | "default"
                        | "loop")
                )
            ) || parts.is_empty()
            {
                continue;
            }
            names.push(parts.join("."));
        }
        rest = &after[end.min(after.len())..];
    }
    names
}

/// The first dotted name used inside `{{ }}` or `{% %}` that `ctx` does not define, with the
/// nearest defined name.
fn find_undefined(source: &str, ctx: &Value) -> Option<(String, Option<String>)> {
    for word in template_names(source) {
        let parts: Vec<&str> = word.split('.').collect();
        let mut cur = ctx;
        for (k, part) in parts.iter().enumerate() {
            match cur.get(part) {
                Some(v) => cur = v,
                None => {
                    let known: Vec<&str> = cur
                        .as_object()
                        .map(|o| o.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let near = crate::error::did_you_mean(part, &known).map(|n| {
                        let mut p: Vec<&str> = parts[..k].to_vec();
                        p.push(n);
                        p.join(".")
                    });
                    return Some((parts[..=k].join("."), near));
                }
            }
        }
    }
    None
}

/// The sha256 (lowercase hex) and size of a file.
pub fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}
