//! `tranche plan`: the batches as a table for people, or as a documented JSON document.

use std::fmt::Write;

use serde_json::Value;

use crate::events::{
    PauseWord, PlanBatch, PlanBlueGreen, PlanFailure, PlanGate, PlanHost, PlanLayout, PlanMatcher, PlanPause,
    PlanPauses, PlanShard, PlanSide, PlanSilence, PlanStage, PlanSummary,
};
use crate::playbook::{ArtifactSource, Pause, Side};
use crate::release::Release;
use crate::units::{human_duration, human_size};

/// The JSON plan (schema version 1), documented in the README.
pub fn to_json(r: &Release) -> Value {
    serde_json::to_value(summary(r)).expect("plans serialise")
}

/// The plan as `run_started` carries it, and as `tranche plan --format json` prints it.
pub fn summary(r: &Release) -> PlanSummary {
    let p = &r.playbook;
    let batches = r
        .batches
        .iter()
        .map(|b| PlanBatch {
            number: b.number,
            canary: b.canary,
            size: b.hosts.len(),
            zones: zones(r, &b.hosts),
            hosts: b
                .hosts
                .iter()
                .map(|&i| {
                    let h = &r.targets[i];
                    PlanHost {
                        name: h.name.clone(),
                        address: h.address.clone(),
                        port: h.port.unwrap_or(22),
                        zone: h.zone.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    let (mode, source) = match &p.artifact.source {
        ArtifactSource::Path(path) => ("push", path.display().to_string()),
        ArtifactSource::Url(u) => ("pull", u.source.clone()),
        ArtifactSource::Image(img) => ("image", img.pinned()),
    };
    PlanSummary {
        v: 1,
        service: p.service.clone(),
        version: p.version.clone(),
        hosts: p.hosts.clone(),
        targeted: r.targets.len(),
        batches,
        stage: PlanStage {
            mode: mode.into(),
            source,
            sha256: r.sha256.clone(),
            size: r.artifact_size,
            concurrency: p.rollout.stage_concurrency,
            bandwidth: p.rollout.stage_bandwidth,
        },
        layout: PlanLayout {
            root: p.layout.root.clone(),
            release_dir: r.release_dir(&p.version),
            keep: p.layout.keep,
        },
        failure: PlanFailure {
            max_failures: p.rollout.max_failures.to_string(),
            budget: r.budget,
            on_failure: p.rollout.on_failure.as_str().into(),
        },
        pauses: PlanPauses {
            canary: pause(p.rollout.canary_pause),
            between_batches: pause(p.rollout.pause),
        },
        registry: p.registry.kind().into(),
        spread: if p.rollout.spread_zones { "zone" } else { "none" }.into(),
        max_per_zone: p.rollout.max_per_zone,
        window: r.window,
        gate: p.rollout.gate.as_ref().map(|g| PlanGate {
            prometheus: crate::redact::url(&g.prometheus),
            auth: g.auth.kind().map(Into::into),
            query: g.query.source.clone(),
            max: g.max,
            for_ms: g.hold.as_millis() as u64,
        }),
        silence: p.silence.as_ref().map(|s| PlanSilence {
            alertmanager: crate::redact::url(&s.alertmanager),
            auth: s.auth.kind().map(Into::into),
            matchers: s
                .matchers
                .iter()
                .map(|(n, v, re)| PlanMatcher {
                    name: n.clone(),
                    value: v.source.clone(),
                    regex: *re,
                })
                .collect(),
        }),
        become_root: p.become_root,
        shard: r.shard.as_ref().map(|s| PlanShard {
            index: s.shard.index,
            count: s.shard.count,
            of: s.of,
            shared_zones: s.shared_zones.clone(),
        }),
        strategy: p.strategy.as_str().into(),
        blue_green: blue_green(r),
    }
}

/// Blue-green's sides for the JSON plan.
fn blue_green(r: &Release) -> Option<PlanBlueGreen> {
    let bg = r.playbook.strategy.blue_green()?;
    let sides = Side::BOTH
        .into_iter()
        .map(|side| PlanSide {
            side: side.as_str().into(),
            root: crate::bluegreen::side_view(r, side).playbook.layout.root,
            port: bg.shape.port(side),
            group: bg.shape.group(side).map(Into::into),
            hosts: crate::bluegreen::hosts_of(r, side)
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.name)
                .collect(),
        })
        .collect();
    Some(PlanBlueGreen {
        shape: bg.shape.as_str().into(),
        sides,
        canary_weight: bg.canary_weight,
        retire_after: bg.retire_after.map(|d| d.as_millis() as u64),
    })
}

/// A monitoring endpoint for people: its URL without credentials, and how it authenticates.
fn shown_endpoint(url: &str, auth: &crate::playbook::HttpAuth) -> String {
    match auth.kind() {
        Some(kind) => format!("{}, {kind}", crate::redact::url(url)),
        None => crate::redact::url(url),
    }
}

fn pause(p: Pause) -> PlanPause {
    match p {
        Pause::Confirm => PlanPause::Word(PauseWord::Confirm),
        Pause::For(d) => PlanPause::Ms(d.as_millis() as u64),
    }
}

fn zones(r: &Release, hosts: &[usize]) -> Vec<String> {
    let mut z: Vec<String> = Vec::new();
    for &i in hosts {
        let zone = r.targets[i].zone.clone().unwrap_or_else(|| "-".into());
        if !z.contains(&zone) {
            z.push(zone);
        }
    }
    z
}

/// Host names of a batch, shortened past a dozen.
fn host_list(r: &Release, hosts: &[usize]) -> String {
    let names: Vec<&str> = hosts.iter().map(|&i| r.targets[i].name.as_str()).collect();
    if names.len() <= 12 {
        names.join(" ")
    } else {
        format!(
            "{} … {} ({} more)",
            names[..6].join(" "),
            names[names.len() - 2..].join(" "),
            names.len() - 8
        )
    }
}

/// The plan as a table for people.
pub fn to_table(r: &Release) -> String {
    let p = &r.playbook;
    let mut out = String::new();
    let n = r.targets.len();
    let groups = matches!(
        crate::bluegreen::settings(r).map(|b| &b.shape),
        Ok(crate::playbook::Shape::Groups { .. })
    );
    let batches = if groups {
        "one blue-green side at a time".to_string()
    } else {
        format!(
            "{} batch{}",
            r.batches.len(),
            if r.batches.len() == 1 { "" } else { "es" }
        )
    };
    let _ = writeln!(
        out,
        "{} {} to {} host{} (hosts: {}), {batches}",
        p.service,
        p.version,
        n,
        if n == 1 { "" } else { "s" },
        p.hosts,
    );
    if let Some(s) = &r.shard {
        let _ = writeln!(
            out,
            "shard {}: {n} of the {} targeted host{} (sorted by zone, then name, cut in {} runs)",
            s.shard,
            s.of,
            if s.of == 1 { "" } else { "s" },
            s.shard.count
        );
        if !s.shared_zones.is_empty() {
            let _ = writeln!(
                out,
                "  shared with another shard: zone{} {} (per-zone limits hold per shard there)",
                if s.shared_zones.len() == 1 { "" } else { "s" },
                s.shared_zones.join(", ")
            );
        }
    }
    let _ = writeln!(out);
    if groups {
        // Two host groups: a release goes to the side not live, batched among its own hosts.
        for side in Side::BOTH {
            match crate::bluegreen::idle_release(r, side) {
                Ok(s) => {
                    let _ = writeln!(
                        out,
                        "  when {} is live, the {side} side: {} host{} in {} batch{}",
                        side.other(),
                        s.targets.len(),
                        if s.targets.len() == 1 { "" } else { "s" },
                        s.batches.len(),
                        if s.batches.len() == 1 { "" } else { "es" }
                    );
                    out.push_str(&batch_table(&s));
                }
                Err(e) => {
                    let _ = writeln!(out, "  the {side} side: {e}");
                }
            }
            let _ = writeln!(out);
        }
    } else {
        out.push_str(&batch_table(r));
        let _ = writeln!(out);
    }
    let stage = match &p.artifact.source {
        ArtifactSource::Path(path) => format!(
            "push {} ({}, sha256 {})",
            path.file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default(),
            r.artifact_size.map(human_size).unwrap_or_default(),
            &r.sha256[..12.min(r.sha256.len())]
        ),
        ArtifactSource::Url(u) => format!(
            "pull {} (sha256 {}{})",
            u.source,
            &r.sha256[..12.min(r.sha256.len())],
            match &p.artifact.store.auth {
                crate::playbook::StoreAuth::None => String::new(),
                crate::playbook::StoreAuth::Basic { .. } => ", basic_auth".to_string(),
                crate::playbook::StoreAuth::S3(s) =>
                    format!(", s3 presigned for {}", crate::units::human_duration(s.expires)),
            }
        ),
        ArtifactSource::Image(img) => format!(
            "pull image {} by digest ({})",
            img.short(),
            match img.runtime {
                crate::playbook::Runtime::Auto => "podman or docker, whichever the host has",
                rt => rt.as_str(),
            }
        ),
    };
    let bw = if p.rollout.stage_bandwidth > 0 {
        format!(", {}/s each", human_size(p.rollout.stage_bandwidth))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  stage     {stage}, {} host{} at a time{bw}, ahead of the batches",
        p.rollout.stage_concurrency,
        if p.rollout.stage_concurrency == 1 { "" } else { "s" }
    );
    let layout = crate::bluegreen::slots_layout(r)
        .unwrap_or_else(|| format!("{} (keep {})", r.release_dir(&p.version), p.layout.keep));
    let _ = writeln!(out, "  layout    {layout}");
    let _ = writeln!(out, "  registry  {}", p.registry.kind());
    if let Some(bg) = p.strategy.blue_green() {
        let _ = writeln!(out, "  strategy  blue-green ({})", bg.shape.as_str());
        for line in crate::bluegreen::plan_lines(r) {
            let _ = writeln!(out, "  {line}");
        }
    }
    if p.rollout.spread_zones || p.rollout.max_per_zone.is_some() {
        let mut zones: Vec<String> = Vec::new();
        for h in &r.targets {
            let z = h.zone.clone().unwrap_or_else(|| "-".into());
            if !zones.contains(&z) {
                zones.push(z);
            }
        }
        let spread = if p.rollout.spread_zones {
            format!("round-robin over {}", zones.join(", "))
        } else {
            "inventory order".into()
        };
        let cap = match p.rollout.max_per_zone {
            Some(n) => format!(
                "; at most {n} host{} of a zone out at once",
                if n == 1 { "" } else { "s" }
            ),
            None => String::new(),
        };
        let _ = writeln!(out, "  zones     {spread}{cap}");
    }
    if let Some(w) = r.window {
        let _ = writeln!(
            out,
            "  window    after the canary, up to {w} hosts out at once; the next starts as soon as one ends"
        );
    }
    if let Some(g) = &p.rollout.gate {
        let _ = writeln!(
            out,
            "  gate      {}: {} <= {} for {} ({})",
            match p.strategy.blue_green().map(|b| b.canary_weight) {
                None => "after each batch",
                Some(0) => "after the switch",
                Some(_) => "during the canary weight and after the switch",
            },
            g.query.source,
            g.max,
            human_duration(g.hold),
            shown_endpoint(&g.prometheus, &g.auth)
        );
    }
    if let Some(sil) = &p.silence {
        let m: Vec<String> = sil
            .matchers
            .iter()
            .map(|(n, v, re)| format!("{n}{}{}", if *re { "=~" } else { "=" }, v.source))
            .collect();
        let _ = writeln!(
            out,
            "  silence   {} while out ({})",
            m.join(", "),
            shown_endpoint(&sil.alertmanager, &sil.auth)
        );
    }
    let _ = writeln!(
        out,
        "  pauses    after canary: {}; between batches: {}",
        p.rollout.canary_pause, p.rollout.pause
    );
    let _ = writeln!(
        out,
        "  failures  up to {} host{} may fail (max_failures {}); past that: {}",
        r.budget,
        if r.budget == 1 { "" } else { "s" },
        p.rollout.max_failures,
        p.rollout.on_failure.as_str()
    );
    if let Some(h) = &p.health {
        let _ = writeln!(
            out,
            "  health    every {}, deadline {}",
            human_duration(h.interval),
            human_duration(h.timeout)
        );
    }
    out
}

/// The batches of `r` as a table: number, size, zones, members.
fn batch_table(r: &Release) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 4]> = r
        .batches
        .iter()
        .map(|b| {
            let label = if b.canary {
                format!("{} canary", b.number)
            } else {
                b.number.to_string()
            };
            [
                label,
                b.hosts.len().to_string(),
                zones(r, &b.hosts).join(","),
                host_list(r, &b.hosts),
            ]
        })
        .collect();
    let head = ["BATCH", "HOSTS", "ZONES", "MEMBERS"].map(String::from);
    let all: Vec<&[String; 4]> = std::iter::once(&head).chain(&rows).collect();
    let w: Vec<usize> = (0..3)
        .map(|c| all.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in all {
        let _ = writeln!(
            out,
            "  {:<w0$}  {:>w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
    }
    out
}
