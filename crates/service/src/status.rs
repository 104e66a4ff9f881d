//! What the data directory holds and how each source's syncs went: its last run and,
//! for scheduled sources, the next run `serve` would start.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{QueryControl, Result, Service};

/// How many rejection reasons a run summary carries; `sync_runs` keeps more.
pub const SUMMARY_REJECTIONS: usize = 5;

/// One sync run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// `<source>-<generation>`.
    pub run_id: String,
    /// The source.
    pub source: String,
    /// Its system.
    pub system: String,
    /// `succeeded`, `partial` or `failed`.
    pub status: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it was committed or failed.
    pub finished_at: DateTime<Utc>,
    /// How long it took, to a tenth of a second.
    pub seconds: f64,
    /// Entities new to the index.
    pub added: u64,
    /// Entities whose content changed.
    pub updated: u64,
    /// Entities seen again unchanged.
    pub unchanged: u64,
    /// Entities removed.
    pub deleted: u64,
    /// Items rejected.
    pub rejected: u64,
    /// Why a failed run failed.
    pub error: Option<String>,
    /// The first rejections' reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<String>,
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 100.0).round() / 10.0
}

impl From<&crossdex_store::SyncRun> for RunSummary {
    fn from(run: &crossdex_store::SyncRun) -> Self {
        RunSummary {
            run_id: run.run_id.clone(),
            source: run.source.clone(),
            system: run.system.clone(),
            status: run.status.as_str().to_owned(),
            mode: run.mode.as_str().to_owned(),
            started_at: run.started_at,
            finished_at: run.finished_at,
            seconds: seconds(run.started_at, run.finished_at),
            added: run.counts.added,
            updated: run.counts.updated,
            unchanged: run.counts.unchanged,
            deleted: run.counts.deleted,
            rejected: run.counts.rejected,
            error: run.error.clone(),
            rejections: run
                .rejections
                .iter()
                .take(SUMMARY_REJECTIONS)
                .map(|r| r.reason.clone())
                .collect(),
        }
    }
}

/// One source: configured, indexed, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceStatus {
    /// Its name.
    pub source: String,
    /// Its system, from its last run or its configuration.
    pub system: Option<String>,
    /// Whether the configuration names it.
    pub configured: bool,
    /// Records indexed.
    pub records: u64,
    /// Observations indexed.
    pub observations: u64,
    /// Its last run, if it ever ran.
    pub last_run: Option<RunSummary>,
    /// Its schedule, `cron (zone)`, if it has one.
    pub schedule: Option<String>,
    /// When `serve` started now would sync it next.
    pub next_run: Option<DateTime<Utc>>,
}

/// The data directory and every source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// The data directory.
    pub data_dir: String,
    /// Sources the data directory holds data of.
    pub indexed_sources: usize,
    /// Records indexed, all sources.
    pub records: u64,
    /// Observations indexed, all sources.
    pub observations: u64,
    /// Each source, by name.
    pub sources: Vec<SourceStatus>,
    /// Configured sources that never synced.
    pub never_synced: Vec<String>,
    /// Sources indexed but no longer configured (`crossdex forget` removes them).
    pub not_configured: Vec<String>,
}

/// A row of `sync_runs` as the status query reads it.
#[derive(Deserialize)]
struct RunRow {
    run_id: String,
    source: String,
    system: String,
    status: String,
    mode: String,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    added: u64,
    updated: u64,
    unchanged: u64,
    deleted: u64,
    rejected: u64,
    error: Option<String>,
}

impl RunRow {
    fn summary(self) -> RunSummary {
        RunSummary {
            seconds: seconds(self.started_at, self.finished_at),
            run_id: self.run_id,
            source: self.source,
            system: self.system,
            status: self.status,
            mode: self.mode,
            started_at: self.started_at,
            finished_at: self.finished_at,
            added: self.added,
            updated: self.updated,
            unchanged: self.unchanged,
            deleted: self.deleted,
            rejected: self.rejected,
            error: self.error,
            rejections: Vec::new(),
        }
    }
}

impl Service {
    /// Whether the principal's scope takes in source `name`.
    pub(crate) fn sees_source(&self, name: &str) -> bool {
        self.principal()
            .scope
            .sources
            .as_ref()
            .is_none_or(|s| s.contains(name))
    }

    /// A source's runs, newest first, at most `limit`.
    pub async fn runs(
        &self,
        source: &str,
        limit: usize,
        control: &QueryControl,
    ) -> Result<Vec<RunSummary>> {
        self.require(crate::Action::Status)?;
        let engine = self.engine_at(true)?;
        let known = self.sees_source(source)
            && (self
                .config()
                .is_some_and(|c| c.sources.contains_key(source))
                || engine
                    .source_counts()
                    .await?
                    .iter()
                    .any(|c| c.source == source));
        let rows: Vec<RunRow> = self
            .bounded(
                control,
                crate::rows(
                    &engine,
                    &format!(
                        "SELECT run_id, source, system, status, mode, started_at, finished_at, \
                                added, updated, unchanged, deleted, rejected, error \
                         FROM sync_runs WHERE source = $s ORDER BY finished_at DESC, run_id DESC LIMIT {limit}"
                    ),
                    &[("s", source)],
                ),
            )
            .await?;
        if rows.is_empty() && !known {
            return Err(crate::ServiceError::new(
                crate::ErrorCode::UnknownSource,
                format!("no source named {source:?} is configured or indexed"),
            ));
        }
        Ok(rows.into_iter().map(RunRow::summary).collect())
    }

    /// Every source's state. A data directory not synced yet reads as empty.
    pub async fn status(&self, control: &QueryControl) -> Result<Status> {
        self.require(crate::Action::Status)?;
        let engine = self.engine_at(true)?;
        let last: Vec<RunRow> = self
            .bounded(
                control,
                crate::rows(
                    &engine,
                    "SELECT run_id, source, system, status, mode, started_at, finished_at, \
                            added, updated, unchanged, deleted, rejected, error \
                     FROM (SELECT *, row_number() OVER (PARTITION BY source ORDER BY finished_at DESC, run_id DESC) AS n \
                           FROM sync_runs) WHERE n = 1",
                    &[],
                ),
            )
            .await?;
        let plan = match self.config() {
            Some(_) => self.plan().await?,
            None => Vec::new(),
        };
        let counts: BTreeMap<String, (u64, u64)> = self
            .bounded(control, async { Ok(engine.source_counts().await?) })
            .await?
            .into_iter()
            .map(|c| (c.source, (c.records, c.observations)))
            .collect();
        let configured = |name: &str| {
            self.sees_source(name) && self.config().is_some_and(|c| c.sources.contains_key(name))
        };
        let mut sources: BTreeMap<String, SourceStatus> = BTreeMap::new();
        let entry = |sources: &mut BTreeMap<String, SourceStatus>, name: &str| {
            sources
                .entry(name.to_owned())
                .or_insert_with(|| SourceStatus {
                    source: name.to_owned(),
                    system: self
                        .config()
                        .and_then(|c| c.sources.get(name))
                        .and_then(|t| t.get("type"))
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned),
                    configured: configured(name),
                    records: counts.get(name).map_or(0, |c| c.0),
                    observations: counts.get(name).map_or(0, |c| c.1),
                    last_run: None,
                    schedule: None,
                    next_run: None,
                })
                .source
                .clone()
        };
        for name in counts.keys() {
            entry(&mut sources, name);
        }
        if let Some(c) = self.config() {
            for name in c.sources.keys().filter(|n| self.sees_source(n)) {
                entry(&mut sources, name);
            }
        }
        for r in last {
            let name = entry(&mut sources, &r.source);
            if let Some(s) = sources.get_mut(&name) {
                s.system = Some(r.system.clone());
                s.last_run = Some(r.summary());
            }
        }
        for p in plan.into_iter().filter(|p| self.sees_source(&p.source)) {
            let name = entry(&mut sources, &p.source);
            if let Some(s) = sources.get_mut(&name) {
                s.schedule = Some(p.schedule);
                s.next_run = p.next_run;
            }
        }
        let never_synced = sources
            .values()
            .filter(|s| s.configured && !counts.contains_key(&s.source))
            .map(|s| s.source.clone())
            .collect();
        let not_configured = sources
            .values()
            .filter(|s| !s.configured && counts.contains_key(&s.source) && self.config().is_some())
            .map(|s| s.source.clone())
            .collect();
        Ok(Status {
            data_dir: engine.root().display().to_string(),
            indexed_sources: counts.len(),
            records: counts.values().map(|c| c.0).sum(),
            observations: counts.values().map(|c| c.1).sum(),
            sources: sources.into_values().collect(),
            never_synced,
            not_configured,
        })
    }
}
