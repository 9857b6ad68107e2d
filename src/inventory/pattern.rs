//! Ansible host patterns, evaluated as ansible-core's `InventoryManager.get_hosts` does: parts
//! split on `,` (or `:`), plain parts first, then `&` intersections, then `!` exclusions; each
//! part a host, a group (its hosts and its children's, in Ansible's order), a glob (`web-0*`), or
//! a regex (`~web0[12]`), with an optional subscript (`web[0]`, `web[-1]`, `web[1:]`, `web[0:2]`).
//! `--limit` also takes `@file` (one pattern a line, as a retry file).

use std::collections::HashSet;

use super::Inventory;

/// Why a pattern cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("unknown group or host `{0}` in the pattern")]
    Unknown(String),
    #[error("the pattern `{0}` has an empty part")]
    Empty(String),
    #[error("no host matched the subscripted pattern `{0}`")]
    Subscript(String),
    #[error("invalid regular expression in `{0}`: {1}")]
    Regex(String, String),
    #[error("cannot read the limit file `{0}`: {1}")]
    LimitFile(String, String),
}

/// Split like Ansible's `split_host_pattern`: on commas if there are any, else on colons outside
/// `[...]` (an IPv6 address or `host:port` stays whole).
fn split(pattern: &str) -> Vec<String> {
    let parts: Vec<String> = if pattern.contains(',') {
        pattern.split(',').map(str::to_string).collect()
    } else if is_address(pattern) {
        vec![pattern.to_string()]
    } else {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut bracket = false;
        for c in pattern.chars() {
            match c {
                '[' if !bracket => {
                    bracket = true;
                    cur.push(c);
                }
                ']' if bracket => {
                    bracket = false;
                    cur.push(c);
                }
                ':' if !bracket => out.push(std::mem::take(&mut cur)),
                c if c.is_whitespace() && !bracket => out.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        out.push(cur);
        out
    };
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// An IPv6 address (`2001:db8::1`), which `:` must not split.
fn is_address(p: &str) -> bool {
    p.matches(':').count() >= 2 && p.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
}

/// The indices (into `inv.hosts`) of the hosts `pattern` selects, in Ansible's order.
pub fn select(inv: &Inventory, pattern: &str) -> Result<Vec<usize>, PatternError> {
    let raw: Vec<&str> = pattern.split([':', ',']).map(str::trim).collect();
    if raw.iter().any(|p| *p == "&" || *p == "!") || pattern.trim().is_empty() {
        return Err(PatternError::Empty(pattern.to_string()));
    }
    if pattern.trim_end().ends_with([',', ':']) || pattern.trim_start().starts_with([',', ':']) {
        return Err(PatternError::Empty(pattern.to_string()));
    }
    evaluate(inv, &split(pattern))
}

/// `--limit`: like [`select`], and `@file` reads one pattern a line from the file.
pub fn select_limit(inv: &Inventory, limit: &str) -> Result<Vec<usize>, PatternError> {
    let mut parts = Vec::new();
    for p in split(limit) {
        if let Some(file) = p.strip_prefix('@') {
            let text =
                std::fs::read_to_string(file).map_err(|e| PatternError::LimitFile(file.to_string(), e.to_string()))?;
            parts.extend(text.split('\n').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()));
        } else {
            parts.push(p);
        }
    }
    if parts.is_empty() {
        return Err(PatternError::Empty(limit.to_string()));
    }
    evaluate(inv, &parts)
}

fn evaluate(inv: &Inventory, parts: &[String]) -> Result<Vec<usize>, PatternError> {
    let mut regular: Vec<&str> = parts
        .iter()
        .map(String::as_str)
        .filter(|p| !p.starts_with(['&', '!']))
        .collect();
    if regular.is_empty() {
        regular.push("all");
    }
    let ordered = regular
        .into_iter()
        .chain(parts.iter().map(String::as_str).filter(|p| p.starts_with('&')))
        .chain(parts.iter().map(String::as_str).filter(|p| p.starts_with('!')));
    let mut hosts: Vec<usize> = Vec::new();
    for p in ordered {
        if let Some(i) = inv.host_index(p) {
            hosts.push(i);
            continue;
        }
        let that = one(inv, p)?;
        if p.starts_with('!') {
            let that: HashSet<usize> = that.into_iter().collect();
            hosts.retain(|h| !that.contains(h));
        } else if p.starts_with('&') {
            let that: HashSet<usize> = that.into_iter().collect();
            hosts.retain(|h| that.contains(h));
        } else {
            let existing: HashSet<usize> = hosts.iter().copied().collect();
            hosts.extend(that.into_iter().filter(|h| !existing.contains(h)));
        }
    }
    let mut seen = HashSet::new();
    hosts.retain(|h| seen.insert(*h));
    Ok(hosts)
}

/// Ansible's subscript: `name[3]`, `name[-1]`, `name[1:]`, `name[1:3]` (inclusive).
fn split_subscript(p: &str) -> (&str, Option<(i64, Option<i64>)>) {
    if p.starts_with('~') || !p.ends_with(']') {
        return (p, None);
    }
    let Some(open) = p.rfind('[') else {
        return (p, None);
    };
    if open == 0 {
        return (p, None);
    }
    let inner = &p[open + 1..p.len() - 1];
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let idx = inner.strip_prefix('-').unwrap_or(inner);
    if digits(idx) {
        return match inner.parse() {
            Ok(i) => (&p[..open], Some((i, None))),
            Err(_) => (p, None),
        };
    }
    if let Some((a, b)) = inner.split_once([':', '-']) {
        if digits(a) && (b.is_empty() || digits(b)) {
            let (Ok(a), end) = (a.parse(), if b.is_empty() { Ok(-1) } else { b.parse() }) else {
                return (p, None);
            };
            if let Ok(end) = end {
                return (&p[..open], Some((a, Some(end))));
            }
        }
    }
    (p, None)
}

/// The hosts one part matches, before `&`/`!` apply, duplicates kept (as Ansible does before its
/// subscript), then the subscript.
fn one(inv: &Inventory, part: &str) -> Result<Vec<usize>, PatternError> {
    let p = part.strip_prefix(['&', '!']).unwrap_or(part);
    if p.is_empty() {
        return Err(PatternError::Empty(part.to_string()));
    }
    let (expr, sub) = split_subscript(p);
    let matcher = Matcher::new(expr)?;
    let mut out = Vec::new();
    let groups: Vec<&str> = inv
        .groups
        .keys()
        .map(String::as_str)
        .filter(|g| matcher.matches(g))
        .collect();
    for g in &groups {
        out.extend(inv.group_hosts(g));
    }
    if groups.is_empty() || expr.starts_with('~') || expr.contains(['.', '?', '*', '[']) {
        out.extend(
            inv.hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| matcher.matches(&h.name))
                .map(|(i, _)| i),
        );
    }
    if groups.is_empty() && out.is_empty() && !matcher.is_wild() {
        // Ansible warns and matches nothing; a misspelt name is an error here.
        return Err(PatternError::Unknown(expr.to_string()));
    }
    let Some((start, end)) = sub else {
        return Ok(out);
    };
    if out.is_empty() {
        return Ok(out);
    }
    let n = out.len() as i64;
    match end {
        // `[x:0]` is `[x]` in Ansible (its end is tested for truth).
        Some(end) if end != 0 => {
            let end = if end == -1 { n - 1 } else { end };
            let (a, b) = (py_index(start, n), py_index(end + 1, n));
            Ok(if a < b { out[a..b].to_vec() } else { Vec::new() })
        }
        _ => {
            let i = if start < 0 { n + start } else { start };
            if i < 0 || i >= n {
                return Err(PatternError::Subscript(p.to_string()));
            }
            Ok(vec![out[i as usize]])
        }
    }
}

/// A Python slice bound clamped into `0..=n`.
fn py_index(i: i64, n: i64) -> usize {
    let i = if i < 0 { (n + i).max(0) } else { i.min(n) };
    i as usize
}

enum Matcher {
    Exact(String),
    Glob(glob::Pattern),
    Regex(regex_automata::meta::Regex),
}

impl Matcher {
    fn new(expr: &str) -> Result<Matcher, PatternError> {
        if let Some(re) = expr.strip_prefix('~') {
            // Python's `re.match`: anchored at the start only.
            return regex_automata::meta::Regex::new(&format!("^(?:{re})"))
                .map(Matcher::Regex)
                .map_err(|e| PatternError::Regex(expr.to_string(), e.to_string()));
        }
        if expr.contains(['*', '?', '[']) {
            if let Ok(g) = glob::Pattern::new(expr) {
                return Ok(Matcher::Glob(g));
            }
        }
        Ok(Matcher::Exact(expr.to_string()))
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Exact(e) => e == s,
            Matcher::Glob(g) => g.matches(s),
            Matcher::Regex(r) => r.is_match(s),
        }
    }

    fn is_wild(&self) -> bool {
        !matches!(self, Matcher::Exact(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn inv() -> Inventory {
        let mut f = tempfile::Builder::new().suffix(".ini").tempfile().unwrap();
        write!(
            f,
            "[web]\nweb-[01:04]\n[db]\ndb-01\nweb-04\n[dc1]\nweb-01\nweb-02\ndb-01\n[prod:children]\nweb\ndb\n"
        )
        .unwrap();
        Inventory::load(&[f.path().to_path_buf()]).unwrap()
    }

    fn names(inv: &Inventory, p: &str) -> Vec<String> {
        select(inv, p)
            .unwrap()
            .into_iter()
            .map(|i| inv.hosts[i].name.clone())
            .collect()
    }

    #[test]
    fn union_intersection_exclusion() {
        let inv = inv();
        // Orders and results as ansible-core 2.19 gives them for this inventory.
        assert_eq!(names(&inv, "db"), ["db-01", "web-04"]);
        assert_eq!(names(&inv, "web:db"), ["web-01", "web-02", "web-03", "web-04", "db-01"]);
        assert_eq!(names(&inv, "web:&dc1"), ["web-01", "web-02"]);
        assert_eq!(names(&inv, "prod:!dc1"), ["web-03", "web-04"]);
        // `[12]` is a subscript (the 13th host of `web-0`), not a glob: Ansible matches nothing
        // and warns; tranche says the name is unknown.
        assert_eq!(select(&inv, "web-0[12]"), Err(PatternError::Unknown("web-0".into())));
        assert_eq!(names(&inv, "web-0[!34]"), ["web-01", "web-02"]);
        assert_eq!(names(&inv, "d*"), ["db-01", "web-04", "web-01", "web-02"]);
        assert_eq!(names(&inv, "all:!web"), ["db-01"]);
        assert_eq!(names(&inv, "web-03"), ["web-03"]);
        assert_eq!(select(&inv, "nope"), Err(PatternError::Unknown("nope".into())));
        assert!(select(&inv, "web:").is_err());
    }
}
