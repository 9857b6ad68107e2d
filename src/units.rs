//! Durations (`500ms`, `5s`, `2m`, `1h`), sizes (`100MB`, `20MiB`) and rates (`20MiB/s`).

use std::time::Duration;

/// Parse a duration such as `500ms`, `5s`, `2m`, `1h30m`. A bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
        return Err(format!("`{s}` has no unit; write `{s}s`, `{s}ms` or `{s}m`"));
    }
    humantime::parse_duration(s).map_err(|_| format!("`{s}` is not a duration; write e.g. `500ms`, `5s`, `2m` or `1h`"))
}

/// Parse a size in bytes: `100MB` (10^6), `20MiB` (2^20), `512k`, `1GiB`, `0`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a size; write e.g. `100MB`, `20MiB` or `512KiB`");
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "k" | "K" | "kB" | "KB" => 1e3,
        "KiB" | "Ki" => 1024.0,
        "M" | "MB" => 1e6,
        "MiB" | "Mi" => 1024.0 * 1024.0,
        "G" | "GB" => 1e9,
        "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = n * mult;
    // Far above any real size or rate; also keeps the float-to-integer conversion exact enough
    // and every later sum of sizes from overflowing.
    if !bytes.is_finite() || bytes > SIZE_MAX as f64 {
        return Err(format!("`{s}` is too large; at most 1PiB"));
    }
    Ok(bytes as u64)
}

/// The largest size or rate accepted: 1 PiB.
pub const SIZE_MAX: u64 = 1 << 50;

/// An upper bound as the operator would write it: `7d`, `24h`, `90s`.
pub fn bound_text(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 2 * 86_400 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

/// Parse a rate in bytes per second: `20MiB/s`, `0` (no cap).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let Some(size) = t.strip_suffix("/s") else {
        return Err(format!("`{s}` is not a rate; write e.g. `20MiB/s`, or 0 for no cap"));
    };
    parse_size(size).map_err(|e| {
        if e.ends_with("too large; at most 1PiB") {
            format!("`{s}` is too large; at most 1PiB/s")
        } else {
            format!("`{s}` is not a rate; write e.g. `20MiB/s`, or 0 for no cap")
        }
    })
}

/// A duration as people write it: `1.8s`, `250ms`, `2m05s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A size as people read it: `10.0 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// "s" unless there is exactly one: `format!("{n} host{}", plural(n))`.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_size("20MiB").unwrap(), 20 * 1024 * 1024);
        assert_eq!(parse_rate("20MiB/s").unwrap(), 20 * 1024 * 1024);
        assert_eq!(parse_rate("0").unwrap(), 0);
        assert!(parse_rate("20MiB").is_err());
        assert!(parse_size("lots").is_err());
        // Too large to be real, or to convert without saturating: refused, not wrapped.
        assert!(parse_size("99999999999999999999999999GiB").is_err());
        assert!(parse_rate("2000000GiB/s").is_err());
        assert_eq!(parse_size("1000000GiB").unwrap(), 1_000_000 << 30);
        assert_eq!(bound_text(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(bound_text(Duration::from_secs(24 * 3600)), "24h");
        assert_eq!(human_size(10 * 1024 * 1024), "10.0 MiB");
    }
}
