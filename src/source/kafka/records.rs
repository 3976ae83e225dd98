//! One record through the worker: its partition's bookkeeping (offset gaps,
//! catch-up), prefetching the state its fold looks up first, decoding into
//! the worker's reused event buffer (the schema
//! registry for ids the local store lacks), folding, dead letters for what
//! does not decode or count, whether event time moved a finest step (the
//! batch then ends), and storing offsets once per poll batch.

use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tracing::{debug, warn};

use super::partitions::RebalanceLog;
use super::Worker;
use crate::codec;
use crate::engine::Fold;

impl Worker<'_> {
    pub(super) fn handle(
        &mut self,
        consumer: &BaseConsumer<RebalanceLog>,
        msg: &BorrowedMessage<'_>,
        counters: &crate::metrics::EventCounters,
        early: Option<codec::IdSpans>,
    ) {
        self.records += 1;
        let topic = msg.topic();
        let partition = msg.partition();
        if !matches!(self.sources.get(topic).and_then(|v| v.get(partition as usize)), Some(Some(_))) {
            // A record from a partition we have not seen assigned yet (the
            // rebalance callback runs inside poll): apply it, and register
            // the partition if it is still unknown.
            self.apply_rebalances(consumer);
            self.register(consumer, topic, partition);
        }
        let source = match self.sources.get_mut(topic).and_then(|v| v.get_mut(partition as usize)) {
            Some(Some(s)) => {
                s.records.inc();
                if let Some(gap) = s.next_offset.map(|next| msg.offset() - next).filter(|g| *g > 0) {
                    // Compaction and transaction markers leave gaps; so does
                    // a broker that skips records. Counted, and logged.
                    self.metrics.offset_gaps.with_label_values(&[topic]).inc_by(gap as u64);
                    if let Some(suppressed) = self.limiter.allow("offset_gap", Instant::now()) {
                        warn!(
                            topic,
                            partition,
                            expected = s.next_offset,
                            got = msg.offset(),
                            suppressed,
                            "offset gap: the broker skipped records (compacted or transactional topic, or a broker fault)"
                        );
                    }
                }
                s.next_offset = Some(msg.offset() + 1);
                s.eof = false;
                if s.catch_up_to.is_some_and(|end| msg.offset() + 1 >= end) {
                    s.catch_up_to = None;
                }
                s.id
            }
            _ => unreachable!("registered above"),
        };
        let payload = msg.payload().unwrap_or(&[]);
        // What the fold looks up first starts loading into the cache now,
        // while the record decodes (`pipeline/prefetch.rs`).
        self.pipeline.prefetch_record(self.store, source, payload, early);
        let mut event = std::mem::replace(&mut self.event, crate::event::Event::buffer());
        let decoded = self.decode_into(payload, &mut event);
        self.handle_decoded(msg, source, &event, decoded, counters);
        self.event = event;
    }

    /// Handles `msg` (see [`Worker::handle`]) and says whether event time
    /// has since reached `tick_mark`, a finest step past where the rules
    /// last ran; if so, moves the mark a step on (the batch then ends so
    /// that they run).
    pub(super) fn handle_timed(
        &mut self,
        consumer: &BaseConsumer<RebalanceLog>,
        msg: &BorrowedMessage<'_>,
        ids: Option<codec::IdSpans>,
        counters: &crate::metrics::EventCounters,
        (tick_mark, finest): (&mut i64, i64),
    ) -> bool {
        self.handle(consumer, msg, counters, ids);
        let seen = self.pipeline.engine().watermark().max_seen().unwrap_or(i64::MIN);
        if *tick_mark == i64::MIN {
            *tick_mark = seen.saturating_add(finest);
            false
        } else if seen >= *tick_mark {
            *tick_mark = seen.saturating_add(finest);
            true
        } else {
            false
        }
    }

    /// Starts loading what folding `msg` will look up first (its shop's
    /// control bytes in the shop map, its event id's dedup groups), reading
    /// none of it (`Engine::prefetch_early`): called for the record polled
    /// next while the one before it is handled, so that by its own turn
    /// (`handle` prefetches the shop's entry) those loads have landed.
    /// Returns where the ids lie in the record, for its `handle`.
    pub(super) fn prefetch_next(&self, msg: &BorrowedMessage<'_>) -> Option<codec::IdSpans> {
        let Some(Some(s)) = self.sources.get(msg.topic()).and_then(|v| v.get(msg.partition() as usize)) else {
            return None;
        };
        self.pipeline.prefetch_next(self.store, s.id, msg.payload().unwrap_or(&[]))
    }

    /// Stores the offset after the last record read of every partition read
    /// since the last call (what group commits take when checkpoints are
    /// off), once per batch rather than once per record: a store takes
    /// librdkafka's partition lock.
    pub(super) fn store_offsets(&mut self, consumer: &BaseConsumer<RebalanceLog>) {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for (topic, parts) in &self.sources {
            for (p, s) in parts.iter().enumerate() {
                let Some(s) = s else { continue };
                if let Some(next) = s.next_offset.filter(|n| s.stored != Some(*n)) {
                    let _ = tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Offset(next));
                }
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match consumer.store_offsets(&tpl) {
            Ok(()) => {
                for e in tpl.elements() {
                    let stored = e.offset().to_raw();
                    if let Some(Some(s)) =
                        self.sources.get_mut(e.topic()).and_then(|v| v.get_mut(e.partition() as usize))
                    {
                        s.stored = stored;
                    }
                }
            }
            Err(e) => debug!(error = %e, "offset store failed (partition revoked?)"),
        }
    }

    /// Folds a decoded record, or dead-letters an undecodable one.
    fn handle_decoded(
        &mut self,
        msg: &BorrowedMessage<'_>,
        source: crate::engine::SourceId,
        event: &crate::event::Event,
        decoded: Result<(), codec::DecodeError>,
        counters: &crate::metrics::EventCounters,
    ) {
        match decoded {
            Ok(()) => {
                let fold = self.pipeline.ingest(source, event, self.proc_now());
                counters.inc(event.kind(), fold);
                match fold {
                    Fold::Late => {
                        let why = format!(
                            "event_time {} is older than the watermark minus the longest window",
                            event.event_time
                        );
                        self.dead_letter(msg, "late_event", &why);
                    }
                    Fold::Future => {
                        let why = format!(
                            "event_time {} is further ahead of the newest event than engine.max_future",
                            event.event_time
                        );
                        self.dead_letter(msg, "future_event", &why);
                    }
                    // Retries by producers: counted, not dead-lettered.
                    Fold::Duplicate | Fold::Folded | Fold::Ignored => {}
                }
                if let Some(ts) = msg.timestamp().to_millis() {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or(ts);
                    let _ = self.latency_ms.record((now - ts).max(1) as u64);
                    self.metrics.event_latency.observe((now - ts).max(0) as f64 / 1000.0);
                }
            }
            Err(e) => {
                self.decode_errors += 1;
                let reason = e.reason();
                self.metrics.decode_errors.with_label_values(&[reason]).inc();
                if let Some(suppressed) = self.limiter.allow(reason, Instant::now()) {
                    // The topic's name is read here only: each read of it
                    // measures and checks the C string anew.
                    let (topic, partition) = (msg.topic(), msg.partition());
                    warn!(reason, error = %e, topic, partition, offset = msg.offset(), suppressed, "undecodable record");
                }
                self.dead_letter(msg, reason, &e.to_string());
            }
        }
    }

    /// Decodes into `out` with the local schema store, and, for a schema id
    /// it does not know, with the writer schema from the registry (when
    /// configured).
    fn decode_into(&mut self, payload: &[u8], out: &mut crate::event::Event) -> Result<(), codec::DecodeError> {
        match codec::decode_into(self.store, payload, out) {
            Err(codec::DecodeError::UnknownSchemaId(id)) => match &mut self.registry {
                Some(registry) => {
                    let (_, body) = codec::wire::split(payload)?;
                    registry.decode_into(self.store, id, body, out)
                }
                None => Err(codec::DecodeError::UnknownSchemaId(id)),
            },
            other => other,
        }
    }

    fn dead_letter(&mut self, msg: &BorrowedMessage<'_>, reason: &'static str, error: &str) {
        if let Some(d) = &self.dead_letters {
            d.send(msg, reason, error);
        }
    }
}
