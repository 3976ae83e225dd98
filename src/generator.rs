//! Synthetic peak-sale traffic: many shops with Zipf popularity, a midnight
//! surge that decays, the usual after-sales events that follow an order, and
//! one injected incident: a named shop whose refund rate jumps (a bad batch
//! "not as described") some minutes after midnight.
//!
//! Deterministic for a seed. Events come out one simulated second at a time,
//! in event-time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson, Zipf};

use crate::event::*;

pub const CATEGORIES: &[&str] =
    &["apparel", "electronics", "beauty", "home", "food", "toys", "sports", "books", "shoes", "jewellery"];

/// 2026-11-10T15:40:00Z: 23:40 on the eve of Double 11 in Beijing time.
pub const DOUBLE_11_EVE: Millis = 1_794_325_200_000;

/// An injected refund incident.
#[derive(Clone, Debug)]
pub struct Spike {
    /// Popularity rank of the shop (0 = most popular).
    pub shop_rank: usize,
    /// When the bad orders start, after the generator's start.
    pub starts_after_ms: i64,
    /// Refund probability of the shop's orders from then on.
    pub refund_rate: f64,
}

#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    pub shops: usize,
    pub zipf_exponent: f64,
    pub start: Millis,
    pub duration_ms: i64,
    /// Orders paid per simulated second before the surge.
    pub base_orders_per_sec: f64,
    /// Order rate multiplier right at midnight, decaying to 2x.
    pub surge: f64,
    /// Midnight, relative to `start`.
    pub midnight_after_ms: i64,
    /// Refund probability of a healthy shop's order.
    pub refund_rate: f64,
    pub spike: Option<Spike>,
    pub seed: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            shops: 20_000,
            zipf_exponent: 1.1,
            start: DOUBLE_11_EVE,
            duration_ms: 3_600_000,
            base_orders_per_sec: 60.0,
            surge: 5.0,
            midnight_after_ms: 20 * 60_000,
            refund_rate: 0.03,
            spike: Some(Spike { shop_rank: 49, starts_after_ms: 30 * 60_000, refund_rate: 0.35 }),
            seed: 11_11,
        }
    }
}

/// Id of the shop at a popularity rank.
pub fn shop_id(rank: usize) -> String {
    format!("shop-{rank:06}")
}

pub fn category_of(rank: usize) -> &'static str {
    CATEGORIES[(rank.wrapping_mul(2_654_435_761)) % CATEGORIES.len()]
}

/// An event scheduled for later, ordered by time then sequence.
type Scheduled = Reverse<(Millis, u64, usize)>;

pub struct Generator {
    cfg: GeneratorConfig,
    rng: StdRng,
    zipf: Zipf<f64>,
    now: Millis,
    seq: u64,
    orders: u64,
    scheduled: BinaryHeap<Scheduled>,
    /// Events parked until their time; indices are in `scheduled`.
    parked: Vec<Option<Event>>,
    free: Vec<usize>,
}

impl Generator {
    pub fn new(cfg: GeneratorConfig) -> Generator {
        let zipf = Zipf::new(cfg.shops.max(1) as f64, cfg.zipf_exponent).expect("valid Zipf parameters");
        let rng = StdRng::seed_from_u64(cfg.seed);
        let now = cfg.start;
        Generator {
            cfg,
            rng,
            zipf,
            now,
            seq: 0,
            orders: 0,
            scheduled: BinaryHeap::new(),
            parked: Vec::new(),
            free: Vec::new(),
        }
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// Id of the shop with the injected incident, if any.
    pub fn spike_shop(&self) -> Option<String> {
        self.cfg.spike.as_ref().map(|s| shop_id(s.shop_rank))
    }

    /// Simulated time reached so far.
    pub fn now(&self) -> Millis {
        self.now
    }

    pub fn is_done(&self) -> bool {
        self.now >= self.cfg.start + self.cfg.duration_ms
    }

    fn order_rate(&self, t: Millis) -> f64 {
        let since_midnight = t - (self.cfg.start + self.cfg.midnight_after_ms);
        if since_midnight < 0 {
            return self.cfg.base_orders_per_sec;
        }
        // Surge at midnight, halving its excess over 2x every 15 minutes.
        let excess = (self.cfg.surge - 2.0).max(0.0) * 0.5f64.powf(since_midnight as f64 / 900_000.0);
        self.cfg.base_orders_per_sec * (2.0 + excess).min(self.cfg.surge.max(1.0))
    }

    fn schedule(&mut self, e: Event) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.parked[i] = Some(e);
                i
            }
            None => {
                self.parked.push(Some(e));
                self.parked.len() - 1
            }
        };
        let t = self.parked[slot].as_ref().map_or(0, |e| e.event_time);
        self.seq += 1;
        self.scheduled.push(Reverse((t, self.seq, slot)));
    }

    fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("ev-{:012}", self.seq)
    }

    /// Appends the events of the next simulated second to `out`, in time
    /// order. Returns false once the configured duration has passed.
    pub fn next_second(&mut self, out: &mut Vec<Event>) -> bool {
        if self.is_done() {
            return false;
        }
        let t0 = self.now;
        let lambda = self.order_rate(t0);
        let n = Poisson::new(lambda.max(1e-9)).map(|p| p.sample(&mut self.rng) as u64).unwrap_or(0);
        for _ in 0..n {
            let t = t0 + self.rng.random_range(0..1000);
            self.new_order(t);
        }
        self.now = t0 + 1000;
        let start = out.len();
        while let Some(Reverse((t, _, slot))) = self.scheduled.peek().copied() {
            if t >= self.now {
                break;
            }
            self.scheduled.pop();
            if let Some(e) = self.parked[slot].take() {
                out.push(e);
            }
            self.free.push(slot);
        }
        out[start..].sort_by_key(|e| e.event_time);
        true
    }

    fn new_order(&mut self, t: Millis) {
        let rank = (self.zipf.sample(&mut self.rng) as usize).saturating_sub(1).min(self.cfg.shops - 1);
        self.orders += 1;
        let shop = shop_id(rank);
        let category = category_of(rank).to_string();
        let order_id = format!("o-{:010}", self.orders);
        let amount = self.rng.random_range(990..49_900);
        let money = Money { amount_minor: amount, currency: *b"CNY" };
        let mk = |g: &mut Generator, time: Millis, body: EventBody| Event {
            event_id: g.next_id(),
            shop_id: shop.clone(),
            order_id: order_id.clone(),
            sub_order_id: None,
            event_time: time,
            category: category.clone(),
            body,
        };
        let created = mk(self, t, EventBody::Order { step: OrderStep::Created, cancelled_by: None, money });
        self.schedule(created);
        let paid_at = t + self.rng.random_range(1_000..30_000);
        let paid = mk(self, paid_at, EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money });
        self.schedule(paid);

        let spiking = self
            .cfg
            .spike
            .as_ref()
            .filter(|s| s.shop_rank == rank && t >= self.cfg.start + s.starts_after_ms)
            .map(|s| s.refund_rate);
        let refund_p = spiking.unwrap_or(self.cfg.refund_rate);
        let roll: f64 = self.rng.random();
        if roll < refund_p {
            let reason = if spiking.is_some() {
                if self.rng.random_bool(0.7) {
                    Reason::NotAsDescribed
                } else {
                    Reason::QualityDamaged
                }
            } else {
                Reason::ALL[self.rng.random_range(0..Reason::ALL.len())]
            };
            let at = paid_at + self.rng.random_range(30_000..180_000);
            let refund = mk(
                self,
                at,
                EventBody::Refund {
                    step: RefundStep::Requested,
                    refund_type: RefundType::RefundOnly,
                    stage: RefundStage::PreShipment,
                    reason,
                    money,
                    order_paid_at: paid_at,
                    requested_at: None,
                },
            );
            self.schedule(refund);
            if self.rng.random_bool(0.8) {
                let done_at = at + self.rng.random_range(300_000..6 * 3_600_000);
                let done = mk(
                    self,
                    done_at,
                    EventBody::Refund {
                        step: RefundStep::Completed,
                        refund_type: RefundType::RefundOnly,
                        stage: RefundStage::PreShipment,
                        reason,
                        money,
                        order_paid_at: paid_at,
                        requested_at: Some(at),
                    },
                );
                self.schedule(done);
            }
            if self.rng.random_bool(0.05) {
                let dispute_at = at + self.rng.random_range(60_000..600_000);
                let dispute = mk(
                    self,
                    dispute_at,
                    EventBody::Dispute { step: DisputeStep::Opened, reason, money, order_paid_at: paid_at },
                );
                self.schedule(dispute);
            }
            return;
        }
        if roll < refund_p + 0.01 {
            let cancel_at = paid_at + self.rng.random_range(10_000..120_000);
            let cancel = mk(
                self,
                cancel_at,
                EventBody::Order { step: OrderStep::Cancelled, cancelled_by: Some(CancelledBy::Seller), money },
            );
            self.schedule(cancel);
            return;
        }
        let promised_by = paid_at + 48 * 3_600_000;
        let ship_at = paid_at + self.rng.random_range(120_000..1_800_000);
        let ship =
            mk(self, ship_at, EventBody::Shipment { step: ShipmentStep::Dispatched, promised_by: Some(promised_by) });
        self.schedule(ship);
        if self.rng.random_bool(0.0005) {
            let cb_at = paid_at + self.rng.random_range(60_000..1_200_000);
            let cb = mk(
                self,
                cb_at,
                EventBody::Chargeback {
                    step: ChargebackStep::Received,
                    category: ChargebackCategory::Fraud,
                    reason: Reason::UnauthorisedCardUse,
                    money,
                    order_paid_at: paid_at,
                },
            );
            self.schedule(cb);
        }
        if self.rng.random_bool(0.002) {
            let ret_at = paid_at + self.rng.random_range(60_000..1_200_000);
            let ret = mk(
                self,
                ret_at,
                EventBody::Return {
                    step: ReturnStep::Requested,
                    reason: Reason::WrongSizeColour,
                    order_paid_at: paid_at,
                },
            );
            self.schedule(ret);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_ordered_and_spiking() {
        let cfg = GeneratorConfig { shops: 1000, duration_ms: 45 * 60_000, ..GeneratorConfig::default() };
        let mut a = Generator::new(cfg.clone());
        let mut b = Generator::new(cfg);
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        while a.next_second(&mut ea) {}
        while b.next_second(&mut eb) {}
        assert_eq!(ea, eb, "same seed, same stream");
        assert!(ea.windows(2).all(|w| w[0].event_time <= w[1].event_time), "time-ordered");
        let spike = a.spike_shop().unwrap();
        let count = |shop: &str, pred: fn(&Event) -> bool| ea.iter().filter(|e| e.shop_id == shop && pred(e)).count();
        let paid = |e: &Event| matches!(e.body, EventBody::Order { step: OrderStep::Paid, .. });
        let refunds = |e: &Event| matches!(e.body, EventBody::Refund { .. });
        assert!(count(&spike, refunds) * 8 > count(&spike, paid), "the spike shop refunds far more than 3%");
        let healthy = shop_id(0);
        assert!(count(&healthy, refunds) * 10 < count(&healthy, paid), "a healthy shop stays near 3%");
    }
}
