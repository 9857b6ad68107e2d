//! The plan as `run_started` carries it (and as `tranche plan --format json` prints it).

use serde::{Deserialize, Serialize};

/// The plan of a run as `run_started` carries it: the same document as `tranche plan --format
/// json` (schema version 1, documented in the README). Fields are only ever added; a journal
/// written by an older tranche, with fewer fields, still reads (missing fields take their
/// defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanSummary {
    pub v: u32,
    pub service: String,
    pub version: String,
    /// The playbook's `hosts:` pattern.
    pub hosts: String,
    pub targeted: usize,
    pub batches: Vec<PlanBatch>,
    pub stage: PlanStage,
    pub layout: PlanLayout,
    pub failure: PlanFailure,
    pub pauses: PlanPauses,
    /// The registry kind (`none`, `command`, `haproxy`, or an HTTP preset).
    pub registry: String,
    /// `zone` or `none`.
    pub spread: String,
    pub max_per_zone: Option<usize>,
    pub window: Option<usize>,
    pub gate: Option<PlanGate>,
    pub silence: Option<PlanSilence>,
    #[serde(rename = "become")]
    pub become_root: bool,
    /// `--shard K/N`: the part of the targeted hosts this plan covers; `null` without it.
    pub shard: Option<PlanShard>,
    /// `rolling` or `blue-green` (empty in a journal written before strategies: rolling).
    pub strategy: String,
    /// Blue-green's two sides and its settings; `null` for a rolling release.
    pub blue_green: Option<PlanBlueGreen>,
}

/// Blue-green (`strategy: blue-green`): which side is where. Which side is live is read on the
/// hosts when the release starts, so the plan does not say it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanBlueGreen {
    /// `slots` (two instances on every host) or `groups` (two host groups).
    pub shape: String,
    /// Blue, then green.
    pub sides: Vec<PlanSide>,
    /// Percent of the traffic the new side takes while the gate watches, before the switch.
    pub canary_weight: u8,
    /// Milliseconds after a switch that held before the old side is stopped; `null`: by hand.
    pub retire_after: Option<u64>,
}

/// One side of blue-green.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanSide {
    /// `blue` or `green`.
    pub side: String,
    /// The side's release folder on its hosts (`layout.root/<side>` for slots).
    pub root: String,
    /// The slot's port (slots); `null` for groups.
    pub port: Option<u16>,
    /// The side's host pattern (groups); `null` for slots.
    pub group: Option<String>,
    /// The targeted hosts on this side, by name.
    pub hosts: Vec<String>,
}

/// A shard of the targeted hosts (`--shard K/N`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanShard {
    /// K, from 1.
    pub index: usize,
    /// N.
    pub count: usize,
    /// The targeted hosts of all shards together (this shard's are `targeted`).
    pub of: usize,
    /// Zones of this shard with hosts in another shard too: `max_per_zone` holds for them per
    /// shard only.
    pub shared_zones: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanBatch {
    pub number: usize,
    pub canary: bool,
    pub size: usize,
    pub zones: Vec<String>,
    pub hosts: Vec<PlanHost>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanStage {
    /// `push` (the controller uploads) or `pull` (each host downloads).
    pub mode: String,
    /// The artifact's path or URL.
    pub source: String,
    pub sha256: String,
    /// Bytes, for a pushed artifact.
    pub size: Option<u64>,
    pub concurrency: usize,
    /// Bytes per second per host; 0: unlimited.
    pub bandwidth: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanLayout {
    pub root: String,
    pub release_dir: String,
    pub keep: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanFailure {
    /// As written in the playbook (`1`, `10%`).
    pub max_failures: String,
    /// Hosts that may fail, worked out for this run.
    pub budget: usize,
    pub on_failure: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanPauses {
    pub canary: PlanPause,
    pub between_batches: PlanPause,
}

/// A pause: milliseconds, or `"confirm"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanPause {
    Ms(u64),
    Word(PauseWord),
}

impl Default for PlanPause {
    fn default() -> Self {
        PlanPause::Ms(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseWord {
    Confirm,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanGate {
    /// Without credentials.
    pub prometheus: String,
    /// `token`, `basic_auth`, or none.
    pub auth: Option<String>,
    pub query: String,
    pub max: f64,
    pub for_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanSilence {
    /// Without credentials.
    pub alertmanager: String,
    pub auth: Option<String>,
    pub matchers: Vec<PlanMatcher>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanMatcher {
    pub name: String,
    pub value: String,
    pub regex: bool,
}

impl PlanSummary {
    /// Scrub every text of the plan (a test fills every text field with a secret, so a field
    /// added without a line here fails it).
    pub fn redact_with(&mut self, r: &crate::redact::Redactor) {
        let PlanSummary {
            v: _,
            service,
            version,
            hosts,
            targeted: _,
            batches,
            stage,
            layout,
            failure,
            pauses: _,
            registry,
            spread,
            max_per_zone: _,
            window: _,
            gate,
            silence,
            become_root: _,
            shard,
            strategy,
            blue_green,
        } = self;
        for s in [service, version, hosts, registry, spread, strategy] {
            r.scrub(s);
        }
        for b in batches {
            b.zones.iter_mut().for_each(|z| r.scrub(z));
            for h in &mut b.hosts {
                r.scrub(&mut h.name);
                r.scrub(&mut h.address);
                h.zone.iter_mut().for_each(|z| r.scrub(z));
            }
        }
        for s in [&mut stage.mode, &mut stage.source, &mut stage.sha256] {
            r.scrub(s);
        }
        r.scrub(&mut layout.root);
        r.scrub(&mut layout.release_dir);
        r.scrub(&mut failure.max_failures);
        r.scrub(&mut failure.on_failure);
        if let Some(g) = gate {
            r.scrub(&mut g.prometheus);
            g.auth.iter_mut().for_each(|a| r.scrub(a));
            r.scrub(&mut g.query);
        }
        if let Some(s) = silence {
            r.scrub(&mut s.alertmanager);
            s.auth.iter_mut().for_each(|a| r.scrub(a));
            for m in &mut s.matchers {
                r.scrub(&mut m.name);
                r.scrub(&mut m.value);
            }
        }
        if let Some(s) = shard {
            s.shared_zones.iter_mut().for_each(|z| r.scrub(z));
        }
        if let Some(bg) = blue_green {
            r.scrub(&mut bg.shape);
            for s in &mut bg.sides {
                r.scrub(&mut s.side);
                r.scrub(&mut s.root);
                s.group.iter_mut().for_each(|g| r.scrub(g));
                s.hosts.iter_mut().for_each(|h| r.scrub(h));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A plan with every field set, and at least one entry in every list.
    pub(crate) fn full_plan() -> PlanSummary {
        PlanSummary {
            v: 1,
            service: "demo".into(),
            version: "2.0.0".into(),
            hosts: "frontend".into(),
            targeted: 2,
            batches: vec![PlanBatch {
                number: 1,
                canary: true,
                size: 1,
                zones: vec!["dc1".into()],
                hosts: vec![PlanHost {
                    name: "web-01".into(),
                    address: "10.0.1.11".into(),
                    port: 2222,
                    zone: Some("dc1".into()),
                }],
            }],
            stage: PlanStage {
                mode: "pull".into(),
                source: "https://dl/app.tgz".into(),
                sha256: "ab".repeat(32),
                size: Some(1234),
                concurrency: 4,
                bandwidth: 1 << 20,
            },
            layout: PlanLayout {
                root: "/srv/demo".into(),
                release_dir: "/srv/demo/releases/2.0.0".into(),
                keep: 3,
            },
            failure: PlanFailure {
                max_failures: "10%".into(),
                budget: 1,
                on_failure: "rollback".into(),
            },
            pauses: PlanPauses {
                canary: PlanPause::Word(PauseWord::Confirm),
                between_batches: PlanPause::Ms(5000),
            },
            registry: "consul".into(),
            spread: "zone".into(),
            max_per_zone: Some(1),
            window: Some(3),
            gate: Some(PlanGate {
                prometheus: "http://prom:9090".into(),
                auth: Some("token".into()),
                query: "sum(errors)".into(),
                max: 0.01,
                for_ms: 120_000,
            }),
            silence: Some(PlanSilence {
                alertmanager: "http://am:9093".into(),
                auth: Some("basic_auth".into()),
                matchers: vec![PlanMatcher {
                    name: "instance".into(),
                    value: "{{ host.name }}".into(),
                    regex: false,
                }],
            }),
            become_root: true,
            shard: Some(PlanShard {
                index: 1,
                count: 2,
                of: 4,
                shared_zones: vec!["dc1".into()],
            }),
            strategy: "blue-green".into(),
            blue_green: Some(PlanBlueGreen {
                shape: "groups".into(),
                sides: vec![PlanSide {
                    side: "blue".into(),
                    root: "/srv/demo".into(),
                    port: Some(8081),
                    group: Some("web_blue".into()),
                    hosts: vec!["web-01".into()],
                }],
                canary_weight: 5,
                retire_after: Some(60_000),
            }),
        }
    }

    /// Every text of the plan, whichever field it is in, is scrubbed: each string of the JSON
    /// form is set to a secret, then the typed plan is redacted.
    #[test]
    fn every_text_of_the_plan_is_redacted() {
        fn fill(v: &mut serde_json::Value) -> usize {
            match v {
                serde_json::Value::String(s) => {
                    *s = "x-s3cr3t-x".into();
                    1
                }
                serde_json::Value::Array(a) => a.iter_mut().map(fill).sum(),
                serde_json::Value::Object(o) => o.values_mut().map(fill).sum(),
                _ => 0,
            }
        }
        let mut v = serde_json::to_value(full_plan()).unwrap();
        let texts = fill(&mut v);
        assert!(texts >= 20, "{texts} texts");
        // `confirm` is a word of the format, not a text: put it back.
        v["pauses"]["canary"] = "confirm".into();
        let mut plan: PlanSummary = serde_json::from_value(v).unwrap();
        plan.redact_with(&crate::redact::Redactor::new(&["s3cr3t".to_string()]));
        let out = serde_json::to_string(&plan).unwrap();
        assert!(!out.contains("s3cr3t"), "{out}");
        assert_eq!(out.matches("x-***-x").count(), texts - 1, "{out}");
    }

    /// The plan in `run_started` keeps the documented field names and shapes.
    #[test]
    fn the_plan_keeps_its_documented_shape() {
        let v = serde_json::to_value(full_plan()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "v",
                "service",
                "version",
                "hosts",
                "targeted",
                "batches",
                "stage",
                "layout",
                "failure",
                "pauses",
                "registry",
                "spread",
                "max_per_zone",
                "window",
                "gate",
                "silence",
                "become",
                "shard",
                "strategy",
                "blue_green"
            ]
        );
        assert_eq!(v["blue_green"]["sides"][0]["port"], 8081);
        assert_eq!(v["blue_green"]["retire_after"], 60_000);
        assert_eq!(
            v["pauses"],
            serde_json::json!({"canary": "confirm", "between_batches": 5000})
        );
        assert_eq!(v["batches"][0]["hosts"][0]["port"], 2222);
        assert_eq!(
            v["shard"],
            serde_json::json!({"index": 1, "count": 2, "of": 4, "shared_zones": ["dc1"]})
        );
        // A plan from an older journal, with fewer fields, still reads.
        let old: PlanSummary = serde_json::from_str(r#"{"v":1,"service":"demo","batches":[{"number":1}]}"#).unwrap();
        assert_eq!(old.batches.len(), 1);
        assert_eq!(old.service, "demo");
    }
}
