//! Alert delivery. The worker hands alerts to a bounded queue; a dispatcher
//! logs each one and fans it out to one bounded queue per sink, each drained
//! by its own task with its own retries. A dead or slow sink fills only its
//! own queue: the worker and the other sinks go on, and what that sink had to
//! drop is counted (`peakguard_sink_deliveries_total{result="dropped"}`).
//!
//! * [`log`]: structured log lines (always on, in the dispatcher).
//! * [`kafka`]: JSON on the alerts topic, keyed by fingerprint.
//! * [`webhook`]: JSON POSTed to a URL, optionally HMAC-signed.
//! * [`alertmanager`]: Alertmanager's v2 API, firing alerts re-sent every minute.

pub mod alertmanager;
pub mod http_post;
pub mod kafka;
pub mod log;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{warn, Instrument};

use crate::metrics::Metrics;
use crate::rules::Alert;

/// Capacity of the queue between the worker and the dispatcher, and of each sink's queue.
pub const QUEUE_CAPACITY: usize = 1024;

/// How long, at shutdown, sinks may take to drain their queues.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Every alert logged, kept for the end-of-run summary.
pub type AlertLog = Arc<Mutex<Vec<Alert>>>;

/// An asynchronous alert sink.
pub enum Sink {
    Kafka(kafka::KafkaSink),
    Webhook(webhook::WebhookSink),
    /// With the interval at which firing alerts are re-sent.
    Alertmanager(alertmanager::AlertmanagerSink, Duration),
}

impl Sink {
    async fn deliver(&self, alert: &Alert) -> bool {
        match self {
            Sink::Kafka(k) => k.deliver(alert).await,
            Sink::Webhook(w) => w.deliver(alert).await,
            Sink::Alertmanager(a, _) => a.deliver(alert).await,
        }
    }

    /// A repeat (an alert already notified before a restart) goes to
    /// Alertmanager, which must keep receiving it, and to the alerts topic,
    /// which records state; a webhook would page again, so it is not sent there.
    fn takes_repeats(&self) -> bool {
        !matches!(self, Sink::Webhook(_))
    }

    /// Periodic work between alerts (re-sending firing alerts), and how often.
    fn periodic(&self) -> Option<Duration> {
        match self {
            Sink::Alertmanager(_, every) => Some(*every),
            _ => None,
        }
    }

    async fn on_period(&self) -> bool {
        match self {
            Sink::Alertmanager(a, _) => a.resend().await,
            _ => true,
        }
    }
}

/// Drains `rx` until every sender is dropped: logs each alert, records it in
/// `delivered`, and queues it for every sink (named for metrics). Returns once
/// the sinks have drained (or [`DRAIN_TIMEOUT`] passed).
pub async fn run(
    mut rx: mpsc::Receiver<Alert>,
    sinks: Vec<(&'static str, Sink)>,
    metrics: Arc<Metrics>,
    delivered: AlertLog,
) {
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for (name, sink) in sinks {
        let repeats = sink.takes_repeats();
        let (tx, mut sink_rx) = mpsc::channel::<Arc<Alert>>(QUEUE_CAPACITY);
        let m = metrics.clone();
        tasks.push(tokio::spawn(async move {
            let mut period = tokio::time::interval(sink.periodic().unwrap_or(Duration::from_secs(3600)));
            period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            period.tick().await;
            loop {
                tokio::select! {
                    next = sink_rx.recv() => {
                        let Some(alert) = next else { break };
                        m.sink_queue_depth.with_label_values(&[name]).dec();
                        let span = tracing::info_span!("deliver", sink = name, fingerprint = %alert.fingerprint, status = alert.status.as_str());
                        let result = if sink.deliver(&alert).instrument(span).await { "ok" } else { "error" };
                        m.sink_deliveries.with_label_values(&[name, result]).inc();
                    }
                    _ = period.tick(), if sink.periodic().is_some() => {
                        if !sink.on_period().await {
                            m.sink_deliveries.with_label_values(&[name, "error"]).inc();
                        }
                    }
                }
            }
        }));
        queues.push((name, tx, repeats));
    }
    while let Some(alert) = rx.recv().await {
        log::deliver(&alert);
        metrics.sink_deliveries.with_label_values(&["log", "ok"]).inc();
        let shared = Arc::new(alert);
        for (name, tx, repeats) in &queues {
            if shared.repeat && !repeats {
                metrics.sink_deliveries.with_label_values(&[name, "repeat_skipped"]).inc();
                continue;
            }
            match tx.try_send(shared.clone()) {
                Ok(()) => metrics.sink_queue_depth.with_label_values(&[name]).inc(),
                Err(_) => {
                    metrics.sink_deliveries.with_label_values(&[name, "dropped"]).inc();
                    warn!(sink = name, fingerprint = %shared.fingerprint, "sink queue full; alert dropped for this sink");
                }
            }
        }
        if let Ok(mut d) = delivered.lock() {
            d.push((*shared).clone());
        }
    }
    drop(queues);
    let drain = futures_join(tasks);
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        warn!("sinks did not drain within {DRAIN_TIMEOUT:?}; undelivered alerts are counted as queued");
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
