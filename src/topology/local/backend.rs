//! The `local` backend as the run driver sees it ([`Topology`]): a [`LocalTopology`] kept for as many runs as
//! fit it, the Debezium capture plug in its Connect worker, faults as signals to its processes and holds at its
//! loopback proxies, and a [`ClusterWatch`] per run as the cluster-event feed.
//!
//! Each run after the first on one topology starts from a source and a Kafka namespace as fresh as a new
//! topology's:
//! - the previous run's Debezium connector is deleted, and every service put back as started (network faults
//!   healed, paused brokers resumed, exited brokers and Connect worker restarted);
//! - the OpenMRS database (and the MySQL sink's schema) is dropped and loaded again from the schema fixture;
//! - run `n` renames what Kafka and Connect keep: topic prefix `<prefix>_r<n>` (so the change topics, the
//!   schema-change topic and Debezium's heartbeat topic are new, and fault targets naming a topic follow),
//!   connector `<name>-r<n>` (no committed offsets: it takes the initial snapshot), schema history topic
//!   `<history>-r<n>` and Debezium's replica server id. The previous run's topics stay (the harness never reads
//!   them again).
//!
//! The first run keeps the scenario's names, so a session of one run is exactly a standalone run. A scenario
//! that asks for another broker count or coordination (ZooKeeper or KRaft) does not fit: the session starts
//! another topology.
//!
//! | target | action | what is done |
//! |---|---|---|
//! | a broker | `stop` | SIGTERM: Kafka's controlled shutdown moves its leaders, then it exits (SIGKILL after 20 s) |
//! | | `kill` | SIGKILL: its session (ZooKeeper's, or KRaft's without heartbeats) lingers 6 s, then the controller moves its leaders |
//! | | `pause` / `resume` | SIGSTOP / SIGCONT: sockets stay open, nothing is answered meanwhile |
//! | | `restart` | the same command, config, port and log directory; waits until it answers Metadata |
//! | | `isolate` / `heal` / `latency` | at the broker's loopback proxies: client and inter-broker traffic held, its ZooKeeper session or KRaft heartbeats cut (isolate); answers delayed, to peers too (latency) |
//! | the connector | every action | see [`crate::topology::capture::debezium`] |
//! | consumer N | every action | the same pipeline as on the embedded backend |
//!
//! Roles resolve from a Metadata request when the fault fires: "leader of …" is the leader the cluster names
//! then, "the controller" the controller it names. `crash` (losing the unflushed log) does not exist here: the
//! scenario language refuses it for a scenario that lists `local`.

use std::time::Duration;

use tokio::sync::Mutex;

use super::{
    ClusterWatch, ConnectRest, ConnectorFlavour, DebeziumConnector, LocalError, LocalTopology,
    LocalTopologyOptions, TapReport,
};
use crate::broker::{BrokerId, Isolation};
use crate::clock::Clock;
use crate::history::{ClusterEvent, Recorder};
use crate::nemesis::BrokerFaults;
use crate::pipeline::sink::DEFAULT_SINK_SCHEMA;
use crate::run::{RunError, Session};
use crate::scenario::{Backend, Coordination, Fault, FaultAction, ImageChoices, Scenario};
use crate::topology::capture::debezium::{ConnectWorker, DebeziumCapture};
use crate::topology::{Endpoints, Topology};
use crate::workload::reference;

/// How long creating the scenario's topics may take (every partition with a leader).
const TOPICS_READY: Duration = Duration::from_secs(60);

/// A local topology kept for several runs (see the module doc).
pub struct LocalBackend {
    /// The nemesis and the capture lock it to act on a process; everything else only reads endpoints.
    topology: Mutex<LocalTopology>,
    brokers: u32,
    coordination: Coordination,
    /// Whether the services run in containers (the containers backend), and the images `[topology.images]`
    /// chose for them.
    containers: Option<ImageChoices>,
    runs: u32,
    /// The connector of the run in progress (or the last one), deleted before the next run.
    connector: Option<DebeziumConnector>,
    /// The run's cluster-event feed.
    watch: Option<ClusterWatch>,
}

/// A local topology kept for several runs: one start (15–20 s of JVMs and MariaDB) for a whole test binary or
/// `diff` campaign instead of one per scenario.
pub type LocalSession = Session<LocalBackend>;

impl LocalBackend {
    /// Starts a local topology of `brokers` Kafka brokers (with MariaDB, ZooKeeper or a KRaft controller, and a
    /// Connect worker).
    pub async fn start_with(
        brokers: u32,
        coordination: Coordination,
    ) -> Result<LocalBackend, RunError> {
        Self::start_options(brokers, coordination, None).await
    }

    /// The same topology with every service in a container (the containers backend): the daemon is checked,
    /// containers a killed harness left are swept, the images built if their inputs changed.
    pub async fn start_in_containers(
        brokers: u32,
        coordination: Coordination,
        choices: &ImageChoices,
    ) -> Result<LocalBackend, RunError> {
        let images = container_images(choices).await?;
        let mut backend = Self::start_options(brokers, coordination, Some(images)).await?;
        backend.containers = Some(choices.clone());
        Ok(backend)
    }

    async fn start_options(
        brokers: u32,
        coordination: Coordination,
        containers: Option<crate::topology::containers::images::Images>,
    ) -> Result<LocalBackend, RunError> {
        let mut options = LocalTopologyOptions::new(reference::schema_fixture_sql());
        options.brokers = brokers;
        options.coordination = coordination;
        options.containers = containers;
        Ok(LocalBackend {
            topology: Mutex::new(LocalTopology::start(&options).await?),
            brokers,
            coordination,
            containers: None,
            runs: 0,
            connector: None,
            watch: None,
        })
    }

    /// The topology's coordination: ZooKeeper or KRaft.
    pub fn coordination(&self) -> Coordination {
        self.coordination
    }

    /// The topology's run directory (service logs under `logs/`).
    pub async fn run_dir(&self) -> std::path::PathBuf {
        self.topology.lock().await.run_dir().to_path_buf()
    }

    /// Between runs: the last connector deleted, every service as started, the source database fresh.
    async fn reset(&mut self) -> Result<(), RunError> {
        let topology = self.topology.get_mut();
        topology.recover().await?;
        if let Some(connector) = self.connector.take() {
            topology.connect().delete_connector(&connector.name).await?;
        }
        topology.reset_source(&[DEFAULT_SINK_SCHEMA]).await?;
        Ok(())
    }
}

/// What a containers start does before any service: the daemon checked, containers a killed harness left swept,
/// the images `choices` names pulled and the others built if their inputs changed.
pub async fn container_images(
    choices: &ImageChoices,
) -> Result<crate::topology::containers::images::Images, RunError> {
    use crate::topology::containers::{daemon, labels, registry};
    let failed = |e: String| RunError::Local(LocalError::Containers(e));
    let daemon = daemon::connect().await.map_err(|e| failed(e.to_string()))?;
    let swept = labels::sweep(&daemon).await.map_err(failed)?;
    if !swept.removed.is_empty() {
        eprintln!(
            "[etl-harness] removed {} container(s) a killed harness left: {}",
            swept.removed.len(),
            swept.removed.join(", ")
        );
    }
    let jvm = super::default_jvm_components().await?;
    registry::for_run(&daemon, &jvm, choices, &mut |line| {
        if !line.ends_with(": present") {
            eprintln!("[etl-harness] image {line}");
        }
    })
    .await
    .map_err(|e| failed(e.to_string()))
}

impl Session<LocalBackend> {
    /// Starts a session on a local topology of `brokers` Kafka brokers and `coordination`.
    pub async fn start(brokers: u32, coordination: Coordination) -> Result<LocalSession, RunError> {
        Ok(Session::new(
            LocalBackend::start_with(brokers, coordination).await?,
        ))
    }

    /// The same session with every service in a container (the containers backend).
    pub async fn start_in_containers(
        brokers: u32,
        coordination: Coordination,
        choices: &ImageChoices,
    ) -> Result<LocalSession, RunError> {
        Ok(Session::new(
            LocalBackend::start_in_containers(brokers, coordination, choices).await?,
        ))
    }

    /// The topology's coordination: ZooKeeper or KRaft.
    pub fn coordination(&self) -> Coordination {
        self.topology().coordination()
    }

    /// The topology's run directory (service logs under `logs/`).
    pub async fn run_dir(&self) -> std::path::PathBuf {
        self.topology().run_dir().await
    }
}

impl Topology for LocalBackend {
    type Capture<'a> = DebeziumCapture<'a, Mutex<LocalTopology>>;

    fn supports(fault: &Fault) -> bool {
        fault.action != FaultAction::Crash
    }

    async fn start(scenario: &Scenario) -> Result<Self, RunError> {
        let (brokers, coordination) = (scenario.topology.brokers, scenario.topology.coordination);
        if scenario.topology.backend == Backend::Containers {
            LocalBackend::start_in_containers(brokers, coordination, &scenario.topology.images)
                .await
        } else {
            LocalBackend::start_with(brokers, coordination).await
        }
    }

    fn fits(&self, scenario: &Scenario) -> bool {
        let containers =
            (scenario.topology.backend == Backend::Containers).then_some(&scenario.topology.images);
        (
            scenario.topology.brokers,
            scenario.topology.coordination,
            containers,
        ) == (self.brokers, self.coordination, self.containers.as_ref())
    }

    async fn prepare(&mut self, scenario: &Scenario) -> Result<Scenario, RunError> {
        self.runs += 1;
        let mut scenario = scenario.clone();
        let mut connector =
            DebeziumConnector::seed(ConnectorFlavour::MariaDb).with_producer(&scenario.producer);
        if self.runs > 1 {
            let n = self.runs;
            scenario = scenario.with_topic_prefix(&format!("{}_r{n}", scenario.topics.prefix));
            connector.name = format!("{}-r{n}", connector.name);
            connector.history_topic = format!("{}-r{n}", connector.history_topic);
            connector.replica_server_id += n;
            self.reset().await?;
            tracing::info!(scenario = %scenario.name, "local run: topology reset");
        }
        connector.topic_prefix = scenario.topics.prefix.clone();
        self.connector = Some(connector);
        let topology = self.topology.get_mut();
        let plans = topology
            .create_scenario_topics(&scenario, TOPICS_READY)
            .await?;
        // What the cluster does from here on (leaders, ISRs, truncations, retention), for the checkers.
        self.watch = Some(ClusterWatch::start(topology.watch_options(
            plans.into_iter().map(|plan| plan.name).collect(),
            Clock::real(),
        )));
        tracing::info!(scenario = %scenario.name, "local run: topics created");
        Ok(scenario)
    }

    fn clock(&self) -> Clock {
        Clock::real()
    }

    async fn endpoints(&self) -> Endpoints {
        let topology = self.topology.lock().await;
        Endpoints {
            bootstrap_servers: topology.bootstrap_servers(),
            database_url: Some(topology.mariadb().url()),
            connect_url: Some(topology.connect().base_url().to_string()),
        }
    }

    async fn capture<'a>(
        &'a self,
        _scenario: &Scenario,
        recorder: &Recorder,
    ) -> Result<Self::Capture<'a>, RunError> {
        let connector = self
            .connector
            .clone()
            .ok_or_else(|| RunError::LocalRun("no run was prepared on this topology".into()))?;
        let endpoints = self.endpoints().await;
        let database_url = endpoints
            .database_url
            .ok_or_else(|| RunError::LocalRun("the local topology names no database".into()))?;
        DebeziumCapture::connect(
            &self.topology,
            connector,
            &database_url,
            recorder,
            &Clock::real(),
        )
        .await
    }

    /// Not readable without a request: deterministic pacing (a virtual clock, refused here) never asks.
    fn high_watermark(&self, _topic: &str, _partition: i32) -> Option<i64> {
        None
    }

    fn replication_idle(&self) -> bool {
        true
    }

    fn replication_fingerprint(&self) -> u64 {
        0
    }

    async fn cluster_events(&mut self) -> Vec<ClusterEvent> {
        match self.watch.take() {
            Some(watch) => watch.stop().await,
            None => Vec::new(),
        }
    }

    async fn failure_hint(&self) -> Option<String> {
        Some(format!(
            "the local run failed; service logs are in {}",
            self.run_dir().await.display()
        ))
    }

    async fn shutdown(self) {
        if let Some(watch) = self.watch {
            watch.stop().await;
        }
        if let Err(e) = self.topology.into_inner().shutdown().await {
            tracing::warn!(error = %e, "stopping the local topology");
        }
    }
}

impl BrokerFaults for LocalBackend {
    async fn partition_roles(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Option<BrokerId>, Vec<BrokerId>), String> {
        let topics = [topic.to_string()];
        let metadata = self
            .topology
            .lock()
            .await
            .metadata(Some(&topics))
            .await
            .map_err(|e| e.to_string())?;
        let p = metadata
            .topics
            .get(topic)
            .and_then(|partitions| partitions.iter().find(|p| p.partition == partition))
            .ok_or_else(|| format!("{topic} partition {partition} does not exist"))?;
        Ok((
            p.leader.map(BrokerId),
            p.isr.iter().copied().map(BrokerId).collect(),
        ))
    }

    async fn controller(&self) -> Result<BrokerId, String> {
        let metadata = self
            .topology
            .lock()
            .await
            .metadata(Some(&[]))
            .await
            .map_err(|e| e.to_string())?;
        metadata
            .controller
            .map(BrokerId)
            .ok_or_else(|| "the cluster names no controller".to_string())
    }

    async fn group_coordinator(&self, group: &str) -> Result<BrokerId, String> {
        let bootstraps = self.topology.lock().await.bootstrap_list();
        super::admin::find_coordinator(&bootstraps, group)
            .await
            .map(BrokerId)
    }

    async fn broker_fault(
        &self,
        action: FaultAction,
        b: BrokerId,
        latency: Duration,
    ) -> Result<(), String> {
        let mut topology = self.topology.lock().await;
        let id = b.0;
        let result = match action {
            FaultAction::Stop => topology.stop_broker(id).await,
            FaultAction::Kill => topology.kill_broker(id),
            FaultAction::Pause => topology.pause_broker(id),
            FaultAction::Resume => topology.resume_broker(id),
            FaultAction::Restart => {
                if topology.broker_running(id).map_err(|e| e.to_string())? {
                    return Err(format!(
                        "broker {id} is already running; stop or kill it before restarting it"
                    ));
                }
                topology.restart_broker(id).await
            }
            FaultAction::Isolate => topology.isolate_broker(id, Isolation::FromEveryone),
            FaultAction::Heal => topology.heal_broker(id),
            FaultAction::Latency => topology.set_broker_latency(id, latency),
            FaultAction::Crash | FaultAction::Stall => {
                return Err(crate::nemesis::unsupported(
                    action,
                    "a broker on the local backend",
                ))
            }
        };
        result.map_err(|e| e.to_string())
    }

    async fn registration_held_until(&self, b: BrokerId) -> Option<i64> {
        let mut topology = self.topology.lock().await;
        topology.registration_held_until(b.0).ok().flatten()
    }

    async fn restore_broker(&self, b: BrokerId) -> Result<(), String> {
        let mut topology = self.topology.lock().await;
        if topology.broker_running(b.0).map_err(|e| e.to_string())? {
            return Ok(());
        }
        topology
            .restart_broker(b.0)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The local topology's Connect worker, for the Debezium capture plug.
impl ConnectWorker for Mutex<LocalTopology> {
    async fn start_connector(
        &self,
        connector: &DebeziumConnector,
        ready: Duration,
    ) -> Result<(), LocalError> {
        self.lock().await.start_connector(connector, ready).await
    }

    async fn rest(&self) -> ConnectRest {
        self.lock().await.connect().clone()
    }

    async fn running(&self) -> bool {
        self.lock().await.connect_running()
    }

    async fn kill(&self) {
        self.lock().await.kill_connect();
    }

    async fn stop(&self) {
        self.lock().await.stop_connect().await;
    }

    async fn restart(&self) -> Result<(), LocalError> {
        self.lock().await.restart_connect().await
    }

    async fn subscribe_produced(&self) -> tokio::sync::mpsc::UnboundedReceiver<TapReport> {
        self.lock().await.subscribe_produced()
    }

    async fn unsubscribe_produced(&self) {
        self.lock().await.unsubscribe_produced()
    }
}
