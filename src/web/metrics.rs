//! `GET /metrics` in Prometheus' text format: what the app counts as it runs (logins by
//! outcome, engine stage times, queue depth and busy refusals, lift states and events) and
//! what is read at scrape time (device silence, sessions alive). Answered to the networks in
//! `web.metrics_from` only (loopback by default): the counts say when people come and go.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, WebError};
use crate::lift::Condition;

/// Engine stages take milliseconds to a second.
const STAGE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// The process's recorder, installed on first use: one per process, shared by every app in it
/// (tests run several).
fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("facelift_engine_stage_seconds".into()),
                    STAGE_BUCKETS,
                )
                .and_then(PrometheusBuilder::install_recorder);
            installed
                .inspect_err(
                    |error| tracing::error!(%error, "no metrics: the recorder did not install"),
                )
                .ok()
        })
        .as_ref()
}

/// Installs the recorder, so that counting starts with the app rather than at the first scrape.
pub fn install() {
    let _ = recorder();
}

/// The counters, in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses(
        (status = 200, description = "the metrics", content_type = "text/plain", body = String),
        (status = 403, description = "not served to this address", content_type = "text/plain", body = String),
        (status = 503, description = "metrics are off", content_type = "text/plain", body = String),
    ))]
async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, WebError> {
    let allowed = &state.settings.web.metrics_from;
    if !allowed.iter().any(|net| net.contains(&peer.ip())) {
        return Ok((
            StatusCode::FORBIDDEN,
            "metrics are not served to this address",
        )
            .into_response());
    }
    let Some(handle) = recorder() else {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are off: see the log",
        )
            .into_response());
    };
    for car in state.lifts.cars() {
        let condition = car.status().state;
        for each in Condition::ALL {
            metrics::gauge!("facelift_lift_state", "lift" => car.name().to_string(), "state" => each.as_str())
                .set(f64::from(u8::from(each == condition)));
        }
        let silent = car
            .device_silent_for()
            .map_or(f64::NAN, |d| d.as_secs_f64());
        metrics::gauge!("facelift_device_last_seen_seconds", "lift" => car.name().to_string())
            .set(silent);
    }
    let (store, now) = (state.store.clone(), state.clock.now());
    let alive = tokio::task::spawn_blocking(move || store.alive_sessions(now)).await??;
    metrics::gauge!("facelift_sessions_alive").set(alive as f64);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}
