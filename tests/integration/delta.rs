//! The tables published as Delta Lake tables (`crossdex export`), read back with the
//! `deltalake` package (`tests/delta/read.py`) and compared row by row with `crossdex
//! sql` on the data directory; a re-export commits only what a sync changed, and
//! readers of the previous version still read it.

use std::path::Path;

use serde_json::Value;

use crate::common::{Sandbox, repo, simulators};

fn export(s: &Sandbox, cfg: &str, dir: &Path, sensitive: bool) -> Value {
    let mut args = vec![
        "-c",
        cfg,
        "export",
        dir.to_str().unwrap(),
        "--report",
        "json",
    ];
    if sensitive {
        args.push("--include-sensitive");
    }
    let run = s.ok(&args);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    v
}

/// What `tests/delta/read.py` read: each table's version and rows, after checking
/// them against `crossdex sql`.
fn read_back(s: &Sandbox, cfg: &str, dir: &Path) -> Value {
    let run = std::process::Command::new("python3")
        .arg(repo().join("tests/delta/read.py"))
        .arg(env!("CARGO_BIN_EXE_crossdex"))
        .arg(cfg)
        .arg(dir)
        .current_dir(s.path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "deltalake reads other rows than crossdex sql:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_export_reads_back_as_crossdex_sql_and_a_resync_commits_only_what_changed() {
    let s = Sandbox::new();
    let (sims, cfg) = simulators(&s, 30).await;
    s.ok(&["-c", &cfg, "sync", "--all"]);
    let dir = s.path().join("delta");

    let first = export(&s, &cfg, &dir, true);
    let n_sources = s.csv_with(&cfg, "SELECT count(DISTINCT source) FROM records");
    let n_sources: u64 = n_sources.parse().unwrap();
    for t in first["tables"].as_array().unwrap() {
        assert_eq!(t["version"], 0, "{t}");
        assert_eq!(t["committed"], true, "{t}");
    }
    assert_eq!(
        table(&first, "records")["added"],
        n_sources,
        "one file per source"
    );
    let read = read_back(&s, &cfg, &dir);
    assert_eq!(read["records"]["version"], 0);
    assert_eq!(read["records"]["rows"], table(&first, "records")["rows"]);

    // Nothing changed: no new version anywhere.
    let again = export(&s, &cfg, &dir, true);
    for t in again["tables"].as_array().unwrap() {
        assert_eq!(
            t["committed"], false,
            "an unchanged table commits nothing: {t}"
        );
        assert_eq!(t["version"], 0);
    }

    // A month later: the sources that changed get new files, in one new version each.
    sims.advance(30);
    s.ok(&["-c", &cfg, "sync", "--all"]);
    let third = export(&s, &cfg, &dir, true);
    let records = table(&third, "records");
    assert_eq!(records["version"], 1, "{records}");
    assert_eq!(
        records["added"], records["removed"],
        "a source's file replaces its own"
    );
    assert!(records["added"].as_u64().unwrap() >= 1);
    assert_eq!(
        records["added"].as_u64().unwrap() + records["unchanged"].as_u64().unwrap(),
        n_sources
    );
    let read = read_back(&s, &cfg, &dir);
    assert_eq!(read["records"]["version"], 1);
    assert_eq!(
        read["records"]["previous_rows"],
        table(&first, "records")["rows"],
        "version 0 still reads as it was"
    );

    // By default, sensitive values stay out: no year of birth in the clear.
    let plain = s.path().join("delta-plain");
    export(&s, &cfg, &plain, false);
    let check = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, deltalake\n\
             rows = deltalake.DeltaTable(sys.argv[1] + '/observations').to_pyarrow_table(\n\
                 columns=['variable', 'value_text', 'value_num']).to_pylist()\n\
             years = [r for r in rows if r['variable'] == 'birth_year']\n\
             clear = [r for r in years if r['value_num'] is not None or (r['value_text'] or '').isdigit()]\n\
             print(len(years), len(clear))",
        )
        .arg(&plain)
        .output()
        .unwrap();
    let counts = String::from_utf8_lossy(&check.stdout);
    let counts: Vec<u64> = counts
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        counts.len(),
        2,
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(counts[1], 0, "sensitive values in the clear: {counts:?}");

    // `[publish] delta`: every sync publishes what it changed.
    let mut config = std::fs::read_to_string(&cfg).unwrap();
    config.push_str("\n[publish]\ndelta = \"published\"\ninclude_sensitive = true\n");
    std::fs::write(&cfg, config).unwrap();
    sims.advance(7);
    let sync = s.ok(&["-c", &cfg, "sync", "--all"]);
    assert!(
        format!("{}{}", sync.stdout, sync.stderr).contains("published to"),
        "the sync says where it published: {}{}",
        sync.stdout,
        sync.stderr
    );
    let published = std::path::Path::new(&cfg)
        .parent()
        .unwrap()
        .join("published");
    let read = read_back(&s, &cfg, &published);
    assert_eq!(read["records"]["version"], 0);

    // A folder holding a Delta table crossdex did not write is refused, untouched.
    let foreign = s.path().join("foreign");
    let log = foreign.join("records/_delta_log");
    std::fs::create_dir_all(&log).unwrap();
    let commit = r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":[],"configuration":{}}}"#;
    std::fs::write(log.join("00000000000000000000.json"), commit).unwrap();
    let run = s.run(&["-c", &cfg, "export", foreign.to_str().unwrap()]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("crossdex did not export"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&log).unwrap().count(),
        1,
        "nothing written into another program's log"
    );
}
