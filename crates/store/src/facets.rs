//! Facet counts over every hit of a search, not only the page shown: by system,
//! source, kind, project and subject, and a histogram of the hits' dates by month.
//!
//! Counted from the index's columnar (fast) fields by term ordinal, so a search that
//! matches a million records reads no stored document to count them.

use std::collections::HashMap;

use chrono::{Datelike, Utc};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use crate::subjects::SubjectIndex;

/// One value of a facet and how many hits carry it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// The value (a system, a source, a subject id, a month `YYYY-MM`, ...).
    pub value: String,
    /// Hits with that value.
    pub count: u64,
}

/// Counts of a search's hits by the values of each facet, most frequent first (ties by
/// value). A hit without a value (no project, no linked subject) is counted in none of
/// that facet's buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Facets {
    /// By system (`xnat`, `redcap`, ...).
    pub system: Vec<Bucket>,
    /// By configured source.
    pub source: Vec<Bucket>,
    /// By kind of record.
    pub kind: Vec<Bucket>,
    /// By project, the most frequent first; at most the facet size.
    pub project: Vec<Bucket>,
    /// By resolved subject, the most frequent first; at most the facet size.
    pub subject: Vec<Bucket>,
    /// By month of the record's date (created, else modified), in date order.
    pub month: Vec<Bucket>,
    /// Hits without a date.
    pub undated: u64,
}

/// One text fast field of a segment: its dictionary and each document's term ordinals.
struct TextColumn(StrColumn);

impl TextColumn {
    fn open(segment: &SegmentReader, field: &str) -> tantivy::Result<Option<TextColumn>> {
        Ok(segment.fast_fields().str(field)?.map(TextColumn))
    }

    fn first(&self, doc: DocId) -> Option<u64> {
        self.0.ords().first(doc)
    }

    fn text(&self, ord: u64) -> std::io::Result<String> {
        let mut out = String::new();
        self.0.ord_to_str(ord, &mut out)?;
        Ok(out)
    }
}

pub(crate) struct FacetCollector;

pub(crate) struct SegmentFacets {
    system: Option<TextColumn>,
    source: Option<TextColumn>,
    kind: Option<TextColumn>,
    project: Option<TextColumn>,
    subject_match: Option<TextColumn>,
    at: Option<Column<i64>>,
    by_system: HashMap<u64, u64>,
    by_source: HashMap<u64, u64>,
    by_kind: HashMap<u64, u64>,
    by_project: HashMap<u64, u64>,
    by_match: HashMap<(u64, u64), u64>,
    by_month: HashMap<i32, u64>,
    undated: u64,
}

/// What one segment counted, its ordinals turned into text.
#[derive(Default)]
pub(crate) struct Counted {
    system: HashMap<String, u64>,
    source: HashMap<String, u64>,
    kind: HashMap<String, u64>,
    project: HashMap<String, u64>,
    /// (source, subject key or title) → hits: resolved to subjects once merged.
    matched: HashMap<(String, String), u64>,
    month: HashMap<i32, u64>,
    undated: u64,
}

impl Collector for FacetCollector {
    type Fruit = Counted;
    type Child = SegmentFacets;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentFacets> {
        Ok(SegmentFacets {
            system: TextColumn::open(segment, "system")?,
            source: TextColumn::open(segment, "source")?,
            kind: TextColumn::open(segment, "kind")?,
            project: TextColumn::open(segment, "project")?,
            subject_match: TextColumn::open(segment, "subject_match")?,
            at: segment.fast_fields().i64("at").ok(),
            by_system: HashMap::new(),
            by_source: HashMap::new(),
            by_kind: HashMap::new(),
            by_project: HashMap::new(),
            by_match: HashMap::new(),
            by_month: HashMap::new(),
            undated: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Counted>) -> tantivy::Result<Counted> {
        let mut all = Counted::default();
        fn add<K: std::hash::Hash + Eq>(into: &mut HashMap<K, u64>, from: HashMap<K, u64>) {
            for (k, n) in from {
                *into.entry(k).or_default() += n;
            }
        }
        for f in fruits {
            add(&mut all.system, f.system);
            add(&mut all.source, f.source);
            add(&mut all.kind, f.kind);
            add(&mut all.project, f.project);
            add(&mut all.matched, f.matched);
            add(&mut all.month, f.month);
            all.undated += f.undated;
        }
        Ok(all)
    }
}

fn count(column: &Option<TextColumn>, doc: DocId, into: &mut HashMap<u64, u64>) -> Option<u64> {
    let ord = column.as_ref()?.first(doc)?;
    *into.entry(ord).or_default() += 1;
    Some(ord)
}

/// The month of `seconds` since the epoch, as `year * 12 + month - 1`.
fn month_of(seconds: i64) -> Option<i32> {
    let t = chrono::DateTime::<Utc>::from_timestamp(seconds, 0)?;
    Some(t.year() * 12 + t.month0() as i32)
}

impl SegmentCollector for SegmentFacets {
    type Fruit = Counted;

    fn collect(&mut self, doc: DocId, _score: Score) {
        count(&self.system, doc, &mut self.by_system);
        let source = count(&self.source, doc, &mut self.by_source);
        count(&self.kind, doc, &mut self.by_kind);
        count(&self.project, doc, &mut self.by_project);
        if let (Some(source), Some(m)) = (
            source,
            self.subject_match.as_ref().and_then(|c| c.first(doc)),
        ) {
            *self.by_match.entry((source, m)).or_default() += 1;
        }
        match self
            .at
            .as_ref()
            .and_then(|c| c.first(doc))
            .and_then(month_of)
        {
            Some(month) => *self.by_month.entry(month).or_default() += 1,
            None => self.undated += 1,
        }
    }

    fn harvest(self) -> Counted {
        let texts = |column: &Option<TextColumn>, counts: HashMap<u64, u64>| {
            let mut out = HashMap::with_capacity(counts.len());
            if let Some(c) = column {
                for (ord, n) in counts {
                    // A dictionary that cannot be read counts nothing rather than
                    // failing the search the facets only decorate.
                    if let Ok(text) = c.text(ord) {
                        *out.entry(text).or_default() += n;
                    }
                }
            }
            out
        };
        let mut matched = HashMap::with_capacity(self.by_match.len());
        if let (Some(src), Some(m)) = (&self.source, &self.subject_match) {
            for ((s, k), n) in self.by_match {
                if let (Ok(s), Ok(k)) = (src.text(s), m.text(k)) {
                    *matched.entry((s, k)).or_default() += n;
                }
            }
        }
        Counted {
            system: texts(&self.system, self.by_system),
            source: texts(&self.source, self.by_source),
            kind: texts(&self.kind, self.by_kind),
            project: texts(&self.project, self.by_project),
            matched,
            month: self.by_month,
            undated: self.undated,
        }
    }
}

/// Buckets most frequent first, ties by value; at most `size` when given.
fn buckets(counts: HashMap<String, u64>, size: Option<usize>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = counts
        .into_iter()
        .map(|(value, count)| Bucket { value, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    if let Some(size) = size {
        out.truncate(size);
    }
    out
}

impl Counted {
    /// The facets, subjects resolved through `subjects`; `size` bounds the facets with
    /// many values (project, subject).
    pub(crate) fn into_facets(self, subjects: &SubjectIndex, size: usize) -> Facets {
        let mut by_subject: HashMap<String, u64> = HashMap::new();
        for ((source, matched), n) in self.matched {
            if let Some(subject) = subjects.resolve(&source, &matched) {
                *by_subject.entry(subject.to_string()).or_default() += n;
            }
        }
        let mut months: Vec<(i32, u64)> = self.month.into_iter().collect();
        months.sort_unstable();
        Facets {
            system: buckets(self.system, None),
            source: buckets(self.source, None),
            kind: buckets(self.kind, None),
            project: buckets(self.project, Some(size)),
            subject: buckets(by_subject, Some(size)),
            month: months
                .into_iter()
                .map(|(m, count)| Bucket {
                    value: format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1),
                    count,
                })
                .collect(),
            undated: self.undated,
        }
    }
}
