//! The application layer as front ends meet it: one long-lived `Service` seeing what
//! another process commits, the JSON shapes of `--format json` pinned, search facets
//! checked against SQL over the same hits and the records table.

use std::collections::BTreeMap;

use crossdex_service::{OpenOptions, QueryControl, SearchRequest, Service};
use serde_json::Value;

use crate::common::{Sandbox, facet_buckets, simulators};

/// A service opened before any sync answers with what a `crossdex sync` in another
/// process commits, without being reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_sees_commits_of_another_process() {
    let s = Sandbox::new();
    let service = Service::open(OpenOptions {
        config: Some(s.config()),
        config_required: true,
        data_dir: Some(s.data_dir()),
        query_timeout: None,
    })
    .expect("service");
    let control = QueryControl::default();
    let before = service.status(&control).await.expect("status");
    assert_eq!(before.records, 0);
    let records = async |service: &Service| {
        let out = service
            .sql("SELECT count(*) FROM records", vec![], &control)
            .await
            .expect("sql");
        out.rows_as_text().expect("rows")[0][0].clone()
    };
    tokio::task::block_in_place(|| s.ok(&["sync", "clinic"]));
    assert_eq!(records(&service).await, "110");
    let hits = service
        .search(&SearchRequest::new("donepezil", 10), &control)
        .await
        .expect("search");
    assert!(hits.total > 0);
    tokio::task::block_in_place(|| s.ok(&["sync", "--all"]));
    let all = s.csv("SELECT count(*) FROM records")[0][0].clone();
    assert_ne!(all, "110");
    assert_eq!(records(&service).await, all);
    let status = service.status(&control).await.expect("status");
    assert_eq!(status.indexed_sources, 3);
}

fn json(run: &crate::common::Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

/// `status`, `subject`, `link report` and `record` print the service's typed answers;
/// their shapes (field names, nesting, types) are pinned. Times and paths vary from run
/// to run and are redacted; everything else comes from the seeded simulators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_have_stable_shapes() {
    let s = Sandbox::new();
    let (_sims, cfg) = simulators(&s, 40).await;
    let cfg = cfg.as_str();
    tokio::task::block_in_place(|| {
        s.ok(&["-c", cfg, "sync", "--all"]);
        let time = "[time]";
        let status = json(&s.ok(&["-c", cfg, "status", "--format", "json"]));
        insta::assert_json_snapshot!("status", status, {
            ".data_dir" => "[data_dir]",
            // Generations follow the order sources commit in, which varies.
            ".sources[].last_run.run_id" => "[run_id]",
            ".sources[].last_run.started_at" => time,
            ".sources[].last_run.finished_at" => time,
            ".sources[].last_run.seconds" => "[seconds]",
        });
        let subject = json(&s.ok(&["-c", cfg, "subject", "INT-003", "--format", "json"]));
        assert_eq!(subject["subject_id"], "subj:INT_0003");
        insta::assert_json_snapshot!("subject", subject);
        let report = json(&s.ok(&["-c", cfg, "link", "report", "--format", "json"]));
        insta::assert_json_snapshot!("link_report", report);
        let record = json(&s.ok(&[
            "-c",
            cfg,
            "record",
            "xnat:session:XNAT_E00001",
            "--format",
            "json",
        ]));
        insta::assert_json_snapshot!("record", record, {
            ".deep_link" => "[url]",
        });
    });
}

/// On the demo's data, the facets of `crossdex search hippocampus` equal the same
/// hits grouped in SQL, and its month histogram equals the records' own dates.
#[test]
fn search_facets_equal_sql_over_the_same_hits() {
    let s = Sandbox::new();
    let d = s.path().join("demo-data");
    let d = d.to_str().unwrap();
    s.ok(&["--data-dir", d, "demo", "--no-ui"]);
    let counts = |sql: &str| -> BTreeMap<String, u64> {
        let run = s.ok(&["--data-dir", d, "sql", "--format", "csv", sql]);
        run.stdout
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, n) = l.rsplit_once(',')?;
                Some((k.to_owned(), n.parse().ok()?))
            })
            .collect()
    };
    for q in ["hippocampus", "plasma", "amyl*", "*"] {
        let run = s.ok(&["--data-dir", d, "search", q, "-n", "3", "--format", "json"]);
        let result = json(&run);
        assert!(result["hits"][0]["highlights"].is_array(), "{q}: {result}");
        let f = &result["facets"];
        let sql = |column: &str| {
            counts(&format!(
                "SELECT {column}, count(*) FROM search('{q}', 1000000) GROUP BY {column} ORDER BY 1"
            ))
        };
        assert_eq!(facet_buckets(&f["system"]), sql("system"), "{q}: systems");
        assert_eq!(facet_buckets(&f["source"]), sql("source"), "{q}: sources");
        assert_eq!(facet_buckets(&f["kind"]), sql("kind"), "{q}: kinds");
        // The ten most frequent subjects, ties by id.
        let top = s.ok(&[
            "--data-dir",
            d,
            "sql",
            "--format",
            "csv",
            &format!(
                "SELECT subject_id, count(*) AS n FROM search('{q}', 1000000) \
                 WHERE subject_id IS NOT NULL GROUP BY 1 ORDER BY n DESC, subject_id LIMIT 10"
            ),
        ]);
        let top: Vec<String> = top.stdout.lines().skip(1).map(str::to_owned).collect();
        let facet: Vec<String> = f["subject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| format!("{},{}", b["value"].as_str().unwrap(), b["count"]))
            .collect();
        assert_eq!(facet, top, "{q}: subjects");
        let total: u64 = sql("system").values().sum();
        assert_eq!(result["total"].as_u64(), Some(total), "{q}: total");
        // The histogram against the records table's dates, through a join of its own.
        let months = counts(&format!(
            "SELECT to_char(coalesce(r.created_at, r.modified_at), '%Y-%m') AS m, count(*) \
             FROM search('{q}', 1000000) s JOIN records r ON r.id = s.id \
             WHERE coalesce(r.created_at, r.modified_at) IS NOT NULL GROUP BY 1 ORDER BY 1"
        ));
        assert_eq!(facet_buckets(&f["month"]), months, "{q}: months");
        let dated: u64 = months.values().sum();
        assert_eq!(f["undated"].as_u64(), Some(total - dated), "{q}: undated");
    }
}
