//! The tantivy side of the store: schema, analyzer, documents and lookups.

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::QueryParser;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STORED, STRING, Schema, TantivyDocument, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::snippet::{Snippet, SnippetGenerator};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{DocAddress, DocSet, Index, Searcher, TERMINATED, TantivyError, Term};

use crossdex_model::Entity;

use crate::error::{Result, StoreError};

/// Name of the analyzer for free text: split on non-alphanumerics, lowercase, fold
/// accents (researchers type "echelle" for "échelle").
pub(crate) const TEXT_ANALYZER: &str = "crossdex_text";

/// The fields of the tantivy schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub id: Field,
    pub source: Field,
    pub system: Field,
    pub kind: Field,
    pub project: Field,
    pub subject_id: Field,
    pub subject_key: Field,
    pub title: Field,
    /// Everything searchable by default: the title (twice, as a weight) and the body.
    /// Indexed only; one field keeps each query word a single term query.
    pub body: Field,
    /// The body text, stored only, for snippets.
    pub content: Field,
    pub hash: Field,
}

pub(crate) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let indexed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TEXT_ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        source: b.add_text_field("source", STRING | STORED | FAST),
        system: b.add_text_field("system", STRING | STORED),
        kind: b.add_text_field("kind", STRING | STORED | FAST),
        project: b.add_text_field("project", STRING),
        subject_id: b.add_text_field("subject_id", STRING | STORED),
        subject_key: b.add_text_field("subject_key", STRING),
        title: b.add_text_field("title", indexed.clone().set_stored()),
        body: b.add_text_field("body", indexed),
        content: b.add_text_field("content", STORED),
        hash: b.add_u64_field("hash", FAST),
    };
    (b.build(), fields)
}

pub(crate) fn register_analyzer(index: &Index) {
    let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build();
    index.tokenizers().register(TEXT_ANALYZER, analyzer);
}

pub(crate) fn fields_of(schema: &Schema) -> Result<Fields, tantivy::TantivyError> {
    let f = |name: &str| schema.get_field(name);
    Ok(Fields {
        id: f("id")?,
        source: f("source")?,
        system: f("system")?,
        kind: f("kind")?,
        project: f("project")?,
        subject_id: f("subject_id")?,
        subject_key: f("subject_key")?,
        title: f("title")?,
        body: f("body")?,
        content: f("content")?,
        hash: f("hash")?,
    })
}

/// The searchable text of an entity: its keys, description and every observation as
/// `label: value`, so a search for a value finds the record that holds it.
pub(crate) fn body_text(e: &Entity) -> String {
    let r = &e.record;
    let mut s = String::with_capacity(256);
    s.push_str(&r.native_id);
    if let Some(k) = &r.subject_key {
        s.push(' ');
        s.push_str(k);
    }
    if let Some(p) = &r.project {
        s.push(' ');
        s.push_str(p);
    }
    if let Some(d) = &r.description {
        s.push('\n');
        s.push_str(d);
    }
    for o in &e.observations {
        let Some(v) = &o.value_text else { continue };
        s.push('\n');
        s.push_str(o.label.as_deref().unwrap_or(&o.variable));
        s.push_str(": ");
        s.push_str(v);
    }
    s
}

pub(crate) fn document(f: &Fields, e: &Entity, hash: u64) -> TantivyDocument {
    let r = &e.record;
    let mut d = TantivyDocument::default();
    d.add_text(f.id, &r.id);
    d.add_text(f.source, &r.source);
    d.add_text(f.system, &r.system);
    d.add_text(f.kind, &r.kind);
    if let Some(p) = &r.project {
        d.add_text(f.project, p);
    }
    if let Some(s) = &r.subject_id {
        d.add_text(f.subject_id, s);
    }
    if let Some(k) = &r.subject_key {
        d.add_text(f.subject_key, k);
    }
    d.add_text(f.title, &r.title);
    let content = body_text(e);
    let mut body = String::with_capacity(2 * r.title.len() + content.len() + 2);
    body.push_str(&r.title);
    body.push('\n');
    body.push_str(&r.title);
    body.push('\n');
    body.push_str(&content);
    d.add_text(f.body, body);
    d.add_text(f.content, content);
    d.add_u64(f.hash, hash);
    d
}

/// Content hashes of the committed documents, looked up by id, so a sync can tell
/// added, updated and unchanged entities apart without re-indexing unchanged ones.
pub(crate) struct HashLookup {
    id: Field,
    segments: Vec<LookupSegment>,
}

struct LookupSegment {
    reader: tantivy::SegmentReader,
    ids: std::sync::Arc<tantivy::InvertedIndexReader>,
    hashes: Column<u64>,
}

impl HashLookup {
    pub(crate) fn new(searcher: &Searcher, f: &Fields) -> Result<Self> {
        let mut segments = Vec::new();
        for seg in searcher.segment_readers() {
            segments.push(LookupSegment {
                reader: seg.clone(),
                ids: seg.inverted_index(f.id)?,
                hashes: seg.fast_fields().u64("hash")?,
            });
        }
        Ok(HashLookup { id: f.id, segments })
    }

    /// The content hash of the live document with this id, if any.
    pub(crate) fn get(&self, id: &str) -> Result<Option<u64>> {
        let term = Term::from_field_text(self.id, id);
        for seg in &self.segments {
            let postings = seg
                .ids
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(TantivyError::from)?;
            let Some(mut postings) = postings else {
                continue;
            };
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if !seg.reader.is_deleted(doc) {
                    return Ok(seg.hashes.first(doc));
                }
                doc = postings.advance();
            }
        }
        Ok(None)
    }
}

/// One full-text hit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Global id of the record.
    pub id: String,
    /// BM25 score; higher is better.
    pub score: f32,
    /// Source of the record.
    pub source: String,
    /// System of the record.
    pub system: String,
    /// Kind of the record.
    pub kind: String,
    /// Resolved subject, if linked.
    pub subject_id: Option<String>,
    /// Title of the record.
    pub title: String,
    /// A fragment of the matching text with the matched terms between `**`.
    pub snippet: String,
}

/// Parses `query` in the search syntax: words (all must match, in the title or the
/// body), `"phrases"`,
/// `field:value` on `source`, `system`, `kind`, `project`, `subject_id`, `subject_key`,
/// `title` and `body`, `OR`, `-exclusion`, `prefix*`.
pub(crate) fn search(
    index: &Index,
    searcher: &Searcher,
    f: &Fields,
    query: &str,
    limit: usize,
) -> Result<Vec<Hit>> {
    let mut parser = QueryParser::for_index(index, vec![f.body]);
    parser.set_conjunction_by_default();
    let parsed = parser
        .parse_query(&soften_apostrophes(query))
        .map_err(|e| StoreError::InvalidQuery {
            query: query.to_owned(),
            reason: query_error_reason(&e),
        })?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let top = searcher.search(&parsed, &TopDocs::with_limit(limit).order_by_score())?;
    let mut snippets = SnippetGenerator::create(searcher, &*parsed, f.body)?;
    snippets.set_max_num_chars(160);
    let mut hits = Vec::with_capacity(top.len());
    for (score, addr) in top {
        hits.push(hit(searcher, f, &snippets, score, addr)?);
    }
    // Equal scores come in index order, which depends on indexing threads: order them
    // by id so the same query on the same data lists the same hits the same way.
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    Ok(hits)
}

fn hit(
    searcher: &Searcher,
    f: &Fields,
    snippets: &SnippetGenerator,
    score: f32,
    addr: DocAddress,
) -> Result<Hit> {
    let doc: TantivyDocument = searcher.doc(addr)?;
    let text = |field: Field| -> String {
        doc.get_first(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let content = doc
        .get_first(f.content)
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let mut snippet = snippets.snippet(content);
    snippet.set_snippet_prefix_postfix("**", "**");
    let fragment = render_snippet(&snippet);
    Ok(Hit {
        id: text(f.id),
        score,
        source: text(f.source),
        system: text(f.system),
        kind: text(f.kind),
        subject_id: doc
            .get_first(f.subject_id)
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        title: text(f.title),
        snippet: fragment,
    })
}

fn render_snippet(s: &Snippet) -> String {
    let fragment = s.fragment();
    let mut out = String::with_capacity(fragment.len() + 16);
    let mut at = 0;
    for r in s.highlighted() {
        out.push_str(&fragment[at..r.start]);
        out.push_str("**");
        out.push_str(&fragment[r.clone()]);
        out.push_str("**");
        at = r.end;
    }
    out.push_str(&fragment[at..]);
    out.replace('\n', " / ")
}

/// An apostrophe inside a word ("Alzheimer's", "l'échelle") is a quote to the query
/// grammar but a word separator to the analyzer; treat it as the latter.
fn soften_apostrophes(query: &str) -> std::borrow::Cow<'_, str> {
    let is_apostrophe = |c: char| matches!(c, '\'' | '\u{2019}');
    if !query.contains(is_apostrophe) {
        return query.into();
    }
    let chars: Vec<char> = query.chars().collect();
    let mut out = String::with_capacity(query.len());
    for (i, &c) in chars.iter().enumerate() {
        let inside_word = i > 0
            && chars[i - 1].is_alphanumeric()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        out.push(if is_apostrophe(c) && inside_word {
            ' '
        } else {
            c
        });
    }
    out.into()
}

fn query_error_reason(e: &tantivy::query::QueryParserError) -> String {
    use tantivy::query::QueryParserError as E;
    match e {
        E::FieldDoesNotExist(field) => format!(
            "unknown field `{field}` (searchable fields: source, system, kind, project, subject_id, subject_key, title, body)"
        ),
        E::FieldNotIndexed(field) if field == "content" => {
            "unknown field `content` (searchable fields: source, system, kind, project, subject_id, subject_key, title, body)".into()
        }
        other => other.to_string(),
    }
}
