//! The `local` topology: the real services as child processes on 127.0.0.1, no Docker.
//!
//! [`LocalTopology::start`] provisions the pinned JVM components (see [`provision`]), then starts MariaDB (with
//! the schema fixture and a Debezium user), the coordinator — ZooKeeper, or in KRaft mode
//! ([`LocalTopologyOptions::coordination`]) one dedicated quorum controller, node [`CONTROLLER_NODE_ID`], every
//! node's storage formatted first (see `kraft`) — then N Kafka brokers (ids 1..=N, each with its own port, config,
//! log directory and log file) and one Kafka Connect worker in distributed mode against all of them, each waited
//! for with a timeout. The cluster counts as ready when every broker is registered and Metadata
//! names a controller. [`LocalTopology::create_topics`] creates a scenario's change topics with their partitions,
//! replication factor and configs before the connector starts; [`DebeziumConnector::with_producer`] passes the
//! scenario's producer settings to the connector as `producer.override.*`.
//!
//! Faults act on the processes: a broker can be stopped (SIGTERM, controlled shutdown), killed (SIGKILL), paused
//! (SIGSTOP), resumed (SIGCONT) and restarted with the same config, port and data; the Connect worker can be
//! killed and restarted. The brokers are tuned so such faults resolve in seconds (a short session:
//! [`ZOOKEEPER_SESSION_TIMEOUT`], or KRaft's [`KRAFT_SESSION_TIMEOUT`] without heartbeats; replicas leave the ISR
//! after 10 s of lag).
//!
//! Network faults act on the loopback through a small TCP proxy per broker (see `proxy`): each broker listens on
//! its own port but advertises its proxy's, so clients (the harness, Connect, Debezium) and its peers (replica
//! fetchers, the controller's requests) all reach it through the proxy, and it reaches the coordinator (ZooKeeper,
//! or the KRaft controller) through a proxy of its own. [`LocalTopology::isolate_broker`] holds the traffic those
//! proxies carry — held, not dropped, as across a partition where TCP retransmits — and
//! [`LocalTopology::heal_broker`] releases it; [`LocalTopology::set_broker_latency`] delays the broker's answers.
//! The proxies outlive restarts. What a client observes (compare the embedded cluster's table in
//! [`crate::broker`]; rows marked † are checked by `tests/local_proxy.rs`):
//!
//! | fault | new connection | open connection / in-flight request | metadata (from the other brokers) | leader moves |
//! |---|---|---|---|---|
//! | `stop_broker(b)` (SIGTERM) | accepted by the proxy, then closed | closed (EOF), no answer | leaders moved, `b` no longer listed | at once (controlled shutdown) |
//! | `kill_broker(b)` (SIGKILL) | accepted by the proxy, then closed | closed (EOF), no answer | unchanged until the session expires, then `b` unlisted and out of every ISR | after the session timeout |
//! | `isolate_broker(b, FromEveryone)` † | accepted, nothing answered: the client's request timeout | requests held; answered after `heal_broker` if the client still waits | as kill; then acks=all writes succeed without `b` (min ISR permitting) | after the session timeout |
//! | `isolate_broker(b, FromPeers)` † | served | served by `b` as it last knew the cluster: it still acts as leader of what it led (acks=1 appends that the heal truncates; acks=all waits, then times out) | as kill | after the session timeout |
//! | `heal_broker(b)` † | served | held bytes flow, in order | `b` registers again (new session) and rejoins each ISR once caught up | `b` comes back as follower |
//! | `set_broker_latency(b, d)` † | accepted | every answer `d` later (also to its peers: replica fetches from `b` slow down) | unchanged | never |
//!
//! An isolated broker cannot reach the coordinator, so restarting it fails until it is healed. In KRaft mode the
//! Metadata answers' "controller" is a live broker chosen at random for each answer (clients cannot reach the
//! quorum controller), so it says nothing about the controller. The harness's own
//! admin requests ([`LocalTopology::metadata`] and the like) ask isolated brokers last.
//!
//! Every generated config and every process log lives in a per-run directory that is kept after the run (its
//! path is printed at start); data directories inside it are removed after a clean [`LocalTopology::shutdown`].
//! Every process is killed when the topology is dropped, also on panic, and dies with the harness even when the
//! harness is SIGKILLed (see [`process`]).
//!
//! Not here: more than one KRaft controller (a controller quorum) and faults on the controller; partitions that
//! cut MariaDB, the coordinator or Connect off (only brokers are isolated); one-way partitions; more than one
//! Connect worker.

mod admin;
mod backend;
mod brokers;
pub(crate) mod connect;
pub(crate) mod debezium;
mod error;
mod faults;
pub(crate) mod java;
pub(crate) mod kafka;
mod kraft;
pub(crate) mod mariadb;
pub mod prerequisites;
pub mod process;
pub mod provision;
mod proxy;
mod restartable;
mod run_dir;
mod side_topics;
mod standalone;
mod watch;
pub(crate) mod zookeeper;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::scenario::{Coordination, Scenario, TopicPlan};
use brokers::{start_brokers, LocalBroker};
use proxy::NetworkFaults;
use restartable::{RestartableService, BROKER_STOP_GRACE, CONNECT_STOP_GRACE};
use side_topics::side_topic_plans;

pub use admin::{ClusterMetadata, PartitionMetadata};
pub use backend::{container_images, LocalBackend, LocalSession};
pub use connect::{ConnectRest, ConnectorStatus, WorkerState, CONNECT_GROUP_ID};
pub use debezium::{producer_configs, ConnectorFlavour, DebeziumConnector};
pub use error::LocalError;
pub use kafka::{KRAFT_SESSION_TIMEOUT, ZOOKEEPER_SESSION_TIMEOUT};
pub use kraft::CONTROLLER_NODE_ID;
pub use mariadb::{MariaDbEndpoint, DEBEZIUM_PASSWORD, DEBEZIUM_USER, SOURCE_SERVER_ID};
pub use process::ServiceProcess;
pub use provision::{
    default_jvm_components, jvm_cache_dir, provision_jvm_components, JarLayout, JvmComponents,
    Provisioned, JVM_CACHE_ENV,
};
pub use proxy::{ProduceLog, ProducedRecord, TapReport, PRODUCER_CLIENT_PREFIX};
pub(crate) use run_dir::RunDir;
pub use standalone::{StandaloneKafka, StandaloneMariaDb};
pub use watch::{
    AckedEnds, BootstrapOrder, ClusterWatch, WatchOptions,
    DEFAULT_INTERVAL as WATCH_DEFAULT_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT as WATCH_DEFAULT_REQUEST_TIMEOUT,
};

/// Environment variable naming the directory under which per-run directories are created.
pub const RUNS_DIR_ENV: &str = "ETL_HARNESS_RUNS_DIR";

/// How to start a [`LocalTopology`].
#[derive(Debug, Clone)]
pub struct LocalTopologyOptions {
    /// SQL run in the OpenMRS database after it is created (the schema fixture and its seed rows).
    pub schema_sql: String,
    /// The source database name.
    pub database: String,
    /// Parent of the per-run directory.
    pub runs_dir: PathBuf,
    /// The JVM component cache.
    pub jvm_cache: PathBuf,
    /// How long each service may take to become ready.
    pub ready_timeout: Duration,
    /// Kafka brokers (ids 1..=N); internal topics get min(3, N) replicas.
    pub brokers: u32,
    /// ZooKeeper (default) or a KRaft quorum controller.
    pub coordination: Coordination,
    /// Heap of ZooKeeper or of the KRaft controller.
    pub coordinator_heap: String,
    pub kafka_heap: String,
    pub connect_heap: String,
    /// Run every service in a container of these images (the containers backend) instead of as a process.
    pub containers: Option<crate::topology::containers::images::Images>,
}

impl LocalTopologyOptions {
    /// Defaults: database `openmrs`, runs under `$ETL_HARNESS_RUNS_DIR` or `<tmp>/openmrs-etl-harness/runs`,
    /// the default JVM cache, 120 s per service, one broker, ZooKeeper, heaps 128m / 384m (per broker) / 512m.
    pub fn new(schema_sql: impl Into<String>) -> Self {
        let runs_dir = std::env::var_os(RUNS_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir()
                    .join("openmrs-etl-harness")
                    .join("runs")
            });
        LocalTopologyOptions {
            schema_sql: schema_sql.into(),
            database: "openmrs".into(),
            runs_dir,
            jvm_cache: jvm_cache_dir(),
            ready_timeout: Duration::from_secs(120),
            brokers: 1,
            coordination: Coordination::Zookeeper,
            coordinator_heap: "128m".into(),
            kafka_heap: "384m".into(),
            connect_heap: "512m".into(),
            containers: None,
        }
    }
}

/// The MariaDB source with the options' schema, on a free loopback port.
async fn start_source_database(
    run: &RunDir,
    options: &LocalTopologyOptions,
) -> Result<(ServiceProcess, MariaDbEndpoint), LocalError> {
    mariadb::start_mariadb(
        run,
        &mariadb::MariaDbSettings {
            port: process::free_loopback_port()?,
            database: &options.database,
            schema_sql: &options.schema_sql,
            ready_timeout: options.ready_timeout,
        },
    )
    .await
}

/// How long each start phase took.
#[derive(Debug, Clone, Default)]
pub struct StartupTimings {
    pub provision: Duration,
    /// True when Maven ran during this start (cold cache).
    pub provision_resolved: bool,
    pub mariadb: Duration,
    /// ZooKeeper, or the KRaft controller (its storage formatted).
    pub coordinator: Duration,
    /// Every broker, until Metadata lists them all.
    pub kafka: Duration,
    pub connect: Duration,
    pub total: Duration,
}

/// A running local topology. Dropping it kills every process.
#[derive(Debug)]
pub struct LocalTopology {
    // Declared in stop order: fields drop top to bottom.
    connect: RestartableService,
    brokers: Vec<LocalBroker>,
    /// ZooKeeper, or the KRaft quorum controller.
    coordinator: ServiceProcess,
    coordination: Coordination,
    mariadb: ServiceProcess,
    mariadb_endpoint: MariaDbEndpoint,
    connect_rest: ConnectRest,
    /// Isolation and latency of each broker, read by its proxies.
    network: NetworkFaults,
    run: RunDir,
    timings: StartupTimings,
    started: Instant,
    ready_timeout: Duration,
    /// The schema fixture, kept to reset the source between runs.
    schema_sql: String,
}

impl LocalTopology {
    /// Provisions what is missing and starts every service; on error, whatever was started is killed and the
    /// run directory (printed to stderr) keeps the logs.
    pub async fn start(options: &LocalTopologyOptions) -> Result<Self, LocalError> {
        let started = Instant::now();
        if options.containers.is_none() {
            for program in ["mariadbd", "mariadb-install-db", "java"] {
                prerequisites::require(program)?;
            }
        }
        let mut run = RunDir::create(&options.runs_dir)?;
        run.images = options.containers.clone();
        eprintln!(
            "[etl-harness] local topology run directory: {}",
            run.root.display()
        );
        let mut timings = StartupTimings::default();

        let phase = Instant::now();
        let jvm_cache = options.jvm_cache.clone();
        let provisioned = tokio::task::spawn_blocking(move || provision_jvm_components(&jvm_cache))
            .await
            .map_err(|e| {
                LocalError::io("provisioning", &options.jvm_cache, std::io::Error::other(e))
            })??;
        timings.provision = phase.elapsed();
        timings.provision_resolved = provisioned.resolved;
        // In containers the jars are the JVM image's copy of the same cache entry.
        let jvm = match &options.containers {
            Some(images) => JvmComponents {
                layout: Some(images.jars.clone()),
                ..provisioned.components
            },
            None => provisioned.components,
        };

        let phase = Instant::now();
        let (mariadb, mariadb_endpoint) = start_source_database(&run, options).await?;
        timings.mariadb = phase.elapsed();

        let phase = Instant::now();
        let coordinator_port = process::free_loopback_port()?;
        let (coordinator, brokers_coordinator) = match options.coordination {
            Coordination::Zookeeper => (
                zookeeper::start_zookeeper(
                    &run,
                    &jvm,
                    coordinator_port,
                    &options.coordinator_heap,
                    options.ready_timeout,
                )
                .await?,
                kafka::Coordinator::ZooKeeper {
                    port: coordinator_port,
                },
            ),
            Coordination::Kraft => (
                kraft::start_controller(
                    &run,
                    &jvm,
                    &kraft::cluster_id(&run),
                    coordinator_port,
                    KRAFT_SESSION_TIMEOUT,
                    &options.coordinator_heap,
                    options.ready_timeout,
                )
                .await?,
                kafka::Coordinator::Kraft {
                    controller_port: coordinator_port,
                },
            ),
        };
        timings.coordinator = phase.elapsed();

        let phase = Instant::now();
        let network = NetworkFaults::new();
        let brokers =
            start_brokers(&run, &jvm, brokers_coordinator, options, Some(&network)).await?;
        timings.kafka = phase.elapsed();

        let phase = Instant::now();
        let connect_port = process::free_loopback_port()?;
        let bootstrap_servers = brokers
            .iter()
            .map(LocalBroker::address)
            .collect::<Vec<_>>()
            .join(",");
        let command = connect::worker_command(
            &run,
            &jvm,
            &connect::WorkerSettings {
                port: connect_port,
                bootstrap_servers: &bootstrap_servers,
                internal_replication: (brokers.len() as u32).clamp(1, 3),
                max_heap: &options.connect_heap,
            },
        )?;
        let mut connect = RestartableService {
            process: ServiceProcess::spawn(&command)?,
            command,
            port: connect_port,
        };
        connect::wait_for_worker(
            &mut connect.process,
            connect_port,
            ConnectorFlavour::MariaDb.connector_class(),
            options.ready_timeout,
        )
        .await?;
        timings.connect = phase.elapsed();
        timings.total = started.elapsed();
        let connect_rest = ConnectRest::new(connect_port, connect.process.log_path().to_path_buf());

        Ok(LocalTopology {
            connect,
            brokers,
            coordinator,
            coordination: options.coordination,
            mariadb,
            mariadb_endpoint,
            connect_rest,
            network,
            run,
            timings,
            started,
            ready_timeout: options.ready_timeout,
            schema_sql: options.schema_sql.clone(),
        })
    }

    /// ZooKeeper or KRaft.
    pub fn coordination(&self) -> Coordination {
        self.coordination
    }

    /// How long a broker that stopped answering (killed, paused, isolated) stays registered.
    pub fn session_timeout(&self) -> Duration {
        match self.coordination {
            Coordination::Zookeeper => ZOOKEEPER_SESSION_TIMEOUT,
            Coordination::Kraft => KRAFT_SESSION_TIMEOUT,
        }
    }

    /// The MariaDB source.
    pub fn mariadb(&self) -> &MariaDbEndpoint {
        &self.mariadb_endpoint
    }

    /// `127.0.0.1:<port>` of every broker's proxy, comma-separated in id order (stopped and isolated brokers
    /// included: the list is what clients bootstrap from).
    pub fn bootstrap_servers(&self) -> String {
        self.brokers
            .iter()
            .map(LocalBroker::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The brokers' addresses for the harness's own admin requests: isolated brokers last, since one isolated
    /// from everyone answers nothing and one isolated from its peers answers with stale metadata.
    pub(crate) fn bootstrap_list(&self) -> Vec<String> {
        let mut brokers: Vec<&LocalBroker> = self.brokers.iter().collect();
        brokers.sort_by_key(|broker| (self.network.isolation(broker.id).is_some(), broker.id));
        brokers.into_iter().map(LocalBroker::address).collect()
    }

    /// How to watch `topics` on this topology ([`ClusterWatch`]): every broker's proxy address and log file.
    pub fn watch_options(&self, topics: Vec<String>, clock: crate::clock::Clock) -> WatchOptions {
        let logs = self
            .brokers
            .iter()
            .map(|broker| (broker.id, broker.service.process.log_path().to_path_buf()))
            .collect();
        let mut options = WatchOptions::new(self.bootstrap_list(), topics, logs, clock);
        options.controller_in_metadata = self.coordination == Coordination::Zookeeper;
        let produced = self.network.produced_log();
        options.acked_ends = Some(AckedEnds(std::sync::Arc::new(
            move |broker, topic, partition| produced.take_acked_end(broker, topic, partition),
        )));
        options
    }

    /// `127.0.0.1:<port>` of broker `id`'s proxy: where clients and its peers reach it.
    pub fn broker_address(&self, id: i32) -> Result<String, LocalError> {
        Ok(self.broker(id)?.address())
    }

    /// The broker ids, 1..=N.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.iter().map(|broker| broker.id).collect()
    }

    /// The port broker `id` itself listens on (the same across restarts). Nobody else uses it: clients and peers
    /// reach the broker through its proxy, [`LocalTopology::broker_address`].
    pub fn broker_port(&self, id: i32) -> Result<u16, LocalError> {
        Ok(self.broker(id)?.service.port)
    }

    /// Broker `id`'s current process.
    pub fn broker_process(&self, id: i32) -> Result<&ServiceProcess, LocalError> {
        Ok(&self.broker(id)?.service.process)
    }

    fn broker(&self, id: i32) -> Result<&LocalBroker, LocalError> {
        self.brokers
            .iter()
            .find(|broker| broker.id == id)
            .ok_or_else(|| self.unknown_broker(id))
    }

    fn broker_mut(&mut self, id: i32) -> Result<&mut LocalBroker, LocalError> {
        let unknown = self.unknown_broker(id);
        self.brokers
            .iter_mut()
            .find(|broker| broker.id == id)
            .ok_or(unknown)
    }

    fn unknown_broker(&self, id: i32) -> LocalError {
        LocalError::UnknownBroker {
            id,
            known: self.broker_ids(),
        }
    }

    /// A Metadata answer from the first broker that gives one (isolated brokers asked last): live brokers,
    /// controller and, for `topics` (`None`: all), leaders, replicas and ISRs. A broker healed a moment ago may
    /// still answer from what it knew before its isolation; [`LocalTopology::broker_metadata`] asks one broker.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<ClusterMetadata, LocalError> {
        admin::metadata(&self.bootstrap_list(), topics)
            .await
            .map_err(|reason| LocalError::Metadata {
                bootstrap: self.bootstrap_servers(),
                reason,
            })
    }

    /// Broker `id`'s own Metadata answer. It is what that broker knows: one that is or was just isolated answers
    /// from what it knew before, until the controller updates it after the heal.
    pub async fn broker_metadata(
        &self,
        id: i32,
        topics: Option<&[String]>,
    ) -> Result<ClusterMetadata, LocalError> {
        let address = self.broker(id)?.address();
        admin::metadata(std::slice::from_ref(&address), topics)
            .await
            .map_err(|reason| LocalError::Metadata {
                bootstrap: address,
                reason,
            })
    }

    /// The effective configs (name → value) of `topic`: its own and the broker defaults it inherits.
    pub async fn topic_configs(
        &self,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, LocalError> {
        admin::topic_configs(&self.bootstrap_list(), topic)
            .await
            .map_err(|reason| LocalError::Metadata {
                bootstrap: self.bootstrap_servers(),
                reason: format!("DescribeConfigs of {topic}: {reason}"),
            })
    }

    /// Creates `plans` (partitions, replication factor, topic configs) and waits until every partition has a
    /// leader. Call it before [`LocalTopology::start_connector`] so Debezium writes into these topics rather than
    /// auto-created ones.
    pub async fn create_topics(
        &self,
        plans: &[TopicPlan],
        timeout: Duration,
    ) -> Result<(), LocalError> {
        admin::create_topics(&self.bootstrap_list(), plans, timeout).await
    }

    /// Creates the change topics of `scenario` ([`Scenario::topic_plans`]), and returns them. Also creates, with
    /// the settings the brokers give an auto-created topic, the other topics Debezium writes: the reference
    /// tables' (no planned topic), the schema changes' (`<prefix>`) and the heartbeats'. Left to auto-creation,
    /// Debezium's producer waited on each in turn (~0.3 s apiece, 4-5 s per connector start) in the middle of
    /// its snapshot.
    pub async fn create_scenario_topics(
        &self,
        scenario: &Scenario,
        timeout: Duration,
    ) -> Result<Vec<TopicPlan>, LocalError> {
        let plans = scenario.topic_plans();
        let side = side_topic_plans(scenario, self.brokers.len() as u32);
        let all: Vec<TopicPlan> = plans.iter().cloned().chain(side).collect();
        self.create_topics(&all, timeout).await?;
        Ok(plans)
    }

    /// From now on, what the brokers' proxies decode goes to the returned receiver (and no longer to an earlier
    /// one): every record a Connect task's producer sends, with the broker's answer (acknowledged at an offset, or
    /// the error), as the history records acknowledgements.
    pub fn subscribe_produced(&self) -> tokio::sync::mpsc::UnboundedReceiver<TapReport> {
        self.network.produced().subscribe()
    }

    /// Ends [`LocalTopology::subscribe_produced`]'s subscription: its receiver gets what was decoded, then the end.
    pub fn unsubscribe_produced(&self) {
        self.network.produced().unsubscribe()
    }

    /// The Connect worker's REST API.
    pub fn connect(&self) -> &ConnectRest {
        &self.connect_rest
    }

    /// The per-run directory (configs in `conf/`, logs in `logs/`, data in `data/`).
    pub fn run_dir(&self) -> &Path {
        &self.run.root
    }

    pub fn timings(&self) -> &StartupTimings {
        &self.timings
    }

    /// Time since `start` was called.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The service processes, in start order (brokers by id).
    pub fn processes(&self) -> Vec<&ServiceProcess> {
        let mut processes = vec![&self.mariadb, &self.coordinator];
        processes.extend(self.brokers.iter().map(|broker| &broker.service.process));
        processes.push(&self.connect.process);
        processes
    }

    /// Errors if any service has exited (also one a fault stopped and nobody restarted).
    pub fn ensure_running(&mut self) -> Result<(), LocalError> {
        self.mariadb.ensure_running("the topology was in use")?;
        self.coordinator.ensure_running("the topology was in use")?;
        for broker in &mut self.brokers {
            broker
                .service
                .process
                .ensure_running("the topology was in use")?;
        }
        self.connect
            .process
            .ensure_running("the topology was in use")
    }

    /// Drops the source database and `extra_schemas` (a sink's) and loads the schema fixture again: the source as
    /// a fresh topology has it, for the next run on this topology.
    pub async fn reset_source(&self, extra_schemas: &[&str]) -> Result<(), LocalError> {
        mariadb::reset_database(
            &self.mariadb_endpoint,
            &self.schema_sql,
            extra_schemas,
            self.mariadb.log_path(),
        )
        .await
    }

    /// Registers `connector` against this topology's MariaDB and Kafka and waits until it runs.
    pub async fn start_connector(
        &self,
        connector: &DebeziumConnector,
        timeout: Duration,
    ) -> Result<(), LocalError> {
        let config = connector.config(&self.mariadb_endpoint, &self.bootstrap_servers());
        self.connect_rest
            .create_connector(&connector.name, &config)
            .await?;
        self.connect_rest
            .wait_until_running(&connector.name, timeout)
            .await
    }

    /// Heals every network fault, then stops every service gracefully (SIGTERM, SIGKILL after a grace period) in
    /// reverse start order, then removes the run's data directories; configs and logs stay.
    pub async fn shutdown(self) -> Result<PathBuf, LocalError> {
        // Controlled shutdowns need the controller.
        self.network.heal_all();
        let LocalTopology {
            mut connect,
            mut brokers,
            mut coordinator,
            mut mariadb,
            run,
            ..
        } = self;
        let run_root = run.root.clone();
        connect.stop(CONNECT_STOP_GRACE).await;
        // The last broker up has nobody to hand leaders to; its controlled shutdown ends at once.
        for broker in brokers.iter_mut().rev() {
            broker.service.stop(BROKER_STOP_GRACE).await;
        }
        drop(brokers);
        tokio::task::spawn_blocking(move || {
            coordinator.stop(Duration::from_secs(5));
            mariadb.stop(Duration::from_secs(10));
            run.remove_data()
        })
        .await
        .map_err(|e| {
            LocalError::io(
                "stopping the topology in",
                &run_root,
                std::io::Error::other(e),
            )
        })??;
        Ok(run_root)
    }
}
