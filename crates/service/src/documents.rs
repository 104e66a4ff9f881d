//! Documents: records with their observations as typed fields, selected by a
//! structured [`Filter`] (full text, exact values, ranges, existence, ids, patterns),
//! paged in any order and grouped into counts and metrics.
//!
//! This is the door for front ends that speak another search language (the
//! Elasticsearch-compatible API): they compile their language into a [`Filter`], this
//! module compiles that into SQL over the caller's scoped tables, so scopes hold
//! exactly as for every other read. Values always travel as bound parameters, never
//! as SQL text; the full-text part goes to `search()` as an escaped literal, the one
//! place SQL takes it. It must not know any front end's wire format.
//!
//! A field is a record column (`source`, `title`, `created_at`, ...) or, any other
//! name, an observation variable (also spelled `obs.<variable>`), whose values are
//! numbers, dates or text as the observation holds them; a record may hold several
//! values of one variable (events, repeats), and matches when any of them does. The
//! date of a record (`date`, and `created_at` as the search's date filter reads it) is
//! its creation, else its last change.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use crossdex_query::{OutputFormat, QueryEngine, ScalarValue};
use serde_json::{Map, Value};

use crate::{Action, ErrorCode, QueryControl, Result, Service, ServiceError};

/// Largest page of documents one call returns.
pub const MAX_DOCUMENTS: usize = 10_000;

/// A value to compare a field with.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Text, compared as written.
    Text(String),
    /// A number.
    Number(f64),
    /// An instant.
    Date(DateTime<Utc>),
}

/// Which documents: a tree of conditions on their fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every document.
    All,
    /// None.
    Nothing,
    /// The hits of a query in crossdex's search syntax (docs/search.md).
    Text(String),
    /// A field holds this value.
    Equals(String, Literal),
    /// A field holds a value within these bounds (`true`: the bound itself is in).
    Range {
        /// The field.
        field: String,
        /// Lower bound.
        lower: Option<(Literal, bool)>,
        /// Upper bound.
        upper: Option<(Literal, bool)>,
    },
    /// A field holds a value at all.
    Exists(String),
    /// The document's id is one of these.
    Ids(Vec<String>),
    /// A text field matches this regular expression as a whole.
    Pattern(String, String),
    /// All of them.
    And(Vec<Filter>),
    /// Any of them.
    Or(Vec<Filter>),
    /// Not this one.
    Not(Box<Filter>),
    /// At least this many of them.
    AtLeast(usize, Vec<Filter>),
}

impl Filter {
    /// Both.
    pub fn and(self, other: Filter) -> Filter {
        match (self, other) {
            (Filter::All, f) | (f, Filter::All) => f,
            (Filter::Nothing, _) | (_, Filter::Nothing) => Filter::Nothing,
            (Filter::And(mut a), Filter::And(b)) => {
                a.extend(b);
                Filter::And(a)
            }
            (Filter::And(mut a), f) => {
                a.push(f);
                Filter::And(a)
            }
            (a, b) => Filter::And(vec![a, b]),
        }
    }

    /// The full-text queries that can make a document match (not those under a
    /// negation), for relevance and highlights.
    fn positive_texts<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::Text(t) => out.push(t),
            Filter::And(v) | Filter::Or(v) | Filter::AtLeast(_, v) => {
                for f in v {
                    f.positive_texts(out);
                }
            }
            _ => {}
        }
    }
}

/// One key of a documents' order.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// A field, or `None` for relevance.
    pub field: Option<String>,
    /// Largest first.
    pub descending: bool,
    /// Documents without a value come first (else last).
    pub missing_first: bool,
}

/// A page of documents.
#[derive(Debug, Clone)]
pub struct DocumentQuery {
    /// Which documents.
    pub filter: Filter,
    /// In what order; relevance, then id, when empty. The id always breaks ties.
    pub sort: Vec<SortKey>,
    /// Documents skipped first.
    pub offset: usize,
    /// Documents returned, at most [`MAX_DOCUMENTS`].
    pub limit: usize,
    /// Only documents after this one in the order: the `sort` values of the last
    /// document of the previous page (with its id last, as [`Document::sort`] gives).
    pub after: Option<Vec<Value>>,
    /// What goes before and after each matched word of a highlight [default `**`].
    pub tags: Option<(String, String)>,
}

/// One document of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The record's id.
    pub id: String,
    /// Relevance of its full-text match; 1 without one.
    pub score: f64,
    /// Its source.
    pub source: String,
    /// Its system.
    pub system: String,
    /// Its kind.
    pub kind: String,
    /// Its subject, where linked.
    pub subject_id: Option<String>,
    /// Its title.
    pub title: String,
    /// A fragment of its matching text, where a full-text query matched.
    pub snippet: Option<String>,
    /// Its values of the sort keys, then its id: what [`DocumentQuery::after`] takes.
    pub sort: Vec<Value>,
}

/// A page of documents and how many match in all.
#[derive(Debug, Clone)]
pub struct DocumentPage {
    /// Documents matched in all.
    pub total: u64,
    /// This page.
    pub documents: Vec<Document>,
}

/// How a grouping makes a key of a field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupKey {
    /// The value itself.
    Value,
    /// Numbers by steps of this width from `offset`: the key is the step's start.
    Step {
        /// Width.
        interval: f64,
        /// Where steps start.
        offset: f64,
    },
    /// Dates by a calendar unit (`year`, `quarter`, `month`, `week`, `day`, `hour`,
    /// `minute`, `second`): the key is the unit's start, in epoch milliseconds.
    Calendar(String),
    /// Dates by a fixed number of milliseconds from the epoch.
    Fixed(i64),
}

/// One group: a key and how many documents hold a value with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The key: text, a number, or epoch milliseconds for dates.
    pub key: Value,
    /// Documents in the group (a document with two values of one key counts once).
    pub count: u64,
}

/// Metrics of one field's values over documents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    /// Values.
    pub count: u64,
    /// Distinct values.
    pub distinct: u64,
    /// Smallest (numbers, or dates in epoch milliseconds).
    pub min: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
    /// Sum of numbers.
    pub sum: Option<f64>,
    /// Mean of numbers.
    pub avg: Option<f64>,
    /// Whether the values are dates.
    pub dates: bool,
}

/// A field as documents know it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInfo {
    /// Its name.
    pub name: String,
    /// `text`, `keyword`, `double`, `date` or `long`.
    pub kind: &'static str,
}

/// Where a field lives.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    /// A column of `records`, with its kind.
    Record(&'static str, Kind),
    /// The record's date: created, else modified.
    Date,
    /// An observation variable.
    Variable(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Keyword,
    Date,
}

/// The record columns documents show, and their kinds.
const RECORD_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Keyword),
    ("source", Kind::Keyword),
    ("system", Kind::Keyword),
    ("kind", Kind::Keyword),
    ("native_id", Kind::Keyword),
    ("parent_id", Kind::Keyword),
    ("project", Kind::Keyword),
    ("subject_key", Kind::Keyword),
    ("subject_id", Kind::Keyword),
    ("title", Kind::Text),
    ("description", Kind::Text),
    ("url", Kind::Keyword),
    ("modified_at", Kind::Date),
];

fn column(name: &str) -> Column {
    if let Some(v) = name.strip_prefix("obs.") {
        return Column::Variable(v.to_owned());
    }
    if matches!(name, "date" | "created_at") {
        return Column::Date;
    }
    match RECORD_FIELDS.iter().find(|(n, _)| *n == name) {
        Some((n, k)) => Column::Record(n, *k),
        None => Column::Variable(name.to_owned()),
    }
}

/// Whether `name` is a record's own field rather than an observation variable.
pub fn is_record_field(name: &str) -> bool {
    !matches!(column(name), Column::Variable(_))
}

/// The record's date expression.
const DATE: &str = "COALESCE(r.created_at, r.modified_at)";

/// `search()` over every hit of `query`: the search syntax as a SQL literal (quotes
/// doubled; the engine's dialect reads backslashes as themselves).
fn search_call(query: &str) -> String {
    format!("search('{}', 2147483647)", query.replace('\'', "''"))
}

/// SQL text with its bound parameters.
#[derive(Default)]
struct Sql {
    params: Vec<(String, ScalarValue)>,
}

impl Sql {
    fn bind(&mut self, v: ScalarValue) -> String {
        let name = format!("p{}", self.params.len());
        self.params.push((name.clone(), v));
        format!("${name}")
    }

    fn text(&mut self, s: &str) -> String {
        self.bind(ScalarValue::Utf8(Some(s.to_owned())))
    }

    fn literal(&mut self, l: &Literal) -> String {
        match l {
            Literal::Text(t) => self.text(t),
            Literal::Number(n) => self.bind(ScalarValue::Float64(Some(*n))),
            // RFC 3339 text: compared with a timestamp column, it is read as one.
            Literal::Date(d) => self.text(&d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        }
    }

    /// The ids of the hits of `query`: the search syntax as a SQL literal, the one
    /// value that cannot be bound (a table function's argument is planned first).
    fn search(query: &str) -> String {
        format!("(SELECT id FROM {})", search_call(query))
    }

    /// The comparison of a record's column or an observation's value with `l`, by `op`.
    fn compare(&mut self, field: &str, op: &str, l: &Literal) -> String {
        match column(field) {
            Column::Record(c, _) => {
                let v = self.literal(l);
                format!("r.{c} {op} {v}")
            }
            Column::Date => {
                let v = self.literal(l);
                format!("{DATE} {op} {v}")
            }
            Column::Variable(name) => {
                let var = self.text(&name);
                let col = match l {
                    Literal::Text(_) => "value_text",
                    Literal::Number(_) => "value_num",
                    Literal::Date(_) => "value_date",
                };
                let v = self.literal(l);
                format!(
                    "r.id IN (SELECT record_id FROM observations WHERE variable = {var} AND {col} {op} {v})"
                )
            }
        }
    }

    /// `filter` as a condition on `records r` that is never NULL.
    fn condition(&mut self, filter: &Filter) -> String {
        match filter {
            Filter::All => "TRUE".to_owned(),
            Filter::Nothing => "FALSE".to_owned(),
            Filter::Text(q) => format!("r.id IN {}", Sql::search(q)),
            Filter::Equals(f, l) => format!("COALESCE({}, FALSE)", self.compare(f, "=", l)),
            Filter::Range {
                field,
                lower,
                upper,
            } => {
                if let Column::Variable(name) = column(field) {
                    // Both bounds on one value, not each on any value.
                    let var = self.text(&name);
                    let sample = lower.as_ref().or(upper.as_ref()).map(|(l, _)| l);
                    let col = match sample {
                        Some(Literal::Text(_)) => "value_text",
                        Some(Literal::Date(_)) => "value_date",
                        _ => "value_num",
                    };
                    let mut parts = vec![format!("variable = {var}"), format!("{col} IS NOT NULL")];
                    if let Some((l, inclusive)) = lower {
                        let v = self.literal(l);
                        parts.push(format!("{col} {} {v}", if *inclusive { ">=" } else { ">" }));
                    }
                    if let Some((l, inclusive)) = upper {
                        let v = self.literal(l);
                        parts.push(format!("{col} {} {v}", if *inclusive { "<=" } else { "<" }));
                    }
                    return format!(
                        "r.id IN (SELECT record_id FROM observations WHERE {})",
                        parts.join(" AND ")
                    );
                }
                let mut parts = vec!["TRUE".to_owned()];
                if let Some((l, inclusive)) = lower {
                    parts.push(self.compare(field, if *inclusive { ">=" } else { ">" }, l));
                }
                if let Some((l, inclusive)) = upper {
                    parts.push(self.compare(field, if *inclusive { "<=" } else { "<" }, l));
                }
                format!("COALESCE({}, FALSE)", parts.join(" AND "))
            }
            Filter::Exists(f) => match column(f) {
                Column::Record(c, _) => format!("r.{c} IS NOT NULL"),
                Column::Date => format!("{DATE} IS NOT NULL"),
                Column::Variable(name) => {
                    let var = self.text(&name);
                    format!("r.id IN (SELECT record_id FROM observations WHERE variable = {var})")
                }
            },
            Filter::Ids(ids) if ids.is_empty() => "FALSE".to_owned(),
            Filter::Ids(ids) => {
                let list: Vec<String> = ids.iter().map(|i| self.text(i)).collect();
                format!("r.id IN ({})", list.join(", "))
            }
            Filter::Pattern(f, pattern) => {
                let p = self.text(&format!("^(?:{pattern})$"));
                match column(f) {
                    Column::Record(c, _) => format!("COALESCE(regexp_like(r.{c}, {p}), FALSE)"),
                    Column::Date => {
                        format!("COALESCE(regexp_like(CAST({DATE} AS VARCHAR), {p}), FALSE)")
                    }
                    Column::Variable(name) => {
                        let var = self.text(&name);
                        format!(
                            "r.id IN (SELECT record_id FROM observations WHERE variable = {var} AND regexp_like(value_text, {p}))"
                        )
                    }
                }
            }
            Filter::And(v) if v.is_empty() => "TRUE".to_owned(),
            Filter::Or(v) if v.is_empty() => "FALSE".to_owned(),
            Filter::And(v) => self.join(v, " AND "),
            Filter::Or(v) => self.join(v, " OR "),
            Filter::Not(f) => format!("NOT ({})", self.condition(f)),
            Filter::AtLeast(n, v) => {
                let terms: Vec<String> = v
                    .iter()
                    .map(|f| format!("CASE WHEN {} THEN 1 ELSE 0 END", self.condition(f)))
                    .collect();
                if terms.is_empty() {
                    return if *n == 0 { "TRUE" } else { "FALSE" }.to_owned();
                }
                format!("({}) >= {n}", terms.join(" + "))
            }
        }
    }

    fn join(&mut self, v: &[Filter], sep: &str) -> String {
        let parts: Vec<String> = v
            .iter()
            .map(|f| format!("({})", self.condition(f)))
            .collect();
        parts.join(sep)
    }
}

/// A sort key as one typed SQL expression over `m` (the matched records), and the join
/// that brings a variable's values.
struct SortExpr {
    expr: String,
    join: Option<String>,
}

/// The kind of value an observation variable holds, by its values: numbers if all
/// that have a value are numbers, dates likewise, else text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum VarKind {
    Number,
    Date,
    Text,
}

async fn variable_kind(engine: &QueryEngine, name: &str) -> Result<VarKind> {
    let rows = json_rows(
        engine,
        "SELECT count(value_num) AS n, count(value_date) AS d, count(*) AS c \
         FROM observations WHERE variable = $v",
        vec![("v".to_owned(), ScalarValue::Utf8(Some(name.to_owned())))],
    )
    .await?;
    let r = rows.first().cloned().unwrap_or_default();
    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    Ok(kind_of(n("n"), n("d"), n("c")))
}

fn kind_of(numbers: u64, dates: u64, all: u64) -> VarKind {
    if numbers > 0 && numbers == all {
        VarKind::Number
    } else if dates > 0 && dates == all {
        VarKind::Date
    } else {
        VarKind::Text
    }
}

/// A dated column as epoch milliseconds.
fn millis(e: &str) -> String {
    format!("CAST({e} AS BIGINT) / 1000")
}

fn sort_expr(i: usize, key: &SortKey, kind: Option<VarKind>, sql: &mut Sql) -> SortExpr {
    let Some(field) = &key.field else {
        return SortExpr {
            expr: "COALESCE(s.score, 1.0)".to_owned(),
            join: None,
        };
    };
    match column(field) {
        Column::Record(c, Kind::Date) => SortExpr {
            expr: millis(&format!("m.{c}")),
            join: None,
        },
        Column::Record(c, _) => SortExpr {
            expr: format!("m.{c}"),
            join: None,
        },
        Column::Date => SortExpr {
            expr: millis("m.date"),
            join: None,
        },
        Column::Variable(name) => {
            // A document with several values sorts by its smallest ascending, its
            // largest descending.
            let var = sql.text(&name);
            let agg = if key.descending { "MAX" } else { "MIN" };
            let (value, expr) = match kind.unwrap_or(VarKind::Text) {
                VarKind::Number => ("value_num", format!("k{i}.v")),
                VarKind::Date => ("value_date", millis(&format!("k{i}.v"))),
                VarKind::Text => ("value_text", format!("k{i}.v")),
            };
            SortExpr {
                expr,
                join: Some(format!(
                    "LEFT JOIN (SELECT record_id, {agg}({value}) AS v \
                     FROM observations WHERE variable = {var} GROUP BY record_id) k{i} ON k{i}.record_id = m.id"
                )),
            }
        }
    }
}

async fn json_rows(
    engine: &QueryEngine,
    sql: &str,
    params: Vec<(String, ScalarValue)>,
) -> Result<Vec<Map<String, Value>>> {
    let out = engine.sql(sql, params).await?;
    let text = out
        .render(OutputFormat::Json)
        .map_err(|e| ServiceError::internal("reading the documents' rows", e))?;
    serde_json::from_str(&text)
        .map_err(|e| ServiceError::internal("decoding the documents' rows", e))
}

/// The `n` of a `SELECT count(*) AS n` query.
async fn count_rows(
    engine: &QueryEngine,
    sql: &str,
    params: Vec<(String, ScalarValue)>,
) -> Result<u64> {
    Ok(json_rows(engine, sql, params)
        .await?
        .first()
        .and_then(|r| r.get("n"))
        .and_then(Value::as_u64)
        .unwrap_or(0))
}

fn field_of(f: &Filter) -> Vec<&str> {
    match f {
        Filter::Equals(x, _)
        | Filter::Range { field: x, .. }
        | Filter::Exists(x)
        | Filter::Pattern(x, _) => vec![x.as_str()],
        Filter::And(v) | Filter::Or(v) | Filter::AtLeast(_, v) => {
            v.iter().flat_map(field_of).collect()
        }
        Filter::Not(f) => field_of(f),
        _ => Vec::new(),
    }
}

/// A value of a sort key as SQL compares it with the column.
fn after_value(v: &Value, sql: &mut Sql) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Number(n) => Some(sql.bind(ScalarValue::Float64(n.as_f64()))),
        Value::String(s) => Some(sql.text(s)),
        Value::Bool(b) => Some(sql.text(&b.to_string())),
        other => Some(sql.text(&other.to_string())),
    }
}

impl Service {
    /// Typed observation fields are what a record view shows: reading them takes the
    /// right to read records.
    fn require_fields(&self, fields: &[&str]) -> Result<()> {
        self.require(Action::Search)?;
        if fields
            .iter()
            .any(|f| matches!(column(f), Column::Variable(_)))
        {
            self.require(Action::Subjects)?;
        }
        Ok(())
    }

    /// A page of the documents `query` selects, in its order, and how many match.
    pub async fn documents(
        &self,
        query: &DocumentQuery,
        control: &QueryControl,
    ) -> Result<DocumentPage> {
        let mut fields = field_of(&query.filter);
        fields.extend(query.sort.iter().filter_map(|k| k.field.as_deref()));
        self.require_fields(&fields)?;
        if query.limit > MAX_DOCUMENTS {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "a page holds at most {MAX_DOCUMENTS} documents, {} asked; page with `after`",
                    query.limit
                ),
            ));
        }
        let engine = self.engine()?;
        self.bounded(control, async {
            let mut keys: Vec<SortKey> = query.sort.clone();
            if keys.is_empty() {
                keys.push(SortKey {
                    field: None,
                    descending: true,
                    missing_first: false,
                });
            }
            let mut kinds = Vec::with_capacity(keys.len());
            for k in &keys {
                kinds.push(match k.field.as_deref().map(column) {
                    Some(Column::Variable(name)) => Some(variable_kind(&engine, &name).await?),
                    _ => None,
                });
            }
            let mut sql = Sql::default();
            let condition = sql.condition(&query.filter);
            let mut texts = Vec::new();
            query.filter.positive_texts(&mut texts);
            texts.dedup();
            let exprs: Vec<SortExpr> = keys
                .iter()
                .zip(&kinds)
                .enumerate()
                .map(|(i, (k, kind))| sort_expr(i, k, *kind, &mut sql))
                .collect();
            let order: Vec<String> = keys
                .iter()
                .zip(&exprs)
                .map(|(k, e)| {
                    format!(
                        "{} {} {}",
                        e.expr,
                        if k.descending { "DESC" } else { "ASC" },
                        if k.missing_first {
                            "NULLS FIRST"
                        } else {
                            "NULLS LAST"
                        }
                    )
                })
                .chain(std::iter::once("m.id ASC".to_owned()))
                .collect();
            let after = match &query.after {
                Some(values) => after_condition(&keys, &exprs, values, &mut sql),
                None => "TRUE".to_owned(),
            };
            let joins: Vec<String> = exprs.iter().filter_map(|e| e.join.clone()).collect();
            let score_join = if texts.is_empty() {
                "LEFT JOIN (SELECT CAST(NULL AS VARCHAR) AS id, CAST(NULL AS DOUBLE) AS score, \
                 CAST(NULL AS VARCHAR) AS snippet) s ON s.id = m.id"
                    .to_owned()
            } else {
                let scoring = texts
                    .iter()
                    .map(|t| format!("({t})"))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                format!(
                    "LEFT JOIN (SELECT id, score, snippet FROM {}) s ON s.id = m.id",
                    search_call(&scoring)
                )
            };
            let key_columns: String = exprs
                .iter()
                .enumerate()
                .map(|(i, e)| format!(", {} AS sort{i}", e.expr))
                .collect();
            let page = format!(
                "WITH m AS (SELECT r.id, r.source, r.system, r.kind, r.native_id, r.parent_id, r.project, \
                                   r.subject_key, r.subject_id, r.title, r.description, r.url, r.modified_at, \
                                   {DATE} AS date \
                            FROM records r WHERE {condition}) \
                 SELECT m.id, COALESCE(s.score, 1.0) AS score, m.source, m.system, m.kind, m.subject_id, \
                        m.title, s.snippet{key_columns} \
                 FROM m {score_join} {} \
                 WHERE {after} ORDER BY {} LIMIT {} OFFSET {}",
                joins.join(" "),
                order.join(", "),
                query.limit,
                query.offset,
            );
            let count = format!("SELECT count(*) AS n FROM records r WHERE {condition}");
            let total = count_rows(&engine, &count, sql.params.clone()).await?;
            let rows = if query.limit == 0 {
                Vec::new()
            } else {
                json_rows(&engine, &page, sql.params).await?
            };
            let text =
                |r: &Map<String, Value>, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
            let documents = rows
                .iter()
                .map(|r| {
                    let mut sort: Vec<Value> = (0..keys.len())
                        .map(|i| r.get(&format!("sort{i}")).cloned().unwrap_or(Value::Null))
                        .collect();
                    sort.push(r.get("id").cloned().unwrap_or(Value::Null));
                    Document {
                        id: text(r, "id").unwrap_or_default(),
                        score: r.get("score").and_then(Value::as_f64).unwrap_or(1.0),
                        source: text(r, "source").unwrap_or_default(),
                        system: text(r, "system").unwrap_or_default(),
                        kind: text(r, "kind").unwrap_or_default(),
                        subject_id: text(r, "subject_id"),
                        title: text(r, "title").unwrap_or_default(),
                        snippet: text(r, "snippet")
                            .filter(|s| !s.is_empty())
                            .map(|s| crate::search::with_tags(&s, query.tags.as_ref())),
                        sort,
                    }
                })
                .collect();
            Ok(DocumentPage { total, documents })
        })
        .await
    }

    /// How many documents `filter` selects.
    pub async fn count_documents(&self, filter: &Filter, control: &QueryControl) -> Result<u64> {
        self.require_fields(&field_of(filter))?;
        let engine = self.engine()?;
        let mut sql = Sql::default();
        let condition = sql.condition(filter);
        let q = format!("SELECT count(*) AS n FROM records r WHERE {condition}");
        self.bounded(control, count_rows(&engine, &q, sql.params))
            .await
    }

    /// The documents `filter` selects, grouped by the keys of `field`'s values; the
    /// largest groups first (ties by key), at most `limit` of them (all: `None`), or
    /// in key order when `by_key`. Dates' keys are epoch milliseconds.
    pub async fn group_documents(
        &self,
        filter: &Filter,
        field: &str,
        key: &GroupKey,
        limit: Option<usize>,
        by_key: bool,
        control: &QueryControl,
    ) -> Result<Vec<Group>> {
        let mut fields = field_of(filter);
        fields.push(field);
        self.require_fields(&fields)?;
        let engine = self.engine()?;
        self.bounded(control, async {
            let mut sql = Sql::default();
            let condition = sql.condition(filter);
            let (values, kind) = values_of(&engine, field, &mut sql, &condition).await?;
            let k = match (key, kind) {
                (GroupKey::Value, VarKind::Date) => millis("v"),
                (GroupKey::Value, _) => "v".to_owned(),
                (GroupKey::Step { interval, offset }, VarKind::Number) => {
                    if !(interval.is_finite() && *interval > 0.0 && offset.is_finite()) {
                        return Err(ServiceError::new(
                            ErrorCode::InvalidParameter,
                            format!("a histogram's interval is a positive number, not {interval}"),
                        ));
                    }
                    format!("floor((v - {offset:?}) / {interval:?}) * {interval:?} + {offset:?}")
                }
                (GroupKey::Calendar(unit), VarKind::Date) => {
                    if !matches!(
                        unit.as_str(),
                        "year" | "quarter" | "month" | "week" | "day" | "hour" | "minute" | "second"
                    ) {
                        return Err(ServiceError::new(
                            ErrorCode::InvalidParameter,
                            format!(
                                "no calendar unit {unit:?}: year, quarter, month, week, day, hour, minute or second"
                            ),
                        ));
                    }
                    let u = sql.text(unit);
                    millis(&format!("date_trunc({u}, v)"))
                }
                (GroupKey::Fixed(ms), VarKind::Date) => {
                    if *ms <= 0 {
                        return Err(ServiceError::new(
                            ErrorCode::InvalidParameter,
                            "a fixed interval is at least a millisecond",
                        ));
                    }
                    let t = millis("v");
                    // Floor division: instants before 1970 fall in the step below.
                    format!("(({t}) - ((({t}) % {ms}) + {ms}) % {ms})")
                }
                (GroupKey::Step { .. }, _) => {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidParameter,
                        format!("a histogram needs a numeric field; {field:?} is not one"),
                    ));
                }
                (_, _) => {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidParameter,
                        format!("a date histogram needs a date field; {field:?} is not one"),
                    ));
                }
            };
            let order = if by_key { "key ASC" } else { "n DESC, key ASC" };
            let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
            // A record's own field has one value per document: no distinct count.
            let n = if matches!(column(field), Column::Variable(_)) {
                "count(DISTINCT doc)"
            } else {
                "count(*)"
            };
            let q = format!(
                "SELECT key, {n} AS n \
                 FROM (SELECT {k} AS key, doc FROM ({values}) WHERE v IS NOT NULL) \
                 GROUP BY key ORDER BY {order}{limit}"
            );
            Ok(json_rows(&engine, &q, sql.params)
                .await?
                .into_iter()
                .map(|r| Group {
                    key: r.get("key").cloned().unwrap_or(Value::Null),
                    count: r.get("n").and_then(Value::as_u64).unwrap_or(0),
                })
                .collect())
        })
        .await
    }

    /// Count, distinct count, smallest, largest, sum and mean of `field`'s values over
    /// the documents `filter` selects.
    pub async fn document_metrics(
        &self,
        filter: &Filter,
        field: &str,
        control: &QueryControl,
    ) -> Result<Metrics> {
        let mut fields = field_of(filter);
        fields.push(field);
        self.require_fields(&fields)?;
        let engine = self.engine()?;
        self.bounded(control, async {
            let mut sql = Sql::default();
            let condition = sql.condition(filter);
            let (values, kind) = values_of(&engine, field, &mut sql, &condition).await?;
            let x = match kind {
                VarKind::Date => format!("CAST({} AS DOUBLE)", millis("v")),
                VarKind::Number => "v".to_owned(),
                VarKind::Text => "CAST(NULL AS DOUBLE)".to_owned(),
            };
            let q = format!(
                "SELECT count(v) AS count, count(DISTINCT v) AS distinct_count, min({x}) AS min, \
                        max({x}) AS max, sum({x}) AS sum, avg({x}) AS avg FROM ({values})"
            );
            let rows = json_rows(&engine, &q, sql.params).await?;
            let r = rows.first().cloned().unwrap_or_default();
            let f = |k: &str| r.get(k).and_then(Value::as_f64).filter(|x| x.is_finite());
            let number = kind == VarKind::Number;
            Ok(Metrics {
                count: r.get("count").and_then(Value::as_u64).unwrap_or(0),
                distinct: r.get("distinct_count").and_then(Value::as_u64).unwrap_or(0),
                min: f("min"),
                max: f("max"),
                sum: number.then(|| f("sum").unwrap_or(0.0)),
                avg: if number { f("avg") } else { None },
                dates: kind == VarKind::Date,
            })
        })
        .await
    }

    /// The documents' record views by id, in the order asked, with their observations
    /// and links, as [`Service::record`] shows one; ids the caller cannot see are left
    /// out. Three queries whatever the number of ids (a page of a scroll holds
    /// hundreds).
    pub async fn document_sources(
        &self,
        ids: &[String],
        control: &QueryControl,
    ) -> Result<Vec<crate::RecordView>> {
        self.require(Action::Subjects)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let engine = self.engine()?;
        let mut sql = Sql::default();
        let list: Vec<String> = ids.iter().map(|i| sql.text(i)).collect();
        let list = list.join(", ");
        let records = format!(
            "SELECT id, source, system, kind, native_id, parent_id, project, subject_key, subject_id, \
                    title, description, CAST(created_at AS VARCHAR) AS created_at, \
                    CAST(modified_at AS VARCHAR) AS modified_at, attributes, url \
             FROM records WHERE id IN ({list})"
        );
        let observations = format!(
            "SELECT record_id, variable, label, value_text, value_num, \
                    CAST(value_date AS VARCHAR) AS value_date, unit, event, instance \
             FROM observations WHERE record_id IN ({list}) ORDER BY record_id, event, variable, instance"
        );
        let links = format!(
            "SELECT of, relation, id, source, kind, title FROM ( \
               SELECT b.id AS of, 'parent' AS relation, r.id, r.source, r.kind, r.title, 0 AS o \
                 FROM records b JOIN records r ON r.id = b.parent_id WHERE b.id IN ({list}) \
               UNION ALL \
               SELECT r.parent_id, 'child', r.id, r.source, r.kind, r.title, 1 \
                 FROM records r WHERE r.parent_id IN ({list}) \
               UNION ALL \
               SELECT b.id, 'same_subject', r.id, r.source, r.kind, r.title, 2 \
                 FROM records b JOIN records r ON r.subject_id = b.subject_id AND r.source <> b.source \
                 WHERE b.id IN ({list}) \
             ) ORDER BY of, o, source, kind, id"
        );
        #[derive(serde::Deserialize)]
        struct Row {
            #[serde(flatten)]
            record: crate::RecordSummary,
            url: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Obs {
            record_id: String,
            #[serde(flatten)]
            observation: crate::RecordObservation,
        }
        #[derive(serde::Deserialize)]
        struct Link {
            of: String,
            #[serde(flatten)]
            link: crate::RecordLink,
        }
        fn decode<T: serde::de::DeserializeOwned>(rows: Vec<Map<String, Value>>) -> Result<Vec<T>> {
            rows.into_iter()
                .map(|r| {
                    serde_json::from_value(Value::Object(r))
                        .map_err(|e| ServiceError::internal("decoding record views", e))
                })
                .collect()
        }
        self.bounded(control, async {
            let found: Vec<Row> = decode(json_rows(&engine, &records, sql.params.clone()).await?)?;
            let obs: Vec<Obs> =
                decode(json_rows(&engine, &observations, sql.params.clone()).await?)?;
            let links: Vec<Link> = decode(json_rows(&engine, &links, sql.params).await?)?;
            let mut by_id: BTreeMap<String, crate::RecordView> = found
                .into_iter()
                .map(|r| {
                    (
                        r.record.id.clone(),
                        crate::RecordView {
                            deep_link: r.url,
                            record: r.record,
                            observations: Vec::new(),
                            links: Vec::new(),
                        },
                    )
                })
                .collect();
            for o in obs {
                if let Some(v) = by_id.get_mut(&o.record_id) {
                    v.observations.push(o.observation);
                }
            }
            for l in links {
                if let Some(v) = by_id.get_mut(&l.of)
                    && v.links.len() < crate::subject::MAX_LINKS
                {
                    v.links.push(l.link);
                }
            }
            Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
        })
        .await
    }

    /// The fields of documents: the record's own, and each observation variable the
    /// caller may read, typed by the values it holds (`double`, `date`, else
    /// `keyword`); a variable named like a record field is `obs.<name>`.
    pub async fn document_fields(&self, control: &QueryControl) -> Result<Vec<FieldInfo>> {
        self.require(Action::Search)?;
        let mut out: Vec<FieldInfo> = RECORD_FIELDS
            .iter()
            .map(|(n, k)| FieldInfo {
                name: (*n).to_owned(),
                kind: match k {
                    Kind::Text => "text",
                    Kind::Keyword => "keyword",
                    Kind::Date => "date",
                },
            })
            .collect();
        out.push(FieldInfo {
            name: "created_at".to_owned(),
            kind: "date",
        });
        if self.require(Action::Subjects).is_err() {
            return Ok(out);
        }
        let engine = match self.engine() {
            Ok(e) => e,
            // Nothing synced yet: the record's own fields only.
            Err(e) if e.code == ErrorCode::NoIndex => return Ok(out),
            Err(e) => return Err(e),
        };
        let q = "SELECT variable, count(value_num) AS n, count(value_date) AS d, count(*) AS c \
                 FROM observations GROUP BY variable ORDER BY variable";
        let rows = self
            .bounded(control, async { json_rows(&engine, q, Vec::new()).await })
            .await?;
        let mut seen = BTreeMap::new();
        for r in rows {
            let Some(name) = r.get("variable").and_then(Value::as_str) else {
                continue;
            };
            let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
            let kind = match kind_of(n("n"), n("d"), n("c")) {
                VarKind::Number => "double",
                VarKind::Date => "date",
                VarKind::Text => "keyword",
            };
            seen.insert(field_name(name), kind);
        }
        out.extend(
            seen.into_iter()
                .map(|(name, kind)| FieldInfo { name, kind }),
        );
        Ok(out)
    }
}

/// The name a document gives an observation variable.
pub fn field_name(variable: &str) -> String {
    if is_record_field(variable) || variable.starts_with("obs.") {
        format!("obs.{variable}")
    } else {
        variable.to_owned()
    }
}

/// Documents after the one whose sort values are `values`: lexicographic over the
/// keys, the id last, each key's missing values where its order puts them.
fn after_condition(
    keys: &[SortKey],
    exprs: &[SortExpr],
    values: &[Value],
    sql: &mut Sql,
) -> String {
    let mut clause = String::new();
    let mut closing = 0;
    for (i, (k, e)) in keys.iter().zip(exprs).enumerate() {
        let Some(v) = values.get(i) else { break };
        let expr = &e.expr;
        let gt = if k.descending { "<" } else { ">" };
        let (later, same) = match after_value(v, sql) {
            Some(x) => {
                let later = if k.missing_first {
                    format!("{expr} {gt} {x}")
                } else {
                    format!("({expr} {gt} {x} OR {expr} IS NULL)")
                };
                (later, format!("{expr} = {x}"))
            }
            None => {
                let later = if k.missing_first {
                    format!("{expr} IS NOT NULL")
                } else {
                    "FALSE".to_owned()
                };
                (later, format!("{expr} IS NULL"))
            }
        };
        let _ = write!(
            clause,
            "COALESCE({later}, FALSE) OR (COALESCE({same}, FALSE) AND ("
        );
        closing += 1;
    }
    match values.get(keys.len()).and_then(Value::as_str) {
        Some(id) => {
            let id = sql.text(id);
            let _ = write!(clause, "m.id > {id}");
        }
        None => clause.push_str("FALSE"),
    }
    clause.push_str(&"))".repeat(closing));
    clause
}

/// The matched documents' values of `field` as rows `(doc, v)`, and their kind.
async fn values_of(
    engine: &QueryEngine,
    field: &str,
    sql: &mut Sql,
    condition: &str,
) -> Result<(String, VarKind)> {
    Ok(match column(field) {
        Column::Record(c, k) => (
            format!("SELECT r.id AS doc, r.{c} AS v FROM records r WHERE {condition}"),
            if k == Kind::Date {
                VarKind::Date
            } else {
                VarKind::Text
            },
        ),
        Column::Date => (
            format!("SELECT r.id AS doc, {DATE} AS v FROM records r WHERE {condition}"),
            VarKind::Date,
        ),
        Column::Variable(name) => {
            let kind = variable_kind(engine, &name).await?;
            let var = sql.text(&name);
            let value = match kind {
                VarKind::Number => "o.value_num",
                VarKind::Date => "o.value_date",
                VarKind::Text => "o.value_text",
            };
            (
                format!(
                    "SELECT o.record_id AS doc, {value} AS v FROM observations o \
                     WHERE o.variable = {var} AND o.record_id IN (SELECT r.id FROM records r WHERE {condition})"
                ),
                kind,
            )
        }
    })
}
