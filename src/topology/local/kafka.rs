//! Kafka 3.9 brokers in ZooKeeper mode or, with a quorum controller (see [`super::kraft`]), in KRaft mode, tuned
//! for a single machine and for faults that resolve within seconds: a short session (a killed broker is declared
//! dead after 6 s, ZooKeeper's session or KRaft's `broker.session.timeout.ms`), internal topics replicated on up
//! to three brokers, no initial rebalance delay, few threads.

use std::time::Duration;

use super::admin;
use super::error::LocalError;
use super::java::{kafka_jar_command, write_properties};
use super::kraft;
use super::process::{wait_until_ready, ServiceCommand, ServiceProcess};
use super::provision::JvmComponents;
use super::RunDir;

/// How long ZooKeeper keeps the session of a broker that stopped answering: the time a SIGKILLed, paused or
/// isolated broker stays registered before the controller moves its leaders.
pub const ZOOKEEPER_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// KRaft's counterpart: how long the quorum controller keeps a broker that stopped heartbeating unfenced (Kafka's
/// default 9 s, tuned down like the ZooKeeper session). Brokers heartbeat every second.
pub const KRAFT_SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// How a broker finds the cluster's coordinator, and through which port (the coordinator's own, or the broker's
/// coordinator proxy).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Coordinator {
    ZooKeeper {
        port: u16,
    },
    /// The KRaft quorum controller.
    Kraft {
        controller_port: u16,
    },
}

impl Coordinator {
    /// The port the broker reaches the coordinator at.
    pub(crate) fn port(self) -> u16 {
        match self {
            Coordinator::ZooKeeper { port } => port,
            Coordinator::Kraft { controller_port } => controller_port,
        }
    }

    /// The same coordinator, reached at `port` (a broker's coordinator proxy).
    pub(crate) fn at(self, port: u16) -> Coordinator {
        match self {
            Coordinator::ZooKeeper { .. } => Coordinator::ZooKeeper { port },
            Coordinator::Kraft { .. } => Coordinator::Kraft {
                controller_port: port,
            },
        }
    }
}

pub(crate) struct BrokerSettings<'a> {
    pub broker_id: i32,
    /// The broker's own listener.
    pub port: u16,
    /// Where clients and peers reach it: `port`, or its proxy's port.
    pub advertised_port: u16,
    /// Where it reaches the coordinator: its own port, or the broker's coordinator proxy.
    pub coordinator: Coordinator,
    /// Brokers in the cluster: internal topics get min(3, N) replicas.
    pub cluster_size: u32,
    pub max_heap: &'a str,
}

/// `default.replication.factor` (also the internal topics' factor) of a cluster of `cluster_size` brokers: min(3, N).
pub(crate) fn default_replication_factor(cluster_size: u32) -> u32 {
    cluster_size.clamp(1, 3)
}

/// Writes broker `settings.broker_id`'s config and returns the command that starts it; starting the same
/// command again reuses the config, the port and the log directory.
pub(crate) fn broker_command(
    run: &RunDir,
    jvm: &JvmComponents,
    settings: &BrokerSettings<'_>,
) -> Result<ServiceCommand, LocalError> {
    let name = broker_name(settings.broker_id);
    let log_dir = run.data_dir(&name)?;
    let properties = broker_properties(settings, &log_dir);
    let config = write_properties(run, &format!("{name}.properties"), &properties)?;
    kafka_jar_command(
        run,
        jvm,
        &name,
        settings.max_heap,
        "kafka.Kafka",
        vec![config.into_os_string()],
        &[
            ("kafka.request.logger", "WARN"),
            ("state.change.logger", "WARN"),
        ],
    )
}

/// The broker's configuration (also what docker/docker-compose.yml's brokers are held to).
pub(crate) fn broker_properties(
    settings: &BrokerSettings<'_>,
    log_dir: &std::path::Path,
) -> Vec<(&'static str, String)> {
    let listener = format!("PLAINTEXT://127.0.0.1:{}", settings.port);
    let advertised = format!("PLAINTEXT://127.0.0.1:{}", settings.advertised_port);
    let replication = default_replication_factor(settings.cluster_size);
    // With three replicas a single broker may be down and transactions still commit.
    let transaction_min_isr = replication.saturating_sub(1).max(1);
    let mut properties = match settings.coordinator {
        Coordinator::ZooKeeper { port } => vec![
            ("broker.id", settings.broker_id.to_string()),
            ("zookeeper.connect", format!("127.0.0.1:{port}")),
            ("zookeeper.connection.timeout.ms", "18000".into()),
            (
                "zookeeper.session.timeout.ms",
                ZOOKEEPER_SESSION_TIMEOUT.as_millis().to_string(),
            ),
        ],
        Coordinator::Kraft { controller_port } => {
            let mut kraft = kraft::node_properties("broker", settings.broker_id, controller_port);
            kraft.extend([
                ("inter.broker.listener.name", "PLAINTEXT".into()),
                (
                    "broker.session.timeout.ms",
                    KRAFT_SESSION_TIMEOUT.as_millis().to_string(),
                ),
                ("broker.heartbeat.interval.ms", "1000".into()),
            ]);
            kraft
        }
    };
    properties.extend([
        ("listeners", listener),
        // Registered with the coordinator: what clients get in Metadata and what peers connect to.
        ("advertised.listeners", advertised),
        ("log.dirs", log_dir.display().to_string()),
        ("num.partitions", "1".into()),
        ("default.replication.factor", replication.to_string()),
        ("offsets.topic.replication.factor", replication.to_string()),
        ("offsets.topic.num.partitions", "1".into()),
        (
            "transaction.state.log.replication.factor",
            replication.to_string(),
        ),
        (
            "transaction.state.log.min.isr",
            transaction_min_isr.to_string(),
        ),
        ("transaction.state.log.num.partitions", "1".into()),
        ("group.initial.rebalance.delay.ms", "0".into()),
        // A run creates every topic Debezium writes beforehand (`LocalTopology::create_scenario_topics`); a user's
        // own connector on `up` may still write others.
        ("auto.create.topics.enable", "true".into()),
        ("log.retention.check.interval.ms", "1000".into()),
        // A third of Kafka's 30 s default: a killed or paused follower leaves the ISR within a test's patience,
        // yet it is 20 fetch waits (replica.fetch.wait.max.ms 500), so two busy shared cores do not make
        // healthy followers flap in and out.
        ("replica.lag.time.max.ms", "10000".into()),
        ("controlled.shutdown.enable", "true".into()),
        // A partition whose other replicas are all down cannot be handed over; a fifth of the 5 s default keeps
        // the three retries of such a shutdown (and of a whole topology's, broker after broker) short.
        ("controlled.shutdown.retry.backoff.ms", "1000".into()),
        ("num.network.threads", "2".into()),
        ("num.io.threads", "2".into()),
        ("background.threads", "2".into()),
        ("num.recovery.threads.per.data.dir", "1".into()),
        ("num.replica.fetchers", "1".into()),
    ]);
    properties
}

/// Where [`broker_command`] writes broker `broker_id`'s config.
pub(crate) fn broker_config_path(run: &RunDir, broker_id: i32) -> std::path::PathBuf {
    run.conf_path(&format!("{}.properties", broker_name(broker_id)))
}

/// `kafka-<id>`: the broker's process, config and log name.
pub(crate) fn broker_name(broker_id: i32) -> String {
    format!("kafka-{broker_id}")
}

/// Waits until the broker on `port` answers Metadata naming a live controller. A broker that has just bound its
/// port can answer with controller -1 until its ZooKeeper registration settles; admin requests fail until then.
pub(crate) async fn wait_for_broker(
    process: &mut ServiceProcess,
    port: u16,
    timeout: Duration,
) -> Result<(), LocalError> {
    let bootstrap = format!("127.0.0.1:{port}");
    wait_until_ready(
        process,
        &format!("a Metadata answer naming a controller on {bootstrap}"),
        timeout,
        || names_a_controller(bootstrap.clone()),
    )
    .await
}

async fn names_a_controller(bootstrap: String) -> Result<(), String> {
    let metadata = admin::metadata(&[bootstrap], None).await?;
    match metadata.controller {
        Some(_) => Ok(()),
        None => Err("Metadata names no controller yet".into()),
    }
}
