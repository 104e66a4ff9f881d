//! Crash safety and the write lock, with a real child process.

use std::time::{Duration, Instant};

use crate::common::Sandbox;

fn write_rows(path: &std::path::Path, n: usize, note: &str) {
    let mut text = String::with_capacity(n * 48);
    text.push_str("record_id,subject_id,note,score,visit_date\n");
    for i in 0..n {
        text.push_str(&format!(
            "{i},S{:06},{note},{},2024-01-{:02}\n",
            i % 5000,
            i % 30,
            i % 28 + 1
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn big_sandbox() -> Sandbox {
    let s = Sandbox::new();
    std::fs::create_dir(s.path().join("samples/big")).unwrap();
    std::fs::write(
        s.config(),
        "data_dir = \"../crossdex-data\"\n[sources.big]\ntype = \"files\"\npath = \"big\"\n",
    )
    .unwrap();
    s
}

#[test]
fn killing_a_sync_while_it_applies_keeps_the_previous_state() {
    let s = big_sandbox();
    let csv = s.path().join("samples/big/rows.csv");
    write_rows(&csv, 1000, "old");
    s.ok(&["sync", "--all"]);
    write_rows(&csv, 150_000, "new");

    let records_dir = s.data_dir().join("tables/records");
    let committed: Vec<std::path::PathBuf> = std::fs::read_dir(&records_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut child = s.command().args(["sync", "--all"]).spawn().unwrap();
    // The next generation's table file appears when the sync starts writing; let it get
    // well into the apply before killing it.
    let started = Instant::now();
    let new_file = || {
        std::fs::read_dir(&records_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .any(|p| !committed.contains(&p))
    };
    while !new_file() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sync never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync ended before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // The previous state is intact and queryable, in the tables and the index alike.
    assert_eq!(
        s.csv("SELECT count(*), count(DISTINCT id) FROM records"),
        [["1000", "1000"]]
    );
    assert_eq!(
        s.csv("SELECT count(*) FROM observations WHERE value_text = 'new'"),
        [["0"]]
    );
    assert_eq!(
        s.csv("SELECT count(*) FROM search('old', 5000)"),
        [["1000"]]
    );
    assert_eq!(s.csv("SELECT count(*) FROM search('new')"), [["0"]]);

    // The lock died with the process; the next sync completes with no duplicates.
    let run = s.ok(&["sync", "--all"]);
    assert!(run.stderr.contains("149000 added, 1000 updated"), "{run:?}");
    assert_eq!(
        s.csv("SELECT count(*), count(DISTINCT id) FROM records"),
        [["150000", "150000"]]
    );
    assert_eq!(
        s.csv("SELECT count(*) FROM observations WHERE value_text = 'old'"),
        [["0"]]
    );
    assert_eq!(s.csv("SELECT count(*) FROM search('old')"), [["0"]]);
    let files = std::fs::read_dir(s.data_dir().join("tables/records"))
        .unwrap()
        .count();
    assert!(files <= 2, "stale files are collected, {files} left");
}

#[test]
fn a_second_writer_is_refused_while_readers_go_on() {
    let s = Sandbox::new();
    s.ok(&["sync", "clinic"]);
    let held = crossdex_store::Writer::open(s.data_dir()).unwrap();
    let run = s.run(&["sync", "--all"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("is in use by another crossdex process"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(&format!("pid {}", std::process::id())),
        "{run:?}"
    );
    assert_eq!(
        s.csv("SELECT count(*) FROM records"),
        [["110"]],
        "reads are not blocked"
    );
    drop(held);
    s.ok(&["sync", "--all"]);
}
