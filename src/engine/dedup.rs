//! Drops repeated event ids: producers retry, and a retried event must count
//! once.
//!
//! Ids are remembered (as 64-bit hashes) until the watermark passes their event
//! time by the dedup horizon (default: the allowed lateness), and never more
//! than `capacity` at once: memory is bounded by about 40 bytes x capacity
//! (1,000,000 ids, about 40 MB, by default). When full, the oldest id is
//! forgotten first and counted in [`Dedup::evicted`], so an operator can see
//! when the bound, rather than the horizon, decides.
//!
//! A 64-bit hash collision would drop a distinct event as a duplicate; with a
//! million ids held the chance per event is about 5e-14.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use rustc_hash::{FxBuildHasher, FxHashSet};

use crate::event::Millis;

#[derive(Debug)]
pub struct Dedup {
    horizon_ms: i64,
    capacity: usize,
    seen: FxHashSet<u64>,
    order: VecDeque<(Millis, u64)>,
    evicted: u64,
}

/// A 64-bit hash of an event id, stable for the process.
pub fn id_hash(event_id: &str) -> u64 {
    // Two passes with different seeds folded together: FxHash alone is weak
    // on similar strings.
    let mut a = FxBuildHasher.build_hasher();
    a.write(event_id.as_bytes());
    let mut b = FxBuildHasher.build_hasher();
    b.write_u64(0x9e37_79b9_7f4a_7c15);
    b.write(event_id.as_bytes());
    a.finish() ^ b.finish().rotate_left(32)
}

impl Dedup {
    pub fn new(horizon_ms: i64, capacity: usize) -> Dedup {
        Dedup { horizon_ms, capacity: capacity.max(1), seen: FxHashSet::default(), order: VecDeque::new(), evicted: 0 }
    }

    /// Records `event_id`; false when it was already seen.
    pub fn first_time(&mut self, event_id: &str, event_time: Millis) -> bool {
        let h = id_hash(event_id);
        if !self.seen.insert(h) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
                self.evicted += 1;
            }
        }
        self.order.push_back((event_time, h));
        true
    }

    /// Forgets ids whose event time is older than `watermark - horizon`.
    pub fn expire(&mut self, watermark: Millis) {
        let limit = watermark - self.horizon_ms;
        while let Some(&(t, h)) = self.order.front() {
            if t >= limit {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&h);
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Ids forgotten because the capacity was reached.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_caught_within_the_horizon() {
        let mut d = Dedup::new(1_000, 10);
        assert!(d.first_time("a", 100));
        assert!(!d.first_time("a", 100));
        assert!(d.first_time("b", 500));
        d.expire(1_200);
        assert!(d.first_time("a", 1_300), "a expired: 100 < 1200 - 1000");
        assert!(!d.first_time("b", 500), "b kept: 500 >= 200");
    }

    #[test]
    fn capacity_bounds_memory() {
        let mut d = Dedup::new(i64::MAX / 2, 3);
        for id in ["a", "b", "c", "d"] {
            assert!(d.first_time(id, 0));
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.evicted(), 1);
        assert!(d.first_time("a", 0), "a was evicted");
        assert!(!d.first_time("d", 0));
    }
}
