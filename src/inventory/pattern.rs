//! Ansible host patterns: names, `*` globs, `a:b` union, `a:&b` intersection, `a:!b` exclusion.
//! The result keeps inventory order.

use std::collections::HashSet;

use super::Inventory;

/// Why a pattern selects nothing useful.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("unknown group or host `{0}` in the pattern")]
    Unknown(String),
    #[error("the pattern `{0}` has an empty part")]
    Empty(String),
}

/// The indices (into `inv.hosts`) of the hosts `pattern` selects, in inventory order.
pub fn select(inv: &Inventory, pattern: &str) -> Result<Vec<usize>, PatternError> {
    let parts: Vec<&str> = pattern.split([':', ',']).map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty() || *p == "&" || *p == "!") {
        return Err(PatternError::Empty(pattern.to_string()));
    }
    let mut union: HashSet<usize> = HashSet::new();
    let mut intersections = Vec::new();
    let mut exclusions = Vec::new();
    for part in parts {
        if let Some(p) = part.strip_prefix('&') {
            intersections.push(matches(inv, p)?);
        } else if let Some(p) = part.strip_prefix('!') {
            exclusions.push(matches(inv, p)?);
        } else {
            union.extend(matches(inv, part)?);
        }
    }
    for set in intersections {
        union.retain(|h| set.contains(h));
    }
    for set in exclusions {
        union.retain(|h| !set.contains(h));
    }
    let mut out: Vec<usize> = union.into_iter().collect();
    out.sort_unstable();
    Ok(out)
}

/// Hosts matched by one part: a group, a host, or a glob over both.
fn matches(inv: &Inventory, part: &str) -> Result<HashSet<usize>, PatternError> {
    let is_glob = part.contains(['*', '?', '[']);
    let group_hosts = |g: &str| -> HashSet<usize> {
        inv.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| g == "all" || h.groups.iter().any(|x| x == g))
            .map(|(i, _)| i)
            .collect()
    };
    if !is_glob {
        if part == "all" || inv.groups.contains_key(part) {
            return Ok(group_hosts(part));
        }
        if let Some(i) = inv.hosts.iter().position(|h| h.name == part) {
            return Ok(HashSet::from([i]));
        }
        return Err(PatternError::Unknown(part.to_string()));
    }
    let pat = glob::Pattern::new(part).map_err(|_| PatternError::Unknown(part.to_string()))?;
    let mut out: HashSet<usize> = inv
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| pat.matches(&h.name))
        .map(|(i, _)| i)
        .collect();
    for g in inv.groups.keys().filter(|g| pat.matches(g)) {
        out.extend(group_hosts(g));
    }
    Ok(out)
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
        assert_eq!(names(&inv, "db"), ["web-04", "db-01"]);
        assert_eq!(names(&inv, "web:db"), ["web-01", "web-02", "web-03", "web-04", "db-01"]);
        assert_eq!(names(&inv, "web:&dc1"), ["web-01", "web-02"]);
        assert_eq!(names(&inv, "prod:!dc1"), ["web-03", "web-04"]);
        assert_eq!(names(&inv, "web-0[12]"), ["web-01", "web-02"]);
        assert_eq!(names(&inv, "d*"), ["web-01", "web-02", "web-04", "db-01"]);
        assert_eq!(names(&inv, "all:!web"), ["db-01"]);
        assert_eq!(names(&inv, "web-03"), ["web-03"]);
        assert_eq!(select(&inv, "nope"), Err(PatternError::Unknown("nope".into())));
        assert!(select(&inv, "web:").is_err());
    }
}
