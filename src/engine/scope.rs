//! The state of one scope (a shop, a category, the platform): one ring per
//! window, plus, for busy scopes, an accumulator of the current finest bucket.
//! A new shop starts as one list of cells for all windows instead (`cold.rs`)
//! and gets its rings once that list is long.
//!
//! Why the accumulator: a busy scope sees many events per minute, and each
//! would otherwise update every window's ring (4 ring updates per counter).
//! While every window's step is a multiple of the finest step, the counts of
//! one finest bucket can be kept in a flat array and added to all rings at
//! once when the next bucket starts (or before any read that needs them).
//! Cohort-basis and late counters still go straight to the rings. Reads add
//! the accumulator when its bucket lies in the window read.

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

#[derive(Clone, Debug)]
pub struct ScopeState {
    /// Empty while `cold` holds the scope.
    rings: Box<[Ring]>,
    acc: Option<Box<Acc>>,
    cold: Option<Cold>,
}

impl ScopeState {
    /// A scope whose first event is at `t`; `busy` scopes (categories, the
    /// platform) accumulate from the start, shops start as one cold list and
    /// accumulate once their finest ring is busy.
    pub fn new(layout: &Layout, t: Millis, busy: bool) -> ScopeState {
        let fine_bucket = bucket_of(t, layout.steps[layout.fine]);
        if !busy && layout.nested {
            return ScopeState { rings: Box::new([]), acc: None, cold: Some(Cold::new(fine_bucket)) };
        }
        let rings = (0..layout.steps.len())
            .map(|w| Ring::new(layout.lens[w] as usize, layout.slack[w], bucket_of(t, layout.steps[w])))
            .collect();
        let mut s = ScopeState { rings, acc: None, cold: None };
        if busy && layout.nested {
            s.start_acc(fine_bucket);
        }
        s
    }

    /// Gives a cold scope its rings.
    fn warm(&mut self, layout: &Layout) {
        if let Some(cold) = self.cold.take() {
            self.rings = cold.to_rings(layout);
        }
    }

    fn start_acc(&mut self, bucket: i64) {
        self.acc = Some(Box::new(Acc { bucket, counts: Counts::default(), touched: [0; NF.div_ceil(64)] }));
    }

    /// Adds `deltas`; `buckets[w]` is the (activity, cohort) bucket of window
    /// `w` (the cohort one is read only when `deltas` has cohort counters),
    /// `fine_bucket` the activity bucket at the finest step.
    #[inline]
    pub fn apply(&mut self, layout: &Layout, deltas: &Deltas, buckets: &[(i64, i64)], fine_bucket: i64) {
        if let Some(cold) = self.cold.as_mut() {
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
            return;
        }
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
                if self.acc.is_none() && layout.nested && self.rings[layout.fine].is_hot() {
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

    /// Counts of window `w` over the buckets ending at `end_bucket` (inclusive).
    pub fn read(&self, layout: &Layout, w: usize, end_bucket: i64) -> Counts {
        let mut c = Counts::default();
        self.read_to(layout, w, end_bucket, &mut c);
        c
    }

    /// Adds window `w`'s counts into `out`.
    pub fn read_into(&self, layout: &Layout, w: usize, end_bucket: i64, out: &mut Counts) {
        if let Some(cold) = &self.cold {
            return cold.read_into(layout, w, end_bucket, out);
        }
        self.rings[w].read_into(end_bucket, out);
        self.acc_into(layout, w, end_bucket, out);
    }

    /// Writes window `w`'s counts into `out` (whatever it held before): a
    /// busy ring read at its head, or one bucket before, is then one copy.
    #[inline]
    pub fn read_to(&self, layout: &Layout, w: usize, end_bucket: i64, out: &mut Counts) {
        if let Some(cold) = &self.cold {
            out.0 = [0; NF];
            return cold.read_into(layout, w, end_bucket, out);
        }
        self.rings[w].read_to(end_bucket, out);
        self.acc_into(layout, w, end_bucket, out);
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

    /// Newest bucket of window `w` that holds data.
    pub fn head(&self, layout: &Layout, w: usize) -> i64 {
        if let Some(cold) = &self.cold {
            return cold.head(layout, w);
        }
        let ring = self.rings[w].head();
        match self.acc.as_deref() {
            Some(acc) if !acc.is_empty() => {
                ring.max(bucket_of(acc.bucket * layout.steps[layout.fine], layout.steps[w]))
            }
            _ => ring,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.rings.len() * std::mem::size_of::<Ring>()
            + self.rings.iter().map(Ring::heap_bytes).sum::<usize>()
            + self.acc.as_ref().map_or(0, |_| std::mem::size_of::<Acc>())
            + self.cold.as_ref().map_or(0, Cold::heap_bytes)
    }

    /// Flushes, advances every ring to the watermark and reports whether all
    /// are empty. A scope that went quiet gives its accumulator back.
    pub fn advance_and_check_empty(&mut self, layout: &Layout, wm: Millis) -> bool {
        if let Some(cold) = self.cold.as_mut() {
            return cold.advance_and_check_empty(layout, wm);
        }
        self.flush(layout);
        self.acc = None;
        self.rings.iter_mut().zip(&layout.steps).all(|(ring, &step)| {
            ring.advance_to(bucket_of(wm, step));
            ring.is_empty()
        })
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
        if let Some(cold) = &self.cold {
            // Written as the rings it stands for: the format does not change.
            let rings = (0..layout.steps.len())
                .map(|w| RingSnapshot { head: cold.head(layout, w), cells: cold.ring_cells(layout, w) })
                .collect();
            return ScopeSnapshot { rings, acc: None };
        }
        let acc = self.acc.as_deref().filter(|a| !a.is_empty()).map(|a| {
            let cells = a.counts.0.iter().enumerate().filter(|(_, v)| **v != 0).map(|(f, v)| (f as u8, *v)).collect();
            (a.bucket, cells)
        });
        ScopeSnapshot { rings: self.rings.iter().map(Ring::snapshot).collect(), acc }
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
        let mut scope = ScopeState { rings, acc: None, cold: None };
        if let Some((bucket, cells)) = &s.acc {
            if !layout.nested {
                return None;
            }
            scope.start_acc(*bucket);
            let acc = scope.acc.as_deref_mut()?;
            for &(f, v) in cells {
                let f = f as usize;
                if f >= NF {
                    return None;
                }
                acc.counts.add_at(f, v);
                acc.touched[f / 64] |= 1 << (f % 64);
            }
        }
        Some(scope)
    }

    /// Adds everything this scope holds into `other` (an aggregate scope of
    /// the same layout), bucket by bucket.
    pub fn add_into(&self, layout: &Layout, other: &mut ScopeState) {
        // `other`'s own accumulator is moved into its rings first, so adding
        // straight to the rings cannot count a bucket twice.
        other.warm(layout);
        other.flush(layout);
        if let Some(cold) = &self.cold {
            cold.add_into(layout, &mut other.rings);
        }
        for (mine, theirs) in self.rings.iter().zip(other.rings.iter_mut()) {
            mine.add_into(theirs);
        }
        if let Some(acc) = self.acc.as_deref().filter(|a| !a.is_empty()) {
            let start = acc.bucket * layout.steps[layout.fine];
            for (f, &v) in acc.counts.0.iter().enumerate().filter(|(_, v)| **v != 0) {
                for (w, ring) in other.rings.iter_mut().enumerate() {
                    let _ = ring.add(bucket_of(start, layout.steps[w]), f as u8, v);
                }
            }
        }
    }
}
