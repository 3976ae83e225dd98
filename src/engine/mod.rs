//! The window engine: folds events into per-shop sliding windows in event
//! time. Pure: no IO, no async, no clock of its own (callers pass processing
//! time in), so it is easy to test exhaustively and to bench.
//!
//! * [`window`]: rings of time buckets with running totals.
//! * [`watermark`]: per-partition event-time clocks and the combined watermark.
//!
//! Each shop holds one ring per configured window. Events are credited to the
//! bucket of their event time (activity basis). An event older than the
//! watermark minus the longest window can no longer change any window that
//! will be read and is rejected as late, with a reason, for the dead-letter
//! path. Shops whose rings are all empty are dropped on [`Engine::evict_idle`].

pub mod watermark;
pub mod window;

use std::collections::HashMap;

use crate::event::{Event, EventBody, Millis, OrderStep, RefundStep};
pub use watermark::{SourceId, WatermarkTracker};
use window::{bucket_of, Add, Ring};

/// What is counted in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub orders_paid: u32,
    pub refunds_requested: u32,
}

impl Counts {
    #[inline]
    pub fn add(&mut self, o: &Counts) {
        self.orders_paid = self.orders_paid.wrapping_add(o.orders_paid);
        self.refunds_requested = self.refunds_requested.wrapping_add(o.refunds_requested);
    }

    #[inline]
    pub fn sub(&mut self, o: &Counts) {
        self.orders_paid = self.orders_paid.wrapping_sub(o.orders_paid);
        self.refunds_requested = self.refunds_requested.wrapping_sub(o.refunds_requested);
    }

    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    /// What `event` contributes, or `None` when it counts towards nothing.
    pub fn of(event: &Event) -> Option<Counts> {
        match event.body {
            EventBody::Order { step: OrderStep::Paid, .. } => Some(Counts { orders_paid: 1, ..Counts::default() }),
            EventBody::Refund { step: RefundStep::Requested, .. } => {
                Some(Counts { refunds_requested: 1, ..Counts::default() })
            }
            _ => None,
        }
    }
}

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
}

/// Per-shop state.
#[derive(Clone, Debug)]
pub struct ShopState {
    pub category: Box<str>,
    rings: Box<[Ring]>,
    /// Newest event time folded since the shop's rules last saw all of it.
    pending_until: Option<Millis>,
}

impl ShopState {
    /// Counts of window `w` over the buckets ending at `end_bucket` (inclusive).
    pub fn read(&self, w: usize, end_bucket: i64) -> Counts {
        self.rings[w].read(end_bucket)
    }
}

/// The result of folding one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Counted in the shop's windows.
    Folded,
    /// Valid, but no configured metric counts it.
    Ignored,
    /// Older than the watermark minus the longest window.
    Late,
}

impl Fold {
    pub fn label(self) -> &'static str {
        match self {
            Fold::Folded => "folded",
            Fold::Ignored => "ignored",
            Fold::Late => "late",
        }
    }
}

pub struct Engine {
    cfg: EngineConfig,
    slack: Vec<usize>,
    retention_ms: i64,
    shops: HashMap<Box<str>, ShopState>,
    pending: Vec<Box<str>>,
    watermark: WatermarkTracker,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        debug_assert!(cfg.windows.iter().all(|w| w.step_ms > 0 && w.size_ms % w.step_ms == 0));
        let slack = cfg.windows.iter().map(|w| (cfg.allowed_lateness_ms.max(0) / w.step_ms) as usize + 2).collect();
        let retention_ms = cfg.windows.iter().map(|w| w.size_ms).max().unwrap_or(0);
        let watermark = WatermarkTracker::new(cfg.allowed_lateness_ms, cfg.idle_timeout_ms);
        Engine { cfg, slack, retention_ms, shops: HashMap::new(), pending: Vec::new(), watermark }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn watermark(&self) -> &WatermarkTracker {
        &self.watermark
    }

    pub fn watermark_mut(&mut self) -> &mut WatermarkTracker {
        &mut self.watermark
    }

    pub fn shop(&self, shop_id: &str) -> Option<&ShopState> {
        self.shops.get(shop_id)
    }

    pub fn shop_count(&self) -> usize {
        self.shops.len()
    }

    /// Folds one event read from `source` at processing time `proc_now`.
    pub fn fold(&mut self, source: SourceId, event: &Event, proc_now: Millis) -> Fold {
        let wm = self.watermark.current();
        self.watermark.observe(source, event.event_time, proc_now);
        if let Some(wm) = wm {
            if event.event_time < wm - self.retention_ms {
                return Fold::Late;
            }
        }
        let Some(counts) = Counts::of(event) else {
            return Fold::Ignored;
        };
        let shop = match self.shops.get_mut(event.shop_id.as_str()) {
            Some(s) => s,
            None => {
                let rings = self
                    .cfg
                    .windows
                    .iter()
                    .zip(&self.slack)
                    .map(|(w, &slack)| Ring::new(w.buckets(), slack, bucket_of(event.event_time, w.step_ms)))
                    .collect();
                let state = ShopState { category: event.category.as_str().into(), rings, pending_until: None };
                self.shops.entry(event.shop_id.as_str().into()).or_insert(state)
            }
        };
        for (ring, w) in shop.rings.iter_mut().zip(&self.cfg.windows) {
            // A short window may already have dropped this bucket; longer ones still count it.
            let _: Add = ring.add(bucket_of(event.event_time, w.step_ms), &counts);
        }
        if shop.pending_until.is_none() {
            self.pending.push(event.shop_id.as_str().into());
        }
        shop.pending_until = Some(shop.pending_until.map_or(event.event_time, |t| t.max(event.event_time)));
        Fold::Folded
    }

    /// Shops changed since their rules last saw all of their data. A shop stays
    /// pending until `keep(shop)` returns false for it.
    pub fn drain_pending(&mut self, mut visit: impl FnMut(&str, &ShopState) -> bool) {
        let mut i = 0;
        while i < self.pending.len() {
            let key = &self.pending[i];
            let keep = match self.shops.get_mut(key) {
                Some(shop) => {
                    let keep = visit(key, shop);
                    if !keep {
                        shop.pending_until = None;
                    }
                    keep
                }
                None => false,
            };
            if keep {
                i += 1;
            } else {
                self.pending.swap_remove(i);
            }
        }
    }

    /// Newest event time a pending shop holds that its rules have not seen.
    pub fn pending_until(shop: &ShopState) -> Option<Millis> {
        shop.pending_until
    }

    /// Drops shops whose windows are all empty as of the watermark.
    pub fn evict_idle(&mut self) -> usize {
        let Some(wm) = self.watermark.current() else {
            return 0;
        };
        let windows = &self.cfg.windows;
        let before = self.shops.len();
        self.shops.retain(|_, shop| {
            shop.pending_until.is_some()
                || shop.rings.iter_mut().zip(windows).any(|(ring, w)| {
                    ring.advance_to(bucket_of(wm, w.step_ms));
                    !ring.is_empty()
                })
        });
        before - self.shops.len()
    }
}
