use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch folder holding a copy of the sample exports and their config, so tests
/// never write into the repository.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&repo().join("samples"), &dir.path().join("samples"));
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("samples/crossdex.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path().join("crossdex-data")
    }

    /// A `crossdex` command with the sandbox's config, and no CROSSDEX variables
    /// inherited from the caller's environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crossdex"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CROSSDEX") {
                c.env_remove(k);
            }
        }
        c.env("CROSSDEX_CONFIG", self.config())
            .env("NO_COLOR", "1")
            .current_dir(self.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command().args(args).output().unwrap().into()
    }

    /// Runs and asserts success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "crossdex {args:?} failed:\n{run:?}");
        run
    }

    /// The one value `sql` answers with configuration `config`.
    pub fn csv_with(&self, config: &str, sql: &str) -> String {
        let run = self.ok(&["-c", config, "sql", "--format", "csv", sql]);
        run.stdout
            .lines()
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// `sql --format csv` without the header, one Vec per row.
    pub fn csv(&self, sql: &str) -> Vec<Vec<String>> {
        let run = self.ok(&["sql", "--format", "csv", sql]);
        run.stdout
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect()
    }
}

/// A sandbox with the demo's data directory (`demo --no-ui`), and the configuration
/// the demo wrote.
pub fn demo() -> (Sandbox, String) {
    let s = Sandbox::new();
    let d = s.path().join("demo-data");
    s.ok(&["--data-dir", d.to_str().unwrap(), "demo", "--no-ui"]);
    let cfg = s.path().join("demo-data-demo.toml");
    (s, cfg.to_str().unwrap().to_owned())
}

/// Simulators in this process, and a config for them in the sandbox.
pub async fn simulators(s: &Sandbox, subjects: u32) -> (crossdex_sim::Simulators, String) {
    let opts = crossdex_sim::SimOptions {
        subjects,
        ..crossdex_sim::SimOptions::default()
    };
    let sims = crossdex_sim::Simulators::start(
        &opts,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        0,
    )
    .await
    .expect("simulators start");
    let path = s.path().join("sims.toml");
    let draft = crossdex_service::config::ConfigDraft {
        header: vec!["the simulators of one test".into()],
        data_dir: Some(s.data_dir()),
        sources: sims
            .sources()
            .into_iter()
            .map(|src| {
                let mut table = src.settings;
                table.insert("link".into(), src.link);
                crossdex_service::config::SourceDraft {
                    name: src.system.name().to_owned(),
                    table,
                }
            })
            .collect(),
        link_priority: crossdex_sim::LINK_PRIORITY
            .iter()
            .map(|p| (*p).to_owned())
            .collect(),
    };
    std::fs::write(&path, draft.to_toml().expect("config")).expect("config");
    (sims, path.to_str().expect("utf-8").to_owned())
}

/// A facet of a search answer (`[{"value", "count"}]`) as a map.
pub fn facet_buckets(v: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["value"].as_str().unwrap().to_owned(),
                b["count"].as_u64().unwrap(),
            )
        })
        .collect()
}
