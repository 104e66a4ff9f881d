//! The Elasticsearch-compatible API as portal code meets it: the official
//! `elasticsearch` (9.x) and `opensearch-py` clients (`tests/es/clients.py`), their
//! scroll helper and faceted search, checked against SQL on the same data; tokens
//! sent as Elasticsearch clients send them.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::common::{Sandbox, demo, facet_buckets, repo, simulators};
use crate::http::Served;

fn count(s: &Sandbox, cfg: &str, sql: &str) -> u64 {
    s.csv_with(cfg, sql)
        .parse()
        .unwrap_or_else(|_| panic!("{sql}"))
}

/// `SELECT key, count` rows as a map.
fn groups(s: &Sandbox, cfg: &str, sql: &str) -> BTreeMap<String, u64> {
    let run = s.ok(&["-c", cfg, "sql", "--format", "csv", sql]);
    run.stdout
        .lines()
        .skip(1)
        .map(|l| {
            let (k, n) = l.rsplit_once(',').unwrap();
            (k.to_owned(), n.parse().unwrap())
        })
        .collect()
}

fn map(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

#[test]
fn the_official_clients_search_count_scroll_and_facet_as_sql_counts() {
    let (s, cfg) = demo();
    let served = Served::start_on(&s, &["-c", &cfg], "127.0.0.1:0");
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/es/clients.py"))
        .arg(&served.base)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "clients.py:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = count(&s, &cfg, "SELECT count(*) FROM records");

    // Indices: everything, and one per source, with the tables' counts.
    let mut indices = groups(&s, &cfg, "SELECT source, count(*) FROM records GROUP BY 1");
    indices.insert("crossdex".into(), total);
    assert_eq!(map(&r["indices"]), indices);
    assert_eq!(map(&r["per_index"]), indices);
    assert_eq!(r["two_indices"], indices["xnat"] + indices["redcap"]);
    assert_eq!(r["wildcard_index"], indices["redcap"], "re*");

    // helpers.scan reads every record once.
    assert_eq!(r["scan"], total);

    // Structured clauses, against SQL over the records.
    let sql = |q: &str| count(&s, &cfg, q);
    for (name, want) in [
        ("match_all", total),
        ("match_none", 0),
        (
            "term",
            sql("SELECT count(*) FROM records WHERE source = 'xnat'"),
        ),
        (
            "terms",
            sql("SELECT count(*) FROM records WHERE kind IN ('session', 'scan')"),
        ),
        (
            "bool_should",
            sql("SELECT count(*) FROM records WHERE kind IN ('project', 'study')"),
        ),
        (
            "range",
            sql(
                "SELECT count(*) FROM records WHERE coalesce(created_at, modified_at) >= '2020-01-01T00:00:00Z' AND coalesce(created_at, modified_at) < '2021-01-01T00:00:00Z'",
            ),
        ),
    ] {
        assert_eq!(r["search"][name], want, "{name}");
    }
    // Full-text clauses, against crossdex's SQL over the same search.
    let hits = |q: &str, filter: &str| {
        sql(&format!(
            "SELECT count(*) FROM search('{q}', 100000) s JOIN records r ON r.id = s.id {filter}"
        ))
    };
    for (name, want) in [
        ("match", hits("hippocampus", "")),
        ("match_fuzzy_auto", hits("hipocampus", "")),
        ("match_fuzzy_0", hits("\"hipocampus\"", "")),
        (
            "match_msm",
            sql(
                "SELECT count(*) FROM (SELECT id FROM (SELECT id FROM search('hippocampus', 100000) \
                 UNION ALL SELECT id FROM search('amyloid', 100000) \
                 UNION ALL SELECT id FROM search('sections', 100000)) GROUP BY id HAVING count(*) >= 2)",
            ),
        ),
        ("match_and", hits("hippocampus sections", "")),
        ("match_phrase", hits("\"hippocampus sections\"", "")),
        ("multi_match", hits("hippocampus", "")),
        (
            "query_string",
            hits("hippocampus", "WHERE r.kind = 'image'"),
        ),
        ("simple_query_string", hits("hippocampus OR cerebellum", "")),
        ("prefix", hits("hippocamp*", "")),
        ("wildcard", hits("hippocamp*", "")),
        (
            "bool",
            hits("amyloid", "WHERE r.system = 'xnat' AND r.kind <> 'scan'"),
        ),
    ] {
        assert_eq!(r["search"][name], want, "{name}");
    }
    assert!(
        r["search"]["match_fuzzy_auto"].as_u64().unwrap() > 0
            && r["search"]["match_fuzzy_0"].as_u64().unwrap() == 0,
        "a typo is forgiven unless fuzziness is 0"
    );
    // search, count and msearch agree on every query.
    let names: Vec<&String> = r["search"].as_object().unwrap().keys().collect();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(r["search"][name], r["count"][name], "{name}: count");
        assert_eq!(r["search"][name], r["msearch"][i], "{name}: msearch");
    }

    // post_filter, highlight and a filter aggregation in one request: the hits see the
    // post filter, the aggregations do not.
    let c = &r["combined"];
    let images = hits("hippocampus", "WHERE r.kind = 'image'");
    assert_eq!(c["hits"], images);
    assert_eq!(
        c["highlighted"], true,
        "real fragments, with the asked tags"
    );
    assert_eq!(
        map(&c["kinds"]),
        groups(
            &s,
            &cfg,
            "SELECT r.kind, count(*) FROM search('hippocampus', 100000) s JOIN records r ON r.id = s.id GROUP BY 1"
        )
    );
    assert_eq!(c["images"], images);
    assert_eq!(
        map(&c["groups"]),
        BTreeMap::from([
            (
                "omero".to_owned(),
                hits("hippocampus", "WHERE r.system = 'omero'")
            ),
            (
                "xnat".to_owned(),
                hits("hippocampus", "WHERE r.system = 'xnat'")
            ),
        ])
    );
    let titles = r["title_highlight"].as_array().unwrap();
    assert_eq!(
        titles.len() as u64,
        count(
            &s,
            &cfg,
            "SELECT least(count(*), 5) FROM search('title:hippocampus', 1000)"
        )
    );
    assert!(!titles.is_empty());
    for t in titles {
        assert_eq!(
            t,
            &serde_json::json!([true, true, true]),
            "the title's words marked in the title itself, the body's fragment too"
        );
    }
    for f in r["short_fragments"].as_array().unwrap() {
        assert!(
            f[0].as_u64().unwrap() <= 40 + 20 && f[1] == true,
            "fragment_size 40 cuts fragments around their marks: {f}"
        );
    }
    assert_eq!(
        r["source_filtered"],
        serde_json::json!(["kind", "title"]),
        "_source_includes"
    );

    // The faceted search helper: with source xnat selected, kind and month counted
    // within it, source counted over everything.
    let f = &r["faceted"];
    assert_eq!(f["hits"], indices["xnat"]);
    assert_eq!(
        map(&f["kind"]),
        groups(
            &s,
            &cfg,
            "SELECT kind, count(*) FROM records WHERE source = 'xnat' GROUP BY 1"
        )
    );
    let mut sources = indices.clone();
    sources.remove("crossdex");
    assert_eq!(map(&f["source"]), sources);
    assert_eq!(
        f["month"],
        sql(
            "SELECT count(*) FROM records WHERE source = 'xnat' AND coalesce(created_at, modified_at) IS NOT NULL"
        )
    );

    // Terms options and a histogram with empty months, against SQL.
    let t = &r["terms_options"];
    let kinds = groups(&s, &cfg, "SELECT kind, count(*) FROM records GROUP BY 1");
    let first3: Vec<&String> = kinds.keys().take(3).collect();
    assert_eq!(t["by_key"], serde_json::json!(first3), "order by _key");
    assert_eq!(
        t["by_key_other"],
        total - first3.iter().map(|k| kinds[*k]).sum::<u64>()
    );
    assert_eq!(
        map(&t["include"]),
        kinds
            .iter()
            .filter(|(k, _)| ["session", "scan"].contains(&k.as_str()))
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    );
    assert_eq!(
        map(&t["exclude"]),
        kinds
            .iter()
            .filter(|(k, _)| *k != "scan")
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    );
    assert_eq!(
        t["first_months"],
        serde_json::json!(["2010-01", "2010-02", "2010-03"]),
        "extended_bounds and format"
    );
    assert_eq!(
        t["month_total"],
        sql("SELECT count(*) FROM records WHERE coalesce(created_at, modified_at) IS NOT NULL")
    );
    let last = s.csv_with(
        &cfg,
        "SELECT date_part('year', max(coalesce(created_at, modified_at))) * 12 + date_part('month', max(coalesce(created_at, modified_at))) FROM records",
    );
    let last: f64 = last.parse().unwrap();
    assert_eq!(
        t["months_listed"],
        (last as u64) - (2010 * 12 + 1) + 1,
        "every month from the lower bound to the last record's, empty ones too"
    );
    assert_eq!(
        r["strict"],
        serde_json::json!([400, "parsing_exception"]),
        "strict mode refuses an unknown body field"
    );

    assert_eq!(r["opensearch"]["match"], r["search"]["match"]);
    assert_eq!(r["opensearch"]["count"], total);
    assert_eq!(
        r["errors"]["missing index"],
        serde_json::json!([404, "index_not_found_exception"])
    );
    assert_eq!(r["errors"]["unknown query"][0], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_work_as_api_keys_and_an_index_out_of_scope_reads_as_missing() {
    let (s, cfg) = demo();
    let secret = s
        .ok(&[
            "-c",
            &cfg,
            "token",
            "create",
            "portal",
            "--scope",
            "search",
            "--sources",
            "xnat",
            "--expires",
            "1d",
        ])
        .stdout
        .trim()
        .to_owned();
    let xnat = count(
        &s,
        &cfg,
        "SELECT count(*) FROM records WHERE source = 'xnat'",
    );
    let served = Served::start_on(&s, &["-c", &cfg], "127.0.0.1:0");
    let http = reqwest::Client::new();
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    for auth in [
        format!("ApiKey {}", b64(&format!("portal:{secret}"))),
        format!("Basic {}", b64(&format!("portal:{secret}"))),
        format!("Bearer {secret}"),
    ] {
        let r = http
            .post(format!("{}/crossdex/_count", served.base))
            .header("Authorization", &auth)
            .header(
                "Content-Type",
                "application/vnd.elasticsearch+json; compatible-with=9",
            )
            .body(r#"{"query": {"match_all": {}}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{auth}");
        assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["count"], xnat, "{auth}: the token's source only");
        // Another source's index answers exactly as a missing one.
        let mut answers = Vec::new();
        for index in ["redcap", "nowhere"] {
            let r = http
                .get(format!("{}/{index}/_search", served.base))
                .header("Authorization", &auth)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let text = r.text().await.unwrap().replace(index, "X");
            answers.push((status, text));
        }
        assert_eq!(answers[0], answers[1]);
        assert_eq!(answers[0].0, 404);
    }
    // The tables' path reads within the scope too: a cardinality and a terms
    // aggregation no facet holds, hits sorted by a field.
    let bearer = format!("Bearer {secret}");
    let post = |body: &'static str| {
        http.post(format!("{}/crossdex/_search", served.base))
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let v: Value = post(
        r#"{"size": 3, "sort": [{"title": "asc"}],
            "aggs": {"ids": {"cardinality": {"field": "native_id"}},
                     "sources": {"terms": {"field": "source", "include": ".*"}}}}"#,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["hits"]["total"]["value"], xnat);
    assert_eq!(
        v["aggregations"]["ids"]["value"], xnat,
        "in-scope values only"
    );
    assert_eq!(
        v["aggregations"]["sources"]["buckets"],
        serde_json::json!([{"key": "xnat", "doc_count": xnat}])
    );
    // A search-only token sees summaries, and may not read observation values.
    let mut keys: Vec<&String> = v["hits"]["hits"][0]["_source"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["id", "kind", "source", "subject_id", "system", "title"],
        "no record view without the subjects action"
    );
    for body in [
        r#"{"query": {"range": {"weight": {"gte": 60}}}}"#,
        r#"{"aggs": {"w": {"avg": {"field": "weight"}}}}"#,
        r#"{"sort": [{"weight": "desc"}]}"#,
    ] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), 403, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "security_exception", "{body}");
    }
    let mapping: Value = http
        .get(format!("{}/crossdex/_mapping", served.base))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        mapping["crossdex"]["mappings"]["properties"]
            .get("weight")
            .is_none(),
        "no observation fields in its mapping"
    );

    // No token: refused; a wrong one too.
    let r = http
        .get(format!("{}/crossdex/_search", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/crossdex/_search", served.base))
        .header("Authorization", format!("ApiKey {}", b64("portal:wrong")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Runs `tests/es/typed.py` (typed fields, structured clauses, sorting, search_after,
/// the tables' aggregations) against DuckDB on the sandbox's Parquet rows.
fn typed_fields_agree_with_duckdb(s: &Sandbox, cfg: &str, data_dir: &std::path::Path, label: &str) {
    let served = Served::start_on(s, &["-c", cfg], "127.0.0.1:0");
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/es/typed.py"))
        .arg(&served.base)
        .arg(data_dir)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("\n0 disagreements"),
        "{label}: typed.py disagrees with DuckDB:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn typed_fields_clauses_sorts_and_aggregations_agree_with_duckdb_on_the_demo() {
    let (s, cfg) = demo();
    typed_fields_agree_with_duckdb(&s, &cfg, &s.path().join("demo-data"), "the demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_fields_agree_with_duckdb_on_a_small_cohort() {
    let s = Sandbox::new();
    let (_sims, cfg) = simulators(&s, 12).await;
    s.ok(&["-c", &cfg, "sync", "--all"]);
    typed_fields_agree_with_duckdb(&s, &cfg, &s.data_dir(), "12 subjects");
}

/// The example portal (`examples/portal`, Searchkit with InstantSearch, built by
/// `npm ci && npm run build`, which `.ci/run` does) in headless Chromium: typing a
/// query shows the API's total, hits with highlighted words, and the API's facet
/// counts; ticking a facet value narrows the hits to that value's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_in_chromium_shows_highlighted_hits_and_the_apis_facet_counts() {
    // Built as its README says, from the locked npm packages.
    let portal = repo().join("examples/portal");
    if !portal.join("node_modules").exists() {
        let ci = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&portal)
            .output()
            .expect("npm runs (Node.js is needed for the portal's test)");
        assert!(
            ci.status.success(),
            "npm ci: {}",
            String::from_utf8_lossy(&ci.stderr)
        );
    }
    let build = std::process::Command::new("npm")
        .args(["run", "build"])
        .current_dir(&portal)
        .output()
        .expect("npm runs");
    assert!(
        build.status.success(),
        "npm run build: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let dist = portal.join("dist");
    let (s, cfg) = demo();
    // The page's own origin, which crossdex must allow.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = std::fs::read_to_string(&cfg).unwrap();
    config.push_str(&format!(
        "\n[server]\ncors_origins = [\"http://127.0.0.1:{port}\"]\n"
    ));
    std::fs::write(&cfg, config).unwrap();
    let served = Served::start_on(&s, &["-c", &cfg], "127.0.0.1:0");
    let run = std::process::Command::new("python3")
        .arg(repo().join("tests/portal/browser.py"))
        .arg(&served.base)
        .arg(&dist)
        .arg(port.to_string())
        .arg("hippocampus")
        .output()
        .expect("python3 runs");
    assert!(
        run.status.success(),
        "browser.py:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let page: Value = serde_json::from_slice(&run.stdout).unwrap();

    // The same question through crossdex's own API: Searchkit asks for the word with
    // typos forgiven, as a prefix, or as a phrase.
    let api: Value = reqwest::get(format!(
        "{}/api/v1/search?q=hippocampus%20OR%20hippocampus*&limit=10&facets=10",
        served.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(page["total"].as_u64().unwrap() > 10, "{page}");
    assert_eq!(page["total"], api["total"]);
    for facet in ["source", "kind", "project"] {
        assert_eq!(
            map(&page["facets"][facet]),
            facet_buckets(&api["facets"][facet]),
            "{facet} facet"
        );
    }
    let hits = page["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 10);
    for hit in hits {
        let marked = hit["marked"].as_array().unwrap();
        assert!(
            !marked.is_empty()
                && marked.iter().all(|m| m
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .starts_with("hippocamp")),
            "every hit shows its matched words highlighted: {hit}"
        );
    }
    let kind = page["refined_kind"].as_str().unwrap();
    assert_eq!(
        page["refined_total"],
        facet_buckets(&api["facets"]["kind"])[kind],
        "ticking kind {kind} shows its count"
    );
}
