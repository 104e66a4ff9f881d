use std::collections::{BTreeMap, BTreeSet};

use crossdex_sim::World;

use super::*;

fn rule(pattern: &str, template: &str) -> Rule {
    Rule::new(RuleConfig {
        pattern: Some(pattern.into()),
        template: Some(template.into()),
        ..RuleConfig::default()
    })
    .expect("rule")
}

#[test]
fn keys_are_found_in_titles() {
    let r = rule(r"INT[_-]?(\d+)", "INT_{1:04}");
    assert_eq!(
        r.find("Plasma aliquot INT0042-A").as_deref(),
        Some("INT0042")
    );
    assert_eq!(r.find("NfL Simoa run 3"), None);
}

#[test]
fn rules_normalise_each_spelling_to_one_key() {
    let digits = rule(r"^0*(\d+)$", "INT_{1:04}");
    assert_eq!(digits.canonical("42").as_deref(), Some("INT_0042"));
    assert_eq!(digits.canonical(" 0042 ").as_deref(), Some("INT_0042"));
    assert_eq!(digits.canonical("abc"), None);
    let coded = rule(r"^INT[_-]?(\d+)$", "INT_{1:04}");
    for k in ["INT_0042", "int_0042", "INT-042", "INT0042", "INT_042"] {
        assert_eq!(coded.canonical(k).as_deref(), Some("INT_0042"), "{k}");
    }
    assert_eq!(
        coded.canonical("INT_O042"),
        None,
        "a letter O does not fit without `replace`"
    );
    let slips = Rule::new(RuleConfig {
        pattern: Some(r"^INT[_-]?(\d+)$".into()),
        template: Some("INT_{1:04}".into()),
        replace: [("O".to_owned(), "0".to_owned())].into(),
        ..RuleConfig::default()
    })
    .expect("rule");
    assert_eq!(slips.canonical("INT_O042").as_deref(), Some("INT_0042"));
    let e = Rule::new(RuleConfig {
        pattern: Some("(".into()),
        ..RuleConfig::default()
    })
    .expect_err("bad regex");
    assert!(e.to_string().contains("pattern"), "{e}");
    let e = Rule::new(RuleConfig {
        pattern: Some(r"^(\d+)$".into()),
        template: Some("S{2}".into()),
        ..RuleConfig::default()
    })
    .expect_err("no capture 2");
    assert!(e.to_string().contains("capture 2"), "{e}");
}

fn key(source: &str, k: &str, hard: &[(&str, &str)]) -> Key {
    Key {
        source: source.into(),
        subject_key: k.into(),
        hard: {
            let mut h: Vec<(String, String)> = hard
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect();
            h.sort();
            h
        },
        matched: None,
    }
}

#[test]
fn conflicting_hard_identifiers_are_reported_not_merged() {
    let rules: BTreeMap<String, Rule> = [
        ("redcap".to_owned(), rule(r"^0*(\d+)$", "INT_{1:04}")),
        ("xnat".to_owned(), rule(r"^INT[_-]?(\d+)$", "INT_{1:04}")),
    ]
    .into();
    let keys = vec![
        key(
            "xnat",
            "INT_0007",
            &[("sex", "male"), ("birth_year", "1950")],
        ),
        key(
            "redcap",
            "7",
            &[("sex", "Female"), ("birth_year", "1950.0")],
        ),
        key(
            "xnat",
            "INT_0008",
            &[("sex", "female"), ("birth_year", "1961")],
        ),
        key("redcap", "8", &[("sex", "Female"), ("birth_year", "1961")]),
        key("xnat", "X-9", &[]),
    ];
    let priority = vec!["redcap".to_owned(), "xnat".to_owned()];
    let (links, report) = link(&keys, &rules, &Crosswalk::new(), &priority);
    let linked: BTreeSet<(&str, &str)> = links
        .iter()
        .map(|l| (l.source.as_str(), l.subject_key.as_str()))
        .collect();
    assert!(
        linked.contains(&("redcap", "7")) && !linked.contains(&("xnat", "INT_0007")),
        "{links:?}"
    );
    assert!(linked.contains(&("redcap", "8")) && linked.contains(&("xnat", "INT_0008")));
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].identifier, "sex");
    assert_eq!(report.unlinked, vec![("xnat".to_owned(), "X-9".to_owned())]);
    assert!(links.iter().all(|l| l.rule.starts_with("rule:")));
}

#[test]
fn the_crosswalk_wins_and_a_double_entry_is_ambiguous() {
    let cw = read_crosswalk("source,subject_key,subject_id\nxnat,PILOT-1,subj:INT_0001\nxnat,PILOT-2,subj:A\nxnat,PILOT-2,subj:B\n")
        .expect("crosswalk");
    let rules: BTreeMap<String, Rule> =
        [("xnat".to_owned(), rule(r"^INT_(\d+)$", "INT_{1:04}"))].into();
    let keys = vec![key("xnat", "PILOT-1", &[]), key("xnat", "PILOT-2", &[])];
    let (links, report) = link(&keys, &rules, &cw, &[]);
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0].subject_id.as_str(), links[0].rule.as_str()),
        ("subj:INT_0001", "crosswalk")
    );
    assert_eq!(report.ambiguous.len(), 1);
    assert!(read_crosswalk("a,b\n").is_err());
}

/// The rules a demo configuration declares for the five simulated systems.
pub fn demo_rules() -> BTreeMap<String, Rule> {
    let coded = |hard: &[(&str, &str)]| {
        Rule::new(RuleConfig {
            pattern: Some(r"^INT[_-]?(\d+)$".into()),
            template: Some("INT_{1:04}".into()),
            // XNAT's entry forms let a letter O slip in for a zero.
            replace: [("O".to_owned(), "0".to_owned())].into(),
            hard: hard
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            ..RuleConfig::default()
        })
        .expect("rule")
    };
    [
        (
            "xnat".to_owned(),
            coded(&[("sex", "gender"), ("birth_year", "yob")]),
        ),
        ("omero".to_owned(), coded(&[])),
        ("transmart".to_owned(), coded(&[("sex", "sex")])),
        ("elabftw".to_owned(), coded(&[])),
        (
            "redcap".to_owned(),
            Rule::new(RuleConfig {
                pattern: Some(r"^0*(\d+)$".into()),
                template: Some("INT_{1:04}".into()),
                hard: [
                    ("sex".to_owned(), "sex".to_owned()),
                    ("birth_year".to_owned(), "birth_year".to_owned()),
                ]
                .into(),
                ..RuleConfig::default()
            })
            .expect("rule"),
        ),
    ]
    .into()
}

/// Keys as the simulated systems serve them, with their hard identifiers.
fn served_keys(w: &World) -> Vec<Key> {
    let mut hard: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for s in &w.xnat.subjects {
        hard.insert(
            ("xnat".into(), s.label.clone()),
            [
                ("sex".to_owned(), s.gender.to_owned()),
                ("birth_year".to_owned(), s.yob.to_string()),
            ]
            .into(),
        );
    }
    for r in &w.redcap.records {
        let mut h = BTreeMap::new();
        for row in &r.rows {
            for (k, v) in &row.values {
                match k.as_str() {
                    "sex" => {
                        h.insert(
                            "sex".to_owned(),
                            if v == "1" { "Female" } else { "Male" }.to_owned(),
                        );
                    }
                    "birth_year" => {
                        h.insert("birth_year".to_owned(), v.clone());
                    }
                    _ => {}
                }
            }
        }
        hard.insert(("redcap".into(), r.id.clone()), h);
    }
    for p in &w.transmart.patients {
        hard.insert(
            ("transmart".into(), p.subject.clone()),
            [("sex".to_owned(), p.sex.to_owned())].into(),
        );
    }
    w.truth()
        .into_iter()
        .map(|(_, sys, k)| Key {
            hard: hard
                .get(&(sys.name().to_owned(), k.clone()))
                .map(|h| h.clone().into_iter().collect())
                .unwrap_or_default(),
            source: sys.name().to_owned(),
            subject_key: k,
            matched: None,
        })
        .collect()
}

#[test]
fn the_demo_cohort_links_with_full_precision_and_high_recall() {
    let priority: Vec<String> = ["redcap", "xnat", "transmart", "omero", "elabftw"]
        .map(String::from)
        .to_vec();
    let mut w = World::generate(42, 300);
    let mut first: BTreeMap<(String, String), String> = BTreeMap::new();
    for day in 0..2 {
        let truth: Vec<(String, String, String)> = w
            .truth()
            .into_iter()
            .map(|(p, s, k)| (p, s.name().to_owned(), k))
            .collect();
        let (links, report) = link(
            &served_keys(&w),
            &demo_rules(),
            &Crosswalk::new(),
            &priority,
        );
        // Keys the cohort spoiled on purpose may stay apart, if the report names them.
        let reported: BTreeSet<(String, String)> = report
            .conflicts
            .iter()
            .map(|c| (c.source.clone(), c.subject_key.clone()))
            .chain(report.unlinked.iter().cloned())
            .collect();
        let seeded_conflicts = w
            .persons
            .iter()
            .filter(|p| p.conflicting_sex || p.conflicting_birth_year)
            .count();
        assert!(
            seeded_conflicts > 0 && !report.conflicts.is_empty(),
            "day {day}: conflicts reported"
        );
        let kept: Vec<(String, String, String)> = truth
            .iter()
            .filter(|t| !reported.contains(&(t.1.clone(), t.2.clone())))
            .cloned()
            .collect();
        for ((a, b), (precision, _)) in pair_scores(&links, &truth) {
            assert_eq!(precision, 1.0, "day {day}: {a} × {b} merged two people");
        }
        for ((a, b), (_, recall)) in pair_scores(&links, &kept) {
            assert!(recall >= 0.99, "day {day}: {a} × {b} recall {recall}");
        }
        // Every conflict is a person the cohort seeded with one.
        for c in &report.conflicts {
            let person = truth
                .iter()
                .find(|t| t.1 == c.source && t.2 == c.subject_key)
                .map(|t| t.0.clone())
                .expect("known key");
            let n: u32 = person[1..].parse().expect("number");
            let p = w.persons.iter().find(|p| p.n == n).expect("person");
            assert!(
                p.conflicting_sex || p.conflicting_birth_year,
                "{c:?} is not a seeded conflict"
            );
        }
        // ... and every seeded conflict that two sources can see is reported, unmerged.
        let conflicting: BTreeSet<(String, String)> = report
            .conflicts
            .iter()
            .map(|c| (c.source.clone(), c.subject_key.clone()))
            .collect();
        for p in &w.persons {
            let held = |sys: &str| {
                truth
                    .iter()
                    .find(|t| t.0 == p.person_id() && t.1 == sys)
                    .map(|t| t.2.clone())
            };
            if p.conflicting_sex
                && let Some(k) = held("transmart")
                && (held("redcap").is_some() || held("xnat").is_some())
            {
                assert!(
                    conflicting.contains(&("transmart".into(), k.clone())),
                    "day {day}: {k}"
                );
                assert!(
                    !links
                        .iter()
                        .any(|l| l.source == "transmart" && l.subject_key == k)
                );
            }
            if p.conflicting_birth_year
                && let Some(k) = held("xnat")
                && held("redcap").is_some()
            {
                assert!(
                    conflicting.contains(&("xnat".into(), k.clone())),
                    "day {day}: {k}"
                );
                assert!(
                    !links
                        .iter()
                        .any(|l| l.source == "xnat" && l.subject_key == k)
                );
            }
        }
        // Stable ids: a key keeps its subject id from one day to the next.
        for l in &links {
            let id = first
                .entry((l.source.clone(), l.subject_key.clone()))
                .or_insert_with(|| l.subject_id.clone());
            assert_eq!(*id, l.subject_id, "day {day}: {l:?} moved");
        }
        w.advance();
    }
}

#[test]
fn a_crosswalk_entry_settles_a_conflict() {
    let rules: BTreeMap<String, Rule> = [
        ("redcap".to_owned(), rule(r"^0*(\d+)$", "INT_{1:04}")),
        ("xnat".to_owned(), rule(r"^INT[_-]?(\d+)$", "INT_{1:04}")),
    ]
    .into();
    let keys = vec![
        key("redcap", "4", &[("birth_year", "1945")]),
        key("xnat", "INT_0004", &[("birth_year", "1946")]),
    ];
    let priority = vec!["redcap".to_owned()];
    let (_, report) = link(&keys, &rules, &Crosswalk::new(), &priority);
    assert_eq!(report.conflicts.len(), 1);
    let cw = read_crosswalk("source,subject_key,subject_id\nxnat,INT_0004,subj:INT_0004\n")
        .expect("crosswalk");
    let (links, report) = link(&keys, &rules, &cw, &priority);
    assert!(report.conflicts.is_empty());
    assert_eq!(
        links
            .iter()
            .filter(|l| l.subject_id == "subj:INT_0004")
            .count(),
        2
    );
}
