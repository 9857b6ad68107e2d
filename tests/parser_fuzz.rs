//! The parsers of both files against arbitrary input: random YAML-looking text, and random
//! documents built from the real keys with values of every type. Nothing may panic; every
//! rejection must be a diagnostic.

use std::io::Write;

use proptest::prelude::*;
use serde_json::{json, Value};
use tranche::inventory::{Inventory, HOSTS_MAX};
use tranche::playbook::check::{SILENCE_MAX, WAIT_MAX};
use tranche::playbook::{Pause, Playbook};

const PLAYBOOK_KEYS: &[&str] = &[
    "service",
    "version",
    "hosts",
    "artifact",
    "path",
    "url",
    "sha256",
    "layout",
    "root",
    "keep",
    "rollout",
    "canary",
    "canary_pause",
    "batch",
    "pause",
    "max_failures",
    "on_failure",
    "stage",
    "concurrency",
    "bandwidth",
    "registry",
    "kind",
    "address",
    "backend",
    "server",
    "drain",
    "deregister",
    "register",
    "delegate",
    "method",
    "headers",
    "body",
    "expect_status",
    "stop",
    "command",
    "timeout",
    "kill_command",
    "start",
    "health",
    "http",
    "tcp",
    "expect_body",
    "interval",
    "hooks",
    "precheck",
    "after_start",
    "silence",
    "alertmanager",
    "matchers",
    "duration",
    "gate",
    "prometheus",
    "query",
    "max",
    "for",
    "window",
    "spread",
    "max_per_zone",
    "become",
    "format",
    "basic_auth",
    "s3",
    "image",
    "digest",
    "runtime",
    "insecure",
    "runtime_args",
    "network",
    "ports",
    "volumes",
    "env",
    "run_args",
    "strategy",
    "blue_green",
    "slots",
    "blue",
    "green",
    "port",
    "canary_weight",
    "retire_after",
    "login",
    "username",
    "password",
    "region",
    "expires",
];
const INVENTORY_KEYS: &[&str] = &[
    "all",
    "children",
    "hosts",
    "vars",
    "web",
    "db",
    "web-[01:03]",
    "web-[0:9999999999]",
    "r[1:1000]-n[1:1000]",
    "n[0:18446744073709551615:7]",
    "x[a:z:0]",
    "port",
    "address",
    "user",
    "zone",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z0-9%./:{} |-]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("25%"),
            Just("5s"),
            Just("confirm"),
            Just("haproxy"),
            Just("{{ host.name }}"),
            Just("{{ x"),
            Just("rollback"),
            Just("0"),
            Just("100%"),
            Just("20MiB/s"),
            // Values past every bound: they must be errors, never panics or allocations.
            Just("100000y"),
            Just("99999999999999999999h"),
            Just("1e309s"),
            Just("99999999999999999999GiB/s"),
            Just("1B/s"),
            Just("18446744073709551615"),
            Just("-1"),
            Just("99999999999%"),
            Just("2.0.0$(touch${IFS}x)"),
            Just("web-02;disable frontend www"),
            Just("http://m/$(id)")
        ]
        .prop_map(Value::from),
    ]
}

fn document(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(keys), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn yamlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[a-z_]{1,8}".prop_map(|s| s),
            Just(": ".to_string()),
            Just("\n".to_string()),
            Just("\n  ".to_string()),
            Just("- ".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(", ".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("&a ".to_string()),
            Just("*a".to_string()),
            Just("<<: ".to_string()),
            Just("\t".to_string()),
            Just("|\n".to_string()),
            Just("# c".to_string()),
            Just("[web]\n".to_string()),
            Just("=".to_string()),
            Just("{{ ".to_string()),
            Just("---\n".to_string()),
            Just("é".to_string()),
            Just("&b [*a, *a, *a, *a, *a, *a, *a, *a]".to_string()),
            Just("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_string()),
            Just("web-[0:99999999999999]".to_string()),
            Just("99999999999999999999".to_string()),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

fn parse_both(text: &str, ext: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("f.{ext}"));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    // Either a value or diagnostics that name the file; a panic fails the test.
    if let Err(d) = Playbook::load(&path, &[]) {
        assert!(!d.is_empty());
        assert!(d.0.iter().all(|x| x.file == path));
        let _ = d.to_string();
    }
    if let Err(d) = Inventory::load(std::slice::from_ref(&path)) {
        assert!(!d.is_empty());
        let _ = d.to_string();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in yamlish()) {
        parse_both(&text, "yml");
        parse_both(&text, "ini");
    }

    #[test]
    fn random_playbook_documents_never_panic(doc in document(PLAYBOOK_KEYS)) {
        parse_both(&serde_yaml::to_string(&doc).unwrap(), "yml");
    }

    #[test]
    fn random_inventory_documents_never_panic(doc in document(INVENTORY_KEYS)) {
        parse_both(&serde_yaml::to_string(&doc).unwrap(), "yml");
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        parse_both(&String::from_utf8_lossy(&bytes), "yml");
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A number as a range bound: small ones, and ones near every integer limit.
fn bound() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..50).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("00".to_string()),
        "[a-zA-Z]".prop_map(|s| s),
    ]
}

fn range() -> impl Strategy<Value = String> {
    (bound(), bound(), proptest::option::of(bound())).prop_map(|(a, b, step)| match step {
        Some(s) => format!("[{a}:{b}:{s}]"),
        None => format!("[{a}:{b}]"),
    })
}

/// A duration as an operator might mistype it, huge ones included.
fn duration_text() -> impl Strategy<Value = String> {
    let unit = proptest::sample::select(&["ms", "s", "m", "h", "d", "w", "y", "ns", ""][..]);
    prop_oneof![
        (any::<u64>(), unit.clone()).prop_map(|(n, u)| format!("{n}{u}")),
        (0u64..100_000, unit).prop_map(|(n, u)| format!("{n}{u}")),
        Just("1e309s".to_string()),
        Just("0".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Host names with one to three ranges of any bounds: an error or at most HOSTS_MAX hosts,
    /// counted before anything is expanded (so this runs in milliseconds, not until the memory
    /// runs out).
    #[test]
    fn host_ranges_never_exceed_the_cap(parts in proptest::collection::vec(range(), 1..4), ini in any::<bool>()) {
        let name = format!("h{}", parts.join("-"));
        let dir = tempfile::tempdir().unwrap();
        let path = if ini {
            write(&dir, "inv.ini", &format!("[web]\n{name}\n"))
        } else {
            write(&dir, "inv.yml", &format!("web:\n  hosts:\n    \"{name}\":\n"))
        };
        match Inventory::load(std::slice::from_ref(&path)) {
            Ok(inv) => prop_assert!(inv.hosts.len() <= HOSTS_MAX),
            Err(d) => {
                prop_assert!(d.0.iter().all(|x| x.pos.is_some()), "{}", d);
            }
        }
    }

    /// Every duration of the playbook is an error or within its bound, whatever is written.
    #[test]
    fn durations_are_bounded(text in duration_text(), key in 0usize..7) {
        let dir = tempfile::tempdir().unwrap();
        write(&dir, "app.tar.gz", "x");
        let setting = [
            format!("silence: {{alertmanager: \"http://a\", matchers: {{a: b}}, duration: \"{text}\"}}"),
            format!("stop: {{timeout: \"{text}\"}}"),
            format!("health: {{http: \"http://x\", timeout: \"{text}\", interval: \"{text}\"}}"),
            format!("rollout: {{pause: \"{text}\", canary_pause: \"{text}\"}}"),
            format!("registry: {{kind: haproxy, address: \"lb:9999\", backend: b, drain: \"{text}\"}}"),
            format!("rollout: {{gate: {{prometheus: \"http://p\", query: q, max: 1, for: \"{text}\"}}}}"),
            format!("registry: {{kind: command, deregister: x, register: y, drain: \"{text}\"}}"),
        ][key].clone();
        let path = write(&dir, "p.yml", &format!("service: demo\nversion: \"1\"\nartifact: {{path: app.tar.gz}}\n{setting}\n"));
        if let Ok(p) = Playbook::load(&path, &[]) {
            let mut waits = vec![p.stop.timeout];
            if let Some(h) = &p.health {
                waits.extend([h.timeout, h.interval]);
            }
            for pause in [p.rollout.pause, p.rollout.canary_pause] {
                if let Pause::For(d) = pause {
                    waits.push(d);
                }
            }
            if let Some(g) = &p.rollout.gate {
                waits.push(g.hold);
            }
            waits.push(p.registry.drain);
            prop_assert!(waits.iter().all(|d| *d <= WAIT_MAX), "{text}: {waits:?}");
            if let Some(s) = &p.silence {
                prop_assert!(s.duration <= SILENCE_MAX, "{text}");
            }
        }
    }
}
