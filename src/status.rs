//! `tranche status`: the release `current` points to on every targeted host, and whether the
//! fleet is mixed.

use std::time::Duration;

use serde::Serialize;

use crate::release::Release;
use crate::remote::history::HistoryLine;
use crate::ssh::{Connection, SshSettings};

/// What one host runs.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub address: String,
    pub zone: Option<String>,
    /// The release `current` points to; `None` when there is none or the host was not reached.
    pub release: Option<String>,
    /// With `artifact.image`: the image the live release records (`NAME@sha256:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Why the host could not be asked.
    pub error: Option<String>,
    /// With `--history`: the last lines of its `.tranche-history`, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryLine>>,
    /// With `--history`: why its history could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
    /// Blue-green: what the host records (the live side) and, on slots, each slot's release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<SidesStatus>,
}

/// Blue-green on one host: the live side it records (none before the first switch), and on
/// slots the release of each slot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SidesStatus {
    pub live: Option<String>,
    /// The side `tranche retire` stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired: Option<String>,
    pub blue: Option<String>,
    pub green: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseCount {
    pub release: String,
    pub hosts: usize,
}

/// The fleet's state.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub service: String,
    pub hosts: Vec<HostStatus>,
    /// Each release and how many hosts run it, most common first.
    pub releases: Vec<ReleaseCount>,
    pub mixed: bool,
    pub unreachable: usize,
}

/// `history`: also read the last N lines of each host's `.tranche-history`.
pub async fn query(r: &Release, settings: &SshSettings, concurrency: usize, history: Option<usize>) -> FleetStatus {
    let cmd = crate::remote::status(&r.playbook.layout.root).to_command();
    let tail = history.map(|n| crate::remote::history::tail(&r.playbook.layout.root, n).to_command());
    let live = match &r.playbook.artifact.source {
        crate::playbook::ArtifactSource::Image(img) => {
            Some(crate::remote::image::live(&r.playbook.layout.root, img, &r.playbook.service).to_command())
        }
        _ => None,
    };
    let bg = r.playbook.strategy.blue_green();
    let sides = bg.map(|_| crate::remote::bluegreen::get(&r.playbook.layout.root).to_command());
    let slots = matches!(bg.map(|b| &b.shape), Some(crate::playbook::Shape::Slots { .. }));
    let specs: Vec<_> = r.targets.iter().map(crate::reach::host_spec).collect();
    crate::ssh::config::prefetch(settings, &specs);
    let hosts = crate::executor::fan_out::bounded(&r.targets, concurrency, |h| {
        let cmd = cmd.clone();
        let tail = tail.clone();
        let live = live.clone();
        let sides = sides.clone();
        async move {
            let ep = crate::reach::endpoint(h, settings);
            let res = async {
                let conn = Connection::open(&ep, settings).await.map_err(|e| e.to_string())?;
                let out = conn
                    .exec(&cmd, Duration::from_secs(30))
                    .await
                    .map_err(|e| e.to_string());
                let lines = match &tail {
                    Some(t) if matches!(&out, Ok(o) if o.success()) => {
                        Some(match conn.exec(t, Duration::from_secs(30)).await {
                            Ok(o) if o.success() => Ok(crate::remote::history::parse_tail(&o.stdout)),
                            Ok(o) => Err(o.describe()),
                            Err(e) => Err(e.to_string()),
                        })
                    }
                    _ => None,
                };
                let image = match &live {
                    Some(l) if matches!(&out, Ok(o) if o.success()) => {
                        match conn.exec(l, Duration::from_secs(30)).await {
                            Ok(o) => crate::remote::image::parse_image(&o.stdout),
                            Err(_) => None,
                        }
                    }
                    _ => None,
                };
                let record = match &sides {
                    Some(cmd) => {
                        let o = conn.exec(cmd, Duration::from_secs(30)).await.map_err(|e| e.to_string());
                        match o {
                            Ok(o) if o.success() => Some(crate::remote::bluegreen::LiveRecord::parse(&o.stdout)),
                            Ok(o) => {
                                conn.close().await;
                                return Err(o.describe());
                            }
                            Err(e) => {
                                conn.close().await;
                                return Err(e);
                            }
                        }
                    }
                    None => None,
                };
                conn.close().await;
                let out = out?;
                if !out.success() {
                    return Err(out.describe());
                }
                Ok::<_, String>((crate::remote::parse_current(&out.stdout), lines, image, record))
            }
            .await;
            let (release, error, lines, image, record) = match res {
                Ok((rel, lines, image, record)) => (rel, None, lines, image, record),
                Err(e) => (None, Some(e), None, None, None),
            };
            // On slots, the host runs the release of its live slot.
            let release = match (&record, slots) {
                (Some(rec), true) => rec.live.as_deref().and_then(|l| rec.release(l)).map(str::to_string),
                _ => release,
            };
            let blue_green = record.map(|rec| SidesStatus {
                live: rec.live.clone(),
                retired: rec.retired.clone(),
                blue: if slots { rec.blue.clone() } else { None },
                green: if slots { rec.green.clone() } else { None },
            });
            let (history, history_error) = match lines {
                Some(Ok(l)) => (Some(l), None),
                Some(Err(e)) => (None, Some(e)),
                None => (None, None),
            };
            HostStatus {
                name: h.name.clone(),
                address: ep.address,
                zone: h.zone.clone(),
                release,
                image,
                error,
                history,
                history_error,
                blue_green,
            }
        }
    })
    .await;
    let mut releases: Vec<ReleaseCount> = Vec::new();
    for h in hosts.iter().filter(|h| h.error.is_none()) {
        let rel = h.release.clone().unwrap_or_else(|| "(none)".into());
        match releases.iter_mut().find(|c| c.release == rel) {
            Some(c) => c.hosts += 1,
            None => releases.push(ReleaseCount { release: rel, hosts: 1 }),
        }
    }
    releases.sort_by(|a, b| b.hosts.cmp(&a.hosts).then(a.release.cmp(&b.release)));
    let unreachable = hosts.iter().filter(|h| h.error.is_some()).count();
    FleetStatus {
        service: r.playbook.service.clone(),
        mixed: releases.len() > 1,
        releases,
        unreachable,
        hosts,
    }
}

/// One line of a host's history for people: `TIME  FROM -> TO  OUTCOME  by OPERATOR@CONTROLLER
/// (run RUN)`.
pub fn history_text(l: &HistoryLine) -> String {
    if l.run.is_empty() {
        // A line without its fields, shown as the host holds it.
        return l.outcome.clone();
    }
    format!(
        "{}  {} -> {}  {}  by {}@{}  (run {})",
        l.time, l.from, l.to, l.outcome, l.operator, l.controller, l.run
    )
}

/// The status as a table for people.
pub fn to_table(s: &FleetStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let wn = s.hosts.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
    let wa = s.hosts.iter().map(|h| h.address.len()).max().unwrap_or(7).max(7);
    let _ = writeln!(out, "{:<wn$}  {:<wa$}  RELEASE", "HOST", "ADDRESS");
    let common = s.releases.first().map(|c| c.release.as_str());
    for h in &s.hosts {
        let rel = match (&h.error, &h.release) {
            (Some(e), _) => format!("unreachable: {e}"),
            (None, Some(r)) if s.mixed && Some(r.as_str()) != common => format!("{r}  <- differs"),
            (None, Some(r)) => r.clone(),
            (None, None) => "(none)".into(),
        };
        let sides = match &h.blue_green {
            Some(b) => {
                let mut t = format!("  live: {}", b.live.as_deref().unwrap_or("none"));
                if b.blue.is_some() || b.green.is_some() {
                    let rel = |r: &Option<String>| r.clone().unwrap_or_else(|| "(none)".into());
                    t.push_str(&format!(" (blue {}, green {})", rel(&b.blue), rel(&b.green)));
                }
                if let Some(r) = &b.retired {
                    t.push_str(&format!(", {r} retired"));
                }
                t
            }
            None => String::new(),
        };
        let rel = match &h.image {
            Some(i) => format!("{rel}  image {}", crate::remote::image::short_ref(i)),
            None => rel,
        };
        let _ = writeln!(out, "{:<wn$}  {:<wa$}  {rel}{sides}", h.name, h.address);
        if let Some(e) = &h.history_error {
            let _ = writeln!(out, "    history unreadable: {e}");
        }
        match h.history.as_deref() {
            Some([]) => {
                let _ = writeln!(out, "    (no history)");
            }
            Some(lines) => {
                for l in lines {
                    let _ = writeln!(out, "    {}", history_text(l));
                }
            }
            None => {}
        }
    }
    let summary: Vec<String> = s
        .releases
        .iter()
        .map(|c| {
            format!(
                "{} on {} host{}",
                c.release,
                c.hosts,
                if c.hosts == 1 { "" } else { "s" }
            )
        })
        .collect();
    let _ = writeln!(out);
    if s.mixed {
        let _ = write!(out, "MIXED fleet: {}", summary.join(", "));
    } else {
        let _ = write!(out, "{}: {}", s.service, summary.join(", "));
    }
    if s.unreachable > 0 {
        let _ = write!(out, "; {} unreachable", s.unreachable);
    }
    let _ = writeln!(out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, history: Option<Vec<HistoryLine>>, history_error: Option<&str>) -> HostStatus {
        HostStatus {
            name: name.into(),
            address: "10.0.0.1".into(),
            zone: None,
            release: Some("2.0.0".into()),
            image: None,
            error: None,
            history,
            history_error: history_error.map(Into::into),
            blue_green: None,
        }
    }

    #[test]
    fn the_live_side_is_shown_per_host() {
        let mut a = host("web-01", None, None);
        a.blue_green = Some(SidesStatus {
            live: Some("green".into()),
            retired: Some("blue".into()),
            blue: Some("1.0.0".into()),
            green: Some("2.0.0".into()),
        });
        let mut b = host("web-02", None, None);
        b.blue_green = Some(SidesStatus {
            live: None,
            retired: None,
            blue: None,
            green: None,
        });
        let s = FleetStatus {
            service: "demo".into(),
            hosts: vec![a, b],
            releases: vec![],
            mixed: false,
            unreachable: 0,
        };
        let t = to_table(&s);
        assert!(
            t.contains("web-01  10.0.0.1  2.0.0  live: green (blue 1.0.0, green 2.0.0), blue retired"),
            "{t}"
        );
        assert!(t.contains("web-02  10.0.0.1  2.0.0  live: none\n"), "{t}");
    }

    #[test]
    fn history_lines_are_shown_under_their_host_and_in_the_json() {
        let lines = crate::remote::history::parse_tail(
            "history=2026-12-02T02:00:00Z\tr1\talice\tctl-a\t1.0.0\t2.0.0\tok\nhistory=by hand\n",
        );
        let s = FleetStatus {
            service: "web".into(),
            hosts: vec![
                host("a", Some(lines), None),
                host("b", Some(vec![]), None),
                host("c", None, Some("exit 19")),
            ],
            releases: vec![ReleaseCount {
                release: "2.0.0".into(),
                hosts: 3,
            }],
            mixed: false,
            unreachable: 0,
        };
        let t = to_table(&s);
        let want = "a     10.0.0.1  2.0.0\n    2026-12-02T02:00:00Z  1.0.0 -> 2.0.0  ok  by alice@ctl-a  (run r1)\n    by hand\n\
                    b     10.0.0.1  2.0.0\n    (no history)\n\
                    c     10.0.0.1  2.0.0\n    history unreadable: exit 19\n";
        assert!(t.contains(want), "{t}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["hosts"][0]["history"][0]["operator"], "alice");
        assert_eq!(json["hosts"][0]["history"][0]["to"], "2.0.0");
        assert_eq!(json["hosts"][1]["history"], serde_json::json!([]));
        assert_eq!(json["hosts"][2]["history_error"], "exit 19");
        // Without --history, the JSON is as before.
        let plain = serde_json::to_value(host("d", None, None)).unwrap();
        assert!(plain.get("history").is_none() && plain.get("history_error").is_none());
    }
}
