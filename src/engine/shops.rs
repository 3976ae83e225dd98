//! The engine's shops by id, in 64 hash tables picked by the id's hash.
//!
//! One table of a million shops doubles by moving every entry at once: at
//! 458k and 917k shops that stalled the hot path for 80 and 180 ms
//! (measured with `peakguard bench`), and each stall showed up in the
//! latency percentiles of every record queued behind it. With 64 tables a
//! growth step moves about 1/64 of the shops. The id is hashed once (FxHash)
//! for both the table choice and the lookup.
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
        let mut map = ShopMap::default();
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
mod tests {
    use super::*;
    use crate::engine::scope::{Layout, ScopeState};
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A map sized for `n` shops takes `n` shops (ids of the usual shape)
    /// without any table growing; 229,376 is 64 tables of exactly 7/8 of
    /// 4,096 slots, where a table sized for its even share alone would grow.
    #[test]
    fn a_map_sized_for_n_shops_never_grows_below_n() {
        for n in [1, 1_000, 229_376] {
            let mut map = ShopMap::with_capacity(n);
            assert!(map.is_empty() && map.tables.iter().all(|t| t.is_empty()), "the pages' filler is cleared");
            assert!(map.get("").is_none());
            let capacity = map.capacity();
            for i in 0..n {
                map.get_or_insert_with(&format!("shop-{i:07}"), || state(0));
            }
            assert_eq!(map.len(), n);
            assert_eq!(map.capacity(), capacity, "{n} shops grew a table");
        }
        assert_eq!(ShopMap::with_capacity(0).capacity(), 0);
    }

    /// A slot is one aligned pair of cache lines: a field added to a shop's
    /// state that grows it past 128 bytes puts a third line on every lookup.
    #[test]
    fn an_entry_is_two_aligned_cache_lines() {
        assert_eq!(std::mem::size_of::<Entry>(), 128);
        assert_eq!(std::mem::align_of::<Entry>(), 64);
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        // Every length around the word-compare cases, equal and differing
        // in each byte (first, last and the middle ones the words overlap).
        for n in 0..=24usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i).collect();
            assert!(same_bytes(&a, &a.clone()), "{n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same_bytes(&a, &b), "{n} bytes, byte {i} differs");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer), "{n}");
        }
    }

    fn state(shard: u32) -> ShopState {
        let layout = Layout::new(vec![60_000], vec![1], vec![0]);
        ShopState { category: 0, shard, scope: ScopeState::new(&layout, 0, false), pending_until: None, pending_in: 0 }
    }

    proptest! {
        /// Inserts, lookups and retains agree with one std `HashMap`.
        #[test]
        fn agrees_with_one_map(ops in proptest::collection::vec((0u8..4, 0u32..3000, 0u32..8), 1..3000)) {
            let (mut map, mut reference) = (ShopMap::default(), HashMap::<String, u32>::new());
            for (op, key, shard) in ops {
                // Ids held inline and ids too long for that (shared).
                let id = if key % 3 == 0 { format!("a-shop-id-longer-than-inline-{key}") } else { format!("shop-{key}") };
                match op {
                    0 => {
                        let had = map.insert(id.as_str().into(), state(shard)).map(|s| s.shard);
                        prop_assert_eq!(had, reference.insert(id, shard));
                    }
                    1 => {
                        let got = map.get_or_insert_with(&id, || state(shard)).1.shard;
                        prop_assert_eq!(got, *reference.entry(id).or_insert(shard));
                    }
                    2 => prop_assert_eq!(map.get(&id).map(|s| s.shard), reference.get(&id).copied()),
                    _ => {
                        map.retain(|_, s| s.shard != shard);
                        reference.retain(|_, s| *s != shard);
                    }
                }
                prop_assert_eq!(map.len(), reference.len());
            }
            let mut all: Vec<(String, u32)> = map.iter().map(|(k, s)| (k.to_string(), s.shard)).collect();
            let mut want: Vec<(String, u32)> = reference.into_iter().collect();
            all.sort();
            want.sort();
            prop_assert_eq!(all, want);
        }
    }

    /// The layout `Probe` relies on holds for the shop tables: every entry
    /// of a table sits `index + 1` entries below one common address (the
    /// control bytes), and the probe learned after the last insert points
    /// there.
    #[test]
    fn probes_follow_the_tables() {
        let mut map = ShopMap::default();
        for i in 0..20_000 {
            map.get_or_insert_with(&format!("shop-{i}"), || state(0));
            if i % 5_000 == 0 {
                map.insert(Key::from(format!("other-{i}")), state(1));
            }
        }
        map.retain(|id, _| !id.ends_with('7'));
        for (table, probe) in map.tables.iter().zip(map.probes.iter()) {
            assert!(probe.is_known());
            for i in table.iter_buckets() {
                assert_eq!(Probe::learn(table, i), *probe, "bucket {i}");
            }
        }
        for id in ["shop-1", "shop-17", "nobody"] {
            map.prefetch_probe(id.as_bytes());
        }
        assert_eq!(map.len(), map.tables.iter().map(HashTable::len).sum::<usize>());
    }

    #[test]
    fn ids_hash_as_their_bytes() {
        for id in ["", "shop-0001234", "店铺-é-0001", "a-shop-id-longer-than-inline-12345"] {
            assert_eq!(hash(id), FxBuildHasher.hash_one(id), "{id}");
            assert_eq!(hash(id), hash_bytes(id.as_bytes()), "{id}");
        }
        // A prefetch of any bytes, held or not, changes nothing.
        let mut map = ShopMap::default();
        map.get_or_insert_with("shop-1", || state(7));
        for key in [&b"shop-1"[..], b"shop-2", b"\xff\xfe", b""] {
            map.prefetch(key);
        }
        assert_eq!(map.len(), 1);
        assert_eq!(map.get("shop-1").map(|s| s.shard), Some(7));
    }

    #[test]
    fn keys_hold_their_ids_inline_or_shared() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        for id in ["", "s", "shop-0001234", "1234567890123456789012", "12345678901234567890123", "店铺-é-0001"] {
            let key = Key::from(id);
            assert_eq!(&*key, id);
            assert_eq!(matches!(key, Key::Inline { .. }), id.len() <= INLINE, "{id}");
            assert_eq!(key.heap_bytes() == 0, id.len() <= INLINE);
            assert!(key == Key::from(id.to_string()));
        }
        assert!(Key::from("shop-1") != Key::from("shop-2"));
    }

    #[test]
    fn ids_spread_over_the_tables() {
        let mut map = ShopMap::default();
        for i in 0..64_000 {
            map.get_or_insert_with(&format!("shop-{i:07}"), || state(0));
        }
        let sizes: Vec<usize> = map.tables.iter().map(HashTable::len).collect();
        assert!(sizes.iter().all(|&n| (600..1400).contains(&n)), "uneven tables: {sizes:?}");
    }
}
