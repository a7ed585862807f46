//! The harness producer against a real Kafka 3.9.1 broker (ZooKeeper + one broker as local processes): acks 1 and
//! all, keyed, compressed, idempotence on, consumed back with rskafka at explicit offsets.
//!
//! Without `java` the test prints why and passes as skipped, unless `ETL_HARNESS_REQUIRE_REAL=1`.

mod common;

use std::time::Duration;

use openmrs_etl_harness::client::{
    partition_for_key, Acks, Compression, Producer, ProducerConfig, Record,
};
use rskafka::client::partition::UnknownTopicHandling;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_to_real_kafka_with_acks_compression_and_idempotence() {
    if !common::real_services_available(&["java", "mvn"]) {
        return;
    }
    let kafka = common::start_real_kafka().await;
    let bootstrap = kafka.bootstrap_servers();
    let topic = "producer-real";
    let client = common::client(&bootstrap).await;
    common::bounded(
        "create topic",
        client
            .controller_client()
            .expect("controller")
            .create_topic(topic, 3, 1, 10_000),
    )
    .await
    .expect("topic created");

    let settings = [
        (Acks::Leader, false, Compression::Gzip),
        (Acks::All, false, Compression::Lz4),
        (Acks::All, true, Compression::Zstd),
        (Acks::All, true, Compression::Snappy),
    ];
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); 3];
    for (acks, idempotence, compression) in settings {
        let config = ProducerConfig {
            acks,
            idempotence,
            compression,
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            max_block: Duration::from_secs(15),
            ..ProducerConfig::default()
        };
        let producer = common::bounded("connect", Producer::connect(&bootstrap, config))
            .await
            .expect("producer connects");
        assert_eq!(producer.producer_identity().is_some(), idempotence);
        let mut deliveries = Vec::new();
        for i in 0..40 {
            let key = format!("patient-{}", i % 7);
            let value = format!("{acks:?}-{idempotence}-{compression:?}-{i}");
            deliveries.push((
                key.clone(),
                value.clone(),
                producer.send(Record::new(topic, value).key(key)).await,
            ));
        }
        for (key, value, delivery) in deliveries {
            let ack = common::bounded("ack", delivery)
                .await
                .expect("acknowledged");
            assert_eq!(ack.partition, partition_for_key(key.as_bytes(), 3));
            expected[ack.partition as usize].push(value);
        }
        common::bounded("close", producer.close()).await;
    }
    for (p, values) in expected.iter().enumerate() {
        let partition = common::bounded(
            "partition client",
            client.partition_client(topic, p as i32, UnknownTopicHandling::Error),
        )
        .await
        .expect("partition client");
        let stored: Vec<String> = common::read_all(&partition, 0)
            .await
            .into_iter()
            .filter_map(|r| r.2)
            .collect();
        assert_eq!(&stored, values, "partition {p}");
    }
    kafka.shutdown().await.expect("Kafka stops");
}
