use chrono::{DateTime, Utc};
use crossdex_model::{Rejection, SyncMode};
use serde::{Deserialize, Serialize};

/// How many rejection reasons a run keeps in `sync_runs`; the count is always exact.
pub const MAX_KEPT_REJECTIONS: usize = 100;

/// Outcome of a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Committed; every item was taken.
    Succeeded,
    /// Committed, but some items were rejected.
    Partial,
    /// Nothing was committed; the previous state stays.
    Failed,
}

impl RunStatus {
    /// `succeeded`, `partial` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Entities that did not exist before.
    pub added: u64,
    /// Entities whose content changed.
    pub updated: u64,
    /// Entities seen again with the same content.
    pub unchanged: u64,
    /// Entities removed.
    pub deleted: u64,
    /// Items rejected, by the connector or by the store.
    pub rejected: u64,
}

/// One row of `sync_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    /// `<source>-<generation>`, unique in a data directory.
    pub run_id: String,
    /// The source.
    pub source: String,
    /// The system of the source.
    pub system: String,
    /// The mode actually run.
    pub mode: SyncMode,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it was committed or failed.
    pub finished_at: DateTime<Utc>,
    /// Its outcome.
    pub status: RunStatus,
    /// What it changed.
    pub counts: Counts,
    /// Why it failed, for failed runs.
    pub error: Option<String>,
    /// The first [`MAX_KEPT_REJECTIONS`] rejections with their reasons.
    pub rejections: Vec<Rejection>,
}
