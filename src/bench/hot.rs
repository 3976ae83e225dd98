//! The whole in-process hot path on one thread: Confluent-framed Avro bytes
//! in, alerts out (decode, fold, rules), batched like the Kafka worker
//! (rules tick after every batch, and visit at most
//! [`VISIT_BUDGET`] shops a batch).
//!
//! * [`full_speed`]: as fast as it goes; events/s, and resident memory of
//!   the state it built.
//! * [`paced`]: records arrive on an open-loop schedule at a fixed rate
//!   (record `i` arrives at `i / rate` s); a record that arrives while the
//!   processor is busy waits, and that wait counts. Latency from arrival to
//!   fold per record, and from arrival to alert for every alert, measured
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
}

/// What a paced run measured.
pub struct Paced {
    /// Records per second offered.
    pub rate: f64,
    pub elapsed: Duration,
    /// Arrival -> folded, microseconds.
    pub fold_us: Histogram<u64>,
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
    }
    p.finish(&mut alerts);
    let elapsed = start.elapsed();
    let rss = rss_bytes();
    FullSpeed {
        records: records.len() as u64,
        undecodable,
        elapsed,
        stats: p.stats(),
        alerts: alerts.len(),
        shops: p.engine().shop_count(),
        rss_growth: rss.zip(rss_before).map(|(a, b)| a.saturating_sub(b)),
        rss,
    }
}

/// Feeds every record to a fresh pipeline at `rate` records/s, in batches of
/// at most `batch` records that have arrived.
pub fn paced(records: &[Record], store: &SchemaStore, cfg: &Config, batch: usize, rate: f64) -> Paced {
    let mut p = new_pipeline(cfg, records);
    let (mut fold_us, mut alert_us) = (histogram(), histogram());
    let mut alerts = Vec::new();
    let ns_per_record = 1e9 / rate.max(1.0);
    let arrival = |i: usize| Duration::from_nanos((i as f64 * ns_per_record) as u64);
    let n = records.len();
    let mut buf = Event::buffer();
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let now = start.elapsed();
        // Records 0..arrived have arrived by now.
        let arrived = ((now.as_nanos() as f64 / ns_per_record) as usize + 1).min(n);
        if arrived <= i {
            let wait = arrival(i).saturating_sub(now);
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
            let waited = start.elapsed().saturating_sub(arrival(i + j));
            let _ = fold_us.record(waited.as_micros().max(1) as u64);
        }
        let before = alerts.len();
        p.tick(proc_now, &mut alerts);
        p.work(&mut alerts);
        if alerts.len() > before {
            let waited = start.elapsed().saturating_sub(arrival(i));
            for _ in before..alerts.len() {
                let _ = alert_us.record(waited.as_micros().max(1) as u64);
            }
        }
        i = end;
    }
    p.finish(&mut alerts);
    Paced { rate, elapsed: start.elapsed(), fold_us, alert_us }
}
