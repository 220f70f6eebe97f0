//! A gateway-wide budget for bytes held in memory by bodies being read: request bodies from
//! clients and reply bodies from upstreams. Each body is bounded on its own (`max_body_bytes`, the
//! reply limit), but many at once are not, so a few thousand slow large bodies could exhaust the
//! machine. Readers reserve as bytes arrive and release when done; a reservation that would pass
//! `server.limits.max_buffered_bytes` is refused, and the request fails with a clear error instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::telemetry::metrics::{Limit, Metrics};

/// The budget.
pub struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
    metrics: Arc<Metrics>,
}

/// The budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway is holding its most bytes of bodies in memory ({limit}); retry later")]
pub struct Exhausted {
    /// The configured limit.
    pub limit: usize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes; refusals are counted in `metrics`.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { used: AtomicUsize::new(0), limit, metrics })
    }

    /// An empty reservation, to grow as bytes arrive.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation { budget: self.clone(), held: 0 }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes reserved from a [`MemoryBudget`]; released when dropped.
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    held: usize,
}

impl Reservation {
    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Reserves `n` more bytes, or refuses (holding what it held) when the budget cannot give them.
    pub fn grow(&mut self, n: usize) -> Result<(), Exhausted> {
        let b = &self.budget;
        let granted = b
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= b.limit)
            })
            .is_ok();
        if !granted {
            b.metrics.limit_hit(Limit::BufferBudget);
            return Err(Exhausted { limit: b.limit });
        }
        self.held += n;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let metrics = Arc::new(Metrics::new());
        let budget = MemoryBudget::new(100, metrics.clone());
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        a.grow(60).expect("fits");
        assert_eq!(b.grow(50), Err(Exhausted { limit: 100 }));
        b.grow(40).expect("fits exactly");
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        b.grow(60).expect("freed bytes can be used again");
        drop(b);
        assert_eq!(budget.used(), 0);
        assert_eq!(metrics.limit_hits.with_label_values(&["buffer_budget"]).get(), 1);
    }
}
