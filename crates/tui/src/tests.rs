//! The app as a state machine: keys and answers in, state and commands out. No
//! terminal, no service: answers are built by hand.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::{App, Command, DEBOUNCE, Failure, Grid, Msg, SearchFocus, SqlFocus, View};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn searches(commands: &[Command]) -> Vec<(u64, String, usize)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Search {
                generation,
                query,
                filters,
            } => Some((*generation, query.clone(), filters.len())),
            _ => None,
        })
        .collect()
}

fn result(query: &str, hits: &[(&str, &str, Option<&str>)]) -> crossdex_service::SearchResult {
    let json = serde_json::json!({
        "query": query,
        "total": hits.len(),
        "offset": 0,
        "hits": hits.iter().map(|(id, source, subject)| serde_json::json!({
            "id": id, "score": 1.0, "source": source, "system": source, "kind": "session",
            "subject_id": subject, "title": format!("{id} title"), "snippet": "a **match**",
            "highlights": ["match"],
        })).collect::<Vec<_>>(),
        "facets": {
            "system": [{"value": "xnat", "count": 2}],
            "source": [{"value": "xnat", "count": 2}],
            "kind": [{"value": "session", "count": 2}],
            "project": [], "subject": [{"value": "subj:INT_0001", "count": 1}],
            "month": [], "undated": 2,
        },
        "next_cursor": null,
    });
    serde_json::from_value(json).expect("a search result")
}

/// Search `generation`'s hits arrive.
fn answer(app: &mut App, generation: u64, hits: crossdex_service::SearchResult, now: Instant) {
    app.on_msg(
        Msg::Searched {
            generation,
            result: Ok(Box::new(hits)),
        },
        now,
    );
}

#[test]
fn typing_searches_once_after_a_pause_and_drops_stale_answers() {
    let t0 = Instant::now();
    let (mut app, first) = App::new("test");
    assert_eq!(searches(&first), vec![(1, "*".to_owned(), 0)]);
    assert!(app.typing(), "the query bar has the keys at first");
    // Three keys, 10 ms apart: no search until the pause.
    let mut sent = Vec::new();
    for (i, c) in "csf".chars().enumerate() {
        let at = t0 + Duration::from_millis(10 * i as u64);
        sent.extend(app.on_key(key(KeyCode::Char(c)), at));
        sent.extend(app.tick(at));
    }
    assert!(searches(&sent).is_empty(), "{sent:?}");
    let due = t0 + Duration::from_millis(20) + DEBOUNCE;
    assert_eq!(searches(&app.tick(due)), vec![(2, "csf".to_owned(), 0)]);
    assert!(app.tick(due + DEBOUNCE).is_empty(), "one search per pause");
    // The first search's answer comes after the second was sent: dropped.
    answer(&mut app, 1, result("*", &[("a", "xnat", None)]), due);
    assert!(app.search.result.is_none());
    answer(
        &mut app,
        2,
        result(
            "csf",
            &[("r1", "xnat", Some("subj:INT_0001")), ("r2", "xnat", None)],
        ),
        due,
    );
    assert_eq!(app.search.result.as_ref().unwrap().hits.len(), 2);
    assert!(!app.search.loading);
}

#[test]
fn a_parse_error_shows_in_place_and_the_ui_goes_on() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    app.type_text("(csf", now);
    let c = app.on_key(key(KeyCode::Enter), now);
    let generation = searches(&c)[0].0;
    app.on_msg(
        Msg::Searched {
            generation,
            result: Err(Failure {
                code: "invalid_search".into(),
                message: "unclosed parenthesis".into(),
                position: Some(1),
            }),
        },
        now,
    );
    assert_eq!(app.search.error.as_ref().unwrap().position, Some(1));
    // Still usable: back to the query, fix it, search again.
    app.on_key(key(KeyCode::Char('/')), now);
    assert_eq!(app.search.focus(), SearchFocus::Query);
    app.type_text(")", now);
    let c = app.on_key(key(KeyCode::Enter), now);
    assert_eq!(searches(&c)[0].1, "(csf)");
}

#[test]
fn facets_filter_in_and_out_and_filters_come_off() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    answer(&mut app, 1, result("*", &[("r1", "xnat", None)]), now);
    app.on_key(key(KeyCode::Tab), now); // results
    app.on_key(key(KeyCode::Tab), now); // facets
    assert_eq!(app.search.focus(), SearchFocus::Facets);
    // Rows: system xnat, source xnat, kind session, subject subj:INT_0001.
    app.on_key(key(KeyCode::Down), now);
    let c = app.on_key(key(KeyCode::Char('+')), now);
    assert_eq!(searches(&c)[0].2, 1);
    assert_eq!(app.search.filters[0].field, "source");
    assert!(app.search.filters[0].include);
    // The selection starts over at the top: two down is `kind: session`.
    app.on_key(key(KeyCode::Down), now);
    app.on_key(key(KeyCode::Down), now);
    app.on_key(key(KeyCode::Char('-')), now);
    assert_eq!(app.search.filters.len(), 2);
    assert_eq!(app.search.filters[1].field, "kind");
    assert!(!app.search.filters[1].include);
    let c = app.on_key(key(KeyCode::Char('x')), now);
    assert_eq!(searches(&c)[0].2, 1, "the last filter came off");
}

#[test]
fn a_hit_opens_its_record_and_its_subject() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    answer(
        &mut app,
        1,
        result(
            "*",
            &[
                ("r1", "xnat", Some("subj:INT_0001")),
                ("r2", "redcap", None),
            ],
        ),
        now,
    );
    app.on_key(key(KeyCode::Enter), now); // from the query bar to the results
    let c = app.on_key(key(KeyCode::Enter), now);
    assert!(
        matches!(&c[..], [Command::Record { id, .. }] if id == "r1"),
        "{c:?}"
    );
    assert!(app.search.detail_open);
    let c = app.on_key(key(KeyCode::Char('s')), now);
    assert!(
        matches!(&c[..], [Command::Subject { id, .. }] if id == "subj:INT_0001"),
        "{c:?}"
    );
    assert_eq!(app.view, View::Subject);
    // A hit linked to nobody says so instead.
    app.on_key(key(KeyCode::F(2)), now);
    app.on_key(key(KeyCode::Down), now);
    assert!(app.on_key(key(KeyCode::Char('s')), now).is_empty());
    assert!(app.note.is_some());
}

#[test]
fn esc_cancels_a_running_query_at_once_and_its_late_answer_is_dropped() {
    let t0 = Instant::now();
    let (mut app, _) = App::new("test");
    app.on_key(key(KeyCode::F(4)), t0);
    assert_eq!(app.view, View::Sql);
    app.on_key(ctrl('u'), t0);
    app.type_text("SELECT 1; SELECT 2", t0);
    let c = app.on_key(ctrl('r'), t0);
    assert!(
        matches!(&c[..], [Command::Remember(h), Command::Sql { sql, .. }] if sql == "SELECT 2" && h == sql),
        "{c:?}"
    );
    let generation = app.sql.running.unwrap().0;
    // A second run while one runs is refused, not queued.
    assert!(app.on_key(ctrl('r'), t0).is_empty());
    let later = t0 + Duration::from_millis(2500);
    let c = app.on_key(key(KeyCode::Esc), later);
    assert_eq!(c, vec![Command::CancelSql]);
    assert!(app.sql.running.is_none());
    assert_eq!(app.sql.outcome.as_deref(), Some("cancelled after 2.5 s"));
    app.on_msg(
        Msg::SqlDone {
            generation,
            result: Ok(Grid::default()),
            elapsed: Duration::from_secs(3),
        },
        later,
    );
    assert!(
        app.sql.grid.is_none(),
        "a cancelled statement's rows do not show"
    );
    // History: Ctrl-Up brings the statement back.
    app.on_key(ctrl('u'), later);
    app.on_key(KeyEvent::new(KeyCode::Up, KeyModifiers::CONTROL), later);
    assert_eq!(app.sql.editor.text(), "SELECT 2");
}

#[test]
fn the_grid_sorts_numbers_as_numbers_and_copies_cells() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    app.on_key(key(KeyCode::F(4)), now);
    let c = app.on_key(ctrl('r'), now);
    let Some(Command::Sql { generation, .. }) = c.last().cloned() else {
        panic!("{c:?}");
    };
    let rows = [["b", "10"], ["a", "9"], ["c", "NULL"], ["d", "100"]];
    app.on_msg(
        Msg::SqlDone {
            generation,
            result: Ok(Grid {
                columns: vec!["name".into(), "n".into()],
                types: vec!["Utf8".into(), "Int64".into()],
                rows: rows
                    .iter()
                    .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
                    .collect(),
                truncated: false,
            }),
            elapsed: Duration::from_millis(30),
        },
        now,
    );
    assert_eq!(app.sql.outcome.as_deref(), Some("4 rows in 0.03 s"));
    app.on_key(key(KeyCode::Esc), now);
    assert_eq!(app.sql.focus, SqlFocus::Grid);
    app.on_key(key(KeyCode::Right), now);
    app.on_key(key(KeyCode::Char('s')), now);
    let order: Vec<&str> = app
        .sql
        .grid
        .as_ref()
        .unwrap()
        .rows
        .iter()
        .map(|r| r[1].as_str())
        .collect();
    assert_eq!(order, ["9", "10", "100", "NULL"]);
    app.on_key(key(KeyCode::Char('s')), now);
    let first = &app.sql.grid.as_ref().unwrap().rows[0][1];
    assert_eq!(first, "100", "again: descending, NULL still last");
    assert_eq!(
        app.on_key(key(KeyCode::Char('y')), now),
        vec![Command::Copy("100".into())]
    );
}

#[test]
fn completion_offers_tables_columns_and_functions() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    app.on_msg(
        Msg::Catalog(crate::app::Catalog {
            columns: vec![
                ("observations".into(), "value_num".into()),
                ("observations".into(), "variable".into()),
            ],
            saved: Vec::new(),
            subjects: vec!["subj:INT_0003".into()],
        }),
        now,
    );
    app.on_key(key(KeyCode::F(4)), now);
    app.on_key(ctrl('u'), now);
    app.type_text("SELECT valu", now);
    app.on_key(key(KeyCode::Tab), now);
    assert_eq!(app.sql.editor.text(), "SELECT value_num");
    app.type_text(" FROM obs", now);
    app.on_key(key(KeyCode::Tab), now);
    assert_eq!(app.sql.editor.text(), "SELECT value_num FROM observations");
    // Several fit: they are listed, and Tab takes turns.
    app.type_text(" WHERE va", now);
    app.on_key(key(KeyCode::Tab), now);
    assert_eq!(app.sql.completions, vec!["value_num", "variable"]);
    app.on_key(key(KeyCode::Tab), now);
    assert!(app.sql.editor.text().ends_with("WHERE value_num"));
    app.on_key(key(KeyCode::Tab), now);
    assert!(app.sql.editor.text().ends_with("WHERE variable"));
}

#[test]
fn the_palette_finds_a_subject_fuzzily_and_opens_it() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    app.on_msg(
        Msg::Catalog(crate::app::Catalog {
            columns: vec![("records".into(), "id".into())],
            saved: Vec::new(),
            subjects: vec!["subj:INT_0003".into(), "subj:INT_0030".into()],
        }),
        now,
    );
    app.on_key(ctrl('p'), now);
    app.type_text("sbj0003", now);
    let c = app.on_key(key(KeyCode::Enter), now);
    assert!(
        matches!(&c[..], [Command::Subject { id, .. }] if id == "subj:INT_0003"),
        "{c:?}"
    );
    assert!(app.overlay.is_none());
}

#[test]
fn keys_outside_text_switch_views_help_filters_and_q_quits() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    // In the query bar, `q` and digits are text.
    app.type_text("q3", now);
    assert_eq!(app.search.query.text(), "q3");
    assert!(!app.quit);
    app.on_key(key(KeyCode::Esc), now);
    let c = app.on_key(key(KeyCode::Char('4')), now);
    assert_eq!(app.view, View::Sources);
    assert_eq!(c, vec![Command::Status], "no status yet: asked again");
    app.on_key(key(KeyCode::Char('?')), now);
    app.type_text("cancel", now);
    let Some(crate::app::Overlay::Help { filter, .. }) = &app.overlay else {
        panic!("no help");
    };
    assert_eq!(filter.text(), "cancel");
    app.on_key(key(KeyCode::Esc), now);
    assert!(app.overlay.is_none());
    app.on_key(key(KeyCode::Char('q')), now);
    assert!(app.quit);
}

#[test]
fn the_sql_history_survives_the_session_in_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/crossdex/sql_history");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut worker = crate::worker::Worker::new(
        crate::Backend::Remote(crate::Remote::new("http://127.0.0.1:9", "t").unwrap()),
        tx,
        dir.path().to_path_buf(),
        rt.handle().clone(),
    )
    .with_history(path.clone());
    for sql in ["SELECT 1", "SELECT 'a;b'\nFROM records", "SELECT 3"] {
        worker.run(Command::Remember(sql.to_owned()));
    }
    assert_eq!(
        crate::worker::recall(&path, 2),
        vec![
            "SELECT 'a;b'\nFROM records".to_owned(),
            "SELECT 3".to_owned()
        ]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_selection_runs_instead_of_the_statement_at_the_cursor() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    app.on_key(key(KeyCode::F(4)), now);
    app.on_key(ctrl('u'), now);
    app.type_text("SELECT 1 + 1; SELECT 2", now);
    app.on_key(key(KeyCode::Home), now);
    for _ in 0.."SELECT 1".len() {
        app.on_key(KeyEvent::new(KeyCode::Right, KeyModifiers::SHIFT), now);
    }
    assert_eq!(app.sql.editor.selection().as_deref(), Some("SELECT 1"));
    let c = app.on_key(ctrl('r'), now);
    assert!(
        matches!(c.last(), Some(Command::Sql { sql, .. }) if sql == "SELECT 1"),
        "{c:?}"
    );
    // A key that is no Shift-move ends the selection: the statement at the cursor again.
    app.on_msg(
        Msg::SqlDone {
            generation: app.sql.running.unwrap().0,
            result: Ok(Grid::default()),
            elapsed: Duration::ZERO,
        },
        now,
    );
    app.on_key(key(KeyCode::End), now);
    assert!(app.sql.editor.selection().is_none());
    let c = app.on_key(ctrl('r'), now);
    assert!(
        matches!(c.last(), Some(Command::Sql { sql, .. }) if sql == "SELECT 2"),
        "{c:?}"
    );
}

#[test]
fn hits_come_first_and_their_facets_after_unless_a_newer_search_came() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    answer(&mut app, 1, result("*", &[("r1", "xnat", None)]), now);
    let c = app.type_text("csf", now);
    assert!(c.is_empty());
    let c = app.tick(now + DEBOUNCE);
    let generation = searches(&c)[0].0;
    let mut hits = result("csf", &[("r2", "redcap", None)]);
    hits.facets = None;
    app.on_msg(
        Msg::Searched {
            generation,
            result: Ok(Box::new(hits)),
        },
        now,
    );
    // The new hits, the old facets kept and marked as being counted.
    assert_eq!(app.search.result.as_ref().unwrap().hits[0].id, "r2");
    assert!(app.search.facets_pending);
    assert_eq!(app.search.facet_rows()[0].2, "xnat");
    // Facets of an older search are dropped; this search's land.
    let mut redcap = result("csf", &[]).facets.unwrap();
    redcap.system[0].value = "redcap".into();
    app.on_msg(
        Msg::Faceted {
            generation: generation - 1,
            facets: Some(Ok(Box::new(redcap.clone()))),
        },
        now,
    );
    assert!(app.search.facets_pending);
    app.on_msg(
        Msg::Faceted {
            generation,
            facets: Some(Ok(Box::new(redcap))),
        },
        now,
    );
    assert!(!app.search.facets_pending);
    assert_eq!(app.search.facet_rows()[0].2, "redcap");
}

#[test]
fn every_view_and_window_draws_on_tiny_and_odd_terminals_without_panicking() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    answer(
        &mut app,
        1,
        result("*", &[("r1", "xnat", Some("subj:INT_0001"))]),
        now,
    );
    let sizes = [
        (1, 1),
        (3, 2),
        (10, 4),
        (20, 6),
        (33, 9),
        (79, 23),
        (200, 60),
    ];
    let draw_all = |app: &App| {
        for (w, h) in sizes {
            let screen = crate::ui::screen(app, w, h);
            assert_eq!(screen.lines().count(), h as usize);
        }
    };
    for view in [
        KeyCode::F(2),
        KeyCode::F(3),
        KeyCode::F(4),
        KeyCode::F(5),
        KeyCode::F(6),
        KeyCode::F(7),
    ] {
        app.on_key(key(view), now);
        draw_all(&app);
    }
    app.on_msg(
        Msg::Datasets(Ok(vec![dataset(
            "xnat:project:P",
            "A long project title",
            true,
        )])),
        now,
    );
    draw_all(&app);
    app.on_key(key(KeyCode::F(1)), now);
    draw_all(&app);
    app.on_key(key(KeyCode::Esc), now);
    app.on_key(ctrl('p'), now);
    draw_all(&app);
}

/// A catalogue entry; `complete`: with every mandatory DataCite property.
fn dataset(id: &str, title: &str, complete: bool) -> crossdex_service::Dataset {
    let mut json = serde_json::json!({
        "id": id, "source": "xnat", "system": "xnat", "kind": "project", "native_id": "P",
        "title": title, "description": "Structural MRI\nof a cohort", "url": null,
        "parent_id": null, "created_at": null, "modified_at": "2025-01-24T11:30:23Z",
        "counts": {"records": 12, "subjects": 3, "sessions": 4, "images": 0,
                   "observations": 30, "variables": 5},
        "modalities": ["MR"], "first_observed": "2019-01-22T00:00:00Z",
        "last_observed": "2025-01-24T00:00:00Z", "identifier": null, "creators": [],
        "publisher": "Institute", "publication_year": null,
        "resource_type": "XNAT imaging project", "licence": "CC-BY-4.0", "rights": null,
        "keywords": [], "funding": [], "related": [], "language": null, "version": null,
    });
    if complete {
        json["identifier"] = serde_json::json!({"value": "10.5072/p", "type": "DOI"});
        json["creators"] = serde_json::json!([{"name": "Doe, Jane"}]);
        json["publication_year"] = serde_json::json!(2024);
    }
    serde_json::from_value(json).expect("a dataset")
}

#[test]
fn the_datasets_view_shows_what_datacite_lacks_and_opens_a_datasets_records() {
    let now = Instant::now();
    let (mut app, _) = App::new("test");
    let c = app.on_key(key(KeyCode::F(7)), now);
    assert_eq!(app.view, View::Datasets);
    assert_eq!(c, vec![Command::Datasets]);
    app.on_msg(
        Msg::Datasets(Ok(vec![
            dataset("xnat:project:DONE", "Complete project", true),
            dataset("xnat:project:TODO", "Unfinished project", false),
        ])),
        now,
    );
    let screen = crate::ui::screen(&app, 120, 30);
    assert!(screen.contains("2 datasets, 1 with DataCite"), "{screen}");
    assert!(screen.contains("Complete project") && screen.contains("Unfinished project"));
    // The first is selected: complete, its DOI shown, nothing missing.
    assert!(screen.contains("DOI 10.5072/p"), "{screen}");
    assert!(!screen.contains("missing"), "{screen}");
    app.on_key(key(KeyCode::Down), now);
    let screen = crate::ui::screen(&app, 120, 30);
    assert!(
        screen.contains("missing Creator")
            && screen.contains("catalogue.datasets.\"xnat:project:TODO\".creators"),
        "{screen}"
    );
    // Enter: its records in the SQL console, run at once.
    let c = app.on_key(key(KeyCode::Enter), now);
    assert_eq!(app.view, View::Sql);
    let sql = c
        .iter()
        .find_map(|c| match c {
            Command::Sql { sql, .. } => Some(sql.clone()),
            _ => None,
        })
        .expect("a statement runs");
    assert!(sql.contains("m.dataset_id = 'xnat:project:TODO'"), "{sql}");
    // A failure shows in place; `r` asks again.
    app.on_key(key(KeyCode::F(7)), now);
    app.on_msg(
        Msg::Datasets(Err(Failure {
            code: "forbidden".into(),
            message: "this token may not search".into(),
            position: None,
        })),
        now,
    );
    assert!(crate::ui::screen(&app, 100, 20).contains("may not search"));
    assert_eq!(
        app.on_key(key(KeyCode::Char('r')), now),
        vec![Command::Datasets]
    );
}
