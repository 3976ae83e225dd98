//! The state of one scope (a shop, a category, the platform): one ring per
//! window, plus an accumulator of the current finest bucket.
//! A new shop starts as one list of cells for all windows instead (`cold.rs`)
//! and gets its rings once that list is long.
//!
//! Why the accumulator: a busy scope sees many events per minute, and each
//! would otherwise update every window's ring (4 ring updates per counter).
//! While every window's step is a multiple of the finest step, the counts of
//! one finest bucket can be kept in a flat array and added to all rings at
//! once when the next bucket starts (or before any read that needs them).
//! Cohort-basis and late counters still go straight to the rings. Reads add
//! the accumulator when its bucket lies in the window read. A shop starts
//! one as soon as it has rings (past `COLD_LIST_CELLS` cells, a shop of some
//! hundred events an hour): started only once its finest ring was hot (48
//! cells), the events of shops of 65-1,000 events took a third more cycles
//! each, a quarter of the Zipf fold over 1M shops (BENCHMARKS.md, session 18).

use super::cold::{Cold, COLD_LIST_CELLS};
use super::counts::{Counts, Deltas, NF};
use super::window::{bucket_of, Ring, RingSnapshot};
use crate::event::Millis;

/// The engine's windows as the scopes need them.
#[derive(Clone, Debug)]
pub struct Layout {
    pub steps: Vec<i64>,
    pub lens: Vec<i64>,
    pub slack: Vec<usize>,
    /// Index of the window with the smallest step.
    pub fine: usize,
    /// Every step is a multiple of the finest one (accumulators and cold lists allowed).
    pub nested: bool,
    /// Each window's step over the finest step (1 for all when not `nested`).
    pub ratios: Vec<i64>,
}

impl Layout {
    /// The layout of windows `steps` ms apart, `lens` buckets long, readable
    /// `slack` buckets behind their heads.
    pub fn new(steps: Vec<i64>, lens: Vec<i64>, slack: Vec<usize>) -> Layout {
        let fine = (0..steps.len()).min_by_key(|&w| steps[w]).unwrap_or(0);
        let nested = steps.iter().all(|s| s % steps[fine] == 0);
        let ratios = steps.iter().map(|s| if nested { s / steps[fine] } else { 1 }).collect();
        Layout { steps, lens, slack, fine, nested, ratios }
    }
}

#[derive(Clone, Debug)]
struct Acc {
    /// Finest-step bucket index being accumulated.
    bucket: i64,
    counts: Counts,
    touched: [u64; NF.div_ceil(64)],
}

impl Acc {
    fn is_empty(&self) -> bool {
        self.touched.iter().all(|w| *w == 0)
    }
}

/// A scope is either one cold list for all windows or one ring per window
/// (plus an accumulator). One or the other, never both: as an
/// enum the state is 72 bytes, which keeps a shop's map entry at two cache
/// lines (`shops.rs`).
#[derive(Clone, Debug)]
pub struct ScopeState(Body);

#[derive(Clone, Debug)]
enum Body {
    Cold(Cold),
    Warm(Warm),
}

/// A scope with one ring per window.
#[derive(Clone, Debug)]
struct Warm {
    rings: Box<[Ring]>,
    acc: Option<Box<Acc>>,
}

impl ScopeState {
    /// A scope whose first event is at `t`; `busy` scopes (categories, the
    /// platform) accumulate from the start, shops start as one cold list and
    /// accumulate once they have rings.
    pub fn new(layout: &Layout, t: Millis, busy: bool) -> ScopeState {
        let fine_bucket = bucket_of(t, layout.steps[layout.fine]);
        if !busy && layout.nested {
            return ScopeState(Body::Cold(Cold::new(fine_bucket)));
        }
        let rings = (0..layout.steps.len())
            .map(|w| Ring::new(layout.lens[w] as usize, layout.slack[w], bucket_of(t, layout.steps[w])))
            .collect();
        let mut warm = Warm { rings, acc: None };
        if busy && layout.nested {
            warm.start_acc(fine_bucket);
        }
        ScopeState(Body::Warm(warm))
    }

    /// A cold scope holding nothing (on the heap or off it).
    pub(super) fn empty() -> ScopeState {
        ScopeState(Body::Cold(Cold::new(0)))
    }

    /// The scope's rings, given to it first if it is cold.
    fn warm(&mut self, layout: &Layout) -> &mut Warm {
        if let Body::Cold(cold) = &self.0 {
            self.0 = Body::Warm(Warm { rings: cold.to_rings(layout), acc: None });
        }
        match &mut self.0 {
            Body::Warm(w) => w,
            Body::Cold(_) => unreachable!("warmed above"),
        }
    }

    /// Adds `deltas`; `buckets[w]` is the (activity, cohort) bucket of window
    /// `w` (the cohort one is read only when `deltas` has cohort counters),
    /// `fine_bucket` the activity bucket at the finest step.
    #[inline]
    pub fn apply(&mut self, layout: &Layout, deltas: &Deltas, buckets: &[(i64, i64)], fine_bucket: i64) {
        match &mut self.0 {
            Body::Cold(cold) => {
                for (f, v) in deltas.activity() {
                    cold.add(fine_bucket, f, v);
                }
                if deltas.has_cohort() {
                    let cohort_bucket = buckets[layout.fine].1;
                    for &f in deltas.cohort_fields() {
                        cold.add(cohort_bucket, f, 1);
                    }
                }
                if cold.len() > COLD_LIST_CELLS {
                    self.warm(layout);
                }
            }
            Body::Warm(warm) => warm.apply(layout, deltas, buckets, fine_bucket),
        }
    }

    /// Counts of window `w` over the buckets ending at `end_bucket` (inclusive).
    pub fn read(&self, layout: &Layout, w: usize, end_bucket: i64) -> Counts {
        let mut c = Counts::default();
        self.read_to(layout, w, end_bucket, &mut c);
        c
    }

    /// Adds window `w`'s counts into `out`.
    pub fn read_into(&self, layout: &Layout, w: usize, end_bucket: i64, out: &mut Counts) {
        match &self.0 {
            Body::Cold(cold) => cold.read_into(layout, w, end_bucket, out),
            Body::Warm(warm) => {
                warm.rings[w].read_into(end_bucket, out);
                warm.acc_into(layout, w, end_bucket, out);
            }
        }
    }

    /// Writes window `w`'s counts into `out` (whatever it held before): a
    /// busy ring read at its head, or one bucket before, is then one copy.
    #[inline]
    pub fn read_to(&self, layout: &Layout, w: usize, end_bucket: i64, out: &mut Counts) {
        match &self.0 {
            Body::Cold(cold) => {
                out.0 = [0; NF];
                cold.read_into(layout, w, end_bucket, out);
            }
            Body::Warm(warm) => {
                warm.rings[w].read_to(end_bucket, out);
                warm.acc_into(layout, w, end_bucket, out);
            }
        }
    }

    /// For a scope still one cold list: the sums of the counters in `num`
    /// and in `den` over the whole list, an upper bound of any window's.
    /// `None` once it has rings.
    #[inline]
    pub fn list_sums(&self, num: u128, den: u128) -> Option<(u64, u64)> {
        match &self.0 {
            Body::Cold(cold) => Some(cold.sums(num, den)),
            Body::Warm(_) => None,
        }
    }

    /// Newest bucket of window `w` that holds data.
    pub fn head(&self, layout: &Layout, w: usize) -> i64 {
        let warm = match &self.0 {
            Body::Cold(cold) => return cold.head(layout, w),
            Body::Warm(warm) => warm,
        };
        let ring = warm.rings[w].head();
        match warm.acc.as_deref() {
            Some(acc) if !acc.is_empty() => {
                ring.max(bucket_of(acc.bucket * layout.steps[layout.fine], layout.steps[w]))
            }
            _ => ring,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Body::Cold(cold) => cold.heap_bytes(),
            Body::Warm(warm) => {
                warm.rings.len() * std::mem::size_of::<Ring>()
                    + warm.rings.iter().map(Ring::heap_bytes).sum::<usize>()
                    + warm.acc.as_ref().map_or(0, |_| std::mem::size_of::<Acc>())
            }
        }
    }

    /// Flushes, advances every ring to the watermark and reports whether all
    /// are empty. A scope that went quiet gives its accumulator back.
    pub fn advance_and_check_empty(&mut self, layout: &Layout, wm: Millis) -> bool {
        let warm = match &mut self.0 {
            Body::Cold(cold) => return cold.advance_and_check_empty(layout, wm),
            Body::Warm(warm) => warm,
        };
        warm.flush(layout);
        warm.acc = None;
        warm.rings.iter_mut().zip(&layout.steps).all(|(ring, &step)| {
            ring.advance_to(bucket_of(wm, step));
            ring.is_empty()
        })
    }
}

impl Warm {
    fn start_acc(&mut self, bucket: i64) {
        self.acc = Some(Box::new(Acc { bucket, counts: Counts::default(), touched: [0; NF.div_ceil(64)] }));
    }

    #[inline]
    fn apply(&mut self, layout: &Layout, deltas: &Deltas, buckets: &[(i64, i64)], fine_bucket: i64) {
        if let Some(acc) = self.acc.as_deref_mut() {
            if fine_bucket > acc.bucket {
                self.flush(layout);
            }
        }
        match self.acc.as_deref_mut() {
            Some(acc) if acc.bucket == fine_bucket || acc.is_empty() => {
                acc.bucket = fine_bucket;
                for (f, v) in deltas.activity() {
                    let f = f as usize;
                    acc.counts.add_at(f, v);
                    acc.touched[f / 64] |= 1 << (f % 64);
                }
            }
            _ => {
                for (f, v) in deltas.activity() {
                    Self::add_to_rings(&mut self.rings, f, v, buckets, false);
                }
                // No accumulator yet (the rings are new) or none since a
                // read for eviction dropped it: start one.
                if self.acc.is_none() && layout.nested {
                    self.start_acc(fine_bucket);
                }
            }
        }
        for &f in deltas.cohort_fields() {
            Self::add_to_rings(&mut self.rings, f, 1, buckets, true);
        }
    }

    #[inline]
    fn add_to_rings(rings: &mut [Ring], field: u8, value: u64, buckets: &[(i64, i64)], cohort: bool) {
        for (ring, &(b_act, b_cohort)) in rings.iter_mut().zip(buckets) {
            // A window that has dropped this bucket does not count it; longer ones still do.
            let _ = ring.add(if cohort { b_cohort } else { b_act }, field, value);
        }
    }

    /// Moves the accumulated bucket into every ring.
    fn flush(&mut self, layout: &Layout) {
        let Some(acc) = self.acc.as_deref_mut() else { return };
        let start = acc.bucket * layout.steps[layout.fine];
        for (word, bits) in acc.touched.iter_mut().enumerate() {
            while *bits != 0 {
                let f = word * 64 + bits.trailing_zeros() as usize;
                *bits &= *bits - 1;
                let v = std::mem::take(&mut acc.counts.0[f]);
                for (w, ring) in self.rings.iter_mut().enumerate() {
                    let _ = ring.add(bucket_of(start, layout.steps[w]), f as u8, v);
                }
            }
        }
    }

    /// Adds the accumulated bucket when it lies in window `w` ending at `end_bucket`.
    #[inline]
    fn acc_into(&self, layout: &Layout, w: usize, end_bucket: i64, out: &mut Counts) {
        let Some(acc) = self.acc.as_deref() else { return };
        // The accumulated bucket starts at `t`; it is in the window when `t`
        // is in the window's time span (no division: this runs per read).
        let t = acc.bucket * layout.steps[layout.fine];
        let step = layout.steps[w];
        if t < (end_bucket + 1) * step && t >= (end_bucket - layout.lens[w] + 1) * step && !acc.is_empty() {
            out.add(&acc.counts);
        }
    }
}

/// A scope as written to a checkpoint: one ring per window and the
/// accumulated finest bucket (bucket, (counter, value) pairs), if any.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScopeSnapshot {
    pub rings: Vec<RingSnapshot>,
    pub acc: Option<(i64, Vec<(u8, u64)>)>,
}

impl ScopeState {
    pub fn snapshot(&self, layout: &Layout) -> ScopeSnapshot {
        let warm = match &self.0 {
            Body::Cold(cold) => {
                // Written as the rings it stands for: the format does not change.
                let rings = (0..layout.steps.len())
                    .map(|w| RingSnapshot { head: cold.head(layout, w), cells: cold.ring_cells(layout, w) })
                    .collect();
                return ScopeSnapshot { rings, acc: None };
            }
            Body::Warm(warm) => warm,
        };
        let acc = warm.acc.as_deref().filter(|a| !a.is_empty()).map(|a| {
            let cells = a.counts.0.iter().enumerate().filter(|(_, v)| **v != 0).map(|(f, v)| (f as u8, *v)).collect();
            (a.bucket, cells)
        });
        ScopeSnapshot { rings: warm.rings.iter().map(Ring::snapshot).collect(), acc }
    }

    /// The scope `s` describes under `layout`; `None` when it does not fit
    /// (another number of windows, damaged rings).
    pub fn restore(layout: &Layout, s: &ScopeSnapshot) -> Option<ScopeState> {
        if s.rings.len() != layout.steps.len() {
            return None;
        }
        let rings = s
            .rings
            .iter()
            .enumerate()
            .map(|(w, r)| Ring::restore(layout.lens[w] as usize, layout.slack[w], r))
            .collect::<Option<Box<[Ring]>>>()?;
        let mut warm = Warm { rings, acc: None };
        if let Some((bucket, cells)) = &s.acc {
            if !layout.nested {
                return None;
            }
            warm.start_acc(*bucket);
            let acc = warm.acc.as_deref_mut()?;
            for &(f, v) in cells {
                let f = f as usize;
                if f >= NF {
                    return None;
                }
                acc.counts.add_at(f, v);
                acc.touched[f / 64] |= 1 << (f % 64);
            }
        }
        Some(ScopeState(Body::Warm(warm)))
    }

    /// Adds everything this scope holds into `other` (an aggregate scope of
    /// the same layout), bucket by bucket.
    pub fn add_into(&self, layout: &Layout, other: &mut ScopeState) {
        // `other`'s own accumulator is moved into its rings first, so adding
        // straight to the rings cannot count a bucket twice.
        let theirs = other.warm(layout);
        theirs.flush(layout);
        let mine = match &self.0 {
            Body::Cold(cold) => return cold.add_into(layout, &mut theirs.rings),
            Body::Warm(warm) => warm,
        };
        for (mine, theirs) in mine.rings.iter().zip(theirs.rings.iter_mut()) {
            mine.add_into(theirs);
        }
        if let Some(acc) = mine.acc.as_deref().filter(|a| !a.is_empty()) {
            let start = acc.bucket * layout.steps[layout.fine];
            for (f, &v) in acc.counts.0.iter().enumerate().filter(|(_, v)| **v != 0) {
                for (w, ring) in theirs.rings.iter_mut().enumerate() {
                    let _ = ring.add(bucket_of(start, layout.steps[w]), f as u8, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventBody, Money, OrderStep};

    /// A paid order of shop `s` at `t`.
    fn paid(t: Millis) -> Event {
        Event {
            event_id: format!("e{t}"),
            shop_id: "s".into(),
            order_id: format!("o{t}"),
            sub_order_id: None,
            event_time: t,
            category: "toys".into(),
            body: EventBody::Order {
                step: OrderStep::Paid,
                cancelled_by: None,
                money: Money { amount_minor: 990, currency: *b"CNY" },
            },
        }
    }

    fn apply(layout: &Layout, scope: &mut ScopeState, t: Millis) {
        let buckets: Vec<(i64, i64)> = layout.steps.iter().map(|&s| (bucket_of(t, s), bucket_of(t, s))).collect();
        scope.apply(layout, &Deltas::of(&paid(t)), &buckets, buckets[layout.fine].0);
    }

    /// A shop of one order a minute gets rings after an hour or so, when
    /// its finest ring (5 minutes) holds a few cells, far from hot: it
    /// accumulates from then on all the same (see the module's header).
    #[test]
    fn a_shop_accumulates_as_soon_as_it_has_rings() {
        let (steps, lens) = (vec![60_000, 300_000, 3_600_000, 86_400_000], vec![5, 12, 24, 30]);
        let layout = Layout::new(steps, lens, vec![2; 4]);
        let mut scope = ScopeState::new(&layout, 0, false);
        let mut t = 0;
        while matches!(scope.0, Body::Cold(_)) {
            apply(&layout, &mut scope, t);
            t += 60_000;
        }
        let Body::Warm(warm) = &scope.0 else { unreachable!("left the loop warm") };
        assert!(!warm.rings[layout.fine].is_hot(), "the finest ring is not hot: {:?}", warm.rings[layout.fine]);
        apply(&layout, &mut scope, t);
        let Body::Warm(warm) = &scope.0 else { unreachable!("a warm scope stays warm") };
        assert!(warm.acc.is_some(), "a shop with rings accumulates its finest bucket");
        // What it accumulated is read back: the window of the last 5
        // minutes holds the last 5 orders.
        let five = scope.read(&layout, 0, bucket_of(t, 60_000));
        let one = {
            let mut s = ScopeState::new(&layout, t, false);
            apply(&layout, &mut s, t);
            s.read(&layout, 0, bucket_of(t, 60_000))
        };
        let mut want = Counts::default();
        for _ in 0..5 {
            want.add(&one);
        }
        assert_eq!(five, want);
    }
}
