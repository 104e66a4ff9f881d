//! SQL answers and search hits checked against oracles that are not crossdex: DuckDB reads the same Parquet rows and
//! resolves subjects with a join of its own (`tests/differential/duckdb_oracle.py`),
//! then every saved query and a generated set of cross-source joins, filters and
//! aggregates must give the same rows in both; `search_oracle.py` scans the same rows'
//! text for words, typos, prefixes, phrases and fields and must find the same hits.
//! Cohorts of several sizes, and after a
//! simulated day, because query plans change with the data's size.
//!
//! DuckDB comes from PyPI (`pip install duckdb`, which `.ci/run` does); without it this
//! test fails and says so.

use crate::common::{Sandbox, repo, simulators};

/// Runs the oracle over the sandbox's data directory and fails with its report.
fn agree_with_duckdb(s: &Sandbox, label: &str) {
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/differential/duckdb_oracle.py"))
        .arg(env!("CARGO_BIN_EXE_crossdex"))
        .arg(s.data_dir())
        .arg(repo().join("queries"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{label}: crossdex and DuckDB disagree\n{stdout}{stderr}"
    );
    assert!(
        stdout.contains(" queries agree, 0 differ"),
        "{label}: {stdout}"
    );
}

async fn cohort(subjects: u32, days: u32) {
    let s = Sandbox::new();
    let (sims, cfg) = simulators(&s, subjects).await;
    let cfg = cfg.as_str();
    s.ok(&["-c", cfg, "sync", "--all"]);
    agree_with_duckdb(&s, &format!("{subjects} subjects"));
    if days > 0 {
        sims.advance(days);
        s.ok(&["-c", cfg, "sync", "--all"]);
        agree_with_duckdb(&s, &format!("{subjects} subjects, {days} days later"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_cohort_agrees_with_duckdb() {
    cohort(30, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_sized_cohort_agrees_with_duckdb_before_and_after_a_day() {
    cohort(200, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_cohort_agrees_with_duckdb() {
    cohort(1500, 0).await;
}

/// The number of subject keys per source is the same in the link report, in the
/// demo's summary (which reads the same linking) and in the simulators' truth file;
/// the output formats a user picks work on every table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_counts_agree_with_the_truth_and_formats_hold() {
    let s = Sandbox::new();
    let (sims, cfg) = simulators(&s, 120).await;
    let cfg = cfg.as_str();
    s.ok(&["-c", cfg, "sync", "--all"]);
    let mut truth: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for line in sims.truth_csv().lines().skip(1) {
        let p: Vec<&str> = line.splitn(3, ',').collect();
        truth
            .entry(p[1].to_owned())
            .or_default()
            .insert(p[2].to_owned());
    }
    let run = s.ok(&["-c", cfg, "link", "report", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    for p in report["per_source"].as_array().expect("per_source") {
        let source = p["source"].as_str().unwrap();
        assert_eq!(
            p["keys"].as_u64().unwrap() as usize,
            truth[source].len(),
            "{source}: keys in the report vs the truth file"
        );
    }
    // tranSMART's units come with its concepts' metadata tags.
    let units = s.csv(
        "SELECT count(unit) FROM observations WHERE system = 'transmart' AND value_num IS NOT NULL",
    );
    assert_ne!(units[0][0], "0", "tranSMART units");
    // CSV: every table, lists included; the link report as rows.
    for table in [
        "subjects",
        "records",
        "subject_links",
        "visits",
        "sync_runs",
    ] {
        let run = s.ok(&[
            "-c",
            cfg,
            "sql",
            "--format",
            "csv",
            &format!("SELECT * FROM {table}"),
        ]);
        assert!(run.stdout.lines().count() > 1, "{table}: {run:?}");
    }
    let run = s.ok(&[
        "-c",
        cfg,
        "sql",
        "--format",
        "csv",
        "SELECT sources FROM subjects WHERE n_sources > 1 LIMIT 1",
    ]);
    assert!(
        run.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("\"[")),
        "{run:?}"
    );
    let run = s.ok(&["-c", cfg, "link", "report", "--format", "csv"]);
    assert!(
        run.stdout
            .starts_with("kind,source,subject_key,subject_id,detail\n"),
        "{run:?}"
    );
    // Status: durations in seconds, lines a terminal can show.
    let run = s.ok(&["-c", cfg, "status"]);
    assert!(!run.stdout.contains("PT"), "{run:?}");
    assert!(
        run.stdout.lines().all(|l| l.chars().count() <= 200),
        "{run:?}"
    );
    let run = s.ok(&["sql", "--help"]);
    for name in ["subjects", "subject_links", "visits", "search("] {
        assert!(run.stdout.contains(name), "{name} in sql --help");
    }
    // On a terminal: the footer says shown and total, matched words are bold, and a
    // wide table fits the terminal's width.
    let bin = env!("CARGO_BIN_EXE_crossdex");
    let out = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty rows 40 cols 100; {bin} -c {cfg} search -n 2 moca; {bin} -c {cfg} sql 'SELECT * FROM records LIMIT 3'"
        ))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .output()
        .expect("script runs");
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let total = s.csv("SELECT count(*) FROM search('moca', 100000)")[0][0].clone();
    assert!(
        screen.contains(&format!("2 of {total} hits shown")),
        "{screen}"
    );
    assert!(screen.contains("\x1b[1m"), "bold highlights: {screen}");
    assert!(
        screen
            .lines()
            .filter(|l| l.starts_with('+') || l.starts_with('|'))
            .all(|l| l.chars().count() <= 100),
        "{screen}"
    );
}
