//! `--shard K/N`: the part of the targeted hosts that one of N jobs releases, so that N CI jobs
//! release one fleet in parallel with nothing of tranche's own to coordinate them (the host
//! leases already keep two jobs off one host).
//!
//! The split is a pure function of the targeted hosts' names and zones and of N: the hosts
//! sorted by zone, then by name, cut into N consecutive runs of (nearly) equal size. So:
//!
//! - it is the same on every machine, whatever the inventory's order or the sources' order;
//! - a zone stays inside one shard unless a cut falls inside it; a cut that falls inside a zone
//!   moves to that zone's nearer edge when the edge is at most a tenth of a shard away
//!   ([`SNAP_FRACTION`]), so that zones of nearly equal size stay whole;
//! - adding or removing one host moves at most a few others per cut (one, plus what the move to
//!   a zone edge shifts), never a reshuffle.
//!
//! A shard's rollout (canary, batches, `max_failures`, `max_per_zone`) is planned for its own
//! hosts: those limits hold per shard, and fleet-wide only for what a shard keeps whole.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// At most this many shards: more jobs than that would be better served by fewer, bigger ones.
pub const SHARDS_MAX: usize = 1000;

/// A cut moves to a zone edge at most `shard size / SNAP_FRACTION` hosts away.
pub const SNAP_FRACTION: usize = 10;

/// `K/N`: the K-th (from 1) of N shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let number = |part: &str, what: &str| -> Result<usize, String> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "expected K/N (for example 1/3), not `{s}`: {what} is not a number"
                ));
            }
            part.parse::<usize>()
                .map_err(|_| format!("`{s}`: {what} is more than {SHARDS_MAX}"))
        };
        let Some((k, n)) = s.split_once('/') else {
            return Err(format!("expected K/N (for example 1/3), not `{s}`"));
        };
        if n.contains('/') {
            return Err(format!("expected K/N (for example 1/3), not `{s}`"));
        }
        let (index, count) = (number(k, "K")?, number(n, "N")?);
        if count == 0 {
            return Err(format!("`{s}`: N, the number of shards, is at least 1"));
        }
        if count > SHARDS_MAX {
            return Err(format!("`{s}`: N is more than {SHARDS_MAX}"));
        }
        if index == 0 {
            return Err(format!(
                "`{s}`: K counts from 1 (the shards of {count} are 1/{count} to {count}/{count})"
            ));
        }
        if index > count {
            return Err(format!(
                "`{s}`: K is more than N (the shards of {count} are 1/{count} to {count}/{count})"
            ));
        }
        Ok(Shard { index, count })
    }
}

impl TryFrom<String> for Shard {
    type Error = String;
    fn try_from(s: String) -> Result<Shard, String> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A host as the split sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub name: &'a str,
    pub zone: Option<&'a str>,
}

/// The shard (0-based) of every host of `hosts`, in their order.
pub fn assign(hosts: &[Member<'_>], count: usize) -> Vec<usize> {
    let m = hosts.len();
    let count = count.max(1);
    let mut order: Vec<usize> = (0..m).collect();
    // Hosts without a zone sort first, as one zone of their own.
    order.sort_by(|&a, &b| (hosts[a].zone, hosts[a].name).cmp(&(hosts[b].zone, hosts[b].name)));
    let zone_at = |p: usize| hosts[order[p]].zone;
    let ideal = |i: usize| i * m / count;
    let slack = m / count / SNAP_FRACTION;
    // cuts[i]: the first sorted position of shard i + 1.
    let mut cuts = Vec::with_capacity(count);
    let mut prev = 0;
    for i in 1..count {
        let c = ideal(i);
        let mut cut = c;
        if slack > 0 && c > 0 && c < m && zone_at(c - 1) == zone_at(c) {
            let z = zone_at(c);
            let start = (0..c).rev().find(|&p| zone_at(p) != z).map_or(0, |p| p + 1);
            let end = (c..m).find(|&p| zone_at(p) != z).unwrap_or(m);
            let edge = if c - start <= end - c { start } else { end };
            // Never empties a shard that the even cut would fill.
            let next = ideal(i + 1);
            if edge.abs_diff(c) <= slack && edge > prev && edge < next && edge < m {
                cut = edge;
            }
        }
        cuts.push(cut);
        prev = cut;
    }
    let mut shard_of = vec![0; m];
    let mut s = 0;
    for (p, &host) in order.iter().enumerate() {
        while s < cuts.len() && p >= cuts[s] {
            s += 1;
        }
        shard_of[host] = s;
    }
    shard_of
}

/// What a run knows of its shard: which one, and how the targeted hosts were split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardOf {
    pub shard: Shard,
    /// The targeted hosts before the split (after `hosts:` and `--limit`).
    pub of: usize,
    /// Zones of this shard that have hosts in another shard too: `max_per_zone` and zone
    /// batches hold for them per shard only.
    pub shared_zones: Vec<String>,
}

/// The hosts of `shard` among `hosts` (indices, in their order), with what the plan shows.
pub fn select(hosts: &[Member<'_>], shard: Shard) -> (Vec<usize>, ShardOf) {
    let of = assign(hosts, shard.count);
    let mine: Vec<usize> = (0..hosts.len()).filter(|&i| of[i] + 1 == shard.index).collect();
    let zones_here: BTreeSet<&str> = mine.iter().map(|&i| hosts[i].zone.unwrap_or("-")).collect();
    let shared: BTreeSet<&str> = (0..hosts.len())
        .filter(|&i| of[i] + 1 != shard.index)
        .map(|i| hosts[i].zone.unwrap_or("-"))
        .filter(|z| zones_here.contains(z))
        .collect();
    let info = ShardOf {
        shard,
        of: hosts.len(),
        shared_zones: shared.into_iter().map(str::to_string).collect(),
    };
    (mine, info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members<'a>(hosts: &'a [(String, Option<String>)]) -> Vec<Member<'a>> {
        hosts
            .iter()
            .map(|(n, z)| Member {
                name: n,
                zone: z.as_deref(),
            })
            .collect()
    }

    /// `sizes[z]` hosts in zone `z{z}`, named `h-z{z}-{i}`.
    fn fleet(sizes: &[usize]) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for (z, &n) in sizes.iter().enumerate() {
            for i in 0..n {
                out.push((format!("h-z{z}-{i:04}"), Some(format!("z{z}"))));
            }
        }
        out
    }

    fn sizes_of(shards: &[usize], count: usize) -> Vec<usize> {
        let mut s = vec![0; count];
        for &x in shards {
            s[x] += 1;
        }
        s
    }

    /// How many shards each zone's hosts are in.
    fn zone_spread(hosts: &[(String, Option<String>)], shards: &[usize]) -> Vec<usize> {
        let mut zones: Vec<&Option<String>> = hosts.iter().map(|(_, z)| z).collect();
        zones.sort();
        zones.dedup();
        zones
            .iter()
            .map(|z| {
                let s: BTreeSet<usize> = hosts
                    .iter()
                    .zip(shards)
                    .filter(|((_, hz), _)| hz == *z)
                    .map(|(_, &s)| s)
                    .collect();
                s.len()
            })
            .collect()
    }

    #[test]
    fn parses_k_of_n_and_refuses_the_rest() {
        assert_eq!("1/2".parse::<Shard>(), Ok(Shard { index: 1, count: 2 }));
        assert_eq!("3/3".parse::<Shard>().map(|s| s.to_string()), Ok("3/3".into()));
        for (bad, says) in [
            ("0/2", "K counts from 1"),
            ("3/2", "K is more than N"),
            ("1/0", "N, the number of shards, is at least 1"),
            ("a/b", "K is not a number"),
            ("1/b", "N is not a number"),
            ("1/2/3", "expected K/N"),
            ("12", "expected K/N"),
            ("", "expected K/N"),
            ("/2", "K is not a number"),
            ("-1/2", "K is not a number"),
            ("+1/2", "K is not a number"),
            ("1/1001", "N is more than 1000"),
            ("1/99999999999999999999999", "N is more than 1000"),
        ] {
            let e = bad.parse::<Shard>().expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn one_shard_is_the_whole_fleet() {
        let hosts = fleet(&[3, 2]);
        assert_eq!(assign(&members(&hosts), 1), vec![0; 5]);
    }

    #[test]
    fn sorted_by_zone_then_name_and_cut_in_equal_runs() {
        // Inventory order does not matter; zone first, then name.
        let hosts: Vec<(String, Option<String>)> = [
            ("web-4", "b"),
            ("web-1", "a"),
            ("web-3", "b"),
            ("web-2", "a"),
            ("web-6", "c"),
            ("web-5", "c"),
        ]
        .iter()
        .map(|(n, z)| (n.to_string(), Some(z.to_string())))
        .collect();
        assert_eq!(assign(&members(&hosts), 3), [1, 0, 1, 0, 2, 2]);
        // Two shards of three zones of two: zone b is cut in the middle (a shard of 6 is too
        // small to move a cut by a host).
        assert_eq!(assign(&members(&hosts), 2), [1, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn hosts_without_a_zone_are_a_zone_of_their_own_first() {
        let hosts = vec![
            ("b".to_string(), Some("z".to_string())),
            ("a".to_string(), None),
            ("c".to_string(), Some("z".to_string())),
            ("d".to_string(), None),
        ];
        assert_eq!(assign(&members(&hosts), 2), [1, 0, 1, 0]);
    }

    #[test]
    fn zones_nearly_equal_in_size_stay_whole() {
        // 3 zones of 100, 104 and 96 hosts in 3 shards: the even cuts (100, 200) fall 4 hosts
        // inside zone 1 and zone 2's edge; both move to the edges.
        let hosts = fleet(&[100, 104, 96]);
        let s = assign(&members(&hosts), 3);
        assert_eq!(sizes_of(&s, 3), [100, 104, 96]);
        assert_eq!(zone_spread(&hosts, &s), [1, 1, 1]);
        // Six zones, three shards: two zones a shard.
        let hosts = fleet(&[50, 52, 49, 50, 51, 48]);
        let s = assign(&members(&hosts), 3);
        assert_eq!(zone_spread(&hosts, &s), [1; 6]);
    }

    #[test]
    fn a_cut_far_from_a_zone_edge_splits_the_zone() {
        // Three zones of 100 in two shards: the cut at 150 is 50 hosts from zone 1's edges,
        // more than a tenth of a shard (15): the zone is split, the shards are even.
        let hosts = fleet(&[100, 100, 100]);
        let s = assign(&members(&hosts), 2);
        assert_eq!(sizes_of(&s, 2), [150, 150]);
        assert_eq!(zone_spread(&hosts, &s), [1, 2, 1]);
        let (_, info) = select(&members(&hosts), Shard { index: 1, count: 2 });
        assert_eq!(info.shared_zones, ["z1"]);
        assert_eq!(info.of, 300);
        let (mine, info) = select(&members(&hosts), Shard { index: 2, count: 2 });
        assert_eq!(mine.len(), 150);
        assert_eq!(info.shared_zones, ["z1"]);
    }

    #[test]
    fn more_shards_than_hosts_leaves_shards_empty() {
        let hosts = fleet(&[2]);
        let s = assign(&members(&hosts), 3);
        assert_eq!(sizes_of(&s, 3), [0, 1, 1]);
        let (mine, _) = select(&members(&hosts), Shard { index: 1, count: 3 });
        assert!(mine.is_empty());
    }

    fn arb_fleet() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
        // Unique names (a set), a zone among a few or none.
        proptest::collection::btree_map("[a-z]{1,6}[0-9]{0,3}", proptest::option::weighted(0.9, 0..6u8), 0..400)
            .prop_map(|m| m.into_iter().map(|(n, z)| (n, z.map(|z| format!("dc{z}")))).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every host in exactly one shard; sizes within a tenth of a shard (and one) of even;
        /// no shard empty when there are at least as many hosts as shards.
        #[test]
        fn every_host_in_one_shard_and_shards_even(hosts in arb_fleet(), count in 1..12usize) {
            let m = hosts.len();
            let s = assign(&members(&hosts), count);
            prop_assert_eq!(s.len(), m);
            prop_assert!(s.iter().all(|&x| x < count));
            let slack = m / count / SNAP_FRACTION;
            for size in sizes_of(&s, count) {
                prop_assert!(size + 2 * slack + 1 >= m / count, "{} hosts, {} shards: a shard of {}", m, count, size);
                prop_assert!(size <= m.div_ceil(count) + 2 * slack, "{} hosts, {} shards: a shard of {}", m, count, size);
                if m >= count {
                    prop_assert!(size > 0);
                }
            }
        }

        /// The split depends on the hosts, not on their order.
        #[test]
        fn the_order_of_the_inventory_does_not_matter(hosts in arb_fleet(), count in 1..8usize, seed in any::<u64>()) {
            let s = assign(&members(&hosts), count);
            let mut shuffled: Vec<usize> = (0..hosts.len()).collect();
            // A cheap deterministic shuffle.
            shuffled.sort_by_key(|&i| (i as u64).wrapping_mul(seed | 1).rotate_left(17));
            let other: Vec<(String, Option<String>)> = shuffled.iter().map(|&i| hosts[i].clone()).collect();
            let t = assign(&members(&other), count);
            for (j, &i) in shuffled.iter().enumerate() {
                prop_assert_eq!(s[i], t[j]);
            }
        }

        /// Adding one host moves few others: at most (2 × slack + 1) per cut.
        #[test]
        fn adding_a_host_moves_few_others(hosts in arb_fleet(), count in 1..8usize, name in "[a-z]{1,6}[0-9]{0,3}x", zone in proptest::option::of(0..6u8)) {
            let before = assign(&members(&hosts), count);
            let mut more = hosts.clone();
            more.push((name, zone.map(|z| format!("dc{z}"))));
            let after = assign(&members(&more), count);
            let moved = (0..hosts.len()).filter(|&i| before[i] != after[i]).count();
            let slack = more.len() / count / SNAP_FRACTION;
            prop_assert!(moved <= (count - 1) * (2 * slack + 2), "{} moved of {} ({} shards)", moved, hosts.len(), count);
        }
    }
}
