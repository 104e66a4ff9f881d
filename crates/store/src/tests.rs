use std::collections::HashSet;

use chrono::Utc;
use crossdex_model::{Checkpoint, Entity, Observation, Page, Record, SyncMode};

use super::*;
use crate::writer::read_parquet;

fn entity(source: &str, n: u32, note: &str) -> Entity {
    let mut r = Record::new(
        source,
        "files",
        "row",
        &format!("r{n}"),
        &format!("Row {n}"),
    );
    r.subject_key = Some(format!("SUBJ_{n:04}"));
    r.description = Some(format!("participant {note}"));
    Entity {
        record: r,
        observations: vec![
            Observation::number("age", 40.0 + n as f64, (40 + n).to_string()),
            Observation::text("note", note),
        ],
    }
}

fn page(source: &str, range: std::ops::Range<u32>, note: &str) -> Page {
    Page {
        upserts: range.map(|n| entity(source, n, note)).collect(),
        ..Page::default()
    }
}

fn sync(w: &mut Writer, source: &str, mode: SyncMode, pages: Vec<Page>) -> SyncRun {
    let mut txn = w.begin(source, "files", Utc::now()).unwrap();
    for p in pages {
        txn.apply(p).unwrap();
    }
    txn.commit(mode, Checkpoint::of(&serde_json::json!({"pages": 1})).ok())
        .unwrap()
}

/// Ids of `table`'s id column in the snapshot, with duplicates kept.
fn ids(s: &Snapshot, table: Table, column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in s.files(table) {
        for b in read_parquet(&f).unwrap() {
            let b = b.unwrap();
            let col = b
                .column_by_name(column)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap()
                .clone();
            out.extend(col.iter().map(|v| v.unwrap().to_owned()));
        }
    }
    out
}

#[test]
fn resyncing_the_same_data_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let first = sync(
        &mut w,
        "a",
        SyncMode::Full,
        vec![page("a", 0..50, "x"), page("a", 50..100, "x")],
    );
    assert_eq!(first.counts.added, 100);
    let second = sync(&mut w, "a", SyncMode::Full, vec![page("a", 0..100, "x")]);
    assert_eq!(
        (
            second.counts.added,
            second.counts.updated,
            second.counts.unchanged
        ),
        (0, 0, 100)
    );
    let s = Snapshot::open(dir.path()).unwrap();
    let rec = ids(&s, Table::Records, "id");
    assert_eq!(rec.len(), 100);
    assert_eq!(rec.iter().collect::<HashSet<_>>().len(), 100);
    assert_eq!(ids(&s, Table::Observations, "record_id").len(), 200);
    assert_eq!(s.num_docs(), 100);
    assert_eq!(ids(&s, Table::SyncRuns, "run_id").len(), 2);
}

#[test]
fn full_sync_deletes_what_it_did_not_see_and_updates_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    sync(&mut w, "a", SyncMode::Full, vec![page("a", 0..10, "old")]);
    sync(&mut w, "b", SyncMode::Full, vec![page("b", 0..5, "other")]);
    let run = sync(
        &mut w,
        "a",
        SyncMode::Full,
        vec![page("a", 0..3, "new"), page("a", 3..6, "old")],
    );
    assert_eq!(
        (run.counts.updated, run.counts.unchanged, run.counts.deleted),
        (3, 3, 4)
    );
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 6 + 5, "source b untouched");
    assert_eq!(s.search("new", 100).unwrap().len(), 3);
    assert_eq!(s.search("old source:a", 100).unwrap().len(), 3);
    assert!(s.search("r9", 10).unwrap().is_empty());
    assert_eq!(ids(&s, Table::Records, "id").len(), 11);
    assert_eq!(ids(&s, Table::Observations, "record_id").len(), 22);
}

#[test]
fn incremental_sync_keeps_untouched_entities_and_applies_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    sync(&mut w, "a", SyncMode::Full, vec![page("a", 0..10, "old")]);
    let mut p = page("a", 8..12, "new");
    p.deletions = vec!["a:row:r0".into(), "a:row:r1".into(), "a:row:missing".into()];
    let run = sync(&mut w, "a", SyncMode::Incremental, vec![p]);
    assert_eq!(
        (run.counts.added, run.counts.updated, run.counts.deleted),
        (2, 2, 2)
    );
    let s = Snapshot::open(dir.path()).unwrap();
    let rec: HashSet<_> = ids(&s, Table::Records, "id").into_iter().collect();
    assert_eq!(rec.len(), 10);
    assert!(!rec.contains("a:row:r0") && rec.contains("a:row:r11") && rec.contains("a:row:r5"));
    assert_eq!(ids(&s, Table::Observations, "record_id").len(), 20);
    assert_eq!(s.num_docs(), 10);
    assert_eq!(s.search("new", 100).unwrap().len(), 4);
    assert_eq!(
        s.manifest().sources["a"].checkpoint,
        Checkpoint::of(&serde_json::json!({"pages": 1})).ok()
    );
}

#[test]
fn duplicate_ids_in_one_sync_are_rejected_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let run = sync(
        &mut w,
        "a",
        SyncMode::Full,
        vec![page("a", 0..5, "x"), page("a", 3..7, "y")],
    );
    assert_eq!(run.counts.added, 7);
    assert_eq!(run.counts.rejected, 2);
    assert_eq!(run.status, RunStatus::Partial);
    assert!(run.rejections[0].reason.contains("duplicate id `a:row:r3`"));
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(ids(&s, Table::Records, "id").len(), 7);
    assert_eq!(s.num_docs(), 7);
}

#[test]
fn an_abandoned_sync_leaves_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    sync(&mut w, "a", SyncMode::Full, vec![page("a", 0..10, "old")]);
    {
        let mut txn = w.begin("a", "files", Utc::now()).unwrap();
        txn.apply(page("a", 0..20, "new")).unwrap();
        // dropped: the connector failed
    }
    let run = w
        .record_failure(
            "a",
            "files",
            SyncMode::Full,
            Utc::now(),
            "source unreachable: refused",
        )
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 10);
    assert!(s.search("new", 10).unwrap().is_empty());
    assert_eq!(ids(&s, Table::Records, "id").len(), 10);
    assert_eq!(
        ids(&s, Table::SyncRuns, "status"),
        vec!["succeeded", "failed"]
    );
    // The next sync still works and leaves no duplicates.
    sync(&mut w, "a", SyncMode::Full, vec![page("a", 0..20, "new")]);
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 20);
    assert_eq!(ids(&s, Table::Records, "id").len(), 20);
}

#[test]
fn a_crash_before_commit_leaves_the_previous_state_and_orphans_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut w = Writer::open(dir.path()).unwrap();
        sync(&mut w, "a", SyncMode::Full, vec![page("a", 0..10, "old")]);
        let mut txn = w.begin("a", "files", Utc::now()).unwrap();
        txn.apply(page("a", 0..30, "new")).unwrap();
        // A crash: no rollback, no cleanup, files left half-written.
        std::mem::forget(txn);
    }
    let orphans = std::fs::read_dir(dir.path().join("tables/records"))
        .unwrap()
        .count();
    assert_eq!(orphans, 2, "the committed file and the crashed one");
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 10);
    assert_eq!(ids(&s, Table::Records, "id").len(), 10);

    let mut w = Writer::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tables/records"))
            .unwrap()
            .count(),
        1
    );
    let run = sync(&mut w, "a", SyncMode::Full, vec![page("a", 0..30, "new")]);
    assert_eq!((run.counts.added, run.counts.updated), (20, 10));
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 30);
    let rec = ids(&s, Table::Records, "id");
    assert_eq!(rec.len(), 30);
    assert_eq!(rec.iter().collect::<HashSet<_>>().len(), 30);
}

#[test]
fn a_second_writer_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _w = Writer::open(dir.path()).unwrap();
    let err = Writer::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("in use by another crossdex process"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    // Readers are never blocked by the writer.
    Snapshot::open(dir.path()).unwrap();
}

#[test]
fn search_reports_bad_syntax_and_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    sync(
        &mut w,
        "a",
        SyncMode::Full,
        vec![page("a", 0..3, "échelle")],
    );
    let s = Snapshot::open(dir.path()).unwrap();
    let hits = s.search("echelle", 10).unwrap();
    assert_eq!(hits.len(), 3, "accents are folded");
    assert!(
        hits[0].snippet.contains("**échelle**"),
        "{}",
        hits[0].snippet
    );
    assert_eq!(s.search("SUBJ_0002", 10).unwrap()[0].id, "a:row:r2");
    // An apostrophe in a word is no syntax error: it splits words, like the analyzer.
    assert_eq!(s.search("l'échelle", 10).unwrap().len(), 0, "no token `l`");
    assert_eq!(s.search("participant’échelle", 10).unwrap().len(), 3);
    let err = s.search("colour:red", 10).unwrap_err().to_string();
    assert!(err.contains("unknown field `colour`"), "{err}");
    let err = s.search("(unclosed", 10).unwrap_err().to_string();
    assert!(err.contains("invalid search query"), "{err}");
}

#[test]
fn a_missing_data_directory_is_an_error_and_an_empty_state_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for (path, says) in [
        (dir.path().join("nothing-here"), "no such folder"),
        (file, "it is a file"),
        (dir.path().to_owned(), "the folder holds no index"),
    ] {
        let msg = Snapshot::open(&path).unwrap_err().to_string();
        assert!(
            msg.contains("no crossdex index at") && msg.contains(says),
            "{msg}"
        );
        assert!(msg.contains("crossdex sync --all"), "{msg}");
    }
    let s = Snapshot::empty(dir.path().join("nothing-here")).unwrap();
    assert_eq!(s.num_docs(), 0);
    assert!(s.files(Table::Records).is_empty());
    assert!(s.search("anything", 10).unwrap().is_empty());
}

/// A folder holding someone else's files is refused before anything is written in
/// it; inside a crossdex folder, files crossdex did not name are never removed.
#[test]
fn only_crossdex_folders_are_written_and_only_crossdex_files_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.docx"), "x").unwrap();
    let msg = Writer::open(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("is not a crossdex data directory") && msg.contains("thesis.docx"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing created"
    );

    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in [
        ("tables/my_results.parquet", "x"),
        ("tables/records/notes.txt", "x"),
        ("tables/records/backup.parquet", "x"),
    ] {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    for n in 0..3 {
        let mut w = Writer::open(dir.path()).unwrap();
        sync(
            &mut w,
            "clinic",
            SyncMode::Full,
            vec![page("clinic", 0..3 + n, "x")],
        );
    }
    for rel in [
        "tables/my_results.parquet",
        "tables/records/notes.txt",
        "tables/records/backup.parquet",
    ] {
        assert!(dir.path().join(rel).exists(), "{rel} removed");
    }
}

#[test]
fn an_index_of_another_schema_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    std::fs::create_dir_all(&index_dir).unwrap();
    let mut b = tantivy::schema::Schema::builder();
    b.add_text_field("id", tantivy::schema::STRING);
    tantivy::Index::create_in_dir(&index_dir, b.build()).unwrap();
    for err in [
        Writer::open(dir.path()).unwrap_err(),
        Snapshot::open(dir.path()).unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(
            msg.contains("written by an incompatible version of crossdex"),
            "{msg}"
        );
        assert!(
            !dir.path().join("crossdex.lock").exists(),
            "no lock file left in another program's index"
        );
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }
}

#[test]
fn a_checkpoint_written_as_a_json_value_is_still_read() {
    let legacy: Manifest = serde_json::from_value(serde_json::json!({
        "format": 1, "generation": 3, "sync_runs": null,
        "sources": {"a": {
            "system": "xnat", "records": "r.parquet", "observations": "o.parquet",
            "n_records": 1, "n_observations": 0, "synced_at": "2026-11-01T00:00:00Z",
            "checkpoint": {"cursor": 7}
        }}
    }))
    .expect("legacy manifest");
    let c = legacy.sources["a"].checkpoint.clone().expect("checkpoint");
    assert_eq!(
        c.read::<serde_json::Value>().unwrap(),
        serde_json::json!({"cursor": 7})
    );
    // Written back, it is a string, and reads as the same state.
    let again: Manifest = serde_json::from_str(&serde_json::to_string(&legacy).unwrap()).unwrap();
    assert_eq!(again.sources["a"].checkpoint, Some(c));
}

#[test]
fn a_forgotten_source_leaves_the_index_and_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    sync(&mut w, "old", SyncMode::Full, vec![page("old", 0..5, "x")]);
    sync(
        &mut w,
        "kept",
        SyncMode::Full,
        vec![page("kept", 0..3, "x")],
    );
    assert_eq!(w.forget_source("old").unwrap().0, 5);
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 3);
    assert_eq!(s.manifest().sources.keys().collect::<Vec<_>>(), ["kept"]);
    assert!(
        s.files(Table::Records)
            .iter()
            .all(|f| !f.to_string_lossy().contains("old."))
    );
    let msg = w.forget_source("old").unwrap_err().to_string();
    assert!(msg.contains("holds nothing of source \"old\""), "{msg}");
}

/// Hits of equal score are cut at the limit the same way whatever order the records
/// were indexed in: the same data gives the same hits on every run.
#[test]
fn equal_scores_cut_the_same_hits_whatever_the_index_order() {
    let hits = |order: &[u32]| {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        // Every record says the same, so every hit scores the same.
        let pages = order
            .chunks(3)
            .map(|c| Page {
                upserts: c.iter().map(|&n| entity("s", n, "same")).collect(),
                ..Page::default()
            })
            .collect();
        sync(&mut w, "s", SyncMode::Full, pages);
        drop(w);
        let s = Snapshot::open(dir.path()).unwrap();
        let hits = s.search("participant same", 7).unwrap();
        assert!(hits.windows(2).all(|p| p[0].score == p[1].score));
        hits.into_iter().map(|h| h.id).collect::<Vec<_>>()
    };
    let forward: Vec<u32> = (0..60).collect();
    let backward: Vec<u32> = (0..60).rev().collect();
    let shuffled: Vec<u32> = (0..60).map(|n| (n * 37) % 60).collect();
    let first = hits(&forward);
    assert_eq!(first.len(), 7);
    assert_eq!(hits(&backward), first);
    assert_eq!(hits(&shuffled), first);
}
