//! The dataset catalogue as data stewards, harvesters and archive centres meet it:
//! entries checked against the simulators' own worlds, DataCite XML against the
//! official XSD (lxml), OAI-PMH through a real harvester (Sickle) with resumption
//! tokens, incremental `from` and deletions, and archive parts through the Library of
//! Congress's `bagit` and pyarrow. The Python side is `tests/fair/fair.py`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::{Sandbox, repo, simulators};
use crate::http::Served;

/// The simulators' REDCap project id (`content=project`).
const REDCAP_PID: &str = "1742";

fn python(args: &[&str]) -> Value {
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/fair/fair.py"))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "fair.py {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fair.py prints JSON")
}

fn xsd() -> String {
    repo()
        .join("../shared/reference/datacite/kernel-4/metadata.xsd")
        .display()
        .to_string()
}

/// What the simulators hold, dataset by dataset: the oracle.
struct Truth {
    /// Every dataset id, by system.
    ids: BTreeMap<&'static str, BTreeSet<String>>,
    /// Imaging sessions per XNAT project.
    sessions: BTreeMap<String, u64>,
    /// Images per OMERO project and dataset.
    images: BTreeMap<String, u64>,
    /// REDCap records.
    redcap_records: u64,
}

fn truth(sims: &crossdex_sim::Simulators) -> Truth {
    sims.with_world(|w| {
        let mut ids: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
        let mut sessions = BTreeMap::new();
        let mut images = BTreeMap::new();
        for p in &w.xnat.projects {
            let id = format!("xnat:project:{}", p.id);
            let n = w
                .xnat
                .experiments
                .iter()
                .filter(|e| e.project == p.id)
                .count();
            sessions.insert(id.clone(), n as u64);
            ids.entry("xnat").or_default().insert(id);
        }
        ids.entry("redcap")
            .or_default()
            .insert(format!("redcap:project:{REDCAP_PID}"));
        for p in &w.omero.projects {
            let mut total = 0;
            for d in &p.datasets {
                let n = w.omero.images.iter().filter(|i| i.dataset == *d).count() as u64;
                images.insert(format!("omero:dataset:{d}"), n);
                ids.entry("omero")
                    .or_default()
                    .insert(format!("omero:dataset:{d}"));
                total += n;
            }
            images.insert(format!("omero:project:{}", p.id), total);
            ids.entry("omero")
                .or_default()
                .insert(format!("omero:project:{}", p.id));
        }
        ids.entry("transmart")
            .or_default()
            .insert(format!("transmart:study:{}", crossdex_sim::TM_STUDY));
        for e in &w.elab.experiments {
            ids.entry("elabftw")
                .or_default()
                .insert(format!("elabftw:experiment:{}", e.id));
        }
        Truth {
            ids,
            sessions,
            images,
            redcap_records: w.redcap.records.len() as u64,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_matches_the_simulators_and_datacite_validates() {
    // Two cohort sizes: counts must follow the data, not a fixed demo.
    for subjects in [30, 90] {
        let s = Sandbox::new();
        let (sims, config) = simulators(&s, subjects).await;
        s.ok(&["-c", &config, "sync", "--all"]);
        let t = truth(&sims);
        let list: Vec<Value> = serde_json::from_str(
            &s.ok(&["-c", &config, "catalogue", "list", "--format", "json"])
                .stdout,
        )
        .unwrap();
        let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for d in &list {
            got.entry(d["system"].as_str().unwrap().to_owned())
                .or_default()
                .insert(d["id"].as_str().unwrap().to_owned());
        }
        let want: BTreeMap<String, BTreeSet<String>> = t
            .ids
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        assert_eq!(got, want, "{subjects} subjects: one entry per dataset");
        let by_id: BTreeMap<&str, &Value> = list
            .iter()
            .map(|d| (d["id"].as_str().unwrap(), d))
            .collect();
        for (id, n) in &t.sessions {
            assert_eq!(
                by_id[id.as_str()]["counts"]["sessions"],
                *n,
                "{id} sessions"
            );
        }
        for (id, n) in &t.images {
            assert_eq!(by_id[id.as_str()]["counts"]["images"], *n, "{id} images");
        }
        let redcap = by_id[format!("redcap:project:{REDCAP_PID}").as_str()];
        // Its records and the project's own.
        assert_eq!(redcap["counts"]["records"], t.redcap_records + 1);
        assert_eq!(redcap["title"], "Memory Clinic Cohort");
        assert_eq!(
            by_id["xnat:project:MEMCLIN"]["creators"][0]["orcid"], "0000-0002-1825-0097",
            "steward metadata of [catalogue.sources.xnat]"
        );

        // `check`: the configuration of the simulators declares creators and a year for
        // xnat and redcap only (ConfigDraft): every other dataset lacks those two.
        let check = s.run(&["-c", &config, "catalogue", "check", "--format", "json"]);
        assert_eq!(check.code, 1, "{check:?}");
        let missing: Vec<Value> = serde_json::from_str(&check.stdout).unwrap();
        let mut want_missing = BTreeSet::new();
        for (system, ids) in &t.ids {
            if matches!(*system, "xnat" | "redcap") {
                continue;
            }
            for id in ids {
                for (property, key) in [
                    ("Creator", format!("catalogue.sources.{system}.creators")),
                    (
                        "PublicationYear",
                        format!("catalogue.sources.{system}.publication_year"),
                    ),
                ] {
                    want_missing.insert((id.clone(), property.to_owned(), key));
                }
            }
        }
        let got_missing: BTreeSet<(String, String, String)> = missing
            .iter()
            .map(|m| {
                let keys: Vec<&str> = m["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .collect();
                assert_eq!(
                    keys[0],
                    format!(
                        "catalogue.datasets.\"{}\".{}",
                        m["dataset_id"].as_str().unwrap(),
                        keys[1].rsplit('.').next().unwrap()
                    ),
                    "the dataset's own key comes first"
                );
                (
                    m["dataset_id"].as_str().unwrap().to_owned(),
                    m["property"].as_str().unwrap().to_owned(),
                    keys[1].to_owned(),
                )
            })
            .collect();
        assert_eq!(got_missing, want_missing, "{subjects} subjects: check");
        let table = s.run(&["-c", &config, "catalogue", "check"]);
        assert!(
            table.stdout.contains("catalogue.sources.omero.creators")
                && table.stderr.contains("3 of "),
            "{table:?}"
        );

        // Every complete dataset's DataCite XML validates against the official schema;
        // the incomplete ones are skipped with a reason, not written half-done.
        let out = s.path().join("metadata");
        let export = s.ok(&[
            "-c",
            &config,
            "catalogue",
            "export",
            "--format",
            "datacite",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(export.stderr.contains("skipped"), "{export:?}");
        let mut files: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        files.sort();
        assert_eq!(files.len(), t.ids["xnat"].len() + 1, "{files:?}");
        let mut args = vec!["datacite".to_owned(), xsd()];
        args.extend(files);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let titles = python(&args);
        assert!(
            titles
                .as_object()
                .unwrap()
                .values()
                .any(|t| t == "Memory Clinic Cohort"),
            "{titles}"
        );
        // One incomplete dataset asked for by name: a clear refusal naming the key.
        let refused = s.run(&[
            "-c",
            &config,
            "catalogue",
            "export",
            "transmart:study:NEURO_BIOMARKERS",
            "--format",
            "datacite",
        ]);
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(
            refused
                .stderr
                .contains("catalogue.datasets.\"transmart:study:NEURO_BIOMARKERS\".creators"),
            "{refused:?}"
        );
        // Dublin Core has no mandatory element: every dataset has it.
        let dc = s.ok(&[
            "-c",
            &config,
            "catalogue",
            "export",
            "transmart:study:NEURO_BIOMARKERS",
            "--format",
            "dc",
        ]);
        assert!(
            dc.stdout.contains("<dc:title>NEURO_BIOMARKERS</dc:title>"),
            "{dc:?}"
        );
        sims.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harvester_gets_every_dataset_once_then_only_what_changed() {
    let s = Sandbox::new();
    let (sims, config) = simulators(&s, 40).await;
    // A page size that forces resumption tokens; the endpoint public.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[catalogue]\noai_public = true\noai_page_size = 7\n");
    std::fs::write(&config, &text).unwrap();
    s.ok(&["-c", &config, "sync", "--all"]);
    let t = truth(&sims);
    sims.shutdown().await;
    let all: BTreeSet<String> = t.ids.values().flatten().cloned().collect();
    let oai = |id: &str| format!("oai:crossdex.invalid:{id}");

    let served = Served::start_on(&s, &["-c", &config], "127.0.0.1:0");
    let base = format!("{}/oai", served.base);
    let first = python(&["harvest", &base, "--xsd", &xsd()]);
    assert_eq!(first["identify"]["protocolVersion"], "2.0");
    assert_eq!(first["identify"]["deletedRecord"], "transient");
    let dc: BTreeSet<String> = first["oai_dc"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        dc,
        all.iter().map(|id| oai(id)).collect(),
        "every dataset exactly once (fair.py fails on a duplicate)"
    );
    let pages = first["pages"].as_u64().unwrap();
    assert_eq!(pages, all.len().div_ceil(7) as u64, "pages of 7");
    // DataCite for the datasets with every mandatory property, each valid (fair.py
    // validates each against the XSD).
    let datacite: BTreeSet<String> = first["oai_datacite"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let complete: BTreeSet<String> = t.ids["xnat"]
        .iter()
        .chain(&t.ids["redcap"])
        .map(|id| oai(id))
        .collect();
    assert_eq!(datacite, complete);
    let sets: Vec<&str> = first["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for system in ["xnat", "redcap", "omero", "transmart", "elabftw"] {
        assert!(
            sets.contains(&format!("source:{system}").as_str()),
            "{sets:?}"
        );
        assert!(
            sets.contains(&format!("system:{system}").as_str()),
            "{sets:?}"
        );
    }
    let omero = python(&["harvest", &base, "--set", "source:omero"]);
    assert_eq!(
        omero["oai_dc"].as_object().unwrap().len(),
        t.ids["omero"].len()
    );
    let errors = python(&["errors", &base]);
    for (case, code) in [
        ("no verb", "badVerb"),
        ("unknown verb", "badVerb"),
        ("missing prefix", "badArgument"),
        ("unknown argument", "badArgument"),
        ("bad date", "badArgument"),
        ("mixed granularity", "badArgument"),
        ("from after until", "badArgument"),
        ("unknown format", "cannotDisseminateFormat"),
        ("unknown record", "idDoesNotExist"),
        ("forged token", "badResumptionToken"),
        ("token with other arguments", "badArgument"),
        ("empty set", "noRecordsMatch"),
        ("sets in pages", "badResumptionToken"),
    ] {
        assert_eq!(errors[case], code, "{case}: {errors}");
    }

    // POST, form-encoded, as the protocol allows; DataCite for a complete dataset only.
    let client = reqwest::Client::new();
    let post = |body: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let r = client
                .post(&base)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/xml")
            );
            r.text().await.unwrap()
        }
    };
    let record = post(format!(
        "verb=GetRecord&metadataPrefix=oai_datacite&identifier={}",
        oai("xnat:project:MEMCLIN")
    ))
    .await;
    assert!(
        record.contains("<resource xmlns=\"http://datacite.org/schema/kernel-4\"")
            && record.contains("<title>Memory Clinic Imaging</title>"),
        "{record}"
    );
    let omero_id = oai(t.ids["omero"].iter().next().unwrap());
    let refused = post(format!(
        "verb=GetRecord&metadataPrefix=oai_datacite&identifier={omero_id}"
    ))
    .await;
    assert!(
        refused.contains("code=\"cannotDisseminateFormat\""),
        "{refused}"
    );
    let formats = post(format!("verb=ListMetadataFormats&identifier={omero_id}")).await;
    assert!(
        formats.contains("oai_dc") && !formats.contains("oai_datacite"),
        "{formats}"
    );

    // Nothing changed: an incremental harvest from now on finds nothing.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let since = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let none = python(&["harvest", &base, "--from", &since]);
    assert_eq!(none["oai_dc"].as_object().unwrap().len(), 0, "{none}");
    drop(served);

    // A steward completes OMERO's metadata and the notebook source goes away.
    text.push_str(
        "\n[catalogue.sources.omero]\npublication_year = 2022\ncreators = [{ name = \"Histology core\", organisation = true }]\n",
    );
    std::fs::write(&config, &text).unwrap();
    s.ok(&["-c", &config, "forget", "elabftw", "--force"]);
    let served = Served::start_on(&s, &["-c", &config], "127.0.0.1:0");
    let base = format!("{}/oai", served.base);
    let next = python(&["harvest", &base, "--from", &since, "--xsd", &xsd()]);
    let changed: BTreeMap<String, bool> = next["oai_dc"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["deleted"].as_bool().unwrap()))
        .collect();
    let want: BTreeMap<String, bool> = t.ids["omero"]
        .iter()
        .map(|id| (oai(id), false))
        .chain(t.ids["elabftw"].iter().map(|id| (oai(id), true)))
        .collect();
    assert_eq!(
        changed, want,
        "only what changed: OMERO's entries, and deletions"
    );
    // OMERO is complete now: in DataCite too, and the deletions with it.
    let datacite: BTreeSet<String> = next["oai_datacite"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(datacite, want.keys().cloned().collect());

    // Tokens exist: the API needs one, the public catalogue does not.
    s.ok(&[
        "-c",
        &config,
        "token",
        "create",
        "portal",
        "--scope",
        "search",
        "--expires",
        "1d",
    ]);
    let api = client
        .get(format!("{}/api/v1/datasets", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let identify = client
        .get(format!("{base}?verb=Identify"))
        .send()
        .await
        .unwrap();
    assert_eq!(identify.status(), 200);
    assert!(identify.text().await.unwrap().contains("<Identify>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_parts_validate_with_bagit_and_leave_sensitive_values_out() {
    let s = Sandbox::new();
    let (sims, config) = simulators(&s, 40).await;
    s.ok(&["-c", &config, "sync", "--all"]);
    let t = truth(&sims);
    sims.shutdown().await;
    let dataset = format!("redcap:project:{REDCAP_PID}");
    let out = s.path().join("bags");
    let run = s.ok(&[
        "-c",
        &config,
        "archive",
        &dataset,
        "--out",
        out.to_str().unwrap(),
        "--part-size",
        "160K",
        "--format",
        "json",
    ]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let parts: Vec<String> = report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(parts.len() >= 3, "a small part size splits it: {run:?}");
    for p in &report["parts"].as_array().unwrap().clone() {
        assert!(p["bytes"].as_u64().unwrap() <= 160 << 10, "{p}");
    }
    let mut args = vec!["bags"];
    args.extend(parts.iter().map(String::as_str));
    let bags = python(&args);
    let bags = bags.as_array().unwrap();
    let mut ids = Vec::new();
    for (i, bag) in bags.iter().enumerate() {
        assert_eq!(
            bag["info"]["Bag-Count"],
            format!("{} of {}", i + 1, bags.len())
        );
        assert_eq!(bag["info"]["Bag-Group-Identifier"], dataset.as_str());
        let sensitive = bag["info"]["Sensitive-Fields"].as_str().unwrap();
        assert!(
            sensitive.contains("clinician_notes") && sensitive.contains("birth_year"),
            "{sensitive}"
        );
        let variables: Vec<&str> = bag["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(!variables.contains(&"clinician_notes"), "{variables:?}");
        assert!(!variables.contains(&"birth_year"), "{variables:?}");
        assert!(variables.contains(&"moca_total"), "{variables:?}");
        assert_eq!(bag["tables"]["records"]["header"][0], "id", "a header row");
        ids.extend(
            bag["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
    }
    // Every record once across the parts: the simulator's records and the project's.
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no record in two parts");
    assert_eq!(ids.len() as u64, t.redcap_records + 1);
    for file in ["datacite.xml", "dublin-core.xml", "dataset.json"] {
        assert!(
            std::path::Path::new(&parts[0])
                .join("data/metadata")
                .join(file)
                .is_file(),
            "{file}"
        );
    }
    let readme = std::fs::read_to_string(format!("{}/data/README.txt", parts[0])).unwrap();
    assert!(readme.contains("- value_num (Float64): the value as a number"));

    // Asked for explicitly, they are in, and the bag says so.
    let all = s.path().join("bags-sensitive");
    s.ok(&[
        "-c",
        &config,
        "archive",
        &dataset,
        "--out",
        all.to_str().unwrap(),
        "--include-sensitive",
    ]);
    let part = std::fs::read_dir(&all)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bags = python(&["bags", part.to_str().unwrap()]);
    assert!(
        bags[0]["info"]["Sensitive-Fields"]
            .as_str()
            .unwrap()
            .starts_with("included")
    );
    assert!(
        bags[0]["variables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "clinician_notes")
    );
    // An existing folder is never written into; an unknown dataset names the list.
    let again = s.run(&[
        "-c",
        &config,
        "archive",
        &dataset,
        "--out",
        all.to_str().unwrap(),
    ]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("not empty"), "{again:?}");
    let unknown = s.run(&["-c", &config, "archive", "nope:project:1", "--out", "x"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("catalogue list"), "{unknown:?}");
}
