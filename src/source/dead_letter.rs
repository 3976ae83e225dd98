//! The dead-letter topic: a record that cannot be folded (undecodable, too
//! late, too far in the future) is written there unchanged, with headers
//! saying why and where it came from, so nothing is lost and it can be
//! replayed once the cause is fixed.
//!
//! Headers: `peakguard.reason` (the bounded reason label), `peakguard.source.topic`,
//! `peakguard.source.partition`, `peakguard.source.offset`, `peakguard.error`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message};
use tracing::warn;

use crate::metrics::Metrics;

/// Counts deliveries: `peakguard_dead_letters_total{reason}` only once the
/// broker has the record, failures otherwise.
struct Deliveries {
    delivered: prometheus::IntCounterVec,
    failed: prometheus::IntCounter,
    /// Failures not yet seen by [`DeadLetters::flush`].
    unreported: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<&'static str>;
    fn delivery(&self, result: &DeliveryResult<'_>, reason: Box<&'static str>) {
        match result {
            Ok(_) => self.delivered.with_label_values(&[*reason]).inc(),
            Err((e, _)) => {
                self.failed.inc();
                self.unreported.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, reason = *reason, "dead-letter record not delivered");
            }
        }
    }
}

pub struct DeadLetters {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
}

/// Why dead letters are not known to be safe (see [`DeadLetters::flush`]).
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter records still queued after {0:?}")]
    Timeout(Duration),
    #[error("{0} dead-letter record(s) could not be delivered")]
    Failed(u64),
}

impl DeadLetters {
    pub fn new(config: &ClientConfig, topic: &str, metrics: &Metrics) -> Result<DeadLetters, KafkaError> {
        let context = Deliveries {
            delivered: metrics.dead_letters.clone(),
            failed: metrics.dead_letter_failures.clone(),
            unreported: AtomicU64::new(0),
        };
        let producer = config
            .clone()
            .set("linger.ms", "20")
            // Retried by librdkafka without reordering or duplicates.
            .set("enable.idempotence", "true")
            .create_with_context(context)?;
        Ok(DeadLetters { producer, topic: topic.to_string() })
    }

    /// Queues `msg` with its reason. While the producer queue is full (the
    /// broker is slow or away) the worker waits: back-pressure, never loss.
    pub fn send(&self, msg: &BorrowedMessage<'_>, reason: &'static str, error: &str) {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "peakguard.reason", value: Some(reason) })
            .insert(Header { key: "peakguard.source.topic", value: Some(msg.topic()) })
            .insert(Header { key: "peakguard.source.partition", value: Some(&partition) })
            .insert(Header { key: "peakguard.source.offset", value: Some(&offset) })
            .insert(Header { key: "peakguard.error", value: Some(error) });
        let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new(reason))
            .payload(msg.payload().unwrap_or(&[]))
            .headers(headers);
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        let mut last_warning = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    if last_warning.elapsed() >= Duration::from_secs(5) {
                        last_warning = Instant::now();
                        warn!(topic = %self.topic, "dead-letter queue full; the worker waits for the broker");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    // Not retriable (a record over message.max.bytes, an
                    // unknown topic): counted as a failure, and the next
                    // checkpoint is skipped so the record is read again.
                    self.producer.context().failed.inc();
                    self.producer.context().unreported.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, reason, "cannot write to the dead-letter topic");
                    return;
                }
            }
        }
    }

    /// Waits for queued records to be written. An error when some are still
    /// queued, or some failed since the last call: a checkpoint must not then
    /// move past their source records.
    pub fn flush(&self, timeout: Duration) -> Result<(), DeadLetterError> {
        let flushed = self.producer.flush(timeout);
        let failed = self.producer.context().unreported.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(DeadLetterError::Failed(failed));
        }
        flushed.map_err(|_| DeadLetterError::Timeout(timeout))
    }
}
