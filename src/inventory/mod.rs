//! The Ansible-compatible inventory: groups, hosts and variables, loaded from YAML or INI files,
//! and the hosts' connection settings resolved with Ansible's variable precedence.

mod ini;
mod pattern;
mod yaml;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Diagnostic, Diagnostics, Pos};

pub use pattern::select;

/// Variables of a group or host, in the order they were written.
pub type Vars = IndexMap<String, Value>;

/// A group as written: its own vars, its direct hosts and its child groups.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub vars: Vars,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
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
    /// Where to connect: `address`/`ansible_host`, else the name.
    pub address: String,
    /// `port`/`ansible_port`; `None` leaves it to the SSH config (then 22).
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

/// A loaded inventory: hosts in file order and every group.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    pub groups: IndexMap<String, Group>,
    pub files: Vec<PathBuf>,
}

/// What a loader produces before resolution.
#[derive(Debug, Default)]
pub(crate) struct RawInventory {
    groups: IndexMap<String, Group>,
    hosts: IndexMap<String, HostEntry>,
}

impl RawInventory {
    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_insert_with(|| Group {
            name: name.to_string(),
            ..Group::default()
        })
    }

    fn add_host(&mut self, group: &str, host: &str, vars: Vars) {
        let g = self.group(group);
        if !g.hosts.iter().any(|h| h == host) {
            g.hosts.push(host.to_string());
        }
        let entry = self.hosts.entry(host.to_string()).or_default();
        entry.vars.extend(vars);
    }

    fn add_child(&mut self, parent: &str, child: &str) {
        self.group(child);
        let g = self.group(parent);
        if !g.children.iter().any(|c| c == child) {
            g.children.push(child.to_string());
        }
    }
}

impl Inventory {
    /// Load and merge the inventory files, in order.
    pub fn load(paths: &[PathBuf]) -> Result<Inventory, Diagnostics> {
        let mut raw = RawInventory::default();
        let mut diags = Diagnostics::default();
        for path in paths {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    diags.push(Diagnostic::new(path, None, format!("cannot read the inventory: {e}")));
                    continue;
                }
            };
            let mut file_diags = if is_yaml(path, &text) {
                yaml::load(path, &text, &mut raw)
            } else {
                ini::load(path, &text, &mut raw)
            };
            file_diags.attach_sources(path, &text);
            diags.extend(file_diags);
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let inv = resolve(raw, paths);
        if let Some(path) = paths.first() {
            if inv.hosts.is_empty() {
                return Err(Diagnostic::new(path, None, "the inventory has no hosts").into());
            }
        }
        Ok(inv)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
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

/// Apply Ansible's precedence: `all` < parent groups < child groups (by depth, then name) < host.
fn resolve(mut raw: RawInventory, files: &[PathBuf]) -> Inventory {
    raw.group("all");
    let depth = group_depths(&raw.groups);
    // Each group's hosts, through its children.
    let mut members: HashMap<&str, HashSet<&str>> = HashMap::new();
    for name in raw.groups.keys() {
        let mut seen = HashSet::new();
        let mut set = HashSet::new();
        collect_members(&raw.groups, name, &mut seen, &mut set);
        members.insert(name.as_str(), set);
    }
    let mut hosts = Vec::new();
    for (name, entry) in &raw.hosts {
        let mut groups: Vec<&Group> = raw
            .groups
            .values()
            .filter(|g| g.name == "all" || members[g.name.as_str()].contains(name.as_str()))
            .collect();
        groups.sort_by(|a, b| depth[&a.name].cmp(&depth[&b.name]).then(a.name.cmp(&b.name)));
        let mut vars = Vars::new();
        for g in &groups {
            for (k, v) in &g.vars {
                vars.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &entry.vars {
            vars.insert(k.clone(), v.clone());
        }
        let group_names = raw
            .groups
            .values()
            .filter(|g| g.name != "all" && members[g.name.as_str()].contains(name.as_str()))
            .map(|g| g.name.clone())
            .collect();
        hosts.push(host_from_vars(name, vars, group_names));
    }
    Inventory {
        hosts,
        groups: raw.groups,
        files: files.to_vec(),
    }
}

fn collect_members<'a>(
    groups: &'a IndexMap<String, Group>,
    name: &'a str,
    seen: &mut HashSet<&'a str>,
    out: &mut HashSet<&'a str>,
) {
    if !seen.insert(name) {
        return;
    }
    if let Some(g) = groups.get(name) {
        out.extend(g.hosts.iter().map(String::as_str));
        for c in &g.children {
            collect_members(groups, c, seen, out);
        }
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
    // Groups that are nobody's child sit directly under `all`.
    let has_parent: HashSet<&String> = groups.values().flat_map(|g| g.children.iter()).collect();
    for g in groups.keys() {
        if g != "all" && !has_parent.contains(g) {
            let d = depth.get_mut(g).expect("every group has a depth");
            *d = (*d).max(1);
        }
    }
    depth
}

fn str_var(vars: &Vars, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match vars.get(*n) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn host_from_vars(name: &str, vars: Vars, groups: Vec<String>) -> Host {
    let port = ["port", "ansible_port", "ansible_ssh_port"]
        .iter()
        .find_map(|k| match vars.get(*k) {
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        });
    Host {
        name: name.to_string(),
        address: str_var(&vars, &["address", "ansible_host", "ansible_ssh_host"]).unwrap_or_else(|| name.to_string()),
        port,
        user: str_var(&vars, &["user", "ansible_user", "ansible_ssh_user"]),
        identity_file: str_var(&vars, &["identity_file", "ansible_ssh_private_key_file"]).map(PathBuf::from),
        jump: str_var(&vars, &["jump"]),
        zone: str_var(&vars, &["zone"]),
        vars,
        groups,
    }
}

/// Check the connection variables of one host's own or group vars, where their position is known.
fn check_connection_var(file: &Path, key: &str, value: &Value, pos: Pos, diags: &mut Diagnostics) {
    let bad = match key {
        "port" | "ansible_port" | "ansible_ssh_port" => match value {
            Value::Number(n) => !n.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
            Value::String(s) => !s.parse::<u16>().is_ok_and(|p| p > 0),
            _ => true,
        },
        "address"
        | "ansible_host"
        | "user"
        | "ansible_user"
        | "identity_file"
        | "ansible_ssh_private_key_file"
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

/// Expand Ansible host ranges: `web-[01:20]`, `db[a:c]`, `n[0:10:2]`.
pub(crate) fn expand_range(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('[') else {
        return Ok(vec![name.to_string()]);
    };
    let Some(close_rel) = name[open..].find(']') else {
        return Err(format!("unclosed `[` in host range `{name}`"));
    };
    let close = open + close_rel;
    let (head, inner, tail) = (&name[..open], &name[open + 1..close], &name[close + 1..]);
    let parts: Vec<&str> = inner.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(format!(
            "host range `[{inner}]` must be `[start:end]` or `[start:end:step]`"
        ));
    }
    let step: usize = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("bad step `{s}` in host range `[{inner}]`"))?,
        None => 1,
    };
    let (start, end) = (parts[0], parts[1]);
    let mut items = Vec::new();
    if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        if a > b {
            return Err(format!("host range `[{inner}]` goes backwards"));
        }
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        for i in (a..=b).step_by(step) {
            items.push(format!("{i:0width$}"));
        }
    } else if start.len() == 1
        && end.len() == 1
        && start.chars().all(|c| c.is_ascii_alphabetic())
        && end.chars().all(|c| c.is_ascii_alphabetic())
    {
        let (a, b) = (start.as_bytes()[0], end.as_bytes()[0]);
        if a > b {
            return Err(format!("host range `[{inner}]` goes backwards"));
        }
        for c in (a..=b).step_by(step) {
            items.push((c as char).to_string());
        }
    } else {
        return Err(format!(
            "host range `[{inner}]` must be numbers (`[01:20]`) or single letters (`[a:f]`)"
        ));
    }
    if items.len() > 100_000 {
        return Err(format!("host range `[{inner}]` has more than 100000 hosts"));
    }
    let tails = expand_range(tail)?;
    let mut out = Vec::with_capacity(items.len() * tails.len());
    for i in &items {
        for t in &tails {
            out.push(format!("{head}{i}{t}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(expand_range("web-[01:03]").unwrap(), vec!["web-01", "web-02", "web-03"]);
        assert_eq!(expand_range("db[a:c].x").unwrap(), vec!["dba.x", "dbb.x", "dbc.x"]);
        assert_eq!(expand_range("n[0:4:2]").unwrap(), vec!["n0", "n2", "n4"]);
        assert!(expand_range("n[4:1]").is_err());
        assert!(expand_range("n[1:x]").is_err());
        assert!(expand_range("n[1:2").is_err());
    }
}
