//! What the values that reach a host or a load balancer may contain (SPEC §7): versions, layout
//! roots, rendered artifact URLs and HAProxy names, and the bounds of durations. Each check
//! returns the problem as a fragment that reads after the value's name, so the loader can place
//! it (`file:line:col`) and the registry can refuse it as a last line of defence.

use std::time::Duration;

/// The longest version accepted: it names a folder on every host (one path component).
pub const VERSION_MAX_LEN: usize = 128;

/// Upper bounds of the playbook's durations. A silence outlives a stuck run by design, so it may
/// last a week; every other wait (stop and health timeouts, pauses, drains, gate windows) is part
/// of one host's pipeline and a day is already far past any sane value.
pub const SILENCE_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
pub const WAIT_MAX: Duration = Duration::from_secs(24 * 3600);

/// The problem with `v` as a release version, if any: `[A-Za-z0-9._+-]+`, not `.` or `..`, at
/// most [`VERSION_MAX_LEN`] characters.
pub fn version_problem(v: &str) -> Option<String> {
    if v.is_empty() {
        return Some("must not be empty".into());
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_alphanumeric() || "._+-".contains(*c))) {
        return Some(format!(
            "may only contain letters, digits, `.`, `_`, `+` and `-`, not {}",
            describe_char(c)
        ));
    }
    if v == "." || v == ".." {
        return Some(format!("cannot be \"{v}\": it names a folder on every host"));
    }
    if v.len() > VERSION_MAX_LEN {
        return Some(format!("is {} characters long; at most {VERSION_MAX_LEN}", v.len()));
    }
    None
}

/// The problem with `root` as `layout.root`, if any: an absolute path below `/` without `.` or
/// `..` segments, whitespace or control characters.
pub fn layout_root_problem(root: &str) -> Option<String> {
    if !root.starts_with('/') || root.trim_end_matches('/').is_empty() {
        return Some("must be an absolute path below `/`".into());
    }
    if let Some(c) = root.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("must not contain {}", describe_char(c)));
    }
    if root.split('/').any(|s| s == ".." || s == ".") {
        return Some("must not contain `.` or `..` segments".into());
    }
    None
}

/// The characters a rendered artifact URL may contain: RFC 3986's unreserved and delimiter
/// characters, minus every one a shell gives a meaning to (`;&|$\`'"\<>(){}*` and the like).
pub fn url_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@+,=%".contains(c)
}

/// What [`url_problem`] accepts, for hints.
pub const URL_CHARS_HINT: &str =
    "a URL a host downloads from may hold letters, digits and `-._~:/?#[]@+,=%` only: percent-encode the rest";

/// The problem with `url` as a URL a host downloads from, if any: `http://` or `https://`, a
/// host, and no whitespace, control character or shell metacharacter.
pub fn url_problem(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Some("must start with http:// or https://".into());
    };
    if let Some(c) = url.chars().find(|c| !url_char_ok(*c)) {
        return Some(format!("must not contain {}", describe_char(c)));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Some("has no host after the scheme".into());
    }
    None
}

/// The first character of `name` outside HAProxy's name characters (its `invalid_char()`:
/// letters, digits, `-`, `_`, `.` and `:`), or the problem with an empty name.
pub fn haproxy_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    name.chars().find(|c| !haproxy_char_ok(*c)).map(|c| {
        format!(
            "may only contain letters, digits, `-`, `_`, `.` and `:` (HAProxy's name characters), not {}",
            describe_char(c)
        )
    })
}

/// `blue_green.canary_weight` with a registry that cannot split traffic: every kind but
/// `haproxy` registers an instance or does not, so no side can get a percent. The message and
/// the hint.
pub fn canary_weight_problem(weight: u8, registry_kind: &str) -> Option<(String, String)> {
    if weight == 0 || registry_kind == "haproxy" {
        return None;
    }
    Some((
        format!(
            "`blue_green.canary_weight: {weight}` needs a registry with weights, and the `{registry_kind}` registry has none: it cannot give {weight}% of the traffic to one side"
        ),
        "remove `canary_weight` (the gate then watches after the switch, and a breach switches back), or use `registry.kind: haproxy`".into(),
    ))
}

/// HAProxy's name characters (its `invalid_char()`): letters, digits, `-`, `_`, `.` and `:`.
pub fn haproxy_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.:".contains(c)
}

/// A character as a message shows it: `;` in backquotes, a space or a control character named.
pub fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        '`' => "a backquote".into(),
        c if c.is_control() || c.is_whitespace() => format!("the character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["2.0.0", "1.2.3-rc.1+build.5", "v2_0", "20261201"] {
            assert_eq!(version_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "2.0.0$(touch${IFS}x)",
            "2.0 0",
            "a/b",
            "a;b",
            "a`b`",
            "a'b",
            "a\nb",
            "é",
        ] {
            assert!(version_problem(bad).is_some(), "{bad:?} passed");
        }
        assert!(version_problem(&"1".repeat(VERSION_MAX_LEN)).is_none());
        assert!(version_problem(&"1".repeat(VERSION_MAX_LEN + 1)).is_some());
    }

    #[test]
    fn layout_roots() {
        for ok in ["/srv/demo", "/srv/demo/", "/opt/a..b", "/srv/my.app"] {
            assert_eq!(layout_root_problem(ok), None, "{ok}");
        }
        for bad in [
            "srv/demo",
            "/",
            "//",
            "/srv/../etc",
            "/srv/..",
            "/srv/./x",
            "/srv/de mo",
            "/srv/de\tmo",
            "/srv/a\nb",
            "/srv/a\u{7f}",
        ] {
            assert!(layout_root_problem(bad).is_some(), "{bad:?} passed");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "http://mirror/x.tar.gz",
            "https://mirror.dc1.example:8443/a/b-1.0_2~x.tar.gz?sig=a%20b#f",
            "http://[::1]:8080/x",
            "https://u@host/x,y+z=1",
        ] {
            assert_eq!(url_problem(ok), None, "{ok}");
        }
        for bad in [
            "ftp://mirror/x",
            "http://",
            "http:///x",
            "mirror/x",
            "http://mirror/$(touch /tmp/x)",
            "http://mirror/`id`",
            "http://mirror/x;id",
            "http://mirror/x&id",
            "http://mirror/x|id",
            "http://mirror/x'y",
            "http://mirror/x\"y",
            "http://mirror/x\\y",
            "http://mirror/x<y",
            "http://mirror/x>y",
            "http://mirror/x(y)",
            "http://mirror/{x}",
            "http://mirror/*",
            "http://mirror/x y",
            "http://mirror/x\ny",
            "http://mirror/x\ty",
            "http://mirror/x\u{0}",
            "http://mirror/é",
        ] {
            assert!(url_problem(bad).is_some(), "{bad:?} passed");
        }
    }

    #[test]
    fn haproxy_names() {
        for ok in ["web", "web-02", "be_app.v2", "srv:1"] {
            assert_eq!(haproxy_name_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "web-02;disable frontend www",
            "web 02",
            "web/02",
            "web\n02",
            "web#",
            "wéb",
        ] {
            assert!(haproxy_name_problem(bad).is_some(), "{bad:?} passed");
        }
    }
}
