//! Ansible's INI inventory form: `[group]`, `[group:vars]`, `[group:children]`, host lines with
//! `key=value` variables (split like a shell line, values typed as Python literals), `host:port`,
//! and ranges such as `web-[01:20]`.

use std::collections::HashMap;
use std::path::Path;

use super::{check_connection_var, expand_range, pyliteral, sources, RawInventory, Vars};
use crate::error::{Diagnostic, Diagnostics, Pos};

#[derive(Clone, Copy, PartialEq)]
enum State {
    Hosts,
    Vars,
    Children,
}

/// A `[child]` named under `[parent:children]` (or a `[group:vars]`) before the group exists.
struct Pending {
    line: usize,
    vars_only: bool,
    parents: Vec<String>,
}

/// `[name]` or `[name:kind]` with a trailing comment allowed, as Ansible's section pattern.
fn section(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let (inner, after) = (&rest[..close], rest[close + 1..].trim_start());
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let (name, kind) = match inner.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inner, None),
    };
    let name_ok = !name.is_empty() && !name.contains(|c: char| c == ':' || c == ']' || c.is_whitespace());
    let kind_ok = kind.is_none_or(|k| !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_'));
    (name_ok && kind_ok).then_some((name, kind))
}

pub(super) fn load(file: &Path, text: &str, raw: &mut RawInventory) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut group = "ungrouped".to_string();
    let mut state = State::Hosts;
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut pending_order: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let at = |col: usize, len: usize| Some(Pos::new(lineno, indent + col + 1, len.max(1)));
        if let Some((name, kind)) = section(trimmed) {
            state = match kind {
                None | Some("hosts") => State::Hosts,
                Some("vars") => State::Vars,
                Some("children") => State::Children,
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
            group = name.to_string();
            if !raw.groups.contains_key(name) {
                if state == State::Vars && !pending.contains_key(name) {
                    pending.insert(
                        name.to_string(),
                        Pending {
                            line: lineno,
                            vars_only: true,
                            parents: Vec::new(),
                        },
                    );
                    pending_order.push(name.to_string());
                }
                raw.group(name);
            }
            if state != State::Vars {
                if let Some(p) = pending.remove(name) {
                    for parent in p.parents {
                        raw.add_child(&parent, name);
                    }
                }
            }
            continue;
        }
        if trimmed.starts_with('[') && !trimmed.contains(']') {
            diags.push(Diagnostic::new(
                file,
                at(0, trimmed.len()),
                "a section header must look like `[group]`, `[group:vars]` or `[group:children]`",
            ));
            continue;
        }
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            diags.push(
                Diagnostic::new(file, at(0, trimmed.len()), format!("invalid section `{trimmed}`")).hint(
                    "a section header looks like `[group]`, `[group:vars]` or `[group:children]`, without spaces",
                ),
            );
            continue;
        }
        match state {
            State::Hosts => {
                let words = match shlex(trimmed) {
                    Ok(w) => w,
                    Err(e) => {
                        diags.push(Diagnostic::new(file, at(0, trimmed.len()), e.to_string()));
                        continue;
                    }
                };
                let mut words = words.into_iter();
                let Some((host_col, written)) = words.next() else {
                    continue;
                };
                if written.contains('=') {
                    diags.push(
                        Diagnostic::new(
                            file,
                            at(host_col, written.len()),
                            format!("expected a host name, found `{written}`"),
                        )
                        .hint("a host line is `NAME key=value ...`; group variables go in a `[group:vars]` section"),
                    );
                    continue;
                }
                if written.ends_with(':') {
                    diags.push(Diagnostic::new(
                        file,
                        at(host_col, written.len()),
                        format!("host `{written}` ends in `:`, which is kept for a port (`host:2222`)"),
                    ));
                    continue;
                }
                let (host, port) = split_host_port(&written);
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
                        Some((k, v)) => {
                            let value = pyliteral::ini_value(v);
                            check_connection_var(
                                file,
                                k,
                                &value,
                                Pos::new(lineno, indent + col + k.len() + 2, v.len().max(1)),
                                &mut diags,
                            );
                            sources::check_vault(file, k, &value, &mut diags);
                            vars.insert(k.to_string(), value);
                        }
                        None => {
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
                    if let Err(e) = raw.add_hosts_port(&group, names, port, &vars) {
                        diags.push(Diagnostic::new(file, at(host_col, written.len()), e.to_string()));
                    }
                }
            }
            State::Vars => match trimmed.split_once('=') {
                Some((k, v)) => {
                    let value = pyliteral::ini_value(v.trim());
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
                    sources::check_vault(file, k.trim(), &value, &mut diags);
                    raw.set_group_var(&group, k.trim(), value);
                }
                None => diags.push(Diagnostic::new(
                    file,
                    at(0, trimmed.len()),
                    format!("expected `key=value` in `[{group}:vars]`, found `{trimmed}`"),
                )),
            },
            State::Children => {
                let child = trimmed.split('#').next().unwrap_or("").trim_end();
                if child.is_empty() || child.contains(|c: char| c == ':' || c == ']' || c.is_whitespace()) {
                    diags.push(Diagnostic::new(
                        file,
                        at(0, trimmed.len()),
                        format!("expected one group name per line in `[{group}:children]`, found `{trimmed}`"),
                    ));
                } else if child == "all" {
                    diags.push(Diagnostic::new(file, at(0, 3), "`all` cannot be a child group"));
                } else if raw.groups.contains_key(child) && !pending.get(child).is_some_and(|p| p.vars_only) {
                    raw.add_child(&group, child);
                } else {
                    let p = pending.entry(child.to_string()).or_insert_with(|| {
                        pending_order.push(child.to_string());
                        Pending {
                            line: lineno,
                            vars_only: false,
                            parents: Vec::new(),
                        }
                    });
                    p.vars_only = false;
                    p.parents.push(group.clone());
                }
            }
        }
    }
    for name in pending_order {
        let Some(p) = pending.remove(&name) else {
            continue;
        };
        let msg = if p.vars_only {
            format!("section `[{name}:vars]` is for a group `{name}` that this file never defines")
        } else {
            format!(
                "section `[{}:children]` names group `{name}`, which this file never defines",
                p.parents.last().map(String::as_str).unwrap_or("?")
            )
        };
        diags.push(Diagnostic::new(file, Some(Pos::new(p.line, 1, 1)), msg).hint(format!(
            "add a `[{name}]` section (it may be empty), as Ansible requires"
        )));
    }
    diags
}

/// `host:port` and `[host]:port` (Ansible's `parse_address`): the name, and the port if one was
/// written. A `[...]` that is a range stays part of the name.
pub(super) fn split_host_port(written: &str) -> (String, Option<u16>) {
    // `[2001:db8::1]:2222`
    if let Some(rest) = written.strip_prefix('[') {
        if let Some((host, port)) = rest.rsplit_once("]:") {
            if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) && !host.contains(']') {
                if let Ok(p) = port.parse() {
                    return (host.to_string(), Some(p));
                }
            }
        }
    }
    // `name:port`, where the name's colons are all inside `[...]`.
    if let Some((host, port)) = written.rsplit_once(':') {
        if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) && colons_bracketed(host) {
            if let Ok(p) = port.parse() {
                return (host.to_string(), Some(p));
            }
        }
    }
    (written.to_string(), None)
}

fn colons_bracketed(s: &str) -> bool {
    let mut depth = false;
    for c in s.chars() {
        match c {
            '[' if !depth => depth = true,
            ']' if depth => depth = false,
            '[' | ']' => return false,
            ':' if !depth => return false,
            _ => {}
        }
    }
    !depth
}

/// Why a host line cannot be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ShlexError {
    #[error("no closing quotation in `{0}`")]
    Unclosed(String),
    #[error("no escaped character at the end of `{0}`")]
    TrailingEscape(String),
}

/// Split a host line as Python's `shlex.split(line, comments=True)`: quotes removed, `\`
/// escapes, `#` starts a comment. Each word comes with its byte offset in the line.
pub(super) fn shlex(line: &str) -> Result<Vec<(usize, String)>, ShlexError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start: Option<usize> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push((s, std::mem::take(&mut cur)));
                }
            }
            '#' => break,
            '\'' => {
                start.get_or_insert(i);
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => cur.push(c),
                        None => return Err(ShlexError::Unclosed(line.to_string())),
                    }
                }
            }
            '"' => {
                start.get_or_insert(i);
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c @ ('\\' | '"' | '$' | '`'))) => cur.push(c),
                            Some((_, c)) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(ShlexError::Unclosed(line.to_string())),
                        },
                        Some((_, c)) => cur.push(c),
                        None => return Err(ShlexError::Unclosed(line.to_string())),
                    }
                }
            }
            '\\' => {
                start.get_or_insert(i);
                match chars.next() {
                    Some((_, c)) => cur.push(c),
                    None => return Err(ShlexError::TrailingEscape(line.to_string())),
                }
            }
            c => {
                start.get_or_insert(i);
                cur.push(c);
            }
        }
    }
    if let Some(s) = start {
        out.push((s, cur));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("jumper:5309"), ("jumper".into(), Some(5309)));
        assert_eq!(
            split_host_port("[2001:db8::1]:2222"),
            ("2001:db8::1".into(), Some(2222))
        );
        assert_eq!(
            split_host_port("[a:b][0:1].example.org:1022"),
            ("[a:b][0:1].example.org".into(), Some(1022))
        );
        assert_eq!(split_host_port("web[01:03]"), ("web[01:03]".into(), None));
        assert_eq!(split_host_port("2001:db8::1"), ("2001:db8::1".into(), None));
    }

    #[test]
    fn shell_words() {
        let w: Vec<String> = shlex(r#"h a="x y" b='1' c=d#e f"#)
            .unwrap()
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        assert_eq!(w, ["h", "a=x y", "b=1", "c=d"]);
        assert!(shlex("h a='x").is_err());
    }
}
