//! Liveness (step 8): whether the pipeline caught up before the quiesce timeout, as the runner observed it.

use serde::Serialize;

/// Whether the pipeline caught up with the source after the workload ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Liveness {
    /// Capture and every consumer reached the end of what was committed.
    Quiesced,
    /// The quiesce timeout passed first; `pending` says what had not caught up (e.g. `consumer 2: obs/3 at 120
    /// of 180`).
    TimedOut {
        waited_ms: u64,
        pending: Vec<String>,
    },
}
