//! The crossdex data directory: a tantivy full-text index beside Parquet tables, kept
//! consistent with each other.
//!
//! ```text
//! <data_dir>/
//!   crossdex.lock                     write lock (one writer process at a time)
//!   index/                            tantivy index; its commit payload is the manifest
//!   tables/records/<source>.<gen>.parquet
//!   tables/observations/<source>.<gen>.parquet
//!   tables/sync_runs.<gen>.parquet
//! ```
//!
//! The manifest (which files make up the current state, and each source's checkpoint)
//! is stored as the payload of the tantivy commit. A sync writes new files under new
//! names, then commits the index with the new manifest: one atomic rename switches
//! the index and the tables together (invariant 1). Readers take a [`Snapshot`] and see
//! one committed state from start to end.
//!
//! This crate owns the on-disk format. It knows nothing of source systems, SQL or
//! HTTP: it stores [`crossdex_model::Entity`] values and answers full-text searches.

#![warn(missing_docs)]

mod error;
mod facets;
mod index;
mod lock;
mod manifest;
mod reader_dir;
mod runs;
mod sensitive;
mod subjects;
mod syntax;
mod tables;
mod writer;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use tantivy::directory::MmapDirectory;
use tantivy::{Index, ReloadPolicy, Searcher};

pub use error::{Result, StoreError};
pub use facets::{Bucket, Facets};
pub use index::{Hit, Restriction, SearchOptions, SearchPage};
pub use manifest::{FORMAT_VERSION, Manifest, SourceState};
pub use runs::{Counts, MAX_KEPT_REJECTIONS, RunStatus, SyncRun};
pub use sensitive::{DEFAULT_SENSITIVE, Sensitive};
pub use subjects::SubjectIndex;
pub use syntax::SyntaxError;
pub use tables::{
    OBSERVATIONS_SCHEMA, RECORDS_SCHEMA, SUBJECT_LINKS_SCHEMA, SYNC_RUNS_SCHEMA, SubjectLink,
};
pub use writer::{SyncTxn, Writer};

/// The tables the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `records`
    Records,
    /// `observations`
    Observations,
    /// `sync_runs`
    SyncRuns,
    /// `subject_links`
    SubjectLinks,
}

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    pub root: PathBuf,
    pub index: PathBuf,
    pub tables: PathBuf,
}

impl DataDir {
    pub(crate) fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_owned(),
            index: root.join("index"),
            tables: root.join("tables"),
        }
    }

    pub(crate) fn records(&self) -> PathBuf {
        self.tables.join("records")
    }

    pub(crate) fn observations(&self) -> PathBuf {
        self.tables.join("observations")
    }

    pub(crate) fn corrupt(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.root.clone(),
            reason: reason.to_string(),
        }
    }

    fn has_index(&self) -> bool {
        self.index.join("meta.json").exists()
    }

    /// What crossdex creates in a data directory; a folder holding anything else is
    /// not one.
    const OWN_ENTRIES: &[&str] = &[
        "index",
        "tables",
        "spool",
        "crossdex.lock",
        "access",
        "audit",
    ];

    /// Refuses a folder that holds files of someone else's, before anything is written
    /// into it: a new, empty or crossdex folder is fine.
    pub(crate) fn check_ours(&self) -> Result<()> {
        let not_ours = |reason: String| StoreError::NotOurs {
            path: self.root.clone(),
            reason,
        };
        match fs::metadata(&self.root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("cannot read", &self.root, e)),
            Ok(m) if !m.is_dir() => return Err(not_ours("it is a file".into())),
            Ok(_) => {}
        }
        if self.has_index() {
            return Ok(());
        }
        let entries =
            fs::read_dir(&self.root).map_err(|e| StoreError::io("cannot read", &self.root, e))?;
        let mut foreign: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !Self::OWN_ENTRIES.contains(&n.as_str()))
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        foreign.sort();
        let more = foreign.len().saturating_sub(3);
        foreign.truncate(3);
        let mut listed = foreign.join(", ");
        if more > 0 {
            listed.push_str(&format!(" and {more} more"));
        }
        Err(not_ours(format!("it holds {listed} and no crossdex index")))
    }

    /// Opens the index for reading: read access to the folder is enough.
    fn open_index_for_reading(&self) -> Result<Index> {
        let directory = reader_dir::ReaderDirectory::open(&self.index)
            .map_err(|e| self.corrupt(format!("cannot open index folder: {e}")))?;
        let index = Index::open(directory)?;
        self.check_schema(index)
    }

    fn open_index(&self) -> Result<Index> {
        let index = Index::open_in_dir(&self.index)?;
        self.check_schema(index)
    }

    fn check_schema(&self, index: Index) -> Result<Index> {
        index::register_analyzer(&index);
        if let Err(e) = index::fields_of(&index.schema()) {
            return Err(self.corrupt(format!(
                "its index was written by an incompatible version of crossdex ({e}); sync into a new data directory, or remove {} and sync again",
                self.root.display()
            )));
        }
        Ok(index)
    }

    pub(crate) fn open_or_create_index(&self) -> Result<Index> {
        if self.has_index() {
            return self.open_index();
        }
        let (schema, _) = index::schema();
        let directory = MmapDirectory::open(&self.index)
            .map_err(|e| self.corrupt(format!("cannot open index folder: {e}")))?;
        let index = Index::create(directory, schema, Default::default())?;
        index::register_analyzer(&index);
        Ok(index)
    }

    /// tantivy writes its metadata files readable by their owner only; readers of the
    /// data directory need to read them too. They get the folder's own read rights,
    /// so a folder kept private stays private.
    pub(crate) fn share_index_metadata(&self) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let Ok(folder) = fs::metadata(&self.index) else {
                return;
            };
            let mode = folder.permissions().mode() & 0o666;
            for name in ["meta.json", ".managed.json"] {
                let path = self.index.join(name);
                if let Ok(m) = fs::metadata(&path)
                    && m.permissions().mode() & 0o777 != mode | 0o600
                {
                    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o600));
                }
            }
        }
    }

    /// Flushes the folders' entries so new file names survive a power cut.
    pub(crate) fn sync_tables_dirs(&self) {
        for d in [&self.tables, &self.records(), &self.observations()] {
            if let Ok(f) = fs::File::open(d) {
                let _ = f.sync_all();
            }
        }
    }
}

/// Reads the manifest committed in the index's current metadata.
pub(crate) fn manifest_of(dir: &DataDir, index: &Index) -> Result<Option<Manifest>> {
    let metas = index.load_metas()?;
    manifest_from_payload(dir, metas.payload.as_deref())
}

fn manifest_from_payload(dir: &DataDir, payload: Option<&str>) -> Result<Option<Manifest>> {
    let Some(payload) = payload else {
        return Ok(None);
    };
    let m: Manifest = serde_json::from_str(payload)
        .map_err(|e| dir.corrupt(format!("unreadable manifest: {e}")))?;
    if m.format != FORMAT_VERSION {
        return Err(dir.corrupt(format!(
            "format {} written by another version of crossdex (this one reads {FORMAT_VERSION}); rebuild it with a full sync into a new data directory",
            m.format
        )));
    }
    Ok(Some(m))
}

/// One committed state of the data directory, read-only: the index searcher and the
/// table files of the same commit. Taking one needs no lock.
pub struct Snapshot {
    dir: DataDir,
    index: Index,
    searcher: Searcher,
    fields: index::Fields,
    manifest: Manifest,
    subjects: std::sync::OnceLock<std::sync::Arc<SubjectIndex>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("dir", &self.dir.root)
            .field("generation", &self.manifest.generation)
            .finish()
    }
}

/// What tells one committed state of a data directory from the next, read with one
/// `stat` of the index's metadata file (replaced, never rewritten, at each commit): a
/// long-lived reader compares marks to know when to open a new snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMark {
    inode: u64,
    device: u64,
    modified: Option<std::time::SystemTime>,
    len: u64,
}

impl CommitMark {
    /// The mark of `root` now; `None` where it holds no index yet.
    pub fn read(root: impl AsRef<Path>) -> Option<CommitMark> {
        let meta = std::fs::metadata(root.as_ref().join("index").join("meta.json")).ok()?;
        #[cfg(unix)]
        let (inode, device) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ino(), meta.dev())
        };
        #[cfg(not(unix))]
        let (inode, device) = (0, 0);
        Some(CommitMark {
            inode,
            device,
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

impl Snapshot {
    /// Opens the current state of the data directory at `root`. A path that does not
    /// exist, is a file, or holds no index is an error that says so: a mistyped
    /// `--data-dir` must not read as an empty index. Read access is enough.
    pub fn open(root: impl AsRef<Path>) -> Result<Snapshot> {
        let dir = DataDir::new(root.as_ref());
        if !dir.has_index() {
            let reason = match fs::metadata(&dir.root) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such folder".into(),
                Err(e) => format!("cannot read it: {e}"),
                Ok(m) if !m.is_dir() => "it is a file, not a folder".into(),
                Ok(_) => "the folder holds no index".into(),
            };
            return Err(StoreError::NoIndex {
                path: dir.root,
                reason,
            });
        }
        // A writer may commit between reading the metadata and opening the segments;
        // retry until both come from the same commit.
        let mut last_error = None;
        for _ in 0..8 {
            match Self::try_open(&dir) {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => continue,
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            dir.corrupt("the index changed under every attempt to read it; is a writer committing in a loop?")
        }))
    }

    /// An empty state, for a data directory that has not been synced yet.
    pub fn empty(root: impl AsRef<Path>) -> Result<Snapshot> {
        let dir = DataDir::new(root.as_ref());
        let (schema, fields) = index::schema();
        let index = Index::create_in_ram(schema);
        index::register_analyzer(&index);
        let searcher = index.reader()?.searcher();
        Ok(Snapshot {
            dir,
            index,
            searcher,
            fields,
            manifest: Manifest::default(),
            subjects: Default::default(),
        })
    }

    fn try_open(dir: &DataDir) -> Result<Option<Snapshot>> {
        let index = dir.open_index_for_reading()?;
        let fields = index::fields_of(&index.schema()).map_err(|e| dir.corrupt(e))?;
        let metas = index.load_metas()?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searcher = reader.searcher();
        let expected: HashSet<_> = metas
            .segments
            .iter()
            .map(|s| (s.id(), s.num_deleted_docs()))
            .collect();
        let opened: HashSet<_> = searcher
            .segment_readers()
            .iter()
            .map(|s| (s.segment_id(), s.num_deleted_docs()))
            .collect();
        if expected != opened {
            return Ok(None);
        }
        let manifest = manifest_from_payload(dir, metas.payload.as_deref())?.unwrap_or_default();
        Ok(Some(Snapshot {
            dir: dir.clone(),
            index,
            searcher,
            fields,
            manifest,
            subjects: Default::default(),
        }))
    }

    /// The manifest of this state.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.dir.root
    }

    /// The Parquet files that make up `table` in this state.
    pub fn files(&self, table: Table) -> Vec<PathBuf> {
        let m = &self.manifest;
        let rel: Vec<&str> = match table {
            Table::Records => m.sources.values().map(|s| s.records.as_str()).collect(),
            Table::Observations => m
                .sources
                .values()
                .map(|s| s.observations.as_str())
                .collect(),
            Table::SyncRuns => m.sync_runs.iter().map(String::as_str).collect(),
            Table::SubjectLinks => m.subject_links.iter().map(String::as_str).collect(),
        };
        rel.into_iter().map(|r| self.dir.tables.join(r)).collect()
    }

    /// Number of documents in the full-text index.
    pub fn num_docs(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// Full-text search; see the search syntax in `docs/search.md`. At most `limit`
    /// hits, best first.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>> {
        Ok(self.search_page(query, SearchOptions::top(limit))?.hits)
    }

    /// Like [`Snapshot::search`], with the number of records the query matches in all,
    /// a page further down and facet counts as `options` asks.
    pub fn search_page(&self, query: &str, options: SearchOptions) -> Result<SearchPage> {
        let subjects = self.subjects()?;
        index::search(
            &self.index,
            &self.searcher,
            &self.fields,
            &subjects,
            query,
            options,
        )
    }

    /// Which subject each source's keys belong to in this state, read once from its
    /// `subject_links` table.
    pub fn subjects(&self) -> Result<std::sync::Arc<SubjectIndex>> {
        if let Some(s) = self.subjects.get() {
            return Ok(s.clone());
        }
        let index = match &self.manifest.subject_links {
            Some(rel) => SubjectIndex::read(&self.dir.tables.join(rel))?,
            None => SubjectIndex::default(),
        };
        Ok(self
            .subjects
            .get_or_init(|| std::sync::Arc::new(index))
            .clone())
    }
}

#[cfg(test)]
mod tests;
