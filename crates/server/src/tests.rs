//! The router over a service of a few hundred exported rows: every endpoint, every
//! error status, the error bodies and the OpenAPI document pinned.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use crossdex_service::{OpenOptions, Service, SyncRequest};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{ServerOptions, app};

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// `rows` participants of a files source, synced.
    async fn new(rows: usize) -> (Setup, Service) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("exports")).unwrap();
        std::fs::write(
            dir.path().join("crossdex.toml"),
            "data_dir = \"data\"\n[sources.clinic]\ntype = \"files\"\npath = \"exports\"\n",
        )
        .unwrap();
        let mut text = String::from("participant_id,diagnosis,moca\n");
        for i in 0..rows {
            let d = if i % 3 == 0 {
                "hippocampal sclerosis"
            } else {
                "healthy control"
            };
            text.push_str(&format!("P-{i:04},{d},{}\n", 15 + i % 15));
        }
        std::fs::write(dir.path().join("exports/participants.csv"), text).unwrap();
        let setup = Setup { dir };
        let service = setup.service();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        service
            .sync(
                &SyncRequest {
                    all: true,
                    ..SyncRequest::default()
                },
                tx,
            )
            .await
            .unwrap();
        (setup, service)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("crossdex.toml")
    }

    fn service(&self) -> Service {
        Service::open(OpenOptions {
            config: Some(self.config()),
            config_required: true,
            ..OpenOptions::default()
        })
        .unwrap()
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
    headers: axum::http::HeaderMap,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        content_type,
        body,
        headers,
    }
}

async fn get(app: &Router, uri: &str) -> Answer {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, uri: &str, content_type: &str, accept: &str, body: &str) -> Answer {
    send(
        app,
        Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, accept)
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers() {
    let (_setup, service) = Setup::new(90).await;
    let app = app(service, ServerOptions::default());

    let a = get(&app, "/api/v1/health").await;
    assert_eq!(
        (a.status, a.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let a = get(&app, "/api/v1/ready").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["records"], 90);

    // Search: hand-counted, every third row says "sclerosis".
    let a = get(
        &app,
        "/api/v1/search?q=sclerosis&limit=10&pre_tag=%3Cem%3E&post_tag=%3C/em%3E",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let r = a.json();
    assert_eq!(r["total"], 30);
    assert_eq!(r["hits"].as_array().unwrap().len(), 10);
    assert_eq!(
        r["facets"]["system"],
        json!([{"value": "files", "count": 30}])
    );
    assert!(
        r["hits"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("<em>sclerosis</em>"),
        "{r}"
    );
    // Three pages through the cursor: 30 distinct hits.
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = r["next_cursor"].as_str().map(str::to_owned);
    for h in r["hits"].as_array().unwrap() {
        seen.insert(h["id"].as_str().unwrap().to_owned());
    }
    while let Some(c) = cursor {
        let a = post(
            &app,
            "/api/v1/search",
            "application/json",
            "application/json",
            &json!({"q": "sclerosis", "limit": 10, "cursor": c}).to_string(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let r = a.json();
        for h in r["hits"].as_array().unwrap() {
            seen.insert(h["id"].as_str().unwrap().to_owned());
        }
        cursor = r["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 30);
    let a = get(&app, "/api/v1/search?q=*&kind=row&source=clinic&limit=0").await;
    assert_eq!(a.json()["total"], 90);
    let a = get(&app, "/api/v1/search?q=*&source=nowhere&limit=0").await;
    assert_eq!(a.json()["total"], 0);

    // SQL in every format, against a hand-computed answer: moca 15..29, 6 rows each.
    let sql = "SELECT CAST(value_num AS BIGINT) AS moca, count(*) AS n FROM observations WHERE variable = 'moca' GROUP BY 1 ORDER BY 1";
    let a = post(&app, "/api/v1/sql", "text/plain", "application/json", sql).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let r = a.json();
    assert_eq!(r["columns"][0], json!({"name": "moca", "type": "Int64"}));
    assert_eq!(r["rows"].as_array().unwrap().len(), 15);
    assert_eq!(r["rows"][0], json!([15, 6]));
    assert_eq!(r["truncated"], false);
    let a = post(&app, "/api/v1/sql", "text/plain", "text/csv", sql).await;
    assert!(a.content_type.starts_with("text/csv"));
    assert_eq!(a.text().lines().next(), Some("moca,n"));
    assert_eq!(a.text().lines().count(), 16);
    let a = post(
        &app,
        "/api/v1/sql",
        "text/plain",
        "application/x-ndjson",
        sql,
    )
    .await;
    assert_eq!(a.text().lines().count(), 15);
    assert_eq!(
        serde_json::from_str::<Value>(a.text().lines().next().unwrap()).unwrap(),
        json!({"moca": 15, "n": 6})
    );
    let a = post(
        &app,
        "/api/v1/sql",
        "text/plain",
        crate::sql::ARROW_STREAM,
        sql,
    )
    .await;
    assert_eq!(a.content_type, crate::sql::ARROW_STREAM);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(a.body), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 15);
    // Parameters as JSON, typed; max_rows cuts and says so.
    let a = post(
        &app,
        "/api/v1/sql",
        "application/json",
        "application/json",
        &json!({"sql": "SELECT subject_key FROM records WHERE subject_key > $k ORDER BY 1", "params": {"k": "P-0085"}, "max_rows": 3}).to_string(),
    )
    .await;
    let r = a.json();
    assert_eq!(r["rows"], json!([["P-0086"], ["P-0087"], ["P-0088"]]));
    assert_eq!(r["truncated"], true);

    let a = get(&app, "/api/v1/queries").await;
    assert!(
        a.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "low-moca")
    );
    let a = post(
        &app,
        "/api/v1/queries/low-moca",
        "application/json",
        "application/json",
        &json!({"params": {"threshold": 17}}).to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = get(&app, "/api/v1/subjects?limit=5").await;
    let r = a.json();
    assert_eq!(r["total"], 90, "{r}");
    assert_eq!(r["subjects"].as_array().unwrap().len(), 5);
    let id = r["subjects"][0]["subject_id"].as_str().unwrap().to_owned();
    let a = get(&app, &format!("/api/v1/subjects/{id}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["subject_id"], id.as_str());
    let a = get(&app, "/api/v1/subjects/P-0003").await;
    assert_eq!(a.status, StatusCode::OK, "a source's key finds the subject");
    let a = get(&app, "/api/v1/records/clinic:row:participants.csv%23P-0003").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["record"]["subject_key"], "P-0003");
    let a = get(&app, "/api/v1/sources").await;
    assert_eq!(a.json()["sources"][0]["source"], "clinic");
    let a = get(&app, "/api/v1/sources/clinic/runs").await;
    assert_eq!(a.json()[0]["added"], 90);
    let a = get(&app, "/api/v1/link-report").await;
    assert_eq!(a.status, StatusCode::OK);

    // A sync asked for over HTTP: 202, then its progress until it is recorded.
    let a = post(
        &app,
        "/api/v1/sources/clinic/sync",
        "application/json",
        "application/json",
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let location = a.headers[header::LOCATION].to_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let run = loop {
        let r = get(&app, &location).await.json();
        if r["state"] == "finished" {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run["run"]["unchanged"], 90, "{run}");
    let run_id = run["run"]["run_id"].as_str().unwrap();
    let a = get(&app, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(a.json()["state"], "finished");

    let a = get(&app, "/api/v1/metrics").await;
    let text = a.text();
    assert!(text.contains("crossdex_http_requests_total"), "{text}");
    assert!(
        text.contains("crossdex_source_records{source=\"clinic\"} 90"),
        "{text}"
    );
    let a = get(&app, "/api/v1/openapi.json").await;
    assert_eq!(a.json()["openapi"], "3.1.0");
    let a = get(&app, "/api/v1/").await;
    assert!(
        a.text().contains("/api/v1/search"),
        "the API page lists the routes"
    );
}

/// Error bodies: one shape, honest statuses; pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_one_shape_and_honest_statuses() {
    let (_setup, service) = Setup::new(1500).await;
    let app = app(
        service.clone(),
        ServerOptions {
            max_body_bytes: 4096,
            ..ServerOptions::default()
        },
    );
    let long = "SELECT count(*) FROM records a, records b, records c WHERE a.title < b.title AND b.title < c.title";
    let cases: Vec<(&str, Answer, StatusCode)> = vec![
        (
            "invalid_search",
            get(&app, "/api/v1/search?q=(sclerosis").await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing_q",
            get(&app, "/api/v1/search").await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad_date",
            get(&app, "/api/v1/search?q=*&from=yesterday").await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "invalid_sql",
            post(
                &app,
                "/api/v1/sql",
                "text/plain",
                "application/json",
                "SELECT count(*)\nFROM records WHERE",
            )
            .await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "not_a_query",
            post(
                &app,
                "/api/v1/sql",
                "text/plain",
                "application/json",
                "DROP TABLE records",
            )
            .await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown_table",
            post(
                &app,
                "/api/v1/sql",
                "text/plain",
                "application/json",
                "SELECT * FROM nothing",
            )
            .await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad_param",
            post(
                &app,
                "/api/v1/queries/low-moca",
                "application/json",
                "application/json",
                r#"{"params": {"threshold": "low"}}"#,
            )
            .await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown_query",
            post(
                &app,
                "/api/v1/queries/nope",
                "application/json",
                "application/json",
                "",
            )
            .await,
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown_subject",
            get(&app, "/api/v1/subjects/nobody").await,
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown_record",
            get(&app, "/api/v1/records/clinic:row:none").await,
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown_source",
            get(&app, "/api/v1/sources/nowhere/runs").await,
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown_source_sync",
            post(
                &app,
                "/api/v1/sources/nowhere/sync",
                "application/json",
                "application/json",
                "",
            )
            .await,
            StatusCode::NOT_FOUND,
        ),
        (
            "unknown_run",
            get(&app, "/api/v1/runs/clinic-999").await,
            StatusCode::NOT_FOUND,
        ),
        (
            "not_a_route",
            get(&app, "/nothing/here").await,
            StatusCode::NOT_FOUND,
        ),
        (
            "cursor_expired",
            get(&app, "/api/v1/search?q=*&cursor=cfffff.a").await,
            StatusCode::GONE,
        ),
        (
            "too_large",
            post(
                &app,
                "/api/v1/sql",
                "text/plain",
                "application/json",
                &"x".repeat(5000),
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "timeout",
            post(
                &app,
                "/api/v1/sql?timeout_ms=100",
                "text/plain",
                "application/json",
                long,
            )
            .await,
            StatusCode::REQUEST_TIMEOUT,
        ),
    ];
    for (name, a, status) in cases {
        assert_eq!(a.status, status, "{name}: {}", a.text());
        assert!(
            a.content_type.starts_with("application/json"),
            "{name}: {}",
            a.content_type
        );
        let body = a.json();
        for key in ["message", "code", "type", "link"] {
            assert!(body[key].is_string(), "{name}: {body}");
        }
        insta::assert_json_snapshot!(name, body);
    }

    // Past the concurrency limit: 429 with Retry-After, the others still answered.
    let busy = crate::app(
        service,
        ServerOptions {
            max_concurrent_queries: 1,
            ..ServerOptions::default()
        },
    );
    let slow = {
        let busy = busy.clone();
        tokio::spawn(async move {
            post(
                &busy,
                "/api/v1/sql?timeout_ms=3000",
                "text/plain",
                "application/json",
                long,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = get(&busy, "/api/v1/search?q=*").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text());
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    assert_eq!(a.json()["code"], "overloaded");
    assert_eq!(slow.await.unwrap().status, StatusCode::REQUEST_TIMEOUT);
    let a = get(&busy, "/api/v1/search?q=*").await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_503_before_the_first_sync() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crossdex.toml"),
        "data_dir = \"data\"\n[sources.clinic]\ntype = \"files\"\npath = \"exports\"\n",
    )
    .unwrap();
    let service = Service::open(OpenOptions {
        config: Some(dir.path().join("crossdex.toml")),
        config_required: true,
        ..OpenOptions::default()
    })
    .unwrap();
    let app = app(service, ServerOptions::default());
    let a = get(&app, "/api/v1/ready").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["code"], "not_ready");
    let a = get(&app, "/api/v1/search?q=x").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["code"], "no_index");
}

/// The OpenAPI document, pinned; every endpoint of docs/http-api.md is in it.
#[test]
fn the_openapi_document_lists_every_documented_route() {
    let doc = serde_json::to_value(crate::openapi()).unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    let manual = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/http-api.md"),
    )
    .unwrap();
    let mut documented = 0;
    for line in manual.lines() {
        let Some(rest) = line.strip_prefix("### `") else {
            continue;
        };
        let Some((method, path)) = rest.trim_end_matches('`').split_once(' ') else {
            continue;
        };
        let path = path.strip_prefix("/api/v1").unwrap_or(path);
        if path == "/openapi.json" || path == "/" {
            continue;
        }
        documented += 1;
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(
            op.is_object(),
            "{method} {path} is documented but missing from openapi.json: {paths:?}"
        );
    }
    assert!(documented >= 15, "{documented}");
    insta::assert_json_snapshot!("openapi", doc);
}

fn bearer(uri: &str, secret: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_once_one_exists_and_their_limits_hold() {
    use crossdex_service::{Action, Limits, NewToken, Scope};
    let (_setup, service) = Setup::new(30).await;
    let app = app(service.clone(), ServerOptions::default());
    // Before any token: loopback acts as the local user.
    assert_eq!(
        get(&app, "/api/v1/search?q=healthy").await.status,
        StatusCode::OK
    );
    let secret = service
        .create_token(NewToken {
            name: "slow".into(),
            scope: Scope {
                actions: [Action::Search].into_iter().collect(),
                sources: None,
                projects: None,
                sensitive: false,
            },
            expires_in: chrono::Duration::days(1),
            limits: Limits {
                requests_per_s: 1,
                concurrent: 4,
                max_rows: 10,
            },
            parent: None,
        })
        .unwrap()
        .secret;
    let a = get(&app, "/api/v1/search?q=healthy").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["code"], "unauthorized");
    assert!(a.headers.contains_key(header::WWW_AUTHENTICATE));
    // Probes stay open, and say no more than "ready".
    assert_eq!(get(&app, "/api/v1/health").await.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/api/v1/ready").await.json(),
        json!({"status": "ready"})
    );
    let a = send(&app, bearer("/api/v1/subjects", &secret)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    // A burst of twice the rate passes, then 429 with Retry-After.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let a = send(&app, bearer("/api/v1/search?q=healthy", &secret)).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(a.json()["code"], "rate_limited");
            retry_after = a.headers.get(header::RETRY_AFTER).cloned();
        }
        statuses.push(a.status.as_u16());
    }
    // The 403 above took one request of the burst of two.
    assert_eq!(statuses, vec![200, 429, 429, 429], "{statuses:?}");
    assert_eq!(retry_after.unwrap(), "1");
    let wrong = send(&app, bearer("/api/v1/search?q=healthy", "cdx_nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

/// A portal derives per-user tokens from its own through the API: never wider in
/// actions, sources, sensitive access, limits or lifetime, and gone with their parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_derives_only_narrower_tokens() {
    use crossdex_service::{Action, Limits, NewToken, Scope};
    let (_setup, service) = Setup::new(12).await;
    let app = app(service.clone(), ServerOptions::default());
    let derive = |secret: Option<&str>, body: Value| {
        let mut r =
            Request::post("/api/v1/tokens").header(header::CONTENT_TYPE, "application/json");
        if let Some(s) = secret {
            r = r.header(header::AUTHORIZATION, format!("Bearer {s}"));
        }
        r.body(Body::from(body.to_string())).unwrap()
    };
    // No token to derive from: the local user creates tokens with the CLI.
    let a = send(
        &app,
        derive(
            None,
            json!({"name": "x", "scope": ["search"], "expires": "1d"}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    let portal = service
        .create_token(NewToken {
            name: "portal".into(),
            scope: Scope {
                actions: [Action::Search, Action::Subjects].into_iter().collect(),
                sources: Some(["clinic".to_owned()].into_iter().collect()),
                projects: None,
                sensitive: false,
            },
            expires_in: chrono::Duration::days(2),
            limits: Limits {
                requests_per_s: 20,
                concurrent: 2,
                max_rows: 500,
            },
            parent: None,
        })
        .unwrap();
    let secret = portal.secret.as_str();
    for (wider, body) in [
        (
            "an action",
            json!({"name": "a", "scope": ["sql"], "expires": "1d"}),
        ),
        (
            "admin",
            json!({"name": "b", "scope": ["admin"], "expires": "1d"}),
        ),
        (
            "a source",
            json!({"name": "c", "scope": ["search"], "sources": ["clinic", "lab"], "expires": "1d"}),
        ),
        (
            "sensitive access",
            json!({"name": "d", "scope": ["search"], "sensitive": true, "expires": "1d"}),
        ),
    ] {
        let a = send(&app, derive(Some(secret), body)).await;
        assert_eq!(
            a.status,
            StatusCode::FORBIDDEN,
            "wider by {wider}: {}",
            a.text()
        );
        assert_eq!(a.json()["code"], "forbidden");
    }
    let a = send(
        &app,
        derive(
            Some(secret),
            json!({"name": "e", "scope": ["search"], "expires": "soon"}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    let a = send(
        &app,
        derive(
            Some(secret),
            json!({"name": "alice", "scope": ["search"], "expires": "30d",
                   "limits": {"requests_per_s": 1000, "concurrent": 1, "max_rows": 100000}}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let child = a.json();
    assert_eq!(child["token"]["parent"], "portal");
    assert_eq!(child["token"]["scope"]["sources"], json!(["clinic"]));
    // 30 days asked, the parent's 2 given; limits the lower of the two.
    assert_eq!(child["token"]["expires_at"], json!(portal.token.expires_at));
    assert_eq!(
        child["token"]["limits"],
        json!({"requests_per_s": 20, "concurrent": 1, "max_rows": 500})
    );
    let alice = child["secret"].as_str().unwrap().to_owned();
    let a = send(&app, bearer("/api/v1/search?q=healthy", &alice)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["total"], 8);
    let a = send(&app, bearer("/api/v1/subjects", &alice)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    // The list never shows a secret; revoking the portal ends alice's token too.
    let listed = serde_json::to_string(&service.tokens().unwrap()).unwrap();
    assert!(!listed.contains(&alice[4..]) && !listed.contains(&secret[4..]));
    assert_eq!(
        service.revoke_token("portal").unwrap(),
        vec!["alice".to_owned(), "portal".to_owned()]
    );
    let a = send(&app, bearer("/api/v1/search?q=healthy", &alice)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
}
