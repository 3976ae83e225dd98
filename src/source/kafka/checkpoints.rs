//! The worker's checkpoints: restore on assignment, write at an interval, on
//! revocation and at shutdown (see [`crate::checkpoint`]).
//!
//! Exactly-once state rests on one rule: a checkpoint holds the state of a
//! partition number *and* the next offset of each topic's partition of that
//! number, taken between two records; restoring it and seeking to those
//! offsets counts every record once. Rebalances are handled on the worker
//! thread: the consumer context only records them, and the worker
//! checkpoints revoked partitions before it gives them up, and restores
//! assigned ones before it starts fetching them, at their offsets.
//!
//! With checkpoints on, offsets are committed to the group only as part of a
//! checkpoint, so the committed offset of a partition is where some checkpoint
//! stands: lag tools work, and a partition a checkpoint has not met yet starts
//! at the committed offset with nothing of it in the state.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::partitions::RebalanceLog;
use super::Worker;
use crate::checkpoint::local::LocalStore;
use crate::checkpoint::topic::TopicStore;
use crate::checkpoint::{newer, now_ms, Checkpoint, SourcePosition};
use crate::config::Config;

/// Where and how often the worker checkpoints.
pub(super) struct Checkpointer {
    local: Option<LocalStore>,
    topic: Option<TopicStore>,
    group: String,
    interval: Duration,
    last: Instant,
}

impl Checkpointer {
    /// `None` when checkpoints are off (no directory, no topic).
    pub(super) fn open(cfg: &Config) -> Result<Option<Checkpointer>, String> {
        let c = &cfg.checkpoint;
        if !c.enabled() {
            return Ok(None);
        }
        let local = match c.local_dir() {
            Some(dir) => Some(LocalStore::open(dir, &cfg.kafka.group_id).map_err(|e| e.to_string())?),
            None => None,
        };
        let topic = if c.topic.is_empty() {
            None
        } else {
            let producer = super::producer_config(cfg);
            let consumer = super::client_config(cfg);
            Some(TopicStore::new(&producer, &consumer, &c.topic, &cfg.kafka.group_id).map_err(|e| e.to_string())?)
        };
        Ok(Some(Checkpointer {
            local,
            topic,
            group: cfg.kafka.group_id.clone(),
            interval: c.interval,
            last: Instant::now(),
        }))
    }

    pub(super) fn due(&self) -> bool {
        self.last.elapsed() >= self.interval
    }

    /// The newer of the local and topic copies of each partition's checkpoint.
    fn read(&mut self, partitions: &[i32]) -> HashMap<i32, Checkpoint> {
        let mut found: HashMap<i32, Checkpoint> = HashMap::new();
        if let Some(local) = &self.local {
            for &p in partitions {
                match local.read(p) {
                    Ok(Some(c)) => {
                        found.insert(p, c);
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, partition = p, "local checkpoint unreadable; trying the topic"),
                }
            }
        }
        if let Some(topic) = &mut self.topic {
            match topic.read(partitions) {
                Ok(copies) => {
                    for (p, c) in copies {
                        match c {
                            Ok(c) => {
                                let best = newer(found.remove(&p), Some(c)).expect("one is present");
                                found.insert(p, best);
                            }
                            Err(e) => warn!(error = %e, "checkpoint in the topic unusable"),
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot read checkpoints from the topic; using local copies only"),
            }
        }
        found.retain(|_, c| c.group == self.group);
        found
    }

    /// Writes one round of checkpoints everywhere configured; for each, its
    /// encoded size when at least one copy landed. Each is encoded and
    /// written to the directory and staged on the topic in turn (one
    /// partition's bytes held at a time); the topic copies are published
    /// together at the end.
    fn write_round(&mut self, round: impl Iterator<Item = Checkpoint>) -> Vec<(Checkpoint, Option<usize>)> {
        let mut out: Vec<(Checkpoint, Option<usize>)> = Vec::new();
        let mut staged = Vec::new();
        let mut staged_len = Vec::new();
        for mut c in round {
            let bytes = c.encode();
            // The state is in `bytes` now; keep only the positions.
            c.state.shops = Vec::new();
            c.state.dedup = None;
            let mut ok = None;
            if let Some(local) = &self.local {
                match local.write(c.partition, &bytes) {
                    Ok(n) => ok = Some(n),
                    Err(e) => warn!(error = %e, "cannot write the local checkpoint"),
                }
            }
            if let Some(topic) = &mut self.topic {
                match topic.stage(c.partition, &bytes) {
                    Ok(s) => {
                        staged.push(s);
                        staged_len.push((out.len(), bytes.len()));
                    }
                    Err(e) => warn!(error = %e, partition = c.partition, "cannot write the checkpoint to the topic"),
                }
            }
            out.push((c, ok));
        }
        if let Some(topic) = &mut self.topic {
            if !staged.is_empty() {
                match topic.publish(staged) {
                    Ok(()) => {
                        for (i, n) in staged_len {
                            out[i].1 = Some(n);
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot write the checkpoints to the topic"),
                }
            }
        }
        out
    }
}

impl Worker<'_> {
    /// Assigned partitions: restore what checkpoints hold, then start
    /// fetching each at its checkpoint's offset (or the committed one).
    pub(super) fn assign_partitions(&mut self, consumer: &BaseConsumer<RebalanceLog>, tps: Vec<(String, i32)>) {
        let mut numbers: Vec<i32> = tps.iter().map(|(_, p)| *p).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let started = Instant::now();
        let found = match self.checkpointer.as_mut() {
            Some(c) => c.read(&numbers),
            None => HashMap::new(),
        };
        let now = self.proc_now();
        let mut restored_shops = 0;
        for (p, c) in &found {
            let engine = self.pipeline.engine_mut();
            if engine.shard_shop_count(*p as u32) > 0 {
                engine.drop_shard(*p as u32);
            }
            match engine.import_shard(c.state.clone()) {
                Ok(n) => restored_shops += n,
                Err(e) => {
                    warn!(partition = p, error = %e, "checkpoint not restored; the partition starts at its committed offset")
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in &tps {
            let checkpoint = found.get(p);
            let position = checkpoint.and_then(|c| c.sources.iter().find(|s| &s.topic == topic));
            self.register(consumer, topic, *p);
            if let Some(s) = self.source_mut(topic, *p) {
                s.next_offset = position.map(|pos| pos.next_offset);
                let id = s.id;
                if let Some(pos) = position {
                    let wm = checkpoint.and_then(|c| c.watermark);
                    self.pipeline.engine_mut().watermark_mut().restore_source(id, pos.max_event, wm, now);
                }
            }
            let offset = position.map_or(Offset::Stored, |pos| Offset::Offset(pos.next_offset));
            if let Err(e) = tpl.add_partition_offset(topic, *p, offset) {
                warn!(topic, partition = p, error = %e, "cannot set the start offset");
            }
        }
        if !found.is_empty() {
            let offsets: Vec<String> = found
                .values()
                .flat_map(|c| c.sources.iter().map(move |s| format!("{}/{}@{}", s.topic, c.partition, s.next_offset)))
                .collect();
            info!(
                partitions = ?found.keys().collect::<Vec<_>>(),
                offsets = ?offsets,
                shops = restored_shops,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "state restored from checkpoints"
            );
            self.metrics.checkpoint.restores.inc_by(found.len() as u64);
        }
        self.note_committed(consumer, &tpl);
        if let Err(e) = consumer.assign(&tpl) {
            warn!(error = %e, "assign failed");
        }
    }

    /// Reads the group's committed offsets of the partitions in `tpl` that
    /// start from them (one round trip), so that one assigned at the end of
    /// its log counts as caught up without a record to read.
    fn note_committed(&mut self, consumer: &BaseConsumer<RebalanceLog>, tpl: &TopicPartitionList) {
        let mut stored = TopicPartitionList::new();
        for e in tpl.elements().iter().filter(|e| e.offset() == Offset::Stored) {
            stored.add_partition(e.topic(), e.partition());
        }
        if stored.count() == 0 {
            return;
        }
        match consumer.committed_offsets(stored, Duration::from_secs(10)) {
            Ok(committed) => {
                for e in committed.elements() {
                    if let (Offset::Offset(o), Some(s)) = (e.offset(), self.source_mut(e.topic(), e.partition())) {
                        s.start_offset = Some(o);
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot read the committed offsets; a partition with nothing new to read counts as caught up only once a record arrives")
            }
        }
    }

    /// Revoked partitions: checkpoint them, commit, forget their shops, and
    /// let them go.
    pub(super) fn revoke_partitions(&mut self, consumer: &BaseConsumer<RebalanceLog>, tps: Vec<(String, i32)>) {
        let numbers: Vec<i32> = {
            let mut v: Vec<i32> = tps.iter().map(|(_, p)| *p).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        self.checkpoint(consumer, &numbers, CommitMode::Sync);
        for (topic, p) in &tps {
            if let Some(s) = self.sources.get_mut(topic).and_then(|v| v.get_mut(*p as usize)).and_then(Option::take) {
                self.pipeline.revoke(s.id);
                self.metrics.partitions.with_label_values(&[topic]).dec();
                let labels = [topic.as_str(), &p.to_string()];
                let _ = self.metrics.consumer_lag.remove_label_values(&labels);
                let _ = self.metrics.partition_event_time.remove_label_values(&labels);
            }
        }
        for p in &numbers {
            let dropped = self.pipeline.engine_mut().drop_shard(*p as u32);
            info!(partition = p, shops = dropped, "partition released");
        }
        if let Err(e) = consumer.unassign() {
            warn!(error = %e, "unassign failed");
        }
    }

    /// Partition numbers with at least one assigned source.
    pub(super) fn assigned_numbers(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .sources
            .values()
            .flat_map(|parts| parts.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(p, _)| p as i32))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Checkpoints partition numbers `numbers` and commits their offsets.
    pub(super) fn checkpoint(&mut self, consumer: &BaseConsumer<RebalanceLog>, numbers: &[i32], mode: CommitMode) {
        if self.checkpointer.is_none() {
            return;
        }
        let started = Instant::now();
        // A checkpoint says every record before its offsets is dealt with:
        // dead letters among them must be on their topic first.
        if let Some(d) = &self.dead_letters {
            if let Err(e) = d.flush(Duration::from_secs(10)) {
                warn!(error = %e, "checkpoint skipped: a restart resumes from the previous one and reads these records again");
                self.metrics.checkpoint.failures.inc_by(numbers.len() as u64);
                return;
            }
        }
        let Some(mut checkpointer) = self.checkpointer.take() else { return };
        let watermark = self.pipeline.watermark();
        let mut commit = TopicPartitionList::new();
        let mut bytes = 0usize;
        let mut failed = false;
        let positions: Vec<(i32, Vec<SourcePosition>)> = numbers
            .iter()
            .map(|&p| {
                let mut sources = Vec::new();
                for (topic, parts) in &self.sources {
                    let Some(Some(s)) = parts.get(p as usize) else { continue };
                    let Some(next) = s.next_offset else { continue };
                    let max_event = self.pipeline.engine().watermark().source_max(s.id);
                    sources.push(SourcePosition { topic: topic.clone(), next_offset: next, max_event });
                }
                sources.sort_by(|a, b| a.topic.cmp(&b.topic));
                (p, sources)
            })
            .collect();
        let engine = self.pipeline.engine();
        let group = checkpointer.group.clone();
        let round = positions.into_iter().map(|(p, sources)| Checkpoint {
            group: group.clone(),
            partition: p,
            written_at_ms: now_ms(),
            watermark,
            sources,
            state: engine.export_shard(p as u32),
        });
        for (c, written) in checkpointer.write_round(round) {
            match written {
                Some(n) => {
                    bytes += n;
                    for s in &c.sources {
                        let _ = commit.add_partition_offset(&s.topic, c.partition, Offset::Offset(s.next_offset));
                    }
                }
                None => {
                    failed = true;
                    self.metrics.checkpoint.failures.inc();
                }
            }
        }
        checkpointer.last = Instant::now();
        self.checkpointer = Some(checkpointer);
        if commit.count() > 0 {
            if let Err(e) = consumer.commit(&commit, mode) {
                use rdkafka::types::RDKafkaErrorCode as Code;
                // Mid-rebalance the group refuses commits of the generation it
                // is leaving: expected on every revoke, and harmless (restores
                // seek to checkpoint offsets, not to commits).
                let rebalancing = matches!(
                    e.rdkafka_error_code(),
                    Some(Code::RebalanceInProgress | Code::UnknownMemberId | Code::IllegalGeneration)
                );
                if rebalancing {
                    tracing::debug!(error = %e, "offset commit refused during a rebalance; the next checkpoint commits");
                } else {
                    warn!(error = %e, "offset commit after checkpoint failed (lag tools lag; state is safe)");
                }
            }
        }
        let elapsed = started.elapsed();
        self.metrics.checkpoint.duration.observe(elapsed.as_secs_f64());
        let written = (!failed).then(|| now_ms() as f64 / 1000.0);
        self.metrics.export_checkpoint(self.team.id, bytes as i64, written);
        tracing::debug!(partitions = numbers.len(), bytes, elapsed_ms = elapsed.as_millis() as u64, "checkpointed");
    }

    /// Checkpoints every assigned partition when the interval has passed.
    pub(super) fn checkpoint_if_due(&mut self, consumer: &BaseConsumer<RebalanceLog>) {
        if self.checkpointer.as_ref().is_some_and(Checkpointer::due) {
            let numbers = self.assigned_numbers();
            self.checkpoint(consumer, &numbers, CommitMode::Async);
        }
    }
}
