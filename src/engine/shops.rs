//! The engine's shops by id, in 64 hash tables picked by the id's hash.
//!
//! One table of a million shops doubles by moving every entry at once: at
//! 458k and 917k shops that stalled the hot path for 80 and 180 ms
//! (measured with `peakguard bench`), and each stall showed up in the
//! latency percentiles of every record queued behind it. With 64 tables a
//! growth step moves about 1/64 of the shops. The id is hashed once (FxHash)
//! for both the table choice and the lookup.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

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
    fn as_bytes(&self) -> &[u8] {
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
        self.as_bytes() == other.as_bytes()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

type Entry = (Key, ShopState);

pub(super) struct ShopMap {
    tables: Box<[HashTable<Entry>]>,
    len: usize,
}

#[inline]
fn hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The table of a hash: bits 40..46, clear of both the bits a table uses
/// for the slot (the low ones) and for its control bytes (the top 7).
#[inline]
fn table_of(h: u64) -> usize {
    ((h >> 40) as usize) & (SHARDS - 1)
}

impl Default for ShopMap {
    fn default() -> Self {
        ShopMap { tables: (0..SHARDS).map(|_| HashTable::new()).collect(), len: 0 }
    }
}

impl ShopMap {
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

    pub(super) fn get(&self, key: &str) -> Option<&ShopState> {
        let h = hash(key);
        self.tables[table_of(h)].find(h, |e| e.0.as_bytes() == key.as_bytes()).map(|e| &e.1)
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut ShopState> {
        let h = hash(key);
        self.tables[table_of(h)].find_mut(h, |e| e.0.as_bytes() == key.as_bytes()).map(|e| &mut e.1)
    }

    /// The shop `key`, made by `make` when it is not held. A lookup that
    /// finds the shop does not check the table's room for growth (hashbrown's
    /// `entry` does), which the hot path pays for every event.
    #[inline]
    pub(super) fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> ShopState) -> (&Key, &mut ShopState) {
        let h = hash(key);
        let e = match self.tables[table_of(h)].find_entry(h, |e| e.0.as_bytes() == key.as_bytes()) {
            Ok(found) => found.into_mut(),
            Err(absent) => {
                self.len += 1;
                absent.into_table().insert_unique(h, (Key::new(key), make()), |e| hash(&e.0)).into_mut()
            }
        };
        (&e.0, &mut e.1)
    }

    /// Holds `state` for `key`; returns what was held before.
    pub(super) fn insert(&mut self, key: Key, state: ShopState) -> Option<ShopState> {
        let h = hash(&key);
        let table = &mut self.tables[table_of(h)];
        match table.entry(h, |e| e.0 == key, |e| hash(&e.0)) {
            hashbrown::hash_table::Entry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().1, state)),
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.len += 1;
                v.insert((key, state));
                None
            }
        }
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::scope::{Layout, ScopeState};
    use proptest::prelude::*;
    use std::collections::HashMap;

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
