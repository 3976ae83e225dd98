//! Checkpoint metrics: how often, how big, how long, how old, and failures.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

pub struct CheckpointMetrics {
    /// `peakguard_checkpoint_duration_seconds`: writing one round of checkpoints.
    pub duration: Histogram,
    /// `peakguard_checkpoint_bytes`: size of the last round (of every
    /// worker's last round, added up; see [`super::Metrics::export_checkpoint`]).
    pub bytes: IntGauge,
    /// `peakguard_checkpoint_last_success_timestamp_seconds`: alert on its
    /// age. With several workers, the oldest of their last successes.
    pub written: Gauge,
    /// `peakguard_checkpoint_failures_total`: partitions whose checkpoint could be written nowhere.
    pub failures: IntCounter,
    /// `peakguard_checkpoint_restores_total`: partitions restored from a checkpoint.
    pub restores: IntCounter,
}

impl CheckpointMetrics {
    pub fn register(registry: &Registry) -> CheckpointMetrics {
        let m = CheckpointMetrics {
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "peakguard_checkpoint_duration_seconds",
                    "Time to write one round of partition checkpoints (local and topic)",
                )
                .buckets(vec![0.001, 0.005, 0.02, 0.1, 0.5, 2.0, 10.0, 30.0]),
            )
            .expect("valid metric"),
            bytes: IntGauge::new("peakguard_checkpoint_bytes", "Bytes written by the last round of checkpoints")
                .expect("valid metric"),
            written: Gauge::new(
                "peakguard_checkpoint_last_success_timestamp_seconds",
                "Wall-clock time of the last round of checkpoints",
            )
            .expect("valid metric"),
            failures: IntCounter::new(
                "peakguard_checkpoint_failures_total",
                "Partition checkpoints that could not be written anywhere",
            )
            .expect("valid metric"),
            restores: IntCounter::new(
                "peakguard_checkpoint_restores_total",
                "Partitions whose state was restored from a checkpoint",
            )
            .expect("valid metric"),
        };
        registry.register(Box::new(m.duration.clone())).expect("unique metric");
        registry.register(Box::new(m.bytes.clone())).expect("unique metric");
        registry.register(Box::new(m.written.clone())).expect("unique metric");
        registry.register(Box::new(m.failures.clone())).expect("unique metric");
        registry.register(Box::new(m.restores.clone())).expect("unique metric");
        m
    }
}
