//! One function per command.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use crossdex_query::{OutputFormat, QueryEngine, SavedQuery, sql_literal};
use crossdex_store::RunStatus;

use crate::CliError;
use crate::args::{Cli, Command, Format, GlobalArgs, SqlArgs, SyncArgs};
use crate::config::{self, Config};

type Result<T, E = CliError> = std::result::Result<T, E>;

const DEFAULT_CONFIG: &str = "crossdex.toml";

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Init { force } => init(g, force),
        Command::Doctor { sources } => doctor(g, &sources).await,
        Command::Sync(args) => sync(g, &args).await,
        Command::Status { format } => status(g, format).await,
        Command::Forget { sources, force } => forget(g, &sources, force).await,
        Command::Serve => {
            let config = load_config(g)?;
            let dir = data_dir(g, Some(&config));
            crate::syncing::serve(Arc::new(config), &dir).await
        }
        Command::Search {
            query,
            limit,
            format,
        } => search(g, &query, limit, format).await,
        Command::Sql(args) => sql(g, &args).await,
        Command::Demo(args) => crate::simulate::demo(g, &args).await,
        Command::Sim(args) => crate::simulate::sim(&args).await,
        Command::Subject { id, format } => crate::link::subject(g, &id, format).await,
        Command::Link(crate::args::LinkCommand::Report { format, fail_on }) => {
            crate::link::report(g, format, fail_on).await
        }
    }
}

fn config_path(g: &GlobalArgs) -> PathBuf {
    g.config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

pub(crate) fn load_config(g: &GlobalArgs) -> Result<Config> {
    Ok(Config::load(&config_path(g))?)
}

/// The config if one is given or present; commands that only read the store work
/// without one.
fn optional_config(g: &GlobalArgs) -> Result<Option<Config>> {
    let path = config_path(g);
    if g.config.is_none() && !path.exists() {
        return Ok(None);
    }
    Ok(Some(Config::load(&path)?))
}

pub(crate) fn data_dir(g: &GlobalArgs, config: Option<&Config>) -> PathBuf {
    g.data_dir
        .clone()
        .or_else(|| config.and_then(|c| c.data_dir.clone()))
        .unwrap_or_else(config::default_data_dir)
}

fn engine(g: &GlobalArgs) -> Result<(QueryEngine, Option<Config>)> {
    engine_with(g, QueryEngine::open)
}

/// The engine for `status`: a data directory not synced yet reads as empty.
fn engine_or_empty(g: &GlobalArgs) -> Result<(QueryEngine, Option<Config>)> {
    engine_with(g, QueryEngine::open_or_empty)
}

fn engine_with(
    g: &GlobalArgs,
    open: fn(PathBuf) -> Result<QueryEngine, crossdex_query::QueryError>,
) -> Result<(QueryEngine, Option<Config>)> {
    let config = optional_config(g)?;
    let engine = open(data_dir(g, config.as_ref()))?;
    if let Some(c) = &config {
        engine.set_visit_settings(c.visit_settings());
    }
    Ok((engine, config))
}

/// `out` as `format` wants it; a table on a terminal is fitted to its width.
pub(crate) fn rendered(out: &crossdex_query::QueryOutput, format: OutputFormat) -> Result<String> {
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
    std::fs::write(&path, config::example())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {}; edit its [sources] and run `crossdex doctor`, then `crossdex sync --all`",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn selected_sources(config: &Config, names: &[String], all: bool) -> Result<Vec<String>> {
    let configured = config.source_names();
    if configured.is_empty() {
        return Err(CliError::usage(format!(
            "{} configures no source; add a [sources.<name>] table",
            config.path.display()
        )));
    }
    if all || names.is_empty() {
        return Ok(configured);
    }
    for n in names {
        if !configured.contains(n) {
            return Err(CliError::usage(format!(
                "no source named `{n}` in {}; configured: {}",
                config.path.display(),
                configured.join(", ")
            )));
        }
    }
    Ok(names.to_vec())
}

async fn doctor(g: &GlobalArgs, names: &[String]) -> Result<ExitCode> {
    /// Seconds a source has to answer: enough for a slow server, short enough that a
    /// check of sources that are down ends at once.
    const CHECK_TIMEOUT_S: u64 = 10;
    let config = load_config(g)?;
    let mut failed = 0;
    // Every source at once, one line each in the config's order.
    let mut checks = Vec::new();
    for name in selected_sources(&config, names, names.is_empty())? {
        let connector = config.connector_for_check(&name, CHECK_TIMEOUT_S)?;
        let system = connector.system().to_owned();
        let task = tokio::spawn(async move {
            tokio::time::timeout(
                std::time::Duration::from_secs(CHECK_TIMEOUT_S + 2),
                connector.check(),
            )
            .await
        });
        checks.push((name, system, task));
    }
    for (name, system, task) in checks {
        match task.await {
            Ok(Ok(Ok(report))) => outln!("ok      {name} ({system}): {}", report.summary),
            Ok(Ok(Err(e))) => {
                failed += 1;
                outln!("FAILED  {name} ({system}): {e}");
            }
            Ok(Err(_)) => {
                failed += 1;
                outln!("FAILED  {name} ({system}): no answer within {CHECK_TIMEOUT_S} s");
            }
            Err(e) => {
                failed += 1;
                outln!("FAILED  {name} ({system}): the check stopped: {e}");
            }
        }
    }
    let dir = data_dir(g, Some(&config));
    match crossdex_store::Snapshot::open(&dir) {
        Ok(s) => outln!(
            "ok      data directory {} ({} documents)",
            dir.display(),
            s.num_docs()
        ),
        // Not synced yet: the first sync makes it, unless a file is in the way.
        Err(crossdex_store::StoreError::NoIndex { reason, .. }) if !dir.is_file() => {
            outln!(
                "ok      data directory {} ({reason}: the first sync builds the index)",
                dir.display()
            )
        }
        Err(e) => {
            failed += 1;
            outln!("FAILED  data directory {}: {e}", dir.display());
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn sync(g: &GlobalArgs, args: &SyncArgs) -> Result<ExitCode> {
    let config = load_config(g)?;
    if args.sources.is_empty() && !args.all {
        return Err(CliError::usage(format!(
            "name the sources to sync or pass --all; configured: {}",
            config.source_names().join(", ")
        )));
    }
    let names = selected_sources(&config, &args.sources, args.all)?;
    if args.jobs == Some(0) {
        return Err(CliError::usage("--jobs must be at least 1"));
    }
    let dir = data_dir(g, Some(&config));
    let (runs, _linking) =
        crate::syncing::sync_all(Arc::new(config), &dir, &names, args.full, args.jobs).await?;
    let failed = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .count();
    if failed > 0 {
        eprintln!(
            "{failed} of {} sources failed; the others are synced",
            runs.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn forget(g: &GlobalArgs, sources: &[String], force: bool) -> Result<ExitCode> {
    let config = load_config(g)?;
    let configured = config.source_names();
    if let Some(s) = sources.iter().find(|s| configured.contains(s))
        && !force
    {
        return Err(CliError::usage(format!(
            "source {s:?} is still configured in {}: its next sync would bring it back; remove its [sources.{s}] table first, or pass --force",
            config.path.display()
        )));
    }
    let dir = data_dir(g, Some(&config));
    let mut writer = crate::syncing::open_writer(&dir)?;
    for s in sources {
        let (records, observations) = writer.forget_source(s).map_err(|e| match e {
            crossdex_store::StoreError::UnknownSource(_) => {
                CliError::usage(format!("{e}; `crossdex status` lists what it holds"))
            }
            other => other.into(),
        })?;
        outln!("forgot {s}: {records} records, {observations} observations");
    }
    // Its keys no longer link anything: subjects are linked again without them.
    if !configured.is_empty() {
        let linking = crate::link::update(&config, &mut writer).await?;
        outln!("{}", crate::link::summary(&linking));
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(g: &GlobalArgs, format: Format) -> Result<ExitCode> {
    let (engine, config) = engine_or_empty(g)?;
    let dir = engine.snapshot().root().to_owned();
    // The next runs `serve` plans from the same config and history, as a table to
    // join: one row per scheduled source.
    let mut plan_rows = Vec::new();
    if let Some(config) = &config {
        let scheduler = crate::syncing::plan(config, &engine).await?;
        for (name, schedule, next) in scheduler.plan() {
            let next = next
                .map(|t| sql_literal(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
                .unwrap_or_else(|| "NULL".into());
            plan_rows.push(format!(
                "({}, {}, {next})",
                sql_literal(name),
                sql_literal(&format!("{} ({})", schedule.expr(), schedule.zone()))
            ));
        }
    }
    let plan = if plan_rows.is_empty() {
        "SELECT CAST(NULL AS VARCHAR) AS source, CAST(NULL AS VARCHAR) AS schedule, \
         arrow_cast(NULL, 'Timestamp(Microsecond, Some(\"UTC\"))') AS next_run WHERE false"
            .to_owned()
    } else {
        format!(
            "SELECT column1 AS source, column2 AS schedule, \
             arrow_cast(column3, 'Timestamp(Microsecond, Some(\"UTC\"))') AS next_run FROM (VALUES {})",
            plan_rows.join(", ")
        )
    };
    let out = engine
        .sql(
            &format!(
                "WITH last AS (SELECT *, row_number() OVER (PARTITION BY source ORDER BY finished_at DESC, run_id DESC) AS n \
                               FROM sync_runs), \
                      last1 AS (SELECT * FROM last WHERE n = 1), \
                      counts AS (SELECT source, count(*) AS records FROM records GROUP BY source), \
                      plan AS ({plan}) \
                 SELECT coalesce(l.source, p.source) AS source, l.system, coalesce(c.records, 0) AS records, \
                        l.status AS last_status, l.mode AS last_mode, \
                        date_trunc('second', l.started_at) AS last_start, \
                        round(date_part('epoch', l.finished_at) - date_part('epoch', l.started_at), 1) AS seconds, \
                        l.added, l.updated, l.unchanged, l.deleted, l.rejected, \
                        date_trunc('second', p.next_run) AS next_run, p.schedule, l.error \
                 FROM last1 l FULL JOIN plan p ON p.source = l.source \
                 LEFT JOIN counts c ON c.source = coalesce(l.source, p.source) \
                 ORDER BY 1"
            ),
            vec![],
        )
        .await?;
    if format == Format::Table {
        let m = engine.snapshot().manifest();
        let records: u64 = m.sources.values().map(|s| s.n_records).sum();
        let observations: u64 = m.sources.values().map(|s| s.n_observations).sum();
        outln!(
            "data directory {}: {} sources, {records} records, {observations} observations",
            dir.display(),
            m.sources.len()
        );
        if let Some(config) = &config {
            let never: Vec<String> = config
                .source_names()
                .into_iter()
                .filter(|n| !m.sources.contains_key(n))
                .collect();
            if !never.is_empty() {
                outln!("never synced: {}", never.join(", "));
            }
            let gone: Vec<&str> = m
                .sources
                .keys()
                .filter(|n| !config.sources.contains_key(*n))
                .map(String::as_str)
                .collect();
            if !gone.is_empty() {
                outln!(
                    "indexed but no longer configured: {} (`crossdex forget {}` removes its data)",
                    gone.join(", "),
                    gone.join(" ")
                );
            }
        }
    }
    print(&rendered(&out, OutputFormat::from(format))?)?;
    if format == Format::Table {
        outln!();
    }
    Ok(ExitCode::SUCCESS)
}

async fn search(g: &GlobalArgs, query: &str, limit: usize, format: Format) -> Result<ExitCode> {
    let (engine, _) = engine(g)?;
    if format != Format::Table {
        // The same hits as rows of search(), rendered by the query engine's writers.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let out = engine
            .sql(
                "SELECT score, id, source, kind, subject_id, title, snippet FROM search($query, $limit)",
                vec![
                    ("query".into(), crossdex_query::ScalarValue::Utf8(Some(query.to_owned()))),
                    ("limit".into(), crossdex_query::ScalarValue::Int64(Some(limit))),
                ],
            )
            .await?;
        print(&rendered(&out, OutputFormat::from(format))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let page = engine.search_page(query, limit)?;
    let hits = &page.hits;
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
        s.push_str(if page.total == 0 {
            "no hits\n"
        } else {
            "no hits shown (-n 0)\n"
        });
    } else if std::io::stdout().is_terminal() {
        s.push_str(&if hits.len() < page.total {
            format!(
                "{} of {} hits shown (-n to see more)\n",
                hits.len(),
                page.total
            )
        } else {
            format!("{} hits\n", page.total)
        });
    }
    print(&s)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn saved_queries(config: Option<&Config>) -> Result<Vec<SavedQuery>> {
    Ok(crate::saved::load(
        config.and_then(|c| c.queries_dir.as_deref()),
    )?)
}

async fn sql(g: &GlobalArgs, args: &SqlArgs) -> Result<ExitCode> {
    let (engine, config) = engine(g)?;
    if args.list {
        let mut s = String::new();
        for q in saved_queries(config.as_ref())? {
            s.push_str(&format!("{}\n    {}\n", q.name, q.description));
            for p in &q.params {
                let default = p
                    .default
                    .as_deref()
                    .map(|d| format!(" (default {d})"))
                    .unwrap_or_default();
                s.push_str(&format!(
                    "    --param {}=<{:?}>{default}  {}\n",
                    p.name, p.kind, p.description
                ));
            }
        }
        print(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let output = if let Some(name) = &args.saved {
        let queries = saved_queries(config.as_ref())?;
        let query = SavedQuery::find(&queries, name)?;
        engine.saved(query, &args.params).await?
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
        let params = args
            .params
            .iter()
            .map(|(k, v)| (k.clone(), text_param(v)))
            .collect();
        engine.sql(&text, params).await?
    };
    print(&rendered(&output, OutputFormat::from(args.format))?)?;
    if args.format == Format::Table {
        outln!();
    }
    Ok(ExitCode::SUCCESS)
}

/// `--param` values of an ad-hoc query are bound as text: write `CAST($x AS DOUBLE)`
/// where a number is meant. Saved queries declare their parameters' types.
fn text_param(v: &str) -> crossdex_query::ScalarValue {
    crossdex_query::ScalarValue::Utf8(Some(v.to_owned()))
}
