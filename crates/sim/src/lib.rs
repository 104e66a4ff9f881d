//! Simulators of XNAT, REDCap, OMERO, tranSMART and eLabFTW over one synthetic cohort.
//!
//! This crate owns the simulated world (a seeded cohort of people spread over five
//! systems, each spelling subject codes its own way), one axum server per system that
//! reproduces the real API from `reference/` (paths, auth, JSON shapes and value
//! types, paging, error bodies), fault injection, a request log per server, the
//! `/_sim` admin endpoints (advance the clock, read the truth, set faults) and the
//! ground truth of who is who.
//!
//! It must not depend on crossdex's connectors, store or query engine: the simulators
//! stand in for the outside world, and the connectors are tested against them only
//! through HTTP. The same seed always gives byte-identical responses.

// Handler helpers return the ready error `Response` as their `Err`: it is built once per
// refused request, and boxing it would only add noise to every early return.
#![allow(clippy::result_large_err)]

mod cohort;
mod elabftw;
mod omero;
mod redcap;
mod rng;
mod server;
#[cfg(test)]
mod tests;
mod transmart;
mod world;
mod xnat;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cohort::{Diagnosis, Person, Sex, System};
pub use server::{Credentials, Faults, RequestRecord, SimState};
pub use transmart::REALM as TRANSMART_REALM;
pub use world::{TM_STUDY, World};

/// The seed `crossdex sim` and `crossdex demo` use unless told otherwise.
pub const DEFAULT_SEED: u64 = 42;
/// The cohort size `crossdex sim` uses unless told otherwise.
pub const DEFAULT_SUBJECTS: u32 = 200;
/// The first port `crossdex sim` listens on unless told otherwise.
pub const DEFAULT_PORT_BASE: u16 = 18000;
/// Concepts of the simulated tranSMART study.
pub const TRANSMART_CONCEPTS: usize = world::TM_CONCEPTS.len();
/// The client id the tranSMART token endpoint expects.
pub const TRANSMART_CLIENT_ID: &str = "transmart-client";

/// Why the simulators could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr} for the {system} simulator: {source}")]
    Bind {
        system: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid fault {spec:?}: {reason}")]
    Fault { spec: String, reason: String },
    #[error("--subjects must be from 1 to 100000, got {0}")]
    Subjects(u32),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub subjects: u32,
    pub seed: u64,
    /// Faults per system, in `System::ALL` order.
    pub faults: [Faults; 5],
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            subjects: DEFAULT_SUBJECTS,
            seed: DEFAULT_SEED,
            faults: Default::default(),
        }
    }
}

impl SimOptions {
    /// Applies a fault given as `[system:]name=value`, e.g. `redcap:error_rate=0.2` or
    /// `latency_ms=50` (every system).
    pub fn add_fault(&mut self, spec: &str) -> Result<(), SimError> {
        let err = |reason: String| SimError::Fault {
            spec: spec.to_owned(),
            reason,
        };
        let (target, setting) = match spec.split_once(':') {
            Some((sys, rest)) if !sys.contains('=') => {
                let s = System::from_name(sys).ok_or_else(|| {
                    err(format!(
                        "unknown system {sys:?}; one of: xnat, redcap, omero, transmart, elabftw"
                    ))
                })?;
                (Some(s), rest)
            }
            _ => (None, spec),
        };
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| err("expected NAME=VALUE".to_owned()))?;
        for s in System::ALL {
            if target.is_none_or(|t| t == s) {
                self.faults[s.index()]
                    .set(key.trim(), value.trim())
                    .map_err(&err)?;
            }
        }
        Ok(())
    }
}

struct Running {
    system: System,
    addr: SocketAddr,
    state: Arc<SimState>,
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

/// The five simulators, serving on loopback until shut down or dropped.
pub struct Simulators {
    world: Arc<RwLock<World>>,
    running: Vec<Running>,
}

impl Simulators {
    /// Generates the world and starts one server per system on `host`, at ports
    /// `port_base` to `port_base + 4` in `System::ALL` order (any free ports when
    /// `port_base` is 0).
    pub async fn start(
        opts: &SimOptions,
        host: IpAddr,
        port_base: u16,
    ) -> Result<Simulators, SimError> {
        if opts.subjects == 0 || opts.subjects > 100_000 {
            return Err(SimError::Subjects(opts.subjects));
        }
        let world = Arc::new(RwLock::new(World::generate(opts.seed, opts.subjects)));
        let mut running = Vec::new();
        for (i, system) in System::ALL.into_iter().enumerate() {
            let port = if port_base == 0 {
                0
            } else {
                port_base + i as u16
            };
            let addr = SocketAddr::new(host, port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::Bind {
                    system: system.display(),
                    addr,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| SimError::Bind {
                system: system.display(),
                addr,
                source,
            })?;
            let state = Arc::new(SimState::new(system, world.clone(), opts.faults[i].clone()));
            let app = match system {
                System::Xnat => xnat::router(state.clone()),
                System::Redcap => redcap::router(state.clone()),
                System::Omero => omero::router(state.clone()),
                System::Transmart => transmart::router(state.clone()),
                System::Elabftw => elabftw::router(state.clone()),
            };
            let (tx, rx) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                    let _ = rx.await;
                });
                if let Err(e) = serve.await {
                    tracing::error!("{} simulator stopped: {e}", system.display());
                }
            });
            running.push(Running {
                system,
                addr,
                state,
                task,
                stop: Some(tx),
            });
        }
        Ok(Simulators { world, running })
    }

    fn get(&self, s: System) -> &Running {
        &self.running[s.index()]
    }

    pub fn addr(&self, s: System) -> SocketAddr {
        self.get(s).addr
    }

    /// `http://host:port` of a simulator.
    pub fn url(&self, s: System) -> String {
        format!("http://{}", self.addr(s))
    }

    pub fn credentials(&self, s: System) -> Credentials {
        self.get(s).state.credentials.clone()
    }

    /// The requests a simulator served so far, oldest first.
    pub fn requests(&self, s: System) -> Vec<RequestRecord> {
        self.get(s).state.requests()
    }

    pub fn clear_requests(&self, s: System) {
        self.get(s).state.clear_requests();
    }

    /// Forgets a simulator's sessions and tokens: clients must log in again.
    pub fn expire_sessions(&self, s: System) {
        self.get(s).state.expire_sessions();
    }

    pub fn set_faults(&self, s: System, faults: Faults) {
        self.get(s).state.set_faults(faults);
    }

    /// Moves the simulated world `days` days on (all five systems together).
    pub fn advance(&self, days: u32) {
        let mut w = self.world.write().unwrap_or_else(|e| e.into_inner());
        for _ in 0..days {
            w.advance();
        }
    }

    /// Changes the world by hand: for tests of one precise change (an entry edited in
    /// the very second a sync read), which `advance` does not make on purpose.
    pub fn with_world_mut<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the world (for tests that compare what was served with what exists).
    pub fn with_world<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.world.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The ground truth: `person,system,subject_key`, one row per native subject key.
    pub fn truth_csv(&self) -> String {
        self.with_world(World::truth_csv)
    }

    /// One source per simulator, as a crossdex configuration would declare it: the
    /// connector's keys (credentials included) and how the system spells subjects.
    /// The simulators know their endpoints; writing crossdex's configuration format
    /// is the configuration code's job.
    pub fn sources(&self) -> Vec<SimSource> {
        self.running
            .iter()
            .map(|r| {
                let c = &r.state.credentials;
                let url = format!("http://{}", r.addr);
                let mut settings = serde_json::Map::new();
                let mut set = |k: &str, v: String| {
                    settings.insert(k.to_owned(), serde_json::Value::String(v));
                };
                set("type", r.system.name().to_owned());
                match r.system {
                    System::Xnat | System::Omero => {
                        set("url", url.clone());
                        set("username", c.username.clone());
                        set("password", c.password.clone());
                    }
                    System::Redcap => {
                        set("url", format!("{url}/api/"));
                        set("token", c.token.clone());
                    }
                    System::Transmart => {
                        set("url", url.clone());
                        set(
                            "token_url",
                            format!(
                                "{url}/auth/realms/{}/protocol/openid-connect/token",
                                transmart::REALM
                            ),
                        );
                        set("client_id", TRANSMART_CLIENT_ID.to_owned());
                        set("username", c.username.clone());
                        set("password", c.password.clone());
                    }
                    System::Elabftw => {
                        set("url", url.clone());
                        set("api_key", c.token.clone());
                    }
                }
                SimSource {
                    system: r.system,
                    url,
                    settings,
                    link: link_rule(r.system),
                }
            })
            .collect()
    }

    /// Tells every server to stop (graceful: requests in flight are answered).
    fn stop(&mut self) {
        for r in &mut self.running {
            if let Some(tx) = r.stop.take() {
                let _ = tx.send(());
            }
        }
    }

    /// Stops one system's server, as a server that goes down: its port refuses
    /// connections from then on. The others keep serving.
    pub async fn stop_system(&mut self, s: System) {
        let Some(i) = self.running.iter().position(|r| r.system == s) else {
            return;
        };
        let mut r = self.running.remove(i);
        if let Some(tx) = r.stop.take() {
            let _ = tx.send(());
        }
        let _ = r.task.await;
    }

    /// Stops every server and waits for them to finish.
    pub async fn shutdown(mut self) {
        self.stop();
        for r in std::mem::take(&mut self.running) {
            let _ = r.task.await;
        }
    }
}

impl Drop for Simulators {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The linking rule of each system, as `crossdex link` reads it.
/// How `system` spells subjects, as a crossdex `link` table.
fn link_rule(system: System) -> serde_json::Value {
    let digits_to_int = serde_json::json!({
        "pattern": r"^INT[_-]?(\d+)$",
        "template": "INT_{1:04}",
    });
    let mut rule = digits_to_int;
    let extra = match system {
        // A letter O typed for a zero is a known slip in this archive.
        System::Xnat => serde_json::json!({
            "replace": { "O": "0" },
            "hard": { "sex": "gender", "birth_year": "yob" },
        }),
        System::Redcap => serde_json::json!({
            "pattern": r"^0*(\d+)$",
            "hard": { "sex": "sex", "birth_year": "birth_year" },
        }),
        System::Omero => serde_json::json!({}),
        System::Transmart => serde_json::json!({ "hard": { "sex": "sex" } }),
        // Samples name their subject in a field, or only in their title.
        System::Elabftw => serde_json::json!({
            "key_from": "title",
            "pattern": r"INT[_-]?(\d+)",
        }),
    };
    if let (Some(rule), Some(extra)) = (rule.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            rule.insert(k.clone(), v.clone());
        }
    }
    rule
}

/// Whose sex and year of birth are the reference when the simulated systems disagree.
pub const LINK_PRIORITY: &[&str] = &["redcap", "xnat", "transmart", "omero", "elabftw"];

/// A simulator as a source of crossdex.
#[derive(Debug, Clone)]
pub struct SimSource {
    /// The system it simulates; its name is the source's name.
    pub system: System,
    /// Where it listens.
    pub url: String,
    /// The connector's keys, `type` and credentials included.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The source's `link` table.
    pub link: serde_json::Value,
}
