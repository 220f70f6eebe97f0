//! Weighted random choice: each accepted member is picked with a probability proportional to its
//! weight, independently of earlier picks (the Python MCP Hangar's and its operator's `random`).

use super::Weighted;

/// The selector.
pub struct WeightedRandom {
    members: Vec<(usize, u64)>,
}

impl WeightedRandom {
    /// Built from the members' weights.
    pub fn build(members: &[Weighted]) -> Self {
        Self { members: members.iter().map(|m| (m.provider, u64::from(m.weight.max(1)))).collect() }
    }

    /// An accepted member, at random by weight. Two passes over the members (the total of the
    /// accepted weights, then the pick), no allocation.
    pub fn select(&self, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = self.members.iter().filter(|(p, _)| accept(*p)).map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rand::random::<u64>() % total;
        for &(provider, weight) in self.members.iter().filter(|(p, _)| accept(*p)) {
            if ticket < weight {
                return Some(provider);
            }
            ticket -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(provider: usize, weight: u32) -> Weighted {
        Weighted { provider, weight, priority: 0, name: format!("m{provider}") }
    }

    #[test]
    fn picks_follow_the_weights_and_skip_refused_members() {
        let s = WeightedRandom::build(&[member(0, 1), member(1, 3), member(2, 5)]);
        let mut counts = [0u32; 3];
        for _ in 0..8000 {
            counts[s.select(|p| p != 2).expect("a member")] += 1;
        }
        assert_eq!(counts[2], 0, "a refused member is never picked");
        // Expected 2000 : 6000; allow a wide margin so the test never flakes.
        assert!((1600..2400).contains(&counts[0]) && (5600..6400).contains(&counts[1]), "{counts:?}");
        assert_eq!(s.select(|_| false), None);
        assert_eq!(WeightedRandom::build(&[]).select(|_| true), None);
    }
}
