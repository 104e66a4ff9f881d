//! One function per command: arguments to a service call, its answer to text.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use crossdex_service::{
    OpenOptions, OutputFormat, QueryControl, QueryOutput, ScalarValue, SearchRequest, Service,
    SyncRequest,
};
use tokio::sync::mpsc;

use crate::CliError;
use crate::args::{
    CatalogueCommand, Cli, Command, FailOn, Format, GlobalArgs, LinkCommand, MetadataFormat,
    SqlArgs, SyncArgs, TokenCommand,
};
use crate::progress::{Follow, drain};
use crate::render;

type Result<T, E = CliError> = std::result::Result<T, E>;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Init { force } => init(g, force),
        Command::Doctor { sources } => doctor(g, &sources).await,
        Command::Sync(args) => sync(g, &args).await,
        Command::Status { format } => status(g, format).await,
        Command::Forget { sources, force } => forget(g, &sources, force).await,
        Command::Serve(args) => crate::progress::serve(&service(g, true)?, &args).await,
        Command::Search {
            query,
            limit,
            offset,
            format,
        } => search(g, &query, limit, offset, format).await,
        Command::Sql(args) => sql(g, &args).await,
        Command::Demo(args) => crate::simulate::demo(g, &args).await,
        Command::Sim(args) => crate::simulate::sim(&args).await,
        Command::Tui(args) => tui_command(g, &args).await,
        Command::Subject { id, format } => subject(g, &id, format).await,
        Command::Record { id, format } => record(g, &id, format).await,
        Command::Link(LinkCommand::Report { format, fail_on }) => {
            link_report(g, format, fail_on).await
        }
        Command::Token(command) => token(g, command),
        Command::Catalogue(command) => catalogue(g, command).await,
        Command::Archive {
            dataset,
            out,
            part_size,
            include_sensitive,
            format,
        } => archive(g, &dataset, &out, part_size, include_sensitive, format).await,
        Command::Export {
            dir,
            table_format: crate::args::ExportFormat::Delta,
            include_sensitive,
            report,
        } => export(g, &dir, include_sensitive, report).await,
        Command::Audit {
            token,
            since,
            until,
            route,
            format,
        } => audit(g, token, since, until, route, format),
    }
}

/// `crossdex tui`: the local data directory, or a server with a token.
async fn tui_command(g: &GlobalArgs, args: &crate::args::TuiArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return Err(CliError::usage(
            "`crossdex tui` needs a terminal: stdout is a pipe or a file; use `search`, `subject` or `sql` in scripts",
        ));
    }
    let (backend, location) = match (&args.server, &args.token_file) {
        (Some(url), Some(file)) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| CliError::usage(format!("--token-file {}: {e}", file.display())))?;
            if token.trim().is_empty() {
                return Err(CliError::usage(format!(
                    "--token-file {}: the file is empty; put the secret `crossdex token create` printed in it",
                    file.display()
                )));
            }
            let remote = crossdex_tui::Remote::new(url, &token).map_err(CliError::usage)?;
            let location = remote.base().to_owned();
            (crossdex_tui::Backend::Remote(remote), location)
        }
        _ => {
            let service = service(g, false)?;
            let location = service.data_dir().display().to_string();
            (crossdex_tui::Backend::Local(service), location)
        }
    };
    crossdex_tui::run(backend, location)
        .await
        .map_err(|e| CliError::Runtime(e.into()))?;
    Ok(ExitCode::SUCCESS)
}

fn token(g: &GlobalArgs, command: TokenCommand) -> Result<ExitCode> {
    let service = service(g, false)?;
    match command {
        TokenCommand::Create {
            name,
            scope,
            sources,
            projects,
            expires,
            sensitive,
            from,
            rate,
            concurrent,
            max_rows,
        } => {
            let actions = scope
                .iter()
                .map(|a| a.trim().parse::<crossdex_service::Action>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| CliError::usage(format!("--scope: {e}")))?;
            let expires_in = crossdex_service::parse_duration(&expires)
                .map_err(|e| CliError::usage(format!("--expires {e}")))?;
            let set = |v: Option<Vec<String>>| {
                v.map(|v| {
                    v.into_iter()
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
            };
            let defaults = crossdex_service::Limits::default();
            let created = service.create_token(crossdex_service::NewToken {
                name,
                scope: crossdex_service::Scope {
                    actions,
                    sources: set(sources),
                    projects: set(projects),
                    sensitive,
                },
                expires_in,
                limits: crossdex_service::Limits {
                    requests_per_s: rate.unwrap_or(defaults.requests_per_s),
                    concurrent: concurrent.unwrap_or(defaults.concurrent),
                    max_rows: max_rows.unwrap_or(defaults.max_rows),
                },
                parent: from,
            })?;
            let t = &created.token;
            eprintln!(
                "token `{}` created, expires {}; its secret follows, shown this once:",
                t.name,
                t.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
            print(&format!("{}\n", created.secret))?;
        }
        TokenCommand::List { format } => {
            let tokens = service.tokens()?;
            print(&match format {
                Format::Json => render::json(&tokens)?,
                other => render::tokens(&tokens, other == Format::Csv)?,
            })?;
        }
        TokenCommand::Revoke { name } => {
            let revoked = service.revoke_token(&name)?;
            println!("revoked: {}", revoked.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-01`, `2026-12-01T08:00:00Z`, or a time ago as `24h`, `7d`.
fn when(flag: &str, text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    crossdex_service::parse_duration(text)
        .map(|ago| chrono::Utc::now() - ago)
        .map_err(|_| {
            CliError::usage(format!(
                "{flag} {text:?}: expected a date (2026-12-01), a time (2026-12-01T08:00:00Z) or a time ago (24h, 7d)"
            ))
        })
}

fn audit(
    g: &GlobalArgs,
    token: Option<String>,
    since: Option<String>,
    until: Option<String>,
    route: Option<String>,
    format: Format,
) -> Result<ExitCode> {
    let service = service(g, false)?;
    let filter = crossdex_service::AuditFilter {
        token,
        route,
        since: since.map(|s| when("--since", &s)).transpose()?,
        until: until.map(|s| when("--until", &s)).transpose()?,
    };
    let entries = service.audit_entries(&filter)?;
    print(&match format {
        Format::Json => render::json(&entries)?,
        other => render::audit(&entries, other == Format::Csv)?,
    })?;
    Ok(ExitCode::SUCCESS)
}

fn config_path(g: &GlobalArgs) -> PathBuf {
    g.config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crossdex_service::DEFAULT_CONFIG))
}

/// The service, its configuration required or read only if present (commands that
/// only read the data directory work without one).
pub(crate) fn service(g: &GlobalArgs, config_required: bool) -> Result<Service> {
    Ok(Service::open(OpenOptions {
        config: g.config.clone(),
        config_required,
        data_dir: g.data_dir.clone(),
        query_timeout: None,
    })?)
}

/// `out` as `format` wants it; a table on a terminal is fitted to its width.
pub(crate) fn rendered(out: &QueryOutput, format: OutputFormat) -> Result<String> {
    let text = match format {
        OutputFormat::Table => out.render_table(terminal_width()),
        other => out.render(other),
    };
    text.map_err(|e| CliError::Runtime(e.into()))
}

/// The terminal's width in columns, when stdout is one.
pub(crate) fn terminal_width() -> Option<u16> {
    let term = console::Term::stdout();
    if !term.is_term() {
        return None;
    }
    term.size_checked().map(|(_, cols)| cols)
}

/// Whether stdout is a terminal that takes colours and styles (`NO_COLOR` says no).
pub(crate) fn styled() -> bool {
    console::Term::stdout().is_term() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A snippet's `**matched**` words in bold on a terminal that takes styles; as they
/// are elsewhere, so files and pipes keep a marker they can search for.
fn highlighted(snippet: &str, bold: bool) -> String {
    if !bold {
        return snippet.to_owned();
    }
    let mut out = String::with_capacity(snippet.len() + 16);
    for (i, part) in snippet.split("**").enumerate() {
        if i > 0 {
            out.push_str(if i % 2 == 1 { "\x1b[1m" } else { "\x1b[0m" });
        }
        out.push_str(part);
    }
    // A `**` of the data's own could leave the terminal in bold.
    out.push_str("\x1b[0m");
    out
}

pub(crate) fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Runtime(
            anyhow::Error::new(e).context("cannot write to stdout"),
        )),
        _ => Ok(()),
    }
}

fn init(g: &GlobalArgs, force: bool) -> Result<ExitCode> {
    let path = config_path(g);
    if path.exists() && !force {
        return Err(CliError::usage(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    std::fs::write(&path, crossdex_service::config::example())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {}; edit its [sources] and run `crossdex doctor`, then `crossdex sync --all`",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn doctor(g: &GlobalArgs, names: &[String]) -> Result<ExitCode> {
    /// Seconds a source has to answer: enough for a slow server, short enough that a
    /// check of sources that are down ends at once.
    const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
    let service = service(g, true)?;
    let report = service.doctor(names, CHECK_TIMEOUT).await?;
    let mut failed = 0;
    for c in &report.checks {
        let what = match &c.system {
            Some(system) => format!("{} ({system}):", c.name),
            None => c.name.clone(),
        };
        if c.ok {
            outln!("ok      {what} {}", c.message);
        } else {
            failed += 1;
            outln!("FAILED  {what} {}", c.message);
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn sync(g: &GlobalArgs, args: &SyncArgs) -> Result<ExitCode> {
    let service = service(g, true)?;
    let (events, rx) = mpsc::unbounded_channel();
    let shown = Follow::new(false).spawn(rx);
    let outcome = service
        .sync(
            &SyncRequest {
                sources: args.sources.clone(),
                all: args.all,
                full: args.full,
                jobs: args.jobs,
                wait: args.wait.map(Duration::from_secs),
            },
            events,
        )
        .await;
    drain(shown).await;
    let outcome = outcome?;
    if outcome.failed > 0 {
        eprintln!(
            "{} of {} sources failed; the others are synced",
            outcome.failed,
            outcome.runs.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn forget(g: &GlobalArgs, sources: &[String], force: bool) -> Result<ExitCode> {
    let service = service(g, true)?;
    let (forgotten, linking) = service.forget(sources, force).await?;
    for f in forgotten {
        outln!(
            "forgot {}: {} records, {} observations",
            f.source,
            f.records,
            f.observations
        );
    }
    if let Some(l) = linking {
        outln!(
            "linking: {} of {} keys linked into {} subjects; {} conflicts, {} ambiguous, {} unlinked (crossdex link report)",
            l.linked,
            l.keys,
            l.subjects,
            l.conflicts,
            l.ambiguous,
            l.unlinked
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(g: &GlobalArgs, format: Format) -> Result<ExitCode> {
    let service = service(g, false)?;
    let status = service.status(&QueryControl::default()).await?;
    print(&match format {
        Format::Json => render::json(&status)?,
        Format::Csv => render::status_csv(&status)?,
        Format::Table => render::status_table(&status, terminal_width()),
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn search(
    g: &GlobalArgs,
    query: &str,
    limit: usize,
    offset: usize,
    format: Format,
) -> Result<ExitCode> {
    let service = service(g, false)?;
    let request = SearchRequest {
        // An absurd limit shows every hit a page can hold, rather than failing.
        limit: limit.min(crossdex_service::MAX_SEARCH_LIMIT),
        offset,
        ..SearchRequest::new(query, limit)
    };
    let result = service.search(&request, &QueryControl::default()).await?;
    match format {
        Format::Json => return print(&render::json(&result)?).map(|()| ExitCode::SUCCESS),
        Format::Csv => return print(&render::hits_csv(&result)?).map(|()| ExitCode::SUCCESS),
        Format::Table => {}
    }
    let hits = &result.hits;
    let bold = styled();
    let mut s = String::new();
    for h in hits {
        s.push_str(&format!(
            "{:>6.2}  {}  [{} {}]\n        {}\n        {}\n",
            h.score,
            h.title,
            h.source,
            h.kind,
            highlighted(&h.snippet, bold),
            h.id
        ));
    }
    if hits.is_empty() {
        s.push_str(if result.total == 0 {
            "no hits\n"
        } else {
            "no hits shown (-n 0, or an offset past the last hit)\n"
        });
    } else if std::io::stdout().is_terminal() {
        let last = offset + hits.len();
        s.push_str(&if offset > 0 {
            format!(
                "hits {} to {last} of {} shown (-n and --offset to see others)\n",
                offset + 1,
                result.total
            )
        } else if last < result.total {
            format!(
                "{last} of {} hits shown (-n to see more, --offset to page)\n",
                result.total
            )
        } else {
            format!("{} hits\n", result.total)
        });
    }
    if result.total > 0 {
        s.push_str(&render::facets_text(&result));
    }
    print(&s)?;
    Ok(ExitCode::SUCCESS)
}

async fn sql(g: &GlobalArgs, args: &SqlArgs) -> Result<ExitCode> {
    let service = service(g, false)?;
    if args.list {
        let mut s = String::new();
        for q in service.saved_queries() {
            s.push_str(&format!("{}\n    {}\n", q.name, q.description));
            for p in &q.params {
                let default = p
                    .default
                    .as_deref()
                    .map(|d| format!(" (default {d})"))
                    .unwrap_or_default();
                s.push_str(&format!(
                    "    --param {}=<{}>{default}  {}\n",
                    p.name, p.kind, p.description
                ));
            }
        }
        print(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let control = QueryControl::default();
    let output = if let Some(name) = &args.saved {
        service.run_saved(name, &args.params, &control).await?
    } else {
        let text = match (&args.query, &args.file) {
            (Some(q), None) => q.clone(),
            (None, Some(f)) if f.as_os_str() == "-" => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .context("cannot read the query from stdin")
                    .map_err(CliError::Usage)?;
                text
            }
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))
                .map_err(CliError::Usage)?,
            _ => {
                return Err(CliError::usage(
                    "give a query, --file FILE, --saved NAME or --list",
                ));
            }
        };
        // `--param` values of an ad-hoc query are bound as text: write
        // `CAST($x AS DOUBLE)` where a number is meant. Saved queries type theirs.
        let params = args
            .params
            .iter()
            .map(|(k, v)| (k.clone(), ScalarValue::Utf8(Some(v.clone()))))
            .collect();
        service.sql(&text, params, &control).await?
    };
    print(&rendered(&output, OutputFormat::from(args.format))?)?;
    if args.format == Format::Table {
        outln!();
    }
    Ok(ExitCode::SUCCESS)
}

async fn subject(g: &GlobalArgs, id: &str, format: Format) -> Result<ExitCode> {
    let service = service(g, false)?;
    let view = service.subject(id, &QueryControl::default()).await?;
    print(&match format {
        Format::Json => render::json(&view)?,
        Format::Csv => render::subject(&view, true, None)?,
        Format::Table => render::subject(&view, false, terminal_width())?,
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn record(g: &GlobalArgs, id: &str, format: Format) -> Result<ExitCode> {
    let service = service(g, false)?;
    let view = service.record(id, &QueryControl::default()).await?;
    if format == Format::Json {
        print(&render::json(&view)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    print(&render::record(
        &view,
        format == Format::Csv,
        terminal_width(),
    )?)?;
    Ok(ExitCode::SUCCESS)
}

async fn link_report(g: &GlobalArgs, format: Format, fail_on: Option<FailOn>) -> Result<ExitCode> {
    let service = service(g, true)?;
    let report = service.link_report(&QueryControl::default()).await?;
    print(&match format {
        Format::Json => render::json(&report)?,
        Format::Csv => render::link_report_csv(&report)?,
        Format::Table => render::link_report_table(&report),
    })?;
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

async fn catalogue(g: &GlobalArgs, command: CatalogueCommand) -> Result<ExitCode> {
    let service = service(g, false)?;
    let control = QueryControl::default();
    match command {
        CatalogueCommand::List { format } => {
            let all = service.datasets(&control).await?;
            let text = match format {
                Format::Json => render::json(&all)?,
                other => render::datasets(&all, other == Format::Csv, terminal_width())?,
            };
            print(&text)?;
        }
        CatalogueCommand::Check { format } => {
            let all = service.datasets(&control).await?;
            let missing = service.catalogue_check(&control).await?;
            print(&match format {
                Format::Json => render::json(&missing)?,
                other => render::missing(&missing, other == Format::Csv)?,
            })?;
            let complete = all.len()
                - missing
                    .iter()
                    .map(|m| m.dataset_id.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
            eprintln!(
                "{complete} of {} datasets have every mandatory DataCite property",
                all.len()
            );
            if !missing.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        CatalogueCommand::Export {
            datasets,
            format,
            out,
        } => {
            let all = service.datasets(&control).await?;
            let chosen: Vec<(crossdex_service::Dataset, Option<crossdex_service::Dataset>)> =
                if datasets.is_empty() {
                    all.iter()
                        .map(|d| {
                            let parent = d
                                .parent_id
                                .as_ref()
                                .and_then(|p| all.iter().find(|x| &x.id == p))
                                .cloned();
                            (d.clone(), parent)
                        })
                        .collect()
                } else {
                    let mut v = Vec::new();
                    for id in &datasets {
                        v.push(service.dataset(id, &control).await?);
                    }
                    v
                };
            export_metadata(&chosen, format, out.as_deref())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One dataset's metadata in `format`.
fn metadata_text(
    d: &crossdex_service::Dataset,
    parent: Option<&crossdex_service::Dataset>,
    format: MetadataFormat,
) -> std::result::Result<String, crossdex_service::ServiceError> {
    let pretty = |v: &dyn erased_json::Json| v.pretty();
    Ok(match format {
        MetadataFormat::Datacite => crossdex_service::datacite_xml(d, parent)?,
        MetadataFormat::DataciteJson => pretty(&crossdex_service::datacite_json(d, parent)?),
        MetadataFormat::Dc => crossdex_service::dublin_core_xml(d),
        MetadataFormat::Json => pretty(d),
    })
}

/// Pretty JSON of any serializable answer, with a final newline.
mod erased_json {
    pub trait Json {
        fn pretty(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn pretty(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
        }
    }
}

fn export_metadata(
    chosen: &[(crossdex_service::Dataset, Option<crossdex_service::Dataset>)],
    format: MetadataFormat,
    out: Option<&std::path::Path>,
) -> Result<()> {
    let Some(dir) = out else {
        match (format, chosen) {
            (MetadataFormat::Json, _) => {
                let all: Vec<&crossdex_service::Dataset> = chosen.iter().map(|(d, _)| d).collect();
                return print(&render::json(&all)?);
            }
            (MetadataFormat::DataciteJson, _) => {
                let mut all = Vec::new();
                for (d, p) in chosen {
                    all.push(crossdex_service::datacite_json(d, p.as_ref())?);
                }
                return print(&render::json(&all)?);
            }
            (_, [(d, p)]) => return print(&metadata_text(d, p.as_ref(), format)?),
            (_, []) => {
                return Err(CliError::usage(
                    "the catalogue is empty: sync a source first (`crossdex sync --all`)",
                ));
            }
            _ => {
                return Err(CliError::usage(format!(
                    "{} datasets make {} XML documents: name one dataset, or pass --out DIR for one file each",
                    chosen.len(),
                    chosen.len()
                )));
            }
        }
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .map_err(CliError::Runtime)?;
    let ext = match format {
        MetadataFormat::Datacite => "datacite.xml",
        MetadataFormat::DataciteJson => "datacite.json",
        MetadataFormat::Dc => "dc.xml",
        MetadataFormat::Json => "json",
    };
    let mut written = 0;
    let mut skipped = Vec::new();
    for (d, p) in chosen {
        let text = match metadata_text(d, p.as_ref(), format) {
            Ok(t) => t,
            // One incomplete dataset does not stop the others.
            Err(e) if e.code == crossdex_service::ErrorCode::IncompleteMetadata => {
                skipped.push(d.id.clone());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let path = dir.join(format!("{}.{ext}", d.id.replace([':', '/', '\\'], "_")));
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(CliError::Runtime)?;
        written += 1;
    }
    eprintln!("{written} files written to {}", dir.display());
    if !skipped.is_empty() {
        eprintln!(
            "{} datasets skipped, lacking DataCite's mandatory properties (see `crossdex catalogue check`): {}",
            skipped.len(),
            skipped.join(", ")
        );
    }
    Ok(())
}

async fn export(
    g: &GlobalArgs,
    dir: &std::path::Path,
    include_sensitive: bool,
    format: Format,
) -> Result<ExitCode> {
    let service = service(g, false)?;
    let report = service
        .export_delta(dir, include_sensitive, &QueryControl::default())
        .await?;
    print(&match format {
        Format::Json => render::json(&report)?,
        other => render::export(&report, other == Format::Csv)?,
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn archive(
    g: &GlobalArgs,
    dataset: &str,
    out: &std::path::Path,
    part_size: Option<String>,
    include_sensitive: bool,
    format: Format,
) -> Result<ExitCode> {
    let service = service(g, false)?;
    let part_size = part_size
        .map(|s| {
            crossdex_service::parse_size(&s)
                .map_err(|e| CliError::usage(format!("--part-size: {e}")))
        })
        .transpose()?;
    let report = service
        .archive(
            dataset,
            out,
            crossdex_service::ArchiveOptions {
                part_size,
                include_sensitive,
            },
            &QueryControl::default(),
        )
        .await?;
    print(&match format {
        Format::Json => render::json(&report)?,
        other => render::archive(&report, other == Format::Csv)?,
    })?;
    Ok(ExitCode::SUCCESS)
}
