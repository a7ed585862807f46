//! Kafka 3.9 brokers in ZooKeeper mode, tuned for a single machine and for faults that resolve within seconds:
//! a short ZooKeeper session (a killed broker is declared dead after 6 s), internal topics replicated on up to
//! three brokers, no initial rebalance delay, few threads.

use std::time::Duration;

use super::admin;
use super::error::LocalError;
use super::java::{java_command, write_properties, JavaService};
use super::process::{wait_until_ready, ServiceCommand, ServiceProcess};
use super::provision::JvmComponents;
use super::RunDir;

/// How long ZooKeeper keeps the session of a broker that stopped answering: the time a SIGKILLed, paused or
/// isolated broker stays registered before the controller moves its leaders.
pub const ZOOKEEPER_SESSION_TIMEOUT: Duration = Duration::from_secs(6);

pub(crate) struct BrokerSettings<'a> {
    pub broker_id: i32,
    /// The broker's own listener.
    pub port: u16,
    /// Where clients and peers reach it: `port`, or its proxy's port.
    pub advertised_port: u16,
    /// Where it reaches ZooKeeper: ZooKeeper's port, or its own proxy's.
    pub zookeeper_port: u16,
    /// Brokers in the cluster: internal topics get min(3, N) replicas.
    pub cluster_size: u32,
    pub max_heap: &'a str,
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
    let listener = format!("PLAINTEXT://127.0.0.1:{}", settings.port);
    let advertised = format!("PLAINTEXT://127.0.0.1:{}", settings.advertised_port);
    let replication = settings.cluster_size.clamp(1, 3);
    // With three replicas a single broker may be down and transactions still commit.
    let transaction_min_isr = replication.saturating_sub(1).max(1);
    let config = write_properties(
        run,
        &format!("{name}.properties"),
        &[
            ("broker.id", settings.broker_id.to_string()),
            ("listeners", listener),
            // Registered in ZooKeeper: what clients get in Metadata and what peers connect to.
            ("advertised.listeners", advertised),
            ("log.dirs", log_dir.display().to_string()),
            (
                "zookeeper.connect",
                format!("127.0.0.1:{}", settings.zookeeper_port),
            ),
            ("zookeeper.connection.timeout.ms", "18000".into()),
            (
                "zookeeper.session.timeout.ms",
                ZOOKEEPER_SESSION_TIMEOUT.as_millis().to_string(),
            ),
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
            // Debezium's schema-change topic and tables without a planned topic are auto-created.
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
        ],
    )?;
    let kafka_libs = jvm.kafka_libs();
    java_command(
        run,
        &JavaService {
            name: &name,
            max_heap: settings.max_heap,
            classpath: &[kafka_libs.as_path()],
            main_class: "kafka.Kafka",
            args: vec![config.into_os_string()],
            log_levels: &[
                ("kafka.request.logger", "WARN"),
                ("state.change.logger", "WARN"),
            ],
        },
    )
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
