//! The command line as a user meets it: the acceptance path on the sample exports,
//! configuration errors, exit codes and help.

use crate::common::Sandbox;

#[test]
fn samples_sync_and_query() {
    let s = Sandbox::new();
    let run = s.ok(&["sync", "--all"]);
    assert!(run.stderr.contains("clinic: partial full sync"), "{run:?}");
    assert!(
        run.stderr
            .contains("redcap_repeat_instance \"one\" is not an integer"),
        "{run:?}"
    );

    let count = s.csv("SELECT count(*) FROM records");
    assert_eq!(
        count,
        [["183"]],
        "110 REDCap rows + 30 participants + 43 samples"
    );

    let run = s.ok(&[
        "sql",
        "--format",
        "json",
        "SELECT r.title FROM search('donepezil') s JOIN records r ON r.id = s.id",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    assert!(!rows.is_empty(), "{run:?}");
    assert!(rows.iter().all(|r| {
        r["title"]
            .as_str()
            .unwrap()
            .contains("redcap_memory_clinic.csv")
    }));

    let mut child = s
        .command()
        .args(["sql", "--format", "csv", "--file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"SELECT count(*) AS n FROM records WHERE source = 'imaging'",
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n30\n");

    let run = s.run(&["sql", "CREATE TABLE t AS SELECT 1"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("only queries are allowed"), "{run:?}");

    let run = s.run(&["sql", "SELECT * FROM nope"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("nope"), "{run:?}");

    let run = s.run(&["sql", "SELECT * FRM records"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("invalid SQL")
            && run.stderr.contains("found: FRM at Line: 1, Column: 10"),
        "{run:?}"
    );
    let run = s.run(&["sql", "SELECT * FROM records WHERE"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("found: EOF at the end of the query"),
        "{run:?}"
    );

    let run = s.run(&["search", "\"unclosed"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("invalid search query"), "{run:?}");
}

#[test]
fn syncing_twice_changes_nothing() {
    let s = Sandbox::new();
    s.ok(&["sync", "--all"]);
    let sql = "SELECT count(*), count(DISTINCT id) FROM records";
    let first = s.csv(sql);
    assert_eq!(first[0][0], first[0][1]);
    let run = s.ok(&["sync", "--all"]);
    assert!(
        run.stderr
            .contains("0 added, 0 updated, 110 unchanged, 0 deleted"),
        "{run:?}"
    );
    assert_eq!(s.csv(sql), first);
    // A row removed from an export disappears at the next sync.
    let tsv = s.path().join("samples/imaging/participants.tsv");
    let text = std::fs::read_to_string(&tsv).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("sub-INT0001\t"))
        .collect();
    std::fs::write(&tsv, kept.join("\n") + "\n").unwrap();
    let run = s.ok(&["sync", "imaging"]);
    assert!(
        run.stderr
            .contains("0 added, 0 updated, 29 unchanged, 1 deleted"),
        "{run:?}"
    );
    assert_eq!(
        s.csv("SELECT count(*) FROM records WHERE source = 'imaging'"),
        [["29"]]
    );
    assert_eq!(
        s.csv("SELECT count(*) FROM search('\"sub-INT0001\"')"),
        [["0"]]
    );
}

#[test]
fn status_shows_the_last_run_of_each_source() {
    let s = Sandbox::new();
    let run = s.ok(&["status"]);
    assert!(
        run.stdout.contains("0 sources")
            && run
                .stdout
                .contains("never synced: biobank, clinic, imaging"),
        "{run:?}"
    );
    s.ok(&["sync", "clinic"]);
    let run = s.ok(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(status["indexed_sources"], 1);
    assert_eq!(status["records"], 110);
    assert_eq!(
        status["never_synced"],
        serde_json::json!(["biobank", "imaging"])
    );
    let clinic = &status["sources"][1];
    assert_eq!(clinic["source"], "clinic");
    assert_eq!(clinic["records"], 110);
    assert_eq!(clinic["last_run"]["status"], "partial");
    assert_eq!(clinic["last_run"]["rejected"], 1);
    assert_eq!(status["sources"][0]["last_run"], serde_json::Value::Null);
}

#[test]
fn global_options_go_before_or_after_the_command() {
    let s = Sandbox::new();
    let elsewhere = s.path().join("elsewhere");
    let d = elsewhere.to_str().unwrap();
    s.ok(&["--data-dir", d, "sync", "clinic"]);
    assert!(!s.data_dir().exists(), "the config's data_dir is untouched");
    let run = s.ok(&[
        "sql",
        "--data-dir",
        d,
        "--format",
        "csv",
        "SELECT count(*) FROM records",
    ]);
    assert_eq!(run.stdout, "count(*)\n110\n");
    let run = s
        .command()
        .env("CROSSDEX_DATA_DIR", d)
        .args(["search", "donepezil", "-n", "1", "--format", "json"])
        .output()
        .unwrap();
    let result: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let hits = result["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert!(result["total"].as_u64().unwrap() >= 1, "{result}");
    assert_eq!(
        hits[0]["highlights"][0].as_str().map(str::to_lowercase),
        Some("donepezil".into())
    );
    assert_eq!(hits[0]["source"], "clinic");
    let run = s.ok(&[
        "--data-dir",
        d,
        "search",
        "--format",
        "csv",
        "-n",
        "2",
        "donepezil \"10\"",
    ]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "score,id,source,kind,subject_id,title,snippet");
    assert_eq!(lines.len(), 3, "{run:?}");
    assert!(
        // Hits carry the linked subject, as `records` does.
        lines[1].contains(",clinic,row,subj:")
            && lines[1].contains("med_name: **donepezil** / med_dose_mg: **10**"),
        "{run:?}"
    );
}

#[test]
fn every_config_key_can_come_from_the_environment() {
    let s = Sandbox::new();
    let other = s.path().join("other-exports");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("a.csv"), "participant_id,score\nP1,3\n").unwrap();
    let run = s
        .command()
        .env("CROSSDEX__SOURCES__IMAGING__PATH", &other)
        .args(["sync", "imaging"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{:?}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(s.csv("SELECT subject_key FROM records"), [["P1"]]);
}

#[test]
fn a_bad_config_names_the_file_the_key_and_the_reason() {
    let s = Sandbox::new();
    let config = s.config();
    let path = config.to_str().unwrap().to_owned();
    let cases = [
        ("[sources.clinic\ntype = \"files\"\n", "line 1"),
        ("data_dirr = \"x\"\n", "unknown field `data_dirr`"),
        (
            "[sources.clinic]\ntype = \"xnatt\"\n",
            "sources.clinic.type",
        ),
        (
            "[sources.clinic]\npath = \"clinic\"\n",
            "sources.clinic.type",
        ),
        (
            "[sources.clinic]\ntype = \"files\"\npth = \"clinic\"\n",
            "sources.clinic.pth",
        ),
        (
            "[sources.clinic]\ntype = \"files\"\npath = \"clinic\"\nrecursive = \"sometimes\"\n",
            "sometimes",
        ),
        (
            "[sources.\"bad name\"]\ntype = \"files\"\npath = \"clinic\"\n",
            "letters, digits",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&config, text).unwrap();
        let run = s.run(&["sync", "--all"]);
        assert_eq!(run.code, 2, "{text}\n{run:?}");
        assert!(run.stderr.contains(&path), "{text}\n{run:?}");
        assert!(
            run.stderr.contains(expected),
            "{text}: expected {expected:?}\n{run:?}"
        );
    }
    let run = s.run(&["--config", "/nonexistent/crossdex.toml", "sync", "--all"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("/nonexistent/crossdex.toml not found")
            && run.stderr.contains("crossdex init"),
        "{run:?}"
    );
}

#[test]
fn usage_errors_exit_2_and_a_failing_source_exits_1() {
    let s = Sandbox::new();
    let run = s.run(&["sync"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("--all") && run.stderr.contains("biobank, clinic, imaging"),
        "{run:?}"
    );
    let run = s.run(&["sync", "clinicc"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no source named `clinicc`"), "{run:?}");

    // One source's folder vanishes: it fails, the others sync, the exit code says so.
    std::fs::remove_dir_all(s.path().join("samples/imaging")).unwrap();
    let run = s.run(&["sync", "--all"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("imaging: failed") && run.stderr.contains("samples/imaging"),
        "{run:?}"
    );
    assert!(run.stderr.contains("1 of 3 sources failed"), "{run:?}");
    assert_eq!(
        s.csv("SELECT source, status FROM sync_runs ORDER BY source"),
        [
            ["biobank", "succeeded"],
            ["clinic", "partial"],
            ["imaging", "failed"]
        ]
    );
    let run = s.run(&["doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("ok      clinic (files): 1 export files"),
        "{run:?}"
    );
    assert!(run.stdout.contains("FAILED  imaging (files)"), "{run:?}");
}

#[test]
fn saved_queries_run_by_name_with_parameters() {
    let s = Sandbox::new();
    s.ok(&["sync", "--all"]);
    let run = s.ok(&["sql", "--list"]);
    assert!(
        run.stdout.contains("low-moca")
            && run
                .stdout
                .contains("--param threshold=<number> (default 26)"),
        "{run:?}"
    );
    let run = s.ok(&[
        "sql",
        "--saved",
        "low-moca",
        "--param",
        "threshold=14",
        "--format",
        "csv",
    ]);
    assert_eq!(
        run.stdout,
        "subject_key,event,moca,source\n12,month_6_arm_1,12.0,clinic\n11,month_6_arm_1,13.0,clinic\n19,month_6_arm_1,13.0,clinic\n"
    );
    let run = s.run(&["sql", "--saved", "low-mocca"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("no saved query named `low-mocca`; available:"),
        "{run:?}"
    );
    let run = s.run(&["sql", "--saved", "search-records"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("parameter `words` of `search-records`: required"),
        "{run:?}"
    );
}

#[test]
fn init_writes_a_config_that_loads() {
    let s = Sandbox::new();
    let path = s.path().join("new.toml");
    let p = path.to_str().unwrap();
    s.ok(&["--config", p, "init"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("[sources.exports]") && text.contains("CROSSDEX__"),
        "{text}"
    );
    let run = s.run(&["--config", p, "init"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("already exists"), "{run:?}");
    std::fs::create_dir(s.path().join("exports")).unwrap();
    let run = s.ok(&["--config", p, "doctor"]);
    assert!(
        run.stdout
            .contains("ok      exports (files): 0 export files"),
        "{run:?}"
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    let s = Sandbox::new();
    for cmd in [
        "init", "doctor", "sync", "status", "search", "sql", "demo", "sim", "subject",
    ] {
        let run = s.ok(&[cmd, "--help"]);
        assert!(run.stdout.contains("Example"), "{cmd} --help:\n{run:?}");
    }
    let run = s.ok(&["--help"]);
    assert!(run.stdout.contains("Exit codes"), "{run:?}");
}

#[test]
fn demo_syncs_links_and_queries_the_simulators() {
    let s = Sandbox::new();
    let d = s.path().join("demo-data");
    let run = s.ok(&[
        "--data-dir",
        d.to_str().unwrap(),
        "demo",
        "--no-ui",
        "--subjects",
        "100",
    ]);
    for system in ["XNAT", "REDCap", "OMERO", "tranSMART", "eLabFTW"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(system) && l.contains("http://127.0.0.1:")),
            "{system} simulated: {run:?}"
        );
    }
    assert!(run.stdout.contains("Subject keys per source"), "{run:?}");
    // records-per-source: what the simulators serve, exactly (their counts are printed
    // at the top), and the bundled exports.
    let row = |cells: &[&str]| {
        run.stdout.lines().any(|l| {
            let parts: Vec<&str> = l.split('|').map(str::trim).collect();
            cells.iter().all(|c| parts.contains(c))
        })
    };
    assert!(
        run.stdout.contains("83 subjects, 186 sessions, 861 scans"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("2 projects, 7 datasets, 104 images"),
        "{run:?}"
    );
    assert!(run.stdout.contains("60 patients"), "{run:?}");
    assert!(run.stdout.contains("9 experiments, 38 items"), "{run:?}");
    for cells in [
        ["xnat", "subject", "83"],
        ["xnat", "session", "186"],
        ["xnat", "scan", "861"],
        ["redcap", "record", "95"],
        ["omero", "image", "104"],
        ["omero", "dataset", "7"],
        ["transmart", "patient", "60"],
        ["transmart", "observation set", "60"],
        ["elabftw", "experiment", "9"],
        ["elabftw", "item", "38"],
    ] {
        assert!(row(&cells), "{cells:?} in {run:?}");
    }
    assert!(
        run.stdout.contains("crossdex search 'plasma nfl'") && run.stdout.contains("**NfL**"),
        "{run:?}"
    );
    // Linking: five spellings, one subject each; the seeded conflicts are reported.
    assert!(
        run.stdout.contains("keys linked into 100 subjects"),
        "{run:?}"
    );
    assert!(run.stdout.contains("Conflicts (kept apart"), "{run:?}");
    // Values arrive typed from every system.
    let d = d.to_str().unwrap();
    let count = |sql: &str| -> u64 {
        let out = s.ok(&["--data-dir", d, "sql", "--format", "csv", sql]);
        out.stdout
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    };
    for (what, sql) in [
        (
            "REDCap numbers",
            "SELECT count(*) FROM observations WHERE system = 'redcap' AND value_num IS NOT NULL",
        ),
        (
            "REDCap dates",
            "SELECT count(*) FROM observations WHERE system = 'redcap' AND value_date IS NOT NULL",
        ),
        (
            "REDCap checkbox codes",
            "SELECT count(DISTINCT variable) FROM observations WHERE system = 'redcap' AND variable LIKE 'comorbid___%'",
        ),
        (
            "REDCap events",
            "SELECT count(*) FROM observations WHERE system = 'redcap' AND event = 'baseline_arm_1'",
        ),
        (
            "REDCap repeat instances",
            "SELECT count(*) FROM observations WHERE system = 'redcap' AND instance = 2",
        ),
        (
            "OMERO map-annotation keys",
            "SELECT count(*) FROM observations WHERE system = 'omero' AND variable = 'Subject'",
        ),
        (
            "OMERO tags",
            "SELECT count(*) FROM observations WHERE system = 'omero' AND variable = 'tag'",
        ),
        (
            "tranSMART numbers",
            "SELECT count(*) FROM observations WHERE system = 'transmart' AND value_num IS NOT NULL",
        ),
        (
            "eLabFTW numbers",
            "SELECT count(*) FROM observations WHERE system = 'elabftw' AND variable = 'Volume' AND value_num IS NOT NULL",
        ),
        (
            "eLabFTW dates",
            "SELECT count(*) FROM observations WHERE system = 'elabftw' AND variable = 'Collection date' AND value_date IS NOT NULL",
        ),
        (
            "XNAT sessions view",
            "SELECT count(*) FROM xnat_sessions WHERE field_strength_t = 3.0",
        ),
    ] {
        assert!(count(sql) > 0, "{what}: {sql}");
    }
    assert_eq!(
        count(
            "SELECT count(DISTINCT variable) FROM observations WHERE system = 'redcap' AND variable LIKE 'comorbid___%'"
        ),
        5,
        "one variable per checkbox code"
    );
}

#[test]
fn fields_that_appear_vanish_or_change_type_flow_into_observations() {
    let s = Sandbox::new();
    s.ok(&["sync", "biobank"]);
    let count = |variable: &str| {
        s.csv(&format!(
            "SELECT count(*), count(value_num), count(value_date) FROM observations \
             WHERE source = 'biobank' AND variable = '{variable}'"
        ))
    };
    assert_eq!(count("volume_ml"), [["43", "43", "0"]]);
    assert_eq!(count("collected"), [["43", "0", "43"]]);
    assert_eq!(count("hemolysis"), [["0", "0", "0"]]);

    // The biobank's export changes shape: a new field, a dropped one, and volumes
    // written with their unit, so no longer numbers.
    let path = s.path().join("samples/biobank/biobank_samples.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        v.remove("collected");
        let ml = v["volume_ml"].as_f64().unwrap();
        v.insert("volume_ml".into(), format!("{ml} mL").into());
        let h = if i % 3 == 0 { "slight" } else { "absent" };
        v.insert("hemolysis".into(), h.into());
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
    s.ok(&["sync", "biobank"]);

    assert_eq!(count("hemolysis"), [["43", "0", "0"]]);
    assert_eq!(count("collected"), [["0", "0", "0"]]);
    assert_eq!(
        count("volume_ml"),
        [["43", "0", "0"]],
        "re-typed as text, no row lost"
    );
    assert_eq!(
        s.csv(
            "SELECT value_text FROM observations o JOIN records r ON r.id = o.record_id \
             WHERE r.native_id LIKE '%#BB-00001' AND variable = 'volume_ml'"
        ),
        [["4.9 mL"]]
    );
    assert_eq!(
        s.csv("SELECT count(*) FROM records WHERE source = 'biobank'"),
        [["43"]]
    );
}

#[test]
fn serve_stays_on_loopback_and_bad_schedules_are_named() {
    let s = Sandbox::new();
    // The index holds clinical data: another address needs tokens.
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8742"] {
        let run = s.run(&["serve", "--listen", addr]);
        assert_eq!(run.code, 2, "{addr}: {run:?}");
        assert!(
            run.stderr.contains("needs API tokens") && run.stderr.contains("refusing to serve"),
            "{addr}: {run:?}"
        );
    }

    let config = std::fs::read_to_string(s.config()).unwrap();
    let with = |extra: &str| {
        let text = config.replace(
            "type = \"files\"\npath = \"clinic\"",
            &format!("type = \"files\"\npath = \"clinic\"\n{extra}"),
        );
        std::fs::write(s.config(), text).unwrap();
        s.run(&["status"])
    };
    let run = with("schedule = \"0 25 * * *\"");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("sources.clinic.schedule") && run.stderr.contains("0 25 * * *"),
        "{run:?}"
    );
    let run = with("schedule = \"0 2 * * *\"\ntimezone = \"Europe/Pariss\"");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("sources.clinic.timezone") && run.stderr.contains("Europe/Pariss"),
        "{run:?}"
    );
    let run = with("jitter_s = 60");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("without a `schedule`"), "{run:?}");

    let run = with("schedule = \"30 2 * * *\"\ntimezone = \"UTC\"");
    assert_eq!(run.code, 0, "{run:?}");
    let run = s.ok(&["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let clinic = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "clinic")
        .expect("clinic listed");
    assert_eq!(clinic["schedule"], "30 2 * * * (UTC)");
    assert!(
        clinic["next_run"].as_str().is_some_and(|t| t.contains("T")),
        "never synced: due at once under catch-up: {clinic}"
    );
}

/// The README's searches, run as a new user runs them after `crossdex demo` at its
/// default size: each finds something. Hits carry their linked subject, prefixes and
/// typos match, and a bad query says what is wrong and where.
#[test]
fn readme_searches_find_hits_on_the_demo() {
    let s = Sandbox::new();
    let d = s.path().join("demo-data");
    let d = d.to_str().unwrap();
    s.ok(&["--data-dir", d, "demo", "--no-ui"]);
    let readme = std::fs::read_to_string(crate::common::repo().join("README.md")).unwrap();
    let searches: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("crossdex search '"))
        .filter_map(|l| l.split('\'').next())
        .collect();
    assert!(searches.len() >= 3, "{searches:?}");
    for q in searches {
        let run = s.ok(&["--data-dir", d, "search", "--format", "csv", q]);
        assert!(run.stdout.lines().count() > 1, "{q}: no hits\n{run:?}");
    }
    let count = |sql: &str| -> u64 {
        let run = s.ok(&["--data-dir", d, "sql", "--format", "csv", sql]);
        run.stdout
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap()
    };
    // Every hit of a linked record carries its subject, as `records` does.
    assert_eq!(
        count("SELECT count(s.subject_id) FROM search('*', 100000) s"),
        count("SELECT count(subject_id) FROM records"),
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM search('*', 100000) s JOIN records r ON r.id = s.id WHERE s.subject_id IS DISTINCT FROM r.subject_id"
        ),
        0
    );
    // The subject filter finds every record of the subject, in every source.
    assert_eq!(
        count("SELECT count(*) FROM search('subject_id:subj:INT_0003', 100000)"),
        count("SELECT count(*) FROM records WHERE subject_id = 'subj:INT_0003'"),
    );
    assert!(count("SELECT count(*) FROM search('amyl*', 1000)") > 0);
    assert_eq!(
        count("SELECT count(*) FROM search('hipocampus', 1000)"),
        count("SELECT count(*) FROM search('hippocampus', 1000)"),
    );
    // Exact matches rank above typo matches.
    let run = s.ok(&[
        "--data-dir",
        d,
        "search",
        "--format",
        "csv",
        "-n",
        "1",
        "hippocampus",
    ]);
    assert!(
        run.stdout.to_lowercase().contains("**hippocampus**"),
        "{run:?}"
    );
    // A query starting with `-` is a query, not an option.
    let run = s.ok(&["--data-dir", d, "search", "-n", "1", "-csf amyloid"]);
    assert!(run.stdout.to_lowercase().contains("**amyloid**"), "{run:?}");
    for (q, says) in [
        (
            "\"unclosed",
            "unclosed quote: add a closing `\"` at character 1",
        ),
        (
            "moca (csf",
            "unclosed parenthesis: add a closing `)` at character 6",
        ),
        ("csf OR", "`OR` needs something on each side at character 7"),
        ("colour:red", "unknown field `colour`"),
    ] {
        let run = s.run(&["--data-dir", d, "search", q]);
        assert_eq!(run.code, 2, "{q}: {run:?}");
        assert!(run.stderr.contains(says), "{q}: {run:?}");
    }
}

/// `| head` closes the pipe early: crossdex stops quietly, without a panic; absurd
/// limits are capped, not allocated.
#[test]
fn a_closed_pipe_and_absurd_limits_do_not_panic() {
    let s = Sandbox::new();
    s.ok(&["sync", "--all"]);
    for args in [
        &["sql", "SELECT * FROM observations"][..],
        &["sql", "--format", "csv", "SELECT * FROM observations"][..],
        &["search", "plasma"][..],
        &["status"][..],
    ] {
        let mut child = s
            .command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before crossdex writes a byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(0) && !stderr.contains("panicked"),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
    let run = s.ok(&["search", "-n", "18446744073709551615", "donepezil"]);
    assert!(run.stdout.contains("donepezil"), "{run:?}");
    let run = s.ok(&[
        "sql",
        "--format",
        "csv",
        "SELECT count(*) FROM search('*', 9223372036854775807)",
    ]);
    assert!(
        run.stdout.lines().nth(1).is_some_and(|n| n != "0"),
        "{run:?}"
    );
}

/// Two demos at once each get a folder of their own and both succeed; neither removes
/// anything it did not create.
#[test]
fn concurrent_demos_do_not_break_each_other() {
    let s = Sandbox::new();
    let tmp = s.path().join("tmp");
    let theirs = tmp.join("crossdex-demo").join("data");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("keep.txt"), "not the demo's").unwrap();
    let spawn = || {
        s.command()
            .env("TMPDIR", &tmp)
            .args(["demo", "--no-ui", "--subjects", "20"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let run: crate::common::Run = child.wait_with_output().unwrap().into();
        assert_eq!(run.code, 0, "{run:?}");
    }
    let demos = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("crossdex-demo-")
        })
        .count();
    assert_eq!(demos, 2, "one folder per demo");
    assert!(
        theirs.join("keep.txt").exists(),
        "a folder the demo did not create is left"
    );
}

/// Secrets are text whatever they look like, and no message shows them: not a numeric
/// password from the environment, not a digits-only token, not a URL's `?token=`.
#[test]
fn secrets_never_appear_in_config_errors() {
    let s = Sandbox::new();
    let cfg = s.path().join("secrets.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"d\"\n\
         [sources.xnat]\ntype = \"xnat\"\nurl = \"http://127.0.0.1:9\"\nusername = \"u\"\n\
         [sources.redcap]\ntype = \"redcap\"\nurl = \"http://127.0.0.1:9/api/\"\n\
         [sources.omero]\ntype = \"omero\"\nurl = \"http://127.0.0.1:9\"\nusername = \"u\"\npassword = 24681357\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let run: crate::common::Run = s
        .command()
        .env("CROSSDEX__SOURCES__XNAT__PASSWORD", "987654321")
        .env(
            "CROSSDEX__SOURCES__REDCAP__TOKEN",
            "12345678901234567890123456789012",
        )
        .args(["-c", cfg, "status"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "numeric secrets load as text: {run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    for secret in ["987654321", "1234567890123456789", "e+31", "24681357"] {
        assert!(!all.contains(secret), "{secret} shown: {run:?}");
    }
    // A URL that does not parse is not echoed: it may hold a token.
    let run: crate::common::Run = s
        .command()
        .env("CROSSDEX__SOURCES__XNAT__PASSWORD", "pw")
        .env("CROSSDEX__SOURCES__REDCAP__TOKEN", "t")
        .env(
            "CROSSDEX__SOURCES__REDCAP__URL",
            "htp//host/api/?token=SECRET123",
        )
        .args(["-c", cfg, "status"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("redcap") && run.stderr.contains("url"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("SECRET123"), "{run:?}");
    // A value of the wrong type is named by its key, never echoed.
    let run: crate::common::Run = s
        .command()
        .env("CROSSDEX__SOURCES__XNAT__PASSWORD", "pw")
        .env("CROSSDEX__SOURCES__REDCAP__TOKEN", "t")
        .env("CROSSDEX__SOURCES__XNAT__USERNAME", "[1, 2]")
        .args(["-c", cfg, "status"])
        .output()
        .unwrap()
        .into();
    assert!(!run.stderr.contains("987654321"), "{run:?}");
}

/// A sync into a reused folder removes only what crossdex wrote; a folder holding
/// someone else's files is refused before anything is written.
#[test]
fn a_sync_never_removes_files_it_did_not_write() {
    let s = Sandbox::new();
    let d = s.path().join("reused");
    for (rel, text) in [("tables/my_results.parquet", "x"), ("spool/mine.dat", "x")] {
        let p = d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let dd = d.to_str().unwrap();
    s.ok(&["--data-dir", dd, "sync", "--all"]);
    s.ok(&["--data-dir", dd, "sync", "--all", "--full"]);
    assert!(d.join("tables/my_results.parquet").exists());
    assert!(d.join("spool/mine.dat").exists());

    let theirs = s.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("thesis.docx"), "x").unwrap();
    let run = s.run(&["--data-dir", theirs.to_str().unwrap(), "sync", "--all"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("is not a crossdex data directory")
            && run.stderr.contains("thesis.docx"),
        "{run:?}"
    );
    assert_eq!(
        std::fs::read_dir(&theirs).unwrap().count(),
        1,
        "nothing written there"
    );
}

/// A mistyped or wrong `--data-dir` is an error that says what is there and how to
/// make an index, never an empty answer; a missing table file is an error too.
#[test]
fn wrong_data_directories_and_missing_files_are_errors() {
    let s = Sandbox::new();
    let file = s.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let missing = s.path().join("crossdex-dta");
    for (dir, says) in [(&file, "it is a file"), (&missing, "no such folder")] {
        for args in [
            &["search", "moca"][..],
            &["sql", "SELECT count(*) FROM records"][..],
        ] {
            let mut all = vec!["--data-dir", dir.to_str().unwrap()];
            all.extend_from_slice(args);
            let run = s.run(&all);
            assert_eq!(run.code, 2, "{all:?}: {run:?}");
            assert!(
                run.stderr.contains("no crossdex index at") && run.stderr.contains(says),
                "{all:?}: {run:?}"
            );
        }
    }
    // One source's table file lost (a bad restore, a reader two commits behind):
    // queries fail and name it, rather than answer without that source.
    s.ok(&["sync", "--all"]);
    let records = s.data_dir().join("tables/records");
    let lost = std::fs::read_dir(&records)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    std::fs::remove_file(&lost).unwrap();
    let run = s.run(&["sql", "SELECT source, count(*) FROM records GROUP BY 1"]);
    assert_eq!(run.code, 1, "{run:?}");
    let name = lost.file_name().unwrap().to_str().unwrap();
    assert!(
        run.stderr.contains(name) && run.stderr.contains("cannot be read"),
        "{run:?}"
    );
}

/// Readers need read access only: another account queries a data directory it may
/// not write, and leaves nothing in it.
#[test]
fn a_reader_without_write_access_can_query() {
    if !std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        eprintln!("skipped: needs root to run a reader as another account");
        return;
    }
    let s = Sandbox::new();
    s.ok(&["sync", "--all"]);
    // The sandbox is private to root; let other accounts through to read.
    let mut p = s.data_dir();
    while p.starts_with(std::env::temp_dir()) && p != std::env::temp_dir() {
        let _ = std::process::Command::new("chmod")
            .arg("o+rx")
            .arg(&p)
            .status();
        p = p.parent().unwrap().to_owned();
    }
    let before: Vec<_> = walk(&s.data_dir());
    let run: crate::common::Run = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_crossdex"))
        .arg("--data-dir")
        .arg(s.data_dir())
        .args([
            "sql",
            "--format",
            "csv",
            "SELECT count(*) FROM search('donepezil') s JOIN records r ON r.id = s.id",
        ])
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{run:?}");
    assert_ne!(run.stdout.lines().nth(1), Some("0"), "{run:?}");
    assert_eq!(walk(&s.data_dir()), before, "the reader wrote nothing");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// `doctor` checks every source at once and says one line each: a source that is down
/// is not retried for minutes, and no retry warning floods the terminal.
#[test]
fn doctor_says_one_line_per_source_without_retrying() {
    let s = Sandbox::new();
    let cfg = s.path().join("down.toml");
    let mut text = String::from("data_dir = \"d\"\n");
    for (name, system) in [("xnat", "xnat"), ("omero", "omero"), ("eln", "elabftw")] {
        // A closed port on loopback: refused at once.
        text.push_str(&format!(
            "[sources.{name}]\ntype = \"{system}\"\nurl = \"http://127.0.0.1:9\"\n"
        ));
        text.push_str(if system == "elabftw" {
            "api_key = \"k\"\n"
        } else {
            "username = \"u\"\npassword = \"p\"\n"
        });
    }
    std::fs::write(&cfg, text).unwrap();
    let run = s.run(&["-c", cfg.to_str().unwrap(), "doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    for name in ["xnat", "omero", "eln"] {
        let lines: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with(&format!("FAILED  {name} ")))
            .collect();
        assert_eq!(lines.len(), 1, "{name}: {run:?}");
    }
    assert!(!run.stderr.contains("retrying"), "{run:?}");
}

/// A source taken out of the configuration is listed by `status` until `forget`
/// removes its data: then search, SQL and the links no longer show it.
#[test]
fn a_removed_source_is_listed_then_forgotten() {
    let s = Sandbox::new();
    s.ok(&["sync", "--all"]);
    let run = s.run(&["forget", "imaging"]);
    assert_eq!(run.code, 2, "still configured: {run:?}");
    assert!(run.stderr.contains("still configured"), "{run:?}");
    // The config without [sources.imaging].
    let text = std::fs::read_to_string(s.config()).unwrap();
    let mut kept = String::new();
    let mut skip = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skip = line.starts_with("[sources.imaging");
        }
        if !skip {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    std::fs::write(s.config(), kept).unwrap();
    let run = s.ok(&["status"]);
    assert!(
        run.stdout
            .contains("indexed but no longer configured: imaging"),
        "{run:?}"
    );
    let run = s.ok(&["forget", "imaging"]);
    assert!(run.stdout.contains("forgot imaging: "), "{run:?}");
    for sql in [
        "SELECT count(*) FROM records WHERE source = 'imaging'",
        "SELECT count(*) FROM observations WHERE source = 'imaging'",
        "SELECT count(*) FROM search('*', 100000) WHERE source = 'imaging'",
        "SELECT count(*) FROM subject_links WHERE source = 'imaging'",
    ] {
        assert_eq!(s.csv(sql), [["0"]], "{sql}");
    }
    assert_ne!(
        s.csv("SELECT count(*) FROM records"),
        [["0"]],
        "the others stay"
    );
    let run = s.ok(&["status"]);
    assert!(!run.stdout.contains("no longer configured"), "{run:?}");
    let run = s.run(&["forget", "imaging"]);
    assert_eq!(run.code, 2, "{run:?}");
}

/// A full disk fails the source being written, recorded in `sync_runs`, and the others
/// go on; a disk too full to start is refused before anything is written.
#[test]
fn a_full_disk_fails_one_source_cleanly() {
    let s = Sandbox::new();
    let disk = s.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mount = |size: &str| {
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&disk)
            .status()
            .is_ok_and(|st| st.success())
    };
    let umount = || {
        let _ = std::process::Command::new("umount").arg(&disk).status();
    };
    if !mount("300k") {
        eprintln!("skipped: cannot mount a small file system here (needs root)");
        return;
    }
    let d = disk.join("d");
    let dd = d.to_str().unwrap();
    let refused = s.run(&["--data-dir", dd, "sync", "--all"]);
    let run: crate::common::Run = s
        .command()
        .env("CROSSDEX_MIN_FREE_MIB", "0")
        .args(["--data-dir", dd, "sync", "--all", "-j", "1"])
        .output()
        .unwrap()
        .into();
    let runs = s.run(&[
        "--data-dir",
        dd,
        "sql",
        "--format",
        "csv",
        "SELECT source, status, error FROM sync_runs ORDER BY source",
    ]);
    umount();
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("MiB free") && refused.stderr.contains("Disk space"),
        "{refused:?}"
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("killed"),
        "{run:?}"
    );
    assert!(run.stderr.contains("the others are synced"), "{run:?}");
    let rows: Vec<&str> = runs.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "every source has its run: {runs:?}");
    assert!(
        rows.iter()
            .any(|r| r.contains(",failed,") && r.contains("No space left")),
        "{runs:?}"
    );
    assert!(rows.iter().any(|r| r.contains(",succeeded,")), "{runs:?}");
}
