//! Runs connectors' syncs into the store: picks each one's mode, streams its pages
//! into a store transaction, commits it with the connector's checkpoint, and records
//! every run, failed ones included, in `sync_runs`.
//!
//! [`run`] syncs several sources at once (fetching concurrently, writing one at a
//! time); [`sync_source`] is the same for one source. [`schedule`] decides when each
//! source is due.
//!
//! This crate owns the sync protocol between [`crossdex_model::Connector`] and
//! [`crossdex_store::Writer`]. It does not know any source system, and it does not
//! parse configuration: the binary builds connectors and hands them over.

#![warn(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use crossdex_model::{Connector, SyncMode};
use crossdex_store::{Counts, Manifest, StoreError, SyncRun, Writer};

/// Errors that stop a sync from being recorded at all. A failing source is not one of
/// them: its failure is recorded as a failed run and returned as such.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed while committing or recording the run.
    #[error("store error while syncing `{source_name}`: {error}")]
    Store {
        /// The source being synced.
        source_name: String,
        /// The cause.
        error: StoreError,
    },
    /// The folder that holds pages waiting for the writer cannot be made.
    #[error("cannot create the spool folder {path}: {error}")]
    Spool {
        /// The folder.
        path: std::path::PathBuf,
        /// The cause.
        error: std::io::Error,
    },
}

/// What the caller wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Force a full sync even where an incremental one is possible.
    pub full: bool,
}

/// Progress of a running sync, reported after each page.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// The source.
    pub source: &'a str,
    /// Pages taken so far.
    pub pages: u64,
    /// Counts so far.
    pub counts: Counts,
}

/// Follows syncs as they go. Every method has a default that ignores the event, so
/// `()` follows nothing.
#[async_trait]
pub trait Observer: Send + Sync {
    /// A source's fetch started in `mode`.
    fn started(&self, _source: &str, _mode: SyncMode) {}

    /// A source's connector handed over another page: `pages` pages and `items` items
    /// (upserts, deletions and rejections) so far.
    fn fetched(&self, _source: &str, _pages: u64, _items: u64) {}

    /// A page was written to the store.
    fn progress(&self, _progress: &Progress<'_>) {}

    /// A run was recorded in `sync_runs`, succeeded or failed.
    fn finished(&self, _run: &SyncRun) {}

    /// Nothing is in flight any more and at least one run finished since the last
    /// call: the moment to derive what depends on all sources (subject links).
    async fn settled(&self, _writer: &mut Writer) {}
}

impl Observer for () {}

/// Chooses the mode: incremental only when asked for, supported, and resumable from
/// a committed checkpoint.
pub(crate) fn choose_mode(
    manifest: &Manifest,
    connector: &dyn Connector,
    options: SyncOptions,
) -> (SyncMode, Option<crossdex_model::Checkpoint>) {
    let committed = manifest.sources.get(connector.source());
    let checkpoint = committed.and_then(|s| s.checkpoint.clone());
    let mode = if options.full || !connector.capabilities().incremental || committed.is_none() {
        SyncMode::Full
    } else {
        SyncMode::Incremental
    };
    (mode, checkpoint)
}

/// Syncs one source through [`run`]. Returns the recorded run: succeeded, partial
/// (some items rejected) or failed (nothing changed but `sync_runs`).
pub async fn sync_source(
    writer: &mut Writer,
    connector: Arc<dyn Connector>,
    options: SyncOptions,
    observer: Arc<dyn Observer>,
) -> Result<SyncRun, SyncError> {
    let job = Job { connector, options };
    let mut runs = run_jobs(writer, vec![job], Limits { sources: 1 }, observer).await?;
    Ok(runs
        .pop()
        .expect("the runner records one run per job it takes"))
}

/// Runs a known list of jobs through [`run`] to the end and returns their runs, in
/// the order they finished.
pub async fn run_jobs(
    writer: &mut Writer,
    jobs: Vec<Job>,
    limits: Limits,
    observer: Arc<dyn Observer>,
) -> Result<Vec<SyncRun>, SyncError> {
    let (tx, rx) = tokio::sync::mpsc::channel(jobs.len().max(1));
    for job in jobs {
        // There is room for every job and the receiver is alive: cannot fail.
        let _ = tx.send(job).await;
    }
    drop(tx);
    let (_stop, stop_rx) = tokio::sync::watch::channel(Stop::Run);
    run(writer, rx, limits, observer, stop_rx).await
}

mod runner;
pub mod schedule;

pub use runner::{INTERRUPTED, Job, Limits, Stop, run};

#[cfg(test)]
mod tests;
