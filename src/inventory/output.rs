//! `tranche inventory --list | --host H | --graph`, shaped like `ansible-inventory`'s output.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::Inventory;

/// `ansible-inventory --list`: each group reachable from `all` with its direct `hosts` and its
/// `children` (empty keys left out, empty groups too), and `_meta.hostvars`.
pub fn list(inv: &Inventory) -> Value {
    let mut out = Map::new();
    let mut seen = HashSet::new();
    format_group(inv, "all", &mut out, &mut seen);
    let mut hostvars = Map::new();
    for i in inv.group_hosts("all") {
        let h = &inv.hosts[i];
        if !h.vars.is_empty() {
            hostvars.insert(h.name.clone(), host_vars(inv, &h.name).unwrap_or(Value::Null));
        }
    }
    out.insert(
        "_meta".into(),
        json!({"hostvars": hostvars, "profile": "inventory_legacy"}),
    );
    Value::Object(out)
}

fn format_group(inv: &Inventory, name: &str, out: &mut Map<String, Value>, seen: &mut HashSet<String>) {
    let Some(g) = inv.groups.get(name) else {
        return;
    };
    let mut entry = Map::new();
    if name != "all" && !g.hosts.is_empty() {
        entry.insert("hosts".into(), json!(g.hosts));
    }
    if !g.children.is_empty() {
        entry.insert("children".into(), json!(g.children));
    }
    if !entry.is_empty() {
        out.insert(name.to_string(), Value::Object(entry));
    }
    for c in &g.children {
        if seen.insert(c.clone()) {
            format_group(inv, c, out, seen);
        }
    }
}

/// `ansible-inventory --host H`: the host's variables as Ansible resolves them.
pub fn host_vars(inv: &Inventory, name: &str) -> Option<Value> {
    let h = inv.host(name)?;
    Some(Value::Object(
        h.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    ))
}

/// `ansible-inventory --graph`: the tree from `all` (or from `group`).
pub fn graph(inv: &Inventory, group: &str) -> Option<String> {
    inv.groups.get(group)?;
    let mut lines = Vec::new();
    graph_group(inv, group, 0, &mut lines);
    Some(lines.join("\n"))
}

fn graph_name(name: &str, depth: usize) -> String {
    if depth == 0 {
        name.to_string()
    } else {
        format!("{}--{name}", "  |".repeat(depth))
    }
}

fn graph_group(inv: &Inventory, name: &str, depth: usize, lines: &mut Vec<String>) {
    let Some(g) = inv.groups.get(name) else {
        return;
    };
    lines.push(graph_name(&format!("@{name}:"), depth));
    for c in &g.children {
        graph_group(inv, c, depth + 1, lines);
    }
    if name != "all" {
        for h in &g.hosts {
            lines.push(graph_name(h, depth + 1));
        }
    }
}
