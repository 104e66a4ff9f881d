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

use crate::common::{Sandbox, repo};

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
    let opts = crossdex_sim::SimOptions {
        subjects,
        ..crossdex_sim::SimOptions::default()
    };
    let sims = crossdex_sim::Simulators::start(
        &opts,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        0,
    )
    .await
    .expect("simulators start");
    let cfg = s.path().join("sims.toml");
    std::fs::write(&cfg, sims.config_toml(Some(&s.data_dir()), |_| true)).expect("config");
    let cfg = cfg.to_str().expect("utf-8");
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
