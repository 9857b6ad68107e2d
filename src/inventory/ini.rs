//! Ansible's INI inventory form: `[group]`, `[group:vars]`, `[group:children]`, host lines with
//! `key=value` variables, and ranges such as `web-[01:20]`.

use std::path::Path;

use serde_json::Value;

use super::{check_connection_var, expand_range, RawInventory, Vars};
use crate::error::{Diagnostic, Diagnostics, Pos};

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

pub(super) fn load(file: &Path, text: &str, raw: &mut RawInventory) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut section = Section::Hosts("ungrouped".to_string());
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let at = |col: usize, len: usize| Some(Pos::new(lineno, indent + col + 1, len.max(1)));
        if trimmed.starts_with('[') {
            let Some(inner) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
                diags.push(Diagnostic::new(
                    file,
                    at(0, trimmed.len()),
                    "a section header must look like `[group]`, `[group:vars]` or `[group:children]`",
                ));
                continue;
            };
            let (name, kind) = match inner.split_once(':') {
                Some((n, k)) => (n.trim(), Some(k.trim())),
                None => (inner.trim(), None),
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                diags.push(Diagnostic::new(
                    file,
                    at(1, inner.len()),
                    "a group name must be a non-empty word without spaces",
                ));
                continue;
            }
            section = match kind {
                None => Section::Hosts(name.to_string()),
                Some("vars") => Section::Vars(name.to_string()),
                Some("children") => Section::Children(name.to_string()),
                Some(other) => {
                    diags.push(
                        Diagnostic::new(
                            file,
                            at(name.len() + 2, other.len()),
                            format!("unknown section kind `:{other}`"),
                        )
                        .hint("sections are `[group]`, `[group:vars]` and `[group:children]`"),
                    );
                    continue;
                }
            };
            raw.group(match &section {
                Section::Hosts(n) | Section::Vars(n) | Section::Children(n) => n,
            });
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let group = group.clone();
                let mut words = split_words(trimmed).into_iter();
                let Some((host_col, host)) = words.next() else {
                    continue;
                };
                if host.contains('=') {
                    diags.push(
                        Diagnostic::new(
                            file,
                            at(host_col, host.len()),
                            format!("expected a host name, found `{host}`"),
                        )
                        .hint("a host line is `NAME key=value ...`; group variables go in a `[group:vars]` section"),
                    );
                    continue;
                }
                let names = match expand_range(&host) {
                    Ok(n) => n,
                    Err(e) => {
                        diags.push(Diagnostic::new(file, at(host_col + e.offset, e.len), e.message));
                        continue;
                    }
                };
                let mut vars = Vars::new();
                let mut ok = true;
                for (col, word) in words {
                    match word.split_once('=') {
                        Some((k, v)) if !k.is_empty() => {
                            let value = ini_value(v);
                            check_connection_var(
                                file,
                                k,
                                &value,
                                Pos::new(lineno, indent + col + k.len() + 2, v.len().max(1)),
                                &mut diags,
                            );
                            vars.insert(k.to_string(), value);
                        }
                        _ => {
                            diags.push(
                                Diagnostic::new(
                                    file,
                                    at(col, word.len()),
                                    format!("expected `key=value` after the host name, found `{word}`"),
                                )
                                .hint("host variables are written `name key=value key2=value2`"),
                            );
                            ok = false;
                        }
                    }
                }
                if ok {
                    if let Err(e) = raw.add_hosts(&group, names, &vars) {
                        diags.push(Diagnostic::new(file, at(host_col, host.len()), e));
                    }
                }
            }
            Section::Vars(group) => match trimmed.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    let value = ini_value(v.trim());
                    let vcol = line
                        .find('=')
                        .map(|c| c + 1 + (v.len() - v.trim_start().len()))
                        .unwrap_or(0);
                    check_connection_var(
                        file,
                        k.trim(),
                        &value,
                        Pos::new(lineno, vcol + 1, v.trim().len().max(1)),
                        &mut diags,
                    );
                    let group = group.clone();
                    raw.group(&group).vars.insert(k.trim().to_string(), value);
                }
                _ => diags.push(Diagnostic::new(
                    file,
                    at(0, trimmed.len()),
                    format!("expected `key=value` in `[{group}:vars]`, found `{trimmed}`"),
                )),
            },
            Section::Children(group) => {
                if trimmed.contains(char::is_whitespace) {
                    diags.push(Diagnostic::new(
                        file,
                        at(0, trimmed.len()),
                        format!("expected one group name per line in `[{group}:children]`, found `{trimmed}`"),
                    ));
                } else if trimmed == "all" {
                    diags.push(Diagnostic::new(file, at(0, 3), "`all` cannot be a child group"));
                } else {
                    let group = group.clone();
                    raw.add_child(&group, trimmed);
                }
            }
        }
    }
    diags
}

/// Split a host line into words with their byte offsets, honouring single and double quotes.
fn split_words(line: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = None;
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                start.get_or_insert(i);
                quote = Some(c);
                cur.push(c);
            }
            (None, '#') if start.is_none() => break,
            (None, c) if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push((s, std::mem::take(&mut cur)));
                }
            }
            (None, c) => {
                start.get_or_insert(i);
                cur.push(c);
            }
        }
    }
    if let Some(s) = start {
        out.push((s, cur));
    }
    out
}

/// INI values are typed loosely, as Ansible does: numbers and booleans become such, quotes are
/// stripped from strings.
fn ini_value(v: &str) -> Value {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return Value::String(v[1..v.len() - 1].to_string());
        }
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    match v {
        "true" | "True" => Value::Bool(true),
        "false" | "False" => Value::Bool(false),
        _ => Value::String(v.to_string()),
    }
}
