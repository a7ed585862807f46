//! The harness from a team's Rust tests: run a scenario (loaded from a file or built in code) on a backend and
//! get its report, or start it live and drive your own clients and faults while it runs.
//!
//! A run happens on a thread of its own with its own async runtime, so a test can be `#[test]` or any flavour of
//! `#[tokio::test]`, and a slow or blocking client in the test never holds up the cluster, the capture or the
//! ETL. Everything the run starts (the embedded cluster, or the local backend's processes) is stopped when the
//! run ends — also when a [`LiveRun`] is dropped without [`finish`](LiveRun::finish), as when the test panics.
//!
//! ```
//! use openmrs_etl_harness::live::Harness;
//! use openmrs_etl_harness::scenario::Scenario;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scenario = Scenario::builder("a small clinic")
//!     .seed(3)
//!     .brokers(1)
//!     .patients(20)
//!     .operations(100)
//!     .rate(1000.0)
//!     .build()?;
//! let outcome = Harness::new(scenario).run_blocking()?;
//! outcome.assert_passed();
//! // What `insta::assert_snapshot!` takes: the same text for the same seed on every run.
//! assert!(outcome.report.stable_text().contains("result: passed"));
//! # Ok(())
//! # }
//! ```
//!
//! Live, with the test's own consumer and a fault of its own (`no_run` here; the example crate under
//! `examples/team-tests` runs one):
//!
//! ```no_run
//! use openmrs_etl_harness::live::Harness;
//! use openmrs_etl_harness::scenario::Scenario;
//!
//! # async fn test() -> Result<(), Box<dyn std::error::Error>> {
//! let scenario = Scenario::builder("my consumer under a leader kill")
//!     .brokers(3)
//!     .replication_factor(3)
//!     .min_insync_replicas(2)
//!     .operations(2000)
//!     .rate(200.0)
//!     .build()?;
//! let live = Harness::new(scenario).start().await?;
//! let bootstrap = live.bootstrap_servers().to_owned();
//! let obs = live.topic("obs");
//! // ... start your consumer on `bootstrap`, reading `obs` ...
//! let killed = live.kill_leader_of(&obs, 0).await?;
//! // ... later ...
//! live.restart_broker(killed).await?;
//! live.stream_done().await?;
//! // ... let your consumer catch up and check what it read ...
//! let outcome = live.finish().await?;
//! outcome.assert_passed();
//! # Ok(())
//! # }
//! ```

// `RunError` (136 bytes: the causes it carries) is returned at most once per run, where its size costs nothing.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use crate::run::{RunError, RunOutcome};
pub use crate::topology::Endpoints;

use crate::nemesis::LiveFault;
use crate::run::RunOptions;
use crate::scenario::{
    Backend, ClockMode, Fault, FaultAction, FaultTarget, Millis, Scenario, ScenarioErrors,
};

/// What the driver hands a live run's holder, and what it takes from it.
pub(crate) struct LiveLink {
    /// Sent once the capture is ready, just before the stream starts.
    pub(crate) ready: oneshot::Sender<Ready>,
    pub(crate) faults: mpsc::UnboundedReceiver<LiveFault>,
    pub(crate) stream: watch::Sender<StreamState>,
}

/// Where a live run's services answer, and the scenario as it runs there.
pub(crate) struct Ready {
    pub(crate) endpoints: Endpoints,
    pub(crate) scenario: Scenario,
}

/// Whether the stream of source commits is still going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamState {
    Running,
    /// Every operation is committed at the source.
    Done,
    /// And every commit is in Kafka.
    InKafka,
    Failed(String),
}

/// Why a live run's fault verb did nothing, or not all it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The fault does not fit the scenario (a broker or consumer that does not exist, an action the target
    /// cannot take, a key the action needs): nothing was done.
    #[error("the fault does not fit the scenario: {0}")]
    Invalid(String),
    /// The backend cannot perform this fault: nothing was done.
    #[error("the {backend} backend cannot {action} {target}")]
    Unsupported {
        backend: &'static str,
        action: &'static str,
        target: String,
    },
    /// The fault was tried and failed (or its target resolved to nothing); the history records it.
    #[error("the fault was not applied: {0}")]
    NotApplied(String),
    /// The run is over (finished, or failed): nothing was done.
    #[error("the run is no longer live")]
    Over,
    /// The stream of source commits failed, or the capture did.
    #[error("the stream failed: {0}")]
    StreamFailed(String),
}

/// One scenario to run from code: on its backend or another it lists, whole or live.
#[derive(Debug, Clone)]
pub struct Harness {
    scenario: Scenario,
    /// The file it came from; `None` for a scenario built in code (written out when it runs).
    path: Option<PathBuf>,
    backend_chosen: bool,
}

impl Harness {
    /// A harness for `scenario` (from [`Scenario::builder`], [`Scenario::parse`] or [`Scenario::load`]).
    pub fn new(scenario: Scenario) -> Harness {
        Harness {
            scenario,
            path: None,
            backend_chosen: false,
        }
    }

    /// A harness for the scenario file at `path` (errors name `file:line:column` and the key).
    pub fn load(path: impl AsRef<Path>) -> Result<Harness, ScenarioErrors> {
        let path = path.as_ref();
        Ok(Harness {
            scenario: Scenario::load(path)?,
            path: Some(path.to_owned()),
            backend_chosen: false,
        })
    }

    /// Runs on `backend` instead of the scenario's `[topology] backend` (it must be one the scenario lists;
    /// checked when the run starts), as `etl-harness run --backend` does.
    pub fn backend(mut self, backend: Backend) -> Harness {
        self.scenario.topology.backend = backend;
        self.backend_chosen = true;
        self
    }

    /// Runs with `seed` instead of the scenario's, as `etl-harness run --seed` does.
    pub fn seed(mut self, seed: u64) -> Harness {
        self.scenario.seed = seed;
        self
    }

    /// The scenario as it will run.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Runs the scenario to its end and judges it. An `Err` means the run could not be carried out; a run whose
    /// expectations failed is an `Ok` whose report did not pass ([`RunOutcome::assert_passed`]).
    pub async fn run(self) -> Result<RunOutcome, RunError> {
        let (started, _ready) = self.spawn(false)?;
        started.finish().await
    }

    /// [`run`](Harness::run) for code that is not async (a plain `#[test]`); must not be called from inside an
    /// async runtime.
    pub fn run_blocking(self) -> Result<RunOutcome, RunError> {
        let (mut started, _ready) = self.spawn(false)?;
        started.join()
    }

    /// Starts the run and returns once its services are up and the capture is ready, just before the stream of
    /// source commits starts: from then on the [`LiveRun`] has the endpoints and the fault verbs. The scenario's
    /// own `[[faults]]` still fire at their times. Needs a real clock.
    pub async fn start(self) -> Result<LiveRun, RunError> {
        if self.scenario.topology.clock == ClockMode::Virtual {
            return Err(RunError::LiveNeedsRealClock);
        }
        let supports = crate::topology::fault_support(self.scenario.topology.backend).ok_or(
            RunError::BackendUnavailable(self.scenario.topology.backend.name()),
        )?;
        let (started, ready) = self.spawn(true)?;
        let (ready, faults, stream) = ready.expect("a live spawn has a link");
        match ready.await {
            Ok(ready) => Ok(LiveRun {
                endpoints: ready.endpoints,
                scenario: ready.scenario,
                supports,
                faults: Some(faults),
                stream,
                started: Some(started),
            }),
            // The driver ended before the stream started: its error says why.
            Err(_) => Err(match started.finish().await {
                Err(e) => e,
                Ok(_) => RunError::Thread("the run ended before its stream started".into()),
            }),
        }
    }

    /// The command that runs this scenario again from the shell.
    fn reproduce(&self, path: &Path) -> String {
        let mut command = format!(
            "etl-harness run {}",
            crate::report::shell_word(&path.display().to_string())
        );
        if self.backend_chosen && self.path.is_some() {
            command.push_str(&format!(
                " --backend {}",
                self.scenario.topology.backend.name()
            ));
        }
        command.push_str(&format!(" --seed {}", self.scenario.seed));
        command
    }

    #[allow(clippy::type_complexity)]
    fn spawn(
        self,
        live: bool,
    ) -> Result<
        (
            Started,
            Option<(
                oneshot::Receiver<Ready>,
                mpsc::UnboundedSender<LiveFault>,
                watch::Receiver<StreamState>,
            )>,
        ),
        RunError,
    > {
        let scenario = &self.scenario;
        if !scenario.backends.contains(&scenario.topology.backend) {
            return Err(RunError::NotListed {
                scenario: scenario.name.clone(),
                backend: scenario.topology.backend.name(),
            });
        }
        // A scenario built in code is written out, so the reproduce command names a file that says what ran
        // (a file's own run adds the --backend and --seed this harness chose).
        let path = match &self.path {
            Some(p) => p.clone(),
            None => write_scenario(scenario)?,
        };
        let reproduce = self.reproduce(&path);
        let options = RunOptions {
            scenario_path: path.display().to_string(),
            progress: false,
        };
        let (link, holder) = if live {
            let (ready_tx, ready_rx) = oneshot::channel();
            let (faults_tx, faults_rx) = mpsc::unbounded_channel();
            let (stream_tx, stream_rx) = watch::channel(StreamState::Running);
            (
                Some(LiveLink {
                    ready: ready_tx,
                    faults: faults_rx,
                    stream: stream_tx,
                }),
                Some((ready_rx, faults_tx, stream_rx)),
            )
        } else {
            (None, None)
        };
        let (done_tx, done_rx) = oneshot::channel();
        let (abort_tx, abort_rx) = oneshot::channel::<()>();
        let scenario = self.scenario;
        let thread = std::thread::Builder::new()
            .name(format!("etl-harness {}", scenario.name))
            .spawn(move || {
                let runtime = match crate::run::runtime(&scenario) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = done_tx.send(Err(RunError::Thread(format!(
                            "cannot start the async runtime: {e}"
                        ))));
                        return;
                    }
                };
                let outcome = runtime.block_on(async {
                    let run = async {
                        match link {
                            Some(link) => {
                                crate::topology::run_live(&scenario, &options, link).await
                            }
                            None => crate::run::run(&scenario, &options).await,
                        }
                    };
                    // Only a real abort (the LiveRun dropped unfinished) cancels; a dropped sender does not.
                    let abort = async {
                        if abort_rx.await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        outcome = run => Some(outcome),
                        () = abort => None,
                    }
                });
                if let Some(mut outcome) = outcome {
                    if let Ok(o) = &mut outcome {
                        o.report.reproduce = reproduce;
                    }
                    let _ = done_tx.send(outcome);
                }
            })
            .map_err(|e| RunError::Thread(format!("cannot start the run's thread: {e}")))?;
        Ok((
            Started {
                thread: Some(thread),
                done: Some(done_rx),
                abort: Some(abort_tx),
            },
            holder,
        ))
    }
}

/// Writes a scenario that has no file of its own (or whose file no longer says what runs) where the reproduce
/// command can name it: `$TMPDIR/etl-harness/<name>-seed<seed>.toml`.
fn write_scenario(scenario: &Scenario) -> Result<PathBuf, RunError> {
    let dir = std::env::temp_dir().join("etl-harness");
    let name: String = scenario
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let path = dir.join(format!("{name}-seed{}.toml", scenario.seed));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, scenario.to_toml()))
        .map_err(|e| RunError::ScenarioFile(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

/// A run on its own thread: its outcome, and the way to stop it early.
struct Started {
    thread: Option<JoinHandle<()>>,
    done: Option<oneshot::Receiver<Result<RunOutcome, RunError>>>,
    abort: Option<oneshot::Sender<()>>,
}

impl Started {
    async fn finish(mut self) -> Result<RunOutcome, RunError> {
        let outcome = match self.done.take() {
            Some(done) => done.await.ok(),
            None => None,
        };
        // The thread ends right after sending the outcome.
        let thread = self.thread.take().map(|t| t.join());
        settle(outcome, thread)
    }

    /// [`finish`](Started::finish) without an async runtime: the thread is joined first, then its outcome read.
    fn join(&mut self) -> Result<RunOutcome, RunError> {
        let thread = self.thread.take().map(|t| t.join());
        let outcome = self.done.take().and_then(|mut done| done.try_recv().ok());
        settle(outcome, thread)
    }
}

/// The run's outcome, or why none came (the thread panicked, or ended without one).
fn settle(
    outcome: Option<Result<RunOutcome, RunError>>,
    thread: Option<std::thread::Result<()>>,
) -> Result<RunOutcome, RunError> {
    match (outcome, thread) {
        (Some(outcome), _) => outcome,
        (None, Some(Err(panic))) => Err(RunError::Thread(panic_text(panic.as_ref()))),
        (None, _) => Err(RunError::Thread("the run ended without an outcome".into())),
    }
}

impl Drop for Started {
    /// A run dropped before its end (a test that panicked, or returned early) is cancelled: dropping the run
    /// stops what it started. Waits for that, so nothing outlives the test.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if let Some(abort) = self.abort.take() {
                let _ = abort.send(());
            }
            let _ = thread.join();
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    format!("the run panicked: {text}")
}

/// A run in progress: its endpoints, for the test's own clients, and fault verbs that act on its services the
/// way the scenario's `[[faults]]` do (recorded in the history and the report, undone after a `duration`, and
/// whatever is still in place undone before the run quiesces).
///
/// The run goes on after its stream of source commits ends and until [`finish`](LiveRun::finish): then the
/// remaining faults are undone, the pipeline quiesces, and the run is judged. Dropping it unfinished cancels the
/// run and stops its services.
pub struct LiveRun {
    endpoints: Endpoints,
    scenario: Scenario,
    supports: fn(&Fault) -> bool,
    faults: Option<mpsc::UnboundedSender<LiveFault>>,
    stream: watch::Receiver<StreamState>,
    started: Option<Started>,
}

impl LiveRun {
    /// Where the run's services answer.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Kafka's bootstrap servers (`127.0.0.1:port,…`).
    pub fn bootstrap_servers(&self) -> &str {
        &self.endpoints.bootstrap_servers
    }

    /// The source database (`mysql://…`), on backends whose source is a database server.
    pub fn database_url(&self) -> Option<&str> {
        self.endpoints.database_url.as_deref()
    }

    /// Kafka Connect's REST API, on backends that run a Connect worker.
    pub fn connect_url(&self) -> Option<&str> {
        self.endpoints.connect_url.as_deref()
    }

    /// The scenario as it runs (a backend that keeps its services across runs renames the change topics).
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The change topic of an OpenMRS table (`"obs"` → `dbserver1.openmrs.obs`).
    pub fn topic(&self, table: &str) -> String {
        self.scenario.topic_name(table)
    }

    /// Waits until every operation of the workload is committed at the source (the capture and the ETL may
    /// still be behind).
    pub async fn stream_done(&self) -> Result<(), LiveError> {
        self.stream_reached(|s| *s != StreamState::Running).await
    }

    /// Waits until every operation of the workload is committed at the source and every commit is in Kafka:
    /// the change topics' end offsets now cover the last commit, so a consumer that reads to them has read
    /// everything the run will produce. Waits as long as a fault the test left in place holds the capture up.
    pub async fn in_kafka(&self) -> Result<(), LiveError> {
        self.stream_reached(|s| matches!(s, StreamState::InKafka | StreamState::Failed(_)))
            .await
    }

    /// Waits for a state of the stream that `reached` accepts; a failed stream is an error.
    async fn stream_reached(
        &self,
        reached: impl Fn(&StreamState) -> bool,
    ) -> Result<(), LiveError> {
        let mut stream = self.stream.clone();
        let state = stream
            .wait_for(|s| reached(s))
            .await
            .map_err(|_| LiveError::Over)?
            .clone();
        match state {
            StreamState::Failed(why) => Err(LiveError::StreamFailed(why)),
            _ => Ok(()),
        }
    }

    /// Applies `fault` now (its `at` is ignored; its `duration`, if any, counts from now). Returns what the
    /// target resolved to (`"broker 2"`, `"the connector"`, …).
    pub async fn fault(&self, fault: Fault) -> Result<Vec<String>, LiveError> {
        let mut checked = fault.clone();
        checked.at = Millis(0);
        let problems = crate::scenario::fault_problems(&self.scenario, &checked);
        if !problems.is_empty() {
            let text: Vec<String> = problems
                .into_iter()
                .map(|(key, message)| format!("{key}: {message}"))
                .collect();
            return Err(LiveError::Invalid(text.join("; ")));
        }
        if !(self.supports)(&checked) {
            return Err(LiveError::Unsupported {
                backend: self.scenario.topology.backend.name(),
                action: checked.action.name(),
                target: checked.target.to_string(),
            });
        }
        let (reply, answer) = oneshot::channel();
        self.faults
            .as_ref()
            .ok_or(LiveError::Over)?
            .send(LiveFault {
                fault: checked,
                reply,
            })
            .map_err(|_| LiveError::Over)?;
        answer
            .await
            .map_err(|_| LiveError::Over)?
            .map_err(LiveError::NotApplied)
    }

    async fn act(
        &self,
        action: FaultAction,
        target: FaultTarget,
    ) -> Result<Vec<String>, LiveError> {
        self.fault(Fault::new(action, target)).await
    }

    async fn act_on_broker(&self, action: FaultAction, broker: u32) -> Result<(), LiveError> {
        self.act(action, FaultTarget::Broker(broker))
            .await
            .map(drop)
    }

    /// SIGKILLs broker `id` (its log survives); [`restart_broker`](LiveRun::restart_broker) brings it back.
    pub async fn kill_broker(&self, id: u32) -> Result<(), LiveError> {
        self.act_on_broker(FaultAction::Kill, id).await
    }

    /// Stops broker `id` cleanly (a controlled shutdown).
    pub async fn stop_broker(&self, id: u32) -> Result<(), LiveError> {
        self.act_on_broker(FaultAction::Stop, id).await
    }

    /// Starts broker `id` again (once its old registration has expired, as on real Kafka).
    pub async fn restart_broker(&self, id: u32) -> Result<(), LiveError> {
        self.act_on_broker(FaultAction::Restart, id).await
    }

    /// Cuts broker `id` off from every other broker and client.
    pub async fn isolate_broker(&self, id: u32) -> Result<(), LiveError> {
        self.act_on_broker(FaultAction::Isolate, id).await
    }

    /// Undoes [`isolate_broker`](LiveRun::isolate_broker).
    pub async fn heal_broker(&self, id: u32) -> Result<(), LiveError> {
        self.act_on_broker(FaultAction::Heal, id).await
    }

    /// SIGKILLs whichever broker leads `topic` partition `partition` now, and returns its id.
    pub async fn kill_leader_of(&self, topic: &str, partition: u32) -> Result<u32, LiveError> {
        let resolved = self
            .act(FaultAction::Kill, FaultTarget::leader_of(topic, partition))
            .await?;
        resolved
            .first()
            .and_then(|name| name.strip_prefix("broker "))
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| LiveError::NotApplied(format!("resolved to {resolved:?}, not a broker")))
    }

    /// Kills the change capture (the Debezium task, or the embedded capture) without a clean stop.
    pub async fn kill_connector(&self) -> Result<(), LiveError> {
        self.act(FaultAction::Kill, FaultTarget::Connector)
            .await
            .map(drop)
    }

    /// Starts the change capture again from its last committed position.
    pub async fn restart_connector(&self) -> Result<(), LiveError> {
        self.act(FaultAction::Restart, FaultTarget::Connector)
            .await
            .map(drop)
    }

    /// Holds the ETL's consumer `n` (1-based) for `duration`: it reads nothing meanwhile.
    pub async fn stall_consumer(&self, n: u32, duration: Duration) -> Result<(), LiveError> {
        self.fault(Fault::new(FaultAction::Stall, FaultTarget::Consumer(n)).lasting(duration))
            .await
            .map(drop)
    }

    /// Ends the live part: undoes what the faults left in place, lets the pipeline quiesce, stops the services
    /// and judges the run.
    pub async fn finish(mut self) -> Result<RunOutcome, RunError> {
        // No more faults can come: the driver's schedule ends, and the run goes on to quiesce.
        self.faults = None;
        match self.started.take() {
            Some(started) => started.finish().await,
            None => Err(RunError::Thread("the run was already finished".into())),
        }
    }
}
