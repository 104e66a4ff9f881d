//! An Elasticsearch-compatible search API at the server's root, for portal code
//! written against Elasticsearch: cluster info, `_search`, `_count`, `_msearch`,
//! scroll, `_mapping`, `_cat/indices`, `_cluster/health`.
//!
//! It speaks Elasticsearch's wire format and translates its query DSL into crossdex's
//! search syntax and filters; answers come from the service's search (hits, snippets,
//! facets), read within the caller's scope like every route. Aggregations are the
//! search's facets (terms over the keyword fields, a monthly date histogram) and
//! further searches (`filter`, `filters`); typed observation fields, numeric ranges
//! and metric aggregations are not translated yet and are refused with Elasticsearch's
//! error shape, never silently dropped (docs/elasticsearch.md lists what is supported).

use std::collections::BTreeSet;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use crossdex_service::{
    Facets, QueryControl, SearchFilters, SearchRequest, SearchResult, Service, ServiceError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::auth::Caller;

/// The version clients see: the major decides the wire format they speak.
const VERSION: &str = "9.0.0";

/// The index of everything.
pub(crate) const ALL: &str = "crossdex";

/// The routes, at the server's root.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(info).head(info_head))
        .route("/_cluster/health", get(health))
        .route("/_cat/indices", get(cat_indices))
        .route("/_search", get(search_all).post(search_all))
        .route("/_count", get(count_all).post(count_all))
        .route("/_msearch", get(msearch_all).post(msearch_all))
        .route(
            "/_search/scroll",
            get(scroll).post(scroll).delete(clear_scroll),
        )
        .route("/_mapping", get(mapping_all))
        .route("/_field_caps", get(field_caps_all).post(field_caps_all))
        .route("/{index}/_field_caps", get(field_caps).post(field_caps))
        .route("/{index}/_search", get(search).post(search))
        .route("/{index}/_count", get(count).post(count))
        .route("/{index}/_msearch", get(msearch).post(msearch))
        .route("/{index}/_mapping", get(mapping))
        .with_state(state)
}

/// An error as Elasticsearch writes it.
pub(crate) struct EsError {
    status: StatusCode,
    kind: &'static str,
    reason: String,
}

impl EsError {
    fn parsing(reason: impl Into<String>) -> EsError {
        EsError {
            status: StatusCode::BAD_REQUEST,
            kind: "parsing_exception",
            reason: reason.into(),
        }
    }

    fn unsupported(what: impl std::fmt::Display) -> EsError {
        EsError {
            status: StatusCode::BAD_REQUEST,
            kind: "illegal_argument_exception",
            reason: format!("{what} is not supported by crossdex (docs/elasticsearch.md)"),
        }
    }

    fn no_index(index: &str) -> EsError {
        EsError {
            status: StatusCode::NOT_FOUND,
            kind: "index_not_found_exception",
            reason: format!("no such index [{index}]"),
        }
    }

    fn body(&self) -> Value {
        json!({
            "error": {
                "root_cause": [{"type": self.kind, "reason": self.reason}],
                "type": self.kind,
                "reason": self.reason,
            },
            "status": self.status.as_u16(),
        })
    }
}

impl From<ServiceError> for EsError {
    fn from(e: ServiceError) -> Self {
        let status =
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind = match status.as_u16() {
            400 => "parsing_exception",
            401 => "security_exception",
            403 => "security_exception",
            404 => "resource_not_found_exception",
            408 | 499 => "search_phase_execution_exception",
            429 => "es_rejected_execution_exception",
            _ => "exception",
        };
        let reason = if e.kind == crossdex_service::ErrorKind::Internal {
            "an internal error; the server's log has its cause".to_owned()
        } else {
            e.message
        };
        EsError {
            status,
            kind,
            reason,
        }
    }
}

impl IntoResponse for EsError {
    fn into_response(self) -> Response {
        answer(self.status, &self.body())
    }
}

/// A JSON answer with the header Elasticsearch clients check.
fn answer(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    r
}

fn ok(body: &Value) -> Response {
    answer(StatusCode::OK, body)
}

/// The service acting for the request's caller.
fn service(state: &AppState, caller: Option<&Caller>) -> Result<Service, EsError> {
    match caller {
        Some(Caller(p)) => Ok(state.service.acting_as((**p).clone())),
        None => Err(EsError {
            status: StatusCode::UNAUTHORIZED,
            kind: "security_exception",
            reason: "missing authentication credentials".into(),
        }),
    }
}

fn shards() -> Value {
    json!({"total": 1, "successful": 1, "skipped": 0, "failed": 0})
}

async fn info() -> Response {
    ok(&json!({
        "name": "crossdex",
        "cluster_name": "crossdex",
        "cluster_uuid": "crossdex",
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "crossdex",
            "lucene_version": "10.0.0",
            "minimum_wire_compatibility_version": "8.18.0",
            "minimum_index_compatibility_version": "8.0.0",
        },
        "tagline": "You Know, for Search",
    }))
}

async fn info_head() -> Response {
    let mut r = ok(&json!({}));
    *r.body_mut() = axum::body::Body::empty();
    r
}

async fn health() -> Response {
    ok(&json!({
        "cluster_name": "crossdex",
        "status": "green",
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 1,
        "active_shards": 1,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
    }))
}

/// The sources the caller sees, with their record counts.
async fn sources(service: &Service) -> Result<Vec<(String, u64)>, EsError> {
    let mut req = SearchRequest::new("*", 0);
    req.facets = Some(1);
    match service.search(&req, &QueryControl::default()).await {
        Ok(r) => Ok(r
            .facets
            .map(|f| f.source.into_iter().map(|b| (b.value, b.count)).collect())
            .unwrap_or_default()),
        Err(e) if e.code == crossdex_service::ErrorCode::NoIndex => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The sources an index expression names: `crossdex`, `_all`, `*`, source names,
/// comma lists and wildcards. `None`: every source. An index the caller does not see
/// answers as a missing one.
async fn resolve(service: &Service, expr: &str) -> Result<Option<BTreeSet<String>>, EsError> {
    let names: Vec<&str> = expr
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    // Everything needs no list of sources (which costs a search of every record).
    if names
        .iter()
        .any(|name| *name == ALL || *name == "_all" || *name == "*")
    {
        return Ok(None);
    }
    let known = sources(service).await?;
    let mut out = BTreeSet::new();
    for name in names {
        if name.contains('*') {
            let re = wildcard(name);
            out.extend(known.iter().filter(|(s, _)| re(s)).map(|(s, _)| s.clone()));
            continue;
        }
        if !known.iter().any(|(s, _)| s == name) {
            return Err(EsError::no_index(name));
        }
        out.insert(name.to_owned());
    }
    Ok(Some(out))
}

fn wildcard(pattern: &str) -> impl Fn(&str) -> bool + '_ {
    move |s: &str| {
        let parts: Vec<&str> = pattern.split('*').collect();
        let mut rest = s;
        for (i, p) in parts.iter().enumerate() {
            if i == 0 {
                let Some(r) = rest.strip_prefix(p) else {
                    return false;
                };
                rest = r;
            } else if i == parts.len() - 1 {
                return rest.ends_with(p);
            } else {
                let Some(at) = rest.find(p) else {
                    return false;
                };
                rest = &rest[at + p.len()..];
            }
        }
        rest.is_empty()
    }
}

/// The index names an expression stands for, as `_mapping` and `_field_caps` list them.
async fn index_names(service: &Service, expr: &str) -> Result<Vec<String>, EsError> {
    Ok(match resolve(service, expr).await? {
        None => vec![ALL.to_owned()],
        Some(set) => set.into_iter().collect(),
    })
}

#[derive(Deserialize, Default)]
struct CatParams {
    format: Option<String>,
}

async fn cat_indices(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Query(params): Query<CatParams>,
) -> Result<Response, EsError> {
    let service = service(&state, caller.as_deref())?;
    let known = sources(&service).await?;
    let total: u64 = known.iter().map(|(_, n)| n).sum();
    let row = |name: &str, n: u64| {
        json!({"health": "green", "status": "open", "index": name, "uuid": name,
               "pri": "1", "rep": "0", "docs.count": n.to_string(), "docs.deleted": "0"})
    };
    let mut rows = vec![row(ALL, total)];
    rows.extend(known.iter().map(|(s, n)| row(s, *n)));
    if params.format.as_deref() == Some("json") {
        return Ok(ok(&Value::Array(rows)));
    }
    let mut text = String::new();
    for r in rows {
        text.push_str(&format!(
            "green open {} 1 0 {}\n",
            r["index"].as_str().unwrap_or_default(),
            r["docs.count"].as_str().unwrap_or_default()
        ));
    }
    let mut resp = ok(&json!({}));
    *resp.body_mut() = axum::body::Body::from(text);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    Ok(resp)
}

/// The fields of a document and their types.
const MAPPING: &[(&str, &str)] = &[
    ("id", "keyword"),
    ("source", "keyword"),
    ("system", "keyword"),
    ("kind", "keyword"),
    ("project", "keyword"),
    ("subject_key", "keyword"),
    ("subject_id", "keyword"),
    ("title", "text"),
    ("body", "text"),
    ("created_at", "date"),
];

async fn mapping_all(
    state: State<AppState>,
    caller: Option<axum::Extension<Caller>>,
) -> Result<Response, EsError> {
    mapping(state, caller, Path(ALL.to_owned())).await
}

async fn mapping(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Path(index): Path<String>,
) -> Result<Response, EsError> {
    let names = index_names(&service(&state, caller.as_deref())?, &index).await?;
    let properties: Map<String, Value> = MAPPING
        .iter()
        .map(|(f, t)| ((*f).to_owned(), json!({"type": t})))
        .collect();
    let body: Map<String, Value> = names
        .into_iter()
        .map(|n| (n, json!({"mappings": {"properties": properties}})))
        .collect();
    Ok(ok(&Value::Object(body)))
}

async fn field_caps_all(
    state: State<AppState>,
    caller: Option<axum::Extension<Caller>>,
) -> Result<Response, EsError> {
    field_caps(state, caller, Path(ALL.to_owned())).await
}

async fn field_caps(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Path(index): Path<String>,
) -> Result<Response, EsError> {
    let names = index_names(&service(&state, caller.as_deref())?, &index).await?;
    let fields: Map<String, Value> = MAPPING
        .iter()
        .map(|(f, t)| {
            (
                (*f).to_owned(),
                json!({ *t: {"type": t, "metadata_field": false, "searchable": true,
                              "aggregatable": *t != "text"} }),
            )
        })
        .collect();
    Ok(ok(&json!({"indices": names, "fields": fields})))
}

// ------------------------------------------------------------------ the query DSL

/// A translated query: everything, nothing, or crossdex search syntax.
#[derive(Debug, Clone, PartialEq)]
enum Q {
    All,
    None,
    Text(String),
}

fn and(parts: Vec<Q>) -> Q {
    let mut texts = Vec::new();
    for p in parts {
        match p {
            Q::None => return Q::None,
            Q::All => {}
            Q::Text(t) => texts.push(t),
        }
    }
    match texts.len() {
        0 => Q::All,
        1 => Q::Text(texts.remove(0)),
        _ => Q::Text(
            texts
                .iter()
                .map(|t| format!("({t})"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    }
}

fn or(parts: Vec<Q>) -> Q {
    let mut texts = Vec::new();
    for p in parts {
        match p {
            Q::All => return Q::All,
            Q::None => {}
            Q::Text(t) => texts.push(t),
        }
    }
    match texts.len() {
        0 => Q::None,
        1 => Q::Text(texts.remove(0)),
        _ => Q::Text(
            texts
                .iter()
                .map(|t| format!("({t})"))
                .collect::<Vec<_>>()
                .join(" OR "),
        ),
    }
}

fn not(q: Q) -> Q {
    match q {
        Q::All => Q::None,
        Q::None => Q::All,
        Q::Text(t) => Q::Text(format!("-({t})")),
    }
}

/// Where a field lives in crossdex's index.
enum Field {
    /// Full text: the title alone, or the whole record.
    Text(Option<&'static str>),
    /// An exact value, under its search-syntax name.
    Keyword(&'static str),
}

fn field(name: &str) -> Result<Field, EsError> {
    let name = name.split('^').next().unwrap_or(name);
    let name = name.strip_suffix(".keyword").unwrap_or(name);
    Ok(match name {
        "title" => Field::Text(Some("title")),
        "body" | "description" | "_all" | "*" | "text" | "snippet" => Field::Text(None),
        "source" | "_index" => Field::Keyword("source"),
        "system" => Field::Keyword("system"),
        "kind" => Field::Keyword("kind"),
        "project" => Field::Keyword("project"),
        "subject_key" => Field::Keyword("subject_key"),
        "subject_id" => Field::Keyword("subject_id"),
        other => {
            return Err(EsError::unsupported(format!(
                "field [{other}] (known: title, body, source, system, kind, project, subject_key, subject_id, created_at)"
            )));
        }
    })
}

/// The words of `text` as the search syntax reads them: letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', " "))
}

fn text_value(v: &Value) -> Result<String, EsError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(EsError::parsing(format!("expected a value, found {other}"))),
    }
}

fn keyword(f: &str, v: &Value) -> Result<Q, EsError> {
    Ok(Q::Text(format!("{f}:{}", quoted(&text_value(v)?))))
}

/// The one `field: spec` pair of a leaf query.
fn single(v: &Value, what: &str) -> Result<(String, Value), EsError> {
    let Some(map) = v.as_object().filter(|m| m.len() == 1) else {
        return Err(EsError::parsing(format!(
            "[{what}] query malformed, expected one field"
        )));
    };
    let (k, v) = map.iter().next().expect("one entry");
    Ok((k.clone(), v.clone()))
}

/// Date bounds met in conjunctive position, applied as the search's date filter.
#[derive(Default)]
struct Dates {
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
}

fn date(v: &Value) -> Result<chrono::DateTime<chrono::Utc>, EsError> {
    let text = text_value(v)?;
    let now = chrono::Utc::now();
    if let Some(rest) = text.strip_prefix("now") {
        let rest = rest.split('/').next().unwrap_or("");
        if rest.is_empty() {
            return Ok(now);
        }
        // Split on characters, not bytes: the text is the caller's.
        let mut chars = rest.chars();
        let sign = chars.next().map(String::from).unwrap_or_default();
        let amount = chars.as_str();
        let unit_at = amount.char_indices().next_back().map_or(0, |(i, _)| i);
        let (n, unit) = amount.split_at(unit_at);
        if sign != "+" && sign != "-" {
            return Err(EsError::parsing(format!(
                "date math [{text}] not understood"
            )));
        }
        let n: i64 = n
            .parse()
            .map_err(|_| EsError::parsing(format!("date math [{text}] not understood")))?;
        let days = match unit {
            "d" => n,
            "w" => 7 * n,
            "M" => 30 * n,
            "y" => 365 * n,
            "h" => return Ok(now - chrono::Duration::hours(if sign == "-" { n } else { -n })),
            _ => {
                return Err(EsError::parsing(format!(
                    "date math [{text}] not understood"
                )));
            }
        };
        let d = chrono::Duration::days(days);
        return Ok(if sign == "-" { now - d } else { now + d });
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    for f in ["%Y-%m-%d", "%Y-%m", "%Y"] {
        let padded = match f {
            "%Y-%m" => format!("{text}-01"),
            "%Y" => format!("{text}-01-01"),
            _ => text.clone(),
        };
        if let Ok(d) = chrono::NaiveDate::parse_from_str(&padded, "%Y-%m-%d")
            && let Some(t) = d.and_hms_opt(0, 0, 0)
        {
            return Ok(t.and_utc());
        }
    }
    if let Some(t) = v.as_i64().and_then(chrono::DateTime::from_timestamp_millis) {
        return Ok(t);
    }
    Err(EsError::parsing(format!("failed to parse date [{text}]")))
}

/// Translates one query of the DSL; `dates` takes date ranges where they narrow the
/// whole query (`conjunctive`), elsewhere they are refused.
fn translate(v: &Value, dates: &mut Dates, conjunctive: bool) -> Result<Q, EsError> {
    let Some(map) = v.as_object() else {
        return Err(EsError::parsing("a query is an object"));
    };
    if map.len() != 1 {
        return Err(EsError::parsing(format!(
            "a query has one type, found [{}]",
            map.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let (kind, spec) = map.iter().next().expect("one entry");
    match kind.as_str() {
        "match_all" => Ok(Q::All),
        "match_none" => Ok(Q::None),
        "match" | "match_bool_prefix" => {
            let (f, spec) = single(spec, kind)?;
            let (text, operator) = match &spec {
                Value::Object(o) => (
                    o.get("query")
                        .map(text_value)
                        .transpose()?
                        .unwrap_or_default(),
                    o.get("operator")
                        .and_then(Value::as_str)
                        .unwrap_or("or")
                        .to_ascii_lowercase(),
                ),
                other => (text_value(other)?, "or".to_owned()),
            };
            match field(&f)? {
                Field::Keyword(k) => keyword(k, &Value::String(text)),
                Field::Text(prefix) => {
                    let mut ws = words(&text);
                    if kind == "match_bool_prefix"
                        && let Some(last) = ws.last_mut()
                    {
                        last.push('*');
                    }
                    let ws: Vec<Q> = ws
                        .into_iter()
                        .map(|w| Q::Text(prefix.map_or(w.clone(), |p| format!("{p}:{w}"))))
                        .collect();
                    if ws.is_empty() {
                        return Ok(Q::None);
                    }
                    Ok(if operator == "and" { and(ws) } else { or(ws) })
                }
            }
        }
        "match_phrase" | "match_phrase_prefix" => {
            let (f, spec) = single(spec, kind)?;
            let text = match &spec {
                Value::Object(o) => o
                    .get("query")
                    .map(text_value)
                    .transpose()?
                    .unwrap_or_default(),
                other => text_value(other)?,
            };
            match field(&f)? {
                Field::Keyword(k) => keyword(k, &Value::String(text)),
                Field::Text(prefix) => {
                    let ws = words(&text);
                    if kind == "match_phrase_prefix" {
                        // The last word as a prefix, the others as a phrase before it.
                        let (last, head) = ws
                            .split_last()
                            .ok_or_else(|| EsError::parsing("empty phrase"))?;
                        let mut parts = Vec::new();
                        if !head.is_empty() {
                            parts.push(Q::Text(quoted(&head.join(" "))));
                        }
                        parts.push(Q::Text(format!("{last}*")));
                        return Ok(and(parts));
                    }
                    let phrase = quoted(&ws.join(" "));
                    Ok(Q::Text(
                        prefix.map_or(phrase.clone(), |p| format!("{p}:{phrase}")),
                    ))
                }
            }
        }
        "multi_match" => {
            let o = spec
                .as_object()
                .ok_or_else(|| EsError::parsing("[multi_match] is an object"))?;
            let text = o
                .get("query")
                .map(text_value)
                .transpose()?
                .unwrap_or_default();
            let kind = o
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("best_fields");
            let operator = o
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("or")
                .to_ascii_lowercase();
            let fields: Vec<String> = match o.get("fields") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect(),
                _ => vec!["*".to_owned()],
            };
            let mut per_field = Vec::new();
            for f in &fields {
                let leaf = match kind {
                    "phrase" => json!({"match_phrase": {f: text}}),
                    "phrase_prefix" => json!({"match_phrase_prefix": {f: text}}),
                    "bool_prefix" => json!({"match_bool_prefix": {f: text}}),
                    "best_fields" | "most_fields" | "cross_fields" => {
                        json!({"match": {f: {"query": text, "operator": operator}}})
                    }
                    other => {
                        return Err(EsError::unsupported(format!("multi_match type [{other}]")));
                    }
                };
                per_field.push(translate(&leaf, dates, false)?);
            }
            per_field.dedup();
            Ok(or(per_field))
        }
        "query_string" | "simple_query_string" => {
            let o = spec
                .as_object()
                .ok_or_else(|| EsError::parsing(format!("[{kind}] is an object")))?;
            let text = o
                .get("query")
                .map(text_value)
                .transpose()?
                .unwrap_or_default();
            // crossdex's syntax is Lucene's in its common parts; AND is its default.
            let text = if kind == "simple_query_string" {
                text.replace(" | ", " OR ").replace('+', " ")
            } else {
                text.replace(" AND ", " ")
                    .replace(" && ", " ")
                    .replace(" || ", " OR ")
            };
            Ok(if text.trim().is_empty() || text.trim() == "*" {
                Q::All
            } else {
                Q::Text(text)
            })
        }
        "term" | "prefix" | "wildcard" => {
            let (f, spec) = single(spec, kind)?;
            let value = match &spec {
                Value::Object(o) => o
                    .get("value")
                    .cloned()
                    .ok_or_else(|| EsError::parsing(format!("[{kind}] needs a value")))?,
                other => other.clone(),
            };
            let text = text_value(&value)?;
            match (kind.as_str(), field(&f)?) {
                ("term", Field::Keyword(k)) => keyword(k, &value),
                ("term", Field::Text(prefix)) => {
                    Ok(Q::Text(prefix.map_or(text.to_lowercase(), |p| {
                        format!("{p}:{}", text.to_lowercase())
                    })))
                }
                (_, Field::Text(None)) if !text.contains(['?', ' ']) => {
                    let stem = text.trim_end_matches('*');
                    if stem.contains('*') {
                        return Err(EsError::unsupported("a wildcard other than a trailing *"));
                    }
                    Ok(Q::Text(format!("{stem}*")))
                }
                _ => Err(EsError::unsupported(format!("[{kind}] on field [{f}]"))),
            }
        }
        "terms" => {
            let o = spec
                .as_object()
                .ok_or_else(|| EsError::parsing("[terms] is an object"))?;
            let (f, values) = o
                .iter()
                .find(|(k, _)| k.as_str() != "boost")
                .ok_or_else(|| EsError::parsing("[terms] needs a field"))?;
            let values = values
                .as_array()
                .ok_or_else(|| EsError::parsing("[terms] takes an array of values"))?;
            let Field::Keyword(k) = field(f)? else {
                return Err(EsError::unsupported(format!("[terms] on text field [{f}]")));
            };
            Ok(or(values
                .iter()
                .map(|v| keyword(k, v))
                .collect::<Result<_, _>>()?))
        }
        "range" => {
            let (f, spec) = single(spec, kind)?;
            if !matches!(f.as_str(), "created_at" | "date" | "modified_at") {
                return Err(EsError::unsupported(format!("[range] on field [{f}]")));
            }
            if !conjunctive {
                return Err(EsError::unsupported(
                    "a date [range] inside should or must_not",
                ));
            }
            let o = spec
                .as_object()
                .ok_or_else(|| EsError::parsing("[range] is an object"))?;
            for (op, v) in o {
                match op.as_str() {
                    "gte" | "gt" | "from" => dates.from = Some(date(v)?),
                    "lte" | "lt" | "to" => {
                        let mut t = date(v)?;
                        if op == "lte" {
                            t += chrono::Duration::milliseconds(1);
                        }
                        dates.to = Some(t);
                    }
                    "format" | "time_zone" | "boost" => {}
                    other => return Err(EsError::parsing(format!("[range] has no [{other}]"))),
                }
            }
            Ok(Q::All)
        }
        "bool" => {
            let o = spec
                .as_object()
                .ok_or_else(|| EsError::parsing("[bool] is an object"))?;
            let list = |k: &str| -> Vec<Value> {
                match o.get(k) {
                    Some(Value::Array(a)) => a.clone(),
                    Some(v @ Value::Object(_)) => vec![v.clone()],
                    _ => Vec::new(),
                }
            };
            let mut must = Vec::new();
            for q in list("must").iter().chain(list("filter").iter()) {
                must.push(translate(q, dates, conjunctive)?);
            }
            let mut should = Vec::new();
            for q in list("should") {
                should.push(translate(&q, dates, false)?);
            }
            for q in list("must_not") {
                must.push(not(translate(&q, dates, false)?));
            }
            let minimum = match o.get("minimum_should_match") {
                Some(Value::Number(n)) => n.as_u64().unwrap_or(1),
                Some(Value::String(s)) if s.trim() == "1" => 1,
                Some(Value::String(s)) => {
                    return Err(EsError::unsupported(format!("minimum_should_match [{s}]")));
                }
                _ if must.is_empty() => 1,
                _ => 0,
            };
            if !should.is_empty() {
                match minimum {
                    0 => {}
                    1 => must.push(or(should)),
                    n => return Err(EsError::unsupported(format!("minimum_should_match [{n}]"))),
                }
            }
            Ok(and(must))
        }
        other => Err(EsError::unsupported(format!("query [{other}]"))),
    }
}

// ------------------------------------------------------------------ search

/// One search as the DSL asks it, translated.
#[derive(Clone, Serialize, Deserialize)]
struct Plan {
    /// The indices' sources; `None`: all.
    sources: Option<BTreeSet<String>>,
    query: String,
    #[serde(skip, default)]
    nothing: bool,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    size: usize,
    tags: Option<(String, String)>,
    highlight: bool,
    source_fields: SourceFilter,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct SourceFilter {
    off: bool,
    includes: Vec<String>,
    excludes: Vec<String>,
}

fn source_filter(v: Option<&Value>) -> SourceFilter {
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    match v {
        Some(Value::Bool(false)) => SourceFilter {
            off: true,
            ..SourceFilter::default()
        },
        Some(Value::Object(o)) => SourceFilter {
            off: false,
            includes: strings(o.get("includes")),
            excludes: strings(o.get("excludes")),
        },
        Some(other @ (Value::String(_) | Value::Array(_))) => SourceFilter {
            off: false,
            includes: strings(Some(other)),
            excludes: Vec::new(),
        },
        _ => SourceFilter::default(),
    }
}

fn with_sources(q: Q, sources: &Option<BTreeSet<String>>) -> Q {
    match sources {
        None => q,
        Some(set) => and(vec![
            q,
            or(set
                .iter()
                .map(|s| Q::Text(format!("source:{}", quoted(s))))
                .collect()),
        ]),
    }
}

fn q_text(q: &Q) -> (String, bool) {
    match q {
        Q::All => ("*".to_owned(), false),
        Q::None => ("*".to_owned(), true),
        Q::Text(t) => (t.clone(), false),
    }
}

impl Plan {
    fn request(&self, limit: usize, offset: usize, facets: Option<usize>) -> SearchRequest {
        let mut r = SearchRequest::new(self.query.clone(), limit);
        r.offset = offset;
        r.facets = facets;
        r.filters = SearchFilters {
            from: self.from,
            to: self.to,
            ..SearchFilters::default()
        };
        r.tags = self.tags.clone();
        r
    }
}

/// The fields a search's body may carry; others are reported, or refused in strict mode.
const BODY_KEYS: &[&str] = &[
    "query",
    "post_filter",
    "aggs",
    "aggregations",
    "from",
    "size",
    "highlight",
    "_source",
    "track_total_hits",
    "timeout",
    "sort",
];

#[derive(Deserialize, Default)]
struct SearchParams {
    q: Option<String>,
    size: Option<usize>,
    from: Option<usize>,
    scroll: Option<String>,
    /// Refuse body fields crossdex does not read, rather than report them.
    strict: Option<bool>,
    /// `_source` filtering as clients send it in the query string.
    #[serde(rename = "_source")]
    source: Option<String>,
    #[serde(rename = "_source_includes")]
    source_includes: Option<String>,
    #[serde(rename = "_source_excludes")]
    source_excludes: Option<String>,
}

impl SearchParams {
    /// The query string's `_source` filter, as the body would write it.
    fn source_filter(&self) -> Option<Value> {
        let list = |v: &Option<String>| -> Vec<String> {
            v.as_deref()
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default()
        };
        match (&self.source, &self.source_includes, &self.source_excludes) {
            (Some(s), _, _) if s == "false" => Some(json!(false)),
            (None, None, None) => None,
            (s, inc, exc) => {
                let mut includes = list(inc);
                if let Some(s) = s.as_ref().filter(|s| *s != "true") {
                    includes.extend(s.split(',').map(str::to_owned));
                }
                Some(json!({"includes": includes, "excludes": list(exc)}))
            }
        }
    }
}

fn parse_body(bytes: &Bytes) -> Result<Map<String, Value>, EsError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(EsError::parsing("the request body is a JSON object")),
        Err(e) => Err(EsError::parsing(format!(
            "the request body is not JSON: {e}"
        ))),
    }
}

async fn search_all(
    state: State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    params: Query<SearchParams>,
    body: Bytes,
) -> Result<Response, EsError> {
    search(state, caller, Path(ALL.to_owned()), params, body).await
}

async fn search(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Path(index): Path<String>,
    Query(params): Query<SearchParams>,
    body: Bytes,
) -> Result<Response, EsError> {
    let service = service(&state, caller.as_deref())?;
    let body = parse_body(&body)?;
    let unknown: Vec<&String> = body
        .keys()
        .filter(|k| !BODY_KEYS.contains(&k.as_str()))
        .collect();
    if params.strict == Some(true) && !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        return Err(EsError::parsing(format!(
            "unknown search body fields [{}] (strict mode)",
            names.join(", ")
        )));
    }
    let mut answer_body = run_search(&service, &index, &body, &params).await?;
    if let Some(scroll) = &params.scroll {
        let _ = scroll;
        answer_body["_scroll_id"] = json!(answer_body["_next"].take());
    }
    if let Some(o) = answer_body.as_object_mut() {
        o.remove("_next");
    }
    let mut r = ok(&answer_body);
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "299 crossdex \"ignored unknown search body fields: {}\"",
            names.join(", ")
        )) {
            r.headers_mut().insert(header::WARNING, v);
        }
    }
    Ok(r)
}

/// Runs one search; the answer carries `_next`, the scroll id of the next page.
async fn run_search(
    service: &Service,
    index: &str,
    body: &Map<String, Value>,
    params: &SearchParams,
) -> Result<Value, EsError> {
    let started = Instant::now();
    let sources = resolve(service, index).await?;
    let mut dates = Dates::default();
    let query = match (body.get("query"), &params.q) {
        (Some(q), _) => translate(q, &mut dates, true)?,
        (None, Some(q)) => translate(&json!({"query_string": {"query": q}}), &mut dates, true)?,
        (None, None) => Q::All,
    };
    let post = match body.get("post_filter") {
        Some(p) => Some(translate(p, &mut Dates::default(), false)?),
        None => None,
    };
    if let Some(sort) = body.get("sort") {
        // `_doc` asks for no order in particular: relevance order is one.
        let plain = |k: &str| k == "_score" || k == "_doc";
        let only_score = match sort {
            Value::String(s) => plain(s),
            Value::Array(a) => a.iter().all(|s| {
                s.as_str().is_some_and(plain)
                    || s.as_object().is_some_and(|o| o.keys().all(|k| plain(k)))
            }),
            Value::Object(o) => o.keys().all(|k| plain(k)),
            _ => false,
        };
        if !only_score {
            return Err(EsError::unsupported("[sort] by anything but _score"));
        }
    }
    let size = body
        .get("size")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .or(params.size)
        .unwrap_or(10)
        .min(crossdex_service::MAX_SEARCH_LIMIT);
    let from = body
        .get("from")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .or(params.from)
        .unwrap_or(0);
    let highlight = body.get("highlight").and_then(Value::as_object);
    let tags = highlight.map(|h| {
        let tag = |k: &str, d: &str| {
            h.get(k)
                .and_then(|v| match v {
                    Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| d.to_owned())
        };
        (tag("pre_tags", "<em>"), tag("post_tags", "</em>"))
    });
    let base = with_sources(query, &sources);
    let hits_q = match &post {
        Some(p) => and(vec![base.clone(), p.clone()]),
        None => base.clone(),
    };
    let (text, nothing) = q_text(&hits_q);
    let plan = Plan {
        sources: sources.clone(),
        query: text,
        nothing,
        from: dates.from,
        to: dates.to,
        size,
        tags,
        highlight: highlight.is_some(),
        source_fields: source_filter(body.get("_source").or(params.source_filter().as_ref())),
    };
    let aggs = body
        .get("aggs")
        .or_else(|| body.get("aggregations"))
        .and_then(Value::as_object);
    let facet_size = aggs.map(facet_size).unwrap_or(10);
    // Aggregations see the query; hits see the query and the post filter.
    let needs_facets = aggs.is_some();
    let separate = needs_facets && post.is_some();
    let control = match body.get("timeout").and_then(Value::as_str) {
        Some(t) => QueryControl::with_timeout(duration(t)?),
        None => QueryControl::default(),
    };
    let result = if plan.nothing {
        None
    } else {
        Some(
            service
                .search(
                    &plan.request(
                        size,
                        from,
                        (needs_facets && !separate).then_some(facet_size),
                    ),
                    &control,
                )
                .await?,
        )
    };
    let mut out = hits_json(&plan, result.as_ref(), started);
    if let Some(aggs) = aggs {
        let facets = if separate {
            let (text, nothing) = q_text(&base);
            if nothing {
                None
            } else {
                let mut r = plan.request(0, 0, Some(facet_size));
                r.query = text;
                service.search(&r, &control).await?.facets
            }
        } else {
            result.as_ref().and_then(|r| r.facets.clone())
        };
        let base_plan = Plan {
            query: q_text(&base).0,
            nothing: q_text(&base).1,
            ..plan.clone()
        };
        out["aggregations"] = aggregations(service, &base_plan, aggs, facets.as_ref()).await?;
    }
    out["_next"] = match result.as_ref().and_then(|r| r.next_cursor.clone()) {
        Some(cursor) => json!(encode_scroll(&plan, &cursor)),
        None => json!(encode_scroll(&plan, "")),
    };
    Ok(out)
}

fn hits_json(plan: &Plan, result: Option<&SearchResult>, started: Instant) -> Value {
    let hits: Vec<Value> = result
        .map(|r| r.hits.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let full = json!({
                "id": h.id, "source": h.source, "system": h.system, "kind": h.kind,
                "subject_id": h.subject_id, "title": h.title,
            });
            let mut hit = json!({"_index": h.source, "_id": h.id, "_score": h.score});
            if !plan.source_fields.off {
                hit["_source"] = filter_source(full, &plan.source_fields);
            }
            if plan.highlight && !h.snippet.is_empty() {
                hit["highlight"] = json!({"body": [h.snippet]});
            }
            hit
        })
        .collect();
    let total = result.map_or(0, |r| r.total);
    let max_score = result
        .and_then(|r| r.hits.first())
        .map_or(Value::Null, |h| json!(h.score));
    json!({
        "took": started.elapsed().as_millis() as u64,
        "timed_out": false,
        "_shards": shards(),
        "hits": {
            "total": {"value": total, "relation": "eq"},
            "max_score": max_score,
            "hits": hits,
        },
    })
}

fn filter_source(full: Value, f: &SourceFilter) -> Value {
    let Value::Object(map) = full else {
        return full;
    };
    let matches = |pattern: &str, k: &str| wildcard(pattern)(k);
    Value::Object(
        map.into_iter()
            .filter(|(k, _)| f.includes.is_empty() || f.includes.iter().any(|p| matches(p, k)))
            .filter(|(k, _)| !f.excludes.iter().any(|p| matches(p, k)))
            .collect(),
    )
}

/// A time value of Elasticsearch (`500ms`, `5s`, `1m`), at most a minute: the server's
/// own limits apply beyond.
fn duration(text: &str) -> Result<std::time::Duration, EsError> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| EsError::parsing(format!("failed to parse time value [{text}]")))?;
    let d = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" | "" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(60 * n),
        _ => {
            return Err(EsError::parsing(format!(
                "failed to parse time value [{text}]"
            )));
        }
    };
    Ok(d.clamp(
        std::time::Duration::from_millis(1),
        std::time::Duration::from_secs(60),
    ))
}

/// A Java date format of Elasticsearch (`yyyy-MM-dd`) as chrono's.
fn java_format(f: &str) -> Result<String, EsError> {
    match f {
        "strict_date_optional_time" | "date_optional_time" => {
            return Ok("%Y-%m-%dT%H:%M:%S%.3fZ".to_owned());
        }
        "epoch_millis" => return Ok("%s000".to_owned()),
        _ => {}
    }
    let mut out = String::new();
    let mut rest = f;
    while !rest.is_empty() {
        let (token, len) = [
            ("yyyy", "%Y"),
            ("MM", "%m"),
            ("dd", "%d"),
            ("HH", "%H"),
            ("mm", "%M"),
            ("ss", "%S"),
            ("SSS", "%3f"),
            ("MMM", "%b"),
        ]
        .iter()
        .filter(|(t, _)| rest.starts_with(t))
        .max_by_key(|(t, _)| t.len())
        .map_or((None, 1), |(t, c)| (Some(*c), t.len()));
        match token {
            Some(c) => out.push_str(c),
            None => {
                let ch = rest.chars().next().unwrap_or(' ');
                if ch.is_ascii_alphabetic() {
                    return Err(EsError::unsupported(format!("the date format [{f}]")));
                }
                out.push(ch);
                rest = &rest[ch.len_utf8().min(rest.len())..];
                continue;
            }
        }
        rest = &rest[len.min(rest.len())..];
    }
    Ok(out)
}

/// The largest bucket count the aggregations ask of one facet.
fn facet_size(aggs: &Map<String, Value>) -> usize {
    let mut size = 10;
    for spec in aggs.values() {
        if let Some(terms) = spec.get("terms") {
            if let Some(n) = terms.get("size").and_then(Value::as_u64) {
                size = size.max(n as usize);
            }
            // Filtered or reordered buckets come from all of them.
            if ["include", "exclude", "order"]
                .iter()
                .any(|k| terms.get(*k).is_some())
            {
                size = 10_000;
            }
        }
        for sub in ["aggs", "aggregations"] {
            if let Some(s) = spec.get(sub).and_then(Value::as_object) {
                size = size.max(facet_size(s));
            }
        }
    }
    size.min(10_000)
}

fn facet_of<'a>(
    facets: &'a Facets,
    field_name: &str,
) -> Result<&'a [crossdex_service::Bucket], EsError> {
    let name = field_name.strip_suffix(".keyword").unwrap_or(field_name);
    Ok(match name {
        "source" | "_index" => &facets.source,
        "system" => &facets.system,
        "kind" => &facets.kind,
        "project" => &facets.project,
        "subject_id" => &facets.subject,
        other => {
            return Err(EsError::unsupported(format!(
                "a terms aggregation on [{other}] (source, system, kind, project, subject_id)"
            )));
        }
    })
}

/// The aggregations of `aggs` over the hits of `plan` (whose facets are `facets`).
fn aggregations<'a>(
    service: &'a Service,
    plan: &'a Plan,
    aggs: &'a Map<String, Value>,
    facets: Option<&'a Facets>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, EsError>> + Send + 'a>> {
    Box::pin(async move {
        let empty = Facets::default();
        let facets = facets.unwrap_or(&empty);
        let mut out = Map::new();
        for (name, spec) in aggs {
            let spec = spec
                .as_object()
                .ok_or_else(|| EsError::parsing(format!("aggregation [{name}] is an object")))?;
            let subs = spec
                .get("aggs")
                .or_else(|| spec.get("aggregations"))
                .and_then(Value::as_object);
            let (kind, body) = spec
                .iter()
                .find(|(k, _)| !matches!(k.as_str(), "aggs" | "aggregations" | "meta"))
                .ok_or_else(|| EsError::parsing(format!("aggregation [{name}] has no type")))?;
            let value = match kind.as_str() {
                "terms" => {
                    if subs.is_some() {
                        return Err(EsError::unsupported(
                            "sub-aggregations of a terms aggregation",
                        ));
                    }
                    let field_name = body.get("field").and_then(Value::as_str).unwrap_or("");
                    let size = body.get("size").and_then(Value::as_u64).unwrap_or(10) as usize;
                    let min = body
                        .get("min_doc_count")
                        .and_then(Value::as_u64)
                        .unwrap_or(1);
                    let all = facet_of(facets, field_name)?;
                    let listed = |k: &str| -> Option<Vec<String>> {
                        match body.get(k) {
                            Some(Value::Array(a)) => Some(
                                a.iter()
                                    .filter_map(|v| v.as_str().map(str::to_owned))
                                    .collect(),
                            ),
                            Some(Value::String(s)) => {
                                // A regular expression: a trailing `.*` is a prefix, others
                                // are refused rather than misread.
                                match s.strip_suffix(".*") {
                                    Some(p) if !p.contains(['.', '*', '[', '(', '|', '+', '?']) => {
                                        Some(vec![format!("{p}*")])
                                    }
                                    _ => None,
                                }
                            }
                            _ => None,
                        }
                    };
                    for k in ["include", "exclude"] {
                        if body.get(k).is_some() && listed(k).is_none() {
                            return Err(EsError::unsupported(format!(
                                "[{k}] other than a list of values or a `prefix.*` pattern"
                            )));
                        }
                    }
                    let hit = |list: &[String], v: &str| {
                        list.iter().any(|p| match p.strip_suffix('*') {
                            Some(prefix) => v.starts_with(prefix),
                            None => p == v,
                        })
                    };
                    let include = listed("include");
                    let exclude = listed("exclude").unwrap_or_default();
                    let mut kept: Vec<&crossdex_service::Bucket> = all
                        .iter()
                        .filter(|b| b.count >= min)
                        .filter(|b| include.as_ref().is_none_or(|i| hit(i, &b.value)))
                        .filter(|b| !hit(&exclude, &b.value))
                        .collect();
                    // Most frequent first, ties by key (the facets' order), unless asked.
                    if let Some(order) = body.get("order").and_then(Value::as_object) {
                        for (key, dir) in order {
                            let desc = dir.as_str() == Some("desc");
                            match key.as_str() {
                                "_key" | "_term" => kept.sort_by(|a, b| {
                                    let o = a.value.cmp(&b.value);
                                    if desc { o.reverse() } else { o }
                                }),
                                "_count" => kept.sort_by(|a, b| {
                                    let o = a.count.cmp(&b.count).then(b.value.cmp(&a.value));
                                    if desc { o.reverse() } else { o }
                                }),
                                other => {
                                    return Err(EsError::unsupported(format!(
                                        "a terms order by [{other}]"
                                    )));
                                }
                            }
                        }
                    }
                    let other: u64 = kept.iter().skip(size).map(|b| b.count).sum();
                    json!({
                        "doc_count_error_upper_bound": 0,
                        "sum_other_doc_count": other,
                        "buckets": kept.iter().take(size).map(|b| json!({"key": b.value, "doc_count": b.count})).collect::<Vec<_>>(),
                    })
                }
                "date_histogram" => {
                    let interval = body
                        .get("calendar_interval")
                        .or_else(|| body.get("interval"))
                        .and_then(Value::as_str)
                        .unwrap_or("month");
                    if !matches!(interval, "month" | "1M") {
                        return Err(EsError::unsupported(format!(
                            "a date_histogram by [{interval}] (by month only)"
                        )));
                    }
                    let format = match body.get("format").and_then(Value::as_str) {
                        Some(f) => java_format(f)?,
                        None => "%Y-%m-%dT%H:%M:%S%.3fZ".to_owned(),
                    };
                    let min = body
                        .get("min_doc_count")
                        .and_then(Value::as_u64)
                        .unwrap_or(1);
                    let month = |text: &str| {
                        chrono::NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()
                    };
                    let mut counts: std::collections::BTreeMap<chrono::NaiveDate, u64> = facets
                        .month
                        .iter()
                        .filter_map(|b| Some((month(&b.value)?, b.count)))
                        .collect();
                    if min == 0 {
                        // Empty months between the first and the last, and out to the
                        // bounds asked for.
                        let bound = |k: &str| -> Result<Option<chrono::NaiveDate>, EsError> {
                            body.get("extended_bounds")
                                .and_then(|b| b.get(k))
                                .map(|v| {
                                    date(v).map(|t| {
                                        chrono::Datelike::with_day(&t.date_naive(), 1)
                                            .unwrap_or(t.date_naive())
                                    })
                                })
                                .transpose()
                        };
                        let first = [counts.keys().next().copied(), bound("min")?]
                            .into_iter()
                            .flatten()
                            .min();
                        let last = [counts.keys().next_back().copied(), bound("max")?]
                            .into_iter()
                            .flatten()
                            .max();
                        if let (Some(mut m), Some(last)) = (first, last) {
                            let mut guard = 0;
                            while m <= last && guard < 12 * 1000 {
                                counts.entry(m).or_insert(0);
                                m = m
                                    .checked_add_months(chrono::Months::new(1))
                                    .unwrap_or(last + chrono::Duration::days(1));
                                guard += 1;
                            }
                        }
                    }
                    let buckets: Vec<Value> = counts
                        .iter()
                        .filter(|(_, n)| **n >= min)
                        .filter_map(|(d, n)| {
                            let t = d.and_hms_opt(0, 0, 0)?.and_utc();
                            Some(json!({
                                "key_as_string": t.format(&format).to_string(),
                                "key": t.timestamp_millis(),
                                "doc_count": n,
                            }))
                        })
                        .collect();
                    json!({ "buckets": buckets })
                }
                "filter" | "filters" => {
                    let named: Vec<(Option<String>, Value)> = if kind == "filter" {
                        vec![(None, body.clone())]
                    } else {
                        body.get("filters")
                            .and_then(Value::as_object)
                            .ok_or_else(|| EsError::parsing("[filters] needs named filters"))?
                            .iter()
                            .map(|(k, v)| (Some(k.clone()), v.clone()))
                            .collect()
                    };
                    let mut buckets = Map::new();
                    let mut single = Value::Null;
                    for (label, filter) in named {
                        let f = translate(&filter, &mut Dates::default(), false)?;
                        let base = if plan.nothing {
                            Q::None
                        } else if plan.query == "*" {
                            Q::All
                        } else {
                            Q::Text(plan.query.clone())
                        };
                        let q = and(vec![base, f]);
                        let (text, nothing) = q_text(&q);
                        let sub_plan = Plan {
                            query: text,
                            nothing,
                            ..plan.clone()
                        };
                        let (count, sub_facets) = if nothing {
                            (0, None)
                        } else {
                            let size = subs.map(facet_size);
                            let r = service
                                .search(&sub_plan.request(0, 0, size), &QueryControl::default())
                                .await?;
                            (r.total, r.facets)
                        };
                        let mut bucket = json!({"doc_count": count});
                        if let Some(subs) = subs {
                            let inner =
                                aggregations(service, &sub_plan, subs, sub_facets.as_ref()).await?;
                            if let (Some(b), Some(i)) = (bucket.as_object_mut(), inner.as_object())
                            {
                                b.extend(i.clone());
                            }
                        }
                        match label {
                            Some(l) => {
                                buckets.insert(l, bucket);
                            }
                            None => single = bucket,
                        }
                    }
                    if kind == "filter" {
                        single
                    } else {
                        json!({ "buckets": buckets })
                    }
                }
                "value_count" | "cardinality" => {
                    let field_name = body.get("field").and_then(Value::as_str).unwrap_or("");
                    let all = facet_of(facets, field_name)?;
                    if kind == "cardinality" {
                        json!({"value": all.len()})
                    } else {
                        json!({"value": all.iter().map(|b| b.count).sum::<u64>()})
                    }
                }
                other => return Err(EsError::unsupported(format!("aggregation [{other}]"))),
            };
            if subs.is_some() && !matches!(kind.as_str(), "filter" | "filters") {
                return Err(EsError::unsupported(format!(
                    "sub-aggregations of [{kind}]"
                )));
            }
            out.insert(name.clone(), value);
        }
        Ok(Value::Object(out))
    })
}

// ------------------------------------------------------------------ count, msearch, scroll

async fn count_all(
    state: State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    params: Query<SearchParams>,
    body: Bytes,
) -> Result<Response, EsError> {
    count(state, caller, Path(ALL.to_owned()), params, body).await
}

async fn count(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Path(index): Path<String>,
    Query(params): Query<SearchParams>,
    body: Bytes,
) -> Result<Response, EsError> {
    let service = service(&state, caller.as_deref())?;
    let mut body = parse_body(&body)?;
    body.retain(|k, _| k == "query");
    body.insert("size".into(), json!(0));
    let r = run_search(&service, &index, &body, &params).await?;
    Ok(ok(&json!({
        "count": r["hits"]["total"]["value"],
        "_shards": shards(),
    })))
}

async fn msearch_all(
    state: State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Result<Response, EsError> {
    msearch(state, caller, Path(ALL.to_owned()), body).await
}

async fn msearch(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Path(index): Path<String>,
    body: Bytes,
) -> Result<Response, EsError> {
    let started = Instant::now();
    let service = service(&state, caller.as_deref())?;
    let text = String::from_utf8_lossy(&body);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if !lines.len().is_multiple_of(2) {
        return Err(EsError::parsing(
            "an msearch body is pairs of lines: a header, then a search body",
        ));
    }
    let mut responses = Vec::new();
    for pair in lines.chunks(2) {
        let one = async {
            let header: Value = serde_json::from_str(pair[0])
                .map_err(|e| EsError::parsing(format!("an msearch header is not JSON: {e}")))?;
            let target = match header.get("index") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => index.clone(),
            };
            let body = parse_body(&Bytes::copy_from_slice(pair[1].as_bytes()))?;
            let mut r = run_search(&service, &target, &body, &SearchParams::default()).await?;
            if let Some(o) = r.as_object_mut() {
                o.remove("_next");
                o.insert("status".into(), json!(200));
            }
            Ok::<Value, EsError>(r)
        };
        responses.push(match one.await {
            Ok(r) => r,
            Err(e) => e.body(),
        });
    }
    Ok(ok(&json!({
        "took": started.elapsed().as_millis() as u64,
        "responses": responses,
    })))
}

fn encode_scroll(plan: &Plan, cursor: &str) -> String {
    let state = json!({"plan": plan, "cursor": cursor});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state.to_string())
}

#[derive(Deserialize, Default)]
struct ScrollBody {
    scroll_id: Option<Value>,
}

async fn scroll(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    method: Method,
    body: Bytes,
) -> Result<Response, EsError> {
    let started = Instant::now();
    let service = service(&state, caller.as_deref())?;
    let _ = method;
    let body: ScrollBody = if body.is_empty() {
        ScrollBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| EsError::parsing(format!("the scroll body is not JSON: {e}")))?
    };
    let id = match body.scroll_id {
        Some(Value::String(s)) => s,
        _ => return Err(EsError::parsing("[scroll_id] is required")),
    };
    let bad = || EsError {
        status: StatusCode::NOT_FOUND,
        kind: "search_context_missing_exception",
        reason: "no search context found for this scroll id".into(),
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id.as_bytes())
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let plan: Plan = serde_json::from_value(v["plan"].clone()).map_err(|_| bad())?;
    let cursor = v["cursor"].as_str().unwrap_or_default().to_owned();
    let result = if cursor.is_empty() {
        None
    } else {
        let mut r = plan.request(plan.size, 0, None);
        r.cursor = Some(cursor);
        Some(service.search(&r, &QueryControl::default()).await?)
    };
    let mut out = hits_json(&plan, result.as_ref(), started);
    let next = result.as_ref().and_then(|r| r.next_cursor.clone());
    out["_scroll_id"] = json!(encode_scroll(&plan, next.as_deref().unwrap_or("")));
    if let Some(r) = &result {
        // The total is the search's, whichever page this is.
        out["hits"]["total"]["value"] = json!(r.total);
    }
    Ok(ok(&out))
}

async fn clear_scroll() -> Response {
    // Scroll ids carry their state: nothing to free.
    ok(&json!({"succeeded": true, "num_freed": 1}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_formats_of_any_text_answer_without_panicking() {
        for text in [
            "now–1d",
            "now-1€",
            "now-",
            "now-d",
            "now+2w",
            "now-1y/d",
            "2024-01-01",
            "€",
        ] {
            let _ = date(&Value::String(text.to_owned()));
        }
        assert!(date(&json!("now-1d")).is_ok());
        assert!(date(&json!("now–1d")).is_err());
        assert_eq!(java_format("yyyy–MM").ok(), Some("%Y–%m".to_owned()));
        assert_eq!(java_format("yyyy-MM-dd").ok(), Some("%Y-%m-%d".to_owned()));
        assert!(java_format("yyyy QQ").is_err());
        for t in ["5s", "500ms", "1m", "5€", "", "s"] {
            let _ = duration(t);
        }
    }
}
