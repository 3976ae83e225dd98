//! `peakguard bench --broker`: the workload against a broker, and the ratio
//! of peakguard's rate to a raw rdkafka consume loop's on the same broker in
//! the same run.
//!
//! Topics are new for every run (`peakguard-bench-<pid>-<time>.<kind>`), so a
//! real cluster's old data never counts. Both readers use the same client
//! settings (`[kafka] properties` of the config), their own consumer group,
//! and read every topic from the start to the end. peakguard runs the real
//! worker (`peakguard run --exit-when-caught-up`: decode, fold, rules, alert
//! sinks, dead letters) with checkpoints off, so the figure is the read path
//! and not the checkpoint writer. Rates are taken from the first record read
//! to the last, so the group join (seconds, and the same for both) does not
//! flatter a small workload's ratio; the totals are reported too.
//!
//! With `--workers N`, one process with `kafka.workers = N` then reads the
//! same topics again (N worker threads, each its own consumer in one new
//! group, and the scope merge), for the scaling ratio against one worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use tokio_util::sync::CancellationToken;

use super::{BenchError, Record};
use crate::codec::SchemaStore;
use crate::config::Config;
use crate::event::EventKind;
use crate::runtime::{self, RunOptions};
use crate::source::kafka::{client_config, producer_config};
use crate::source::WorkerOptions;

/// librdkafka's in-process cluster keeps at most this many records per
/// partition (rdkafka_mock.c) and drops older ones beyond it.
const MOCK_PARTITION_RECORDS: usize = 100_000;

pub struct BrokerReport {
    pub brokers: String,
    pub partitions: i32,
    pub produced: u64,
    pub produce_elapsed: Duration,
    pub raw_records: u64,
    pub raw_elapsed: Duration,
    /// First record to last.
    pub raw_reading: Duration,
    pub peakguard_records: u64,
    pub peakguard_elapsed: Duration,
    pub peakguard_reading: Duration,
    pub folded: u64,
    pub alerts: usize,
    /// With more than one worker: the same read by that many at once.
    pub scaling: Vec<Workers>,
}

impl BrokerReport {
    /// Records per second from the first record read to the last.
    pub fn raw_rate(&self) -> f64 {
        super::rate(self.raw_records, self.raw_reading)
    }

    pub fn peakguard_rate(&self) -> f64 {
        super::rate(self.peakguard_records, self.peakguard_reading)
    }
}

fn kafka(what: &str) -> impl Fn(KafkaError) -> BenchError + '_ {
    move |e| BenchError::Broker(format!("{what}: {e}"))
}

/// Produces `records`, then times the raw loop and peakguard over them.
/// `brokers`: a cluster's bootstrap servers, or `None` for librdkafka's
/// in-process cluster.
pub async fn run(
    records: Arc<Vec<Record>>,
    store: Arc<SchemaStore>,
    mut cfg: Config,
    brokers: Option<String>,
    partitions: i32,
    workers: usize,
) -> Result<BrokerReport, BenchError> {
    let prefix = format!(
        "peakguard-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    );
    let topic = |kind: EventKind| format!("{prefix}.{}", crate::demo::topic_of(kind).trim_start_matches("peakguard."));
    let topics: Vec<String> = EventKind::ALL.iter().map(|k| topic(*k)).collect();
    let mut cluster = None;
    match brokers {
        Some(b) => cfg.kafka.brokers = b,
        None => {
            fits_in_process(&records, partitions)?;
            let c = MockCluster::new(1).map_err(kafka("cannot start librdkafka's in-process cluster"))?;
            cfg.kafka.brokers = c.bootstrap_servers();
            cluster = Some(c);
        }
    }
    cfg.kafka.topics = topics.clone();
    cfg.kafka.group_id = format!("{prefix}-peakguard");
    cfg.kafka.alerts_topic = format!("{prefix}.alerts");
    cfg.kafka.dead_letter_topic = format!("{prefix}.dead-letter");
    cfg.kafka.repartition.clear();
    cfg.checkpoint.topic.clear();
    cfg.checkpoint.dir = None;
    let mut all = topics.clone();
    all.extend([cfg.kafka.alerts_topic.clone(), cfg.kafka.dead_letter_topic.clone()]);
    match &cluster {
        // The in-process cluster does not answer CreateTopics requests.
        Some(c) => {
            for t in &all {
                let n = if topics.contains(t) { partitions } else { 1 };
                c.create_topic(t, n, 1).map_err(kafka("cannot create a bench topic"))?;
            }
        }
        None => create_topics(&cfg, &all, &topics, partitions).await?,
    }

    let started = Instant::now();
    let produced = produce(&cfg, &records, &topic)?;
    let produce_elapsed = started.elapsed();
    let _keep_cluster_alive = &cluster;
    if cluster.is_some() {
        // `fits_in_process` estimates; this knows. Without it the raw loop
        // would wait its 10 minutes for records that are gone.
        all_kept(&cfg, &topics, partitions)?;
    }

    let raw_cfg = cfg.clone();
    let expected = produced;
    let (raw_records, raw_elapsed, raw_reading) = tokio::task::spawn_blocking(move || raw_loop(&raw_cfg, expected))
        .await
        .map_err(|e| BenchError::Broker(format!("the raw consume loop failed: {e}")))??;

    let started = Instant::now();
    let one = peakguard_runs(&cfg, &store, 1, "1").await?;
    let peakguard_elapsed = started.elapsed();
    let mut scaling = Vec::new();
    if workers > 1 {
        scaling.push(peakguard_runs(&cfg, &store, workers, &workers.to_string()).await?);
    }
    Ok(BrokerReport {
        brokers: cfg.kafka.brokers.clone(),
        partitions,
        produced,
        produce_elapsed,
        raw_records,
        raw_elapsed,
        raw_reading,
        peakguard_records: one.records,
        peakguard_elapsed,
        peakguard_reading: one.reading,
        folded: one.folded,
        alerts: one.alerts,
        scaling,
    })
}

/// What `workers` concurrent peakguard workers in one group read.
pub struct Workers {
    pub workers: usize,
    /// Records read by all of them (a rebalance mid-read may read some twice).
    pub records: u64,
    pub folded: u64,
    pub alerts: usize,
    /// From the first record any of them read to the last.
    pub reading: Duration,
}

impl Workers {
    pub fn rate(&self) -> f64 {
        super::rate(self.records, self.reading)
    }
}

/// Runs one peakguard process with `workers` workers, in a new group
/// (`<group>-<tag>`), until they are caught up.
async fn peakguard_runs(
    cfg: &Config,
    store: &Arc<SchemaStore>,
    workers: usize,
    tag: &str,
) -> Result<Workers, BenchError> {
    let mut cfg = cfg.clone();
    cfg.kafka.group_id = format!("{}-{tag}", cfg.kafka.group_id);
    cfg.kafka.workers = workers;
    let opts = RunOptions {
        http: false,
        reload_from: None,
        worker: WorkerOptions { exit_when_caught_up: true, restore_alerts: false, ..WorkerOptions::default() },
    };
    let summary = runtime::run(cfg, store.clone(), CancellationToken::new(), opts, None)
        .await
        .map_err(|e| BenchError::Broker(format!("peakguard run failed: {e}")))?;
    let r = &summary.report;
    let reading = r.read_span.map_or(Duration::ZERO, |(f, l)| l - f);
    Ok(Workers { workers, records: r.records, folded: r.stats.folded, alerts: summary.alerts.len(), reading })
}

/// The in-process cluster drops a partition's oldest records beyond
/// [`MOCK_PARTITION_RECORDS`]: refuse a workload that may not fit (an
/// estimate: the busiest topic spread evenly, plus its busiest shop).
pub fn fits_in_process(records: &[Record], partitions: i32) -> Result<(), BenchError> {
    let mut per_shop: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut per_kind = [0usize; 8];
    for r in records {
        per_kind[r.kind as usize] += 1;
        if r.kind == EventKind::Order {
            *per_shop.entry(&r.key).or_default() += 1;
        }
    }
    let busiest_topic = per_kind.iter().copied().max().unwrap_or(0);
    let busiest_shop = per_shop.values().copied().max().unwrap_or(0);
    let estimate = busiest_topic / partitions.max(1) as usize + busiest_shop;
    if estimate > MOCK_PARTITION_RECORDS {
        return Err(BenchError::Broker(format!(
            "about {estimate} records on the busiest partition ({busiest_topic} on the busiest topic over \
             {partitions} partitions, {busiest_shop} for its busiest shop alone): the in-process cluster keeps \
             {MOCK_PARTITION_RECORDS} per partition; use a smaller workload (e.g. --sim-duration 10m \
             --orders-per-sec 60 --shops 20000), more --partitions, or --brokers"
        )));
    }
    Ok(())
}

async fn create_topics(
    cfg: &Config,
    all: &[String],
    event_topics: &[String],
    partitions: i32,
) -> Result<(), BenchError> {
    let admin: AdminClient<_> = producer_config(cfg).create().map_err(kafka("cannot create an admin client"))?;
    let new: Vec<NewTopic<'_>> = all
        .iter()
        .map(|t| {
            let n = if event_topics.contains(t) { partitions } else { 1 };
            NewTopic::new(t, n, TopicReplication::Fixed(1))
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new, &opts).await.map_err(kafka("cannot create the bench topics"))?;
    for r in results {
        if let Err((t, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(BenchError::Broker(format!("cannot create topic {t}: {code}")));
            }
        }
    }
    Ok(())
}

/// Produces every record to its kind's topic, keyed by shop; waits for every
/// acknowledgement.
fn produce(cfg: &Config, records: &[Record], topic: &dyn Fn(EventKind) -> String) -> Result<u64, BenchError> {
    let producer: ThreadedProducer<DefaultProducerContext> = producer_config(cfg)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("partitioner", "murmur2_random")
        .create()
        .map_err(kafka("cannot create the producer"))?;
    let names: Vec<String> = EventKind::ALL.iter().map(|k| topic(*k)).collect();
    for r in records {
        let mut record = BaseRecord::to(&names[r.kind as usize]).key(r.key.as_bytes()).payload(&r.bytes[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(BenchError::Broker(format!("cannot produce: {e}"))),
            }
        }
    }
    producer.flush(Duration::from_secs(300)).map_err(kafka("not every record was acknowledged"))?;
    Ok(records.len() as u64)
}

/// Every record produced is still on the in-process cluster: it drops a
/// partition's oldest records past its caps (records and bytes), which
/// [`fits_in_process`] can only estimate.
fn all_kept(cfg: &Config, topics: &[String], partitions: i32) -> Result<(), BenchError> {
    let consumer: BaseConsumer<Quiet> =
        client_config(cfg).create_with_context(Quiet).map_err(kafka("cannot create a client"))?;
    for t in topics {
        for p in 0..partitions {
            let (low, high) =
                consumer.fetch_watermarks(t, p, Duration::from_secs(10)).map_err(kafka("cannot read the offsets"))?;
            if low > 0 {
                return Err(BenchError::Broker(format!(
                    "the in-process cluster dropped the first {low} of {high} records of {t}/{p} (it keeps \
                     {MOCK_PARTITION_RECORDS} records or 5 MB per partition); use a smaller workload (e.g. \
                     --sim-duration 10m --orders-per-sec 60 --shops 20000), more --partitions, or --brokers"
                )));
            }
        }
    }
    Ok(())
}

/// The raw loop's client context: end-of-partition arrives as a "global
/// error" and is not one.
struct Quiet;
impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::warn!(error = %error, reason, "librdkafka error in the raw consume loop");
        }
    }
}
impl rdkafka::consumer::ConsumerContext for Quiet {}

/// A plain consume loop, the fastest a client reads these topics: every
/// record's payload is touched and nothing else is done.
/// Returns (records, subscribe to last record, first record to last).
fn raw_loop(cfg: &Config, expected: u64) -> Result<(u64, Duration, Duration), BenchError> {
    let started = Instant::now();
    let consumer: BaseConsumer<Quiet> = client_config(cfg)
        .set("group.id", format!("{}-raw", cfg.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("partition.assignment.strategy", "range")
        .create_with_context(Quiet)
        .map_err(kafka("cannot create the raw consumer"))?;
    let topics: Vec<&str> = cfg.kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(kafka("cannot subscribe"))?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    while n < expected {
        if Instant::now() > deadline {
            return Err(BenchError::Broker(format!("the raw loop read {n} of {expected} records in 10 min")));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                n += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(BenchError::Broker(format!("the raw loop failed: {e}"))),
        }
    }
    std::hint::black_box(bytes);
    let reading = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok((n, started.elapsed(), reading))
}
