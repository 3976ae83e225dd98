//! Wires one worker, the alert sinks and the HTTP server together; used by
//! `peakguard run` and `peakguard demo`. The worker runs on its own OS thread
//! (sync hot path); sinks and HTTP run on the tokio runtime. Every part stops
//! on one [`CancellationToken`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::codec::SchemaStore;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::query::ReadView;
use crate::rules::Alert;
use crate::sink::{self, alertmanager::AlertmanagerSink, kafka::KafkaSink, webhook::WebhookSink, Sink};
use crate::source::kafka::{producer_config, SourceError};
use crate::source::{run_worker, WorkerOptions, WorkerReport};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot create the alerts producer: {0}")]
    AlertsProducer(rdkafka::error::KafkaError),
    #[error("cannot listen on {addr} (http.listen): {cause}; pick a free port or stop what holds it")]
    Listen { addr: String, cause: std::io::Error },
    #[error("cannot set up an HTTP alert sink (webhook or Alertmanager): {0}")]
    Webhook(String),
    #[error("the worker thread panicked")]
    WorkerPanicked,
    #[error("the repartition stage stopped: {0}; its last batch is read again on restart")]
    Repartition(rdkafka::error::KafkaError),
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub worker: WorkerOptions,
    /// Serve /metrics and /healthz on `[http].listen`.
    pub http: bool,
    /// The config file `cfg` came from: its rules reload on SIGHUP or when
    /// it (or its rules file) changes.
    pub reload_from: Option<std::path::PathBuf>,
}

/// What a run did.
pub struct RunSummary {
    pub report: WorkerReport,
    /// Every alert notification delivered, in order.
    pub alerts: Vec<Alert>,
    pub metrics: Arc<Metrics>,
    /// The query API's read view as the run left it.
    pub view: Arc<ReadView>,
}

/// A started HTTP server's address, reported before the run ends.
pub type OnListen = Box<dyn FnOnce(SocketAddr) + Send>;

/// Runs until `shutdown` (or, with `exit_when_caught_up`, until caught up).
pub async fn run(
    cfg: Config,
    store: Arc<SchemaStore>,
    shutdown: CancellationToken,
    opts: RunOptions,
    on_listen: Option<OnListen>,
) -> Result<RunSummary, RunError> {
    let metrics = Arc::new(Metrics::new());
    let view = ReadView::new();
    let http_stop = CancellationToken::new();
    let mut http_task = None;
    if opts.http {
        let addr: SocketAddr = cfg.http.listen.parse().map_err(|_| RunError::Listen {
            addr: cfg.http.listen.clone(),
            cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an ip:port"),
        })?;
        let token = (!cfg.http.token.is_empty()).then(|| Arc::from(cfg.http.token.as_str()));
        let state = crate::http::AppState { metrics: metrics.clone(), view: view.clone(), token };
        let (bound, task) = crate::http::serve(addr, state, http_stop.clone())
            .await
            .map_err(|cause| RunError::Listen { addr: cfg.http.listen.clone(), cause })?;
        info!(%bound, "serving /metrics and /healthz");
        if let Some(f) = on_listen {
            f(bound);
        }
        http_task = Some(task);
    }
    let mut sinks = Vec::new();
    if !cfg.kafka.alerts_topic.is_empty() {
        let k = KafkaSink::new(&producer_config(&cfg), &cfg.kafka.alerts_topic).map_err(RunError::AlertsProducer)?;
        sinks.push(("kafka", Sink::Kafka(k)));
    }
    if !cfg.webhook.url.is_empty() {
        let w = WebhookSink::new(&cfg.webhook.url, &cfg.webhook.secret, cfg.webhook.timeout, cfg.webhook.attempts)
            .map_err(|e| RunError::Webhook(e.to_string()))?;
        sinks.push(("webhook", Sink::Webhook(w)));
    }
    if !cfg.alertmanager.url.is_empty() {
        let am = &cfg.alertmanager;
        let a =
            AlertmanagerSink::new(&am.url, am.timeout, am.attempts).map_err(|e| RunError::Webhook(e.to_string()))?;
        sinks.push(("alertmanager", Sink::Alertmanager(a, am.resend_interval)));
    }
    let (tx, rx) = mpsc::channel(sink::QUEUE_CAPACITY);
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let sink_task = tokio::spawn(sink::run(rx, sinks, metrics.clone(), delivered.clone()));

    if !cfg.checkpoint.topic.is_empty() {
        if let Err(e) = crate::checkpoint::topic::ensure_topic(&producer_config(&cfg), &cfg.checkpoint.topic).await {
            warn!(error = %e, "cannot make sure the checkpoint topic exists; checkpoint writes to it may fail");
        }
    }
    let mut worker_opts = opts.worker.clone();
    let reload_stop = CancellationToken::new();
    if let Some(path) = opts.reload_from.clone() {
        let slot = worker_opts.rules_update.get_or_insert_with(Default::default).clone();
        crate::reload::spawn(cfg.clone(), path, slot, metrics.clone(), reload_stop.clone());
    }
    // A stop must not hang on a stuck broker: once asked to stop, the worker
    // has `shutdown.drain_timeout` to finish, checkpoint and commit.
    let drain = cfg.shutdown.drain_timeout;
    let watchdog = shutdown.clone();
    let watchdog = tokio::spawn(async move {
        watchdog.cancelled().await;
        tokio::time::sleep(drain).await;
        tracing::error!(?drain, "shutdown did not finish within shutdown.drain_timeout; exiting without it");
        std::process::exit(3);
    });
    // The repartition stage: before the worker in a catch-up run (so the
    // worker finds every re-keyed record), beside it otherwise. A failure
    // stops the whole run: a stalled stage would silently starve windows.
    let mut stage = None;
    if !cfg.kafka.repartition.is_empty() {
        let (cfg, store, metrics, token) = (cfg.clone(), store.clone(), metrics.clone(), shutdown.clone());
        let catch_up = worker_opts.exit_when_caught_up;
        let handle = std::thread::Builder::new()
            .name("peakguard-repartition".into())
            .spawn(move || {
                let result = crate::source::repartition::run(&cfg, &store, &metrics, &token, catch_up);
                if let Err(e) = &result {
                    tracing::error!(error = %e, "repartition stage failed; stopping");
                    token.cancel();
                }
                result
            })
            .map_err(|_| RunError::WorkerPanicked)?;
        if catch_up {
            let result = tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|_| RunError::WorkerPanicked)?
                .map_err(|_| RunError::WorkerPanicked)?;
            result.map_err(RunError::Repartition)?;
        } else {
            stage = Some(handle);
        }
    }
    let (done_tx, done_rx) = oneshot::channel();
    let worker_metrics = metrics.clone();
    let worker_view = view.clone();
    std::thread::Builder::new()
        .name("peakguard-worker".into())
        .spawn(move || {
            let result = run_worker(&cfg, &store, &worker_metrics, &worker_view, tx, shutdown, worker_opts);
            let _ = done_tx.send(result);
        })
        .map_err(|_| RunError::WorkerPanicked)?;
    let report = done_rx.await.map_err(|_| RunError::WorkerPanicked);
    watchdog.abort();
    reload_stop.cancel();
    let report = report??;
    if let Some(handle) = stage {
        let result = tokio::task::spawn_blocking(move || handle.join())
            .await
            .map_err(|_| RunError::WorkerPanicked)?
            .map_err(|_| RunError::WorkerPanicked)?;
        result.map_err(RunError::Repartition)?;
    }
    // The worker dropped its sender: the sink task drains what is queued and ends.
    let _ = sink_task.await;
    http_stop.cancel();
    if let Some(t) = http_task {
        let _ = t.await;
    }
    let alerts = delivered.lock().map(|d| d.clone()).unwrap_or_default();
    Ok(RunSummary { report, alerts, metrics, view })
}
