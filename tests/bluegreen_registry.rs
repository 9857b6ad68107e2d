//! Blue-green through registries other than HAProxy's weights, on the real local fleet (slots
//! 118 to 120): the `etcd` preset against a real etcd, the `http` registry against a recording
//! server, a `command` registry on the hosts, and HAProxy reached over `ssh://` through the
//! load balancer host. Two host groups: `blue` (hosts 1 to n/2) and `green` (the rest).

mod common;

use std::path::{Path, PathBuf};

use common::bluegreen::{add_error_gate, green_live_first, groups, prometheus, switched_events, tranche_with};
use common::{http, Fleet, Recorder, Service};

fn tranche(fleet: &Fleet, args: &[&str], inventory: &Path) -> (Option<i32>, String) {
    tranche_with(fleet, args, Some(inventory))
}

/// A groups blue-green playbook of `version` with `registry` (a `registry:` block).
fn playbook(fleet: &Fleet, name: &str, version: &str, registry: &str) -> PathBuf {
    let body = format!(
        "artifact:\n  path: artifacts/demo-{version}.tar.gz\nrollout:\n  canary: 1\n  batch: 2\n\
         strategy: blue-green\nblue_green:\n  blue: blue\n  green: green\n"
    );
    fleet.playbook_with(name, version, "all", &body, registry)
}

/// The side a host records live.
fn live_on(fleet: &Fleet, i: usize) -> String {
    let rec = std::fs::read_to_string(fleet.srv(i).join("demo/.tranche-live")).unwrap();
    rec.lines().next().unwrap_or("").to_string()
}

/// The instance keys etcd holds under `/services/demo/`, sorted, with their values.
fn etcd_keys(etcd: &Service) -> Vec<(String, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (code, body) = http(
        "POST",
        &format!("{}/v3/kv/range", etcd.url()),
        // The prefix /services/demo/ and its range end /services/demo0.
        Some(&format!(
            "{{\"key\": \"{}\", \"range_end\": \"{}\"}}",
            b64.encode("/services/demo/"),
            b64.encode("/services/demo0")
        )),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(String, String)> = v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    let dec = |f: &str| String::from_utf8(b64.decode(kv[f].as_str().unwrap()).unwrap()).unwrap();
                    (dec("key"), dec("value"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The keys of hosts `hosts` (1-based), as etcd should hold them.
fn keys_of(fleet: &Fleet, hosts: std::ops::RangeInclusive<usize>) -> Vec<(String, String)> {
    hosts
        .map(|i| (format!("/services/demo/h{i:02}"), format!("{}.{i}:8080", fleet.net)))
        .collect()
}

/// The `etcd` preset: a release switches by putting every new instance's key, then deleting
/// every old one's; `switch --back` restores the old side's keys; a registration that fails
/// leaves the old side's keys alone and takes back the new keys it had put.
#[test]
fn etcd_holds_exactly_the_live_sides_keys_through_switches_and_a_failed_registration() {
    let fleet = Fleet::up(118, 4);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    let etcd = Service::up("etcd", 24118, &[]);
    let registry = |address: &str| {
        format!(
            "registry:\n  kind: etcd\n  address: \"{address}\"\n  key: \"/services/demo/{{{{ host.name }}}}\"\n  value: \"{{{{ host.address }}}}:8080\"\n  retry: 0s\n"
        )
    };
    let url = etcd.url();

    // Green made live by hand: etcd holds green's keys. The first release: blue gets 2.0.0 and
    // is registered; green is deregistered.
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", &registry(&url));
    green_live_first(&fleet, &pb, &inv);
    assert_eq!(etcd_keys(&etcd), keys_of(&fleet, 3..=4));
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(etcd_keys(&etcd), keys_of(&fleet, 1..=2), "{stderr}");

    // 1.0.0 onto green: after the switch, etcd holds green's keys alone.
    let pb = playbook(&fleet, "bg-1.yml", "1.0.0", &registry(&url));
    let (ev, junit) = (fleet.dir.join("bg-1.jsonl"), fleet.dir.join("bg-1.xml"));
    let (code, stderr) = tranche(
        &fleet,
        &[
            "release",
            pb.to_str().unwrap(),
            "--events",
            ev.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
        &inv,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(etcd_keys(&etcd), keys_of(&fleet, 3..=4), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("(first to last instance)"))
        .unwrap_or_else(|| panic!("no switch line:\n{stderr}"));
    println!("{line}");
    let switched = switched_events(&std::fs::read_to_string(&ev).unwrap());
    assert_eq!(switched.len(), 1, "{switched:?}");
    let sw = &switched[0];
    assert_eq!(
        (&sw["from"], &sw["to"], &sw["why"], &sw["servers"], &sw["status"]),
        (
            &"blue".into(),
            &"green".into(),
            &"release".into(),
            &4.into(),
            &"ok".into()
        ),
        "{sw}"
    );
    println!("{sw}");
    let last = common::events(&ev).pop().unwrap();
    let msg = last["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("demo 1.0.0 is live on the green side (4 instances switched in "),
        "{msg}"
    );
    println!("{msg}");
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.contains("<system-out>4 instances in "), "{junit}");
    assert_eq!(live_on(&fleet, 1), "live=green");

    // By hand, back to blue: blue's keys are put again, green's deleted.
    let (code, stderr) = tranche(&fleet, &["switch", pb.to_str().unwrap(), "--back"], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("from green to blue"), "{stderr}");
    assert!(stderr.contains("(first to last instance)"), "{stderr}");
    println!("{}", stderr.lines().last().unwrap_or(""));
    assert_eq!(etcd_keys(&etcd), keys_of(&fleet, 1..=2));

    // 2.0.0 onto green, whose h04 cannot reach etcd: h03 registers, h04 fails; blue's keys stay,
    // h03's is deleted again, traffic and the live record stay on blue.
    let failing = format!("{{% if host.name == 'h04' %}}http://127.0.0.1:9{{% else %}}{url}{{% endif %}}");
    let pb = playbook(&fleet, "bg-fail.yml", "2.0.0", &registry(&failing));
    let ev = fleet.dir.join("bg-fail.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &["release", pb.to_str().unwrap(), "--events", ev.to_str().unwrap()],
        &inv,
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert_eq!(etcd_keys(&etcd), keys_of(&fleet, 1..=2), "{stderr}");
    let last = common::events(&ev).pop().unwrap();
    let msg = last["msg"].as_str().unwrap();
    println!("{msg}");
    assert!(
        msg.contains("registering the green side failed on h04")
            && msg.contains(
                "the blue side stays registered; the 1 green instance that had registered deregistered again"
            ),
        "{msg}"
    );
    let switched = switched_events(&std::fs::read_to_string(&ev).unwrap());
    assert_eq!(switched.len(), 1, "{switched:?}");
    assert_eq!(switched[0]["status"], "failed", "{:?}", switched[0]);
    for i in 1..=4 {
        assert_eq!(live_on(&fleet, i), "live=blue", "host {i}");
    }
}

/// The `http` registry against a recording server: every new instance's register call is
/// answered before any old instance's deregister call is sent, each rendered for its own host;
/// a registry that refuses the registrations gets no deregister call at all; a gate breach
/// after the switch switches back through the registry.
#[test]
fn http_registry_registers_the_new_side_before_deregistering_the_old() {
    let fleet = Fleet::up(119, 4);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    let rec = Recorder::start(200);
    let registry = format!(
        "registry:\n  kind: http\n  deregister: \"http://127.0.0.1:{p}/out/{{{{ host.name }}}}\"\n  register:\n    url: \"http://127.0.0.1:{p}/in\"\n    method: POST\n    body: '{{\"id\": \"{{{{ host.name }}}}\", \"addr\": \"{{{{ host.address }}}}:8080\"}}'\n  retry: 0s\n",
        p = rec.port
    );
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", &registry);
    green_live_first(&fleet, &pb, &inv);
    let start = rec.requests().len();
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    let calls = |from: usize| -> Vec<String> {
        rec.requests()[from..]
            .iter()
            .map(|r| format!("{} {} {}", r.method, r.path, r.body))
            .collect()
    };
    let got = calls(start);
    assert_eq!(got.len(), 4, "{got:?}");
    let mut registers = got[..2].to_vec();
    registers.sort();
    assert_eq!(
        registers,
        [
            format!("POST /in {{\"id\": \"h01\", \"addr\": \"{}.1:8080\"}}", fleet.net),
            format!("POST /in {{\"id\": \"h02\", \"addr\": \"{}.2:8080\"}}", fleet.net),
        ],
        "{got:?}"
    );
    let mut deregisters = got[2..].to_vec();
    deregisters.sort();
    assert_eq!(deregisters, ["PUT /out/h03 ", "PUT /out/h04 "], "{got:?}");

    // The registry refuses (403): each new instance is asked once, nothing is deregistered,
    // and blue stays live.
    rec.status.store(403, std::sync::atomic::Ordering::SeqCst);
    let before = rec.requests().len();
    let pb = playbook(&fleet, "bg-1.yml", "1.0.0", &registry);
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(4), "{stderr}");
    let got = calls(before);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|c| c.starts_with("POST /in ")), "{got:?}");
    assert!(stderr.contains("the blue side stays registered"), "{stderr}");
    assert!(!stderr.contains("deregistered again"), "{stderr}");
    assert_eq!(live_on(&fleet, 3), "live=blue");

    // A gate breach after the switch switches back through the registry: green registered,
    // blue deregistered, then blue registered again and green deregistered.
    rec.status.store(200, std::sync::atomic::Ordering::SeqCst);
    let prom = prometheus(&fleet, 29419, 8080);
    let pb = playbook(&fleet, "bg-flaky.yml", "flaky", &registry);
    add_error_gate(&pb, &prom, "", "8s");
    let before = rec.requests().len();
    let ev = fleet.dir.join("bg-flaky.jsonl");
    let (code, stderr) = tranche(
        &fleet,
        &["release", pb.to_str().unwrap(), "--events", ev.to_str().unwrap()],
        &inv,
    );
    assert_eq!(code, Some(4), "{stderr}");
    let got = calls(before);
    // `POST /in` or `PUT /out`, and the host.
    let kinds: Vec<&str> = got.iter().map(|c| &c[..8]).collect();
    let hosts: Vec<String> = got
        .iter()
        .map(|c| {
            let i = c.find("h0").unwrap();
            c[i..i + 3].to_string()
        })
        .collect();
    // Each step's two calls in any order; the steps in order.
    let step = |from: usize| -> (Vec<&str>, Vec<String>) {
        let mut h = hosts[from..from + 2].to_vec();
        h.sort();
        (kinds[from..from + 2].to_vec(), h)
    };
    assert_eq!(got.len(), 8, "{got:?}");
    assert_eq!(
        step(0),
        (vec!["POST /in", "POST /in"], vec!["h03".into(), "h04".into()]),
        "{got:?}"
    );
    assert_eq!(
        step(2),
        (vec!["PUT /out", "PUT /out"], vec!["h01".into(), "h02".into()]),
        "{got:?}"
    );
    assert_eq!(
        step(4),
        (vec!["POST /in", "POST /in"], vec!["h01".into(), "h02".into()]),
        "{got:?}"
    );
    assert_eq!(
        step(6),
        (vec!["PUT /out", "PUT /out"], vec!["h03".into(), "h04".into()]),
        "{got:?}"
    );
    let moves: Vec<(String, String)> = switched_events(&std::fs::read_to_string(&ev).unwrap())
        .iter()
        .map(|e| (e["why"].as_str().unwrap().into(), e["to"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        moves,
        [("release".into(), "green".into()), ("back".into(), "blue".into())]
    );
    let last = common::events(&ev).pop().unwrap();
    assert_eq!(
        last["msg"],
        "the metric gate failed after the switch; all traffic is back on the blue side"
    );
    assert_eq!(live_on(&fleet, 3), "live=blue");
}

/// A `command` registry runs on each host of both sides (here it marks the host registered in
/// its own folder), or on its delegate; and HAProxy's weights move over `ssh://` through the
/// load balancer host (h01 reaches HAProxy's admin socket).
#[test]
fn command_registry_on_the_hosts_and_haproxy_over_ssh() {
    let fleet = Fleet::up(120, 4);
    fleet.install("1.0.0");
    let inv = groups(&fleet);
    let registry = "registry:\n  kind: command\n  register: \"echo {{ version }} > /srv/demo/registered\"\n  deregister: \"rm -f /srv/demo/registered\"\n";
    let registered = |fleet: &Fleet| -> Vec<usize> {
        (1..=fleet.hosts)
            .filter(|i| fleet.srv(*i).join("demo/registered").exists())
            .collect()
    };
    let pb = playbook(&fleet, "bg-2.yml", "2.0.0", registry);
    green_live_first(&fleet, &pb, &inv);
    assert_eq!(registered(&fleet), [3, 4]);
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(registered(&fleet), [1, 2], "{stderr}");
    let pb = playbook(&fleet, "bg-1.yml", "1.0.0", registry);
    let (code, stderr) = tranche(&fleet, &["release", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(registered(&fleet), [3, 4], "{stderr}");
    let mark = std::fs::read_to_string(fleet.srv(3).join("demo/registered")).unwrap();
    assert_eq!(mark.trim(), "1.0.0");
    let (code, stderr) = tranche(&fleet, &["switch", pb.to_str().unwrap(), "--back"], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(registered(&fleet), [1, 2], "{stderr}");

    // A `command` registry on a delegate (h01): one connection, the hosts' names in its list.
    let registry = "registry:\n  kind: command\n  delegate: h01\n  register: \"echo {{ host.name }} >> /srv/registry-hosts\"\n  deregister: \"touch /srv/registry-hosts; sed -i '/^{{ host.name }}$/d' /srv/registry-hosts\"\n";
    let pb = playbook(&fleet, "bg-delegate.yml", "1.0.0", registry);
    let (code, stderr) = tranche(&fleet, &["switch", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("from blue to green"), "{stderr}");
    let list = std::fs::read_to_string(fleet.srv(1).join("registry-hosts")).unwrap();
    let mut list: Vec<&str> = list.lines().collect();
    list.sort();
    assert_eq!(list, ["h03", "h04"]);

    // HAProxy through h01's connection: weights of both sides, in one step.
    let sock = fleet.dir.join("haproxy.sock");
    let registry = format!(
        "registry:\n  kind: haproxy\n  address: \"ssh://h01{}\"\n  backend: demo\n  server: \"{{{{ host.name }}}}\"\n",
        sock.display()
    );
    let live = |fleet: &Fleet| -> Vec<usize> {
        fleet
            .api("show servers state demo")
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c[7] != "0").then(|| c[3].trim_start_matches('h').parse().unwrap())
            })
            .collect()
    };
    let pb = playbook(&fleet, "bg-ssh.yml", "2.0.0", &registry);
    let (code, stderr) = tranche(&fleet, &["switch", pb.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("from green to blue") && stderr.contains("(first to last server)"),
        "{stderr}"
    );
    println!("{}", stderr.lines().last().unwrap_or(""));
    assert_eq!(live(&fleet), [1, 2]);
    let (code, stderr) = tranche(&fleet, &["switch", pb.to_str().unwrap(), "--back"], &inv);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(live(&fleet), [3, 4]);
}
