//! The repartition stage: topics keyed by something other than the shop id
//! (for example refunds keyed by order id) are read by their own consumer
//! group (`<group_id>-repartition`) and each record is written, unchanged
//! and with its headers, to its target topic keyed by the shop id it
//! carries, with the partitioner the other event topics' producers use. The
//! target is one of `kafka.topics`, so a shop's records of every kind reach
//! the worker that owns the shop (as Kafka Streams' repartition topics do).
//!
//! At least once: a batch's source offsets are stored only after every
//! record of it is acknowledged by the target (idempotent producer, so
//! retries do not duplicate). A crash between the two writes a batch again;
//! the engine counts a repeated event id once (dedup).
//!
//! Records without a readable shop id go to the dead-letter topic.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::dead_letter::DeadLetters;
use super::kafka::{client_config, producer_config};
use crate::codec::{self, SchemaStore};
use crate::config::Config;
use crate::metrics::Metrics;

type Producer_ = ThreadedProducer<rdkafka::producer::DefaultProducerContext>;

/// What the stage did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepartitionReport {
    pub forwarded: u64,
    pub dead_lettered: u64,
}

/// Runs the stage for every `[[kafka.repartition]]` until `shutdown` (or,
/// with `exit_when_caught_up`, until every source partition is read to its end).
pub fn run(
    cfg: &Config,
    store: &SchemaStore,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    exit_when_caught_up: bool,
) -> Result<RepartitionReport, KafkaError> {
    let routes: HashMap<&str, &crate::config::Repartition> =
        cfg.kafka.repartition.iter().map(|r| (r.source.as_str(), r)).collect();
    let mut report = RepartitionReport::default();
    if routes.is_empty() {
        return Ok(report);
    }
    let consumer: BaseConsumer = client_config(cfg)
        .set("group.id", format!("{}-repartition", cfg.kafka.group_id))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .create()?;
    let sources: Vec<&str> = routes.keys().copied().collect();
    consumer.subscribe(&sources)?;
    // One producer per partitioner in use.
    let mut producers: HashMap<&str, Producer_> = HashMap::new();
    for r in routes.values() {
        if !producers.contains_key(r.partitioner.as_str()) {
            let p: Producer_ = producer_config(cfg)
                .set("partitioner", &r.partitioner)
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create()?;
            producers.insert(r.partitioner.as_str(), p);
        }
    }
    let dead_letters = if cfg.kafka.dead_letter_topic.is_empty() {
        None
    } else {
        Some(DeadLetters::new(&producer_config(cfg), &cfg.kafka.dead_letter_topic, metrics)?)
    };
    info!(routes = ?cfg.kafka.repartition, "repartition stage started");
    let mut at_end: HashMap<(String, i32), bool> = HashMap::new();
    while !shutdown.is_cancelled() {
        let mut batch = TopicPartitionList::new();
        let mut n = 0;
        let mut timeout = Duration::from_millis(100);
        while n < 2048 {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(msg)) => {
                    at_end.insert((msg.topic().to_string(), msg.partition()), false);
                    let route = routes[msg.topic()];
                    match shop_of(store, &msg) {
                        Ok(shop) => {
                            // Stops the stage (and the run): the batch's offsets are not stored,
                            // so a restart reads it again.
                            send(&producers[route.partitioner.as_str()], &route.target, &shop, &msg)?;
                            report.forwarded += 1;
                            metrics.repartitioned.with_label_values(&[&route.target]).inc();
                        }
                        Err(e) => {
                            if let Some(d) = &dead_letters {
                                d.send(&msg, e.reason(), &e.to_string());
                            }
                            report.dead_lettered += 1;
                        }
                    }
                    let _ = batch.add_partition_offset(
                        msg.topic(),
                        msg.partition(),
                        rdkafka::Offset::Offset(msg.offset() + 1),
                    );
                    n += 1;
                }
                // librdkafka does not say which topic reached its end; a later
                // record of another topic's partition `p` marks it unfinished
                // again (end detection serves `exit_when_caught_up` only).
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    for t in &sources {
                        at_end.insert((t.to_string(), p), true);
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, "repartition consumer error");
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        if n > 0 {
            // Offsets move on only once the batch is safe on its targets.
            let flushed = producers.values().all(|p| p.flush(Duration::from_secs(30)).is_ok())
                && dead_letters.as_ref().is_none_or(|d| d.flush(Duration::from_secs(30)).is_ok());
            if !flushed {
                return Err(KafkaError::Flush(rdkafka::types::RDKafkaErrorCode::MessageTimedOut));
            }
            if let Err(e) = consumer.store_offsets(&batch) {
                warn!(error = %e, "cannot store repartition offsets");
            }
        }
        if exit_when_caught_up && n == 0 && !at_end.is_empty() && at_end.values().all(|e| *e) {
            break;
        }
    }
    let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    info!(forwarded = report.forwarded, dead_lettered = report.dead_lettered, "repartition stage stopped");
    Ok(report)
}

/// The shop id of a record: decoded with the local schemas.
fn shop_of(store: &SchemaStore, msg: &BorrowedMessage<'_>) -> Result<String, codec::DecodeError> {
    codec::decode(store, msg.payload().unwrap_or(&[])).map(|e| e.shop_id)
}

/// Queues `msg` for `target` keyed by `shop`; an error when it cannot be
/// queued at all (not retriable: too large, unknown topic).
fn send(producer: &Producer_, target: &str, shop: &str, msg: &BorrowedMessage<'_>) -> Result<(), KafkaError> {
    let mut headers = OwnedHeaders::new();
    if let Some(h) = msg.headers() {
        for x in h.iter() {
            headers = headers.insert(Header { key: x.key, value: x.value });
        }
    }
    let mut record = BaseRecord::to(target).key(shop).payload(msg.payload().unwrap_or(&[])).headers(headers);
    if let Some(ts) = msg.timestamp().to_millis() {
        record = record.timestamp(ts);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
