//! The service over a folder of exports (the `files` connector): long-lived services
//! see new commits, queries can be stopped, answers are typed.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::{
    ErrorCode, OpenOptions, QueryControl, ScalarValue, SearchRequest, Service, SyncRequest,
};

/// A folder with a config over one export of `rows` participants.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(rows: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("exports")).unwrap();
        std::fs::write(
            dir.path().join("crossdex.toml"),
            "data_dir = \"data\"\n[sources.clinic]\ntype = \"files\"\npath = \"exports\"\n",
        )
        .unwrap();
        let s = Setup { dir };
        s.write_rows(rows);
        s
    }

    /// Rewrites the export with `rows` rows: participant `P-<n>`, a diagnosis, a date.
    fn write_rows(&self, rows: usize) {
        let mut text = String::from("participant_id,diagnosis,visit_date\n");
        for i in 0..rows {
            let diagnosis = if i % 3 == 0 {
                "hippocampal sclerosis"
            } else {
                "healthy control"
            };
            text.push_str(&format!("P-{i:04},{diagnosis},2024-{:02}-15\n", i % 12 + 1));
        }
        std::fs::write(self.dir.path().join("exports/participants.csv"), text).unwrap();
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("crossdex.toml")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn service(&self) -> Service {
        Service::open(OpenOptions {
            config: Some(self.config()),
            config_required: true,
            ..OpenOptions::default()
        })
        .unwrap()
    }
}

async fn sync(service: &Service) -> crate::SyncOutcome {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let outcome = service
        .sync(
            &SyncRequest {
                all: true,
                ..SyncRequest::default()
            },
            tx,
        )
        .await
        .unwrap();
    let mut finished = 0;
    while let Ok(e) = rx.try_recv() {
        finished += usize::from(matches!(e, crate::SyncEvent::Finished { .. }));
    }
    assert_eq!(finished, outcome.runs.len(), "one event per recorded run");
    outcome
}

async fn count(service: &Service, sql: &str) -> String {
    let out = service
        .sql(sql, vec![], &QueryControl::default())
        .await
        .unwrap();
    out.rows_as_text().unwrap()[0][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_opened_before_a_sync_answers_with_the_new_data() {
    let setup = Setup::new(30);
    let service = setup.service();
    // Opened on an empty folder: no index yet is a clear error, status is empty.
    let err = service
        .sql("SELECT 1", vec![], &QueryControl::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NoIndex, "{err}");
    let status = service.status(&QueryControl::default()).await.unwrap();
    assert_eq!(status.records, 0);
    assert_eq!(status.never_synced, vec!["clinic".to_owned()]);

    sync(&service).await;
    assert_eq!(count(&service, "SELECT count(*) FROM records").await, "30");
    // A reader that started on this state keeps it through the next commits.
    let before = service.engine().unwrap();

    setup.write_rows(45);
    let other = setup.service();
    let outcome = sync(&other).await;
    assert_eq!(outcome.runs[0].added, 15);
    assert_eq!(count(&service, "SELECT count(*) FROM records").await, "45");
    let hits = service
        .search(
            &SearchRequest::new("sclerosis", 100),
            &QueryControl::default(),
        )
        .await
        .unwrap();
    assert_eq!(hits.total, 15, "every third of 45 rows");
    let old = before
        .sql("SELECT count(*) FROM records", vec![])
        .await
        .unwrap();
    assert_eq!(old.rows_as_text().unwrap()[0][0], "30");
    let status = service.status(&QueryControl::default()).await.unwrap();
    assert_eq!(status.records, 45);
    assert_eq!(
        status.sources[0].last_run.as_ref().map(|r| r.added),
        Some(15)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_timed_out_query_stops_and_the_service_goes_on() {
    let setup = Setup::new(1500);
    let service = setup.service();
    sync(&service).await;
    // 1500³ rows: minutes of work, stopped long before.
    let long = "SELECT count(*) FROM records a, records b, records c \
                WHERE a.title < b.title AND b.title < c.title";
    let control = QueryControl::default();
    let cancel = control.cancel.clone();
    let started = std::time::Instant::now();
    let (result, ()) = tokio::join!(service.sql(long, vec![], &control), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let err = result.unwrap_err();
    assert_eq!(err.code, ErrorCode::Cancelled, "{err}");
    assert_eq!(err.http_status(), 499);
    assert!(started.elapsed() < Duration::from_secs(60));

    let err = service
        .sql(
            long,
            vec![],
            &QueryControl::with_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::QueryTimeout, "{err}");

    // Dropped: the future goes away mid-query, as a closed HTTP request's does.
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        service.sql(long, vec![], &QueryControl::default()),
    )
    .await;
    assert!(dropped.is_err(), "still running when dropped");

    assert_eq!(
        count(&service, "SELECT count(*) FROM records").await,
        "1500"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facets_count_every_hit_not_only_the_page() {
    let setup = Setup::new(120);
    let service = setup.service();
    sync(&service).await;
    let r = service
        .search(
            &SearchRequest::new("sclerosis", 5),
            &QueryControl::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.hits.len(), 5);
    // Hand-counted: rows 0, 3, ..., 117.
    assert_eq!(r.total, 40);
    let f = r.facets.expect("facets");
    assert_eq!(f.system.len(), 1);
    assert_eq!(
        (f.system[0].value.as_str(), f.system[0].count),
        ("files", 40)
    );
    // Exports carry no record dates: every hit is undated.
    assert!(f.month.is_empty());
    assert_eq!(f.undated, 40);
    assert!(r.hits.iter().all(|h| {
        h.highlights
            .iter()
            .any(|w| w.eq_ignore_ascii_case("sclerosis"))
    }));

    // A second page, and a search error with its position.
    let page2 = service
        .search(
            &SearchRequest {
                offset: 5,
                ..SearchRequest::new("sclerosis", 5)
            },
            &QueryControl::default(),
        )
        .await
        .unwrap();
    assert!(
        page2
            .hits
            .iter()
            .all(|h| !r.hits.iter().any(|g| g.id == h.id))
    );
    let err = service
        .search(
            &SearchRequest::new("(sclerosis", 5),
            &QueryControl::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSearch);
    assert_eq!(err.position, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_and_errors_are_typed() {
    let setup = Setup::new(12);
    let service = setup.service();
    sync(&service).await;
    let id = count(&service, "SELECT min(id) FROM records").await;
    let record = service.record(&id, &QueryControl::default()).await.unwrap();
    assert_eq!(record.record.id, id);
    assert!(
        record
            .observations
            .iter()
            .any(|o| o.variable == "diagnosis"),
        "{record:?}"
    );
    let missing = service
        .record("clinic:row:nope", &QueryControl::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::RecordNotFound);
    assert_eq!(missing.http_status(), 404);
    let err = service
        .subject("nobody", &QueryControl::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::SubjectNotFound);
    let err = service
        .sql(
            "SELECT count(*)\nFROM records WHERE",
            vec![],
            &QueryControl::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSql, "{err}");
    // Out of text after `WHERE`: the last character.
    assert_eq!(err.position, Some(34), "{err:?}");
    let err = service
        .sql(
            "SELECT 1;\nSELEC count(*) FROM records",
            vec![],
            &QueryControl::default(),
        )
        .await
        .unwrap_err();
    // `SELEC` starts line 2, the 11th character.
    assert_eq!(err.position, Some(11), "{err:?}");
    let err = service
        .sql("DROP TABLE records", vec![], &QueryControl::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotAQuery);
    let err = service
        .run_saved("no-such-query", &[], &QueryControl::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSavedQuery);
    let p = service
        .sql(
            "SELECT count(*) FROM records WHERE subject_key = $k",
            vec![("k".into(), ScalarValue::Utf8(Some("P-0003".into())))],
            &QueryControl::default(),
        )
        .await
        .unwrap();
    assert_eq!(p.rows_as_text().unwrap()[0][0], "1");
    let low_moca = service
        .saved_queries()
        .into_iter()
        .find(|q| q.name == "low-moca")
        .unwrap();
    assert_eq!(low_moca.params[0].kind, "number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_data_directory_names_its_holder_and_can_be_waited_for() {
    let setup = Setup::new(5);
    let service = setup.service();
    sync(&service).await;
    let held = crossdex_store::Writer::open_for(setup.data(), "crossdex serve").unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = service
        .sync(
            &SyncRequest {
                all: true,
                ..SyncRequest::default()
            },
            tx,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::DataDirectoryBusy);
    assert!(
        err.message
            .contains(&format!("pid {}, crossdex serve", std::process::id())),
        "{err}"
    );
    // Released while a sync waits: the sync goes ahead.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(held);
    });
    let (tx, _rx) = mpsc::unbounded_channel();
    let outcome = service
        .sync(
            &SyncRequest {
                all: true,
                wait: Some(Duration::from_secs(30)),
                ..SyncRequest::default()
            },
            tx,
        )
        .await
        .unwrap();
    release.await.unwrap();
    assert_eq!(outcome.failed, 0);
}
