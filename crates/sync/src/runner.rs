//! Several sources in one go. Their connectors fetch concurrently; their pages are
//! applied one source at a time, because the store has one writer and a source's
//! sync is one transaction. While the writer is busy with another source, a source's
//! pages go to a spool file in the data directory, so its fetch runs on at network
//! speed and memory stays bounded however far it runs ahead. The source the writer
//! works on gets its pages through a small channel, straight from the connector.
//!
//! The runner also guarantees that one source never runs twice at once: a job for a
//! source already running waits for that run to be recorded.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crossdex_model::{
    Connector, ConnectorError, Page, PageSink, SinkError, SyncMode, SyncOutcome, SyncRequest,
};
use crossdex_store::{Manifest, SyncRun, SyncTxn, Writer};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::{Observer, Progress, SyncError, SyncOptions, choose_mode};

/// The error recorded for a run abandoned because the process was asked to stop.
pub const INTERRUPTED: &str =
    "interrupted: crossdex was stopped before this sync finished; the previous state stays";

/// Pages in flight between the connector of the source being written and the writer.
const DIRECT_PAGES: usize = 2;

/// One source to sync.
pub struct Job {
    /// Its connector.
    pub connector: Arc<dyn Connector>,
    /// What the caller wants of this run.
    pub options: SyncOptions,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("source", &self.connector.source())
            .field("options", &self.options)
            .finish()
    }
}

/// How much runs at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sources fetching at the same time. Requests in flight per source are the
    /// connector's own limit (`max_concurrency` in a source's configuration).
    pub sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { sources: 4 }
    }
}

/// What the runner is asked to do, through a [`watch`] channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stop {
    /// Take jobs and run them.
    #[default]
    Run,
    /// Take no more jobs and drop the queued ones; let running syncs finish.
    Drain,
    /// Abandon running syncs now: nothing of them is committed, each is recorded as
    /// failed with [`INTERRUPTED`].
    Abandon,
}

/// Where a source's fetched pages go.
enum Route {
    /// To the spool file, created on the first page.
    Spool {
        file: Option<BufWriter<File>>,
        pages: u64,
    },
    /// Straight to the writer.
    Direct(mpsc::Sender<Page>),
}

struct Shared {
    source: String,
    route: Mutex<Route>,
    path: PathBuf,
}

fn lock(m: &Mutex<Route>) -> std::sync::MutexGuard<'_, Route> {
    // A sink that panicked mid-write leaves a spool the reader will reject by its
    // count; the route itself stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connector returned. Spooled pages need no event: the writer, when idle, takes
/// any source still fetching, so it never waits while pages wait for it.
struct Done {
    lane: u64,
    result: Result<SyncOutcome, ConnectorError>,
}

struct LaneSink {
    shared: Arc<Shared>,
    observer: Arc<dyn Observer>,
    source: String,
    pages: u64,
    items: u64,
}

fn sink_error(e: impl std::fmt::Display) -> SinkError {
    SinkError(e.to_string().into())
}

#[async_trait]
impl PageSink for LaneSink {
    async fn page(&mut self, page: Page) -> Result<(), SinkError> {
        self.pages += 1;
        self.items += (page.upserts.len() + page.deletions.len() + page.rejected.len()) as u64;
        self.observer.fetched(&self.source, self.pages, self.items);
        let direct = {
            let mut route = lock(&self.shared.route);
            match &mut *route {
                Route::Direct(tx) => Some(tx.clone()),
                Route::Spool { file, pages } => {
                    let path = &self.shared.path;
                    let f = match file {
                        Some(f) => f,
                        None => file.insert(BufWriter::new(File::create(path).map_err(|e| {
                            sink_error(format!("cannot create spool {}: {e}", path.display()))
                        })?)),
                    };
                    serde_json::to_writer(&mut *f, &page)
                        .map_err(std::io::Error::from)
                        .and_then(|()| f.write_all(b"\n"))
                        .and_then(|()| f.flush())
                        .map_err(|e| {
                            sink_error(format!("cannot write spool {}: {e}", path.display()))
                        })?;
                    *pages += 1;
                    None
                }
            }
        };
        match direct {
            Some(tx) => tx
                .send(page)
                .await
                .map_err(|_| sink_error("the store stopped taking pages")),
            None => Ok(()),
        }
    }
}

/// The writer's side of a spool file.
struct SpoolReader {
    reader: Option<BufReader<File>>,
    read: u64,
    line: String,
}

impl SpoolReader {
    fn next(&mut self, path: &Path) -> Result<Page, String> {
        let reader = match &mut self.reader {
            Some(r) => r,
            None => self
                .reader
                .insert(BufReader::new(File::open(path).map_err(|e| {
                    format!("cannot open spool {}: {e}", path.display())
                })?)),
        };
        self.line.clear();
        reader
            .read_line(&mut self.line)
            .map_err(|e| format!("cannot read spool {}: {e}", path.display()))?;
        let page = serde_json::from_str(&self.line)
            .map_err(|e| format!("spool {} page {}: {e}", path.display(), self.read + 1))?;
        self.read += 1;
        Ok(page)
    }
}

/// A source whose fetch has started.
struct Lane {
    connector: Arc<dyn Connector>,
    source: String,
    mode: SyncMode,
    started_at: DateTime<Utc>,
    shared: Arc<Shared>,
    result: Option<Result<SyncOutcome, ConnectorError>>,
    task: AbortHandle,
}

impl Lane {
    fn spooled(&self) -> u64 {
        match &*lock(&self.shared.route) {
            Route::Spool { pages, .. } => *pages,
            Route::Direct(_) => 0,
        }
    }
}

struct State {
    queue: VecDeque<Job>,
    lanes: BTreeMap<u64, Lane>,
    next_lane: u64,
    done_tx: mpsc::UnboundedSender<Done>,
    done: mpsc::UnboundedReceiver<Done>,
    jobs: Option<mpsc::Receiver<Job>>,
    stop: watch::Receiver<Stop>,
    limits: Limits,
    observer: Arc<dyn Observer>,
    spool_dir: PathBuf,
    runs: Vec<SyncRun>,
    unsettled: bool,
}

/// Runs the jobs received on `jobs` until that channel closes and every run is
/// recorded, or until `stop` says otherwise. Returns the recorded runs in the order
/// they finished. Only a failing store stops it early: a failing source is a failed
/// run, and the others go on.
pub async fn run(
    writer: &mut Writer,
    jobs: mpsc::Receiver<Job>,
    limits: Limits,
    observer: Arc<dyn Observer>,
    stop: watch::Receiver<Stop>,
) -> Result<Vec<SyncRun>, SyncError> {
    let spool_dir = writer.root().join("spool");
    // The writer's lock is held: whatever is spooled here was left by a process that
    // died, and its run was never committed.
    clear_spool(&spool_dir);
    std::fs::create_dir_all(&spool_dir).map_err(|error| SyncError::Spool {
        path: spool_dir.clone(),
        error,
    })?;
    let (done_tx, done) = mpsc::unbounded_channel();
    let mut st = State {
        queue: VecDeque::new(),
        lanes: BTreeMap::new(),
        next_lane: 0,
        done_tx,
        done,
        jobs: Some(jobs),
        stop,
        limits: Limits {
            sources: limits.sources.max(1),
        },
        observer,
        spool_dir,
        runs: Vec::new(),
        unsettled: false,
    };
    let result = st.main(writer).await;
    for lane in st.lanes.values() {
        lane.task.abort();
    }
    clear_spool(&st.spool_dir);
    let _ = std::fs::remove_dir(&st.spool_dir);
    result.map(|()| st.runs)
}

/// Removes the spool files crossdex wrote (`<source>.<n>.jsonl`), and nothing else: a
/// file of someone else's in the folder stays, and so does the folder then.
fn clear_spool(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = name.to_str().is_some_and(|n| {
            n.strip_suffix(".jsonl")
                .and_then(|stem| stem.rsplit_once('.'))
                .is_some_and(|(source, n)| {
                    !source.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                })
        });
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl State {
    async fn main(&mut self, writer: &mut Writer) -> Result<(), SyncError> {
        loop {
            if *self.stop.borrow() == Stop::Abandon {
                return self.abandon(writer);
            }
            self.start_fetches(writer.manifest());
            self.record_failed(writer)?;
            if self.lanes.is_empty() && self.queue.is_empty() && self.unsettled {
                self.unsettled = false;
                self.observer.settled(writer).await;
            }
            match self.pick() {
                Some(id) => self.apply(writer, id).await?,
                None if self.finished() => return Ok(()),
                None => self.wait().await,
            }
        }
    }

    fn finished(&self) -> bool {
        self.jobs.is_none() && self.queue.is_empty() && self.lanes.is_empty()
    }

    /// Waits for anything: a connector returning, a job, a change of `stop`.
    async fn wait(&mut self) {
        tokio::select! {
            changed = self.stop.changed() => {
                if changed.is_err() {
                    // The sender is gone: nobody can ask for more, finish what is here.
                    self.jobs = None;
                }
                self.on_stop();
            }
            Some(done) = self.done.recv() => self.on_done(done),
            job = recv_job(&mut self.jobs) => self.on_job(job),
        }
    }

    fn on_stop(&mut self) {
        if *self.stop.borrow() != Stop::Run {
            self.jobs = None;
            self.queue.clear();
        }
    }

    fn on_done(&mut self, Done { lane, result }: Done) {
        if let Some(l) = self.lanes.get_mut(&lane) {
            l.result = Some(result);
        }
    }

    fn on_job(&mut self, job: Option<Job>) {
        match job {
            None => self.jobs = None,
            Some(job) => {
                let source = job.connector.source();
                if self.queue.iter().any(|q| q.connector.source() == source) {
                    tracing::info!(source, "a run is already queued; not queued twice");
                } else {
                    self.queue.push_back(job);
                }
            }
        }
    }

    /// Sources whose connector has not returned yet.
    fn fetching(&self) -> usize {
        self.lanes.values().filter(|l| l.result.is_none()).count()
    }

    /// Takes every job already sent, so that jobs sent while a source ran coalesce
    /// into one queued run instead of trickling in after it started again.
    fn take_sent_jobs(&mut self) {
        while let Some(rx) = &mut self.jobs {
            match rx.try_recv() {
                Ok(job) => self.on_job(Some(job)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.on_job(None),
            }
        }
    }

    /// Starts queued jobs while there is room, skipping sources that are running.
    /// `committed` is the store's committed state, which holds their checkpoints.
    fn start_fetches(&mut self, committed: &Manifest) {
        self.take_sent_jobs();
        let mut i = 0;
        while i < self.queue.len() && self.fetching() < self.limits.sources {
            let source = self.queue[i].connector.source();
            if self.lanes.values().any(|l| l.source == source) {
                i += 1;
                continue;
            }
            let Some(job) = self.queue.remove(i) else {
                break;
            };
            self.start(job, committed);
        }
    }

    fn start(&mut self, job: Job, committed: &Manifest) {
        let connector = job.connector;
        let source = connector.source().to_owned();
        let (mode, checkpoint) = choose_mode(committed, connector.as_ref(), job.options);
        let id = self.next_lane;
        self.next_lane += 1;
        let shared = Arc::new(Shared {
            source: source.clone(),
            route: Mutex::new(Route::Spool {
                file: None,
                pages: 0,
            }),
            path: self.spool_dir.join(format!("{source}.{id}.jsonl")),
        });
        tracing::info!(source = %source, mode = mode.as_str(), "sync started");
        self.observer.started(&source, mode);
        let mut sink = LaneSink {
            shared: shared.clone(),
            observer: self.observer.clone(),
            source: source.clone(),
            pages: 0,
            items: 0,
        };
        let done = self.done_tx.clone();
        let task_connector = connector.clone();
        let task = tokio::spawn(async move {
            let result = task_connector
                .sync(SyncRequest { mode, checkpoint }, &mut sink)
                .await;
            // Every page is handed over before the end is announced.
            drop(sink);
            let _ = done.send(Done { lane: id, result });
        })
        .abort_handle();
        self.lanes.insert(
            id,
            Lane {
                connector,
                source,
                mode,
                started_at: Utc::now(),
                shared,
                result: None,
                task,
            },
        );
    }

    /// Which source the writer takes next: one whose fetch is over, else the one with
    /// the most pages waiting, else the first still fetching.
    fn pick(&self) -> Option<u64> {
        let done = self
            .lanes
            .iter()
            .find(|(_, l)| matches!(l.result, Some(Ok(_))))
            .map(|(id, _)| *id);
        done.or_else(|| {
            self.lanes
                .iter()
                .filter(|(_, l)| l.result.is_none())
                .max_by_key(|(id, l)| (l.spooled(), std::cmp::Reverse(**id)))
                .map(|(id, _)| *id)
        })
    }

    /// Records the runs of sources whose connector failed before the writer took them.
    fn record_failed(&mut self, writer: &mut Writer) -> Result<(), SyncError> {
        let failed: Vec<u64> = self
            .lanes
            .iter()
            .filter(|(_, l)| matches!(l.result, Some(Err(_))))
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            let Some(lane) = self.lanes.remove(&id) else {
                continue;
            };
            let Some(Err(e)) = &lane.result else {
                continue;
            };
            let message = e.to_string();
            self.record_failure(writer, &lane, &message)?;
        }
        Ok(())
    }

    /// Records `lane`'s run as failed. When even that cannot be stored (a full disk),
    /// the failure is still reported to the caller and logged, and the other sources
    /// go on: one source's store failure never stops the rest.
    fn record_failure(
        &mut self,
        writer: &mut Writer,
        lane: &Lane,
        message: &str,
    ) -> Result<(), SyncError> {
        tracing::error!(source = %lane.source, "sync failed: {message}");
        let _ = std::fs::remove_file(&lane.shared.path);
        let run = match writer.record_failure(
            &lane.source,
            lane.connector.system(),
            lane.mode,
            lane.started_at,
            message,
        ) {
            Ok(run) => run,
            Err(error) => {
                tracing::error!(source = %lane.source, "cannot record the failed run: {error}");
                SyncRun {
                    run_id: format!("{}-unrecorded", lane.source),
                    source: lane.source.clone(),
                    system: lane.connector.system().to_owned(),
                    mode: lane.mode,
                    started_at: lane.started_at,
                    finished_at: chrono::Utc::now(),
                    status: crossdex_store::RunStatus::Failed,
                    counts: Default::default(),
                    error: Some(format!("{message} (not recorded in sync_runs: {error})")),
                    rejections: Vec::new(),
                }
            }
        };
        self.finish(run);
        Ok(())
    }

    fn finish(&mut self, run: SyncRun) {
        let c = run.counts;
        tracing::info!(
            source = %run.source,
            status = run.status.as_str(),
            added = c.added, updated = c.updated, unchanged = c.unchanged,
            deleted = c.deleted, rejected = c.rejected,
            "sync finished"
        );
        self.observer.finished(&run);
        self.runs.push(run);
        self.unsettled = true;
    }

    fn abandon(&mut self, writer: &mut Writer) -> Result<(), SyncError> {
        self.queue.clear();
        self.jobs = None;
        for lane in std::mem::take(&mut self.lanes).into_values() {
            lane.task.abort();
            self.record_failure(writer, &lane, INTERRUPTED)?;
        }
        Ok(())
    }

    /// Writes one source's sync: its spooled pages, then its live ones, then commits
    /// or records its failure. Other sources keep fetching meanwhile.
    async fn apply(&mut self, writer: &mut Writer, id: u64) -> Result<(), SyncError> {
        let (source, system, started_at, shared) = {
            let lane = &self.lanes[&id];
            (
                lane.source.clone(),
                lane.connector.system(),
                lane.started_at,
                lane.shared.clone(),
            )
        };
        // Opening new files fails only with a store unusable for every source.
        let mut txn =
            writer
                .begin(&source, system, started_at)
                .map_err(|error| SyncError::Store {
                    source_name: source.clone(),
                    error,
                })?;
        let (tx, mut rx) = mpsc::channel(DIRECT_PAGES);
        let mut tx = Some(tx);
        let mut reader = SpoolReader {
            reader: None,
            read: 0,
            line: String::new(),
        };
        let mut applied = 0u64;
        let failure: Option<String> = 'apply: loop {
            if tx.is_some()
                && let Err(e) = self.catch_up(&shared, &mut reader, &mut tx, &mut txn, &mut applied)
            {
                break 'apply Some(e);
            }
            if *self.stop.borrow() == Stop::Abandon {
                // Dropping the transaction rolls it back; `main` records the run.
                return Ok(());
            }
            let lane = self.lanes.get_mut(&id).expect("the lane being applied");
            match lane.result.take() {
                Some(Ok(outcome)) => {
                    // The connector has returned and dropped its sink: what is left
                    // is in the spool (read above) or the channel.
                    while let Ok(page) = rx.try_recv() {
                        if let Err(e) = self.write(&mut txn, &source, page, &mut applied) {
                            break 'apply Some(e);
                        }
                    }
                    // A failed commit rolls itself back: this source fails, recorded,
                    // and the others go on.
                    let run = match txn.commit(outcome.mode, outcome.checkpoint) {
                        Ok(run) => run,
                        Err(e) => {
                            let lane = self.lanes.remove(&id).expect("the lane being applied");
                            return self.record_failure(
                                writer,
                                &lane,
                                &format!("cannot store its data: {e}"),
                            );
                        }
                    };
                    let lane = self.lanes.remove(&id).expect("the lane being applied");
                    let _ = std::fs::remove_file(&lane.shared.path);
                    self.finish(run);
                    return Ok(());
                }
                Some(Err(e)) => break 'apply Some(e.to_string()),
                None => {}
            }
            tokio::select! {
                changed = self.stop.changed() => {
                    if changed.is_err() {
                        self.jobs = None;
                    }
                    self.on_stop();
                }
                Some(page) = rx.recv(), if tx.is_none() => {
                    if let Err(e) = self.write(&mut txn, &source, page, &mut applied) {
                        break 'apply Some(e);
                    }
                }
                Some(done) = self.done.recv() => {
                    // A fetch that ends frees its slot for a queued source.
                    self.on_done(done);
                    self.start_fetches(txn.committed());
                }
                job = recv_job(&mut self.jobs) => {
                    self.on_job(job);
                    self.start_fetches(txn.committed());
                }
            }
        };
        drop(txn);
        drop(rx);
        let lane = self.lanes.remove(&id).expect("the lane being applied");
        lane.task.abort();
        let message = failure.unwrap_or_default();
        self.record_failure(writer, &lane, &message)
    }

    /// Applies what the spool holds; once it holds nothing unread, routes the
    /// connector's next pages straight here.
    fn catch_up(
        &self,
        shared: &Shared,
        reader: &mut SpoolReader,
        tx: &mut Option<mpsc::Sender<Page>>,
        txn: &mut SyncTxn<'_>,
        applied: &mut u64,
    ) -> Result<(), String> {
        loop {
            let spooled = {
                let mut route = lock(&shared.route);
                match &mut *route {
                    Route::Spool { pages, .. } if *pages == reader.read => {
                        if let Some(tx) = tx.take() {
                            *route = Route::Direct(tx);
                        }
                        return Ok(());
                    }
                    Route::Spool { pages, .. } => *pages,
                    Route::Direct(_) => return Ok(()),
                }
            };
            while reader.read < spooled {
                let page = reader.next(&shared.path)?;
                self.write(txn, &shared.source, page, applied)?;
            }
        }
    }

    fn write(
        &self,
        txn: &mut SyncTxn<'_>,
        source: &str,
        page: Page,
        applied: &mut u64,
    ) -> Result<(), String> {
        txn.apply(page)
            .map_err(|e| ConnectorError::Sink(sink_error(e)).to_string())?;
        *applied += 1;
        self.observer.progress(&Progress {
            source,
            pages: *applied,
            counts: txn.counts(),
        });
        Ok(())
    }
}

async fn recv_job(jobs: &mut Option<mpsc::Receiver<Job>>) -> Option<Job> {
    match jobs {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
