//! `POST /sql` and `POST /queries/{name}`: rows in the format `Accept` asks for. JSON
//! is one document (with the columns' types); NDJSON, CSV and Arrow IPC are streamed
//! batch by batch as the engine computes them, so memory holds a few batches whatever
//! the answer's size, and a client that goes away stops the query.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::{AuditInfo, Scoped};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use crossdex_service::{BatchStream, OutputFormat, QueryOutput, RecordBatch, ScalarValue};
use futures::StreamExt;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::routes::control;
use crate::{ApiError, AppState, ErrorBody};

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// Rows answered at most when `max_rows` is not given.
const DEFAULT_MAX_ROWS: usize = 1_000_000;

/// What the client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
    Csv,
    Arrow,
}

impl Format {
    /// The first media type of `Accept` crossdex writes; JSON when none.
    fn of(headers: &HeaderMap) -> Format {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for part in accept.split(',') {
            let media = part.split(';').next().unwrap_or("").trim();
            match media {
                ARROW_STREAM | "application/vnd.apache.arrow.file" => return Format::Arrow,
                "application/x-ndjson" | "application/jsonl" | "application/ndjson" => {
                    return Format::Ndjson;
                }
                "text/csv" => return Format::Csv,
                "application/json" | "*/*" => return Format::Json,
                _ => {}
            }
        }
        Format::Json
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => ARROW_STREAM,
        }
    }
}

/// Limits in the query string.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Limits {
    /// Rows answered at most [default 1000000]; a JSON answer says `truncated`.
    max_rows: Option<usize>,
    /// Time limit in milliseconds, at most the server's.
    timeout_ms: Option<u64>,
}

/// A query as a JSON body.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SqlBody {
    /// One read-only statement; `$name` marks a parameter.
    sql: String,
    /// Parameters by name: text, numbers, booleans or null, bound as typed literals.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: BTreeMap<String, serde_json::Value>,
    /// Rows answered at most.
    max_rows: Option<usize>,
    /// Time limit in milliseconds.
    timeout_ms: Option<u64>,
}

/// A column of a JSON answer.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct Column {
    name: String,
    /// The Arrow type (`Utf8`, `Int64`, `Float64`, `Timestamp(µs, "UTC")`, ...).
    #[serde(rename = "type")]
    data_type: String,
}

/// A JSON answer.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct Rows {
    columns: Vec<Column>,
    /// One array per row, in the columns' order.
    rows: Vec<Vec<serde_json::Value>>,
    /// Whether rows past `max_rows` were left out.
    truncated: bool,
}

fn scalar(name: &str, v: &serde_json::Value) -> Result<ScalarValue, ApiError> {
    Ok(match v {
        serde_json::Value::Null => ScalarValue::Utf8(None),
        serde_json::Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        serde_json::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        _ => {
            return Err(ApiError::bad_request(format!(
                "parameter `{name}` must be text, a number, a boolean or null"
            )));
        }
    })
}

/// Runs read-only SQL; the answer's format follows `Accept`: `application/json`
/// (default), `application/x-ndjson`, `text/csv`, `application/vnd.apache.arrow.stream`.
#[utoipa::path(post, path = "/sql", tag = "sql", params(Limits),
    request_body(content(
        (SqlBody = "application/json"),
        (String = "text/plain", example = "SELECT system, count(*) FROM records GROUP BY system"))),
    responses(
        (status = 200, description = "The rows", content(
            (Rows = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"))),
        (status = 400, description = "Invalid SQL, or not a read-only query; `position` says where", body = ErrorBody),
        (status = 408, description = "The query ran past its time limit", body = ErrorBody)))]
pub(crate) async fn sql(
    Scoped(state): Scoped,
    headers: HeaderMap,
    limits: Result<Query<Limits>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(limits) = limits.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let body = body.map_err(|e| ApiError::body(e.status(), e.body_text()))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let (text, params, max_rows, timeout_ms) = if is_json {
        let b: SqlBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the JSON body: {e}")))?;
        let params = b
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), scalar(k, v)?)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        (
            b.sql,
            params,
            b.max_rows.or(limits.max_rows),
            b.timeout_ms.or(limits.timeout_ms),
        )
    } else {
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the SQL is not UTF-8 text"))?;
        (text, Vec::new(), limits.max_rows, limits.timeout_ms)
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "no SQL: send it as the body (text/plain) or as {\"sql\": ...} (application/json)",
        ));
    }
    let control = control(&state, timeout_ms)?;
    let format = Format::of(&headers);
    let stream = state.service.sql_stream(&text, params, &control).await?;
    let audit = AuditInfo {
        query: Some((text, true)),
        ..AuditInfo::default()
    };
    answer(
        stream,
        format,
        max_rows.unwrap_or(DEFAULT_MAX_ROWS).min(row_cap(&state)),
        control.timeout,
        audit,
    )
    .await
}

/// The most rows the caller's token may be answered.
fn row_cap(state: &AppState) -> usize {
    state.service.principal().limits.map_or(usize::MAX, |l| {
        usize::try_from(l.max_rows).unwrap_or(usize::MAX)
    })
}

/// Parameters of a saved query, and limits.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct SavedBody {
    /// Parameters by name, as the query's header types them.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: BTreeMap<String, serde_json::Value>,
    /// Rows answered at most.
    max_rows: Option<usize>,
    /// Time limit in milliseconds.
    timeout_ms: Option<u64>,
}

/// Runs a saved query (`GET /queries` lists them) with typed parameters; formats as
/// `POST /sql`.
#[utoipa::path(post, path = "/queries/{name}", tag = "sql",
    params(("name" = String, Path, description = "The saved query's name")),
    request_body(content = SavedBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The rows", content(
            (Rows = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.apache.arrow.stream"))),
        (status = 400, description = "A parameter is missing or of the wrong type", body = ErrorBody),
        (status = 404, description = "No saved query of that name", body = ErrorBody),
        (status = 408, description = "The query ran past its time limit", body = ErrorBody)))]
pub(crate) async fn run_query(
    Scoped(state): Scoped,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::body(e.status(), e.body_text()))?;
    let b: SavedBody = if body.iter().all(u8::is_ascii_whitespace) {
        SavedBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the JSON body: {e}")))?
    };
    let values: Vec<(String, String)> = b
        .params
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "parameter `{k}` must be text, a number or a boolean"
                    )));
                }
            };
            Ok((k.clone(), text))
        })
        .collect::<Result<_, _>>()?;
    let control = control(&state, b.timeout_ms)?;
    let stream = state.service.saved_stream(&name, &values, &control).await?;
    let audit = AuditInfo {
        tables: vec![format!("saved:{name}")],
        ..AuditInfo::default()
    };
    answer(
        stream,
        Format::of(&headers),
        b.max_rows.unwrap_or(DEFAULT_MAX_ROWS).min(row_cap(&state)),
        control.timeout,
        audit,
    )
    .await
}

/// At most `left` rows of `batch`; `left` goes down by what is kept.
fn take(batch: RecordBatch, left: &mut usize) -> Option<RecordBatch> {
    if *left == 0 {
        return None;
    }
    let n = batch.num_rows().min(*left);
    *left -= n;
    Some(if n < batch.num_rows() {
        batch.slice(0, n)
    } else {
        batch
    })
}

/// The rows of `stream` in `format`, with what the audit log says of them: `audit`
/// completed with the tables and columns the query read and the rows answered.
async fn answer(
    mut stream: BatchStream,
    format: Format,
    max_rows: usize,
    timeout: Option<std::time::Duration>,
    mut audit: AuditInfo,
) -> Result<Response, ApiError> {
    audit.tables.extend(stream.read.tables.iter().cloned());
    audit.columns = stream.read.columns.clone();
    let schema = stream.schema.clone();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    if format == Format::Json {
        let mut left = max_rows;
        let mut batches = Vec::new();
        let mut truncated = false;
        let read = async {
            while let Some(b) = stream.next().await {
                let b = b.map_err(|e| ApiError(e.into()))?;
                if left == 0 {
                    truncated |= b.num_rows() > 0;
                    break;
                }
                if b.num_rows() > left {
                    truncated = true;
                }
                if let Some(b) = take(b, &mut left) {
                    batches.push(b);
                }
            }
            Ok::<_, ApiError>(())
        };
        match deadline {
            Some(d) => tokio::time::timeout_at(d, read)
                .await
                .map_err(|_| ApiError(timed_out(timeout)))??,
            None => read.await?,
        }
        let out = QueryOutput {
            schema: schema.clone(),
            batches,
        };
        let text = out
            .render(OutputFormat::Json)
            .map_err(|e| ApiError(crossdex_service::ServiceError::internal("writing JSON", e)))?;
        let objects: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&text)
            .map_err(|e| ApiError(crossdex_service::ServiceError::internal("writing JSON", e)))?;
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let rows: Vec<Vec<serde_json::Value>> = objects
            .into_iter()
            .map(|mut o| {
                names
                    .iter()
                    .map(|n| o.remove(*n).unwrap_or(serde_json::Value::Null))
                    .collect()
            })
            .collect();
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
            })
            .collect();
        audit.rows = Some(rows.len() as u64);
        return Ok(audit.attach(
            Json(Rows {
                columns,
                rows,
                truncated,
            })
            .into_response(),
        ));
    }
    // Streamed: each batch is encoded and sent as it comes.
    let sent = Arc::new(AtomicU64::new(0));
    audit.sent = Some(sent.clone());
    let mut left = max_rows;
    let mut first = true;
    let mut arrow = match format {
        Format::Arrow => Some(
            arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(|e| {
                ApiError(crossdex_service::ServiceError::internal(
                    "starting an Arrow stream",
                    e,
                ))
            })?,
        ),
        _ => None,
    };
    let body = async_stream(move |tx| async move {
        let send = |bytes: Vec<u8>| {
            let tx = tx.clone();
            async move { tx.send(Ok(Bytes::from(bytes))).await.is_ok() }
        };
        let fail = |e: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Err(std::io::Error::other(e))).await;
            }
        };
        if let Some(w) = arrow.as_mut() {
            // The schema goes first, before any row.
            let head = std::mem::take(w.get_mut());
            if !send(head).await {
                return;
            }
        }
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, stream.next()).await {
                    Ok(n) => n,
                    Err(_) => return fail("the query ran past its time limit".into()).await,
                },
                None => stream.next().await,
            };
            let batch = match next {
                None => break,
                Some(Err(e)) => return fail(e.to_string()).await,
                Some(Ok(b)) => b,
            };
            let Some(batch) = take(batch, &mut left) else {
                break;
            };
            let n = batch.num_rows() as u64;
            let bytes = match (&mut arrow, format) {
                (Some(w), _) => match w.write(&batch) {
                    Ok(()) => std::mem::take(w.get_mut()),
                    Err(e) => return fail(e.to_string()).await,
                },
                (None, f) => {
                    let out = QueryOutput {
                        schema: schema.clone(),
                        batches: vec![batch],
                    };
                    let rendered = if f == Format::Csv {
                        out.render(OutputFormat::Csv)
                    } else {
                        out.render(OutputFormat::Ndjson)
                    };
                    match rendered {
                        Ok(mut text) => {
                            if f == Format::Csv && !first {
                                // The header line once, at the start.
                                text = text
                                    .split_once('\n')
                                    .map(|(_, r)| r.to_owned())
                                    .unwrap_or_default();
                            }
                            text.into_bytes()
                        }
                        Err(e) => return fail(e.to_string()).await,
                    }
                }
            };
            first = false;
            if !bytes.is_empty() && !send(bytes).await {
                // The client went away: dropping the stream stops the query.
                return;
            }
            sent.fetch_add(n, Ordering::Relaxed);
            if left == 0 {
                break;
            }
        }
        if let Some(mut w) = arrow {
            if w.finish().is_ok() {
                let _ = send(std::mem::take(w.get_mut())).await;
            }
        } else if first && format == Format::Csv {
            let out = QueryOutput {
                schema: schema.clone(),
                batches: vec![],
            };
            if let Ok(text) = out.render(OutputFormat::Csv) {
                let _ = send(text.into_bytes()).await;
            }
        }
    });
    Ok(audit.attach(([(header::CONTENT_TYPE, format.content_type())], body).into_response()))
}

fn timed_out(timeout: Option<std::time::Duration>) -> crossdex_service::ServiceError {
    crossdex_service::ServiceError::new(
        crossdex_service::ErrorCode::QueryTimeout,
        format!(
            "the query ran longer than its limit of {:.1} s and was stopped; narrow it, or raise timeout_ms",
            timeout.unwrap_or_default().as_secs_f64()
        ),
    )
}

/// A response body fed by a task through a small channel: the task stops when the
/// client goes away (the channel closes), which drops the query's stream.
fn async_stream<F, Fut>(produce: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(tx));
    Body::from_stream(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
