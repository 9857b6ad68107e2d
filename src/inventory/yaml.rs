//! Ansible's YAML inventory form: `group: {hosts, vars, children}` nested from `all`.

use std::path::Path;

use super::{check_connection_var, expand_range, ini::split_host_port, sources, RawInventory, Vars};
use crate::error::{did_you_mean, Diagnostic, Diagnostics, Pos};
use crate::yaml::{self, Node};

const GROUP_KEYS: &[&str] = &["hosts", "vars", "children"];

pub(super) fn load(file: &Path, text: &str, raw: &mut RawInventory) -> Diagnostics {
    let root = match yaml::parse(file, text) {
        Ok(Some(root)) => root,
        Ok(None) => return Diagnostic::new(file, None, "the inventory is empty").into(),
        Err(d) => return d,
    };
    let mut diags = Diagnostics::default();
    let Some(groups) = root.as_map() else {
        diags.push(
            Diagnostic::new(
                file,
                Some(root.pos),
                format!("the inventory must be a mapping of groups, not {}", root.type_name()),
            )
            .hint("start with `all:` and put hosts under `all: {hosts: ...}` or `all: {children: ...}`"),
        );
        return diags;
    };
    let mut loader = Loader {
        file,
        raw,
        diags: &mut diags,
    };
    for (k, v) in groups {
        if let Some(name) = loader.name(k, "group") {
            loader.group(&name, v, 0);
        }
    }
    diags
}

struct Loader<'a> {
    file: &'a Path,
    raw: &'a mut RawInventory,
    diags: &'a mut Diagnostics,
}

impl Loader<'_> {
    fn err(&mut self, node: &Node, msg: String) {
        self.diags.push(Diagnostic::new(self.file, Some(node.pos), msg));
    }

    fn name(&mut self, key: &Node, what: &str) -> Option<String> {
        match key.scalar() {
            Some(s) if !s.trim().is_empty() && !s.contains(char::is_whitespace) => Some(s.to_string()),
            _ => {
                self.err(key, format!("a {what} name must be a non-empty word without spaces"));
                None
            }
        }
    }

    fn group(&mut self, name: &str, node: &Node, depth: usize) {
        self.raw.group(name);
        if depth > 64 {
            self.err(node, format!("group `{name}` is nested too deeply"));
            return;
        }
        if node.is_null() {
            return;
        }
        let Some(entries) = node.as_map() else {
            self.err(
                node,
                format!(
                    "group `{name}` must be a mapping with `hosts`, `vars` or `children`, not {}",
                    node.type_name()
                ),
            );
            return;
        };
        for (k, v) in entries {
            match k.scalar() {
                Some("hosts") => self.hosts(name, v),
                Some("vars") => {
                    if let Some(vars) = self.vars(v, &format!("vars of group `{name}`")) {
                        for (k, v) in vars {
                            self.raw.set_group_var(name, &k, v);
                        }
                    }
                }
                Some("children") => {
                    if v.is_null() {
                        continue;
                    }
                    let Some(children) = v.as_map() else {
                        self.err(
                            v,
                            format!(
                                "`children` of group `{name}` must be a mapping of group names, not {}",
                                v.type_name()
                            ),
                        );
                        continue;
                    };
                    for (ck, cv) in children {
                        if let Some(child) = self.name(ck, "group") {
                            if child == "all" {
                                self.err(ck, "`all` cannot be a child group".into());
                                continue;
                            }
                            self.raw.add_child(name, &child);
                            self.group(&child, cv, depth + 1);
                        }
                    }
                }
                other => {
                    let key = other.unwrap_or("?");
                    let mut d =
                        Diagnostic::new(self.file, Some(k.pos), format!("unknown key `{key}` in group `{name}`"));
                    d = match did_you_mean(key, GROUP_KEYS) {
                        Some(s) => d.hint(format!("did you mean `{s}`?")),
                        None => d.hint("a group holds `hosts`, `vars` and `children`; host variables go under `hosts: {NAME: {VAR: VALUE}}`"),
                    };
                    self.diags.push(d);
                }
            }
        }
    }

    fn hosts(&mut self, group: &str, node: &Node) {
        if node.is_null() {
            return;
        }
        let Some(hosts) = node.as_map() else {
            let mut d = Diagnostic::new(
                self.file,
                Some(node.pos),
                format!(
                    "`hosts` of group `{group}` must be a mapping of host names, not {}",
                    node.type_name()
                ),
            );
            if node.as_seq().is_some() {
                d = d.hint("write `hosts: {web-01: , web-02: }` or one `web-01:` per line; Ansible's YAML inventory has no host lists");
            }
            self.diags.push(d);
            return;
        };
        for (k, v) in hosts {
            let Some(written) = self.name(k, "host") else {
                continue;
            };
            let (pattern, port) = split_host_port(&written);
            let names = match expand_range(&pattern) {
                Ok(n) => n,
                Err(e) => {
                    // A quoted key starts one column before its text.
                    let quote = usize::from(k.pos.len > pattern.chars().count());
                    let pos = Pos::new(k.pos.line, k.pos.col + quote + e.offset, e.len);
                    self.diags.push(Diagnostic::new(self.file, Some(pos), e.message));
                    continue;
                }
            };
            let vars = if v.is_null() {
                Some(Vars::new())
            } else {
                self.vars(v, &format!("variables of host `{pattern}`"))
            };
            if let Some(vars) = vars {
                if let Err(e) = self.raw.add_hosts_port(group, names, port, &vars) {
                    self.err(k, e.to_string());
                }
            }
        }
    }

    fn vars(&mut self, node: &Node, what: &str) -> Option<Vars> {
        if node.is_null() {
            return Some(Vars::new());
        }
        let Some(entries) = node.as_map() else {
            self.err(node, format!("{what} must be a mapping, not {}", node.type_name()));
            return None;
        };
        let mut vars = Vars::new();
        for (k, v) in entries {
            let Some(key) = k.scalar() else {
                self.err(k, "a variable name must be a string".into());
                continue;
            };
            let value = sources::node_value(v);
            check_connection_var(self.file, key, &value, v.pos, self.diags);
            sources::check_vault(self.file, key, &value, self.diags);
            vars.insert(key.to_string(), value);
        }
        Some(vars)
    }
}
