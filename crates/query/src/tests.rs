use chrono::Utc;
use crossdex_model::{Entity, Observation, Page, Record, SyncMode};
use crossdex_store::Writer;

use super::*;

/// One full sync of `entities` into the data directory at `dir`, as source `clinic`.
fn full_sync(dir: &std::path::Path, entities: Vec<Entity>) {
    sync_source(&mut Writer::open(dir).unwrap(), "clinic", entities);
}

/// One full sync of `entities` as `source`, committed.
fn sync_source(w: &mut Writer, source: &str, entities: Vec<Entity>) {
    let mut txn = w.begin(source, "files", Utc::now()).unwrap();
    txn.apply(Page {
        upserts: entities,
        ..Page::default()
    })
    .unwrap();
    txn.commit(SyncMode::Full, None).unwrap();
}

fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let upserts = (0..20)
        .map(|n| {
            let mut r = Record::new(
                "clinic",
                "files",
                "row",
                &n.to_string(),
                &format!("Visit of subject {n}"),
            );
            r.subject_key = Some(format!("INT_{n:04}"));
            Entity {
                record: r,
                observations: vec![
                    Observation::number("moca", 20.0 + n as f64, (20 + n).to_string()),
                    Observation::text("diagnosis", if n % 2 == 0 { "amnesia" } else { "healthy" }),
                ],
            }
        })
        .collect();
    full_sync(dir.path(), upserts);
    dir
}

async fn rows(engine: &QueryEngine, sql: &str) -> Vec<Vec<String>> {
    engine
        .sql(sql, vec![])
        .await
        .unwrap()
        .rows_as_text()
        .unwrap()
}

#[tokio::test]
async fn tables_and_search_join() {
    let dir = store();
    let e = QueryEngine::open(dir.path()).unwrap();
    assert_eq!(
        rows(&e, "SELECT count(*) FROM records").await,
        vec![vec!["20"]]
    );
    assert_eq!(
        rows(
            &e,
            "SELECT count(*) FROM observations WHERE variable = 'moca' AND value_num < 25"
        )
        .await,
        vec![vec!["5"]]
    );
    let joined = rows(
        &e,
        "SELECT r.subject_key FROM search('amnesia') s JOIN records r ON r.id = s.id ORDER BY r.subject_key LIMIT 2",
    )
    .await;
    assert_eq!(joined, vec![vec!["INT_0000"], vec!["INT_0002"]]);
    assert_eq!(
        rows(&e, "SELECT count(*) FROM search('amnesia', 3)").await,
        vec![vec!["3"]]
    );
    assert_eq!(
        rows(&e, "SELECT status FROM sync_runs").await,
        vec![vec!["succeeded"]]
    );
}

#[tokio::test]
async fn only_queries_are_allowed() {
    let dir = store();
    let e = QueryEngine::open(dir.path()).unwrap();
    for (sql, found) in [
        ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
        ("INSERT INTO records SELECT * FROM records", "INSERT"),
        ("DELETE FROM records", "DELETE"),
        ("DROP TABLE records", "DROP TABLE"),
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE",
        ),
        ("COPY records TO '/tmp/out.parquet'", "COPY"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        (
            "EXPLAIN INSERT INTO records SELECT * FROM records",
            "INSERT",
        ),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
    ] {
        let err = e.sql(sql, vec![]).await.unwrap_err();
        assert!(
            matches!(&err, QueryError::NotAQuery { found: f } if f == found),
            "{sql}: {err}"
        );
        assert!(
            err.to_string().contains("only queries are allowed"),
            "{err}"
        );
        assert!(err.is_user_error());
    }
    // Reading files through a path in FROM is not possible either.
    let err = e
        .sql("SELECT * FROM '/etc/passwd'", vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Plan(_)), "{err}");
    for ok in [
        "SHOW TABLES",
        "DESCRIBE records",
        "EXPLAIN SELECT 1",
        "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
    ] {
        e.sql(ok, vec![])
            .await
            .unwrap_or_else(|err| panic!("{ok}: {err}"));
    }
}

#[tokio::test]
async fn errors_name_the_problem() {
    let dir = store();
    let e = QueryEngine::open(dir.path()).unwrap();
    let err = e.sql("SELECT * FROM nope", vec![]).await.unwrap_err();
    assert!(
        err.to_string().contains("nope") && err.to_string().contains("not found"),
        "{err}"
    );
    let err = e.sql("SELEC 1", vec![]).await.unwrap_err();
    assert!(matches!(err, QueryError::Syntax(_)), "{err}");
    assert!(err.to_string().contains("Line: 1, Column: 1"), "{err}");
    let err = e.sql("SELECT nope FROM records", vec![]).await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = e
        .sql("SELECT * FROM search('(broken')", vec![])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid search query"), "{err}");
    let err = e.sql("SELECT * FROM search(42)", vec![]).await.unwrap_err();
    assert!(err.to_string().contains("text literal"), "{err}");
    let err = e.sql("SELECT 1; SELECT 2", vec![]).await.unwrap_err();
    assert!(err.to_string().contains("one statement at a time"), "{err}");
}

#[tokio::test]
async fn saved_queries_bind_typed_parameters() {
    let dir = store();
    let e = QueryEngine::open(dir.path()).unwrap();
    let q = SavedQuery::parse(
        "low.sql",
        "-- name: low\n-- description: low scores\n-- param: threshold number 25 -- cut-off\nSELECT count(*) FROM observations WHERE variable = 'moca' AND value_num < $threshold\n",
    )
    .unwrap();
    assert_eq!(q.params[0].default.as_deref(), Some("25"));
    let out = e.saved(&q, &[]).await.unwrap();
    assert_eq!(out.rows_as_text().unwrap(), vec![vec!["5"]]);
    let out = e
        .saved(&q, &[("threshold".into(), "30".into())])
        .await
        .unwrap();
    assert_eq!(out.rows_as_text().unwrap(), vec![vec!["10"]]);
    let err = e
        .saved(&q, &[("threshold".into(), "high".into())])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("\"high\" is not a number"),
        "{err}"
    );
    let search = SavedQuery::parse(
        "s.sql",
        "-- name: s\n-- param: words text\n-- param: limit integer 2\nSELECT count(*) FROM search($words, $limit)",
    )
    .unwrap();
    let out = e
        .saved(&search, &[("words".into(), "amnesia".into())])
        .await
        .unwrap();
    assert_eq!(out.rows_as_text().unwrap(), vec![vec!["2"]]);
    let quoted = e
        .saved(&search, &[("words".into(), "it's".into())])
        .await
        .unwrap();
    assert_eq!(
        quoted.rows_as_text().unwrap(),
        vec![vec!["0"]],
        "quotes stay inside the value"
    );
    let err = e.sql("SELECT $missing", vec![]).await.unwrap_err();
    assert!(
        err.to_string().contains("parameter $missing has no value"),
        "{err}"
    );
    let err = e
        .saved(&q, &[("thresold".into(), "1".into())])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("`thresold`") && err.to_string().contains("not declared"),
        "{err}"
    );
}

#[tokio::test]
async fn renders_json_csv_and_tables() {
    let dir = store();
    let e = QueryEngine::open(dir.path()).unwrap();
    let out = e
        .sql(
            "SELECT subject_key, subject_id FROM records ORDER BY subject_key LIMIT 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        out.render(OutputFormat::Json).unwrap(),
        r#"[{"subject_key":"INT_0000","subject_id":null}]"#
    );
    assert_eq!(
        out.render(OutputFormat::Csv).unwrap(),
        "subject_key,subject_id\nINT_0000,\n"
    );
    assert!(
        out.render(OutputFormat::Table)
            .unwrap()
            .contains("| INT_0000    |")
    );
    let empty = e
        .sql("SELECT id FROM records WHERE false", vec![])
        .await
        .unwrap();
    assert_eq!(empty.render(OutputFormat::Json).unwrap(), "[]");
    assert_eq!(empty.render(OutputFormat::Csv).unwrap(), "id\n");
}

#[tokio::test]
async fn an_empty_store_has_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let e = QueryEngine::open_or_empty(dir.path(), Default::default()).unwrap();
    assert_eq!(
        rows(&e, "SELECT count(*) FROM records").await,
        vec![vec!["0"]]
    );
    assert_eq!(
        rows(&e, "SELECT count(*) FROM search('x')").await,
        vec![vec!["0"]]
    );
}

fn resync(dir: &std::path::Path, rows: usize) {
    let entities = (0..rows)
        .map(|n| Entity {
            record: Record::new("clinic", "files", "row", &n.to_string(), "again"),
            observations: vec![],
        })
        .collect();
    full_sync(dir, entities);
}

/// A reader keeps its snapshot to the end, however many commits come meanwhile and
/// whatever garbage collection removes.
#[tokio::test]
async fn a_reader_keeps_its_snapshot_across_commits() {
    let dir = store();
    let e = QueryEngine::open(dir.path()).unwrap();
    for n in [5, 7, 9] {
        resync(dir.path(), n);
    }
    let first = std::fs::read_dir(dir.path().join("tables/records"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|f| f.file_name().to_string_lossy().ends_with(".1.parquet"));
    assert!(
        !first,
        "the first generation's files are gone from the folder"
    );
    assert_eq!(
        rows(&e, "SELECT count(*), count(o.record_id) FROM records r LEFT JOIN observations o ON o.record_id = r.id").await,
        vec![vec!["40", "40"]]
    );
    assert_eq!(
        rows(
            &QueryEngine::open(dir.path()).unwrap(),
            "SELECT count(*) FROM records"
        )
        .await,
        vec![vec!["9"]]
    );
}

/// A table file that its manifest names but the folder lacks is an error, never an
/// empty table; a folder without an index is an error too.
#[tokio::test]
async fn a_missing_table_file_or_index_is_an_error_not_an_empty_table() {
    let dir = store();
    for f in std::fs::read_dir(dir.path().join("tables/records")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let e = QueryEngine::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("records/clinic.1.parquet") && e.contains("cannot be read"),
        "{e}"
    );
    for missing in [
        dir.path().join("nothing-here"),
        dir.path().join("tables/sync_runs.1.parquet"),
    ] {
        let e = QueryEngine::open(&missing).unwrap_err().to_string();
        assert!(e.contains("no crossdex index at"), "{e}");
    }
    assert!(
        QueryEngine::open_or_empty(dir.path().join("nothing-here"), Default::default()).is_ok()
    );
}

/// Two sources, two projects, a sensitive `dob` whose values are canaries.
fn scoped_store(hashed: bool) -> (tempfile::TempDir, Sensitive) {
    let dir = tempfile::tempdir().unwrap();
    let sensitive = Sensitive {
        all: vec!["dob".into()],
        hashed: if hashed { vec!["dob".into()] } else { vec![] },
        ..Sensitive::default()
    };
    let mut w = Writer::open(dir.path()).unwrap();
    w.set_sensitive(sensitive.clone());
    for (source, n_records) in [("clinic", 20), ("imaging", 5)] {
        let upserts = (0..n_records)
            .map(|n| {
                let mut r = Record::new(source, "files", "row", &n.to_string(), "Visit");
                r.subject_key = Some(format!("INT_{n:04}"));
                r.project = Some(if n % 2 == 0 { "P1" } else { "P2" }.to_owned());
                Entity {
                    record: r,
                    observations: vec![
                        Observation::text("dob", format!("canary{source}{}", n % 3)),
                        Observation::number("moca", 20.0 + n as f64, (20 + n).to_string()),
                    ],
                }
            })
            .collect();
        sync_source(&mut w, source, upserts);
    }
    (dir, sensitive)
}

fn scoped(dir: &std::path::Path, sensitive: &Sensitive, scope: ReadScope) -> QueryEngine {
    QueryEngine::open_with(
        dir,
        EngineSettings {
            sensitive: sensitive.clone(),
            hash_key: HashKey(b"test key".to_vec()),
            scope,
            ..EngineSettings::default()
        },
    )
    .unwrap()
}

fn set(values: &[&str]) -> Option<std::collections::BTreeSet<String>> {
    Some(values.iter().map(|v| (*v).to_owned()).collect())
}

type Names = Option<std::collections::BTreeSet<String>>;

fn reader(sources: Names, projects: Names, sensitive: bool) -> ReadScope {
    ReadScope {
        restriction: Restriction { sources, projects },
        sensitive,
    }
}

#[tokio::test]
async fn a_scoped_engine_reads_only_its_rows() {
    let (dir, sensitive) = scoped_store(false);
    let full = scoped(dir.path(), &sensitive, ReadScope::full());
    assert_eq!(
        rows(&full, "SELECT count(*) FROM records").await,
        vec![vec!["25"]]
    );
    // Sensitive values are stored, for readers who may see them, but never indexed.
    assert_eq!(
        rows(
            &full,
            "SELECT count(*) FROM observations WHERE variable = 'dob'"
        )
        .await,
        vec![vec!["25"]]
    );
    assert_eq!(full.search("canaryclinic1", 10).unwrap().len(), 0);
    assert_eq!(full.search("visit", 100).unwrap().len(), 25);

    let imaging = scoped(
        dir.path(),
        &sensitive,
        reader(set(&["imaging"]), None, true),
    );
    assert_eq!(
        rows(
            &imaging,
            "SELECT source, count(*) FROM records GROUP BY source"
        )
        .await,
        vec![vec!["imaging", "5"]]
    );
    assert_eq!(
        rows(&imaging, "SELECT count(*) FROM internal.observations").await,
        vec![vec!["10"]]
    );
    assert_eq!(imaging.search("visit", 100).unwrap().len(), 5);
    assert_eq!(
        rows(&imaging, "SELECT count(*) FROM search('visit', 100)").await,
        vec![vec!["5"]]
    );
    assert_eq!(
        rows(&imaging, "SELECT subject_of('clinic', 'INT_0001') IS NULL").await,
        vec![vec!["true"]]
    );
    assert_eq!(imaging.num_docs(), 5);
    // A predicate that fails on a value quotes it in its error...
    let err = full
        .sql(
            "SELECT max(CAST(value_text AS INT)) FROM internal.observations WHERE variable = 'dob'",
            vec![],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("canary"), "{err}");
    // ... so for a scoped reader it fails only on values in scope: its error never
    // quotes a row of another source.
    for sql in [
        "SELECT count(*) FROM observations WHERE variable = 'dob' AND CAST(value_text AS INT) > 0",
        "SELECT count(*) FROM observations WHERE CAST(value_text AS INT) > 0 AND source = 'clinic'",
        "SELECT max(CAST(value_text AS INT)) FROM internal.observations",
    ] {
        match imaging.sql(sql, vec![]).await {
            Ok(out) => {
                let text = out.render(OutputFormat::Csv).unwrap();
                assert!(!text.contains("canaryclinic"), "{sql}: {text}");
            }
            Err(e) => assert!(!e.to_string().contains("canaryclinic"), "{sql}: {e}"),
        }
    }
    assert_eq!(
        imaging
            .source_counts()
            .await
            .unwrap()
            .iter()
            .map(|c| c.source.as_str())
            .collect::<Vec<_>>(),
        vec!["imaging"]
    );

    let p1 = scoped(dir.path(), &sensitive, reader(None, set(&["P1"]), true));
    // Even n: 10 of clinic's 20, 3 of imaging's 5; each with two observations.
    assert_eq!(
        rows(&p1, "SELECT count(*) FROM records").await,
        vec![vec!["13"]]
    );
    assert_eq!(
        rows(&p1, "SELECT count(*) FROM observations").await,
        vec![vec!["26"]]
    );
    assert_eq!(
        rows(
            &p1,
            "SELECT count(*) FROM observations o JOIN records r ON r.id = o.record_id WHERE r.project <> 'P1'"
        )
        .await,
        vec![vec!["0"]]
    );
    assert_eq!(p1.search("visit", 100).unwrap().len(), 13);

    let no_pii = scoped(dir.path(), &sensitive, reader(None, None, false));
    assert_eq!(
        rows(
            &no_pii,
            "SELECT count(*) FROM observations WHERE variable = 'dob'"
        )
        .await,
        vec![vec!["0"]]
    );
    assert_eq!(
        rows(&no_pii, "SELECT count(*) FROM observations").await,
        vec![vec!["25"]]
    );
    // Counts per source are of what the reader reads: 50 stored, 25 of them `dob`.
    let counted = |counts: Vec<SourceCounts>| {
        counts
            .iter()
            .map(|c| (c.records, c.observations))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    assert_eq!(counted(no_pii.source_counts().await.unwrap()), (25, 25));
    assert_eq!(counted(p1.source_counts().await.unwrap()), (13, 26));
    assert_eq!(counted(full.source_counts().await.unwrap()), (25, 50));
}

/// A reader of one project resolves the keys of its own records only: `subject_of()`
/// says nothing of another project's keys in the same source, and a key linked through
/// a record's title (a notebook) stays visible to the project holding that record.
#[tokio::test]
async fn a_project_reader_resolves_only_its_records_keys() {
    let (dir, sensitive) = scoped_store(false);
    let mut w = Writer::open(dir.path()).unwrap();
    let pages = [(2, "P1"), (3, "P2")]
        .into_iter()
        .map(|(n, project)| {
            let mut r = Record::new(
                "notebook",
                "files",
                "page",
                &n.to_string(),
                &format!("INT_{n:04} slicing"),
            );
            r.project = Some(project.to_owned());
            Entity {
                record: r,
                observations: vec![],
            }
        })
        .collect();
    sync_source(&mut w, "notebook", pages);
    // Linking's answer, written by hand: clinic and imaging share keys 0..5, the
    // notebook pages are linked through their titles.
    let link = |source: &str, n: usize, matched: String| crossdex_store::SubjectLink {
        subject_id: format!("subj:INT_{n:04}"),
        source: source.to_owned(),
        subject_key: format!("INT_{n:04}"),
        matched,
        rule: format!("rule:{source}"),
        confidence: 1.0,
        sex: None,
        birth_year: None,
    };
    let mut links: Vec<_> = (0..20)
        .map(|n| link("clinic", n, format!("INT_{n:04}")))
        .chain((0..5).map(|n| link("imaging", n, format!("INT_{n:04}"))))
        .collect();
    links.push(link("notebook", 2, "INT_0002 slicing".into()));
    links.push(link("notebook", 3, "INT_0003 slicing".into()));
    w.set_subject_links(&links).unwrap();
    drop(w);

    let full = scoped(dir.path(), &sensitive, ReadScope::full());
    let p1 = scoped(dir.path(), &sensitive, reader(None, set(&["P1"]), true));
    let resolve = "SELECT subject_of('clinic', 'INT_0001'), subject_of('clinic', 'INT_0002'), \
                   subject_of('notebook', 'INT_0003 slicing'), subject_of('notebook', 'INT_0002 slicing')";
    assert_eq!(
        rows(&full, resolve).await,
        vec![vec![
            "subj:INT_0001",
            "subj:INT_0002",
            "subj:INT_0003",
            "subj:INT_0002"
        ]]
    );
    // INT_0001 and the INT_0003 page are P2's: unknown to a P1 reader.
    assert_eq!(
        rows(&p1, resolve).await,
        vec![vec!["NULL", "subj:INT_0002", "NULL", "subj:INT_0002"]]
    );
    // Links of P1's records: even clinic keys (10), imaging 0, 2, 4 and one page.
    assert_eq!(
        rows(
            &p1,
            "SELECT source, count(*) FROM subject_links GROUP BY source ORDER BY source"
        )
        .await,
        vec![
            vec!["clinic", "10"],
            vec!["imaging", "3"],
            vec!["notebook", "1"]
        ]
    );
    assert_eq!(
        rows(
            &p1,
            "SELECT count(*) FROM records WHERE subject_id IS NOT NULL"
        )
        .await,
        vec![vec!["14"]]
    );
}

#[tokio::test]
async fn joinable_sensitive_values_are_keyed_hashes() {
    let (dir, sensitive) = scoped_store(true);
    let no_pii = scoped(dir.path(), &sensitive, reader(None, None, false));
    let hashed = rows(
        &no_pii,
        "SELECT value_text, count(*) FROM observations WHERE variable = 'dob' GROUP BY value_text ORDER BY 2 DESC, 1",
    )
    .await;
    // Six distinct canaries (two sources, n % 3), equal values equal hashes.
    assert_eq!(hashed.len(), 6, "{hashed:?}");
    assert!(
        hashed
            .iter()
            .all(|r| r[0].len() == 64 && !r[0].contains("canary"))
    );
    assert_eq!(
        rows(
            &no_pii,
            "SELECT count(*) FROM observations WHERE value_text LIKE '%canary%'"
        )
        .await,
        vec![vec!["0"]]
    );
    // The hash is no function a reader can call to test guesses.
    let err = no_pii
        .sql("SELECT keyed_hash('canaryclinic1')", vec![])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("keyed_hash"), "{err}");
}
