//! Read access to one scope's windows: a shop's or a category's own state,
//! or the platform, which is the sum of the categories.
//!
//! The platform is not a scope of its own: every event credits its category
//! and the platform with the same counters in the same buckets, so the
//! platform's windows are the categories' summed, and keeping a third copy
//! cost every event a third scope update (a third of the fold's scope work,
//! cohort counters into four rings included). A read of the platform adds
//! up the categories' reads instead: a few dozen copies of 576 bytes, once
//! per bucket end and scrape. It equals what a platform ring would hold at
//! every end a rule or dashboard reads (`head - slack` onwards): a ring drops
//! a bucket only once it is `len + slack` behind its head, and the
//! platform's head is the newest of the categories'.

use super::counts::{Counts, NF};
use super::scope::{Layout, ScopeState};

#[derive(Clone, Copy)]
enum Of<'a> {
    One(&'a ScopeState),
    Sum(&'a [ScopeState]),
}

/// A scope and the layout needed to read it.
#[derive(Clone, Copy)]
pub struct ScopeView<'a> {
    pub layout: &'a Layout,
    of: Of<'a>,
}

impl<'a> ScopeView<'a> {
    pub(super) fn one(layout: &'a Layout, scope: &'a ScopeState) -> ScopeView<'a> {
        ScopeView { layout, of: Of::One(scope) }
    }

    pub(super) fn sum(layout: &'a Layout, scopes: &'a [ScopeState]) -> ScopeView<'a> {
        ScopeView { layout, of: Of::Sum(scopes) }
    }

    /// Counts of window `w` over the buckets ending at `end_bucket` (inclusive).
    pub fn read(&self, w: usize, end_bucket: i64) -> Counts {
        let mut c = Counts::default();
        self.read_into(w, end_bucket, &mut c);
        c
    }

    /// Adds window `w`'s counts into `out`.
    pub fn read_into(&self, w: usize, end_bucket: i64, out: &mut Counts) {
        match self.of {
            Of::One(s) => s.read_into(self.layout, w, end_bucket, out),
            Of::Sum(all) => all.iter().for_each(|s| s.read_into(self.layout, w, end_bucket, out)),
        }
    }

    /// Writes window `w`'s counts into `out`, whatever it held before.
    pub fn read_to(&self, w: usize, end_bucket: i64, out: &mut Counts) {
        match self.of {
            Of::One(s) => s.read_to(self.layout, w, end_bucket, out),
            Of::Sum(_) => {
                out.0 = [0; NF];
                self.read_into(w, end_bucket, out);
            }
        }
    }

    /// Newest bucket of window `w` holding data.
    pub fn head(&self, w: usize) -> i64 {
        match self.of {
            Of::One(s) => s.head(self.layout, w),
            Of::Sum(all) => all.iter().map(|s| s.head(self.layout, w)).max().unwrap_or(i64::MIN),
        }
    }
}
