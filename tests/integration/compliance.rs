//! The compliance suite: one set of checks every HTTP connector passes against its
//! simulator, over loopback. A connector joins by adding a `Target`.
//!
//! Full sync matches what the simulator serves; a re-sync changes nothing; an
//! incremental sync after one simulated day fetches only what changed and applies
//! adds, updates and deletes; paging boundaries hold; wrong credentials, 429/5xx and
//! cut-off bodies behave.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use crossdex_model::{ConnectorFactory, SourceContext};
use crossdex_query::QueryEngine;
use crossdex_sim::{Faults, RequestRecord, SimOptions, Simulators, System, World};
use crossdex_store::{RunStatus, SyncRun, Writer};
use crossdex_sync::SyncOptions;
use serde_json::{Value, json};

type Counts = BTreeMap<String, usize>;

/// Every entity the five simulators serve, as the connectors index them.
pub(crate) fn served_total(w: &World) -> usize {
    [xnat(), redcap(), omero(), transmart(), elabftw()]
        .iter()
        .map(|t| (t.expected)(w).values().sum::<usize>())
        .sum()
}

pub(crate) struct Target {
    system: System,
    factory: fn() -> Box<dyn ConnectorFactory>,
    config: fn(&Simulators) -> Value,
    /// Records per kind the simulator serves.
    pub(crate) expected: fn(&World) -> Counts,
    /// The config key giving the page size, and the listing size a page is measured
    /// against.
    paging_key: Option<&'static str>,
    page_unit: fn(&World) -> usize,
    /// The config key of the secret to spoil.
    secret_key: &'static str,
    /// Entities read one by one in these requests (details, record batches); `None`
    /// where the API can only re-read everything (tranSMART's hypercube).
    detail_reads: Option<fn(&[RequestRecord]) -> usize>,
}

fn counts(pairs: &[(&str, usize)]) -> Counts {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

pub(crate) fn xnat() -> Target {
    Target {
        system: System::Xnat,
        factory: || Box::new(crossdex_connector_xnat::XnatFactory),
        config: |s| {
            let c = s.credentials(System::Xnat);
            json!({"type": "xnat", "url": s.url(System::Xnat), "username": c.username,
                   "password": c.password, "timeout_s": 5})
        },
        expected: |w| {
            counts(&[
                ("project", w.xnat.projects.len()),
                ("subject", w.xnat.subjects.len()),
                ("session", w.xnat.experiments.len()),
                (
                    "scan",
                    w.xnat.experiments.iter().map(|e| e.scans.len()).sum(),
                ),
            ])
        },
        paging_key: Some("page_size"),
        page_unit: |w| {
            w.xnat
                .subjects
                .iter()
                .filter(|s| s.project == "MEMCLIN")
                .count()
        },
        secret_key: "password",
        detail_reads: Some(|reqs| {
            reqs.iter()
                .filter(|r| {
                    r.path.starts_with("/data/experiments/") && r.path.matches('/').count() == 3
                })
                .count()
        }),
    }
}

pub(crate) fn redcap() -> Target {
    Target {
        system: System::Redcap,
        factory: || Box::new(crossdex_connector_redcap::RedcapFactory),
        config: |s| {
            json!({"type": "redcap", "url": format!("{}/api/", s.url(System::Redcap)),
                   "token": s.credentials(System::Redcap).token, "timeout_s": 5})
        },
        // One project per API token.
        expected: |w| counts(&[("project", 1), ("record", w.redcap.records.len())]),
        paging_key: Some("batch_size"),
        page_unit: |w| w.redcap.records.len(),
        secret_key: "token",
        detail_reads: Some(|reqs| {
            reqs.iter()
                .filter(|r| r.param("content").as_deref() == Some("record"))
                .map(|r| {
                    r.form
                        .iter()
                        .filter(|(k, _)| k.starts_with("records["))
                        .count()
                })
                .sum()
        }),
    }
}

pub(crate) fn omero() -> Target {
    Target {
        system: System::Omero,
        factory: || Box::new(crossdex_connector_omero::OmeroFactory),
        config: |s| {
            let c = s.credentials(System::Omero);
            json!({"type": "omero", "url": s.url(System::Omero), "username": c.username,
                   "password": c.password, "timeout_s": 5})
        },
        expected: |w| {
            counts(&[
                ("project", w.omero.projects.len()),
                ("dataset", w.omero.datasets.len()),
                ("image", w.omero.images.len()),
            ])
        },
        paging_key: Some("page_size"),
        page_unit: |w| {
            w.omero
                .datasets
                .iter()
                .map(|d| d.images.len())
                .max()
                .unwrap_or(1)
        },
        secret_key: "password",
        detail_reads: Some(|reqs| {
            reqs.iter()
                .filter(|r| {
                    r.path.starts_with("/api/v0/m/images/")
                        && r.path.len() > "/api/v0/m/images/".len()
                })
                .count()
        }),
    }
}

pub(crate) fn transmart() -> Target {
    Target {
        system: System::Transmart,
        factory: || Box::new(crossdex_connector_transmart::TransmartFactory),
        config: |s| {
            let c = s.credentials(System::Transmart);
            let url = s.url(System::Transmart);
            json!({"type": "transmart", "url": url,
                   "token_url": format!("{url}/auth/realms/transmart/protocol/openid-connect/token"),
                   "client_id": crossdex_sim::TRANSMART_CLIENT_ID,
                   "username": c.username, "password": c.password, "timeout_s": 5})
        },
        expected: |w| {
            counts(&[
                ("study", 1),
                ("concept", crossdex_sim::TRANSMART_CONCEPTS),
                ("patient", w.transmart.patients.len()),
                ("observation set", w.transmart.patients.len()),
            ])
        },
        paging_key: Some("patients_per_request"),
        page_unit: |w| w.transmart.patients.len(),
        secret_key: "password",
        detail_reads: None,
    }
}

pub(crate) fn elabftw() -> Target {
    Target {
        system: System::Elabftw,
        factory: || Box::new(crossdex_connector_elabftw::ElabFactory),
        config: |s| {
            json!({"type": "elabftw", "url": s.url(System::Elabftw),
                   "api_key": s.credentials(System::Elabftw).token, "timeout_s": 5})
        },
        expected: |w| {
            counts(&[
                (
                    "experiment",
                    w.elab.experiments.iter().filter(|e| e.state != 3).count(),
                ),
                ("item", w.elab.items.len()),
            ])
        },
        paging_key: Some("page_size"),
        page_unit: |w| w.elab.items.len(),
        secret_key: "api_key",
        detail_reads: Some(|reqs| {
            reqs.iter()
                .filter(|r| {
                    r.path
                        .rsplit('/')
                        .next()
                        .is_some_and(|last| last.parse::<u64>().is_ok())
                })
                .count()
        }),
    }
}

async fn sims(subjects: u32) -> Simulators {
    let opts = SimOptions {
        subjects,
        seed: 5,
        ..SimOptions::default()
    };
    Simulators::start(&opts, IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
        .await
        .expect("simulators start")
}

async fn sync(t: &Target, config: Value, dir: &Path, full: bool) -> SyncRun {
    let connector = (t.factory)()
        .build(SourceContext {
            name: t.system.name().to_owned(),
            config,
            base_dir: dir.to_owned(),
        })
        .expect("connector builds");
    let mut writer = Writer::open(dir.join("data")).expect("writer");
    crossdex_sync::sync_source(
        &mut writer,
        Arc::from(connector),
        SyncOptions { full },
        Arc::new(()),
    )
    .await
    .expect("the store works")
}

async fn indexed(dir: &Path) -> Counts {
    let engine = QueryEngine::open(dir.join("data")).expect("engine");
    let out = engine
        .sql(
            "SELECT kind, CAST(count(*) AS BIGINT) AS n FROM records GROUP BY kind ORDER BY kind",
            vec![],
        )
        .await
        .expect("query");
    let csv = out
        .render(crossdex_query::OutputFormat::Csv)
        .expect("render");
    csv.lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .map(|(k, n)| (k.to_owned(), n.parse().expect("count")))
        .collect()
}

/// Everything indexed, as text, in a stable order.
async fn content(dir: &Path) -> String {
    let engine = QueryEngine::open(dir.join("data")).expect("engine");
    let mut out = String::new();
    for sql in [
        "SELECT id, parent_id, project, subject_key, title, description, url FROM records ORDER BY id",
        "SELECT record_id, variable, label, value_text, value_num, value_date, unit, event, instance \
         FROM observations ORDER BY record_id, variable, value_text, event, instance",
    ] {
        let o = engine.sql(sql, vec![]).await.expect("query");
        out.push_str(&o.render(crossdex_query::OutputFormat::Csv).expect("render"));
    }
    out
}

fn ok(run: &SyncRun) {
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
}

async fn full_sync_matches_and_resync_changes_nothing(t: Target) {
    let s = sims(30).await;
    let dir = tempfile::tempdir().expect("tmp");
    let run = sync(&t, (t.config)(&s), dir.path(), true).await;
    ok(&run);
    let expected = s.with_world(t.expected);
    assert_eq!(indexed(dir.path()).await, expected);
    assert_eq!(run.counts.added as usize, expected.values().sum::<usize>());

    for full in [false, true] {
        let again = sync(&t, (t.config)(&s), dir.path(), full).await;
        ok(&again);
        assert_eq!(
            (
                again.counts.added,
                again.counts.updated,
                again.counts.deleted
            ),
            (0, 0, 0),
            "re-sync (full: {full}) changed something: {again:?}"
        );
    }
    assert_eq!(indexed(dir.path()).await, expected);
}

async fn incremental_fetches_only_what_changed(t: Target) {
    let s = sims(60).await;
    let dir = tempfile::tempdir().expect("tmp");
    ok(&sync(&t, (t.config)(&s), dir.path(), true).await);
    let total_reads = t.detail_reads.map(|f| f(&s.requests(t.system)));
    s.clear_requests(t.system);
    s.advance(1);
    let run = sync(&t, (t.config)(&s), dir.path(), false).await;
    ok(&run);
    assert_eq!(run.mode.as_str(), "incremental", "{run:?}");
    assert_eq!(
        indexed(dir.path()).await,
        s.with_world(t.expected),
        "adds, updates and deletes applied"
    );
    assert!(run.counts.added > 0 && run.counts.deleted > 0, "{run:?}");
    // ... and nothing else: what did not change is not written again.
    let total: usize = s.with_world(t.expected).values().sum();
    let touched = (run.counts.added + run.counts.updated + run.counts.deleted) as usize;
    assert!(
        touched * 4 < total,
        "{touched} of {total} entities touched: {run:?}"
    );
    if let (Some(f), Some(total)) = (t.detail_reads, total_reads) {
        let reads = f(&s.requests(t.system));
        assert!(
            reads > 0 && reads * 4 < total,
            "incremental read {reads} entities one by one, the full sync {total}"
        );
    }
    // The result is what a fresh full sync of the same day gives, value for value.
    let fresh = tempfile::tempdir().expect("tmp");
    ok(&sync(&t, (t.config)(&s), fresh.path(), true).await);
    let (inc, full) = (content(dir.path()).await, content(fresh.path()).await);
    if let Some((a, b)) = inc.lines().zip(full.lines()).find(|(a, b)| a != b) {
        panic!(
            "the incremental sync differs from a full sync:\n  incremental: {a}\n  full:        {b}"
        );
    }
    assert_eq!(inc.lines().count(), full.lines().count());
}

async fn paging_boundaries_hold(t: Target) {
    let Some(key) = t.paging_key else {
        return; // the API has no paging
    };
    let s = sims(12).await;
    let unit = s.with_world(t.page_unit);
    let expected = s.with_world(t.expected);
    for size in [1, unit, unit + 1] {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = (t.config)(&s);
        config[key] = json!(size);
        let run = sync(&t, config, dir.path(), true).await;
        ok(&run);
        assert_eq!(indexed(dir.path()).await, expected, "{key} = {size}");
    }
}

async fn wrong_credentials_fail_clearly_and_change_nothing(t: Target) {
    let s = sims(10).await;
    let dir = tempfile::tempdir().expect("tmp");
    ok(&sync(&t, (t.config)(&s), dir.path(), true).await);
    let before = indexed(dir.path()).await;
    let mut config = (t.config)(&s);
    config[t.secret_key] = json!("not-the-secret");
    let run = sync(&t, config, dir.path(), true).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("refused") || error.contains("authentication"),
        "{error}"
    );
    assert!(
        !error.contains("not-the-secret"),
        "the secret leaked: {error}"
    );
    assert_eq!(indexed(dir.path()).await, before);
}

async fn transient_errors_are_retried(t: Target) {
    let s = sims(10).await;
    let dir = tempfile::tempdir().expect("tmp");
    s.set_faults(
        t.system,
        Faults {
            fail_next: 2,
            fail_status: 503,
            ..Faults::default()
        },
    );
    ok(&sync(&t, (t.config)(&s), dir.path(), true).await);
    s.set_faults(
        t.system,
        Faults {
            fail_next: 1,
            fail_status: 429,
            retry_after_s: 1,
            ..Faults::default()
        },
    );
    ok(&sync(&t, (t.config)(&s), dir.path(), true).await);
    let faults: Vec<&str> = s
        .requests(t.system)
        .iter()
        .filter_map(|r| r.fault)
        .collect();
    assert_eq!(faults, ["error", "error", "rate_limit"]);
    assert_eq!(indexed(dir.path()).await, s.with_world(t.expected));
}

async fn a_cut_off_body_fails_the_sync_only(t: Target) {
    let s = sims(10).await;
    let dir = tempfile::tempdir().expect("tmp");
    // A few answers cut off mid-JSON are lost answers: retried, and the sync holds.
    s.set_faults(
        t.system,
        Faults {
            truncate_rate: 0.2,
            ..Faults::default()
        },
    );
    ok(&sync(&t, (t.config)(&s), dir.path(), true).await);
    assert_eq!(indexed(dir.path()).await, s.with_world(t.expected));
    let before = indexed(dir.path()).await;
    s.advance(1);
    // Every answer cut: the source fails, saying so, and keeps its last good state.
    s.set_faults(
        t.system,
        Faults {
            truncate_rate: 1.0,
            ..Faults::default()
        },
    );
    let run = sync(&t, (t.config)(&s), dir.path(), true).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert!(
        run.error.as_deref().unwrap_or("").contains("cut off"),
        "{run:?}"
    );
    assert_eq!(
        indexed(dir.path()).await,
        before,
        "the index keeps the last good state"
    );
    s.set_faults(t.system, Faults::default());
    ok(&sync(&t, (t.config)(&s), dir.path(), false).await);
    assert_eq!(
        indexed(dir.path()).await,
        s.with_world(t.expected),
        "the next sync catches up"
    );
}

macro_rules! compliance {
    ($module:ident, $target:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn full_sync_matches_and_resync_changes_nothing() {
                super::full_sync_matches_and_resync_changes_nothing($target).await;
            }
            #[tokio::test]
            async fn incremental_fetches_only_what_changed() {
                super::incremental_fetches_only_what_changed($target).await;
            }
            #[tokio::test]
            async fn paging_boundaries_hold() {
                super::paging_boundaries_hold($target).await;
            }
            #[tokio::test]
            async fn wrong_credentials_fail_clearly_and_change_nothing() {
                super::wrong_credentials_fail_clearly_and_change_nothing($target).await;
            }
            #[tokio::test]
            async fn transient_errors_are_retried() {
                super::transient_errors_are_retried($target).await;
            }
            #[tokio::test]
            async fn a_cut_off_body_fails_the_sync_only() {
                super::a_cut_off_body_fails_the_sync_only($target).await;
            }
        }
    };
}

/// eLabFTW's timestamps have whole seconds: an entry edited in the second the last
/// sync's newest change carries is still picked up by the next incremental sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elabftw_an_edit_in_the_same_second_is_not_missed() {
    let t = elabftw();
    let s = sims(30).await;
    let dir = tempfile::tempdir().expect("tmp");
    ok(&sync(&t, (t.config)(&s), dir.path(), true).await);
    s.with_world_mut(|w| {
        let newest = w
            .elab
            .experiments
            .iter()
            .map(|e| e.modified_at)
            .max()
            .expect("experiments");
        let e = w
            .elab
            .experiments
            .iter_mut()
            .find(|e| e.modified_at < newest && e.state != 3)
            .expect("an older experiment");
        e.title = "Edited in the same second".into();
        e.modified_at = newest;
    });
    let run = sync(&t, (t.config)(&s), dir.path(), false).await;
    ok(&run);
    assert_eq!(run.counts.updated, 1, "{run:?}");
    let engine = QueryEngine::open(dir.path().join("data")).expect("engine");
    let out = engine
        .sql(
            "SELECT count(*) FROM records WHERE title = 'Edited in the same second'",
            vec![],
        )
        .await
        .expect("query");
    assert_eq!(
        out.rows_as_text().expect("rows"),
        vec![vec!["1".to_owned()]]
    );
    // And nothing read at that second before is fetched again as if new.
    let again = sync(&t, (t.config)(&s), dir.path(), false).await;
    assert_eq!(
        (again.counts.added, again.counts.updated),
        (0, 0),
        "{again:?}"
    );
}

compliance!(xnat_connector, xnat());
compliance!(redcap_connector, redcap());
compliance!(omero_connector, omero());
compliance!(transmart_connector, transmart());
compliance!(elabftw_connector, elabftw());

/// A session or token that expired since the last call (the server refuses it) is
/// renewed with one new login, and the sync completes.
async fn an_expired_session_is_renewed(t: Target, login_path: &str) {
    let s = sims(10).await;
    let dir = tempfile::tempdir().expect("tmp");
    let logins = |s: &Simulators| {
        s.requests(t.system)
            .iter()
            .filter(|r| r.path == login_path)
            .count()
    };
    let connector = (t.factory)()
        .build(SourceContext {
            name: t.system.name().into(),
            config: (t.config)(&s),
            base_dir: dir.path().to_owned(),
        })
        .expect("connector");
    connector.check().await.expect("credentials work");
    assert_eq!(logins(&s), 1);
    s.expire_sessions(t.system);
    let mut writer = Writer::open(dir.path().join("data")).expect("writer");
    let run = crossdex_sync::sync_source(
        &mut writer,
        Arc::from(connector),
        SyncOptions { full: true },
        Arc::new(()),
    )
    .await
    .expect("store works");
    ok(&run);
    assert_eq!(logins(&s), 2, "one new login after the expiry");
    let refused = s
        .requests(t.system)
        .iter()
        .filter(|r| r.status == 401 || r.status == 403)
        .count();
    assert_eq!(refused, 1, "one refused request, then the new session");
    assert_eq!(indexed(dir.path()).await, s.with_world(t.expected));
}

#[tokio::test]
async fn xnat_logs_in_again_when_its_session_expires() {
    an_expired_session_is_renewed(xnat(), "/data/JSESSION").await;
}

#[tokio::test]
async fn omero_logs_in_again_when_its_session_expires() {
    an_expired_session_is_renewed(omero(), "/api/v0/login/").await;
}

#[tokio::test]
async fn transmart_fetches_a_new_token_when_one_is_refused() {
    an_expired_session_is_renewed(
        transmart(),
        "/auth/realms/transmart/protocol/openid-connect/token",
    )
    .await;
}
