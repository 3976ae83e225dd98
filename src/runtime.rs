//! Wires the workers, the alert sinks and the HTTP server together; used by
//! `peakguard run` and `peakguard demo`. `kafka.workers` workers (one per
//! core by default, never more than the topics have partitions) each run on
//! their own OS thread (sync hot path), each its own consumer in the group;
//! with more than one, a scope merge thread evaluates category and platform
//! rules over their shares (`source/kafka/team.rs`). Sinks and HTTP run on
//! the tokio runtime. Every part stops on one [`CancellationToken`].

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
use crate::source::kafka::team::{run_merge, MergeOutput, Team};
use crate::source::kafka::{producer_config, topics, SourceError};
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
    /// Worker threads the run had (`kafka.workers`, resolved).
    pub workers: usize,
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
    let workers = worker_count(&cfg).await?;
    info!(workers, "starting workers");
    let view = ReadView::for_workers(workers);
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
    let (tx_sink, rx) = mpsc::channel(sink::QUEUE_CAPACITY);
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let sink_task = tokio::spawn(sink::run(rx, sinks, metrics.clone(), delivered.clone()));

    if !cfg.checkpoint.topic.is_empty() {
        if let Err(e) = crate::checkpoint::topic::ensure_topic(&producer_config(&cfg), &cfg.checkpoint.topic).await {
            warn!(error = %e, "cannot make sure the checkpoint topic exists; checkpoint writes to it may fail");
        }
    }
    let worker_opts = opts.worker.clone();
    let reload_stop = CancellationToken::new();
    // One rules slot per worker and one for the merge: a reload reaches all.
    let slots: Vec<crate::reload::RulesUpdate> = match &worker_opts.rules_update {
        Some(given) if workers == 1 => vec![given.clone()],
        _ => (0..=workers).map(|_| Default::default()).collect(),
    };
    if let Some(path) = opts.reload_from.clone() {
        crate::reload::spawn(cfg.clone(), path, slots.clone(), metrics.clone(), reload_stop.clone());
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
    let (merge_tx, merge) = if workers > 1 {
        let (tx, rx) = std::sync::mpsc::channel();
        let out = MergeOutput {
            part: workers,
            metrics: metrics.clone(),
            view: view.clone(),
            alerts_tx: tx_sink.clone(),
            rules_update: slots.get(workers).cloned(),
            finish_at_end: worker_opts.exit_when_caught_up,
        };
        let (cfg, restore) = (cfg.clone(), worker_opts.restore_alerts);
        let handle = std::thread::Builder::new()
            .name("peakguard-merge".into())
            .spawn(move || {
                let mut merge =
                    crate::pipeline::merge::ScopeMerge::new(cfg.rule_book(), cfg.engine_config().windows, workers);
                if restore && !cfg.kafka.alerts_topic.is_empty() {
                    match crate::source::restore::read_alerts(&cfg, std::time::Duration::from_secs(15)) {
                        Ok(alerts) => merge.restore_alerts(alerts),
                        Err(e) => {
                            warn!(error = %e, "cannot read the alerts topic back; category alerts may page again")
                        }
                    }
                }
                run_merge(rx, merge, out)
            })
            .map_err(|_| RunError::WorkerPanicked)?;
        (Some(tx), Some(handle))
    } else {
        (None, None)
    };
    let mut done = Vec::new();
    for (team, slot) in Team::new(workers, merge_tx).into_iter().zip(slots) {
        let (done_tx, done_rx) = oneshot::channel();
        let mut opts = worker_opts.clone();
        opts.rules_update = Some(slot);
        opts.team = team;
        let (cfg, store, metrics, view) = (cfg.clone(), store.clone(), metrics.clone(), view.clone());
        let (tx, shutdown) = (tx_sink.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name(format!("peakguard-worker-{}", opts.team.id))
            .spawn(move || {
                let result = run_worker(&cfg, &store, &metrics, &view, tx, shutdown.clone(), opts);
                if result.is_err() {
                    // One worker cannot start: the process stops (its
                    // partitions would otherwise wait for it forever).
                    shutdown.cancel();
                }
                let _ = done_tx.send(result);
            })
            .map_err(|_| RunError::WorkerPanicked)?;
        done.push(done_rx);
    }
    drop(tx_sink);
    let mut report: Option<Result<WorkerReport, RunError>> = None;
    for rx in done {
        let r = rx.await.map_err(|_| RunError::WorkerPanicked).and_then(|r| r.map_err(RunError::from));
        report = Some(match (report, r) {
            (None, r) => r,
            (Some(Ok(a)), Ok(b)) => Ok(a.merge(b)),
            (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
        });
    }
    if let Some(handle) = merge {
        // Every worker has dropped its sender: the merge finishes and ends.
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .map_err(|_| RunError::WorkerPanicked)?
            .map_err(|_| RunError::WorkerPanicked)?;
    }
    watchdog.abort();
    reload_stop.cancel();
    let report = report.ok_or(RunError::WorkerPanicked)??;
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
    Ok(RunSummary { report, alerts, metrics, view, workers })
}

/// `kafka.workers` (0: one per core), but no more than the event topics
/// have partitions: a worker without one would only hold a group member.
async fn worker_count(cfg: &Config) -> Result<usize, RunError> {
    let wanted = cfg.worker_count();
    if wanted <= 1 {
        return Ok(1);
    }
    let c = cfg.clone();
    let partitions = tokio::task::spawn_blocking(move || topics::partitions(&c, std::time::Duration::from_secs(10)))
        .await
        .map_err(|_| RunError::WorkerPanicked)??;
    Ok(match partitions {
        Some(p) if p < wanted => {
            info!(wanted, partitions = p, "fewer partitions than kafka.workers: one worker per partition");
            p
        }
        _ => wanted,
    })
}
