//! `crossdex sim` as a user meets it: five servers on consecutive ports, a written
//! config whose credentials work, a truth file, and a clean stop on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Sandbox, simulators};

/// Stops the simulators even when an assertion fails first.
struct Running(Child);

impl Running {
    /// Sends `signal` (`-INT`, `-TERM`) and returns the exit code.
    fn stop_with(&mut self, signal: &str) -> Option<i32> {
        let pid = self.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} {pid}");
        self.0.wait().expect("exit").code()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `key = "value"` of a `[sources.<name>]` table of the written config.
fn setting(config: &str, source: &str, key: &str) -> String {
    let header = format!("[sources.{source}]");
    let table = config.split(&header).nth(1).expect("table present");
    let table = table.split("\n[").next().unwrap_or(table);
    // Systems without a connector in this build are written commented out.
    table
        .lines()
        .map(|l| l.trim_start_matches("# "))
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("{source}.{key} missing"))
}

/// Starts `crossdex sim` on five consecutive free ports below the ephemeral range,
/// trying another base when one of them is taken. Returns the process, the base and the
/// banner it printed.
fn start_sim(s: &Sandbox) -> (Running, u16, String) {
    let mut last = String::new();
    for attempt in 0..8u32 {
        let base = 20_000 + ((std::process::id() + attempt * 977) % 2_400) as u16 * 5;
        let mut child = s
            .command()
            .args(["sim", "--subjects", "60", "--port-base", &base.to_string()])
            .args(["--write-config", "c.toml", "--truth", "t.csv"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("crossdex sim starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut banner = String::new();
        let mut serving = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("Serving until Ctrl-C") {
                serving = true;
                break;
            }
        }
        if serving {
            return (Running(child), base, banner);
        }
        let out = child.wait_with_output().expect("exit");
        last = format!("{banner}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            last.contains("cannot listen"),
            "crossdex sim failed:\n{last}"
        );
    }
    panic!("no free ports for the simulators:\n{last}");
}

#[tokio::test]
async fn sim_serves_the_five_systems_as_they_answer() {
    let s = Sandbox::new();
    let (mut running, base, banner) = start_sim(&s);
    for (i, name) in ["XNAT", "REDCap", "OMERO", "tranSMART", "eLabFTW"]
        .iter()
        .enumerate()
    {
        let url = format!("http://127.0.0.1:{}", base + i as u16);
        assert!(
            banner.lines().any(|l| l.contains(name) && l.contains(&url)),
            "{name} at {url}:\n{banner}"
        );
    }
    let config = std::fs::read_to_string(s.path().join("c.toml")).expect("config written");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");

    // XNAT: a ResultSet whose totalRecords is a string.
    let xnat = setting(&config, "xnat", "url");
    let v: Value = http
        .get(format!("{xnat}/data/projects?format=json"))
        .basic_auth(
            setting(&config, "xnat", "username"),
            Some(setting(&config, "xnat", "password")),
        )
        .send()
        .await
        .expect("xnat")
        .json()
        .await
        .expect("json");
    assert!(v["ResultSet"]["totalRecords"].is_string(), "{v}");

    // REDCap: a bad token gets 403 and REDCap's error body.
    let r = http
        .post(setting(&config, "redcap", "url"))
        .form(&[("token", "BAD"), ("content", "record"), ("format", "json")])
        .send()
        .await
        .expect("redcap");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "You do not have permissions to use the API"
    );
    let r = http
        .post(setting(&config, "redcap", "url"))
        .form(&[
            ("token", setting(&config, "redcap", "token").as_str()),
            ("content", "record"),
            ("format", "json"),
        ])
        .send()
        .await
        .expect("redcap");
    assert_eq!(r.status(), 200, "the written token works");

    // OMERO: CSRF token, login, then projects with data and meta.
    let omero = setting(&config, "omero", "url");
    let r = http
        .get(format!("{omero}/api/v0/token/"))
        .send()
        .await
        .expect("token");
    let csrf_cookie = r.headers()["set-cookie"]
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
    let r = http
        .post(format!("{omero}/api/v0/login/"))
        .header("cookie", &csrf_cookie)
        .header("X-CSRFToken", &token)
        .form(&[
            ("server", "1"),
            ("username", setting(&config, "omero", "username").as_str()),
            ("password", setting(&config, "omero", "password").as_str()),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let session = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let v: Value = http
        .get(format!("{omero}/api/v0/m/projects/"))
        .header("cookie", format!("{csrf_cookie}; {session}"))
        .send()
        .await
        .expect("projects")
        .json()
        .await
        .expect("json");
    assert!(
        v["data"].is_array() && v["meta"]["totalCount"].is_u64(),
        "{v}"
    );

    // tranSMART: 401 without a token.
    let r = http
        .get(format!(
            "{}/v2/studies",
            setting(&config, "transmart", "url")
        ))
        .send()
        .await
        .expect("transmart");
    assert_eq!(r.status(), 401);

    // eLabFTW: the key from the config, raw in Authorization, lists experiments.
    let v: Value = http
        .get(format!(
            "{}/api/v2/experiments",
            setting(&config, "elabftw", "url")
        ))
        .header("Authorization", setting(&config, "elabftw", "api_key"))
        .send()
        .await
        .expect("elabftw")
        .json()
        .await
        .expect("json");
    assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{v}");

    // The written config drives crossdex itself: doctor, sync, and deep links that open.
    let cfg = s.path().join("c.toml");
    let cfg = cfg.to_str().expect("utf-8");
    let data = s.path().join("sim-data");
    let data = data.to_str().expect("utf-8");
    // `crossdex sql --format csv` on the synced data: the rows, header left out.
    let csv = |sql: &str| -> Vec<String> {
        let run = s.run(&["-c", cfg, "--data-dir", data, "sql", "--format", "csv", sql]);
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout.lines().skip(1).map(str::to_owned).collect()
    };
    let run = s.run(&["-c", cfg, "--data-dir", data, "doctor"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("xnat") && run.stdout.contains("redcap"),
        "{run:?}"
    );
    let run = s.run(&["-c", cfg, "--data-dir", data, "sync", "--all"]);
    assert_eq!(run.code, 0, "{run:?}");
    // Linking with the written rules: the seeded conflicts fail a strict nightly check.
    let run = s.run(&[
        "-c",
        cfg,
        "--data-dir",
        data,
        "link",
        "report",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).expect("json report");
    assert!(
        report["conflicts"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{report}"
    );
    assert_eq!(
        report["unlinked"],
        serde_json::json!([]),
        "every spelling is read by a rule"
    );
    let run = s.run(&[
        "-c",
        cfg,
        "--data-dir",
        data,
        "link",
        "report",
        "--fail-on",
        "conflicts",
    ]);
    assert_eq!(run.code, 1, "{run:?}");

    let rows = csv(
        "SELECT url FROM records WHERE system = 'xnat' AND kind = 'session' ORDER BY id LIMIT 1",
    );
    let url = rows.first().expect("a session url").clone();
    let page = http
        .get(&url)
        .basic_auth(
            setting(&config, "xnat", "username"),
            Some(setting(&config, "xnat", "password")),
        )
        .send()
        .await
        .expect("deep link");
    assert_eq!(page.status(), 200, "{url}");

    // The truth file is what the servers hold.
    let truth = std::fs::read_to_string(s.path().join("t.csv")).expect("truth written");
    assert!(truth.starts_with("person,system,subject_key\n"));
    let served = http
        .get(format!("{xnat}/_sim/truth"))
        .send()
        .await
        .expect("truth")
        .text()
        .await
        .expect("body");
    assert_eq!(truth, served);
    for sys in ["xnat", "redcap", "omero", "transmart", "elabftw"] {
        assert!(
            truth.lines().any(|l| l.split(',').nth(1) == Some(sys)),
            "{sys} in the truth"
        );
    }

    // One subject, every source side by side, found by any spelling of its key.
    let run = s.run(&["-c", cfg, "--data-dir", data, "subject", "INT-003"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("Subject subj:INT_0003"), "{run:?}");
    for part in [
        "Keys",
        "Records",
        "Timeline",
        "xnat",
        "redcap",
        "Session date",
    ] {
        assert!(run.stdout.contains(part), "{part}: {run:?}");
    }
    let run = s.run(&["-c", cfg, "--data-dir", data, "subject", "NOBODY"]);
    assert_eq!(run.code, 2, "{run:?}");

    // Sync resolves subject ids; a day later, every key keeps its subject.
    let links = || -> std::collections::BTreeMap<(String, String), String> {
        csv("SELECT source, subject_key, subject_id FROM subject_links WHERE confidence > 0")
            .iter()
            .filter_map(|l| {
                let p: Vec<&str> = l.splitn(3, ',').collect();
                (p.len() == 3).then(|| ((p[0].to_owned(), p[1].to_owned()), p[2].to_owned()))
            })
            .collect()
    };
    let before = links();
    assert!(before.len() > 100, "{} links", before.len());

    // Against the truth file: no two people merged, and every same-person pair linked
    // but for the keys the report names (the cohort's seeded conflicts).
    let truth_rows: Vec<(String, String, String)> = std::fs::read_to_string(s.path().join("t.csv"))
        .expect("truth")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let p: Vec<&str> = l.splitn(3, ',').collect();
            (p.len() == 3).then(|| (p[0].to_owned(), p[1].to_owned(), p[2].to_owned()))
        })
        .collect();
    let as_links: Vec<crossdex_linking::Link> = before
        .iter()
        .map(|((source, key), id)| crossdex_linking::Link {
            subject_id: id.clone(),
            source: source.clone(),
            subject_key: key.clone(),
            matched: key.clone(),
            rule: String::new(),
            confidence: 1.0,
        })
        .collect();
    let reported: std::collections::BTreeSet<(String, String)> = report["conflicts"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(report["unlinked"].as_array().into_iter().flatten())
        .map(|c| {
            (
                c["source"].as_str().unwrap_or("").to_owned(),
                c["subject_key"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for ((a, b), (precision, _)) in crossdex_linking::pair_scores(&as_links, &truth_rows) {
        assert_eq!(precision, 1.0, "{a} × {b}: two people merged");
    }
    let kept: Vec<_> = truth_rows
        .iter()
        .filter(|t| !reported.contains(&(t.1.clone(), t.2.clone())))
        .cloned()
        .collect();
    for ((a, b), (_, recall)) in crossdex_linking::pair_scores(&as_links, &kept) {
        assert!(recall >= 0.99, "{a} × {b}: recall {recall}");
    }
    let rows = csv(
        "SELECT count(*) FROM records WHERE system = 'xnat' AND kind = 'session' AND subject_id IS NULL",
    );
    let orphans: u64 = rows.first().and_then(|l| l.parse().ok()).unwrap_or(999);
    let flagged: usize = csv("SELECT count(*) FROM subjects WHERE conflicts")
        .first()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    assert_eq!(
        flagged,
        report["conflicts"].as_array().map_or(0, Vec::len),
        "every reported conflict flags its subject"
    );
    assert!(
        orphans < 20,
        "only sessions of conflicting subjects lack a subject_id: {orphans}"
    );
    let r = http
        .post(format!("{xnat}/_sim/advance"))
        .send()
        .await
        .expect("advance");
    assert_eq!(r.status(), 200);
    let run = s.run(&["-c", cfg, "--data-dir", data, "sync", "--all"]);
    assert_eq!(run.code, 0, "{run:?}");
    let after = links();
    assert!(after.len() > before.len(), "new enrolments were linked");
    for (key, id) in &before {
        if let Some(now) = after.get(key) {
            assert_eq!(now, id, "{key:?} changed subject");
        }
    }

    // Ctrl-C stops it cleanly.
    assert_eq!(
        running.stop_with("-INT"),
        Some(0),
        "exit status after Ctrl-C"
    );
}

#[test]
fn sim_refuses_bad_flags_with_a_reason() {
    let s = Sandbox::new();
    let run = s.run(&["sim", "--fault", "redcap:error_rate=3"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("error_rate") && run.stderr.contains("0 to 1"),
        "{run:?}"
    );
    let run = s.run(&["sim", "--subjects", "0"]);
    assert_eq!(run.code, 2, "{run:?}");
}

fn count(s: &Sandbox, cfg: &str, sql: &str) -> u64 {
    let run = s.run(&["-c", cfg, "sql", "--format", "csv", sql]);
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_down_leaves_the_others_synced() {
    let s = Sandbox::new();
    let (mut sims, cfg) = simulators(&s, 30).await;
    // REDCap's server is down: its port refuses connections.
    sims.stop_system(crossdex_sim::System::Redcap).await;
    let cfg = cfg.as_str();
    let run = tokio::task::block_in_place(|| s.run(&["-c", cfg, "sync", "--all"]));
    assert_eq!(run.code, 1, "{run:?}");
    let status = tokio::task::block_in_place(|| s.run(&["-c", cfg, "status"]));
    let redcap = status
        .stdout
        .lines()
        .find(|l| l.contains("| redcap"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        redcap.contains("failed") && redcap.contains("source unreachable"),
        "the failure is named: {status:?}"
    );
    for system in ["xnat", "omero", "transmart", "elabftw"] {
        let line = status
            .stdout
            .lines()
            .find(|l| l.contains(&format!("| {system}")))
            .unwrap_or_default();
        assert!(line.contains("succeeded"), "{system}: {status:?}");
    }
    let n = tokio::task::block_in_place(|| {
        count(
            &s,
            cfg,
            "SELECT count(*) FROM records WHERE system = 'xnat'",
        )
    });
    assert!(n > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_midway_is_completed_by_the_next_one() {
    let s = Sandbox::new();
    let (sims, cfg) = simulators(&s, 120).await;
    // Slow answers make the sync long enough to be killed in the middle; XNAT,
    // the largest, slowest of all.
    for system in crossdex_sim::System::ALL {
        let latency_ms = if system == crossdex_sim::System::Xnat {
            25
        } else {
            5
        };
        sims.set_faults(
            system,
            crossdex_sim::Faults {
                latency_ms,
                ..crossdex_sim::Faults::default()
            },
        );
    }
    let child = s
        .command()
        .args(["-c", &cfg, "sync", "--all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sync starts");
    let mut child = Running(child);
    let cfg = cfg.as_str();
    // SIGKILL as soon as one source is committed, while others are still syncing.
    let committed_sql = "SELECT source FROM sync_runs WHERE status = 'succeeded' ORDER BY source";
    let committed = || -> Vec<String> {
        let run = s.run(&["-c", cfg, "sql", "--format", "csv", committed_sql]);
        run.stdout.lines().skip(1).map(str::to_owned).collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if !tokio::task::block_in_place(committed).is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no source was ever committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.0.kill();
    let _ = child.0.wait();
    // What the killed process committed, read once it is dead.
    let before = tokio::task::block_in_place(committed);
    assert!(
        !before.contains(&"xnat".to_owned()),
        "the kill came while XNAT was still syncing: {before:?}"
    );
    for system in crossdex_sim::System::ALL {
        sims.set_faults(system, crossdex_sim::Faults::default());
    }
    let run = tokio::task::block_in_place(|| s.run(&["-c", cfg, "sync", "--all"]));
    assert_eq!(run.code, 0, "{run:?}");
    // The rerun resumes each committed source from its checkpoint; the others start
    // over, since nothing of them was committed.
    let modes =
        tokio::task::block_in_place(|| {
            s.run(&[
            "-c", cfg, "sql", "--format", "csv",
            "SELECT source, last_value(mode ORDER BY started_at) FROM sync_runs GROUP BY source",
        ])
        });
    for line in modes.stdout.lines().skip(1) {
        let (source, mode) = line.split_once(',').expect("two columns");
        let expected = if before.iter().any(|b| b == source) {
            "incremental"
        } else {
            "full"
        };
        assert_eq!(mode, expected, "{source} after the kill: {modes:?}");
    }
    let total = tokio::task::block_in_place(|| count(&s, cfg, "SELECT count(*) FROM records"));
    let distinct =
        tokio::task::block_in_place(|| count(&s, cfg, "SELECT count(DISTINCT id) FROM records"));
    assert_eq!(total, distinct, "no duplicates");
    let expected = sims.with_world(crate::compliance::served_total) as u64;
    assert_eq!(total, expected, "every entity the simulators serve, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_syncs_each_source_on_schedule_and_stops_cleanly() {
    let s = Sandbox::new();
    let (_sims, cfg) = simulators(&s, 30).await;
    // Every source every two seconds (a leading seconds field), read in UTC.
    let text = std::fs::read_to_string(&cfg).expect("config");
    let scheduled: String = text
        .lines()
        .map(|l| {
            if l.starts_with("type = ") {
                format!("{l}\nschedule = \"*/2 * * * * *\"\ntimezone = \"UTC\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&cfg, scheduled).expect("config");
    let cfg = cfg.as_str();
    let status = tokio::task::block_in_place(|| s.run(&["-c", cfg, "status", "--format", "csv"]));
    assert!(
        status.stdout.contains("*/2 * * * * * (UTC)"),
        "status shows each schedule before any run: {status:?}"
    );

    let mut serve = Running(
        s.command()
            .args(["-c", cfg, "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts"),
    );
    // Runs per source, by mode; waits (polling, with a generous bound for a loaded
    // machine) until every source has had three incremental runs.
    let runs_sql = "SELECT source, mode, status, CAST(to_unixtime(started_at) * 1000000 AS BIGINT), \
                    CAST(to_unixtime(finished_at) * 1000000 AS BIGINT) FROM sync_runs ORDER BY source, started_at";
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let run =
            tokio::task::block_in_place(|| s.run(&["-c", cfg, "sql", "--format", "csv", runs_sql]));
        let rows: Vec<Vec<String>> = run
            .stdout
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect();
        let incremental = |source: &str| {
            rows.iter()
                .filter(|r| r[0] == source && r[1] == "incremental")
                .count()
        };
        if ["xnat", "redcap", "omero", "transmart", "elabftw"]
            .iter()
            .all(|src| incremental(src) >= 3)
        {
            break rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three incremental runs per source never came: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    assert_eq!(
        serve.stop_with("-TERM"),
        Some(0),
        "exit status after SIGTERM"
    );
    let mut log = String::new();
    if let Some(mut err) = serve.0.stderr.take() {
        std::io::Read::read_to_string(&mut err, &mut log).expect("log");
    }
    assert!(log.contains("stopping: no new runs"), "{log}");

    for source in ["xnat", "redcap", "omero", "transmart", "elabftw"] {
        let mine: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == source).collect();
        assert_eq!(mine[0][1], "full", "the first run of a new source is full");
        for r in &mine {
            assert_eq!(r[2], "succeeded", "{source}: {r:?}");
        }
        for pair in mine.windows(2) {
            let finished: i64 = pair[0][4].parse().expect("time");
            let started: i64 = pair[1][3].parse().expect("time");
            assert!(
                finished <= started,
                "{source}: a run started before the previous one finished: {pair:?}"
            );
        }
    }
    let status = tokio::task::block_in_place(|| s.run(&["-c", cfg, "status", "--format", "json"]));
    let status: Value = serde_json::from_str(&status.stdout).expect("json");
    let rows = status["sources"].as_array().expect("sources");
    assert_eq!(rows.len(), 5);
    for r in rows {
        assert_eq!(r["last_run"]["mode"], "incremental", "{r}");
        assert!(r["next_run"].is_string(), "status shows the next run: {r}");
    }
}
