//! The Ansible-compatible inventory: groups, hosts and variables, loaded from YAML or INI files,
//! directories of sources, executable inventory scripts and `ansible-inventory --list` JSON, with
//! `group_vars/` and `host_vars/` beside each source, and the hosts' variables resolved as
//! ansible-core resolves them (see `resolve`).

mod ini;
pub mod output;
mod pattern;
mod pyliteral;
mod range;
mod sources;
mod yaml;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Diagnostic, Diagnostics, Pos};

pub use pattern::{select, select_limit};
pub(crate) use range::expand_range;
pub use range::HOSTS_MAX;

/// Variables of a group or host, in the order they were written.
pub type Vars = IndexMap<String, Value>;

/// A group as written: its own vars, its direct hosts and its child groups, in the order Ansible
/// adds them (after reconciliation: every top group is a child of `all`, lone hosts are in
/// `ungrouped`).
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub vars: Vars,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub parents: Vec<String>,
    /// `ansible_group_priority` (default 1): among groups of the same depth, the higher wins.
    pub priority: i64,
}

/// A host as written (vars from every place it appears, merged in file order).
#[derive(Debug, Clone, Default)]
struct HostEntry {
    vars: Vars,
}

/// A host with its effective variables and connection settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub name: String,
    /// Where to connect: `ansible_ssh_host`/`ansible_host`, else the name.
    pub address: String,
    /// `ansible_ssh_port`/`ansible_port`; `None` leaves it to the SSH config (then 22).
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub jump: Option<String>,
    pub zone: Option<String>,
    /// Every effective variable, including the connection ones.
    pub vars: Vars,
    /// The groups the host belongs to, directly or through children, `all` excluded.
    pub groups: Vec<String>,
}

/// A loaded inventory: hosts in the order Ansible created them and every group.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    pub groups: IndexMap<String, Group>,
    pub files: Vec<PathBuf>,
    index: HashMap<String, usize>,
}

/// Adding hosts would take the inventory over [`HOSTS_MAX`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the inventory would hold more than {HOSTS_MAX} hosts ({so_far} so far, {new} more here)")]
pub struct TooManyHosts {
    pub so_far: usize,
    pub new: usize,
}

/// What a loader produces before resolution.
#[derive(Debug, Default)]
pub(crate) struct RawInventory {
    groups: IndexMap<String, Group>,
    hosts: IndexMap<String, HostEntry>,
    /// (group, host) pairs already in a group's `hosts`: a linear search per host made a
    /// 100,000-host range take minutes.
    members: HashSet<(String, String)>,
}

impl RawInventory {
    fn new() -> Self {
        let mut raw = RawInventory::default();
        raw.group("all");
        raw.group("ungrouped");
        raw.add_child("all", "ungrouped");
        raw
    }

    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_insert_with(|| Group {
            name: name.to_string(),
            priority: 1,
            ..Group::default()
        })
    }

    /// Set a group variable; `ansible_group_priority` sets the priority instead, as in Ansible.
    fn set_group_var(&mut self, group: &str, key: &str, value: Value) {
        let g = self.group(group);
        if key == "ansible_group_priority" {
            if let Some(p) = value
                .as_i64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            {
                g.priority = p;
            }
        } else {
            g.vars.insert(key.to_string(), value);
        }
    }

    /// Add `names` (one host line or key, ranges expanded) to `group`, unless the inventory
    /// would then hold more than [`HOSTS_MAX`] hosts. A port from `host:port` becomes
    /// `ansible_port`, before the line's own variables.
    fn add_hosts(&mut self, group: &str, names: Vec<String>, vars: &Vars) -> Result<(), TooManyHosts> {
        self.add_hosts_port(group, names, None, vars)
    }

    fn add_hosts_port(
        &mut self,
        group: &str,
        names: Vec<String>,
        port: Option<u16>,
        vars: &Vars,
    ) -> Result<(), TooManyHosts> {
        let new = names.iter().filter(|n| !self.hosts.contains_key(*n)).count();
        if self.hosts.len() + new > HOSTS_MAX {
            return Err(TooManyHosts {
                so_far: self.hosts.len(),
                new,
            });
        }
        self.group(group);
        for host in names {
            if self.members.insert((group.to_string(), host.clone())) {
                self.group(group).hosts.push(host.clone());
            }
            let entry = self.hosts.entry(host).or_default();
            if let Some(p) = port {
                entry.vars.insert("ansible_port".into(), Value::from(p));
            }
            entry.vars.extend(vars.clone());
        }
        Ok(())
    }

    fn add_child(&mut self, parent: &str, child: &str) {
        self.group(child);
        let g = self.group(parent);
        if !g.children.iter().any(|c| c == child) {
            g.children.push(child.to_string());
        }
        let c = self.group(child);
        if !c.parents.iter().any(|p| p == parent) {
            c.parents.push(parent.to_string());
        }
    }

    /// Ansible's `reconcile_inventory`: groups without a parent go under `all`; a host in no
    /// group but `all` goes to `ungrouped`, and one in another group leaves `ungrouped`.
    fn reconcile(&mut self) {
        let tops: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.name != "all" && g.parents.is_empty())
            .map(|g| g.name.clone())
            .collect();
        for g in tops {
            self.add_child("all", &g);
        }
        let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
        for g in self.groups.values() {
            for h in &g.hosts {
                direct.entry(h.as_str()).or_default().push(g.name.as_str());
            }
        }
        let mut leave = Vec::new();
        let mut join = Vec::new();
        for name in self.hosts.keys() {
            let groups = direct.get(name.as_str()).cloned().unwrap_or_default();
            if groups.contains(&"ungrouped") {
                if groups.iter().any(|g| *g != "all" && *g != "ungrouped") {
                    leave.push(name.clone());
                }
            } else if groups.iter().all(|g| *g == "all") {
                join.push(name.clone());
            }
        }
        let gone: HashSet<&String> = leave.iter().collect();
        let ungrouped = self.group("ungrouped");
        ungrouped.hosts.retain(|h| !gone.contains(h));
        for h in &leave {
            self.members.remove(&("ungrouped".to_string(), h.clone()));
        }
        for h in join {
            if self.members.insert(("ungrouped".to_string(), h.clone())) {
                self.group("ungrouped").hosts.push(h);
            }
        }
    }
}

impl Inventory {
    /// Load and merge the inventory sources, in order.
    pub fn load(paths: &[PathBuf]) -> Result<Inventory, Diagnostics> {
        Inventory::load_with(paths, None)
    }

    /// Load the sources, and read `group_vars/`/`host_vars/` beside each source and then beside
    /// the playbook (`playbook_dir`), as `ansible-playbook` does.
    pub fn load_with(paths: &[PathBuf], playbook_dir: Option<&Path>) -> Result<Inventory, Diagnostics> {
        let mut raw = RawInventory::new();
        let mut diags = Diagnostics::default();
        let mut files = Vec::new();
        for path in paths {
            sources::load_source(path, &mut raw, &mut diags, &mut files);
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        raw.reconcile();
        let mut basedirs: Vec<PathBuf> = paths
            .iter()
            .map(|p| {
                if p.is_dir() {
                    p.clone()
                } else {
                    p.parent().map(Path::to_path_buf).unwrap_or_default()
                }
            })
            .collect();
        if let Some(d) = playbook_dir {
            basedirs.push(d.to_path_buf());
        }
        let inv = resolve(raw, &basedirs, files)?;
        if let Some(path) = paths.first() {
            if inv.hosts.is_empty() {
                return Err(Diagnostic::new(path, None, "the inventory has no hosts").into());
            }
        }
        Ok(inv)
    }

    /// Every file the inventory is read from (sources, directories walked, and the
    /// `group_vars/`/`host_vars/` files beside them and the playbook), for a run to notice a
    /// change to any of them.
    pub fn input_files(paths: &[PathBuf], playbook_dir: Option<&Path>) -> Vec<PathBuf> {
        sources::input_files(paths, &basedirs(paths, playbook_dir))
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.index.get(name).map(|&i| &self.hosts[i])
    }

    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The hosts of a group and of its descendants, in Ansible's order: the group's own hosts,
    /// then its children's, level by level.
    pub fn group_hosts(&self, name: &str) -> Vec<usize> {
        let Some(g) = self.groups.get(name) else {
            return Vec::new();
        };
        let mut ordered: Vec<&Group> = vec![g];
        let mut seen: HashSet<&str> = HashSet::new();
        let mut level: Vec<&Group> = Vec::new();
        for c in &g.children {
            if let Some(c) = self.groups.get(c) {
                ordered.push(c);
                if seen.insert(c.name.as_str()) {
                    level.push(c);
                }
            }
        }
        while !level.is_empty() {
            let mut next = Vec::new();
            for p in &level {
                for c in &p.children {
                    if seen.contains(c.as_str()) {
                        continue;
                    }
                    if let Some(c) = self.groups.get(c) {
                        ordered.push(c);
                        if !next.iter().any(|n: &&Group| n.name == c.name) {
                            next.push(c);
                        }
                    }
                }
            }
            seen.extend(next.iter().map(|g| g.name.as_str()));
            level = next;
        }
        let mut out = Vec::new();
        let mut taken = HashSet::new();
        for g in ordered {
            for h in &g.hosts {
                if let Some(&i) = self.index.get(h) {
                    if taken.insert(i) {
                        out.push(i);
                    }
                }
            }
        }
        out
    }
}

/// Where `group_vars/` and `host_vars/` are looked for: each source's directory (a directory
/// source itself), then the playbook's.
fn basedirs(paths: &[PathBuf], playbook_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                p.clone()
            } else {
                p.parent().map(Path::to_path_buf).unwrap_or_default()
            }
        })
        .collect();
    out.extend(playbook_dir.map(Path::to_path_buf));
    out
}

fn is_yaml(path: &Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yml" | "yaml" | "json") => true,
        Some("ini" | "cfg" | "hosts") => false,
        _ => {
            // No telling extension: an INI inventory starts with a `[section]` or a host line.
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
            first.is_some_and(|l| l.ends_with(':') || l.starts_with("---") || l.contains(": "))
        }
    }
}

/// Ansible's variable precedence (ansible-core's default `VARIABLE_PRECEDENCE`), low to high:
/// `all`'s inventory vars; the other groups' inventory vars, sorted by depth, then
/// `ansible_group_priority`, then name; `group_vars/all` beside each source, then beside the
/// playbook; `group_vars/<group>` in the same group order (each source, then the playbook);
/// the host's inventory vars; `host_vars/<host>` beside each source, then the playbook.
fn resolve(raw: RawInventory, basedirs: &[PathBuf], files: Vec<PathBuf>) -> Result<Inventory, Diagnostics> {
    let depth = group_depths(&raw.groups);
    let mut diags = Diagnostics::default();
    // Group vars files, once per (basedir, group).
    let mut group_files: Vec<HashMap<&str, Vars>> = Vec::new();
    for dir in basedirs {
        let mut m = HashMap::new();
        let gdir = dir.join("group_vars");
        if gdir.is_dir() {
            for g in raw.groups.keys() {
                if let Some(v) = sources::load_vars_files(&gdir, g, &mut diags) {
                    m.insert(g.as_str(), v);
                }
            }
        }
        group_files.push(m);
    }
    let host_dirs: Vec<PathBuf> = basedirs
        .iter()
        .map(|d| d.join("host_vars"))
        .filter(|d| d.is_dir())
        .collect();
    // Each host's direct groups, then with their ancestors.
    let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
    for g in raw.groups.values() {
        for h in &g.hosts {
            direct.entry(h.as_str()).or_default().push(g.name.as_str());
        }
    }
    let mut hosts = Vec::new();
    let mut index = HashMap::new();
    for (name, entry) in &raw.hosts {
        let mut member: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = direct.get(name.as_str()).cloned().unwrap_or_default();
        while let Some(g) = stack.pop() {
            if member.insert(g) {
                if let Some(gr) = raw.groups.get(g) {
                    stack.extend(gr.parents.iter().map(String::as_str));
                }
            }
        }
        let mut sorted: Vec<&Group> = raw
            .groups
            .values()
            .filter(|g| g.name != "all" && member.contains(g.name.as_str()))
            .collect();
        sorted.sort_by(|a, b| {
            depth[&a.name]
                .cmp(&depth[&b.name])
                .then(a.priority.cmp(&b.priority))
                .then(a.name.cmp(&b.name))
        });
        let mut vars = raw.groups["all"].vars.clone();
        for g in &sorted {
            extend(&mut vars, &g.vars);
        }
        for m in &group_files {
            if let Some(v) = m.get("all") {
                extend(&mut vars, v);
            }
        }
        for m in &group_files {
            for g in &sorted {
                if let Some(v) = m.get(g.name.as_str()) {
                    extend(&mut vars, v);
                }
            }
        }
        extend(&mut vars, &entry.vars);
        for d in &host_dirs {
            if let Some(v) = sources::load_vars_files(d, name, &mut diags) {
                extend(&mut vars, &v);
            }
        }
        let group_names = raw
            .groups
            .values()
            .filter(|g| g.name != "all" && member.contains(g.name.as_str()))
            .map(|g| g.name.clone())
            .collect();
        index.insert(name.clone(), hosts.len());
        hosts.push(host_from_vars(name, vars, group_names));
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Inventory {
        hosts,
        groups: raw.groups,
        files,
        index,
    })
}

fn extend(vars: &mut Vars, more: &Vars) {
    for (k, v) in more {
        vars.insert(k.clone(), v.clone());
    }
}

/// Depth of each group below `all` (the longest path, as Ansible does); cycles are cut.
fn group_depths(groups: &IndexMap<String, Group>) -> HashMap<String, usize> {
    let mut depth: HashMap<String, usize> = groups.keys().map(|k| (k.clone(), 0)).collect();
    // Relax edges; a cycle cannot push depth past the number of groups.
    for _ in 0..groups.len() {
        let mut changed = false;
        for g in groups.values() {
            let d = depth[&g.name];
            for c in &g.children {
                if depth[c] < d + 1 && d < groups.len() {
                    depth.insert(c.clone(), d + 1);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// The variables that set where to connect, highest first.
pub const ADDRESS_VARS: [&str; 2] = ["ansible_ssh_host", "ansible_host"];

fn str_var(vars: &Vars, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match vars.get(*n) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// The connection settings come only from Ansible's names (a plain `user`, `port` or `address`
/// is an ordinary variable, as in Ansible); where both forms are set, `ansible_ssh_*` wins, as
/// in Ansible's ssh connection plugin. `zone` and `jump` are tranche's own.
fn host_from_vars(name: &str, vars: Vars, groups: Vec<String>) -> Host {
    let port = ["ansible_ssh_port", "ansible_port"]
        .iter()
        .find_map(|k| match vars.get(*k) {
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        });
    Host {
        name: name.to_string(),
        address: str_var(&vars, &ADDRESS_VARS).unwrap_or_else(|| name.to_string()),
        port,
        user: str_var(&vars, &["ansible_ssh_user", "ansible_user"]),
        identity_file: str_var(&vars, &["ansible_ssh_private_key_file", "ansible_private_key_file"]).map(PathBuf::from),
        jump: str_var(&vars, &["jump"]),
        zone: str_var(&vars, &["zone"]),
        vars,
        groups,
    }
}

/// Check the connection variables of one host's own or group vars, where their position is known.
fn check_connection_var(file: &Path, key: &str, value: &Value, pos: Pos, diags: &mut Diagnostics) {
    let bad = match key {
        "ansible_port" | "ansible_ssh_port" => match value {
            Value::Number(n) => !n.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
            Value::String(s) => !s.parse::<u16>().is_ok_and(|p| p > 0),
            _ => true,
        },
        "ansible_host"
        | "ansible_ssh_host"
        | "ansible_user"
        | "ansible_ssh_user"
        | "ansible_ssh_private_key_file"
        | "ansible_private_key_file"
        | "jump"
        | "zone" => !matches!(value, Value::String(s) if !s.is_empty()),
        _ => false,
    };
    if bad {
        let what = if key.contains("port") {
            "a port number from 1 to 65535"
        } else {
            "a non-empty string"
        };
        diags.push(Diagnostic::new(
            file,
            Some(pos),
            format!("`{key}` must be {what}, not {}", describe(value)),
        ));
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}
