//! The Kafka worker: one consumer in the group, reading every configured
//! topic, decoding records, folding them into its [`Pipeline`] and sending
//! alert transitions to the sinks. Synchronous on its own thread: the hot
//! path takes no locks and awaits nothing.
//!
//! With checkpoints on (`[checkpoint]`), each partition's state and next
//! offsets are written together and restored together, so a restart or a
//! rebalance counts every record exactly once (`checkpoints.rs`). Without
//! them, offsets are stored once a poll batch has been folded (or
//! dead-lettered) and auto-committed (`records.rs`): a restart re-reads from the last commit
//! into empty windows. Records that cannot be decoded, and events too late to
//! count, go to the dead-letter topic with their reason in headers.

mod checkpoints;
mod client;
mod partitions;
mod publish;
mod records;
pub mod team;
pub mod topics;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::checkpoints::Checkpointer;
pub use self::client::{client_config, producer_config};
use self::partitions::{RebalanceLog, SourceState};
pub use self::team::Team;
use super::dead_letter::DeadLetters;
use super::limiter::LogLimiter;
use crate::codec::{self, SchemaStore};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineStats};
use crate::query::ReadView;
use crate::rules::Alert;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Stop once every assigned partition has reached the end of its log
    /// (tests, one-off catch-up); the last buckets are then evaluated too.
    pub exit_when_caught_up: bool,
    /// New rules to put in force at the next tick (SIGHUP or file change).
    pub rules_update: Option<RulesUpdate>,
    /// Hold alert notifications while assigned partitions catch up on the
    /// backlog they had when assigned (see [`crate::rules::NotifyGate`]).
    pub hold_during_catch_up: bool,
    /// Read the alerts topic back at start, so alerts already notified by a
    /// previous run are not paged again.
    pub restore_alerts: bool,
    /// Its place among the process's workers (alone by default).
    pub team: Team,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            exit_when_caught_up: false,
            rules_update: None,
            hold_during_catch_up: true,
            restore_alerts: true,
            team: Team::default(),
        }
    }
}

pub use crate::reload::RulesUpdate;

/// What a worker did, for the end-of-run summary.
#[derive(Clone, Debug)]
pub struct WorkerReport {
    pub records: u64,
    pub decode_errors: u64,
    pub stats: PipelineStats,
    pub elapsed: Duration,
    /// From the start of the first poll batch that had records to the end
    /// of the last (group join and restores come before).
    pub read_span: Option<(Instant, Instant)>,
    /// Producer timestamp -> folded, in milliseconds.
    pub latency_ms: Histogram<u64>,
    pub shops: usize,
}

impl WorkerReport {
    /// The report of a process: its workers' reports added up.
    pub fn merge(mut self, o: WorkerReport) -> WorkerReport {
        self.records += o.records;
        self.decode_errors += o.decode_errors;
        let (a, b) = (&mut self.stats, o.stats);
        a.folded += b.folded;
        a.ignored += b.ignored;
        a.late += b.late;
        a.duplicate += b.duplicate;
        a.future += b.future;
        a.fired += b.fired;
        a.resolved += b.resolved;
        self.elapsed = self.elapsed.max(o.elapsed);
        self.read_span = match (self.read_span, o.read_span) {
            (Some((f1, l1)), Some((f2, l2))) => Some((f1.min(f2), l1.max(l2))),
            (a, b) => a.or(b),
        };
        let _ = self.latency_ms.add(&o.latency_ms);
        self.shops += o.shops;
        self
    }
}

/// Errors that stop a worker at start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "cannot create the Kafka consumer for brokers {brokers}: {cause}; check kafka.brokers and kafka.properties"
    )]
    Consumer { brokers: String, cause: KafkaError },
    #[error("cannot subscribe to {topics:?}: {cause}")]
    Subscribe { topics: Vec<String>, cause: KafkaError },
    #[error("cannot create the dead-letter producer: {0}")]
    Producer(KafkaError),
    #[error("cannot set up checkpoints: {0}; check [checkpoint] dir and topic")]
    Checkpoint(String),
    #[error(
        "config field `kafka.topics`: the topics are not co-partitioned ({counts}); a shop's state follows partition i of every topic to one worker, which needs the same partition count everywhere. Fix: give every topic {most} partitions (kafka-topics.sh --alter --partitions {most}) before producers write to the new partitions, keyed by shop_id"
    )]
    NotCoPartitioned { counts: String, most: usize },
    #[error("{0}; check [schemas] registry_url")]
    Registry(String),
}

struct Worker<'a> {
    dead_letters: Option<DeadLetters>,
    store: &'a SchemaStore,
    metrics: &'a Metrics,
    view: &'a ReadView,
    pipeline: Pipeline,
    /// By topic name; looked up for every record, so with a fast hash.
    sources: rustc_hash::FxHashMap<String, Vec<Option<SourceState>>>,
    next_source: u32,
    alerts_tx: mpsc::Sender<Alert>,
    alerts: Vec<Alert>,
    limiter: LogLimiter,
    latency_ms: Histogram<u64>,
    records: u64,
    decode_errors: u64,
    started: Instant,
    /// When the first batch with records started and the latest ended.
    reading: Option<(Instant, Instant)>,
    /// The buffer every record is decoded into (its strings are reused).
    event: crate::event::Event,
    /// [`WorkerOptions::hold_during_catch_up`].
    hold: bool,
    /// A catch-up run (`exit_when_caught_up`) holds notifications to its
    /// end: caught up, it still has the last, partial bucket to evaluate,
    /// and a restored alert that only that bucket keeps firing would be
    /// resolved and then fired again.
    hold_to_end: bool,
    /// `None` when checkpoints are off.
    checkpointer: Option<Checkpointer>,
    /// Writer schemas the local store lacks; `None` without a registry.
    registry: Option<codec::registry::Registry>,
    team: Team,
    /// Its last rebalance change was an assignment (perhaps an empty one),
    /// not a revocation still waiting for the next assignment.
    assigned_once: bool,
    /// Its last answer to [`Team::all_done`].
    done: bool,
}

/// Runs one worker until `shutdown` is cancelled (or, with
/// `exit_when_caught_up`, until every partition is caught up).
pub fn run_worker(
    cfg: &Config,
    store: &SchemaStore,
    metrics: &Metrics,
    view: &ReadView,
    alerts_tx: mpsc::Sender<Alert>,
    shutdown: CancellationToken,
    opts: WorkerOptions,
) -> Result<WorkerReport, SourceError> {
    let startup = tracing::info_span!("startup", group = %cfg.kafka.group_id).entered();
    let checkpointer = Checkpointer::open(cfg).map_err(SourceError::Checkpoint)?;
    if checkpointer.is_none() {
        warn!("checkpoints are off ([checkpoint] dir and topic are empty): a restart rebuilds windows from the committed offsets on");
    }
    let registry = match cfg.schemas.registry() {
        Some(r) => {
            let fetches = metrics.registry_fetches.clone();
            let registry = codec::registry::Registry::new(r).map_err(SourceError::Registry)?;
            Some(registry.on_fetch(move |result| fetches.with_label_values(&[result]).inc()))
        }
        None => None,
    };
    let mut cc = client_config(cfg);
    // No client.id per worker: with one set per worker, Tansu 0.6 stopped
    // serving one partition's records to every consumer of the group
    // (`tests/exactly_once.rs`, two processes of two workers). A client.id
    // set in `kafka.properties` is used by every worker.
    cc.set("group.id", &cfg.kafka.group_id)
        // With checkpoints, offsets are committed with each checkpoint only.
        .set("enable.auto.commit", if checkpointer.is_some() { "false" } else { "true" })
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        // Range assignment puts partition i of every co-partitioned topic on one consumer.
        .set("partition.assignment.strategy", "range");
    let consumer: BaseConsumer<RebalanceLog> = cc
        .create_with_context(RebalanceLog { changes: Mutex::new(Vec::new()), closing: Default::default() })
        .map_err(|cause| SourceError::Consumer { brokers: cfg.kafka.brokers.clone(), cause })?;
    topics::check_co_partitioned(&consumer, &cfg.kafka.topics, Duration::from_secs(10))?;
    let dead_letters = if cfg.kafka.dead_letter_topic.is_empty() {
        None
    } else {
        Some(
            DeadLetters::new(&producer_config(cfg), &cfg.kafka.dead_letter_topic, metrics)
                .map_err(SourceError::Producer)?,
        )
    };
    let mut engine_cfg = cfg.engine_config();
    // Each worker holds the shops of its own partitions: its share of them.
    engine_cfg.expected_shops = engine_cfg.expected_shops.div_ceil(cfg.worker_count());
    let mut pipeline = Pipeline::new(engine_cfg, cfg.rule_book())
        .with_top_k(cfg.top_k_config())
        .with_visit_budget(crate::pipeline::VISIT_BUDGET);
    if opts.team.merged() {
        pipeline = pipeline.with_scope_merge();
    }
    let mut w = Worker {
        dead_letters,
        store,
        metrics,
        view,
        pipeline,
        sources: Default::default(),
        next_source: 0,
        alerts_tx,
        alerts: Vec::new(),
        limiter: LogLimiter::new(Duration::from_secs(5)),
        latency_ms: Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds"),
        records: 0,
        decode_errors: 0,
        started: Instant::now(),
        reading: None,
        event: crate::event::Event::buffer(),
        hold: opts.hold_during_catch_up,
        hold_to_end: opts.hold_during_catch_up && opts.exit_when_caught_up,
        checkpointer,
        registry,
        team: opts.team.clone(),
        assigned_once: false,
        done: false,
    };
    if opts.restore_alerts && !cfg.kafka.alerts_topic.is_empty() {
        match super::restore::read_alerts(cfg, Duration::from_secs(15)) {
            Ok(alerts) => {
                let n = alerts.len();
                w.pipeline.restore_alerts(alerts);
                let firing = w.pipeline.gate().restored_count();
                metrics.alerts_restored.set(firing as i64);
                info!(records = n, firing, topic = %cfg.kafka.alerts_topic, "alerts topic read back");
            }
            Err(e) => warn!(error = %e, "cannot read the alerts topic back; alerts of a previous run may page again"),
        }
    }
    w.team.start_together(Duration::from_secs(30));
    let topics: Vec<&str> = cfg.kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|cause| SourceError::Subscribe { topics: cfg.kafka.topics.clone(), cause })?;
    info!(topics = ?cfg.kafka.topics, group = %cfg.kafka.group_id, "worker started");
    drop(startup);
    w.run(&consumer, &shutdown, &opts, cfg.engine.tick_interval);
    Ok(w.finish(&consumer))
}

impl Worker<'_> {
    fn proc_now(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    fn run(
        &mut self,
        consumer: &BaseConsumer<RebalanceLog>,
        shutdown: &CancellationToken,
        opts: &WorkerOptions,
        tick_interval: Duration,
    ) {
        let counters = self.metrics.event_counters();
        let mut last_tick = Instant::now();
        let mut last_evict = Instant::now();
        let mut last_export = Instant::now();
        // Rules also run whenever event time has moved one finest bucket
        // since they last ran: reading a backlog, minutes of event time pass
        // between two processing-time ticks, and a ring keeps only a few
        // buckets behind its newest.
        let finest = self.pipeline.engine().config().windows.iter().map(|w| w.step_ms).min().unwrap_or(60_000);
        let mut tick_mark = i64::MIN;
        while !shutdown.is_cancelled() {
            self.apply_rebalances(consumer);
            let batch_start = Instant::now();
            let mut n = 0;
            let mut timeout = Duration::from_millis(50);
            let mut time_moved = false;
            // Drain what is ready, up to a batch, then tick. Each record is
            // handled once the one after it has been polled (or none is
            // ready): the fold's first lookups for the next record start
            // loading while this one decodes and folds (`prefetch_next`),
            // which over a million shops is what the fold waits on. A
            // record in hand is always handled before anything else the
            // poll reports (an end of partition, an error) and before the
            // batch ends, so the order of everything is as polled.
            let mut held: Option<(rdkafka::message::BorrowedMessage<'_>, Option<codec::IdSpans>)> = None;
            while n < 4096 && !time_moved {
                let polled = consumer.poll(timeout);
                timeout = Duration::ZERO;
                let ids = match &polled {
                    Some(Ok(next)) => self.prefetch_next(next),
                    _ => None,
                };
                if let Some((msg, ids)) = held.take() {
                    time_moved |= self.handle_timed(consumer, &msg, ids, &counters, (&mut tick_mark, finest));
                    n += 1;
                }
                match polled {
                    None => break,
                    Some(Ok(msg)) => held = Some((msg, ids)),
                    Some(Err(KafkaError::PartitionEOF(p))) => self.partition_eof(consumer, p),
                    Some(Err(e)) => {
                        // A broker outage repeats this every poll: one line per interval.
                        if let Some(suppressed) = self.limiter.allow("consumer_error", Instant::now()) {
                            warn!(error = %e, suppressed, "consumer error");
                        }
                        break;
                    }
                }
            }
            if let Some((msg, ids)) = held.take() {
                time_moved |= self.handle_timed(consumer, &msg, ids, &counters, (&mut tick_mark, finest));
                n += 1;
            }
            if n > 0 {
                // First and last read, to a batch.
                let now = Instant::now();
                self.reading = Some(self.reading.map_or((batch_start, now), |(first, _)| (first, now)));
                self.store_offsets(consumer);
                self.metrics.batch_duration.observe(batch_start.elapsed().as_secs_f64());
            }
            // Rule visits left from a bucket end, a budget at a time between
            // batches (see `Pipeline::with_visit_budget`).
            self.pipeline.work(&mut self.alerts);
            if !self.alerts.is_empty() {
                self.flush_alerts();
            }
            self.answer_queries();
            if time_moved || last_tick.elapsed() >= tick_interval {
                last_tick = Instant::now();
                let update = opts.rules_update.as_ref().and_then(|slot| slot.lock().ok()?.take());
                if let Some(book) = update {
                    let names: Vec<String> = book.rules.iter().map(|r| r.name.clone()).collect();
                    let forgotten = self.pipeline.reload_rules(book);
                    info!(rules = ?names, forgotten, "rules reloaded");
                }
                let now = self.proc_now();
                self.pipeline.tick(now, &mut self.alerts);
                self.hand_over();
                self.update_catch_up();
                self.flush_alerts();
                if last_export.elapsed() >= Duration::from_secs(1) {
                    last_export = Instant::now();
                    self.publish(consumer);
                }
                self.checkpoint_if_due(consumer);
                if last_evict.elapsed() >= Duration::from_secs(10) {
                    last_evict = Instant::now();
                    let evicted = self.pipeline.evict_idle();
                    debug!(evicted, "evicted idle shops");
                }
            }
            if opts.exit_when_caught_up && self.catch_up_done() {
                info!("every assigned partition is caught up; finishing");
                break;
            }
        }
        if opts.exit_when_caught_up {
            let last = self.team.input_end(self.pipeline.input_end(), Duration::from_secs(10));
            self.pipeline.finish_at(last, &mut self.alerts);
            self.hand_over();
            self.hold_to_end = false;
            self.update_catch_up();
            self.flush_alerts();
        }
        self.publish(consumer);
    }

    /// A catch-up run is over for this process: every worker has read its
    /// partitions to the end (a worker the group gave none is done once it
    /// has been told so, unless it is alone; one whose partitions were just
    /// revoked is not: in a rebalance every worker is briefly without any).
    fn catch_up_done(&mut self) -> bool {
        let assigned = self.has_partitions();
        let done = self.all_caught_up() || (!assigned && self.assigned_once && self.team.size > 1);
        self.team.all_done(&mut self.done, done)
    }

    fn finish(mut self, consumer: &BaseConsumer<RebalanceLog>) -> WorkerReport {
        if self.checkpointer.is_some() {
            let numbers = self.assigned_numbers();
            self.checkpoint(consumer, &numbers, CommitMode::Sync);
            info!(partitions = numbers.len(), "final checkpoint written");
        } else if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            debug!(error = %e, "final commit failed");
        }
        consumer.context().closing.store(true, std::sync::atomic::Ordering::Relaxed);
        self.team.finished();
        self.view.set_ready(self.team.id, None);
        if let Some(d) = &self.dead_letters {
            if let Err(e) = d.flush(Duration::from_secs(5)) {
                warn!(error = %e, "dead letters not all delivered at shutdown");
            }
        }
        WorkerReport {
            records: self.records,
            decode_errors: self.decode_errors,
            stats: self.pipeline.stats(),
            elapsed: self.started.elapsed(),
            read_span: self.reading,
            latency_ms: self.latency_ms,
            shops: self.pipeline.engine().shop_count(),
        }
    }
}
