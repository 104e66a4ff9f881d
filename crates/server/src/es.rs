//! An Elasticsearch-compatible search API at the server's root, for portal code
//! written against Elasticsearch: cluster info, `_search`, `_count`, `_msearch`,
//! scroll, `_mapping`, `_field_caps`, `_cat/indices`, `_cluster/health`.
//!
//! It speaks Elasticsearch's wire format and translates its query DSL into the
//! service's document filter. What crossdex's search syntax can say (full text, exact
//! values, whole-second date ranges, relevance order) is answered by the service's
//! search with its facets and highlights, the fast path; the rest (typed observation
//! fields, `ids`, `regexp`, sorting, `search_after`, metric and bucket aggregations the
//! facets do not hold) by the service's documents, SQL over the caller's scoped
//! tables. Both read within the caller's scope like every route. A clause or option it
//! cannot honour is refused with Elasticsearch's error shape, never silently dropped
//! (docs/elasticsearch.md lists what is supported). It must not read the store, nor
//! write SQL: the service compiles filters.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use crossdex_service::documents::{self, DocumentQuery, Filter, GroupKey, Literal, SortKey};
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

/// The sources the caller sees, with their record counts: one grouped count over its
/// records (no search, no facets).
async fn sources(service: &Service) -> Result<Vec<(String, u64)>, EsError> {
    match service
        .group_documents(
            &Filter::All,
            "source",
            &GroupKey::Value,
            None,
            true,
            &QueryControl::default(),
        )
        .await
    {
        Ok(groups) => Ok(groups
            .into_iter()
            .filter_map(|g| Some((g.key.as_str()?.to_owned(), g.count)))
            .collect()),
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

/// The fields of the caller's documents and their types: the record's own, the whole
/// text (`body`), and the observation variables it may read.
async fn mapping_fields(service: &Service) -> Result<Vec<(String, &'static str)>, EsError> {
    let mut fields: Vec<(String, &'static str)> = service
        .document_fields(&QueryControl::default())
        .await?
        .into_iter()
        .map(|f| (f.name, f.kind))
        .collect();
    fields.push(("body".to_owned(), "text"));
    Ok(fields)
}

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
    let service = service(&state, caller.as_deref())?;
    let names = index_names(&service, &index).await?;
    let properties: Map<String, Value> = mapping_fields(&service)
        .await?
        .into_iter()
        .map(|(f, t)| (f, json!({"type": t})))
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
    let service = service(&state, caller.as_deref())?;
    let names = index_names(&service, &index).await?;
    let fields: Map<String, Value> = mapping_fields(&service)
        .await?
        .into_iter()
        .map(|(f, t)| {
            (
                f,
                json!({ t: {"type": t, "metadata_field": false, "searchable": true,
                              "aggregatable": t != "text"} }),
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
    /// A record's own field, exact or dated.
    Record(String),
    /// An observation variable: numbers, dates or text as it holds them.
    Variable(String),
}

fn field(name: &str) -> Field {
    let name = name.split('^').next().unwrap_or(name);
    let name = name.strip_suffix(".keyword").unwrap_or(name);
    match name {
        "title" => Field::Text(Some("title")),
        "body" | "description" | "_all" | "*" | "text" | "snippet" => Field::Text(None),
        "_index" => Field::Record("source".to_owned()),
        "_id" => Field::Record("id".to_owned()),
        other if documents::is_record_field(other) => Field::Record(other.to_owned()),
        other => Field::Variable(other.to_owned()),
    }
}

/// The record fields the search syntax also names (`field:"value"`).
const SEARCH_FIELDS: &[&str] = &[
    "source",
    "system",
    "kind",
    "project",
    "subject_key",
    "subject_id",
];

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

/// A value of the DSL as a value to compare a field with: numbers stay numbers,
/// dates of a dated field become instants.
fn literal(f: &Field, v: &Value) -> Result<Literal, EsError> {
    let dated = matches!(f, Field::Record(n) if matches!(n.as_str(), "created_at" | "date" | "modified_at"));
    Ok(match v {
        _ if dated => Literal::Date(date(v)?),
        // A record's own fields hold text: `{"term": {"project": 12}}` is "12".
        _ if matches!(f, Field::Record(_)) => Literal::Text(text_value(v)?),
        Value::Number(n) => Literal::Number(
            n.as_f64()
                .ok_or_else(|| EsError::parsing(format!("[{n}] is not a number")))?,
        ),
        Value::String(s) if matches!(f, Field::Variable(_)) => match s.parse::<f64>() {
            Ok(n) if n.is_finite() => Literal::Number(n),
            _ => match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(t) => Literal::Date(t.with_timezone(&chrono::Utc)),
                Err(_) => Literal::Text(s.clone()),
            },
        },
        other => Literal::Text(text_value(other)?),
    })
}

fn field_name(f: &Field) -> String {
    match f {
        Field::Text(Some(n)) => (*n).to_owned(),
        Field::Text(None) => "description".to_owned(),
        Field::Record(n) => n.clone(),
        Field::Variable(n) => n.clone(),
    }
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

fn date(v: &Value) -> Result<chrono::DateTime<chrono::Utc>, EsError> {
    let text = text_value(v)?;
    let now = chrono::Utc::now();
    if let Some(rest) = text.strip_prefix("now") {
        let (rest, round) = match rest.split_once('/') {
            Some((r, unit)) => (r, Some(unit)),
            None => (rest, None),
        };
        let mut t = now;
        if !rest.is_empty() {
            // Split on characters, not bytes: the text is the caller's.
            let mut chars = rest.chars();
            let sign = chars.next().map(String::from).unwrap_or_default();
            let amount = chars.as_str();
            let unit_at = amount.char_indices().next_back().map_or(0, |(i, _)| i);
            let (n, unit) = amount.split_at(unit_at);
            let bad = || EsError::parsing(format!("date math [{text}] not understood"));
            if sign != "+" && sign != "-" {
                return Err(bad());
            }
            let n: i64 = n.parse().map_err(|_| bad())?;
            let n = if sign == "-" { -n } else { n };
            let months = |m: i64| -> Result<chrono::DateTime<chrono::Utc>, EsError> {
                let shifted = if m >= 0 {
                    t.checked_add_months(chrono::Months::new(m as u32))
                } else {
                    t.checked_sub_months(chrono::Months::new((-m) as u32))
                };
                shifted.ok_or_else(bad)
            };
            t = match unit {
                "y" => months(12 * n)?,
                "M" => months(n)?,
                "w" => t + chrono::Duration::weeks(n),
                "d" => t + chrono::Duration::days(n),
                "h" | "H" => t + chrono::Duration::hours(n),
                "m" => t + chrono::Duration::minutes(n),
                "s" => t + chrono::Duration::seconds(n),
                _ => return Err(bad()),
            };
        }
        if let Some(unit) = round {
            use chrono::{Datelike, Timelike};
            let d = t.date_naive();
            let day = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(|x| x.and_utc());
            let rounded = match unit {
                "y" => d.with_month(1).and_then(|d| d.with_day(1)).and_then(day),
                "M" => d.with_day(1).and_then(day),
                "w" => day(d - chrono::Duration::days(d.weekday().num_days_from_monday().into())),
                "d" => day(d),
                "h" | "H" => t
                    .with_minute(0)
                    .and_then(|t| t.with_second(0))
                    .and_then(|t| t.with_nanosecond(0)),
                "m" => t.with_second(0).and_then(|t| t.with_nanosecond(0)),
                "s" => t.with_nanosecond(0),
                _ => None,
            };
            t = rounded
                .ok_or_else(|| EsError::parsing(format!("date math [{text}] not understood")))?;
        }
        return Ok(t);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc());
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

/// Full text on one field (the title, or the whole record), or `None` when the field
/// is not a text field.
fn text_on(prefix: Option<&str>, q: String) -> Filter {
    Filter::Text(match prefix {
        Some(p) => format!("{p}:{q}"),
        None => q,
    })
}

fn all_of(v: Vec<Filter>) -> Filter {
    v.into_iter().fold(Filter::All, Filter::and)
}

fn any_of(mut v: Vec<Filter>) -> Filter {
    v.retain(|f| *f != Filter::Nothing);
    if v.contains(&Filter::All) {
        return Filter::All;
    }
    match v.len() {
        0 => Filter::Nothing,
        1 => v.remove(0),
        _ => Filter::Or(v),
    }
}

/// How many words of `n` a `minimum_should_match` asks for: a count, a negative
/// count (all but), a percentage, or a negative percentage.
fn minimum(spec: &Value, n: usize) -> Result<usize, EsError> {
    let text = text_value(spec)?;
    let t = text.trim();
    let bad = || EsError::parsing(format!("minimum_should_match [{t}] not understood"));
    let at_least = if let Some(p) = t.strip_suffix('%') {
        let p: i64 = p.trim().parse().map_err(|_| bad())?;
        let k = (n as i64 * p.abs() / 100) as usize;
        if p < 0 { n.saturating_sub(k) } else { k }
    } else {
        let k: i64 = t.parse().map_err(|_| bad())?;
        if k < 0 {
            n.saturating_sub(k.unsigned_abs() as usize)
        } else {
            k as usize
        }
    };
    Ok(at_least.min(n))
}

/// Words of a text query, each a hit of `leaf`, combined as `operator` and
/// `minimum_should_match` ask.
fn combine_words(ws: Vec<Filter>, operator: &str, msm: Option<&Value>) -> Result<Filter, EsError> {
    if ws.is_empty() {
        return Ok(Filter::Nothing);
    }
    if operator == "and" {
        return Ok(all_of(ws));
    }
    let n = match msm {
        Some(m) => minimum(m, ws.len())?.max(1),
        None => 1,
    };
    Ok(match n {
        1 => any_of(ws),
        n if n >= ws.len() => all_of(ws),
        n => Filter::AtLeast(n, ws),
    })
}

/// A word as the search syntax reads it with fuzziness. crossdex's words are typo
/// tolerant already (one edit from five letters, two from nine, close to `AUTO`); a
/// fuzziness of 0 asks for the exact word, which a quoted word is.
fn fuzzy(word: &str, fuzziness: Option<&Value>) -> Result<String, EsError> {
    let exact = match fuzziness {
        None => false,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("auto") || s.starts_with("AUTO:") => false,
        Some(Value::String(s)) => {
            s.trim()
                .parse::<u32>()
                .map_err(|_| EsError::parsing(format!("fuzziness [{s}] not understood")))?
                == 0
        }
        Some(other) => {
            return Err(EsError::parsing(format!(
                "fuzziness [{other}] not understood"
            )));
        }
    };
    Ok(if exact { quoted(word) } else { word.to_owned() })
}

/// Translates one query of the DSL into a filter.
fn translate(v: &Value) -> Result<Filter, EsError> {
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
    let object = |spec: &Value| -> Option<Map<String, Value>> { spec.as_object().cloned() };
    match kind.as_str() {
        "match_all" => Ok(Filter::All),
        "match_none" => Ok(Filter::Nothing),
        "match" | "match_bool_prefix" => {
            let (f, spec) = single(spec, kind)?;
            let o = object(&spec).unwrap_or_default();
            let text = match &spec {
                Value::Object(o) => o
                    .get("query")
                    .map(text_value)
                    .transpose()?
                    .unwrap_or_default(),
                other => text_value(other)?,
            };
            let operator = o
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("or")
                .to_ascii_lowercase();
            match field(&f) {
                Field::Text(prefix) => {
                    let mut ws = words(&text);
                    let last = ws.len().saturating_sub(1);
                    let mut leaves = Vec::new();
                    for (i, w) in ws.drain(..).enumerate() {
                        let w = if kind == "match_bool_prefix" && i == last {
                            format!("{w}*")
                        } else {
                            fuzzy(&w, o.get("fuzziness"))?
                        };
                        leaves.push(text_on(prefix, w));
                    }
                    combine_words(leaves, &operator, o.get("minimum_should_match"))
                }
                other => {
                    let value = Value::String(text);
                    Ok(Filter::Equals(field_name(&other), literal(&other, &value)?))
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
            match field(&f) {
                Field::Text(prefix) => {
                    let ws = words(&text);
                    if kind == "match_phrase_prefix" {
                        // The last word as a prefix, the others as a phrase before it.
                        let (last, head) = ws
                            .split_last()
                            .ok_or_else(|| EsError::parsing("empty phrase"))?;
                        let mut parts = Vec::new();
                        if !head.is_empty() {
                            parts.push(text_on(prefix, quoted(&head.join(" "))));
                        }
                        parts.push(text_on(prefix, format!("{last}*")));
                        return Ok(all_of(parts));
                    }
                    if ws.is_empty() {
                        return Ok(Filter::Nothing);
                    }
                    Ok(text_on(prefix, quoted(&ws.join(" "))))
                }
                other => Ok(Filter::Equals(
                    field_name(&other),
                    literal(&other, &Value::String(text))?,
                )),
            }
        }
        "multi_match" => {
            let o = object(spec).ok_or_else(|| EsError::parsing("[multi_match] is an object"))?;
            let text = o
                .get("query")
                .map(text_value)
                .transpose()?
                .unwrap_or_default();
            let kind = o
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("best_fields");
            let fields: Vec<String> = match o.get("fields") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => vec!["*".to_owned()],
            };
            let mut per_field = Vec::new();
            for f in &fields {
                let mut leaf_spec = Map::new();
                leaf_spec.insert("query".into(), json!(text));
                for k in ["operator", "fuzziness", "minimum_should_match"] {
                    if let Some(v) = o.get(k) {
                        leaf_spec.insert(k.into(), v.clone());
                    }
                }
                let leaf = match kind {
                    "phrase" => json!({"match_phrase": {f: text}}),
                    "phrase_prefix" => json!({"match_phrase_prefix": {f: text}}),
                    "bool_prefix" => json!({"match_bool_prefix": {f: leaf_spec}}),
                    "best_fields" | "most_fields" | "cross_fields" => {
                        json!({"match": {f: leaf_spec}})
                    }
                    other => {
                        return Err(EsError::unsupported(format!("multi_match type [{other}]")));
                    }
                };
                per_field.push(translate(&leaf)?);
            }
            per_field.dedup();
            Ok(any_of(per_field))
        }
        "query_string" | "simple_query_string" => {
            let o =
                object(spec).ok_or_else(|| EsError::parsing(format!("[{kind}] is an object")))?;
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
                Filter::All
            } else {
                Filter::Text(text)
            })
        }
        "term" | "prefix" | "wildcard" | "regexp" | "fuzzy" => {
            let (f, spec) = single(spec, kind)?;
            let o = object(&spec).unwrap_or_default();
            let value = match &spec {
                Value::Object(o) => o
                    .get("value")
                    .or_else(|| o.get("wildcard"))
                    .cloned()
                    .ok_or_else(|| EsError::parsing(format!("[{kind}] needs a value")))?,
                other => other.clone(),
            };
            let text = text_value(&value)?;
            let fld = field(&f);
            match (kind.as_str(), fld) {
                ("term", Field::Text(prefix)) => Ok(text_on(prefix, text.to_lowercase())),
                ("term", other) => Ok(Filter::Equals(field_name(&other), literal(&other, &value)?)),
                ("fuzzy", Field::Text(prefix)) => {
                    let fz = o.get("fuzziness").cloned().unwrap_or(json!("AUTO"));
                    Ok(text_on(prefix, fuzzy(&text.to_lowercase(), Some(&fz))?))
                }
                ("prefix" | "wildcard", Field::Text(prefix))
                    if !text.contains(['?', ' ']) && !text.trim_end_matches('*').contains('*') =>
                {
                    let stem = text.trim_end_matches('*');
                    if stem.is_empty() {
                        return Ok(Filter::All);
                    }
                    Ok(text_on(prefix, format!("{}*", stem.to_lowercase())))
                }
                ("prefix", other) => Ok(Filter::Pattern(
                    field_name(&other),
                    format!("{}.*", regex_escape(&text)),
                )),
                ("wildcard", other) => {
                    let mut p = String::new();
                    for c in text.chars() {
                        match c {
                            '*' => p.push_str(".*"),
                            '?' => p.push('.'),
                            c => p.push_str(&regex_escape(&c.to_string())),
                        }
                    }
                    let name = match other {
                        Field::Text(Some(n)) => n.to_owned(),
                        Field::Text(None) => "description".to_owned(),
                        o => field_name(&o),
                    };
                    Ok(Filter::Pattern(name, p))
                }
                ("regexp", other) => {
                    let name = match other {
                        Field::Text(Some(n)) => n.to_owned(),
                        Field::Text(None) => {
                            return Err(EsError::unsupported(
                                "[regexp] on the whole text (name a field: title, or a keyword field)",
                            ));
                        }
                        o => field_name(&o),
                    };
                    Ok(Filter::Pattern(name, text))
                }
                (k, other) => Err(EsError::unsupported(format!(
                    "[{k}] on field [{}]",
                    field_name(&other)
                ))),
            }
        }
        "terms" => {
            let o = object(spec).ok_or_else(|| EsError::parsing("[terms] is an object"))?;
            let (f, values) = o
                .iter()
                .find(|(k, _)| k.as_str() != "boost")
                .ok_or_else(|| EsError::parsing("[terms] needs a field"))?;
            let values = values
                .as_array()
                .ok_or_else(|| EsError::parsing("[terms] takes an array of values"))?;
            let fld = field(f);
            if let Field::Text(prefix) = fld {
                return Ok(any_of(
                    values
                        .iter()
                        .map(|v| Ok(text_on(prefix, text_value(v)?.to_lowercase())))
                        .collect::<Result<_, EsError>>()?,
                ));
            }
            if f == "_id" {
                return Ok(Filter::Ids(
                    values.iter().map(text_value).collect::<Result<_, _>>()?,
                ));
            }
            Ok(any_of(
                values
                    .iter()
                    .map(|v| Ok(Filter::Equals(field_name(&fld), literal(&fld, v)?)))
                    .collect::<Result<_, EsError>>()?,
            ))
        }
        "ids" => {
            let values = spec
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| EsError::parsing("[ids] takes [values]"))?;
            Ok(Filter::Ids(
                values.iter().map(text_value).collect::<Result<_, _>>()?,
            ))
        }
        "exists" => {
            let f = spec
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| EsError::parsing("[exists] takes a [field]"))?;
            Ok(match field(f) {
                Field::Text(Some(n)) => Filter::Exists(n.to_owned()),
                Field::Text(None) => Filter::All,
                other => Filter::Exists(field_name(&other)),
            })
        }
        "range" => {
            let (f, spec) = single(spec, kind)?;
            let fld = field(&f);
            let name = match &fld {
                Field::Text(Some(n)) => (*n).to_owned(),
                Field::Text(None) => {
                    return Err(EsError::unsupported("[range] on the whole text"));
                }
                other => field_name(other),
            };
            let o = spec
                .as_object()
                .ok_or_else(|| EsError::parsing("[range] is an object"))?;
            let format = o
                .get("format")
                .and_then(Value::as_str)
                .map(java_format)
                .transpose()?;
            let value = |v: &Value| -> Result<Literal, EsError> {
                if let (Some(fmt), Value::String(s)) = (&format, v) {
                    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
                        return Ok(Literal::Date(t.and_utc()));
                    }
                    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, fmt)
                        && let Some(t) = d.and_hms_opt(0, 0, 0)
                    {
                        return Ok(Literal::Date(t.and_utc()));
                    }
                }
                match (&fld, v) {
                    (Field::Variable(_), Value::String(s)) if s.starts_with("now") => {
                        Ok(Literal::Date(date(v)?))
                    }
                    _ => literal(&fld, v),
                }
            };
            let (mut lower, mut upper) = (None, None);
            for (op, v) in o {
                if v.is_null() {
                    continue;
                }
                match op.as_str() {
                    "gte" | "from" => lower = Some((value(v)?, true)),
                    "gt" => lower = Some((value(v)?, false)),
                    "lte" | "to" => upper = Some((value(v)?, true)),
                    "lt" => upper = Some((value(v)?, false)),
                    "format" | "time_zone" | "boost" | "relation" | "include_lower"
                    | "include_upper" => {}
                    other => return Err(EsError::parsing(format!("[range] has no [{other}]"))),
                }
            }
            Ok(Filter::Range {
                field: name,
                lower,
                upper,
            })
        }
        "bool" => {
            let o = object(spec).ok_or_else(|| EsError::parsing("[bool] is an object"))?;
            let list = |k: &str| -> Vec<Value> {
                match o.get(k) {
                    Some(Value::Array(a)) => a.clone(),
                    Some(v @ Value::Object(_)) => vec![v.clone()],
                    _ => Vec::new(),
                }
            };
            let mut must = Vec::new();
            for q in list("must").iter().chain(list("filter").iter()) {
                must.push(translate(q)?);
            }
            let should = list("should")
                .iter()
                .map(translate)
                .collect::<Result<Vec<_>, _>>()?;
            for q in list("must_not") {
                must.push(Filter::Not(Box::new(translate(&q)?)));
            }
            let n = match o.get("minimum_should_match") {
                Some(m) => minimum(m, should.len())?,
                None if must.is_empty() => 1,
                None => 0,
            };
            if !should.is_empty() {
                match n {
                    0 => {}
                    1 => must.push(any_of(should)),
                    n if n >= should.len() => must.extend(should),
                    n => must.push(Filter::AtLeast(n, should)),
                }
            }
            Ok(all_of(must))
        }
        "constant_score" => {
            let inner = spec
                .get("filter")
                .ok_or_else(|| EsError::parsing("[constant_score] takes a [filter]"))?;
            translate(inner)
        }
        other => Err(EsError::unsupported(format!("query [{other}]"))),
    }
}

/// `text` as a regular expression matching it literally.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Date bounds that narrow the whole query, as the search's date filter takes them:
/// from (inclusive) and to (exclusive), whole seconds.
#[derive(Default, Clone, Copy)]
struct Dates {
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
}

/// `filter` in crossdex's search syntax with date bounds, when it can be said there
/// (the fast path, with facets and highlights); `None` when it needs the tables.
fn fast(f: &Filter, dates: &mut Dates, conjunctive: bool) -> Option<Q> {
    Some(match f {
        Filter::All => Q::All,
        Filter::Nothing => Q::None,
        Filter::Text(t) => Q::Text(t.clone()),
        Filter::Equals(name, Literal::Text(v)) if SEARCH_FIELDS.contains(&name.as_str()) => {
            Q::Text(format!("{name}:{}", quoted(v)))
        }
        Filter::Range {
            field,
            lower,
            upper,
        } if conjunctive && matches!(field.as_str(), "created_at" | "date") => {
            let second = chrono::Duration::seconds(1);
            let whole = |t: &chrono::DateTime<chrono::Utc>| t.timestamp_subsec_nanos() == 0;
            if let Some((Literal::Date(t), inclusive)) = lower {
                if !whole(t) {
                    return None;
                }
                let t = if *inclusive { *t } else { *t + second };
                dates.from = Some(dates.from.map_or(t, |f| f.max(t)));
            } else if lower.is_some() {
                return None;
            }
            if let Some((Literal::Date(t), inclusive)) = upper {
                if !whole(t) {
                    return None;
                }
                let t = if *inclusive { *t + second } else { *t };
                dates.to = Some(dates.to.map_or(t, |x| x.min(t)));
            } else if upper.is_some() {
                return None;
            }
            Q::All
        }
        Filter::And(v) => and(v
            .iter()
            .map(|x| fast(x, dates, conjunctive))
            .collect::<Option<_>>()?),
        Filter::Or(v) => or(v
            .iter()
            .map(|x| fast(x, dates, false))
            .collect::<Option<_>>()?),
        Filter::AtLeast(1, v) => or(v
            .iter()
            .map(|x| fast(x, dates, false))
            .collect::<Option<_>>()?),
        Filter::Not(x) => not(fast(x, dates, false)?),
        _ => return None,
    })
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
    /// The fields the highlight asks for (`body` when it names none), with their
    /// fragment sizes.
    #[serde(default)]
    highlight_fields: Vec<(String, Option<usize>)>,
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

fn with_sources(f: Filter, sources: &Option<BTreeSet<String>>) -> Filter {
    match sources {
        None => f,
        Some(set) => f.and(any_of(
            set.iter()
                .map(|s| Filter::Equals("source".into(), Literal::Text(s.clone())))
                .collect(),
        )),
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
    /// A plan with nothing left to read: the scroll after the last page.
    fn done() -> Plan {
        Plan {
            sources: None,
            query: "*".to_owned(),
            nothing: true,
            from: None,
            to: None,
            size: 0,
            tags: None,
            highlight: false,
            highlight_fields: Vec::new(),
            source_fields: SourceFilter::default(),
        }
    }

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

/// A search of `filter` for facets: its count and, when the search syntax can say it,
/// its facets of `size` buckets.
async fn counted(
    service: &Service,
    filter: &Filter,
    size: Option<usize>,
) -> Result<(u64, Option<Facets>), EsError> {
    let mut dates = Dates::default();
    match (size, fast(filter, &mut dates, true)) {
        (_, Some(Q::None)) => Ok((0, Some(Facets::default()))),
        (Some(size), Some(q)) => {
            let mut r = SearchRequest::new(q_text(&q).0, 0);
            r.facets = Some(size);
            r.filters = SearchFilters {
                from: dates.from,
                to: dates.to,
                ..SearchFilters::default()
            };
            let r = service.search(&r, &QueryControl::default()).await?;
            Ok((r.total as u64, r.facets))
        }
        _ => Ok((
            service
                .count_documents(filter, &QueryControl::default())
                .await?,
            None,
        )),
    }
}

/// The sort keys of a body: relevance and index order need none.
fn sort_keys(sort: Option<&Value>) -> Result<Vec<SortKey>, EsError> {
    let items: Vec<Value> = match sort {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => vec![v.clone()],
    };
    let mut keys = Vec::new();
    for item in items {
        let (name, spec) = match &item {
            Value::String(s) => (s.clone(), Value::Null),
            Value::Object(o) if o.len() == 1 => {
                let (k, v) = o.iter().next().expect("one entry");
                (k.clone(), v.clone())
            }
            other => {
                return Err(EsError::parsing(format!(
                    "[sort] entry {other} not understood"
                )));
            }
        };
        let (order, missing) = match &spec {
            Value::String(o) => (Some(o.clone()), None),
            Value::Object(o) => {
                if o.keys().any(|k| {
                    !matches!(
                        k.as_str(),
                        "order" | "missing" | "unmapped_type" | "mode" | "format"
                    )
                }) {
                    return Err(EsError::unsupported(format!(
                        "[sort] options of [{name}] beyond order and missing"
                    )));
                }
                (
                    o.get("order").and_then(Value::as_str).map(str::to_owned),
                    o.get("missing").and_then(Value::as_str).map(str::to_owned),
                )
            }
            _ => (None, None),
        };
        if name == "_doc" || name == "_shard_doc" {
            continue;
        }
        let descending = match order.as_deref() {
            Some("desc") => true,
            Some("asc") => false,
            None => name == "_score",
            Some(o) => {
                return Err(EsError::parsing(format!(
                    "[sort] order [{o}] is asc or desc"
                )));
            }
        };
        let missing_first = match missing.as_deref() {
            None | Some("_last") => false,
            Some("_first") => true,
            Some(m) => {
                return Err(EsError::unsupported(format!(
                    "[sort] missing value [{m}] (_first or _last)"
                )));
            }
        };
        let field_name = match name.as_str() {
            "_score" => None,
            other => Some(match field(other) {
                Field::Text(Some(n)) => n.to_owned(),
                Field::Text(None) => {
                    return Err(EsError::unsupported(format!(
                        "[sort] by the whole text [{other}]"
                    )));
                }
                f => self::field_name(&f),
            }),
        };
        keys.push(SortKey {
            field: field_name,
            descending,
            missing_first,
        });
    }
    // Relevance, best first, is the fast path's own order.
    if keys.len() == 1 && keys[0].field.is_none() && keys[0].descending {
        keys.clear();
    }
    Ok(keys)
}

/// What a highlight asks for: its fields (each with its fragment size, if any) and
/// its tags.
struct Marks {
    fields: Vec<(String, Option<usize>)>,
    pre: String,
    post: String,
}

/// A fragment cut to about `size` visible characters around its first marked word, on
/// word boundaries, never inside a mark.
fn cut_fragment(fragment: &str, pre: &str, post: &str, size: usize) -> String {
    if pre.is_empty() || post.is_empty() {
        return fragment.to_owned();
    }
    // Pieces of plain text and marked words, in order.
    let mut pieces: Vec<(bool, String)> = Vec::new();
    let mut rest = fragment;
    while let Some(at) = rest.find(pre) {
        let (plain, tail) = rest.split_at(at);
        let tail = &tail[pre.len()..];
        let end = tail.find(post).unwrap_or(tail.len());
        pieces.extend(plain.split_inclusive(' ').map(|w| (false, w.to_owned())));
        pieces.push((true, tail[..end].to_owned()));
        rest = tail.get(end + post.len()..).unwrap_or("");
    }
    pieces.extend(rest.split_inclusive(' ').map(|w| (false, w.to_owned())));
    let visible: usize = pieces.iter().map(|(_, t)| t.chars().count()).sum();
    if visible <= size.max(1) {
        return fragment.to_owned();
    }
    let first = pieces.iter().position(|(m, _)| *m).unwrap_or(0);
    // A quarter of the room before the first mark, the rest after.
    let mut start = first;
    let mut before = 0;
    while start > 0 && before + pieces[start - 1].1.chars().count() <= size / 4 {
        start -= 1;
        before += pieces[start].1.chars().count();
    }
    let mut out = String::new();
    let mut used = 0;
    for (i, (marked, text)) in pieces.iter().enumerate().skip(start) {
        let n = text.chars().count();
        if used + n > size && i > first {
            break;
        }
        used += n;
        if *marked {
            out.push_str(pre);
            out.push_str(text);
            out.push_str(post);
        } else {
            out.push_str(text);
        }
    }
    out.trim().to_owned()
}

impl Marks {
    /// The words a fragment marks, lowercased.
    fn words(&self, fragment: &str) -> BTreeSet<String> {
        fragment
            .split(self.pre.as_str())
            .skip(1)
            .filter_map(|rest| rest.split(self.post.as_str()).next())
            .map(str::to_lowercase)
            .collect()
    }
}

/// The fields of a body's `highlight` (an object, or a list of one-field objects),
/// the whole text when it names none, each with its `fragment_size` (the field's own,
/// else the highlight's; none when `number_of_fragments` is 0: the whole fragment).
fn highlight_fields(highlight: Option<&Map<String, Value>>) -> Vec<(String, Option<usize>)> {
    let size_of = |spec: Option<&Value>| -> Option<Option<usize>> {
        let spec = spec?;
        if spec.get("number_of_fragments").and_then(Value::as_u64) == Some(0) {
            return Some(None);
        }
        spec.get("fragment_size")
            .and_then(Value::as_u64)
            .map(|n| Some(n as usize))
    };
    let overall = size_of(highlight.map(|h| Value::Object(h.clone())).as_ref()).flatten();
    let mut fields: Vec<(String, Value)> = match highlight.and_then(|h| h.get("fields")) {
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect(),
        _ => Vec::new(),
    };
    if fields.is_empty() {
        fields.push(("body".to_owned(), Value::Null));
    }
    fields
        .into_iter()
        .map(|(name, spec)| {
            let size = size_of(Some(&spec)).unwrap_or(overall);
            (name, size)
        })
        .collect()
}

/// `text` with the words of `marked` (lowercase) between the tags; `None` when none
/// of them is there.
fn mark_words(text: &str, marked: &BTreeSet<String>, pre: &str, post: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut word = String::new();
    let mut found = false;
    let mut flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() && marked.contains(&word.to_lowercase()) {
            out.push_str(pre);
            out.push_str(word);
            out.push_str(post);
            found = true;
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    found.then_some(out)
}

/// A hit as the answer shows it, from either path.
struct Hit {
    id: String,
    source: String,
    score: f64,
    summary: Value,
    snippet: Option<String>,
    sort: Option<Vec<Value>>,
}

/// The record fields a hit's summary holds: `_source` asking for no others needs no
/// record view (`body`, the whole text, is no field of a record: search-UI libraries
/// ask for it with the fields they highlight).
const SUMMARY: &[&str] = &[
    "id",
    "source",
    "system",
    "kind",
    "subject_id",
    "title",
    "body",
];

/// The hits as Elasticsearch writes them, `_source` the whole record view where the
/// caller may read records and asks for more than the summary.
async fn hits_out(
    service: &Service,
    hits: Vec<Hit>,
    f: &SourceFilter,
    marks: Option<&Marks>,
) -> Result<Vec<Value>, EsError> {
    let wants_more = !f.off
        && (f.includes.is_empty() || f.includes.iter().any(|p| !SUMMARY.iter().any(|k| p == k)));
    let views = if wants_more && service.require(crossdex_service::Action::Subjects).is_ok() {
        let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
        let views = service
            .document_sources(&ids, &QueryControl::default())
            .await?;
        views
            .into_iter()
            .map(|v| (v.record.id.clone(), document(v)))
            .collect()
    } else {
        std::collections::HashMap::new()
    };
    Ok(hits
        .into_iter()
        .map(|h| {
            let mut hit = json!({"_index": h.source, "_id": h.id, "_score": h.score});
            if !f.off {
                let full = views
                    .get(&h.id)
                    .cloned()
                    .unwrap_or_else(|| h.summary.clone());
                hit["_source"] = filter_source(full, f);
            }
            if let Some(m) = marks {
                let snippet = h.snippet.as_deref().unwrap_or_default();
                let title = h.summary["title"].as_str().unwrap_or_default();
                let fragments: Map<String, Value> = m
                    .fields
                    .iter()
                    .filter_map(|(field, size)| {
                        let fragment = if field.trim_end_matches(".keyword") == "title" {
                            mark_words(title, &m.words(snippet), &m.pre, &m.post)?
                        } else if snippet.is_empty() {
                            return None;
                        } else {
                            snippet.to_owned()
                        };
                        let fragment = match size {
                            Some(n) => cut_fragment(&fragment, &m.pre, &m.post, *n),
                            None => fragment,
                        };
                        Some((field.clone(), json!([fragment])))
                    })
                    .collect();
                if !fragments.is_empty() {
                    hit["highlight"] = Value::Object(fragments);
                }
            }
            if let Some(sort) = h.sort {
                hit["sort"] = Value::Array(sort);
            }
            hit
        })
        .collect())
}

/// A record view as a document: the record's fields, its deep link and links, and its
/// observations as typed fields (numbers, dates, else text; several values a list).
fn document(v: crossdex_service::RecordView) -> Value {
    let mut doc = match serde_json::to_value(&v.record) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    doc.insert("deep_link".into(), json!(v.deep_link));
    doc.insert(
        "links".into(),
        serde_json::to_value(&v.links).unwrap_or(Value::Null),
    );
    let mut fields: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for o in &v.observations {
        let value = match (&o.value_num, &o.value_date, &o.value_text) {
            (Some(n), _, _) => json!(n),
            (None, Some(d), _) => json!(d),
            (None, None, Some(t)) => json!(t),
            _ => continue,
        };
        fields
            .entry(documents::field_name(&o.variable))
            .or_default()
            .push(value);
    }
    for (k, mut values) in fields {
        doc.insert(
            k,
            if values.len() == 1 {
                values.remove(0)
            } else {
                Value::Array(values)
            },
        );
    }
    Value::Object(doc)
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
    "search_after",
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

/// Runs one search; the answer carries `_next`, the scroll state of the next page.
async fn run_search(
    service: &Service,
    index: &str,
    body: &Map<String, Value>,
    params: &SearchParams,
) -> Result<Value, EsError> {
    let started = Instant::now();
    let sources = resolve(service, index).await?;
    let query = match (body.get("query"), &params.q) {
        (Some(q), _) => translate(q)?,
        (None, Some(q)) => translate(&json!({"query_string": {"query": q}}))?,
        (None, None) => Filter::All,
    };
    let base = with_sources(query, &sources);
    let post = body.get("post_filter").map(translate).transpose()?;
    let hits_filter = match &post {
        Some(p) => base.clone().and(p.clone()),
        None => base.clone(),
    };
    let sort = sort_keys(body.get("sort"))?;
    let after = match body.get("search_after") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.clone()),
        Some(other) => {
            return Err(EsError::parsing(format!(
                "[search_after] is an array, found {other}"
            )));
        }
    };
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
    let highlighted = highlight_fields(highlight);
    let source_fields = source_filter(body.get("_source").or(params.source_filter().as_ref()));
    let aggs = body
        .get("aggs")
        .or_else(|| body.get("aggregations"))
        .and_then(Value::as_object);
    let facet_size = aggs.map(facet_size).unwrap_or(10);
    let control = match body.get("timeout").and_then(Value::as_str) {
        Some(t) => QueryControl::with_timeout(duration(t)?),
        None => QueryControl::default(),
    };
    let mut dates = Dates::default();
    let fast_query = if sort.is_empty() && after.is_none() {
        fast(&hits_filter, &mut dates, true)
    } else {
        None
    };
    let (hits, total, max_score, next, mut facets) = match fast_query {
        Some(q) => {
            let (text, nothing) = q_text(&q);
            let plan = Plan {
                sources: sources.clone(),
                query: text,
                nothing,
                from: dates.from,
                to: dates.to,
                size,
                tags: tags.clone(),
                highlight: highlight.is_some(),
                highlight_fields: highlighted.clone(),
                source_fields: source_fields.clone(),
            };
            // Aggregations see the query; hits see the query and the post filter.
            let with_facets = aggs.is_some() && post.is_none();
            let result = if plan.nothing {
                None
            } else {
                Some(
                    service
                        .search(
                            &plan.request(size, from, with_facets.then_some(facet_size)),
                            &control,
                        )
                        .await?,
                )
            };
            let next = json!(encode_scroll(
                &plan,
                result
                    .as_ref()
                    .and_then(|r| r.next_cursor.as_deref())
                    .unwrap_or("")
            ));
            let facets = if with_facets {
                Some(
                    result
                        .as_ref()
                        .and_then(|r| r.facets.clone())
                        .unwrap_or_default(),
                )
            } else {
                None
            };
            let (hits, total, max) = summary_hits(result.as_ref());
            (hits, total, max, next, facets)
        }
        None => {
            let page = service
                .documents(
                    &DocumentQuery {
                        filter: hits_filter.clone(),
                        sort: sort.clone(),
                        offset: from,
                        limit: size,
                        after,
                        tags: tags.clone(),
                    },
                    &control,
                )
                .await?;
            let sorted = !sort.is_empty();
            let max = page
                .documents
                .iter()
                .map(|d| d.score)
                .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
            let end = from + page.documents.len();
            let next = if (end as u64) < page.total && !page.documents.is_empty() {
                let mut rest = body.clone();
                rest.remove("aggs");
                rest.remove("aggregations");
                rest.insert("from".into(), json!(end));
                json!(encode_body_scroll(index, &rest))
            } else {
                json!(encode_scroll(&Plan::done(), ""))
            };
            let hits = page
                .documents
                .into_iter()
                .map(|d| Hit {
                    summary: json!({
                        "id": d.id, "source": d.source, "system": d.system, "kind": d.kind,
                        "subject_id": d.subject_id, "title": d.title,
                    }),
                    id: d.id,
                    source: d.source,
                    score: d.score,
                    snippet: d.snippet,
                    sort: sorted.then_some(d.sort),
                })
                .collect();
            (hits, page.total, max, next, None)
        }
    };
    let marks = tags.as_ref().map(|t| Marks {
        fields: highlighted.clone(),
        pre: t.0.clone(),
        post: t.1.clone(),
    });
    let hits = hits_out(service, hits, &source_fields, marks.as_ref()).await?;
    let mut out = json!({
        "took": 0,
        "timed_out": false,
        "_shards": shards(),
        "hits": {
            "total": {"value": total, "relation": "eq"},
            "max_score": max_score,
            "hits": hits,
        },
    });
    if let Some(aggs) = aggs {
        if post.is_some() || facets.is_none() {
            // The aggregations' own search, without the post filter.
            facets = match fast(&base, &mut Dates::default(), true) {
                Some(_) => counted(service, &base, Some(facet_size)).await?.1,
                None => None,
            };
        }
        out["aggregations"] = aggregations(service, &base, aggs, facets.as_ref()).await?;
    }
    out["took"] = json!(started.elapsed().as_millis() as u64);
    out["_next"] = next;
    Ok(out)
}

/// The fast path's hits, their total and the best score.
fn summary_hits(result: Option<&SearchResult>) -> (Vec<Hit>, u64, Option<f64>) {
    let Some(r) = result else {
        return (Vec::new(), 0, None);
    };
    let hits = r
        .hits
        .iter()
        .map(|h| Hit {
            id: h.id.clone(),
            source: h.source.clone(),
            score: f64::from(h.score),
            summary: json!({
                "id": h.id, "source": h.source, "system": h.system, "kind": h.kind,
                "subject_id": h.subject_id, "title": h.title,
            }),
            snippet: Some(h.snippet.clone()),
            sort: None,
        })
        .collect();
    (
        hits,
        r.total as u64,
        r.hits.first().map(|h| f64::from(h.score)),
    )
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

/// Whether an aggregation can be read off the search's facets.
fn from_facets(kind: &str, body: &Value, subs: Option<&Map<String, Value>>) -> bool {
    let f = body
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_end_matches(".keyword");
    let complete = matches!(f, "source" | "_index" | "system" | "kind");
    match kind {
        "terms" => {
            let listed_ok = ["include", "exclude"].iter().all(|k| match body.get(*k) {
                None | Some(Value::Array(_)) => true,
                Some(Value::String(s)) => s
                    .strip_suffix(".*")
                    .is_some_and(|p| !p.contains(['.', '*', '[', '(', '|', '+', '?', '\\'])),
                _ => false,
            });
            subs.is_none()
                && (complete || matches!(f, "project" | "subject_id"))
                && listed_ok
                && body.as_object().is_some_and(|o| {
                    o.keys().all(|k| {
                        matches!(
                            k.as_str(),
                            "field" | "size" | "min_doc_count" | "include" | "exclude" | "order"
                        )
                    })
                })
                && body.get("order").is_none_or(|o| {
                    o.as_object().is_some_and(|o| {
                        o.keys()
                            .all(|k| matches!(k.as_str(), "_key" | "_term" | "_count"))
                    })
                })
        }
        "date_histogram" => {
            let interval = body
                .get("calendar_interval")
                .or_else(|| body.get("interval"))
                .and_then(Value::as_str)
                .unwrap_or("");
            subs.is_none()
                && matches!(f, "created_at" | "date")
                && matches!(interval, "month" | "1M")
                && body.get("time_zone").is_none()
                && body.get("offset").is_none()
        }
        "value_count" | "cardinality" => subs.is_none() && complete,
        _ => false,
    }
}

/// A terms aggregation's `include` or `exclude`: a list of values, or a regular
/// expression matching whole values.
/// Whether a bucket key is listed.
type Listed = Box<dyn Fn(&str) -> bool + Send + Sync>;

fn listing(v: Option<&Value>) -> Result<Option<Listed>, EsError> {
    Ok(match v {
        None => None,
        Some(Value::Array(a)) => {
            let set: BTreeSet<String> = a.iter().filter_map(|x| text_value(x).ok()).collect();
            Some(Box::new(move |k: &str| set.contains(k)))
        }
        Some(Value::String(p)) => {
            let re = regex::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| EsError::parsing(format!("[include]/[exclude] pattern [{p}]: {e}")))?;
            Some(Box::new(move |k: &str| re.is_match(k)))
        }
        Some(other) => {
            return Err(EsError::unsupported(format!(
                "[include]/[exclude] of the form {other}"
            )));
        }
    })
}

/// A bucket key as text, for include and exclude and for ordering.
fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The buckets of a terms aggregation, from the facets or the tables, after its
/// include, exclude, minimum count and order: `(key, count)`, and the count of the
/// documents in the buckets left out.
fn terms_buckets(
    mut all: Vec<(Value, u64)>,
    body: &Value,
) -> Result<(Vec<(Value, u64)>, u64), EsError> {
    let size = body.get("size").and_then(Value::as_u64).unwrap_or(10) as usize;
    let min = body
        .get("min_doc_count")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let include = listing(body.get("include"))?;
    let exclude = listing(body.get("exclude"))?;
    all.retain(|(k, n)| {
        let t = key_text(k);
        *n >= min
            && include.as_ref().is_none_or(|f| f(&t))
            && !exclude.as_ref().is_some_and(|f| f(&t))
    });
    // Most frequent first, ties by key, unless asked otherwise.
    let cmp_key = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => key_text(a).cmp(&key_text(b)),
    };
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| cmp_key(&a.0, &b.0)));
    if let Some(order) = body.get("order") {
        let entries: Vec<(String, bool)> = match order {
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str() == Some("desc")))
                .collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str() == Some("desc")))
                })
                .collect(),
            _ => return Err(EsError::parsing("[order] is an object")),
        };
        for (key, _) in &entries {
            if !matches!(key.as_str(), "_key" | "_term" | "_count") {
                return Err(EsError::unsupported(format!("a terms order by [{key}]")));
            }
        }
        all.sort_by(|a, b| {
            for (key, desc) in &entries {
                let o = if key == "_count" {
                    a.1.cmp(&b.1)
                } else {
                    cmp_key(&a.0, &b.0)
                };
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            cmp_key(&a.0, &b.0)
        });
    }
    let other = all.iter().skip(size).map(|(_, n)| n).sum();
    all.truncate(size);
    Ok((all, other))
}

/// The field an aggregation reads, by the name documents give it.
fn agg_field(body: &Value) -> Result<String, EsError> {
    let f = body
        .get("field")
        .and_then(Value::as_str)
        .ok_or_else(|| EsError::parsing("an aggregation of this type needs a [field]"))?;
    Ok(match field(f) {
        Field::Text(Some(n)) => n.to_owned(),
        Field::Text(None) => {
            return Err(EsError::unsupported(format!(
                "an aggregation on the whole text [{f}]"
            )));
        }
        other => field_name(&other),
    })
}

/// A calendar interval of Elasticsearch as crossdex's unit name.
fn calendar_unit(i: &str) -> Option<&'static str> {
    Some(match i {
        "year" | "1y" => "year",
        "quarter" | "1q" => "quarter",
        "month" | "1M" => "month",
        "week" | "1w" => "week",
        "day" | "1d" => "day",
        "hour" | "1h" => "hour",
        "minute" | "1m" => "minute",
        "second" | "1s" => "second",
        _ => return None,
    })
}

/// A fixed interval (`30d`, `12h`, `90m`, `10s`, `500ms`) in milliseconds.
fn fixed_millis(i: &str) -> Option<i64> {
    let t = i.trim();
    let at = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(at);
    let n: i64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms).filter(|x| *x > 0)
}

/// The start of the calendar unit after the one starting at `t`.
fn next_unit(
    t: chrono::DateTime<chrono::Utc>,
    unit: &str,
) -> Option<chrono::DateTime<chrono::Utc>> {
    Some(match unit {
        "year" => t.checked_add_months(chrono::Months::new(12))?,
        "quarter" => t.checked_add_months(chrono::Months::new(3))?,
        "month" => t.checked_add_months(chrono::Months::new(1))?,
        "week" => t + chrono::Duration::weeks(1),
        "day" => t + chrono::Duration::days(1),
        "hour" => t + chrono::Duration::hours(1),
        "minute" => t + chrono::Duration::minutes(1),
        _ => t + chrono::Duration::seconds(1),
    })
}

/// The start of the date bucket after the one starting at `t` (epoch milliseconds).
fn date_step(key: &GroupKey, t: i64) -> Result<i64, EsError> {
    Ok(match key {
        GroupKey::Calendar(u) => next_unit(date_of_millis(t)?, u)
            .ok_or_else(too_many_buckets)?
            .timestamp_millis(),
        GroupKey::Fixed(ms) => t + ms,
        _ => t + 1,
    })
}

/// The start of the date bucket holding `t`, as the grouping computes it.
fn date_floor(key: &GroupKey, t: chrono::DateTime<chrono::Utc>) -> i64 {
    use chrono::Datelike;
    let ms = t.timestamp_millis();
    match key {
        GroupKey::Fixed(w) => ms - ms.rem_euclid(*w),
        GroupKey::Calendar(u) => {
            let d = t.date_naive();
            let day = |d: chrono::NaiveDate| {
                d.and_hms_opt(0, 0, 0)
                    .map_or(ms, |x| x.and_utc().timestamp_millis())
            };
            match u.as_str() {
                "year" => d.with_ordinal(1).map_or(ms, day),
                "quarter" => d
                    .with_day(1)
                    .and_then(|d| d.with_month(((d.month() - 1) / 3) * 3 + 1))
                    .map_or(ms, day),
                "month" => d.with_day(1).map_or(ms, day),
                "week" => {
                    day(d - chrono::Duration::days(d.weekday().num_days_from_monday().into()))
                }
                "day" => day(d),
                "hour" => ms - ms.rem_euclid(3_600_000),
                "minute" => ms - ms.rem_euclid(60_000),
                _ => ms - ms.rem_euclid(1000),
            }
        }
        _ => ms,
    }
}

/// A date histogram's empty buckets, between the first and the last and out to the
/// `extended_bounds` asked for (`min_doc_count` 0).
fn fill_dates(
    counts: &mut std::collections::BTreeMap<i64, u64>,
    body: &Value,
    key: &GroupKey,
) -> Result<(), EsError> {
    let bound = |k: &str| -> Result<Option<i64>, EsError> {
        body.get("extended_bounds")
            .and_then(|b| b.get(k))
            .map(|v| date(v).map(|t| date_floor(key, t)))
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
    if let (Some(mut t), Some(last)) = (first, last) {
        while t <= last {
            if counts.len() > MAX_BUCKETS {
                return Err(too_many_buckets());
            }
            counts.entry(t).or_insert(0);
            t = date_step(key, t)?;
        }
    }
    Ok(())
}

/// Buckets one answer may hold at most, as Elasticsearch's `search.max_buckets`.
const MAX_BUCKETS: usize = 65_536;

fn too_many_buckets() -> EsError {
    EsError {
        status: StatusCode::BAD_REQUEST,
        kind: "too_many_buckets_exception",
        reason: format!("more than {MAX_BUCKETS} buckets; use a wider interval"),
    }
}

fn millis_of(k: &Value) -> Option<i64> {
    k.as_i64().or_else(|| k.as_f64().map(|f| f as i64))
}

fn date_of_millis(ms: i64) -> Result<chrono::DateTime<chrono::Utc>, EsError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| EsError::parsing(format!("[{ms}] is out of the dates' range")))
}

/// The aggregations of `aggs` over the documents `base` selects; `facets`, where the
/// search computed them, are `base`'s.
fn aggregations<'a>(
    service: &'a Service,
    base: &'a Filter,
    aggs: &'a Map<String, Value>,
    facets: Option<&'a Facets>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, EsError>> + Send + 'a>> {
    Box::pin(async move {
        let control = QueryControl::default();
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
            // A bucket's sub-aggregations, over the documents in it.
            let inner = |filter: Filter| async move {
                match subs {
                    None => Ok::<Option<Value>, EsError>(None),
                    Some(subs) => {
                        let (_, f) = counted(service, &filter, Some(facet_size(subs))).await?;
                        Ok(Some(
                            aggregations(service, &filter, subs, f.as_ref()).await?,
                        ))
                    }
                }
            };
            let bucket = |mut b: Value, sub: Option<Value>| {
                if let (Some(o), Some(Value::Object(s))) = (b.as_object_mut(), sub) {
                    o.extend(s);
                }
                b
            };
            let value = match (kind.as_str(), facets) {
                (k, Some(facets)) if from_facets(k, body, subs) => {
                    facet_aggregation(k, body, facets)?
                }
                ("terms", _) => {
                    let f = agg_field(body)?;
                    let all = service
                        .group_documents(base, &f, &GroupKey::Value, None, false, &control)
                        .await?;
                    let (kept, other) =
                        terms_buckets(all.into_iter().map(|g| (g.key, g.count)).collect(), body)?;
                    let dated = matches!(f.as_str(), "created_at" | "date" | "modified_at");
                    let mut buckets = Vec::new();
                    for (key, n) in kept {
                        let lit = match &key {
                            Value::String(s) => Literal::Text(s.clone()),
                            k if dated => Literal::Date(date_of_millis(millis_of(k).unwrap_or(0))?),
                            k => Literal::Number(k.as_f64().unwrap_or(0.0)),
                        };
                        let sub = inner(base.clone().and(Filter::Equals(f.clone(), lit))).await?;
                        let mut b = json!({"key": key, "doc_count": n});
                        if dated && let Some(ms) = millis_of(&key) {
                            b["key_as_string"] = json!(
                                date_of_millis(ms)?
                                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                                    .to_string()
                            );
                        }
                        buckets.push(bucket(b, sub));
                    }
                    json!({
                        "doc_count_error_upper_bound": 0,
                        "sum_other_doc_count": other,
                        "buckets": buckets,
                    })
                }
                ("histogram", _) => {
                    let f = agg_field(body)?;
                    let interval =
                        body.get("interval")
                            .and_then(Value::as_f64)
                            .ok_or_else(|| {
                                EsError::parsing("[histogram] needs a numeric [interval]")
                            })?;
                    let offset = body.get("offset").and_then(Value::as_f64).unwrap_or(0.0);
                    let min = body
                        .get("min_doc_count")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    let groups = service
                        .group_documents(
                            base,
                            &f,
                            &GroupKey::Step { interval, offset },
                            None,
                            true,
                            &control,
                        )
                        .await?;
                    let mut counts: Vec<(f64, u64)> = groups
                        .iter()
                        .filter_map(|g| Some((g.key.as_f64()?, g.count)))
                        .collect();
                    if min == 0 {
                        let bound = |k: &str| {
                            body.get("extended_bounds")
                                .and_then(|b| b.get(k))
                                .and_then(Value::as_f64)
                                .map(|x| ((x - offset) / interval).floor() * interval + offset)
                        };
                        let first = counts
                            .first()
                            .map(|c| c.0)
                            .into_iter()
                            .chain(bound("min"))
                            .reduce(f64::min);
                        let last = counts
                            .last()
                            .map(|c| c.0)
                            .into_iter()
                            .chain(bound("max"))
                            .reduce(f64::max);
                        if let (Some(first), Some(last)) = (first, last) {
                            let steps = ((last - first) / interval).round();
                            if !(0.0..MAX_BUCKETS as f64).contains(&steps) {
                                return Err(too_many_buckets());
                            }
                            let have: std::collections::HashMap<u64, u64> =
                                counts.iter().map(|(k, n)| (k.to_bits(), *n)).collect();
                            counts = (0..=steps as usize)
                                .map(|i| {
                                    let k = ((first + i as f64 * interval - offset) / interval)
                                        .round()
                                        * interval
                                        + offset;
                                    let n = have
                                        .iter()
                                        .find(|(b, _)| {
                                            (f64::from_bits(**b) - k).abs() < interval * 1e-9
                                        })
                                        .map_or(0, |(_, n)| *n);
                                    (k, n)
                                })
                                .collect();
                        }
                    }
                    let mut buckets = Vec::new();
                    for (k, n) in counts.into_iter().filter(|(_, n)| *n >= min) {
                        let sub = inner(base.clone().and(Filter::Range {
                            field: f.clone(),
                            lower: Some((Literal::Number(k), true)),
                            upper: Some((Literal::Number(k + interval), false)),
                        }))
                        .await?;
                        buckets.push(bucket(json!({"key": k, "doc_count": n}), sub));
                    }
                    json!({ "buckets": buckets })
                }
                ("date_histogram", _) => {
                    let f = agg_field(body)?;
                    if body
                        .get("time_zone")
                        .and_then(Value::as_str)
                        .is_some_and(|z| !matches!(z, "UTC" | "Z" | "+00:00" | "Etc/UTC"))
                        || body.get("offset").is_some()
                    {
                        return Err(EsError::unsupported(
                            "a date_histogram with a time_zone other than UTC, or an offset",
                        ));
                    }
                    let calendar = body
                        .get("calendar_interval")
                        .or_else(|| body.get("interval"))
                        .and_then(Value::as_str)
                        .and_then(calendar_unit);
                    let fixed = body
                        .get("fixed_interval")
                        .or_else(|| body.get("interval"))
                        .and_then(Value::as_str)
                        .and_then(fixed_millis);
                    let key = match (calendar, fixed) {
                        (Some(u), _) => GroupKey::Calendar(u.to_owned()),
                        (None, Some(ms)) => GroupKey::Fixed(ms),
                        _ => {
                            return Err(EsError::parsing(
                                "[date_histogram] needs a calendar_interval (1M, month, ...) or a fixed_interval (30d, 12h, ...)",
                            ));
                        }
                    };
                    let format = match body.get("format").and_then(Value::as_str) {
                        Some(f) => java_format(f)?,
                        None => "%Y-%m-%dT%H:%M:%S%.3fZ".to_owned(),
                    };
                    let min = body
                        .get("min_doc_count")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    let groups = service
                        .group_documents(base, &f, &key, None, true, &control)
                        .await?;
                    let mut counts: std::collections::BTreeMap<i64, u64> = groups
                        .iter()
                        .filter_map(|g| Some((millis_of(&g.key)?, g.count)))
                        .collect();
                    if min == 0 {
                        fill_dates(&mut counts, body, &key)?;
                    }
                    let mut buckets = Vec::new();
                    for (t, n) in counts.into_iter().filter(|(_, n)| *n >= min) {
                        let start = date_of_millis(t)?;
                        let sub = inner(base.clone().and(Filter::Range {
                            field: f.clone(),
                            lower: Some((Literal::Date(start), true)),
                            upper: Some((
                                Literal::Date(date_of_millis(date_step(&key, t)?)?),
                                false,
                            )),
                        }))
                        .await?;
                        buckets.push(bucket(
                            json!({
                                "key_as_string": start.format(&format).to_string(),
                                "key": t,
                                "doc_count": n,
                            }),
                            sub,
                        ));
                    }
                    json!({ "buckets": buckets })
                }
                ("range" | "date_range", _) => {
                    let f = agg_field(body)?;
                    let dated = kind == "date_range";
                    let format = match body.get("format").and_then(Value::as_str) {
                        Some(fm) => java_format(fm)?,
                        None => "%Y-%m-%dT%H:%M:%S%.3fZ".to_owned(),
                    };
                    let ranges = body
                        .get("ranges")
                        .and_then(Value::as_array)
                        .ok_or_else(|| EsError::parsing(format!("[{kind}] needs [ranges]")))?;
                    let keyed = body.get("keyed").and_then(Value::as_bool).unwrap_or(false);
                    let mut buckets = Vec::new();
                    let mut by_key = Map::new();
                    for r in ranges {
                        let bound = |k: &str| -> Result<Option<(Literal, Value, String)>, EsError> {
                            let Some(v) = r.get(k).filter(|v| !v.is_null()) else {
                                return Ok(None);
                            };
                            if dated {
                                let t = date(v)?;
                                Ok(Some((
                                    Literal::Date(t),
                                    json!(t.timestamp_millis() as f64),
                                    t.format(&format).to_string(),
                                )))
                            } else {
                                let x = v
                                    .as_f64()
                                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                                    .ok_or_else(|| {
                                        EsError::parsing(format!(
                                            "[range] bound {v} is not a number"
                                        ))
                                    })?;
                                Ok(Some((Literal::Number(x), json!(x), format!("{x:?}"))))
                            }
                        };
                        let from = bound("from")?;
                        let to = bound("to")?;
                        let key = match r.get("key").and_then(Value::as_str) {
                            Some(k) => k.to_owned(),
                            None => format!(
                                "{}-{}",
                                from.as_ref().map_or("*", |b| b.2.as_str()),
                                to.as_ref().map_or("*", |b| b.2.as_str())
                            ),
                        };
                        let filter = base.clone().and(Filter::Range {
                            field: f.clone(),
                            lower: from.as_ref().map(|b| (b.0.clone(), true)),
                            upper: to.as_ref().map(|b| (b.0.clone(), false)),
                        });
                        let n = service.count_documents(&filter, &control).await?;
                        let mut b = json!({"key": key, "doc_count": n});
                        if let Some((_, v, text)) = &from {
                            b["from"] = v.clone();
                            if dated {
                                b["from_as_string"] = json!(text);
                            }
                        }
                        if let Some((_, v, text)) = &to {
                            b["to"] = v.clone();
                            if dated {
                                b["to_as_string"] = json!(text);
                            }
                        }
                        let b = bucket(b, inner(filter).await?);
                        if keyed {
                            by_key.insert(key, b);
                        } else {
                            buckets.push(b);
                        }
                    }
                    if keyed {
                        json!({ "buckets": by_key })
                    } else {
                        json!({ "buckets": buckets })
                    }
                }
                ("filter" | "filters", _) => {
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
                        let sub = base.clone().and(translate(&filter)?);
                        let (count, sub_facets) =
                            counted(service, &sub, subs.map(facet_size)).await?;
                        let mut b = json!({"doc_count": count});
                        if let Some(subs) = subs {
                            let inner =
                                aggregations(service, &sub, subs, sub_facets.as_ref()).await?;
                            b = bucket(b, Some(inner));
                        }
                        match label {
                            Some(l) => {
                                buckets.insert(l, b);
                            }
                            None => single = b,
                        }
                    }
                    if kind == "filter" {
                        single
                    } else {
                        json!({ "buckets": buckets })
                    }
                }
                ("min" | "max" | "avg" | "sum" | "stats" | "value_count" | "cardinality", _) => {
                    let f = agg_field(body)?;
                    let m = service.document_metrics(base, &f, &control).await?;
                    let as_string = |x: Option<f64>| {
                        x.and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64))
                            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                    };
                    let metric = |x: Option<f64>| {
                        let mut v = json!({"value": x});
                        if m.dates
                            && let Some(s) = as_string(x)
                        {
                            v["value_as_string"] = json!(s);
                        }
                        v
                    };
                    match kind.as_str() {
                        "min" => metric(m.min),
                        "max" => metric(m.max),
                        "avg" => metric(m.avg),
                        "sum" => json!({"value": m.sum.unwrap_or(0.0)}),
                        "value_count" => json!({"value": m.count}),
                        "cardinality" => json!({"value": m.distinct}),
                        _ => json!({
                            "count": m.count,
                            "min": m.min,
                            "max": m.max,
                            "avg": m.avg,
                            "sum": m.sum.unwrap_or(0.0),
                        }),
                    }
                }
                ("top_hits", _) => {
                    let size = body.get("size").and_then(Value::as_u64).unwrap_or(3) as usize;
                    let from = body.get("from").and_then(Value::as_u64).unwrap_or(0) as usize;
                    let sort = sort_keys(body.get("sort"))?;
                    let page = service
                        .documents(
                            &DocumentQuery {
                                filter: base.clone(),
                                sort: sort.clone(),
                                offset: from,
                                limit: size.min(100),
                                after: None,
                                tags: None,
                            },
                            &control,
                        )
                        .await?;
                    let max = page.documents.iter().map(|d| d.score).reduce(f64::max);
                    let hits = page
                        .documents
                        .into_iter()
                        .map(|d| Hit {
                            summary: json!({
                                "id": d.id, "source": d.source, "system": d.system, "kind": d.kind,
                                "subject_id": d.subject_id, "title": d.title,
                            }),
                            id: d.id,
                            source: d.source,
                            score: d.score,
                            snippet: None,
                            sort: (!sort.is_empty()).then_some(d.sort),
                        })
                        .collect();
                    let hits =
                        hits_out(service, hits, &source_filter(body.get("_source")), None).await?;
                    json!({"hits": {
                        "total": {"value": page.total, "relation": "eq"},
                        "max_score": max,
                        "hits": hits,
                    }})
                }
                (other, _) => return Err(EsError::unsupported(format!("aggregation [{other}]"))),
            };
            let value = match spec.get("meta") {
                Some(meta) => {
                    let mut v = value;
                    v["meta"] = meta.clone();
                    v
                }
                None => value,
            };
            out.insert(name.clone(), value);
        }
        Ok(Value::Object(out))
    })
}

/// An aggregation read off the search's facets.
fn facet_aggregation(kind: &str, body: &Value, facets: &Facets) -> Result<Value, EsError> {
    let field_name = body.get("field").and_then(Value::as_str).unwrap_or("");
    Ok(match kind {
        "terms" => {
            let all = facet_of(facets, field_name)?
                .iter()
                .map(|b| (json!(b.value), b.count))
                .collect();
            let (kept, other) = terms_buckets(all, body)?;
            json!({
                "doc_count_error_upper_bound": 0,
                "sum_other_doc_count": other,
                "buckets": kept.into_iter().map(|(k, n)| json!({"key": k, "doc_count": n})).collect::<Vec<_>>(),
            })
        }
        "date_histogram" => {
            let format = match body.get("format").and_then(Value::as_str) {
                Some(f) => java_format(f)?,
                None => "%Y-%m-%dT%H:%M:%S%.3fZ".to_owned(),
            };
            let min = body
                .get("min_doc_count")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let month = |text: &str| {
                chrono::NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()
            };
            let mut counts: std::collections::BTreeMap<i64, u64> = facets
                .month
                .iter()
                .filter_map(|b| {
                    let t = month(&b.value)?.and_hms_opt(0, 0, 0)?.and_utc();
                    Some((t.timestamp_millis(), b.count))
                })
                .collect();
            if min == 0 {
                fill_dates(&mut counts, body, &GroupKey::Calendar("month".to_owned()))?;
            }
            let mut buckets = Vec::new();
            for (t, n) in counts.into_iter().filter(|(_, n)| *n >= min) {
                buckets.push(json!({
                    "key_as_string": date_of_millis(t)?.format(&format).to_string(),
                    "key": t,
                    "doc_count": n,
                }));
            }
            json!({ "buckets": buckets })
        }
        "cardinality" => json!({"value": facet_of(facets, field_name)?.len()}),
        _ => json!({"value": facet_of(facets, field_name)?.iter().map(|b| b.count).sum::<u64>()}),
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

/// The state of a scroll of the tables' path: the body, from the next page on.
fn encode_body_scroll(index: &str, body: &Map<String, Value>) -> String {
    let state = json!({"index": index, "body": body});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state.to_string())
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
    if let (Some(index), Some(Value::Object(body))) = (v["index"].as_str(), v.get("body")) {
        let mut out = run_search(&service, index, body, &SearchParams::default()).await?;
        out["_scroll_id"] = out["_next"].take();
        if let Some(o) = out.as_object_mut() {
            o.remove("_next");
        }
        return Ok(ok(&out));
    }
    let plan: Plan = serde_json::from_value(v["plan"].clone()).map_err(|_| bad())?;
    let cursor = v["cursor"].as_str().unwrap_or_default().to_owned();
    let result = if cursor.is_empty() {
        None
    } else {
        let mut r = plan.request(plan.size, 0, None);
        r.cursor = Some(cursor);
        Some(service.search(&r, &QueryControl::default()).await?)
    };
    let (hits, total, max_score) = summary_hits(result.as_ref());
    let marks = plan
        .tags
        .as_ref()
        .filter(|_| plan.highlight)
        .map(|t| Marks {
            fields: plan.highlight_fields.clone(),
            pre: t.0.clone(),
            post: t.1.clone(),
        });
    let hits = hits_out(&service, hits, &plan.source_fields, marks.as_ref()).await?;
    let mut out = json!({
        "took": started.elapsed().as_millis() as u64,
        "timed_out": false,
        "_shards": shards(),
        "hits": {
            "total": {"value": total, "relation": "eq"},
            "max_score": max_score,
            "hits": hits,
        },
    });
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
    fn fragments_are_cut_around_their_first_mark_on_word_boundaries() {
        let f = "one two three four five <em>six</em> seven eight nine ten eleven twelve";
        let cut = cut_fragment(f, "<em>", "</em>", 30);
        assert_eq!(cut, "five <em>six</em> seven eight nine ten");
        assert_eq!(cut_fragment(f, "<em>", "</em>", 1000), f);
        // A mark longer than the room is kept whole.
        assert_eq!(cut_fragment(f, "<em>", "</em>", 1), "<em>six</em>");
        // Hostile tags and text answer without panicking.
        for (t, pre, post) in [
            ("<em>é", "<em>", "</em>"),
            ("é</em><em>", "<em>", "</em>"),
            ("€€", "€", "€"),
            ("a b", "", ""),
        ] {
            let _ = cut_fragment(t, pre, post, 1);
        }
    }

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
