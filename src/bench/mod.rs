//! `peakguard bench`: the generator (or a recorded file) and the processor
//! end to end, with the figures an operator sizes a deployment by.
//!
//! The workload is built first and encoded as Confluent-framed Avro, as it
//! arrives from Kafka, so neither generating nor encoding is timed. Then:
//!
//! * [`hot`]: in-process, the whole hot path (decode, fold, rules) on one
//!   thread. One run at full speed gives events/s and resident memory; a
//!   second run, fed at a fraction of that rate by an open-loop arrival
//!   schedule, gives the latency from an event's arrival to its fold and to
//!   the alerts it lets fire.
//! * [`broker`]: against a broker (librdkafka's in-process cluster, or
//!   `--brokers`): the records are produced to the topics, then read by a
//!   raw rdkafka consume loop and by `peakguard run` (the real worker) in the
//!   same run, and the ratio of their rates is reported.

pub mod broker;
pub mod hot;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::codec::SchemaStore;
use crate::config::Config;
use crate::event::{Event, EventKind};
use crate::generator::{Generator, GeneratorConfig};

/// Where the events come from.
#[derive(Clone, Debug)]
pub enum Workload {
    /// The synthetic peak-sale generator (with its injected spike). With
    /// `every_shop`, every shop also pays one order in the first ten
    /// minutes, so all `shops` are held (Zipf popularity alone leaves most
    /// of a million shops unseen within an hour).
    Generator { traffic: GeneratorConfig, every_shop: bool },
    /// A recorded file (NDJSON or an Avro container file, as `replay` reads).
    File(PathBuf),
}

/// One encoded record, as a consumer would read it.
pub struct Record {
    pub kind: EventKind,
    /// The partition (of any topic) an in-process run reads it from: 0,
    /// or one per (kind, partition) after [`interleave`]; each is its own
    /// watermark source, as in the worker.
    pub source: u32,
    pub key: Box<str>,
    /// A slice of one buffer that holds the records one after the other in
    /// the order a run reads them (see [`pack`]).
    pub bytes: Bytes,
}

/// The records' bytes copied one after the other into one buffer, in the
/// order of `records`: as a consumer finds them in a fetched batch. A
/// separate allocation per record left them scattered over the heap, and
/// the hot path then waited on a cache miss to read each record's first
/// byte (31% of the time of reading and prefetching a record, `perf`), a
/// cost the worker does not pay.
pub fn pack(mut records: Vec<Record>) -> Vec<Record> {
    let mut arena = Vec::with_capacity(records.iter().map(|r| r.bytes.len()).sum());
    let ends: Vec<usize> = records
        .iter()
        .map(|r| {
            arena.extend_from_slice(&r.bytes);
            arena.len()
        })
        .collect();
    slice_out(&mut records, arena, ends);
    records
}

/// Gives each record its slice of `arena`, which holds their bytes one after
/// the other, record `i`'s ending at `ends[i]`.
fn slice_out(records: &mut [Record], arena: Vec<u8>, ends: Vec<usize>) {
    let arena = Bytes::from(arena);
    let mut start = 0;
    for (r, end) in records.iter_mut().zip(ends) {
        r.bytes = arena.slice(start..end);
        start = end;
    }
}

/// Records a partition hands over per turn in [`interleave`] (about what a
/// fetch response of one partition holds).
const INTERLEAVE_CHUNK: usize = 500;

/// Every shop's first order falls in this span after the start.
const WARM_UP_MS: i64 = 10 * 60_000;

/// One paid order of the shop at popularity `rank`.
fn warm_order(rank: usize, t: crate::event::Millis) -> Event {
    use crate::event::{EventBody, Money, OrderStep};
    Event {
        event_id: format!("warm-{rank}"),
        shop_id: crate::generator::shop_id(rank),
        order_id: format!("warm-order-{rank}"),
        sub_order_id: None,
        event_time: t,
        category: crate::generator::category_of(rank).to_string(),
        body: EventBody::Order {
            step: OrderStep::Paid,
            cancelled_by: None,
            money: Money { amount_minor: 9_900, currency: *b"CNY" },
        },
    }
}

/// The workload, encoded.
pub struct Records {
    pub records: Vec<Record>,
    /// Distinct shops in the workload.
    pub shops: usize,
    /// Records of the file that did not decode (skipped).
    pub skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot read {path}: {cause}")]
    Input { path: PathBuf, cause: std::io::Error },
    #[error("the workload is empty: no event to process")]
    Empty,
    #[error("{0}")]
    Broker(String),
}

/// Builds and encodes the workload.
pub fn build(workload: &Workload, store: &SchemaStore) -> Result<Records, BenchError> {
    let mut shops = std::collections::HashSet::new();
    let mut records = Vec::new();
    let mut skipped = 0;
    // Encoded straight into one buffer (see [`pack`]); the records get their
    // slices of it at the end.
    let mut arena = Vec::new();
    let mut ends = Vec::new();
    let mut push = |e: &Event, records: &mut Vec<Record>| match store.encode(e) {
        Ok(bytes) => {
            if !shops.contains(e.shop_id.as_str()) {
                shops.insert(e.shop_id.clone());
            }
            arena.extend_from_slice(&bytes);
            ends.push(arena.len());
            records.push(Record { kind: e.kind(), source: 0, key: e.shop_id.as_str().into(), bytes: Bytes::new() });
            true
        }
        Err(_) => false,
    };
    match workload {
        Workload::Generator { traffic, every_shop } => {
            let mut generator = Generator::new(traffic.clone());
            let mut events = Vec::new();
            let warm_shops = if *every_shop { traffic.shops } else { 0 };
            let warm_span = WARM_UP_MS.min(traffic.duration_ms).max(1);
            let warm_time = |rank: usize| traffic.start + (rank as i64 * warm_span) / warm_shops.max(1) as i64;
            let mut rank = 0;
            while generator.next_second(&mut events) {
                let second_end = events.last().map_or(generator.now(), |e| e.event_time + 1);
                while rank < warm_shops && warm_time(rank) < second_end {
                    push(&warm_order(rank, warm_time(rank)), &mut records);
                    rank += 1;
                }
                for e in events.drain(..) {
                    push(&e, &mut records);
                }
            }
            while rank < warm_shops {
                push(&warm_order(rank, warm_time(rank)), &mut records);
                rank += 1;
            }
        }
        Workload::File(path) => {
            let input = |cause| BenchError::Input { path: path.clone(), cause };
            let file = std::fs::File::open(path).map_err(input)?;
            for record in crate::source::replay::records(std::io::BufReader::new(file)).map_err(input)? {
                match record.map_err(input)? {
                    Some(Ok(e)) if push(&e, &mut records) => {}
                    Some(_) => skipped += 1,
                    None => {}
                }
            }
        }
    }
    if records.is_empty() {
        return Err(BenchError::Empty);
    }
    slice_out(&mut records, arena, ends);
    Ok(Records { records, shops: shops.len(), skipped })
}

/// Reorders `records` the way one consumer of `partitions` partitions (per
/// topic) reads a backlog: each record goes to a partition by its kind and
/// key, and partitions hand over `chunk` records at a time in turn, so
/// event time jumps back and forth between chunks. Order within a partition
/// is kept; each record's `source` becomes its partition, so the watermark
/// is the slowest partition's, as in the worker.
pub fn interleave(records: Vec<Record>, partitions: usize, chunk: usize) -> Vec<Record> {
    use std::hash::{Hash, Hasher};
    let partitions = partitions.max(1);
    let mut queues: Vec<std::collections::VecDeque<Record>> = Vec::new();
    queues.resize_with(partitions * 8, Default::default);
    for r in records {
        let mut h = rustc_hash::FxHasher::default();
        r.key.hash(&mut h);
        let q = (r.kind as usize) * partitions + (h.finish() as usize % partitions);
        queues[q].push_back(Record { source: q as u32, ..r });
    }
    let mut out = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        for q in queues.iter_mut() {
            for _ in 0..chunk.min(q.len()) {
                out.extend(q.pop_front());
            }
        }
    }
    out
}

/// What `peakguard bench` runs.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub workload: Workload,
    /// Records per batch: rules tick after each.
    pub batch: usize,
    /// Offered load of the latency run, as a fraction of the maximum rate.
    pub load: f64,
    /// Against a broker too: `Some(None)` for the in-process cluster,
    /// `Some(Some(bootstrap servers))` for a real one.
    pub broker: Option<Option<String>>,
    /// Partitions per event topic on the broker.
    pub partitions: i32,
    /// Workers of the scaling run against the broker (1: none).
    pub workers: usize,
    /// In-process runs read the records as one consumer of this many
    /// partitions per topic would (see [`interleave`]); 0: event-time order.
    pub interleave: usize,
}

/// Runs every part of the bench; returns the report. Progress goes to stderr.
pub async fn run(opts: BenchOptions, cfg: Config, store: Arc<SchemaStore>) -> Result<String, BenchError> {
    eprintln!("building the workload ...");
    let records = build(&opts.workload, &store)?;
    if let Some(None) = opts.broker {
        broker::fits_in_process(&records.records, opts.partitions)?;
    }
    let mut out = describe(&records, &cfg);
    let _ = writeln!(out, "batch {} records; load of the latency run {:.0}%", opts.batch, opts.load * 100.0);
    let records = Arc::new(records.records);
    // The broker part produces in event-time order; the in-process runs may
    // read as a consumer of many partitions would.
    let in_process = if opts.interleave > 0 {
        let _ = writeln!(
            out,
            "in-process order: as one consumer of {} partitions per topic reads a backlog ({INTERLEAVE_CHUNK} records a turn)",
            opts.interleave
        );
        let shuffled: Vec<Record> = records
            .iter()
            .map(|r| Record { kind: r.kind, source: 0, key: r.key.clone(), bytes: r.bytes.clone() })
            .collect();
        Arc::new(pack(interleave(shuffled, opts.interleave, INTERLEAVE_CHUNK)))
    } else {
        records.clone()
    };

    eprintln!("in-process, full speed ...");
    let (r, s, c, batch) = (in_process.clone(), store.clone(), cfg.clone(), opts.batch);
    let full = tokio::task::spawn_blocking(move || hot::full_speed(&r, &s, &c, batch))
        .await
        .map_err(|e| BenchError::Broker(format!("the bench thread failed: {e}")))?;
    let max_rate = rate(full.records, full.elapsed);
    let _ = writeln!(out, "\nin-process hot path (decode + fold + rules, one thread):");
    let _ = writeln!(
        out,
        "  throughput   {:.0} events/s ({} records in {:.2} s; {} folded, {} undecodable, {} alerts)",
        max_rate,
        full.records,
        full.elapsed.as_secs_f64(),
        full.stats.folded,
        full.undecodable,
        full.alerts
    );
    let (after_records, after_elapsed) = full.after_warm_up();
    let _ = writeln!(
        out,
        "  warm-up      {:.0} events/s over the first {} records (until 99% of the shops were held); {:.0} events/s after",
        rate(full.warm_up.0, full.warm_up.1),
        full.warm_up.0,
        rate(after_records, after_elapsed)
    );
    if let (Some(rss), Some(growth)) = (full.rss, full.rss_growth) {
        let _ = writeln!(
            out,
            "  memory       {} resident; {} for {} shops held: {} bytes/shop (state, dedup and pending lists)",
            mib(rss),
            mib(growth),
            full.shops,
            growth / full.shops.max(1) as u64
        );
    }

    // Each part of the run at the same fraction of what it took at full speed.
    let load = opts.load.clamp(0.01, 1.0);
    let schedule = hot::Schedule {
        after: full.warm_up.0 as usize,
        warm_rate: rate(full.warm_up.0, full.warm_up.1) * load,
        rate: if after_records > 0 { rate(after_records, after_elapsed) * load } else { max_rate * load },
    };
    eprintln!("in-process, paced at {:.0} events/s, then {:.0} ...", schedule.warm_rate, schedule.rate);
    let (r, s, c) = (in_process.clone(), store.clone(), cfg.clone());
    drop(in_process);
    let paced = tokio::task::spawn_blocking(move || hot::paced(&r, &s, &c, batch, schedule))
        .await
        .map_err(|e| BenchError::Broker(format!("the bench thread failed: {e}")))?;
    let _ = writeln!(
        out,
        "  latency at {:.0}% load: {:.0} events/s offered in the warm-up, {:.0} after ({:.2} s):",
        load * 100.0,
        paced.schedule.warm_rate,
        paced.schedule.rate,
        paced.elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "    arrival -> fold   {}", percentiles(&paced.fold_us));
    let _ = writeln!(out, "      after warm-up   {}", percentiles(&paced.fold_after_us));
    let _ = writeln!(out, "    arrival -> alert  {}", percentiles(&paced.alert_us));

    if let Some(brokers) = opts.broker {
        eprintln!("against a broker ...");
        let b = broker::run(records.clone(), store, cfg, brokers, opts.partitions, opts.workers).await?;
        let _ = writeln!(out, "\nagainst a broker ({}, {} partitions per topic):", b.brokers, b.partitions);
        let _ = writeln!(out, "  produced     {} records in {:.2} s", b.produced, b.produce_elapsed.as_secs_f64());
        let _ = writeln!(
            out,
            "  raw consume  {:.0} records/s ({} read in {:.2} s; {:.2} s with the group join)",
            b.raw_rate(),
            b.raw_records,
            b.raw_reading.as_secs_f64(),
            b.raw_elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  peakguard    {:.0} records/s ({} read in {:.2} s; {:.2} s with the group join; {} folded, {} alerts)",
            b.peakguard_rate(),
            b.peakguard_records,
            b.peakguard_reading.as_secs_f64(),
            b.peakguard_elapsed.as_secs_f64(),
            b.folded,
            b.alerts
        );
        let _ =
            writeln!(out, "  ratio        {:.1}% of the raw consume rate", 100.0 * b.peakguard_rate() / b.raw_rate());
        for w in &b.scaling {
            let _ = writeln!(
                out,
                "  {} workers    {:.0} records/s ({} read in {:.2} s): {:.2}x one worker",
                w.workers,
                w.rate(),
                w.records,
                w.reading.as_secs_f64(),
                w.rate() / b.peakguard_rate()
            );
        }
    }
    Ok(out)
}

/// Resident memory of this process (Linux `VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A latency histogram in microseconds, 1 us to 1 h, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// `p50 / p99 / p99.9 / max` of a histogram in microseconds, in ms.
pub fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms ({} samples)",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

/// Events per second.
pub fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Human-readable bytes.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The report's header: what ran.
pub fn describe(records: &Records, cfg: &Config) -> String {
    let mut out = String::new();
    let windows: Vec<&str> = cfg.engine.windows.iter().map(|w| w.name.as_str()).collect();
    let _ = writeln!(
        out,
        "workload: {} records, {} shops ({} skipped); windows {}; {} rules",
        records.records.len(),
        records.shops,
        records.skipped,
        windows.join(", "),
        cfg.rules.len()
    );
    // Sized tables change the warm-up and its latency most (BENCHMARKS.md).
    let _ = match cfg.engine.expected_shops {
        0 => writeln!(out, "shop tables: grow as shops arrive (engine.expected_shops not set)"),
        n => writeln!(out, "shop tables: sized at start for {n} shops (engine.expected_shops)"),
    };
    out
}
