//! A set of 64-bit id hashes for [`super::dedup`]: one flat array of slots,
//! linear probing, at most half full.
//!
//! Why not hashbrown's `HashTable<u64>` (used before): dedup ids are hashes,
//! so every new id lands at a random place in tables of up to a million
//! ids, and a hashbrown probe there is two cache misses (the control bytes,
//! then the slot). Here the slot *is* the probe: one miss, at an address
//! known from the hash alone, so the hot path can prefetch it while it
//! decodes the record ([`IdSet::prefetch`]); hashbrown's control bytes
//! cannot be prefetched from outside. The price is density: 16 bytes an id
//! at the worst load (half full) against about 10 for hashbrown.
//!
//! Slot value 0 means empty; an id hash of 0 is stored (and probed) as 1 (see
//! [`IdSet::stored`]), which merges those two of 2^64 hashes.

/// The smallest table (slots).
const MIN_SLOTS: usize = 1 << 12;

#[derive(Debug, Clone)]
pub struct IdSet {
    slots: Box<[u64]>,
    len: usize,
}

impl IdSet {
    /// A set with room for `ids` ids before it grows.
    pub fn with_capacity(ids: usize) -> IdSet {
        let slots = (ids.saturating_mul(2)).max(MIN_SLOTS).next_power_of_two();
        IdSet { slots: vec![0; slots].into_boxed_slice(), len: 0 }
    }

    /// The value held for id hash `h` (0 is the empty slot's).
    #[inline(always)]
    pub fn stored(h: u64) -> u64 {
        h | u64::from(h == 0)
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ids the table holds before it grows.
    pub fn capacity(&self) -> usize {
        self.slots.len() / 2
    }

    /// Starts loading the slot where `h`'s probe begins into the cache.
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        let slot = &self.slots[Self::stored(h) as usize & self.mask()];
        super::shops::prefetch_lines((slot as *const u64).cast(), 8);
    }

    #[inline]
    pub fn contains(&self, h: u64) -> bool {
        let v = Self::stored(h);
        let mask = self.mask();
        let mut i = v as usize & mask;
        loop {
            match self.slots[i] {
                0 => return false,
                x if x == v => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `h`; false when it was already held.
    #[inline]
    pub fn insert(&mut self, h: u64) -> bool {
        let v = Self::stored(h);
        let mask = self.mask();
        let mut i = v as usize & mask;
        loop {
            match self.slots[i] {
                0 => break,
                x if x == v => return false,
                _ => i = (i + 1) & mask,
            }
        }
        self.slots[i] = v;
        self.len += 1;
        if self.len > self.capacity() {
            self.grow();
        }
        true
    }

    #[cold]
    fn grow(&mut self) {
        let bigger = vec![0; self.slots.len() * 2].into_boxed_slice();
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.mask();
        for v in old.iter().copied().filter(|&v| v != 0) {
            let mut i = v as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = v;
        }
    }

    /// Forgets every id; a table far larger than what it held (a burst)
    /// shrinks to fit, so later probes are not spread over it.
    pub fn forget(&mut self) {
        let held = self.len;
        if self.capacity() > 4 * held.max(MIN_SLOTS) {
            *self = IdSet::with_capacity(held);
        } else {
            self.slots.fill(0);
            self.len = 0;
        }
    }

    /// The held values (as [`IdSet::stored`] gives them).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().copied().filter(|&v| v != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Inserts, lookups and forgetting agree with a `HashSet` (small
        /// hash ranges force long probe runs, growth and wrap-around).
        #[test]
        fn agrees_with_a_hash_set(ops in proptest::collection::vec((0u8..8, any::<u64>(), 0u64..64), 1..6_000)) {
            let mut set = IdSet::with_capacity(4);
            let mut reference = std::collections::HashSet::new();
            for (op, wide, narrow) in ops {
                // Narrow hashes collide in their low bits; the top ones wrap.
                let h = match op % 3 { 0 => wide, 1 => narrow, _ => u64::MAX - narrow };
                match op {
                    0..=4 => prop_assert_eq!(set.insert(h), reference.insert(IdSet::stored(h))),
                    5 | 6 => prop_assert_eq!(set.contains(h), reference.contains(&IdSet::stored(h))),
                    _ => {
                        if narrow == 0 {
                            set.forget();
                            reference.clear();
                        }
                    }
                }
                set.prefetch(h);
                prop_assert_eq!(set.len(), reference.len());
                prop_assert!(set.len() <= set.capacity());
            }
            let mut held: Vec<u64> = set.iter().collect();
            let mut want: Vec<u64> = reference.into_iter().collect();
            held.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(held, want);
        }
    }

    #[test]
    fn zero_is_held_as_one_and_a_burst_gives_its_room_back() {
        let mut set = IdSet::with_capacity(0);
        assert!(set.insert(0));
        assert!(set.contains(0) && set.contains(1), "0 and 1 are one id");
        assert!(!set.insert(1));
        for h in 0..100_000u64 {
            set.insert(h.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        assert!(set.capacity() >= 100_000);
        set.forget();
        set.insert(5);
        set.forget();
        assert!(set.is_empty());
        assert_eq!(set.capacity(), MIN_SLOTS / 2, "shrunk after the burst");
    }
}
