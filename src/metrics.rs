//! The Prometheus registry and every metric peakguard exports. Handles are
//! registered once here; the hot path only increments pre-resolved children.
//! Cardinality is bounded: no label ever carries a shop id.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::codec::DecodeError;
use crate::engine::Fold;
use crate::event::EventKind;

pub struct Metrics {
    pub registry: Registry,
    /// `peakguard_events_total{kind, outcome}`: decoded events by what the engine did.
    pub events: IntCounterVec,
    /// `peakguard_decode_errors_total{reason}`.
    pub decode_errors: IntCounterVec,
    /// `peakguard_dead_letters_total{reason}`: records written to the dead-letter topic.
    pub dead_letters: IntCounterVec,
    /// `peakguard_alerts_total{rule, severity, status}`: notifications emitted.
    pub alerts: IntCounterVec,
    /// `peakguard_alerts_firing`: (rule, shop) pairs firing now.
    pub alerts_firing: IntGauge,
    /// `peakguard_sink_deliveries_total{sink, result}`.
    pub sink_deliveries: IntCounterVec,
    /// `peakguard_batch_duration_seconds`: time to decode and fold one polled batch.
    pub batch_duration: Histogram,
    /// `peakguard_watermark_timestamp_seconds`: event-time watermark.
    pub watermark: Gauge,
    /// `peakguard_shops`: shops held in memory.
    pub shops: IntGauge,
    /// `peakguard_partitions_assigned`.
    pub partitions: IntGaugeVec,
    /// `peakguard_records_total`: Kafka records read.
    pub records: IntCounter,
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
        let dead_letters = IntCounterVec::new(
            Opts::new("peakguard_dead_letters_total", "Records written to the dead-letter topic, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let alerts = IntCounterVec::new(
            Opts::new("peakguard_alerts_total", "Alert notifications emitted, by rule, severity and status"),
            &["rule", "severity", "status"],
        )
        .expect("valid metric");
        let alerts_firing =
            IntGauge::new("peakguard_alerts_firing", "Alerts (rule, shop) firing now").expect("valid metric");
        let sink_deliveries = IntCounterVec::new(
            Opts::new("peakguard_sink_deliveries_total", "Alert deliveries by sink and result"),
            &["sink", "result"],
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
        let records = IntCounter::new("peakguard_records_total", "Kafka records read").expect("valid metric");
        for c in [&events, &decode_errors, &dead_letters, &alerts, &sink_deliveries] {
            registry.register(Box::new(c.clone())).expect("unique metric");
        }
        registry.register(Box::new(alerts_firing.clone())).expect("unique metric");
        registry.register(Box::new(batch_duration.clone())).expect("unique metric");
        registry.register(Box::new(watermark.clone())).expect("unique metric");
        registry.register(Box::new(shops.clone())).expect("unique metric");
        registry.register(Box::new(partitions.clone())).expect("unique metric");
        registry.register(Box::new(records.clone())).expect("unique metric");
        // Pre-create the bounded label sets so dashboards see zeros, not gaps.
        for reason in DecodeError::REASONS {
            decode_errors.with_label_values(&[*reason]);
        }
        Metrics {
            registry,
            events,
            decode_errors,
            dead_letters,
            alerts,
            alerts_firing,
            sink_deliveries,
            batch_duration,
            watermark,
            shops,
            partitions,
            records,
        }
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
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_else(|e| format!("# encode error: {e}\n"))
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
