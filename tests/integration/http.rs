//! `crossdex serve` as web portals and scripts meet it: the curl examples of
//! docs/http-api.md, Python's requests and pyarrow, schemathesis against the served
//! OpenAPI document, and 32 clients reading while a sync commits.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Sandbox, repo, simulators};

/// A running `crossdex serve`, stopped (SIGTERM) when dropped.
pub(crate) struct Served {
    child: Child,
    pub(crate) base: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    fn start(s: &Sandbox, args: &[&str]) -> Served {
        Served::start_on(s, args, "127.0.0.1:0")
    }

    pub(crate) fn start_on(s: &Sandbox, args: &[&str], listen: &str) -> Served {
        let mut child = s
            .command()
            .args(args)
            .args(["serve", "--listen", listen, "--no-schedule"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("serving the HTTP API on ").nth(1) {
                        let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                        let _ = tx.send(url);
                    }
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve never said where: {}", log.lock().unwrap()));
        Served {
            child,
            base: url
                .trim_end_matches('/')
                .trim_end_matches("/api/v1")
                .to_owned(),
            log,
        }
    }

    fn stop(&mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn sh(cmd: &str) -> (i32, String, String) {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("sh runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The examples of docs/http-api.md, run against `serve` on the demo's data: each
/// curl answers, and where the manual shows an answer, the real one has its shape (the
/// same top-level fields, or an array, or the same CSV header).
#[test]
fn the_manuals_curl_examples_answer_as_documented() {
    let s = Sandbox::new();
    let d = s.path().join("demo-data");
    let d = d.to_str().unwrap();
    s.ok(&["--data-dir", d, "demo", "--no-ui"]);
    let cfg = s.path().join("demo-data-demo.toml");
    let cfg = cfg.to_str().unwrap();
    let mut served = Served::start(&s, &["-c", cfg]);
    let manual = std::fs::read_to_string(repo().join("docs/http-api.md")).unwrap();
    let blocks: Vec<(&str, String)> = {
        let mut out = Vec::new();
        let mut lines = manual.lines();
        while let Some(l) = lines.next() {
            if let Some(lang) = l.strip_prefix("```")
                && !lang.is_empty()
            {
                let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
                out.push((lang, body.join("\n")));
            }
        }
        out
    };
    let mut ran = 0;
    for (i, (lang, body)) in blocks.iter().enumerate() {
        if *lang != "sh" || !body.starts_with("curl") {
            continue;
        }
        let cmd = body.replace("http://127.0.0.1:8742", &served.base);
        let (code, out, err) = sh(&format!("{cmd} -w '\\n%{{http_code}}'"));
        assert_eq!(code, 0, "{cmd}: {err}");
        let (answer, status) = out.rsplit_once('\n').unwrap();
        let expected_status = if cmd.contains("-X POST") {
            "202"
        } else {
            "200"
        };
        assert_eq!(status, expected_status, "{cmd}: {answer}");
        ran += 1;
        let Some((next_lang, shown)) = blocks.get(i + 1) else {
            continue;
        };
        match *next_lang {
            "json" => {
                let shown: Value = serde_json::from_str(shown)
                    .unwrap_or_else(|e| panic!("the manual's answer to {cmd} is not JSON: {e}"));
                let real: Value =
                    serde_json::from_str(answer).unwrap_or_else(|e| panic!("{cmd}: {e}: {answer}"));
                match (&shown, &real) {
                    (Value::Object(shown), Value::Object(real)) => {
                        for key in shown.keys() {
                            assert!(real.contains_key(key), "{cmd}: no `{key}` in {answer}");
                        }
                    }
                    (Value::Array(_), Value::Array(real)) => {
                        assert!(!real.is_empty(), "{cmd}: empty")
                    }
                    _ => panic!("{cmd}: the manual shows {shown}, the answer is {answer}"),
                }
            }
            "csv" => assert_eq!(
                answer.lines().next(),
                shown.lines().next(),
                "{cmd}: {answer}"
            ),
            _ => {}
        }
    }
    assert!(ran >= 15, "only {ran} examples ran");
    assert_eq!(served.stop(), Some(0), "{}", served.log.lock().unwrap());
}

/// Python's requests and pyarrow read `/sql` as Arrow and CSV, and get what `crossdex
/// sql` prints; schemathesis finds no server error and no answer outside its schema.
#[test]
fn python_clients_read_arrow_and_csv_and_the_schema_holds() {
    let s = Sandbox::new();
    s.ok(&["sync", "--all"]);
    let served = Served::start(&s, &[]);
    let count = s.csv("SELECT count(*) FROM observations")[0][0].clone();
    let csv_sql =
        "SELECT source, variable, count(*) AS n FROM observations GROUP BY 1, 2 ORDER BY 1, 2";
    let cli_csv = s.ok(&["sql", "--format", "csv", csv_sql]).stdout;
    let script = format!(
        r#"
import sys, pyarrow as pa, requests
base = {base:?}
r = requests.post(base + "/api/v1/sql", data="SELECT * FROM observations",
                  headers={{"Accept": "application/vnd.apache.arrow.stream", "Content-Type": "text/plain"}})
r.raise_for_status()
table = pa.ipc.open_stream(r.content).read_all()
print(table.num_rows)
r = requests.post(base + "/api/v1/sql", json={{"sql": {csv_sql:?}}}, headers={{"Accept": "text/csv"}})
r.raise_for_status()
sys.stdout.write(r.text)
"#,
        base = served.base,
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rows, csv) = stdout.split_once('\n').unwrap();
    assert_eq!(rows, count, "pyarrow read every observation");
    assert_eq!(csv, cli_csv, "CSV over HTTP is what crossdex sql prints");

    // Property-based: every operation of the served document, generated inputs.
    let out = std::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/v1/openapi.json", served.base))
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
            "--max-examples",
            "25",
            // The same inputs on every run: a finding is reproducible, CI is not flaky.
            "--seed",
            "20261202",
            "--exclude-path-regex",
            "/sources/.*/sync",
            "--url",
        ])
        .arg(format!("{}/api/v1", served.base))
        .output()
        .expect("schemathesis runs");
    assert!(
        out.status.success(),
        "schemathesis:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 32 clients search and query while a sync commits: no error, and every count of a
/// source is its count before or after the sync, never one in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_a_source_before_or_after_a_sync_never_between() {
    let s = Sandbox::new();
    let (sims, cfg) = simulators(&s, 80).await;
    let cfg = cfg.as_str();
    tokio::task::block_in_place(|| s.ok(&["-c", cfg, "sync", "--all"]));
    let counts = |s: &Sandbox| -> std::collections::BTreeMap<String, u64> {
        s.csv("SELECT source, count(*) FROM records GROUP BY source")
            .into_iter()
            .map(|r| (r[0].clone(), r[1].parse().unwrap()))
            .collect()
    };
    let before = tokio::task::block_in_place(|| counts(&s));
    let served = tokio::task::block_in_place(|| Served::start(&s, &["-c", cfg]));
    sims.advance(3);
    let client = reqwest::Client::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..32 {
        let client = client.clone();
        let base = served.base.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(String, u64)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if i % 2 == 0 {
                    let r = client
                        .post(format!("{base}/api/v1/sql"))
                        .body("SELECT source, count(*) AS n FROM records GROUP BY source")
                        .send()
                        .await
                        .expect("sql answers");
                    assert_eq!(r.status(), 200);
                    let v: Value = r.json().await.expect("json");
                    for row in v["rows"].as_array().unwrap() {
                        seen.push((
                            row[0].as_str().unwrap().to_owned(),
                            row[1].as_u64().unwrap(),
                        ));
                    }
                } else {
                    let r = client
                        .get(format!("{base}/api/v1/search?q=*&limit=5&source=redcap"))
                        .send()
                        .await
                        .expect("search answers");
                    assert_eq!(r.status(), 200);
                    let v: Value = r.json().await.expect("json");
                    seen.push(("redcap".into(), v["total"].as_u64().unwrap()));
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| s.ok(&["-c", cfg, "sync", "--all"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let after = tokio::task::block_in_place(|| counts(&s));
    assert_ne!(
        before, after,
        "three simulated days change what sources hold"
    );
    let mut observed = 0;
    for c in clients {
        for (source, n) in c.await.expect("client") {
            observed += 1;
            assert!(
                Some(&n) == before.get(&source) || Some(&n) == after.get(&source),
                "{source}: {n}, before {:?}, after {:?}",
                before.get(&source),
                after.get(&source)
            );
        }
    }
    assert!(observed > 64, "{observed}");
    drop(served);
}
