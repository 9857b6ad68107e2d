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
    /// (group, host) pairs already in a group's `hosts`: a linear search per host made a
    /// 100,000-host range take minutes.
    members: HashSet<(String, String)>,
}

impl RawInventory {
    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_insert_with(|| Group {
            name: name.to_string(),
            ..Group::default()
        })
    }

    /// Add `names` (one host line or key, ranges expanded) to `group`, unless the inventory
    /// would then hold more than [`HOSTS_MAX`] hosts.
    fn add_hosts(&mut self, group: &str, names: Vec<String>, vars: &Vars) -> Result<(), String> {
        let new = names.iter().filter(|n| !self.hosts.contains_key(*n)).count();
        if self.hosts.len() + new > HOSTS_MAX {
            return Err(format!(
                "the inventory would hold more than {HOSTS_MAX} hosts ({} so far, {new} more here)",
                self.hosts.len()
            ));
        }
        for host in names {
            if self.members.insert((group.to_string(), host.clone())) {
                self.group(group).hosts.push(host.clone());
            }
            let entry = self.hosts.entry(host).or_default();
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
    }
}

impl Inventory {
    /// Load and merge the inventory files, in order.
    pub fn load(paths: &[PathBuf]) -> Result<Inventory, Diagnostics> {
        let mut raw = RawInventory::default();
        let mut diags = Diagnostics::default();
        for path in paths {
            let text = match crate::yaml::read_file(path) {
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

/// The most hosts an inventory may hold, all files together (and so one range of host names).
pub const HOSTS_MAX: usize = 100_000;

/// Why a host name with ranges cannot be expanded: the message, and where in the name the
/// offending `[...]` starts and how long it is (in characters), to place the caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeError {
    pub message: String,
    pub offset: usize,
    pub len: usize,
}

/// One piece of a host name: literal text, or a range.
enum Piece<'a> {
    Text(&'a str),
    Numbers {
        start: u64,
        step: u64,
        count: u64,
        width: usize,
    },
    Letters {
        start: u8,
        step: u8,
        count: u64,
    },
}

impl Piece<'_> {
    fn count(&self) -> u64 {
        match self {
            Piece::Text(_) => 1,
            Piece::Numbers { count, .. } | Piece::Letters { count, .. } => *count,
        }
    }

    /// The `i`-th item (`i < count`, so the arithmetic stays within the range's end).
    fn push_item(&self, i: u64, out: &mut String) {
        match self {
            Piece::Text(t) => out.push_str(t),
            Piece::Numbers { start, step, width, .. } => {
                out.push_str(&format!("{:0width$}", start + i * step, width = *width));
            }
            Piece::Letters { start, step, .. } => out.push((start + i as u8 * step) as char),
        }
    }
}

/// Parse `[start:end]` or `[start:end:step]` (`inner` is what is between the brackets).
fn parse_range(inner: &str) -> Result<Piece<'static>, String> {
    let parts: Vec<&str> = inner.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(format!(
            "host range `[{inner}]` must be `[start:end]` or `[start:end:step]`"
        ));
    }
    let step: u64 = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("bad step `{s}` in host range `[{inner}]`"))?,
        None => 1,
    };
    let (start, end) = (parts[0], parts[1]);
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if digits(start) && digits(end) {
        let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) else {
            return Err(format!("host range `[{inner}]` has more than {HOSTS_MAX} hosts"));
        };
        if a > b {
            return Err(format!("host range `[{inner}]` goes backwards"));
        }
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        return Ok(Piece::Numbers {
            start: a,
            step,
            count: ((b - a) / step).saturating_add(1),
            width,
        });
    }
    let letter = |s: &str| s.len() == 1 && s.chars().all(|c| c.is_ascii_alphabetic());
    if letter(start) && letter(end) {
        let (a, b) = (start.as_bytes()[0], end.as_bytes()[0]);
        if a > b {
            return Err(format!("host range `[{inner}]` goes backwards"));
        }
        let count = u64::from(b - a) / step + 1;
        // With one item the step is never applied; keep it small so `i * step` stays a byte.
        let step = u8::try_from(step).unwrap_or(u8::MAX);
        return Ok(Piece::Letters { start: a, step, count });
    }
    Err(format!(
        "host range `[{inner}]` must be numbers (`[01:20]`) or single letters (`[a:f]`)"
    ))
}

/// Expand Ansible host ranges: `web-[01:20]`, `db[a:c]`, `n[0:10:2]`, several in one name. The
/// names are counted before any is made, so a range too large is an error, not an allocation.
pub(crate) fn expand_range(name: &str) -> Result<Vec<String>, RangeError> {
    let mut pieces = Vec::new();
    let mut rest = name;
    let mut total: u64 = 1;
    while let Some(open) = rest.find('[') {
        let offset = name.len() - rest.len() + open;
        let at = |message: String, len: usize| RangeError {
            message,
            offset: name[..offset].chars().count(),
            len: len.max(1),
        };
        let Some(close) = rest[open..].find(']').map(|c| open + c) else {
            return Err(at(
                format!("unclosed `[` in host range `{name}`"),
                rest[open..].chars().count(),
            ));
        };
        let inner = &rest[open + 1..close];
        let width = inner.chars().count() + 2;
        let piece = parse_range(inner).map_err(|m| at(m, width))?;
        total = total
            .checked_mul(piece.count())
            .filter(|t| *t <= HOSTS_MAX as u64)
            .ok_or_else(|| {
                at(
                    format!("host name `{name}` expands to more than {HOSTS_MAX} hosts"),
                    width,
                )
            })?;
        pieces.push(Piece::Text(&rest[..open]));
        pieces.push(piece);
        rest = &rest[close + 1..];
    }
    pieces.push(Piece::Text(rest));
    // `total` is at most HOSTS_MAX: expand like an odometer, the last range turning fastest.
    let mut out = Vec::with_capacity(total as usize);
    let mut index = vec![0u64; pieces.len()];
    for _ in 0..total {
        let mut s = String::with_capacity(name.len());
        for (p, i) in pieces.iter().zip(&index) {
            p.push_item(*i, &mut s);
        }
        out.push(s);
        for (p, i) in pieces.iter().zip(index.iter_mut()).rev() {
            *i += 1;
            if *i < p.count() {
                break;
            }
            *i = 0;
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
        assert_eq!(
            expand_range("r[1:2]-[a:b]").unwrap(),
            vec!["r1-a", "r1-b", "r2-a", "r2-b"]
        );
        assert_eq!(
            expand_range("x[0:10:7]y[b:f:3]").unwrap(),
            vec!["x0yb", "x0ye", "x7yb", "x7ye"]
        );
        assert_eq!(expand_range("a[z:z:300]").unwrap(), vec!["az"]);
        assert_eq!(expand_range("n[08:10]").unwrap(), vec!["n08", "n09", "n10"]);
    }

    #[test]
    fn ranges_are_counted_before_they_are_expanded() {
        // Each of these used to allocate (or multiply) before the cap was checked.
        let e = expand_range("web-[0:9999999999]").unwrap_err();
        assert!(e.message.contains("more than 100000 hosts"), "{e:?}");
        assert_eq!((e.offset, e.len), (4, 14));
        assert!(expand_range("web-[0:18446744073709551615]").is_err());
        assert!(expand_range("web-[0:99999999999999999999999]").is_err());
        // Two ranges that are each small enough, but not together.
        let e = expand_range("r[1:1000]-[1:1000]").unwrap_err();
        assert_eq!(e.offset, 10, "{e:?}");
        assert!(
            expand_range("n[0:18446744073709551615:18446744073709551615]")
                .unwrap()
                .len()
                == 2
        );
        assert_eq!(expand_range("n[0:99999]").unwrap().len(), 100_000);
        assert!(expand_range("n[0:100000]").is_err());
        assert_eq!(expand_range("n[0:199999:2]").unwrap().len(), 100_000);
    }
}
