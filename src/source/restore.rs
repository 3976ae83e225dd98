//! Reads the alerts topic back at start: the last record of every
//! fingerprint says whether its alert was firing when the previous run
//! stopped. The worker hands them to the pipeline's notification gate, so a
//! restart, a replayed backlog or a rebalance never pages twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::warn;

use super::kafka::client_config;
use crate::config::Config;
use crate::rules::Alert;

/// Every alert on the alerts topic, in offset order per partition (one
/// fingerprint is always on one partition: it is the key). Reads until each
/// partition's high watermark as of the start, or `timeout`. A missing topic
/// means no alerts; records that are not alerts are skipped with a warning.
pub fn read_alerts(cfg: &Config, timeout: Duration) -> Result<Vec<Alert>, KafkaError> {
    let topic = cfg.kafka.alerts_topic.as_str();
    let mut cc = client_config(cfg);
    cc.set("group.id", format!("{}-alerts-restore", cfg.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = cc.create()?;
    let deadline = Instant::now() + timeout;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(meta) = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()) else {
        return Ok(Vec::new());
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in meta.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            ends.insert(p.id(), high);
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let (mut alerts, mut skipped) = (Vec::new(), 0u64);
    while !ends.is_empty() && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else { continue };
        let msg = msg?;
        if let Some(end) = ends.get(&msg.partition()) {
            if msg.offset() + 1 >= *end {
                ends.remove(&msg.partition());
            }
        }
        match msg.payload().map(serde_json::from_slice::<Alert>) {
            Some(Ok(a)) => alerts.push(a),
            _ => skipped += 1,
        }
    }
    if !ends.is_empty() {
        warn!(topic, partitions = ?ends.keys().collect::<Vec<_>>(), "alerts topic not fully read back in time");
    }
    if skipped > 0 {
        warn!(topic, skipped, "records on the alerts topic that are not peakguard alerts were skipped");
    }
    Ok(alerts)
}
