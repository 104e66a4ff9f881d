use std::sync::Mutex;

use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, ConnectorError, Entity, Record, Rejection, SyncOutcome,
};
use crossdex_store::{RunStatus, Snapshot};

use super::*;

/// A connector serving a fixed list, changeable between syncs, that can fail after a
/// number of pages: the failure modes the runner must handle, without a network.
struct Scripted {
    items: Mutex<Vec<u32>>,
    fail_after_pages: Option<usize>,
    requests: Mutex<Vec<SyncRequest>>,
}

impl Scripted {
    fn new(items: Vec<u32>) -> Self {
        Scripted {
            items: Mutex::new(items),
            fail_after_pages: None,
            requests: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl Connector for Scripted {
    fn source(&self) -> &str {
        "scripted"
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
        let items = self.items.lock().unwrap().clone();
        for (i, chunk) in items.chunks(10).enumerate() {
            if self.fail_after_pages == Some(i) {
                return Err(ConnectorError::Unreachable(
                    "connection reset by 127.0.0.1:9".into(),
                ));
            }
            let upserts = chunk
                .iter()
                .map(|n| Entity {
                    record: Record::new("scripted", "files", "item", &n.to_string(), "item"),
                    observations: vec![],
                })
                .collect();
            let rejected = vec![Rejection {
                native_id: None,
                reason: format!("bad row in page {i}"),
            }];
            sink.page(Page {
                upserts,
                deletions: vec![],
                rejected,
            })
            .await?;
        }
        Ok(SyncOutcome {
            mode: request.mode,
            checkpoint: Some(Checkpoint(serde_json::json!({"n": items.len()}))),
        })
    }
}

#[tokio::test]
async fn first_sync_is_full_then_incremental_from_the_committed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let c = Scripted::new((0..25).collect());
    let run = sync_source(&mut w, &c, SyncOptions::default(), &())
        .await
        .unwrap();
    assert_eq!(
        (run.mode, run.status, run.counts.added, run.counts.rejected),
        (SyncMode::Full, RunStatus::Partial, 25, 3)
    );
    let run = sync_source(&mut w, &c, SyncOptions::default(), &())
        .await
        .unwrap();
    assert_eq!(
        (run.mode, run.counts.unchanged),
        (SyncMode::Incremental, 25)
    );
    {
        let requests = c.requests.lock().unwrap();
        assert!(requests[0].checkpoint.is_none());
        assert_eq!(
            requests[1].checkpoint,
            Some(Checkpoint(serde_json::json!({"n": 25})))
        );
    }
    let run = sync_source(&mut w, &c, SyncOptions { full: true }, &())
        .await
        .unwrap();
    assert_eq!(run.mode, SyncMode::Full);
}

#[tokio::test]
async fn a_failing_source_is_recorded_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let mut c = Scripted::new((0..25).collect());
    sync_source(&mut w, &c, SyncOptions::default(), &())
        .await
        .unwrap();
    *c.items.lock().unwrap() = (100..140).collect();
    c.fail_after_pages = Some(2);
    let run = sync_source(&mut w, &c, SyncOptions { full: true }, &())
        .await
        .unwrap();
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
        Some(serde_json::json!({"n": 25}))
    );
}

mod runner {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::{TimeDelta, TimeZone, Utc};
    use crossdex_model::{Observation, Page};
    use tokio::sync::{Barrier, Semaphore, mpsc, watch};

    use super::*;
    use crate::schedule::{ManualClock, Missed, Schedule, Scheduler, Zone, drive};
    use crate::{INTERRUPTED, Job, Limits, Stop, run};

    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    enum Hold {
        None,
        /// Every probe waits after its first page until all have reached it.
        Barrier(Arc<Barrier>),
        /// Waits for a permit after the first page.
        Gate(Arc<Semaphore>),
    }

    /// A source of `items` entities in pages of 10, with 8 observations each, that
    /// counts how many syncs of all probes run at once.
    struct Probe {
        name: String,
        items: u32,
        fail: bool,
        hold: Hold,
        gauge: Arc<Gauge>,
        calls: AtomicUsize,
    }

    impl Probe {
        fn new(name: &str, items: u32, gauge: &Arc<Gauge>) -> Probe {
            Probe {
                name: name.into(),
                items,
                fail: false,
                hold: Hold::None,
                gauge: gauge.clone(),
                calls: AtomicUsize::new(0),
            }
        }
    }

    #[async_trait]
    impl Connector for Probe {
        fn source(&self) -> &str {
            &self.name
        }
        fn system(&self) -> &'static str {
            "files"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities { incremental: false }
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
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.gauge.max.fetch_max(now, Ordering::SeqCst);
            let result = self.pages(request, sink).await;
            self.gauge.now.fetch_sub(1, Ordering::SeqCst);
            result
        }
    }

    impl Probe {
        async fn pages(
            &self,
            request: SyncRequest,
            sink: &mut dyn PageSink,
        ) -> Result<SyncOutcome, ConnectorError> {
            let ids: Vec<u32> = (0..self.items).collect();
            for (i, chunk) in ids.chunks(10).enumerate() {
                if i == 1 {
                    match &self.hold {
                        Hold::None => {}
                        Hold::Barrier(b) => {
                            b.wait().await;
                        }
                        Hold::Gate(g) => g.acquire().await.unwrap().forget(),
                    }
                    if self.fail {
                        return Err(ConnectorError::Unreachable("connection refused".into()));
                    }
                }
                let upserts = chunk
                    .iter()
                    .map(|n| {
                        let mut e = Entity {
                            record: Record::new(
                                &self.name,
                                "files",
                                "item",
                                &n.to_string(),
                                "item",
                            ),
                            observations: vec![],
                        };
                        for v in 0..8 {
                            e.observations
                                .push(Observation::text(format!("v{v}"), format!("{n}-{v}")));
                        }
                        e
                    })
                    .collect();
                sink.page(Page {
                    upserts,
                    ..Page::default()
                })
                .await?;
            }
            Ok(SyncOutcome {
                mode: request.mode,
                checkpoint: None,
            })
        }
    }

    #[derive(Default)]
    struct Runs(Mutex<Vec<SyncRun>>);

    #[async_trait]
    impl Observer for Runs {
        fn finished(&self, run: &SyncRun) {
            self.0.lock().unwrap().push(run.clone());
        }
    }

    async fn run_all(w: &mut Writer, probes: Vec<Arc<Probe>>, limits: Limits) -> Vec<SyncRun> {
        let (tx, rx) = mpsc::channel(probes.len().max(1));
        for p in probes {
            tx.send(Job {
                connector: p,
                options: SyncOptions::default(),
            })
            .await
            .unwrap();
        }
        drop(tx);
        let (_stop, stop_rx) = watch::channel(Stop::Run);
        run(w, rx, limits, Arc::new(()), stop_rx).await.unwrap()
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

    use std::collections::BTreeMap;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sources_fetch_at_the_same_time_and_each_commits_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let gauge = Arc::new(Gauge::default());
        // Each probe waits after its first page for the other two: a runner fetching
        // one source after the other never gets past that point.
        let barrier = Arc::new(Barrier::new(3));
        let probes: Vec<Arc<Probe>> = [("a", 95), ("b", 230), ("c", 41)]
            .iter()
            .map(|(n, items)| {
                let mut p = Probe::new(n, *items, &gauge);
                p.hold = Hold::Barrier(barrier.clone());
                Arc::new(p)
            })
            .collect();
        let runs = run_all(&mut w, probes, Limits { sources: 3 }).await;
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
        let probes = (0..5)
            .map(|i| Arc::new(Probe::new(&format!("s{i}"), 60, &gauge)))
            .collect();
        let runs = run_all(&mut w, probes, Limits { sources: 2 }).await;
        assert_eq!(runs.len(), 5);
        assert!(gauge.max.load(Ordering::SeqCst) <= 2);
        assert_eq!(records_of(dir.path()).values().sum::<u64>(), 300);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_source_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let gauge = Arc::new(Gauge::default());
        let mut bad = Probe::new("bad", 50, &gauge);
        bad.fail = true;
        let probes = vec![
            Arc::new(Probe::new("good", 50, &gauge)),
            Arc::new(bad),
            Arc::new(Probe::new("fine", 20, &gauge)),
        ];
        let runs = run_all(&mut w, probes, Limits::default()).await;
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
        let mut stuck = Probe::new("stuck", 40, &gauge);
        stuck.hold = Hold::Gate(gate.clone());
        let runs_seen = Arc::new(Runs::default());
        let (tx, rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(Stop::Run);
        for p in [Arc::new(Probe::new("quick", 30, &gauge)), Arc::new(stuck)] {
            tx.send(Job {
                connector: p,
                options: SyncOptions::default(),
            })
            .await
            .unwrap();
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
        let mut slow = Probe::new("slow", 30, &gauge);
        slow.hold = Hold::Gate(gate.clone());
        let slow = Arc::new(slow);
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
            move |_: &str| {
                Some(Job {
                    connector: slow.clone(),
                    options: SyncOptions::default(),
                })
            }
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
                while slow.calls.load(Ordering::SeqCst) == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
        assert_eq!(
            slow.calls.load(Ordering::SeqCst),
            1,
            "no second run while the first goes on"
        );
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
        assert_eq!(slow.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            gauge.max.load(Ordering::SeqCst),
            1,
            "runs of one source never overlap"
        );
        assert!(runs[0].finished_at <= runs[1].started_at);
    }
}
