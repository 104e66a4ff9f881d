//! The simulators held to the reference: recorded payloads and OpenAPI documents in
//! `../shared/reference/`, determinism, the ground truth, time travel and faults.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::{Faults, SimOptions, Simulators, System};

fn reference(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference")
        .join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if rel.ends_with(".yaml") {
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

async fn start(seed: u64, subjects: u32) -> Simulators {
    let opts = SimOptions {
        subjects,
        seed,
        ..SimOptions::default()
    };
    Simulators::start(&opts, IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
        .await
        .expect("simulators start")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key both sides have holds the same JSON type (null matches anything),
/// recursively; returns the mismatches as `path: ours vs reference`.
fn type_mismatches(ours: &Value, reference: &Value, path: &str, out: &mut Vec<String>) {
    match (ours, reference) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(a), Value::Object(b)) => {
            for (k, rv) in b {
                if let Some(ov) = a.get(k) {
                    type_mismatches(ov, rv, &format!("{path}.{k}"), out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                type_mismatches(x, y, &format!("{path}[0]"), out);
            }
        }
        (a, b) if kind(a) != kind(b) => out.push(format!("{path}: {} vs {}", kind(a), kind(b))),
        _ => {}
    }
}

fn assert_same_types(ours: &Value, reference: &Value, what: &str) {
    let mut bad = Vec::new();
    type_mismatches(ours, reference, what, &mut bad);
    assert!(
        bad.is_empty(),
        "value types differ from the reference: {bad:?}"
    );
}

// ------------------------------------------------------------------- clients

struct Xnat {
    base: String,
    auth: (String, String),
}

impl Xnat {
    fn new(s: &Simulators) -> Xnat {
        let c = s.credentials(System::Xnat);
        Xnat {
            base: s.url(System::Xnat),
            auth: (c.username, c.password),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = client()
            .get(format!("{}{path}", self.base))
            .basic_auth(&self.auth.0, Some(&self.auth.1))
            .send()
            .await
            .expect("xnat answers");
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.expect("json")
    }

    async fn text(&self, path: &str) -> String {
        client()
            .get(format!("{}{path}", self.base))
            .basic_auth(&self.auth.0, Some(&self.auth.1))
            .send()
            .await
            .expect("xnat answers")
            .text()
            .await
            .expect("body")
    }
}

async fn redcap(s: &Simulators, params: &[(&str, &str)]) -> reqwest::Response {
    let token = s.credentials(System::Redcap).token;
    let mut form = vec![("token", token.as_str())];
    form.extend_from_slice(params);
    client()
        .post(format!("{}/api/", s.url(System::Redcap)))
        .form(&form)
        .send()
        .await
        .expect("redcap answers")
}

/// Logs in to OMERO and returns the cookie header to send.
async fn omero_login(s: &Simulators) -> String {
    let base = s.url(System::Omero);
    let r = client()
        .get(format!("{base}/api/v0/token/"))
        .send()
        .await
        .expect("token");
    let csrf_cookie = r.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let token = r.json::<Value>().await.expect("json")["data"]
        .as_str()
        .expect("token")
        .to_owned();
    let c = s.credentials(System::Omero);
    let r = client()
        .post(format!("{base}/api/v0/login/"))
        .header(COOKIE, &csrf_cookie)
        .header("X-CSRFToken", &token)
        .form(&[
            ("server", "1"),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let session = r.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    format!("{csrf_cookie}; {session}")
}

async fn omero_get(s: &Simulators, cookie: &str, path: &str) -> Value {
    let r = client()
        .get(format!("{}{path}", s.url(System::Omero)))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("omero");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

async fn transmart_token(s: &Simulators) -> String {
    let c = s.credentials(System::Transmart);
    let r = client()
        .post(format!(
            "{}/auth/realms/transmart/protocol/openid-connect/token",
            s.url(System::Transmart)
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", crate::TRANSMART_CLIENT_ID),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

async fn transmart_get(s: &Simulators, token: &str, path: &str) -> Value {
    let r = client()
        .get(format!("{}{path}", s.url(System::Transmart)))
        .bearer_auth(token)
        .send()
        .await
        .expect("transmart");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

async fn elab_get(s: &Simulators, path: &str) -> Value {
    let r = client()
        .get(format!("{}{path}", s.url(System::Elabftw)))
        .header(AUTHORIZATION, s.credentials(System::Elabftw).token)
        .send()
        .await
        .expect("elabftw");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

// ------------------------------------------------------------------- XNAT

#[tokio::test]
async fn xnat_listings_have_the_recorded_shapes() {
    let s = start(1, 40).await;
    let x = Xnat::new(&s);

    let projects = x.get("/data/archive/projects/?format=json").await;
    let rec = reference("xnat/recorded_ohif_xnat/projects.json")["response"].clone();
    assert_eq!(keys(&projects["ResultSet"]), keys(&rec["ResultSet"]));
    assert!(
        projects["ResultSet"]["totalRecords"].is_string(),
        "totalRecords is a string"
    );
    assert_eq!(
        keys(&projects["ResultSet"]["Result"][0]),
        keys(&rec["ResultSet"]["Result"][0])
    );
    assert_same_types(&projects, &rec, "projects");

    let subjects = x.get("/data/projects/MEMCLIN/subjects?format=json").await;
    let rec =
        reference("xnat/recorded_ohif_xnat/projects_ITCRdemo_subjects.json")["response"].clone();
    assert_eq!(
        keys(&subjects["ResultSet"]["Result"][0]),
        keys(&rec["ResultSet"]["Result"][0])
    );
    assert_same_types(&subjects, &rec, "subjects");
    let first = &subjects["ResultSet"]["Result"][0];
    let label = first["label"].as_str().expect("label");
    // insert_date carries milliseconds, as recorded.
    assert_eq!(
        first["insert_date"].as_str().expect("date").len(),
        "2018-05-14 15:17:57.815".len()
    );

    // A subject shared into PETAMY is listed there with its owning project.
    let shared = x.get("/data/projects/PETAMY/subjects?format=json").await;
    let rows = shared["ResultSet"]["Result"].as_array().expect("rows");
    assert!(!rows.is_empty(), "some subjects are shared into PETAMY");
    assert!(rows.iter().all(|r| r["project"] == "MEMCLIN"));

    let exps = x
        .get(&format!(
            "/data/projects/MEMCLIN/subjects/{label}/experiments?format=json"
        ))
        .await;
    let rec = reference(
        "xnat/recorded_ohif_xnat/projects_ITCRdemo_subjects_XNAT_JPETTS_S00011_experiments.json",
    )["response"]
        .clone();
    assert_eq!(
        keys(&exps["ResultSet"]["Result"][0]),
        keys(&rec["ResultSet"]["Result"][0])
    );
    assert_same_types(&exps, &rec, "experiments");
    let e = exps["ResultSet"]["Result"][0]["ID"]
        .as_str()
        .expect("id")
        .to_owned();

    let scans = x
        .get(&format!("/data/experiments/{e}/scans?format=json"))
        .await;
    let rec = reference("xnat/observed_rows_meierlab_devxnat.json");
    assert_eq!(
        keys(&scans["ResultSet"]["Result"][0]),
        keys(&rec["scans_first_row"]["row"])
    );
    assert_same_types(
        &scans["ResultSet"]["Result"][0],
        &rec["scans_first_row"]["row"],
        "scan",
    );

    // The single-object form: numbers are numbers there.
    let single = x
        .get(&format!(
            "/data/archive/projects/MEMCLIN/subjects/{label}/experiments/{e}?format=json"
        ))
        .await;
    let fields = &single["items"][0]["data_fields"];
    let recorded = &rec["single_experiment_data_fields"]["data_fields"];
    let missing: Vec<_> = keys(recorded).difference(&keys(fields)).cloned().collect();
    assert!(missing.is_empty(), "single experiment lacks {missing:?}");
    assert!(fields["dcmPatientWeight"].is_number());
    assert_same_types(fields, recorded, "data_fields");

    // columns=, limit and offset.
    let page = x.get("/data/projects/MEMCLIN/subjects?format=json&columns=ID,label,last_modified&limit=5&offset=2").await;
    let rows = page["ResultSet"]["Result"].as_array().expect("rows");
    assert_eq!(rows.len(), 5);
    assert_eq!(
        keys(&rows[0]),
        ["ID", "URI", "label", "last_modified"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(page["ResultSet"]["totalRecords"], "5");
    assert_eq!(rows[0]["ID"], subjects["ResultSet"]["Result"][2]["ID"]);

    let csv = x
        .text("/data/projects/MEMCLIN/subjects?format=csv&columns=ID,label")
        .await;
    assert!(csv.starts_with("ID,label,URI\n"), "{csv}");
}

#[tokio::test]
async fn xnat_auth_basic_session_and_refusal() {
    let s = start(1, 10).await;
    let base = s.url(System::Xnat);
    let c = s.credentials(System::Xnat);
    let r = client()
        .get(format!("{base}/data/projects?format=json"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{base}/data/projects?format=json"))
        .basic_auth(&c.username, Some("wrong"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    let r = client()
        .post(format!("{base}/data/JSESSION"))
        .basic_auth(&c.username, Some(&c.password))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let session = r.text().await.expect("id");
    assert!(!session.is_empty());
    let r = client()
        .get(format!("{base}/data/projects?format=json"))
        .header(COOKIE, format!("JSESSIONID={session}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200, "the JSESSIONID cookie stands in for Basic");
}

// ------------------------------------------------------------------- REDCap

#[tokio::test]
async fn redcap_exports_have_the_recorded_shapes() {
    let s = start(2, 40).await;

    let r = redcap(&s, &[("content", "metadata"), ("format", "json")]).await;
    let meta: Value = r.json().await.expect("json");
    let rec = reference("redcap/tidier_longitudinal_2arms_repeating/metadata.json");
    assert_eq!(keys(&meta[0]), keys(&rec[0]));
    assert!(
        meta.as_array()
            .expect("list")
            .iter()
            .flat_map(|f| f.as_object().expect("obj").values())
            .all(Value::is_string)
    );
    assert!(
        meta.as_array()
            .expect("list")
            .iter()
            .any(|f| f["field_type"] == "checkbox")
    );

    let r = redcap(
        &s,
        &[("content", "record"), ("format", "json"), ("type", "flat")],
    )
    .await;
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let rows: Value = r.json().await.expect("json");
    let rows = rows.as_array().expect("rows");
    let recorded = reference("redcap/redcap_etl/repeating_events_v9.1.3_trimmed.json");
    let rec_rows = recorded["records"].as_array().expect("rows");
    // Every value a string, but redcap_repeat_instance: an integer on repeating rows.
    for row in rows {
        for (k, v) in row.as_object().expect("obj") {
            if k == "redcap_repeat_instance" {
                if row["redcap_repeat_instrument"] == "" {
                    assert_eq!(v, "", "non-repeating rows have an empty instance");
                } else {
                    assert!(v.is_u64(), "repeating rows have an integer instance");
                }
            } else {
                assert!(v.is_string(), "{k} is {v}");
            }
        }
    }
    let rec_repeat = rec_rows
        .iter()
        .find(|r| r["redcap_repeat_instrument"] != "")
        .expect("a repeating row");
    assert!(
        rec_repeat["redcap_repeat_instance"].is_u64(),
        "the reference agrees"
    );
    assert!(
        rows.iter()
            .any(|r| r["redcap_repeat_instrument"] == "medications")
    );
    assert!(
        rows.iter()
            .any(|r| r["redcap_event_name"] == "month_12_arm_1")
    );
    let first = rows[0].as_object().expect("obj");
    let columns: Vec<&String> = first.keys().collect();
    assert_eq!(
        columns[..4],
        [
            "record_id",
            "redcap_event_name",
            "redcap_repeat_instrument",
            "redcap_repeat_instance"
        ]
    );
    assert!(
        first.contains_key("comorbid___99"),
        "checkbox columns are field___code"
    );

    // records[] in array form, fields, and XML when no format is given.
    let r = redcap(
        &s,
        &[
            ("content", "record"),
            ("format", "json"),
            ("records[0]", rows[0]["record_id"].as_str().expect("id")),
            ("fields", "moca_total"),
        ],
    )
    .await;
    let one: Value = r.json().await.expect("json");
    assert!(
        one.as_array()
            .expect("rows")
            .iter()
            .all(|r| r["record_id"] == rows[0]["record_id"])
    );
    assert!(keys(&one[0]).contains("moca_total") && !keys(&one[0]).contains("sex"));
    let xml = redcap(&s, &[("content", "record")])
        .await
        .text()
        .await
        .expect("body");
    assert!(
        xml.starts_with("<?xml") && xml.contains("<records>"),
        "{}",
        &xml[..80.min(xml.len())]
    );

    for (content, reference_file) in [
        ("event", None),
        (
            "formEventMapping",
            Some("redcap/redcap_etl/visits_v9.1.3.json"),
        ),
    ] {
        let v: Value = redcap(&s, &[("content", content), ("format", "json")])
            .await
            .json()
            .await
            .expect("json");
        assert!(!v.as_array().expect("list").is_empty(), "{content}");
        if let Some(f) = reference_file {
            let rec = reference(f);
            assert_eq!(keys(&v[0]), keys(&rec["instrumentEventMappings"][0]));
            assert_same_types(&v[0], &rec["instrumentEventMappings"][0], content);
        }
    }

    // A bad token: REDCap's own 403 and body.
    let expected = reference("redcap/error_invalid_token_403.json");
    let r = client()
        .post(format!("{}/api/", s.url(System::Redcap)))
        .form(&[
            ("token", "0123456789ABCDEF0123456789ABCDEF"),
            ("content", "record"),
            ("format", "json"),
        ])
        .send()
        .await
        .expect("answer");
    assert_eq!(
        r.status().as_u16(),
        expected["status"].as_u64().expect("status") as u16
    );
    assert_eq!(
        r.headers()["content-type"],
        expected["headers"]["content-type"].as_str().expect("ct")
    );
    assert_eq!(r.json::<Value>().await.expect("json"), expected["body"]);

    let bad = redcap(&s, &[("content", "nope"), ("format", "json")]).await;
    assert_eq!(bad.status(), 400);
    assert!(
        bad.json::<Value>().await.expect("json")["error"]
            .as_str()
            .expect("msg")
            .contains("content")
    );
}

// ------------------------------------------------------------------- OMERO

#[tokio::test]
async fn omero_answers_as_recorded() {
    let s = start(3, 60).await;
    let base = s.url(System::Omero);
    let r = client()
        .get(format!("{base}/api/v0/m/projects/"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 403, "the JSON API needs a session");

    let disco: Value = client()
        .get(format!("{base}/api/v0/"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let docs = reference("omero/docs_json_api_examples.json");
    let example = |section: &str| -> Value {
        docs["examples"]
            .as_array()
            .expect("list")
            .iter()
            .find(|e| e["section"] == section)
            .expect(section)["response"]
            .clone()
    };
    let missing: Vec<_> = keys(&example("List starting URLs"))
        .difference(&keys(&disco))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "discovery lacks {missing:?}");
    assert!(
        disco["url:projects"]
            .as_str()
            .expect("url")
            .starts_with(&base),
        "absolute URLs from the request host"
    );

    let cookie = omero_login(&s).await;
    let projects = omero_get(&s, &cookie, "/api/v0/m/projects/").await;
    assert_eq!(
        keys(&projects),
        ["data", "meta"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(
        keys(&projects["meta"]),
        keys(&example("Pagination")["meta"])
    );
    assert_same_types(&projects["meta"], &example("Pagination")["meta"], "meta");
    let rec_project = &example("List Projects")["data"][0];
    assert_same_types(&projects["data"][0], rec_project, "project");
    assert!(
        keys(&projects["data"][0]).is_superset(
            &keys(rec_project)
                .into_iter()
                .filter(|k| k != "Description")
                .collect()
        )
    );

    let ds = projects["data"][0]["url:datasets"]
        .as_str()
        .expect("url")
        .trim_start_matches(&base)
        .to_owned();
    let datasets = omero_get(&s, &cookie, &ds).await;
    let d = datasets["data"][0]["@id"].as_i64().expect("id");
    let images = omero_get(
        &s,
        &cookie,
        &format!("/api/v0/m/images/?dataset={d}&limit=2"),
    )
    .await;
    assert_eq!(images["meta"]["limit"], 2);
    assert!(images["data"].as_array().expect("list").len() <= 2);
    let id = images["data"][0]["@id"].as_i64().expect("id");
    let single = omero_get(&s, &cookie, &format!("/api/v0/m/images/{id}/")).await;
    assert!(single["data"].is_object(), "a single object, not a list");
    let recorded = reference("omero/api_v0_m_images_single_REM_001.json");
    assert_same_types(&single, &recorded, "image");
    let rec_px: BTreeSet<String> = keys(&recorded["data"]["Pixels"])
        .into_iter()
        .filter(|k| k != "TimeIncrement")
        .collect();
    assert!(keys(&single["data"]["Pixels"]).is_superset(&rec_px));
    assert!(single["data"]["Pixels"]["Channels"].is_array());

    // Map annotations: paged by page/limit, values as [key, value] pairs.
    let all = s.with_world(|w| {
        w.omero
            .images
            .iter()
            .filter(|i| i.annotation.is_some())
            .map(|i| i.id)
            .take(3)
            .collect::<Vec<_>>()
    });
    let q: String = all.iter().map(|i| format!("&image={i}")).collect();
    let anns = omero_get(
        &s,
        &cookie,
        &format!("/webclient/api/annotations/?type=map{q}"),
    )
    .await;
    let rec = reference("omero/webclient_api_annotations_map_2024_observed.json");
    assert_eq!(keys(&anns["annotations"][0]), keys(&rec["annotations"][0]));
    assert_eq!(
        keys(&anns["annotations"][0]["link"]),
        keys(&rec["annotations"][0]["link"])
    );
    assert_same_types(
        &anns["annotations"][0],
        &rec["annotations"][0],
        "annotation",
    );
    assert_eq!(
        anns["annotations"].as_array().expect("list").len(),
        all.len()
    );
    let page2 = omero_get(
        &s,
        &cookie,
        &format!("/webclient/api/annotations/?type=map{q}&page=2&limit=2"),
    )
    .await;
    assert_eq!(
        page2["annotations"].as_array().expect("list").len(),
        all.len() - 2
    );
}

// ------------------------------------------------------------------- tranSMART

#[tokio::test]
async fn transmart_answers_as_recorded_and_as_specified() {
    let s = start(4, 40).await;
    let base = s.url(System::Transmart);
    let r = client()
        .get(format!("{base}/v2/studies"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{base}/v2/studies"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);

    let token = transmart_token(&s).await;
    let spec = reference("transmart/transmart_openapi_v2.yaml");
    let studies = transmart_get(&s, &token, "/v2/studies").await;
    let rec = reference("transmart/mock_v2_studies_testdb.json");
    assert!(keys(&studies["studies"][0]).is_superset(&keys(&rec["studies"][0])));
    assert_same_types(&studies, &rec, "studies");
    // Known deviations of real servers from this spec: `studyId` (spec: studyID),
    // nulls where the spec has no `nullable`, `inTrialId` a string (spec: integer).
    let deviations = ["inTrialId"];
    validate(
        &spec,
        &response_schema(&spec, "/v2/studies"),
        &studies,
        "studies",
        &deviations,
        true,
    );

    let patients = transmart_get(
        &s,
        &token,
        "/v2/patients?constraint=%7B%22type%22%3A%22true%22%7D",
    )
    .await;
    let rec = reference("transmart/mock_v2_patients.json");
    assert_eq!(keys(&patients["patients"][0]), keys(&rec["patients"][0]));
    assert_same_types(&patients, &rec, "patients");
    validate(
        &spec,
        &response_schema(&spec, "/v2/patients"),
        &patients,
        "patients",
        &deviations,
        true,
    );

    // Metadata (units among them) only when asked for, as the reference says.
    let bare = transmart_get(&s, &token, "/v2/tree_nodes?depth=3").await;
    assert!(!bare.to_string().contains("\"metadata\""), "{bare}");
    let tree = transmart_get(&s, &token, "/v2/tree_nodes?depth=3&counts=true&tags=true").await;
    let rec = reference("transmart/mock_v2_tree_nodes_depth0.json");
    assert_eq!(keys(&tree), keys(&rec));
    let study = &tree["tree_nodes"][0];
    assert!(
        keys(study).is_superset(
            &keys(&rec["tree_nodes"][0])
                .into_iter()
                .filter(|k| k != "children")
                .collect()
        )
    );
    assert!(study["metadata"]["upload date"].is_string());

    let constraint =
        serde_json::to_string(&json!({"type": "study_name", "studyId": crate::world::TM_STUDY}))
            .expect("json");
    let r = client()
        .post(format!("{base}/v2/observations"))
        .bearer_auth(&token)
        .json(&json!({"type": "clinical", "constraint": serde_json::from_str::<Value>(&constraint).expect("json")}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let cube: Value = r.json().await.expect("json");
    let rec = reference("transmart/v2_observations_hypercube_csr.json");
    assert_eq!(keys(&cube), keys(&rec));
    assert_eq!(
        keys(&cube["dimensionElements"]["patient"][0]),
        keys(&rec["dimensionElements"]["patient"][0])
    );
    assert_same_types(
        &cube["dimensionElements"]["patient"][0],
        &rec["dimensionElements"]["patient"][0],
        "patient",
    );
    let small = reference("transmart/mock_v2_observations_hypercube_small.json");
    assert_eq!(
        keys(&cube["dimensionElements"]["visit"][0]),
        keys(&small["dimensionElements"]["visit"][0])
    );
    // Decode every cell: indexes point into dimensionElements, in declaration order of
    // the non-inline dimensions; each cell has a numeric or a string value.
    let decls: Vec<&Value> = cube["dimensionDeclarations"]
        .as_array()
        .expect("decls")
        .iter()
        .filter(|d| d.get("inline").is_none())
        .collect();
    let cells = cube["cells"].as_array().expect("cells");
    assert!(!cells.is_empty());
    let mut numeric = 0;
    for cell in cells {
        let idx = cell["dimensionIndexes"].as_array().expect("indexes");
        assert_eq!(idx.len(), decls.len());
        for (d, i) in decls.iter().zip(idx) {
            if let Some(i) = i.as_u64() {
                let name = d["name"].as_str().expect("name");
                assert!(
                    cube["dimensionElements"][name].get(i as usize).is_some(),
                    "{name}[{i}] exists"
                );
            }
        }
        assert!(cell["inlineDimensions"].is_array());
        assert!(cell.get("numericValue").is_some() ^ cell.get("stringValue").is_some());
        numeric += usize::from(cell.get("numericValue").is_some());
    }
    assert!(
        numeric > 0 && numeric < cells.len(),
        "numeric and categorical observations"
    );
    let r = client()
        .get(format!(
            "{base}/v2/observations?type=clinical&constraint=%7Bbroken"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 400);
}

/// The schema of a GET's 200 response.
fn response_schema(spec: &Value, path: &str) -> Value {
    spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"].clone()
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut v = spec;
            for part in r.trim_start_matches("#/").split('/') {
                v = &v[part];
            }
            resolve(spec, v)
        }
        None => schema,
    }
}

/// Checks `value` against the OpenAPI 3.0 subset the two documents use: `$ref`,
/// `allOf`, `type`, `nullable`, `properties`, `items`. Properties the schema does not
/// describe are allowed (the real servers send more than they document).
fn validate(
    spec: &Value,
    schema: &Value,
    value: &Value,
    path: &str,
    deviations: &[&str],
    lenient_null: bool,
) {
    let schema = resolve(spec, schema);
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for p in parts {
            validate(spec, p, value, path, deviations, lenient_null);
        }
        return;
    }
    let key = path.rsplit('.').next().unwrap_or(path);
    if deviations.contains(&key) {
        return;
    }
    if value.is_null() {
        assert!(
            lenient_null
                || schema.get("nullable") == Some(&Value::Bool(true))
                || schema.get("type").is_none(),
            "{path}: null where the schema says {schema}"
        );
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        assert!(ok, "{path}: {} where the schema says {t}", kind(value));
    }
    if let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (k, sub) in props {
            if let Some(v) = obj.get(k) {
                validate(
                    spec,
                    sub,
                    v,
                    &format!("{path}.{k}"),
                    deviations,
                    lenient_null,
                );
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate().take(20) {
            validate(
                spec,
                items,
                v,
                &format!("{path}[{i}]"),
                deviations,
                lenient_null,
            );
        }
    }
}

// ------------------------------------------------------------------- eLabFTW

#[tokio::test]
async fn elabftw_answers_as_exported_and_as_specified() {
    let s = start(5, 80).await;
    let base = s.url(System::Elabftw);
    let key = s.credentials(System::Elabftw).token;
    let r = client()
        .get(format!("{base}/api/v2/experiments"))
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401, "the key goes raw, without Bearer");
    let err: Value = r.json().await.expect("json");
    assert_eq!(
        keys(&err),
        ["code", "description", "message"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );

    let list = elab_get(&s, "/api/v2/experiments?limit=3").await;
    assert_eq!(list.as_array().expect("a plain array").len(), 3);
    assert!(
        list[0].get("metadata").is_none(),
        "lists carry a reduced column set"
    );
    let all = elab_get(&s, "/api/v2/experiments").await;
    let all = all.as_array().expect("array");
    assert!(all.len() > 3, "no limit when none is given");
    let stamps: Vec<&str> = all
        .iter()
        .map(|e| e["modified_at"].as_str().expect("ts"))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] >= w[1]),
        "newest change first"
    );
    let page2 = elab_get(&s, "/api/v2/experiments?limit=3&offset=3").await;
    assert_eq!(page2[0]["id"], all[3]["id"]);

    let spec = reference("elabftw/elabftw_api_v2_openapi.yaml");
    let id = all[0]["id"].as_i64().expect("id");
    let one = elab_get(&s, &format!("/api/v2/experiments/{id}")).await;
    let rec = reference("elabftw/experiment_full_export_v5.1.0.json")[0].clone();
    let export_only: BTreeSet<String> = ["elabftw_version", "elabftw_version_int"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let missing: Vec<_> = keys(&rec)
        .difference(&keys(&one))
        .filter(|k| !export_only.contains(*k))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "single read lacks {missing:?}");
    assert_same_types(&one, &rec, "experiment");
    let meta = one["metadata"].as_str().expect("metadata is a JSON string");
    let decoded: Value = serde_json::from_str(meta).expect("metadata parses");
    assert_eq!(decoded, one["metadata_decoded"]);
    assert!(
        decoded["extra_fields"]
            .as_object()
            .expect("fields")
            .values()
            .all(|f| f.get("type").is_some())
    );
    assert!(
        !one["items_links"].as_array().expect("links").is_empty(),
        "experiments link to items"
    );
    // The spec documents `metadata` as an object; every server sends a string.
    let schema = spec["paths"]["/experiments/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"].clone();
    validate(&spec, &schema, &one, "experiment", &["metadata"], false);

    let items = elab_get(&s, "/api/v2/items?limit=5").await;
    let item_id = items[0]["id"].as_i64().expect("id");
    let item = elab_get(&s, &format!("/api/v2/items/{item_id}")).await;
    let schema = spec["paths"]["/items/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"].clone();
    validate(&spec, &schema, &item, "item", &["metadata"], false);
    let r = client()
        .get(format!("{base}/api/v2/items/999999"))
        .header(AUTHORIZATION, &key)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 404);
}

// ------------------------------------------------------------------- determinism and truth

/// A fixed tour of every simulator, each response body in order.
async fn tour(s: &Simulators) -> Vec<String> {
    let mut out = Vec::new();
    let x = Xnat::new(s);
    for p in [
        "/data/projects?format=json",
        "/data/projects/MEMCLIN/subjects?format=json&columns=ID,label,gender,yob,last_modified",
        "/data/projects/PETAMY/experiments?format=json",
        "/data/experiments/XNAT_E00003?format=json",
        "/data/experiments/XNAT_E00003/scans?format=json",
    ] {
        out.push(x.text(p).await);
    }
    for content in ["metadata", "record", "log"] {
        out.push(
            redcap(s, &[("content", content), ("format", "json")])
                .await
                .text()
                .await
                .expect("body"),
        );
    }
    let cookie = omero_login(s).await;
    for p in [
        "/api/v0/m/projects/",
        "/api/v0/m/images/?limit=50",
        "/api/v0/m/images/1001/",
        "/webclient/api/annotations/?type=map&image=1001&image=1002",
    ] {
        out.push(omero_get(s, &cookie, p).await.to_string());
    }
    let token = transmart_token(s).await;
    for p in [
        "/v2/studies",
        "/v2/tree_nodes",
        "/v2/patients",
        "/v2/observations?type=clinical&constraint=%7B%22type%22%3A%22true%22%7D",
    ] {
        out.push(transmart_get(s, &token, p).await.to_string());
    }
    for p in [
        "/api/v2/experiments?full=1",
        "/api/v2/items",
        "/api/v2/experiments/1",
        "/api/v2/items/1",
    ] {
        out.push(elab_get(s, p).await.to_string());
    }
    // Absolute links carry the port, which differs between two runs.
    let hosts: Vec<String> = System::ALL.iter().map(|sys| s.url(*sys)).collect();
    out.into_iter()
        .map(|body| {
            hosts
                .iter()
                .fold(body, |b, h| b.replace(h.as_str(), "http://sim"))
        })
        .collect()
}

#[tokio::test]
async fn the_same_seed_serves_the_same_bytes() {
    let a = start(77, 50).await;
    let b = start(77, 50).await;
    let c = start(78, 50).await;
    let (ta, tb, tc) = (tour(&a).await, tour(&b).await, tour(&c).await);
    for (i, (x, y)) in ta.iter().zip(&tb).enumerate() {
        assert!(x == y, "response {i} differs between two runs of one seed");
    }
    assert_ne!(ta, tc, "another seed, another cohort");
    assert_eq!(a.truth_csv(), b.truth_csv());
    a.advance(3);
    b.advance(3);
    assert_eq!(
        tour(&a).await,
        tour(&b).await,
        "time travel is deterministic too"
    );
}

/// The subject keys each system serves, read through its API.
async fn served_keys(s: &Simulators) -> BTreeMap<System, BTreeSet<String>> {
    let mut out: BTreeMap<System, BTreeSet<String>> = BTreeMap::new();
    let x = Xnat::new(s);
    for p in ["MEMCLIN", "PETAMY"] {
        let v = x
            .get(&format!("/data/projects/{p}/subjects?format=json"))
            .await;
        for r in v["ResultSet"]["Result"].as_array().expect("rows") {
            out.entry(System::Xnat)
                .or_default()
                .insert(r["label"].as_str().expect("label").to_owned());
        }
    }
    out.insert(System::Redcap, record_ids(s).await);
    let cookie = omero_login(s).await;
    let imgs = omero_get(s, &cookie, "/api/v0/m/images/?limit=500").await;
    let ids: Vec<i64> = imgs["data"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["@id"].as_i64().expect("id"))
        .collect();
    assert!(ids.len() < 500, "one page holds every image of this cohort");
    let q: String = ids.iter().map(|i| format!("&image={i}")).collect();
    let anns = omero_get(
        s,
        &cookie,
        &format!("/webclient/api/annotations/?type=map{q}"),
    )
    .await;
    for a in anns["annotations"].as_array().expect("list") {
        for pair in a["values"].as_array().expect("values") {
            if pair[0] == "Subject" {
                out.entry(System::Omero)
                    .or_default()
                    .insert(pair[1].as_str().expect("value").to_owned());
            }
        }
    }
    let token = transmart_token(s).await;
    let pats = transmart_get(s, &token, "/v2/patients").await;
    for p in pats["patients"].as_array().expect("patients") {
        out.entry(System::Transmart)
            .or_default()
            .insert(p["subjectIds"]["SUBJ_ID"].as_str().expect("id").to_owned());
    }
    let items = elab_get(s, "/api/v2/items").await;
    for it in items.as_array().expect("items") {
        let full = elab_get(s, &format!("/api/v2/items/{}", it["id"])).await;
        let from_field = full["metadata_decoded"]["extra_fields"]["Subject ID"]["value"]
            .as_str()
            .map(str::to_owned);
        let key = from_field.or_else(|| {
            full["title"]
                .as_str()
                .and_then(|t| t.split_whitespace().find(|w| w.starts_with("INT")))
                .map(|w| w.split('-').next().unwrap_or(w).to_owned())
        });
        out.entry(System::Elabftw)
            .or_default()
            .insert(key.expect("every sample names its subject"));
    }
    out
}

type KeysBySystem = BTreeMap<System, BTreeSet<String>>;

fn truth_keys(csv: &str) -> (KeysBySystem, Vec<(String, System, String)>) {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("person,system,subject_key"));
    let mut by_system: BTreeMap<System, BTreeSet<String>> = BTreeMap::new();
    let mut rows = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.splitn(3, ',').collect();
        let sys = System::from_name(parts[1]).expect("known system");
        by_system
            .entry(sys)
            .or_default()
            .insert(parts[2].to_owned());
        rows.push((parts[0].to_owned(), sys, parts[2].to_owned()));
    }
    (by_system, rows)
}

#[tokio::test]
async fn the_truth_matches_what_is_served() {
    let s = start(11, 120).await;
    let (truth, rows) = truth_keys(&s.truth_csv());
    assert_eq!(served_keys(&s).await, truth, "day 0");

    // The cohort is as messy as promised: people in several systems under different
    // spellings, people missing from some systems, and typos.
    let mut per_person: BTreeMap<&str, Vec<(System, &str)>> = BTreeMap::new();
    for (p, sys, k) in &rows {
        per_person
            .entry(p.as_str())
            .or_default()
            .push((*sys, k.as_str()));
    }
    assert!(
        per_person.values().any(|v| v.len() == 5),
        "someone is in all five systems"
    );
    assert!(
        per_person.values().any(|v| v.len() < 5),
        "someone is missing somewhere"
    );
    let redcap: Vec<&str> = rows
        .iter()
        .filter(|r| r.1 == System::Redcap)
        .map(|r| r.2.as_str())
        .collect();
    assert!(
        redcap.iter().all(|k| k.chars().all(|c| c.is_ascii_digit())),
        "REDCap ids are bare numbers"
    );
    assert!(
        redcap.iter().any(|k| k.starts_with('0')) && redcap.iter().any(|k| !k.starts_with('0')),
        "padded and not"
    );
    assert!(
        rows.iter()
            .any(|r| r.1 == System::Transmart && r.2.starts_with("INT-"))
    );
    let typos = s.with_world(|w| w.persons.iter().filter(|p| p.typo.is_some()).count());
    assert!(typos > 0, "some subject codes were mistyped");
    let conflicts = s.with_world(|w| {
        w.persons
            .iter()
            .filter(|p| p.conflicting_sex || p.conflicting_birth_year)
            .count()
    });
    assert!(conflicts > 0, "some demographic conflicts");

    s.advance(2);
    let (truth, _) = truth_keys(&s.truth_csv());
    assert_eq!(served_keys(&s).await, truth, "after two days");
}

async fn record_ids(s: &Simulators) -> BTreeSet<String> {
    let rows: Value = redcap(
        s,
        &[
            ("content", "record"),
            ("format", "json"),
            ("fields", "record_id"),
        ],
    )
    .await
    .json()
    .await
    .expect("json");
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| r["record_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn advancing_a_day_adds_edits_and_deletes() {
    let s = start(21, 100).await;
    let ids_before = record_ids(&s).await;
    let now = s.with_world(|w| w.now());
    let r = client()
        .post(format!("{}/_sim/advance", s.url(System::Omero)))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["day"], 1);

    let ids_after = record_ids(&s).await;
    let added: Vec<_> = ids_after.difference(&ids_before).collect();
    let removed: Vec<_> = ids_before.difference(&ids_after).cloned().collect();
    assert!(!added.is_empty(), "new enrolments");
    assert_eq!(removed.len(), 1, "one record deleted");

    // An incremental pull sees only what changed since the last one; the log tells
    // what was deleted.
    let since = now.format("%Y-%m-%d %H:%M:%S").to_string();
    let changed: Value = redcap(
        &s,
        &[
            ("content", "record"),
            ("format", "json"),
            ("dateRangeBegin", &since),
        ],
    )
    .await
    .json()
    .await
    .expect("json");
    let changed_ids: BTreeSet<&str> = changed
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["record_id"].as_str().expect("id"))
        .collect();
    assert!(
        !changed_ids.is_empty() && changed_ids.len() < ids_after.len() / 2,
        "{} of {}",
        changed_ids.len(),
        ids_after.len()
    );
    for a in &added {
        assert!(changed_ids.contains(a.as_str()));
    }
    let log: Value = redcap(
        &s,
        &[
            ("content", "log"),
            ("format", "json"),
            ("logtype", "record_delete"),
            ("beginTime", &since[..16]),
        ],
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(log.as_array().expect("log").len(), 1);
    assert_eq!(log[0]["action"], format!("Deleted Record {}", removed[0]));
    let reqs = s.requests(System::Redcap);
    let incremental = reqs
        .iter()
        .find(|r| r.param("dateRangeBegin").is_some())
        .expect("logged");
    assert_eq!(incremental.param("content").as_deref(), Some("record"));
    assert_eq!(
        incremental.param("token").as_deref(),
        Some("***"),
        "secrets are masked in the log"
    );

    // eLabFTW: deleted entries leave the default list but stay under state=3.
    let deleted = elab_get(&s, "/api/v2/experiments?state=3").await;
    assert_eq!(deleted.as_array().expect("list").len(), 1);
    let listed = elab_get(&s, "/api/v2/experiments").await;
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .all(|e| e["id"] != deleted[0]["id"])
    );
}

#[tokio::test]
async fn faults_are_injected_and_logged() {
    let s = start(31, 10).await;
    let key = s.credentials(System::Elabftw).token;
    let url = format!("{}/api/v2/items", s.url(System::Elabftw));
    let get = |c: reqwest::Client| {
        let (url, key) = (url.clone(), key.clone());
        async move { c.get(url).header(AUTHORIZATION, key).send().await }
    };
    s.set_faults(
        System::Elabftw,
        Faults {
            fail_next: 1,
            ..Faults::default()
        },
    );
    assert_eq!(get(client()).await.expect("answer").status(), 500);
    assert_eq!(
        get(client()).await.expect("answer").status(),
        200,
        "only the next one fails"
    );

    s.set_faults(
        System::Elabftw,
        Faults {
            rate_limit_rate: 1.0,
            retry_after_s: 7,
            ..Faults::default()
        },
    );
    let r = get(client()).await.expect("answer");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");

    s.set_faults(
        System::Elabftw,
        Faults {
            truncate_rate: 1.0,
            ..Faults::default()
        },
    );
    let body = get(client())
        .await
        .expect("answer")
        .text()
        .await
        .expect("body");
    assert!(
        !body.is_empty() && serde_json::from_str::<Value>(&body).is_err(),
        "cut off mid-JSON"
    );

    s.set_faults(
        System::Elabftw,
        Faults {
            hang_rate: 1.0,
            hang_ms: 60_000,
            ..Faults::default()
        },
    );
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = get(quick).await.expect_err("the client gives up first");
    assert!(err.is_timeout());

    // Faults can also be set over HTTP, and a bad setting is refused.
    let admin = format!("{}/_sim/faults", s.url(System::Elabftw));
    let r = client()
        .put(&admin)
        .body(r#"{"error_rate": 1.0}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert!(
        get(client())
            .await
            .expect("answer")
            .status()
            .is_server_error()
    );
    let r = client()
        .put(&admin)
        .body(r#"{"eror_rate": 1.0}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 400);

    let faults: Vec<_> = s
        .requests(System::Elabftw)
        .iter()
        .filter_map(|r| r.fault)
        .collect();
    assert_eq!(
        faults,
        ["error", "rate_limit", "truncated", "hang", "error"]
    );
}

#[test]
fn fault_specs_name_what_is_wrong() {
    let mut o = SimOptions::default();
    o.add_fault("redcap:error_rate=0.25").expect("valid");
    o.add_fault("latency_ms=20").expect("valid");
    assert_eq!(o.faults[System::Redcap as usize].error_rate, 0.25);
    assert!(o.faults.iter().all(|f| f.latency_ms == 20));
    assert_eq!(o.faults[System::Xnat as usize].error_rate, 0.0);
    let e = o
        .add_fault("redcap:error_rate=2")
        .expect_err("out of range")
        .to_string();
    assert!(e.contains("error_rate") && e.contains("0 to 1"), "{e}");
    let e = o
        .add_fault("pacs:latency_ms=1")
        .expect_err("unknown system")
        .to_string();
    assert!(e.contains("pacs"), "{e}");
    let e = o
        .add_fault("latency=1")
        .expect_err("unknown fault")
        .to_string();
    assert!(e.contains("latency_ms"), "{e}");
}

#[test]
fn nothing_is_dated_after_the_simulated_now() {
    // A session dated in the future would hold back every incremental sync that
    // resumes from the newest `last_modified` seen.
    let mut w = crate::World::generate(42, 300);
    for day in 0..3 {
        let now = w.now();
        assert!(
            w.xnat
                .experiments
                .iter()
                .all(|e| e.last_modified <= now + chrono::TimeDelta::days(1)),
            "day {day}"
        );
        assert!(
            w.xnat.experiments.iter().all(|e| e.date <= now.date()),
            "day {day}"
        );
        let now_ms = now.and_utc().timestamp_millis() + 86_400_000;
        assert!(
            w.omero
                .images
                .iter()
                .filter_map(|i| i.acquisition_date)
                .all(|t| t <= now_ms)
        );
        assert!(
            w.redcap
                .records
                .iter()
                .all(|r| r.modified <= now + chrono::TimeDelta::days(1))
        );
        w.advance();
    }
}
