//! Checkpoints in a compacted Kafka topic, so that a partition that moves to
//! another host (or a host that lost its disk) restores from the cluster.
//!
//! A checkpoint can be far larger than a Kafka record, so it is written as
//! chunks of [`CHUNK_BYTES`] and then a small manifest naming them. The
//! chunks alternate between two slots per partition: a new checkpoint is
//! written into the slot the current manifest does *not* name, and the
//! manifest is replaced only once every chunk is acknowledged. A crash
//! mid-write leaves the old manifest pointing at intact chunks. Every record
//! goes to partition 0 of the topic, so a reader that sees a manifest has
//! already seen its chunks; compaction keeps the latest value of each key.
//!
//! Keys: `<group>/<partition>` (manifest, JSON) and
//! `<group>/<partition>/<slot>/<chunk>` (bytes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::Checkpoint;

pub const CHUNK_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("checkpoint topic {topic}: {cause}")]
    Kafka { topic: String, cause: String },
    #[error("checkpoint topic {topic}: partition {partition}'s checkpoint is incomplete or damaged: {cause}")]
    Damaged { topic: String, partition: i32, cause: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    slot: u8,
    chunks: u32,
    len: u64,
    crc: u32,
}

/// A checkpoint whose chunks are sent but whose manifest is not yet written.
pub struct Staged {
    partition: i32,
    manifest: Manifest,
}

/// Counts failed deliveries, so a write knows whether all of it landed.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if let Ok(mut f) = self.failed.lock() {
                *f = Some(e.to_string());
            }
        }
    }
}

/// The reader's context: end of partition is how the read ends, not an error.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !matches!(error, rdkafka::error::KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)) {
            tracing::warn!(%error, reason, "checkpoint reader error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

pub struct TopicStore {
    config: ClientConfig,
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    group: String,
    /// The slot each partition's current manifest names.
    slots: HashMap<i32, u8>,
    timeout: Duration,
}

/// Creates the checkpoint topic (one partition, compacted) when it does not exist.
pub async fn ensure_topic(config: &ClientConfig, topic: &str) -> Result<(), TopicError> {
    let err = |cause: String| TopicError::Kafka { topic: topic.to_string(), cause };
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| err(e.to_string()))?;
    let timeout = Duration::from_secs(5);
    if let Ok(md) = admin.inner().fetch_metadata(Some(topic), timeout) {
        if md.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()) {
            return Ok(());
        }
    }
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact")
        .set("max.message.bytes", "1048576");
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let results = admin.create_topics([&new], &opts).await.map_err(|e| err(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(format!("cannot create it: {code}"))),
        }
    }
    Ok(())
}

impl TopicStore {
    /// `producer` and `consumer`: client settings for writing and reading.
    pub fn new(
        producer: &ClientConfig,
        consumer: &ClientConfig,
        topic: &str,
        group: &str,
    ) -> Result<TopicStore, TopicError> {
        let producer = producer
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.max.bytes", "1048576")
            .create_with_context(Deliveries::default())
            .map_err(|e| TopicError::Kafka { topic: topic.to_string(), cause: e.to_string() })?;
        Ok(TopicStore {
            config: consumer.clone(),
            producer,
            topic: topic.to_string(),
            group: group.to_string(),
            slots: HashMap::new(),
            timeout: Duration::from_secs(30),
        })
    }

    fn kafka_err(&self, cause: impl ToString) -> TopicError {
        TopicError::Kafka { topic: self.topic.clone(), cause: cause.to_string() }
    }

    /// Sends the chunks of `partition`'s checkpoint without waiting; it takes
    /// effect once [`publish`](Self::publish)ed. Staging every partition of a
    /// round and publishing them together waits for the broker twice per
    /// round instead of twice per partition.
    pub fn stage(&mut self, partition: i32, bytes: &[u8]) -> Result<Staged, TopicError> {
        let slot = 1 - self.slots.get(&partition).copied().unwrap_or(1);
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("{}/{}/{}/{}", self.group, partition, slot, i);
            self.send(&key, chunk)?;
        }
        let manifest =
            Manifest { slot, chunks: chunks.len() as u32, len: bytes.len() as u64, crc: crc32fast::hash(bytes) };
        Ok(Staged { partition, manifest })
    }

    /// Waits until every staged chunk is acknowledged, then writes the
    /// manifests that make the new checkpoints current.
    pub fn publish(&mut self, staged: Vec<Staged>) -> Result<(), TopicError> {
        self.settle()?;
        for s in &staged {
            let value = serde_json::to_vec(&s.manifest).expect("manifest serializes");
            self.send(&format!("{}/{}", self.group, s.partition), &value)?;
        }
        self.settle()?;
        for s in staged {
            self.slots.insert(s.partition, s.manifest.slot);
        }
        Ok(())
    }

    fn send(&self, key: &str, value: &[u8]) -> Result<(), TopicError> {
        let mut record = BaseRecord::to(&self.topic).key(key).payload(value).partition(0);
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) if Instant::now() < deadline => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(self.kafka_err(e)),
            }
        }
    }

    /// Waits for outstanding records; an error if any failed.
    fn settle(&self) -> Result<(), TopicError> {
        self.producer.flush(self.timeout).map_err(|e| self.kafka_err(format!("not acknowledged in time: {e}")))?;
        match self.producer.context().failed.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => Err(self.kafka_err(format!("write failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Reads the topic to its end and returns the latest checkpoint of each
    /// of `partitions` that has one. A damaged checkpoint is an error for
    /// that partition only.
    pub fn read(&mut self, partitions: &[i32]) -> Result<HashMap<i32, Result<Checkpoint, TopicError>>, TopicError> {
        let consumer: BaseConsumer<QuietEof> = self
            .config
            .clone()
            .set("group.id", format!("{}-checkpoint-reader", self.group))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create_with_context(QuietEof)
            .map_err(|e| self.kafka_err(e))?;
        let (low, high) = consumer.fetch_watermarks(&self.topic, 0, self.timeout).map_err(|e| self.kafka_err(e))?;
        let wanted: HashMap<String, i32> = partitions.iter().map(|p| (format!("{}/{}", self.group, p), *p)).collect();
        let mut manifests: HashMap<i32, Manifest> = HashMap::new();
        let mut chunks: HashMap<String, Vec<u8>> = HashMap::new();
        if high > low {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, 0, Offset::Beginning).map_err(|e| self.kafka_err(e))?;
            consumer.assign(&tpl).map_err(|e| self.kafka_err(e))?;
            let deadline = Instant::now() + self.timeout;
            let mut next = low;
            // To the end of the log as the fetches report it, and at least to
            // the high watermark read above (some brokers report a high
            // watermark short of the last batch's end: the end-of-partition
            // event is what counts).
            loop {
                if Instant::now() > deadline {
                    return Err(self.kafka_err(format!("read stopped at offset {next} of {high}: timed out")));
                }
                let msg = match consumer.poll(Duration::from_millis(200)) {
                    None => continue,
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) if next >= high => break,
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => continue,
                    Some(Err(e)) => return Err(self.kafka_err(e)),
                    Some(Ok(msg)) => msg,
                };
                next = msg.offset() + 1;
                let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                if let Some(&p) = wanted.get(key) {
                    match msg.payload().map(serde_json::from_slice::<Manifest>) {
                        Some(Ok(m)) => {
                            manifests.insert(p, m);
                        }
                        _ => {
                            manifests.remove(&p);
                        }
                    }
                } else if let Some(prefix) = key.rsplitn(3, '/').nth(2) {
                    if wanted.contains_key(prefix) {
                        chunks.insert(key.to_string(), msg.payload().unwrap_or(&[]).to_vec());
                    }
                }
            }
        }
        let mut out = HashMap::new();
        for (p, m) in manifests {
            self.slots.insert(p, m.slot);
            out.insert(p, self.assemble(p, &m, &chunks));
        }
        Ok(out)
    }

    fn assemble(&self, p: i32, m: &Manifest, chunks: &HashMap<String, Vec<u8>>) -> Result<Checkpoint, TopicError> {
        let damaged = |cause: String| TopicError::Damaged { topic: self.topic.clone(), partition: p, cause };
        let mut bytes = Vec::with_capacity(m.len as usize);
        for i in 0..m.chunks {
            let key = format!("{}/{}/{}/{}", self.group, p, m.slot, i);
            let chunk = chunks.get(&key).ok_or_else(|| damaged(format!("chunk {key} is missing")))?;
            bytes.extend_from_slice(chunk);
        }
        if bytes.len() as u64 != m.len || crc32fast::hash(&bytes) != m.crc {
            return Err(damaged("chunks do not match the manifest (length or CRC-32)".into()));
        }
        Checkpoint::decode(&bytes).map_err(|e| damaged(e.to_string()))
    }
}
