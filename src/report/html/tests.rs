//! The page's structure, read back with an XML parser (the page is well-formed XHTML as well as
//! HTML): one timeline row per host, one segment per step, the marks, and escaping.

use super::*;
use crate::events::{EventKind, PauseWord, PlanBatch, PlanHost, PlanPause, PlanPauses, PlanSummary, Status, Step};

const HOSTILE: &str = "web-<b>3</b>\"'&";
const SCRIPT: &str = "<script>alert('x')</script>";

fn at(ms: u64, kind: EventKind) -> Event {
    let mut e = Event::new("20261121-100000-ab12", kind);
    e.ts = format!(
        "2026-11-21T10:{:02}:{:02}.{:03}Z",
        ms / 60_000,
        ms / 1000 % 60,
        ms % 1000
    );
    e
}

fn plan(hosts: &[&[&str]]) -> PlanSummary {
    PlanSummary {
        v: 1,
        service: "demo".into(),
        version: "2.0.0".into(),
        hosts: "web".into(),
        targeted: hosts.iter().map(|b| b.len()).sum(),
        batches: hosts
            .iter()
            .enumerate()
            .map(|(i, b)| PlanBatch {
                number: i + 1,
                canary: i == 0,
                size: b.len(),
                zones: Vec::new(),
                hosts: b
                    .iter()
                    .map(|h| PlanHost {
                        name: h.to_string(),
                        ..PlanHost::default()
                    })
                    .collect(),
            })
            .collect(),
        pauses: PlanPauses {
            canary: PlanPause::Word(PauseWord::Confirm),
            between_batches: PlanPause::Ms(0),
        },
        ..PlanSummary::default()
    }
}

/// The steps a host goes through, each `ms` long from `t`; `fail` fails the named step and
/// reverts (deploy, start, health, register again).
fn pipeline(out: &mut Vec<Event>, t: &mut u64, batch: usize, host: &str, fail: Option<(Step, &str)>) {
    let step = |out: &mut Vec<Event>, t: &mut u64, step: Step, status: Status, msg: &str| {
        out.push(at(
            *t,
            EventKind::StepStarted {
                batch,
                host: host.into(),
                step,
            },
        ));
        *t += 100;
        out.push(at(
            *t,
            EventKind::StepFinished {
                batch,
                host: host.into(),
                step,
                status,
                ms: 100,
                msg: msg.into(),
                stderr: (status == Status::Failed).then(|| SCRIPT.to_string()),
                hint: None,
            },
        ));
    };
    let start = *t;
    out.push(at(
        *t,
        EventKind::HostStarted {
            batch,
            host: host.into(),
            previous: Some("1.0.0".into()),
        },
    ));
    for s in [
        Step::Deregister,
        Step::Stop,
        Step::Deploy,
        Step::Start,
        Step::Health,
        Step::Register,
    ] {
        match fail {
            Some((f, msg)) if f == s => {
                step(out, t, s, Status::Failed, msg);
                for back in [Step::Deploy, Step::Start, Step::Health, Step::Register] {
                    step(out, t, back, Status::Ok, "");
                }
                out.push(at(
                    *t,
                    EventKind::HostFinished {
                        batch,
                        host: host.into(),
                        status: Status::Reverted,
                        ms: *t - start,
                        msg: format!("{} failed: {msg}; back on 1.0.0", s.as_str()),
                    },
                ));
                return;
            }
            _ => step(out, t, s, Status::Ok, ""),
        }
    }
    out.push(at(
        *t,
        EventKind::HostFinished {
            batch,
            host: host.into(),
            status: Status::Ok,
            ms: *t - start,
            msg: "on 2.0.0".into(),
        },
    ));
}

/// A run of three hosts: a canary, a confirmed pause, then two hosts, one of them (with a
/// hostile name) failing its health check with a hostile message, reverted.
fn run(finished: bool) -> Vec<Event> {
    let mut out = vec![at(
        0,
        EventKind::RunStarted {
            service: "demo".into(),
            version: "2.0.0".into(),
            hosts: 3,
            mode: "release".into(),
            plan: plan(&[&["web-1"], &["web-2", HOSTILE]]),
        },
    )];
    let mut t = 0;
    for h in ["web-1", "web-2", HOSTILE] {
        out.push(at(
            t,
            EventKind::StepStarted {
                batch: 1,
                host: h.into(),
                step: Step::Preflight,
            },
        ));
        t += 50;
        out.push(at(
            t,
            EventKind::StepFinished {
                batch: 1,
                host: h.into(),
                step: Step::Preflight,
                status: Status::Ok,
                ms: 50,
                msg: String::new(),
                stderr: None,
                hint: None,
            },
        ));
    }
    out.push(at(
        t,
        EventKind::BatchStarted {
            batch: 1,
            hosts: vec!["web-1".into()],
        },
    ));
    pipeline(&mut out, &mut t, 1, "web-1", None);
    out.push(at(
        t,
        EventKind::BatchFinished {
            batch: 1,
            ok: 1,
            skipped: 0,
            failed: 0,
            ms: 600,
        },
    ));
    out.push(at(
        t,
        EventKind::Paused {
            batch: 2,
            reason: "canary_pause".into(),
        },
    ));
    t += 2000;
    out.push(at(t, EventKind::Resumed { batch: 2 }));
    out.push(at(
        t,
        EventKind::BatchStarted {
            batch: 2,
            hosts: vec!["web-2".into(), HOSTILE.into()],
        },
    ));
    let mut t2 = t;
    pipeline(&mut out, &mut t2, 2, "web-2", None);
    pipeline(&mut out, &mut t, 2, HOSTILE, Some((Step::Health, SCRIPT)));
    if finished {
        let t = t.max(t2);
        out.push(at(
            t,
            EventKind::BatchFinished {
                batch: 2,
                ok: 1,
                skipped: 0,
                failed: 1,
                ms: 1000,
            },
        ));
        out.push(at(
            t,
            EventKind::RunFinished {
                ok: 2,
                failed: 0,
                reverted: 1,
                skipped: 0,
                exit_code: 1,
                ms: t,
                msg: "2 ok, 1 reverted".into(),
            },
        ));
    }
    out
}

fn opts() -> PageOptions {
    PageOptions {
        operator: Some("alice".into()),
        live: true,
    }
}

/// The page as XML (`<!DOCTYPE html>` is a DTD to an XML parser).
fn parse(html: &str) -> Result<roxmltree::Document<'_>, roxmltree::Error> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(html, opts)
}

fn has_class(n: &roxmltree::Node, class: &str) -> bool {
    n.attribute("class").is_some_and(|c| c.split(' ').any(|x| x == class))
}

#[test]
fn the_timeline_has_a_row_per_host_and_a_segment_per_step() {
    let html = render(&run(true), &opts());
    let doc = parse(&html).unwrap_or_else(|e| panic!("{e}\n{html}"));
    let svg = doc
        .descendants()
        .find(|n| n.has_tag_name("svg") && has_class(n, "timeline"))
        .expect("the timeline");
    let rows: Vec<roxmltree::Node> = svg.descendants().filter(|n| has_class(n, "host-row")).collect();
    assert_eq!(
        rows.iter()
            .map(|r| r.attribute("data-host").unwrap())
            .collect::<Vec<_>>(),
        ["web-1", "web-2", HOSTILE]
    );
    let segs = |row: &roxmltree::Node| -> Vec<(String, String, String)> {
        row.descendants()
            .filter(|n| n.has_tag_name("rect") && has_class(n, "seg"))
            .map(|n| {
                let class = n.attribute("class").unwrap().trim_start_matches("seg ").to_string();
                (
                    n.attribute("data-step").unwrap().to_string(),
                    n.attribute("data-status").unwrap().to_string(),
                    class,
                )
            })
            .collect()
    };
    let steps = [
        "preflight",
        "deregister",
        "stop",
        "deploy",
        "start",
        "health",
        "register",
    ];
    let ok: Vec<(String, String, String)> = steps
        .iter()
        .map(|s| (s.to_string(), "ok".to_string(), "ok".to_string()))
        .collect();
    assert_eq!(segs(&rows[0]), ok);
    assert_eq!(segs(&rows[1]), ok);
    let failed = segs(&rows[2]);
    assert_eq!(failed.len(), 6 + 4, "{failed:?}");
    assert_eq!(failed[5], ("health".into(), "failed".into(), "failed".into()));
    assert!(
        failed[6..].iter().all(|(_, st, class)| st == "ok" && class == "revert"),
        "{failed:?}"
    );
    // Each segment's tooltip has its duration.
    let title = rows[0]
        .descendants()
        .find(|n| n.has_tag_name("rect"))
        .and_then(|r| r.children().find(|c| c.has_tag_name("title")))
        .and_then(|t| t.text())
        .unwrap();
    assert_eq!(title, "web-1 · preflight · 50 ms · ok");
    // Two batches and the pause between them are drawn; the legend names the marks.
    assert_eq!(svg.descendants().filter(|n| has_class(n, "batch")).count(), 2);
    assert_eq!(svg.descendants().filter(|n| has_class(n, "pause")).count(), 1);
    let legend: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("ul") && has_class(n, "legend"))
        .flat_map(|u| u.children().filter_map(|li| li.attribute("class")))
        .collect();
    for mark in ["failed", "revert", "pause", "batch"] {
        assert!(legend.contains(&mark), "{legend:?}");
    }
    // The failed host, its step and reason.
    let failed_rows: Vec<roxmltree::Node> = doc.descendants().filter(|n| has_class(n, "failed-host")).collect();
    assert_eq!(failed_rows.len(), 1);
    let cells: Vec<String> = failed_rows[0]
        .children()
        .filter(|c| c.has_tag_name("td"))
        .map(|c| {
            c.descendants()
                .filter(|t| t.is_text())
                .filter_map(|t| t.text())
                .collect()
        })
        .collect();
    assert_eq!(cells[0], HOSTILE);
    assert_eq!(cells[2], "health");
    assert!(cells[3].starts_with(SCRIPT), "{cells:?}");
    // The header: outcome and exit code, operator; the plan's batches.
    let outcome = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("outcome"))
        .unwrap();
    assert_eq!(
        outcome.text(),
        Some("completed; some hosts failed and were reverted (exit code 1)")
    );
    assert!(html.contains("<dt>operator</dt><dd>alice</dd>"));
    assert_eq!(doc.descendants().filter(|n| has_class(n, "plan-batch")).count(), 2);
}

#[test]
fn every_text_from_events_is_escaped() {
    let html = render(&run(true), &opts());
    let doc = parse(&html).unwrap();
    // No element came from an event's text: the only elements are the page's own.
    assert!(!doc
        .descendants()
        .any(|n| n.has_tag_name("script") || n.has_tag_name("b")));
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<b>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    // And it reads back as the text it was.
    assert!(doc.descendants().any(|n| n.text() == Some(SCRIPT)));
    assert_eq!(esc("a\u{1b}[31m<\"&'>\n"), "a[31m&lt;&quot;&amp;&#39;&gt;\n");
}

#[test]
fn a_run_in_progress_reloads_itself_and_a_finished_one_does_not() {
    let live = render(&run(false), &opts());
    assert!(live.contains(r#"<meta http-equiv="refresh" content="5" />"#));
    assert!(live.contains("in progress"));
    let done = render(&run(true), &opts());
    assert!(!done.contains("http-equiv"));
    // Rebuilt from a journal that ends early: no reload, and it says so.
    let cut = render(&run(false), &PageOptions { live: false, ..opts() });
    assert!(!cut.contains("http-equiv"));
    assert!(cut.contains("unfinished"));
    // Nothing in the page depends on when it was made.
    assert_eq!(render(&run(true), &opts()), done);
}

#[test]
fn an_empty_run_is_still_a_page() {
    let html = render(&[], &PageOptions::default());
    parse(&html).unwrap_or_else(|e| panic!("{e}\n{html}"));
}

#[test]
fn durations_read_well() {
    assert_eq!(duration_text(5), "5 ms");
    assert_eq!(duration_text(1834), "1.8 s");
    assert_eq!(duration_text(125_000), "2m 05s");
    assert_eq!(duration_text(3_720_000), "1h 02m");
}
