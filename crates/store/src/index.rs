//! The tantivy side of the store: schema, analyzer, documents and lookups.

use crate::sensitive::Sensitive;
use std::collections::BTreeMap;
use tantivy::collector::{Count, TopDocs};
use tantivy::columnar::Column;

use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, EmptyQuery, FuzzyTermQuery, Occur, PhrasePrefixQuery,
    PhraseQuery, Query, RangeQuery, RegexQuery, TermQuery,
};
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
use crate::facets::{FacetCollector, Facets};
use crate::subjects::SubjectIndex;
use crate::syntax::{self, Node, TermKind};

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
    /// What linking matches a record on: its subject key, or its title where it has
    /// none. Stored, so a hit's subject is resolved from the snapshot's links.
    pub subject_match: Field,
    pub subject_key: Field,
    pub title: Field,
    /// Everything searchable by default: the title (twice, as a weight) and the body.
    /// Indexed only; one field keeps each query word a single term query.
    pub body: Field,
    /// The body text, stored only, for snippets.
    pub content: Field,
    pub hash: Field,
    /// A hash of the id: breaks ties between equal scores the same way whatever the
    /// segments' layout, so a limit cuts the same hits on every run.
    pub id_order: Field,
    /// The record's date (created, else modified) in seconds since the epoch, for the
    /// histogram of a search's hits.
    pub at: Field,
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
        system: b.add_text_field("system", STRING | STORED | FAST),
        kind: b.add_text_field("kind", STRING | STORED | FAST),
        project: b.add_text_field("project", STRING | FAST),
        subject_match: b.add_text_field("subject_match", STRING | STORED | FAST),
        subject_key: b.add_text_field("subject_key", STRING),
        title: b.add_text_field("title", indexed.clone().set_stored()),
        body: b.add_text_field("body", indexed),
        content: b.add_text_field("content", STORED),
        hash: b.add_u64_field("hash", FAST),
        id_order: b.add_u64_field("id_order", FAST),
        at: b.add_i64_field("at", FAST),
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
        subject_match: f("subject_match")?,
        subject_key: f("subject_key")?,
        title: f("title")?,
        body: f("body")?,
        content: f("content")?,
        hash: f("hash")?,
        id_order: f("id_order")?,
        at: f("at")?,
    })
}

/// The searchable text of an entity: its keys, description and every observation as
/// `label: value`, so a search for a value finds the record that holds it.
pub(crate) fn body_text(e: &Entity, sensitive: &Sensitive) -> String {
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
        // Personal data stays out of the index: no reader's search can find it.
        if sensitive.is_sensitive(&r.source, &o.variable) {
            continue;
        }
        s.push('\n');
        s.push_str(o.label.as_deref().unwrap_or(&o.variable));
        s.push_str(": ");
        s.push_str(v);
    }
    s
}

pub(crate) fn document(
    f: &Fields,
    e: &Entity,
    hash: u64,
    sensitive: &Sensitive,
) -> TantivyDocument {
    let r = &e.record;
    let mut d = TantivyDocument::default();
    d.add_text(f.id, &r.id);
    d.add_text(f.source, &r.source);
    d.add_text(f.system, &r.system);
    d.add_text(f.kind, &r.kind);
    if let Some(p) = &r.project {
        d.add_text(f.project, p);
    }
    d.add_text(
        f.subject_match,
        r.subject_key.as_deref().unwrap_or(&r.title),
    );
    if let Some(k) = &r.subject_key {
        d.add_text(f.subject_key, k);
    }
    d.add_text(f.title, &r.title);
    let content = body_text(e, sensitive);
    let mut body = String::with_capacity(2 * r.title.len() + content.len() + 2);
    body.push_str(&r.title);
    body.push('\n');
    body.push_str(&r.title);
    body.push('\n');
    body.push_str(&content);
    d.add_text(f.body, body);
    d.add_text(f.content, content);
    d.add_u64(f.hash, hash);
    d.add_u64(f.id_order, xxhash_rust::xxh3::xxh3_64(r.id.as_bytes()));
    if let Some(at) = r.created_at.or(r.modified_at) {
        d.add_i64(f.at, at.timestamp());
    }
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

/// Runs `query` (the search syntax of `syntax.rs`, documented in `docs/search.md`): at
/// most `limit` hits, best first, each with its subject resolved through `subjects`.
pub(crate) fn search(
    index: &Index,
    searcher: &Searcher,
    f: &Fields,
    subjects: &SubjectIndex,
    query: &str,
    options: SearchOptions,
) -> Result<SearchPage> {
    let SearchOptions {
        limit,
        offset,
        facets,
        dates,
        filters,
        restriction,
        snippets: with_snippets,
    } = options;
    let invalid = |reason: String, position: Option<usize>| StoreError::InvalidQuery {
        query: query.to_owned(),
        reason,
        position,
    };
    let node = syntax::parse(query).map_err(|e| invalid(e.reason, Some(e.position)))?;
    let analyzer = index
        .tokenizers()
        .get(TEXT_ANALYZER)
        .ok_or_else(|| invalid("the index has no text analyzer".into(), None))?;
    let mut compiler = Compiler {
        f,
        subjects,
        analyzer,
        highlights: Vec::new(),
    };
    let mut compiled = compiler
        .compile(&node)
        .map_err(|reason| invalid(reason, None))?;
    // Filters keep or drop hits, weighted 0: the query alone scores, and highlights.
    let kept = compiler.highlights.len();
    let mut clauses = Vec::new();
    for (field, value) in &filters {
        let q = compiler
            .term(Some(field), value, TermKind::Phrase)
            .map_err(|reason| invalid(format!("filter {field}={value:?}: {reason}"), None))?;
        clauses.push((
            Occur::Must,
            Box::new(BoostQuery::new(q, 0.0)) as Box<dyn Query>,
        ));
    }
    // The reader's scope, the same way: each list is one clause any of its values meets.
    for (field, allowed) in [
        ("source", &restriction.sources),
        ("project", &restriction.projects),
    ] {
        let Some(allowed) = allowed else { continue };
        let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for value in allowed {
            let q = compiler
                .term(Some(field), value, TermKind::Phrase)
                .map_err(|reason| invalid(format!("scope {field}={value:?}: {reason}"), None))?;
            any.push((Occur::Should, q));
        }
        let q: Box<dyn Query> = if any.is_empty() {
            Box::new(tantivy::query::EmptyQuery)
        } else {
            Box::new(BooleanQuery::new(any))
        };
        clauses.push((Occur::Must, Box::new(BoostQuery::new(q, 0.0))));
    }
    compiler.highlights.truncate(kept);
    if !clauses.is_empty() {
        clauses.insert(0, (Occur::Must, compiled));
        compiled = Box::new(BooleanQuery::new(clauses));
    }
    if let Some((from, to)) = dates {
        let bound = |b: std::ops::Bound<i64>| b.map(|t| Term::from_field_i64(f.at, t));
        // Weighted 0: the filter keeps or drops a hit, it never changes its score.
        let range: Box<dyn Query> = Box::new(BoostQuery::new(
            Box::new(RangeQuery::new(bound(from), bound(to))),
            0.0,
        ));
        compiled = Box::new(BooleanQuery::new(vec![
            (Occur::Must, compiled),
            (Occur::Must, range),
        ]));
    }
    // No query has more hits than there are records: an absurd limit is not an
    // allocation of that size.
    let num_docs = usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX);
    let limit = limit.min(num_docs.saturating_sub(offset));
    let facet_collector = facets.map(|_| FacetCollector);
    if limit == 0 {
        let (total, counted) = searcher.search(&*compiled, &(Count, facet_collector))?;
        return Ok(SearchPage {
            total,
            hits: Vec::new(),
            facets: counted
                .zip(facets)
                .map(|(c, size)| c.into_facets(subjects, size)),
        });
    }
    // Best score first; among equal scores, the id's hash decides, not where the
    // document sits in the index.
    let by_score_then_id = TopDocs::with_limit(limit).and_offset(offset).tweak_score(
        |segment: &tantivy::SegmentReader| {
            let order = segment
                .fast_fields()
                .u64("id_order")
                .ok()
                .map(|c| c.first_or_default_col(0));
            move |doc: tantivy::DocId, score: tantivy::Score| {
                (
                    score,
                    std::cmp::Reverse(order.as_ref().map_or(0, |c| c.get_val(doc))),
                )
            }
        },
    );
    let (top, total, counted) =
        searcher.search(&*compiled, &(by_score_then_id, Count, facet_collector))?;
    let snippets = if with_snippets {
        Some(compiler.snippets(searcher)?)
    } else {
        None
    };
    let mut hits = Vec::with_capacity(top.len());
    for ((score, _), addr) in top {
        hits.push(hit(searcher, f, subjects, snippets.as_ref(), score, addr)?);
    }
    // Equal scores come in index order, which depends on indexing threads: order them
    // by id so the same query on the same data lists the same hits the same way.
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    Ok(SearchPage {
        hits,
        total,
        facets: counted
            .zip(facets)
            .map(|(c, size)| c.into_facets(subjects, size)),
    })
}

/// What a search asks for besides its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOptions {
    /// At most this many hits.
    pub limit: usize,
    /// Hits skipped first, for the pages after the first.
    pub offset: usize,
    /// Facet counts over every hit, the facets with many values (project, subject)
    /// cut to this many buckets; `None`: no facets.
    pub facets: Option<usize>,
    /// Only records dated (created, else modified) within these bounds, in seconds
    /// since the epoch; an undated record is outside any range.
    pub dates: Option<(std::ops::Bound<i64>, std::ops::Bound<i64>)>,
    /// Only records with these exact values: `(field, value)` of the fields the
    /// syntax's `field:` takes (`source`, `system`, `kind`, `project`, `subject_id`, ...).
    pub filters: Vec<(String, String)>,
    /// What the reader may see at all; hits, totals and facets never go past it.
    pub restriction: Restriction,
    /// Each hit's snippet; without, snippets are empty and cost nothing (a join on
    /// hit ids needs none).
    pub snippets: bool,
}

/// The records one reader may see: of these sources and projects only (`None`: any).
/// A record without a project is outside any list of projects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Restriction {
    /// Sources in scope.
    pub sources: Option<std::collections::BTreeSet<String>>,
    /// Projects in scope.
    pub projects: Option<std::collections::BTreeSet<String>>,
}

impl Restriction {
    /// Whether it lets everything through.
    pub fn is_none(&self) -> bool {
        self.sources.is_none() && self.projects.is_none()
    }
}

impl SearchOptions {
    /// The first `limit` hits, no facets.
    pub fn top(limit: usize) -> SearchOptions {
        SearchOptions {
            limit,
            offset: 0,
            facets: None,
            dates: None,
            filters: Vec::new(),
            restriction: Restriction::default(),
            snippets: true,
        }
    }
}

/// The best hits of a search, and how many records match in all.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SearchPage {
    /// At most the limit's worth of hits, best first.
    pub hits: Vec<Hit>,
    /// Every record the query matches, shown or not.
    pub total: usize,
    /// Counts over every hit, when asked for.
    pub facets: Option<Facets>,
}

/// How many typos a word tolerates, by its length in characters, as researchers know
/// from Meilisearch: none below 5, one from 5, two from 9.
pub(crate) fn typos_allowed(word: &str) -> u8 {
    match word.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// What a compiled query matched in the text, for highlighting.
enum Highlight {
    Exact(String),
    /// Every indexed word the automaton of this fuzzy or prefix query accepts.
    Expanded(FuzzyTermQuery),
}

struct Compiler<'a> {
    f: &'a Fields,
    subjects: &'a SubjectIndex,
    analyzer: TextAnalyzer,
    highlights: Vec<Highlight>,
}

impl Compiler<'_> {
    fn compile(&mut self, node: &Node) -> Result<Box<dyn Query>, String> {
        Ok(match node {
            Node::All => Box::new(AllQuery),
            Node::Or(alternatives) => Box::new(BooleanQuery::new(
                alternatives
                    .iter()
                    .map(|n| Ok((Occur::Should, self.compile(n)?)))
                    .collect::<Result<_, String>>()?,
            )),
            Node::And { must, must_not } => {
                let mut clauses = Vec::with_capacity(must.len() + must_not.len() + 1);
                for n in must {
                    clauses.push((Occur::Must, self.compile(n)?));
                }
                if must.is_empty() {
                    // `-csf` alone: everything but what it excludes.
                    clauses.push((Occur::Must, Box::new(AllQuery) as Box<dyn Query>));
                }
                // What is excluded is not highlighted.
                let kept = self.highlights.len();
                for n in must_not {
                    clauses.push((Occur::MustNot, self.compile(n)?));
                }
                self.highlights.truncate(kept);
                Box::new(BooleanQuery::new(clauses))
            }
            Node::Term { field, text, kind } => self.term(field.as_deref(), text, *kind)?,
        })
    }

    fn term(
        &mut self,
        field: Option<&str>,
        text: &str,
        kind: TermKind,
    ) -> Result<Box<dyn Query>, String> {
        let f = self.f;
        let keyword = match field {
            None | Some("body") => return Ok(self.text(f.body, text, kind)),
            Some("title") => return Ok(self.text(f.title, text, kind)),
            Some("source") => f.source,
            Some("system") => f.system,
            Some("kind") => f.kind,
            Some("project") => f.project,
            Some("subject_key") => f.subject_key,
            Some("subject_id") => {
                if kind == TermKind::Prefix {
                    return Err(format!(
                        "`subject_id:` takes a whole subject id, not a prefix (`{text}*`)"
                    ));
                }
                return Ok(self.subject(text));
            }
            Some(other) => return Err(format!("unknown field `{other}`")),
        };
        Ok(match kind {
            TermKind::Prefix => Box::new(
                RegexQuery::from_pattern(&format!("{}.*", regex_escape(text)), keyword)
                    .map_err(|e| format!("cannot search for `{text}*`: {e}"))?,
            ),
            TermKind::Word | TermKind::Phrase => Box::new(TermQuery::new(
                Term::from_field_text(keyword, text),
                IndexRecordOption::Basic,
            )),
        })
    }

    /// Records whose key (or title, for title-linked sources) is linked to `subject`;
    /// `INT-042` stands for `subj:INT-042`.
    fn subject(&self, subject: &str) -> Box<dyn Query> {
        let mut keys = self.subjects.keys_of(subject);
        if keys.is_empty() && !subject.starts_with("subj:") {
            keys = self.subjects.keys_of(&format!("subj:{subject}"));
        }
        let f = self.f;
        let exact = |field: Field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        Box::new(BooleanQuery::new(
            keys.iter()
                .map(|(source, matched)| {
                    let both: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
                        (Occur::Must, exact(f.source, source)),
                        (Occur::Must, exact(f.subject_match, matched)),
                    ]));
                    (Occur::Should, both)
                })
                .collect(),
        ))
    }

    fn text(&mut self, field: Field, text: &str, kind: TermKind) -> Box<dyn Query> {
        let mut tokens = Vec::new();
        self.analyzer
            .token_stream(text)
            .process(&mut |t| tokens.push(t.text.clone()));
        let terms: Vec<Term> = tokens
            .iter()
            .map(|t| Term::from_field_text(field, t))
            .collect();
        let highlight = field == self.f.body || field == self.f.title;
        match (kind, terms.len()) {
            // Nothing searchable (`--`, `·`): it matches nothing rather than everything.
            (_, 0) => Box::new(EmptyQuery),
            (TermKind::Prefix, 1) => {
                let q = FuzzyTermQuery::new_prefix(terms[0].clone(), 0, true);
                if highlight {
                    self.highlights.push(Highlight::Expanded(q.clone()));
                }
                Box::new(q)
            }
            (TermKind::Prefix, _) => {
                if highlight {
                    self.highlights
                        .extend(tokens.iter().map(|t| Highlight::Exact(t.clone())));
                }
                Box::new(PhrasePrefixQuery::new(terms))
            }
            (TermKind::Word, 1) => {
                let typos = typos_allowed(&tokens[0]);
                if highlight {
                    self.highlights.push(Highlight::Exact(tokens[0].clone()));
                }
                let exact: Box<dyn Query> = Box::new(TermQuery::new(
                    terms[0].clone(),
                    IndexRecordOption::WithFreqs,
                ));
                if typos == 0 {
                    return exact;
                }
                let fuzzy = FuzzyTermQuery::new(terms[0].clone(), typos, true);
                if highlight {
                    self.highlights.push(Highlight::Expanded(fuzzy.clone()));
                }
                // A fuzzy match scores a constant; an exact one adds its BM25 score on
                // top, so exact matches come first.
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, exact),
                    (Occur::Should, Box::new(fuzzy)),
                ]))
            }
            (TermKind::Phrase, 1) => {
                if highlight {
                    self.highlights.push(Highlight::Exact(tokens[0].clone()));
                }
                Box::new(TermQuery::new(
                    terms[0].clone(),
                    IndexRecordOption::WithFreqs,
                ))
            }
            (TermKind::Phrase | TermKind::Word, _) => {
                if highlight {
                    self.highlights
                        .extend(tokens.iter().map(|t| Highlight::Exact(t.clone())));
                }
                Box::new(PhraseQuery::new(terms))
            }
        }
    }

    /// A snippet generator that highlights every word the query matched, including
    /// those found through a typo or a prefix.
    fn snippets(&self, searcher: &Searcher) -> Result<SnippetGenerator> {
        /// A prefix such as `a*` can match thousands of words; a snippet needs few.
        const MAX_EXPANDED: usize = 256;
        let mut words: BTreeMap<String, f32> = BTreeMap::new();
        for h in &self.highlights {
            match h {
                Highlight::Exact(w) => {
                    words.insert(w.clone(), 1.0);
                }
                Highlight::Expanded(q) => {
                    for seg in searcher.segment_readers() {
                        let terms = seg.inverted_index(self.f.body)?;
                        let mut stream = terms
                            .terms()
                            .search(q.automaton()?)
                            .into_stream()
                            .map_err(TantivyError::from)?;
                        let mut n = 0;
                        while n < MAX_EXPANDED && stream.advance() {
                            if let Ok(w) = std::str::from_utf8(stream.key()) {
                                words.insert(w.to_owned(), 0.5);
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        let mut g = SnippetGenerator::new(words, self.analyzer.clone(), self.f.body, 160);
        g.set_max_num_chars(160);
        Ok(g)
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~\"".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hit(
    searcher: &Searcher,
    f: &Fields,
    subjects: &SubjectIndex,
    snippets: Option<&SnippetGenerator>,
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
    let fragment = match snippets {
        Some(snippets) => {
            let content = doc
                .get_first(f.content)
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let mut snippet = snippets.snippet(content);
            snippet.set_snippet_prefix_postfix("**", "**");
            render_snippet(&snippet)
        }
        None => String::new(),
    };
    let source = text(f.source);
    let subject_id = doc
        .get_first(f.subject_match)
        .and_then(|v| v.as_str())
        .and_then(|m| subjects.resolve(&source, m))
        .map(|s| s.to_string());
    Ok(Hit {
        id: text(f.id),
        score,
        source,
        system: text(f.system),
        kind: text(f.kind),
        subject_id,
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
