//! Keyed partitioning is identical to the Java client's: Kafka 3.9.1's own console producer (the Java
//! `KafkaProducer` with its built-in partitioner) writes keyed records — Debezium-style JSON keys and plain ones —
//! to a 6-partition topic on a real broker, and every record sits in the partition the harness's
//! `partition_for_key` computes for its key.
//!
//! Without `java`/`mvn` the test prints why and passes as skipped, unless `ETL_HARNESS_REQUIRE_REAL=1`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use openmrs_etl_harness::client::partition_for_key;
use openmrs_etl_harness::topology::local::{jvm_cache_dir, provision_jvm_components};

const PARTITIONS: i32 = 6;

fn keys() -> Vec<String> {
    let mut keys: Vec<String> = (1..=150)
        .map(|id| {
            format!(
                "{{\"schema\":{{\"type\":\"struct\",\"fields\":[{{\"type\":\"int32\",\"optional\":false,\"field\":\"obs_id\"}}],\"optional\":false,\"name\":\"dbserver1.openmrs.obs.Key\"}},\"payload\":{{\"obs_id\":{id}}}}}"
            )
        })
        .collect();
    keys.extend((0..50).map(|i| format!("patient-{i}")));
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_producer_and_harness_pick_the_same_partition_for_every_key() {
    if !common::real_services_available(&["java", "mvn"]) {
        return;
    }
    let kafka = common::start_real_kafka().await;
    let bootstrap = kafka.bootstrap_servers();
    let topic = "java-partitions";
    let client = common::client(&bootstrap).await;
    common::bounded(
        "create topic",
        client
            .controller_client()
            .expect("controller")
            .create_topic(topic, PARTITIONS, 1, 10_000),
    )
    .await
    .expect("topic created");

    let jvm = provision_jvm_components(&jvm_cache_dir()).expect("JVM components");
    let classpath = format!("{}/*", jvm.components.kafka_libs().display());
    let keys = keys();
    let mut producer = Command::new("java")
        .args(["-Xmx128m", "-cp", &classpath, "kafka.tools.ConsoleProducer"])
        .args(["--bootstrap-server", &bootstrap, "--topic", topic])
        .args([
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=\t",
        ])
        .args(["--producer-property", "acks=all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java runs");
    {
        let mut stdin = producer.stdin.take().expect("stdin");
        for (i, key) in keys.iter().enumerate() {
            writeln!(stdin, "{key}\tvalue-{i}").expect("write to the console producer");
        }
    }
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || producer.wait_with_output()),
    )
    .await
    .expect("the console producer exits within 120 s")
    .expect("joined")
    .expect("waited");
    assert!(
        output.status.success(),
        "console producer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut seen = 0;
    for p in 0..PARTITIONS {
        let records = common::read_all(&common::partition(&client, topic, p).await, 0).await;
        for (_, key, _) in records {
            assert_eq!(
                partition_for_key(key.as_bytes(), PARTITIONS),
                p,
                "Java put {key} in partition {p}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, keys.len(), "every record read back");
    kafka.shutdown().await.expect("Kafka stops");
}
