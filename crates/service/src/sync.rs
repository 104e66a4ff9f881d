//! Sync orchestration: sources run through the runner, subjects are linked once they
//! settle and the links stored, progress goes out as [`SyncEvent`]s on a channel any
//! front end reads. Also the scheduler of `serve`, `forget` and `doctor`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crossdex_model::SyncMode;
use crossdex_store::{RunStatus, StoreError, SyncRun, Writer};
use crossdex_sync::schedule::{Scheduler, SystemClock};
use crossdex_sync::{Job, Limits, Observer, Progress, SyncOptions};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub use crossdex_sync::Stop;

use crate::config::Config;
use crate::linking::LinkSummary;
use crate::status::RunSummary;
use crate::{ErrorCode, Result, Service, ServiceError};

/// What happens during a sync, in order, for front ends to show.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SyncEvent {
    /// A source's fetch started.
    Started {
        /// The source.
        source: String,
        /// `full` or `incremental`.
        mode: String,
    },
    /// A source's connector handed over pages.
    Fetched {
        /// The source.
        source: String,
        /// Pages so far.
        pages: u64,
        /// Items so far.
        items: u64,
    },
    /// A page was written to the store.
    Written {
        /// The source.
        source: String,
        /// Pages written so far.
        pages: u64,
        /// Entities added so far.
        added: u64,
        /// Entities updated so far.
        updated: u64,
        /// Entities unchanged so far.
        unchanged: u64,
        /// Items rejected so far.
        rejected: u64,
    },
    /// A run was recorded, succeeded or failed.
    Finished {
        /// The run.
        run: RunSummary,
    },
    /// Subjects were linked again and the links stored.
    Linked {
        /// What linking did.
        summary: LinkSummary,
    },
    /// Linking failed; the synced data stays, the previous links too.
    LinkFailed {
        /// Why.
        error: ServiceError,
    },
    /// A scheduler message: the plan at start-up, a job that cannot start, shutdown.
    Note {
        /// What to tell the user.
        message: String,
    },
}

/// Where events go; a closed receiver loses events, never the sync.
pub type EventSender = mpsc::UnboundedSender<SyncEvent>;

/// What a sync asks for.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The sources, by name; empty with `all`: every configured source.
    pub sources: Vec<String>,
    /// Every configured source.
    pub all: bool,
    /// Full syncs even where an incremental one is possible.
    pub full: bool,
    /// Sources fetched at once, overriding `[sync] parallel_sources`.
    pub jobs: Option<usize>,
    /// How long to wait for another process that holds the data directory.
    pub wait: Option<Duration>,
}

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncOutcome {
    /// Each source's run, in the order they finished.
    pub runs: Vec<RunSummary>,
    /// Runs that failed.
    pub failed: usize,
    /// What linking did after the runs, when it ran and succeeded.
    pub linking: Option<LinkSummary>,
    /// Why linking failed, when it did.
    pub link_error: Option<ServiceError>,
}

/// A scheduled source's next run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedRun {
    /// The source.
    pub source: String,
    /// `cron (zone)`.
    pub schedule: String,
    /// When it runs next; none if never.
    pub next_run: Option<DateTime<Utc>>,
}

/// What `forget` removed of one source.
#[derive(Debug, Clone, Serialize)]
pub struct Forgotten {
    /// The source.
    pub source: String,
    /// Records removed.
    pub records: u64,
    /// Observations removed.
    pub observations: u64,
}

/// One check of `doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorCheck {
    /// What was checked: a source's name, or `data directory`.
    pub name: String,
    /// The source's system, for sources.
    pub system: Option<String>,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub message: String,
}

/// Every check of `doctor`, the sources' in the configuration's order, then the data
/// directory's.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The checks.
    pub checks: Vec<DoctorCheck>,
}

/// Below this many MiB free, no sync can work: refused before it starts, rather than
/// failing halfway. `CROSSDEX_MIN_FREE_MIB` changes it (0 turns the check off).
const MIN_FREE_MIB: u64 = 64;
/// A sync's peak, in times the data directory's final size (docs/operations.md).
const PEAK_FACTOR: u64 = 5;

/// Refuses to start a sync on a nearly full disk, and warns when the room left is
/// below what a sync of everything needs at its peak.
fn check_space(writer: &Writer) -> Result<()> {
    let Ok((free, size)) = writer.space() else {
        return Ok(());
    };
    let mib = |b: u64| b >> 20;
    let min_free_mib = std::env::var("CROSSDEX_MIN_FREE_MIB")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(MIN_FREE_MIB);
    if free < min_free_mib << 20 {
        return Err(ServiceError::new(
            ErrorCode::DiskFull,
            format!(
                "only {} MiB free for {}: a sync needs at least {} MiB and up to {PEAK_FACTOR} times the data directory's size ({} MiB now); free some space or move the data directory (docs/operations.md, \"Disk space\")",
                mib(free),
                writer.root().display(),
                min_free_mib,
                mib(size)
            ),
        ));
    }
    if free < size.saturating_mul(PEAK_FACTOR) {
        tracing::warn!(
            "{} MiB free for {} ({} MiB now): a full sync of every source may need up to {} MiB at its peak",
            mib(free),
            writer.root().display(),
            mib(size),
            mib(size * PEAK_FACTOR)
        );
    }
    Ok(())
}

/// The writer of `dir`, for `purpose` (`crossdex sync`, ...). A directory another
/// process holds is waited for up to `wait`, then [`ErrorCode::DataDirectoryBusy`]
/// naming the holder.
async fn open_writer(
    dir: &std::path::Path,
    purpose: &str,
    wait: Option<Duration>,
    sensitive: &crossdex_store::Sensitive,
) -> Result<Writer> {
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        match Writer::open_for(dir, purpose) {
            Ok(mut w) => {
                w.set_sensitive(sensitive.clone());
                return Ok(w);
            }
            Err(e @ StoreError::Locked { .. }) => {
                if deadline.is_some_and(|d| Instant::now() < d) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                let waited = wait
                    .map(|w| format!(" (waited {} s)", w.as_secs()))
                    .unwrap_or_default();
                return Err(ServiceError::new(
                    ErrorCode::DataDirectoryBusy,
                    format!(
                        "{e}{waited}. `crossdex serve` holds it for as long as it runs and syncs each source on its schedule: \
                         stop it to sync by hand. Another sync frees it when it ends: `crossdex sync --wait SECONDS` waits for it"
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Follows the runner and forwards what happens as events; links subjects when the
/// sources settle.
struct Events {
    /// The service the sync runs in: it publishes the tables once linked.
    service: Service,
    config: Arc<Config>,
    tx: EventSender,
    board: Arc<crate::progress::Board>,
    /// The last linking's outcome, for the sync's answer.
    linking: Mutex<Option<std::result::Result<LinkSummary, ServiceError>>>,
}

impl Events {
    fn send(&self, e: SyncEvent) {
        self.board.follow(&e);
        // Nobody listening is not a reason to stop syncing.
        let _ = self.tx.send(e);
    }
}

#[async_trait]
impl Observer for Events {
    fn started(&self, source: &str, mode: SyncMode) {
        self.send(SyncEvent::Started {
            source: source.to_owned(),
            mode: mode.as_str().to_owned(),
        });
    }

    fn fetched(&self, source: &str, pages: u64, items: u64) {
        self.send(SyncEvent::Fetched {
            source: source.to_owned(),
            pages,
            items,
        });
    }

    fn progress(&self, p: &Progress<'_>) {
        let c = p.counts;
        self.send(SyncEvent::Written {
            source: p.source.to_owned(),
            pages: p.pages,
            added: c.added,
            updated: c.updated,
            unchanged: c.unchanged,
            rejected: c.rejected,
        });
    }

    fn finished(&self, run: &SyncRun) {
        self.send(SyncEvent::Finished {
            run: RunSummary::from(run),
        });
    }

    async fn settled(&self, writer: &mut Writer) {
        let result = crate::linking::update(&self.config, writer)
            .await
            .map(|l| l.summary());
        self.send(match &result {
            Ok(summary) => SyncEvent::Linked {
                summary: summary.clone(),
            },
            Err(e) => SyncEvent::LinkFailed { error: e.clone() },
        });
        if let Ok(mut slot) = self.linking.lock() {
            *slot = Some(result);
        }
        // `[publish] delta`: what this sync changed, committed for other engines. A
        // failure is told, and leaves the sync as it went.
        if let Some(dir) = &self.config.publish.delta {
            let message = match self
                .service
                .export_delta(
                    dir,
                    self.config.publish.include_sensitive,
                    &crate::QueryControl::default(),
                )
                .await
            {
                Ok(r) => format!(
                    "published to {}: {} of {} Delta tables committed a new version",
                    r.path,
                    r.tables.iter().filter(|t| t.committed).count(),
                    r.tables.len()
                ),
                Err(e) => format!(
                    "publishing to {} failed: {}",
                    dir.display(),
                    e.operator_text()
                ),
            };
            self.send(SyncEvent::Note { message });
        }
    }
}

fn limits(config: &Config, jobs: Option<usize>) -> Limits {
    Limits {
        sources: jobs
            .or(config.sync.parallel_sources)
            .unwrap_or(Limits::default().sources),
    }
}

fn job(config: &Config, name: &str, full: bool) -> Result<Job> {
    Ok(Job {
        connector: Arc::from(config.connector(name)?),
        options: SyncOptions { full },
    })
}

impl Service {
    fn shared_config(&self, what: &str) -> Result<Arc<Config>> {
        self.require_config(what)?;
        self.inner
            .config
            .clone()
            .ok_or_else(|| ServiceError::internal(what, "configuration vanished"))
    }

    /// The configured sources `names` asks for (all when `all` or empty).
    pub fn select_sources(&self, names: &[String], all: bool) -> Result<Vec<String>> {
        let config = self.require_config("choosing sources")?;
        let configured = config.source_names();
        if configured.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{} configures no source; add a [sources.<name>] table",
                    config.path.display()
                ),
            ));
        }
        if all || names.is_empty() {
            return Ok(configured);
        }
        for n in names {
            if !configured.contains(n) {
                return Err(ServiceError::new(
                    ErrorCode::UnknownSource,
                    format!(
                        "no source named `{n}` in {}; configured: {}",
                        config.path.display(),
                        configured.join(", ")
                    ),
                ));
            }
        }
        Ok(names.to_vec())
    }

    /// Syncs the sources `request` names, several at once, then links subjects. A
    /// failing source does not stop the others: its run is recorded as failed.
    pub async fn sync(&self, request: &SyncRequest, events: EventSender) -> Result<SyncOutcome> {
        self.require(crate::Action::Admin)?;
        let config = self.shared_config("a sync")?;
        if request.sources.is_empty() && !request.all {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "name the sources to sync or pass --all; configured: {}",
                    config.source_names().join(", ")
                ),
            ));
        }
        if request.jobs == Some(0) {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                "--jobs must be at least 1",
            ));
        }
        let names = self.select_sources(&request.sources, request.all)?;
        let jobs = names
            .iter()
            .map(|name| job(&config, name, request.full))
            .collect::<Result<Vec<_>>>()?;
        let mut writer = open_writer(
            self.data_dir(),
            "crossdex sync",
            request.wait,
            &self.inner.settings.sensitive,
        )
        .await?;
        check_space(&writer)?;
        let observer = Arc::new(Events {
            service: self.clone(),
            config: config.clone(),
            tx: events,
            board: self.inner.board.clone(),
            linking: Mutex::new(None),
        });
        let runs = crossdex_sync::run_jobs(
            &mut writer,
            jobs,
            limits(&config, request.jobs),
            observer.clone(),
        )
        .await?;
        let linked = observer.linking.lock().ok().and_then(|mut l| l.take());
        let (linking, link_error) = match linked {
            Some(Ok(l)) => (Some(l), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        Ok(SyncOutcome {
            failed: runs
                .iter()
                .filter(|r| r.status == RunStatus::Failed)
                .count(),
            runs: runs.iter().map(RunSummary::from).collect(),
            linking,
            link_error,
        })
    }

    fn scheduler(
        &self,
        config: &Config,
        last_started: &BTreeMap<String, DateTime<Utc>>,
    ) -> Scheduler {
        Scheduler::new(
            config.schedules.clone(),
            last_started,
            config.missed_runs,
            Utc::now(),
        )
    }

    /// When each source last started, from `sync_runs`.
    async fn last_started(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        #[derive(serde::Deserialize)]
        struct Row {
            source: String,
            t: i64,
        }
        let engine = self.engine_at(true)?;
        let rows: Vec<Row> = crate::rows(
            &engine,
            "SELECT source, CAST(to_unixtime(max(started_at)) AS BIGINT) AS t FROM sync_runs GROUP BY source",
            &[],
        )
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.source, DateTime::from_timestamp(r.t, 0)?)))
            .collect())
    }

    /// The plan `serve` would follow if started now: each scheduled source's next run.
    pub async fn plan(&self) -> Result<Vec<PlannedRun>> {
        self.require(crate::Action::Status)?;
        let config = self.require_config("a schedule")?;
        let last = self.last_started().await?;
        Ok(self
            .scheduler(config, &last)
            .plan()
            .map(|(name, s, next)| PlannedRun {
                source: name.to_owned(),
                schedule: format!("{} ({})", s.expr(), s.zone()),
                next_run: next,
            })
            .collect())
    }

    /// Syncs each scheduled source when due, until `stop` says to drain or abandon;
    /// holds the data directory's writer meanwhile. Returns every run.
    pub async fn run_schedule(
        &self,
        events: EventSender,
        stop: watch::Receiver<Stop>,
    ) -> Result<Vec<RunSummary>> {
        let config = self.shared_config("serve")?;
        if config.schedules.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "no source in {} has a `schedule`; add one to a [sources.<name>] table, e.g. schedule = \"0 2 * * *\"",
                    config.path.display()
                ),
            ));
        }
        let mut writer = open_writer(
            self.data_dir(),
            "crossdex serve",
            None,
            &self.inner.settings.sensitive,
        )
        .await?;
        check_space(&writer)?;
        let last = self.last_started().await?;
        let scheduler = self.scheduler(&config, &last);
        for (name, s, next) in scheduler.plan() {
            let next = next
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "never".into());
            let _ = events.send(SyncEvent::Note {
                message: format!(
                    "{name}: schedule \"{}\" ({}), next run {next}",
                    s.expr(),
                    s.zone()
                ),
            });
        }
        let observer = Arc::new(Events {
            service: self.clone(),
            config: config.clone(),
            tx: events.clone(),
            board: self.inner.board.clone(),
            linking: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel(16);
        // Syncs asked for over the API join the scheduler's queue.
        *self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx.clone());
        let driver = {
            let config = config.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let job_of = |name: &str| match job(&config, name, false) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        let _ = events.send(SyncEvent::Note {
                            message: format!("{name}: cannot start: {}", e.operator_text()),
                        });
                        None
                    }
                };
                crossdex_sync::schedule::drive(scheduler, &SystemClock, job_of, tx, stop).await;
            })
        };
        let result =
            crossdex_sync::run(&mut writer, rx, limits(&config, None), observer, stop).await;
        driver.abort();
        *self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(result?.iter().map(RunSummary::from).collect())
    }

    /// Asks for a sync of `source`: it joins the scheduler's queue when `run_schedule`
    /// runs, else it starts now in the background. Its progress is
    /// [`Service::run_progress`] of the entry returned.
    pub fn request_sync(&self, source: &str, full: bool) -> Result<crate::RunProgress> {
        self.require(crate::Action::Admin)?;
        let config = self.shared_config("a sync")?;
        if !config.sources.contains_key(source) {
            return Err(ServiceError::new(
                ErrorCode::UnknownSource,
                format!(
                    "no source named `{source}`; configured: {}",
                    config.source_names().join(", ")
                ),
            ));
        }
        let job = job(&config, source, full)?;
        let board = self.inner.board.clone();
        let entry = board.queue(source);
        let queue = self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match queue {
            Some(queue) => {
                if queue.try_send(job).is_err() {
                    board.refuse(&entry.id, "the scheduler's queue is full".into());
                    return Err(ServiceError::new(
                        ErrorCode::DataDirectoryBusy,
                        "the scheduler's queue is full; ask again once its syncs ran",
                    ));
                }
            }
            None => {
                let service = self.clone();
                let request = SyncRequest {
                    sources: vec![source.to_owned()],
                    full,
                    ..SyncRequest::default()
                };
                let id = entry.id.clone();
                tokio::spawn(async move {
                    let (tx, _rx) = mpsc::unbounded_channel();
                    if let Err(e) = service.sync(&request, tx).await {
                        board.refuse(&id, e.message);
                    }
                });
            }
        }
        Ok(entry)
    }

    /// A sync's progress: an id [`Service::request_sync`] gave, one the scheduler made
    /// (`<source>@<start>`), or a `run_id` of `sync_runs`.
    pub async fn run_progress(
        &self,
        id: &str,
        control: &crate::QueryControl,
    ) -> Result<crate::RunProgress> {
        self.require(crate::Action::Status)?;
        if let Some(p) = self.inner.board.get(id) {
            return Ok(p);
        }
        let not_found = || {
            ServiceError::new(
                ErrorCode::UnknownRun,
                format!(
                    "no sync run {id:?}: ids come from POST /sources/NAME/sync or sync_runs.run_id"
                ),
            )
        };
        let source = id.rsplit_once('-').map(|(s, _)| s).ok_or_else(not_found)?;
        let runs = match self.runs(source, usize::MAX >> 1, control).await {
            Ok(r) => r,
            Err(e) if e.code == ErrorCode::UnknownSource => return Err(not_found()),
            Err(e) => return Err(e),
        };
        let run = runs
            .into_iter()
            .find(|r| r.run_id == id)
            .ok_or_else(not_found)?;
        Ok(crate::RunProgress {
            id: run.run_id.clone(),
            source: run.source.clone(),
            state: crate::RunState::Finished,
            since: run.started_at,
            mode: Some(run.mode.clone()),
            pages: 0,
            items: 0,
            added: run.added,
            updated: run.updated,
            unchanged: run.unchanged,
            rejected: run.rejected,
            run: Some(run),
            error: None,
        })
    }

    /// Removes every record and observation of `sources` from the data directory and
    /// links subjects again without them. A source still configured is refused
    /// unless `force`: its next sync would bring it back.
    pub async fn forget(
        &self,
        sources: &[String],
        force: bool,
    ) -> Result<(Vec<Forgotten>, Option<LinkSummary>)> {
        self.require(crate::Action::Admin)?;
        let config = self.shared_config("forget")?;
        if let Some(s) = sources.iter().find(|s| config.sources.contains_key(*s))
            && !force
        {
            return Err(ServiceError::new(
                ErrorCode::SourceStillConfigured,
                format!(
                    "source {s:?} is still configured in {}: its next sync would bring it back; remove its [sources.{s}] table first, or pass --force",
                    config.path.display()
                ),
            ));
        }
        let mut writer = open_writer(
            self.data_dir(),
            "crossdex forget",
            None,
            &self.inner.settings.sensitive,
        )
        .await?;
        let mut out = Vec::new();
        for s in sources {
            let (records, observations) = writer.forget_source(s).map_err(|e| match e {
                StoreError::UnknownSource(_) => ServiceError::new(
                    ErrorCode::UnknownSource,
                    format!("{e}; `crossdex status` lists what it holds"),
                ),
                other => other.into(),
            })?;
            out.push(Forgotten {
                source: s.clone(),
                records,
                observations,
            });
        }
        // Its keys no longer link anything: subjects are linked again without them.
        let linking = if config.sources.is_empty() {
            None
        } else {
            Some(
                crate::linking::update(&config, &mut writer)
                    .await?
                    .summary(),
            )
        };
        Ok((out, linking))
    }

    /// Checks that each source answers and accepts its credentials (all at once, at
    /// most `timeout` each, no retries), and that the data directory is usable.
    pub async fn doctor(&self, names: &[String], timeout: Duration) -> Result<DoctorReport> {
        self.require(crate::Action::Admin)?;
        let config = self.require_config("doctor")?;
        let mut tasks = Vec::new();
        for name in self.select_sources(names, names.is_empty())? {
            let connector = config.connector_for_check(&name, timeout.as_secs().max(1))?;
            let system = connector.system().to_owned();
            let task = tokio::spawn(async move {
                tokio::time::timeout(timeout + Duration::from_secs(2), connector.check()).await
            });
            tasks.push((name, system, task));
        }
        let mut checks = Vec::new();
        for (name, system, task) in tasks {
            let (ok, message) = match task.await {
                Ok(Ok(Ok(report))) => (true, report.summary),
                Ok(Ok(Err(e))) => (false, e.to_string()),
                Ok(Err(_)) => (false, format!("no answer within {} s", timeout.as_secs())),
                Err(e) => (false, format!("the check stopped: {e}")),
            };
            checks.push(DoctorCheck {
                name,
                system: Some(system),
                ok,
                message,
            });
        }
        let dir = self.data_dir();
        let (ok, message) = match self.engine_at(false) {
            Ok(engine) => (
                true,
                format!("{} ({} documents)", dir.display(), engine.num_docs()),
            ),
            // Not synced yet: the first sync makes it, unless a file is in the way.
            Err(e) if e.code == ErrorCode::NoIndex && !dir.is_file() => (
                true,
                format!("{} (no index yet: the first sync builds it)", dir.display()),
            ),
            Err(e) => (false, format!("{}: {}", dir.display(), e.operator_text())),
        };
        checks.push(DoctorCheck {
            name: "data directory".into(),
            system: None,
            ok,
            message,
        });
        Ok(DoctorReport { checks })
    }
}
