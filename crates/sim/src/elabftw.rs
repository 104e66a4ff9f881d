//! The eLabFTW REST API v2 (`/api/v2/`): experiments, items (resources) and their
//! categories.
//!
//! Reproduced from `reference/elabftw/`: `Authorization: <key>` with no `Bearer`;
//! lists as plain arrays with no total, paged by `limit`/`offset` (no limit when
//! `limit` is absent, 15 when it is invalid), ordered by last change, newest first,
//! normal entries only unless `state` says otherwise; a reduced column set unless
//! `full=1`; single reads with `metadata` as a JSON *string* (normalised the way
//! MySQL prints JSON: `", "` separators, keys sorted by length) and `metadata_decoded`,
//! links to items and experiments, tags as `a|b` with `tags_id`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::server::{SimState, base_url, finish, json_response, query_pairs};
use crate::world::{ELAB_USERS, ElabEntity, ElabKind, World};

pub(crate) fn router(st: Arc<SimState>) -> Router {
    let r = Router::new()
        .route("/api/v2/experiments", get(list_experiments))
        .route("/api/v2/experiments/{id}", get(one_experiment))
        .route("/api/v2/items", get(list_items))
        .route("/api/v2/items/{id}", get(one_item))
        .route("/api/v2/items_types", get(items_types));
    finish(r, st)
}

fn error(status: StatusCode, message: &str, description: &str) -> Response {
    json_response(
        status,
        "application/json",
        &json!({"code": status.as_u16().to_string(), "message": message, "description": description}),
    )
}

fn authorized(st: &SimState, headers: &HeaderMap) -> Result<(), Response> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if key == Some(st.credentials.token.as_str()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "Authentication required",
            "No corresponding API key found!",
        ))
    }
}

macro_rules! authorized {
    ($st:expr, $headers:expr) => {
        if let Err(r) = authorized(&$st, &$headers) {
            return r;
        }
    };
}

fn ts(t: &chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// JSON as MySQL prints a JSON column: keys sorted by length then bytes, `", "` and
/// `": "` separators.
pub(crate) fn mysql_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}: {}", Value::String((*k).clone()), mysql_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(mysql_json).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn metadata(e: &ElabEntity) -> Value {
    let mut fields = Map::new();
    for (label, f) in &e.extra_fields {
        let mut m = Map::new();
        m.insert("type".into(), json!(f.ftype));
        m.insert("value".into(), f.value.clone());
        if let Some(u) = f.unit {
            m.insert("unit".into(), json!(u));
        }
        if let Some(us) = &f.units {
            m.insert("units".into(), json!(us));
        }
        if let Some(o) = &f.options {
            m.insert("options".into(), json!(o));
        }
        if let Some(g) = &f.group_id {
            m.insert("group_id".into(), g.clone());
        }
        if let Some(p) = f.position {
            m.insert("position".into(), json!(p));
        }
        if let Some(d) = f.description {
            m.insert("description".into(), json!(d));
        }
        fields.insert(label.clone(), Value::Object(m));
    }
    let groups = if e.kind == ElabKind::Item {
        json!([{"id": 1, "name": "Identity"}, {"id": 2, "name": "Collection"}])
    } else {
        json!([{"id": 1, "name": "Reagents"}])
    };
    json!({
        "elabftw": {"display_main_text": true, "extra_fields_groups": groups},
        "extra_fields": Value::Object(fields),
    })
}

fn page_of(kind: ElabKind) -> (&'static str, &'static str) {
    match kind {
        ElabKind::Experiment => ("experiments", "experiments"),
        ElabKind::Item => ("database", "items"),
    }
}

/// The columns every list row carries.
fn summary(e: &ElabEntity) -> Map<String, Value> {
    let (first, last) = (ELAB_USERS[e.user].1, ELAB_USERS[e.user].2);
    let (page, typ) = page_of(e.kind);
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("elabid".into(), json!(e.elabid));
    m.insert("title".into(), json!(e.title));
    m.insert("custom_id".into(), Value::Null);
    m.insert("date".into(), json!(e.date.to_string()));
    m.insert("category".into(), json!(e.category.id));
    m.insert("category_title".into(), json!(e.category.title));
    m.insert("category_color".into(), json!(e.category.color));
    m.insert("status".into(), json!(e.status.map(|s| s.id)));
    m.insert("status_title".into(), json!(e.status.map(|s| s.title)));
    m.insert("status_color".into(), json!(e.status.map(|s| s.color)));
    m.insert("team".into(), json!(1));
    m.insert("rating".into(), json!(e.rating));
    m.insert("userid".into(), json!(ELAB_USERS[e.user].0));
    m.insert("fullname".into(), json!(format!("{first} {last}")));
    m.insert("firstname".into(), json!(first));
    m.insert("lastname".into(), json!(last));
    m.insert("orcid".into(), Value::Null);
    m.insert("locked".into(), json!(e.locked));
    m.insert("state".into(), json!(e.state));
    m.insert(
        "canread".into(),
        json!("{\"base\": 30, \"teams\": [], \"users\": [], \"teamgroups\": []}"),
    );
    m.insert(
        "canwrite".into(),
        json!("{\"base\": 20, \"teams\": [], \"users\": [], \"teamgroups\": []}"),
    );
    m.insert("created_at".into(), json!(ts(&e.created_at)));
    m.insert("modified_at".into(), json!(ts(&e.modified_at)));
    m.insert("timestamped".into(), json!(0));
    m.insert(
        "tags".into(),
        if e.tags.is_empty() {
            Value::Null
        } else {
            json!(e.tags.iter().map(|t| t.1).collect::<Vec<_>>().join("|"))
        },
    );
    m.insert(
        "tags_id".into(),
        if e.tags.is_empty() {
            Value::Null
        } else {
            json!(
                e.tags
                    .iter()
                    .map(|t| t.0.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        },
    );
    m.insert("has_attachment".into(), json!(0));
    m.insert("has_comment".into(), json!(0));
    m.insert("page".into(), json!(page));
    m.insert("type".into(), json!(typ));
    m
}

fn link_json(target: &ElabEntity) -> Value {
    let (page, typ) = page_of(target.kind);
    json!({
        "entityid": target.id,
        "title": target.title,
        "custom_id": null,
        "page": page,
        "type": typ,
        "category_title": target.category.title,
        "category_color": target.category.color,
        "status_title": target.status.map(|s| s.title),
        "status_color": target.status.map(|s| s.color),
        "link_state": target.state,
        "is_bookable": 0,
    })
}

fn full(w: &World, e: &ElabEntity, base: &str) -> Map<String, Value> {
    let mut m = summary(e);
    let meta = metadata(e);
    let meta_text = mysql_json(&meta);
    let decoded: Value = serde_json::from_str(&meta_text).unwrap_or(Value::Null);
    m.insert("body".into(), json!(e.body));
    m.insert("body_html".into(), json!(e.body));
    m.insert("content_type".into(), json!(1));
    m.insert("access_key".into(), Value::Null);
    m.insert("lastchangeby".into(), json!(ELAB_USERS[e.user].0));
    m.insert(
        "locked_at".into(),
        if e.locked == 1 {
            json!(ts(&e.modified_at))
        } else {
            Value::Null
        },
    );
    m.insert(
        "lockedby".into(),
        if e.locked == 1 {
            json!(ELAB_USERS[e.user].0)
        } else {
            Value::Null
        },
    );
    m.insert("metadata".into(), json!(meta_text));
    m.insert("metadata_decoded".into(), decoded);
    m.insert("next_step".into(), Value::Null);
    m.insert("recent_comment".into(), Value::Null);
    m.insert("events_start".into(), Value::Null);
    m.insert("team_name".into(), json!("Neurobiology lab"));
    m.insert("timestamped_at".into(), Value::Null);
    m.insert("timestampedby".into(), Value::Null);
    let items_links: Vec<Value> = e
        .items_links
        .iter()
        .filter_map(|id| w.elab.items.iter().find(|i| i.id == *id))
        .map(link_json)
        .collect();
    let experiments_links: Vec<Value> = e
        .experiments_links
        .iter()
        .filter_map(|id| w.elab.experiments.iter().find(|x| x.id == *id))
        .map(link_json)
        .collect();
    // Reverse links: experiments that point at this entity.
    let related_experiments: Vec<Value> = w
        .elab
        .experiments
        .iter()
        .filter(|x| match e.kind {
            ElabKind::Item => x.items_links.contains(&e.id),
            ElabKind::Experiment => x.experiments_links.contains(&e.id),
        })
        .map(link_json)
        .collect();
    m.insert("items_links".into(), json!(items_links));
    m.insert("experiments_links".into(), json!(experiments_links));
    m.insert("related_items_links".into(), json!([]));
    m.insert(
        "related_experiments_links".into(),
        json!(related_experiments),
    );
    m.insert("steps".into(), json!([]));
    m.insert("uploads".into(), json!([]));
    m.insert("comments".into(), json!([]));
    let fullname = format!("{} {}", ELAB_USERS[e.user].1, ELAB_USERS[e.user].2);
    m.insert(
        "changelog".into(),
        json!([{"created_at": ts(&e.created_at), "target": "title", "content": e.title, "fullname": fullname}]),
    );
    m.insert(
        "revisions".into(),
        json!([{"id": e.id, "content_type": 1, "created_at": ts(&e.created_at), "fullname": fullname}]),
    );
    let (page, _) = page_of(e.kind);
    let script = if page == "experiments" {
        "experiments"
    } else {
        "database"
    };
    m.insert(
        "sharelink".into(),
        json!(format!("{base}/{script}.php?mode=view&id={}", e.id)),
    );
    m.insert("up_item_id".into(), json!(e.id));
    if e.kind == ElabKind::Item {
        m.insert("is_bookable".into(), json!(0));
        m.insert(
            "canbook".into(),
            json!("{\"base\": 30, \"teams\": [], \"users\": [], \"teamgroups\": []}"),
        );
        m.insert("book_max_minutes".into(), json!(0));
        m.insert("book_max_slots".into(), json!(0));
        m.insert("book_can_overlap".into(), json!(1));
        m.insert("book_is_cancellable".into(), json!(1));
        m.insert("book_cancel_minutes".into(), json!(0));
        m.insert("book_users_can_in_past".into(), json!(0));
    }
    m
}

fn list(st: &SimState, headers: &HeaderMap, uri: &Uri, kind: ElabKind) -> Response {
    authorized!(st, headers);
    let q = query_pairs(uri.query());
    let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    // No LIMIT without `limit`; an unusable one falls back to 15 (Check::limit).
    let limit: Option<usize> =
        get("limit").map(|v| v.parse::<usize>().ok().filter(|n| *n > 0).unwrap_or(15));
    let offset: usize = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let states: Vec<u8> = get("state")
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u8>| !v.is_empty())
        .unwrap_or_else(|| vec![1]);
    let desc = get("sort") != Some("asc");
    let order = get("order").unwrap_or("lastchange");
    let needle = get("q").map(str::to_lowercase).filter(|s| !s.is_empty());
    let category: Option<i64> = get("category").and_then(|v| v.parse().ok());
    let with_full = get("full") == Some("1") || get("full") == Some("true");
    let base = base_url(headers);

    let w = st.world();
    let pool = match kind {
        ElabKind::Experiment => &w.elab.experiments,
        ElabKind::Item => &w.elab.items,
    };
    let mut rows: Vec<&ElabEntity> = pool
        .iter()
        .filter(|e| states.contains(&e.state))
        .filter(|e| category.is_none_or(|c| e.category.id == c))
        .filter(|e| {
            needle.as_ref().is_none_or(|n| {
                e.title.to_lowercase().contains(n) || e.body.to_lowercase().contains(n)
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        let ord = match order {
            "id" => a.id.cmp(&b.id),
            "date" => a.date.cmp(&b.date),
            "title" => a.title.cmp(&b.title),
            "rating" => a.rating.cmp(&b.rating),
            "cat" => a.category.id.cmp(&b.category.id),
            "status" => a.status.map(|s| s.id).cmp(&b.status.map(|s| s.id)),
            "user" => a.user.cmp(&b.user),
            _ => a.modified_at.cmp(&b.modified_at),
        }
        .then(a.id.cmp(&b.id));
        if desc { ord.reverse() } else { ord }
    });
    let page: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|e| {
            if with_full {
                let mut m = summary(e);
                let meta = mysql_json(&metadata(e));
                m.insert("body".into(), json!(e.body));
                m.insert("metadata".into(), json!(meta));
                m.insert("content_type".into(), json!(1));
                m.insert("lastchangeby".into(), json!(ELAB_USERS[e.user].0));
                m.insert(
                    "sharelink".into(),
                    json!(format!(
                        "{base}/{}.php?mode=view&id={}",
                        page_of(e.kind).0,
                        e.id
                    )),
                );
                Value::Object(m)
            } else {
                Value::Object(summary(e))
            }
        })
        .collect();
    json_response(StatusCode::OK, "application/json", &Value::Array(page))
}

fn one(st: &SimState, headers: &HeaderMap, id: &str, kind: ElabKind) -> Response {
    authorized!(st, headers);
    let w = st.world();
    let pool = match kind {
        ElabKind::Experiment => &w.elab.experiments,
        ElabKind::Item => &w.elab.items,
    };
    match id
        .parse::<i64>()
        .ok()
        .and_then(|id| pool.iter().find(|e| e.id == id))
    {
        Some(e) => json_response(
            StatusCode::OK,
            "application/json",
            &Value::Object(full(&w, e, &base_url(headers))),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "Nothing to show with this id",
        ),
    }
}

async fn list_experiments(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    list(&st, &headers, &uri, ElabKind::Experiment)
}

async fn list_items(State(st): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Response {
    list(&st, &headers, &uri, ElabKind::Item)
}

async fn one_experiment(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one(&st, &headers, &id, ElabKind::Experiment)
}

async fn one_item(
    State(st): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one(&st, &headers, &id, ElabKind::Item)
}

async fn items_types(State(st): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    authorized!(st, headers);
    json_response(
        StatusCode::OK,
        "application/json",
        &json!([{"id": 4, "title": "Biological sample", "color": "29aeb9", "team": 1, "ordering": 1}]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_printed_the_way_mysql_prints_json() {
        let v = json!({"extra_fields": {"Volume": {"value": "1", "type": "number", "group_id": 2}}, "elabftw": {}});
        assert_eq!(
            mysql_json(&v),
            r#"{"elabftw": {}, "extra_fields": {"Volume": {"type": "number", "value": "1", "group_id": 2}}}"#
        );
    }
}
