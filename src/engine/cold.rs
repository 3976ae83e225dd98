//! A small scope's windows as one list of cells at the finest step, instead
//! of one ring per window.
//!
//! Most of a million shops see a handful of events. With a ring per window,
//! each of those events was a cell inserted in four rings (four searches, four
//! vectors to grow, eight allocations for a new shop), and the same counter
//! was stored four times. While every window's step is a multiple of the
//! finest one (`Layout::nested`), a cell of the finest bucket says which
//! bucket of every window it belongs to, so one list serves them all: an
//! event is one cell, and a read of window `w` sums the cells whose finest
//! bucket lies in the window's span.
//!
//! Reads equal a ring's exactly, at every end: a ring drops a cell once its
//! bucket is `cap` buckets behind the head (`cap = len + slack`), and a read
//! here skips the same cells. A cell is dropped from the list once every
//! window would have dropped it. Past [`COLD_LIST_CELLS`] cells the scope
//! turns into rings (`ScopeState`), which keep running totals once busy.

use smallvec::SmallVec;

use super::counts::Counts;
use super::scope::Layout;
use super::window::{bucket_of, Cell, Ring};

/// Cells above which a scope's list becomes one ring per window. Each
/// event of a scope with rings is an add to every ring (four searches in
/// four vectors); here it is one add at the tail. But a read scans the list
/// back to the window's start: with lists of up to 128 cells, reading all
/// four windows of a shop of 100 events took 187 ns (`read_all_windows`;
/// about 55 ns with rings). At 64 the longest list reads in about 87 ns,
/// and the Zipf fold over 1M shops ran 6.7% faster than at 32 (128: 12.6%
/// faster); figures in BENCHMARKS.md, session 16.
pub const COLD_LIST_CELLS: usize = 64;

/// Cells a list holds in place, inside the shop map's entry, before it
/// spills to the heap. Most of a million shops hold an order's few
/// counters (created, paid, dispatched: three cells in one bucket); in
/// place, a new shop allocates nothing and an event of a small shop touches
/// no memory outside its map entry (a heap list cost a malloc per new shop
/// and a cache miss per event).
const INLINE_CELLS: usize = 3;

#[derive(Clone, Debug)]
pub struct Cold {
    /// Newest finest-step bucket added or advanced to.
    head: i64,
    /// Sorted by bucket (finest step).
    cells: SmallVec<[Cell; INLINE_CELLS]>,
}

impl Cold {
    /// An empty list whose newest bucket is `head` (finest step).
    pub fn new(head: i64) -> Cold {
        Cold { head, cells: SmallVec::new() }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// The sums of the counters in `num` and in `den` (bit `f`: field `f`)
    /// over every cell of the list: at least what any window reads of them.
    pub fn sums(&self, num: u128, den: u128) -> (u64, u64) {
        self.cells.iter().fold((0, 0), |(n, d), c| {
            let bit = 1u128 << c.field;
            (n + if num & bit != 0 { c.value } else { 0 }, d + if den & bit != 0 { c.value } else { 0 })
        })
    }

    pub fn heap_bytes(&self) -> usize {
        if self.cells.spilled() {
            self.cells.capacity() * std::mem::size_of::<Cell>()
        } else {
            0
        }
    }

    /// Adds `value` to counter `field` in finest bucket `bucket`.
    #[inline]
    pub fn add(&mut self, bucket: i64, field: u8, value: u64) {
        self.head = self.head.max(bucket);
        let b = bucket as u32;
        // In-order events land at the tail.
        let end = match self.cells.last() {
            Some(c) if c.bucket <= b => self.cells.len(),
            _ => self.cells.partition_point(|c| c.bucket <= b),
        };
        let mut i = end;
        while i > 0 && self.cells[i - 1].bucket == b {
            i -= 1;
            if self.cells[i].field == field {
                self.cells[i].value += value;
                return;
            }
        }
        self.cells.insert(end, Cell { value, bucket: b, field });
    }

    /// Window `w`'s newest bucket.
    #[inline]
    pub fn head(&self, layout: &Layout, w: usize) -> i64 {
        self.head.div_euclid(layout.ratios[w])
    }

    /// The oldest bucket of window `w` a ring would still hold.
    #[inline]
    fn oldest(&self, layout: &Layout, w: usize) -> i64 {
        self.head(layout, w) - layout.lens[w] - layout.slack[w] as i64 + 1
    }

    /// Adds window `w`'s counts over the buckets ending at `end` (inclusive) into `out`.
    #[inline]
    pub fn read_into(&self, layout: &Layout, w: usize, end: i64, out: &mut Counts) {
        let r = layout.ratios[w];
        let first = (end - layout.lens[w] + 1).max(self.oldest(layout, w));
        // The window's span in finest buckets: [lo, hi).
        let (lo, hi) = (first * r, (end + 1) * r);
        // Sorted by bucket: the cells newer than the window's end are at
        // the tail (usually none), then the window's run back to `lo`.
        let mut cells = self.cells.iter().rev().skip_while(|c| c.bucket as i64 >= hi);
        for c in cells.by_ref() {
            if (c.bucket as i64) < lo {
                break;
            }
            out.add_at(c.field as usize, c.value);
        }
    }

    /// Window `w`'s cells as a ring of it would hold them: (bucket, counter,
    /// value), sorted by bucket, one per counter and bucket.
    pub fn ring_cells(&self, layout: &Layout, w: usize) -> Vec<(u32, u8, u64)> {
        let (r, oldest) = (layout.ratios[w], self.oldest(layout, w));
        let mut out: Vec<(u32, u8, u64)> = Vec::with_capacity(self.cells.len());
        let mut run = 0;
        for c in &self.cells {
            let b = (c.bucket as i64).div_euclid(r);
            if b < oldest {
                continue;
            }
            let b = b as u32;
            if out.last().is_none_or(|l| l.0 != b) {
                run = out.len();
            }
            match out[run..].iter_mut().find(|l| l.1 == c.field) {
                Some(l) => l.2 += c.value,
                None => out.push((b, c.field, c.value)),
            }
        }
        out
    }

    /// One ring per window, holding what this list holds: each built from
    /// its cells at once (already sorted, one per bucket and counter),
    /// rather than by one add per cell.
    pub fn to_rings(&self, layout: &Layout) -> Box<[Ring]> {
        (0..layout.steps.len())
            .map(|w| {
                let cells = self.ring_cells(layout, w).into_iter();
                let cells = cells.map(|(bucket, field, value)| Cell { value, bucket, field }).collect();
                Ring::from_cells(layout.lens[w] as usize, layout.slack[w], self.head(layout, w), cells)
            })
            .collect()
    }

    /// Adds what this list holds into `rings`, one per window.
    pub fn add_into(&self, layout: &Layout, rings: &mut [Ring]) {
        for (w, ring) in rings.iter_mut().enumerate() {
            for (b, f, v) in self.ring_cells(layout, w) {
                let _ = ring.add(b as i64, f, v);
            }
        }
    }

    /// Advances to the watermark `wm`, dropping what every window has
    /// dropped; true when nothing is left.
    pub fn advance_and_check_empty(&mut self, layout: &Layout, wm: i64) -> bool {
        self.head = self.head.max(bucket_of(wm, layout.steps[layout.fine]));
        let keep_from = (0..layout.steps.len()).map(|w| self.oldest(layout, w) * layout.ratios[w]).min();
        if let Some(keep_from) = keep_from {
            let expired = self.cells.partition_point(|c| (c.bucket as i64) < keep_from);
            self.cells.drain(..expired);
        }
        if self.cells.is_empty() && self.cells.spilled() {
            self.cells = SmallVec::new();
        }
        self.cells.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A cold list reads, heads, snapshots and turns into rings exactly as
        /// one ring per window fed the same adds and advances would.
        #[test]
        fn reads_as_one_ring_per_window(
            ops in proptest::collection::vec((0u8..5, 0i64..40, 0u8..5, 1u64..4), 1..120),
            lens in proptest::collection::vec(1i64..6, 3),
            slack in proptest::collection::vec(0usize..4, 3),
        ) {
            // Finest step 1 ms, so a time is its finest bucket.
            let layout = Layout::new(vec![1, 3, 6], lens.clone(), slack.clone());
            let mut cold = Cold::new(0);
            let mut rings: Vec<Ring> = (0..3).map(|w| Ring::new(lens[w] as usize, slack[w], 0)).collect();
            let mut clock = 0i64;
            for (op, step, field, value) in ops {
                if op == 0 {
                    // Advance to a watermark behind the newest bucket.
                    let wm = (clock - step % 10).max(0);
                    let empty = cold.advance_and_check_empty(&layout, wm);
                    for (w, ring) in rings.iter_mut().enumerate() {
                        ring.advance_to(bucket_of(wm, layout.steps[w]));
                    }
                    prop_assert_eq!(empty, rings.iter().all(Ring::is_empty));
                } else {
                    // Mostly in order, sometimes far behind (cohort-basis counters).
                    clock += step % 4;
                    let b = if op == 1 { clock - step } else { clock }.max(0);
                    cold.add(b, field, value);
                    for (w, ring) in rings.iter_mut().enumerate() {
                        let _ = ring.add(bucket_of(b, layout.steps[w]), field, value);
                    }
                }
                let warm = cold.to_rings(&layout);
                for (w, ring) in rings.iter().enumerate() {
                    prop_assert_eq!(cold.head(&layout, w), ring.head());
                    let mut cells = cold.ring_cells(&layout, w);
                    let mut want = ring.snapshot().cells;
                    cells.sort();
                    want.sort();
                    prop_assert_eq!(cells, want, "window {}", w);
                    for end in ring.head() - 8..=ring.head() + 8 {
                        let mut got = Counts::default();
                        cold.read_into(&layout, w, end, &mut got);
                        prop_assert_eq!(&got, &ring.read(end), "window {} end {}", w, end);
                        prop_assert_eq!(&warm[w].read(end), &got, "as rings: window {} end {}", w, end);
                    }
                }
            }
        }
    }
}
