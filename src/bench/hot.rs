//! The whole in-process hot path on one thread: Confluent-framed Avro bytes
//! in, alerts out (decode, fold, rules), batched like the Kafka worker
//! (rules tick after every batch, and visit at most
//! [`VISIT_BUDGET`] shops a batch).
//!
//! * [`full_speed`]: as fast as it goes; events/s, and resident memory of
//!   the state it built. Also the rate of the *warm-up*, the records up to
//!   the batch by which 99% of the shops held at the end were held: taking
//!   in a new shop costs more than folding into a known one, so a sale's
//!   first minutes run slower than the rest.
//! * [`paced`]: records arrive on an open-loop schedule ([`Schedule`]): the
//!   warm-up's records at one rate, the rest at another (each a fraction of
//!   what [`full_speed`] measured for that part: a load of 80% of the
//!   whole run's average would be more than the warm-up can take, and its
//!   backlog would be all the latency measured). A record that arrives
//!   while the processor is busy waits, and that wait counts. Latency from
//!   arrival to fold per record, and from arrival to alert for every alert, measured
//!   from the arrival of the oldest record of the batch whose tick emitted
//!   it (an upper bound: the record that moved event time may be later in
//!   the batch).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{histogram, rss_bytes, Record};
use crate::codec::{self, IdSpans, SchemaStore};
use crate::config::Config;
use crate::engine::SourceId;
use crate::event::Event;
use crate::pipeline::{Pipeline, PipelineStats, VISIT_BUDGET};

/// What a full-speed run did.
pub struct FullSpeed {
    pub records: u64,
    pub undecodable: u64,
    pub elapsed: Duration,
    pub stats: PipelineStats,
    pub alerts: usize,
    /// Shops held at the end.
    pub shops: usize,
    /// Growth of resident memory from before the pipeline was built to the
    /// end of the run (the pipeline still alive).
    pub rss_growth: Option<u64>,
    /// Resident memory at the end of the run.
    pub rss: Option<u64>,
    /// The warm-up: records up to the batch by which 99% of the shops held
    /// at the end were held, and the time they took.
    pub warm_up: (u64, Duration),
}

impl FullSpeed {
    /// Records after the warm-up, and the time they took.
    pub fn after_warm_up(&self) -> (u64, Duration) {
        (self.records - self.warm_up.0, self.elapsed.saturating_sub(self.warm_up.1))
    }
}

/// When each record of a paced run arrives: the first `after` records at
/// `warm_rate` records/s, then the rest at `rate`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub after: usize,
    pub warm_rate: f64,
    pub rate: f64,
}

impl Schedule {
    fn ns(rate: f64) -> f64 {
        1e9 / rate.max(1.0)
    }

    /// When record `i` arrives, from the start of the run.
    pub fn arrival(&self, i: usize) -> Duration {
        let warm = i.min(self.after) as f64 * Self::ns(self.warm_rate);
        let rest = i.saturating_sub(self.after) as f64 * Self::ns(self.rate);
        Duration::from_nanos((warm + rest) as u64)
    }

    /// How many records have arrived `now` after the start (record `i`
    /// arrives at [`Schedule::arrival`]`(i)`).
    pub fn arrived(&self, now: Duration) -> usize {
        let ns = now.as_nanos() as f64;
        let warm_end = self.after as f64 * Self::ns(self.warm_rate);
        if ns < warm_end {
            return (ns / Self::ns(self.warm_rate)) as usize + 1;
        }
        self.after + ((ns - warm_end) / Self::ns(self.rate)) as usize + 1
    }
}

/// What a paced run measured.
pub struct Paced {
    pub schedule: Schedule,
    pub elapsed: Duration,
    /// Arrival -> folded, microseconds.
    pub fold_us: Histogram<u64>,
    /// The same, for the records after the warm-up.
    pub fold_after_us: Histogram<u64>,
    /// Arrival -> alert emitted, microseconds.
    pub alert_us: Histogram<u64>,
}

/// A pipeline with every source of `records` assigned.
fn new_pipeline(cfg: &Config, records: &[Record]) -> Pipeline {
    let mut p = Pipeline::new(cfg.engine_config(), cfg.rule_book()).with_visit_budget(VISIT_BUDGET);
    let sources = records.iter().map(|r| r.source).max().unwrap_or(0);
    for s in 0..=sources {
        p.assign(SourceId(s), 0);
    }
    p
}

/// Decodes one record into `buf` (as the worker does) and folds it; false
/// when it does not decode. As the worker does (`pipeline/prefetch.rs`),
/// what the fold of `next`, the record after it, looks up first starts
/// loading into the cache, and then this record's shop entry (`early`:
/// where its ids lie, from the step before), before this record decodes.
/// Returns where `next`'s ids lie, for its own turn.
#[inline]
fn ingest(
    p: &mut Pipeline,
    store: &SchemaStore,
    (r, early): (&Record, Option<IdSpans>),
    next: Option<&Record>,
    buf: &mut Event,
    proc_now: i64,
) -> (bool, Option<IdSpans>) {
    let next_ids = next.and_then(|n| p.prefetch_next(store, SourceId(n.source), &n.bytes));
    p.prefetch_record(store, SourceId(r.source), &r.bytes, early);
    match codec::decode_into(store, &r.bytes, buf) {
        Ok(()) => {
            p.ingest(SourceId(r.source), buf, proc_now);
            (true, next_ids)
        }
        Err(_) => (false, next_ids),
    }
}

/// Runs every record through a fresh pipeline as fast as it goes.
pub fn full_speed(records: &[Record], store: &SchemaStore, cfg: &Config, batch: usize) -> FullSpeed {
    let rss_before = rss_bytes();
    let mut p = new_pipeline(cfg, records);
    let mut alerts = Vec::new();
    let mut undecodable = 0;
    let mut buf = Event::buffer();
    // Per batch: records done, time taken, shops held.
    let mut progress: Vec<(u64, Duration, usize)> = Vec::with_capacity(records.len() / batch.max(1) + 1);
    let start = Instant::now();
    for chunk in records.chunks(batch.max(1)) {
        let proc_now = start.elapsed().as_millis() as i64;
        let mut early = None;
        for (k, r) in chunk.iter().enumerate() {
            let (decoded, next_ids) = ingest(&mut p, store, (r, early.take()), chunk.get(k + 1), &mut buf, proc_now);
            early = next_ids;
            if !decoded {
                undecodable += 1;
            }
        }
        p.tick(proc_now, &mut alerts);
        p.work(&mut alerts);
        let done = progress.last().map_or(0, |l| l.0) + chunk.len() as u64;
        progress.push((done, start.elapsed(), p.engine().shop_count()));
    }
    p.finish(&mut alerts);
    let elapsed = start.elapsed();
    let shops = p.engine().shop_count();
    // 99% of the final count, in integers: `held * 100 >= shops * 99`.
    let warm_up =
        progress.iter().find(|(_, _, held)| held * 100 >= shops * 99).map_or((0, Duration::ZERO), |l| (l.0, l.1));
    let rss = rss_bytes();
    FullSpeed {
        records: records.len() as u64,
        undecodable,
        elapsed,
        stats: p.stats(),
        alerts: alerts.len(),
        shops,
        rss_growth: rss.zip(rss_before).map(|(a, b)| a.saturating_sub(b)),
        rss,
        warm_up,
    }
}

/// Feeds every record to a fresh pipeline as `schedule` has them arrive, in
/// batches of at most `batch` records that have arrived. The latency to
/// fold of the records after the warm-up is also kept apart.
pub fn paced(records: &[Record], store: &SchemaStore, cfg: &Config, batch: usize, schedule: Schedule) -> Paced {
    let mut p = new_pipeline(cfg, records);
    let (mut fold_us, mut fold_after_us, mut alert_us) = (histogram(), histogram(), histogram());
    let mut alerts = Vec::new();
    let n = records.len();
    let mut buf = Event::buffer();
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let now = start.elapsed();
        // Records 0..arrived have arrived by now.
        let arrived = schedule.arrived(now).min(n);
        if arrived <= i {
            let wait = schedule.arrival(i).saturating_sub(now);
            if wait > Duration::from_micros(200) {
                std::thread::sleep(wait - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        let end = arrived.min(i + batch.max(1));
        let proc_now = now.as_millis() as i64;
        let arrived_batch = &records[i..end];
        let mut early = None;
        for (j, r) in arrived_batch.iter().enumerate() {
            early = ingest(&mut p, store, (r, early.take()), arrived_batch.get(j + 1), &mut buf, proc_now).1;
            let waited = start.elapsed().saturating_sub(schedule.arrival(i + j)).as_micros().max(1) as u64;
            let _ = fold_us.record(waited);
            if i + j >= schedule.after {
                let _ = fold_after_us.record(waited);
            }
        }
        let before = alerts.len();
        p.tick(proc_now, &mut alerts);
        p.work(&mut alerts);
        if alerts.len() > before {
            let waited = start.elapsed().saturating_sub(schedule.arrival(i));
            for _ in before..alerts.len() {
                let _ = alert_us.record(waited.as_micros().max(1) as u64);
            }
        }
        i = end;
    }
    p.finish(&mut alerts);
    Paced { schedule, elapsed: start.elapsed(), fold_us, fold_after_us, alert_us }
}
