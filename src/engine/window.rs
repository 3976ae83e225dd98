//! Sliding windows as rings of time buckets with a running total.
//!
//! A window of `len` buckets of `step` ms slides by one bucket. The ring keeps
//! `len + slack` buckets so that it can still be read as of a watermark that
//! trails the newest event by up to `slack` buckets (the allowed lateness).
//! `total` always holds the sum of the `len` buckets ending at `head`, so
//! reading the window at `head` is O(1) and reading it up to `slack` buckets
//! earlier or later is O(slack).

use super::Counts;

/// Bucket index of a time: `floor(t / step)`.
#[inline]
pub fn bucket_of(t_ms: i64, step_ms: i64) -> i64 {
    t_ms.div_euclid(step_ms)
}

/// Outcome of adding to a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Add {
    Added,
    /// The bucket has already left the ring.
    TooOld,
}

#[derive(Clone, Debug)]
pub struct Ring {
    /// Newest bucket index held; buckets `head - cap + 1 ..= head` are held.
    head: i64,
    len: usize,
    buckets: Box<[Counts]>,
    total: Counts,
}

impl Ring {
    /// A ring for a window of `len` buckets, readable `slack` buckets behind its head.
    pub fn new(len: usize, slack: usize, start_bucket: i64) -> Ring {
        debug_assert!(len > 0);
        Ring {
            head: start_bucket,
            len,
            buckets: vec![Counts::default(); len + slack].into_boxed_slice(),
            total: Counts::default(),
        }
    }

    fn cap(&self) -> i64 {
        self.buckets.len() as i64
    }

    fn slot(&self, bucket: i64) -> usize {
        bucket.rem_euclid(self.cap()) as usize
    }

    /// The counts of one bucket, zero when it is not held.
    pub fn bucket(&self, bucket: i64) -> Counts {
        if bucket > self.head || bucket <= self.head - self.cap() {
            return Counts::default();
        }
        self.buckets[self.slot(bucket)]
    }

    pub fn head(&self) -> i64 {
        self.head
    }

    /// Moves the head forward to `bucket`, expiring what falls out.
    pub fn advance_to(&mut self, bucket: i64) {
        if bucket <= self.head {
            return;
        }
        let len = self.len as i64;
        if bucket - self.head >= self.cap() {
            self.buckets.iter_mut().for_each(|b| *b = Counts::default());
            self.total = Counts::default();
            self.head = bucket;
            return;
        }
        for h in self.head + 1..=bucket {
            // Bucket h - len leaves the window; bucket h - cap leaves the ring
            // and its slot is reused for h.
            let leaving = self.bucket(h - len);
            self.total.sub(&leaving);
            let slot = self.slot(h);
            self.buckets[slot] = Counts::default();
            self.head = h;
        }
    }

    /// Adds `c` at `bucket`, advancing the head when the bucket is newer.
    pub fn add(&mut self, bucket: i64, c: &Counts) -> Add {
        if bucket > self.head {
            self.advance_to(bucket);
        }
        if bucket <= self.head - self.cap() {
            return Add::TooOld;
        }
        let slot = self.slot(bucket);
        self.buckets[slot].add(c);
        if bucket > self.head - self.len as i64 {
            self.total.add(c);
        }
        Add::Added
    }

    /// The window's counts over the `len` buckets ending at `end` (inclusive).
    ///
    /// Exact when `end >= head - slack`; earlier ends miss buckets that have
    /// left the ring.
    pub fn read(&self, end: i64) -> Counts {
        let len = self.len as i64;
        let mut c = self.total;
        if end >= self.head {
            // Buckets head-len+1 ..= end-len have slid out since head.
            let upto = (end - len).min(self.head);
            for b in self.head - len + 1..=upto {
                c.sub(&self.bucket(b));
            }
        } else {
            // Remove buckets after `end`, add back those before head's window.
            for b in (end + 1).max(self.head - len + 1)..=self.head {
                c.sub(&self.bucket(b));
            }
            for b in (end - len + 1).max(self.head - self.cap() + 1)..=(self.head - len).min(end) {
                c.add(&self.bucket(b));
            }
        }
        c
    }

    /// True when no bucket in the ring holds anything.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(Counts::is_zero)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one() -> Counts {
        Counts { orders_paid: 1, refunds_requested: 0 }
    }

    // Reference: sum of everything added at buckets in (end-len, end] that
    // the ring still holds.
    proptest! {
        #[test]
        fn matches_reference(adds in proptest::collection::vec(0i64..60, 1..200), len in 1usize..8, slack in 0usize..4) {
            let mut ring = Ring::new(len, slack, 0);
            let mut kept: Vec<i64> = Vec::new();
            let mut head = 0i64;
            for b in adds {
                head = head.max(b);
                if ring.add(b, &one()) == Add::Added {
                    kept.push(b);
                } else {
                    prop_assert!(b <= head - (len + slack) as i64);
                }
                for end in (head - slack as i64)..=(head + len as i64 + 1) {
                    let expect = kept.iter().filter(|&&k| k <= end && k > end - len as i64
                        && k > head - (len + slack) as i64).count() as u32;
                    prop_assert_eq!(ring.read(end).orders_paid, expect, "end {} head {}", end, head);
                }
            }
        }
    }

    #[test]
    fn expires_and_empties() {
        let mut ring = Ring::new(3, 1, 0);
        ring.add(0, &one());
        ring.add(1, &one());
        assert_eq!(ring.read(1).orders_paid, 2);
        assert_eq!(ring.read(3).orders_paid, 1);
        assert_eq!(ring.read(4).orders_paid, 0);
        ring.advance_to(10);
        assert!(ring.is_empty());
    }
}
