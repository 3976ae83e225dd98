//! The window engine: folds events into per-shop, per-category and
//! platform-wide sliding windows in event time. Pure: no IO, no async, no
//! clock of its own (callers pass processing time in), so it is easy to test
//! exhaustively and to bench.
//!
//! * [`counts`]: the counters and what each event contributes (activity and
//!   cohort basis).
//! * [`window`]: sparse rings of time buckets, one per window; `cold`: one
//!   list of cells for all windows of a small shop.
//! * [`scope`]: a shop's or category's rings; `view`: reading them, and the
//!   platform as the categories' sum.
//! * [`watermark`]: per-partition event-time clocks and the combined watermark.
//! * [`dedup`]: bounded memory of recent event ids.
//! * `shops`: the shop map; `prefetch`: starting the cache loads of its and
//!   dedup's lookups ahead of them ([`Engine::prefetch`]), which over a
//!   million shops is what the hot path waits on.
//!
//! An event is rejected, with a reason for the dead-letter path, when it is
//! further ahead of the newest event seen than `max_future` (a clock gone
//! wrong), older than the watermark minus the longest window (it can no
//! longer change any window that will be read), or a repeat of an event id
//! seen within the dedup horizon. Shops whose rings are all empty are dropped
//! by [`Engine::evict_idle`].

mod categories;
mod cold;
pub mod counts;
pub mod dedup;
mod dense;
mod pending;
mod prefetch;
pub mod scope;
pub mod shard;
mod shops;
mod view;
pub mod watermark;
pub mod window;

use crate::event::{Event, Millis};
pub use counts::{Counts, Deltas, Field, NF};
use dedup::Dedup;
pub use pending::VisitFloor;
pub use scope::{Layout, ScopeState};
pub use shard::{ShardSnapshot, SnapshotError};
pub use view::ScopeView;
pub use watermark::{SourceId, WatermarkTracker};
use window::bucket_of;

/// One sliding window: `size` long, sliding by `step`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub name: String,
    pub size_ms: i64,
    pub step_ms: i64,
}

impl WindowSpec {
    pub fn buckets(&self) -> usize {
        (self.size_ms / self.step_ms) as usize
    }
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub windows: Vec<WindowSpec>,
    pub allowed_lateness_ms: i64,
    pub idle_timeout_ms: i64,
    /// Events further ahead of the newest event seen are rejected.
    pub max_future_ms: i64,
    /// Repeated event ids are dropped while the watermark is within this of them.
    pub dedup_horizon_ms: i64,
    /// At most this many event ids are remembered for dedup.
    pub dedup_capacity: usize,
    /// Shops the shop tables are sized for at start (0: they grow as shops
    /// come). Sized tables never grow, and their pages are written at start,
    /// so the first sight of a shop never waits for a table to move its
    /// entries or for the kernel to supply a page.
    pub expected_shops: usize,
}

impl EngineConfig {
    /// 5 min, 1 h, 24 h and 30 d windows; 30 s lateness.
    pub fn with_windows(windows: Vec<WindowSpec>) -> EngineConfig {
        EngineConfig {
            windows,
            allowed_lateness_ms: 30_000,
            idle_timeout_ms: 30_000,
            max_future_ms: 3_600_000,
            dedup_horizon_ms: 30_000,
            dedup_capacity: 1_000_000,
            expected_shops: 0,
        }
    }
}

/// The most windows an engine keeps (a shop's pending lists are bits of a `u32`).
pub const MAX_WINDOWS: usize = 32;

/// The pending bits of every one of `n` windows.
fn all_windows(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// Per-shop state.
#[derive(Clone, Debug)]
pub struct ShopState {
    category: u32,
    /// The partition number whose records fed this shop (see [`shard`]).
    shard: u32,
    scope: ScopeState,
    /// Newest event time folded since the shop's rules last saw all of it.
    pending_until: Option<Millis>,
    /// Bit `w`: the shop is in window `w`'s pending list.
    pending_in: u32,
}

impl ShopState {
    pub fn category_id(&self) -> u32 {
        self.category
    }
}

/// The result of folding one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Counted in the windows.
    Folded,
    /// Valid, but no counter counts it (e.g. an order created then shipped in transit).
    Ignored,
    /// Older than the watermark minus the longest window.
    Late,
    /// An event id already folded within the dedup horizon.
    Duplicate,
    /// Further ahead of the newest event seen than `max_future`.
    Future,
}

impl Fold {
    pub const ALL: [Fold; 5] = [Fold::Folded, Fold::Ignored, Fold::Late, Fold::Duplicate, Fold::Future];

    pub fn label(self) -> &'static str {
        match self {
            Fold::Folded => "folded",
            Fold::Ignored => "ignored",
            Fold::Late => "late",
            Fold::Duplicate => "duplicate",
            Fold::Future => "future",
        }
    }
}

/// Remembers the last bucket computed for a window, so that in-order events
/// (nearly all) cost two comparisons instead of a 64-bit division.
#[derive(Clone, Copy, Debug)]
struct BucketCache {
    step: i64,
    lo: i64,
    hi: i64,
    index: i64,
}

impl BucketCache {
    fn new(step: i64) -> Self {
        BucketCache { step, lo: 0, hi: 0, index: 0 }
    }

    #[inline]
    fn bucket(&mut self, t: Millis) -> i64 {
        if t >= self.lo && t < self.hi {
            return self.index;
        }
        let b = bucket_of(t, self.step);
        if b >= self.index {
            // Only move forward: a late event must not evict the current bucket.
            self.index = b;
            self.lo = b * self.step;
            self.hi = self.lo + self.step;
        }
        b
    }
}

/// Extra buckets every ring keeps behind the oldest bucket rules evaluate, so
/// a spike rule can read its baseline window where the current window starts
/// (config validation keeps the baseline's step at least the rule window's
/// size, so that is at most two buckets back).
pub const BASELINE_BUCKETS: usize = 2;

pub struct Engine {
    cfg: EngineConfig,
    bucket_cache: Vec<BucketCache>,
    /// Per window, the (activity, cohort) bucket of the event being folded.
    buckets: Vec<(i64, i64)>,
    /// The span of event times whose activity buckets `buckets` holds
    /// (empty when the steps do not nest).
    act_span: (Millis, Millis),
    layout: Layout,
    retention_ms: i64,
    shops: shops::ShopMap,
    cats: categories::Categories,
    /// Whether any shop has been folded or imported (see [`Engine::platform`];
    /// the platform's windows are the categories', summed: `view.rs`).
    has_platform: bool,
    /// Per window: shops folded into since that window last evaluated their
    /// newest bucket. A window drains only its own list when it completes a
    /// bucket, so a day-long window's backlog is not revisited every minute.
    pending: Vec<Vec<shops::Key>>,
    /// Per window: the shops of the evaluation round in progress (see
    /// `pending.rs`); they keep their pending bit until visited.
    rounds: Vec<Vec<shops::Key>>,
    /// Bit `w`: window `w` keeps a pending list (something reads it per shop).
    tracked: u32,
    /// Per window: what a shop must hold to join its pending list (`pending.rs`).
    visit_floors: Vec<Option<VisitFloor>>,
    /// Bit `w`: window `w` has a visit floor.
    floored: u32,
    watermark: WatermarkTracker,
    /// Shard (partition number) of each source, by `SourceId`; 0 when unset.
    source_shards: Vec<u32>,
    /// One dedup memory per shard, by shard number: a producer's retry lands
    /// in the partition of its first attempt, and a shard's ids travel with
    /// its checkpoint.
    dedups: Vec<Option<Dedup>>,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        debug_assert!(cfg.windows.iter().all(|w| w.step_ms > 0 && w.size_ms % w.step_ms == 0));
        // Enough buckets behind the head to read at a watermark that trails it
        // by the allowed lateness, plus one for the bucket in progress, plus
        // [`BASELINE_BUCKETS`] for spike rules' baselines.
        let slack = cfg
            .windows
            .iter()
            .map(|w| (cfg.allowed_lateness_ms.max(0) / w.step_ms) as usize + 2 + BASELINE_BUCKETS)
            .collect();
        let layout = Layout::new(
            cfg.windows.iter().map(|w| w.step_ms).collect(),
            cfg.windows.iter().map(|w| w.buckets() as i64).collect(),
            slack,
        );
        let retention_ms = cfg.windows.iter().map(|w| w.size_ms).max().unwrap_or(0);
        let watermark = WatermarkTracker::new(cfg.allowed_lateness_ms, cfg.idle_timeout_ms);
        let bucket_cache = cfg.windows.iter().map(|w| BucketCache::new(w.step_ms)).collect();
        let buckets = vec![(0, 0); cfg.windows.len()];
        let n_windows = cfg.windows.len();
        let shops = shops::ShopMap::with_capacity(cfg.expected_shops);
        assert!(n_windows <= MAX_WINDOWS, "at most {MAX_WINDOWS} windows (config validation says so)");
        Engine {
            cfg,
            bucket_cache,
            buckets,
            act_span: (0, 0),
            layout,
            retention_ms,
            shops,
            cats: Default::default(),
            has_platform: false,
            pending: vec![Vec::new(); n_windows],
            rounds: vec![Vec::new(); n_windows],
            tracked: all_windows(n_windows),
            visit_floors: vec![None; n_windows],
            floored: 0,
            watermark,
            source_shards: Vec::new(),
            dedups: Vec::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// How many buckets behind its head window `w` can be read exactly by
    /// rules at a complete bucket (the baseline margin kept aside).
    pub fn slack(&self, w: usize) -> usize {
        self.layout.slack[w] - 1 - BASELINE_BUCKETS
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn view<'a>(&'a self, scope: &'a ScopeState) -> ScopeView<'a> {
        ScopeView::one(&self.layout, scope)
    }

    pub fn watermark(&self) -> &WatermarkTracker {
        &self.watermark
    }

    pub fn watermark_mut(&mut self) -> &mut WatermarkTracker {
        &mut self.watermark
    }

    /// Recomputes the watermark at processing time `proc_now` and forgets
    /// dedup ids it has passed.
    pub fn update_watermark(&mut self, proc_now: Millis) -> Option<Millis> {
        let wm = self.watermark.update(proc_now);
        if let Some(wm) = wm {
            // Each shard's dedup forgets by its own sources' progress as well
            // as the watermark's: the watermark can run ahead of a partition
            // (one that went idle, caught up, or was restored at another
            // process's watermark), and a retry read right after its first
            // copy must still be caught there.
            let mut clocks: Vec<Option<Millis>> = vec![None; self.dedups.len()];
            for (id, max) in self.watermark.source_maxes() {
                let shard = self.source_shards.get(id.0 as usize).copied().unwrap_or(0) as usize;
                if let Some(c) = clocks.get_mut(shard) {
                    let mine = max - self.cfg.allowed_lateness_ms;
                    *c = Some(c.map_or(mine, |c| c.min(mine)));
                }
            }
            for (d, clock) in self.dedups.iter_mut().zip(clocks) {
                if let (Some(d), Some(clock)) = (d, clock) {
                    d.expire(wm.min(clock));
                }
            }
        }
        wm
    }

    pub fn shop(&self, shop_id: &str) -> Option<ScopeView<'_>> {
        self.shops.get(shop_id).map(|s| self.view(&s.scope))
    }

    /// The category a shop was first seen in.
    pub fn shop_category(&self, shop_id: &str) -> Option<&str> {
        self.shops.get(shop_id).map(|s| self.category_name(s.category))
    }

    pub fn shops(&self) -> impl Iterator<Item = (&str, ScopeView<'_>)> {
        self.shops.iter().map(|(k, v)| (k, self.view(&v.scope)))
    }

    pub fn shop_count(&self) -> usize {
        self.shops.len()
    }

    pub fn category_name(&self, id: u32) -> &str {
        self.cats.names.get(id as usize).map_or("", |c| c)
    }

    /// The aggregate of every shop in `category`.
    pub fn category(&self, category: &str) -> Option<ScopeView<'_>> {
        self.cats.get(category).map(|i| self.view(&self.cats.scopes[i as usize]))
    }

    pub fn categories(&self) -> impl Iterator<Item = (&str, ScopeView<'_>)> {
        self.cats.names.iter().map(|c| &**c).zip(self.cats.scopes.iter().map(|s| self.view(s)))
    }

    /// The aggregate of every shop.
    pub fn platform(&self) -> Option<ScopeView<'_>> {
        self.has_platform.then(|| ScopeView::sum(&self.layout, &self.cats.scopes))
    }

    /// Ids forgotten by dedup because its capacity was reached.
    pub fn dedup_evicted(&self) -> u64 {
        self.dedups.iter().flatten().map(Dedup::evicted).sum()
    }

    /// Approximate heap bytes of all shop state (keys, maps and rings).
    pub fn shop_heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(shops::Key, ShopState)>() + 1;
        self.shops.capacity() * entry
            + self.shops.entries().map(|(k, s)| k.heap_bytes() + s.scope.heap_bytes()).sum::<usize>()
    }

    /// Folds one event read from `source` at processing time `proc_now`.
    pub fn fold(&mut self, source: SourceId, event: &Event, proc_now: Millis) -> Fold {
        let t = event.event_time;
        if self.watermark.max_seen().is_some_and(|max| t > max.saturating_add(self.cfg.max_future_ms)) {
            return Fold::Future;
        }
        let wm = self.watermark.current();
        self.watermark.observe(source, t, proc_now);
        if wm.is_some_and(|wm| t < wm - self.retention_ms) {
            return Fold::Late;
        }
        let shard = self.source_shards.get(source.0 as usize).copied().unwrap_or(0);
        if !self.dedup_mut(shard).first_time(&event.event_id, t) {
            return Fold::Duplicate;
        }
        let deltas = Deltas::of(event);
        if deltas.is_empty() {
            return Fold::Ignored;
        }
        let fine_bucket = self.set_buckets(t, &deltas, event);
        let layout = &self.layout;
        let cats = &mut self.cats;
        let (key, shop) = self.shops.get_or_insert_with(event.shop_id.as_str(), || {
            let category = cats.id(layout, &event.category, t);
            let scope = ScopeState::new(layout, t, false);
            ShopState { category, shard, scope, pending_until: None, pending_in: 0 }
        });
        // Nearly every event names its shop's category: one string compare
        // instead of a hash lookup. The event's own category is credited.
        let category = if *cats.names[shop.category as usize] == *event.category {
            shop.category
        } else {
            cats.id(layout, &event.category, t)
        };
        shop.scope.apply(layout, &deltas, &self.buckets, fine_bucket);
        let missing = self.tracked & !shop.pending_in;
        let mut newest = t;
        if missing != 0 {
            let before = shop.pending_in;
            let mut bits = missing;
            while bits != 0 {
                let w = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let floor = if self.floored & (1 << w) != 0 { self.visit_floors[w].as_ref() } else { None };
                if floor.is_none_or(|f| f.may_pass(&shop.scope)) {
                    self.pending[w].push(key.clone());
                    shop.pending_in |= 1 << w;
                }
            }
            if self.floored != 0 && before == 0 && shop.pending_in != 0 {
                // Events passed over under a visit floor (`pending.rs`) may be
                // newer than this one: the shop's newest bucket covers them.
                let fine = layout.fine;
                newest = newest.max(shop.scope.head(layout, fine).saturating_mul(layout.steps[fine]));
            }
        }
        if shop.pending_in != 0 {
            shop.pending_until = Some(shop.pending_until.map_or(newest, |p| p.max(newest)));
        }
        cats.scopes[category as usize].apply(layout, &deltas, &self.buckets, fine_bucket);
        self.has_platform = true;
        Fold::Folded
    }

    /// Sets `self.buckets` for an event at `t` with `deltas` and returns
    /// its finest activity bucket. Within one finest bucket of the last
    /// event every window's activity bucket is the same (when the steps
    /// nest, no window's bucket starts inside a finest one), so in-order
    /// events compute nothing; cohort buckets only when a counter needs them.
    #[inline]
    fn set_buckets(&mut self, t: Millis, deltas: &Deltas, event: &Event) -> i64 {
        let (lo, hi) = self.act_span;
        if !(t >= lo && t < hi) {
            for (cache, out) in self.bucket_cache.iter_mut().zip(self.buckets.iter_mut()) {
                out.0 = cache.bucket(t);
            }
            let step = self.layout.steps[self.layout.fine];
            let fine = self.buckets[self.layout.fine].0;
            self.act_span = if self.layout.nested { (fine * step, (fine * step).saturating_add(step)) } else { (0, 0) };
        }
        if deltas.has_cohort() {
            let t_cohort = counts::cohort_time(event);
            for (out, &step) in self.buckets.iter_mut().zip(&self.layout.steps) {
                out.1 = if t_cohort == t { out.0 } else { bucket_of(t_cohort, step) };
            }
        }
        self.buckets[self.layout.fine].0
    }

    /// Drops shops whose windows are all empty as of the watermark; returns how many.
    pub fn evict_idle(&mut self) -> usize {
        let Some(wm) = self.watermark.current() else { return 0 };
        let layout = &self.layout;
        let before = self.shops.len();
        self.shops.retain(|_, shop| shop.pending_until.is_some() || !shop.scope.advance_and_check_empty(layout, wm));
        before - self.shops.len()
    }
}
