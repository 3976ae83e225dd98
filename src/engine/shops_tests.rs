//! Tests of the shop map: against one plain map, the tables' layout
//! (what the prefetches rely on), sizing and growth.

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

/// The large tables of a map that grows as shops come double at different
/// fills (table `t` at 1/2 + t/128 of its capacity), so their moves do not
/// come all at once: the shop counts at which each table reaches twice
/// [`STAGGER_FROM`] slots spread over more than a quarter of the range,
/// where tables doubling when full would reach it within a few percent of
/// each other.
#[test]
fn the_tables_double_at_different_fills() {
    let mut map = ShopMap::default();
    let mut reached: Vec<Option<usize>> = vec![None; SHARDS];
    let mut i = 0;
    while reached.iter().any(Option::is_none) {
        assert!(i < 2_000_000, "tables never reached {} slots", 2 * STAGGER_FROM);
        let id = format!("shop-{i:07}");
        map.get_or_insert_with(&id, ShopState::empty);
        i += 1;
        // Only the table the shop went into can have grown.
        let t = table_of(hash(&id));
        if reached[t].is_none() && map.tables[t].num_buckets() >= 2 * STAGGER_FROM {
            reached[t] = Some(map.len());
        }
    }
    let reached: Vec<usize> = reached.into_iter().map(|r| r.expect("every table reached it")).collect();
    let (lo, hi) = (*reached.iter().min().unwrap(), *reached.iter().max().unwrap());
    assert!((hi - lo) * 4 > hi, "tables reached {} slots between {lo} and {hi} shops", 2 * STAGGER_FROM);
    // Table 0 doubles first, at about half its capacity; table 63 when full.
    assert!(reached[0] < reached[SHARDS - 1], "{reached:?}");
}
