//! `tranche status`: the release `current` points to on every targeted host, and whether the
//! fleet is mixed.

use std::time::Duration;

use serde::Serialize;

use crate::release::Release;
use crate::ssh::{Connection, SshSettings};

/// What one host runs.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub address: String,
    pub zone: Option<String>,
    /// The release `current` points to; `None` when there is none or the host was not reached.
    pub release: Option<String>,
    /// Why the host could not be asked.
    pub error: Option<String>,
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

pub async fn query(r: &Release, settings: &SshSettings, concurrency: usize) -> FleetStatus {
    let cmd = crate::remote::status(&r.playbook.layout.root).to_command();
    let specs: Vec<_> = r.targets.iter().map(crate::executor::host_spec).collect();
    crate::ssh::config::prefetch(settings, &specs);
    let hosts = crate::executor::fan_out::bounded(&r.targets, concurrency, |h| {
        let cmd = cmd.clone();
        async move {
            let ep = crate::executor::endpoint(h, settings);
            let res = async {
                let conn = Connection::open(&ep, settings).await.map_err(|e| e.to_string())?;
                let out = conn
                    .exec(&cmd, Duration::from_secs(30))
                    .await
                    .map_err(|e| e.to_string());
                conn.close().await;
                let out = out?;
                if !out.success() {
                    return Err(out.describe());
                }
                Ok::<Option<String>, String>(crate::remote::parse_current(&out.stdout))
            }
            .await;
            let (release, error) = match res {
                Ok(rel) => (rel, None),
                Err(e) => (None, Some(e)),
            };
            HostStatus {
                name: h.name.clone(),
                address: ep.address,
                zone: h.zone.clone(),
                release,
                error,
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
        let _ = writeln!(out, "{:<wn$}  {:<wa$}  {rel}", h.name, h.address);
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
