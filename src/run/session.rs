//! A topology kept for several runs: one start for a whole test binary or `diff` campaign instead of one per
//! scenario (a local topology takes 15–20 s of JVMs and MariaDB to start).
//!
//! Each run goes through the one driver ([`super::drive`]); the backend's
//! [`prepare`](crate::topology::Topology::prepare) makes the run start as fresh as on a new topology. A scenario
//! the running topology does not [`fit`](crate::topology::Topology::fits) (another broker count or coordination)
//! gets a new topology: the session starts it, stops the old one, and goes on.

use std::time::Instant;

use super::{drive, RunError, RunOptions, RunOutcome};
use crate::live::LiveLink;
use crate::nemesis::Nemesis;
use crate::scenario::Scenario;
use crate::topology::Topology;

/// A running topology and the runs made on it.
pub struct Session<T: Topology> {
    topology: T,
}

impl<T: Topology> Session<T> {
    /// A session on a started topology.
    pub fn new(topology: T) -> Session<T> {
        Session { topology }
    }

    /// The topology the runs go to.
    pub fn topology(&self) -> &T {
        &self.topology
    }

    /// Runs `scenario` (whatever its `[topology] backend` says) on this session's topology and judges it; on a
    /// new topology first if this one does not fit the scenario.
    pub async fn run(
        &mut self,
        scenario: &Scenario,
        options: &RunOptions,
    ) -> Result<RunOutcome, RunError> {
        self.run_from(scenario, options, Instant::now(), None).await
    }

    pub(crate) async fn run_from(
        &mut self,
        scenario: &Scenario,
        options: &RunOptions,
        wall: Instant,
        live: Option<LiveLink>,
    ) -> Result<RunOutcome, RunError> {
        // Before anything changes: a fault this backend cannot perform is an error, not a no-op.
        Nemesis::check(scenario, T::supports)?;
        if !self.topology.fits(scenario) {
            eprintln!(
                "[etl-harness] scenario `{}` asks for {} brokers with {:?}, which the running topology does not \
                 have: starting another",
                scenario.name, scenario.topology.brokers, scenario.topology.coordination
            );
            let replacement = T::start(scenario).await?;
            std::mem::replace(&mut self.topology, replacement)
                .shutdown()
                .await;
        }
        let result = drive(&mut self.topology, scenario, options, wall, live).await;
        if result.is_err() {
            if let Some(hint) = self.topology.failure_hint().await {
                eprintln!("[etl-harness] {hint}");
            }
        }
        result
    }

    /// Stops every service of the topology; a failure to stop is logged, not returned.
    pub async fn shutdown(self) {
        self.topology.shutdown().await;
    }
}
