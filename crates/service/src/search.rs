//! Search with facets and highlights.

use serde::Serialize;

use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use crossdex_query::QueryEngine;

use crate::{ErrorCode, QueryControl, Result, Service, ServiceError};

/// Largest page of hits one search returns.
pub const MAX_LIMIT: usize = 10_000;

/// What a search asks for.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The query, in the search syntax of docs/search.md.
    pub query: String,
    /// Hits returned, at most [`MAX_LIMIT`].
    pub limit: usize,
    /// Hits skipped first.
    pub offset: usize,
    /// Buckets kept of the facets with many values (project, subject); `None`: no
    /// facets at all.
    pub facets: Option<usize>,
    /// Only hits with these exact values.
    pub filters: SearchFilters,
    /// Where a previous page ended (its `next_cursor`): the next page, of the same
    /// committed state even when a sync committed in between.
    pub cursor: Option<String>,
    /// What goes before and after each matched word of a snippet [default `**`].
    pub tags: Option<(String, String)>,
}

/// Exact-value filters of a search, and a date range.
#[derive(Debug, Clone, Default)]
pub struct SearchFilters {
    /// The source's name.
    pub source: Option<String>,
    /// The system.
    pub system: Option<String>,
    /// The kind of record.
    pub kind: Option<String>,
    /// The project.
    pub project: Option<String>,
    /// The subject (an id, `subj:...`, or its label).
    pub subject: Option<String>,
    /// Records dated (created, else modified) at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Records dated before this time.
    pub to: Option<DateTime<Utc>>,
}

impl SearchRequest {
    /// The first `limit` hits of `query`, with facets of 10 buckets.
    pub fn new(query: impl Into<String>, limit: usize) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            limit,
            offset: 0,
            facets: Some(10),
            filters: SearchFilters::default(),
            cursor: None,
            tags: None,
        }
    }
}

/// One value of a facet and how many hits carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Bucket {
    /// The value (a system, a source, a subject id, a month `YYYY-MM`, ...).
    pub value: String,
    /// Hits with that value.
    pub count: u64,
}

/// Counts of a search's hits by the values of each facet, most frequent first (ties by
/// value); a hit without a value (no project, no linked subject) is in none of that
/// facet's buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Facets {
    /// By system.
    pub system: Vec<Bucket>,
    /// By source.
    pub source: Vec<Bucket>,
    /// By kind of record.
    pub kind: Vec<Bucket>,
    /// By project, the most frequent first, at most the facet size.
    pub project: Vec<Bucket>,
    /// By linked subject, the most frequent first, at most the facet size.
    pub subject: Vec<Bucket>,
    /// By month (`YYYY-MM`) of the record's date, created else modified, in date order.
    pub month: Vec<Bucket>,
    /// Hits without a date.
    pub undated: u64,
}

impl From<crossdex_query::Facets> for Facets {
    fn from(f: crossdex_query::Facets) -> Self {
        let b = |v: Vec<crossdex_query::Bucket>| {
            v.into_iter()
                .map(|b| Bucket {
                    value: b.value,
                    count: b.count,
                })
                .collect()
        };
        Facets {
            system: b(f.system),
            source: b(f.source),
            kind: b(f.kind),
            project: b(f.project),
            subject: b(f.subject),
            month: b(f.month),
            undated: f.undated,
        }
    }
}

/// One hit.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// The record's id (`records.id`).
    pub id: String,
    /// Relevance (BM25); higher is better.
    pub score: f32,
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
    /// A fragment of the matching text, the matched words between `**`.
    pub snippet: String,
    /// The words the query matched in the fragment, in order, as they are written.
    pub highlights: Vec<String>,
}

/// A page of hits, how many match in all, and facets over all of them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SearchResult {
    /// The query as asked.
    pub query: String,
    /// Records matched in all.
    pub total: usize,
    /// Hits skipped before this page.
    pub offset: usize,
    /// This page, best first.
    pub hits: Vec<SearchHit>,
    /// Counts over every hit, not only this page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<Facets>,
    /// Pass it back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// How long a cursor keeps the state its search read.
const CURSOR_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// States kept for cursors at most; the oldest goes first.
const MAX_PINNED: usize = 32;

/// The filters as `(field, value)` pairs of the search syntax's fields.
fn filter_terms(f: &SearchFilters) -> Vec<(String, String)> {
    [
        ("source", &f.source),
        ("system", &f.system),
        ("kind", &f.kind),
        ("project", &f.project),
        ("subject_id", &f.subject),
    ]
    .into_iter()
    .filter_map(|(field, v)| Some((field.to_owned(), v.clone()?)))
    .collect()
}

pub(crate) fn with_tags(snippet: &str, tags: Option<&(String, String)>) -> String {
    let Some((pre, post)) = tags else {
        return snippet.to_owned();
    };
    let mut out = String::with_capacity(snippet.len() + 16);
    for (i, part) in snippet.split("**").enumerate() {
        if i > 0 {
            out.push_str(if i % 2 == 1 { pre } else { post });
        }
        out.push_str(part);
    }
    out
}

fn parse_cursor(cursor: &str) -> Option<(u64, usize)> {
    let (snapshot, offset) = cursor.strip_prefix('c')?.split_once('.')?;
    Some((
        u64::from_str_radix(snapshot, 16).ok()?,
        usize::from_str_radix(offset, 16).ok()?,
    ))
}

/// The `**marked**` words of a snippet.
fn marked(snippet: &str) -> Vec<String> {
    snippet
        .split("**")
        .skip(1)
        .step_by(2)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Service {
    /// Keeps `engine` for cursors, under an id; the same engine keeps its id.
    fn pin(&self, engine: &Arc<QueryEngine>) -> u64 {
        let mut pins = self.inner.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.retain(|p| p.since.elapsed() < CURSOR_TTL);
        if let Some(p) = pins.iter_mut().find(|p| Arc::ptr_eq(&p.engine, engine)) {
            p.since = Instant::now();
            return p.id;
        }
        let id = pins.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        if pins.len() >= MAX_PINNED {
            pins.remove(0);
        }
        pins.push(crate::Pinned {
            id,
            since: Instant::now(),
            engine: engine.clone(),
        });
        id
    }

    fn pinned(&self, id: u64) -> Option<Arc<QueryEngine>> {
        let mut pins = self.inner.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.retain(|p| p.since.elapsed() < CURSOR_TTL);
        // A cursor reads within the scope it was made in: another token's cursor reads
        // as unknown, whatever it would have shown.
        let scope = self.principal().scope.read_scope();
        pins.iter()
            .find(|p| p.id == id && *p.engine.scope() == scope)
            .map(|p| p.engine.clone())
    }

    /// Full-text search with facets and highlights.
    pub async fn search(
        &self,
        request: &SearchRequest,
        control: &QueryControl,
    ) -> Result<SearchResult> {
        self.require(crate::Action::Search)?;
        if request.limit > MAX_LIMIT {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "a page holds at most {MAX_LIMIT} hits, {} asked; page with an offset, or use SQL's search() for bulk",
                    request.limit
                ),
            ));
        }
        let (engine, snapshot, offset) = match &request.cursor {
            None => {
                let engine = self.engine()?;
                let id = self.pin(&engine);
                (engine, id, request.offset)
            }
            Some(c) => {
                let (id, offset) = parse_cursor(c).ok_or_else(|| {
                    ServiceError::new(
                        ErrorCode::InvalidParameter,
                        "not a cursor of this server: pass `next_cursor` as it was given",
                    )
                })?;
                let engine = self.pinned(id).ok_or_else(|| {
                    ServiceError::new(
                        ErrorCode::CursorExpired,
                        "the cursor expired (cursors last 10 minutes); run the search again",
                    )
                })?;
                (engine, id, offset)
            }
        };
        let f = &request.filters;
        let seconds = |t: &Option<DateTime<Utc>>| t.map(|t| t.timestamp());
        let dates = (f.from.is_some() || f.to.is_some()).then(|| {
            (
                seconds(&f.from).map_or(Bound::Unbounded, Bound::Included),
                seconds(&f.to).map_or(Bound::Unbounded, Bound::Excluded),
            )
        });
        let options = crossdex_query::SearchOptions {
            limit: request.limit,
            offset,
            facets: request.facets,
            dates,
            filters: filter_terms(f),
            // The engine puts the principal's scope here.
            restriction: Default::default(),
            snippets: true,
        };
        let query = request.query.clone();
        // The index is read on a blocking thread: a search of a large index must not
        // hold up the runtime's other requests. A cancelled or timed-out search
        // returns at once; its thread finishes the segment it reads and is dropped.
        let page = self
            .bounded(control, async move {
                tokio::task::spawn_blocking(move || engine.search_page(&query, options))
                    .await
                    .map_err(|e| ServiceError::internal("searching", e))?
                    .map_err(ServiceError::from)
            })
            .await?;
        let end = offset + page.hits.len();
        let next_cursor =
            (end < page.total && !page.hits.is_empty()).then(|| format!("c{snapshot:x}.{end:x}"));
        let tags = request.tags.as_ref();
        Ok(SearchResult {
            query: request.query.clone(),
            total: page.total,
            offset,
            hits: page
                .hits
                .into_iter()
                .map(|h| SearchHit {
                    highlights: marked(&h.snippet),
                    id: h.id,
                    score: h.score,
                    source: h.source,
                    system: h.system,
                    kind: h.kind,
                    subject_id: h.subject_id,
                    title: h.title,
                    snippet: with_tags(&h.snippet, tags),
                })
                .collect(),
            facets: page.facets.map(Facets::from),
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn highlights_are_the_marked_words() {
        assert_eq!(
            super::marked("left **hippocampus** volume, **Hippocampal**"),
            vec!["hippocampus", "Hippocampal"]
        );
        assert!(super::marked("no marks").is_empty());
    }
}
