//! `peakguard demo`: the whole system in one command, no broker to install.
//! Starts librdkafka's in-process cluster, creates the topics, runs the
//! synthetic peak-sale generator into them (paced to simulated time) while
//! the processor consumes, serves /metrics, and prints a summary at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::codec::SchemaStore;
use crate::config::Config;
use crate::event::EventKind;
use crate::generator::{Generator, GeneratorConfig};
use crate::runtime::{self, RunOptions, RunSummary};

#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Wall-clock length of the demo.
    pub duration: Duration,
    pub generator: GeneratorConfig,
    pub partitions: i32,
    pub listen: String,
}

/// Topic of each event kind in the demo (and the default config).
pub fn topic_of(kind: EventKind) -> String {
    let plural = match kind {
        EventKind::Order => "orders",
        EventKind::Shipment => "shipments",
        EventKind::Return => "returns",
        EventKind::Refund => "refunds",
        EventKind::Dispute => "disputes",
        EventKind::Chargeback => "chargebacks",
    };
    format!("peakguard.{plural}")
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start librdkafka's in-process cluster: {0}")]
    Cluster(rdkafka::error::KafkaError),
    #[error(transparent)]
    Run(#[from] runtime::RunError),
}

/// What the demo produced and processed.
pub struct DemoSummary {
    pub produced: u64,
    pub run: RunSummary,
    pub spike_shop: Option<String>,
    pub sim_start: i64,
    pub sim_end: i64,
}

/// Runs the demo; `on_listen` is told the address of /metrics once it is bound.
pub async fn run(
    opts: DemoOptions,
    shutdown: CancellationToken,
    on_listen: Option<runtime::OnListen>,
) -> Result<DemoSummary, DemoError> {
    let cluster = MockCluster::new(1).map_err(DemoError::Cluster)?;
    let mut cfg = Config::with_defaults();
    cfg.kafka.brokers = cluster.bootstrap_servers();
    cfg.http.listen = opts.listen.clone();
    for kind in EventKind::ALL {
        cluster.create_topic(&topic_of(*kind), opts.partitions, 1).map_err(DemoError::Cluster)?;
    }
    for t in [&cfg.kafka.alerts_topic, &cfg.kafka.dead_letter_topic, &cfg.checkpoint.topic] {
        cluster.create_topic(t, 1, 1).map_err(DemoError::Cluster)?;
    }
    info!(brokers = %cfg.kafka.brokers, "in-process Kafka cluster started");
    let store = Arc::new(SchemaStore::embedded());

    let generator = Generator::new(opts.generator.clone());
    let spike_shop = generator.spike_shop();
    let sim_start = opts.generator.start;
    let speed = opts.generator.duration_ms as f64 / opts.duration.as_millis().max(1) as f64;
    let brokers = cfg.kafka.brokers.clone();
    let gen_stop = shutdown.clone();
    let gen_store = store.clone();
    let producer_thread = std::thread::Builder::new()
        .name("peakguard-generator".into())
        .spawn(move || produce(generator, &brokers, &gen_store, speed, &gen_stop))
        .expect("spawn generator thread");

    // The processor stops at the deadline (or Ctrl-C).
    let stop = shutdown.clone();
    let deadline = opts.duration + Duration::from_secs(3);
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(deadline) => stop.cancel(),
            _ = stop.cancelled() => {}
        }
    });
    let run = runtime::run(cfg, store, shutdown.clone(), RunOptions { http: true, ..RunOptions::default() }, on_listen)
        .await?;
    shutdown.cancel();
    let (produced, sim_end) = producer_thread.join().unwrap_or((0, sim_start));
    drop(cluster);
    Ok(DemoSummary { produced, run, spike_shop, sim_start, sim_end })
}

/// Produces the generator's events, paced so that simulated time runs at
/// `speed` times wall-clock time, to the topics of [`topic_of`]. Returns
/// (events produced, simulated end). Also `peakguard generate --brokers`.
pub fn produce(
    mut generator: Generator,
    brokers: &str,
    store: &SchemaStore,
    speed: f64,
    stop: &CancellationToken,
) -> (u64, i64) {
    let producer: ThreadedProducer<DefaultProducerContext> = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "10")
        .set("queue.buffering.max.messages", "1000000")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "generator cannot create its producer");
            return (0, generator.now());
        }
    };
    let topics: Vec<String> = EventKind::ALL.iter().map(|k| topic_of(*k)).collect();
    let start = Instant::now();
    let sim_start = generator.now();
    let mut produced = 0u64;
    let mut events = Vec::new();
    while !stop.is_cancelled() {
        events.clear();
        if !generator.next_second(&mut events) {
            break;
        }
        for e in &events {
            let Ok(bytes) = store.encode(e) else { continue };
            let mut record = BaseRecord::to(&topics[e.kind() as usize]).key(e.shop_id.as_bytes()).payload(&bytes);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            produced += 1;
        }
        // Keep simulated time at `speed` x wall time.
        let sim_elapsed = (generator.now() - sim_start) as f64;
        let due = Duration::from_secs_f64(sim_elapsed / speed / 1000.0);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let _ = producer.flush(Duration::from_secs(10));
    (produced, generator.now())
}
