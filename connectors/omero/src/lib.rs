//! The OMERO connector: projects, datasets and images of an OMERO server, through the
//! OMERO.web JSON API, with the images' map annotations.
//!
//! It logs in with the CSRF token and keeps the session cookie (logging in again when
//! the session is refused), pages lists with `limit`/`offset` within the server's
//! `maxLimit`, reads map annotations from the web client's endpoint (`page`/`limit`),
//! and reads an image's full form (with its channels) only when its listing or its
//! annotations changed. OMERO gives no modification times: changes are found by a
//! content hash per object kept in the checkpoint, deletions by comparing key sets.
//!
//! It must not reach the store or any other system; it speaks HTTP through
//! `crossdex-http-client` only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use crossdex_http_client::{
    Answer, HttpClient, HttpError, at_least_one, decode_json, parse_url, secret, source_config,
};
use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, Connector, ConnectorError, ConnectorFactory, Entity,
    Observation, Page, PageSink, Record, Rejection, SourceContext, SyncMode, SyncOutcome,
    SyncRequest, global_id,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[sources.<name>]` of `type = "omero"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmeroConfig {
    /// OMERO.web's root URL, e.g. `https://omero.example.org`.
    pub url: String,
    pub username: String,
    /// Prefer `password_file` or the environment.
    pub password: Option<String>,
    /// A file whose first line is the password (relative to the config file).
    pub password_file: Option<PathBuf>,
    /// The OMERO server id, from `/api/v0/servers/` [default 1].
    #[serde(default = "default_server")]
    pub server: u32,
    /// Objects per list request, capped by the server's `maxLimit` [default 200].
    #[serde(default = "default_page")]
    pub page_size: usize,
    /// Map-annotation keys naming the subject an image is about, first match wins.
    #[serde(default = "default_subject_keys")]
    pub subject_keys: Vec<String>,
    #[serde(default = "crossdex_http_client::default_timeout_s")]
    pub timeout_s: u64,
    #[serde(default = "crossdex_http_client::default_retries")]
    pub retries: usize,
    #[serde(default = "crossdex_http_client::default_max_concurrency")]
    pub max_concurrency: usize,
}

fn default_server() -> u32 {
    1
}
fn default_page() -> usize {
    200
}
fn default_subject_keys() -> Vec<String> {
    ["Subject", "Subject ID", "Patient", "Donor"]
        .map(String::from)
        .to_vec()
}

/// Builds `omero` connectors.
#[derive(Debug, Default)]
pub struct OmeroFactory;

impl ConnectorFactory for OmeroFactory {
    fn system(&self) -> &'static str {
        "omero"
    }

    fn example_config(&self) -> &'static str {
        r#"# An OMERO server, through OMERO.web's JSON API.
[sources.microscopy]
type = "omero"
url = "https://omero.example.org"
username = "crossdex"
# A file holding the password, or CROSSDEX__SOURCES__MICROSCOPY__PASSWORD.
password_file = "secrets/omero.password"
# Map-annotation keys that name the subject of an image.
# subject_keys = ["Subject", "Subject ID", "Patient", "Donor"]
"#
    }

    fn build(&self, context: SourceContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let config: OmeroConfig = source_config(&context.config)?;
        let url = parse_url("url", config.url.trim_end_matches('/'))?;
        at_least_one("page_size", config.page_size)?;
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
        Ok(Box::new(OmeroConnector {
            name: context.name,
            base: url.as_str().trim_end_matches('/').to_owned(),
            password,
            config,
            http,
            cookies: Mutex::new(None),
        }))
    }
}

pub struct OmeroConnector {
    name: String,
    base: String,
    password: String,
    config: OmeroConfig,
    http: HttpClient,
    /// `csrftoken=...; sessionid=...` once logged in.
    cookies: Mutex<Option<String>>,
}

/// Content hashes of what was indexed, by global id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    hashes: BTreeMap<String, String>,
}

/// The pseudo-key under which tags travel with the map-annotation pairs.
const TAG: &str = "\u{0}tag";

fn cookie_of(a: &Answer, name: &str) -> Option<String> {
    a.headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn hash(parts: &[&Value]) -> String {
    let mut text = String::new();
    for p in parts {
        text.push_str(&p.to_string());
        text.push('\u{1}');
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

fn s(m: &Value, k: &str) -> String {
    match m.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn id_of(v: &Value) -> Option<i64> {
    v.get("@id").and_then(Value::as_i64)
}

/// A length object (`{"Value": 0.25, "Symbol": "µm", ...}`) as a number and its unit.
fn length(v: Option<&Value>) -> Option<(f64, String)> {
    let v = v?;
    let x = v.get("Value")?.as_f64()?;
    let unit = v
        .get("Symbol")
        .and_then(Value::as_str)
        .or_else(|| v.get("Unit").and_then(Value::as_str))
        .unwrap_or("")
        .to_owned();
    Some((x, unit))
}

impl OmeroConnector {
    async fn login(&self) -> Result<String, ConnectorError> {
        let token_url = format!("{}/api/v0/token/", self.base);
        let (a, csrf) = self
            .http
            .send_with(
                |c| c.get(&token_url),
                |a| decode_json::<Value>(&a).map(|v| (a, v)),
            )
            .await?;
        let token = csrf
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ConnectorError::Protocol(format!("{token_url}: no CSRF token in the answer"))
            })?
            .to_owned();
        let csrf_cookie =
            cookie_of(&a, "csrftoken").unwrap_or_else(|| format!("csrftoken={token}"));
        let login_url = format!("{}/api/v0/login/", self.base);
        let server = self.config.server.to_string();
        let a = self
            .http
            .send(|c| {
                c.post(&login_url)
                    .header("Cookie", &csrf_cookie)
                    .header("X-CSRFToken", &token)
                    .header("Referer", format!("{}/", self.base))
                    .form(&[
                        ("server", server.as_str()),
                        ("username", self.config.username.as_str()),
                        ("password", self.password.as_str()),
                        ("csrfmiddlewaretoken", token.as_str()),
                    ])
            })
            .await
            .map_err(|e| match e.status() {
                Some(401 | 403) => ConnectorError::Auth(format!(
                    "OMERO at {} refused the login of {:?}",
                    self.base, self.config.username
                )),
                _ => e.into_connector(),
            })?;
        let session = cookie_of(&a, "sessionid").ok_or_else(|| {
            ConnectorError::Protocol(format!("{login_url}: no session cookie after login"))
        })?;
        let cookies = format!("{csrf_cookie}; {session}");
        *self.cookies.lock().unwrap_or_else(|e| e.into_inner()) = Some(cookies.clone());
        Ok(cookies)
    }

    async fn get(&self, path: &str) -> Result<Value, ConnectorError> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            let current = self
                .cookies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let cookies = match current {
                Some(c) => c,
                None => self.login().await?,
            };
            // An expired session: 403 from the JSON API, a redirect to the login page
            // from the web client (`None`); anything else is JSON, a body cut off in
            // the middle retried.
            let r = self
                .http
                .send_with(
                    |c| c.get(&url).header("Cookie", &cookies),
                    |a| {
                        if a.status.is_redirection()
                            || (a.body.first() == Some(&b'<') && attempt == 0)
                        {
                            Ok(None)
                        } else {
                            decode_json::<Value>(&a).map(Some)
                        }
                    },
                )
                .await;
            match r {
                Err(HttpError::Status { status: 403, .. }) if attempt == 0 => {}
                Ok(None) => {}
                Ok(Some(v)) => return Ok(v),
                Err(e) => return Err(e.into()),
            }
            *self.cookies.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Err(ConnectorError::Auth(format!(
            "OMERO at {} keeps refusing the session of {:?}",
            self.base, self.config.username
        )))
    }

    /// Every object of a `{data, meta}` list, paged within the server's `maxLimit`.
    async fn list(&self, path: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut limit = self.config.page_size;
        loop {
            let (data, more) = self.list_page(path, out.len(), &mut limit).await?;
            out.extend(data);
            if !more {
                return Ok(out);
            }
        }
    }

    /// The objects of a `{data, meta}` list from `offset` on, and whether more follow.
    /// `limit` shrinks to the server's `maxLimit` when the answer announces one.
    async fn list_page(
        &self,
        path: &str,
        offset: usize,
        limit: &mut usize,
    ) -> Result<(Vec<Value>, bool), ConnectorError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut v = self
            .get(&format!("{path}{sep}limit={limit}&offset={offset}"))
            .await?;
        let meta = v.get("meta");
        if let Some(max) = meta.and_then(|m| m.get("maxLimit")).and_then(Value::as_u64) {
            *limit = (*limit).min(max as usize).max(1);
        }
        let total = meta
            .and_then(|m| m.get("totalCount"))
            .and_then(Value::as_u64);
        let Some(Value::Array(data)) = v.get_mut("data").map(Value::take) else {
            return Err(ConnectorError::Protocol(format!(
                "{}{path}: no data list in the answer",
                self.base
            )));
        };
        let n = data.len();
        let more = match total {
            Some(t) => ((offset + n) as u64) < t,
            None => n >= *limit,
        };
        Ok((data, more && n > 0))
    }

    /// Map annotations (key order and repeats kept) and tags (as `TAG` pairs) of these
    /// images, by image id.
    async fn annotations(
        &self,
        images: &[i64],
    ) -> Result<BTreeMap<i64, Vec<(String, String)>>, ConnectorError> {
        let mut out: BTreeMap<i64, Vec<(String, String)>> = BTreeMap::new();
        for chunk in images.chunks(100) {
            let ids: String = chunk.iter().map(|i| format!("&image={i}")).collect();
            let limit = 500;
            let mut page = 1;
            loop {
                let v = self
                    .get(&format!(
                        "/webclient/api/annotations/?{}&page={page}&limit={limit}",
                        &ids[1..]
                    ))
                    .await?;
                let anns = v
                    .get("annotations")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        ConnectorError::Protocol(format!(
                            "{}/webclient/api/annotations/: no annotations list",
                            self.base
                        ))
                    })?;
                for a in anns {
                    let parent = a.pointer("/link/parent/id").and_then(Value::as_i64);
                    let class = a
                        .pointer("/link/parent/class")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let (Some(pid), true) = (parent, class == "ImageI") else {
                        continue;
                    };
                    if a.get("class").and_then(Value::as_str) == Some("TagAnnotationI") {
                        if let Some(t) = a.get("textValue").and_then(Value::as_str) {
                            out.entry(pid)
                                .or_default()
                                .push((TAG.to_owned(), t.to_owned()));
                        }
                        continue;
                    }
                    let pairs = a
                        .get("values")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten();
                    for pair in pairs {
                        if let (Some(k), Some(v)) = (
                            pair.get(0).and_then(Value::as_str),
                            pair.get(1).and_then(Value::as_str),
                        ) {
                            out.entry(pid)
                                .or_default()
                                .push((k.to_owned(), v.to_owned()));
                        }
                    }
                }
                if anns.len() < limit {
                    break;
                }
                page += 1;
            }
        }
        Ok(out)
    }

    fn container(&self, kind: &str, v: &Value, parent: Option<String>) -> Entity {
        let id = id_of(v).unwrap_or_default();
        let name = s(v, "Name");
        let mut r = Record::new(&self.name, "omero", kind, &id.to_string(), &name);
        let desc = s(v, "Description");
        r.description = (!desc.is_empty()).then_some(desc);
        r.parent_id = parent;
        r.url = Some(format!("{}/webclient/?show={kind}-{id}", self.base));
        Entity {
            record: r,
            observations: Vec::new(),
        }
    }

    fn image(
        &self,
        v: &Value,
        dataset: &Entity,
        project: Option<&str>,
        ann: &[(String, String)],
    ) -> Result<Entity, String> {
        let id = id_of(v).ok_or("an image without @id")?;
        let name = s(v, "Name");
        let mut r = Record::new(&self.name, "omero", "image", &id.to_string(), &name);
        r.parent_id = Some(dataset.record.id.clone());
        r.project = project.map(str::to_owned);
        r.url = Some(format!("{}/webclient/?show=image-{id}", self.base));
        let desc = s(v, "Description");
        let acquired = v.get("AcquisitionDate").and_then(Value::as_i64);
        let acquired_at = acquired.and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        r.created_at = acquired_at;
        let mut obs = Vec::new();
        if let Some(t) = acquired_at {
            obs.push(
                Observation::date("acquisition_date", t, t.to_rfc3339())
                    .with_label("Acquisition date"),
            );
        }
        let px = v.get("Pixels").cloned().unwrap_or(Value::Null);
        for dim in ["SizeX", "SizeY", "SizeZ", "SizeC", "SizeT"] {
            if let Some(n) = px.get(dim).and_then(Value::as_f64) {
                obs.push(
                    Observation::number(
                        dim.to_lowercase().replace("size", "size_"),
                        n,
                        n.to_string(),
                    )
                    .with_label(dim),
                );
            }
        }
        for (k, var) in [
            ("PhysicalSizeX", "pixel_size_x"),
            ("PhysicalSizeY", "pixel_size_y"),
            ("PhysicalSizeZ", "pixel_size_z"),
        ] {
            if let Some((x, unit)) = length(px.get(k)) {
                let mut o = Observation::number(var, x, x.to_string()).with_label(k);
                o.unit = (!unit.is_empty()).then_some(unit);
                obs.push(o);
            }
        }
        if let Some(t) = px.pointer("/Type/value").and_then(Value::as_str) {
            obs.push(Observation::text("pixel_type", t).with_label("Pixel type"));
        }
        let channels: Vec<String> = px
            .get("Channels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| s(c, "Name"))
            .filter(|n| !n.is_empty())
            .collect();
        for c in &channels {
            obs.push(Observation::text("channel", c.clone()).with_label("Channel"));
        }
        if let Some(i) = v
            .pointer("/Instrument/Microscope/Model")
            .and_then(Value::as_str)
        {
            obs.push(Observation::text("instrument", i).with_label("Microscope"));
        }
        for (k, val) in ann {
            if k == TAG {
                obs.push(Observation::text("tag", val.clone()).with_label("Tag"));
                continue;
            }
            if r.subject_key.is_none() && self.config.subject_keys.iter().any(|sk| sk == k) {
                r.subject_key = Some(val.clone());
            }
            obs.push(
                Observation::text(k.clone(), val.clone())
                    .with_label(format!("Map annotation: {k}")),
            );
        }
        let mut text = Vec::new();
        if !desc.is_empty() {
            text.push(desc);
        }
        if !channels.is_empty() {
            text.push(format!("Channels: {}", channels.join(", ")));
        }
        if !ann.is_empty() {
            text.push(
                ann.iter()
                    .map(|(k, v)| {
                        if k == TAG {
                            format!("tag: {v}")
                        } else {
                            format!("{k}: {v}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        r.description = (!text.is_empty()).then(|| text.join("\n"));
        r.attributes
            .insert("dataset".into(), Value::from(dataset.record.title.clone()));
        Ok(Entity {
            record: r,
            observations: obs,
        })
    }
}

#[async_trait]
impl Connector for OmeroConnector {
    fn source(&self) -> &str {
        &self.name
    }

    fn system(&self) -> &'static str {
        "omero"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { incremental: true }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        self.login().await?;
        let v = self.get("/api/v0/m/projects/?limit=1").await?;
        let n = v
            .pointer("/meta/totalCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(CheckReport {
            summary: format!(
                "OMERO at {}: logged in as {:?}; {n} projects",
                self.base, self.config.username
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
        let prev = previous.unwrap_or_default();
        let mut state = State::default();
        let mut page = Page::default();
        let changed = |state: &mut State, gid: &str, h: String| -> bool {
            let differs = prev.hashes.get(gid) != Some(&h);
            state.hashes.insert(gid.to_owned(), h);
            differs || mode == SyncMode::Full
        };

        let projects = self.list("/api/v0/m/projects/").await?;
        let mut seen_images: BTreeSet<i64> = BTreeSet::new();
        for p in &projects {
            let project = self.container("project", p, None);
            let project_name = project.record.title.clone();
            if changed(&mut state, &project.record.id, hash(&[p])) {
                page.upserts.push(project.clone());
            }
            let pid = id_of(p).unwrap_or_default();
            let datasets = self
                .list(&format!("/api/v0/m/projects/{pid}/datasets/"))
                .await?;
            for d in &datasets {
                let mut dataset = self.container("dataset", d, Some(project.record.id.clone()));
                dataset.record.project = Some(project_name.clone());
                let dataset_gid = dataset.record.id.clone();
                if state.hashes.contains_key(&dataset_gid) {
                    continue; // in two projects: kept under the first
                }
                if changed(
                    &mut state,
                    &dataset_gid,
                    hash(&[d, &Value::from(project_name.clone())]),
                ) {
                    page.upserts.push(dataset.clone());
                }
                let did = id_of(d).unwrap_or_default();
                // Images are handled one listing page at a time, so a dataset of any
                // size holds only a page of listings and annotations in memory.
                let path = format!("/api/v0/m/datasets/{did}/images/");
                let mut offset = 0;
                let mut limit = self.config.page_size;
                loop {
                    let (listed, more) = self.list_page(&path, offset, &mut limit).await?;
                    offset += listed.len();
                    let images: Vec<Value> = listed
                        .into_iter()
                        .filter(|i| id_of(i).is_some_and(|id| seen_images.insert(id)))
                        .collect();
                    let ids: Vec<i64> = images.iter().filter_map(id_of).collect();
                    let mut anns = self.annotations(&ids).await?;
                    // Only images whose listing or annotations changed are read in full.
                    let mut to_read = Vec::new();
                    for img in &images {
                        let id = id_of(img).unwrap_or_default();
                        let ann = anns.remove(&id).unwrap_or_default();
                        let ann_json = Value::from(
                            ann.iter()
                                .map(|(k, v)| Value::from(vec![k.clone(), v.clone()]))
                                .collect::<Vec<_>>(),
                        );
                        let gid = global_id(&self.name, "image", &id.to_string());
                        if changed(
                            &mut state,
                            &gid,
                            hash(&[img, &ann_json, &Value::from(dataset_gid.clone())]),
                        ) {
                            to_read.push((id, ann));
                        }
                    }
                    let concurrency = self.http.settings().max_concurrency.max(1);
                    for chunk in to_read.chunks(concurrency * 4) {
                        let docs = futures::future::join_all(
                            chunk.iter().map(|(id, _)| self.get_image(*id)),
                        )
                        .await;
                        for ((id, ann), doc) in chunk.iter().zip(docs) {
                            let doc = doc?;
                            let data = doc.get("data").cloned().unwrap_or(Value::Null);
                            match self.image(&data, &dataset, Some(&project_name), ann) {
                                Ok(e) => page.upserts.push(e),
                                Err(reason) => page.rejected.push(Rejection {
                                    native_id: Some(id.to_string()),
                                    reason: format!("image {id}: {reason}"),
                                }),
                            }
                        }
                        if page.upserts.len() >= 200 {
                            sink.page(std::mem::take(&mut page)).await?;
                        }
                    }
                    if !more {
                        break;
                    }
                }
            }
        }
        if mode == SyncMode::Incremental {
            page.deletions = prev
                .hashes
                .keys()
                .filter(|gid| !state.hashes.contains_key(*gid))
                .cloned()
                .collect();
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

impl OmeroConnector {
    async fn get_image(&self, id: i64) -> Result<Value, ConnectorError> {
        self.get(&format!("/api/v0/m/images/{id}/")).await
    }
}

/// The decoding of OMERO's answers without a server, for the fuzz targets of `fuzz/`:
/// whatever the bytes, it returns.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    fn connector() -> Option<&'static OmeroConnector> {
        static CONNECTOR: std::sync::OnceLock<Option<OmeroConnector>> = std::sync::OnceLock::new();
        CONNECTOR
            .get_or_init(|| {
                let config = serde_json::from_value::<OmeroConfig>(
                    serde_json::json!({"url": "http://127.0.0.1:9", "username": "u"}),
                )
                .ok()?;
                Some(OmeroConnector {
                    name: "omero".into(),
                    base: "http://127.0.0.1:9".into(),
                    password: "p".into(),
                    config,
                    http: HttpClient::for_source("omero", 1, 0, 1).ok()?,
                    cookies: Mutex::new(None),
                })
            })
            .as_ref()
    }

    /// Reads `data` as a listing (`data` array) of containers and images, as a sync does.
    pub fn decode(data: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        let Some(omero) = connector() else {
            return;
        };
        let dataset = omero.container("dataset", &doc, None);
        let ann = [
            ("Subject".to_owned(), "INT_0001".to_owned()),
            (TAG.to_owned(), "stain".to_owned()),
        ];
        let items = doc.get("data").and_then(Value::as_array);
        for v in items.into_iter().flatten().chain([&doc]) {
            let _ = omero.image(v, &dataset, Some("P"), &ann);
            let _ = length(v.get("PhysicalSizeX"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn units_and_hashes() {
        let v =
            json!({"@type": "TBD#LengthI", "Symbol": "µm", "Unit": "MICROMETER", "Value": 0.25});
        assert_eq!(length(Some(&v)), Some((0.25, "µm".to_owned())));
        assert_eq!(hash(&[&json!({"a": 1})]), hash(&[&json!({"a": 1})]));
        assert_ne!(hash(&[&json!({"a": 1})]), hash(&[&json!({"a": 2})]));
    }
}
