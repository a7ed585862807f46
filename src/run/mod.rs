//! The run driver: one scenario, end to end, on any backend — start (or reuse) the backend's topology, load the
//! baseline into the source, start the capture (snapshot, then the stream of commits) and the pipeline, commit
//! the stream at the scenario's rate with the nemesis alongside, quiesce, then check the history and final states
//! and judge them against `[expect]`.
//!
//! There is one driver for every backend: `drive` (the steps above), `quiesce` and `judge`. What differs
//! between backends is behind [`crate::topology::Topology`] (services, broker faults, the cluster-event feed,
//! the quiesce probe's cluster questions) and [`crate::topology::capture::Capture`] (the source, the change
//! capture, its faults and its delivery position). The driver is the only place that knows every part; the
//! parts know only the history contract ([`crate::history`]) and their own neighbours' wire formats (Debezium
//! JSON over Kafka).
//!
//! Faults: the `Nemesis` runs the scenario's `[[faults]]` alongside the stream. With
//! a real clock it is a concurrent task that sleeps until each fault is due; with a virtual clock the stream loop
//! owns time and lets the nemesis move it to each due fault before the next commit (`pace`). Once the schedule
//! (which may run past the last commit) is done, the nemesis undoes whatever is still in place, and only then
//! does quiesce start.
//!
//! Modules: `configure` maps a scenario to each component's config; [`Session`] keeps one topology for several
//! runs; [`diff`] runs one scenario on several backends and compares verdicts.

pub(crate) mod configure;
pub mod diff;
mod drive;
mod foreign;
mod host;
mod pace;
mod quiesce;
mod session;

use std::time::Instant;

pub use crate::topology::local::LocalSession;
pub use session::Session;

use crate::broker::{ClusterError, SpillStats};
use crate::cdc::CdcError;
use crate::check::{self, Analysis, FinalStates, Liveness};
use crate::history::History;
use crate::nemesis::NemesisError;
use crate::pipeline::PipelineError;
use crate::report::{LogSpill, Report, RunInfo, RunMode};
use crate::scenario::Scenario;
use crate::source::SourceError;

pub(crate) use drive::drive;
pub(crate) use quiesce::quiesce;

/// What the caller chooses beyond the scenario file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario file as the user named it (for the reproduce command).
    pub scenario_path: String,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// Why a run could not be carried out (exit 2): distinct from a run whose expectations failed (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("backend `{0}` cannot run scenarios yet: the embedded, local and containers backends run them today")]
    BackendUnavailable(&'static str),
    #[error("embedded cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("creating topic {topic}: {error}")]
    Topic { topic: String, error: ClusterError },
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error("capture: {0}")]
    Capture(#[from] CdcError),
    #[error("pipeline: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("clock: {0}")]
    Clock(String),
    #[error("faults: {0}")]
    Nemesis(#[from] NemesisError),
    #[error("local topology: {0}")]
    Local(#[from] crate::topology::local::LocalError),
    #[error("local run: {0}")]
    LocalRun(String),
    #[error("a live run needs a real clock (`[topology] clock = \"real\"`, not deterministic): a test's own clients cannot follow a virtual clock")]
    LiveNeedsRealClock,
    #[error("the run's thread ended without an outcome: {0}")]
    Thread(String),
    #[error("scenario file: {0}")]
    ScenarioFile(String),
    #[error("scenario `{scenario}` does not list `{backend}` in its `backends`: its expectations are not claimed to hold there")]
    NotListed {
        scenario: String,
        backend: &'static str,
    },
}

/// A finished run: its report, and the history it was judged on.
pub struct RunOutcome {
    pub report: Report,
    pub history: History,
    pub analysis: Analysis,
    /// The sink's flat table and the batch recomputation it was compared with.
    pub finals: FinalStates,
}

impl RunOutcome {
    /// Panics unless every expectation held, with the report, the seed and the command that reproduces the run
    /// (what a test wants on failure).
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.report.passed() {
            panic!(
                "scenario `{}` failed its expectations\n{}\nseed {}; reproduce with: {}",
                self.report.info.scenario,
                self.report.terminal(),
                self.report.info.seed,
                self.report.reproduce
            );
        }
    }
}

/// The async runtime a run of `scenario` needs: deterministic mode runs every task on one thread, so their
/// interleaving does not depend on the cores (a rerun from the seed is the same run); other runs get a
/// multi-threaded one.
pub fn runtime(scenario: &Scenario) -> std::io::Result<tokio::runtime::Runtime> {
    if scenario.topology.deterministic {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}

/// Runs `scenario` on its backend (a topology started for it and stopped afterwards) and judges it.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunOutcome, RunError> {
    crate::topology::run_once(scenario, options).await
}

/// Checks a finished run's history and final states against the scenario's expectations.
pub(crate) fn judge(
    scenario: &Scenario,
    options: &RunOptions,
    wall: Instant,
    history: History,
    finals: FinalStates,
    liveness: &Liveness,
    log_memory: Option<SpillStats>,
) -> RunOutcome {
    let analysis = check::all(&history, &finals, liveness);
    // A virtual clock alone does not make exact counts repeatable (threads and sockets still decide batch
    // boundaries); deterministic mode does, and only it reports `Deterministic`.
    let info = RunInfo {
        scenario: scenario.name.clone(),
        path: options.scenario_path.clone(),
        seed: scenario.seed,
        backend: scenario.topology.backend.name().to_string(),
        mode: if scenario.topology.deterministic {
            RunMode::Deterministic
        } else {
            RunMode::RealTime
        },
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        wall_ms: wall.elapsed().as_millis() as u64,
    };
    let mut report = Report::new(info, &scenario.expectations(), &analysis, &history);
    report.metrics.log_spill = log_memory
        .filter(|m| m.written_bytes > 0)
        .map(|m| LogSpill {
            peak_bytes: m.peak_spilled_bytes,
            written_bytes: m.written_bytes,
            read_bytes: m.read_bytes,
        });
    RunOutcome {
        report,
        history,
        analysis,
        finals,
    }
}
