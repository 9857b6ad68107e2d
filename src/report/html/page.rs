//! The page around the timeline: the header (what, who, when, how it ended), the plan, the
//! per-step durations of every host, the failed hosts and the warnings. One self-contained
//! document: inline CSS, no script, nothing fetched.

use std::fmt::Write;

use super::model::{HostView, RunView};
use super::timeline::{self, STEPS};
use super::{duration_text, esc, PageOptions};
use crate::events::{PlanPause, PlanSummary, Status, Step};

const CSS: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.outcome-ok{background:#2e7d32}.outcome-partial{background:#e08600}.outcome-failed{background:#c62828}
.outcome-running{background:#1565c0}.outcome-interrupted{background:#6d4c41}
dl.header{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:12px 0}
dl.header dt{color:#666}dl.header dd{margin:0;font-weight:500}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.ms{text-align:right;font-variant-numeric:tabular-nums}
td.failed{background:#fde0e0;color:#8b0000;font-weight:600}td.revert{color:#6a3d9a}
tr.host-failed td:first-child{color:#c62828;font-weight:600}
.timeline-box{overflow-x:auto;border:1px solid #e3e3e3;padding:6px 0}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:6px 16px;font-size:12px}
ul.legend li{display:flex;align-items:center;gap:5px}
.swatch{display:inline-block;width:14px;height:12px;border-radius:2px}
pre{white-space:pre-wrap;margin:4px 0 0;font-size:12px;background:#f7f7f7;padding:4px 6px}
.muted{color:#777}
";

/// The whole document.
pub fn document(v: &RunView, opts: &PageOptions) -> String {
    let mut o = String::with_capacity(16 * 1024);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n");
    if opts.live && v.in_progress() {
        o.push_str("<meta http-equiv=\"refresh\" content=\"5\" />\n");
    }
    let _ = writeln!(
        o,
        "<title>tranche {} {} {} · {}</title>",
        esc(&v.mode),
        esc(&v.service),
        esc(&v.version),
        esc(&v.run)
    );
    let _ = writeln!(o, "<style>{CSS}</style>\n</head>\n<body>");
    header(&mut o, v, opts);
    o.push_str("<h2>Timeline</h2>\n<div class=\"timeline-box\">");
    o.push_str(&timeline::svg(v));
    o.push_str("</div>\n");
    o.push_str(&timeline::legend(v));
    failed(&mut o, v);
    durations(&mut o, v);
    if let Some(p) = &v.plan {
        plan(&mut o, p);
    }
    warnings(&mut o, v);
    o.push_str("</body>\n</html>\n");
    o
}

/// The outcome in words and its badge class, from the exit code (SPEC §6).
fn outcome(v: &RunView, live: bool) -> (&'static str, String) {
    let Some(f) = &v.finished else {
        return if live {
            ("outcome-running", "in progress".into())
        } else {
            (
                "outcome-interrupted",
                "unfinished: the journal ends before the run did (killed, or still running)".into(),
            )
        };
    };
    let (class, words) = match f.exit_code {
        0 => ("outcome-ok", "succeeded"),
        1 => ("outcome-partial", "completed; some hosts failed and were reverted"),
        2 => ("outcome-failed", "configuration error; nothing was touched"),
        3 => ("outcome-failed", "preflight failed; nothing was changed"),
        4 => ("outcome-failed", "failure budget exceeded; on_failure applied"),
        130 => ("outcome-interrupted", "interrupted; `tranche resume` continues"),
        _ => ("outcome-failed", "failed"),
    };
    (class, format!("{words} (exit code {})", f.exit_code))
}

fn header(o: &mut String, v: &RunView, opts: &PageOptions) {
    let (class, words) = outcome(v, opts.live);
    let _ = writeln!(
        o,
        "<h1>tranche {} <span class=\"service\">{}</span> {}</h1>\n<p><span class=\"badge {class}\" id=\"outcome\">{}</span></p>",
        esc(&v.mode),
        esc(&v.service),
        esc(&v.version),
        esc(&words)
    );
    o.push_str("<dl class=\"header\">\n");
    let mut row = |k: &str, val: &str| {
        let _ = writeln!(o, "<dt>{k}</dt><dd>{}</dd>", esc(val));
    };
    row("service", &v.service);
    row("version", &v.version);
    row("run id", &v.run);
    row("operator", opts.operator.as_deref().unwrap_or("unknown"));
    row("started", &v.started.replacen('T', " ", 1).replace('Z', " UTC"));
    let so_far = if v.in_progress() { " so far" } else { "" };
    row("duration", &format!("{}{so_far}", duration_text(v.duration_ms())));
    if v.attempts.len() > 1 {
        row("resumed", &format!("{} time(s)", v.attempts.len() - 1));
    }
    if let Some(f) = &v.finished {
        row(
            "hosts",
            &format!(
                "{} ok, {} failed, {} reverted, {} skipped",
                f.ok, f.failed, f.reverted, f.skipped
            ),
        );
        if !f.msg.is_empty() {
            row("summary", &f.msg);
        }
    } else if opts.live {
        let done = v.hosts.iter().filter(|h| h.status.is_some()).count();
        row("progress", &format!("{done} of {} hosts finished", v.hosts.len()));
    }
    o.push_str("</dl>\n");
}

fn failed(o: &mut String, v: &RunView) {
    let failed: Vec<&HostView> = v.hosts.iter().filter(|h| h.is_failed()).collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "<h2>Failed hosts ({})</h2>\n<table class=\"failed-hosts\">\n<tr><th>host</th><th>batch</th><th>step</th><th>reason</th><th>ended</th></tr>",
        failed.len()
    );
    for h in failed {
        let (step, reason, stderr) = match &h.failure {
            Some((step, msg, stderr)) => (step.as_str(), msg.as_str(), stderr.as_deref()),
            None => ("", h.msg.as_str(), None),
        };
        let tail = stderr
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!("<pre>{}</pre>", esc(s)))
            .unwrap_or_default();
        let ended = match h.status {
            Some(s) => format!("{}: {}", s.as_str(), h.msg),
            None => "still running".into(),
        };
        let _ = writeln!(
            o,
            "<tr class=\"failed-host\" data-host=\"{name}\"><td>{name}</td><td>{batch}</td><td>{step}</td><td>{reason}{tail}</td><td>{ended}</td></tr>",
            name = esc(&h.name),
            batch = h.batch.map(|b| b.to_string()).unwrap_or_default(),
            reason = esc(reason),
            ended = esc(&ended),
        );
    }
    o.push_str("</table>\n");
}

/// Per host: the time of each step (summed when a step ran more than once), the time spent
/// going back, and the whole pipeline.
fn durations(o: &mut String, v: &RunView) {
    let steps: Vec<Step> = STEPS
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| {
            *s != Step::Revert
                && v.hosts
                    .iter()
                    .any(|h| h.segments.iter().any(|g| g.step == *s && !g.revert))
        })
        .collect();
    let any_revert = v.hosts.iter().any(|h| h.segments.iter().any(|g| g.revert));
    o.push_str("<h2>Step durations</h2>\n<table class=\"durations\">\n<tr><th>host</th><th>batch</th><th>result</th>");
    for s in &steps {
        let _ = write!(o, "<th>{}</th>", s.as_str());
    }
    if any_revert {
        o.push_str("<th>going back</th>");
    }
    o.push_str("<th>host total</th></tr>\n");
    for h in &v.hosts {
        let result = match h.status {
            Some(s) => s.as_str(),
            None if h.segments.is_empty() => "not started",
            None => "running",
        };
        let class = if h.is_failed() { " class=\"host-failed\"" } else { "" };
        let _ = write!(
            o,
            "<tr{class} data-host=\"{name}\"><td>{name}</td><td>{}</td><td>{result}</td>",
            h.batch.map(|b| b.to_string()).unwrap_or_default(),
            name = esc(&h.name),
        );
        for s in &steps {
            let segs: Vec<_> = h.segments.iter().filter(|g| g.step == *s && !g.revert).collect();
            if segs.is_empty() {
                o.push_str("<td class=\"ms muted\">–</td>");
                continue;
            }
            let ms: u64 = segs.iter().map(|g| g.end_ms - g.start_ms).sum();
            let failed = segs.iter().any(|g| g.status == Some(Status::Failed));
            let skipped = segs.iter().all(|g| g.status == Some(Status::Skipped));
            let (cls, mark) = match (failed, skipped) {
                (true, _) => (" failed", "✕ "),
                (_, true) => (" muted", "skipped "),
                _ => ("", ""),
            };
            let _ = write!(
                o,
                "<td class=\"ms{cls}\" data-step=\"{}\">{mark}{}</td>",
                s.as_str(),
                duration_text(ms)
            );
        }
        if any_revert {
            let ms: u64 = h
                .segments
                .iter()
                .filter(|g| g.revert)
                .map(|g| g.end_ms - g.start_ms)
                .sum();
            if ms > 0 || h.segments.iter().any(|g| g.revert) {
                let _ = write!(o, "<td class=\"ms revert\">{}</td>", duration_text(ms));
            } else {
                o.push_str("<td class=\"ms muted\">–</td>");
            }
        }
        let total = if h.status.is_some() {
            duration_text(h.ms)
        } else {
            String::from("–")
        };
        let _ = writeln!(o, "<td class=\"ms\">{total}</td></tr>");
    }
    o.push_str("</table>\n");
}

fn pause_text(p: PlanPause) -> String {
    match p {
        PlanPause::Ms(0) => "none".into(),
        PlanPause::Ms(ms) => duration_text(ms),
        PlanPause::Word(_) => "confirm".into(),
    }
}

fn plan(o: &mut String, p: &PlanSummary) {
    o.push_str("<h2>Plan</h2>\n<dl class=\"header plan\">\n");
    let mut row = |k: &str, val: String| {
        let _ = writeln!(o, "<dt>{k}</dt><dd>{}</dd>", esc(&val));
    };
    row("hosts", format!("{} ({} targeted)", p.hosts, p.targeted));
    row(
        "artifact",
        format!(
            "{} {} (stage concurrency {})",
            p.stage.mode, p.stage.source, p.stage.concurrency
        ),
    );
    row("layout", format!("{} (keep {})", p.layout.root, p.layout.keep));
    row(
        "failures",
        format!(
            "max_failures {} (budget {} host(s)), on_failure {}",
            p.failure.max_failures, p.failure.budget, p.failure.on_failure
        ),
    );
    row(
        "pauses",
        format!(
            "after the canary: {}; between batches: {}",
            pause_text(p.pauses.canary),
            pause_text(p.pauses.between_batches)
        ),
    );
    row("registry", p.registry.clone());
    o.push_str(
        "</dl>\n<table class=\"plan-batches\">\n<tr><th>batch</th><th>size</th><th>zones</th><th>hosts</th></tr>\n",
    );
    for b in &p.batches {
        let names: Vec<String> = b.hosts.iter().map(|h| esc(&h.name)).collect();
        let _ = writeln!(
            o,
            "<tr class=\"plan-batch\" data-batch=\"{n}\"><td>{n}{canary}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            b.hosts.len(),
            esc(&b.zones.join(", ")),
            names.join(", "),
            n = b.number,
            canary = if b.canary { " (canary)" } else { "" },
        );
    }
    o.push_str("</table>\n");
}

fn warnings(o: &mut String, v: &RunView) {
    if v.warnings.is_empty() {
        return;
    }
    let _ = writeln!(o, "<h2>Warnings ({})</h2>\n<ul class=\"warnings\">", v.warnings.len());
    for (host, msg) in &v.warnings {
        let who = host.as_deref().map(|h| format!("{}: ", esc(h))).unwrap_or_default();
        let _ = writeln!(o, "<li>{who}{}</li>", esc(msg));
    }
    o.push_str("</ul>\n");
}
