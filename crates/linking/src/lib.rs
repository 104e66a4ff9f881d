//! Subject identity across sources: declared rules turn each source's subject keys into
//! one canonical key, crosswalk entries override them, and hard identifiers (sex, year
//! of birth, ...) keep two people from being merged.
//!
//! This crate owns the linking decision and its explanation (which rule linked a key,
//! which keys conflict or stay unlinked). It must not read the store or any source: it
//! is given keys with their hard identifiers and returns links and a report, so the
//! same logic serves the sync, the report command and the tests.
//!
//! Safety comes first: a key whose hard identifiers disagree with the subject's is not
//! linked but reported, and a key the crosswalk gives two subjects is ambiguous, never
//! guessed.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde::{Deserialize, Serialize};

/// How one source's subject keys are normalised.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A regular expression the (trimmed, case-folded) key must match; its captures feed
    /// `template`. Without it the folded key is the canonical key.
    pub pattern: Option<String>,
    /// The canonical key, from captures: `{1}`, or `{1:04}` to zero-pad to 4 digits.
    pub template: Option<String>,
    /// Fold case before matching: `upper` (default), `lower` or `none`.
    #[serde(default)]
    pub case: CaseFold,
    /// Characters replaced before matching, e.g. `{"O" = "0"}` where a letter O is a
    /// known slip for a zero.
    #[serde(default)]
    pub replace: BTreeMap<String, String>,
    /// Hard identifiers: canonical name (`sex`, `birth_year`) → the source's variable.
    #[serde(default)]
    pub hard: BTreeMap<String, String>,
    /// Where the key is read: the record's `subject_key` (default), or its `title`, in
    /// which `pattern` is searched (for notebooks that name subjects only in titles).
    #[serde(default)]
    pub key_from: KeyFrom,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyFrom {
    #[default]
    SubjectKey,
    Title,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CaseFold {
    #[default]
    Upper,
    Lower,
    None,
}

/// Why a rule could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("`pattern` {pattern:?} is not a valid regular expression: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("`template` {template:?}: {reason}")]
    Template { template: String, reason: String },
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    config: RuleConfig,
    pattern: Option<Regex>,
}

impl Rule {
    pub fn new(config: RuleConfig) -> Result<Rule, RuleError> {
        let pattern = match &config.pattern {
            None => None,
            Some(p) => Some(Regex::new(p).map_err(|e| RuleError::Pattern {
                pattern: p.clone(),
                reason: e.to_string(),
            })?),
        };
        if let (Some(t), Some(re)) = (&config.template, &pattern) {
            for (n, _) in placeholders(t) {
                if n >= re.captures_len() {
                    return Err(RuleError::Template {
                        template: t.clone(),
                        reason: format!(
                            "refers to capture {n}, the pattern has {}",
                            re.captures_len() - 1
                        ),
                    });
                }
            }
        }
        Ok(Rule { config, pattern })
    }

    pub fn hard(&self) -> &BTreeMap<String, String> {
        &self.config.hard
    }

    pub fn key_from(&self) -> KeyFrom {
        self.config.key_from
    }

    /// The part of `text` the pattern matches (folded as keys are), for keys read from
    /// titles: `Plasma aliquot INT_0042-A` → `INT_0042`.
    pub fn find(&self, text: &str) -> Option<String> {
        let folded = self.fold(text);
        match &self.pattern {
            Some(re) => re.find(&folded).map(|m| m.as_str().to_owned()),
            None => Some(folded),
        }
    }

    fn fold(&self, key: &str) -> String {
        let mut k = key.trim().to_owned();
        for (from, to) in &self.config.replace {
            k = k.replace(from.as_str(), to);
        }
        match self.config.case {
            CaseFold::Upper => k.to_uppercase(),
            CaseFold::Lower => k.to_lowercase(),
            CaseFold::None => k,
        }
    }

    /// The canonical key for `key`, or `None` when the key does not fit the rule.
    pub fn canonical(&self, key: &str) -> Option<String> {
        let k = self.fold(key);
        if k.is_empty() {
            return None;
        }
        let Some(re) = &self.pattern else {
            return Some(k);
        };
        let caps = re.captures(&k)?;
        match &self.config.template {
            None => Some(caps.get(0)?.as_str().to_owned()),
            Some(t) => Some(fill(t, &caps)),
        }
    }
}

/// `{n}` and `{n:0W}` placeholders of a template: `(capture, width)`.
fn placeholders(t: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 1..start + end];
        let (n, w) = inner.split_once(':').unwrap_or((inner, ""));
        if let Ok(n) = n.parse::<usize>() {
            out.push((n, w.trim_start_matches('0').parse().unwrap_or(0)));
        }
        rest = &rest[start + end + 1..];
    }
    out
}

fn fill(t: &str, caps: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &rest[start + 1..start + end];
        let (n, w) = inner.split_once(':').unwrap_or((inner, ""));
        let value = n
            .parse::<usize>()
            .ok()
            .and_then(|n| caps.get(n))
            .map_or("", |m| m.as_str());
        let width: usize = w.parse().unwrap_or(0);
        // Zero-padding applies to numbers; leading zeros of the capture are dropped first
        // so `042` and `42` meet.
        match value.parse::<u64>() {
            Ok(num) if w.starts_with('0') => out.push_str(&format!("{num:0width$}")),
            _ => out.push_str(value),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// One subject key as a source holds it, with its hard identifiers (canonical names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub source: String,
    pub subject_key: String,
    /// Hard identifiers as `(canonical name, value)`, sorted by name. A list, not a map:
    /// there are one or two per key, and a map costs hundreds of bytes each.
    pub hard: Vec<(String, String)>,
    /// What the source's records carry where it differs from the key: the title a key
    /// was read from.
    pub matched: Option<String>,
}

/// A key's link, with the rule that made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub subject_id: String,
    pub source: String,
    pub subject_key: String,
    /// What records are joined on: their subject key, or the title the key was read from.
    pub matched: String,
    /// `crosswalk`, or `rule:<source>`.
    pub rule: String,
    pub confidence: f64,
}

/// What could not be linked, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Keys no rule could read: `(source, key)`.
    pub unlinked: Vec<(String, String)>,
    /// Keys kept apart because a hard identifier disagrees with their subject's:
    /// `(source, key, subject_id, identifier, their value, the subject's value)`.
    pub conflicts: Vec<Conflict>,
    /// Keys the crosswalk gives more than one subject.
    pub ambiguous: Vec<(String, String, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    pub source: String,
    pub subject_key: String,
    pub subject_id: String,
    pub identifier: String,
    pub value: String,
    pub subject_value: String,
}

/// Crosswalk entries: `(source, subject_key) → subject_id`, taking precedence over rules.
pub type Crosswalk = BTreeMap<(String, String), Vec<String>>;

/// Reads a crosswalk CSV with the header `source,subject_key,subject_id`.
pub fn read_crosswalk(text: &str) -> Result<Crosswalk, String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("").trim();
    if header != "source,subject_key,subject_id" {
        return Err(format!(
            "the header must be `source,subject_key,subject_id`, found {header:?}"
        ));
    }
    let mut out: Crosswalk = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split(',').map(str::trim).collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "line {}: expected three values, found {line:?}",
                i + 2
            ));
        }
        let ids = out
            .entry((parts[0].to_owned(), parts[1].to_owned()))
            .or_default();
        if !ids.contains(&parts[2].to_owned()) {
            ids.push(parts[2].to_owned());
        }
    }
    Ok(out)
}

/// The stable subject id of a canonical key.
pub fn subject_id(canonical: &str) -> String {
    format!("subj:{canonical}")
}

/// Links `keys` by the rules of their sources (and the crosswalk first). Sources in
/// `priority` order give the reference values of hard identifiers; a key that disagrees
/// with them is reported, not linked.
pub fn link(
    keys: &[Key],
    rules: &BTreeMap<String, Rule>,
    crosswalk: &Crosswalk,
    priority: &[String],
) -> (Vec<Link>, Report) {
    let mut report = Report::default();
    // 1. A candidate subject per key.
    let mut candidates: Vec<(&Key, String, String, f64)> = Vec::new();
    for k in keys {
        if let Some(ids) = crosswalk.get(&(k.source.clone(), k.subject_key.clone())) {
            if ids.len() > 1 {
                report
                    .ambiguous
                    .push((k.source.clone(), k.subject_key.clone(), ids.clone()));
            } else {
                candidates.push((k, ids[0].clone(), "crosswalk".to_owned(), 1.0));
            }
            continue;
        }
        match rules
            .get(&k.source)
            .and_then(|r| r.canonical(&k.subject_key))
        {
            Some(c) => candidates.push((k, subject_id(&c), format!("rule:{}", k.source), 0.99)),
            None => report
                .unlinked
                .push((k.source.clone(), k.subject_key.clone())),
        }
    }
    // 2. Reference hard identifiers per subject, from the highest-priority source.
    let rank = |s: &str| {
        priority
            .iter()
            .position(|p| p == s)
            .unwrap_or(priority.len())
    };
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| {
        (
            rank(&candidates[i].0.source),
            candidates[i].0.source.clone(),
            candidates[i].0.subject_key.clone(),
        )
    });
    let mut reference: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut links = Vec::new();
    for i in order {
        let (k, sid, rule, confidence) = &candidates[i];
        let subject = reference.entry(sid.clone()).or_default();
        // A crosswalk entry is a person's decision: it is not second-guessed.
        let checked = rule != "crosswalk";
        let clash = k.hard.iter().filter(|_| checked).find_map(|(name, v)| {
            subject
                .get(name)
                .filter(|sv| !same(sv, v))
                .map(|sv| (name.clone(), v.clone(), sv.clone()))
        });
        if let Some((identifier, value, subject_value)) = clash {
            report.conflicts.push(Conflict {
                source: k.source.clone(),
                subject_key: k.subject_key.clone(),
                subject_id: sid.clone(),
                identifier,
                value,
                subject_value,
            });
            continue;
        }
        for (name, v) in &k.hard {
            subject.entry(name.clone()).or_insert_with(|| v.clone());
        }
        links.push(Link {
            subject_id: sid.clone(),
            source: k.source.clone(),
            subject_key: k.subject_key.clone(),
            matched: k.matched.clone().unwrap_or_else(|| k.subject_key.clone()),
            rule: rule.clone(),
            confidence: *confidence,
        });
    }
    links.sort_by(|a, b| {
        (&a.subject_id, &a.source, &a.subject_key).cmp(&(&b.subject_id, &b.source, &b.subject_key))
    });
    report.unlinked.sort();
    (links, report)
}

/// Hard identifiers compare case-insensitively, and numbers as numbers (`1950` = `1950.0`).
fn same(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.trim().eq_ignore_ascii_case(b.trim()),
    }
}

/// Pairwise precision and recall of `links` against a truth of `(person, source, key)`:
/// over pairs of keys from different sources, same-person pairs are the positives.
pub fn pair_scores(
    links: &[Link],
    truth: &[(String, String, String)],
) -> BTreeMap<(String, String), (f64, f64)> {
    let linked: BTreeMap<(&str, &str), &str> = links
        .iter()
        .map(|l| {
            (
                (l.source.as_str(), l.subject_key.as_str()),
                l.subject_id.as_str(),
            )
        })
        .collect();
    let sources: BTreeSet<&str> = truth.iter().map(|(_, s, _)| s.as_str()).collect();
    let mut out = BTreeMap::new();
    let srcs: Vec<&str> = sources.into_iter().collect();
    for (i, a) in srcs.iter().enumerate() {
        for b in &srcs[i + 1..] {
            let (mut tp, mut fp, mut positives) = (0u64, 0u64, 0u64);
            let ka: Vec<&(String, String, String)> = truth.iter().filter(|t| t.1 == *a).collect();
            let kb: Vec<&(String, String, String)> = truth.iter().filter(|t| t.1 == *b).collect();
            for x in &ka {
                for y in &kb {
                    let same_person = x.0 == y.0;
                    positives += u64::from(same_person);
                    let together = matches!(
                        (linked.get(&(x.1.as_str(), x.2.as_str())), linked.get(&(y.1.as_str(), y.2.as_str()))),
                        (Some(s), Some(t)) if s == t
                    );
                    if together {
                        if same_person { tp += 1 } else { fp += 1 }
                    }
                }
            }
            let precision = if tp + fp == 0 {
                1.0
            } else {
                tp as f64 / (tp + fp) as f64
            };
            let recall = if positives == 0 {
                1.0
            } else {
                tp as f64 / positives as f64
            };
            out.insert(((*a).to_owned(), (*b).to_owned()), (precision, recall));
        }
    }
    out
}

#[cfg(test)]
mod tests;
