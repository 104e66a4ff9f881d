//! Search with facets and highlights.

use serde::Serialize;

use crate::{ErrorCode, Facets, QueryControl, Result, Service, ServiceError};

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
}

impl SearchRequest {
    /// The first `limit` hits of `query`, with facets of 10 buckets.
    pub fn new(query: impl Into<String>, limit: usize) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            limit,
            offset: 0,
            facets: Some(10),
        }
    }
}

/// One hit.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    /// Full-text search with facets and highlights.
    pub async fn search(
        &self,
        request: &SearchRequest,
        control: &QueryControl,
    ) -> Result<SearchResult> {
        if request.limit > MAX_LIMIT {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "a page holds at most {MAX_LIMIT} hits, {} asked; page with an offset, or use SQL's search() for bulk",
                    request.limit
                ),
            ));
        }
        let engine = self.engine()?;
        let options = crossdex_query::SearchOptions {
            limit: request.limit,
            offset: request.offset,
            facets: request.facets,
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
        Ok(SearchResult {
            query: request.query.clone(),
            total: page.total,
            offset: request.offset,
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
                    snippet: h.snippet,
                })
                .collect(),
            facets: page.facets,
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
