//! Smooth weighted round-robin (nginx's algorithm): every pick adds each member's weight to its
//! running score and takes the highest, which then pays back the total. Over any window the shares
//! match the weights, and picks are spread out (5:1:1 gives a a b a c a a, not a a a a a b c).

use parking_lot::Mutex;

use super::Weighted;

/// The selector.
pub struct SmoothWrr {
    members: Vec<(usize, i64)>,
    scores: Mutex<Vec<i64>>,
}

impl SmoothWrr {
    /// Built from the members' weights.
    pub fn build(members: &[Weighted]) -> Self {
        Self {
            members: members.iter().map(|m| (m.provider, i64::from(m.weight.max(1)))).collect(),
            scores: Mutex::new(vec![0; members.len()]),
        }
    }

    /// The next member among those accepted.
    pub fn select(&self, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let mut scores = self.scores.lock();
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, &(provider, weight)) in self.members.iter().enumerate() {
            if !accept(provider) {
                continue;
            }
            scores[i] += weight;
            total += weight;
            if best.is_none_or(|b| scores[i] > scores[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        scores[b] -= total;
        Some(self.members[b].0)
    }
}
