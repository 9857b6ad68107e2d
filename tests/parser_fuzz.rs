//! The parsers of both files against arbitrary input: random YAML-looking text, and random
//! documents built from the real keys with values of every type. Nothing may panic; every
//! rejection must be a diagnostic.

use std::io::Write;

use proptest::prelude::*;
use serde_json::{json, Value};
use tranche::inventory::Inventory;
use tranche::playbook::Playbook;

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
];
const INVENTORY_KEYS: &[&str] = &[
    "all",
    "children",
    "hosts",
    "vars",
    "web",
    "db",
    "web-[01:03]",
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
            Just("20MiB/s")
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
