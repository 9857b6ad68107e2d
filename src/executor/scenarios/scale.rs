//! Many hosts: what a run does once per host must not add up host after host.

use std::time::Duration;

use super::super::fake::Kind;
use super::*;

/// The end of a run releases every host's lock (and closes its connection) all at once: with
/// one round trip of a second a host, 20 hosts finish in seconds, not 20 seconds (a 1,000-host
/// release spent most of a minute there, one host after the other).
#[tokio::test(start_paused = true)]
async fn locks_are_released_on_every_host_at_once() {
    let hosts = 20;
    let s = Scenario::new(hosts, "  canary: 0\n  batch: 20", "");
    for i in 1..=hosts {
        s.fleet.delay(&format!("h{i}"), Kind::Lock, Duration::from_secs(1));
    }
    let t0 = tokio::time::Instant::now();
    let o = s.run().await;
    let took = t0.elapsed();
    assert_eq!(o.stats, stats(0, hosts, 0, 0, 0));
    let released = s
        .fleet
        .seen(Kind::Lock)
        .into_iter()
        .filter(|(_, a)| a == "release")
        .count();
    assert_eq!(released, hosts);
    assert!(took < Duration::from_secs(10), "the run took {took:?}");
}
