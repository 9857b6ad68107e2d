//! Moving traffic between the two sides, the one way every move goes (the canary's weight, the
//! switch of a release, the switch back, `tranche switch`): HAProxy's weights in one step over
//! its runtime API, or a registry's own calls (`http`, a preset, `command`): every instance of
//! the new side registered, and only once all are, every instance of the old side deregistered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{hosts_of, side_view, weights, BlueGreenError};
use crate::inventory::Host;
use crate::playbook::{RegistrySpec, Side};
use crate::registry::{HaproxyApi, Link, LinkRole, Registry, RegistryError};
use crate::release::Release;
use crate::ssh::{Connection, SshSettings};

/// Registry calls of one switch in flight at once (a `command` registry's delegate runs its
/// calls one at a time anyway).
pub const SWITCH_CONCURRENCY: usize = 32;

/// What a move sets, for the lines people read: one (`server`, `instance`) and many.
pub fn unit(r: &Release) -> (&'static str, &'static str) {
    match r.playbook.registry.spec {
        RegistrySpec::Haproxy { .. } => ("server", "HAProxy servers"),
        _ => ("instance", "instances"),
    }
}

/// Whether the registry can give a side part of the traffic (HAProxy's weights); the others
/// register an instance or do not.
pub fn has_weights(r: &Release) -> bool {
    matches!(r.playbook.registry.spec, RegistrySpec::Haproxy { .. })
}

/// Move traffic to `to` (all of it, or `canary` percent, HAProxy only). The time from the first
/// call to the last answer, and how many servers or instances were set (both sides).
pub async fn move_traffic(
    r: &Release,
    settings: &SshSettings,
    to: Side,
    canary: Option<u8>,
    run_id: &str,
) -> Result<(Duration, usize), BlueGreenError> {
    if has_weights(r) {
        let w = weights(r, to, canary, run_id)?;
        let took = switch_haproxy(r, settings, &w).await?;
        return Ok((took, w.len()));
    }
    if let Some(c) = canary {
        return Err(BlueGreenError::Plan(format!(
            "a `{}` registry has no weights: it cannot give {c}% of the traffic to one side",
            r.playbook.registry.kind()
        )));
    }
    let (new, old) = (SideSet::of(r, to)?, SideSet::of(r, to.other())?);
    let reg = adapter(r)?;
    apart(&*reg, &new, &old, run_id)?;
    let conns = connect(r, settings, &*reg, &new, &old).await?;
    let moved = register_then_deregister(&*reg, &new, &old, &conns, run_id).await;
    reg.close().await;
    for c in conns.values() {
        c.close().await;
    }
    let moved = moved?;
    // The old side's instances left at once: one drain time for all of them.
    let drain = r.playbook.registry.drain;
    if !drain.is_zero() {
        tokio::time::sleep(drain).await;
    }
    Ok(moved)
}

/// Whether a move to `to` can be made, checked before any host changes: every template renders
/// for every server or instance of both sides, and the two sides are told apart. How many
/// servers or instances it sets.
pub fn switch_count(r: &Release, to: Side, run_id: &str) -> Result<usize, BlueGreenError> {
    if has_weights(r) {
        return weights(r, to, None, run_id).map(|w| w.len());
    }
    let (new, old) = (SideSet::of(r, to)?, SideSet::of(r, to.other())?);
    let reg = adapter(r)?;
    apart(&*reg, &new, &old, run_id)?;
    Ok(new.hosts.len() + old.hosts.len())
}

/// One side as the registry sees it: its hosts, and the release its templates render with.
pub(super) struct SideSet {
    pub side: Side,
    pub view: Release,
    pub hosts: Vec<Host>,
}

impl SideSet {
    pub fn of(r: &Release, side: Side) -> Result<SideSet, BlueGreenError> {
        Ok(SideSet {
            side,
            view: side_view(r, side),
            hosts: hosts_of(r, side)?,
        })
    }
}

/// The playbook's registry adapter, without its drain: the switch drains once, after the last
/// instance of the old side left, and its time is that of the calls alone.
fn adapter(r: &Release) -> Result<Box<dyn Registry>, BlueGreenError> {
    if matches!(r.playbook.registry.spec, RegistrySpec::None) {
        return Err(BlueGreenError::Plan(
            "blue-green moves traffic through the registry, and `registry.kind` is none: set `haproxy`, `http`, a preset or `command`".into(),
        ));
    }
    let mut p = r.playbook.clone();
    p.registry.drain = Duration::ZERO;
    Ok(crate::registry::build(&p))
}

/// The two sides' instances must be apart in the registry: an old instance whose deregister
/// call is a new instance's would take the new side out with the old.
pub(super) fn apart(reg: &dyn Registry, new: &SideSet, old: &SideSet, run_id: &str) -> Result<(), BlueGreenError> {
    let calls = |s: &SideSet| -> Result<Vec<(String, String)>, BlueGreenError> {
        s.hosts
            .iter()
            .map(|h| {
                reg.deregister_call(&s.view, h, run_id)
                    .map(|c| (h.name.clone(), c))
                    .map_err(|e| BlueGreenError::Plan(format!("the registry call for {} ({}): {e}", h.name, s.side)))
            })
            .collect()
    };
    let theirs = calls(old)?;
    for (host, call) in calls(new)? {
        if let Some((other, _)) = theirs.iter().find(|(_, c)| *c == call) {
            let which = if *other == host {
                format!("both sides of {host}")
            } else {
                format!("{host} ({}) and {other} ({})", new.side, old.side)
            };
            return Err(BlueGreenError::Plan(format!(
                "{which} are one instance in the registry (the same deregister call): taking the old side out would take the new one out too; name each side's instance apart, e.g. with `{{{{ slot.name }}}}` or `{{{{ host.name }}}}` in the key or id"
            )));
        }
    }
    Ok(())
}

/// The connections the registry's calls go through, opened before any call: its link (a
/// `command` delegate), and for a `command` registry that runs on the hosts, every host of both
/// sides (a few at a time). Nothing for `http` and the presets.
async fn connect(
    r: &Release,
    settings: &SshSettings,
    reg: &dyn Registry,
    new: &SideSet,
    old: &SideSet,
) -> Result<HashMap<String, Connection>, BlueGreenError> {
    let not_switched = |e: String| BlueGreenError::Switch(format!("{e}; nothing was switched"));
    if let Some(link) = reg.link() {
        let conn = crate::registry::open_link(r, &link, settings)
            .await
            .map_err(not_switched)?;
        reg.attach(conn);
    }
    reg.preflight().await.map_err(|e| not_switched(e.to_string()))?;
    let mut conns = HashMap::new();
    if !reg.runs_on_host() {
        return Ok(conns);
    }
    let mut hosts: Vec<&Host> = vec![];
    for h in new.hosts.iter().chain(&old.hosts) {
        if !hosts.iter().any(|x| x.name == h.name) {
            hosts.push(h);
        }
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(settings.max_connecting.max(1)));
    let opened = futures::future::join_all(hosts.iter().map(|h| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.expect("gate");
            let conn = Connection::open(&crate::reach::endpoint(h, settings), settings).await;
            (h, conn)
        }
    }))
    .await;
    let mut failed = None;
    for (h, conn) in opened {
        match conn {
            Ok(mut c) => {
                c.become_root = crate::reach::wants_become(&r.playbook, h);
                conns.insert(h.name.clone(), c);
            }
            Err(e) => failed = failed.or(Some(format!("cannot connect to {}: {e}", h.name))),
        }
    }
    if let Some(e) = failed {
        for c in conns.values() {
            c.close().await;
        }
        reg.close().await;
        return Err(not_switched(e));
    }
    Ok(conns)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Register,
    Deregister,
}

/// One call per host of `hosts` (of side `s`), [`SWITCH_CONCURRENCY`] at a time; each host's
/// answer.
async fn calls<'a>(
    reg: &'a dyn Registry,
    s: &'a SideSet,
    hosts: &'a [Host],
    conns: &'a HashMap<String, Connection>,
    run_id: &'a str,
    call: Call,
) -> Vec<(&'a Host, Result<String, RegistryError>)> {
    futures::stream::iter(hosts)
        .map(|h| async move {
            let conn = conns.get(&h.name);
            let res = match call {
                Call::Register => reg.register(&s.view, h, conn, run_id).await,
                Call::Deregister => reg.deregister(&s.view, h, conn, run_id).await,
            };
            (h, res)
        })
        .buffer_unordered(SWITCH_CONCURRENCY)
        .collect()
        .await
}

/// Names and the first error of failed calls, for one line.
fn failures(done: &[(&Host, Result<String, RegistryError>)]) -> Option<String> {
    let failed: Vec<(&str, &RegistryError)> = done
        .iter()
        .filter_map(|(h, r)| r.as_ref().err().map(|e| (h.name.as_str(), e)))
        .collect();
    let (first, e) = failed.first()?;
    let more = match failed.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    Some(format!("{first}{more}: {e}"))
}

/// The switch through a registry: every instance of `new` registered; only when all are, every
/// instance of `old` deregistered. A failed registration leaves `old` alone and deregisters the
/// new instances that registered (or may have), so the registry holds the old side alone. The
/// time from the first call to the last answer, and the instances of both sides.
pub(super) async fn register_then_deregister(
    reg: &dyn Registry,
    new: &SideSet,
    old: &SideSet,
    conns: &HashMap<String, Connection>,
    run_id: &str,
) -> Result<(Duration, usize), BlueGreenError> {
    let started = Instant::now();
    let registered = calls(reg, new, &new.hosts, conns, run_id, Call::Register).await;
    if let Some(why) = failures(&registered) {
        let undo: Vec<Host> = registered
            .iter()
            .filter(|(_, r)| r.as_ref().map_or_else(RegistryError::may_have_acted, |_| true))
            .map(|(h, _)| (*h).clone())
            .collect();
        let undone = calls(reg, new, &undo, conns, run_id, Call::Deregister).await;
        let (n, side) = (undo.len(), new.side);
        let undo_note = match failures(&undone) {
            _ if n == 0 => String::new(),
            None => format!(
                "; the {n} {side} instance{} that had registered deregistered again",
                plural(n)
            ),
            Some(e) => format!("; deregistering the {side} instances again failed on {e}"),
        };
        return Err(BlueGreenError::Switch(format!(
            "registering the {side} side failed on {why}; the {} side stays registered{undo_note}",
            old.side
        )));
    }
    let deregistered = calls(reg, old, &old.hosts, conns, run_id, Call::Deregister).await;
    let took = started.elapsed();
    if let Some(why) = failures(&deregistered) {
        return Err(BlueGreenError::Switch(format!(
            "the {} side is registered, but deregistering the {} side failed on {why}; those stay registered beside it (`tranche switch` again finishes the switch)",
            new.side, old.side
        )));
    }
    Ok((took, new.hosts.len() + old.hosts.len()))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Move traffic: every server's weight in one go over HAProxy's runtime API, by TCP, a local
/// socket, or a socket on the load balancer host (`ssh://`, over its own connection). The time
/// from the first command sent to HAProxy's last answer.
pub async fn switch_haproxy(
    r: &Release,
    settings: &SshSettings,
    weights: &[(String, String, u32)],
) -> Result<Duration, BlueGreenError> {
    let RegistrySpec::Haproxy { address, .. } = &r.playbook.registry.spec else {
        return Err(BlueGreenError::Plan("the switch needs `registry.kind: haproxy`".into()));
    };
    let via = match crate::registry::ssh_address(address) {
        Some((target, _)) => {
            let link = Link {
                target: target.to_string(),
                role: LinkRole::LoadBalancer,
            };
            let conn = crate::registry::open_link(r, &link, settings)
                .await
                .map_err(|e| BlueGreenError::Switch(format!("{e}; nothing was switched")))?;
            Some(Arc::new(conn))
        }
        None => None,
    };
    let api = HaproxyApi {
        address: address.clone(),
        via: via.clone(),
    };
    let res = set_weights(&api, weights).await;
    if let Some(c) = via {
        c.close().await;
    }
    res
}

async fn set_weights(api: &HaproxyApi, weights: &[(String, String, u32)]) -> Result<Duration, BlueGreenError> {
    // First, every server that will take traffic is ready and UP in HAProxy (its health check
    // passed since the instance restarted): weight on a server HAProxy still holds DOWN would
    // leave the requests nowhere to go.
    let ready = weights
        .iter()
        .filter(|(_, _, w)| *w > 0)
        .map(|(b, s, _)| async move { api.ready(b, s).await.map_err(|e| format!("{b}/{s}: {e}")) });
    for r in futures::future::join_all(ready).await {
        r.map_err(BlueGreenError::Switch)?;
    }
    api.set_weights(weights)
        .await
        .map_err(|e| BlueGreenError::Switch(e.to_string()))
}
