//! The error of a campaign that could not be carried out.

use std::path::PathBuf;

use crate::run::RunError;
use crate::scenario::{Millis, ScenarioErrors};

/// Why a campaign could not be carried out (distinct from a failure it found).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CampaignError {
    #[error("base scenario `{name}`: the run lasts {run}, too short to place faults in (give at least 100ms: more operations or a lower rate)")]
    RunTooShort { name: String, run: Millis },
    #[error("a generated fault schedule does not parse (a bug of the campaign generator); scenario:\n{toml}\nerrors:\n{errors}")]
    InvalidSchedule {
        toml: String,
        errors: ScenarioErrors,
    },
    #[error("case seed {seed}: the run could not be carried out: {error}")]
    Run { seed: u64, error: Box<RunError> },
    #[error("nemesis not wired: case seed {seed} scheduled {scheduled} faults but the run's history records none, so the property would hold vacuously; faults are parsed but not executed by this build")]
    NemesisNotWired { seed: u64, scheduled: usize },
    #[error("{path}: cannot write the shrunk scenario: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the written scenario does not load back: {errors}")]
    Reload {
        path: PathBuf,
        errors: ScenarioErrors,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the property runner stopped: {0}")]
    Aborted(String),
}
