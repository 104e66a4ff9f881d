//! Runs one connector's sync into the store: picks the mode, streams the connector's
//! pages into a store transaction, commits it with the connector's checkpoint, and
//! records every run, failed ones included, in `sync_runs`.
//!
//! [`run`] syncs several sources at once (fetching concurrently, writing one at a
//! time) and [`schedule`] decides when each source is due.
//!
//! This crate owns the sync protocol between [`crossdex_model::Connector`] and
//! [`crossdex_store::Writer`]. It does not know any source system, and it does not
//! parse configuration: the binary builds connectors and hands them over.

#![warn(missing_docs)]

use async_trait::async_trait;
use chrono::Utc;
use crossdex_model::{Connector, Page, PageSink, SinkError, SyncMode, SyncRequest};
use crossdex_store::{Counts, Manifest, StoreError, SyncRun, SyncTxn, Writer};

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

struct TxnSink<'t, 'w> {
    txn: &'t mut SyncTxn<'w>,
    source: &'t str,
    pages: u64,
    progress: &'t dyn Observer,
}

#[async_trait]
impl PageSink for TxnSink<'_, '_> {
    async fn page(&mut self, page: Page) -> Result<(), SinkError> {
        self.txn.apply(page).map_err(|e| SinkError(Box::new(e)))?;
        self.pages += 1;
        self.progress.progress(&Progress {
            source: self.source,
            pages: self.pages,
            counts: self.txn.counts(),
        });
        Ok(())
    }
}

/// Chooses the mode: incremental only when asked for, supported, and resumable from
/// a committed checkpoint.
pub fn choose_mode(
    manifest: &Manifest,
    connector: &dyn Connector,
    options: SyncOptions,
) -> (SyncMode, Option<crossdex_model::Checkpoint>) {
    let committed = manifest.sources.get(connector.source());
    let checkpoint = committed
        .and_then(|s| s.checkpoint.clone())
        .map(crossdex_model::Checkpoint);
    let mode = if options.full || !connector.capabilities().incremental || committed.is_none() {
        SyncMode::Full
    } else {
        SyncMode::Incremental
    };
    (mode, checkpoint)
}

/// Syncs one source. Returns the recorded run: succeeded, partial (some items
/// rejected) or failed (nothing changed but `sync_runs`).
pub async fn sync_source(
    writer: &mut Writer,
    connector: &dyn Connector,
    options: SyncOptions,
    progress: &dyn Observer,
) -> Result<SyncRun, SyncError> {
    let source = connector.source().to_owned();
    let store_err = |error| SyncError::Store {
        source_name: source.clone(),
        error,
    };
    let (mode, checkpoint) = choose_mode(writer.manifest(), connector, options);
    progress.started(&source, mode);
    let started_at = Utc::now();
    tracing::info!(source = %source, mode = mode.as_str(), "sync started");
    let mut txn = writer
        .begin(&source, connector.system(), started_at)
        .map_err(store_err)?;
    let outcome = {
        let mut sink = TxnSink {
            txn: &mut txn,
            source: &source,
            pages: 0,
            progress,
        };
        connector
            .sync(SyncRequest { mode, checkpoint }, &mut sink)
            .await
    };
    let run = match outcome {
        Ok(outcome) => {
            let checkpoint = outcome.checkpoint.map(|c| c.0);
            txn.commit(outcome.mode, checkpoint).map_err(store_err)?
        }
        Err(e) => {
            drop(txn);
            tracing::error!(source = %source, "sync failed: {e}");
            writer
                .record_failure(
                    &source,
                    connector.system(),
                    mode,
                    started_at,
                    &e.to_string(),
                )
                .map_err(store_err)?
        }
    };
    let c = run.counts;
    tracing::info!(
        source = %source,
        status = run.status.as_str(),
        added = c.added, updated = c.updated, unchanged = c.unchanged,
        deleted = c.deleted, rejected = c.rejected,
        "sync finished"
    );
    progress.finished(&run);
    Ok(run)
}

mod runner;
pub mod schedule;

pub use runner::{INTERRUPTED, Job, Limits, Stop, run};

#[cfg(test)]
mod tests;
