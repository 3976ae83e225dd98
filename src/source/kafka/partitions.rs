//! The worker's partitions: rebalances (assign, revoke), per-partition
//! progress, end-of-log detection, the catch-up that holds notifications
//! after an assignment, and lag metrics.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;
use tracing::{info, warn};

use super::Worker;
use crate::engine::SourceId;

pub(super) enum Change {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Records rebalances; the poll loop applies them on its own thread.
pub(super) struct RebalanceLog {
    pub(super) changes: Mutex<Vec<Change>>,
    /// Set once the worker has written its final checkpoint: the revocation
    /// that closing the consumer brings is then carried out at once (nobody
    /// polls any more to do it later).
    pub(super) closing: std::sync::atomic::AtomicBool,
}

impl ClientContext for RebalanceLog {
    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition also arrives here as a "global" error; it is not one.
        if matches!(error, KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)) {
            return;
        }
        warn!(error = %error, reason, "librdkafka error");
    }
}

impl ConsumerContext for RebalanceLog {
    /// Records the rebalance and returns without assigning or unassigning:
    /// librdkafka waits for the worker to do that, which it does once it has
    /// checkpointed what it gives up, or restored what it takes on (see
    /// `checkpoints.rs`).
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut rdkafka::TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr;
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = base_consumer.unassign();
            return;
        }
        let list = tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>();
        let change = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Change::Assigned(list),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Change::Revoked(list),
            other => {
                warn!(error = ?other, "rebalance failed; dropping the assignment");
                let _ = base_consumer.unassign();
                return;
            }
        };
        if let Ok(mut c) = self.changes.lock() {
            c.push(change);
        }
    }
}

pub(super) struct SourceState {
    pub(super) id: SourceId,
    /// Offset after the last record read; `None` before the first.
    pub(super) next_offset: Option<i64>,
    /// `next_offset` as last stored in the consumer (see `store_offsets`).
    pub(super) stored: Option<i64>,
    /// The group's committed offset when the partition was assigned, if
    /// any: where reading starts. librdkafka knows no position before the
    /// first record, so a partition assigned at the end of its log (a
    /// restart or rebalance with nothing new) is caught up by this.
    pub(super) start_offset: Option<i64>,
    /// At the end of its log as of the last end-of-partition event.
    pub(super) eof: bool,
    /// The high watermark when the partition was assigned, until the worker
    /// has read that far: the backlog during which notifications are held.
    pub(super) catch_up_to: Option<i64>,
    /// `peakguard_records_total{topic}`, resolved once.
    pub(super) records: prometheus::IntCounter,
}

impl Worker<'_> {
    /// Lag and newest event time of every assigned partition.
    /// Only this worker's partitions: the others' are theirs to set, and a
    /// revoked partition's series are removed where it is revoked.
    pub(super) fn export_partitions(&self, consumer: &BaseConsumer<RebalanceLog>) {
        let m = self.metrics;
        for (topic, parts) in &self.sources {
            for (p, s) in parts.iter().enumerate() {
                let Some(s) = s else { continue };
                let partition = p.to_string();
                let labels = [topic.as_str(), partition.as_str()];
                if let Some((low, high)) = Self::high_watermark(consumer, topic, p as i32) {
                    let next = s.next_offset.or_else(|| Self::position(consumer, topic, p as i32)).unwrap_or(low);
                    m.consumer_lag.with_label_values(&labels).set((high - next).max(0));
                }
                if let Some(t) = self.pipeline.engine().watermark().source_max(s.id) {
                    m.partition_event_time.with_label_values(&labels).set(t as f64 / 1000.0);
                }
            }
        }
    }

    /// Whether any partition is assigned to this worker now.
    pub(super) fn has_partitions(&self) -> bool {
        self.sources.values().flatten().flatten().next().is_some()
    }

    pub(super) fn all_caught_up(&self) -> bool {
        let mut sources = self.sources.values().flat_map(|parts| parts.iter().flatten()).peekable();
        sources.peek().is_some() && sources.all(|s| s.eof)
    }

    /// The high watermark librdkafka cached from its last fetch of this
    /// partition (no network call); `None` when not known yet.
    pub(super) fn high_watermark(
        consumer: &BaseConsumer<RebalanceLog>,
        topic: &str,
        partition: i32,
    ) -> Option<(i64, i64)> {
        let topic_c = std::ffi::CString::new(topic).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid for the consumer's lifetime and
        // the call only reads librdkafka's cached offsets into our locals.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                consumer.client().native_ptr(),
                topic_c.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
    }

    /// The consumer's local position in a partition (no network call).
    /// Asks for that one partition: `Consumer::position` copies the whole
    /// assignment (a round trip to librdkafka's group thread) every call.
    pub(super) fn position(consumer: &BaseConsumer<RebalanceLog>, topic: &str, p: i32) -> Option<i64> {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(topic, p);
        // SAFETY: the client pointer is valid for the consumer's lifetime and
        // `tpl` is a live list owned here; librdkafka only writes the offsets
        // of the partitions it holds.
        let err = unsafe { rdkafka::bindings::rd_kafka_position(consumer.client().native_ptr(), tpl.ptr()) };
        if err != rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        tpl.find_partition(topic, p)?.offset().to_raw().filter(|o| *o >= 0)
    }

    /// Holds notifications while any assigned partition has backlog left
    /// from its assignment, and releases them once none has.
    pub(super) fn update_catch_up(&mut self) {
        let behind = self.hold
            && (self.hold_to_end || self.sources.values().flatten().flatten().any(|s| s.catch_up_to.is_some()));
        match (behind, self.pipeline.gate().is_holding()) {
            (true, false) => {
                info!("partitions are catching up on their backlog; alert notifications are held until they are done");
                self.pipeline.hold_notifications();
            }
            (false, true) => {
                let before = self.alerts.len();
                self.pipeline.release_notifications(&mut self.alerts);
                info!(released = self.alerts.len() - before, "caught up; held alert notifications released");
            }
            _ => {}
        }
        let (id, p) = (self.team.id, &self.pipeline);
        self.metrics.export_worker(id, p.engine().shop_count(), p.watermark(), p.gate().is_holding());
    }

    /// End of log on partition `p` of some topic (librdkafka does not say
    /// which): every assigned partition `p` whose next offset has reached its
    /// cached high watermark is caught up.
    pub(super) fn partition_eof(&mut self, consumer: &BaseConsumer<RebalanceLog>, p: i32) {
        let mut caught = Vec::new();
        for (topic, parts) in &self.sources {
            let Some(Some(s)) = parts.get(p as usize) else {
                continue;
            };
            // Nothing read yet: where the consumer stands, or where it started
            // (the committed offset).
            let next = s.next_offset.or_else(|| Self::position(consumer, topic, p)).or(s.start_offset);
            let at_end = match (next, Self::high_watermark(consumer, topic, p)) {
                (Some(next), Some((_, high))) => next >= high,
                (None, Some((low, high))) => low == high,
                (_, None) => false,
            };
            if at_end {
                caught.push((topic.clone(), p as usize));
            }
        }
        for (topic, p) in caught {
            if let Some(Some(s)) = self.sources.get_mut(&topic).and_then(|v| v.get_mut(p)) {
                s.eof = true;
                s.catch_up_to = None;
                self.pipeline.caught_up(s.id);
            }
        }
    }

    pub(super) fn apply_rebalances(&mut self, consumer: &BaseConsumer<RebalanceLog>) {
        let changes = match consumer.context().changes.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return,
        };
        if changes.is_empty() {
            return;
        }
        let _span = tracing::info_span!("rebalance", changes = changes.len()).entered();
        for change in changes {
            match change {
                Change::Assigned(tps) => {
                    self.assigned_once = true;
                    info!(partitions = ?tps, "partitions assigned");
                    self.assign_partitions(consumer, tps);
                    // Hold from the first record of the backlog on.
                    self.update_catch_up();
                    // The merge waits for these partitions from now on.
                    self.report_status();
                }
                Change::Revoked(tps) => {
                    self.assigned_once = false;
                    info!(partitions = ?tps, "partitions revoked");
                    self.revoke_partitions(consumer, tps);
                }
            }
        }
    }

    pub(super) fn source_mut(&mut self, topic: &str, p: i32) -> Option<&mut SourceState> {
        self.sources.get_mut(topic)?.get_mut(p as usize)?.as_mut()
    }

    /// Starts tracking `topic`/`partition` as a source, unless it already is.
    pub(super) fn register(&mut self, consumer: &BaseConsumer<RebalanceLog>, topic: &str, p: i32) {
        let parts = self.sources.entry(topic.to_string()).or_default();
        if parts.len() <= p as usize {
            parts.resize_with(p as usize + 1, || None);
        }
        if parts[p as usize].is_some() {
            return;
        }
        let id = SourceId(self.next_source);
        self.next_source += 1;
        let catch_up_to = match consumer.fetch_watermarks(topic, p, Duration::from_secs(2)) {
            Ok((low, high)) => (high > low).then_some(high),
            Err(e) => {
                warn!(topic, partition = p, error = %e, "cannot read the high watermark; not holding alerts for it");
                None
            }
        };
        let records = self.metrics.records.with_label_values(&[topic]);
        let parts = self.sources.entry(topic.to_string()).or_default();
        parts[p as usize] = Some(SourceState {
            id,
            next_offset: None,
            stored: None,
            start_offset: None,
            eof: false,
            catch_up_to,
            records,
        });
        self.pipeline.assign(id, self.started.elapsed().as_millis() as i64);
        self.pipeline.engine_mut().set_source_shard(id, p as u32);
        self.metrics.partitions.with_label_values(&[topic]).inc();
    }
}
