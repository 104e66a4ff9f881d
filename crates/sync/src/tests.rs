use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};
use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, ConnectorError, Entity, Observation, Page, PageSink,
    Record, Rejection, SyncOutcome, SyncRequest,
};
use crossdex_store::{RunStatus, Snapshot};
use tokio::sync::{Barrier, Semaphore, mpsc, watch};

use super::*;
use crate::schedule::{ManualClock, Missed, Schedule, Scheduler, Zone, drive};

/// How many syncs of a group of connectors run at once, and the most seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

enum Hold {
    None,
    /// Waits after the first page until every connector sharing the barrier has
    /// reached it.
    Barrier(Arc<Barrier>),
    /// Waits for a permit after the first page.
    Gate(Arc<Semaphore>),
}

/// A source of numbered entities in pages of 10, each with 8 observations, changeable
/// between syncs; it can reject a row per page, wait after its first page, or fail
/// at a page: the cases the runner must handle, without a network.
struct Scripted {
    name: String,
    items: Mutex<Vec<u32>>,
    bad_row_per_page: bool,
    fail_at_page: Mutex<Option<usize>>,
    hold: Hold,
    gauge: Arc<Gauge>,
    requests: Mutex<Vec<SyncRequest>>,
}

impl Scripted {
    fn new(name: &str, items: u32) -> Self {
        Scripted {
            name: name.into(),
            items: Mutex::new((0..items).collect()),
            bad_row_per_page: false,
            fail_at_page: Mutex::new(None),
            hold: Hold::None,
            gauge: Arc::default(),
            requests: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    async fn pages(
        &self,
        request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError> {
        let items = self.items.lock().unwrap().clone();
        let fail_at = *self.fail_at_page.lock().unwrap();
        for (i, chunk) in items.chunks(10).enumerate() {
            if i == 1 {
                match &self.hold {
                    Hold::None => {}
                    Hold::Barrier(b) => {
                        b.wait().await;
                    }
                    Hold::Gate(g) => g.acquire().await.unwrap().forget(),
                }
            }
            if fail_at == Some(i) {
                return Err(ConnectorError::Unreachable("connection refused".into()));
            }
            let upserts = chunk
                .iter()
                .map(|n| {
                    let mut e = Entity {
                        record: Record::new(&self.name, "files", "item", &n.to_string(), "item"),
                        observations: vec![],
                    };
                    for v in 0..8 {
                        e.observations
                            .push(Observation::text(format!("v{v}"), format!("{n}-{v}")));
                    }
                    e
                })
                .collect();
            let rejected = if self.bad_row_per_page {
                vec![Rejection {
                    native_id: None,
                    reason: format!("bad row in page {i}"),
                }]
            } else {
                vec![]
            };
            sink.page(Page {
                upserts,
                deletions: vec![],
                rejected,
            })
            .await?;
        }
        Ok(SyncOutcome {
            mode: request.mode,
            checkpoint: Checkpoint::of(&serde_json::json!({"n": items.len()})).ok(),
        })
    }
}

#[async_trait]
impl Connector for Scripted {
    fn source(&self) -> &str {
        &self.name
    }
    fn system(&self) -> &'static str {
        "files"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { incremental: true }
    }
    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport {
            summary: "ok".into(),
        })
    }
    async fn sync(
        &self,
        request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError> {
        self.requests.lock().unwrap().push(request.clone());
        let now = self.gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.gauge.max.fetch_max(now, Ordering::SeqCst);
        let result = self.pages(request, sink).await;
        self.gauge.now.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

async fn sync_one(w: &mut Writer, c: &Arc<Scripted>, full: bool) -> SyncRun {
    sync_source(w, c.clone(), SyncOptions { full }, Arc::new(()))
        .await
        .unwrap()
}

#[tokio::test]
async fn first_sync_is_full_then_incremental_from_the_committed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let mut c = Scripted::new("scripted", 25);
    c.bad_row_per_page = true;
    let c = Arc::new(c);
    let run = sync_one(&mut w, &c, false).await;
    assert_eq!(
        (run.mode, run.status, run.counts.added, run.counts.rejected),
        (SyncMode::Full, RunStatus::Partial, 25, 3)
    );
    let run = sync_one(&mut w, &c, false).await;
    assert_eq!(
        (run.mode, run.counts.unchanged),
        (SyncMode::Incremental, 25)
    );
    {
        let requests = c.requests.lock().unwrap();
        assert!(requests[0].checkpoint.is_none());
        assert_eq!(
            requests[1].checkpoint,
            Checkpoint::of(&serde_json::json!({"n": 25})).ok()
        );
    }
    let run = sync_one(&mut w, &c, true).await;
    assert_eq!(run.mode, SyncMode::Full);
}

#[tokio::test]
async fn a_failing_source_is_recorded_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let c = Arc::new(Scripted::new("scripted", 25));
    sync_one(&mut w, &c, false).await;
    *c.items.lock().unwrap() = (100..140).collect();
    *c.fail_at_page.lock().unwrap() = Some(2);
    let run = sync_one(&mut w, &c, true).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error.as_deref().unwrap().contains("source unreachable"),
        "{:?}",
        run.error
    );
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 25);
    assert_eq!(
        s.manifest().sources["scripted"].checkpoint,
        Checkpoint::of(&serde_json::json!({"n": 25})).ok()
    );
}

#[derive(Default)]
struct Runs(Mutex<Vec<SyncRun>>);

#[async_trait]
impl Observer for Runs {
    fn finished(&self, run: &SyncRun) {
        self.0.lock().unwrap().push(run.clone());
    }
}

fn job(c: &Arc<Scripted>) -> Job {
    Job {
        connector: c.clone(),
        options: SyncOptions::default(),
    }
}

async fn run_all(w: &mut Writer, sources: &[Arc<Scripted>], limits: Limits) -> Vec<SyncRun> {
    let jobs = sources.iter().map(job).collect();
    run_jobs(w, jobs, limits, Arc::new(())).await.unwrap()
}

fn records_of(dir: &std::path::Path) -> BTreeMap<String, u64> {
    Snapshot::open(dir)
        .unwrap()
        .manifest()
        .sources
        .iter()
        .map(|(k, v)| (k.clone(), v.n_records))
        .collect()
}

/// A scripted source counted in `gauge`, holding as told after its first page.
fn scripted(name: &str, items: u32, gauge: &Arc<Gauge>, hold: Hold) -> Arc<Scripted> {
    let mut c = Scripted::new(name, items);
    c.gauge = gauge.clone();
    c.hold = hold;
    Arc::new(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_fetch_at_the_same_time_and_each_commits_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let gauge = Arc::new(Gauge::default());
    // Each source waits after its first page for the other two: a runner fetching
    // one source after the other never gets past that point.
    let barrier = Arc::new(Barrier::new(3));
    let sources: Vec<Arc<Scripted>> = [("a", 95), ("b", 230), ("c", 41)]
        .iter()
        .map(|(n, items)| scripted(n, *items, &gauge, Hold::Barrier(barrier.clone())))
        .collect();
    let runs = run_all(&mut w, &sources, Limits { sources: 3 }).await;
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:?}"
    );
    assert_eq!(gauge.max.load(Ordering::SeqCst), 3);
    drop(w);
    let expect = BTreeMap::from([("a".into(), 95), ("b".into(), 230), ("c".into(), 41)]);
    assert_eq!(records_of(dir.path()), expect);
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 95 + 230 + 41);
    let observations: u64 = s
        .manifest()
        .sources
        .values()
        .map(|v| v.n_observations)
        .sum();
    assert_eq!(observations, (95 + 230 + 41) * 8);
    assert!(
        !dir.path().join("spool").exists(),
        "spool files are removed once applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_limit_bounds_sources_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let gauge = Arc::new(Gauge::default());
    // Sources wait in pairs after their first page: with a limit of 1 the first
    // never gets its partner, and with a limit above 2 more than two would be seen
    // at once.
    let barrier = Arc::new(Barrier::new(2));
    let sources: Vec<Arc<Scripted>> = (0..4)
        .map(|i| scripted(&format!("s{i}"), 60, &gauge, Hold::Barrier(barrier.clone())))
        .collect();
    let runs = run_all(&mut w, &sources, Limits { sources: 2 }).await;
    assert_eq!(runs.len(), 4);
    assert_eq!(gauge.max.load(Ordering::SeqCst), 2);
    assert_eq!(records_of(dir.path()).values().sum::<u64>(), 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let gauge = Arc::new(Gauge::default());
    let bad = scripted("bad", 50, &gauge, Hold::None);
    *bad.fail_at_page.lock().unwrap() = Some(1);
    let sources = [
        scripted("good", 50, &gauge, Hold::None),
        bad,
        scripted("fine", 20, &gauge, Hold::None),
    ];
    let runs = run_all(&mut w, &sources, Limits::default()).await;
    let status: BTreeMap<&str, RunStatus> =
        runs.iter().map(|r| (r.source.as_str(), r.status)).collect();
    assert_eq!(status["bad"], RunStatus::Failed);
    assert_eq!(status["good"], RunStatus::Succeeded);
    assert_eq!(status["fine"], RunStatus::Succeeded);
    let bad_run = runs.iter().find(|r| r.source == "bad").unwrap();
    assert!(
        bad_run
            .error
            .as_deref()
            .unwrap()
            .contains("connection refused"),
        "{bad_run:?}"
    );
    drop(w);
    let expect = BTreeMap::from([("fine".into(), 20), ("good".into(), 50)]);
    assert_eq!(records_of(dir.path()), expect);
    assert_eq!(Snapshot::open(dir.path()).unwrap().num_docs(), 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_abandons_a_running_sync_and_keeps_the_committed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let gauge = Arc::new(Gauge::default());
    let gate = Arc::new(Semaphore::new(0));
    let stuck = scripted("stuck", 40, &gauge, Hold::Gate(gate.clone()));
    let runs_seen = Arc::new(Runs::default());
    let (tx, rx) = mpsc::channel(4);
    let (stop, stop_rx) = watch::channel(Stop::Run);
    for c in [scripted("quick", 30, &gauge, Hold::None), stuck] {
        tx.send(job(&c)).await.unwrap();
    }
    let observer = runs_seen.clone();
    let runner = tokio::spawn(async move {
        let runs = run(&mut w, rx, Limits::default(), observer, stop_rx).await;
        (runs, w)
    });
    // Stop once `quick` is committed; `stuck` is waiting behind its gate.
    while runs_seen.0.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    stop.send(Stop::Abandon).unwrap();
    let (runs, w) = runner.await.unwrap();
    let runs = runs.unwrap();
    drop((w, tx));
    let stuck_run = runs.iter().find(|r| r.source == "stuck").unwrap();
    assert_eq!(stuck_run.status, RunStatus::Failed);
    assert_eq!(stuck_run.error.as_deref(), Some(INTERRUPTED));
    let expect = BTreeMap::from([("quick".into(), 30)]);
    assert_eq!(records_of(dir.path()), expect);
    assert_eq!(Snapshot::open(dir.path()).unwrap().num_docs(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_firing_during_a_run_never_overlaps_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let gauge = Arc::new(Gauge::default());
    let gate = Arc::new(Semaphore::new(0));
    let slow = scripted("slow", 30, &gauge, Hold::Gate(gate.clone()));
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 30).unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let schedules = BTreeMap::from([(
        "slow".to_owned(),
        Schedule::new("* * * * *", Zone::parse(Some("UTC")).unwrap(), 0).unwrap(),
    )]);
    // Ran a moment ago: the first run is the one due at 12:01.
    let last = BTreeMap::from([("slow".to_owned(), t0)]);
    let scheduler = Scheduler::new(schedules, &last, Missed::CatchUp, t0);
    assert_eq!(
        scheduler.next_run("slow"),
        Some(Utc.with_ymd_and_hms(2026, 6, 1, 12, 1, 0).unwrap())
    );
    let (tx, rx) = mpsc::channel(4);
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let runs_seen = Arc::new(Runs::default());
    let observer = runs_seen.clone();
    let runner_stop = stop_rx.clone();
    let runner =
        tokio::spawn(
            async move { run(&mut w, rx, Limits::default(), observer, runner_stop).await },
        );
    let job_of = {
        let slow = slow.clone();
        move |_: &str| Some(job(&slow))
    };
    let driver_clock = clock.clone();
    let driver = tokio::spawn(async move {
        drive(scheduler, driver_clock.as_ref(), job_of, tx, stop_rx).await;
    });
    // Minutes 12:01 to 12:04 pass while the first run is held at its gate.
    for minute in 1..=4 {
        let sleeps = clock.sleeps();
        clock.set(t0 + TimeDelta::minutes(minute));
        while clock.sleeps() == sleeps {
            tokio::task::yield_now().await;
        }
        if minute == 1 {
            while slow.calls() == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
    assert_eq!(slow.calls(), 1, "no second run while the first goes on");
    // Release the first run, then the one follow-up the four fires coalesced into.
    gate.add_permits(2);
    while runs_seen.0.lock().unwrap().len() < 2 {
        tokio::task::yield_now().await;
    }
    stop.send(Stop::Drain).unwrap();
    driver.await.unwrap();
    let runs = runner.await.unwrap().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
    assert_eq!(slow.calls(), 2);
    assert_eq!(
        gauge.max.load(Ordering::SeqCst),
        1,
        "runs of one source never overlap"
    );
    assert!(runs[0].finished_at <= runs[1].started_at);
}
