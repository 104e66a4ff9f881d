use std::path::PathBuf;

/// Errors of the store. Messages name the path or the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory's write lock.
    #[error(
        "data directory {path} is in use by another crossdex process ({holder}); wait for it to finish or stop it"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// A file of the data directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The full-text index failed.
    #[error("full-text index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// A Parquet table failed.
    #[error("parquet error in {path}: {source}")]
    Parquet {
        /// The table file.
        path: PathBuf,
        /// The cause.
        source: parquet::errors::ParquetError,
    },
    /// Building Arrow data failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The data directory holds something this version cannot read.
    #[error("data directory {path} is unusable: {reason}")]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// There is no index where one was expected.
    #[error(
        "no crossdex index at {path}: {reason}; `crossdex sync --all` builds one there, or point --data-dir (or `data_dir` in the config) at an existing one"
    )]
    NoIndex {
        /// The data directory asked for.
        path: PathBuf,
        /// What is there instead.
        reason: String,
    },
    /// A folder holding files that are not crossdex's: writing there could overwrite or
    /// remove them.
    #[error(
        "{path} is not a crossdex data directory ({reason}); choose a new or empty folder so nothing else in it is overwritten or removed"
    )]
    NotOurs {
        /// The folder.
        path: PathBuf,
        /// What it holds.
        reason: String,
    },
    /// A search string that cannot be parsed.
    #[error("invalid search query {query:?}: {reason}{}", position.map(|p| format!(" at character {p}")).unwrap_or_default())]
    InvalidQuery {
        /// The query as given.
        query: String,
        /// What is wrong.
        reason: String,
        /// Where, as a 1-based character position, when the parser knows.
        position: Option<usize>,
    },
    /// The store holds nothing of this source.
    #[error("the data directory holds nothing of source {0:?}")]
    UnknownSource(String),
    /// A source name that cannot be used.
    #[error("invalid source name {0:?}: use letters, digits, `_` and `-` only")]
    InvalidSourceName(String),
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
