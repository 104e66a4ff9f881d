//! The XNAT REST API: `/data/...` (and its `/data/archive/...` alias) over the
//! simulated imaging archive.
//!
//! Reproduced from `reference/xnat/`: `ResultSet` listings where every value and
//! `totalRecords` are strings; the single-object `items` form where numbers are numbers;
//! default and `columns=` columns; `limit`/`offset`; Basic auth or the `JSESSIONID`
//! cookie from `POST /data/JSESSION`; a subject shared into a second project listed
//! there with its owning project in `project`.
//!
//! Under paging, `totalRecords` counts the rows returned (the table handed to the JSON
//! writer is the page); clients must page until a short page.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::server::{SimState, cookie, finish, param, query_pairs};
use crate::world::{World, XnatExperiment, XnatScan, XnatSubject};

pub(crate) fn router(st: Arc<SimState>) -> Router {
    finish(Router::new().route("/data/{*rest}", any(data)), st)
}

fn ts_ms(t: &chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

fn unauthorized() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        "<html><head><title>Status page</title></head><body><h3>Login attempt failed. \
         Please try again.</h3></body></html>\n",
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"XNAT\""),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    r
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html;charset=UTF-8")],
        format!("<html><body><h3>Unable to find {what}.</h3></body></html>\n"),
    )
        .into_response()
}

enum Auth {
    /// Valid Basic credentials: a new session was opened (as Tomcat does for each).
    Basic(String),
    Cookie,
}

fn authenticate(st: &SimState, headers: &HeaderMap) -> Option<Auth> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        if user == st.credentials.username && pass == st.credentials.password {
            let id = st
                .sessions()
                .issue(st.seed(), st.system, &format!("user:{user}"));
            return Some(Auth::Basic(id));
        }
        return None;
    }
    let id = cookie(headers, "JSESSIONID")?;
    st.sessions().get(&id).map(|_| Auth::Cookie)
}

async fn data(
    State(st): State<Arc<SimState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(auth) = authenticate(&st, &headers) else {
        return unauthorized();
    };
    let path = uri.path();
    let rest = path.strip_prefix("/data/").unwrap_or("");
    let rest = rest.strip_prefix("archive/").unwrap_or(rest);
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let q = query_pairs(uri.query());

    let mut resp = if segs == ["JSESSION"] {
        match (&auth, &method) {
            (Auth::Basic(id), &Method::POST | &Method::GET) => {
                let mut r = (StatusCode::OK, id.clone()).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain;charset=UTF-8"),
                );
                r
            }
            (Auth::Cookie, _) => {
                let id = cookie(&headers, "JSESSIONID").unwrap_or_default();
                (StatusCode::OK, id).into_response()
            }
            _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        }
    } else if method != Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "This simulator serves the read-only part of the XNAT API.\n",
        )
            .into_response()
    } else {
        let world = st.world();
        route(&world, &segs, &q)
    };
    if let Auth::Basic(id) = auth
        && let Ok(v) = HeaderValue::from_str(&format!("JSESSIONID={id}; Path=/; HttpOnly"))
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// What a listing holds, for its default columns.
#[derive(Clone, Copy)]
enum Kind {
    Project,
    Subject,
    Experiment,
    Scan,
}

impl Kind {
    fn default_columns(self) -> &'static [&'static str] {
        match self {
            Kind::Project => &[
                "pi_firstname",
                "secondary_ID",
                "pi_lastname",
                "name",
                "description",
                "ID",
                "URI",
            ],
            Kind::Subject => &[
                "insert_date",
                "project",
                "ID",
                "label",
                "insert_user",
                "URI",
            ],
            Kind::Experiment => &[
                "date",
                "xsiType",
                "xnat:subjectassessordata/id",
                "insert_date",
                "project",
                "ID",
                "label",
                "URI",
            ],
            Kind::Scan => &[
                "xsiType",
                "xnat_imagescandata_id",
                "note",
                "series_description",
                "ID",
                "type",
                "URI",
                "quality",
            ],
        }
    }
}

type Row = Vec<(&'static str, String)>;

fn project_row(p: &crate::world::XnatProject) -> Row {
    vec![
        ("pi_firstname", p.pi_firstname.to_owned()),
        ("secondary_ID", p.id.to_owned()),
        ("pi_lastname", p.pi_lastname.to_owned()),
        ("name", p.name.to_owned()),
        ("description", p.description.to_owned()),
        ("ID", p.id.to_owned()),
        ("URI", format!("/data/projects/{}", p.id)),
    ]
}

fn subject_row(s: &XnatSubject) -> Row {
    vec![
        ("insert_date", ts_ms(&s.insert_date)),
        ("project", s.project.to_owned()),
        ("ID", s.id.clone()),
        ("label", s.label.clone()),
        ("insert_user", "xnat_admin".to_owned()),
        ("URI", format!("/data/subjects/{}", s.id)),
        ("last_modified", ts_ms(&s.last_modified)),
        ("gender", s.gender.to_owned()),
        ("yob", s.yob.to_string()),
        ("handedness", s.handedness.to_owned()),
    ]
}

fn experiment_row(e: &XnatExperiment, w: &World) -> Row {
    let subject_label = w
        .xnat
        .subjects
        .iter()
        .find(|s| s.id == e.subject_id)
        .map(|s| s.label.clone())
        .unwrap_or_default();
    vec![
        ("date", e.date.to_string()),
        ("xsiType", e.xsi_type.to_owned()),
        ("xnat:subjectassessordata/id", e.id.clone()),
        ("insert_date", ts_ms(&e.insert_date)),
        ("project", e.project.to_owned()),
        ("ID", e.id.clone()),
        ("label", e.label.clone()),
        ("URI", format!("/data/experiments/{}", e.id)),
        ("last_modified", ts_ms(&e.last_modified)),
        ("subject_ID", e.subject_id.clone()),
        ("subject_label", subject_label),
        ("modality", e.modality.to_owned()),
        ("session_type", e.session_type.to_owned()),
        ("scanner", e.scanner_station.to_owned()),
        ("time", e.time.format("%H:%M:%S").to_string()),
    ]
}

fn scan_row(e: &XnatExperiment, s: &XnatScan) -> Row {
    vec![
        ("xsiType", s.xsi_type.to_owned()),
        ("xnat_imagescandata_id", s.pk.to_string()),
        ("note", s.note.clone()),
        ("series_description", s.series_description.to_owned()),
        ("ID", s.id.clone()),
        ("type", s.scan_type.to_owned()),
        ("URI", format!("/data/experiments/{}/scans/{}", e.id, s.id)),
        ("quality", s.quality.to_owned()),
        ("frames", s.frames.to_string()),
        ("last_modified", ts_ms(&s.last_modified)),
    ]
}

fn route(w: &World, segs: &[&str], q: &[(String, String)]) -> Response {
    let x = &w.xnat;
    let project = |id: &str| x.projects.iter().find(|p| p.id == id);
    // A subject visible in a project: owned by it or shared into it; by ID or label.
    let subject_in = |p: &str, s: &str| {
        x.subjects.iter().find(|sub| {
            (sub.project == p || sub.shared_into.contains(&p)) && (sub.id == s || sub.label == s)
        })
    };
    let experiment_in = |p: Option<&str>, subject: Option<&str>, e: &str| {
        x.experiments.iter().find(|ex| {
            p.is_none_or(|p| ex.project == p)
                && subject.is_none_or(|s| ex.subject_id == s)
                && (ex.id == e || (p.is_some() && ex.label == e))
        })
    };
    match segs {
        ["projects"] => listing(
            Kind::Project,
            x.projects.iter().map(project_row).collect(),
            q,
            None,
        ),
        ["projects", p] => match project(p) {
            Some(pr) => single(
                q,
                "xnat:projectData",
                json!({
                    "secondary_ID": pr.id, "ID": pr.id, "name": pr.name,
                    "description": pr.description,
                    "pi/firstname": pr.pi_firstname, "pi/lastname": pr.pi_lastname,
                }),
                Vec::new(),
            ),
            None => not_found(&format!("project {p}")),
        },
        ["projects", p, "subjects"] => match project(p) {
            Some(_) => listing(
                Kind::Subject,
                x.subjects
                    .iter()
                    .filter(|s| s.project == *p || s.shared_into.contains(p))
                    .map(subject_row)
                    .collect(),
                q,
                None,
            ),
            None => not_found(&format!("project {p}")),
        },
        ["projects", p, "subjects", s] => match subject_in(p, s) {
            Some(sub) => subject_single(sub, q),
            None => not_found(&format!("subject {s} in project {p}")),
        },
        ["projects", p, "subjects", s, "experiments"] => match subject_in(p, s) {
            Some(sub) => listing(
                Kind::Experiment,
                x.experiments
                    .iter()
                    .filter(|e| e.subject_id == sub.id && e.project == *p)
                    .filter(|e| xsi_filter(e, q))
                    .map(|e| experiment_row(e, w))
                    .collect(),
                q,
                None,
            ),
            None => not_found(&format!("subject {s} in project {p}")),
        },
        ["projects", p, "subjects", s, "experiments", e, tail @ ..] => {
            let Some(sub) = subject_in(p, s) else {
                return not_found(&format!("subject {s} in project {p}"));
            };
            match experiment_in(Some(p), Some(&sub.id), e) {
                Some(ex) => experiment_tail(w, ex, tail, q),
                None => not_found(&format!("experiment {e}")),
            }
        }
        ["projects", p, "experiments"] => match project(p) {
            Some(_) => listing(
                Kind::Experiment,
                x.experiments
                    .iter()
                    .filter(|e| e.project == *p)
                    .filter(|e| xsi_filter(e, q))
                    .map(|e| experiment_row(e, w))
                    .collect(),
                q,
                Some("Matching experiments"),
            ),
            None => not_found(&format!("project {p}")),
        },
        ["projects", p, "experiments", e, tail @ ..] => match experiment_in(Some(p), None, e) {
            Some(ex) => experiment_tail(w, ex, tail, q),
            None => not_found(&format!("experiment {e} in project {p}")),
        },
        ["subjects"] => listing(
            Kind::Subject,
            x.subjects.iter().map(subject_row).collect(),
            q,
            None,
        ),
        ["subjects", s] => match x.subjects.iter().find(|sub| sub.id == *s) {
            Some(sub) => subject_single(sub, q),
            None => not_found(&format!("subject {s}")),
        },
        ["experiments"] => listing(
            Kind::Experiment,
            x.experiments
                .iter()
                .filter(|e| xsi_filter(e, q))
                .map(|e| experiment_row(e, w))
                .collect(),
            q,
            Some("Matching experiments"),
        ),
        ["experiments", e, tail @ ..] => match experiment_in(None, None, e) {
            Some(ex) => experiment_tail(w, ex, tail, q),
            None => not_found(&format!("experiment {e}")),
        },
        _ => not_found("the requested resource"),
    }
}

fn xsi_filter(e: &XnatExperiment, q: &[(String, String)]) -> bool {
    // Case-sensitive, as XNAT's own filter is.
    param(q, "xsiType").is_none_or(|t| t == e.xsi_type)
}

fn experiment_tail(
    w: &World,
    e: &XnatExperiment,
    tail: &[&str],
    q: &[(String, String)],
) -> Response {
    match tail {
        [] => experiment_single(w, e, q),
        ["scans"] => listing(
            Kind::Scan,
            e.scans.iter().map(|s| scan_row(e, s)).collect(),
            q,
            None,
        ),
        ["scans", n] => match e.scans.iter().find(|s| s.id == *n) {
            Some(s) => single(q, s.xsi_type, scan_fields(e, s), Vec::new()),
            None => not_found(&format!("scan {n} of {}", e.id)),
        },
        _ => not_found("the requested resource"),
    }
}

fn scan_fields(e: &XnatExperiment, s: &XnatScan) -> Value {
    json!({
        "series_description": s.series_description,
        "image_session_ID": e.id,
        "type": s.scan_type,
        "xnat_imagescandata_id": s.pk,
        "ID": s.id,
        "frames": s.frames,
        "quality": s.quality,
        "note": s.note,
        "scanner/manufacturer": e.scanner_manufacturer,
        "scanner/model": e.scanner_model,
    })
}

fn subject_single(s: &XnatSubject, q: &[(String, String)]) -> Response {
    let demographics = json!({
        "field": "demographics",
        "items": [{
            "children": [],
            "meta": {"create_event_id": 1, "xsi:type": "xnat:demographicData", "isHistory": false},
            "data_fields": {"gender": s.gender, "yob": s.yob, "handedness": s.handedness},
        }],
    });
    single(
        q,
        "xnat:subjectData",
        json!({
            "label": s.label, "ID": s.id, "project": s.project,
            "insert_date": ts_ms(&s.insert_date), "insert_user": "xnat_admin",
        }),
        vec![demographics],
    )
}

fn experiment_single(w: &World, e: &XnatExperiment, q: &[(String, String)]) -> Response {
    let subject_label = w
        .xnat
        .subjects
        .iter()
        .find(|s| s.id == e.subject_id)
        .map(|s| s.label.as_str())
        .unwrap_or("");
    let mut fields = json!({
        "dcmPatientId": subject_label,
        "dcmPatientWeight": e.weight,
        "subject_ID": e.subject_id,
        "date": e.date.to_string(),
        "modality": e.modality,
        "project": e.project,
        "scanner/model": e.scanner_model,
        "label": e.label,
        "scanner/manufacturer": e.scanner_manufacturer,
        "operator": e.operator,
        "acquisition_site": "Memory Clinic Imaging Centre",
        "dcmPatientName": subject_label,
        "study_id": e.uid.rsplit('.').next().unwrap_or("").chars().take(4).collect::<String>(),
        "UID": e.uid,
        "scanner": e.scanner_station,
        "session_type": e.session_type,
        "time": e.time.format("%H:%M:%S").to_string(),
        "ID": e.id,
        "id": e.id,
    });
    if let Some(fs) = e.field_strength {
        fields["fieldStrength"] = json!(fs);
    }
    if let Some(t) = e.tracer {
        fields["tracer/name"] = json!(t);
    }
    let scans: Vec<Value> = e
        .scans
        .iter()
        .map(|s| {
            json!({
                "children": [],
                "meta": {"create_event_id": 1, "xsi:type": s.xsi_type, "isHistory": false},
                "data_fields": scan_fields(e, s),
            })
        })
        .collect();
    single(
        q,
        e.xsi_type,
        fields,
        vec![json!({"field": "scans/scan", "items": scans})],
    )
}

/// The single-object form: `{"items":[{children, meta, data_fields}]}` for JSON, an XML
/// document otherwise.
fn single(
    q: &[(String, String)],
    xsi_type: &str,
    data_fields: Value,
    children: Vec<Value>,
) -> Response {
    match param(q, "format").unwrap_or("xml") {
        "json" => {
            let body = json!({"items": [{
                "children": children,
                "meta": {"create_event_id": 1, "xsi:type": xsi_type, "isHistory": false},
                "data_fields": data_fields,
            }]});
            (
                [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
                body.to_string(),
            )
                .into_response()
        }
        "xml" => {
            let tag = xml_tag(xsi_type);
            let mut out = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{tag} \
                 xmlns:xnat=\"http://nrg.wustl.edu/xnat\" \
                 xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\""
            );
            if let Value::Object(m) = &data_fields {
                for key in ["ID", "project", "label"] {
                    if let Some(v) = m.get(key) {
                        out.push_str(&format!(" {key}=\"{}\"", xml_escape(&plain(v))));
                    }
                }
                out.push_str(">\n");
                for (k, v) in m {
                    if ["ID", "id", "project", "label"].contains(&k.as_str()) || k.contains('/') {
                        continue;
                    }
                    out.push_str(&format!(
                        "  <xnat:{k}>{}</xnat:{k}>\n",
                        xml_escape(&plain(v))
                    ));
                }
            } else {
                out.push_str(">\n");
            }
            out.push_str(&format!("</{tag}>\n"));
            ([(header::CONTENT_TYPE, "text/xml;charset=UTF-8")], out).into_response()
        }
        "html" => {
            // The report page the web UI shows for this object.
            let mut out =
                format!("<html><head><title>XNAT - {xsi_type}</title></head><body><table>\n");
            if let Value::Object(m) = &data_fields {
                for (k, v) in m {
                    out.push_str(&format!(
                        "<tr><th>{}</th><td>{}</td></tr>\n",
                        xml_escape(k),
                        xml_escape(&plain(v))
                    ));
                }
            }
            out.push_str("</table></body></html>\n");
            ([(header::CONTENT_TYPE, "text/html;charset=UTF-8")], out).into_response()
        }
        other => (
            StatusCode::BAD_REQUEST,
            format!("Unsupported format {other:?} for a single object; use json, xml or html.\n"),
        )
            .into_response(),
    }
}

fn xml_tag(xsi_type: &str) -> String {
    // xnat:mrSessionData → xnat:MRSession, xnat:subjectData → xnat:Subject
    let local = xsi_type
        .trim_start_matches("xnat:")
        .trim_end_matches("Data");
    let mut name = match local {
        "mrSession" => "MRSession".to_owned(),
        "petSession" => "PETSession".to_owned(),
        "mrScan" => "MRScan".to_owned(),
        "petScan" => "PETScan".to_owned(),
        "ctScan" => "CTScan".to_owned(),
        _ => {
            let mut c = local.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }
    };
    name.insert_str(0, "xnat:");
    name
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A table listing in the requested format, with `columns=`, `limit` and `offset`.
fn listing(kind: Kind, rows: Vec<Row>, q: &[(String, String)], title: Option<&str>) -> Response {
    let requested: Option<Vec<String>> = param(q, "columns").map(|c| {
        let mut cols: Vec<String> = c
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        // XNAT adds the resource URI to every row.
        if !cols.iter().any(|c| c == "URI") {
            cols.push("URI".to_owned());
        }
        cols
    });
    let offset: usize = param(q, "offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: Option<usize> = match param(q, "limit") {
        None | Some("*") => None,
        Some(v) => match v.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("Invalid limit {v:?}: expected a number or *\n"),
                )
                    .into_response();
            }
        },
    };
    let page = rows
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX));
    let table: Vec<Map<String, Value>> = page
        .map(|row| {
            let mut m = Map::new();
            match &requested {
                None => {
                    for col in kind.default_columns() {
                        if let Some((_, v)) = row.iter().find(|(k, _)| k == col) {
                            m.insert((*col).to_owned(), Value::String(v.clone()));
                        }
                    }
                }
                Some(cols) => {
                    // Unknown columns are left out, as XNAT's field mapping drops them.
                    for col in cols {
                        if let Some((_, v)) = row.iter().find(|(k, _)| *k == col.as_str()) {
                            m.insert(col.clone(), Value::String(v.clone()));
                        }
                    }
                }
            }
            m
        })
        .collect();
    match param(q, "format").unwrap_or("html") {
        "json" => {
            let mut rs = Map::new();
            rs.insert(
                "Result".to_owned(),
                Value::Array(table.iter().cloned().map(Value::Object).collect()),
            );
            rs.insert(
                "totalRecords".to_owned(),
                Value::String(table.len().to_string()),
            );
            if let Some(t) = title {
                rs.insert("title".to_owned(), Value::String(t.to_owned()));
            }
            (
                [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
                json!({"ResultSet": rs}).to_string(),
            )
                .into_response()
        }
        "csv" => {
            let header: Vec<String> = match &requested {
                None => kind
                    .default_columns()
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                Some(c) => c.clone(),
            };
            let mut out = header
                .iter()
                .map(|h| csv_cell(h))
                .collect::<Vec<_>>()
                .join(",");
            out.push('\n');
            for row in &table {
                let cells: Vec<String> = header
                    .iter()
                    .map(|h| csv_cell(row.get(h).and_then(Value::as_str).unwrap_or("")))
                    .collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
            ([(header::CONTENT_TYPE, "text/csv;charset=UTF-8")], out).into_response()
        }
        "html" => {
            let mut out = String::from("<html><body><table>\n");
            for row in &table {
                out.push_str("<tr>");
                for v in row.values() {
                    out.push_str(&format!(
                        "<td>{}</td>",
                        xml_escape(v.as_str().unwrap_or(""))
                    ));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table></body></html>\n");
            ([(header::CONTENT_TYPE, "text/html;charset=UTF-8")], out).into_response()
        }
        other => (
            StatusCode::BAD_REQUEST,
            format!("Unsupported format {other:?}; use json, csv or html.\n"),
        )
            .into_response(),
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
