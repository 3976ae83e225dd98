//! The engine's shops by id, in 64 hash tables picked by the id's hash.
//!
//! One table of a million shops doubles by moving every entry at once: at
//! 458k and 917k shops that stalled the hot path for 80 and 180 ms
//! (measured with `peakguard bench`), and each stall showed up in the
//! latency percentiles of every record queued behind it. With 64 tables a
//! growth step moves about 1/64 of the shops. But the tables fill at one
//! pace, and doubling when full they all doubled within a few hundred
//! shops, one stall again (65 ms at 1M shops, p99 to fold 62-68 ms): table
//! `t` doubles at (1/2 + t/128) of its capacity instead, once it has
//! [`STAGGER_FROM`] slots (p99 5 ms; 44 bytes more a shop at 1M shops). A
//! map sized at start does not double early. The id is
//! hashed once (FxHash) for both the table choice and the lookup.
//!
//! Over a million shops nearly every lookup misses the cache twice (the
//! table's control bytes, then the entry), and those misses were half of the
//! whole hot path's time (`perf`, `peakguard bench`). [`ShopMap::prefetch`]
//! lets a caller that knows which shop comes next (the record being decoded,
//! the next shops of a rule round) start loading its entry while it does
//! other work. That prefetch still waits for the control bytes (it reads
//! them to find the entry's slot), so a caller that knows its shops further
//! ahead (a rule round) first calls [`ShopMap::prefetch_probe`], which
//! prefetches the control bytes alone from each table's remembered layout
//! ([`Probe`]), and the entry's prefetch a few shops later no longer waits.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::prefetch::{prefetch_lines, Probe};
use super::scope::ScopeState;
use super::ShopState;

const SHARDS: usize = 64;

/// Slots from which a table doubles early, at a fill of its own (see the
/// module's header): tables of 8,192 slots and more, which hold about
/// 450,000 shops over the 64. Below that a doubling of all 64 moves little
/// (under 10 ms), and doubling early would cost more than it saves: tables
/// half empty on average, and the Zipf fold over 221k shops (tables just
/// under full at 4,096 slots) 8% slower.
const STAGGER_FROM: usize = 8_192;

/// Bytes of an id held inline in a [`Key`] (the key is then 24 bytes, as
/// large as a shared one).
const INLINE: usize = 22;

/// A shop id as the map and the pending lists hold it. Ids of up to
/// [`INLINE`] bytes (numeric shop ids, `shop-0001234`) sit in the key
/// itself: a new shop allocates nothing for its id, and a lookup compares
/// the bytes already in the table's entry, where a pointer to the id cost
/// one more cache miss per event over a million shops (the map is far
/// larger than the cache). Longer ids are shared (`Arc<str>`), so listing
/// a shop as pending never copies more than 24 bytes.
#[derive(Clone)]
pub(super) enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(std::sync::Arc<str>),
}

impl Key {
    #[inline]
    fn new(id: &str) -> Key {
        if id.len() > INLINE {
            return Key::Shared(id.into());
        }
        let mut bytes = [0; INLINE];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        Key::Inline { len: id.len() as u8, bytes }
    }

    #[inline]
    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Shared(id) => id.as_bytes(),
        }
    }

    /// Heap bytes of the id (an `Arc<str>` holds two counts before it).
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Key::Inline { .. } => 0,
            Key::Shared(id) => id.len() + 2 * std::mem::size_of::<usize>(),
        }
    }
}

impl std::ops::Deref for Key {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        match self {
            // SAFETY: the bytes are a copy of a whole `&str` (`Key::new`),
            // so they are UTF-8.
            Key::Inline { len, bytes } => unsafe { std::str::from_utf8_unchecked(&bytes[..*len as usize]) },
            Key::Shared(id) => id,
        }
    }
}

impl From<&str> for Key {
    fn from(id: &str) -> Key {
        Key::new(id)
    }
}

impl From<String> for Key {
    fn from(id: String) -> Key {
        Key::new(&id)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        same_bytes(self.as_bytes(), other.as_bytes())
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// A shop's slot in its table: 128 bytes on a 64-byte boundary, so a
/// lookup over a million shops misses on exactly one aligned pair of cache
/// lines (which the adjacent-line prefetcher fetches together). At 152
/// unaligned bytes an entry spanned three or four lines, and the fold read
/// from each of them (the id, the cold cells, the category).
#[repr(align(64))]
struct Entry(Key, ShopState);

/// Whether two ids are equal: ids of 4 to 16 bytes (most shop ids) as two
/// overlapping word compares each, without the call into `memcmp` that
/// comparing slices costs on every lookup. Only where lengths repeat: the
/// fold's category check (names of mixed lengths, event by event) ran 5%
/// slower this way than through `memcmp`, from mispredicted length branches.
#[inline]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word = |s: &[u8], i: usize| s.get(i..i + 8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    if (4..8).contains(&n) {
        let word = |s: &[u8], i: usize| s.get(i..i + 4).map(|w| u32::from_le_bytes(w.try_into().unwrap_or_default()));
        return word(a, 0) == word(b, 0) && word(a, n - 4) == word(b, n - 4);
    }
    a == b
}

pub(super) struct ShopMap {
    tables: Box<[HashTable<Entry>]>,
    /// Per table: where its probes start (see [`Probe`]).
    probes: Box<[Probe]>,
    len: usize,
    /// The shops the tables were sized for at start ([`ShopMap::with_capacity`]).
    sized_for: usize,
}

#[inline]
fn hash(key: &str) -> u64 {
    hash_bytes(key.as_bytes())
}

/// The hash of an id given as bytes: what `str`'s `Hash` writes (the bytes,
/// then `0xff`), so [`ShopMap::prefetch`] can take an id not yet checked as
/// UTF-8 and find the slot its `&str` will.
#[inline]
fn hash_bytes(key: &[u8]) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    h.write(key);
    h.write_u8(0xff);
    h.finish()
}

/// The table of a hash: bits 40..46, clear of both the bits a table uses
/// for the slot (the low ones) and for its control bytes (the top 7).
#[inline]
fn table_of(h: u64) -> usize {
    ((h >> 40) as usize) & (SHARDS - 1)
}

impl ShopState {
    /// A shop with nothing folded (what fills a sized map's pages).
    fn empty() -> ShopState {
        ShopState { category: 0, shard: 0, scope: ScopeState::empty(), pending_until: None, pending_in: 0 }
    }
}

impl Default for ShopMap {
    fn default() -> Self {
        ShopMap {
            tables: (0..SHARDS).map(|_| HashTable::new()).collect(),
            probes: vec![Probe::default(); SHARDS].into_boxed_slice(),
            len: 0,
            sized_for: 0,
        }
    }
}

impl ShopMap {
    /// A map whose tables hold `shops` shops without growing (empty tables
    /// for 0). A table's share of the shops varies with the hash by about
    /// its square root: each is sized for its share plus four times that,
    /// so none grows below `shops`.
    ///
    /// Every page of the tables is written now, and so resident from the
    /// start: otherwise each of the first shops to arrive lands on a page
    /// nothing has written yet, and waits for the kernel to supply it (10%
    /// of the time taken in by a million new shops, `peakguard bench`).
    /// Filling a table to its capacity with empty entries and clearing it
    /// writes its pages and keeps its allocation (`HashTable::clear`).
    pub(super) fn with_capacity(shops: usize) -> ShopMap {
        let mut map = ShopMap { sized_for: shops, ..ShopMap::default() };
        if shops == 0 {
            return map;
        }
        let share = shops.div_ceil(SHARDS);
        let per_table = share + 4 * share.isqrt() + 16;
        for table in map.tables.iter_mut() {
            *table = HashTable::with_capacity(per_table);
            for i in 0..table.capacity() {
                // Hashes spread over the slots; no lookup ever sees them.
                let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                table.insert_unique(h, Entry(Key::new(""), ShopState::empty()), |_| h);
            }
            table.clear();
        }
        map
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated over all tables.
    pub(super) fn capacity(&self) -> usize {
        self.tables.iter().map(HashTable::capacity).sum()
    }

    /// Starts loading the entry of shop `key` (its id's bytes, UTF-8 or
    /// not) into the cache, if it is held; does nothing else. The entry's
    /// slot is found by the control bytes alone (`iter_hash`: no key
    /// compare, so no wait on the entry itself); a slot of another id whose
    /// hash tag collides only loads a line for nothing.
    #[inline]
    pub(super) fn prefetch(&self, key: &[u8]) {
        let h = hash_bytes(key);
        if let Some(e) = self.tables[table_of(h)].iter_hash(h).next() {
            prefetch_lines((e as *const Entry).cast(), std::mem::size_of::<Entry>());
        }
    }

    /// Starts loading the control bytes a lookup of shop `key` reads first
    /// (see [`Probe`]): call it a few lookups ahead of [`ShopMap::prefetch`]
    /// for the same id. Reads nothing.
    #[inline]
    pub(super) fn prefetch_probe(&self, key: &[u8]) {
        let h = hash_bytes(key);
        let probe = self.probes[table_of(h)];
        probe.prefetch_ctrl(h);
    }

    pub(super) fn get(&self, key: &str) -> Option<&ShopState> {
        let h = hash(key);
        self.tables[table_of(h)].find(h, |e| same_bytes(e.0.as_bytes(), key.as_bytes())).map(|e| &e.1)
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut ShopState> {
        let h = hash(key);
        self.tables[table_of(h)].find_mut(h, |e| same_bytes(e.0.as_bytes(), key.as_bytes())).map(|e| &mut e.1)
    }

    /// The shop `key`, made by `make` when it is not held. A lookup that
    /// finds the shop does not check the table's room for growth (hashbrown's
    /// `entry` does), which the hot path pays for every event. After an
    /// insert the table's probe start is learned again: the insert may have
    /// moved the table.
    #[inline]
    pub(super) fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> ShopState) -> (&Key, &mut ShopState) {
        let h = hash(key);
        let t = table_of(h);
        let table = &mut self.tables[t];
        let index = match table.find_bucket_index(h, |e| same_bytes(e.0.as_bytes(), key.as_bytes())) {
            Some(found) => found,
            None => {
                let large = table.num_buckets() >= STAGGER_FROM;
                if large && self.len >= self.sized_for && table.len() * 128 >= table.capacity() * (64 + t) {
                    // The tables fill at one pace, so each would double
                    // within a few hundred shops of the others, and the 64
                    // moves add up to one stall (65 ms at 1M shops). Table
                    // `t` doubles at (1/2 + t/128) of its capacity instead.
                    let room = table.capacity() + 1 - table.len();
                    table.reserve(room, |e| hash(&e.0));
                }
                let index = table.insert_unique(h, Entry(Key::new(key), make()), |e| hash(&e.0)).bucket_index();
                self.len += 1;
                self.probes[t] = Probe::learn(&self.tables[t], index);
                index
            }
        };
        let e = self.tables[t].get_bucket_mut(index).expect("the bucket found or just filled");
        (&e.0, &mut e.1)
    }

    /// Holds `state` for `key`; returns what was held before.
    pub(super) fn insert(&mut self, key: Key, state: ShopState) -> Option<ShopState> {
        let h = hash(&key);
        let t = table_of(h);
        let index = match self.tables[t].entry(h, |e| e.0 == key, |e| hash(&e.0)) {
            hashbrown::hash_table::Entry::Occupied(mut o) => return Some(std::mem::replace(&mut o.get_mut().1, state)),
            hashbrown::hash_table::Entry::Vacant(v) => v.insert(Entry(key, state)).bucket_index(),
        };
        self.len += 1;
        // The insert may have moved the table.
        self.probes[t] = Probe::learn(&self.tables[t], index);
        None
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &ShopState)> {
        self.entries().map(|(k, s)| (&**k, s))
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = (&Key, &ShopState)> {
        self.tables.iter().flat_map(|t| t.iter().map(|e| (&e.0, &e.1)))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &ShopState> {
        self.tables.iter().flat_map(|t| t.iter().map(|e| &e.1))
    }

    /// Keeps the shops for which `keep` is true.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&str, &mut ShopState) -> bool) {
        for table in self.tables.iter_mut() {
            table.retain(|e| keep(&e.0, &mut e.1));
        }
        self.len = self.tables.iter().map(HashTable::len).sum();
        for (probe, table) in self.probes.iter_mut().zip(self.tables.iter()) {
            *probe = Probe::of(table);
        }
    }
}

#[cfg(test)]
#[path = "shops_tests.rs"]
mod tests;
