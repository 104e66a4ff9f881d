//! Subject resolution: which global subject a source's subject key belongs to, read once
//! per snapshot from its `subject_links` table.
//!
//! Records and observations are stored with the key their source spells; linking runs
//! after syncs and may change any key's subject. Resolving through a map held by the
//! snapshot (rather than a join planned into every query) gives every reader the same
//! answer, whatever plan a query engine picks, and lets full-text hits carry their
//! subject too.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, Float64Array, StringArray};

use crate::error::{Result, StoreError};
use crate::writer::read_parquet;

/// Keys and subjects of one committed state, both ways.
#[derive(Debug, Default)]
pub struct SubjectIndex {
    /// source → what its records carry (key, or title for title-linked sources) → subject.
    by_key: HashMap<String, HashMap<String, Arc<str>>>,
    /// subject → every `(source, matched)` linked to it.
    by_subject: HashMap<Arc<str>, Vec<(String, String)>>,
}

impl SubjectIndex {
    /// Reads the links of a `subject_links` Parquet file; links of confidence 0 (keys
    /// kept apart by a conflict) resolve to no subject.
    pub(crate) fn read(path: &Path) -> Result<SubjectIndex> {
        let mut index = SubjectIndex::default();
        for batch in read_parquet(path)? {
            let batch = batch?;
            let text = |name: &str| -> Result<&StringArray> {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                    .ok_or_else(|| StoreError::Parquet {
                        path: path.to_owned(),
                        source: parquet::errors::ParquetError::General(format!(
                            "column `{name}` missing or not text"
                        )),
                    })
            };
            let (subject, source, matched) =
                (text("subject_id")?, text("source")?, text("matched")?);
            let confidence = batch
                .column_by_name("confidence")
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
                .ok_or_else(|| StoreError::Parquet {
                    path: path.to_owned(),
                    source: parquet::errors::ParquetError::General(
                        "column `confidence` missing or not a number".into(),
                    ),
                })?;
            for i in 0..batch.num_rows() {
                if confidence.is_null(i) || confidence.value(i) <= 0.0 {
                    continue;
                }
                index.insert(source.value(i), matched.value(i), subject.value(i));
            }
        }
        Ok(index)
    }

    fn insert(&mut self, source: &str, matched: &str, subject: &str) {
        let subject: Arc<str> = match self.by_subject.get_key_value(subject) {
            Some((s, _)) => s.clone(),
            None => Arc::from(subject),
        };
        self.by_key
            .entry(source.to_owned())
            .or_default()
            .insert(matched.to_owned(), subject.clone());
        self.by_subject
            .entry(subject)
            .or_default()
            .push((source.to_owned(), matched.to_owned()));
    }

    /// The subject of what a record of `source` carries: its subject key, or its title
    /// where it has no key.
    pub fn resolve(&self, source: &str, matched: &str) -> Option<&Arc<str>> {
        self.by_key.get(source)?.get(matched)
    }

    /// The keys of one source and their subjects: for callers resolving many rows of
    /// the same source, one lookup of the source instead of one per row.
    pub fn source_keys(&self, source: &str) -> Option<&HashMap<String, Arc<str>>> {
        self.by_key.get(source)
    }

    /// Every `(source, matched)` linked to `subject_id`.
    pub fn keys_of(&self, subject_id: &str) -> &[(String, String)] {
        self.by_subject
            .get(subject_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether no key is linked.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_both_ways_and_keeps_sources_apart() {
        let mut idx = SubjectIndex::default();
        idx.insert("xnat", "INT_0042", "subj:INT-042");
        idx.insert("redcap", "42", "subj:INT-042");
        idx.insert("omero", "42", "subj:INT-777");
        assert_eq!(
            idx.resolve("xnat", "INT_0042").map(|s| &**s),
            Some("subj:INT-042")
        );
        assert_eq!(
            idx.resolve("redcap", "42").map(|s| &**s),
            Some("subj:INT-042")
        );
        assert_eq!(
            idx.resolve("omero", "42").map(|s| &**s),
            Some("subj:INT-777")
        );
        assert_eq!(idx.resolve("xnat", "42"), None);
        let mut keys = idx.keys_of("subj:INT-042").to_vec();
        keys.sort();
        assert_eq!(
            keys,
            [
                ("redcap".to_owned(), "42".to_owned()),
                ("xnat".to_owned(), "INT_0042".to_owned())
            ]
        );
        assert!(idx.keys_of("subj:nobody").is_empty());
    }
}
