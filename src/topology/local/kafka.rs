//! One Kafka 3.9 broker in ZooKeeper mode, tuned for a single-machine test: replication factor 1 for internal
//! topics, no initial rebalance delay, few threads.

use std::time::Duration;

use rskafka::client::ClientBuilder;
use rskafka::BackoffConfig;

use super::error::LocalError;
use super::java::{java_command, write_properties, JavaService};
use super::process::{wait_until_ready, ServiceProcess};
use super::provision::JvmComponents;
use super::RunDir;

pub(crate) struct BrokerSettings<'a> {
    pub broker_id: i32,
    pub port: u16,
    pub zookeeper_port: u16,
    pub max_heap: &'a str,
    pub ready_timeout: Duration,
}

pub(crate) async fn start_broker(
    run: &RunDir,
    jvm: &JvmComponents,
    settings: &BrokerSettings<'_>,
) -> Result<ServiceProcess, LocalError> {
    let name = format!("kafka-{}", settings.broker_id);
    let log_dir = run.data_dir(&name)?;
    let listener = format!("PLAINTEXT://127.0.0.1:{}", settings.port);
    let config = write_properties(
        run,
        &format!("{name}.properties"),
        &[
            ("broker.id", settings.broker_id.to_string()),
            ("listeners", listener.clone()),
            ("advertised.listeners", listener),
            ("log.dirs", log_dir.display().to_string()),
            (
                "zookeeper.connect",
                format!("127.0.0.1:{}", settings.zookeeper_port),
            ),
            ("zookeeper.connection.timeout.ms", "18000".into()),
            ("num.partitions", "1".into()),
            ("default.replication.factor", "1".into()),
            ("offsets.topic.replication.factor", "1".into()),
            ("offsets.topic.num.partitions", "1".into()),
            ("transaction.state.log.replication.factor", "1".into()),
            ("transaction.state.log.min.isr", "1".into()),
            ("transaction.state.log.num.partitions", "1".into()),
            ("group.initial.rebalance.delay.ms", "0".into()),
            ("auto.create.topics.enable", "true".into()),
            ("num.network.threads", "2".into()),
            ("num.io.threads", "2".into()),
            ("background.threads", "2".into()),
            ("num.recovery.threads.per.data.dir", "1".into()),
        ],
    )?;
    let kafka_libs = jvm.kafka_libs();
    let command = java_command(
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
    )?;
    let mut process = ServiceProcess::spawn(&command)?;
    let bootstrap = format!("127.0.0.1:{}", settings.port);
    wait_until_ready(
        &mut process,
        &format!("a Metadata answer on {bootstrap}"),
        settings.ready_timeout,
        || lists_topics(bootstrap.clone()),
    )
    .await?;
    Ok(process)
}

/// Probe: the broker answers Metadata (rskafka, with a short retry deadline so a dead broker fails the probe).
async fn lists_topics(bootstrap: String) -> Result<(), String> {
    let client = ClientBuilder::new(vec![bootstrap])
        .backoff_config(short_backoff())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    client
        .list_topics()
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// rskafka retries forever unless given a deadline.
pub(crate) fn short_backoff() -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        base: 2.0,
        deadline: Some(Duration::from_secs(3)),
    }
}
