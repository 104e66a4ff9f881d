//! The terminal UI on the demo cohort: every view drawn at 80×24 and 160×48 (insta
//! snapshots of the screen's text), and the real binary driven in tmux as a user would.

use std::time::Duration;

use crossdex_service::{OpenOptions, Service};
use crossdex_tui::{Headless, KeyCode, KeyEvent, KeyModifiers};
use serde_json::Value;

use crate::common::demo;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];
const LIMIT: Duration = Duration::from_secs(60);

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

/// Snapshots `ui` at both sizes under `name`; times of day and durations are masked.
fn snap(ui: &Headless, name: &str) {
    for (w, h) in SIZES {
        let screen = ui.screen(w, h);
        insta::with_settings!({filters => vec![
            // When the sources synced: today.
            (r"\d{2}-\d{2} \d{2}:\d{2}", "[time]"),
            (r"in \d+\.\d+ s", "in [t] s"),
            // The simulators' ports, in deep links.
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
        ]}, {
            insta::assert_snapshot!(format!("tui_{name}_{w}x{h}"), screen);
        });
    }
}

/// Every view at 80×24 and 160×48 on the demo cohort, the counts on screen checked
/// against the CLI's answers to the same questions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_draws_at_both_sizes_on_the_demo() {
    let (s, cfg) = demo();
    let service = Service::open(OpenOptions {
        config: Some(cfg.clone().into()),
        config_required: true,
        ..OpenOptions::default()
    })
    .unwrap();
    let mut ui = Headless::new(crossdex_tui::Backend::Local(service), "demo");
    ui.settle(LIMIT).await.unwrap();

    // Search, facets and histogram: the hit count is the CLI's.
    ui.type_text("hippocampus");
    ui.settle(LIMIT).await.unwrap();
    let cli = s.ok(&["-c", &cfg, "search", "hippocampus", "--format", "json"]);
    let cli: Value = serde_json::from_str(&cli.stdout).unwrap();
    let total = cli["total"].as_u64().unwrap();
    assert!(
        ui.screen(80, 24)
            .contains(&format!("Search - {total} hits"))
    );
    snap(&ui, "search");
    // The help, filtered.
    ui.key(key(KeyCode::F(1)));
    ui.type_text("sql");
    snap(&ui, "help");
    ui.key(key(KeyCode::Esc));
    // A record's detail, from the results.
    ui.key(key(KeyCode::Enter));
    ui.key(key(KeyCode::Enter));
    ui.settle(LIMIT).await.unwrap();
    snap(&ui, "search_detail");

    // Subject: any spelling; keys, records per source and timeline.
    ui.key(key(KeyCode::F(3)));
    ui.type_text("INT_0003");
    ui.key(key(KeyCode::Enter));
    ui.settle(LIMIT).await.unwrap();
    let screen = ui.screen(160, 48);
    assert!(
        screen.contains("subj:INT_0003 - keys in every source"),
        "{screen}"
    );
    snap(&ui, "subject");

    // SQL: the default statement's grid; its row count is the CLI's.
    ui.key(key(KeyCode::F(4)));
    ui.key(ctrl('r'));
    ui.settle(LIMIT).await.unwrap();
    let rows = s.ok(&[
        "-c",
        &cfg,
        "sql",
        "--format",
        "csv",
        "SELECT source, kind, count(*) AS n FROM records GROUP BY 1, 2 ORDER BY 1, 2",
    ]);
    let n = rows.stdout.lines().count() - 1;
    assert!(
        ui.screen(80, 24).contains(&format!("{n} rows in")),
        "{}",
        ui.screen(80, 24)
    );
    snap(&ui, "sql");
    // Export to Parquet, read back by pyarrow.
    ui.key(key(KeyCode::Esc));
    ui.key(key(KeyCode::Char('p')));
    ui.settle(LIMIT).await.unwrap();
    let note = ui.app.note.take().expect("a note").0;
    let path = note.split(" to ").nth(1).expect(&note).to_owned();
    let read = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(t.num_rows, t.column_names)",
            &path,
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        format!("{n} ['source', 'kind', 'n']"),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );

    // Sources and links.
    ui.key(key(KeyCode::F(5)));
    ui.key(key(KeyCode::Char('r')));
    ui.settle(LIMIT).await.unwrap();
    snap(&ui, "sources");
    ui.key(key(KeyCode::F(6)));
    ui.settle(LIMIT).await.unwrap();
    snap(&ui, "links");

    // The catalogue: as many datasets as the CLI lists, and as many complete.
    ui.key(key(KeyCode::F(7)));
    ui.settle(LIMIT).await.unwrap();
    let cli = s.ok(&["-c", &cfg, "catalogue", "list", "--format", "json"]);
    let cli: Vec<Value> = serde_json::from_str(&cli.stdout).unwrap();
    let check = s.run(&["-c", &cfg, "catalogue", "check", "--format", "json"]);
    let missing: Vec<Value> = serde_json::from_str(&check.stdout).unwrap();
    let incomplete: std::collections::BTreeSet<&str> = missing
        .iter()
        .map(|m| m["dataset_id"].as_str().unwrap())
        .collect();
    assert!(
        ui.screen(160, 48).contains(&format!(
            "{} datasets, {} with DataCite's mandatory properties",
            cli.len(),
            cli.len() - incomplete.len()
        )),
        "{}",
        ui.screen(160, 48)
    );
    snap(&ui, "datasets");
}

/// tmux: a command in a fresh server of its own, and what its pane shows.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (.ci/run installs it)")
    }

    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "ui"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }

    fn pane(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "ui"]).stdout).into_owned()
    }

    /// Waits until the pane shows `text`; the pane when it does.
    fn wait_for(&self, text: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            let pane = self.pane();
            if pane.contains(text) {
                return pane;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the pane never showed {text:?}:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the pane no longer shows `text`; the pane then.
    fn wait_gone(&self, text: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            let pane = self.pane();
            if !pane.contains(text) {
                return pane;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the pane kept showing {text:?}:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alive(&self) -> bool {
        self.cmd(&["has-session", "-t", "ui"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// The real binary in tmux: search, a facet, a subject, a SQL query, a slow one
/// cancelled with Esc while the screen keeps answering, quit.
#[test]
fn the_binary_in_tmux_searches_filters_opens_a_subject_runs_and_cancels_sql() {
    let (s, cfg) = demo();
    let tmux = Tmux {
        socket: format!("crossdex-test-{}", std::process::id()),
    };
    let cmd = format!("NO_COLOR=1 {} -c {cfg} tui", env!("CARGO_BIN_EXE_crossdex"));
    let started = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "ui",
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    assert!(started.status.success(), "{started:?}");
    tmux.wait_for("hits]");

    let cli = s.ok(&["-c", &cfg, "search", "hippocampus", "--format", "json"]);
    let cli: Value = serde_json::from_str(&cli.stdout).unwrap();
    let total = cli["total"].as_u64().unwrap();
    tmux.send(&["hippocampus"]);
    tmux.wait_for(&format!("Search - {total} hits"));
    // The facets are counted after the hits.
    let search = tmux.wait_gone("counting");
    println!("--- search\n{search}");

    // The first facet (system omero): filtered in, counts over the whole hit set.
    tmux.send(&["Tab"]);
    tmux.send(&["Tab"]);
    tmux.send(&["+"]);
    tmux.wait_for("[system:omero]");
    let faceted = tmux.wait_gone("counting");
    println!("--- search with a facet\n{faceted}");
    let omero = s.ok(&[
        "-c",
        &cfg,
        "search",
        "hippocampus system:omero",
        "--format",
        "json",
    ]);
    let omero: Value = serde_json::from_str(&omero.stdout).unwrap();
    tmux.wait_for(&format!("Search - {} hits", omero["total"]));

    // The first hit's subject.
    tmux.send(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.send(&["Down"]);
    tmux.send(&["s"]);
    let subject = tmux.wait_for("keys in every source");
    println!("--- subject\n{subject}");

    // SQL: a count the CLI agrees with.
    tmux.send(&["F4", "C-u", "SELECT count(*) AS n FROM records", "C-r"]);
    let records = s.csv_with(&cfg, "SELECT count(*) AS n FROM records");
    tmux.wait_for("1 rows in");
    assert!(tmux.pane().contains(&records), "{}", tmux.pane());

    // A statement that runs for seconds; Esc stops it and the screen answers at once.
    tmux.send(&[
        "C-u",
        "SELECT max(a.value_text || b.variable) FROM observations a CROSS JOIN observations b",
        "C-r",
    ]);
    tmux.wait_for("Esc cancels");
    std::thread::sleep(Duration::from_millis(1500));
    let cancelled_at = std::time::Instant::now();
    tmux.send(&["Escape"]);
    let cancelled = tmux.wait_for("cancelled after");
    let answered_in = cancelled_at.elapsed();
    println!("--- cancelled (shown {answered_in:?} after Esc)\n{cancelled}");
    // The screen is still the user's: another view, then quit.
    // Search keeps its focus on the results, where `q` quits.
    tmux.send(&["F2"]);
    tmux.wait_for("Facets");
    tmux.send(&["q"]);
    let start = std::time::Instant::now();
    while tmux.alive() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!tmux.alive(), "q did not quit:\n{}", tmux.pane());
}

/// Remote mode: the same views over `crossdex serve`, within the token's scope. A token
/// of one source sees that source's hits, facets and rows only; counts equal the local
/// user's answers filtered to that source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_mode_browses_a_server_within_the_tokens_scope() {
    let (s, cfg) = demo();
    let created = s.ok(&[
        "-c",
        &cfg,
        "token",
        "create",
        "laptop",
        "--scope",
        "search,sql,subjects,status",
        "--sources",
        "xnat",
        "--expires",
        "1d",
    ]);
    let secret = created.stdout.trim().to_owned();
    let served = crate::http::Served::start_on(&s, &["-c", &cfg], "127.0.0.1:0");
    let xnat = s.csv_with(&cfg, "SELECT count(*) FROM records WHERE source = 'xnat'");

    // A wrong token is said, not hidden.
    let wrong = crossdex_tui::Remote::new(&served.base, "cdx_wrong").unwrap();
    let mut ui = Headless::new(crossdex_tui::Backend::Remote(wrong), "remote");
    ui.settle(LIMIT).await.unwrap();
    let e = ui.app.search.error.clone().expect("an error");
    assert_eq!(e.code, "unauthorized", "{e:?}");

    let remote = crossdex_tui::Remote::new(&served.base, &secret).unwrap();
    let mut ui = Headless::new(crossdex_tui::Backend::Remote(remote), "remote");
    ui.settle(LIMIT).await.unwrap();
    let result = ui.app.search.result.clone().expect("hits");
    assert_eq!(result.total.to_string(), xnat);
    let facets = result.facets.expect("facets");
    assert_eq!(facets.source.len(), 1);
    assert_eq!(facets.source[0].value, "xnat");
    assert_eq!(facets.source[0].count.to_string(), xnat);
    assert!(ui.screen(80, 24).contains(&format!("Search - {xnat} hits")));

    // SQL through the server: the token's rows only.
    ui.key(key(KeyCode::F(4)));
    ui.key(ctrl('u'));
    ui.type_text("SELECT source, count(*) AS n FROM records GROUP BY source");
    ui.key(ctrl('r'));
    ui.settle(LIMIT).await.unwrap();
    let grid = ui.app.sql.grid.clone().expect("a grid");
    assert_eq!(grid.rows, vec![vec!["xnat".to_owned(), xnat.clone()]]);

    // A subject: the server answers with its xnat keys only.
    ui.key(key(KeyCode::F(3)));
    ui.type_text("INT_0004");
    ui.key(key(KeyCode::Enter));
    ui.settle(LIMIT).await.unwrap();
    let view = ui.app.subject.view.clone().expect("a subject");
    assert!(view.keys.iter().all(|k| k.source == "xnat"), "{view:?}");
    assert!(!view.keys.is_empty());

    // The catalogue through the server: the simulated XNAT's two projects, nothing else.
    ui.key(key(KeyCode::F(7)));
    ui.settle(LIMIT).await.unwrap();
    let ids: Vec<String> = ui
        .app
        .datasets
        .list
        .clone()
        .expect("datasets")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["xnat:project:MEMCLIN", "xnat:project:PETAMY"]);
}
