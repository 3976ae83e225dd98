//! Prefetching for the engine's hash tables: asking the CPU to start loading
//! what a lookup will read, so that over a million shops (tables far larger
//! than the cache) the misses overlap other work instead of stalling it.
//! The [`Engine`]'s prefetch calls are here, and what they build on.
//!
//! hashbrown reads a table's control bytes first (the group of 16 at
//! `ctrl + (hash & mask)`), then the entry they point to. It does not expose
//! where its control bytes are; [`Probe`] learns that from its layout
//! (entries stored downwards from the control bytes: the entry in bucket `i`
//! ends `i * size` bytes below them) and an entry's address and bucket index,
//! after every insert, which is when a table can move. Only ever used as an
//! address to prefetch: were the layout to change, prefetches would go
//! astray, a slowdown and never a wrong answer (a prefetch reads nothing into
//! the program and cannot fault). The tests of `shops.rs` and `dedup.rs`
//! check the layout holds for their tables.

use hashbrown::HashTable;

use super::{Engine, SourceId};

/// Asks the CPU to start loading the cache lines of `len` bytes at `p`. A
/// hint only: it reads nothing into the program and cannot fault, whatever
/// the address. A no-op on targets without a stable prefetch instruction.
#[inline(always)]
pub(super) fn prefetch_lines(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let end = (p as usize).wrapping_add(len);
        let mut line = (p as usize) & !63;
        while line < end {
            // SAFETY: `_mm_prefetch` is a hint that never faults (on any
            // address) and changes no memory the program can see.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(line as *const i8)
            };
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Where a hashbrown table's control bytes are and its bucket mask; the
/// default (unknown) prefetches nothing.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct Probe {
    ctrl: usize,
    mask: usize,
}

/// Control bytes in a group: what one probe step reads.
const GROUP: usize = 16;

impl Probe {
    /// The probe start of `table`, from its entry in bucket `index`.
    pub(super) fn learn<T>(table: &HashTable<T>, index: usize) -> Probe {
        match table.get_bucket(index) {
            Some(e) if std::mem::size_of::<T>() > 0 => Probe {
                ctrl: (e as *const T as usize) + (index + 1) * std::mem::size_of::<T>(),
                mask: table.num_buckets() - 1,
            },
            _ => Probe::default(),
        }
    }

    /// The probe start of `table`, from any entry it holds.
    pub(super) fn of<T>(table: &HashTable<T>) -> Probe {
        table.iter_buckets().next().map_or(Probe::default(), |i| Probe::learn(table, i))
    }

    pub(super) fn is_known(&self) -> bool {
        self.ctrl != 0
    }

    /// Whether this probe, learnt from `table`, still holds: a table moves
    /// only when it grows (or is shrunk, after which its owner forgets the
    /// probe), so one with as many buckets as when the probe was learnt has
    /// not moved. Cheaper than learning again after every insert.
    #[inline]
    pub(super) fn still_fits<T>(&self, table: &HashTable<T>) -> bool {
        self.is_known() && self.mask == table.num_buckets() - 1
    }

    /// Prefetches the control bytes a lookup of hash `h` reads first.
    #[inline(always)]
    pub(super) fn prefetch_ctrl(&self, h: u64) {
        if self.is_known() {
            prefetch_lines(self.ctrl.wrapping_add(h as usize & self.mask) as *const u8, GROUP);
        }
    }

    /// Prefetches the control bytes and the entries of the first group a
    /// lookup of hash `h` reads: for tables of small entries (a group of
    /// 16 `u64` is two lines), where the entry a lookup ends at is nearly
    /// always in that group, so the whole lookup is then in the cache.
    #[inline(always)]
    pub(super) fn prefetch_group<T>(&self, h: u64) {
        if self.is_known() {
            let pos = h as usize & self.mask;
            prefetch_lines(self.ctrl.wrapping_add(pos) as *const u8, GROUP);
            let size = std::mem::size_of::<T>();
            // Buckets pos..pos + GROUP lie below the control bytes, the
            // highest bucket lowest (a group past the last bucket wraps to
            // the first ones: those are not prefetched).
            let low = self.ctrl.wrapping_sub((pos + GROUP).min(self.mask + 1) * size);
            prefetch_lines(low as *const u8, (pos + GROUP).min(self.mask + 1).saturating_sub(pos) * size);
        }
    }
}

impl Engine {
    /// Starts loading what folding an event of `shop_id` and `event_id`
    /// read from `source` will touch first into the CPU cache: the shop's
    /// state (`shops.rs`) and the event id's dedup probe groups (`dedup.rs`).
    /// Call it for the record about to be folded as soon as its ids are
    /// known, before decoding the rest of it: over a million shops those
    /// lookups miss the cache, and the misses then overlap the decode. A
    /// hint: it changes nothing, whatever the bytes. Finding the shop's
    /// entry waits for its table's control bytes; a caller that knows its
    /// events further ahead calls [`Engine::prefetch_early`] for them first
    /// and [`Engine::prefetch_shop`] a few events later.
    #[inline]
    pub fn prefetch(&self, source: SourceId, shop_id: &[u8], event_id: &[u8]) {
        // The entry's prefetch reads the control bytes itself: prefetching
        // them first, just before, would only hash the id twice.
        self.prefetch_shop(shop_id);
        self.prefetch_dedup(source, event_id);
    }

    /// The first step of [`Engine::prefetch`], which reads nothing: the
    /// shop table's control bytes and the dedup probe groups.
    #[inline]
    pub fn prefetch_early(&self, source: SourceId, shop_id: &[u8], event_id: &[u8]) {
        self.shops.prefetch_probe(shop_id);
        self.prefetch_dedup(source, event_id);
    }

    /// The probe groups of `event_id` in the dedup of `source`'s shard.
    #[inline]
    fn prefetch_dedup(&self, source: SourceId, event_id: &[u8]) {
        let shard = self.source_shards.get(source.0 as usize).copied().unwrap_or(0);
        if let Some(Some(d)) = self.dedups.get(shard as usize) {
            d.prefetch(event_id);
        }
    }

    /// The second step of [`Engine::prefetch`]: the shop's entry, found by
    /// its table's control bytes (best already loaded by
    /// [`Engine::prefetch_early`]).
    #[inline]
    pub fn prefetch_shop(&self, shop_id: &[u8]) {
        self.shops.prefetch(shop_id);
    }
}
