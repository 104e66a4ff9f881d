//! The API's routes: parameters in, the service's typed answers out.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use crossdex_service::{
    Action, CreatedToken, ErrorCode, Limits, LinkReport, NewToken, QueryControl, RecordView,
    RunProgress, RunSummary, SavedQueryInfo, Scope, SearchFilters, SearchRequest, SearchResult,
    ServiceError, Status, SubjectFilter, SubjectList, SubjectView,
};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuditInfo, Scoped};
use crate::{ApiDoc, ApiError, AppState, ErrorBody};

type ApiResult<T> = Result<T, ApiError>;

/// The routes that answer at once, whatever the load: probes and metrics.
pub(crate) fn probes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

/// The routes that read the index, under the limit of queries at once.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_get, search_post))
        .routes(routes!(crate::sql::sql))
        .routes(routes!(queries))
        .routes(routes!(crate::sql::run_query))
        .routes(routes!(subjects))
        .routes(routes!(subject))
        .routes(routes!(record))
        .routes(routes!(sources))
        .routes(routes!(source_runs))
        .routes(routes!(sync_source))
        .routes(routes!(run))
        .routes(routes!(link_report))
        .routes(routes!(derive_token))
        .routes(routes!(datasets))
        .routes(routes!(dataset))
}

/// The time limit and cancellation of one request's query: `timeout_ms` when given,
/// never above the server's own limit.
pub(crate) fn control(state: &AppState, timeout_ms: Option<u64>) -> ApiResult<QueryControl> {
    if timeout_ms == Some(0) {
        return Err(ApiError::bad_request(
            "`timeout_ms` is at least 1; leave it out for the server's limit",
        ));
    }
    let max = state.options.query_timeout;
    Ok(QueryControl::with_timeout(
        timeout_ms
            .map(Duration::from_millis)
            .map_or(max, |t| t.min(max)),
    ))
}

/// The server is up.
#[utoipa::path(get, path = "/health", tag = "status",
    responses((status = 200, description = "Up", body = Object, example = json!({"status": "ok"}))))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// The index can be queried.
#[utoipa::path(get, path = "/ready", tag = "status",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready", "records": 3402})),
        (status = 503, description = "No index yet", body = ErrorBody)))]
async fn ready(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let status = state.service.status(&control(&state, None)?).await?;
    if status.indexed_sources == 0 {
        return Err(ApiError(ServiceError::new(
            ErrorCode::NotReady,
            "no source is synced yet: run `crossdex sync --all`",
        )));
    }
    // Anyone may ask whether the server is ready: once tokens exist, how much it holds
    // is for token holders only.
    if state.service.has_tokens().unwrap_or(true) {
        return Ok(Json(serde_json::json!({"status": "ready"})));
    }
    Ok(Json(
        serde_json::json!({"status": "ready", "records": status.records}),
    ))
}

/// Search parameters, in the query string or a JSON body.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// The search, in crossdex's syntax (docs/search.md); `*` for everything.
    q: String,
    /// Hits returned [default 20, at most 10000].
    limit: Option<usize>,
    /// Hits skipped first [default 0].
    offset: Option<usize>,
    /// `next_cursor` of the previous page: the next page of the same committed state.
    cursor: Option<String>,
    /// Only this source.
    source: Option<String>,
    /// Only this system.
    system: Option<String>,
    /// Only this kind of record.
    kind: Option<String>,
    /// Only this project.
    project: Option<String>,
    /// Only this subject (an id or its label).
    subject: Option<String>,
    /// Only records dated at or after this date or time (`2024-01-01`, RFC 3339).
    from: Option<String>,
    /// Only records dated before this date or time.
    to: Option<String>,
    /// Buckets of the facets with many values (project, subject) [default 10]; 0: no
    /// facets.
    facets: Option<usize>,
    /// Put before each matched word of a snippet [default `**`].
    pre_tag: Option<String>,
    /// Put after each matched word of a snippet [default `**`].
    post_tag: Option<String>,
    /// Time limit in milliseconds.
    timeout_ms: Option<u64>,
}

fn date(name: &str, v: &Option<String>) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{name}` is a date (2024-01-31) or a time (2024-01-31T08:00:00Z), not {v:?}"
            ))
        })
}

async fn run_search(state: AppState, p: SearchParams) -> ApiResult<Response> {
    let tags = match (p.pre_tag, p.post_tag) {
        (None, None) => None,
        (pre, post) => Some((
            pre.unwrap_or_else(|| "**".into()),
            post.unwrap_or_else(|| "**".into()),
        )),
    };
    let audited = p.q.clone();
    let request = SearchRequest {
        query: p.q,
        limit: p.limit.unwrap_or(20),
        offset: p.offset.unwrap_or(0),
        facets: match p.facets {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(10),
        },
        filters: SearchFilters {
            from: date("from", &p.from)?,
            to: date("to", &p.to)?,
            source: p.source,
            system: p.system,
            kind: p.kind,
            project: p.project,
            subject: p.subject,
        },
        cursor: p.cursor,
        tags,
    };
    let result = state
        .service
        .search(&request, &control(&state, p.timeout_ms)?)
        .await?;
    let info = AuditInfo {
        rows: Some(result.hits.len() as u64),
        tables: vec!["index".to_owned()],
        query: Some((audited, false)),
        ..AuditInfo::default()
    };
    Ok(info.attach(Json(result).into_response()))
}

/// Full-text search with facets over every hit, a date histogram and highlights.
#[utoipa::path(get, path = "/search", tag = "search", params(SearchParams),
    responses(
        (status = 200, description = "Hits, total and facets", body = SearchResult),
        (status = 400, description = "The search does not parse; `position` says where", body = ErrorBody),
        (status = 408, description = "The search ran past its time limit", body = ErrorBody),
        (status = 410, description = "The cursor expired", body = ErrorBody)))]
async fn search_get(
    Scoped(state): Scoped,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    run_search(state, p).await
}

/// Full-text search, the parameters as a JSON body.
#[utoipa::path(post, path = "/search", tag = "search", request_body = SearchParams,
    responses(
        (status = 200, description = "Hits, total and facets", body = SearchResult),
        (status = 400, description = "The search does not parse", body = ErrorBody),
        (status = 408, description = "The search ran past its time limit", body = ErrorBody),
        (status = 410, description = "The cursor expired", body = ErrorBody)))]
async fn search_post(
    Scoped(state): Scoped,
    body: Result<Json<SearchParams>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Json(p) = body.map_err(|e| ApiError::body(e.status(), e.body_text()))?;
    run_search(state, p).await
}

/// The saved queries and their typed parameters.
#[utoipa::path(get, path = "/queries", tag = "sql",
    responses((status = 200, description = "Saved queries", body = Vec<SavedQueryInfo>)))]
async fn queries(Scoped(state): Scoped) -> ApiResult<Json<Vec<SavedQueryInfo>>> {
    state.service.require(crossdex_service::Action::Sql)?;
    Ok(Json(state.service.saved_queries()))
}

/// Which subjects to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SubjectParams {
    /// Only subjects this source knows.
    source: Option<String>,
    /// Only subjects with (true) or without (false) a linking conflict.
    conflicts: Option<bool>,
    /// Only subjects whose id or label contains this text.
    q: Option<String>,
    /// At most this many [default 50, at most 1000].
    limit: Option<usize>,
    /// Skipped first.
    offset: Option<usize>,
}

/// Subjects, filtered and paged.
#[utoipa::path(get, path = "/subjects", tag = "subjects", params(SubjectParams),
    responses(
        (status = 200, description = "A page of subjects and the total", body = SubjectList),
        (status = 400, description = "A parameter is not what it should be", body = ErrorBody)))]
async fn subjects(
    Scoped(state): Scoped,
    params: Result<Query<SubjectParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<SubjectList>> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = p.limit.unwrap_or(50);
    if limit > 1000 {
        return Err(ApiError::bad_request("`limit` is at most 1000"));
    }
    let filter = SubjectFilter {
        source: p.source,
        conflicts: p.conflicts,
        contains: p.q,
        limit,
        offset: p.offset.unwrap_or(0),
    };
    Ok(Json(
        state
            .service
            .subjects(&filter, &control(&state, None)?)
            .await?,
    ))
}

/// Everything on one subject: its keys, records per source and timeline.
#[utoipa::path(get, path = "/subjects/{id}", tag = "subjects",
    params(("id" = String, Path, description = "A subject id (subj:...), its label, or any source's key")),
    responses(
        (status = 200, description = "The subject", body = SubjectView),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 409, description = "The key names several subjects", body = ErrorBody)))]
async fn subject(Scoped(state): Scoped, Path(id): Path<String>) -> ApiResult<Json<SubjectView>> {
    Ok(Json(
        state.service.subject(&id, &control(&state, None)?).await?,
    ))
}

/// The dataset catalogue: every dataset the token sees, with its counts and the
/// metadata its stewards declared.
#[utoipa::path(get, path = "/datasets", tag = "catalogue",
    responses((status = 200, description = "The datasets, by id", body = Vec<crossdex_service::Dataset>)))]
async fn datasets(Scoped(state): Scoped) -> ApiResult<Json<Vec<crossdex_service::Dataset>>> {
    Ok(Json(state.service.datasets(&control(&state, None)?).await?))
}

/// How to show one dataset.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DatasetParams {
    /// `json` (the catalogue entry) [default], `datacite` (XML, kernel 4),
    /// `datacite-json` or `dc` (Dublin Core, oai_dc).
    format: Option<String>,
}

/// One dataset of the catalogue, as JSON, DataCite or Dublin Core.
#[utoipa::path(get, path = "/datasets/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "The dataset's id, e.g. xnat:project:MEMCLIN"), DatasetParams),
    responses(
        (status = 200, description = "The dataset", body = crossdex_service::Dataset),
        (status = 400, description = "An unknown format", body = ErrorBody),
        (status = 404, description = "No such dataset", body = ErrorBody),
        (status = 409, description = "DataCite asked of a dataset lacking a mandatory property", body = ErrorBody)))]
async fn dataset(
    Scoped(state): Scoped,
    Path(id): Path<String>,
    Query(params): Query<DatasetParams>,
) -> ApiResult<Response> {
    let (d, parent) = state.service.dataset(&id, &control(&state, None)?).await?;
    let xml = |body: String| {
        (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            body,
        )
            .into_response()
    };
    Ok(match params.format.as_deref().unwrap_or("json") {
        "json" => Json(d).into_response(),
        "datacite" => xml(crossdex_service::datacite_xml(&d, parent.as_ref())?),
        "datacite-json" => {
            Json(crossdex_service::datacite_json(&d, parent.as_ref())?).into_response()
        }
        "dc" => xml(crossdex_service::dublin_core_xml(&d)),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown format {other:?}: json, datacite, datacite-json or dc"
            )));
        }
    })
}

/// One record, its observations, related records and deep link.
#[utoipa::path(get, path = "/records/{id}", tag = "records",
    params(("id" = String, Path, description = "The record's id, source:kind:native_id")),
    responses(
        (status = 200, description = "The record", body = RecordView),
        (status = 404, description = "No such record", body = ErrorBody)))]
async fn record(Scoped(state): Scoped, Path(id): Path<String>) -> ApiResult<Json<RecordView>> {
    Ok(Json(
        state.service.record(&id, &control(&state, None)?).await?,
    ))
}

/// Every source: records held, last run, schedule and next run.
#[utoipa::path(get, path = "/sources", tag = "sync",
    responses((status = 200, description = "The data directory and its sources", body = Status)))]
async fn sources(Scoped(state): Scoped) -> ApiResult<Json<Status>> {
    Ok(Json(state.service.status(&control(&state, None)?).await?))
}

/// How many runs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsParams {
    /// At most this many, newest first [default 20].
    limit: Option<usize>,
}

/// A source's sync runs, newest first.
#[utoipa::path(get, path = "/sources/{name}/runs", tag = "sync",
    params(("name" = String, Path, description = "The source's name"), RunsParams),
    responses(
        (status = 200, description = "Runs, newest first", body = Vec<RunSummary>),
        (status = 400, description = "A parameter is not what it should be", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody)))]
async fn source_runs(
    Scoped(state): Scoped,
    Path(name): Path<String>,
    params: Result<Query<RunsParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<RunSummary>>> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(
        state
            .service
            .runs(
                &name,
                p.limit.unwrap_or(20).min(10_000),
                &control(&state, None)?,
            )
            .await?,
    ))
}

/// How to sync.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SyncParams {
    /// Re-read everything instead of what changed.
    full: Option<bool>,
}

/// Starts a sync of one source (admin); follow it at `/runs/{id}`.
#[utoipa::path(post, path = "/sources/{name}/sync", tag = "sync",
    params(("name" = String, Path, description = "The source's name"), SyncParams),
    responses(
        (status = 202, description = "Queued; `id` is the run to follow", body = RunProgress),
        (status = 400, description = "A parameter is not what it should be", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 409, description = "The data directory is busy", body = ErrorBody)))]
async fn sync_source(
    Scoped(state): Scoped,
    Path(name): Path<String>,
    params: Result<Query<SyncParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let entry = state.service.request_sync(&name, p.full.unwrap_or(false))?;
    let location = format!("{}/runs/{}", crate::PREFIX, entry.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(entry),
    )
        .into_response())
}

/// A token to derive from the request's own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeriveBody {
    /// Its name: letters, digits, `_`, `-` and `.`, unique in the data directory.
    name: String,
    /// Its actions, within the parent's (`search`, `sql`, `subjects`, `status`, `admin`).
    scope: Vec<Action>,
    /// Sources it sees, within the parent's; absent: the parent's.
    sources: Option<BTreeSet<String>>,
    /// Projects it sees, within the parent's; absent: the parent's.
    projects: Option<BTreeSet<String>>,
    /// Whether it sees sensitive values in clear; only if the parent does.
    #[serde(default)]
    sensitive: bool,
    /// How long it works: `90m`, `12h`, `30d`; never past the parent's expiry.
    expires: String,
    /// Its limits; each at most the parent's, which apply where absent.
    limits: Option<Limits>,
}

/// Derives a token from the request's token, narrower or equal in every respect: what a
/// portal gives one of its users. Its secret is in this answer and nowhere else.
#[utoipa::path(post, path = "/tokens", tag = "access",
    request_body = DeriveBody,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = CreatedToken),
        (status = 400, description = "A field is not what it should be", body = ErrorBody),
        (status = 403, description = "Wider than the request's token", body = ErrorBody)))]
async fn derive_token(
    Scoped(state): Scoped,
    body: Result<Json<DeriveBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Json(b) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let parent = state.service.principal().clone();
    let expires_in = crossdex_service::parse_duration(&b.expires)
        .map_err(|e| ApiError::bad_request(format!("expires: {e}")))?;
    let new = NewToken {
        name: b.name,
        scope: Scope {
            actions: b.scope.into_iter().collect(),
            sources: b.sources.or(parent.scope.sources),
            projects: b.projects.or(parent.scope.projects),
            sensitive: b.sensitive,
        },
        expires_in,
        limits: b.limits.or(parent.limits).unwrap_or_default(),
        parent: None,
    };
    let created = state.service.derive_token(new)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// A sync's progress: queued, running (pages and counts so far), finished (its run).
#[utoipa::path(get, path = "/runs/{id}", tag = "sync",
    params(("id" = String, Path, description = "An id from POST /sources/{name}/sync, or a run_id")),
    responses(
        (status = 200, description = "Where the sync is", body = RunProgress),
        (status = 404, description = "No such run", body = ErrorBody)))]
async fn run(Scoped(state): Scoped, Path(id): Path<String>) -> ApiResult<Json<RunProgress>> {
    Ok(Json(
        state
            .service
            .run_progress(&id, &control(&state, None)?)
            .await?,
    ))
}

/// What linking links and leaves apart.
#[utoipa::path(get, path = "/link-report", tag = "subjects",
    responses((status = 200, description = "The link report", body = LinkReport)))]
async fn link_report(Scoped(state): Scoped) -> ApiResult<Json<LinkReport>> {
    Ok(Json(
        state.service.link_report(&control(&state, None)?).await?,
    ))
}

/// Prometheus metrics: requests and latencies by route and status, and per source the
/// records held and the last run's outcome and duration.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(Scoped(state): Scoped) -> Response {
    // The gauges are the process's, shared by every caller: only a token that sees
    // every source and project may read them.
    let principal = state.service.principal();
    if let Err(e) = state.service.require(crossdex_service::Action::Status) {
        return ApiError(e).into_response();
    }
    if principal.scope.sources.is_some() || principal.scope.projects.is_some() {
        return ApiError(ServiceError::new(
            ErrorCode::Forbidden,
            "metrics count every source and project: they need a token without --sources or --projects limits",
        ))
        .into_response();
    }
    let limit = QueryControl::with_timeout(state.options.query_timeout);
    if let Ok(status) = state.service.status(&limit).await {
        metrics::gauge!("crossdex_records").set(status.records as f64);
        metrics::gauge!("crossdex_observations").set(status.observations as f64);
        metrics::gauge!("crossdex_data_dir_bytes").set(state.service.disk_usage() as f64);
        for s in &status.sources {
            let source = s.source.clone();
            metrics::gauge!("crossdex_source_records", "source" => source.clone())
                .set(s.records as f64);
            if let Some(r) = &s.last_run {
                metrics::gauge!("crossdex_source_last_run_seconds", "source" => source.clone())
                    .set(r.seconds);
                metrics::gauge!("crossdex_source_last_run_timestamp_seconds", "source" => source.clone())
                    .set(r.finished_at.timestamp() as f64);
                for st in ["succeeded", "partial", "failed"] {
                    metrics::gauge!("crossdex_source_last_run_status", "source" => source.clone(), "status" => st)
                        .set(if r.status == st { 1.0 } else { 0.0 });
                }
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts each request and its latency, by route and status.
pub(crate) async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("crossdex_http_requests_total", &labels).increment(1);
    metrics::histogram!("crossdex_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// No such route.
pub(crate) async fn not_found() -> ApiError {
    ApiError(ServiceError::new(
        ErrorCode::NotARoute,
        format!(
            "no such route; the API lives under {}/ (see {}/openapi.json)",
            crate::PREFIX,
            crate::PREFIX
        ),
    ))
}

/// The OpenAPI document and a page that reads it, served by crossdex itself (no CDN).
pub(crate) fn docs_router(doc: Arc<utoipa::openapi::OpenApi>) -> axum::Router {
    let json = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    let page = Arc::new(docs_page(&doc));
    axum::Router::new()
        .route(
            "/openapi.json",
            axum::routing::get({
                let json = json.clone();
                move || async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.as_str().to_owned(),
                    )
                }
            }),
        )
        .route(
            "/",
            axum::routing::get(move || async move { Html(page.as_str().to_owned()) }),
        )
}

/// The API page, for `/api/v1/` with its slash.
pub(crate) fn docs_page_route(doc: &utoipa::openapi::OpenApi) -> axum::routing::MethodRouter {
    let page = Arc::new(docs_page(doc));
    axum::routing::get(move || async move { Html(page.as_str().to_owned()) })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plain HTML page listing every operation of `doc` with its parameters and answers.
fn docs_page(doc: &utoipa::openapi::OpenApi) -> String {
    let mut body = String::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            body.push_str(&format!(
                "<section><h2><code>{method} {}{}</code></h2>",
                crate::PREFIX,
                escape(path)
            ));
            if let Some(s) = &op.summary {
                body.push_str(&format!("<p>{}</p>", escape(s)));
            }
            if let Some(d) = &op.description {
                body.push_str(&format!("<p>{}</p>", escape(d)));
            }
            if let Some(params) = &op.parameters
                && !params.is_empty()
            {
                body.push_str("<table><tr><th>parameter</th><th>in</th><th>meaning</th></tr>");
                for p in params {
                    let place = serde_json::to_value(&p.parameter_in)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    body.push_str(&format!(
                        "<tr><td><code>{}</code></td><td>{place}</td><td>{}</td></tr>",
                        escape(&p.name),
                        escape(p.description.as_deref().unwrap_or(""))
                    ));
                }
                body.push_str("</table>");
            }
            body.push_str("<ul>");
            for (code, r) in &op.responses.responses {
                let text = match r {
                    utoipa::openapi::RefOr::T(r) => r.description.clone(),
                    utoipa::openapi::RefOr::Ref(r) => r.ref_location.clone(),
                };
                body.push_str(&format!("<li><b>{code}</b> {}</li>", escape(&text)));
            }
            body.push_str("</ul></section>");
        }
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>crossdex HTTP API</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         code{{background:#f4f4f4;padding:0 .2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:.2em .5em;text-align:left}}</style>\
         </head><body><h1>crossdex HTTP API</h1><p>Every operation below is under <code>{}</code>; \
         the machine-readable description is <a href=\"openapi.json\">openapi.json</a> (OpenAPI 3.1). \
         Errors are <code>{{message, code, type, link}}</code>.</p>{body}</body></html>",
        crate::PREFIX
    )
}
