//! Member selection for provider groups, one algorithm per strategy, all in the same shape as
//! Pingora's `BackendSelection`: built once from the members (by index, with weights and
//! priorities), then asked for a member for a key, skipping members the caller does not accept
//! (unhealthy, breaker open, already tried). Selection never allocates and takes at most one
//! short uncontended lock.
//!
//! Pingora's own algorithms select socket addresses and have no least-connections or priority
//! tiers; group members here are providers (some of them processes), so the algorithms are ours.

pub mod breaker;
pub mod hash;
pub mod least;
pub mod priority;
pub mod random;
pub mod retry;
pub mod wrr;

use hangar_config::Strategy;

/// One member as selection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weighted {
    /// Provider index of the member.
    pub provider: usize,
    /// Relative share of traffic (≥ 1).
    pub weight: u32,
    /// Tier (lower is preferred).
    pub priority: u32,
    /// Stable identity for hashing (the provider's name).
    pub name: String,
}

/// A group's selector.
pub enum Selector {
    /// Smooth weighted round-robin.
    RoundRobin(wrr::SmoothWrr),
    /// Lowest tier with an acceptable member.
    Priority(priority::Tiers),
    /// Fewest calls in flight per unit of weight.
    LeastConnections(least::LeastConnections),
    /// Stable member per key.
    Hash(hash::Rendezvous),
    /// Weighted random choice.
    Random(random::WeightedRandom),
}

impl Selector {
    /// Builds the selector of `strategy` for `members`.
    pub fn build(strategy: Strategy, members: &[Weighted]) -> Self {
        match strategy {
            Strategy::WeightedRoundRobin => Self::RoundRobin(wrr::SmoothWrr::build(members)),
            Strategy::Priority => Self::Priority(priority::Tiers::build(members)),
            Strategy::LeastConnections => Self::LeastConnections(least::LeastConnections::build(members)),
            Strategy::ConsistentHash => Self::Hash(hash::Rendezvous::build(members)),
            Strategy::Random => Self::Random(random::WeightedRandom::build(members)),
        }
    }

    /// A member (provider index) for `key`, among those `accept` allows; `inflight` gives a
    /// member's calls in flight (least-connections reads it).
    pub fn select(
        &self,
        key: &[u8],
        accept: impl Fn(usize) -> bool,
        inflight: impl Fn(usize) -> usize,
    ) -> Option<usize> {
        match self {
            Self::RoundRobin(s) => s.select(accept),
            Self::Priority(s) => s.select(accept),
            Self::LeastConnections(s) => s.select(accept, inflight),
            Self::Hash(s) => s.select(key, accept),
            Self::Random(s) => s.select(accept),
        }
    }
}

#[cfg(test)]
mod tests;
