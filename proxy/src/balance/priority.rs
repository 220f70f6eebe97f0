//! Priority tiers: the lowest tier (priority value) that has an accepted member takes all the
//! traffic, shared by weight within the tier; the next tier is used only when a tier is exhausted,
//! and traffic fails back as soon as a preferred member is accepted again.

use super::wrr::SmoothWrr;
use super::Weighted;

/// The selector.
pub struct Tiers {
    tiers: Vec<(u32, Vec<usize>, SmoothWrr)>,
}

impl Tiers {
    /// Built from the members' priorities and weights.
    pub fn build(members: &[Weighted]) -> Self {
        let mut levels: Vec<u32> = members.iter().map(|m| m.priority).collect();
        levels.sort_unstable();
        levels.dedup();
        let tiers = levels
            .into_iter()
            .map(|level| {
                let in_tier: Vec<Weighted> = members.iter().filter(|m| m.priority == level).cloned().collect();
                (level, in_tier.iter().map(|m| m.provider).collect(), SmoothWrr::build(&in_tier))
            })
            .collect();
        Self { tiers }
    }

    /// A member of the first tier with an accepted member.
    pub fn select(&self, accept: impl Fn(usize) -> bool) -> Option<usize> {
        self.tiers
            .iter()
            .find(|(_, providers, _)| providers.iter().any(|p| accept(*p)))
            .and_then(|(_, _, wrr)| wrr.select(&accept))
    }
}
