//! Reports for CI systems, written when the run ends: JUnit XML (a test case per host; a
//! failure names the step and carries the stderr tail) and a Markdown summary (also appended to
//! `$GITHUB_STEP_SUMMARY` when it is set).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use crate::events::{Event, EventKind, Status};

/// One host as the reports see it.
#[derive(Debug, Default, Clone)]
struct HostReport {
    batch: usize,
    status: Option<Status>,
    ms: u64,
    msg: String,
    /// The step that failed first, its message and stderr tail.
    failure: Option<(String, String, Option<String>)>,
    /// Every step line, for the test case's output.
    log: Vec<String>,
}

fn host_entry<'a>(st: &'a mut State, name: &str) -> &'a mut HostReport {
    if !st.hosts.contains_key(name) {
        st.order.push(name.to_string());
    }
    st.hosts.entry(name.to_string()).or_default()
}

/// Collects the events of a run and writes the CI reports at the end.
#[derive(Default)]
pub struct CiReports {
    pub junit: Option<PathBuf>,
    pub summary: Option<PathBuf>,
    state: std::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    run: String,
    title: String,
    /// The container image of an `artifact.image` release, shortened.
    image: Option<String>,
    started: String,
    order: Vec<String>,
    hosts: BTreeMap<String, HostReport>,
    batches: Vec<(usize, usize, usize, usize, u64)>,
    warnings: Vec<String>,
    /// Blue-green's moves of traffic, in order.
    switches: Vec<SwitchReport>,
    finish: Option<(i32, u64, String)>,
}

/// One `switched` event.
#[derive(Debug, Clone)]
struct SwitchReport {
    from: Option<String>,
    to: String,
    why: String,
    weight: u32,
    servers: usize,
    ms: f64,
    status: Status,
    msg: String,
}

impl SwitchReport {
    fn name(&self) -> String {
        let what = match self.why.as_str() {
            "canary" => format!("canary: {}% to {}", self.weight, self.to),
            "back" => format!("switch back to {}", self.to),
            _ => format!("switch to {}", self.to),
        };
        match &self.from {
            Some(f) if self.why != "canary" => format!("{what} (from {f})"),
            _ => what,
        }
    }
}

impl CiReports {
    pub fn is_active(&self) -> bool {
        self.junit.is_some() || self.summary.is_some() || std::env::var_os("GITHUB_STEP_SUMMARY").is_some()
    }

    pub fn record(&self, e: &Event) {
        let mut st = self.state.lock().expect("ci state");
        let st = &mut *st;

        match &e.kind {
            EventKind::RunStarted {
                service,
                version,
                mode,
                plan,
                ..
            } => {
                st.run = e.run.clone();
                st.title = format!("{mode} {service} {version}");
                if plan.stage.mode == "image" {
                    st.image = Some(crate::remote::image::short_ref(&plan.stage.source));
                }
                st.started = e.ts.clone();
            }
            EventKind::StepFinished {
                batch,
                host: h,
                step,
                status,
                ms,
                msg,
                stderr,
                ..
            } => {
                let r = host_entry(st, h);
                r.batch = *batch;
                r.log.push(format!(
                    "{:<10} {:<7} {:>6}ms  {msg}",
                    step.as_str(),
                    status.as_str(),
                    ms
                ));
                if *status == Status::Failed && r.failure.is_none() {
                    r.failure = Some((step.as_str().to_string(), msg.clone(), stderr.clone()));
                }
            }
            EventKind::HostFinished {
                batch,
                host: h,
                status,
                ms,
                msg,
            } => {
                let r = host_entry(st, h);
                r.batch = *batch;
                r.status = Some(*status);
                r.ms += ms;
                r.msg = msg.clone();
            }
            EventKind::BatchFinished {
                batch,
                ok,
                skipped,
                failed,
                ms,
            } => st.batches.push((*batch, *ok, *skipped, *failed, *ms)),
            EventKind::Warning { host: h, msg } => {
                st.warnings.push(match h {
                    Some(h) => format!("{h}: {msg}"),
                    None => msg.clone(),
                });
            }
            EventKind::Switched {
                from,
                to,
                why,
                weight,
                servers,
                ms,
                status,
                msg,
            } => st.switches.push(SwitchReport {
                from: from.clone(),
                to: to.clone(),
                why: why.clone(),
                weight: *weight,
                servers: *servers,
                ms: *ms,
                status: *status,
                msg: msg.clone(),
            }),
            EventKind::RunFinished { exit_code, ms, msg, .. } => st.finish = Some((*exit_code, *ms, msg.clone())),
            _ => {}
        }
    }

    /// Write the reports; errors are returned for the caller to show.
    pub fn write(&self) -> Vec<String> {
        let st = self.state.lock().expect("ci state");
        let mut errors = Vec::new();
        if let Some(path) = &self.junit {
            if let Err(e) = std::fs::write(path, junit(&st)) {
                errors.push(format!("cannot write {}: {e}", path.display()));
            }
        }
        let md = summary(&st);
        if let Some(path) = &self.summary {
            if let Err(e) = std::fs::write(path, &md) {
                errors.push(format!("cannot write {}: {e}", path.display()));
            }
        }
        if let Some(gh) = std::env::var_os("GITHUB_STEP_SUMMARY") {
            use std::io::Write as _;
            let res = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&gh)
                .and_then(|mut f| f.write_all(md.as_bytes()));
            if let Err(e) = res {
                errors.push(format!("cannot append to $GITHUB_STEP_SUMMARY: {e}"));
            }
        }
        errors
    }
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn junit(st: &State) -> String {
    let hosts: Vec<(&String, &HostReport)> = st
        .order
        .iter()
        .filter_map(|h| st.hosts.get(h).map(|r| (h, r)))
        .collect();
    // A switch that failed, or a switch back (the gate failed after the new side took traffic),
    // is a failed test case.
    let switch_failed = |s: &SwitchReport| s.status == Status::Failed || s.why == "back";
    let failures = hosts
        .iter()
        .filter(|(_, r)| matches!(r.status, Some(Status::Failed | Status::Reverted)))
        .count()
        + st.switches.iter().filter(|s| switch_failed(s)).count();
    let tests = hosts.len() + st.switches.len();
    let skipped = hosts
        .iter()
        .filter(|(_, r)| matches!(r.status, Some(Status::Skipped) | None))
        .count();
    let secs = st.finish.as_ref().map(|f| f.1).unwrap_or(0) as f64 / 1000.0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"tranche\" tests=\"{tests}\" failures=\"{failures}\" time=\"{secs:.3}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{secs:.3}\" timestamp=\"{}\">",
        xml(&format!("{} (run {})", st.title, st.run)),
        xml(&st.started)
    );
    for (name, r) in hosts {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"batch {}\" time=\"{:.3}\">",
            xml(name),
            r.batch,
            r.ms as f64 / 1000.0
        );
        match (&r.status, &r.failure) {
            (Some(Status::Failed | Status::Reverted), f) => {
                let (step, msg, stderr) = f.clone().unwrap_or_else(|| ("run".into(), r.msg.clone(), None));
                let body = match stderr {
                    Some(s) => format!("{}\n\nstderr (last lines):\n{s}", r.msg),
                    None => r.msg.clone(),
                };
                let _ = write!(
                    out,
                    "\n      <failure type=\"{}\" message=\"{}\">{}</failure>",
                    xml(&step),
                    xml(&format!("{step}: {msg}")),
                    xml(&body)
                );
            }
            (Some(Status::Skipped), _) => {
                let _ = write!(out, "\n      <skipped message=\"{}\"/>", xml(&r.msg));
            }
            (None, _) => {
                let _ = write!(out, "\n      <skipped message=\"not reached\"/>");
            }
            _ => {}
        }
        if !r.log.is_empty() {
            let _ = write!(out, "\n      <system-out>{}</system-out>", xml(&r.log.join("\n")));
        }
        let _ = writeln!(out, "\n    </testcase>");
    }
    for sw in &st.switches {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"blue-green\" time=\"{:.4}\">",
            xml(&sw.name()),
            sw.ms / 1000.0
        );
        if switch_failed(sw) {
            let kind = if sw.status == Status::Failed { "switch" } else { "gate" };
            let _ = write!(
                out,
                "\n      <failure type=\"{kind}\" message=\"{}\">{}</failure>",
                xml(&sw.msg),
                xml(&sw.msg)
            );
        }
        // The move's own line names what it set: HAProxy servers, or a registry's instances.
        let unit = if sw.msg.contains("(first to last instance)") {
            "instances"
        } else {
            "HAProxy servers"
        };
        let _ = write!(
            out,
            "\n      <system-out>{}</system-out>",
            xml(&format!("{} {unit} in {:.1}ms: {}", sw.servers, sw.ms, sw.msg))
        );
        let _ = writeln!(out, "\n    </testcase>");
    }
    let _ = writeln!(out, "  </testsuite>\n</testsuites>");
    out
}

fn summary(st: &State) -> String {
    let mut out = String::new();
    let (code, ms, msg) = st.finish.clone().unwrap_or((-1, 0, "the run did not finish".into()));
    let verdict = match code {
        0 => "succeeded",
        1 => "completed with reverted hosts",
        3 => "refused at preflight",
        4 => "stopped: failure budget exceeded",
        130 => "interrupted",
        _ => "failed",
    };
    let _ = writeln!(out, "## tranche: {} {verdict} (exit {code})\n", st.title);
    if let Some(image) = &st.image {
        let _ = writeln!(out, "Image `{image}`.\n");
    }
    let _ = writeln!(out, "{msg}  \nRun `{}`, {:.1}s.\n", st.run, ms as f64 / 1000.0);
    let count = |want: Status| st.hosts.values().filter(|r| r.status == Some(want)).count();
    let _ = writeln!(
        out,
        "| ok | unchanged | reverted | failed | not reached |\n|---:|---:|---:|---:|---:|"
    );
    let unreached = st.hosts.values().filter(|r| r.status.is_none()).count();
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {unreached} |\n",
        count(Status::Ok),
        count(Status::Skipped),
        count(Status::Reverted),
        count(Status::Failed)
    );
    let failed: Vec<(&String, &HostReport)> = st
        .order
        .iter()
        .filter_map(|h| st.hosts.get(h).map(|r| (h, r)))
        .filter(|(_, r)| matches!(r.status, Some(Status::Failed | Status::Reverted)))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(
            out,
            "### Hosts that failed\n\n| host | batch | step | status | message |\n|---|---:|---|---|---|"
        );
        for (h, r) in failed {
            let (step, m) = r
                .failure
                .as_ref()
                .map(|f| (f.0.clone(), f.1.clone()))
                .unwrap_or(("run".into(), r.msg.clone()));
            let status = r.status.map(|s| s.as_str()).unwrap_or("");
            let _ = writeln!(
                out,
                "| {h} | {} | {step} | {status} | {} |",
                r.batch,
                m.replace('|', "\\|")
            );
        }
        let _ = writeln!(out);
    }
    if !st.batches.is_empty() {
        let _ = writeln!(
            out,
            "### Batches\n\n| batch | ok | unchanged | failed | time |\n|---:|---:|---:|---:|---:|"
        );
        for (b, ok, sk, f, ms) in &st.batches {
            let _ = writeln!(out, "| {b} | {ok} | {sk} | {f} | {:.1}s |", *ms as f64 / 1000.0);
        }
        let _ = writeln!(out);
    }
    if !st.switches.is_empty() {
        let _ = writeln!(
            out,
            "### Blue-green switches\n\n| switch | servers | first to last | status | |\n|---|---:|---:|---|---|"
        );
        for sw in &st.switches {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}ms | {} | {} |",
                sw.name(),
                sw.servers,
                sw.ms,
                sw.status.as_str(),
                sw.msg.replace('|', "\\|")
            );
        }
        let _ = writeln!(out);
    }
    if !st.warnings.is_empty() {
        let _ = writeln!(out, "### Warnings\n");
        for w in &st.warnings {
            let _ = writeln!(out, "- {}", w.replace('\n', " "));
        }
        let _ = writeln!(out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switched(why: &str, to: &str, status: Status) -> EventKind {
        EventKind::Switched {
            from: Some(if to == "green" { "blue" } else { "green" }.into()),
            to: to.into(),
            why: why.into(),
            weight: 100,
            servers: 4,
            ms: 0.3,
            status,
            msg: format!("{why} to {to}"),
        }
    }

    #[test]
    fn each_switch_is_a_test_case_and_a_row_and_a_switch_back_fails() {
        let ci = CiReports::default();
        for k in [
            switched("release", "green", Status::Ok),
            switched("back", "blue", Status::Ok),
            EventKind::RunFinished {
                ok: 2,
                failed: 0,
                reverted: 0,
                skipped: 0,
                exit_code: 4,
                ms: 10,
                msg: "the metric gate failed after the switch; all traffic is back on the blue side".into(),
            },
        ] {
            ci.record(&Event::new("r1", k));
        }
        let st = ci.state.lock().unwrap();
        let x = junit(&st);
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(
            x.contains("<testcase name=\"switch to green (from blue)\" classname=\"blue-green\" time=\"0.0003\">\n      <system-out>"),
            "{x}"
        );
        assert!(
            x.contains("<testcase name=\"switch back to blue (from green)\" classname=\"blue-green\" time=\"0.0003\">\n      <failure type=\"gate\" message=\"back to blue\">"),
            "{x}"
        );
        let md = summary(&st);
        assert!(
            md.contains("| switch to green (from blue) | 4 | 0.3ms | ok | release to green |"),
            "{md}"
        );
        assert!(
            md.contains("| switch back to blue (from green) | 4 | 0.3ms | ok | back to blue |"),
            "{md}"
        );
    }
}
