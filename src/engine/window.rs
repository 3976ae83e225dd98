//! Sliding windows as rings of time buckets, stored sparsely.
//!
//! A window of `len` buckets of `step` ms slides by one bucket; the ring holds
//! `cap = len + slack` buckets so it can still be read at a watermark that
//! trails its newest bucket by up to `slack` buckets. Only non-zero
//! (bucket, counter) pairs are stored, as 16-byte cells sorted by bucket: most
//! shops see a handful of events, and a dense ring of every counter for every
//! bucket would cost kilobytes per shop per window.
//!
//! Once a ring holds more than [`HOT_CELLS`] cells (a busy shop, a category,
//! the platform) it also keeps running totals of the window at its head and an
//! index of the head bucket's cells, so adding at the head is O(1) and reading
//! the window is O(cells in the few buckets between head and the read point)
//! instead of O(cells). The busiest rings go one step further and hold every
//! counter of every bucket in flat rows (`dense.rs`).

use super::counts::{Counts, NF};
use super::dense::{Dense, DENSE_CELLS_PER_BUCKET, SPARSE_CELLS_PER_BUCKET};

/// Bucket index of a time: `floor(t / step)`.
#[inline]
pub fn bucket_of(t_ms: i64, step_ms: i64) -> i64 {
    t_ms.div_euclid(step_ms)
}

/// Cells above which a ring keeps running totals and a head index.
pub const HOT_CELLS: usize = 48;
/// A ring also turns hot when one bucket holds more counters than this (a
/// scan for a counter in it would be long).
pub const HOT_BUCKET_CELLS: usize = 12;
/// A hot ring turns dense after this many adds behind its head bucket (late
/// and cohort-basis counters): the rings of the platform, categories and
/// hot shops, where such adds are frequent.
pub const SLOW_ADDS_TO_DENSE: u32 = 512;
/// A hot ring that drains to this many cells goes back to plain cells.
pub const COLD_CELLS: usize = 8;

/// Outcome of adding to a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Add {
    Added,
    /// The bucket has already left the ring.
    TooOld,
}

/// One non-zero counter of one bucket (a ring's, or a cold list's finest bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cell {
    pub(super) value: u64,
    pub(super) bucket: u32,
    pub(super) field: u8,
}

#[derive(Clone, Debug)]
struct Hot {
    /// Sum of the cells in buckets `head - len + 1 ..= head`.
    totals: Counts,
    /// Sum of the cells in buckets `head - len ..= head - 1`: the window at the
    /// last complete bucket, which is what rules and dashboards read most.
    prev: Counts,
    /// Index in `cells` of each counter's cell in the head bucket, or `u32::MAX`.
    head_slots: [u32; NF],
    /// Adds behind the head bucket since the ring turned hot: each is a
    /// search and maybe an insert; past [`SLOW_ADDS_TO_DENSE`] the ring turns dense.
    slow_adds: u32,
    /// Set when the ring is dense: `cells` is then empty, and the rows hold
    /// everything (the fields above are unused).
    dense: Option<Box<Dense>>,
}

#[derive(Clone, Debug)]
pub struct Ring {
    head: i64,
    len: u32,
    cap: u32,
    cells: Vec<Cell>,
    /// Running totals (hot) or flat rows (dense), for busy rings only: the
    /// rings of a million small shops stay 48 bytes each.
    hot: Option<Box<Hot>>,
}

impl Ring {
    /// A ring for a window of `len` buckets, readable `slack` buckets behind its head.
    pub fn new(len: usize, slack: usize, start_bucket: i64) -> Ring {
        debug_assert!(len > 0);
        Ring { head: start_bucket, len: len as u32, cap: (len + slack) as u32, cells: Vec::new(), hot: None }
    }

    pub fn head(&self) -> i64 {
        self.head
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty() && self.dense().is_none_or(|d| d.is_empty())
    }

    /// Keeps running totals (many cells or a crowded bucket).
    pub fn is_hot(&self) -> bool {
        self.hot.is_some()
    }

    fn dense(&self) -> Option<&Dense> {
        self.hot.as_deref()?.dense.as_deref()
    }

    /// Holds its buckets as flat rows (see `dense.rs`).
    pub fn is_dense(&self) -> bool {
        self.dense().is_some()
    }

    /// Heap bytes held by this ring.
    pub fn heap_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell>()
            + self.hot.as_ref().map_or(0, |_| std::mem::size_of::<Hot>())
            + self.dense().map_or(0, Dense::heap_bytes)
    }

    /// Turns the ring dense (its cells move into rows).
    pub fn densify(&mut self) {
        if self.is_dense() {
            return;
        }
        let cells = std::mem::take(&mut self.cells);
        let it = cells.iter().map(|c| (c.bucket as i64, c.field, c.value));
        let dense = Some(Box::new(Dense::from_cells(self.head, self.len, self.cap, it)));
        match self.hot.as_deref_mut() {
            Some(hot) => hot.dense = dense,
            None => {
                self.hot = Some(Box::new(Hot {
                    totals: Counts::default(),
                    prev: Counts::default(),
                    head_slots: [u32::MAX; NF],
                    slow_adds: 0,
                    dense,
                }))
            }
        }
    }

    /// Turns a dense ring back into sorted cells.
    fn sparsify(&mut self) {
        let Some(d) = self.hot.as_deref_mut().and_then(|h| h.dense.take()) else { return };
        self.cells = d.cells(self.head).map(|(b, field, value)| Cell { value, bucket: b as u32, field }).collect();
        self.hot = None;
        if self.cells.len() > HOT_CELLS {
            self.heat();
        }
    }

    /// Index range of the cells with bucket in `lo..=hi`.
    fn range(&self, lo: i64, hi: i64) -> std::ops::Range<usize> {
        if hi < lo {
            return 0..0;
        }
        let a = self.cells.partition_point(|c| (c.bucket as i64) < lo);
        let b = self.cells.partition_point(|c| (c.bucket as i64) <= hi);
        a..b.max(a)
    }

    /// Moves the head forward to `bucket`, expiring what falls out.
    pub fn advance_to(&mut self, bucket: i64) {
        if bucket <= self.head {
            return;
        }
        let (head, len, cap) = (self.head, self.len, self.cap as usize);
        if let Some(d) = self.hot.as_deref_mut().and_then(|h| h.dense.as_deref_mut()) {
            d.advance(head, len, bucket);
            let drained = d.is_empty() || d.nonzero() < cap * SPARSE_CELLS_PER_BUCKET;
            self.head = bucket;
            if drained {
                self.sparsify();
            }
            return;
        }
        let len = self.len as i64;
        let old = self.head;
        if let Some(hot) = &mut self.hot {
            // Buckets old-len+1 ..= bucket-len leave the window.
            let r = {
                let lo = old - len + 1;
                let hi = (bucket - len).min(old);
                let a = self.cells.partition_point(|c| (c.bucket as i64) < lo);
                let b = self.cells.partition_point(|c| (c.bucket as i64) <= hi);
                a..b.max(a)
            };
            if bucket == old + 1 {
                hot.prev.0 = hot.totals.0;
            }
            for c in &self.cells[r] {
                hot.totals.sub_at(c.field as usize, c.value);
            }
            if bucket != old + 1 {
                hot.prev = Counts::default();
                let lo = bucket - len;
                let a = self.cells.partition_point(|c| (c.bucket as i64) < lo);
                let b = self.cells.partition_point(|c| (c.bucket as i64) < bucket);
                for c in &self.cells[a..b.max(a)] {
                    hot.prev.add_at(c.field as usize, c.value);
                }
            }
            hot.head_slots = [u32::MAX; NF];
        }
        self.head = bucket;
        let keep_from = bucket - self.cap as i64 + 1;
        let expired = self.cells.partition_point(|c| (c.bucket as i64) < keep_from);
        if expired > 0 {
            self.cells.drain(..expired);
        }
        if self.hot.is_some() && self.cells.len() <= COLD_CELLS {
            self.hot = None;
        }
        if self.cells.is_empty() && self.cells.capacity() > 0 {
            self.cells = Vec::new();
        }
    }

    /// Adds `value` to counter `field` in `bucket`.
    #[inline]
    pub fn add(&mut self, bucket: i64, field: u8, value: u64) -> Add {
        let head = self.head;
        if bucket <= head - self.cap as i64 {
            // Dropped already (a cohort-basis add to a short window, mostly).
            return Add::TooOld;
        }
        if let Some(hot) = self.hot.as_deref_mut() {
            if let Some(d) = hot.dense.as_deref_mut() {
                // Dense: anything up to the head is an index.
                if bucket <= head {
                    d.add(head, self.len, bucket, field, value);
                    return Add::Added;
                }
            } else if bucket == head {
                // Hot: adding to the newest bucket, where the counter
                // already has a cell.
                let f = field as usize;
                let slot = hot.head_slots[f];
                if slot != u32::MAX {
                    hot.totals.add_at(f, value);
                    self.cells[slot as usize].value += value;
                    return Add::Added;
                }
            }
        }
        self.add_slow(bucket, field, value)
    }

    #[inline(never)]
    fn add_slow(&mut self, bucket: i64, field: u8, value: u64) -> Add {
        if bucket > self.head {
            self.advance_to(bucket);
        }
        if bucket <= self.head - self.cap as i64 {
            return Add::TooOld;
        }
        let (head, len) = (self.head, self.len);
        if let Some(d) = self.hot.as_deref_mut().and_then(|h| h.dense.as_deref_mut()) {
            d.add(head, len, bucket, field, value);
            return Add::Added;
        }
        if let Some(hot) = self.hot.as_deref_mut() {
            if bucket < self.head {
                hot.slow_adds += 1;
            }
            if hot.slow_adds >= SLOW_ADDS_TO_DENSE || self.cells.len() > self.cap as usize * DENSE_CELLS_PER_BUCKET {
                self.densify();
                return self.add_slow(bucket, field, value);
            }
        }
        let f = field as usize;
        if bucket == self.head {
            if let Some(hot) = &mut self.hot {
                hot.totals.add_at(f, value);
                let slot = hot.head_slots[f];
                if slot != u32::MAX {
                    self.cells[slot as usize].value += value;
                } else {
                    hot.head_slots[f] = self.cells.len() as u32;
                    self.cells.push(Cell { value, bucket: bucket as u32, field });
                }
                return Add::Added;
            }
        }
        // Cells are sorted by bucket: find the end of `bucket`'s run (the
        // head bucket is last, so in-order events look at the tail first).
        let b32 = bucket as u32;
        let end = match self.cells.last() {
            Some(c) if c.bucket <= b32 => self.cells.len(),
            _ => self.cells.partition_point(|c| c.bucket <= b32),
        };
        let mut i = end;
        let mut found = false;
        while i > 0 && self.cells[i - 1].bucket == b32 {
            i -= 1;
            if self.cells[i].field == field {
                self.cells[i].value += value;
                found = true;
                break;
            }
        }
        let scanned = end - i;
        if !found {
            self.cells.insert(end, Cell { value, bucket: bucket as u32, field });
        }
        match &mut self.hot {
            Some(hot) => {
                if bucket > self.head - self.len as i64 {
                    hot.totals.add_at(f, value);
                }
                if bucket < self.head && bucket >= self.head - self.len as i64 {
                    hot.prev.add_at(f, value);
                }
                if !found && end < self.cells.len() - 1 {
                    // Inserted before the head bucket's cells: their indices moved.
                    for s in hot.head_slots.iter_mut().filter(|s| **s != u32::MAX && **s as usize >= end) {
                        *s += 1;
                    }
                }
            }
            None if self.cells.len() > HOT_CELLS || scanned > HOT_BUCKET_CELLS => self.heat(),
            None => {}
        }
        Add::Added
    }

    /// Builds the running totals and head index.
    fn heat(&mut self) {
        let mut hot = Box::new(Hot {
            totals: Counts::default(),
            prev: Counts::default(),
            head_slots: [u32::MAX; NF],
            slow_adds: 0,
            dense: None,
        });
        let lo = self.head - self.len as i64 + 1;
        for (i, c) in self.cells.iter().enumerate() {
            let b = c.bucket as i64;
            if b >= lo {
                hot.totals.add_at(c.field as usize, c.value);
            }
            if b >= lo - 1 && b < self.head {
                hot.prev.add_at(c.field as usize, c.value);
            }
            if c.bucket as i64 == self.head {
                hot.head_slots[c.field as usize] = i as u32;
            }
        }
        self.hot = Some(hot);
    }

    /// Adds the window's counts over the `len` buckets ending at `end`
    /// (inclusive) into `out`. Exact when `end >= head - slack`.
    pub fn read_into(&self, end: i64, out: &mut Counts) {
        if let Some(d) = self.dense() {
            return d.read_into(self.head, self.len, end, out);
        }
        let len = self.len as i64;
        match &self.hot {
            None => {
                // At most HOT_CELLS cells, sorted by bucket, and reads are
                // mostly near the head: scan back from the newest.
                let lo = end - len + 1;
                for c in self.cells.iter().rev() {
                    let b = c.bucket as i64;
                    if b < lo {
                        break;
                    }
                    if b <= end {
                        out.add_at(c.field as usize, c.value);
                    }
                }
            }
            Some(hot) if end == self.head => out.add(&hot.totals),
            Some(hot) if end == self.head - 1 => out.add(&hot.prev),
            Some(hot) => {
                out.add(&hot.totals);
                if end >= self.head {
                    for c in &self.cells[self.range(self.head - len + 1, (end - len).min(self.head))] {
                        out.sub_at(c.field as usize, c.value);
                    }
                } else {
                    for c in &self.cells[self.range((end + 1).max(self.head - len + 1), self.head)] {
                        out.sub_at(c.field as usize, c.value);
                    }
                    for c in &self.cells[self.range(end - len + 1, (self.head - len).min(end))] {
                        out.add_at(c.field as usize, c.value);
                    }
                }
            }
        }
    }

    /// Writes the window's counts over the `len` buckets ending at `end`
    /// into `out`, whatever it held: a copy of a running total when the ring
    /// keeps one for that end.
    #[inline]
    pub fn read_to(&self, end: i64, out: &mut Counts) {
        let totals = match (self.dense(), self.hot.as_deref()) {
            (Some(d), _) => d.totals_at(self.head, end),
            (None, Some(hot)) if end == self.head => Some(&hot.totals),
            (None, Some(hot)) if end == self.head - 1 => Some(&hot.prev),
            _ => None,
        };
        match totals {
            Some(t) => out.0 = t.0,
            None => {
                out.0 = [0; NF];
                self.read_into(end, out);
            }
        }
    }

    /// The window's counts over the `len` buckets ending at `end` (inclusive).
    pub fn read(&self, end: i64) -> Counts {
        let mut c = Counts::default();
        self.read_into(end, &mut c);
        c
    }
}

/// A ring as written to a checkpoint: its head and its cells as
/// (bucket, counter, value), sorted by bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RingSnapshot {
    pub head: i64,
    pub cells: Vec<(u32, u8, u64)>,
}

impl Ring {
    pub fn snapshot(&self) -> RingSnapshot {
        RingSnapshot { head: self.head, cells: self.cells().collect() }
    }

    /// Every (bucket, counter, value) held, sorted by bucket.
    fn cells(&self) -> Box<dyn Iterator<Item = (u32, u8, u64)> + '_> {
        match self.dense() {
            Some(d) => Box::new(d.cells(self.head).map(|(b, f, v)| (b as u32, f, v))),
            None => Box::new(self.cells.iter().map(|c| (c.bucket, c.field, c.value))),
        }
    }

    /// The ring `s` describes, for a window of `len` buckets readable `slack`
    /// behind its head; `None` when the cells are not sorted, not inside the
    /// ring, or name a counter that does not exist.
    pub fn restore(len: usize, slack: usize, s: &RingSnapshot) -> Option<Ring> {
        let oldest = s.head - (len + slack) as i64 + 1;
        let mut prev = 0u32;
        let mut cells = Vec::with_capacity(s.cells.len());
        for &(bucket, field, value) in &s.cells {
            if bucket < prev || (bucket as i64) < oldest || bucket as i64 > s.head || field as usize >= NF {
                return None;
            }
            prev = bucket;
            cells.push(Cell { value, bucket, field });
        }
        Some(Ring::from_cells(len, slack, s.head, cells))
    }

    /// A ring whose head is `head`, holding `cells`: sorted by bucket, at
    /// most one per bucket and counter, none in a bucket the ring has
    /// dropped or past its head (a snapshot checked by [`Ring::restore`], a
    /// cold list's cells). Built at once, where an add per cell searched
    /// and grew the vector each time.
    pub(super) fn from_cells(len: usize, slack: usize, head: i64, cells: Vec<Cell>) -> Ring {
        let mut ring = Ring::new(len, slack, head);
        ring.cells = cells;
        if ring.cells.len() > ring.cap as usize * DENSE_CELLS_PER_BUCKET {
            ring.densify();
        } else if ring.cells.len() > HOT_CELLS {
            ring.heat();
        }
        ring
    }

    /// Adds every cell of this ring into `other` (a ring of the same window).
    pub fn add_into(&self, other: &mut Ring) {
        for (bucket, field, value) in self.cells() {
            let _ = other.add(bucket as i64, field, value);
        }
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
