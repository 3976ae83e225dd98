//! The rates a rule can watch, as ratios of engine counters. Definitions
//! follow ../shared/DOMAIN.md; each is a numerator over a denominator in the
//! same window. Cohort variants credit the numerator to the order's payment
//! time, so they read "of the orders paid in this window, how many were
//! refunded (so far)".

use crate::engine::{Counts, Field, VisitFloor};

macro_rules! metrics {
    ($($variant:ident = $name:literal: [$($num:ident),+] / [$($den:ident),+], $what:literal;)+) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Metric { $($variant),+ }

        impl Metric {
            pub const ALL: &'static [Metric] = &[$(Metric::$variant),+];

            /// The name used in config files, alerts and the query API.
            pub fn name(self) -> &'static str {
                match self { $(Metric::$variant => $name),+ }
            }

            pub fn from_name(name: &str) -> Option<Metric> {
                match name { $($name => Some(Metric::$variant),)+ _ => None }
            }

            pub fn numerator(self) -> &'static [Field] {
                match self { $(Metric::$variant => &[$(Field::$num),+]),+ }
            }

            pub fn denominator(self) -> &'static [Field] {
                match self { $(Metric::$variant => &[$(Field::$den),+]),+ }
            }

            /// "refunds requested per order paid" and the like.
            pub fn description(self) -> &'static str {
                match self { $(Metric::$variant => $what),+ }
            }
        }
    };
}

metrics! {
    RefundRate = "refund_rate": [RefundsRequested] / [OrdersPaid], "refunds requested / orders paid";
    QualityRefundRate = "quality_refund_rate": [QualityRefunds] / [OrdersPaid], "quality refunds (not as described, damaged) / orders paid";
    DisputeRefundRate = "dispute_refund_rate": [DisputesForBuyer] / [OrdersPaid], "disputes ruled for the buyer / orders paid";
    ChargebackRatio = "chargeback_ratio": [ChargebacksFraud, ChargebacksService] / [OrdersPaid], "chargebacks received / orders paid";
    ChargebackFraudRatio = "chargeback_fraud_ratio": [ChargebacksFraud] / [OrdersPaid], "fraud chargebacks / orders paid";
    ChargebackServiceRatio = "chargeback_service_ratio": [ChargebacksService] / [OrdersPaid], "service chargebacks / orders paid";
    ReturnRate = "return_rate": [ReturnsRequested] / [OrdersPaid], "returns requested / orders paid";
    SellerCancelRate = "seller_cancel_rate": [SellerCancels] / [OrdersCreated], "seller cancellations / orders created";
    LateShipmentRate = "late_shipment_rate": [DispatchedLate] / [Dispatched], "dispatched after promised-by / dispatched";
    NotReceivedRate = "not_received_rate": [NotReceivedClaims] / [Delivered], "not-received claims / orders delivered";
    OrderDefectRate = "order_defect_rate": [DefectsCohort] / [OrdersPaid], "orders with a dispute or chargeback / orders paid, by order date";
    RefundRateCohort = "refund_rate_cohort": [RefundsRequestedCohort] / [OrdersPaid], "refunds of orders paid in the window / orders paid";
    QualityRefundRateCohort = "quality_refund_rate_cohort": [QualityRefundsCohort] / [OrdersPaid], "quality refunds of orders paid in the window / orders paid";
    DisputeRefundRateCohort = "dispute_refund_rate_cohort": [DisputesForBuyerCohort] / [OrdersPaid], "disputes ruled for the buyer, of orders paid in the window / orders paid";
    ChargebackRatioCohort = "chargeback_ratio_cohort": [ChargebacksFraudCohort, ChargebacksServiceCohort] / [OrdersPaid], "chargebacks of orders paid in the window / orders paid";
    ReturnRateCohort = "return_rate_cohort": [ReturnsRequestedCohort] / [OrdersPaid], "returns of orders paid in the window / orders paid";
}

impl Metric {
    /// (numerator, denominator) in `c`.
    pub fn ratio(self, c: &Counts) -> (u64, u64) {
        let sum = |fs: &[Field]| fs.iter().map(|f| c.get(*f)).sum::<u64>();
        (sum(self.numerator()), sum(self.denominator()))
    }

    /// What a shop must hold for a reader of this metric that needs at
    /// least `min_num` over at least `min_den` (a rule's volume, a top-K's
    /// floor) to have anything to do: the rounds pass over the rest.
    pub fn visit_floor(self, min_num: u64, min_den: u64) -> VisitFloor {
        let mask = |fs: &[Field]| fs.iter().fold(0u128, |m, f| m | 1 << *f as u8);
        VisitFloor { num: mask(self.numerator()), den: mask(self.denominator()), min_num, min_den }
    }

    /// The rate, or `None` when the denominator is zero.
    pub fn rate(self, c: &Counts) -> Option<f64> {
        let (k, n) = self.ratio(c);
        (n > 0).then(|| k as f64 / n as f64)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|m| m.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(*m));
            assert!(seen.insert(m.name()));
        }
    }

    #[test]
    fn ratio_sums_fields() {
        let mut c = Counts::default();
        c.add_at(Field::OrdersPaid as usize, 200);
        c.add_at(Field::ChargebacksFraud as usize, 3);
        c.add_at(Field::ChargebacksService as usize, 1);
        assert_eq!(Metric::ChargebackRatio.ratio(&c), (4, 200));
        assert_eq!(Metric::ChargebackFraudRatio.rate(&c), Some(0.015));
        assert_eq!(Metric::LateShipmentRate.rate(&c), None);
    }
}
