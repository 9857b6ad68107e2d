//! The timeline picture: inline SVG, one row per host, one coloured segment per step (its
//! duration in a `<title>` tooltip), batches as shaded bands with their number, pauses hatched,
//! failed steps red, the way back (revert or rollback) purple, and a legend.

use std::fmt::Write;

use super::model::{RunView, Segment};
use super::{duration_text, esc};
use crate::events::{Status, Step};

const WIDTH: f64 = 1200.0;
const LABEL: f64 = 190.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 46.0;
const ROW: f64 = 18.0;
const GAP: f64 = 4.0;

pub const FAILED: &str = "#d62728";
pub const REVERT: &str = "#6a3d9a";
pub const SKIPPED: &str = "#c7c7c7";

/// The steps in pipeline order, each with its colour.
pub const STEPS: [(Step, &str); 11] = [
    (Step::Preflight, "#9aa5b1"),
    (Step::Stage, "#4e79a7"),
    (Step::Silence, "#b07aa1"),
    (Step::Deregister, "#f28e2b"),
    (Step::Stop, "#edc948"),
    (Step::Deploy, "#59a14f"),
    (Step::Start, "#76b7b2"),
    (Step::Health, "#8cd17d"),
    (Step::Register, "#2f8f83"),
    (Step::Unsilence, "#d4a6c8"),
    (Step::Revert, REVERT),
];

fn colour(step: Step) -> &'static str {
    STEPS
        .iter()
        .find(|(s, _)| *s == step)
        .map(|(_, c)| *c)
        .unwrap_or("#888888")
}

/// The class and colour of a segment: failed, revert, skipped, running, or the step's own.
fn look(s: &Segment) -> (&'static str, &'static str) {
    match s.status {
        Some(Status::Failed) => ("failed", FAILED),
        _ if s.revert => ("revert", REVERT),
        Some(Status::Skipped) => ("skipped", SKIPPED),
        None => ("running", colour(s.step)),
        Some(_) => ("ok", colour(s.step)),
    }
}

/// A tick interval giving at most about ten ticks over `total` ms.
fn tick(total: u64) -> u64 {
    const NICE: [u64; 17] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
        1_800_000, 3_600_000, 7_200_000,
    ];
    NICE.iter().copied().find(|t| total / t <= 10).unwrap_or(total / 10 + 1)
}

/// The SVG of the run's timeline.
pub fn svg(v: &RunView) -> String {
    let total = v.end_ms.max(1);
    let plot = WIDTH - LABEL - RIGHT;
    let x = |ms: u64| LABEL + plot * (ms.min(total) as f64) / (total as f64);
    let rows = v.hosts.len().max(1) as f64;
    let plot_h = rows * (ROW + GAP);
    let height = TOP + plot_h + 24.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of run {}">"#,
        esc(&v.run)
    );
    o.push_str(
        r##"<defs><pattern id="pause-hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#fff4d6"/><line x1="0" y1="0" x2="0" y2="8" stroke="#e0b84c" stroke-width="3"/></pattern></defs>"##,
    );
    // Batches: alternate shaded bands, each with its number.
    for (i, b) in v.batches.iter().enumerate() {
        let (x0, x1) = (x(b.start_ms), x(b.end_ms.unwrap_or(v.end_ms)));
        let fill = if i % 2 == 0 { "#eef3fa" } else { "#f7f7f7" };
        let label = if b.attempt > 0 {
            format!("resume {} · batch {}", b.attempt, b.number)
        } else {
            format!("batch {}", b.number)
        };
        let _ = write!(
            o,
            r##"<g class="batch" data-batch="{n}"><title>{label}: {hosts} host{s}, {dur}</title><rect x="{x0:.1}" y="{top}" width="{w:.1}" height="{plot_h}" fill="{fill}"/><line x1="{x0:.1}" y1="{lt}" x2="{x0:.1}" y2="{bottom}" stroke="#4e79a7" stroke-width="1" stroke-dasharray="3,2"/><text x="{tx:.1}" y="{ly}" font-size="11" fill="#2b4a6f">{label}</text></g>"##,
            n = b.number,
            hosts = b.hosts,
            s = if b.hosts == 1 { "" } else { "s" },
            dur = duration_text(b.end_ms.unwrap_or(v.end_ms).saturating_sub(b.start_ms)),
            w = (x1 - x0).max(1.0),
            top = TOP,
            lt = TOP - 14.0,
            bottom = TOP + plot_h,
            tx = x0 + 3.0,
            ly = TOP - 4.0,
        );
    }
    // Pauses: hatched bands over every row.
    for p in &v.pauses {
        let (x0, x1) = (x(p.start_ms), x(p.end_ms.unwrap_or(v.end_ms)));
        let _ = write!(
            o,
            r#"<g class="pause"><title>pause before batch {}: {} ({})</title><rect x="{x0:.1}" y="{}" width="{:.1}" height="{plot_h}" fill="url(#pause-hatch)" opacity="0.8"/></g>"#,
            p.batch,
            esc(&p.reason),
            duration_text(p.end_ms.unwrap_or(v.end_ms).saturating_sub(p.start_ms)),
            TOP,
            (x1 - x0).max(2.0),
        );
    }
    // Resumes: a marker at each later run_started.
    for (i, at) in v.attempts.iter().enumerate().skip(1) {
        let _ = write!(
            o,
            r##"<g class="resume"><title>resume {i}</title><line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#000" stroke-width="2"/></g>"##,
            TOP - 20.0,
            TOP + plot_h,
            x = x(*at),
        );
    }
    // The time axis.
    let step = tick(total);
    let mut t = 0;
    while t <= total {
        let _ = write!(
            o,
            r##"<g class="tick"><line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" font-size="10" fill="#666" text-anchor="middle">{}</text></g>"##,
            TOP + plot_h,
            TOP + plot_h + 4.0,
            TOP + plot_h + 16.0,
            duration_text(t),
            x = x(t),
        );
        t += step;
    }
    // One row per host.
    for (i, h) in v.hosts.iter().enumerate() {
        let y = TOP + i as f64 * (ROW + GAP) + GAP / 2.0;
        let shown: String = if h.name.chars().count() > 26 {
            h.name.chars().take(25).chain(['…']).collect()
        } else {
            h.name.clone()
        };
        let weight = if h.is_failed() { "bold" } else { "normal" };
        let fill = if h.is_failed() { FAILED } else { "#222" };
        let _ = write!(
            o,
            r#"<g class="host-row" data-host="{name}"><text x="{lx}" y="{ty:.1}" font-size="12" text-anchor="end" font-weight="{weight}" fill="{fill}"><title>{name}</title>{shown}</text>"#,
            name = esc(&h.name),
            lx = LABEL - 8.0,
            ty = y + ROW - 5.0,
            shown = esc(&shown),
        );
        for s in &h.segments {
            let (class, fill) = look(s);
            let (x0, x1) = (x(s.start_ms), x(s.end_ms));
            let state = match s.status {
                None => "running",
                Some(st) => st.as_str(),
            };
            let how = if s.revert { " (going back)" } else { "" };
            let msg = if s.msg.is_empty() {
                String::new()
            } else {
                format!(": {}", s.msg)
            };
            let stroke = match class {
                "failed" => r##" stroke="#7f0000" stroke-width="1""##,
                "running" => r##" stroke="#333" stroke-width="1" stroke-dasharray="2,2" fill-opacity="0.6""##,
                _ => "",
            };
            let _ = write!(
                o,
                r#"<rect class="seg {class}" data-step="{step}" data-status="{state}" x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{ROW}" fill="{fill}"{stroke}><title>{host} · {step}{how} · {dur} · {state}{msg}</title></rect>"#,
                step = s.step.as_str(),
                w = (x1 - x0).max(1.5),
                host = esc(&h.name),
                dur = duration_text(s.end_ms - s.start_ms),
                msg = esc(&msg),
            );
        }
        o.push_str("</g>");
    }
    o.push_str("</svg>");
    o
}

/// The legend under the timeline, as HTML: the step colours in use, then the marks.
pub fn legend(v: &RunView) -> String {
    let used = |step: Step| v.hosts.iter().any(|h| h.segments.iter().any(|s| s.step == step));
    let mut o = String::from(r#"<ul class="legend">"#);
    let mut item = |class: &str, style: &str, text: &str| {
        let _ = write!(
            o,
            r#"<li class="{class}"><span class="swatch" style="{style}"></span>{text}</li>"#
        );
    };
    for (step, c) in STEPS {
        if step != Step::Revert && used(step) {
            item("step", &format!("background:{c}"), step.as_str());
        }
    }
    item("failed", &format!("background:{FAILED}"), "failed step");
    item("revert", &format!("background:{REVERT}"), "revert / rollback");
    item("skipped", &format!("background:{SKIPPED}"), "skipped");
    item("running", "background:#ccc;border:1px dashed #333", "running");
    item(
        "pause",
        "background:repeating-linear-gradient(45deg,#fff4d6 0 3px,#e0b84c 3px 5px)",
        "pause",
    );
    item("batch", "background:#eef3fa;border-left:2px dashed #4e79a7", "batch");
    o.push_str("</ul>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_few() {
        for total in [1, 999, 1_000, 12_345, 600_000, 86_400_000] {
            let t = tick(total);
            assert!(total / t <= 11, "{total}: {t}");
        }
    }
}
