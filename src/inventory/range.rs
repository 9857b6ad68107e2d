//! Ansible host ranges (`web-[01:20]`, `db[a:c]`, `n[0:10:2]`), counted before they are
//! expanded, so a range too large is an error and not an allocation.

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

/// Why the inside of one `[...]` is not a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", kind.message(inner))]
struct RangeProblem {
    inner: String,
    kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ProblemKind {
    Shape,
    Step(String),
    TooMany,
    Backwards,
    Items,
}

impl ProblemKind {
    fn message(&self, inner: &str) -> String {
        match self {
            ProblemKind::Shape => format!("host range `[{inner}]` must be `[start:end]` or `[start:end:step]`"),
            ProblemKind::Step(s) => format!("bad step `{s}` in host range `[{inner}]`"),
            ProblemKind::TooMany => format!("host range `[{inner}]` has more than {HOSTS_MAX} hosts"),
            ProblemKind::Backwards => format!("host range `[{inner}]` goes backwards"),
            ProblemKind::Items => {
                format!("host range `[{inner}]` must be numbers (`[01:20]`) or single letters (`[a:f]`)")
            }
        }
    }
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
fn parse_range(inner: &str) -> Result<Piece<'static>, RangeProblem> {
    let bad = |kind| RangeProblem {
        inner: inner.to_string(),
        kind,
    };
    let parts: Vec<&str> = inner.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(bad(ProblemKind::Shape));
    }
    let step: u64 = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| bad(ProblemKind::Step(s.to_string())))?,
        None => 1,
    };
    // `mail[:5]` starts at 0, as in Ansible.
    let start = if parts[0].is_empty() { "0" } else { parts[0] };
    let end = parts[1];
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if digits(start) && digits(end) {
        let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) else {
            return Err(bad(ProblemKind::TooMany));
        };
        if a > b {
            return Err(bad(ProblemKind::Backwards));
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
            return Err(bad(ProblemKind::Backwards));
        }
        let count = u64::from(b - a) / step + 1;
        // With one item the step is never applied; keep it small so `i * step` stays a byte.
        let step = u8::try_from(step).unwrap_or(u8::MAX);
        return Ok(Piece::Letters { start: a, step, count });
    }
    Err(bad(ProblemKind::Items))
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
        let piece = parse_range(inner).map_err(|p| at(p.to_string(), width))?;
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
