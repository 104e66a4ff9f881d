//! The XNAT connector: projects, subjects, imaging sessions and scans of one XNAT
//! server, read through its REST API.
//!
//! It logs in once with Basic credentials and reuses the `JSESSIONID` session (logging
//! in again when it expires), lists subjects and sessions per project with the columns
//! it needs (`last_modified` among them), keeps shared subjects and sessions once under
//! their owning project, and reads each new or changed session in its single-object
//! form, which carries the session's fields and its scans in one answer. Incremental
//! syncs read only sessions whose `last_modified` is newer than the last sync's and
//! report as deleted what the listings no longer hold.
//!
//! It must not reach the store or any other system; it speaks HTTP through
//! `crossdex-http-client` only.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use crossdex_http_client::{HttpClient, HttpError, at_least_one, parse_url, secret, source_config};
use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, Connector, ConnectorError, ConnectorFactory, Entity,
    Observation, Page, PageSink, Record, SourceContext, SyncMode, SyncOutcome, SyncRequest,
    global_id,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Subjects per page handed to the store: a listing of thousands of subjects is
/// still written in bounded steps.
const SUBJECTS_PER_PAGE: usize = 500;
/// `[sources.<name>]` of `type = "xnat"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XnatConfig {
    /// The server's root URL, e.g. `https://xnat.example.org`.
    pub url: String,
    /// Account name, or an alias token's alias.
    pub username: String,
    /// Password, or an alias token's secret. Prefer `password_file` or the environment.
    pub password: Option<String>,
    /// A file whose first line is the password (relative to the config file).
    pub password_file: Option<PathBuf>,
    /// Projects to index [default: every project the account sees].
    pub projects: Option<Vec<String>>,
    /// Rows per listing request; none reads each listing in one request.
    pub page_size: Option<usize>,
    /// Seconds to wait for one answer [default 60].
    #[serde(default = "crossdex_http_client::default_timeout_s")]
    pub timeout_s: u64,
    /// Retries on 429, 5xx and lost connections [default 4].
    #[serde(default = "crossdex_http_client::default_retries")]
    pub retries: usize,
    /// Requests in flight at once [default 4].
    #[serde(default = "crossdex_http_client::default_max_concurrency")]
    pub max_concurrency: usize,
}

/// Builds `xnat` connectors.
#[derive(Debug, Default)]
pub struct XnatFactory;

impl ConnectorFactory for XnatFactory {
    fn system(&self) -> &'static str {
        "xnat"
    }

    fn example_config(&self) -> &'static str {
        r#"# An XNAT server: projects, subjects, imaging sessions and scans.
[sources.imaging]
type = "xnat"
url = "https://xnat.example.org"
username = "crossdex"
# The password (or an alias token's secret): a file holding it, or
# CROSSDEX__SOURCES__IMAGING__PASSWORD in the environment.
password_file = "secrets/xnat.password"
# Only these projects [default: all the account sees].
# projects = ["MEMCLIN"]
# Rows per listing request, for servers that struggle with large listings.
# page_size = 1000
"#
    }

    fn build(&self, context: SourceContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let config: XnatConfig = source_config(&context.config)?;
        let url = parse_url("url", config.url.trim_end_matches('/'))?;
        if let Some(n) = config.page_size {
            at_least_one("page_size", n)?;
        }
        let password = secret(
            "password",
            config.password.as_deref(),
            config.password_file.as_deref(),
            &context.base_dir,
        )?;
        let http = HttpClient::for_source(
            &context.name,
            config.timeout_s,
            config.retries,
            config.max_concurrency,
        )?;
        Ok(Box::new(XnatConnector {
            name: context.name,
            base: url.as_str().trim_end_matches('/').to_owned(),
            password,
            config,
            http,
            session: Mutex::new(None),
        }))
    }
}

pub struct XnatConnector {
    name: String,
    base: String,
    password: String,
    config: XnatConfig,
    http: HttpClient,
    session: Mutex<Option<String>>,
}

/// What an incremental sync resumes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// The newest `last_modified` of a session seen.
    sessions_modified: Option<String>,
    /// The newest `last_modified` of a subject seen.
    subjects_modified: Option<String>,
    /// Sessions indexed, with their scans, to report deletions.
    sessions: BTreeMap<String, Vec<String>>,
    subjects: BTreeSet<String>,
}

const SUBJECT_COLUMNS: &str =
    "ID,label,project,insert_date,last_modified,gender,yob,handedness,URI";
const SESSION_COLUMNS: &str =
    "ID,label,project,date,xsiType,insert_date,last_modified,subject_ID,subject_label,URI";
const PAGE: usize = 500;

fn ts(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

fn s(row: &Map<String, Value>, k: &str) -> String {
    match row.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One row of a subject or session listing: only the columns asked for, as text.
/// Typed rows, rather than JSON maps, keep a listing of tens of thousands small.
#[derive(Debug, Clone, Default, Deserialize)]
struct Row {
    #[serde(rename = "ID", default, deserialize_with = "lenient")]
    id: String,
    #[serde(default, deserialize_with = "lenient")]
    label: String,
    #[serde(default, deserialize_with = "lenient")]
    project: String,
    #[serde(default, deserialize_with = "lenient")]
    name: String,
    #[serde(default, deserialize_with = "lenient")]
    description: String,
    #[serde(default, deserialize_with = "lenient")]
    pi_firstname: String,
    #[serde(default, deserialize_with = "lenient")]
    pi_lastname: String,
    #[serde(default, deserialize_with = "lenient")]
    insert_date: String,
    #[serde(default, deserialize_with = "lenient")]
    last_modified: String,
    #[serde(default, deserialize_with = "lenient")]
    gender: String,
    #[serde(default, deserialize_with = "lenient")]
    yob: String,
    #[serde(default, deserialize_with = "lenient")]
    handedness: String,
    #[serde(default, deserialize_with = "lenient")]
    date: String,
    #[serde(rename = "xsiType", default, deserialize_with = "lenient")]
    xsi_type: String,
    #[serde(rename = "subject_ID", default, deserialize_with = "lenient")]
    subject_id: String,
    #[serde(default, deserialize_with = "lenient")]
    subject_label: String,
}

/// A listing cell as text, whatever JSON type the server gave it: XNAT sends strings,
/// but numbers and nulls have been seen in hand-built listings.
fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(v) => v,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

#[derive(Deserialize)]
struct Listing {
    #[serde(rename = "ResultSet")]
    result_set: ResultSet,
}

#[derive(Deserialize)]
struct ResultSet {
    #[serde(rename = "Result")]
    result: Vec<Row>,
}

/// Whether `row` changed after `mark`, the newest `last_modified` of the last sync.
fn newer(row: &Row, mark: &Option<String>) -> bool {
    mark.as_deref()
        .is_none_or(|m| row.last_modified.as_str() > m)
}

/// Moves `mark` up to `row`'s `last_modified` when that is newer.
fn raise(mark: &mut Option<String>, row: &Row) {
    if newer(row, mark) {
        *mark = Some(row.last_modified.clone());
    }
}

/// Keeps each row once: under its owning project when that project is indexed, else
/// under the first indexed project that lists it. Rows are offered project by project.
struct Homes<'a> {
    indexed: BTreeSet<&'a str>,
    seen: HashSet<String>,
}

impl<'a> Homes<'a> {
    fn new(projects: &'a [String]) -> Self {
        Homes {
            indexed: projects.iter().map(String::as_str).collect(),
            seen: HashSet::new(),
        }
    }

    fn keep(&mut self, listed_under: &str, row: &Row) -> bool {
        let home = row.project == listed_under || !self.indexed.contains(row.project.as_str());
        home && self.seen.insert(row.id.clone())
    }
}

impl XnatConnector {
    async fn login(&self) -> Result<String, ConnectorError> {
        let url = format!("{}/data/JSESSION", self.base);
        let answer = self
            .http
            .send(|c| {
                c.post(&url)
                    .basic_auth(&self.config.username, Some(&self.password))
            })
            .await
            .map_err(|e| match e.status() {
                Some(401 | 403) => ConnectorError::Auth(format!(
                    "XNAT at {} refused the credentials of {:?}",
                    self.base, self.config.username
                )),
                _ => e.into_connector(),
            })?;
        let id = answer.text().trim().to_owned();
        if id.is_empty() || id.contains('<') {
            return Err(ConnectorError::Protocol(format!(
                "{url} did not answer a session id"
            )));
        }
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        Ok(id)
    }

    async fn session(&self) -> Result<String, ConnectorError> {
        let current = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match current {
            Some(s) => Ok(s),
            None => self.login().await,
        }
    }

    /// GET `path` (relative to the server root) as JSON, logging in again once if the
    /// session expired.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ConnectorError> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            let sid = self.session().await?;
            let r = self
                .http
                .json::<T>(|c| c.get(&url).header("Cookie", format!("JSESSIONID={sid}")))
                .await;
            match r {
                Err(HttpError::Status { status: 401, .. }) if attempt == 0 => {
                    *self.session.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                other => return other.map_err(HttpError::into_connector),
            }
        }
        Err(ConnectorError::Auth(format!(
            "XNAT at {} keeps refusing the session of {:?}",
            self.base, self.config.username
        )))
    }

    /// Every row of a `ResultSet` listing, paged when `page_size` is set.
    async fn listing(&self, path: &str, columns: &str) -> Result<Vec<Row>, ConnectorError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let mut p = format!("{path}?format=json&columns={columns}");
            if let Some(n) = self.config.page_size {
                p.push_str(&format!("&limit={n}&offset={offset}"));
            }
            let rows = self.get::<Listing>(&p).await?.result_set.result;
            let n = rows.len();
            out.extend(rows);
            match self.config.page_size {
                Some(size) if n == size => offset += size,
                _ => break,
            }
        }
        Ok(out)
    }

    /// The projects to index, with their listing rows (name, description, PI).
    async fn projects(&self) -> Result<Vec<Row>, ConnectorError> {
        let rows: Vec<Row> = self
            .listing(
                "/data/projects",
                "ID,name,description,pi_firstname,pi_lastname",
            )
            .await?
            .into_iter()
            .filter(|r| !r.id.is_empty())
            .collect();
        let all: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        match &self.config.projects {
            None => Ok(rows),
            Some(wanted) => {
                if let Some(missing) = wanted.iter().find(|w| !all.contains(w)) {
                    return Err(ConnectorError::Config {
                        key: "projects".into(),
                        reason: format!(
                            "project {missing:?} is not on {} or not visible to {:?}; visible: {}",
                            self.base,
                            self.config.username,
                            all.join(", ")
                        ),
                    });
                }
                Ok(rows
                    .into_iter()
                    .filter(|r| wanted.contains(&r.id))
                    .collect())
            }
        }
    }

    /// A project as a record: the dataset-level entity the catalogue describes.
    fn project_entity(&self, row: &Row) -> Entity {
        let id = &row.id;
        let title = if row.name.is_empty() { id } else { &row.name };
        let mut r = Record::new(&self.name, "xnat", "project", id, title);
        r.project = Some(id.clone());
        if !row.description.is_empty() {
            r.description = Some(row.description.clone());
        }
        r.url = Some(format!("{}/data/projects/{id}?format=html", self.base));
        let pi = format!("{} {}", row.pi_firstname, row.pi_lastname);
        if !pi.trim().is_empty() {
            r.attributes
                .insert("pi".into(), Value::String(pi.trim().to_owned()));
        }
        Entity {
            record: r,
            observations: Vec::new(),
        }
    }

    fn subject_entity(&self, row: &Row) -> Entity {
        let id = &row.id;
        let label = row.label.clone();
        let project = row.project.clone();
        let mut r = Record::new(&self.name, "xnat", "subject", id, &label);
        r.project = Some(project.clone());
        r.subject_key = Some(label.clone());
        r.description = Some(format!("XNAT subject {label} of project {project}"));
        r.url = Some(format!("{}/data/subjects/{id}?format=html", self.base));
        r.created_at = ts(&row.insert_date);
        r.modified_at = ts(&row.last_modified).or(r.created_at);
        let mut obs = Vec::new();
        for (col, v, label) in [
            ("gender", &row.gender, "Sex"),
            ("handedness", &row.handedness, "Handedness"),
        ] {
            if !v.is_empty() {
                obs.push(Observation::text(col, v.clone()).with_label(label));
            }
        }
        if let Ok(y) = row.yob.parse::<f64>() {
            obs.push(Observation::number("yob", y, row.yob.clone()).with_label("Year of birth"));
        }
        Entity {
            record: r,
            observations: obs,
        }
    }

    /// A session and its scans, from the single-object form.
    fn session_entities(&self, listed: &Row, doc: &Value) -> Result<Vec<Entity>, String> {
        let item = doc
            .pointer("/items/0")
            .ok_or("no items[0] in the session document")?;
        let f = item
            .get("data_fields")
            .and_then(Value::as_object)
            .ok_or("no data_fields in the session document")?;
        let id = listed.id.clone();
        let label = listed.label.clone();
        let subject_label = listed.subject_label.clone();
        let subject_id = listed.subject_id.clone();
        let project = listed.project.clone();
        let xsi = listed.xsi_type.clone();
        let modality = {
            let m = s(f, "modality");
            if m.is_empty() {
                xsi.trim_start_matches("xnat:")
                    .trim_end_matches("SessionData")
                    .to_uppercase()
            } else {
                m
            }
        };
        let date = listed.date.clone();
        let scans: Vec<&Value> = item
            .get("children")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("field").and_then(Value::as_str) == Some("scans/scan"))
            .flat_map(|c| {
                c.get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .collect();
        let scanner = [s(f, "scanner/manufacturer"), s(f, "scanner/model")]
            .iter()
            .filter(|x| !x.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        let mut r = Record::new(&self.name, "xnat", "session", &id, &label);
        r.parent_id =
            (!subject_id.is_empty()).then(|| global_id(&self.name, "subject", &subject_id));
        r.project = Some(project.clone());
        r.subject_key = (!subject_label.is_empty()).then(|| subject_label.clone());
        r.url = Some(format!("{}/data/experiments/{id}?format=html", self.base));
        r.created_at = ts(&listed.insert_date);
        r.modified_at = ts(&listed.last_modified).or(r.created_at);
        let strength = s(f, "fieldStrength");
        r.description = Some(format!(
            "{modality} session of {subject_label} on {}{}{}, {} scans",
            if date.is_empty() {
                "an unknown date"
            } else {
                &date
            },
            if scanner.is_empty() {
                String::new()
            } else {
                format!(", {scanner}")
            },
            if strength.is_empty() {
                String::new()
            } else {
                format!(" {strength} T")
            },
            scans.len()
        ));
        r.attributes
            .insert("xsiType".into(), Value::from(xsi.clone()));
        let mut obs = vec![
            Observation::text("modality", modality.clone()).with_label("Modality"),
            Observation::text("xsiType", xsi).with_label("XNAT data type"),
        ];
        if let Some(d) = ts(&date) {
            obs.push(Observation::date("date", d, date.clone()).with_label("Session date"));
        }
        for (k, label) in [
            ("session_type", "Session type"),
            ("scanner", "Scanner station"),
            ("scanner/manufacturer", "Scanner manufacturer"),
            ("scanner/model", "Scanner model"),
            ("operator", "Operator"),
            ("acquisition_site", "Acquisition site"),
            ("tracer/name", "Tracer"),
        ] {
            let v = s(f, k);
            if !v.is_empty() {
                obs.push(Observation::text(k.replace('/', "_"), v).with_label(label));
            }
        }
        if let Ok(x) = strength.parse::<f64>() {
            let mut o = Observation::number("field_strength", x, strength.clone())
                .with_label("Field strength");
            o.unit = Some("T".into());
            obs.push(o);
        }
        if let Some(w) = f.get("dcmPatientWeight").and_then(Value::as_f64) {
            let mut o =
                Observation::number("weight", w, w.to_string()).with_label("Patient weight");
            o.unit = Some("kg".into());
            obs.push(o);
        }
        let observed = ts(&date);
        for o in &mut obs {
            o.event = Some(label.clone());
            o.observed_at = observed;
        }
        let mut out = vec![Entity {
            record: r,
            observations: obs,
        }];
        for scan in scans {
            let sf = scan
                .get("data_fields")
                .and_then(Value::as_object)
                .ok_or("a scan without data_fields")?;
            let scan_id = s(sf, "ID");
            if scan_id.is_empty() {
                return Err("a scan without ID".into());
            }
            let desc = s(sf, "series_description");
            let ty = s(sf, "type");
            let mut sr = Record::new(
                &self.name,
                "xnat",
                "scan",
                &format!("{id}/{scan_id}"),
                &format!(
                    "{label} scan {scan_id}: {}",
                    if desc.is_empty() { &ty } else { &desc }
                ),
            );
            sr.parent_id = Some(global_id(&self.name, "session", &id));
            sr.project = Some(project.clone());
            sr.subject_key = (!subject_label.is_empty()).then(|| subject_label.clone());
            sr.url = Some(format!(
                "{}/data/experiments/{id}/scans/{scan_id}?format=html",
                self.base
            ));
            sr.created_at = ts(&date);
            let mut so = Vec::new();
            for (k, l) in [
                ("type", "Scan type"),
                ("series_description", "Series description"),
                ("quality", "Quality"),
                ("note", "Note"),
            ] {
                let v = s(sf, k);
                if !v.is_empty() {
                    so.push(Observation::text(k, v).with_label(l));
                }
            }
            if let Some(n) = sf.get("frames").and_then(Value::as_f64) {
                so.push(Observation::number("frames", n, n.to_string()).with_label("Frames"));
            }
            for o in &mut so {
                o.event = Some(label.clone());
                o.observed_at = observed;
            }
            out.push(Entity {
                record: sr,
                observations: so,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Connector for XnatConnector {
    fn source(&self) -> &str {
        &self.name
    }

    fn system(&self) -> &'static str {
        "xnat"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { incremental: true }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        self.login().await?;
        let projects: Vec<String> = self.projects().await?.into_iter().map(|r| r.id).collect();
        Ok(CheckReport {
            summary: format!(
                "XNAT at {}: logged in as {:?}; projects {}",
                self.base,
                self.config.username,
                projects.join(", ")
            ),
        })
    }

    async fn sync(
        &self,
        request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError> {
        let previous: Option<State> = crossdex_http_client::resume(&request);
        let mode = if previous.is_some() {
            SyncMode::Incremental
        } else {
            SyncMode::Full
        };
        // A session from an earlier call is reused; `get` logs in again if it expired.
        self.session().await?;
        let project_rows = self.projects().await?;
        let full = previous.is_none();
        let mut prev = previous.unwrap_or_default();
        let mut state = State::default();
        let mut page = Page::default();
        // A handful of rows: sent on every sync, the store keeps unchanged ones as they are.
        page.upserts
            .extend(project_rows.iter().map(|r| self.project_entity(r)));
        let projects: Vec<String> = project_rows.into_iter().map(|r| r.id).collect();
        // Listings are read one project at a time and dropped once handed over, so only
        // one project's listing is in memory at once.
        let mut homes = Homes::new(&projects);
        for p in &projects {
            let rows = self
                .listing(&format!("/data/projects/{p}/subjects"), SUBJECT_COLUMNS)
                .await?;
            for row in rows.iter().filter(|r| homes.keep(p, r)) {
                raise(&mut state.subjects_modified, row);
                state.subjects.insert(row.id.clone());
                if full || newer(row, &prev.subjects_modified) {
                    page.upserts.push(self.subject_entity(row));
                    if page.upserts.len() >= SUBJECTS_PER_PAGE {
                        sink.page(std::mem::take(&mut page)).await?;
                    }
                }
            }
        }
        sink.page(std::mem::take(&mut page)).await?;

        let concurrency = self.http.settings().max_concurrency.max(1);
        let mut homes = Homes::new(&projects);
        for p in &projects {
            let rows = self
                .listing(&format!("/data/projects/{p}/experiments"), SESSION_COLUMNS)
                .await?;
            // Sessions to read: all on a full sync, new or changed ones otherwise.
            let mut to_read: Vec<&Row> = Vec::new();
            for row in rows.iter().filter(|r| homes.keep(p, r)) {
                raise(&mut state.sessions_modified, row);
                // An unchanged session keeps its scans; the others are read, and their
                // previous scans stay in `prev` until then.
                if !full
                    && !newer(row, &prev.sessions_modified)
                    && let Some(scans) = prev.sessions.remove(&row.id)
                {
                    state.sessions.insert(row.id.clone(), scans);
                } else {
                    to_read.push(row);
                }
            }
            for chunk in to_read.chunks(concurrency * 4) {
                let docs = futures::future::join_all(chunk.iter().map(|row| {
                    let path = format!("/data/experiments/{}?format=json", row.id);
                    async move { self.get::<Value>(&path).await }
                }))
                .await;
                // The HTTP client's permits bound how many of these are in flight.
                for (row, doc) in chunk.iter().zip(docs) {
                    match self.session_entities(row, &doc?) {
                        Ok(entities) => {
                            let scans: Vec<String> = entities[1..]
                                .iter()
                                .map(|e| e.record.native_id.clone())
                                .collect();
                            if let Some(old) = prev.sessions.remove(&row.id) {
                                for gone in old.iter().filter(|o| !scans.contains(o)) {
                                    page.deletions.push(global_id(&self.name, "scan", gone));
                                }
                            }
                            state.sessions.insert(row.id.clone(), scans);
                            page.upserts.extend(entities);
                        }
                        Err(reason) => page.rejected.push(crossdex_model::Rejection {
                            native_id: Some(row.id.clone()),
                            reason: format!("session document: {reason}"),
                        }),
                    }
                }
                if page.upserts.len() >= PAGE {
                    sink.page(std::mem::take(&mut page)).await?;
                }
            }
        }
        if !full {
            // What the listings no longer hold (or could not be read) is gone.
            for (id, scans) in &prev.sessions {
                page.deletions.push(global_id(&self.name, "session", id));
                page.deletions
                    .extend(scans.iter().map(|sc| global_id(&self.name, "scan", sc)));
            }
            for id in prev.subjects.difference(&state.subjects) {
                page.deletions.push(global_id(&self.name, "subject", id));
            }
        }
        if !page.is_empty() {
            sink.page(page).await?;
        }
        Ok(SyncOutcome {
            mode,
            checkpoint: Checkpoint::of(&state).ok(),
        })
    }
}

/// The decoding of XNAT's answers without a server, for the fuzz targets of `fuzz/`:
/// whatever the bytes, it returns.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    fn connector() -> Option<&'static XnatConnector> {
        static CONNECTOR: std::sync::OnceLock<Option<XnatConnector>> = std::sync::OnceLock::new();
        CONNECTOR
            .get_or_init(|| {
                let config = serde_json::from_value::<XnatConfig>(
                    serde_json::json!({"url": "http://127.0.0.1:9", "username": "u"}),
                )
                .ok()?;
                Some(XnatConnector {
                    name: "xnat".into(),
                    base: "http://127.0.0.1:9".into(),
                    password: "p".into(),
                    config,
                    http: HttpClient::for_source("xnat", 1, 0, 1).ok()?,
                    session: Mutex::new(None),
                })
            })
            .as_ref()
    }

    /// Reads `data` as a listing and as a session document, as a sync does.
    pub fn decode(data: &[u8]) {
        let Some(xnat) = connector() else {
            return;
        };
        if let Ok(listing) = serde_json::from_slice::<Listing>(data) {
            for row in &listing.result_set.result {
                let _ = xnat.subject_entity(row);
            }
        }
        if let Ok(doc) = serde_json::from_slice::<Value>(data) {
            let _ = xnat.session_entities(&Row::default(), &doc);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(id: &str, project: &str) -> Row {
        Row {
            id: id.into(),
            project: project.into(),
            ..Row::default()
        }
    }

    #[test]
    fn shared_rows_are_kept_once_under_their_owner() {
        let projects = ["PETAMY".to_owned(), "MEMCLIN".to_owned()];
        let mut homes = Homes::new(&projects);
        let listed = [
            ("PETAMY", row("S1", "MEMCLIN")),
            ("PETAMY", row("S3", "OTHER")),
            ("MEMCLIN", row("S1", "MEMCLIN")),
            ("MEMCLIN", row("S2", "MEMCLIN")),
            ("MEMCLIN", row("S3", "OTHER")),
        ];
        let ids: Vec<&str> = listed
            .iter()
            .filter(|(p, r)| homes.keep(p, r))
            .map(|(_, r)| r.id.as_str())
            .collect();
        assert_eq!(ids, ["S3", "S1", "S2"]);
        assert!(ts("2018-05-14 15:17:57.815").is_some() && ts("2020-12-17").is_some());
    }

    #[test]
    fn listing_cells_of_any_json_type_read_as_text() {
        let l: Listing = serde_json::from_value(json!({"ResultSet": {"Result": [
            {"ID": "S1", "yob": 1950, "gender": null, "label": "INT_0001"}
        ]}}))
        .expect("listing");
        let r = &l.result_set.result[0];
        assert_eq!(
            (r.id.as_str(), r.yob.as_str(), r.gender.as_str()),
            ("S1", "1950", "")
        );
    }
}
