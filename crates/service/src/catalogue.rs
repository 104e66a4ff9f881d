//! The dataset catalogue: one entry per dataset-level entity of the index (the
//! `datasets` view), completed with what data stewards declare in the configuration's
//! `[catalogue]` table, rendered as DataCite (XML and JSON, kernel 4) and Dublin Core,
//! and tracked for OAI-PMH harvesting (each entry's datestamp, and what was deleted).
//!
//! What a source knows (title, description, dates, counts) comes from the index, read
//! within the caller's scope; what it cannot know (creators, publisher, licence,
//! funding, a DOI) comes from the configuration, most specific first: the dataset's
//! own table, then its source's, then `[catalogue.defaults]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::{Action, ErrorCode, Result, Service, ServiceError};

/// Steward-supplied metadata of a dataset, a source's datasets, or every dataset. Every
/// key is optional; the most specific table that sets one wins (lists are replaced,
/// not merged).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stewarded {
    /// Replaces the source's title.
    pub title: Option<String>,
    /// Replaces the source's description.
    pub description: Option<String>,
    /// The dataset's DOI, e.g. `10.5072/memclin-2024` (no `https://doi.org/`).
    pub doi: Option<String>,
    /// An identifier other than a DOI, or a template of one for every dataset of a
    /// source: `{id}`, `{source}`, `{native_id}` are replaced, e.g.
    /// `https://data.example.org/datasets/{id}`.
    pub identifier: Option<String>,
    /// The kind of `identifier`, from DataCite's list (`URL`, `Handle`, `ARK`, `URN`,
    /// ...) [default URL].
    pub identifier_type: Option<String>,
    /// The people or organisations who made the data, in citation order.
    pub creators: Option<Vec<Creator>>,
    /// Who makes the data available, e.g. the institute.
    pub publisher: Option<String>,
    /// The year the data is (or will be) made available.
    pub publication_year: Option<u16>,
    /// A free text refining the resource type [default: from the source, e.g. `XNAT
    /// imaging project`].
    pub resource_type: Option<String>,
    /// The licence, as an SPDX identifier (`CC-BY-4.0`, `CC0-1.0`).
    pub licence: Option<String>,
    /// Access rights in words (`Restricted access: apply to the data access committee`).
    pub rights: Option<String>,
    /// Subjects and keywords.
    pub keywords: Option<Vec<String>>,
    /// Grants that funded the data.
    pub funding: Option<Vec<Funding>>,
    /// Publications, protocols or other datasets it relates to.
    pub related: Option<Vec<Related>>,
    /// The language of the metadata and data, e.g. `en`.
    pub language: Option<String>,
    /// A version of the dataset.
    pub version: Option<String>,
}

/// A creator of a dataset.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Creator {
    /// `Family, Given` for a person, the full name of an organisation.
    pub name: String,
    /// An ORCID iD, `0000-0002-1825-0097` (checked when the file loads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcid: Option<String>,
    /// The creator's institution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliation: Option<String>,
    /// Whether the creator is an organisation rather than a person [default false].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub organisation: bool,
}

/// A grant.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Funding {
    /// The funder's name.
    pub funder: String,
    /// The funder's identifier: a ROR URL or a Crossref Funder ID URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funder_id: Option<String>,
    /// The grant number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub award: Option<String>,
    /// The grant's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub award_title: Option<String>,
}

/// A related resource.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Related {
    /// Its identifier, e.g. `10.1000/xyz123`.
    pub identifier: String,
    /// The kind of identifier, from DataCite's list (`DOI`, `URL`, `PMID`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// How the dataset relates to it, from DataCite's list (`IsCitedBy`,
    /// `IsDocumentedBy`, `IsDerivedFrom`, ...).
    pub relation: String,
}

/// `[catalogue]`: the dataset catalogue, its OAI-PMH endpoint and archive packages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSettings {
    /// Whether `/oai` answers without an API token [default false: it needs a token
    /// with the `search` action, and shows that token's datasets].
    #[serde(default)]
    pub oai_public: bool,
    /// Records or identifiers per OAI-PMH answer before a resumption token [default 100].
    pub oai_page_size: Option<usize>,
    /// The repository's name in `Identify` [default "crossdex dataset catalogue"].
    pub repository_name: Option<String>,
    /// The namespace of OAI identifiers, a domain name of the institute
    /// (`oai:<namespace>:<dataset id>`) [default "crossdex.invalid"].
    pub oai_namespace: Option<String>,
    /// E-mail addresses of the catalogue's administrators, shown by `Identify`.
    #[serde(default)]
    pub admin_emails: Vec<String>,
    /// The URL harvesters reach the endpoint at, e.g. `https://data.example.org/oai`
    /// [default: built from the request's `Host`].
    pub base_url: Option<String>,
    /// Largest part of an archive package, in bytes or with a unit (`1G`, `500M`)
    /// [default 1G].
    pub archive_part_size: Option<String>,
    /// Metadata of every dataset.
    #[serde(default)]
    pub defaults: Stewarded,
    /// Metadata of every dataset of one source, by source name.
    #[serde(default)]
    pub sources: BTreeMap<String, Stewarded>,
    /// Metadata of one dataset, by its id (`xnat:project:MEMCLIN`).
    #[serde(default)]
    pub datasets: BTreeMap<String, Stewarded>,
}

/// DataCite's relation types (kernel 4.7).
const RELATION_TYPES: &[&str] = &[
    "IsCitedBy",
    "Cites",
    "IsSupplementTo",
    "IsSupplementedBy",
    "IsContinuedBy",
    "Continues",
    "IsNewVersionOf",
    "IsPreviousVersionOf",
    "IsPartOf",
    "HasPart",
    "IsPublishedIn",
    "IsReferencedBy",
    "References",
    "IsDocumentedBy",
    "Documents",
    "IsCompiledBy",
    "Compiles",
    "IsVariantFormOf",
    "IsOriginalFormOf",
    "IsIdenticalTo",
    "HasMetadata",
    "IsMetadataFor",
    "Reviews",
    "IsReviewedBy",
    "IsDerivedFrom",
    "IsSourceOf",
    "Describes",
    "IsDescribedBy",
    "HasVersion",
    "IsVersionOf",
    "Requires",
    "IsRequiredBy",
    "Obsoletes",
    "IsObsoletedBy",
    "Collects",
    "IsCollectedBy",
    "HasTranslation",
    "IsTranslationOf",
    "Other",
];

/// DataCite's related identifier types (kernel 4.7).
const IDENTIFIER_TYPES: &[&str] = &[
    "ARK", "arXiv", "bibcode", "CSTR", "DOI", "EAN13", "EISSN", "Handle", "IGSN", "ISBN", "ISSN",
    "ISTC", "LISSN", "LSID", "PMID", "PURL", "RAiD", "RRID", "SWHID", "UPC", "URL", "URN", "w3id",
];

/// Whether `orcid` is a well-formed ORCID iD with a right check digit (ISO 7064 11,2).
fn valid_orcid(orcid: &str) -> bool {
    let digits: Vec<char> = orcid.chars().filter(|c| *c != '-').collect();
    if digits.len() != 16 || orcid.len() != 19 {
        return false;
    }
    let mut total = 0u32;
    for c in &digits[..15] {
        let Some(d) = c.to_digit(10) else {
            return false;
        };
        total = (total + d) * 2;
    }
    let check = (12 - total % 11) % 11;
    let expected = if check == 10 {
        'X'
    } else {
        char::from_digit(check, 10).unwrap_or('?')
    };
    digits[15] == expected
}

impl Stewarded {
    /// What is wrong with it, naming the key under `at` (e.g. `catalogue.defaults`).
    pub(crate) fn check(&self, at: &str) -> std::result::Result<(), String> {
        for (i, c) in self.creators.iter().flatten().enumerate() {
            if c.name.trim().is_empty() {
                return Err(format!("`{at}.creators[{i}].name` is empty"));
            }
            if let Some(o) = &c.orcid {
                let bare = o.trim_start_matches("https://orcid.org/");
                if !valid_orcid(bare) {
                    return Err(format!(
                        "`{at}.creators[{i}].orcid`: {o:?} is not an ORCID iD (16 digits in groups of four, the last a check digit, e.g. 0000-0002-1825-0097)"
                    ));
                }
            }
        }
        if let Some(y) = self.publication_year
            && !(1000..=9999).contains(&y)
        {
            return Err(format!(
                "`{at}.publication_year`: {y} is not a four-digit year"
            ));
        }
        if let Some(doi) = &self.doi
            && !(doi.starts_with("10.") && doi.contains('/'))
        {
            return Err(format!(
                "`{at}.doi`: {doi:?} is not a DOI; write it as 10.<prefix>/<suffix>, without https://doi.org/"
            ));
        }
        if let Some(t) = &self.identifier_type
            && !IDENTIFIER_TYPES.contains(&t.as_str())
        {
            return Err(format!(
                "`{at}.identifier_type`: {t:?} is not one of DataCite's: {}",
                IDENTIFIER_TYPES.join(", ")
            ));
        }
        for (i, r) in self.related.iter().flatten().enumerate() {
            if !RELATION_TYPES.contains(&r.relation.as_str()) {
                return Err(format!(
                    "`{at}.related[{i}].relation`: {:?} is not one of DataCite's: {}",
                    r.relation,
                    RELATION_TYPES.join(", ")
                ));
            }
            if !IDENTIFIER_TYPES.contains(&r.kind.as_str()) {
                return Err(format!(
                    "`{at}.related[{i}].type`: {:?} is not one of DataCite's: {}",
                    r.kind,
                    IDENTIFIER_TYPES.join(", ")
                ));
            }
        }
        for (i, f) in self.funding.iter().flatten().enumerate() {
            if f.funder.trim().is_empty() {
                return Err(format!("`{at}.funding[{i}].funder` is empty"));
            }
        }
        Ok(())
    }

    /// `self` where it says something, `under` elsewhere.
    fn over(&self, under: &Stewarded) -> Stewarded {
        macro_rules! pick {
            ($($f:ident),*) => { Stewarded { $($f: self.$f.clone().or_else(|| under.$f.clone()),)* } };
        }
        pick!(
            title,
            description,
            doi,
            identifier,
            identifier_type,
            creators,
            publisher,
            publication_year,
            resource_type,
            licence,
            rights,
            keywords,
            funding,
            related,
            language,
            version
        )
    }
}

impl CatalogueSettings {
    /// What is wrong with the table, naming the key.
    pub(crate) fn check(
        &self,
        sources: &BTreeMap<String, serde_json::Value>,
    ) -> std::result::Result<(), String> {
        self.defaults.check("catalogue.defaults")?;
        for (name, s) in &self.sources {
            if !sources.contains_key(name) {
                return Err(format!(
                    "`catalogue.sources.{name}`: no source of that name is configured"
                ));
            }
            s.check(&format!("catalogue.sources.{name}"))?;
        }
        for (id, s) in &self.datasets {
            if id.splitn(3, ':').count() != 3 {
                return Err(format!(
                    "`catalogue.datasets.\"{id}\"`: a dataset id is `source:kind:native id`, as `crossdex catalogue list` shows"
                ));
            }
            s.check(&format!("catalogue.datasets.\"{id}\""))?;
        }
        if let Some(size) = &self.archive_part_size {
            parse_size(size).map_err(|e| format!("`catalogue.archive_part_size`: {e}"))?;
        }
        if self.oai_page_size == Some(0) {
            return Err("`catalogue.oai_page_size` is at least 1".into());
        }
        Ok(())
    }

    /// The steward metadata of dataset `id` of `source`, most specific first.
    fn for_dataset(&self, id: &str, source: &str) -> Stewarded {
        // Keys may have gone through the environment, which folds case.
        let own = self.datasets.get(id).or_else(|| {
            self.datasets
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(id))
                .map(|(_, v)| v)
        });
        let by_source = self.sources.get(source);
        let mut out = self.defaults.clone();
        if let Some(s) = by_source {
            out = s.over(&out);
        }
        if let Some(s) = own {
            out = s.over(&out);
        }
        out
    }

    /// The largest archive part, in bytes.
    pub fn part_size(&self) -> u64 {
        self.archive_part_size
            .as_deref()
            .and_then(|s| parse_size(s).ok())
            .unwrap_or(1 << 30)
    }
}

/// `1G`, `500M`, `64K`, `1048576` as bytes (binary units).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 1G, 500M, 64K or a byte count"))?;
    let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use K, M or G (binary)"
            ));
        }
    };
    n.checked_mul(factor)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// Counts of what a dataset holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetCounts {
    /// Records, the dataset's own included.
    pub records: u64,
    /// Distinct subjects (resolved, else as the source spells them).
    pub subjects: u64,
    /// Imaging sessions.
    pub sessions: u64,
    /// Images.
    pub images: u64,
    /// Typed values.
    pub observations: u64,
    /// Distinct variables.
    pub variables: u64,
}

/// An identifier of a dataset, as DataCite writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Identifier {
    /// The identifier.
    pub value: String,
    /// Its kind: `DOI`, `URL`, ...
    #[serde(rename = "type")]
    pub kind: String,
}

/// One entry of the catalogue: what the source says of a dataset, and what its
/// stewards declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dataset {
    /// Its id: the record id of the dataset-level entity (`xnat:project:MEMCLIN`), or
    /// `<source>:source:<source>` for a `files` source.
    pub id: String,
    /// The configured source.
    pub source: String,
    /// The source's system.
    pub system: String,
    /// Its kind in the source: project, dataset, study, experiment, source.
    pub kind: String,
    /// Its id in the source.
    pub native_id: String,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: Option<String>,
    /// A link into the source's own UI.
    pub url: Option<String>,
    /// The dataset it is part of (an OMERO dataset's project).
    pub parent_id: Option<String>,
    /// When the source says it was created (RFC 3339).
    pub created_at: Option<String>,
    /// When it or what it holds last changed, per the source (RFC 3339).
    pub modified_at: Option<String>,
    /// What it holds.
    pub counts: DatasetCounts,
    /// Imaging modalities of its sessions.
    pub modalities: Vec<String>,
    /// The earliest date of its observations (RFC 3339).
    pub first_observed: Option<String>,
    /// The latest date of its observations (RFC 3339).
    pub last_observed: Option<String>,
    /// Its persistent identifier: the DOI, else the configured identifier.
    pub identifier: Option<Identifier>,
    /// Its creators.
    pub creators: Vec<Creator>,
    /// Who makes it available.
    pub publisher: Option<String>,
    /// The year it is made available.
    pub publication_year: Option<u16>,
    /// DataCite's free-text resource type.
    pub resource_type: String,
    /// Its licence (SPDX).
    pub licence: Option<String>,
    /// Access rights in words.
    pub rights: Option<String>,
    /// Subjects and keywords.
    pub keywords: Vec<String>,
    /// Grants.
    pub funding: Vec<Funding>,
    /// Related resources.
    pub related: Vec<Related>,
    /// Language.
    pub language: Option<String>,
    /// Version.
    pub version: Option<String>,
}

/// A row of the `datasets` view.
#[derive(Deserialize)]
struct Row {
    dataset_id: String,
    source: String,
    system: String,
    kind: String,
    native_id: String,
    title: Option<String>,
    description: Option<String>,
    url: Option<String>,
    parent_dataset_id: Option<String>,
    created_at: Option<String>,
    modified_at: Option<String>,
    n_records: u64,
    n_subjects: u64,
    n_sessions: u64,
    n_images: u64,
    n_observations: u64,
    n_variables: u64,
    modalities: Option<Vec<Option<String>>>,
    first_observed: Option<String>,
    last_observed: Option<String>,
}

/// The resource type a source's kind of dataset is, in words.
fn resource_type(system: &str, kind: &str) -> String {
    match (system, kind) {
        ("xnat", "project") => "XNAT imaging project".into(),
        ("redcap", "project") => "REDCap clinical data project".into(),
        ("omero", "project") => "OMERO microscopy project".into(),
        ("omero", "dataset") => "OMERO microscopy dataset".into(),
        ("transmart", "study") => "tranSMART study".into(),
        ("elabftw", "experiment") => "eLabFTW notebook experiment".into(),
        ("files", _) => "Tabular exports".into(),
        (s, k) => format!("{s} {k}"),
    }
}

/// A mandatory property of DataCite that a dataset lacks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MissingProperty {
    /// The dataset.
    pub dataset_id: String,
    /// Its title.
    pub title: String,
    /// DataCite's property: `Identifier`, `Creator`, `Publisher`, `PublicationYear`,
    /// `Title`.
    pub property: &'static str,
    /// Configuration keys that would supply it, the most specific first.
    pub keys: Vec<String>,
}

impl Dataset {
    fn from_row(row: Row, settings: &CatalogueSettings) -> Dataset {
        let s = settings.for_dataset(&row.dataset_id, &row.source);
        let identifier = match (&s.doi, &s.identifier) {
            (Some(doi), _) => Some(Identifier {
                value: doi.clone(),
                kind: "DOI".into(),
            }),
            (None, Some(template)) => Some(Identifier {
                value: template
                    .replace("{id}", &row.dataset_id)
                    .replace("{source}", &row.source)
                    .replace("{native_id}", &row.native_id),
                kind: s.identifier_type.clone().unwrap_or_else(|| "URL".into()),
            }),
            (None, None) => None,
        };
        Dataset {
            title: s
                .title
                .clone()
                .or(row.title)
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_default(),
            description: s.description.clone().or(row.description),
            resource_type: s
                .resource_type
                .clone()
                .unwrap_or_else(|| resource_type(&row.system, &row.kind)),
            id: row.dataset_id,
            source: row.source,
            system: row.system,
            kind: row.kind,
            native_id: row.native_id,
            url: row.url,
            parent_id: row.parent_dataset_id,
            created_at: row.created_at,
            modified_at: row.modified_at,
            counts: DatasetCounts {
                records: row.n_records,
                subjects: row.n_subjects,
                sessions: row.n_sessions,
                images: row.n_images,
                observations: row.n_observations,
                variables: row.n_variables,
            },
            modalities: row.modalities.into_iter().flatten().flatten().collect(),
            first_observed: row.first_observed,
            last_observed: row.last_observed,
            identifier,
            creators: s.creators.unwrap_or_default(),
            publisher: s.publisher,
            publication_year: s.publication_year,
            licence: s.licence,
            rights: s.rights,
            keywords: s.keywords.unwrap_or_default(),
            funding: s.funding.unwrap_or_default(),
            related: s.related.unwrap_or_default(),
            language: s.language,
            version: s.version,
        }
    }

    /// DataCite's mandatory properties it lacks, with the keys that supply them.
    pub fn missing(&self) -> Vec<MissingProperty> {
        let own = format!("catalogue.datasets.\"{}\"", self.id);
        let source = format!("catalogue.sources.{}", self.source);
        let mut out = Vec::new();
        let mut miss = |property: &'static str, keys: Vec<String>| {
            out.push(MissingProperty {
                dataset_id: self.id.clone(),
                title: self.title.clone(),
                property,
                keys,
            });
        };
        if self.identifier.is_none() {
            miss(
                "Identifier",
                vec![
                    format!("{own}.doi"),
                    format!("{source}.identifier"),
                    "catalogue.defaults.identifier".into(),
                ],
            );
        }
        if self.creators.is_empty() {
            miss(
                "Creator",
                vec![
                    format!("{own}.creators"),
                    format!("{source}.creators"),
                    "catalogue.defaults.creators".into(),
                ],
            );
        }
        if self.title.trim().is_empty() {
            miss("Title", vec![format!("{own}.title")]);
        }
        if self.publisher.is_none() {
            miss(
                "Publisher",
                vec![
                    format!("{own}.publisher"),
                    format!("{source}.publisher"),
                    "catalogue.defaults.publisher".into(),
                ],
            );
        }
        if self.publication_year.is_none() {
            miss(
                "PublicationYear",
                vec![
                    format!("{own}.publication_year"),
                    format!("{source}.publication_year"),
                    "catalogue.defaults.publication_year".into(),
                ],
            );
        }
        out
    }

    /// Whether DataCite metadata can be written for it.
    pub fn is_complete(&self) -> bool {
        self.missing().is_empty()
    }

    /// Subjects and keywords, modalities among them.
    fn subjects(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.keywords.iter().map(String::as_str).collect();
        for m in &self.modalities {
            if !out.contains(&m.as_str()) {
                out.push(m);
            }
        }
        out
    }

    /// What it holds, in words.
    fn technical(&self) -> String {
        let c = &self.counts;
        let mut parts = vec![format!("{} records", c.records)];
        for (n, what) in [
            (c.subjects, "subjects"),
            (c.sessions, "imaging sessions"),
            (c.images, "images"),
            (c.variables, "variables"),
            (c.observations, "observations"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let mut text = format!(
            "{} from {} (source `{}`): {}.",
            self.resource_type,
            system_name(&self.system),
            self.source,
            parts.join(", ")
        );
        if !self.modalities.is_empty() {
            let _ = write!(text, " Modalities: {}.", self.modalities.join(", "));
        }
        text
    }

    /// The collection period, `first/last` dates.
    fn collected(&self) -> Option<String> {
        let day = |t: &Option<String>| t.as_deref().map(|t| t.chars().take(10).collect::<String>());
        match (day(&self.first_observed), day(&self.last_observed)) {
            (Some(a), Some(b)) if a == b => Some(a),
            (Some(a), Some(b)) => Some(format!("{a}/{b}")),
            _ => None,
        }
    }
}

/// A system's name as its makers write it.
pub fn system_name(system: &str) -> &str {
    match system {
        "xnat" => "XNAT",
        "redcap" => "REDCap",
        "omero" => "OMERO",
        "transmart" => "tranSMART",
        "elabftw" => "eLabFTW",
        "files" => "tabular exports",
        other => other,
    }
}

/// Escapes text for XML content and attribute values; drops characters XML 1.0 cannot
/// carry.
pub(crate) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The ORCID iD of `orcid` as a URL.
fn orcid_url(orcid: &str) -> String {
    format!(
        "https://orcid.org/{}",
        orcid.trim_start_matches("https://orcid.org/")
    )
}

/// The kind of a funder identifier, from its form.
fn funder_id_type(id: &str) -> &'static str {
    if id.contains("ror.org") {
        "ROR"
    } else if id.contains("10.13039") {
        "Crossref Funder ID"
    } else if id.contains("isni") {
        "ISNI"
    } else {
        "Other"
    }
}

/// The namespace of DataCite kernel 4.
pub const DATACITE_NS: &str = "http://datacite.org/schema/kernel-4";
/// Where DataCite kernel 4's schema is.
pub const DATACITE_SCHEMA: &str = "http://schema.datacite.org/meta/kernel-4/metadata.xsd";

/// DataCite XML (kernel 4) of `d`, or the mandatory properties it lacks.
pub fn datacite_xml(d: &Dataset, parent: Option<&Dataset>) -> Result<String> {
    incomplete(d)?;
    let mut x = String::new();
    let _ = writeln!(x, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    x.push_str(&datacite_element(d, parent));
    Ok(x)
}

/// An error naming what `d` lacks, if anything.
fn incomplete(d: &Dataset) -> Result<()> {
    let missing = d.missing();
    if missing.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = missing
        .iter()
        .map(|m| format!("{} (set {})", m.property, m.keys[0]))
        .collect();
    Err(ServiceError::new(
        ErrorCode::IncompleteMetadata,
        format!(
            "dataset {} lacks DataCite's mandatory {}; `crossdex catalogue check` lists every key",
            d.id,
            what.join(", ")
        ),
    ))
}

/// The `<resource>` element of `d` (no XML declaration), for OAI-PMH answers too.
pub fn datacite_element(d: &Dataset, parent: Option<&Dataset>) -> String {
    let mut x = String::new();
    let _ = writeln!(
        x,
        r#"<resource xmlns="{DATACITE_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="{DATACITE_NS} {DATACITE_SCHEMA}">"#
    );
    if let Some(id) = &d.identifier {
        let _ = writeln!(
            x,
            r#"  <identifier identifierType="{}">{}</identifier>"#,
            xml(&id.kind),
            xml(&id.value)
        );
    }
    x.push_str("  <creators>\n");
    for c in &d.creators {
        x.push_str("    <creator>\n");
        let kind = if c.organisation {
            "Organizational"
        } else {
            "Personal"
        };
        let _ = writeln!(
            x,
            r#"      <creatorName nameType="{kind}">{}</creatorName>"#,
            xml(&c.name)
        );
        if !c.organisation
            && let Some((family, given)) = c.name.split_once(',')
        {
            let _ = writeln!(x, "      <givenName>{}</givenName>", xml(given.trim()));
            let _ = writeln!(x, "      <familyName>{}</familyName>", xml(family.trim()));
        }
        if let Some(o) = &c.orcid {
            let _ = writeln!(
                x,
                r#"      <nameIdentifier nameIdentifierScheme="ORCID" schemeURI="https://orcid.org">{}</nameIdentifier>"#,
                xml(&orcid_url(o))
            );
        }
        if let Some(a) = &c.affiliation {
            let _ = writeln!(x, "      <affiliation>{}</affiliation>", xml(a));
        }
        x.push_str("    </creator>\n");
    }
    x.push_str("  </creators>\n");
    let _ = writeln!(
        x,
        "  <titles>\n    <title>{}</title>\n  </titles>",
        xml(&d.title)
    );
    let _ = writeln!(
        x,
        "  <publisher>{}</publisher>",
        xml(d.publisher.as_deref().unwrap_or_default())
    );
    let _ = writeln!(
        x,
        "  <publicationYear>{:04}</publicationYear>",
        d.publication_year.unwrap_or_default()
    );
    let _ = writeln!(
        x,
        r#"  <resourceType resourceTypeGeneral="Dataset">{}</resourceType>"#,
        xml(&d.resource_type)
    );
    let subjects = d.subjects();
    if !subjects.is_empty() {
        x.push_str("  <subjects>\n");
        for s in subjects {
            let _ = writeln!(x, "    <subject>{}</subject>", xml(s));
        }
        x.push_str("  </subjects>\n");
    }
    let mut dates = Vec::new();
    if let Some(t) = &d.created_at {
        dates.push(("Created", t.chars().take(10).collect::<String>()));
    }
    if let Some(t) = &d.modified_at {
        dates.push(("Updated", t.chars().take(10).collect::<String>()));
    }
    if let Some(range) = d.collected() {
        dates.push(("Collected", range));
    }
    if !dates.is_empty() {
        x.push_str("  <dates>\n");
        for (kind, value) in dates {
            let _ = writeln!(x, r#"    <date dateType="{kind}">{}</date>"#, xml(&value));
        }
        x.push_str("  </dates>\n");
    }
    if let Some(l) = &d.language {
        let _ = writeln!(x, "  <language>{}</language>", xml(l));
    }
    x.push_str("  <alternateIdentifiers>\n");
    let _ = writeln!(
        x,
        r#"    <alternateIdentifier alternateIdentifierType="crossdex">{}</alternateIdentifier>"#,
        xml(&d.id)
    );
    if let Some(u) = &d.url {
        let _ = writeln!(
            x,
            r#"    <alternateIdentifier alternateIdentifierType="URL">{}</alternateIdentifier>"#,
            xml(u)
        );
    }
    x.push_str("  </alternateIdentifiers>\n");
    let mut related: Vec<(String, String, String)> = d
        .related
        .iter()
        .map(|r| (r.identifier.clone(), r.kind.clone(), r.relation.clone()))
        .collect();
    if let Some(id) = parent.and_then(|p| p.identifier.as_ref())
        && IDENTIFIER_TYPES.contains(&id.kind.as_str())
    {
        related.push((id.value.clone(), id.kind.clone(), "IsPartOf".into()));
    }
    if !related.is_empty() {
        x.push_str("  <relatedIdentifiers>\n");
        for (id, kind, relation) in related {
            let _ = writeln!(
                x,
                r#"    <relatedIdentifier relatedIdentifierType="{}" relationType="{}">{}</relatedIdentifier>"#,
                xml(&kind),
                xml(&relation),
                xml(&id)
            );
        }
        x.push_str("  </relatedIdentifiers>\n");
    }
    let _ = writeln!(
        x,
        "  <sizes>\n    <size>{} records</size>\n    <size>{} observations</size>\n  </sizes>",
        d.counts.records, d.counts.observations
    );
    if let Some(v) = &d.version {
        let _ = writeln!(x, "  <version>{}</version>", xml(v));
    }
    if d.licence.is_some() || d.rights.is_some() {
        x.push_str("  <rightsList>\n");
        if let Some(l) = &d.licence {
            let _ = writeln!(
                x,
                r#"    <rights rightsURI="https://spdx.org/licenses/{0}.html" rightsIdentifier="{0}" rightsIdentifierScheme="SPDX" schemeURI="https://spdx.org/licenses/">{0}</rights>"#,
                xml(l)
            );
        }
        if let Some(r) = &d.rights {
            let _ = writeln!(x, "    <rights>{}</rights>", xml(r));
        }
        x.push_str("  </rightsList>\n");
    }
    x.push_str("  <descriptions>\n");
    if let Some(desc) = d.description.as_deref().filter(|s| !s.trim().is_empty()) {
        let _ = writeln!(
            x,
            r#"    <description descriptionType="Abstract">{}</description>"#,
            xml(desc)
        );
    }
    let _ = writeln!(
        x,
        r#"    <description descriptionType="TechnicalInfo">{}</description>"#,
        xml(&d.technical())
    );
    x.push_str("  </descriptions>\n");
    if !d.funding.is_empty() {
        x.push_str("  <fundingReferences>\n");
        for f in &d.funding {
            x.push_str("    <fundingReference>\n");
            let _ = writeln!(x, "      <funderName>{}</funderName>", xml(&f.funder));
            if let Some(id) = &f.funder_id {
                let _ = writeln!(
                    x,
                    r#"      <funderIdentifier funderIdentifierType="{}">{}</funderIdentifier>"#,
                    funder_id_type(id),
                    xml(id)
                );
            }
            if let Some(a) = &f.award {
                let _ = writeln!(x, "      <awardNumber>{}</awardNumber>", xml(a));
            }
            if let Some(t) = &f.award_title {
                let _ = writeln!(x, "      <awardTitle>{}</awardTitle>", xml(t));
            }
            x.push_str("    </fundingReference>\n");
        }
        x.push_str("  </fundingReferences>\n");
    }
    x.push_str("</resource>\n");
    x
}

/// DataCite JSON of `d`: the attributes of DataCite's REST API.
pub fn datacite_json(d: &Dataset, parent: Option<&Dataset>) -> Result<serde_json::Value> {
    use serde_json::json;
    incomplete(d)?;
    let creators: Vec<_> = d
        .creators
        .iter()
        .map(|c| {
            let mut v = json!({
                "name": c.name,
                "nameType": if c.organisation { "Organizational" } else { "Personal" },
            });
            if !c.organisation
                && let Some((family, given)) = c.name.split_once(',')
            {
                v["givenName"] = json!(given.trim());
                v["familyName"] = json!(family.trim());
            }
            v["nameIdentifiers"] = json!(
                c.orcid
                    .iter()
                    .map(|o| json!({
                        "nameIdentifier": orcid_url(o),
                        "nameIdentifierScheme": "ORCID",
                        "schemeUri": "https://orcid.org",
                    }))
                    .collect::<Vec<_>>()
            );
            v["affiliation"] = json!(
                c.affiliation
                    .iter()
                    .map(|a| json!({ "name": a }))
                    .collect::<Vec<_>>()
            );
            v
        })
        .collect();
    let mut dates = Vec::new();
    if let Some(t) = &d.created_at {
        dates.push(json!({"date": t.chars().take(10).collect::<String>(), "dateType": "Created"}));
    }
    if let Some(t) = &d.modified_at {
        dates.push(json!({"date": t.chars().take(10).collect::<String>(), "dateType": "Updated"}));
    }
    if let Some(r) = d.collected() {
        dates.push(json!({"date": r, "dateType": "Collected"}));
    }
    let mut related: Vec<_> = d
        .related
        .iter()
        .map(|r| json!({"relatedIdentifier": r.identifier, "relatedIdentifierType": r.kind, "relationType": r.relation}))
        .collect();
    if let Some(id) = parent.and_then(|p| p.identifier.as_ref()) {
        related.push(json!({"relatedIdentifier": id.value, "relatedIdentifierType": id.kind, "relationType": "IsPartOf"}));
    }
    let mut rights = Vec::new();
    if let Some(l) = &d.licence {
        rights.push(json!({
            "rights": l,
            "rightsUri": format!("https://spdx.org/licenses/{l}.html"),
            "rightsIdentifier": l,
            "rightsIdentifierScheme": "SPDX",
            "schemeUri": "https://spdx.org/licenses/",
        }));
    }
    if let Some(r) = &d.rights {
        rights.push(json!({ "rights": r }));
    }
    let mut descriptions = Vec::new();
    if let Some(desc) = d.description.as_deref().filter(|s| !s.trim().is_empty()) {
        descriptions.push(json!({"description": desc, "descriptionType": "Abstract"}));
    }
    descriptions.push(json!({"description": d.technical(), "descriptionType": "TechnicalInfo"}));
    let id = d.identifier.as_ref();
    let mut out = json!({
        "schemaVersion": DATACITE_NS,
        "identifiers": id.map(|i| vec![json!({"identifier": i.value, "identifierType": i.kind})]).unwrap_or_default(),
        "creators": creators,
        "titles": [{"title": d.title}],
        "publisher": {"name": d.publisher},
        "publicationYear": d.publication_year,
        "types": {"resourceTypeGeneral": "Dataset", "resourceType": d.resource_type},
        "subjects": d.subjects().iter().map(|s| json!({"subject": s})).collect::<Vec<_>>(),
        "dates": dates,
        "alternateIdentifiers": std::iter::once(json!({"alternateIdentifier": d.id, "alternateIdentifierType": "crossdex"}))
            .chain(d.url.iter().map(|u| json!({"alternateIdentifier": u, "alternateIdentifierType": "URL"})))
            .collect::<Vec<_>>(),
        "relatedIdentifiers": related,
        "sizes": [format!("{} records", d.counts.records), format!("{} observations", d.counts.observations)],
        "rightsList": rights,
        "descriptions": descriptions,
        "fundingReferences": d.funding.iter().map(|f| {
            let mut v = json!({"funderName": f.funder});
            if let Some(id) = &f.funder_id {
                v["funderIdentifier"] = json!(id);
                v["funderIdentifierType"] = json!(funder_id_type(id));
            }
            if let Some(a) = &f.award { v["awardNumber"] = json!(a); }
            if let Some(t) = &f.award_title { v["awardTitle"] = json!(t); }
            v
        }).collect::<Vec<_>>(),
    });
    if let Some(i) = id.filter(|i| i.kind == "DOI") {
        out["doi"] = json!(i.value);
    }
    if let Some(l) = &d.language {
        out["language"] = json!(l);
    }
    if let Some(v) = &d.version {
        out["version"] = json!(v);
    }
    if let Some(u) = &d.url {
        out["url"] = json!(u);
    }
    Ok(out)
}

/// The `oai_dc` element of `d` (no XML declaration): Dublin Core, which has no
/// mandatory element, so every dataset has one.
pub fn dublin_core_element(d: &Dataset) -> String {
    let mut x = String::new();
    x.push_str(
        r#"<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.openarchives.org/OAI/2.0/oai_dc/ http://www.openarchives.org/OAI/2.0/oai_dc.xsd">"#,
    );
    x.push('\n');
    let mut el = |name: &str, value: &str| {
        if !value.trim().is_empty() {
            let _ = writeln!(x, "  <dc:{name}>{}</dc:{name}>", xml(value));
        }
    };
    el("title", &d.title);
    for c in &d.creators {
        el("creator", &c.name);
    }
    for s in d.subjects() {
        el("subject", s);
    }
    if let Some(desc) = &d.description {
        el("description", desc);
    }
    el("description", &d.technical());
    if let Some(p) = &d.publisher {
        el("publisher", p);
    }
    match (d.publication_year, &d.created_at) {
        (Some(y), _) => el("date", &format!("{y:04}")),
        (None, Some(t)) => el("date", &t.chars().take(10).collect::<String>()),
        _ => {}
    }
    el("type", "Dataset");
    if let Some(id) = &d.identifier {
        let value = if id.kind == "DOI" {
            format!("https://doi.org/{}", id.value)
        } else {
            id.value.clone()
        };
        el("identifier", &value);
    }
    el("identifier", &d.id);
    if let Some(u) = &d.url {
        el("source", u);
    }
    if let Some(l) = &d.language {
        el("language", l);
    }
    for r in &d.related {
        el(
            "relation",
            &format!("{}: {} {}", r.relation, r.kind, r.identifier),
        );
    }
    if let Some(c) = d.collected() {
        el("coverage", &c);
    }
    if let Some(l) = &d.licence {
        el("rights", &format!("https://spdx.org/licenses/{l}.html"));
    }
    if let Some(r) = &d.rights {
        el("rights", r);
    }
    x.push_str("</oai_dc:dc>\n");
    x
}

/// Dublin Core XML of `d`, as a document.
pub fn dublin_core_xml(d: &Dataset) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
        dublin_core_element(d)
    )
}

/// One entry of the catalogue as a harvester sees it: its datestamp, and the dataset
/// unless it was deleted.
#[derive(Debug, Clone)]
pub struct HarvestEntry {
    /// The dataset's id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// Its source's system.
    pub system: String,
    /// When crossdex first saw its description as served, or saw it change.
    pub datestamp: DateTime<Utc>,
    /// The dataset; `None`: deleted.
    pub dataset: Option<Dataset>,
}

/// What the harvest state keeps of one dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tracked {
    source: String,
    system: String,
    /// A hash of the entry as served.
    hash: String,
    datestamp: DateTime<Utc>,
    #[serde(default)]
    deleted: bool,
}

/// The harvest state of the data directory: `catalogue/harvest.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct HarvestState {
    datasets: BTreeMap<String, Tracked>,
}

/// Serializes updates of the harvest state within this process.
static HARVEST_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Service {
    fn catalogue_settings(&self) -> CatalogueSettings {
        self.config()
            .map(|c| c.catalogue.clone())
            .unwrap_or_default()
    }

    /// Every dataset the caller sees, by id.
    pub async fn datasets(&self, control: &crate::QueryControl) -> Result<Vec<Dataset>> {
        self.require(Action::Search)?;
        let whole = self
            .principal()
            .scope
            .read_scope()
            .is_full(&self.inner.settings.sensitive);
        // Read before the engine opens: a commit in between makes the next call read
        // again, never keeps an older catalogue.
        let mark = crossdex_store::CommitMark::read(self.data_dir());
        if whole {
            let cached = self
                .inner
                .catalogue
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((seen, list)) = cached.as_ref()
                && *seen == mark
                && mark.is_some()
            {
                return Ok(list.as_ref().clone());
            }
        }
        let list = self.read_datasets(control).await?;
        if whole {
            *self
                .inner
                .catalogue
                .lock()
                .unwrap_or_else(|e| e.into_inner()) =
                Some((mark, std::sync::Arc::new(list.clone())));
        }
        Ok(list)
    }

    async fn read_datasets(&self, control: &crate::QueryControl) -> Result<Vec<Dataset>> {
        let engine = match self.engine() {
            Ok(e) => e,
            Err(e) if e.code == ErrorCode::NoIndex => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let settings = self.catalogue_settings();
        let rows: Vec<Row> = self
            .bounded(control, async {
                crate::rows(&engine, "SELECT * FROM datasets ORDER BY dataset_id", &[]).await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Dataset::from_row(r, &settings))
            .collect())
    }

    /// Dataset `id`, with the dataset it is part of (if the caller sees it).
    pub async fn dataset(
        &self,
        id: &str,
        control: &crate::QueryControl,
    ) -> Result<(Dataset, Option<Dataset>)> {
        let all = self.datasets(control).await?;
        find(&all, id)
    }

    /// DataCite's mandatory properties each dataset lacks.
    pub async fn catalogue_check(
        &self,
        control: &crate::QueryControl,
    ) -> Result<Vec<MissingProperty>> {
        Ok(self
            .datasets(control)
            .await?
            .iter()
            .flat_map(Dataset::missing)
            .collect())
    }

    /// The catalogue as harvesters see it, oldest datestamp first: the caller's
    /// datasets, and the datasets of its sources deleted since they were first served.
    /// Datestamps are kept in the data directory, and move when an entry as served
    /// changes, so an incremental harvest (`from`) never misses a change.
    pub async fn harvest(&self, control: &crate::QueryControl) -> Result<Vec<HarvestEntry>> {
        self.require(Action::Search)?;
        // Datestamps are the catalogue's, whoever asks: computed from every dataset.
        let everything = self.acting_as(crate::Principal::local());
        let all = everything.datasets(control).await?;
        let state = self.track(&all)?;
        let visible = if self.principal().scope.sources.is_none()
            && self.principal().scope.projects.is_none()
        {
            all
        } else {
            self.datasets(control).await?
        };
        let mut by_id: BTreeMap<&str, &Dataset> =
            visible.iter().map(|d| (d.id.as_str(), d)).collect();
        let sources = self.principal().scope.sources.clone();
        let mut out = Vec::new();
        for (id, t) in &state.datasets {
            if t.deleted {
                if sources.as_ref().is_none_or(|s| s.contains(&t.source))
                    && self.principal().scope.projects.is_none()
                {
                    out.push(HarvestEntry {
                        id: id.clone(),
                        source: t.source.clone(),
                        system: t.system.clone(),
                        datestamp: t.datestamp,
                        dataset: None,
                    });
                }
            } else if let Some(d) = by_id.remove(id.as_str()) {
                out.push(HarvestEntry {
                    id: id.clone(),
                    source: t.source.clone(),
                    system: t.system.clone(),
                    datestamp: t.datestamp,
                    dataset: Some(d.clone()),
                });
            }
        }
        out.sort_by(|a, b| a.datestamp.cmp(&b.datestamp).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn harvest_file(&self) -> PathBuf {
        self.data_dir().join("catalogue").join("harvest.json")
    }

    /// Updates the harvest state with `all`, the whole catalogue now.
    fn track(&self, all: &[Dataset]) -> Result<HarvestState> {
        let _guard = HARVEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.harvest_file();
        let mut state: HarvestState = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: unreadable ({e}); datestamps start again from now",
                    path.display()
                );
                HarvestState::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HarvestState::default(),
            Err(e) => return Err(ServiceError::internal("reading the harvest state", e)),
        };
        // Whole seconds: the protocol's finest granularity.
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
        let mut changed = false;
        let mut seen = std::collections::HashSet::new();
        for d in all {
            seen.insert(d.id.as_str());
            let text = serde_json::to_string(d)
                .map_err(|e| ServiceError::internal("hashing a dataset", e))?;
            let hash = hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                text.as_bytes(),
            ));
            match state.datasets.get_mut(&d.id) {
                Some(t) if t.hash == hash && !t.deleted => {}
                Some(t) => {
                    t.hash = hash;
                    t.datestamp = now;
                    t.deleted = false;
                    changed = true;
                }
                None => {
                    state.datasets.insert(
                        d.id.clone(),
                        Tracked {
                            source: d.source.clone(),
                            system: d.system.clone(),
                            hash,
                            datestamp: now,
                            deleted: false,
                        },
                    );
                    changed = true;
                }
            }
        }
        for (id, t) in state.datasets.iter_mut() {
            if !t.deleted && !seen.contains(id.as_str()) {
                t.deleted = true;
                t.datestamp = now;
                changed = true;
            }
        }
        if changed {
            write_atomically(
                &path,
                &serde_json::to_vec_pretty(&state).unwrap_or_default(),
            )
            .map_err(|e| ServiceError::internal("writing the harvest state", e))?;
        }
        Ok(state)
    }
}

/// The dataset `id` of `all`, and its parent when `all` holds it.
pub(crate) fn find(all: &[Dataset], id: &str) -> Result<(Dataset, Option<Dataset>)> {
    let Some(d) = all.iter().find(|d| d.id == id) else {
        let near: Vec<&str> = all
            .iter()
            .filter(|d| d.id.eq_ignore_ascii_case(id) || d.native_id == id || d.title == id)
            .map(|d| d.id.as_str())
            .collect();
        let hint = if near.is_empty() {
            "`crossdex catalogue list` shows every id".to_owned()
        } else {
            format!("did you mean {}?", near.join(", "))
        };
        return Err(ServiceError::new(
            ErrorCode::DatasetNotFound,
            format!("no dataset {id:?} in the catalogue; {hint}"),
        ));
    };
    let parent = d
        .parent_id
        .as_ref()
        .and_then(|p| all.iter().find(|x| &x.id == p))
        .cloned();
    Ok((d.clone(), parent))
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so readers see
/// the old or the new content, never a part.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The time `t` as OAI-PMH writes it: `YYYY-MM-DDThh:mm:ssZ`.
pub fn utc_seconds(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orcid_check_digits_are_verified() {
        // ORCID's own examples.
        assert!(valid_orcid("0000-0002-1825-0097"));
        assert!(valid_orcid("0000-0001-5109-3700"));
        assert!(valid_orcid("0000-0002-1694-233X"));
        assert!(!valid_orcid("0000-0002-1825-0098"));
        assert!(!valid_orcid("0000000218250097"));
    }

    #[test]
    fn sizes_read_with_binary_units() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size(" 64 K"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("big").is_err());
    }

    #[test]
    fn the_most_specific_table_wins_key_by_key() {
        let mut settings = CatalogueSettings {
            defaults: Stewarded {
                publisher: Some("Institute".into()),
                licence: Some("CC-BY-4.0".into()),
                ..Stewarded::default()
            },
            ..CatalogueSettings::default()
        };
        settings.sources.insert(
            "xnat".into(),
            Stewarded {
                licence: Some("CC0-1.0".into()),
                publication_year: Some(2023),
                ..Stewarded::default()
            },
        );
        settings.datasets.insert(
            "xnat:project:MEMCLIN".into(),
            Stewarded {
                publication_year: Some(2025),
                ..Stewarded::default()
            },
        );
        let s = settings.for_dataset("xnat:project:memclin", "xnat");
        assert_eq!(s.publisher.as_deref(), Some("Institute"));
        assert_eq!(s.licence.as_deref(), Some("CC0-1.0"));
        assert_eq!(s.publication_year, Some(2025));
        let other = settings.for_dataset("xnat:project:PETAMY", "xnat");
        assert_eq!(other.publication_year, Some(2023));
    }

    #[test]
    fn xml_text_is_escaped_and_control_characters_dropped() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
