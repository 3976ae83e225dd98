//! Drops repeated event ids: producers retry, and a retried event must count
//! once.
//!
//! Ids are kept as 64-bit hashes in two generations of at most `capacity / 2`
//! each. New ids go into the current generation. A generation is forgotten
//! as soon as the watermark has passed its newest event time by the dedup
//! horizon (default: the allowed lateness). The engine passes each shard's
//! dedup the lower of the watermark and the shard's own partitions' clock
//! (`Engine::update_watermark`): the watermark can run ahead of a partition
//! that was idle or caught up, and a retry read right after its first copy
//! there must still be caught. The current generation becomes
//! the previous one (the generations *rotate*) in two cases:
//!
//! * by time: once the previous one has been forgotten and the current one
//!   has been open for a horizon of watermark progress. So at a steady rate
//!   the two hold about two horizons of ids, not the capacity: at 10,000
//!   events/s of event time and the default 30 s horizon, some 600,000 ids
//!   at most, and the tables stay small enough for the cache at lower rates
//!   (a table of a million ids is about 20 MB, and every new id missed the
//!   cache in both generations);
//! * by capacity: when the current one is full, the old previous one is
//!   forgotten even if the horizon has not passed it.
//!
//! So:
//!
//! * memory is bounded: at most `capacity` ids, about 16-20 bytes each in the
//!   hash tables (1,000,000 ids, about 20 MB, by default);
//! * an id is remembered until the horizon passes it, or for at least the
//!   next `capacity / 2` new ids, whichever comes first; when capacity rather
//!   than the horizon forgets ids, [`Dedup::evicted`] counts them, so an
//!   operator can see that the bound decides and raise it. Rotation by time
//!   forgets nothing: it only happens once the previous generation is gone.
//!
//! Rotating generations instead of evicting one id at a time keeps each event
//! to two table probes, with no per-id queue: the generations are
//! `hashbrown` tables of the 64-bit hashes themselves (no second hashing),
//! and a new id is written into the slot its probe of the current generation
//! found, so the insert does not probe again. Ids are random, so over many
//! ids each probe misses the cache; [`Dedup::prefetch`] starts loading both
//! generations' probe groups (control bytes and ids, `prefetch.rs`) while
//! the record decodes. A table cleared after holding
//! far fewer ids than it has room for is shrunk, so that a burst does not
//! leave every later probe spread over a table sized for the burst.
//!
//! A 64-bit hash collision would drop a distinct event as a duplicate; with a
//! million ids held the chance per event is about 5e-14.

use std::hash::{BuildHasher, Hasher};

use rustc_hash::FxBuildHasher;

use hashbrown::hash_table::{Entry, HashTable};

use super::prefetch::Probe;
use crate::event::Millis;

#[derive(Debug)]
pub struct Dedup {
    horizon_ms: i64,
    half: usize,
    current: HashTable<u64>,
    /// Where the current generation's probes start (for [`Dedup::prefetch`]).
    current_probe: Probe,
    current_newest: Millis,
    previous: HashTable<u64>,
    previous_probe: Probe,
    previous_newest: Millis,
    last_watermark: Option<Millis>,
    /// The watermark when the current generation opened (`None`: before the first).
    opened_at: Option<Millis>,
    evicted: u64,
}

/// Slots a new generation starts with; tables grow from here as ids come.
const START_SLOTS: usize = 4_096;

/// A 64-bit hash of an event id, stable across processes and builds:
/// checkpoints carry these hashes, and a restored process must recognise
/// the retries of ids its predecessor folded.
#[inline]
pub fn id_hash(event_id: &str) -> u64 {
    id_hash_bytes(event_id.as_bytes())
}

/// [`id_hash`] of an id's bytes.
#[inline]
pub fn id_hash_bytes(event_id: &[u8]) -> u64 {
    // Two passes with different seeds folded together: FxHash alone is weak
    // on similar strings.
    let mut a = FxBuildHasher.build_hasher();
    a.write(event_id);
    let mut b = FxBuildHasher.build_hasher();
    b.write_u64(0x9e37_79b9_7f4a_7c15);
    b.write(event_id);
    a.finish() ^ b.finish().rotate_left(32)
}

/// The hash a table uses for a stored id: the id is already a hash.
#[inline]
fn slot_hash(h: &u64) -> u64 {
    *h
}

impl Dedup {
    pub fn new(horizon_ms: i64, capacity: usize) -> Dedup {
        let half = (capacity / 2).max(1);
        // Small at first: a table much larger than what it holds spreads every
        // probe over memory the cache does not hold. Later generations start
        // at the size the one before them reached.
        let table = || HashTable::with_capacity(half.min(START_SLOTS));
        Dedup {
            horizon_ms,
            half,
            current: table(),
            current_probe: Probe::default(),
            current_newest: Millis::MIN,
            previous: table(),
            previous_probe: Probe::default(),
            previous_newest: Millis::MIN,
            last_watermark: None,
            opened_at: None,
            evicted: 0,
        }
    }

    /// Starts loading what [`Dedup::first_time`] of `event_id` reads (both
    /// generations' probe groups) into the cache; a hint that changes
    /// nothing.
    #[inline]
    pub fn prefetch(&self, event_id: &[u8]) {
        let h = id_hash_bytes(event_id);
        self.current_probe.prefetch_group::<u64>(h);
        self.previous_probe.prefetch_group::<u64>(h);
    }

    /// Records `event_id`; false when it was already seen.
    #[inline]
    pub fn first_time(&mut self, event_id: &str, event_time: Millis) -> bool {
        let h = id_hash(event_id);
        if self.current.len() >= self.half {
            self.rotate();
        }
        let Entry::Vacant(slot) = self.current.entry(h, |&x| x == h, slot_hash) else { return false };
        if self.previous.find(h, |&x| x == h).is_some() {
            return false;
        }
        let index = slot.insert(h).bucket_index();
        // The table moves when it grows (in `entry`, before the insert).
        if !self.current_probe.still_fits(&self.current) {
            self.current_probe = Probe::learn(&self.current, index);
        }
        self.current_newest = self.current_newest.max(event_time);
        true
    }

    fn rotate(&mut self) {
        let still_needed = self.last_watermark.is_none_or(|wm| self.previous_newest >= wm - self.horizon_ms);
        if still_needed {
            self.evicted += self.previous.len() as u64;
        }
        std::mem::swap(&mut self.current, &mut self.previous);
        std::mem::swap(&mut self.current_probe, &mut self.previous_probe);
        self.previous_newest = self.current_newest;
        if !self.current.is_empty() {
            forget(&mut self.current);
        }
        self.current_probe = Probe::default();
        self.current_newest = Millis::MIN;
        self.opened_at = self.last_watermark;
    }

    /// Forgets generations whose newest event time is older than `watermark
    /// - horizon`, and rotates by time (see the module doc).
    pub fn expire(&mut self, watermark: Millis) {
        self.last_watermark = Some(watermark);
        let limit = watermark - self.horizon_ms;
        if self.previous_newest < limit && !self.previous.is_empty() {
            forget(&mut self.previous);
            self.previous_probe = Probe::default();
        }
        if self.current_newest < limit && !self.current.is_empty() {
            forget(&mut self.current);
            self.current_probe = Probe::default();
        }
        let opened = *self.opened_at.get_or_insert(watermark);
        if self.previous.is_empty() && !self.current.is_empty() && watermark.saturating_sub(opened) >= self.horizon_ms {
            // Nothing is forgotten: the previous generation is already gone.
            self.rotate();
        }
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids forgotten because the capacity was reached while still inside the horizon.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// Empties `table`, shrinking it when it held far fewer ids than it has room for.
fn forget(table: &mut HashTable<u64>) {
    let held = table.len();
    table.clear();
    if table.capacity() > 4 * held.max(START_SLOTS) {
        table.shrink_to(held.max(START_SLOTS), slot_hash);
    }
}

/// A [`Dedup`] as written to a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupSnapshot {
    pub current: Vec<u64>,
    pub current_newest: Millis,
    pub previous: Vec<u64>,
    pub previous_newest: Millis,
    pub last_watermark: Option<Millis>,
    pub evicted: u64,
}

impl Dedup {
    pub fn snapshot(&self) -> DedupSnapshot {
        DedupSnapshot {
            current: self.current.iter().copied().collect(),
            current_newest: self.current_newest,
            previous: self.previous.iter().copied().collect(),
            previous_newest: self.previous_newest,
            last_watermark: self.last_watermark,
            evicted: self.evicted,
        }
    }

    /// A dedup holding what `s` held (ids beyond this capacity's generations
    /// are kept anyway: they rotate out as new ids come).
    pub fn restore(horizon_ms: i64, capacity: usize, s: DedupSnapshot) -> Dedup {
        let mut d = Dedup::new(horizon_ms, capacity);
        for (table, ids) in [(&mut d.current, s.current), (&mut d.previous, s.previous)] {
            for h in ids {
                if let Entry::Vacant(slot) = table.entry(h, |&x| x == h, slot_hash) {
                    slot.insert(h);
                }
            }
        }
        d.current_probe = Probe::of(&d.current);
        d.previous_probe = Probe::of(&d.previous);
        d.current_newest = s.current_newest;
        d.previous_newest = s.previous_newest;
        d.last_watermark = s.last_watermark;
        d.opened_at = s.last_watermark;
        d.evicted = s.evicted;
        d
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
        d.expire(1_050);
        assert!(!d.first_time("a", 100), "100 >= 1050 - 1000: still remembered");
        d.expire(1_200);
        assert!(d.first_time("a", 1_300), "a expired: 100 < 1200 - 1000");
        assert!(!d.first_time("a", 1_300));
    }

    #[test]
    fn capacity_bounds_memory_and_recent_half_is_kept() {
        let mut d = Dedup::new(i64::MAX / 2, 4);
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert!(d.first_time(id, i as i64));
            assert!(d.len() <= 4);
        }
        // The two most recent generations ({c, d} and {e}) are kept.
        assert!(!d.first_time("d", 0) && !d.first_time("e", 0) && !d.first_time("c", 0));
        assert_eq!(d.evicted(), 2, "a and b were forgotten by capacity");
        assert!(d.first_time("a", 0), "a was forgotten");
    }

    #[test]
    fn a_steady_stream_holds_about_two_horizons_of_ids_not_the_capacity() {
        // 100 ids per second of event time, horizon 10 s, watermark 1 s behind.
        let mut d = Dedup::new(10_000, 1_000_000);
        let mut most = 0;
        for i in 0..100_000i64 {
            let t = i * 10;
            assert!(d.first_time(&format!("id-{i}"), t));
            if i % 100 == 99 {
                d.expire(t - 1_000);
                most = most.max(d.len());
            }
        }
        assert!((2_000..=3_200).contains(&most), "held at most {most} ids; two horizons are 2,000");
        assert_eq!(d.evicted(), 0, "rotating by time forgets nothing inside the horizon");
    }

    proptest::proptest! {
        /// Against a reference of every id and its event time: a first copy
        /// always counts, and a repeat whose first copy is still inside the
        /// horizon (event time >= last watermark - horizon) never does, while
        /// the capacity bound has evicted nothing.
        #[test]
        fn catches_every_repeat_inside_the_horizon(
            ops in proptest::collection::vec((0u16..400, 0i64..2_000, proptest::bool::weighted(0.1)), 1..3_000),
            horizon in 1i64..3_000,
            capacity in 2usize..600,
        ) {
            let mut d = Dedup::new(horizon, capacity);
            let mut seen = std::collections::HashMap::<u16, i64>::new();
            let (mut clock, mut wm) = (0i64, None::<i64>);
            for (id, step, tick) in ops {
                clock += step / 100;
                if tick {
                    let w = clock - 500;
                    wm = Some(w);
                    d.expire(w);
                }
                let t = clock - step % 700;
                let fresh = d.first_time(&format!("e{id}"), t);
                match seen.get(&id) {
                    None => proptest::prop_assert!(fresh, "a first copy of e{} was dropped", id),
                    Some(&first) if d.evicted() == 0 && wm.is_none_or(|w| first >= w - horizon) => {
                        proptest::prop_assert!(!fresh, "e{} (first at {}) counted twice, watermark {:?}", id, first, wm)
                    }
                    Some(_) => {}
                }
                if fresh {
                    seen.insert(id, t);
                }
                proptest::prop_assert!(d.len() <= capacity.max(2));
            }
        }
    }

    /// The layout `Probe` relies on holds for the id tables, and the probes
    /// follow the tables through growth, rotation and restore.
    #[test]
    fn probes_follow_the_generations() {
        let mut d = Dedup::new(1_000, 100_000);
        let check = |d: &Dedup| {
            for (table, probe) in [(&d.current, d.current_probe), (&d.previous, d.previous_probe)] {
                assert!(table.is_empty() || probe.is_known());
                for i in table.iter_buckets() {
                    assert_eq!(Probe::learn(table, i), probe, "bucket {i}");
                }
            }
        };
        for i in 0..120_000 {
            assert!(d.first_time(&format!("id-{i}"), i));
            d.prefetch(format!("id-{}", i + 1).as_bytes());
            if i % 30_000 == 0 {
                check(&d);
            }
        }
        check(&d);
        let r = Dedup::restore(1_000, 100_000, d.snapshot());
        check(&r);
        d.expire(200_000);
        check(&d);
        assert!(d.is_empty());
    }

    #[test]
    fn snapshot_round_trip_remembers_ids() {
        let mut d = Dedup::new(1_000, 4);
        for id in ["a", "b", "c"] {
            assert!(d.first_time(id, 10));
        }
        let mut r = Dedup::restore(1_000, 4, d.snapshot());
        assert_eq!(r.snapshot(), d.snapshot());
        assert!(!r.first_time("a", 10) && !r.first_time("c", 10));
        assert!(r.first_time("z", 10));
    }
}
