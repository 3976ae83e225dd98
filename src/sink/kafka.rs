//! The Kafka alerts sink: each alert transition as one JSON message (the
//! [`Alert`] serialization, documented in README.md) on the alerts topic,
//! keyed by fingerprint so a compacted topic keeps each alert's latest state.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::warn;

use crate::rules::Alert;

pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
}

impl KafkaSink {
    pub fn new(config: &rdkafka::ClientConfig, topic: &str) -> Result<KafkaSink, KafkaError> {
        let producer = config.clone().set("enable.idempotence", "true").set("linger.ms", "5").create()?;
        Ok(KafkaSink { producer, topic: topic.to_string() })
    }

    /// Delivers one alert, retrying with backoff for about a minute.
    /// Returns false if it could not be delivered.
    pub async fn deliver(&self, alert: &Alert) -> bool {
        let payload = match serde_json::to_vec(alert) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot serialize alert");
                return false;
            }
        };
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=8 {
            let record = FutureRecord::to(&self.topic).key(&alert.fingerprint).payload(&payload);
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => return true,
                Err((e, _)) => {
                    warn!(error = %e, attempt, topic = %self.topic, fingerprint = %alert.fingerprint, "alert delivery to Kafka failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        false
    }
}
