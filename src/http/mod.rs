//! HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` (the
//! process is up), `/readyz` (partitions assigned and caught up) and the
//! JSON query API under `/api/v1` ([`api`]). Binds to localhost by default
//! (`[http].listen`); with `[http].token`, `/api/v1` needs a bearer token.

pub mod api;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::query::ReadView;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub view: Arc<ReadView>,
    /// Bearer token of /api/v1; `None`: open.
    pub token: Option<Arc<str>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .nest("/api/v1", api::router(state.clone()))
        .with_state(state)
}

async fn render(State(s): State<AppState>) -> impl IntoResponse {
    let _span = tracing::debug_span!("scrape").entered();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    if s.view.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no partitions assigned yet, or catching up\n")
    }
}

/// Binds `addr` (port 0 picks a free one) and serves until `shutdown`.
/// Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok((bound, handle))
}
