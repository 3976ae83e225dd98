//! The dense form of a busy ring: every counter of every bucket it holds in
//! one flat row per bucket, plus running totals of the window at its head
//! and one bucket before.
//!
//! Why: a sparse ring finds a counter's cell by scanning its bucket, and a
//! late or cohort-basis add (an after-sales event credited to its order's
//! payment time) inserts into the middle of a sorted vector. For the busiest
//! rings (the platform, categories, hot shops) those adds were a sixth of
//! the fold's instructions. Here every add is an index and three additions,
//! and a read at any end the ring can answer is the running total corrected
//! by a few rows.
//!
//! A ring turns dense when its sparse cells would take at least half the
//! bytes of its rows (see [`DENSE_CELLS_PER_BUCKET`]), or when it keeps
//! taking adds behind its head (`window::SLOW_ADDS_TO_DENSE`), and back
//! when it has drained to a few counters a bucket. Only rings that saw
//! hundreds of late or cohort adds pay the rows: 577 bytes a bucket, about
//! 50 KB for all four default windows.
//! Bucket `b` lives in row `b mod cap`; the row of the head is remembered so
//! that no add divides.

use super::counts::{Counts, NF};

/// A hot ring turns dense above this many cells per bucket it can hold
/// (16-byte cells against 8-byte counters: dense is then at most 2x the bytes).
pub const DENSE_CELLS_PER_BUCKET: usize = NF / 4;
/// A dense ring goes back to cells below this many non-zero counters per bucket.
pub const SPARSE_CELLS_PER_BUCKET: usize = 2;

#[derive(Clone, Debug)]
pub(super) struct Dense {
    /// Bucket `head - k` is in row `(head_row + cap - k) % cap`, for `k < cap`.
    rows: Box<[Counts]>,
    /// Rows holding anything (a row can hold zeros that were added).
    used: Box<[bool]>,
    used_rows: u32,
    head_row: u32,
    /// Sum of buckets `head - len + 1 ..= head`.
    totals: Counts,
    /// Sum of buckets `head - len ..= head - 1`.
    prev: Counts,
}

impl Dense {
    /// A dense ring of `cap` rows with head `head`, holding `cells`
    /// (bucket, counter, value), each inside the ring.
    pub(super) fn from_cells(head: i64, len: u32, cap: u32, cells: impl Iterator<Item = (i64, u8, u64)>) -> Dense {
        let mut d = Dense {
            rows: vec![Counts::default(); cap as usize].into_boxed_slice(),
            used: vec![false; cap as usize].into_boxed_slice(),
            used_rows: 0,
            head_row: head.rem_euclid(cap as i64) as u32,
            totals: Counts::default(),
            prev: Counts::default(),
        };
        for (b, f, v) in cells {
            d.add(head, len, b, f, v);
        }
        d
    }

    fn cap(&self) -> i64 {
        self.rows.len() as i64
    }

    /// The row of bucket `b`, for `head - cap < b <= head`.
    #[inline]
    fn row(&self, head: i64, b: i64) -> usize {
        debug_assert!(b <= head && b > head - self.cap());
        let r = self.head_row as i64 - (head - b);
        (if r < 0 { r + self.cap() } else { r }) as usize
    }

    /// Adds at bucket `b`, inside the ring (`head - cap < b <= head`).
    #[inline]
    pub(super) fn add(&mut self, head: i64, len: u32, b: i64, field: u8, value: u64) {
        let r = self.row(head, b);
        let f = field as usize;
        self.rows[r].add_at(f, value);
        if !self.used[r] {
            self.used[r] = true;
            self.used_rows += 1;
        }
        let len = len as i64;
        if b > head - len {
            self.totals.add_at(f, value);
        }
        if b < head && b >= head - len {
            self.prev.add_at(f, value);
        }
    }

    fn clear_row(&mut self, r: usize) {
        if self.used[r] {
            self.rows[r] = Counts::default();
            self.used[r] = false;
            self.used_rows -= 1;
        }
    }

    /// Moves the head from `head` to `to` (later), expiring what leaves.
    pub(super) fn advance(&mut self, head: i64, len: u32, to: i64) {
        debug_assert!(to > head);
        let (cap, len) = (self.cap(), len as i64);
        if to - head >= cap {
            for r in 0..self.rows.len() {
                self.clear_row(r);
            }
            self.totals = Counts::default();
            self.prev = Counts::default();
            self.head_row = to.rem_euclid(cap) as u32;
            return;
        }
        for k in head + 1..=to {
            // Head k-1 -> k: the window ending at k-1 becomes `prev`, bucket
            // k - len leaves the window, and k takes the row of k - cap,
            // which is older than both windows.
            self.prev.0 = self.totals.0;
            let leaving = self.row(k - 1, k - len);
            self.totals.sub(&self.rows[leaving]);
            self.head_row = if self.head_row as i64 + 1 == cap { 0 } else { self.head_row + 1 };
            self.clear_row(self.head_row as usize);
        }
    }

    /// Adds the counts of buckets `lo..=hi` held by the ring into (`sign`
    /// true) or out of `out`.
    fn rows_into(&self, head: i64, lo: i64, hi: i64, out: &mut Counts, sign: bool) {
        for b in lo.max(head - self.cap() + 1)..=hi.min(head) {
            let r = self.row(head, b);
            if !self.used[r] {
                continue;
            }
            if sign {
                out.add(&self.rows[r]);
            } else {
                out.sub(&self.rows[r]);
            }
        }
    }

    /// The running total that is the window ending at `end`, if one is.
    #[inline]
    pub(super) fn totals_at(&self, head: i64, end: i64) -> Option<&Counts> {
        if end == head {
            Some(&self.totals)
        } else if end == head - 1 {
            Some(&self.prev)
        } else {
            None
        }
    }

    /// Adds the sum of the held buckets in `end - len + 1 ..= end` into `out`.
    pub(super) fn read_into(&self, head: i64, len: u32, end: i64, out: &mut Counts) {
        if let Some(t) = self.totals_at(head, end) {
            return out.add(t);
        }
        let len = len as i64;
        if end > head {
            out.add(&self.totals);
            self.rows_into(head, head - len + 1, end - len, out, false);
        } else {
            // prev is head-len ..= head-1: drop what lies after `end`, add
            // what lies before head-len.
            out.add(&self.prev);
            self.rows_into(head, (end + 1).max(head - len), head - 1, out, false);
            self.rows_into(head, end - len + 1, (head - len - 1).min(end), out, true);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.used_rows == 0
    }

    /// Non-zero counters held, over all rows.
    pub(super) fn nonzero(&self) -> usize {
        self.rows
            .iter()
            .zip(self.used.iter())
            .filter(|(_, u)| **u)
            .map(|(r, _)| r.0.iter().filter(|v| **v != 0).count())
            .sum()
    }

    /// The non-zero (bucket, counter, value) cells, sorted by bucket.
    pub(super) fn cells(&self, head: i64) -> impl Iterator<Item = (i64, u8, u64)> + '_ {
        (head - self.cap() + 1..=head).flat_map(move |b| {
            let r = self.row(head, b);
            let row = if self.used[r] { &self.rows[r].0[..] } else { &[][..] };
            row.iter().enumerate().filter(|(_, v)| **v != 0).map(move |(f, v)| (b, f as u8, *v))
        })
    }

    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Dense>() + self.rows.len() * (std::mem::size_of::<Counts>() + 1)
    }
}
