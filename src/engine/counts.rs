//! What the engine counts: one flat array of counters per time bucket,
//! indexed by [`Field`], and the deltas each event contributes.
//!
//! Counters are credited on one of two bases:
//! * **activity**: the bucket of the event's own time ("what is spiking now");
//! * **cohort**: the bucket of the order's payment time, for after-sales events
//!   that carry `order_paid_at` ("which sales batch went bad"). A late refund
//!   amends the bucket of its order while that bucket is still held.
//!
//! Cohort counters are separate fields (suffix `Cohort`), so one ring serves
//! both bases and a rule chooses its basis by choosing its fields.

use crate::event::*;

macro_rules! fields {
    ($($name:ident),+ $(,)?) => {
        /// A counter. `#[repr(u8)]`: stored as a byte in sparse cells.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Field { $($name),+ }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$name),+];
        }
    };
}

fields!(
    OrdersCreated,
    OrdersPaid,
    SellerCancels,
    RefundsRequested,
    QualityRefunds,
    RefundsCompleted,
    RefundAmountMinor,
    DisputesOpened,
    DisputesForBuyer,
    ChargebacksFraud,
    ChargebacksService,
    ReturnsRequested,
    Dispatched,
    DispatchedLate,
    Delivered,
    NotReceivedClaims,
    RefundsRequestedCohort,
    QualityRefundsCohort,
    DisputesForBuyerCohort,
    ChargebacksFraudCohort,
    ChargebacksServiceCohort,
    ReturnsRequestedCohort,
    NotReceivedClaimsCohort,
    DefectsCohort,
);

/// Refund completion time histogram: bins per refund type.
pub const COMPLETION_BINS: usize = 24;
/// First histogram field; refund-only bins, then return-and-refund bins.
pub const HIST_BASE: usize = Field::ALL.len();
/// Number of counters.
pub const NF: usize = HIST_BASE + 2 * COMPLETION_BINS;

/// Index of the completion-time bin of `refund_type` for `ms`.
///
/// Bin 0 is under one minute; bins 1..=22 are half-octaves in minutes
/// (`[2^((i-1)/2), 2^(i/2))`); bin 23 is 2^11 minutes (about 34 h) and more.
pub fn completion_bin(ms: i64) -> usize {
    let minutes = ms as f64 / 60_000.0;
    if minutes < 1.0 {
        return 0;
    }
    let half_octaves = (minutes.log2() * 2.0).floor() as i64 + 1;
    half_octaves.clamp(1, COMPLETION_BINS as i64 - 1) as usize
}

/// Lower edge of a bin in milliseconds.
pub fn completion_bin_floor_ms(bin: usize) -> f64 {
    if bin == 0 {
        0.0
    } else {
        60_000.0 * 2f64.powf((bin as f64 - 1.0) / 2.0)
    }
}

/// Upper edge of a bin in milliseconds (the last bin's is open: its floor times √2).
pub fn completion_bin_ceil_ms(bin: usize) -> f64 {
    60_000.0 * 2f64.powf(bin as f64 / 2.0)
}

pub fn hist_field(refund_type: RefundType, bin: usize) -> usize {
    let base = if refund_type == RefundType::ReturnAndRefund { HIST_BASE + COMPLETION_BINS } else { HIST_BASE };
    base + bin.min(COMPLETION_BINS - 1)
}

/// Counters of one bucket or one window.
#[derive(Clone, PartialEq, Eq)]
pub struct Counts(pub [u64; NF]);

impl Default for Counts {
    fn default() -> Self {
        Counts([0; NF])
    }
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (i, v) in self.0.iter().enumerate().filter(|(_, v)| **v != 0) {
            match Field::ALL.get(i) {
                Some(field) => m.entry(field, v),
                None => m.entry(&format!("hist[{}]", i - HIST_BASE), v),
            };
        }
        m.finish()
    }
}

impl Counts {
    #[inline]
    pub fn get(&self, f: Field) -> u64 {
        self.0[f as usize]
    }

    #[inline]
    pub fn add_at(&mut self, i: usize, v: u64) {
        self.0[i] = self.0[i].wrapping_add(v);
    }

    #[inline]
    pub fn sub_at(&mut self, i: usize, v: u64) {
        self.0[i] = self.0[i].wrapping_sub(v);
    }

    pub fn add(&mut self, o: &Counts) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    pub fn sub(&mut self, o: &Counts) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a = a.wrapping_sub(*b);
        }
    }

    /// `self - o`, counter by counter, never below zero.
    pub fn saturating_minus(&self, o: &Counts) -> Counts {
        let mut out = self.clone();
        for (a, b) in out.0.iter_mut().zip(o.0.iter()) {
            *a = a.saturating_sub(*b);
        }
        out
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }

    /// Completion-time bins of one refund type.
    pub fn completion_bins(&self, refund_type: RefundType) -> &[u64] {
        let base = hist_field(refund_type, 0);
        &self.0[base..base + COMPLETION_BINS]
    }

    /// Approximate `q`-quantile (0..=1) of refund completion time in ms, for
    /// one refund type; `None` when no refund completed. The value is the
    /// geometric midpoint of the bin holding the quantile (error < 19%).
    pub fn completion_quantile_ms(&self, refund_type: RefundType, q: f64) -> Option<f64> {
        let bins = self.completion_bins(refund_type);
        let total: u64 = bins.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in bins.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let lo = completion_bin_floor_ms(i).max(1.0);
                return Some(if i == 0 { 30_000.0 } else { (lo * completion_bin_ceil_ms(i)).sqrt() });
            }
        }
        None
    }
}

/// What one event adds, without allocating: activity-basis counters with
/// their values, and cohort-basis counters (each adds one). Kept apart, so
/// that the fold knows without looking whether it needs the cohort buckets,
/// and small (no event has more than three of either).
#[derive(Clone, Copy, Debug, Default)]
pub struct Deltas {
    n_act: u8,
    n_cohort: u8,
    act_fields: [u8; 4],
    cohort_fields: [u8; 4],
    act_values: [u64; 4],
}

impl Deltas {
    fn push(&mut self, field: usize, value: u64) {
        debug_assert!((self.n_act as usize) < self.act_fields.len());
        self.act_fields[self.n_act as usize] = field as u8;
        self.act_values[self.n_act as usize] = value;
        self.n_act += 1;
    }

    fn act(&mut self, f: Field) {
        self.push(f as usize, 1);
    }

    fn cohort(&mut self, f: Field) {
        debug_assert!((self.n_cohort as usize) < self.cohort_fields.len());
        self.cohort_fields[self.n_cohort as usize] = f as u8;
        self.n_cohort += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.n_act == 0 && self.n_cohort == 0
    }

    /// Whether any counter is credited on the cohort basis.
    #[inline]
    pub fn has_cohort(&self) -> bool {
        self.n_cohort != 0
    }

    /// The activity-basis counters and what each adds.
    #[inline]
    pub fn activity(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        let n = self.n_act as usize;
        self.act_fields[..n].iter().copied().zip(self.act_values[..n].iter().copied())
    }

    /// The cohort-basis counters (each adds one).
    #[inline]
    pub fn cohort_fields(&self) -> &[u8] {
        &self.cohort_fields[..self.n_cohort as usize]
    }

    /// What `e` contributes. Steps that no metric counts give no deltas.
    #[inline]
    pub fn of(e: &Event) -> Deltas {
        let mut d = Deltas::default();
        match &e.body {
            EventBody::Order { step, cancelled_by, .. } => match step {
                OrderStep::Created => d.act(Field::OrdersCreated),
                OrderStep::Paid => d.act(Field::OrdersPaid),
                OrderStep::Cancelled if *cancelled_by == Some(CancelledBy::Seller) => d.act(Field::SellerCancels),
                _ => {}
            },
            EventBody::Shipment { step, promised_by } => match step {
                ShipmentStep::Dispatched => {
                    d.act(Field::Dispatched);
                    if promised_by.is_some_and(|p| e.event_time > p) {
                        d.act(Field::DispatchedLate);
                    }
                }
                ShipmentStep::Delivered => d.act(Field::Delivered),
                _ => {}
            },
            EventBody::Return { step: ReturnStep::Requested, .. } => {
                d.act(Field::ReturnsRequested);
                d.cohort(Field::ReturnsRequestedCohort);
            }
            EventBody::Refund { step, refund_type, reason, money, requested_at, .. } => match step {
                RefundStep::Requested => {
                    d.act(Field::RefundsRequested);
                    d.cohort(Field::RefundsRequestedCohort);
                    if reason.is_quality() {
                        d.act(Field::QualityRefunds);
                        d.cohort(Field::QualityRefundsCohort);
                    }
                    if *reason == Reason::NotReceived {
                        d.act(Field::NotReceivedClaims);
                        d.cohort(Field::NotReceivedClaimsCohort);
                    }
                }
                RefundStep::Completed => {
                    d.act(Field::RefundsCompleted);
                    d.push(Field::RefundAmountMinor as usize, money.amount_minor as u64);
                    if let Some(at) = requested_at {
                        let bin = completion_bin((e.event_time - at).max(0));
                        d.push(hist_field(*refund_type, bin), 1);
                    }
                }
                _ => {}
            },
            EventBody::Dispute { step, reason, .. } => match step {
                DisputeStep::Opened => {
                    d.act(Field::DisputesOpened);
                    d.cohort(Field::DefectsCohort);
                    if *reason == Reason::NotReceived {
                        d.act(Field::NotReceivedClaims);
                        d.cohort(Field::NotReceivedClaimsCohort);
                    }
                }
                DisputeStep::RuledForBuyer => {
                    d.act(Field::DisputesForBuyer);
                    d.cohort(Field::DisputesForBuyerCohort);
                }
                _ => {}
            },
            EventBody::Chargeback { step: ChargebackStep::Received, category, .. } => {
                d.cohort(Field::DefectsCohort);
                match category {
                    ChargebackCategory::Fraud => {
                        d.act(Field::ChargebacksFraud);
                        d.cohort(Field::ChargebacksFraudCohort);
                    }
                    _ => {
                        d.act(Field::ChargebacksService);
                        d.cohort(Field::ChargebacksServiceCohort);
                    }
                }
            }
            _ => {}
        }
        d
    }
}

/// The cohort time of an event: its order's payment time, never after the
/// event itself.
pub fn cohort_time(e: &Event) -> Millis {
    let paid = match &e.body {
        EventBody::Return { order_paid_at, .. }
        | EventBody::Refund { order_paid_at, .. }
        | EventBody::Dispute { order_paid_at, .. }
        | EventBody::Chargeback { order_paid_at, .. } => *order_paid_at,
        _ => e.event_time,
    };
    paid.min(e.event_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_bins_are_monotonic_and_bounded() {
        assert_eq!(completion_bin(0), 0);
        assert_eq!(completion_bin(59_999), 0);
        assert_eq!(completion_bin(60_000), 1);
        assert_eq!(completion_bin(90_000), 2);
        let mut last = 0;
        for minutes in 1..100_000 {
            let b = completion_bin(minutes * 60_000);
            assert!(b >= last && b < COMPLETION_BINS);
            assert!(completion_bin_floor_ms(b) <= (minutes * 60_000) as f64);
            if b < COMPLETION_BINS - 1 {
                assert!(((minutes * 60_000) as f64) < completion_bin_ceil_ms(b));
            }
            last = b;
        }
        assert_eq!(completion_bin(24 * 3_600_000), 21, "24 h");
    }

    #[test]
    fn quantiles_pick_the_right_bin() {
        let mut c = Counts::default();
        for m in [2, 3, 5, 8, 600] {
            c.add_at(hist_field(RefundType::RefundOnly, completion_bin(m * 60_000)), 1);
        }
        let p50 = c.completion_quantile_ms(RefundType::RefundOnly, 0.5).unwrap();
        assert!((4.0 * 60_000.0..6.0 * 60_000.0).contains(&p50), "{p50}");
        let p99 = c.completion_quantile_ms(RefundType::RefundOnly, 0.99).unwrap();
        assert!((512.0 * 60_000.0..725.0 * 60_000.0).contains(&p99), "{p99}");
        assert_eq!(c.completion_quantile_ms(RefundType::ReturnAndRefund, 0.5), None);
    }
}
