//! Property tests of the selection algorithms: shares, burst bounds, balance, tier preference and
//! hash stability, over random member sets.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;

use super::*;

fn members(weights: &[u32], priorities: &[u32]) -> Vec<Weighted> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| Weighted {
            provider: i,
            weight: *w,
            priority: priorities.get(i).copied().unwrap_or(0),
            name: format!("m{i}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over 10 000 picks each member's share is within 1% of its weight's share, and no member is
    /// picked more than ceil(weight / min weight) times in a row (with two members or more: a lone
    /// member is every pick).
    #[test]
    fn weighted_round_robin_matches_weights_without_bursts(weights in prop::collection::vec(1u32..=20, 2..8)) {
        let wrr = wrr::SmoothWrr::build(&members(&weights, &[]));
        let total: u32 = weights.iter().sum();
        let min = *weights.iter().min().unwrap_or(&1);
        let mut counts = vec![0usize; weights.len()];
        let (mut last, mut run) = (usize::MAX, 0u32);
        let n = 10_000;
        for _ in 0..n {
            let p = wrr.select(|_| true).expect("a member");
            counts[p] += 1;
            run = if p == last { run + 1 } else { 1 };
            last = p;
            prop_assert!(run <= weights[p].div_ceil(min), "member {p} (weight {}) picked {run} times in a row", weights[p]);
        }
        for (i, w) in weights.iter().enumerate() {
            let share = counts[i] as f64 / n as f64;
            let want = f64::from(*w) / f64::from(total);
            prop_assert!((share - want).abs() <= 0.01, "member {i}: share {share}, weight share {want}");
        }
    }

    /// With equal weights and uniform latency, calls in flight never differ by more than one.
    #[test]
    fn least_connections_keeps_members_within_one(count in 2usize..8, concurrency in 1usize..40, steps in 200usize..2000) {
        let lc = least::LeastConnections::build(&members(&vec![1; count], &[]));
        let mut inflight = vec![0usize; count];
        let mut queue: VecDeque<usize> = VecDeque::new();
        for step in 0..steps {
            if queue.len() < concurrency && (step % 3 != 0 || queue.is_empty()) {
                let snapshot = inflight.clone();
                let p = lc.select(|_| true, |m| snapshot[m]).expect("a member");
                inflight[p] += 1;
                queue.push_back(p);
            } else if let Some(done) = queue.pop_front() {
                inflight[done] -= 1;
            }
            let (max, min) = (*inflight.iter().max().unwrap_or(&0), *inflight.iter().min().unwrap_or(&0));
            prop_assert!(max - min <= 1, "in flight {inflight:?}");
        }
    }

    /// A member of tier 0 is always chosen while any tier-0 member is healthy.
    #[test]
    fn priority_never_spills_while_the_first_tier_is_healthy(
        priorities in prop::collection::vec(0u32..3, 1..8),
        healthy in prop::collection::vec(any::<bool>(), 8),
    ) {
        let weights = vec![1; priorities.len()];
        let tiers = priority::Tiers::build(&members(&weights, &priorities));
        let best = priorities.iter().enumerate().filter(|(i, _)| healthy[*i]).map(|(_, p)| *p).min();
        for _ in 0..20 {
            let picked = tiers.select(|m| healthy[m]);
            match best {
                None => prop_assert_eq!(picked, None),
                Some(level) => {
                    let p = picked.expect("a healthy member");
                    prop_assert!(healthy[p] && priorities[p] == level, "picked {p} at tier {} while tier {level} is healthy", priorities[p]);
                }
            }
        }
    }

    /// A key stays on its member; taking a member away moves only that member's keys.
    #[test]
    fn rendezvous_is_stable(weights in prop::collection::vec(1u32..=5, 2..6), gone in 0usize..6) {
        let gone = gone % weights.len();
        let hash = hash::Rendezvous::build(&members(&weights, &[]));
        for k in 0..500u32 {
            let key = k.to_be_bytes();
            let before = hash.select(&key, |_| true).expect("a member");
            prop_assert_eq!(hash.select(&key, |_| true), Some(before));
            let after = hash.select(&key, |m| m != gone).expect("a member");
            if before != gone {
                prop_assert_eq!(after, before, "key {} moved though its member stayed", k);
            }
        }
    }
}

#[test]
fn smooth_wrr_interleaves() {
    let wrr = wrr::SmoothWrr::build(&members(&[5, 1, 1], &[]));
    let seq: String = (0..7).map(|_| ["a", "b", "c"][wrr.select(|_| true).expect("member")]).collect();
    assert_eq!(seq, "aabacaa");
}

#[test]
fn rendezvous_shares_follow_weights() {
    let hash = hash::Rendezvous::build(&members(&[1, 3], &[]));
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for k in 0..20_000u32 {
        *counts.entry(hash.select(&k.to_le_bytes(), |_| true).expect("member")).or_default() += 1;
    }
    let share = counts[&1] as f64 / 20_000.0;
    assert!((share - 0.75).abs() < 0.02, "share {share}");
}

#[test]
fn selection_skips_what_is_not_accepted() {
    use hangar_config::Strategy as S;
    for strategy in [S::WeightedRoundRobin, S::Priority, S::LeastConnections, S::ConsistentHash] {
        let s = Selector::build(strategy, &members(&[1, 1, 1], &[0, 1, 2]));
        for _ in 0..10 {
            assert_eq!(s.select(b"k", |m| m == 2, |_| 0), Some(2), "{strategy:?}");
        }
        assert_eq!(s.select(b"k", |_| false, |_| 0), None);
    }
}
