//! A group's pool at run time: its members, the selector of its strategy, its retry budget and
//! what consistent hashing hashes. Choosing a member only reads atomics (health, breaker, calls in
//! flight) and the selector's own state.

use std::sync::atomic::{AtomicUsize, Ordering};

use hangar_config::{Group, Strategy};
use serde_json::Value;

use crate::balance::retry::RetryBudget;
use crate::balance::{Selector, Weighted};

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The caller: its legacy session, or the client named in a modern request's `_meta`.
    Caller,
    /// A tool argument, by name.
    Argument(String),
}

impl HashKey {
    fn parse(key: &str) -> Self {
        match key.strip_prefix("arg:") {
            Some(arg) => Self::Argument(arg.to_owned()),
            None => Self::Caller,
        }
    }

    /// The bytes to hash for a call with `params`, from `caller` (a session id or client name).
    /// A missing argument hashes as empty: such calls all go to one member, predictably.
    pub fn bytes(&self, params: &Value, caller: &str) -> Vec<u8> {
        match self {
            Self::Caller => caller.as_bytes().to_vec(),
            Self::Argument(name) => match params.get("arguments").and_then(|a| a.get(name)) {
                Some(Value::String(s)) => s.as_bytes().to_vec(),
                Some(other) => other.to_string().into_bytes(),
                None => Vec::new(),
            },
        }
    }
}

/// One group at run time.
pub struct Pool {
    /// Member provider indexes, in declaration order.
    pub members: Vec<usize>,
    /// The strategy's selector.
    pub selector: Selector,
    /// The strategy (for the admin tools).
    pub strategy: Strategy,
    /// Retries the group may still make.
    pub budget: RetryBudget,
    /// For `consistent_hash`.
    pub hash_key: Option<HashKey>,
    /// `(provider, priority)` of each member.
    tiers: Vec<(usize, u32)>,
    /// The member first attempts went to last (`usize::MAX`: none yet), for failover events.
    active: AtomicUsize,
    /// Held while the active member changes and the change is reported, so that reports of
    /// shifts racing each other (calls flapping between tiers) come out in the order of the
    /// shifts themselves. Only a change takes it.
    shifting: parking_lot::Mutex<()>,
}

/// A change of the member a priority group serves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// To a less preferred tier.
    Failover,
    /// Back to a more preferred tier.
    Failback,
}

impl Pool {
    /// The pool of `group`; `index_of` resolves member names (validation guarantees they exist).
    pub fn build(group: &Group, index_of: impl Fn(&str) -> Option<usize>) -> Self {
        let weighted: Vec<Weighted> = group
            .members
            .iter()
            .filter_map(|m| {
                Some(Weighted {
                    provider: index_of(&m.provider)?,
                    weight: m.weight.max(1),
                    priority: m.priority,
                    name: m.provider.clone(),
                })
            })
            .collect();
        Self {
            members: weighted.iter().map(|w| w.provider).collect(),
            selector: Selector::build(group.strategy, &weighted),
            strategy: group.strategy,
            budget: RetryBudget::default(),
            hash_key: group.hash_key.as_deref().map(HashKey::parse),
            tiers: weighted.iter().map(|w| (w.provider, w.priority)).collect(),
            active: AtomicUsize::new(usize::MAX),
            shifting: parking_lot::Mutex::new(()),
        }
    }

    /// Notes that a first attempt went to `member`; for a priority group, calls `report` with
    /// the member it moved from and the shift when that moves it to another tier. `report` runs
    /// in the order of the moves.
    pub fn note_choice(&self, member: usize, report: impl FnOnce(usize, Shift)) {
        if self.strategy != Strategy::Priority || self.active.load(Ordering::Relaxed) == member {
            return;
        }
        let _in_order = self.shifting.lock();
        let previous = self.active.swap(member, Ordering::AcqRel);
        let tier = |m: usize| self.tiers.iter().find(|(p, _)| *p == m).map(|(_, t)| *t);
        match (tier(previous), tier(member)) {
            (Some(from), Some(to)) if to > from => report(previous, Shift::Failover),
            (Some(from), Some(to)) if to < from => report(previous, Shift::Failback),
            _ => {}
        }
    }

    /// Whether choosing needs the call's parameters (the fast path cannot provide them).
    pub fn hashes_arguments(&self) -> bool {
        matches!(self.hash_key, Some(HashKey::Argument(_)))
    }
}
