//! Least connections, weight-aware: the member with the fewest calls in flight per unit of weight;
//! ties are broken by a rotating start so that equal members share evenly.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Weighted;

/// The selector.
pub struct LeastConnections {
    members: Vec<(usize, u64)>,
    next: AtomicUsize,
}

impl LeastConnections {
    /// Built from the members' weights.
    pub fn build(members: &[Weighted]) -> Self {
        Self {
            members: members.iter().map(|m| (m.provider, u64::from(m.weight.max(1)))).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The accepted member with the lowest `inflight / weight`.
    pub fn select(&self, accept: impl Fn(usize) -> bool, inflight: impl Fn(usize) -> usize) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(u64, u64, usize)> = None;
        for k in 0..n {
            let (provider, weight) = self.members[(start + k) % n];
            if !accept(provider) {
                continue;
            }
            let load = inflight(provider) as u64;
            // Compare load_a / weight_a < load_b / weight_b without division.
            let better = best.is_none_or(|(bl, bw, _)| load * bw < bl * weight);
            if better {
                best = Some((load, weight, provider));
            }
        }
        best.map(|(_, _, p)| p)
    }
}
