use super::*;
use crate::release::ReleaseRequest;

fn load(playbook: &str) -> Release {
    let dir = std::env::current_dir().unwrap().join("tests/fixtures");
    Release::load(&ReleaseRequest {
        inventories: vec![dir.join("inventory.yml")],
        playbook: dir.join(playbook),
        limit: None,
        extra_vars: vec![],
    })
    .unwrap()
}

#[test]
fn the_idle_slot_has_its_own_folder_port_and_no_registry() {
    let r = load("bluegreen-slots.yml");
    let idle = idle_release(&r, Side::Green).unwrap();
    assert_eq!(idle.playbook.layout.root, "/srv/demo/green");
    assert_eq!(idle.playbook.registry.kind(), "none");
    assert!(idle.playbook.rollout.gate.is_none());
    assert_eq!(idle.targets.len(), 3);
    let start = idle.playbook.start.as_ref().unwrap();
    let cmd = idle.render(start, &idle.targets[0], "run", None).unwrap();
    assert!(
        cmd.contains("/srv/demo/green/current/bin/start") && cmd.contains("8082"),
        "{cmd}"
    );
    // The original release is untouched: its templates see the blue slot.
    assert_eq!(r.playbook.layout.root, "/srv/demo");
}

#[test]
fn a_switch_sets_every_server_of_both_slots() {
    let r = load("bluegreen-slots.yml");
    let w = weights(&r, Side::Green, None, "run").unwrap();
    assert_eq!(w.len(), 6);
    assert!(w.contains(&("demo".into(), "web-01-green".into(), 100)));
    assert!(w.contains(&("demo".into(), "web-01-blue".into(), 0)));
    let canary = weights(&r, Side::Blue, Some(10), "run").unwrap();
    assert!(canary.contains(&("demo".into(), "web-03-blue".into(), 10)));
    assert!(canary.contains(&("demo".into(), "web-03-green".into(), 90)));
}

#[test]
fn slots_that_share_a_server_name_are_refused() {
    let mut r = load("bluegreen-slots.yml");
    let groups = load("bluegreen-groups.yml");
    // The groups fixture names servers `{{ host.name }}` alone: with slots, both are one server.
    r.playbook.registry = groups.playbook.registry.clone();
    r.playbook.templates = groups.playbook.templates.clone();
    let e = weights(&r, Side::Green, None, "run").unwrap_err().to_string();
    assert!(e.contains("both sides of web-01") && e.contains("slot.name"), "{e}");
}

#[test]
fn groups_switch_between_their_own_hosts() {
    let r = load("bluegreen-groups.yml");
    let blue: Vec<String> = hosts_of(&r, Side::Blue).unwrap().into_iter().map(|h| h.name).collect();
    let green: Vec<String> = hosts_of(&r, Side::Green).unwrap().into_iter().map(|h| h.name).collect();
    assert_eq!(blue, ["web-01", "web-02", "web-03"]);
    assert_eq!(green, ["db-01"]);
    let idle = idle_release(&r, Side::Green).unwrap();
    assert_eq!(idle.targets.len(), 1);
    assert_eq!(idle.playbook.layout.root, "/srv/demo");
    let w = weights(&r, Side::Green, None, "run").unwrap();
    assert_eq!(w.iter().filter(|(_, _, w)| *w == 100).count(), 1);
    assert_eq!(w.iter().filter(|(_, _, w)| *w == 0).count(), 3);
}

#[test]
fn hosts_must_agree_on_the_live_side() {
    let rec = |live: Option<Side>| LiveRecord {
        live: live.map(|s| s.as_str().to_string()),
        ..Default::default()
    };
    assert_eq!(agreed_live(&[]).unwrap(), None);
    let same = [
        ("a".to_string(), rec(Some(Side::Blue))),
        ("b".to_string(), rec(Some(Side::Blue))),
    ];
    assert_eq!(agreed_live(&same).unwrap(), Some(Side::Blue));
    let mixed = [("a".to_string(), rec(Some(Side::Blue))), ("b".to_string(), rec(None))];
    let e = agreed_live(&mixed).unwrap_err().to_string();
    assert!(e.contains("a says blue, b says none"), "{e}");
}

#[test]
fn the_plan_shows_both_sides_and_the_switch() {
    let lines = plan_lines(&load("bluegreen-slots.yml")).join("\n");
    assert!(lines.contains("blue      /srv/demo/blue port 8081, 3 hosts"), "{lines}");
    assert!(
        lines.contains("green     /srv/demo/green port 8082, 3 hosts"),
        "{lines}"
    );
    assert!(lines.contains("all 6 HAProxy servers switch at once"), "{lines}");
    let lines = plan_lines(&load("bluegreen-groups.yml")).join("\n");
    assert!(lines.contains("green     group db, 1 host"), "{lines}");
    assert!(
        lines.contains("after 10% of the traffic while the gate watches"),
        "{lines}"
    );
}

mod registry_switch {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use futures::future::BoxFuture;
    use futures::FutureExt;

    use super::load;
    use crate::bluegreen::traffic::{apart, register_then_deregister, SideSet};
    use crate::bluegreen::{plan_lines, switch_count};
    use crate::inventory::Host;
    use crate::playbook::Side;
    use crate::registry::{Registry, RegistryError};
    use crate::release::Release;
    use crate::ssh::Connection;

    /// A registry that records every call (`register web-01 blue`: the host and the side its
    /// templates rendered for) and fails the calls it is told to (`register web-02`).
    #[derive(Default)]
    struct Recording {
        log: Mutex<Vec<String>>,
        fail: Vec<(&'static str, RegistryError)>,
    }

    impl Recording {
        fn call(&self, what: &str, r: &Release, host: &Host) -> BoxFuture<'_, Result<String, RegistryError>> {
            let line = format!("{what} {} {}", host.name, r.playbook.side);
            let call = format!("{what} {}", host.name);
            let fail = self.fail.iter().find(|(c, _)| *c == call).map(|(_, e)| e.clone());
            async move {
                // Answers come back out of order: the order checked is that of the calls.
                tokio::time::sleep(Duration::from_millis(5)).await;
                self.log.lock().unwrap().push(line);
                fail.map_or(Ok("ok".into()), Err)
            }
            .boxed()
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Registry for Recording {
        fn preflight(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
            async { Ok(()) }.boxed()
        }
        fn deregister<'a>(
            &'a self,
            r: &'a Release,
            host: &'a Host,
            _: Option<&'a Connection>,
            _: &'a str,
        ) -> BoxFuture<'a, Result<String, RegistryError>> {
            self.call("deregister", r, host)
        }
        fn register<'a>(
            &'a self,
            r: &'a Release,
            host: &'a Host,
            _: Option<&'a Connection>,
            _: &'a str,
        ) -> BoxFuture<'a, Result<String, RegistryError>> {
            self.call("register", r, host)
        }
    }

    fn sides(r: &Release, to: Side) -> (SideSet, SideSet) {
        (SideSet::of(r, to).unwrap(), SideSet::of(r, to.other()).unwrap())
    }

    /// Every instance of the new side is registered (rendered for its side) before any of the
    /// old side is deregistered; the count is both sides'.
    #[tokio::test]
    async fn every_register_comes_before_any_deregister() {
        let r = load("bluegreen-registry.yml");
        let reg = Recording::default();
        let (new, old) = sides(&r, Side::Blue);
        let (_, n) = register_then_deregister(&reg, &new, &old, &HashMap::new(), "run")
            .await
            .unwrap();
        assert_eq!(n, 4);
        let log = reg.log();
        assert_eq!(log.len(), 4, "{log:?}");
        let mut first: Vec<String> = log[..3].to_vec();
        first.sort();
        assert_eq!(
            first,
            ["register web-01 blue", "register web-02 blue", "register web-03 blue"],
            "{log:?}"
        );
        assert_eq!(log[3], "deregister db-01 green", "{log:?}");

        // Slots: the same hosts, each side's instance rendered for its own slot.
        let r = load("bluegreen-registry-slots.yml");
        let reg = Recording::default();
        let (new, old) = sides(&r, Side::Green);
        register_then_deregister(&reg, &new, &old, &HashMap::new(), "run")
            .await
            .unwrap();
        let log = reg.log();
        assert!(
            log[..3]
                .iter()
                .all(|l| l.starts_with("register") && l.ends_with("green")),
            "{log:?}"
        );
        assert!(
            log[3..]
                .iter()
                .all(|l| l.starts_with("deregister") && l.ends_with("blue")),
            "{log:?}"
        );
        assert_eq!(log.len(), 6, "{log:?}");
    }

    /// A registration refused on one host, and one whose outcome is unknown on another: the old
    /// side is never deregistered, and the new instances that registered (or may have) are
    /// deregistered again, so the registry holds the old side alone.
    #[tokio::test]
    async fn a_failed_register_leaves_the_old_side_alone() {
        let r = load("bluegreen-registry.yml");
        let reg = Recording {
            fail: vec![
                (
                    "register web-02",
                    RegistryError::Refused("PUT /in answered 403: no".into()),
                ),
                (
                    "register web-03",
                    RegistryError::MayHaveActed("PUT /in answered 500: oops".into()),
                ),
            ],
            ..Default::default()
        };
        let (new, old) = sides(&r, Side::Blue);
        let e = register_then_deregister(&reg, &new, &old, &HashMap::new(), "run")
            .await
            .unwrap_err()
            .to_string();
        let log = reg.log();
        assert!(
            !log.iter().any(|l| l.contains("db-01")),
            "the old side was touched: {log:?}"
        );
        let mut undo: Vec<&String> = log.iter().filter(|l| l.starts_with("deregister")).collect();
        undo.sort();
        assert_eq!(undo, ["deregister web-01 blue", "deregister web-03 blue"], "{log:?}");
        assert!(e.contains("registering the blue side failed on web-0"), "{e}");
        assert!(e.contains("and 1 more"), "{e}");
        assert!(e.contains("the green side stays registered"), "{e}");
        assert!(
            e.contains("the 2 blue instances that had registered deregistered again"),
            "{e}"
        );
    }

    /// The new side registered, then an old instance's deregistration fails: the switch fails
    /// and says that instance stays registered beside the new side (nothing is taken back:
    /// the new side is whole and serving).
    #[tokio::test]
    async fn a_failed_deregister_of_the_old_side_fails_the_switch() {
        let r = load("bluegreen-registry.yml");
        let reg = Recording {
            fail: vec![("deregister db-01", RegistryError::MayHaveActed("timeout".into()))],
            ..Default::default()
        };
        let (new, old) = sides(&r, Side::Blue);
        let e = register_then_deregister(&reg, &new, &old, &HashMap::new(), "run")
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "switch traffic: the blue side is registered, but deregistering the green side failed on db-01: timeout; those stay registered beside it (`tranche switch` again finishes the switch)"
        );
        let log = reg.log();
        assert_eq!(log.len(), 4, "{log:?}");
        assert_eq!(log[3], "deregister db-01 green", "{log:?}");
    }

    /// Two sides whose instances are one key in the registry are refused before anything
    /// changes: deregistering the old side would take the new one out.
    #[test]
    fn sides_that_share_an_instance_are_refused() {
        let r = load("bluegreen-registry-slots.yml");
        assert_eq!(switch_count(&r, Side::Green, "run").unwrap(), 6);
        let mut same = r.clone();
        let text = std::fs::read_to_string("tests/fixtures/bluegreen-registry-slots.yml")
            .unwrap()
            .replace("{{ host.name }}-{{ slot.name }}\"", "{{ host.name }}\"");
        let dir = tempfile::tempdir().unwrap();
        let pb = dir.path().join("pb.yml");
        std::fs::write(&pb, text).unwrap();
        std::fs::write(dir.path().join("app.tar.gz"), "x").unwrap();
        same.playbook = crate::release::Release::load(&crate::release::ReleaseRequest {
            inventories: vec![std::env::current_dir().unwrap().join("tests/fixtures/inventory.yml")],
            playbook: pb,
            limit: None,
            extra_vars: vec![],
        })
        .unwrap()
        .playbook;
        let e = switch_count(&same, Side::Green, "run").unwrap_err().to_string();
        assert!(
            e.contains("both sides of web-01 are one instance in the registry"),
            "{e}"
        );
        let reg = crate::registry::build(&same.playbook);
        let (new, old) = sides(&same, Side::Green);
        assert!(apart(&*reg, &new, &old, "run").is_err());
    }

    #[test]
    fn the_plan_says_how_a_registry_switches() {
        let lines = plan_lines(&load("bluegreen-registry.yml")).join("\n");
        assert!(
            lines.contains("then its instances register in the etcd registry and, once all are, the other side's deregister (4 instances)"),
            "{lines}"
        );
    }
}
