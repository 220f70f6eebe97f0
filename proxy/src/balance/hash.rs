//! Consistent hashing by weighted rendezvous (highest random weight): each member scores
//! `-weight / ln(u)` with `u` a hash of (key, member) in (0, 1); the highest score wins. A key keeps
//! its member while that member is accepted; when members come or go only the keys of that member
//! move, and shares follow the weights.

use super::Weighted;

/// The selector.
pub struct Rendezvous {
    members: Vec<(usize, f64, u64)>,
}

impl Rendezvous {
    /// Built from the members' names and weights.
    pub fn build(members: &[Weighted]) -> Self {
        Self {
            members: members
                .iter()
                .map(|m| (m.provider, f64::from(m.weight.max(1)), fnv1a(m.name.as_bytes(), FNV_OFFSET)))
                .collect(),
        }
    }

    /// The accepted member `key` belongs to.
    pub fn select(&self, key: &[u8], accept: impl Fn(usize) -> bool) -> Option<usize> {
        let key_hash = fnv1a(key, FNV_OFFSET);
        self.members
            .iter()
            .filter(|(p, _, _)| accept(*p))
            .map(|&(p, weight, seed)| {
                let h = mix(key_hash ^ seed);
                // Map to (0, 1), never 0 or 1.
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (p, -weight / u.ln())
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| p)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A 64-bit finaliser (splitmix64) so that nearby inputs give unrelated outputs.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
