//! Subject linking over the data directory: the configuration's rules applied to the
//! subject keys in the index, the links stored after each sync, and the report of what
//! they link and leave apart.

use std::collections::{BTreeMap, BTreeSet};

use crossdex_linking::{Crosswalk, Key, KeyFrom, link, read_crosswalk};
use crossdex_query::QueryEngine;
use serde::Serialize;

use crate::config::Config;
use crate::{ErrorCode, QueryControl, Result, Service, ServiceError};

/// The rows of `sql` as text. Every subject key of a source passes through here.
async fn rows(
    engine: &QueryEngine,
    sql: &str,
    params: &[(&str, &str)],
) -> Result<Vec<Vec<Option<String>>>> {
    let out = engine.sql(sql, crate::text_params(params)).await?;
    out.text_rows()
        .map_err(|e| ServiceError::internal("reading subject keys", e))
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
    // The state the writer just committed: every source as it settled.
    let engine = QueryEngine::open(writer.root())?;
    let linking = compute(config, &engine).await?;
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
    writer.set_subject_links(&rows)?;
    Ok(linking)
}

impl Linking {
    /// The counts a sync reports once it has linked.
    pub(crate) fn summary(&self) -> LinkSummary {
        let subjects: BTreeSet<&str> = self.links.iter().map(|k| k.subject_id.as_str()).collect();
        LinkSummary {
            linked: linked_keys(&self.links),
            keys: self
                .keys
                .iter()
                .map(|k| (&k.source, &k.subject_key))
                .collect::<BTreeSet<_>>()
                .len(),
            subjects: subjects.len(),
            conflicts: self.report.conflicts.len(),
            ambiguous: self.report.ambiguous.len(),
            unlinked: self.report.unlinked.len(),
        }
    }
}

pub(crate) async fn compute(config: &Config, engine: &QueryEngine) -> Result<Linking> {
    let rules = config.link_rules()?;
    let crosswalk: Crosswalk = match &config.linking.crosswalk {
        None => Crosswalk::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ServiceError::new(
                    ErrorCode::InvalidConfig,
                    format!("cannot read the crosswalk {}: {e}", path.display()),
                )
            })?;
            read_crosswalk(&text).map_err(|e| {
                ServiceError::new(
                    ErrorCode::InvalidConfig,
                    format!("crosswalk {}: {e}", path.display()),
                )
            })?
        }
    };
    let mut keys = Vec::new();
    for (source, rule) in &rules {
        // (key, what records carry when it is not the key itself)
        let mut found: BTreeSet<(String, Option<String>)> = BTreeSet::new();
        for r in rows(
            engine,
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
                engine,
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
                engine,
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

/// Keys linked, each once: a key read from several titles has a link per title.
fn linked_keys(links: &[crossdex_linking::Link]) -> usize {
    links
        .iter()
        .map(|l| (&l.source, &l.subject_key))
        .collect::<BTreeSet<_>>()
        .len()
}

/// What a sync's linking did, in counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LinkSummary {
    /// Distinct keys linked to a subject.
    pub linked: usize,
    /// Distinct keys found.
    pub keys: usize,
    /// Subjects they form.
    pub subjects: usize,
    /// Keys kept apart by a hard identifier.
    pub conflicts: usize,
    /// Keys the crosswalk gives several subjects.
    pub ambiguous: usize,
    /// Keys no rule reads.
    pub unlinked: usize,
}

/// What linking links and leaves apart, for data stewards.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LinkReport {
    /// Subjects formed.
    pub subjects: usize,
    /// Distinct keys linked.
    pub links: usize,
    /// Per configured source.
    pub per_source: Vec<SourceLinks>,
    /// Keys kept apart because a hard identifier disagrees.
    pub conflicts: Vec<Conflict>,
    /// Keys the crosswalk gives several subjects.
    pub ambiguous: Vec<AmbiguousKey>,
    /// Keys no rule reads.
    pub unlinked: Vec<KeyRef>,
    /// Subjects seen by one system only.
    pub single_system_subjects: Vec<SingleSystemSubject>,
}

/// One source's keys in the report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SourceLinks {
    /// The source.
    pub source: String,
    /// Distinct keys found.
    pub keys: usize,
    /// Of which linked.
    pub linked: usize,
    /// Of which no rule reads.
    pub unlinked: usize,
    /// Of which kept apart.
    pub conflicts: usize,
    /// The first key in sort order, to show how the source spells them.
    pub example_key: Option<String>,
}

/// A key kept apart from the subject its rule names.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Conflict {
    /// The source.
    pub source: String,
    /// The key as the source spells it.
    pub subject_key: String,
    /// The subject it would have joined.
    pub subject_id: String,
    /// The hard identifier that disagrees (`sex`, `birth_year`).
    pub identifier: String,
    /// The key's value.
    pub value: String,
    /// The subject's value.
    pub subject_value: String,
}

/// A key the crosswalk gives several subjects.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AmbiguousKey {
    /// The source.
    pub source: String,
    /// The key.
    pub subject_key: String,
    /// The subjects named.
    pub subject_ids: Vec<String>,
}

/// A source's key.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct KeyRef {
    /// The source.
    pub source: String,
    /// The key.
    pub subject_key: String,
}

/// A subject only one system knows.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SingleSystemSubject {
    /// The subject.
    pub subject_id: String,
    /// The system.
    pub system: String,
}

impl Linking {
    /// The report of this linking; systems named by the configuration's sources.
    pub(crate) fn report(&self, config: &Config) -> LinkReport {
        let Linking {
            sources,
            keys,
            links,
            report,
        } = self;
        let system_of = |source: &str| {
            config
                .sources
                .get(source)
                .and_then(|t| t.get("type"))
                .and_then(serde_json::Value::as_str)
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
        let per_source = sources
            .iter()
            .map(|s| SourceLinks {
                source: s.clone(),
                // A key read from several titles is listed once per title: count keys once.
                keys: keys
                    .iter()
                    .filter(|k| &k.source == s)
                    .map(|k| &k.subject_key)
                    .collect::<BTreeSet<_>>()
                    .len(),
                linked: links
                    .iter()
                    .filter(|l| &l.source == s)
                    .map(|l| &l.subject_key)
                    .collect::<BTreeSet<_>>()
                    .len(),
                unlinked: report.unlinked.iter().filter(|(src, _)| src == s).count(),
                conflicts: report.conflicts.iter().filter(|c| &c.source == s).count(),
                example_key: keys
                    .iter()
                    .filter(|k| &k.source == s)
                    .map(|k| &k.subject_key)
                    .min()
                    .cloned(),
            })
            .collect();
        LinkReport {
            subjects: systems.len(),
            links: linked_keys(links),
            per_source,
            conflicts: report
                .conflicts
                .iter()
                .map(|c| Conflict {
                    source: c.source.clone(),
                    subject_key: c.subject_key.clone(),
                    subject_id: c.subject_id.clone(),
                    identifier: c.identifier.clone(),
                    value: c.value.clone(),
                    subject_value: c.subject_value.clone(),
                })
                .collect(),
            ambiguous: report
                .ambiguous
                .iter()
                .map(|(s, k, ids)| AmbiguousKey {
                    source: s.clone(),
                    subject_key: k.clone(),
                    subject_ids: ids.clone(),
                })
                .collect(),
            unlinked: report
                .unlinked
                .iter()
                .map(|(s, k)| KeyRef {
                    source: s.clone(),
                    subject_key: k.clone(),
                })
                .collect(),
            single_system_subjects: systems
                .iter()
                .filter(|(_, s)| s.len() == 1)
                .map(|(id, s)| SingleSystemSubject {
                    subject_id: (*id).to_owned(),
                    system: s.iter().next().cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

impl Service {
    /// The configuration's linking rules applied to the keys in the data directory now:
    /// what they link and what they leave apart. Nothing is stored.
    pub async fn link_report(&self, control: &QueryControl) -> Result<LinkReport> {
        self.require(crate::Action::Subjects)?;
        let config = self.require_config("a link report")?;
        let engine = self.engine()?;
        let linking = self
            .bounded(control, async { compute(config, &engine).await })
            .await?;
        Ok(linking.report(config))
    }
}
