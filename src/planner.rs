//! Batch planning (SPEC §4): a pure function from the number of targeted hosts and the rollout
//! policy to batches. No I/O, no clock.

use serde::Serialize;

use crate::playbook::BatchSize;

/// One batch: indices into the targeted hosts, in inventory order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// 1-based, as shown to people and in events.
    pub number: usize,
    pub canary: bool,
    pub hosts: Vec<usize>,
}

/// The size a `BatchSize` stands for with `n` targeted hosts: a count, or floor(P × N / 100) and
/// at least 1.
pub fn resolve_size(size: BatchSize, n: usize) -> usize {
    match size {
        BatchSize::Count(c) => c.max(1),
        BatchSize::Percent(p) => (p as usize * n / 100).max(1),
    }
}

/// The failure budget in hosts: a count, or floor(P × N / 100) (which may be 0).
pub fn resolve_budget(size: BatchSize, n: usize) -> usize {
    match size {
        BatchSize::Count(c) => c,
        BatchSize::Percent(p) => p as usize * n / 100,
    }
}

/// Cut `n` hosts into batches: first `canary` hosts, then successive sizes from `sizes` (the
/// last entry repeats); the last batch takes what is left. An empty `sizes` means one batch.
pub fn plan(n: usize, canary: usize, sizes: &[BatchSize]) -> Vec<Batch> {
    let mut batches = Vec::new();
    let mut next = 0;
    if canary > 0 && n > 0 {
        let c = canary.min(n);
        batches.push(Batch {
            number: 1,
            canary: true,
            hosts: (0..c).collect(),
        });
        next = c;
    }
    let mut i = 0;
    while next < n {
        let size = match sizes.get(i).or(sizes.last()) {
            Some(s) => resolve_size(*s, n),
            None => n,
        };
        let end = (next + size).min(n);
        batches.push(Batch {
            number: batches.len() + 1,
            canary: false,
            hosts: (next..end).collect(),
        });
        next = end;
        i += 1;
    }
    batches
}

/// The batches, and with `window` the hosts after the canary merged into one batch in which at
/// most the largest planned batch size are out at once (returned as the second value).
pub fn plan_with_window(n: usize, canary: usize, sizes: &[BatchSize], window: bool) -> (Vec<Batch>, Option<usize>) {
    let batches = plan(n, canary, sizes);
    if !window {
        return (batches, None);
    }
    let (head, rest): (Vec<Batch>, Vec<Batch>) = batches.into_iter().partition(|b| b.canary);
    let width = rest.iter().map(|b| b.hosts.len()).max();
    let mut out = head;
    if !rest.is_empty() {
        let hosts = rest.into_iter().flat_map(|b| b.hosts).collect();
        out.push(Batch {
            number: out.len() + 1,
            canary: false,
            hosts,
        });
    }
    (out, width)
}

/// Hosts reordered round-robin over their zones (zones in order of first appearance, hosts in
/// inventory order within a zone): `zones[i]` is host i's zone. Returns the new order.
pub fn spread_by_zone(zones: &[Option<String>]) -> Vec<usize> {
    let mut groups: Vec<(Option<&String>, Vec<usize>)> = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == z.as_ref()) {
            Some((_, v)) => v.push(i),
            None => groups.push((z.as_ref(), vec![i])),
        }
    }
    let mut out = Vec::with_capacity(zones.len());
    let longest = groups.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for round in 0..longest {
        for (_, v) in &groups {
            if let Some(&i) = v.get(round) {
                out.push(i);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use BatchSize::{Count as C, Percent as P};

    fn sizes(b: &[Batch]) -> Vec<usize> {
        b.iter().map(|b| b.hosts.len()).collect()
    }

    #[test]
    fn table() {
        let cases: &[(usize, usize, &[BatchSize], &[usize])] = &[
            // The example of the spec.
            (37, 1, &[C(5), P(25)], &[1, 5, 9, 9, 9, 4]),
            // N smaller than the canary: one canary batch of every host.
            (2, 3, &[C(5)], &[2]),
            // 0% still moves at least one host per batch.
            (4, 0, &[P(0)], &[1, 1, 1, 1]),
            // 100%: everything after the canary at once.
            (10, 1, &[P(100)], &[1, 9]),
            (10, 0, &[P(100)], &[10]),
            // A list longer than needed: later entries are never reached.
            (6, 1, &[C(2), C(10), C(3), C(3)], &[1, 2, 3]),
            // A single host.
            (1, 1, &[P(25)], &[1]),
            (1, 0, &[P(25)], &[1]),
            // No hosts: no batches.
            (0, 1, &[C(1)], &[]),
            // Exact fit.
            (9, 0, &[C(3)], &[3, 3, 3]),
            // Percentages floor: 33% of 10 is 3.
            (10, 0, &[P(33)], &[3, 3, 3, 1]),
            // Canary equal to the fleet.
            (3, 3, &[C(1)], &[3]),
            // No sizes: the rest in one batch.
            (5, 1, &[], &[1, 4]),
        ];
        for (n, canary, batch, want) in cases {
            let got = plan(*n, *canary, batch);
            assert_eq!(sizes(&got), *want, "n={n} canary={canary} batch={batch:?}");
            assert_eq!(
                got.iter().filter(|b| b.canary).count(),
                usize::from(*canary > 0 && *n > 0)
            );
        }
    }

    #[test]
    fn window_merges_the_batches_after_the_canary() {
        let (b, w) = plan_with_window(37, 1, &[C(5), P(25)], true);
        assert_eq!(sizes(&b), [1, 36]);
        assert_eq!(w, Some(9));
        assert!(b[0].canary && !b[1].canary && b[1].number == 2);
        let (b, w) = plan_with_window(10, 0, &[C(3)], true);
        assert_eq!((sizes(&b), w), (vec![10], Some(3)));
        let (b, w) = plan_with_window(10, 0, &[C(3)], false);
        assert_eq!((sizes(&b), w), (vec![3, 3, 3, 1], None));
    }

    #[test]
    fn zone_spread_is_round_robin() {
        let z = |s: &str| Some(s.to_string());
        let zones = [z("a"), z("a"), z("a"), z("b"), z("b"), None, z("c")];
        assert_eq!(spread_by_zone(&zones), [0, 3, 5, 6, 1, 4, 2]);
        assert_eq!(spread_by_zone(&[]), Vec::<usize>::new());
    }

    #[test]
    fn budgets() {
        assert_eq!(resolve_budget(P(10), 37), 3);
        assert_eq!(resolve_budget(P(1), 37), 0);
        assert_eq!(resolve_budget(C(2), 37), 2);
    }

    fn size_strategy() -> impl Strategy<Value = BatchSize> {
        prop_oneof![(1usize..50).prop_map(C), (0u32..=100).prop_map(P)]
    }

    proptest! {
        #[test]
        fn spread_is_a_permutation_keeping_zone_order(zones in proptest::collection::vec(proptest::option::of(0u8..4), 0..60)) {
            let zones: Vec<Option<String>> = zones.into_iter().map(|z| z.map(|z| z.to_string())).collect();
            let order = spread_by_zone(&zones);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..zones.len()).collect::<Vec<_>>());
            // Within a zone, inventory order is kept.
            for z in zones.iter().collect::<std::collections::HashSet<_>>() {
                let seq: Vec<usize> = order.iter().copied().filter(|&i| zones[i] == *z).collect();
                prop_assert!(seq.windows(2).all(|w| w[0] < w[1]));
            }
        }

        #[test]
        fn every_host_once_in_order_and_within_size(n in 0usize..400, canary in 0usize..10, batch in proptest::collection::vec(size_strategy(), 0..5)) {
            let got = plan(n, canary, &batch);
            let flat: Vec<usize> = got.iter().flat_map(|b| b.hosts.iter().copied()).collect();
            prop_assert_eq!(flat, (0..n).collect::<Vec<_>>());
            for (i, b) in got.iter().enumerate() {
                prop_assert!(!b.hosts.is_empty());
                prop_assert_eq!(b.number, i + 1);
                if b.canary {
                    prop_assert_eq!(i, 0);
                    prop_assert!(b.hosts.len() <= canary);
                } else {
                    let k = if got[0].canary { i - 1 } else { i };
                    let limit = batch.get(k).or(batch.last()).map(|s| resolve_size(*s, n)).unwrap_or(n);
                    prop_assert!(b.hosts.len() <= limit);
                }
            }
        }
    }
}
