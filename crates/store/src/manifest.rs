//! The manifest names the files that make up one committed state. It travels as the
//! payload of the tantivy commit, so the index and the tables switch together.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crossdex_model::Checkpoint;
use serde::{Deserialize, Serialize};

/// Version of the data directory format this build writes and reads.
/// 2: the index stores what linking matches records on, so hits carry their subject.
/// 3: system, project and the subject match are columnar, and each record has a date,
/// for facet counts and the date histogram of a search.
pub const FORMAT_VERSION: u32 = 3;

/// One committed state of the data directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Data directory format version.
    pub format: u32,
    /// Incremented by every commit; part of the names of the files it writes.
    pub generation: u64,
    /// Per configured source, what is committed of it.
    pub sources: BTreeMap<String, SourceState>,
    /// The `sync_runs` table file, relative to the tables folder.
    pub sync_runs: Option<String>,
    /// The `subject_links` table file, relative to the tables folder.
    #[serde(default)]
    pub subject_links: Option<String>,
}

/// What the store holds of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// The system the source runs.
    pub system: String,
    /// The `records` file of this source, relative to the tables folder.
    pub records: String,
    /// The `observations` file of this source, relative to the tables folder.
    pub observations: String,
    /// Number of rows in `records`.
    pub n_records: u64,
    /// Number of rows in `observations`.
    pub n_observations: u64,
    /// The connector's checkpoint, committed with the data it covers.
    pub checkpoint: Option<Checkpoint>,
    /// When the last successful sync finished.
    pub synced_at: DateTime<Utc>,
}

impl Manifest {
    /// Every table file this state references, relative to the tables folder.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.sources
            .values()
            .flat_map(|s| [s.records.as_str(), s.observations.as_str()])
            .chain(self.sync_runs.as_deref())
            .chain(self.subject_links.as_deref())
    }
}
