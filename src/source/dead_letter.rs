//! The dead-letter topic: a record that cannot be folded (undecodable, too
//! late, too far in the future) is written there unchanged, with headers
//! saying why and where it came from, so nothing is lost and it can be
//! replayed once the cause is fixed.
//!
//! Headers: `peakguard.reason` (the bounded reason label), `peakguard.source.topic`,
//! `peakguard.source.partition`, `peakguard.source.offset`, `peakguard.error`.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message};
use tracing::warn;

use crate::metrics::Metrics;

pub struct DeadLetters {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl DeadLetters {
    pub fn new(config: &ClientConfig, topic: &str) -> Result<DeadLetters, KafkaError> {
        let producer = config.clone().set("linger.ms", "20").create()?;
        Ok(DeadLetters { producer, topic: topic.to_string() })
    }

    /// Writes `msg` with its reason. Waits up to a second while the producer
    /// queue is full (back-pressure on the worker rather than loss).
    pub fn send(&self, msg: &BorrowedMessage<'_>, reason: &'static str, error: &str, metrics: &Metrics) {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "peakguard.reason", value: Some(reason) })
            .insert(Header { key: "peakguard.source.topic", value: Some(msg.topic()) })
            .insert(Header { key: "peakguard.source.partition", value: Some(&partition) })
            .insert(Header { key: "peakguard.source.offset", value: Some(&offset) })
            .insert(Header { key: "peakguard.error", value: Some(error) });
        let mut record = BaseRecord::to(&self.topic).payload(msg.payload().unwrap_or(&[])).headers(headers);
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        let mut record = Some(record);
        for _ in 0..100 {
            match self.producer.send(record.take().expect("record present")) {
                Ok(()) => {
                    metrics.dead_letters.with_label_values(&[reason]).inc();
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = Some(r);
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    warn!(error = %e, reason, "cannot write to the dead-letter topic");
                    return;
                }
            }
        }
        warn!(reason, "dead-letter queue stayed full for 1s; record not dead-lettered");
    }

    /// Waits for queued records to be written.
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}
