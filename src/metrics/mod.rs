//! The Prometheus registry and every metric peakguard exports. Handles are
//! registered once here; the hot path only increments pre-resolved children.
//! Cardinality is bounded: no label ever carries a shop id.

use std::sync::{Arc, Mutex, RwLock};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::codec::DecodeError;
use crate::engine::{Engine, Fold};
use crate::event::{EventKind, Millis};
use crate::pipeline::topk::TopList;
use crate::rules::{NotifyGate, RuleSet};

pub mod business;
pub mod checkpoint;
mod parts;

pub use business::MAX_EXPORTED_CATEGORIES;

pub struct Metrics {
    pub registry: Registry,
    /// `peakguard_events_total{kind, outcome}`: decoded events by what the engine did.
    pub events: IntCounterVec,
    /// `peakguard_decode_errors_total{reason}`.
    pub decode_errors: IntCounterVec,
    /// `peakguard_dead_letters_total{reason}`: records written to the dead-letter topic.
    pub dead_letters: IntCounterVec,
    /// `peakguard_dead_letter_failures_total`: records the dead-letter topic
    /// did not take (their checkpoint is held back, so they are read again).
    pub dead_letter_failures: prometheus::IntCounter,
    /// `peakguard_alerts_total{rule, severity, status}`: notifications emitted.
    pub alerts: IntCounterVec,
    /// `peakguard_alerts_firing{rule, severity}`: (rule, key) pairs firing now.
    pub alerts_firing: IntGaugeVec,
    /// `peakguard_alerts_pending{rule, severity}`: (rule, key) pairs breaching, waiting out `for`.
    pub alerts_pending: IntGaugeVec,
    /// `peakguard_consumer_lag{topic, partition}`: records between the high
    /// watermark and the next offset to read.
    pub consumer_lag: IntGaugeVec,
    /// `peakguard_partition_event_time_seconds{topic, partition}`: newest event
    /// time read from the partition (watermark age per partition).
    pub partition_event_time: GaugeVec,
    /// `peakguard_sink_deliveries_total{sink, result}` (`ok`, `error`, `dropped`).
    pub sink_deliveries: IntCounterVec,
    /// `peakguard_sink_queue_depth{sink}`: alerts waiting for a sink.
    pub sink_queue_depth: IntGaugeVec,
    /// `peakguard_batch_duration_seconds`: time to decode and fold one polled batch.
    pub batch_duration: Histogram,
    /// `peakguard_watermark_timestamp_seconds`: event-time watermark.
    pub watermark: Gauge,
    /// `peakguard_shops`: shops held in memory.
    pub shops: IntGauge,
    /// `peakguard_partitions_assigned`.
    pub partitions: IntGaugeVec,
    /// `peakguard_records_total{topic}`: Kafka records read.
    pub records: IntCounterVec,
    /// `peakguard_offset_gap_records_total{topic}`: offsets skipped between
    /// two records of one partition (the broker returned a later record than
    /// the next offset asked for). Zero on a plain topic; compaction and
    /// transaction markers make gaps; anything else is data the broker did
    /// not deliver.
    pub offset_gaps: IntCounterVec,
    /// `peakguard_schema_registry_fetches_total{result}`: writer schemas asked
    /// of the schema registry, by outcome (`fetched`, `unknown_schema_id`,
    /// `unusable_schema`, `schema_registry_unavailable`). Only ids the local
    /// schema store lacks are asked, once each while cached.
    pub registry_fetches: IntCounterVec,
    /// `peakguard_repartitioned_records_total{target}`: records re-keyed by
    /// shop by the repartition stage.
    pub repartitioned: IntCounterVec,
    /// `peakguard_event_latency_seconds`: producer timestamp -> folded.
    pub event_latency: Histogram,
    /// `peakguard_business_rate`, `peakguard_business_denominator` and
    /// `peakguard_refund_completion_seconds` for the platform and each
    /// category, rendered once a second by [`export_scopes`](Self::export_scopes).
    scopes_text: RwLock<Arc<String>>,
    /// `peakguard_top_shop_bound` and `peakguard_top_shop_rate`.
    top_text: RwLock<Arc<String>>,
    /// `peakguard_categories_not_exported`: categories over [`MAX_EXPORTED_CATEGORIES`].
    pub categories_not_exported: IntGauge,
    /// `peakguard_dedup_evicted_total`: event ids forgotten by the dedup bound, not its horizon.
    pub dedup_evicted: IntGauge,
    /// `peakguard_scope_merge_dropped_total{reason}`: see `run_merge`.
    pub scope_merge_dropped: IntCounterVec,
    /// `peakguard_rules_reloads_total{result}` (`accepted`, `rejected`).
    pub rules_reloads: IntCounterVec,
    /// `peakguard_rules_loaded`: rules in force.
    pub rules_loaded: IntGauge,
    /// `peakguard_rules_muted_total{rule, reason}`: breaches not notified, because the
    /// campaign calendar muted the rule (`phase`) or partitions were catching up
    /// after a restart (`catching_up`).
    pub rules_muted: IntGaugeVec,
    /// `peakguard_campaign_phase{phase}`: 1 for the phase the watermark is in.
    pub campaign_phase: IntGaugeVec,
    /// `peakguard_alerts_restored`: alerts found firing on the alerts topic at start.
    pub alerts_restored: IntGauge,
    /// `peakguard_catching_up`: 1 while assigned partitions replay their backlog
    /// after a start or rebalance (alert notifications are held back).
    pub catching_up: IntGauge,
    pub checkpoint: checkpoint::CheckpointMetrics,
    /// What each worker and the scope merge last published (see [`parts`]).
    parts: Mutex<parts::Parts>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new("peakguard_events_total", "Decoded events by kind and what the engine did with them"),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        let decode_errors = IntCounterVec::new(
            Opts::new("peakguard_decode_errors_total", "Records that could not be decoded, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let dead_letter_failures = prometheus::IntCounter::new(
            "peakguard_dead_letter_failures_total",
            "Records the dead-letter topic did not take (the checkpoint is held back; they are read again)",
        )
        .expect("valid metric");
        registry.register(Box::new(dead_letter_failures.clone())).expect("unique metric");
        let dead_letters = IntCounterVec::new(
            Opts::new("peakguard_dead_letters_total", "Records written to the dead-letter topic, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let scope_merge_dropped = IntCounterVec::new(
            Opts::new(
                "peakguard_scope_merge_dropped_total",
                "Several workers: category reads handed over too late to count (late_read), and bucket ends not \
                 evaluated because a worker's reads jumped over them (bucket_skipped)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        registry.register(Box::new(scope_merge_dropped.clone())).expect("unique metric");
        for reason in ["late_read", "bucket_skipped"] {
            scope_merge_dropped.with_label_values(&[reason]);
        }
        let alerts = IntCounterVec::new(
            Opts::new("peakguard_alerts_total", "Alert notifications emitted, by rule, severity and status"),
            &["rule", "severity", "status"],
        )
        .expect("valid metric");
        let alerts_firing = IntGaugeVec::new(
            Opts::new("peakguard_alerts_firing", "Alerts (rule, key) firing now"),
            &["rule", "severity"],
        )
        .expect("valid metric");
        let alerts_pending = IntGaugeVec::new(
            Opts::new("peakguard_alerts_pending", "Alerts (rule, key) breaching but waiting out their `for`"),
            &["rule", "severity"],
        )
        .expect("valid metric");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "peakguard_consumer_lag",
                "Records between a partition's high watermark and the next offset read",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let partition_event_time = GaugeVec::new(
            Opts::new(
                "peakguard_partition_event_time_seconds",
                "Newest event time read from a partition (Unix seconds)",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        registry.register(Box::new(consumer_lag.clone())).expect("unique metric");
        registry.register(Box::new(partition_event_time.clone())).expect("unique metric");
        let sink_deliveries = IntCounterVec::new(
            Opts::new("peakguard_sink_deliveries_total", "Alert deliveries by sink and result"),
            &["sink", "result"],
        )
        .expect("valid metric");
        let sink_queue_depth = IntGaugeVec::new(
            Opts::new("peakguard_sink_queue_depth", "Alerts queued for a sink, not yet delivered"),
            &["sink"],
        )
        .expect("valid metric");
        let batch_duration = Histogram::with_opts(
            HistogramOpts::new("peakguard_batch_duration_seconds", "Time to decode and fold one polled batch")
                .buckets(prometheus::exponential_buckets(0.000_01, 4.0, 10).expect("valid buckets")),
        )
        .expect("valid metric");
        let watermark = Gauge::new("peakguard_watermark_timestamp_seconds", "Event-time watermark (Unix seconds)")
            .expect("valid metric");
        let shops = IntGauge::new("peakguard_shops", "Shops held in memory").expect("valid metric");
        let partitions = IntGaugeVec::new(
            Opts::new("peakguard_partitions_assigned", "Source partitions assigned, by topic"),
            &["topic"],
        )
        .expect("valid metric");
        let records =
            IntCounterVec::new(Opts::new("peakguard_records_total", "Kafka records read, by topic"), &["topic"])
                .expect("valid metric");
        let offset_gaps = IntCounterVec::new(
            Opts::new(
                "peakguard_offset_gap_records_total",
                "Offsets skipped between consecutive records of a partition, by topic",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let registry_fetches = IntCounterVec::new(
            Opts::new(
                "peakguard_schema_registry_fetches_total",
                "Writer schemas fetched from the schema registry, by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let repartitioned = IntCounterVec::new(
            Opts::new("peakguard_repartitioned_records_total", "Records re-keyed by shop into a target topic"),
            &["target"],
        )
        .expect("valid metric");
        registry.register(Box::new(repartitioned.clone())).expect("unique metric");
        let event_latency = Histogram::with_opts(
            HistogramOpts::new(
                "peakguard_event_latency_seconds",
                "Time from the record's producer timestamp to the event being folded",
            )
            .buckets(prometheus::exponential_buckets(0.005, 2.0, 15).expect("valid buckets")),
        )
        .expect("valid metric");
        registry.register(Box::new(event_latency.clone())).expect("unique metric");
        let categories_not_exported = IntGauge::new(
            "peakguard_categories_not_exported",
            "Categories without series of their own (over the cardinality bound)",
        )
        .expect("valid metric");
        let dedup_evicted = IntGauge::new(
            "peakguard_dedup_evicted_total",
            "Event ids forgotten by the dedup capacity bound before their horizon passed",
        )
        .expect("valid metric");
        let rules_reloads = IntCounterVec::new(
            Opts::new("peakguard_rules_reloads_total", "Rules reloads (SIGHUP or file change) by result"),
            &["result"],
        )
        .expect("valid metric");
        let rules_loaded = IntGauge::new("peakguard_rules_loaded", "Rules in force").expect("valid metric");
        let rules_muted = IntGaugeVec::new(
            Opts::new(
                "peakguard_rules_muted_total",
                "Rule breaches not notified: muted by a campaign phase, or while catching up",
            ),
            &["rule", "reason"],
        )
        .expect("valid metric");
        let campaign_phase = IntGaugeVec::new(
            Opts::new("peakguard_campaign_phase", "1 for the campaign phase the watermark is in"),
            &["phase"],
        )
        .expect("valid metric");
        let catching_up = IntGauge::new(
            "peakguard_catching_up",
            "1 while partitions replay their backlog after a start or rebalance; notifications are held",
        )
        .expect("valid metric");
        let alerts_restored = IntGauge::new(
            "peakguard_alerts_restored",
            "Alerts found firing on the alerts topic at start (not paged again)",
        )
        .expect("valid metric");
        for g in [&rules_loaded, &catching_up, &alerts_restored] {
            registry.register(Box::new(g.clone())).expect("unique metric");
        }
        for g in [&rules_muted, &campaign_phase] {
            registry.register(Box::new(g.clone())).expect("unique metric");
        }
        for result in ["accepted", "rejected"] {
            rules_reloads.with_label_values(&[result]);
        }
        for c in [&events, &decode_errors, &dead_letters, &alerts, &sink_deliveries, &rules_reloads] {
            registry.register(Box::new(c.clone())).expect("unique metric");
        }
        registry.register(Box::new(alerts_firing.clone())).expect("unique metric");
        registry.register(Box::new(sink_queue_depth.clone())).expect("unique metric");
        registry.register(Box::new(alerts_pending.clone())).expect("unique metric");
        registry.register(Box::new(batch_duration.clone())).expect("unique metric");
        registry.register(Box::new(watermark.clone())).expect("unique metric");
        registry.register(Box::new(shops.clone())).expect("unique metric");
        registry.register(Box::new(partitions.clone())).expect("unique metric");
        registry.register(Box::new(records.clone())).expect("unique metric");
        registry.register(Box::new(offset_gaps.clone())).expect("unique metric");
        registry.register(Box::new(registry_fetches.clone())).expect("unique metric");
        registry.register(Box::new(categories_not_exported.clone())).expect("unique metric");
        registry.register(Box::new(dedup_evicted.clone())).expect("unique metric");
        // Pre-create the bounded label sets so dashboards see zeros, not gaps.
        for reason in DecodeError::REASONS {
            decode_errors.with_label_values(&[*reason]);
        }
        let checkpoint = checkpoint::CheckpointMetrics::register(&registry);
        Metrics {
            checkpoint,
            registry,
            events,
            decode_errors,
            dead_letters,
            dead_letter_failures,
            alerts,
            alerts_firing,
            alerts_pending,
            consumer_lag,
            partition_event_time,
            sink_deliveries,
            sink_queue_depth,
            batch_duration,
            watermark,
            shops,
            partitions,
            records,
            offset_gaps,
            registry_fetches,
            repartitioned,
            event_latency,
            scopes_text: RwLock::default(),
            top_text: RwLock::default(),
            categories_not_exported,
            dedup_evicted,
            scope_merge_dropped,
            rules_reloads,
            rules_loaded,
            rules_muted,
            campaign_phase,
            catching_up,
            alerts_restored,
            parts: Mutex::default(),
        }
    }

    /// Part `part` (a worker, or the scope merge) publishes its rules'
    /// counts, mutes and held notifications; the gauges show the sums over
    /// every part, and the campaign phase at the lowest watermark.
    pub fn export_rules(&self, part: usize, rules: &RuleSet, watermark: Option<Millis>, gate: &NotifyGate) {
        let Ok(mut parts) = self.parts.lock() else { return };
        let counts = rules.counts_by_rule();
        let p = parts.get(part);
        p.rules.clear();
        for (i, (rule, (firing, pending))) in rules.rules().iter().zip(counts).enumerate() {
            let held = gate.held_total().get(&rule.name).copied().unwrap_or(0);
            let c =
                parts::RuleCounts { severity: rule.severity.as_str(), firing, pending, muted: rules.muted()[i], held };
            p.rules.insert(rule.name.clone(), c);
        }
        self.rules_loaded.set(rules.rules().len() as i64);
        // Rules removed by a reload must not leave their series behind.
        self.alerts_firing.reset();
        self.alerts_pending.reset();
        self.rules_muted.reset();
        for ((name, severity), c) in parts.rules() {
            let labels = [name.as_str(), severity];
            self.alerts_firing.with_label_values(&labels).set(c.firing as i64);
            self.alerts_pending.with_label_values(&labels).set(c.pending as i64);
            self.rules_muted.with_label_values(&[&name, "phase"]).set(c.muted as i64);
            self.rules_muted.with_label_values(&[&name, "catching_up"]).set(c.held as i64);
        }
        let wm = parts.watermark().or(watermark);
        let current = wm.and_then(|wm| rules.calendar().phase_at(wm)).map(|p| p.name.as_str());
        for p in rules.calendar().phases() {
            self.campaign_phase.with_label_values(&[&p.name]).set(i64::from(current == Some(p.name.as_str())));
        }
    }

    /// Worker `part` wrote a round of checkpoints of `bytes` (`written`:
    /// it succeeded now, wall clock in seconds). The gauges show every
    /// worker's last round added up, and the oldest last success, so one
    /// stuck worker shows.
    pub fn export_checkpoint(&self, part: usize, bytes: i64, written: Option<f64>) {
        let Ok(mut parts) = self.parts.lock() else { return };
        let p = parts.get(part);
        let last = p.checkpoint.and_then(|(_, w)| w);
        p.checkpoint = Some((bytes, written.or(last)));
        let rounds: Vec<(i64, Option<f64>)> = parts.iter().filter_map(|p| p.checkpoint).collect();
        self.checkpoint.bytes.set(rounds.iter().map(|(b, _)| b).sum());
        if rounds.iter().all(|(_, w)| w.is_some()) {
            let oldest = rounds.iter().filter_map(|(_, w)| *w).fold(f64::INFINITY, f64::min);
            self.checkpoint.written.set(oldest);
        }
    }

    /// (firing, pending) alerts per rule name, over every part.
    pub fn rule_totals(&self) -> std::collections::HashMap<String, (u64, u64)> {
        let Ok(parts) = self.parts.lock() else { return Default::default() };
        let mut out: std::collections::HashMap<String, (u64, u64)> = Default::default();
        for ((name, _), c) in parts.rules() {
            let e = out.entry(name).or_default();
            (e.0, e.1) = (e.0 + c.firing, e.1 + c.pending);
        }
        out
    }

    /// Worker `part`'s shops, watermark and catch-up: `peakguard_shops` is
    /// the sum over workers, the watermark the lowest, and catching up true
    /// while any worker is.
    pub fn export_worker(&self, part: usize, shops: usize, watermark: Option<Millis>, catching_up: bool) {
        let Ok(mut parts) = self.parts.lock() else { return };
        let p = parts.get(part);
        (p.shops, p.watermark, p.catching_up) = (shops, watermark, catching_up);
        self.shops.set(parts.iter().map(|p| p.shops).sum::<usize>() as i64);
        if let Some(wm) = parts.watermark() {
            self.watermark.set(wm as f64 / 1000.0);
        }
        self.catching_up.set(i64::from(parts.iter().any(|p| p.catching_up)));
    }

    /// Publishes platform and per-category rates of every window ending with
    /// the bucket that holds `watermark` (dashboards want the bucket in
    /// progress; rules, which must not page on partial data, read complete
    /// buckets only), summed over every worker's share. See [`business`].
    pub fn export_scopes(&self, part: usize, engine: &Engine, watermark: Millis) {
        let rows = business::scope_rows(engine, watermark);
        let Ok(mut parts) = self.parts.lock() else { return };
        let p = parts.get(part);
        p.scopes = rows;
        p.dedup_evicted = engine.dedup_evicted();
        let (text, skipped) = business::render_scopes(&parts.scopes());
        self.dedup_evicted.set(parts.iter().map(|p| p.dedup_evicted).sum::<u64>() as i64);
        // Stored before the parts are let go: two workers exporting at once
        // must not leave the text of the one that rendered first (without
        // the other's newest rows).
        if let Ok(mut t) = self.scopes_text.write() {
            *t = Arc::new(text);
        }
        self.categories_not_exported.set(skipped as i64);
        drop(parts);
    }

    /// Publishes worker `part`'s top-K lists (replacing its previous shops)
    /// and returns the lists over every worker, `k` entries each at most.
    pub fn export_top(&self, part: usize, lists: Vec<TopList>, k: usize) -> Vec<TopList> {
        let Ok(mut parts) = self.parts.lock() else { return lists };
        parts.get(part).top = lists;
        let top = parts.top(k);
        if let Ok(mut t) = self.top_text.write() {
            *t = Arc::new(business::render_top(&top));
        }
        drop(parts);
        top
    }

    /// Pre-resolved `events_total` children, indexed by kind and outcome.
    pub fn event_counters(&self) -> EventCounters {
        let outcomes = Fold::ALL;
        EventCounters(
            EventKind::ALL
                .iter()
                .map(|k| outcomes.map(|o| self.events.with_label_values(&[k.symbol(), o.label()])))
                .collect(),
        )
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        let mut out =
            encoder.encode_to_string(&self.registry.gather()).unwrap_or_else(|e| format!("# encode error: {e}\n"));
        for block in [&self.scopes_text, &self.top_text] {
            if let Ok(t) = block.read() {
                out.push_str(&t);
            }
        }
        out
    }

    /// The value of one series in the exposition, by its name and labels as
    /// rendered (`name{a="x",b="y"}`); for tests and the CLI summaries.
    pub fn sample(&self, series: &str) -> Option<f64> {
        self.render().lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `peakguard_events_total` children resolved once, for the hot path.
pub struct EventCounters(Vec<[IntCounter; 5]>);

impl EventCounters {
    #[inline]
    pub fn inc(&self, kind: EventKind, fold: Fold) {
        self.0[kind as usize][fold as usize].inc();
    }
}
