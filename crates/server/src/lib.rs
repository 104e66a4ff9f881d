//! crossdex's HTTP API (`crossdex serve`): search with facets, SQL answered as JSON,
//! NDJSON, CSV or Arrow IPC, saved queries, subjects, records, sources and their sync
//! runs, health, metrics, the dataset catalogue, an OpenAPI 3.1 document generated from
//! the handlers, and the catalogue over OAI-PMH at `/oai`.
//!
//! It owns HTTP: routes, parameters, content negotiation, status codes, limits. It
//! calls `crossdex-service` for everything else and must never reach the store, the
//! writer or a snapshot. [`app`] builds the router; [`serve`] runs it until shutdown,
//! finishing the requests in flight.

#![warn(missing_docs)]

mod auth;
mod error;
mod es;
mod oai;
mod routes;
mod sql;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use crossdex_service::{ErrorCode, Service, ServiceError};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use error::{ApiError, ErrorBody};

/// The API's prefix.
pub const PREFIX: &str = "/api/v1";

/// Limits and settings of the API.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request body, in bytes [default 1 MiB].
    pub max_body_bytes: usize,
    /// A request taking longer is answered 408 [default 60 s]; queries have their own,
    /// shorter limit (`timeout_ms`).
    pub request_timeout: Duration,
    /// Default and largest time limit of one query or search [default 30 s].
    pub query_timeout: Duration,
    /// Queries and searches run at once; more are answered 429 [default 32].
    pub max_concurrent_queries: usize,
    /// Origins allowed to call the API from a browser; empty: none.
    pub cors_origins: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(60),
            query_timeout: Duration::from_secs(30),
            max_concurrent_queries: 32,
            cors_origins: Vec::new(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub service: Service,
    pub options: Arc<ServerOptions>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Each token's request rate and queries at once.
    pub limiter: Arc<auth::Limiter>,
}

/// The Prometheus recorder of this process: installed once, shared by every router.
fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ])
                .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder installed first (a test harness) leaves ours unused:
            // the endpoint then shows what this handle saw, nothing more.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crossdex HTTP API",
        description = "Search, SQL, subjects, records and sync status of a crossdex index. Errors are `{message, code, type, link}` (docs/errors.md).",
        license(name = "Apache-2.0")
    ),
    servers((url = "/api/v1"))
)]
struct ApiDoc;

/// The OpenAPI document of the API: every route of [`app`], from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::probes().merge(routes::router()).split_for_parts().1
}

/// Answers a request the tower layers refused: too many queries at once, too slow.
async fn refused(e: tower::BoxError) -> axum::response::Response {
    if e.is::<tower::load_shed::error::Overloaded>() {
        let mut r = ApiError(ServiceError::new(
            ErrorCode::Overloaded,
            "too many queries at once; try again in a second",
        ))
        .into_response();
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    }
    ApiError(ServiceError::internal("answering", e)).into_response()
}

/// The API's router over `service`.
pub fn app(service: Service, options: ServerOptions) -> Router {
    let state = AppState {
        service,
        options: Arc::new(options.clone()),
        metrics: metrics_handle(),
        limiter: Arc::default(),
    };
    let (queries, _) = routes::router().split_for_parts();
    let (probes, _) = routes::probes().split_for_parts();
    let doc = openapi();
    let page = routes::docs_page_route(&doc);
    let doc = Arc::new(doc);
    // Past this many queries at once, new ones are refused at once (429) rather than
    // queued behind a slow one.
    // One count for every route: each route gets its own copy of a layer.
    let limited = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(refused))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            options.max_concurrent_queries.max(1),
        ));
    let api = queries
        .route_layer(limited)
        .merge(probes)
        .with_state(state.clone())
        .merge(routes::docs_router(doc));
    let mut cors = CorsLayer::new();
    if !options.cors_origins.is_empty() {
        let origins: Vec<_> = options
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        cors = cors
            .allow_origin(origins)
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::HEAD,
                axum::http::Method::DELETE,
            ])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                axum::http::header::ACCEPT,
                axum::http::header::AUTHORIZATION,
                // What Elasticsearch's browser clients send.
                axum::http::HeaderName::from_static("x-elastic-client-meta"),
            ])
            .expose_headers([axum::http::HeaderName::from_static("x-elastic-product")]);
    }
    Router::new()
        .nest(PREFIX, api)
        .route(&format!("{PREFIX}/"), page)
        .route(
            "/oai",
            axum::routing::get(oai::oai)
                .post(oai::oai)
                .with_state(state.clone()),
        )
        .merge(es::router(state.clone()))
        .fallback(routes::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(options.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state, auth::guard))
        .layer(axum::middleware::from_fn(routes::record_metrics))
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    options.request_timeout,
                ))
                .layer(cors)
                .layer(CompressionLayer::new()),
        )
}

/// Whether `addr` is on this machine only.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in
/// flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
