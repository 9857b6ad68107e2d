//! Where inventory data comes from: files (YAML, INI), directories of sources, executable
//! inventory scripts, `ansible-inventory --list` JSON, and `group_vars/`/`host_vars/` files.

use std::path::{Path, PathBuf};
use std::process::Command;

use indexmap::IndexMap;
use serde_json::Value;

use super::{ini, is_yaml, yaml, RawInventory, Vars};
use crate::error::{Diagnostic, Diagnostics};
use crate::yaml::{Kind, Node};

/// Names Ansible skips in an inventory directory: hidden files, `group_vars`, `host_vars`,
/// `vars_plugins`, and its default `INVENTORY_IGNORE_EXTS`.
fn ignored(name: &str) -> bool {
    const EXTS: &[&str] = &[
        ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
    ];
    name.starts_with('.')
        || matches!(name, "host_vars" | "group_vars" | "vars_plugins")
        || EXTS.iter().any(|e| name.ends_with(e))
}

pub(super) fn load_source(path: &Path, raw: &mut RawInventory, diags: &mut Diagnostics, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut names: Vec<_> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.file_name()).collect(),
            Err(e) => {
                diags.push(Diagnostic::new(
                    path,
                    None,
                    format!("cannot read the inventory directory: {e}"),
                ));
                return;
            }
        };
        names.sort();
        for n in names {
            if ignored(&n.to_string_lossy()) {
                continue;
            }
            load_source(&path.join(n), raw, diags, files);
        }
        return;
    }
    files.push(path.to_path_buf());
    if is_executable(path) {
        load_script(path, raw, diags);
        return;
    }
    let text = match crate::yaml::read_file(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::new(path, None, format!("cannot read the inventory: {e}")));
            return;
        }
    };
    if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        diags.push(vault_file(path));
        return;
    }
    let mut file_diags = if looks_like_list_json(path, &text) {
        match serde_json::from_str::<IndexMap<String, Value>>(&text) {
            Ok(data) => list_json(path, data, raw, None),
            Err(e) => Diagnostic::new(path, None, format!("not valid JSON: {e}")).into(),
        }
    } else if is_yaml(path, &text) {
        yaml::load(path, &text, raw)
    } else {
        ini::load(path, &text, raw)
    };
    file_diags.attach_sources(path, &text);
    diags.extend(file_diags);
}

/// Every file an inventory is read from, in a stable order: the sources (directories walked as
/// [`load_source`] walks them) and every file under `group_vars/` and `host_vars/` beside each
/// source and the playbook. A missing source stays in the list, so reading it fails.
pub(super) fn input_files(paths: &[PathBuf], basedirs: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(path: &Path, ignore: bool, out: &mut Vec<PathBuf>) {
        if !path.is_dir() {
            out.push(path.to_path_buf());
            return;
        }
        let Ok(rd) = std::fs::read_dir(path) else {
            return;
        };
        let mut names: Vec<_> = rd.filter_map(Result::ok).map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            if !ignore || !ignored(&n.to_string_lossy()) {
                walk(&path.join(n), ignore, out);
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, true, &mut out);
    }
    for d in basedirs {
        for sub in ["group_vars", "host_vars"] {
            if d.join(sub).is_dir() {
                walk(&d.join(sub), false, &mut out);
            }
        }
    }
    out
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `ansible-inventory --list` output saved to a file: a JSON object with `_meta`. (Ansible
/// itself reads this shape only from a script; tranche also takes the saved file.)
fn looks_like_list_json(path: &Path, text: &str) -> bool {
    path.extension().is_some_and(|e| e == "json")
        && serde_json::from_str::<serde_json::Map<String, Value>>(text).is_ok_and(|m| m.contains_key("_meta"))
}

fn vault_file(path: &Path) -> Diagnostic {
    Diagnostic::new(
        path,
        None,
        "the file is encrypted with Ansible Vault, which tranche cannot decrypt",
    )
    .hint("decrypt it (`ansible-vault decrypt`) or keep the secret out of the inventory, e.g. `-e KEY=@env:NAME`")
}

/// Run an inventory script with `--list` (and `--host H` for each host when it gives no
/// `_meta.hostvars`), as Ansible's `script` plugin does.
fn load_script(path: &Path, raw: &mut RawInventory, diags: &mut Diagnostics) {
    let out = match run(path, &["--list"]) {
        Ok(o) => o,
        Err(e) => {
            diags.push(Diagnostic::new(path, None, e.to_string()));
            return;
        }
    };
    let data: IndexMap<String, Value> = match serde_json::from_str(&out) {
        Ok(d) => d,
        Err(e) => {
            diags.push(Diagnostic::new(
                path,
                None,
                format!("the inventory script's `--list` output is not a JSON object: {e}"),
            ));
            return;
        }
    };
    diags.extend(list_json(path, data, raw, Some(path)));
}

/// Why an inventory script gave no output to read.
#[derive(Debug, thiserror::Error)]
enum ScriptError {
    #[error("cannot run the inventory script: {0}")]
    Spawn(std::io::Error),
    #[error("the inventory script `{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("the inventory script's output is not UTF-8")]
    NotUtf8,
}

fn run(path: &Path, args: &[&str]) -> Result<String, ScriptError> {
    // `-i inventory` is the file here, not a program of that name on $PATH.
    let program = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let out = Command::new(program).args(args).output().map_err(ScriptError::Spawn)?;
    if !out.status.success() {
        return Err(ScriptError::Failed {
            command: format!("{} {}", path.display(), args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| ScriptError::NotUtf8)
}

/// The JSON of `--list`: `{group: {hosts: [..], vars: {..}, children: [..]}, _meta: {hostvars}}`.
/// `script` is the script to ask `--host H` when `_meta.hostvars` is missing.
fn list_json(path: &Path, data: IndexMap<String, Value>, raw: &mut RawInventory, script: Option<&Path>) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut hostvars: Option<serde_json::Map<String, Value>> = None;
    let mut seen_hosts: indexmap::IndexSet<String> = indexmap::IndexSet::new();
    let err = |m: String| Diagnostic::new(path, None, m);
    for (group, gdata) in data {
        if group == "_meta" {
            match gdata.get("hostvars") {
                Some(Value::Object(m)) => hostvars = Some(m.clone()),
                None => {}
                Some(other) => diags.push(err(format!("`_meta.hostvars` must be an object, not {other}"))),
            }
            continue;
        }
        raw.group(&group);
        let gdata = match gdata {
            Value::Object(m) if ["hosts", "vars", "children"].iter().any(|k| m.contains_key(*k)) => m,
            Value::Object(m) => {
                // Ansible's legacy form: a group of one host named like the group.
                let mut g = serde_json::Map::new();
                g.insert("hosts".into(), Value::Array(vec![Value::String(group.clone())]));
                g.insert("vars".into(), Value::Object(m));
                g
            }
            other => {
                let mut g = serde_json::Map::new();
                g.insert("hosts".into(), other);
                g
            }
        };
        if let Some(h) = gdata.get("hosts") {
            let Some(list) = h.as_array() else {
                diags.push(err(format!("`{group}.hosts` must be a list, not {h}")));
                continue;
            };
            for h in list {
                let Some(name) = h.as_str() else {
                    diags.push(err(format!("a host name in `{group}.hosts` must be a string, not {h}")));
                    continue;
                };
                if let Err(e) = raw.add_hosts(&group, vec![name.to_string()], &Vars::new()) {
                    diags.push(err(e.to_string()));
                }
                seen_hosts.insert(name.to_string());
            }
        }
        if let Some(v) = gdata.get("vars") {
            let Some(vars) = v.as_object() else {
                diags.push(err(format!("`{group}.vars` must be an object, not {v}")));
                continue;
            };
            for (k, v) in vars {
                check_vault(path, k, v, &mut diags);
                raw.set_group_var(&group, k, v.clone());
            }
        }
        if let Some(c) = gdata.get("children") {
            let Some(list) = c.as_array() else {
                diags.push(err(format!("`{group}.children` must be a list, not {c}")));
                continue;
            };
            for c in list.iter().filter_map(Value::as_str) {
                if c != group {
                    raw.add_child(&group, c);
                }
            }
        }
    }
    for host in seen_hosts {
        let vars = match (&hostvars, script) {
            (Some(m), _) => m.get(&host).cloned().unwrap_or(Value::Object(Default::default())),
            (None, Some(script)) => match run(script, &["--host", &host]) {
                Ok(out) if out.trim().is_empty() => Value::Object(Default::default()),
                Ok(out) => match serde_json::from_str(&out) {
                    Ok(v) => v,
                    Err(e) => {
                        diags.push(err(format!("`--host {host}` did not print a JSON object: {e}")));
                        continue;
                    }
                },
                Err(e) => {
                    diags.push(err(e.to_string()));
                    continue;
                }
            },
            (None, None) => continue,
        };
        let Value::Object(vars) = vars else {
            diags.push(err(format!("the variables of host `{host}` must be an object")));
            continue;
        };
        let entry = raw.hosts.entry(host.clone()).or_default();
        for (k, v) in vars {
            check_vault(path, &k, &v, &mut diags);
            entry.vars.insert(k, v);
        }
    }
    diags
}

/// An Ansible Vault value (`!vault |` or the `$ANSIBLE_VAULT;` text) cannot be used: say which.
pub(super) fn check_vault(path: &Path, key: &str, value: &Value, diags: &mut Diagnostics) {
    if value
        .as_str()
        .is_some_and(|s| s.trim_start().starts_with("$ANSIBLE_VAULT;"))
    {
        diags.push(
            Diagnostic::new(
                path,
                None,
                format!("variable `{key}` is encrypted with Ansible Vault, which tranche cannot decrypt"),
            )
            .hint("decrypt it, or pass the secret as `-e KEY=@env:NAME` (read from the environment, never written)"),
        );
    }
}

/// A YAML node as Ansible's YAML 1.1 loader types it: also `yes`/`no`/`on`/`off` are booleans.
pub(super) fn node_value(node: &Node) -> Value {
    match &node.kind {
        Kind::Scalar { text, plain: true } => match text.as_str() {
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Value::Bool(true),
            "no" | "No" | "NO" | "off" | "Off" | "OFF" => Value::Bool(false),
            _ => node.to_json(),
        },
        Kind::Seq(items) => Value::Array(items.iter().map(node_value).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.scalar().unwrap_or_default().to_string(), node_value(v)))
                .collect(),
        ),
        _ => node.to_json(),
    }
}

/// `dir/name`, `dir/name.yml`, `.yaml` or `.json` (the first that exists), or every vars file in
/// the directory `dir/name/` (sorted, recursively; hidden and `~` files skipped; no extension or
/// `.yml/.yaml/.json`), merged in that order. `None` when there is none.
pub(super) fn load_vars_files(dir: &Path, name: &str, diags: &mut Diagnostics) -> Option<Vars> {
    let mut found = Vec::new();
    for ext in ["", ".yml", ".yaml", ".json"] {
        let p = dir.join(format!("{name}{ext}"));
        if p.exists() {
            if p.is_dir() {
                dir_vars_files(&p, &mut found);
            } else {
                found.push(p);
            }
            break;
        }
    }
    if found.is_empty() {
        return None;
    }
    let mut vars = Vars::new();
    for f in found {
        let text = match crate::yaml::read_file(&f) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::new(
                    &f,
                    None,
                    format!("cannot read the variables file: {e}"),
                ));
                continue;
            }
        };
        if text.trim_start().starts_with("$ANSIBLE_VAULT;") {
            diags.push(vault_file(&f));
            continue;
        }
        match crate::yaml::parse(&f, &text) {
            Ok(None) => {}
            Ok(Some(node)) => match node_value(&node) {
                Value::Object(m) => {
                    let mut file_diags = Diagnostics::default();
                    for (k, v) in node.as_map().unwrap_or_default() {
                        if let Some(key) = k.scalar() {
                            super::check_connection_var(&f, key, &node_value(v), v.pos, &mut file_diags);
                        }
                    }
                    file_diags.attach_sources(&f, &text);
                    diags.extend(file_diags);
                    for (k, v) in m {
                        check_vault(&f, &k, &v, diags);
                        vars.insert(k, v);
                    }
                }
                Value::Null => {}
                other => diags.push(Diagnostic::new(
                    &f,
                    Some(node.pos),
                    format!("a variables file must be a mapping, not {}", super::describe(&other)),
                )),
            },
            Err(mut d) => {
                d.attach_sources(&f, &text);
                diags.extend(d);
            }
        }
    }
    Some(vars)
}

fn dir_vars_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = rd.filter_map(Result::ok).map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let s = n.to_string_lossy();
        if s.starts_with('.') || s.ends_with('~') {
            continue;
        }
        let p = dir.join(&n);
        let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy()));
        if p.is_dir() && ext.is_none() {
            dir_vars_files(&p, out);
        } else if p.is_file() && ext.as_deref().is_none_or(|e| matches!(e, ".yml" | ".yaml" | ".json")) {
            out.push(p);
        }
    }
}
