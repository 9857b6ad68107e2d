//! Blue-green on plain hosts: which hosts and folders make each side, the release of the idle
//! side (run by the ordinary executor: stage, stop, deploy, start, health, under the usual
//! limits, with no traffic moved), and the switch that moves all traffic at once.
//!
//! The live side is recorded on every host (`remote::bluegreen`), so a run that stops between
//! the release and the switch can be switched (or switched back) by hand with `tranche switch`.

mod traffic;

pub use traffic::{has_weights, move_traffic, switch_count, switch_haproxy, unit, SWITCH_CONCURRENCY};

use crate::inventory::Host;
use crate::playbook::{BlueGreen, Registry, RegistrySpec, Shape, Side};
use crate::release::Release;
use crate::remote::bluegreen::LiveRecord;

/// Why a blue-green step cannot go on, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlueGreenError {
    #[error("{0}")]
    Plan(String),
    #[error("switch traffic: {0}")]
    Switch(String),
}

/// The playbook's blue-green settings, or why there are none.
pub fn settings(r: &Release) -> Result<&BlueGreen, BlueGreenError> {
    r.playbook
        .strategy
        .blue_green()
        .ok_or_else(|| BlueGreenError::Plan("the playbook's `strategy` is not blue-green".into()))
}

/// The targeted hosts of one side: every host (slots), or those of the side's group.
pub fn hosts_of(r: &Release, side: Side) -> Result<Vec<Host>, BlueGreenError> {
    let bg = settings(r)?;
    match bg.shape.group(side) {
        None => Ok(r.targets.clone()),
        Some(pattern) => {
            let idx = crate::inventory::select(&r.inventory, pattern)
                .map_err(|e| BlueGreenError::Plan(format!("`blue_green.{side}`: {e}")))?;
            let names: Vec<&str> = idx.iter().map(|&i| r.inventory.hosts[i].name.as_str()).collect();
            Ok(r.targets
                .iter()
                .filter(|h| names.contains(&h.name.as_str()))
                .cloned()
                .collect())
        }
    }
}

/// The release seen from `side`: its templates rendered for it, and (slots) its own folder
/// `layout.root/<side>`.
pub fn side_view(r: &Release, side: Side) -> Release {
    let mut s = r.clone();
    s.playbook.side = side;
    if let Some(Shape::Slots { .. }) = r.playbook.strategy.blue_green().map(|b| &b.shape) {
        s.playbook.layout.root = format!("{}/{side}", r.playbook.layout.root);
    }
    s
}

/// What the executor runs for the idle side: its hosts and folder, no registry (the idle
/// side gets no traffic until the switch, so nothing is deregistered or registered) and no
/// per-batch gate: a metric over a side without traffic says little, so blue-green watches the
/// gate itself, during the canary period (`canary_weight`) and after the switch.
pub fn idle_release(r: &Release, idle: Side) -> Result<Release, BlueGreenError> {
    let hosts = hosts_of(r, idle)?;
    if hosts.is_empty() {
        return Err(BlueGreenError::Plan(format!("the {idle} side has no targeted host")));
    }
    let mut s = side_view(r, idle);
    s.playbook.registry = Registry::none();
    s.playbook.rollout.gate = None;
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    s.narrow(|h| names.contains(&h.name), true);
    Ok(s)
}

/// The live side the hosts agree on; none before the first switch. Hosts that disagree are an
/// error: the operator switches them to one side first.
pub fn agreed_live(records: &[(String, LiveRecord)]) -> Result<Option<Side>, BlueGreenError> {
    let mut live: Option<Option<Side>> = None;
    for (host, rec) in records {
        let side = side_now(rec);
        match live {
            None => live = Some(side),
            Some(l) if l != side => {
                let name = |s: Option<Side>| s.map_or("none", Side::as_str);
                return Err(BlueGreenError::Plan(format!(
                    "the hosts disagree on the live side: {} says {}, {host} says {}",
                    records[0].0,
                    name(l),
                    name(side)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(live.flatten())
}

/// Before the first blue-green release of two host groups (no side recorded live), the idle
/// side's hosts may already serve, as rolling releases left them: releasing it would stop them
/// while they are in traffic. The hosts of `idle` that run a release, with it; the caller
/// refuses and asks for `tranche switch --to <the other side>` first.
pub fn serving_before_first_switch(
    r: &Release,
    live: Option<Side>,
    idle: Side,
    records: &[(String, LiveRecord)],
) -> Result<Vec<(String, String)>, BlueGreenError> {
    let bg = settings(r)?;
    if live.is_some() || !matches!(bg.shape, Shape::Groups { .. }) {
        return Ok(vec![]);
    }
    let idle_hosts = hosts_of(r, idle)?;
    Ok(records
        .iter()
        .filter(|(h, _)| idle_hosts.iter().any(|x| &x.name == h))
        .filter_map(|(h, rec)| rec.current.clone().map(|v| (h.clone(), v)))
        .collect())
}

/// The live side a host records.
pub fn side_now(rec: &LiveRecord) -> Option<Side> {
    rec.live.as_deref().and_then(Side::parse)
}

/// Every HAProxy server of both sides with its weight once `to` is live: `to`'s servers 100
/// and the other's 0; with `canary` (a percent), `to`'s get `canary` and the other's the rest.
pub fn weights(
    r: &Release,
    to: Side,
    canary: Option<u8>,
    run_id: &str,
) -> Result<Vec<(String, String, u32)>, BlueGreenError> {
    let RegistrySpec::Haproxy { backend, server, .. } = &r.playbook.registry.spec else {
        return Err(BlueGreenError::Plan(format!(
            "the switch needs `registry.kind: haproxy`, not {}",
            r.playbook.registry.kind()
        )));
    };
    let (new_w, old_w) = match canary {
        Some(c) => (u32::from(c), 100 - u32::from(c)),
        None => (100, 0),
    };
    let mut out: Vec<(String, String, u32)> = vec![];
    for side in Side::BOTH {
        let view = side_view(r, side);
        for h in hosts_of(r, side)? {
            let render = |t| view.render(t, &h, run_id, None).map_err(BlueGreenError::Plan);
            let (b, s) = (render(backend)?, render(server)?);
            for (what, name) in [("backend", &b), ("server", &s)] {
                if let Some(problem) = crate::playbook::check::haproxy_name_problem(name) {
                    return Err(BlueGreenError::Plan(format!("HAProxy {what} name {name:?} {problem}")));
                }
            }
            if out.iter().any(|(ob, os, _)| *ob == b && *os == s) {
                return Err(
                    BlueGreenError::Plan(format!("both sides of {} are HAProxy server {b}/{s}", h.name)).hint_slots(),
                );
            }
            out.push((b, s, if side == to { new_w } else { old_w }));
        }
    }
    Ok(out)
}

impl BlueGreenError {
    fn hint_slots(self) -> BlueGreenError {
        match self {
            BlueGreenError::Plan(m) => BlueGreenError::Plan(format!(
                "{m}: name each slot's server apart, e.g. `server: \"{{{{ host.name }}}}-{{{{ slot.name }}}}\"`"
            )),
            e => e,
        }
    }
}

/// The plan's `layout` line on slots: the release goes into the idle slot's own folder, one of
/// two; none for other strategies and shapes.
pub fn slots_layout(r: &Release) -> Option<String> {
    let Shape::Slots { .. } = settings(r).ok()?.shape else {
        return None;
    };
    let dir = |side| side_view(r, side).release_dir(&r.playbook.version);
    Some(format!(
        "{} or {} (the idle slot's; keep {} in each)",
        dir(Side::Blue),
        dir(Side::Green),
        r.playbook.layout.keep
    ))
}

/// The plan's lines about blue-green: both sides, and what the release switches.
pub fn plan_lines(r: &Release) -> Vec<String> {
    let Ok(bg) = settings(r) else {
        return vec![];
    };
    let mut out = vec![];
    for side in Side::BOTH {
        let hosts = hosts_of(r, side).map(|h| h.len()).unwrap_or(0);
        let view = side_view(r, side);
        let place = match (&bg.shape, bg.shape.port(side)) {
            (Shape::Slots { .. }, Some(port)) => format!("{} port {port}", view.playbook.layout.root),
            _ => format!("group {}", bg.shape.group(side).unwrap_or("")),
        };
        out.push(format!(
            "{:<9} {place}, {hosts} host{}",
            side.as_str(),
            if hosts == 1 { "" } else { "s" }
        ));
    }
    let servers = switch_count(r, Side::Blue, "plan");
    // A canary weight without a gate is refused when the playbook is read.
    let canary = match bg.canary_weight {
        0 => String::new(),
        w => format!(", after {w}% of the traffic while the gate watches"),
    };
    out.push(match servers {
        Ok(n) if has_weights(r) => format!(
            "switch    {} goes to the side not live (read on the hosts), then all {n} HAProxy servers switch at once{canary}",
            r.playbook.version
        ),
        Ok(n) => format!(
            "switch    {} goes to the side not live (read on the hosts), then its instances register in the {} registry and, once all are, the other side's deregister ({n} instances){canary}",
            r.playbook.version,
            r.playbook.registry.kind()
        ),
        Err(e) => format!("switch    not possible: {e}"),
    });
    out
}

#[cfg(test)]
mod tests;
