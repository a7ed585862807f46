//! Backends: the services a run needs (source database, Kafka, change capture), started each backend's own way,
//! behind one contract the run driver ([`crate::run`]) uses for every backend.
//!
//! A backend is one module here that implements [`Topology`]: it starts its services, says which faults it can
//! perform, prepares each run (topics, the cluster-event feed), hands the driver the run's change capture (a
//! [`capture::Capture`] plug, which owns the source it reads), acts on its brokers for the nemesis, answers the
//! quiesce probe's cluster questions, and shuts down. The capture is a plug of its own: the embedded capture
//! over the in-memory source ([`capture::embedded`]), or Debezium in a Kafka Connect worker over MariaDB
//! ([`capture::debezium`]); a backend picks the plug its services can run.
//!
//! | backend | module | services |
//! |---|---|---|
//! | `embedded` | [`embedded`] | the in-process cluster ([`crate::broker`]), the in-memory source, the embedded capture |
//! | `local` | [`local`] | MariaDB, ZooKeeper or a KRaft controller, Kafka 3.9 brokers, Connect + Debezium as processes |
//! | `containers` | [`local`] with [`containers`] | the same services as `local`, each in a container (testcontainers), from images built on this machine |
//!
//! This module's functions (`run_once`, `run_live`, `run_in`, [`fault_support`], [`in_process`]) are the one place a
//! backend is chosen. Adding a backend means a new module here implementing [`Topology`] and one arm in each.

pub mod capture;
pub mod containers;
pub mod embedded;
pub mod local;

use crate::clock::Clock;
use crate::history::{ClusterEvent, Recorder};
use crate::live::LiveLink;
use crate::nemesis::BrokerFaults;
use crate::run::{RunError, RunOptions, RunOutcome, Session};
use crate::scenario::{Backend, Fault, Scenario};

/// Where a run's services answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Kafka's bootstrap servers (`host:port,…`).
    pub bootstrap_servers: String,
    /// The source database (`mysql://…`), when the source is a database server.
    pub database_url: Option<String>,
    /// Kafka Connect's REST API (`http://…`), when a Connect worker runs.
    pub connect_url: Option<String>,
}

/// A backend: the services one run needs, and what the driver and the nemesis may do with them.
///
/// The driver calls, in order: [`Topology::start`] (or reuses a topology that [`fits`](Topology::fits)),
/// [`prepare`](Topology::prepare) once per run, [`capture`](Topology::capture), the fault and probe methods while
/// the stream runs (its brokers' faults are [`BrokerFaults`]), [`cluster_events`](Topology::cluster_events) when the run is over, and
/// [`shutdown`](Topology::shutdown) when no run is left.
#[allow(async_fn_in_trait)]
pub trait Topology: BrokerFaults + Sized + Sync {
    /// The change capture this backend runs, with the source it reads.
    type Capture<'a>: capture::Capture
    where
        Self: 'a;

    /// Whether this backend can perform `fault` (the driver asks before anything starts).
    fn supports(fault: &Fault) -> bool;

    /// Starts the services `scenario` needs.
    async fn start(scenario: &Scenario) -> Result<Self, RunError>;

    /// Whether this running topology can serve a run of `scenario` too (a session reuses it), or another must be
    /// started.
    fn fits(&self, scenario: &Scenario) -> bool;

    /// Gets ready for a run of `scenario`: what a previous run left is reset, the scenario's topics exist, the
    /// cluster-event feed runs. Returns the scenario as it runs here (a reused topology renames what Kafka and
    /// Connect keep, so each run starts from fresh names).
    async fn prepare(&mut self, scenario: &Scenario) -> Result<Scenario, RunError>;

    /// The run's clock (virtual only where the backend has one).
    fn clock(&self) -> Clock;

    /// Where the services answer.
    async fn endpoints(&self) -> Endpoints;

    /// The change capture of the prepared run (not started yet), with its source.
    async fn capture<'a>(
        &'a self,
        scenario: &Scenario,
        recorder: &Recorder,
    ) -> Result<Self::Capture<'a>, RunError>;

    /// Quiesce probe: a partition's high watermark as the cluster holds it, where the backend can read it
    /// without a request (deterministic pacing on the embedded cluster); `None` elsewhere.
    fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64>;

    /// Quiesce probe: whether every follower has caught up with its leader (`true` where replication is not
    /// observable without requests: pacing then does not wait for it).
    fn replication_idle(&self) -> bool;

    /// Quiesce probe: a value that changes whenever replication makes progress (for stall detection).
    fn replication_fingerprint(&self) -> u64;

    /// The cluster-event feed: what the cluster did during the run (leaders, ISRs, truncations, retention
    /// deletions). Ends the run's feed.
    async fn cluster_events(&mut self) -> Vec<ClusterEvent>;

    /// Where to look when a run on this topology failed (printed with the error), if anywhere.
    async fn failure_hint(&self) -> Option<String>;

    /// Stops every service; a failure to stop is logged, not returned.
    async fn shutdown(self);

    /// The embedded cluster's record batch memory and spill file (other backends: none).
    fn log_memory(&self) -> Option<crate::broker::SpillStats> {
        None
    }
}

/// Runs `scenario` on a topology of its backend started for it, and stops the topology afterwards (also on
/// error): the one place a backend is chosen.
pub(crate) async fn run_once(
    scenario: &Scenario,
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    match scenario.topology.backend {
        Backend::Embedded => once::<embedded::EmbeddedTopology>(scenario, options, None).await,
        // The containers backend is the local backend's topology with its services in containers.
        Backend::Local | Backend::Containers => {
            once::<local::LocalBackend>(scenario, options, None).await
        }
        other => Err(RunError::BackendUnavailable(other.name())),
    }
}

/// [`run_once`], live: the run's endpoints go out through `link` when the stream starts, and faults asked for
/// through it fire while the run goes on (see [`crate::live`]).
pub(crate) async fn run_live(
    scenario: &Scenario,
    options: &RunOptions,
    link: LiveLink,
) -> Result<RunOutcome, RunError> {
    match scenario.topology.backend {
        Backend::Embedded => {
            once::<embedded::EmbeddedTopology>(scenario, options, Some(link)).await
        }
        Backend::Local | Backend::Containers => {
            once::<local::LocalBackend>(scenario, options, Some(link)).await
        }
        other => Err(RunError::BackendUnavailable(other.name())),
    }
}

/// Runs `scenario` on its backend: on `local`'s session when the backend is `local` or `containers` and one is
/// given (the topology kept across scenarios), else on a topology started for it.
pub(crate) async fn run_in(
    scenario: &Scenario,
    options: &RunOptions,
    local: Option<&mut local::LocalSession>,
) -> Result<RunOutcome, RunError> {
    match (scenario.topology.backend, local) {
        (backend, Some(session)) if runs_in_local_session(backend) => {
            session.run(scenario, options).await
        }
        _ => run_once(scenario, options).await,
    }
}

/// Whether `backend` runs inside the harness's process: a diff runs it beside the backends of services, which
/// mostly wait on their processes.
pub fn in_process(backend: Backend) -> bool {
    backend == Backend::Embedded
}

/// The backend a run uses when a scenario names none: the embedded cluster.
pub fn default_backend() -> Backend {
    Backend::Embedded
}

/// Whether runs on `backend` can share one [`local::LocalSession`] (one topology kept across runs; a scenario
/// on the other of the two backends gets a new topology, as one with another broker count does).
pub fn runs_in_local_session(backend: Backend) -> bool {
    matches!(backend, Backend::Local | Backend::Containers)
}

/// A session on a new topology for runs on `backend` (local or containers) shaped like `scenario`.
pub async fn start_session(
    backend: Backend,
    scenario: &Scenario,
) -> Result<local::LocalSession, RunError> {
    let (brokers, coordination) = (scenario.topology.brokers, scenario.topology.coordination);
    if backend == Backend::Containers {
        local::LocalSession::start_in_containers(brokers, coordination, &scenario.topology.images)
            .await
    } else {
        local::LocalSession::start(brokers, coordination).await
    }
}

/// Which faults `backend` can perform (`None`: the backend cannot run scenarios yet).
pub fn fault_support(backend: Backend) -> Option<fn(&Fault) -> bool> {
    match backend {
        Backend::Embedded => Some(embedded::EmbeddedTopology::supports),
        Backend::Local | Backend::Containers => Some(local::LocalBackend::supports),
        _ => None,
    }
}

async fn once<T: Topology>(
    scenario: &Scenario,
    options: &RunOptions,
    live: Option<LiveLink>,
) -> Result<RunOutcome, RunError> {
    let wall = std::time::Instant::now();
    // Before anything starts: a fault the backend cannot perform is an error, not a no-op.
    crate::nemesis::Nemesis::check(scenario, T::supports)?;
    let mut session = Session::new(T::start(scenario).await?);
    let result = session.run_from(scenario, options, wall, live).await;
    session.shutdown().await;
    result
}
