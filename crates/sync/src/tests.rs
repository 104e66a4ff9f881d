use std::sync::Mutex;

use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, ConnectorError, Entity, Record, Rejection, SyncOutcome,
};
use crossdex_store::{RunStatus, Snapshot};

use super::*;

/// A connector serving a fixed list, changeable between syncs, that can fail after a
/// number of pages: the failure modes the runner must handle, without a network.
struct Scripted {
    items: Mutex<Vec<u32>>,
    fail_after_pages: Option<usize>,
    requests: Mutex<Vec<SyncRequest>>,
}

impl Scripted {
    fn new(items: Vec<u32>) -> Self {
        Scripted {
            items: Mutex::new(items),
            fail_after_pages: None,
            requests: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl Connector for Scripted {
    fn source(&self) -> &str {
        "scripted"
    }
    fn system(&self) -> &'static str {
        "files"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { incremental: true }
    }
    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport {
            summary: "ok".into(),
        })
    }
    async fn sync(
        &self,
        request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError> {
        self.requests.lock().unwrap().push(request.clone());
        let items = self.items.lock().unwrap().clone();
        for (i, chunk) in items.chunks(10).enumerate() {
            if self.fail_after_pages == Some(i) {
                return Err(ConnectorError::Unreachable(
                    "connection reset by 127.0.0.1:9".into(),
                ));
            }
            let upserts = chunk
                .iter()
                .map(|n| Entity {
                    record: Record::new("scripted", "files", "item", &n.to_string(), "item"),
                    observations: vec![],
                })
                .collect();
            let rejected = vec![Rejection {
                native_id: None,
                reason: format!("bad row in page {i}"),
            }];
            sink.page(Page {
                upserts,
                deletions: vec![],
                rejected,
            })
            .await?;
        }
        Ok(SyncOutcome {
            mode: request.mode,
            checkpoint: Some(Checkpoint(serde_json::json!({"n": items.len()}))),
        })
    }
}

#[tokio::test]
async fn first_sync_is_full_then_incremental_from_the_committed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let c = Scripted::new((0..25).collect());
    let run = sync_source(&mut w, &c, SyncOptions::default(), &())
        .await
        .unwrap();
    assert_eq!(
        (run.mode, run.status, run.counts.added, run.counts.rejected),
        (SyncMode::Full, RunStatus::Partial, 25, 3)
    );
    let run = sync_source(&mut w, &c, SyncOptions::default(), &())
        .await
        .unwrap();
    assert_eq!(
        (run.mode, run.counts.unchanged),
        (SyncMode::Incremental, 25)
    );
    {
        let requests = c.requests.lock().unwrap();
        assert!(requests[0].checkpoint.is_none());
        assert_eq!(
            requests[1].checkpoint,
            Some(Checkpoint(serde_json::json!({"n": 25})))
        );
    }
    let run = sync_source(&mut w, &c, SyncOptions { full: true }, &())
        .await
        .unwrap();
    assert_eq!(run.mode, SyncMode::Full);
}

#[tokio::test]
async fn a_failing_source_is_recorded_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let mut c = Scripted::new((0..25).collect());
    sync_source(&mut w, &c, SyncOptions::default(), &())
        .await
        .unwrap();
    *c.items.lock().unwrap() = (100..140).collect();
    c.fail_after_pages = Some(2);
    let run = sync_source(&mut w, &c, SyncOptions { full: true }, &())
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error.as_deref().unwrap().contains("source unreachable"),
        "{:?}",
        run.error
    );
    let s = Snapshot::open(dir.path()).unwrap();
    assert_eq!(s.num_docs(), 25);
    assert_eq!(
        s.manifest().sources["scripted"].checkpoint,
        Some(serde_json::json!({"n": 25}))
    );
}
