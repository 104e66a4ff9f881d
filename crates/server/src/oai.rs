//! OAI-PMH 2.0 at `/oai`: the dataset catalogue for harvesters, in Dublin Core
//! (`oai_dc`) and DataCite (`oai_datacite`, kernel 4), with sets per source and per
//! system, `from`/`until` on each entry's datestamp, resumption tokens, deleted entries
//! (`transient`), and every error code of the protocol.
//!
//! It speaks the protocol only: the entries, their datestamps and their metadata are
//! the service's. It serves catalogue metadata, never records or observations. Whether
//! it needs a token is `[catalogue] oai_public`; a token sees its own datasets.

use std::fmt::Write as _;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use crossdex_service::{Dataset, HarvestEntry, Service, utc_seconds};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;

const PREFIXES: &[(&str, &str, &str)] = &[
    (
        "oai_dc",
        "http://www.openarchives.org/OAI/2.0/oai_dc.xsd",
        "http://www.openarchives.org/OAI/2.0/oai_dc/",
    ),
    (
        "oai_datacite",
        crossdex_service::DATACITE_SCHEMA,
        crossdex_service::DATACITE_NS,
    ),
];

/// A protocol error: its code and message.
struct OaiError(&'static str, String);

impl OaiError {
    fn new(code: &'static str, message: impl Into<String>) -> OaiError {
        OaiError(code, message.into())
    }
}

/// What a resumption token carries: the request's arguments and where the last page
/// ended (the datestamp and id of its last entry: entries are sorted by both).
#[derive(Serialize, Deserialize)]
struct Resume {
    verb: String,
    prefix: String,
    set: Option<String>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after: (DateTime<Utc>, String),
    cursor: usize,
}

/// `GET|POST /oai`.
pub(crate) async fn oai(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let service = match caller {
        Some(Extension(Caller(p))) => state.service.acting_as((*p).clone()),
        // A public endpoint, asked without a token: the whole catalogue's metadata.
        None => state.service.clone(),
    };
    let raw = if method == Method::POST {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        query.unwrap_or_default()
    };
    let args: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let settings = service
        .config()
        .map(|c| c.catalogue.clone())
        .unwrap_or_default();
    let base = settings.base_url.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}/oai")
    });
    let ctx = Ctx {
        service,
        base,
        namespace: settings
            .oai_namespace
            .clone()
            .unwrap_or_else(|| "crossdex.invalid".into()),
        page: settings.oai_page_size.unwrap_or(100).max(1),
        name: settings
            .repository_name
            .clone()
            .unwrap_or_else(|| "crossdex dataset catalogue".into()),
        emails: settings.admin_emails.clone(),
    };
    let body = match ctx.answer(&args).await {
        Ok((attrs, inner)) => envelope(&ctx.base, &attrs, &inner),
        Err(Failure::Protocol(OaiError(code, message), echo)) => {
            let attrs = if echo {
                request_attrs(&args)
            } else {
                Vec::new()
            };
            envelope(
                &ctx.base,
                &attrs,
                &format!("<error code=\"{code}\">{}</error>\n", xml(&message)),
            )
        }
        Err(Failure::Service(e)) => return crate::ApiError(e).into_response(),
    };
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

enum Failure {
    /// A protocol error; whether the request's arguments are echoed (not for
    /// `badVerb` and `badArgument`, per the protocol).
    Protocol(OaiError, bool),
    Service(crossdex_service::ServiceError),
}

impl From<crossdex_service::ServiceError> for Failure {
    fn from(e: crossdex_service::ServiceError) -> Self {
        Failure::Service(e)
    }
}

fn protocol(code: &'static str, message: impl Into<String>) -> Failure {
    let echo = !matches!(code, "badVerb" | "badArgument");
    Failure::Protocol(OaiError::new(code, message), echo)
}

struct Ctx {
    service: Service,
    base: String,
    namespace: String,
    page: usize,
    name: String,
    emails: Vec<String>,
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn request_attrs(args: &[(String, String)]) -> Vec<(String, String)> {
    args.to_vec()
}

fn envelope(base: &str, attrs: &[(String, String)], inner: &str) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<OAI-PMH xmlns=\"http://www.openarchives.org/OAI/2.0/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"http://www.openarchives.org/OAI/2.0/ http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd\">\n",
    );
    let _ = writeln!(
        out,
        "<responseDate>{}</responseDate>",
        utc_seconds(&Utc::now())
    );
    out.push_str("<request");
    for (k, v) in attrs {
        let _ = write!(out, " {}=\"{}\"", xml(k), xml(v));
    }
    let _ = writeln!(out, ">{}</request>", xml(base));
    out.push_str(inner);
    out.push_str("</OAI-PMH>\n");
    out
}

/// The arguments each verb takes: required, then optional.
fn allowed(verb: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match verb {
        "Identify" => (&[], &[]),
        "ListMetadataFormats" => (&[], &["identifier"]),
        "ListSets" => (&[], &["resumptionToken"]),
        "ListIdentifiers" | "ListRecords" => (
            &["metadataPrefix"],
            &["from", "until", "set", "resumptionToken"],
        ),
        "GetRecord" => (&["identifier", "metadataPrefix"], &[]),
        _ => return None,
    })
}

/// A datestamp argument: a day or a second, in UTC. `end`: a day means its last second.
fn datestamp(text: &str, end: bool) -> Option<(DateTime<Utc>, bool)> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && text.len() == 10
    {
        let t = if end {
            d.and_hms_opt(23, 59, 59)?
        } else {
            d.and_hms_opt(0, 0, 0)?
        };
        return Some((t.and_utc(), false));
    }
    if text.len() == 20 {
        return NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ")
            .ok()
            .map(|t| (t.and_utc(), true));
    }
    None
}

fn arg<'a>(args: &'a [(String, String)], k: &str) -> Option<&'a str> {
    args.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn in_set(e: &HarvestEntry, set: &str) -> bool {
    match set.split_once(':') {
        None => set == "source" || set == "system",
        Some(("source", s)) => e.source == s,
        Some(("system", s)) => e.system == s,
        _ => false,
    }
}

impl Ctx {
    fn identifier(&self, id: &str) -> String {
        format!("oai:{}:{id}", self.namespace)
    }

    fn dataset_id<'a>(&self, identifier: &'a str) -> Option<&'a str> {
        identifier
            .strip_prefix("oai:")?
            .strip_prefix(self.namespace.as_str())?
            .strip_prefix(':')
    }

    async fn answer(
        &self,
        args: &[(String, String)],
    ) -> Result<(Vec<(String, String)>, String), Failure> {
        let verbs: Vec<&str> = args
            .iter()
            .filter(|(k, _)| k == "verb")
            .map(|(_, v)| v.as_str())
            .collect();
        let verb = match verbs.as_slice() {
            [v] => *v,
            [] => return Err(protocol("badVerb", "no verb: the request needs `verb`")),
            _ => return Err(protocol("badVerb", "the verb is repeated")),
        };
        let Some((required, optional)) = allowed(verb) else {
            return Err(protocol(
                "badVerb",
                format!(
                    "{verb:?} is not a verb of OAI-PMH 2.0: Identify, ListMetadataFormats, ListSets, ListIdentifiers, ListRecords, GetRecord"
                ),
            ));
        };
        let mut seen = std::collections::BTreeSet::new();
        for (k, _) in args {
            if !seen.insert(k.as_str()) {
                return Err(protocol(
                    "badArgument",
                    format!("argument {k:?} is repeated"),
                ));
            }
            if k != "verb" && !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
                return Err(protocol(
                    "badArgument",
                    format!("{verb} takes no argument {k:?}"),
                ));
            }
        }
        let get = |k: &str| arg(args, k);
        let exclusive = get("resumptionToken").is_some();
        if exclusive {
            if args.len() != 2 {
                return Err(protocol(
                    "badArgument",
                    "resumptionToken is an exclusive argument: send it with the verb only",
                ));
            }
        } else if let Some(missing) = required.iter().find(|r| get(r).is_none()) {
            return Err(protocol(
                "badArgument",
                format!("{verb} needs the argument {missing:?}"),
            ));
        }
        let attrs = request_attrs(args);
        let control =
            crossdex_service::QueryControl::with_timeout(std::time::Duration::from_secs(60));
        let inner = match verb {
            "Identify" => self.identify(&control).await?,
            "ListMetadataFormats" => self.formats(get("identifier"), &control).await?,
            "ListSets" => {
                if exclusive {
                    return Err(protocol(
                        "badResumptionToken",
                        "ListSets answers in one page: no resumption token is valid",
                    ));
                }
                self.sets(&control).await?
            }
            "GetRecord" => {
                self.get_record(
                    get("identifier").unwrap_or_default(),
                    get("metadataPrefix").unwrap_or_default(),
                    &control,
                )
                .await?
            }
            _ => {
                let resume = match get("resumptionToken") {
                    Some(token) => {
                        let r = decode(token).ok_or_else(|| {
                            protocol(
                                "badResumptionToken",
                                "the resumption token is not one this repository issued",
                            )
                        })?;
                        if r.verb != verb {
                            return Err(protocol(
                                "badResumptionToken",
                                format!("the resumption token belongs to {}", r.verb),
                            ));
                        }
                        r
                    }
                    None => self.first_request(verb, args)?,
                };
                self.list(verb, resume, &control).await?
            }
        };
        Ok((attrs, inner))
    }

    fn first_request(&self, verb: &str, args: &[(String, String)]) -> Result<Resume, Failure> {
        let get = |k: &str| arg(args, k);
        let prefix = get("metadataPrefix").unwrap_or_default().to_owned();
        if !PREFIXES.iter().any(|(p, _, _)| *p == prefix) {
            return Err(protocol(
                "cannotDisseminateFormat",
                format!("{prefix:?} is not a format of this repository: oai_dc, oai_datacite"),
            ));
        }
        let parse = |k: &str, end: bool| -> Result<Option<(DateTime<Utc>, bool)>, Failure> {
            match get(k) {
                None => Ok(None),
                Some(t) => datestamp(t, end).map(Some).ok_or_else(|| {
                    protocol(
                        "badArgument",
                        format!("{k}={t:?} is not a datestamp: YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ"),
                    )
                }),
            }
        };
        let from = parse("from", false)?;
        let until = parse("until", true)?;
        if let (Some((_, a)), Some((_, b))) = (from, until)
            && a != b
        {
            return Err(protocol(
                "badArgument",
                "from and until must have the same granularity",
            ));
        }
        if let (Some((a, _)), Some((b, _))) = (from, until)
            && a > b
        {
            return Err(protocol("badArgument", "from is later than until"));
        }
        Ok(Resume {
            verb: verb.to_owned(),
            prefix,
            set: get("set").map(str::to_owned),
            from: from.map(|f| f.0),
            until: until.map(|u| u.0),
            after: (DateTime::<Utc>::MIN_UTC, String::new()),
            cursor: 0,
        })
    }

    async fn identify(&self, control: &crossdex_service::QueryControl) -> Result<String, Failure> {
        let entries = self.service.harvest(control).await?;
        let earliest = entries
            .iter()
            .map(|e| e.datestamp)
            .min()
            .unwrap_or_else(Utc::now);
        let mut x = String::from("<Identify>\n");
        let _ = writeln!(x, "<repositoryName>{}</repositoryName>", xml(&self.name));
        let _ = writeln!(x, "<baseURL>{}</baseURL>", xml(&self.base));
        x.push_str("<protocolVersion>2.0</protocolVersion>\n");
        let emails = if self.emails.is_empty() {
            vec!["catalogue@crossdex.invalid".to_owned()]
        } else {
            self.emails.clone()
        };
        for e in emails {
            let _ = writeln!(x, "<adminEmail>{}</adminEmail>", xml(&e));
        }
        let _ = writeln!(
            x,
            "<earliestDatestamp>{}</earliestDatestamp>",
            utc_seconds(&earliest)
        );
        x.push_str("<deletedRecord>transient</deletedRecord>\n");
        x.push_str("<granularity>YYYY-MM-DDThh:mm:ssZ</granularity>\n");
        let sample = entries
            .first()
            .map_or_else(|| "xnat:project:EXAMPLE".to_owned(), |e| e.id.clone());
        let _ = writeln!(
            x,
            "<description><oai-identifier xmlns=\"http://www.openarchives.org/OAI/2.0/oai-identifier\" xsi:schemaLocation=\"http://www.openarchives.org/OAI/2.0/oai-identifier http://www.openarchives.org/OAI/2.0/oai-identifier.xsd\"><scheme>oai</scheme><repositoryIdentifier>{}</repositoryIdentifier><delimiter>:</delimiter><sampleIdentifier>{}</sampleIdentifier></oai-identifier></description>",
            xml(&self.namespace),
            xml(&self.identifier(&sample))
        );
        x.push_str("</Identify>\n");
        Ok(x)
    }

    async fn formats(
        &self,
        identifier: Option<&str>,
        control: &crossdex_service::QueryControl,
    ) -> Result<String, Failure> {
        let mut available: Vec<&(&str, &str, &str)> = PREFIXES.iter().collect();
        if let Some(identifier) = identifier {
            let entry = self.entry(identifier, control).await?;
            if let Some(d) = &entry.dataset
                && !d.is_complete()
            {
                available.retain(|(p, _, _)| *p != "oai_datacite");
            }
        }
        let mut x = String::from("<ListMetadataFormats>\n");
        for (prefix, schema, ns) in available {
            let _ = writeln!(
                x,
                "<metadataFormat><metadataPrefix>{prefix}</metadataPrefix><schema>{schema}</schema><metadataNamespace>{ns}</metadataNamespace></metadataFormat>"
            );
        }
        x.push_str("</ListMetadataFormats>\n");
        Ok(x)
    }

    async fn sets(&self, control: &crossdex_service::QueryControl) -> Result<String, Failure> {
        let entries = self.service.harvest(control).await?;
        let mut sources = std::collections::BTreeMap::new();
        let mut systems = std::collections::BTreeSet::new();
        for e in &entries {
            sources.insert(e.source.clone(), e.system.clone());
            systems.insert(e.system.clone());
        }
        let mut x = String::from("<ListSets>\n");
        let mut set = |spec: &str, name: &str| {
            let _ = writeln!(
                x,
                "<set><setSpec>{}</setSpec><setName>{}</setName></set>",
                xml(spec),
                xml(name)
            );
        };
        set("source", "Datasets by source");
        for (source, system) in &sources {
            set(
                &format!("source:{source}"),
                &format!(
                    "Datasets of source {source} ({})",
                    crossdex_service::system_name(system)
                ),
            );
        }
        set("system", "Datasets by system");
        for system in &systems {
            set(
                &format!("system:{system}"),
                &format!(
                    "Datasets of every {} source",
                    crossdex_service::system_name(system)
                ),
            );
        }
        x.push_str("</ListSets>\n");
        Ok(x)
    }

    async fn entry(
        &self,
        identifier: &str,
        control: &crossdex_service::QueryControl,
    ) -> Result<HarvestEntry, Failure> {
        let unknown = || {
            protocol(
                "idDoesNotExist",
                format!("{identifier:?} is not an identifier of this repository"),
            )
        };
        let id = self.dataset_id(identifier).ok_or_else(unknown)?;
        let entries = self.service.harvest(control).await?;
        entries.into_iter().find(|e| e.id == id).ok_or_else(unknown)
    }

    async fn get_record(
        &self,
        identifier: &str,
        prefix: &str,
        control: &crossdex_service::QueryControl,
    ) -> Result<String, Failure> {
        if !PREFIXES.iter().any(|(p, _, _)| *p == prefix) {
            return Err(protocol(
                "cannotDisseminateFormat",
                format!("{prefix:?} is not a format of this repository: oai_dc, oai_datacite"),
            ));
        }
        let entry = self.entry(identifier, control).await?;
        let all = self.parents(&[&entry], control).await?;
        let record = self.record(&entry, prefix, &all, true).ok_or_else(|| {
            protocol(
                "cannotDisseminateFormat",
                format!(
                    "{identifier} lacks DataCite's mandatory properties; oai_dc is available (`crossdex catalogue check` names the keys to set)"
                ),
            )
        })?;
        Ok(format!("<GetRecord>\n{record}</GetRecord>\n"))
    }

    /// The datasets the entries' DataCite metadata may refer to as parents.
    async fn parents(
        &self,
        entries: &[&HarvestEntry],
        control: &crossdex_service::QueryControl,
    ) -> Result<Vec<Dataset>, Failure> {
        if entries
            .iter()
            .any(|e| e.dataset.as_ref().is_some_and(|d| d.parent_id.is_some()))
        {
            Ok(self.service.datasets(control).await?)
        } else {
            Ok(Vec::new())
        }
    }

    /// One `<record>` (or its header alone); `None` when the format cannot describe it.
    fn record(
        &self,
        e: &HarvestEntry,
        prefix: &str,
        all: &[Dataset],
        with_metadata: bool,
    ) -> Option<String> {
        let header = self.header(e);
        let Some(d) = &e.dataset else {
            return Some(if with_metadata {
                format!("<record>\n{header}</record>\n")
            } else {
                header
            });
        };
        let metadata = match prefix {
            "oai_datacite" => {
                if !d.is_complete() {
                    return None;
                }
                let parent = d
                    .parent_id
                    .as_ref()
                    .and_then(|p| all.iter().find(|x| &x.id == p));
                crossdex_service::datacite_element(d, parent)
            }
            _ => crossdex_service::dublin_core_element(d),
        };
        Some(if with_metadata {
            format!("<record>\n{header}<metadata>\n{metadata}</metadata>\n</record>\n")
        } else {
            header
        })
    }

    fn header(&self, e: &HarvestEntry) -> String {
        let status = if e.dataset.is_none() {
            " status=\"deleted\""
        } else {
            ""
        };
        format!(
            "<header{status}><identifier>{}</identifier><datestamp>{}</datestamp><setSpec>source:{}</setSpec><setSpec>system:{}</setSpec></header>\n",
            xml(&self.identifier(&e.id)),
            utc_seconds(&e.datestamp),
            xml(&e.source),
            xml(&e.system)
        )
    }

    async fn list(
        &self,
        verb: &str,
        resume: Resume,
        control: &crossdex_service::QueryControl,
    ) -> Result<String, Failure> {
        let entries = self.service.harvest(control).await?;
        let matching: Vec<&HarvestEntry> = entries
            .iter()
            .filter(|e| resume.from.is_none_or(|f| e.datestamp >= f))
            .filter(|e| resume.until.is_none_or(|u| e.datestamp <= u))
            .filter(|e| resume.set.as_deref().is_none_or(|s| in_set(e, s)))
            .filter(|e| {
                // DataCite describes complete datasets only; deletions go to every format.
                resume.prefix != "oai_datacite"
                    || e.dataset.as_ref().is_none_or(Dataset::is_complete)
            })
            .collect();
        let after = |e: &&HarvestEntry| {
            (e.datestamp, e.id.as_str()) > (resume.after.0, resume.after.1.as_str())
        };
        let rest: Vec<&HarvestEntry> = matching.iter().copied().filter(after).collect();
        if rest.is_empty() {
            return Err(protocol(
                "noRecordsMatch",
                "no dataset matches these arguments",
            ));
        }
        let page: Vec<&HarvestEntry> = rest.iter().copied().take(self.page).collect();
        let records = verb == "ListRecords";
        let all = if records {
            self.parents(&page, control).await?
        } else {
            Vec::new()
        };
        let mut x = format!("<{verb}>\n");
        for e in &page {
            if let Some(r) = self.record(e, &resume.prefix, &all, records) {
                x.push_str(&r);
            }
        }
        let total = matching.len();
        let cursor = resume.cursor;
        if rest.len() > page.len() {
            let last = page[page.len() - 1];
            let token = encode(&Resume {
                after: (last.datestamp, last.id.clone()),
                cursor: cursor + page.len(),
                ..resume
            });
            let _ = writeln!(
                x,
                "<resumptionToken completeListSize=\"{total}\" cursor=\"{cursor}\">{token}</resumptionToken>"
            );
        } else if cursor > 0 {
            // The last page of a list: an empty token says so.
            let _ = writeln!(
                x,
                "<resumptionToken completeListSize=\"{total}\" cursor=\"{cursor}\"/>"
            );
        }
        let _ = writeln!(x, "</{verb}>");
        Ok(x)
    }
}

fn encode(r: &Resume) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(r).unwrap_or_default())
}

fn decode(token: &str) -> Option<Resume> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
