//! `crossdex link report`: the linking rules of the config applied to the subject keys
//! in the index, and what they leave apart.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::Context;
use crossdex_linking::{Crosswalk, Key, KeyFrom, link, read_crosswalk};
use crossdex_query::{OutputFormat, QueryEngine, ScalarValue};
use serde_json::{Value, json};

use crate::CliError;
use crate::args::{FailOn, Format, GlobalArgs};
use crate::commands::{data_dir, load_config, print};
use crate::config::Config;

type Result<T, E = CliError> = std::result::Result<T, E>;

/// The rows of `sql` as JSON objects, for printing.
async fn json_rows(engine: &QueryEngine, sql: &str, params: &[(&str, &str)]) -> Result<Vec<Value>> {
    let out = engine.sql(sql, text_params(params)).await?;
    let text = out
        .render(OutputFormat::Json)
        .map_err(anyhow::Error::from)?;
    Ok(serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default())
}

fn text_params(params: &[(&str, &str)]) -> Vec<(String, ScalarValue)> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ScalarValue::Utf8(Some((*v).to_owned()))))
        .collect()
}

/// The rows of `sql` as text. Every subject key of a source passes through here.
async fn rows(
    engine: &QueryEngine,
    sql: &str,
    params: &[(&str, &str)],
) -> Result<Vec<Vec<Option<String>>>> {
    let out = engine.sql(sql, text_params(params)).await?;
    Ok(out.text_rows().map_err(anyhow::Error::from)?)
}

/// The keys in the index, linked by the config's rules.
pub(crate) struct Linking {
    /// The configured sources, each with its rule.
    pub sources: Vec<String>,
    pub keys: Vec<Key>,
    pub links: Vec<crossdex_linking::Link>,
    pub report: crossdex_linking::Report,
}

/// Links the subject keys of the index `writer` holds and stores the links, so
/// `records`, `observations` and `subjects` show `subject_id`. Runs after every sync.
pub(crate) async fn update(
    config: &Config,
    writer: &mut crossdex_store::Writer,
) -> Result<Linking> {
    let linking = compute(config, writer.root()).await?;
    let by_key: BTreeMap<(&str, &str), &Key> = linking
        .keys
        .iter()
        .map(|k| ((k.source.as_str(), k.subject_key.as_str()), k))
        .collect();
    let key_of = |source: &str, key: &str| by_key.get(&(source, key)).copied();
    let identifier = |source: &str, key: &str, name: &str| {
        key_of(source, key).and_then(|k| {
            k.hard
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
    };
    let mut rows: Vec<crossdex_store::SubjectLink> = linking
        .links
        .iter()
        .map(|l| crossdex_store::SubjectLink {
            subject_id: l.subject_id.clone(),
            source: l.source.clone(),
            subject_key: l.subject_key.clone(),
            matched: l.matched.clone(),
            rule: l.rule.clone(),
            confidence: l.confidence,
            sex: identifier(&l.source, &l.subject_key, "sex"),
            birth_year: identifier(&l.source, &l.subject_key, "birth_year"),
        })
        .collect();
    // Keys kept apart stay visible, with confidence 0: `subjects.conflicts` flags them
    // and the views never resolve their records to the subject.
    for c in &linking.report.conflicts {
        rows.push(crossdex_store::SubjectLink {
            subject_id: c.subject_id.clone(),
            source: c.source.clone(),
            subject_key: c.subject_key.clone(),
            matched: key_of(&c.source, &c.subject_key)
                .and_then(|k| k.matched.clone())
                .unwrap_or_else(|| c.subject_key.clone()),
            rule: format!("conflict:{}", c.identifier),
            confidence: 0.0,
            sex: identifier(&c.source, &c.subject_key, "sex"),
            birth_year: identifier(&c.source, &c.subject_key, "birth_year"),
        });
    }
    writer
        .set_subject_links(&rows)
        .map_err(|e| CliError::Runtime(e.into()))?;
    Ok(linking)
}

/// One line for sync output.
pub(crate) fn summary(l: &Linking) -> String {
    let subjects: BTreeSet<&str> = l.links.iter().map(|k| k.subject_id.as_str()).collect();
    format!(
        "linking: {} of {} keys linked into {} subjects; {} conflicts, {} ambiguous, {} unlinked (crossdex link report)",
        linked_keys(&l.links),
        l.keys
            .iter()
            .map(|k| (&k.source, &k.subject_key))
            .collect::<BTreeSet<_>>()
            .len(),
        subjects.len(),
        l.report.conflicts.len(),
        l.report.ambiguous.len(),
        l.report.unlinked.len()
    )
}

pub(crate) async fn compute(config: &Config, dir: &std::path::Path) -> Result<Linking> {
    let rules = config.link_rules()?;
    let crosswalk: Crosswalk = match &config.linking.crosswalk {
        None => Crosswalk::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the crosswalk {}", path.display()))
                .map_err(CliError::Usage)?;
            read_crosswalk(&text)
                .map_err(|e| CliError::usage(format!("crosswalk {}: {e}", path.display())))?
        }
    };
    let engine = QueryEngine::open(dir)?;
    let mut keys = Vec::new();
    for (source, rule) in &rules {
        // (key, what records carry when it is not the key itself)
        let mut found: BTreeSet<(String, Option<String>)> = BTreeSet::new();
        for r in rows(
            &engine,
            "SELECT DISTINCT subject_key FROM internal.records WHERE source = $s AND subject_key IS NOT NULL",
            &[("s", source)],
        )
        .await?
        {
            if let [Some(k)] = <[_; 1]>::try_from(r).unwrap_or_default() {
                found.insert((k, None));
            }
        }
        if rule.key_from() == KeyFrom::Title {
            // Titles name a subject only where the rule's pattern finds one.
            for r in rows(
                &engine,
                "SELECT DISTINCT title FROM internal.records WHERE source = $s AND subject_key IS NULL",
                &[("s", source)],
            )
            .await?
            {
                if let [Some(t)] = <[_; 1]>::try_from(r).unwrap_or_default()
                    && let Some(code) = rule.find(&t)
                    && rule.canonical(&code).is_some()
                {
                    found.insert((code, Some(t)));
                }
            }
        }
        // Names come in order (the rule's map), so each key's list is sorted.
        let mut hard: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (name, variable) in rule.hard() {
            for r in rows(
                &engine,
                "SELECT subject_key, min(coalesce(value_text, CAST(value_num AS VARCHAR))) AS v \
                 FROM internal.observations WHERE source = $s AND variable = $v AND subject_key IS NOT NULL \
                 GROUP BY subject_key",
                &[("s", source), ("v", variable)],
            )
            .await?
            {
                if let [Some(k), Some(v)] = <[_; 2]>::try_from(r).unwrap_or_default() {
                    hard.entry(k).or_default().push((name.clone(), v));
                }
            }
        }
        // Moved, not copied, into the key: one map per subject key adds up. A key read
        // from several titles is listed once per title, in a row.
        let mut found = found.into_iter().peekable();
        while let Some((k, matched)) = found.next() {
            let again = found.peek().is_some_and(|(next, _)| *next == k);
            let identifiers = if again {
                hard.get(&k).cloned()
            } else {
                hard.remove(&k)
            };
            keys.push(Key {
                hard: identifiers.unwrap_or_default(),
                source: source.clone(),
                subject_key: k,
                matched,
            });
        }
    }
    let priority = if config.linking.priority.is_empty() {
        config.source_names()
    } else {
        config.linking.priority.clone()
    };
    let (links, report) = link(&keys, &rules, &crosswalk, &priority);
    Ok(Linking {
        sources: rules.keys().cloned().collect(),
        keys,
        links,
        report,
    })
}

pub async fn report(g: &GlobalArgs, format: Format, fail_on: Option<FailOn>) -> Result<ExitCode> {
    let config = load_config(g)?;
    let linking = compute(&config, &data_dir(g, Some(&config))).await?;
    print_report(&config, &linking, format)?;
    let report = &linking.report;
    let fail = match fail_on {
        None => false,
        Some(FailOn::Conflicts) => !report.conflicts.is_empty(),
        Some(FailOn::Any) => {
            !report.conflicts.is_empty()
                || !report.ambiguous.is_empty()
                || !report.unlinked.is_empty()
        }
    };
    Ok(if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints what `linking` linked and left apart.
/// Keys linked, each once: a key read from several titles has a link per title.
fn linked_keys(links: &[crossdex_linking::Link]) -> usize {
    links
        .iter()
        .map(|l| (&l.source, &l.subject_key))
        .collect::<BTreeSet<_>>()
        .len()
}

pub(crate) fn print_report(config: &Config, linking: &Linking, format: Format) -> Result<()> {
    let Linking {
        sources,
        keys,
        links,
        report,
    } = linking;

    let system_of = |source: &str| {
        config
            .sources
            .get(source)
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut systems: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for l in links {
        systems
            .entry(&l.subject_id)
            .or_default()
            .insert(system_of(&l.source));
    }
    let single: Vec<(&str, String)> = systems
        .iter()
        .filter(|(_, s)| s.len() == 1)
        .map(|(id, s)| (*id, s.iter().next().cloned().unwrap_or_default()))
        .collect();
    let per_source: Vec<Value> = sources
        .iter()
        .map(|s| {
            // A key read from several titles is listed once per title: count keys once.
            let n_keys = keys
                .iter()
                .filter(|k| &k.source == s)
                .map(|k| &k.subject_key)
                .collect::<BTreeSet<_>>()
                .len();
            let linked = links
                .iter()
                .filter(|l| &l.source == s)
                .map(|l| &l.subject_key)
                .collect::<BTreeSet<_>>()
                .len();
            let unlinked = report.unlinked.iter().filter(|(src, _)| src == s).count();
            let conflicts = report.conflicts.iter().filter(|c| &c.source == s).count();
            json!({"source": s, "keys": n_keys, "linked": linked, "unlinked": unlinked, "conflicts": conflicts})
        })
        .collect();

    match format {
        Format::Json => {
            let v = json!({
                "subjects": systems.len(),
                "links": linked_keys(links),
                "per_source": per_source,
                "conflicts": report.conflicts,
                "ambiguous": report.ambiguous.iter().map(|(s, k, ids)| json!({"source": s, "subject_key": k, "subject_ids": ids})).collect::<Vec<_>>(),
                "unlinked": report.unlinked.iter().map(|(s, k)| json!({"source": s, "subject_key": k})).collect::<Vec<_>>(),
                "single_system_subjects": single.iter().map(|(id, sys)| json!({"subject_id": id, "system": sys})).collect::<Vec<_>>(),
            });
            print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ))?;
        }
        Format::Csv => {
            // One row per key that is not simply linked, then per-source totals: what a
            // data steward opens in a spreadsheet.
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut row = |cells: &[&str]| w.write_record(cells).map_err(anyhow::Error::from);
            row(&["kind", "source", "subject_key", "subject_id", "detail"])?;
            for p in &per_source {
                let n = |k: &str| p[k].as_u64().unwrap_or(0);
                row(&[
                    "source",
                    p["source"].as_str().unwrap_or(""),
                    "",
                    "",
                    &format!(
                        "{} keys, {} linked, {} unlinked, {} conflicts",
                        n("keys"),
                        n("linked"),
                        n("unlinked"),
                        n("conflicts")
                    ),
                ])?;
            }
            for c in &report.conflicts {
                row(&[
                    "conflict",
                    &c.source,
                    &c.subject_key,
                    &c.subject_id,
                    &format!(
                        "{} is {:?}, the subject's is {:?}",
                        c.identifier, c.value, c.subject_value
                    ),
                ])?;
            }
            for (s, k, ids) in &report.ambiguous {
                row(&["ambiguous", s, k, "", &ids.join(" ")])?;
            }
            for (s, k) in &report.unlinked {
                row(&["unlinked", s, k, "", "no rule reads it"])?;
            }
            let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
            print(&String::from_utf8_lossy(&bytes))?;
        }
        Format::Table => {
            let mut out = format!(
                "{} keys linked into {} subjects; {} conflicts, {} ambiguous, {} unlinked\n\n",
                linked_keys(links),
                systems.len(),
                report.conflicts.len(),
                report.ambiguous.len(),
                report.unlinked.len()
            );
            out.push_str("source       keys  linked  unlinked  conflicts\n");
            for p in &per_source {
                let n = |k: &str| p[k].as_u64().unwrap_or(0);
                out.push_str(&format!(
                    "{:<12} {:>4}  {:>6}  {:>8}  {:>9}\n",
                    p["source"].as_str().unwrap_or(""),
                    n("keys"),
                    n("linked"),
                    n("unlinked"),
                    n("conflicts")
                ));
            }
            if !report.conflicts.is_empty() {
                out.push_str("\nConflicts (kept apart; add a crosswalk entry once resolved):\n");
                for c in &report.conflicts {
                    out.push_str(&format!(
                        "  {} {:?} → {}: {} is {:?}, the subject's is {:?}\n",
                        c.source,
                        c.subject_key,
                        c.subject_id,
                        c.identifier,
                        c.value,
                        c.subject_value
                    ));
                }
            }
            if !report.ambiguous.is_empty() {
                out.push_str("\nAmbiguous crosswalk entries (not linked):\n");
                for (s, k, ids) in &report.ambiguous {
                    out.push_str(&format!("  {s} {k:?} → {}\n", ids.join(", ")));
                }
            }
            if !report.unlinked.is_empty() {
                out.push_str("\nUnlinked keys (no rule reads them):\n");
                for (s, k) in report.unlinked.iter().take(50) {
                    out.push_str(&format!("  {s} {k:?}\n"));
                }
                if report.unlinked.len() > 50 {
                    out.push_str(&format!(
                        "  ... {} more (--format json lists all)\n",
                        report.unlinked.len() - 50
                    ));
                }
            }
            out.push_str(&format!(
                "\nSubjects in one system only: {}\n",
                single.len()
            ));
            print(&out)?;
        }
    }
    Ok(())
}

/// `crossdex subject ID`: the links, records and dated events of one subject, found by
/// its id, its label or any source's spelling of its key.
pub async fn subject(g: &GlobalArgs, id: &str, format: Format) -> Result<ExitCode> {
    let config = load_config(g)?;
    let engine = QueryEngine::open(data_dir(g, Some(&config)))?;
    let matches = rows(
        &engine,
        "SELECT DISTINCT subject_id FROM subject_links \
         WHERE subject_id = $id OR subject_id = concat('subj:', upper($id)) OR subject_key = $id \
         ORDER BY subject_id",
        &[("id", id)],
    )
    .await?;
    let ids: Vec<String> = matches
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    let subject_id = match ids.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(CliError::usage(format!(
                "no subject {id:?}: give a subject id (subj:...), its label, or a source's key; \
                 `crossdex link report` lists what is linked"
            )));
        }
        many => {
            return Err(CliError::usage(format!(
                "{id:?} names {} subjects ({}): give the subject id",
                many.len(),
                many.join(", ")
            )));
        }
    };
    let param = [("id", subject_id.as_str())];
    let sections = [
        (
            "Keys",
            "SELECT source, subject_key, rule, confidence FROM subject_links WHERE subject_id = $id ORDER BY source",
        ),
        (
            "Records",
            "SELECT source, kind, count(*) AS n, min(title) AS example FROM records \
             WHERE subject_id = $id GROUP BY source, kind ORDER BY source, kind",
        ),
        (
            "Timeline",
            "SELECT at, source, what FROM ( \
               SELECT coalesce(created_at, modified_at) AS at, source, concat(kind, ': ', title) AS what \
               FROM records WHERE subject_id = $id AND kind <> 'scan' \
               UNION ALL \
               SELECT value_date AS at, source, concat(coalesce(event, ''), ' ', coalesce(label, variable)) AS what \
               FROM observations WHERE subject_id = $id AND value_date IS NOT NULL \
             ) WHERE at IS NOT NULL ORDER BY at, source, what",
        ),
    ];
    match format {
        Format::Json => {
            let mut out = serde_json::Map::new();
            out.insert("subject_id".into(), Value::from(subject_id.clone()));
            for (name, sql) in sections {
                out.insert(
                    name.to_lowercase(),
                    Value::from(json_rows(&engine, sql, &param).await?),
                );
            }
            print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
            ))?;
        }
        Format::Table | Format::Csv => {
            print(&format!("Subject {subject_id}\n"))?;
            for (name, sql) in sections {
                let out = engine.sql(sql, text_params(&param)).await?;
                let fmt = if format == Format::Csv {
                    OutputFormat::Csv
                } else {
                    OutputFormat::Table
                };
                print(&format!(
                    "\n{name}\n{}\n",
                    crate::commands::rendered(&out, fmt)?
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
