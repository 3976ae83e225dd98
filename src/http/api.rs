//! The JSON query API (`/api/v1`), documented in README.md:
//!
//! * `GET /api/v1/shops/{shop_id}`: every metric over every window, and the
//!   shop's firing alerts.
//! * `GET /api/v1/alerts[?rule=R&scope=S]`: firing alerts with their numbers.
//! * `GET /api/v1/top[?metric=M&window=W]`: the top-K shops per metric and window.
//! * `GET /api/v1/rules`: the rules in force, their firing and pending
//!   counts, and the campaign calendar.
//!
//! Everything is read from the [`ReadView`](crate::query::ReadView); with
//! `[http].token` set, requests need `Authorization: Bearer <token>`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

/// How long a shop query waits for the worker.
const SHOP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/shops/{shop_id}", get(shop))
        .route("/alerts", get(alerts))
        .route("/top", get(top))
        .route("/rules", get(rules))
        .layer(middleware::from_fn_with_state(state, auth))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let ok = given.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|t| same(t.as_bytes(), token.as_bytes()));
        if !ok {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (see [http].token)");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

async fn shop(State(s): State<AppState>, Path(shop_id): Path<String>) -> Response {
    let report = match s.view.cached_shop(&shop_id) {
        Some(r) => Some(r),
        None => match tokio::time::timeout(SHOP_TIMEOUT, s.view.request_shop(&shop_id)).await {
            Ok(Ok(r)) => r,
            _ => return error(StatusCode::SERVICE_UNAVAILABLE, "the worker did not answer in time; retry"),
        },
    };
    let Some(report) = report else {
        return error(StatusCode::NOT_FOUND, "no data for this shop in any window");
    };
    let alerts: Vec<_> = s.view.alerts().into_iter().filter(|a| a.shop_id == shop_id).collect();
    Json(json!({ "shop": &*report, "alerts": alerts })).into_response()
}

async fn alerts(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let list: Vec<_> = s
        .view
        .alerts()
        .into_iter()
        .filter(|a| q.get("rule").is_none_or(|r| &a.rule == r))
        .filter(|a| q.get("scope").is_none_or(|sc| &a.scope == sc))
        .collect();
    Json(json!({ "alerts": list })).into_response()
}

async fn top(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let lists = s.view.top();
    let chosen: Vec<_> = lists
        .iter()
        .filter(|l| q.get("metric").is_none_or(|m| l.metric == m))
        .filter(|l| q.get("window").is_none_or(|w| &l.window == w))
        .collect();
    if chosen.is_empty() && (q.contains_key("metric") || q.contains_key("window")) {
        let known: Vec<String> = lists.iter().map(|l| format!("{}/{}", l.metric, l.window)).collect();
        return error(StatusCode::NOT_FOUND, &format!("no such list; ranked: {}", known.join(", ")));
    }
    Json(json!({ "top": chosen })).into_response()
}

async fn rules(State(s): State<AppState>) -> Response {
    Json(&*s.view.rules()).into_response()
}
