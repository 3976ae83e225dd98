//! Pending lists: per window, the shops folded into since that window's
//! rules last read their newest bucket, so a completed bucket revisits only
//! them.
//!
//! A completed bucket starts a *round* ([`Engine::begin_round`]): the
//! window's pending list becomes the round's list, and a fresh list collects
//! what is folded from then on. The caller visits the round's shops in
//! slices ([`Engine::drain_round`]) between batches of records, so one
//! bucket end over 100,000 shops does not stall the hot path for the whole
//! visit. A shop in a round keeps its pending bit until it is visited, so a
//! record folded into it meanwhile does not list it twice; one visited and
//! then folded into again joins the fresh list, for the next round. Each
//! shop therefore sees a window's bucket ends in order, once each, as long
//! as the caller finishes a round before it begins the next.
//!
//! A window may have a *visit floor* ([`VisitFloor`], set by the caller from
//! what its rounds read): a shop whose cold list holds fewer counts than
//! the floor, summed over the whole list, joins no list, as no window of it
//! can reach the floor. Over a million shops most hold an order or two, and
//! a round visit costs about as much as a fold (two cache misses), so this
//! keeps the rounds to the shops that can breach a rule or enter a top-K.

use super::{all_windows, Engine, ScopeView};
use crate::event::Millis;

/// How many visits ahead a round prefetches a shop's entry (and twice as
/// many, its table's control bytes): enough for a load from memory to
/// finish during the visits in between (a visit is a few hundred
/// instructions).
const PREFETCH_AHEAD: usize = 4;

/// What a shop must hold before a window's rounds visit it: at least
/// `min_num` of the counters in `num` and `min_den` of those in `den` (bit
/// `f`: [`Field`] `f`). The caller merges what each reader of the window
/// needs ([`VisitFloor::or`]); a shop under the floor is passed over, so a
/// reader must have nothing to do for a shop under its own floor.
///
/// [`Field`]: super::Field
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VisitFloor {
    pub num: u128,
    pub den: u128,
    pub min_num: u64,
    pub min_den: u64,
}

impl VisitFloor {
    /// A floor that every shop reader `self` or reader `b` needs passes:
    /// the counters of both, and the lower of each minimum.
    pub fn or(self, b: VisitFloor) -> VisitFloor {
        VisitFloor {
            num: self.num | b.num,
            den: self.den | b.den,
            min_num: self.min_num.min(b.min_num),
            min_den: self.min_den.min(b.min_den),
        }
    }

    /// Whether a shop of `scope` may reach the floor in some window: a
    /// cold list whose sums over all of it (an upper bound of every
    /// window's) reach it; a scope with rings always.
    #[inline]
    pub(super) fn may_pass(&self, scope: &super::ScopeState) -> bool {
        if self.min_num == 0 && self.min_den == 0 {
            return true;
        }
        scope.list_sums(self.num, self.den).is_none_or(|(n, d)| n >= self.min_num && d >= self.min_den)
    }
}

impl Engine {
    /// Sets the visit floor of each window (`None`: every shop folded into
    /// is visited). A shop passed over is listed by its next event that
    /// finds it at the floor; a floor lowered applies from the next events
    /// on, as a window newly tracked does.
    pub fn set_visit_floors(&mut self, floors: Vec<Option<VisitFloor>>) {
        self.visit_floors = floors;
        self.visit_floors.resize(self.pending.len(), None);
        self.floored =
            self.visit_floors.iter().enumerate().filter(|(_, f)| f.is_some()).fold(0, |m, (w, _)| m | 1 << w);
    }

    /// Visits every shop changed since window `w`'s rules last saw all of
    /// its data: [`Engine::begin_round`] and [`Engine::drain_round`] with no
    /// limit. `visit(shop_id, category name, shop, category, pending_until)`
    /// returns whether the shop stays pending (it has newer data).
    pub fn drain_pending(
        &mut self,
        w: usize,
        visit: impl FnMut(&str, &str, ScopeView<'_>, ScopeView<'_>, Millis) -> bool,
    ) {
        self.begin_round(w);
        self.drain_round(w, usize::MAX, visit);
    }

    /// Starts a round for window `w` over the shops pending for it now.
    /// Shops left from an unfinished round stay in it (visited first).
    pub fn begin_round(&mut self, w: usize) {
        let (Some(pending), Some(round)) = (self.pending.get_mut(w), self.rounds.get_mut(w)) else { return };
        if round.is_empty() {
            std::mem::swap(round, pending);
        } else {
            round.append(pending);
        }
    }

    /// Visits up to `budget` shops of window `w`'s round (see
    /// [`Engine::drain_pending`] for `visit`); returns the shops left in it.
    pub fn drain_round(
        &mut self,
        w: usize,
        budget: usize,
        mut visit: impl FnMut(&str, &str, ScopeView<'_>, ScopeView<'_>, Millis) -> bool,
    ) -> usize {
        let (Some(round), Some(pending)) = (self.rounds.get_mut(w), self.pending.get_mut(w)) else { return 0 };
        let mut visited = 0;
        while visited < budget {
            // The shops ahead start loading now: over a million shops every
            // visit's lookup misses the cache twice (`shops.rs`). The
            // control bytes first, then, once those are in, the entry.
            let len = round.len();
            if let Some(far) = len.checked_sub(1 + 2 * PREFETCH_AHEAD).map(|i| &round[i]) {
                self.shops.prefetch_probe(far.as_bytes());
            }
            if let Some(ahead) = len.checked_sub(1 + PREFETCH_AHEAD).map(|i| &round[i]) {
                self.shops.prefetch(ahead.as_bytes());
            }
            let Some(key) = round.pop() else { break };
            let Some(shop) = self.shops.get_mut(&key) else { continue }; // evicted or its shard dropped
            if shop.pending_in & (1 << w) == 0 {
                continue; // no longer tracked for `w`
            }
            visited += 1;
            let category = self.cats.names.get(shop.category as usize).map_or("", |c| c);
            let view = ScopeView::one(&self.layout, &shop.scope);
            let cat = ScopeView::one(&self.layout, &self.cats.scopes[shop.category as usize]);
            if visit(&key, category, view, cat, shop.pending_until.unwrap_or(Millis::MIN)) {
                pending.push(key);
            } else {
                shop.pending_in &= !(1 << w);
                if shop.pending_in == 0 {
                    shop.pending_until = None;
                }
            }
        }
        round.len()
    }

    /// Shops left in window `w`'s round.
    pub fn round_len(&self, w: usize) -> usize {
        self.rounds.get(w).map_or(0, Vec::len)
    }

    /// Keeps pending lists only for the windows in `mask` (bit `w`: window
    /// `w`): those whose shops something evaluates (shop rules, top-K).
    /// Lists (and rounds) of windows left out are emptied; a window added
    /// starts with the shops folded into from now on.
    pub fn track_pending(&mut self, mask: u32) {
        let mask = mask & all_windows(self.pending.len());
        let dropped = self.tracked & !mask;
        self.tracked = mask;
        for (w, (list, round)) in self.pending.iter_mut().zip(self.rounds.iter_mut()).enumerate() {
            if dropped & (1 << w) == 0 {
                continue;
            }
            for key in list.drain(..).chain(round.drain(..)) {
                if let Some(shop) = self.shops.get_mut(&key) {
                    shop.pending_in &= !(1 << w);
                    if shop.pending_in == 0 {
                        shop.pending_until = None;
                    }
                }
            }
        }
    }

    /// Shops pending for window `w` and not in its round (see
    /// [`Engine::drain_pending`]).
    pub fn pending_len(&self, w: usize) -> usize {
        self.pending.get(w).map_or(0, Vec::len)
    }
}
