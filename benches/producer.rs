//! Harness producer vs rskafka throughput (numbers go in docs/benchmarks.md, never into test assertions).
//!
//! Run: `cargo bench --bench producer`. Same embedded cluster (1 broker), same data: 200,000 records of 1 KiB
//! values and 16-byte keys to 6 partitions, acks=all, no compression. rskafka: one task per partition, 900
//! records per produce call. Harness producer: keyed sends, `batch.size` fitting the same 900 records, then the
//! Java default 16 KiB; idempotence off (the embedded cluster has no InitProducerId yet). With `java` on the
//! PATH and `BENCH_REAL_KAFKA=1`, the harness producer also runs against a real Kafka 3.9.1; with
//! `BENCH_LOCAL_RF3=1`, at RF 3 against 3 embedded brokers and the local backend's 3 real brokers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use openmrs_etl_harness::broker::{Cluster, NewTopic};
use openmrs_etl_harness::client::{Acks, Producer, ProducerConfig, Record as HarnessRecord};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use rskafka::BackoffConfig;

const RECORDS: usize = 200_000;
const PER_CALL: usize = 900;
const PARTITIONS: i32 = 6;
const VALUE_BYTES: usize = 1024;
const KEY_BYTES: usize = 16;
const LIMIT: Duration = Duration::from_secs(300);

fn key(i: usize) -> Vec<u8> {
    format!("{i:0width$}", width = KEY_BYTES).into_bytes()
}

async fn rskafka_run(bootstrap: &str, topic: &str) -> f64 {
    let client = ClientBuilder::new(vec![bootstrap.to_string()])
        .backoff_config(BackoffConfig {
            deadline: Some(Duration::from_secs(30)),
            ..BackoffConfig::default()
        })
        .build()
        .await
        .expect("rskafka connects");
    let value = vec![b'v'; VALUE_BYTES];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PARTITIONS {
        let partition = client
            .partition_client(topic, p, UnknownTopicHandling::Error)
            .await
            .expect("partition client");
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mine = RECORDS / PARTITIONS as usize;
            let mut sent = 0;
            while sent < mine {
                let n = PER_CALL.min(mine - sent);
                let records = (0..n)
                    .map(|i| Record {
                        key: Some(key(sent + i)),
                        value: Some(value.clone()),
                        headers: Default::default(),
                        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(
                            1_700_000_000_000,
                        )
                        .expect("valid"),
                    })
                    .collect();
                partition
                    .produce(records, Compression::NoCompression)
                    .await
                    .expect("produce");
                sent += n;
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

async fn harness_run(bootstrap: &str, topic: &str, config: ProducerConfig) -> f64 {
    let producer = Producer::connect(bootstrap, config)
        .await
        .expect("producer connects");
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let record = HarnessRecord::new(topic, value.clone()).key(key(i));
        deliveries.push(producer.send(record).await);
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("acknowledged");
    }
    let rate = RECORDS as f64 / started.elapsed().as_secs_f64();
    producer.close().await;
    rate
}

fn harness_config(batch_size: usize) -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        idempotence: false,
        linger: Duration::from_millis(5),
        batch_size,
        ..ProducerConfig::default()
    }
}

async fn bench() {
    let cluster = Cluster::builder()
        .brokers(1)
        .start()
        .await
        .expect("cluster");
    let bootstrap = cluster.bootstrap_servers();
    let big_batch = PER_CALL * (VALUE_BYTES + KEY_BYTES + 21) + 61;
    let mut results = Vec::new();
    for round in 0..2 {
        let t = format!("rskafka-{round}");
        cluster.create_topic(NewTopic::new(&t, PARTITIONS)).unwrap();
        let rs = tokio::time::timeout(LIMIT, rskafka_run(&bootstrap, &t))
            .await
            .expect("rskafka run bounded");
        let t = format!("harness-{round}");
        cluster.create_topic(NewTopic::new(&t, PARTITIONS)).unwrap();
        let hp = tokio::time::timeout(
            LIMIT,
            harness_run(&bootstrap, &t, harness_config(big_batch)),
        )
        .await
        .expect("harness run bounded");
        let t = format!("harness-16k-{round}");
        cluster.create_topic(NewTopic::new(&t, PARTITIONS)).unwrap();
        let hp16 = tokio::time::timeout(LIMIT, harness_run(&bootstrap, &t, harness_config(16_384)))
            .await
            .expect("harness run bounded");
        results.push((rs, hp, hp16));
    }
    // The first round warms up allocator and sockets; report the best of the two.
    let best = |f: fn(&(f64, f64, f64)) -> f64| results.iter().map(f).fold(0.0, f64::max);
    let rs = best(|r| r.0);
    let hp = best(|r| r.1);
    let hp16 = best(|r| r.2);
    println!(
        "embedded cluster, {RECORDS} records x {VALUE_BYTES} B, {PARTITIONS} partitions, acks=all:"
    );
    println!("  rskafka ({PER_CALL} records per produce call): {rs:>10.0} records/s");
    println!(
        "  harness producer (batch.size {big_batch} B):   {hp:>10.0} records/s  ratio {:.2}",
        hp / rs
    );
    println!(
        "  harness producer (batch.size 16384 B):      {hp16:>10.0} records/s  ratio {:.2}",
        hp16 / rs
    );
    cluster.shutdown().await;

    if std::env::var("BENCH_REAL_KAFKA").is_ok_and(|v| v == "1") {
        use openmrs_etl_harness::topology::local::{LocalTopologyOptions, StandaloneKafka};
        let kafka = StandaloneKafka::start(&LocalTopologyOptions::new(String::new()))
            .await
            .expect("real Kafka starts");
        let bootstrap = kafka.bootstrap_servers();
        let client = ClientBuilder::new(vec![bootstrap.clone()])
            .build()
            .await
            .unwrap();
        let controller = client.controller_client().unwrap();
        for t in ["real-rskafka", "real-harness"] {
            controller
                .create_topic(t, PARTITIONS, 1, 10_000)
                .await
                .unwrap();
        }
        let rs = tokio::time::timeout(LIMIT, rskafka_run(&bootstrap, "real-rskafka"))
            .await
            .expect("bounded");
        let hp = tokio::time::timeout(
            LIMIT,
            harness_run(&bootstrap, "real-harness", harness_config(big_batch)),
        )
        .await
        .expect("bounded");
        println!("real Kafka 3.9.1 (1 broker), same load:");
        println!("  rskafka:          {rs:>10.0} records/s");
        println!(
            "  harness producer: {hp:>10.0} records/s  ratio {:.2}",
            hp / rs
        );
        kafka.shutdown().await.ok();
    }
    if std::env::var("BENCH_LOCAL_RF3").is_ok_and(|v| v == "1") {
        rf3_embedded_vs_local(big_batch).await;
    }
}

/// One topic of 6 partitions, replication factor 3, min ISR 2 (as a scenario plans it).
fn rf3_plan() -> openmrs_etl_harness::scenario::TopicPlan {
    let scenario = openmrs_etl_harness::scenario::Scenario::parse(
        "name = \"rf3\"\n[topics]\npartitions = 6\nreplication_factor = 3\nmin_insync_replicas = 2\n",
        "producer bench",
    )
    .expect("valid scenario");
    scenario
        .topic_plans()
        .into_iter()
        .find(|plan| plan.table == "obs")
        .expect("an obs topic")
}

/// The harness producer at replication factor 3, min ISR 2, acks=all on 3 brokers: the embedded cluster against
/// the local backend's Kafka 3.9.1 brokers (ZooKeeper mode, reached through the topology's proxies as a local run
/// reaches them). Each round's rate is printed as it finishes; the best of two is compared.
async fn rf3_embedded_vs_local(big_batch: usize) {
    use openmrs_etl_harness::topology::local::{LocalTopology, LocalTopologyOptions};
    use openmrs_etl_harness::workload::reference;

    let plan = rf3_plan();
    let cluster = Cluster::builder()
        .brokers(3)
        .start()
        .await
        .expect("cluster");
    cluster
        .create_topic(
            NewTopic::new(&plan.name, PARTITIONS)
                .replication_factor(3)
                .config("min.insync.replicas", "2"),
        )
        .expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let mut embedded: f64 = 0.0;
    for round in 0..2 {
        let rate = tokio::time::timeout(
            LIMIT,
            harness_run(&bootstrap, &plan.name, harness_config(big_batch)),
        )
        .await
        .expect("the embedded round ends within the limit");
        println!("  RF 3 round {round}: embedded {rate:.0} records/s");
        embedded = embedded.max(rate);
    }
    cluster.shutdown().await;

    let mut options = LocalTopologyOptions::new(reference::schema_fixture_sql());
    options.brokers = 3;
    let topology = LocalTopology::start(&options)
        .await
        .expect("local topology starts");
    topology
        .create_topics(std::slice::from_ref(&plan), Duration::from_secs(60))
        .await
        .expect("topic on local");
    let bootstrap = topology.bootstrap_servers();
    let mut local: f64 = 0.0;
    for round in 0..2 {
        let rate = tokio::time::timeout(
            LIMIT,
            harness_run(&bootstrap, &plan.name, harness_config(big_batch)),
        )
        .await
        .expect("the local round ends within the limit");
        println!("  RF 3 round {round}: local {rate:.0} records/s");
        local = local.max(rate);
    }
    topology.shutdown().await.ok();
    println!("harness producer, RF 3, min ISR 2, acks=all, 3 brokers, {RECORDS} x {VALUE_BYTES} B, best of 2:");
    println!("  embedded cluster:            {embedded:>10.0} records/s");
    println!(
        "  local backend (Kafka 3.9.1): {local:>10.0} records/s  local/embedded {:.2}",
        local / embedded
    );
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench());
}
