use std::path::Path;

use async_trait::async_trait;
use crossdex_model::SinkError;

use super::*;

#[derive(Default)]
struct Collect(Vec<Page>);

#[async_trait]
impl PageSink for Collect {
    async fn page(&mut self, page: Page) -> Result<(), SinkError> {
        self.0.push(page);
        Ok(())
    }
}

fn connector(dir: &Path, extra: serde_json::Value) -> Box<dyn Connector> {
    let mut config = serde_json::json!({"type": "files", "path": "."});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    FilesFactory
        .build(SourceContext {
            name: "exports".into(),
            config,
            base_dir: dir.to_owned(),
        })
        .unwrap()
}

async fn run(c: &dyn Connector) -> (Vec<Entity>, Vec<Rejection>) {
    let mut sink = Collect::default();
    c.sync(
        SyncRequest {
            mode: SyncMode::Full,
            checkpoint: None,
        },
        &mut sink,
    )
    .await
    .unwrap();
    let upserts = sink.0.iter().flat_map(|p| p.upserts.clone()).collect();
    let rejected = sink.0.iter().flat_map(|p| p.rejected.clone()).collect();
    (upserts, rejected)
}

#[tokio::test]
async fn redcap_csv_export_rows_are_keyed_by_record_event_and_instance() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("redcap.csv"),
        "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,moca,visit_date,dx\n\
         1,baseline_arm_1,,,27,2024-01-10,healthy\n\
         1,month_6_arm_1,,,25,2024-07-11,MCI\n\
         1,baseline_arm_1,medication,1,,,donepezil\n\
         1,baseline_arm_1,medication,x,,,\n\
         2,baseline_arm_1,,\n",
    )
    .unwrap();
    let (rows, rejected) = run(&*connector(dir.path(), serde_json::json!({}))).await;
    let ids: Vec<&str> = rows.iter().map(|e| e.record.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "exports:row:redcap.csv#1/baseline_arm_1",
            "exports:row:redcap.csv#1/month_6_arm_1",
            "exports:row:redcap.csv#1/baseline_arm_1/medication/1",
        ]
    );
    let first = &rows[0];
    assert_eq!(first.record.subject_key.as_deref(), Some("1"));
    let moca = first
        .observations
        .iter()
        .find(|o| o.variable == "moca")
        .unwrap();
    assert_eq!(
        (moca.value_num, moca.event.as_deref()),
        (Some(27.0), Some("baseline_arm_1"))
    );
    assert!(
        first
            .observations
            .iter()
            .any(|o| o.variable == "visit_date" && o.value_date.is_some())
    );
    // A repeating-form row: its values carry the repeat instance and the event.
    assert_eq!(rows[2].observations.len(), 1);
    assert_eq!(
        rows[2]
            .observations
            .iter()
            .filter(|o| o.instance == Some(1) && o.event.as_deref() == Some("baseline_arm_1"))
            .count(),
        1
    );
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected[0]
            .reason
            .contains("redcap.csv: line 5: redcap_repeat_instance \"x\" is not an integer"),
        "{:?}",
        rejected[0]
    );
    assert!(
        rejected[1]
            .reason
            .contains("redcap.csv: line 6: expected 7 fields as in the header, found 4"),
        "{:?}",
        rejected[1]
    );
}

#[tokio::test]
async fn bids_participants_tsv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lab")).unwrap();
    std::fs::write(
        dir.path().join("participants.tsv"),
        "participant_id\tage\tsex\nsub-01\t34\tF\nsub-02\tn/a\tM\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lab/samples.jsonl"),
        "{\"id\": \"S1\", \"subject\": \"sub-01\", \"stain\": {\"name\": \"DAPI\"}, \"tags\": [\"a\", \"b\"]}\n\n[1]\n{broken\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let c = connector(dir.path(), serde_json::json!({}));
    assert_eq!(
        c.check()
            .await
            .unwrap()
            .summary
            .split(" in ")
            .next()
            .unwrap(),
        "2 export files"
    );
    let (rows, rejected) = run(&*c).await;
    assert_eq!(rows.len(), 3);
    let sample = &rows[0];
    assert_eq!(sample.record.native_id, "lab/samples.jsonl#S1");
    assert_eq!(sample.record.subject_key.as_deref(), Some("sub-01"));
    let vars: Vec<&str> = sample
        .observations
        .iter()
        .map(|o| o.variable.as_str())
        .collect();
    assert_eq!(vars, ["stain.name", "tags", "tags"]);
    let sub2 = &rows[2];
    assert_eq!(sub2.record.subject_key.as_deref(), Some("sub-02"));
    assert!(
        sub2.observations.iter().all(|o| o.variable != "age"),
        "n/a is missing"
    );
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected[0]
            .reason
            .contains("samples.jsonl: line 3: expected a JSON object, found an array")
    );
    assert!(
        rejected[1]
            .reason
            .contains("samples.jsonl: line 4: invalid JSON")
    );
}

#[test]
fn a_misspelt_key_is_named() {
    let err = FilesFactory
        .build(SourceContext {
            name: "x".into(),
            config: serde_json::json!({"type": "files", "path": ".", "id_column": "a"}),
            base_dir: ".".into(),
        })
        .err()
        .unwrap();
    match err {
        ConnectorError::Config { key, reason } => {
            assert_eq!(key, "id_column");
            assert!(reason.contains("expected one of"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_missing_folder_fails_with_its_path() {
    let c = connector(Path::new("/nonexistent-crossdex"), serde_json::json!({}));
    let err = c.check().await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent-crossdex"), "{err}");
}
