//! One Kafka 3.9 broker in ZooKeeper mode, tuned for a single-machine test: replication factor 1 for internal
//! topics, no initial rebalance delay, few threads.

use std::time::Duration;

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
        &format!("a Metadata answer naming a controller on {bootstrap}"),
        settings.ready_timeout,
        || names_a_controller(bootstrap.clone()),
    )
    .await?;
    Ok(process)
}

/// Probe: the broker answers Metadata and names a live controller. A broker that has just bound its port can
/// answer with controller -1 until its ZooKeeper registration settles; admin requests fail until then.
async fn names_a_controller(bootstrap: String) -> Result<(), String> {
    use crate::kafka::wire::BrokerConnection;
    use kafka_protocol::messages::MetadataRequest;
    let timeout = Duration::from_secs(2);
    let connection = BrokerConnection::connect(&bootstrap, "etl-harness-probe", timeout)
        .await
        .map_err(|e| e.to_string())?;
    let version = connection
        .version::<MetadataRequest>((1, 12))
        .ok_or("the broker speaks no Metadata version from 1 to 12")?;
    let answer = connection
        .call(
            &MetadataRequest::default().with_topics(Some(Vec::new())),
            version,
            timeout,
        )
        .await
        .map_err(|e| e.to_string())?;
    if answer.controller_id.0 < 0 {
        return Err("Metadata names no controller yet".into());
    }
    Ok(())
}
