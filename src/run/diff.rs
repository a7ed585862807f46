//! Differential runs: one scenario on several backends, their verdicts side by side.
//!
//! The embedded cluster is only worth its speed if it judges a scenario as the real services do. [`diff`] runs
//! the scenario (same seed, same workload) once per backend and compares, invariant by invariant, whether each
//! expectation held. Exact counts are not compared: over real time they differ between any two runs, even on
//! one backend; the verdicts must not.

use std::fmt::Write as _;

use super::{LocalSession, RunError, RunOptions, RunOutcome};
use crate::scenario::{Backend, Scenario};
use crate::topology;

/// One scenario's outcome on each backend.
pub struct Diff {
    pub runs: Vec<(Backend, RunOutcome)>,
}

impl Diff {
    /// Invariants whose verdict is not the same on every backend.
    pub fn disagreements(&self) -> Vec<&'static str> {
        let Some((_, first)) = self.runs.first() else {
            return Vec::new();
        };
        first
            .report
            .verdicts
            .iter()
            .filter(|v| {
                self.runs.iter().any(|(_, other)| {
                    other
                        .report
                        .verdicts
                        .iter()
                        .find(|o| o.invariant == v.invariant)
                        .is_none_or(|o| o.holds != v.holds)
                })
            })
            .map(|v| v.invariant)
            .collect()
    }

    pub fn agree(&self) -> bool {
        self.disagreements().is_empty()
    }

    /// A table: one row per invariant, one column per backend (`ok`/`FAIL` and what was observed).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{:<16}", "invariant");
        for (backend, _) in &self.runs {
            let _ = write!(out, "{:<34}", backend.name());
        }
        out.push('\n');
        let disagree = self.disagreements();
        if let Some((_, first)) = self.runs.first() {
            for v in &first.report.verdicts {
                let _ = write!(out, "{:<16}", v.invariant);
                for (_, run) in &self.runs {
                    let cell = match run
                        .report
                        .verdicts
                        .iter()
                        .find(|o| o.invariant == v.invariant)
                    {
                        Some(o) => {
                            format!("{} {}", if o.holds { "ok  " } else { "FAIL" }, o.observed)
                        }
                        None => "-".into(),
                    };
                    let _ = write!(out, "{cell:<34}");
                }
                if disagree.contains(&v.invariant) {
                    out.push_str("  <- differs");
                }
                out.push('\n');
            }
        }
        out
    }
}

/// Runs `scenario` on each backend (the scenario's own backend setting is replaced): the embedded runs one after
/// another, and beside them the runs on services (local, containers, external) one after another. Every backend
/// must be in the scenario's `backends`, checked before anything runs; the first failing backend in `backends`'s
/// order is the error.
pub async fn diff(
    scenario: &Scenario,
    options: &RunOptions,
    backends: &[Backend],
) -> Result<Diff, RunError> {
    diff_on(scenario, options, backends, None).await
}

/// [`diff`], with the local run on `local`'s topology (kept across scenarios) instead of one started for it.
pub async fn diff_on(
    scenario: &Scenario,
    options: &RunOptions,
    backends: &[Backend],
    mut local: Option<&mut LocalSession>,
) -> Result<Diff, RunError> {
    if let Some(backend) = backends.iter().find(|b| !scenario.backends.contains(b)) {
        return Err(RunError::NotListed {
            scenario: scenario.name.clone(),
            backend: backend.name(),
        });
    }
    let on = |backend: Backend| {
        let mut on = scenario.clone();
        on.topology.backend = backend;
        on
    };
    // The in-process cluster and the services (processes, containers, a user's cluster) at the same time: an
    // embedded run mostly waits on its clock, a local one on its JVMs.
    let embedded = async {
        let mut outcomes = Vec::new();
        for (i, backend) in backends.iter().enumerate() {
            if topology::in_process(*backend) {
                outcomes.push((i, topology::run_in(&on(*backend), options, None).await));
            }
        }
        outcomes
    };
    let services = async {
        let mut outcomes = Vec::new();
        for (i, backend) in backends.iter().enumerate() {
            if topology::in_process(*backend) {
                continue;
            }
            let outcome = topology::run_in(&on(*backend), options, local.as_deref_mut()).await;
            outcomes.push((i, outcome));
        }
        outcomes
    };
    let (mut outcomes, services) = tokio::join!(embedded, services);
    outcomes.extend(services);
    outcomes.sort_by_key(|(i, _)| *i);
    let mut runs = Vec::new();
    for (i, outcome) in outcomes {
        runs.push((backends[i], outcome?));
    }
    Ok(Diff { runs })
}
