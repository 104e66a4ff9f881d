//! The tranSMART REST API v2 behind a Keycloak-style token endpoint.
//!
//! Reproduced from `reference/transmart/`: a password grant at
//! `/auth/realms/transmart/protocol/openid-connect/token`, then `Authorization: Bearer`
//! on every `/v2/` call (401 without); `/v2/studies`, `/v2/tree_nodes`, `/v2/patients`
//! and `/v2/observations` with the JSON constraint language; observations as a
//! hypercube whose cells point into `dimensionElements` by index (`null` when absent),
//! with `start time` as an inline dimension and `numericValue` or `stringValue`.
//! There is no paging and no modification date: clients re-pull a study and diff.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::server::{SimState, finish, json_response, query_pairs};
use crate::world::{
    TM_CONCEPTS, TM_STUDY, TM_TRIAL_VISITS, TmObservation, TmPatient, TmValue, World,
};

pub const REALM: &str = "transmart";

pub(crate) fn router(st: Arc<SimState>) -> Router {
    let r = Router::new()
        .route(
            "/auth/realms/{realm}/protocol/openid-connect/token",
            post(token),
        )
        .route("/versions", get(versions))
        .route("/v2/studies", get(studies))
        .route("/v2/studies/{id}", get(study))
        .route("/v2/tree_nodes", get(tree_nodes))
        .route("/v2/patients", get(patients).post(patients))
        .route("/v2/observations", get(observations).post(observations));
    finish(r, st)
}

fn json_ok(v: &Value) -> Response {
    json_response(StatusCode::OK, "application/json;charset=UTF-8", v)
}

fn bad_request(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        "application/json;charset=UTF-8",
        &json!({"httpStatus": 400, "message": message, "type": "InvalidArgumentsException"}),
    )
}

fn unauthorized(error: &str, description: &str) -> Response {
    let mut r = json_response(
        StatusCode::UNAUTHORIZED,
        "application/json;charset=UTF-8",
        &json!({"error": error, "error_description": description}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"transmart\""),
    );
    r
}

fn check_bearer(st: &SimState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(
            "unauthorized",
            "Full authentication is required to access this resource",
        ));
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or("");
    if st.sessions().get(token) == Some("bearer") {
        Ok(())
    } else {
        Err(unauthorized("invalid_token", "Invalid access token"))
    }
}

macro_rules! authorized {
    ($st:expr, $headers:expr) => {
        if let Err(r) = check_bearer(&$st, &$headers) {
            return r;
        }
    };
}

async fn token(
    State(st): State<Arc<SimState>>,
    Path(realm): Path<String>,
    body: Bytes,
) -> Response {
    if realm != REALM {
        return json_response(
            StatusCode::NOT_FOUND,
            "application/json",
            &json!({"error": "Realm does not exist"}),
        );
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("password") {
        return json_response(
            StatusCode::BAD_REQUEST,
            "application/json",
            &json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"}),
        );
    }
    if field("client_id").is_none_or(str::is_empty) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            "application/json",
            &json!({"error": "unauthorized_client", "error_description": "Invalid client credentials"}),
        );
    }
    if field("username") != Some(st.credentials.username.as_str())
        || field("password") != Some(st.credentials.password.as_str())
    {
        return json_response(
            StatusCode::UNAUTHORIZED,
            "application/json",
            &json!({"error": "invalid_grant", "error_description": "Invalid user credentials"}),
        );
    }
    let raw = st
        .sessions()
        .issue(st.seed(), st.system, "bearer-raw")
        .to_lowercase();
    // UUID-shaped, as in the recorded token response.
    let access = format!(
        "{}-{}-{}-{}-{}",
        &raw[0..8],
        &raw[8..12],
        &raw[12..16],
        &raw[16..20],
        &raw[20..32]
    );
    st.sessions()
        .live
        .insert(access.clone(), "bearer".to_owned());
    json_ok(&json!({
        "access_token": access,
        "expires_in": 300,
        "refresh_expires_in": 1800,
        "token_type": "bearer",
        "not-before-policy": 0,
        "scope": "read write",
    }))
}

async fn versions() -> Response {
    json_ok(&json!({"versions": [
        {"id": "v1", "prefix": "/v1", "version": "1.0", "major": 1, "minor": 0},
        {"id": "v2", "prefix": "/v2", "version": "2.5", "major": 2, "minor": 5},
    ]}))
}

fn study_json(w: &World) -> Value {
    json!({
        "id": w.transmart.study_db_id,
        "studyId": TM_STUDY,
        "bioExperimentId": null,
        "secureObjectToken": "PUBLIC",
        "dimensions": ["study", "concept", "patient", "visit", "trial visit", "start time"],
    })
}

async fn studies(State(st): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    authorized!(st, headers);
    let w = st.world();
    json_ok(&json!({"studies": [study_json(&w)]}))
}

async fn study(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    authorized!(st, headers);
    let w = st.world();
    if id.parse::<i64>().ok() == Some(w.transmart.study_db_id) {
        json_ok(&study_json(&w))
    } else {
        json_response(
            StatusCode::NOT_FOUND,
            "application/json;charset=UTF-8",
            &json!({"httpStatus": 404, "message": format!("Study not found with id {id}."), "type": "NoSuchResourceException"}),
        )
    }
}

async fn tree_nodes(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Response {
    authorized!(st, headers);
    let q = query_pairs(uri.query());
    let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let depth: Option<usize> = match get("depth") {
        None => None,
        Some(d) => match d.parse() {
            Ok(d) => Some(d),
            Err(_) => return bad_request(&format!("Invalid depth: {d}")),
        },
    };
    let counts = get("counts") == Some("true");
    // "Metadata tags will be in the response if set to true" (the reference OpenAPI
    // document): without `tags=true`, no node carries `metadata`.
    let tags = get("tags") == Some("true");
    let w = st.world();
    let root_path = format!("\\Public Studies\\{TM_STUDY}\\");
    let study_constraint = json!({"type": "study_name", "studyId": TM_STUDY});
    let mut folders: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, c) in TM_CONCEPTS.iter().enumerate() {
        let folder = c
            .path
            .trim_end_matches('\\')
            .rsplit('\\')
            .nth(1)
            .unwrap_or("");
        if !order.contains(&folder) {
            order.push(folder);
        }
        let mut leaf = json!({
            "name": c.name,
            "fullName": c.path,
            "studyId": TM_STUDY,
            "conceptCode": c.code,
            "conceptPath": c.path,
            "type": if c.numeric { "NUMERIC" } else { "CATEGORICAL" },
            "visualAttributes": ["LEAF", "ACTIVE", if c.numeric { "NUMERICAL" } else { "CATEGORICAL" }],
            "constraint": {"type": "and", "args": [{"type": "concept", "conceptCode": c.code}, study_constraint]},
        });
        if counts {
            let obs: Vec<&TmObservation> = w
                .transmart
                .observations
                .iter()
                .filter(|o| o.concept == i)
                .collect();
            let mut pats: Vec<i64> = obs.iter().map(|o| o.patient).collect();
            pats.sort_unstable();
            pats.dedup();
            leaf["observationCount"] = json!(obs.len());
            leaf["patientCount"] = json!(pats.len());
        }
        if let Some(u) = c.unit.filter(|_| tags) {
            leaf["metadata"] = json!({"unit": u});
        }
        folders.entry(folder).or_default().push(leaf);
    }
    let children: Vec<Value> = order
        .iter()
        .map(|f| {
            let mut node = json!({
                "name": f,
                "fullName": format!("{root_path}{f}\\"),
                "studyId": TM_STUDY,
                "type": "UNKNOWN",
                "visualAttributes": ["FOLDER", "ACTIVE"],
            });
            if depth.is_none_or(|d| d > 2) {
                node["children"] = json!(folders.get(f).cloned().unwrap_or_default());
            }
            node
        })
        .collect();
    let mut study_node = json!({
        "name": TM_STUDY,
        "fullName": root_path,
        "studyId": TM_STUDY,
        "type": "STUDY",
        "visualAttributes": ["FOLDER", "ACTIVE", "STUDY"],
        "constraint": study_constraint,
    });
    if tags {
        study_node["metadata"] = json!({"upload date": w.transmart.upload_date.to_string()});
    }
    if depth.is_none_or(|d| d > 1) {
        study_node["children"] = json!(children);
    }
    let nodes = if let Some(root) = get("root").filter(|r| !r.is_empty() && *r != "\\") {
        if root_path.starts_with(root) || root == root_path {
            vec![study_node]
        } else {
            return json_response(
                StatusCode::NOT_FOUND,
                "application/json;charset=UTF-8",
                &json!({"httpStatus": 404, "message": format!("Tree node not found: {root}"), "type": "NoSuchResourceException"}),
            );
        }
    } else {
        vec![study_node]
    };
    json_ok(&json!({ "tree_nodes": nodes }))
}

/// The subset of the constraint language the simulator evaluates.
enum Constraint {
    True,
    Study(String),
    Concept(String),
    And(Vec<Constraint>),
    Or(Vec<Constraint>),
    Not(Box<Constraint>),
    Subjects(HashSet<String>),
    Patients(HashSet<i64>),
}

fn parse_constraint(v: &Value) -> Result<Constraint, String> {
    let typ = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or("constraint without a \"type\"")?;
    let args = || -> Result<Vec<Constraint>, String> {
        v.get("args")
            .and_then(Value::as_array)
            .ok_or(format!("\"{typ}\" constraint without \"args\""))?
            .iter()
            .map(parse_constraint)
            .collect()
    };
    let string = |k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(format!("\"{typ}\" constraint without \"{k}\""))
    };
    Ok(match typ {
        "true" => Constraint::True,
        "study_name" => Constraint::Study(string("studyId")?),
        "concept" => Constraint::Concept(string("conceptCode")?),
        "and" => Constraint::And(args()?),
        "or" => Constraint::Or(args()?),
        "negation" => Constraint::Not(Box::new(parse_constraint(
            v.get("arg").ok_or("negation without \"arg\"")?,
        )?)),
        "patient_set" => {
            if let Some(ids) = v.get("subjectIds").and_then(Value::as_array) {
                Constraint::Subjects(
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                )
            } else if let Some(ids) = v.get("patientIds").and_then(Value::as_array) {
                Constraint::Patients(ids.iter().filter_map(Value::as_i64).collect())
            } else {
                return Err("patient_set constraint needs subjectIds or patientIds".to_owned());
            }
        }
        other => return Err(format!("Constraint type not supported: {other}")),
    })
}

fn matches(c: &Constraint, o: &TmObservation, w: &World) -> bool {
    match c {
        Constraint::True => true,
        Constraint::Study(s) => s == TM_STUDY,
        Constraint::Concept(code) => TM_CONCEPTS[o.concept].code == code,
        Constraint::And(cs) => cs.iter().all(|c| matches(c, o, w)),
        Constraint::Or(cs) => cs.iter().any(|c| matches(c, o, w)),
        Constraint::Not(c) => !matches(c, o, w),
        Constraint::Subjects(ids) => w
            .transmart
            .patients
            .iter()
            .any(|p| p.id == o.patient && ids.contains(p.subject.as_str())),
        Constraint::Patients(ids) => ids.contains(&o.patient),
    }
}

/// Request parameters from the query string, or from a JSON body on POST.
async fn params(
    method: &Method,
    uri: &Uri,
    body: &Bytes,
) -> Result<BTreeMap<String, Value>, Response> {
    let mut out: BTreeMap<String, Value> = query_pairs(uri.query())
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if method == Method::POST && !body.is_empty() {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => out.extend(m),
            _ => return Err(bad_request("Request body must be a JSON object")),
        }
    }
    Ok(out)
}

fn constraint_of(p: &BTreeMap<String, Value>, required: bool) -> Result<Constraint, Response> {
    match p.get("constraint") {
        None if required => Err(bad_request("Parameter 'constraint' is required")),
        None => Ok(Constraint::True),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| bad_request(&format!("Cannot parse constraint parameter: {e}")))
            .and_then(|v| parse_constraint(&v).map_err(|e| bad_request(&e))),
        Some(v) => parse_constraint(v).map_err(|e| bad_request(&e)),
    }
}

fn patient_json(p: &TmPatient, with_sex_cd: bool) -> Value {
    let mut v = json!({
        "id": p.id,
        "trial": TM_STUDY,
        "inTrialId": p.in_trial_id,
        "subjectIds": {"SUBJ_ID": p.subject},
        "birthDate": null,
        "deathDate": null,
        "age": p.age,
        "race": p.race,
        "maritalStatus": null,
        "religion": null,
    });
    if with_sex_cd {
        v["sexCd"] = json!(p.sex);
    }
    v["sex"] = json!(p.sex);
    v
}

async fn patients(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    authorized!(st, headers);
    let p = match params(&method, &uri, &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let c = match constraint_of(&p, false) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let w = st.world();
    let with_match: HashSet<i64> = w
        .transmart
        .observations
        .iter()
        .filter(|o| matches(&c, o, &w))
        .map(|o| o.patient)
        .collect();
    let list: Vec<Value> = w
        .transmart
        .patients
        .iter()
        .filter(|pat| with_match.contains(&pat.id))
        .map(|pat| patient_json(pat, false))
        .collect();
    json_ok(&json!({ "patients": list }))
}

fn ts(t: &chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn observations(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    authorized!(st, headers);
    let p = match params(&method, &uri, &body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match p.get("type").and_then(Value::as_str) {
        Some("clinical" | "autodetect") => {}
        Some(other) => {
            return bad_request(&format!(
                "Unsupported data type: {other}; this study holds clinical data only"
            ));
        }
        None => return bad_request("Parameter 'type' is required"),
    }
    let c = match constraint_of(&p, true) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let w = st.world();
    let mut obs: Vec<&TmObservation> = w
        .transmart
        .observations
        .iter()
        .filter(|o| matches(&c, o, &w))
        .collect();
    // The serializer's sort: concept, patient, visit, start time.
    obs.sort_by(|a, b| {
        (a.concept, a.patient, a.visit, a.start_time).cmp(&(
            b.concept,
            b.patient,
            b.visit,
            b.start_time,
        ))
    });

    let mut concepts: Vec<usize> = Vec::new();
    let mut patients: Vec<i64> = Vec::new();
    let mut visits: Vec<i64> = Vec::new();
    let mut trial_visits: Vec<usize> = Vec::new();
    fn index<T: PartialEq + Copy>(list: &mut Vec<T>, v: T) -> usize {
        match list.iter().position(|x| *x == v) {
            Some(i) => i,
            None => {
                list.push(v);
                list.len() - 1
            }
        }
    }
    let cells: Vec<Value> = obs
        .iter()
        .map(|o| {
            let ci = index(&mut concepts, o.concept);
            let pi = index(&mut patients, o.patient);
            let vi = o.visit.map(|v| index(&mut visits, v));
            let ti = index(&mut trial_visits, o.trial_visit);
            let mut cell = json!({
                "inlineDimensions": [o.start_time.as_ref().map(ts)],
                "dimensionIndexes": [0, ci, pi, vi, ti],
            });
            match &o.value {
                TmValue::Num(x) => cell["numericValue"] = json!(x),
                TmValue::Str(s) => cell["stringValue"] = json!(s),
            }
            cell
        })
        .collect();
    let elements = json!({
        "study": [{"name": TM_STUDY}],
        "concept": concepts.iter().map(|&i| {
            let c = &TM_CONCEPTS[i];
            json!({"conceptPath": c.path, "conceptCode": c.code, "name": c.name})
        }).collect::<Vec<_>>(),
        "patient": patients.iter().filter_map(|id| w.transmart.patients.iter().find(|p| p.id == *id)).map(|p| patient_json(p, true)).collect::<Vec<_>>(),
        "visit": visits.iter().filter_map(|id| w.transmart.visits.iter().find(|v| v.id == *id)).map(|v| json!({
            "id": v.id, "patientId": v.patient, "activeStatusCd": null,
            "startDate": ts(&v.start), "endDate": ts(&v.end),
            "inoutCd": null, "locationCd": null, "lengthOfStay": null,
            "encounterIds": {"VISIT_ID": v.encounter},
        })).collect::<Vec<_>>(),
        "trial visit": trial_visits.iter().map(|&i| {
            let (label, rel) = TM_TRIAL_VISITS[i];
            json!({"id": i as i64 + 1, "studyId": TM_STUDY, "relTimeLabel": label, "relTimeUnit": "Months", "relTime": rel})
        }).collect::<Vec<_>>(),
    });
    let body = json!({
        "dimensionDeclarations": [
            {"name": "study", "dimensionType": "attribute", "sortIndex": null, "valueType": "Object",
             "fields": [{"name": "name", "type": "String"}]},
            {"name": "concept", "dimensionType": "attribute", "sortIndex": null, "valueType": "Object",
             "fields": [{"name": "conceptPath", "type": "String"}, {"name": "conceptCode", "type": "String"}, {"name": "name", "type": "String"}]},
            {"name": "patient", "dimensionType": "subject", "sortIndex": 1, "valueType": "Object",
             "fields": [{"name": "id", "type": "Int"}, {"name": "trial", "type": "String"}, {"name": "inTrialId", "type": "String"},
                        {"name": "subjectIds", "type": "Object"}, {"name": "birthDate", "type": "Timestamp"}, {"name": "deathDate", "type": "Timestamp"},
                        {"name": "age", "type": "Int"}, {"name": "race", "type": "String"}, {"name": "maritalStatus", "type": "String"},
                        {"name": "religion", "type": "String"}, {"name": "sexCd", "type": "String"}, {"name": "sex", "type": "String"}]},
            {"name": "visit", "dimensionType": "attribute", "sortIndex": null, "valueType": "Object",
             "fields": [{"name": "id", "type": "Int"}, {"name": "patientId", "type": "Int"}, {"name": "activeStatusCd", "type": "String"},
                        {"name": "startDate", "type": "Timestamp"}, {"name": "endDate", "type": "Timestamp"}, {"name": "inoutCd", "type": "String"},
                        {"name": "locationCd", "type": "String"}, {"name": "lengthOfStay", "type": "Double"}, {"name": "encounterIds", "type": "Object"}]},
            {"name": "trial visit", "dimensionType": "attribute", "sortIndex": null, "valueType": "Object",
             "fields": [{"name": "id", "type": "Int"}, {"name": "studyId", "type": "String"}, {"name": "relTimeLabel", "type": "String"},
                        {"name": "relTimeUnit", "type": "String"}, {"name": "relTime", "type": "Int"}]},
            {"name": "start time", "dimensionType": "attribute", "sortIndex": null, "valueType": "Timestamp", "inline": true},
        ],
        "sort": [
            {"dimension": "concept", "sortOrder": "asc"},
            {"dimension": "patient", "sortOrder": "asc"},
            {"dimension": "visit", "sortOrder": "asc"},
            {"dimension": "start time", "sortOrder": "asc"},
        ],
        "cells": cells,
        "dimensionElements": elements,
    });
    json_ok(&body)
}
