//! The OMERO JSON API (`/api/v0/`) and the web client's map-annotation endpoint.
//!
//! Reproduced from `reference/omero/`: discovery with absolute `url:*` links built from
//! the request host; the CSRF token, then a form login setting Django's `sessionid`
//! cookie; `{"data": [...], "meta": {offset, limit, maxLimit, totalCount}}` lists
//! paged by `limit`/`offset` (default 200, at most 500); single objects as
//! `{"data": {...}}`; null fields omitted; units as objects; acquisition dates in epoch
//! milliseconds; map annotations paged by `page`/`limit`, with repeated keys.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::server::{SimState, base_url, cookie, finish, json_response, query_pairs};
use crate::world::{OmeroDataset, OmeroImage, OmeroProject, World};

const SCHEMA: &str = "http://www.openmicroscopy.org/Schemas/OME/2016-06";
const DEFAULT_LIMIT: usize = 200;
const MAX_LIMIT: usize = 500;

pub(crate) fn router(st: Arc<SimState>) -> Router {
    let r = Router::new()
        .route("/api/", get(versions))
        .route("/api/v0/", get(base))
        .route("/api/v0/servers/", get(servers))
        .route("/api/v0/token/", get(token))
        .route("/api/v0/login/", post(login))
        .route("/api/v0/m/projects/", get(projects))
        .route("/api/v0/m/projects/{id}/", get(project))
        .route("/api/v0/m/projects/{id}/datasets/", get(project_datasets))
        .route("/api/v0/m/datasets/", get(datasets))
        .route("/api/v0/m/datasets/{id}/", get(dataset))
        .route("/api/v0/m/datasets/{id}/images/", get(dataset_images))
        .route("/api/v0/m/images/", get(images))
        .route("/api/v0/m/images/{id}/", get(image))
        .route("/webclient/api/annotations/", get(annotations))
        .route("/webclient/login/", get(login_page));
    finish(r, st)
}

fn ok(body: Value) -> Response {
    let mut r = json_response(StatusCode::OK, "application/json", &body);
    r.headers_mut()
        .insert("X-OMERO-ApiVersion", HeaderValue::from_static("0.2"));
    r
}

fn message(status: StatusCode, msg: &str) -> Response {
    json_response(status, "application/json", &json!({ "message": msg }))
}

fn logged_in(st: &SimState, headers: &HeaderMap) -> bool {
    cookie(headers, "sessionid").is_some_and(|id| {
        st.sessions()
            .get(&id)
            .is_some_and(|m| m.starts_with("session"))
    })
}

async fn versions(headers: HeaderMap) -> Response {
    let b = base_url(&headers);
    ok(json!({"data": [{"version": "0", "url:base": format!("{b}/api/v0/")}]}))
}

async fn base(headers: HeaderMap) -> Response {
    let b = format!("{}/api/v0", base_url(&headers));
    ok(json!({
        "url:experimentergroups": format!("{b}/m/experimentergroups/"),
        "url:experimenters": format!("{b}/m/experimenters/"),
        "url:images": format!("{b}/m/images/"),
        "url:login": format!("{b}/login/"),
        "url:datasets": format!("{b}/m/datasets/"),
        "url:plates": format!("{b}/m/plates/"),
        "url:projects": format!("{b}/m/projects/"),
        "url:rois": format!("{b}/m/rois/"),
        "url:save": format!("{b}/m/save/"),
        "url:schema": SCHEMA,
        "url:screens": format!("{b}/m/screens/"),
        "url:servers": format!("{b}/servers/"),
        "url:token": format!("{b}/token/"),
    }))
}

async fn servers() -> Response {
    ok(json!({"data": [{"host": "localhost", "server": "omero", "id": 1, "port": 4064}]}))
}

async fn token(State(st): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    // Django reuses the CSRF cookie the client already holds.
    let existing =
        cookie(&headers, "csrftoken").filter(|t| st.sessions().get(t).is_some_and(|m| m == "csrf"));
    let csrf = existing.unwrap_or_else(|| st.sessions().issue(st.seed(), st.system, "csrf"));
    let mut r = ok(json!({ "data": csrf }));
    if let Ok(v) = HeaderValue::from_str(&format!("csrftoken={csrf}; Path=/; SameSite=Lax")) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn login(State(st): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let cookie_token = cookie(&headers, "csrftoken");
    let sent = headers
        .get("X-CSRFToken")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| field("csrfmiddlewaretoken"));
    let csrf_ok = match (&cookie_token, &sent) {
        (Some(c), Some(s)) => c == s && st.sessions().get(c).is_some_and(|m| m == "csrf"),
        _ => false,
    };
    if !csrf_ok {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body><h1>Forbidden (403)</h1><p>CSRF verification failed. Request aborted.</p></body></html>\n",
        )
            .into_response();
    }
    if field("server").as_deref() != Some("1") {
        return message(
            StatusCode::FORBIDDEN,
            "Server ID not found: use an id from /api/v0/servers/",
        );
    }
    let (user, pass) = (
        field("username").unwrap_or_default(),
        field("password").unwrap_or_default(),
    );
    if user != st.credentials.username || pass != st.credentials.password {
        return message(
            StatusCode::FORBIDDEN,
            "Connection not available, please check your user name and password.",
        );
    }
    let session = st.sessions().issue(st.seed(), st.system, "session");
    let mut r = ok(json!({
        "success": true,
        "eventContext": {
            "userName": user,
            "eventId": -1,
            "sessionUuid": session.to_lowercase(),
            "eventType": "User",
            "userId": 2,
            "sessionId": 4711,
            "groupName": "Neuropathology",
            "isAdmin": false,
            "memberOfGroups": [3, 1],
            "leaderOfGroups": [],
            "groupId": 3,
        },
    }));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "sessionid={session}; HttpOnly; Path=/; SameSite=Lax"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn login_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><body><form method=\"post\">OMERO.web login</form></body></html>\n",
    )
        .into_response()
}

fn permissions(perm: &str, owner_rights: bool) -> Value {
    json!({
        "@type": "TBD#Permissions",
        "canAnnotate": true,
        "canDelete": owner_rights,
        "canEdit": owner_rights,
        "canLink": true,
        "isGroupAnnotate": false,
        "isGroupRead": perm.as_bytes().get(2) == Some(&b'r'),
        "isGroupWrite": false,
        "isUserRead": true,
        "isUserWrite": true,
        "isWorldRead": false,
        "isWorldWrite": false,
        "perm": perm,
    })
}

fn details() -> Value {
    json!({
        "@type": "TBD#Details",
        "group": {
            "@id": 3,
            "@type": format!("{SCHEMA}#ExperimenterGroup"),
            "Name": "Neuropathology",
            "omero:details": {"@type": "TBD#Details", "permissions": permissions("rwr---", false)},
        },
        "owner": {
            "@id": 2,
            "@type": format!("{SCHEMA}#Experimenter"),
            "Email": "",
            "FirstName": "Research",
            "Institution": "",
            "LastName": "Imaging",
            "MiddleName": "",
            "UserName": "crossdex",
            "omero:details": {"@type": "TBD#Details", "permissions": permissions("rwr---", false)},
        },
        "permissions": permissions("rwr---", true),
    })
}

struct Paging {
    offset: usize,
    limit: usize,
}

fn paging(uri: &Uri) -> Result<Paging, Response> {
    let q = query_pairs(uri.query());
    let int = |name: &str, default: usize| -> Result<usize, Response> {
        match q.iter().find(|(k, _)| k == name) {
            None => Ok(default),
            Some((_, v)) => v.parse::<usize>().map_err(|_| {
                message(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid literal for int() with base 10: '{v}'"),
                )
            }),
        }
    };
    Ok(Paging {
        offset: int("offset", 0)?,
        limit: int("limit", DEFAULT_LIMIT)?.min(MAX_LIMIT),
    })
}

fn param_i64(uri: &Uri, name: &str) -> Result<Option<i64>, Response> {
    match query_pairs(uri.query())
        .into_iter()
        .find(|(k, _)| k == name)
    {
        None => Ok(None),
        Some((_, v)) => v.parse().map(Some).map_err(|_| {
            message(
                StatusCode::BAD_REQUEST,
                &format!("invalid literal for int() with base 10: '{v}'"),
            )
        }),
    }
}

fn flag(uri: &Uri, name: &str) -> bool {
    query_pairs(uri.query())
        .iter()
        .any(|(k, v)| k == name && v == "true")
}

fn list(items: Vec<Value>, p: &Paging) -> Response {
    let total = items.len();
    let data: Vec<Value> = items.into_iter().skip(p.offset).take(p.limit).collect();
    ok(json!({
        "data": data,
        "meta": {"offset": p.offset, "limit": p.limit, "maxLimit": MAX_LIMIT, "totalCount": total},
    }))
}

fn project_json(w: &World, p: &OmeroProject, b: &str, in_list: bool, child_count: bool) -> Value {
    let mut m = Map::new();
    m.insert("@id".into(), json!(p.id));
    m.insert("@type".into(), json!(format!("{SCHEMA}#Project")));
    m.insert("Name".into(), json!(p.name));
    if let Some(d) = p.description {
        m.insert("Description".into(), json!(d));
    }
    m.insert("omero:details".into(), details());
    if child_count {
        let n = p
            .datasets
            .iter()
            .filter(|d| w.omero.datasets.iter().any(|x| x.id == **d))
            .count();
        m.insert("omero:childCount".into(), json!(n));
    }
    if in_list {
        m.insert(
            "url:project".into(),
            json!(format!("{b}/api/v0/m/projects/{}/", p.id)),
        );
    }
    m.insert(
        "url:datasets".into(),
        json!(format!("{b}/api/v0/m/projects/{}/datasets/", p.id)),
    );
    Value::Object(m)
}

fn dataset_json(d: &OmeroDataset, b: &str, in_list: bool, child_count: bool) -> Value {
    let mut m = Map::new();
    m.insert("@id".into(), json!(d.id));
    m.insert("@type".into(), json!(format!("{SCHEMA}#Dataset")));
    m.insert("Name".into(), json!(d.name));
    if let Some(desc) = &d.description {
        m.insert("Description".into(), json!(desc));
    }
    m.insert("omero:details".into(), details());
    if child_count {
        m.insert("omero:childCount".into(), json!(d.images.len()));
    }
    if in_list {
        m.insert(
            "url:dataset".into(),
            json!(format!("{b}/api/v0/m/datasets/{}/", d.id)),
        );
    }
    m.insert(
        "url:images".into(),
        json!(format!("{b}/api/v0/m/datasets/{}/images/", d.id)),
    );
    m.insert(
        "url:projects".into(),
        json!(format!("{b}/api/v0/m/datasets/{}/projects/", d.id)),
    );
    Value::Object(m)
}

fn length(v: f64, unit: &str, symbol: &str) -> Value {
    json!({"@type": "TBD#LengthI", "Symbol": symbol, "Unit": unit, "Value": v})
}

fn image_json(img: &OmeroImage, b: &str, single: bool) -> Value {
    let mut px = Map::new();
    px.insert("@id".into(), json!(img.id));
    px.insert("@type".into(), json!(format!("{SCHEMA}#Pixels")));
    if single {
        let channels: Vec<Value> = img
            .channels
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("@id".into(), json!(c.id));
                m.insert("@type".into(), json!(format!("{SCHEMA}#Channel")));
                m.insert("Color".into(), json!(c.color));
                if let Some(ex) = c.excitation {
                    m.insert("ExcitationWavelength".into(), length(ex, "NANOMETER", "nm"));
                }
                if let Some(em) = c.emission {
                    m.insert("EmissionWavelength".into(), length(em, "NANOMETER", "nm"));
                }
                m.insert("Name".into(), json!(c.name));
                m.insert("SamplesPerPixel".into(), json!(1));
                m.insert("omero:LogicalChannelId".into(), json!(c.id + 100_000));
                m.insert("omero:details".into(), details());
                Value::Object(m)
            })
            .collect();
        px.insert("Channels".into(), Value::Array(channels));
    }
    if let Some(s) = img.physical_size_xy {
        px.insert("PhysicalSizeX".into(), length(s, "MICROMETER", "µm"));
        px.insert("PhysicalSizeY".into(), length(s, "MICROMETER", "µm"));
    }
    if let Some(z) = img.physical_size_z {
        px.insert("PhysicalSizeZ".into(), length(z, "MICROMETER", "µm"));
    }
    px.insert("SignificantBits".into(), json!(img.significant_bits));
    for (k, v) in ["SizeX", "SizeY", "SizeZ", "SizeC", "SizeT"]
        .iter()
        .zip(img.size)
    {
        px.insert((*k).into(), json!(v));
    }
    px.insert(
        "Type".into(),
        json!({"@id": 5, "@type": "TBD#PixelsType", "omero:details": {"@type": "TBD#Details", "permissions": permissions("rwr-r-", false)}, "value": img.pixel_type}),
    );
    px.insert("omero:details".into(), details());
    px.insert("omero:sha1".into(), json!(img.sha1));

    let mut m = Map::new();
    m.insert("@id".into(), json!(img.id));
    m.insert("@type".into(), json!(format!("{SCHEMA}#Image")));
    if let Some(t) = img.acquisition_date {
        m.insert("AcquisitionDate".into(), json!(t));
    }
    if let Some(d) = &img.description {
        m.insert("Description".into(), json!(d));
    }
    m.insert("Name".into(), json!(img.name));
    m.insert("Pixels".into(), Value::Object(px));
    m.insert("omero:details".into(), details());
    m.insert("omero:series".into(), json!(0));
    if single {
        m.insert(
            "url:datasets".into(),
            json!(format!("{b}/api/v0/m/images/{}/datasets/", img.id)),
        );
        m.insert(
            "url:rois".into(),
            json!(format!("{b}/api/v0/m/images/{}/rois/", img.id)),
        );
    } else {
        m.insert(
            "url:image".into(),
            json!(format!("{b}/api/v0/m/images/{}/", img.id)),
        );
    }
    Value::Object(m)
}

fn by_name<T>(items: &mut [&T], name: impl Fn(&T) -> (String, i64)) {
    items.sort_by_key(|x| name(x));
}

/// `{"data": {...}}` for the object of that id, or OMERO's 404 message.
fn single<T>(
    id: &str,
    what: &str,
    find: impl FnOnce(i64) -> Option<T>,
    render: impl FnOnce(T) -> Value,
) -> Response {
    match id.parse::<i64>().ok().and_then(find) {
        Some(x) => ok(json!({ "data": render(x) })),
        None => message(StatusCode::NOT_FOUND, &format!("{what} {id} not found")),
    }
}

macro_rules! guard {
    ($st:expr, $headers:expr) => {
        if !logged_in(&$st, &$headers) {
            return message(StatusCode::FORBIDDEN, "Not logged in");
        }
    };
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}

async fn projects(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Response {
    guard!(st, headers);
    let p = tri!(paging(&uri));
    let b = base_url(&headers);
    let w = st.world();
    let mut ps: Vec<&OmeroProject> = w.omero.projects.iter().collect();
    by_name(&mut ps, |p| (p.name.to_lowercase(), p.id));
    let cc = flag(&uri, "childCount");
    list(
        ps.into_iter()
            .map(|x| project_json(&w, x, &b, true, cc))
            .collect(),
        &p,
    )
}

async fn project(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    guard!(st, headers);
    let b = base_url(&headers);
    let w = st.world();
    single(
        &id,
        "Project",
        |id| w.omero.projects.iter().find(|p| p.id == id),
        |p| project_json(&w, p, &b, false, flag(&uri, "childCount")),
    )
}

fn datasets_of(w: &World, project: Option<i64>) -> Option<Vec<&OmeroDataset>> {
    let mut ds: Vec<&OmeroDataset> = match project {
        None => w.omero.datasets.iter().collect(),
        Some(pid) => {
            let p = w.omero.projects.iter().find(|p| p.id == pid)?;
            w.omero
                .datasets
                .iter()
                .filter(|d| p.datasets.contains(&d.id))
                .collect()
        }
    };
    by_name(&mut ds, |d| (d.name.to_lowercase(), d.id));
    Some(ds)
}

async fn project_datasets(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    guard!(st, headers);
    let p = tri!(paging(&uri));
    let b = base_url(&headers);
    let w = st.world();
    let cc = flag(&uri, "childCount");
    match id
        .parse::<i64>()
        .ok()
        .and_then(|id| datasets_of(&w, Some(id)))
    {
        Some(ds) => list(
            ds.into_iter()
                .map(|d| dataset_json(d, &b, true, cc))
                .collect(),
            &p,
        ),
        None => message(StatusCode::NOT_FOUND, &format!("Project {id} not found")),
    }
}

async fn datasets(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Response {
    guard!(st, headers);
    let p = tri!(paging(&uri));
    let project = tri!(param_i64(&uri, "project"));
    let b = base_url(&headers);
    let w = st.world();
    let cc = flag(&uri, "childCount");
    let ds = if flag(&uri, "orphaned") {
        Vec::new()
    } else {
        datasets_of(&w, project).unwrap_or_default()
    };
    list(
        ds.into_iter()
            .map(|d| dataset_json(d, &b, true, cc))
            .collect(),
        &p,
    )
}

async fn dataset(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    guard!(st, headers);
    let b = base_url(&headers);
    let w = st.world();
    single(
        &id,
        "Dataset",
        |id| w.omero.datasets.iter().find(|d| d.id == id),
        |d| dataset_json(d, &b, false, flag(&uri, "childCount")),
    )
}

fn images_of(w: &World, dataset: Option<i64>) -> Option<Vec<&OmeroImage>> {
    if let Some(did) = dataset {
        w.omero.datasets.iter().find(|d| d.id == did)?;
    }
    let mut imgs: Vec<&OmeroImage> = w
        .omero
        .images
        .iter()
        .filter(|i| dataset.is_none_or(|d| i.dataset == d))
        .collect();
    by_name(&mut imgs, |i| (i.name.to_lowercase(), i.id));
    Some(imgs)
}

async fn dataset_images(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    guard!(st, headers);
    let p = tri!(paging(&uri));
    let b = base_url(&headers);
    let w = st.world();
    match id
        .parse::<i64>()
        .ok()
        .and_then(|id| images_of(&w, Some(id)))
    {
        Some(imgs) => list(
            imgs.into_iter().map(|i| image_json(i, &b, false)).collect(),
            &p,
        ),
        None => message(StatusCode::NOT_FOUND, &format!("Dataset {id} not found")),
    }
}

async fn images(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Response {
    guard!(st, headers);
    let p = tri!(paging(&uri));
    let dataset = tri!(param_i64(&uri, "dataset"));
    let b = base_url(&headers);
    let w = st.world();
    let imgs = if flag(&uri, "orphaned") {
        Vec::new()
    } else {
        images_of(&w, dataset).unwrap_or_default()
    };
    list(
        imgs.into_iter().map(|i| image_json(i, &b, false)).collect(),
        &p,
    )
}

async fn image(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    guard!(st, headers);
    let b = base_url(&headers);
    let w = st.world();
    single(
        &id,
        "Image",
        |id| w.omero.images.iter().find(|i| i.id == id),
        |i| image_json(i, &b, true),
    )
}

async fn annotations(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Response {
    if !logged_in(&st, &headers) {
        // The web client sends anonymous visitors to its login page.
        let target = format!("/webclient/login/?url={}", uri.path());
        let mut r = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    let q = query_pairs(uri.query());
    let ids = |name: &str| -> Result<Vec<i64>, Response> {
        q.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| {
                v.parse::<i64>().map_err(|_| {
                    message(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid literal for int() with base 10: '{v}'"),
                    )
                })
            })
            .collect()
    };
    let image_ids = tri!(ids("image"));
    // Only images are annotated in this archive: project and dataset ids are checked,
    // then select nothing.
    tri!(ids("dataset"));
    tri!(ids("project"));
    let page: usize = match q
        .iter()
        .find(|(k, _)| k == "page")
        .map(|(_, v)| v.parse::<usize>())
    {
        None => 1,
        Some(Ok(p)) => p.max(1),
        Some(Err(_)) => return message(StatusCode::BAD_REQUEST, "page must be an integer"),
    };
    let limit: usize = match q
        .iter()
        .find(|(k, _)| k == "limit")
        .map(|(_, v)| v.parse::<usize>())
    {
        None => 20_000,
        Some(Ok(l)) if l > 0 => l,
        _ => return message(StatusCode::BAD_REQUEST, "limit must be a positive integer"),
    };
    let typ = q.iter().find(|(k, _)| k == "type").map(|(_, v)| v.as_str());
    let ns = q.iter().find(|(k, _)| k == "ns").map(|(_, v)| v.as_str());
    let w = st.world();
    let mut out = Vec::new();
    if typ.is_none_or(|t| t == "map")
        && ns.is_none_or(|n| n == "openmicroscopy.org/omero/client/mapAnnotation")
    {
        for img in &w.omero.images {
            if !image_ids.contains(&img.id) {
                continue;
            }
            let Some(ann) = &img.annotation else { continue };
            let perms =
                json!({"canDelete": true, "canAnnotate": true, "canLink": true, "canEdit": true});
            let date = ann.date.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            out.push(json!({
                "id": ann.id,
                "ns": "openmicroscopy.org/omero/client/mapAnnotation",
                "description": null,
                "owner": {"id": 2},
                "date": date,
                "permissions": perms,
                "link": {
                    "id": ann.link_id,
                    "owner": {"id": 2},
                    "parent": {"id": img.id, "class": "ImageI", "name": img.name},
                    "date": date,
                    "permissions": perms,
                },
                "class": "MapAnnotationI",
                "values": ann.values.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            }));
        }
    }
    if typ.is_none_or(|t| t == "tag") && ns.is_none() {
        for img in w.omero.images.iter().filter(|i| image_ids.contains(&i.id)) {
            for (tag_id, text) in &img.tags {
                let perms = json!({"canDelete": true, "canAnnotate": true, "canLink": true, "canEdit": true});
                out.push(json!({
                    "id": tag_id,
                    "ns": null,
                    "description": null,
                    "owner": {"id": 2},
                    "date": "2024-01-15T10:00:00Z",
                    "permissions": perms,
                    "link": {
                        "id": 80_000 + img.id,
                        "owner": {"id": 2},
                        "parent": {"id": img.id, "class": "ImageI", "name": img.name},
                        "date": "2024-01-15T10:00:00Z",
                        "permissions": perms,
                    },
                    "class": "TagAnnotationI",
                    "textValue": text,
                }));
            }
        }
    }
    let start = (page - 1).saturating_mul(limit);
    let page_items: Vec<Value> = out.into_iter().skip(start).take(limit).collect();
    let experimenters = if page_items.is_empty() {
        json!([])
    } else {
        json!([{"id": 2, "omeName": "crossdex", "firstName": "Research", "lastName": "Imaging"}])
    };
    json_response(
        StatusCode::OK,
        "application/json",
        &json!({"annotations": page_items, "experimenters": experimenters}),
    )
}
