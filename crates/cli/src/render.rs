//! The service's typed answers as text: tables for people, CSV for spreadsheets, JSON
//! exactly as the service serializes it (the HTTP API's shapes).

use crossdex_service::{LinkReport, RecordView, SearchResult, Status, SubjectView};

use crate::CliError;

type Result<T, E = CliError> = std::result::Result<T, E>;

/// `value` as pretty JSON, with a final newline.
pub fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot write JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// An aligned table in the layout of the query engine's tables, fitted to `width`
/// columns on a terminal.
pub fn table(headers: &[&str], rows: &[Vec<String>], width: Option<u16>) -> String {
    use comfy_table::{Cell, ContentArrangement, Row, Table};
    let mut t = Table::new();
    t.load_preset("||--+-++|    ++++++");
    if let Some(w) = width {
        t.set_width(w)
            .set_content_arrangement(ContentArrangement::Dynamic);
    }
    t.set_truncation_indicator("…");
    let row = |cells: Vec<Cell>| {
        let mut r = Row::from(cells);
        if width.is_some() {
            r.max_height(1);
        }
        r
    };
    t.set_header(row(headers.iter().map(Cell::new).collect()));
    for r in rows {
        t.add_row(row(r.iter().map(Cell::new).collect()));
    }
    t.to_string()
}

/// Rows as CSV with a header line.
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| CliError::Runtime(anyhow::anyhow!("cannot write CSV: {e}"));
    w.write_record(headers).map_err(err)?;
    for r in rows {
        w.write_record(r).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot write CSV: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A titled block of rows: its title, its column names, its rows.
type Section<'a> = (&'a str, &'a [&'a str], Vec<Vec<String>>);

/// Sections one after the other, each a titled table or CSV block.
fn sections(sections: Vec<Section<'_>>, as_csv: bool, width: Option<u16>) -> Result<String> {
    let mut out = String::new();
    for (name, headers, rows) in sections {
        let body = if as_csv {
            csv(headers, &rows)?
        } else {
            table(headers, &rows, width)
        };
        out.push_str(&format!("\n{name}\n{body}\n"));
    }
    Ok(out)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

const STATUS_HEADERS: &[&str] = &[
    "source",
    "system",
    "records",
    "last_status",
    "last_mode",
    "last_start",
    "seconds",
    "added",
    "updated",
    "unchanged",
    "deleted",
    "rejected",
    "next_run",
    "schedule",
    "error",
];

/// One row per source, its last run flattened.
pub fn status_rows(s: &Status) -> Vec<Vec<String>> {
    let time = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    s.sources
        .iter()
        .map(|src| {
            let r = src.last_run.as_ref();
            let n = |f: fn(&crossdex_service::RunSummary) -> u64| {
                r.map(|r| f(r).to_string()).unwrap_or_default()
            };
            vec![
                src.source.clone(),
                opt(&src.system),
                src.records.to_string(),
                r.map(|r| r.status.clone()).unwrap_or_default(),
                r.map(|r| r.mode.clone()).unwrap_or_default(),
                r.map(|r| time(&r.started_at)).unwrap_or_default(),
                r.map(|r| format!("{:.1}", r.seconds)).unwrap_or_default(),
                n(|r| r.added),
                n(|r| r.updated),
                n(|r| r.unchanged),
                n(|r| r.deleted),
                n(|r| r.rejected),
                src.next_run.as_ref().map(time).unwrap_or_default(),
                opt(&src.schedule),
                r.and_then(|r| r.error.clone()).unwrap_or_default(),
            ]
        })
        .collect()
}

/// `status` as a table, under a line of totals.
pub fn status_table(s: &Status, width: Option<u16>) -> String {
    let mut out = format!(
        "data directory {}: {} sources, {} records, {} observations\n",
        s.data_dir, s.indexed_sources, s.records, s.observations
    );
    if !s.never_synced.is_empty() {
        out.push_str(&format!("never synced: {}\n", s.never_synced.join(", ")));
    }
    if !s.not_configured.is_empty() {
        out.push_str(&format!(
            "indexed but no longer configured: {} (`crossdex forget {}` removes its data)\n",
            s.not_configured.join(", "),
            s.not_configured.join(" ")
        ));
    }
    out.push_str(&table(STATUS_HEADERS, &status_rows(s), width));
    out.push('\n');
    out
}

/// `status` as CSV.
pub fn status_csv(s: &Status) -> Result<String> {
    csv(STATUS_HEADERS, &status_rows(s))
}

/// The subject's sections, each a titled table (or CSV block).
pub fn subject(v: &SubjectView, as_csv: bool, width: Option<u16>) -> Result<String> {
    let parts: Vec<Section<'_>> = vec![
        (
            "Keys",
            &["source", "subject_key", "rule", "confidence"],
            v.keys
                .iter()
                .map(|k| {
                    vec![
                        k.source.clone(),
                        k.subject_key.clone(),
                        k.rule.clone(),
                        k.confidence.to_string(),
                    ]
                })
                .collect(),
        ),
        (
            "Records",
            &["source", "kind", "n", "example"],
            v.records
                .iter()
                .map(|r| {
                    vec![
                        r.source.clone(),
                        r.kind.clone(),
                        r.n.to_string(),
                        opt(&r.example),
                    ]
                })
                .collect(),
        ),
        (
            "Timeline",
            &["at", "source", "what"],
            v.timeline
                .iter()
                .map(|t| vec![t.at.clone(), t.source.clone(), t.what.clone()])
                .collect(),
        ),
    ];
    Ok(format!(
        "Subject {}\n{}",
        v.subject_id,
        sections(parts, as_csv, width)?
    ))
}

/// The link report for a data steward's terminal.
pub fn link_report_table(r: &LinkReport) -> String {
    let mut out = format!(
        "{} keys linked into {} subjects; {} conflicts, {} ambiguous, {} unlinked\n\n",
        r.links,
        r.subjects,
        r.conflicts.len(),
        r.ambiguous.len(),
        r.unlinked.len()
    );
    out.push_str("source       keys  linked  unlinked  conflicts\n");
    for p in &r.per_source {
        out.push_str(&format!(
            "{:<12} {:>4}  {:>6}  {:>8}  {:>9}\n",
            p.source, p.keys, p.linked, p.unlinked, p.conflicts
        ));
    }
    if !r.conflicts.is_empty() {
        out.push_str("\nConflicts (kept apart; add a crosswalk entry once resolved):\n");
        for c in &r.conflicts {
            out.push_str(&format!(
                "  {} {:?} → {}: {} is {:?}, the subject's is {:?}\n",
                c.source, c.subject_key, c.subject_id, c.identifier, c.value, c.subject_value
            ));
        }
    }
    if !r.ambiguous.is_empty() {
        out.push_str("\nAmbiguous crosswalk entries (not linked):\n");
        for a in &r.ambiguous {
            out.push_str(&format!(
                "  {} {:?} → {}\n",
                a.source,
                a.subject_key,
                a.subject_ids.join(", ")
            ));
        }
    }
    if !r.unlinked.is_empty() {
        out.push_str("\nUnlinked keys (no rule reads them):\n");
        for k in r.unlinked.iter().take(50) {
            out.push_str(&format!("  {} {:?}\n", k.source, k.subject_key));
        }
        if r.unlinked.len() > 50 {
            out.push_str(&format!(
                "  ... {} more (--format json lists all)\n",
                r.unlinked.len() - 50
            ));
        }
    }
    out.push_str(&format!(
        "\nSubjects in one system only: {}\n",
        r.single_system_subjects.len()
    ));
    out
}

/// The link report as CSV: one row per key that is not simply linked, after
/// per-source totals; what a data steward opens in a spreadsheet.
pub fn link_report_csv(r: &LinkReport) -> Result<String> {
    let mut rows = Vec::new();
    for p in &r.per_source {
        rows.push(vec![
            "source".into(),
            p.source.clone(),
            String::new(),
            String::new(),
            format!(
                "{} keys, {} linked, {} unlinked, {} conflicts",
                p.keys, p.linked, p.unlinked, p.conflicts
            ),
        ]);
    }
    for c in &r.conflicts {
        rows.push(vec![
            "conflict".into(),
            c.source.clone(),
            c.subject_key.clone(),
            c.subject_id.clone(),
            format!(
                "{} is {:?}, the subject's is {:?}",
                c.identifier, c.value, c.subject_value
            ),
        ]);
    }
    for a in &r.ambiguous {
        rows.push(vec![
            "ambiguous".into(),
            a.source.clone(),
            a.subject_key.clone(),
            String::new(),
            a.subject_ids.join(" "),
        ]);
    }
    for k in &r.unlinked {
        rows.push(vec![
            "unlinked".into(),
            k.source.clone(),
            k.subject_key.clone(),
            String::new(),
            "no rule reads it".into(),
        ]);
    }
    csv(
        &["kind", "source", "subject_key", "subject_id", "detail"],
        &rows,
    )
}

/// The columns of a search's CSV, one row per hit.
const HIT_HEADERS: &[&str] = &[
    "score",
    "id",
    "source",
    "kind",
    "subject_id",
    "title",
    "snippet",
];

/// Hits as CSV.
pub fn hits_csv(r: &SearchResult) -> Result<String> {
    let rows: Vec<Vec<String>> = r
        .hits
        .iter()
        .map(|h| {
            vec![
                h.score.to_string(),
                h.id.clone(),
                h.source.clone(),
                h.kind.clone(),
                opt(&h.subject_id),
                h.title.clone(),
                h.snippet.clone(),
            ]
        })
        .collect();
    csv(HIT_HEADERS, &rows)
}

/// The facets of a search in a few lines: each facet's top values.
pub fn facets_text(r: &SearchResult) -> String {
    let Some(f) = &r.facets else {
        return String::new();
    };
    let line = |name: &str, buckets: &[crossdex_service::Bucket]| {
        if buckets.is_empty() {
            return String::new();
        }
        let shown: Vec<String> = buckets
            .iter()
            .take(6)
            .map(|b| format!("{} {}", b.value, b.count))
            .collect();
        let more = if buckets.len() > 6 { ", …" } else { "" };
        format!("  {name:<9} {}{more}\n", shown.join(", "))
    };
    let mut out = String::new();
    out.push_str(&line("systems", &f.system));
    out.push_str(&line("kinds", &f.kind));
    out.push_str(&line("projects", &f.project));
    out.push_str(&line("subjects", &f.subject));
    if let (Some(first), Some(last)) = (f.month.first(), f.month.last()) {
        out.push_str(&format!(
            "  {:<9} {} to {}{}\n",
            "dates",
            first.value,
            last.value,
            if f.undated > 0 {
                format!(" ({} undated)", f.undated)
            } else {
                String::new()
            }
        ));
    }
    out
}

/// A record: its fields, its observations, what it is linked to.
pub fn record(v: &RecordView, as_csv: bool, width: Option<u16>) -> Result<String> {
    let r = &v.record;
    let fields: Vec<Vec<String>> = [
        ("id", Some(r.id.clone())),
        ("source", Some(r.source.clone())),
        ("system", Some(r.system.clone())),
        ("kind", Some(r.kind.clone())),
        ("native_id", Some(r.native_id.clone())),
        ("title", Some(r.title.clone())),
        ("project", r.project.clone()),
        ("subject_key", r.subject_key.clone()),
        ("subject_id", r.subject_id.clone()),
        ("parent_id", r.parent_id.clone()),
        ("created_at", r.created_at.clone()),
        ("modified_at", r.modified_at.clone()),
        ("description", r.description.clone()),
        ("deep_link", v.deep_link.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some(vec![k.to_owned(), v?]))
    .collect();
    let observations: Vec<Vec<String>> = v
        .observations
        .iter()
        .map(|o| {
            vec![
                opt(&o.event),
                o.variable.clone(),
                opt(&o.label),
                opt(&o.value_text),
                opt(&o.unit),
            ]
        })
        .collect();
    let links: Vec<Vec<String>> = v
        .links
        .iter()
        .map(|l| {
            vec![
                l.relation.clone(),
                l.source.clone(),
                l.kind.clone(),
                l.title.clone(),
                l.id.clone(),
            ]
        })
        .collect();
    let parts: Vec<Section<'_>> = vec![
        ("Record", &["field", "value"], fields),
        (
            "Observations",
            &["event", "variable", "label", "value", "unit"],
            observations,
        ),
        (
            "Links",
            &["relation", "source", "kind", "title", "id"],
            links,
        ),
    ];
    sections(parts, as_csv, width)
}

/// Rows as CSV, or as a table fitted to the terminal; `empty` when there are none.
fn listing(headers: &[&str], rows: &[Vec<String>], as_csv: bool, empty: &str) -> Result<String> {
    if as_csv {
        return csv(headers, rows);
    }
    if rows.is_empty() {
        return Ok(empty.to_owned());
    }
    Ok(table(headers, rows, crate::commands::terminal_width()) + "\n")
}

fn list(v: &Option<std::collections::BTreeSet<String>>) -> String {
    v.as_ref().map_or_else(
        || "all".to_owned(),
        |s| s.iter().cloned().collect::<Vec<_>>().join(","),
    )
}

/// API tokens, one per line; never secrets, which are not kept.
pub fn tokens(tokens: &[crossdex_service::TokenInfo], as_csv: bool) -> Result<String> {
    let now = chrono::Utc::now();
    let headers = [
        "name",
        "state",
        "actions",
        "sources",
        "projects",
        "sensitive",
        "expires",
        "parent",
    ];
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if t.expires_at <= now {
                "expired"
            } else {
                "active"
            };
            vec![
                t.name.clone(),
                state.to_owned(),
                t.scope
                    .actions
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                list(&t.scope.sources),
                list(&t.scope.projects),
                if t.scope.sensitive { "yes" } else { "no" }.to_owned(),
                t.expires_at.format("%Y-%m-%d %H:%M").to_string(),
                t.parent.clone().unwrap_or_default(),
            ]
        })
        .collect();
    listing(
        &headers,
        &rows,
        as_csv,
        "no tokens; `crossdex token create --help` says how to make one\n",
    )
}

/// Audit lines, oldest first.
pub fn audit(entries: &[crossdex_service::AuditEntry], as_csv: bool) -> Result<String> {
    let headers = [
        "at",
        "token",
        "route",
        "status",
        "ms",
        "rows",
        "tables",
        "query_sha256",
    ];
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.token.clone(),
                e.route.clone(),
                e.status.to_string(),
                e.duration_ms.to_string(),
                e.rows.map(|r| r.to_string()).unwrap_or_default(),
                e.tables.join(","),
                e.query_sha256
                    .as_deref()
                    .map(|h| h[..12.min(h.len())].to_owned())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    listing(&headers, &rows, as_csv, "no audit lines match\n")
}

/// The catalogue's datasets, one per line.
pub fn datasets(
    all: &[crossdex_service::Dataset],
    as_csv: bool,
    width: Option<u16>,
) -> Result<String> {
    let headers = [
        "id",
        "title",
        "source",
        "kind",
        "records",
        "subjects",
        "observations",
        "complete",
    ];
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.title.clone(),
                d.source.clone(),
                d.kind.clone(),
                d.counts.records.to_string(),
                d.counts.subjects.to_string(),
                d.counts.observations.to_string(),
                if d.is_complete() { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    if as_csv {
        return csv(&headers, &rows);
    }
    if rows.is_empty() {
        return Ok("no datasets: sync a source first (`crossdex sync --all`)\n".to_owned());
    }
    Ok(table(&headers, &rows, width) + "\n")
}

/// DataCite's mandatory properties each dataset lacks, with the keys that supply them.
pub fn missing(missing: &[crossdex_service::MissingProperty], as_csv: bool) -> Result<String> {
    let headers = ["dataset", "property", "set one of"];
    let rows: Vec<Vec<String>> = missing
        .iter()
        .map(|m| {
            vec![
                m.dataset_id.clone(),
                m.property.to_owned(),
                m.keys.join("  |  "),
            ]
        })
        .collect();
    listing(
        &headers,
        &rows,
        as_csv,
        "every dataset has DataCite's mandatory properties\n",
    )
}

/// The parts `crossdex archive` wrote.
pub fn export(r: &crossdex_service::DeltaReport, as_csv: bool) -> Result<String> {
    let headers = [
        "table",
        "version",
        "committed",
        "added",
        "removed",
        "unchanged",
        "rows",
    ];
    let rows: Vec<Vec<String>> = r
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.clone(),
                t.version.to_string(),
                t.committed.to_string(),
                t.added.to_string(),
                t.removed.to_string(),
                t.unchanged.to_string(),
                t.rows.to_string(),
            ]
        })
        .collect();
    let mut text = listing(&headers, &rows, as_csv, "")?;
    if !as_csv {
        let committed = r.tables.iter().filter(|t| t.committed).count();
        text.push_str(&format!(
            "{committed} of {} Delta tables committed a new version in {}\n",
            r.tables.len(),
            r.path
        ));
    }
    Ok(text)
}

pub fn archive(r: &crossdex_service::ArchiveReport, as_csv: bool) -> Result<String> {
    let headers = ["part", "bytes", "records", "observations", "links"];
    let rows: Vec<Vec<String>> = r
        .parts
        .iter()
        .map(|p| {
            vec![
                p.path.display().to_string(),
                p.bytes.to_string(),
                p.records.to_string(),
                p.observations.to_string(),
                p.links.to_string(),
            ]
        })
        .collect();
    let mut text = listing(&headers, &rows, as_csv, "")?;
    if !as_csv {
        text.push_str(&format!(
            "{} parts of dataset {}; sensitive values {}{}\n",
            r.parts.len(),
            r.dataset_id,
            if r.sensitive_included {
                "included"
            } else {
                "excluded"
            },
            if r.sensitive_left_out.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.sensitive_left_out.join(", "))
            }
        ));
        if !r.datacite {
            text.push_str("no DataCite metadata: the dataset lacks mandatory properties (`crossdex catalogue check`)\n");
        }
    }
    Ok(text)
}
