//! The search syntax, parsed and compiled into tantivy queries and run over a small
//! index: any text gets hits or an error naming a position, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use crossdex_model::{Entity, Observation, Page, Record, SyncMode};
use crossdex_store::{Snapshot, Writer};
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<(tempfile::TempDir, Snapshot)> = OnceLock::new();
    &SNAPSHOT
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut w = Writer::open(dir.path()).expect("writer");
            let mut txn = w.begin("lab", "files", chrono::Utc::now()).expect("txn");
            let words = [
                "hippocampus",
                "amyloid",
                "Échelle",
                "INT_0042",
                "csf",
                "ß",
                "日本語",
            ];
            let upserts = (0..40)
                .map(|n: usize| {
                    let mut r = Record::new("lab", "files", "row", &n.to_string(), words[n % 7]);
                    r.subject_key = Some(format!("INT_{n:04}"));
                    Entity {
                        record: r,
                        observations: vec![Observation::text("note", words[(n + 3) % 7])],
                    }
                })
                .collect();
            txn.apply(Page {
                upserts,
                ..Page::default()
            })
            .expect("apply");
            txn.commit(SyncMode::Full, None).expect("commit");
            drop(w);
            let s = Snapshot::open(dir.path()).expect("snapshot");
            (dir, s)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = snapshot().search(query, 10);
    }
});
