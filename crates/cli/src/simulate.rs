//! `crossdex sim` and `crossdex demo`: the simulated systems, served on their own or
//! synced into a demo index.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use crossdex_service::config::{ConfigDraft, SourceDraft};
use crossdex_service::{
    OpenOptions, OutputFormat, QueryControl, SearchRequest, Service, SyncRequest, registry,
};
use crossdex_sim::{SimOptions, Simulators, System, World};
use tokio::sync::mpsc;

use crate::CliError;
use crate::args::{CohortArgs, DemoArgs, GlobalArgs, SimArgs};
use crate::commands::print;
use crate::progress::{Follow, drain};

type Result<T, E = CliError> = std::result::Result<T, E>;

fn options(c: &CohortArgs, faults: &[String]) -> Result<SimOptions> {
    let mut opts = SimOptions {
        subjects: c.subjects,
        seed: c.seed,
        ..SimOptions::default()
    };
    for f in faults {
        opts.add_fault(f).map_err(CliError::usage)?;
    }
    Ok(opts)
}

async fn start(opts: &SimOptions, host: IpAddr, port_base: u16, days: u32) -> Result<Simulators> {
    let sims = Simulators::start(opts, host, port_base)
        .await
        .map_err(|e| CliError::Runtime(e.into()))?;
    sims.advance(days);
    Ok(sims)
}

/// One line per system: what it holds.
fn contents(w: &World, s: System) -> String {
    match s {
        System::Xnat => {
            let scans: usize = w.xnat.experiments.iter().map(|e| e.scans.len()).sum();
            format!(
                "{} subjects, {} sessions, {scans} scans in {} projects",
                w.xnat.subjects.len(),
                w.xnat.experiments.len(),
                w.xnat.projects.len()
            )
        }
        System::Redcap => {
            let rows: usize = w.redcap.records.iter().map(|r| r.rows.len()).sum();
            format!(
                "{} records, {rows} rows over 3 events",
                w.redcap.records.len()
            )
        }
        System::Omero => format!(
            "{} projects, {} datasets, {} images",
            w.omero.projects.len(),
            w.omero.datasets.len(),
            w.omero.images.len()
        ),
        System::Transmart => format!(
            "{} patients, {} observations",
            w.transmart.patients.len(),
            w.transmart.observations.len()
        ),
        System::Elabftw => format!(
            "{} experiments, {} items",
            w.elab.experiments.iter().filter(|e| e.state != 3).count(),
            w.elab.items.len()
        ),
    }
}

fn login_hint(sims: &Simulators, s: System) -> String {
    let c = sims.credentials(s);
    match s {
        System::Redcap => format!("POST /api/ with token={}", c.token),
        System::Elabftw => format!("header Authorization: {}", c.token),
        System::Transmart => format!(
            "user {} / password {} (token endpoint /auth/realms/{}/protocol/openid-connect/token)",
            c.username,
            c.password,
            crossdex_sim::TRANSMART_REALM
        ),
        _ => format!("user {} / password {}", c.username, c.password),
    }
}

/// A configuration with one source per simulator, credentials included.
fn config_text(sims: &Simulators, data_dir: Option<&Path>) -> Result<String> {
    let draft = ConfigDraft {
        header: vec![
            "crossdex configuration for the simulated systems of `crossdex sim`.".into(),
            "Credentials are inline because the servers are simulated; for real systems".into(),
            "put secrets in a file (`password_file`, `token_file`) or the environment.".into(),
        ],
        data_dir: data_dir.map(Path::to_owned),
        sources: sims
            .sources()
            .into_iter()
            .map(|s| {
                let mut table = s.settings;
                table.insert("link".into(), s.link);
                SourceDraft {
                    name: s.system.name().to_owned(),
                    table,
                }
            })
            .collect(),
        link_priority: crossdex_sim::LINK_PRIORITY
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    Ok(draft
        .to_toml()
        .map_err(crossdex_service::ServiceError::from)?)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .with_context(|| format!("cannot write {}", path.display()))
        .map_err(CliError::Runtime)
}

pub async fn sim(args: &SimArgs) -> Result<ExitCode> {
    let opts = options(&args.cohort, &args.faults)?;
    if args.port_base != 0 && args.port_base > u16::MAX - 4 {
        return Err(CliError::usage(format!(
            "--port-base {} leaves no room for five ports",
            args.port_base
        )));
    }
    let sims = start(&opts, args.host, args.port_base, args.cohort.days).await?;
    outln!(
        "crossdex sim: {} people, seed {}, simulated day {}",
        opts.subjects,
        opts.seed,
        args.cohort.days
    );
    sims.with_world(|w| {
        for s in System::ALL {
            outln!(
                "  {:<10} {:<28} {}",
                s.display(),
                sims.url(s),
                contents(w, s)
            );
            outln!("  {:<10} {:<28} {}", "", "", login_hint(&sims, s));
        }
    });
    if let Some(path) = &args.write_config {
        write_file(path, &config_text(&sims, None)?)?;
        outln!("Configuration written to {}", path.display());
    }
    if let Some(path) = &args.truth {
        write_file(path, &sims.truth_csv())?;
        outln!("Ground truth written to {}", path.display());
    }
    outln!(
        "Time travel: curl -X POST {}/_sim/advance  (every system moves one day on)\nServing until Ctrl-C.",
        sims.url(System::Xnat)
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")
        .map_err(CliError::Runtime)?;
    sims.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn demo(g: &GlobalArgs, args: &DemoArgs) -> Result<ExitCode> {
    let opts = options(&args.cohort, &[])?;
    let sims = start(&opts, IpAddr::V4(Ipv4Addr::LOCALHOST), 0, args.cohort.days).await?;

    let (dir, config_file) = match &g.data_dir {
        Some(d) => {
            let dir = std::path::absolute(d).unwrap_or_else(|_| d.clone());
            // Beside the data directory, named after it: two demos into two folders
            // never share one configuration.
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "crossdex".to_owned());
            let parent = dir
                .parent()
                .map(Path::to_owned)
                .unwrap_or_else(std::env::temp_dir);
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            let config = parent.join(format!("{name}-demo.toml"));
            (dir, config)
        }
        None => {
            // A folder of this run's own, kept after it so the printed commands work:
            // a concurrent demo never touches it, and nothing else is removed.
            let root = tempfile::Builder::new()
                .prefix("crossdex-demo-")
                .tempdir()
                .context("cannot create the demo's folder")?
                .keep();
            (root.join("data"), root.join("crossdex-demo.toml"))
        }
    };
    let has_connector = |s: System| registry::factory(s.name()).is_some();
    write_file(&config_file, &config_text(&sims, Some(&dir))?)?;
    let service = Service::open(OpenOptions {
        config: Some(config_file.clone()),
        config_required: true,
        data_dir: Some(dir.clone()),
        query_timeout: None,
    })?;

    outln!(
        "crossdex demo: five simulated research systems over one synthetic cohort ({} people, seed {})\n",
        opts.subjects,
        opts.seed
    );
    sims.with_world(|w| {
        for s in System::ALL {
            let note = if has_connector(s) {
                "synced below"
            } else {
                "no connector in this build yet: not synced"
            };
            outln!(
                "  {:<10} {:<24} {}  [{note}]",
                s.display(),
                sims.url(s),
                contents(w, s)
            );
        }
    });
    outln!("\nIndexing them into {}:\n", dir.display());
    let (events, rx) = mpsc::unbounded_channel();
    let shown = Follow::new(false).spawn(rx);
    let outcome = service
        .sync(
            &SyncRequest {
                all: true,
                ..SyncRequest::default()
            },
            events,
        )
        .await;
    drain(shown).await;
    let outcome = outcome?;
    let control = QueryControl::default();
    let report = service.link_report(&control).await?;

    outln!("\n$ crossdex link report   (one person, five spellings: the config's rules link them)");
    print(&crate::render::link_report_table(&report))?;

    // The keys linking read (titles included, for sources that name subjects only in
    // titles), each counted once: the same numbers as the link report.
    outln!("\nSubject keys per source (each system spells them its own way):");
    let mut table = String::from("source       subject keys  first key\n");
    for p in &report.per_source {
        table.push_str(&format!(
            "{:<12} {:>12}  {}\n",
            p.source,
            p.keys,
            p.example_key.as_deref().unwrap_or("")
        ));
    }
    print(&table)?;
    outln!();

    let saved = service.saved_queries();
    for (name, params) in [
        ("records-per-source", vec![]),
        (
            "mr-and-low-moca",
            vec![("threshold".to_owned(), "14".to_owned())],
        ),
    ] {
        let description = saved
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.description.clone())
            .unwrap_or_default();
        let shown: Vec<String> = params
            .iter()
            .map(|(k, v)| format!(" --param {k}={v}"))
            .collect();
        outln!(
            "\n$ crossdex sql --saved {name}{}\n-- {description}",
            shown.concat(),
        );
        let out = service.run_saved(name, &params, &control).await?;
        print(
            &out.render(OutputFormat::Table)
                .map_err(anyhow::Error::from)?,
        )?;
        outln!();
    }
    let hits = service
        .search(
            &SearchRequest {
                facets: None,
                ..SearchRequest::new("plasma nfl", 3)
            },
            &control,
        )
        .await?
        .hits;
    outln!("\n$ crossdex search 'plasma nfl'");
    for h in &hits {
        outln!(
            "{:>6.2}  {}  [{}]\n        {}",
            h.score,
            h.title,
            h.source,
            h.snippet
        );
    }
    let cfg = config_file.display();
    outln!(
        "\nExplore further (the index stays; the simulators stop with the demo, `crossdex sim` keeps them serving):\n  \
         crossdex --config {cfg} sql \"SELECT * FROM search('donepezil') s JOIN records r ON r.id = s.id\"\n  \
         crossdex --config {cfg} subject INT_0003\n  \
         crossdex --config {cfg} sql --list\n  crossdex --config {cfg} status"
    );
    if g.data_dir.is_some() {
        outln!("  (add --data-dir {} to each)", dir.display());
    }
    {
        use std::io::IsTerminal;
        // The summary stays above; the UI opens over it on a terminal (the simulators
        // keep serving, so a sync from the Sources view works).
        if !args.no_ui && std::io::stdout().is_terminal() {
            let location = format!("demo: {}", dir.display());
            crossdex_tui::run(crossdex_tui::Backend::Local(service.clone()), location)
                .await
                .map_err(anyhow::Error::from)?;
        }
    }
    sims.shutdown().await;
    Ok(if outcome.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
