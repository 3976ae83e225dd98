//! Alert delivery. The worker hands alerts to a bounded queue; one async task
//! drains it and delivers each alert to every configured sink. A slow sink
//! applies back-pressure instead of losing alerts.
//!
//! * [`log`]: structured log lines (always on).
//! * [`kafka`]: JSON on the alerts topic, keyed by fingerprint.

pub mod kafka;
pub mod log;

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::rules::Alert;

/// Capacity of the queue between the worker and the sinks.
pub const QUEUE_CAPACITY: usize = 1024;

/// Every alert delivered, kept for the end-of-run summary.
pub type AlertLog = Arc<Mutex<Vec<Alert>>>;

/// Drains `rx` until every sender is dropped, delivering each alert to the
/// log, to Kafka when configured, and to `delivered`.
pub async fn run(
    mut rx: mpsc::Receiver<Alert>,
    kafka: Option<kafka::KafkaSink>,
    metrics: Arc<Metrics>,
    delivered: AlertLog,
) {
    while let Some(alert) = rx.recv().await {
        log::deliver(&alert);
        metrics.sink_deliveries.with_label_values(&["log", "ok"]).inc();
        if let Some(k) = &kafka {
            let result = if k.deliver(&alert).await { "ok" } else { "error" };
            metrics.sink_deliveries.with_label_values(&["kafka", result]).inc();
        }
        if let Ok(mut d) = delivered.lock() {
            d.push(alert);
        }
    }
}
