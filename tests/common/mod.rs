//! Helpers shared by the broker integration tests: bounded rskafka clients and records.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use openmrs_etl_harness::topology::local::{ClusterMetadata, LocalTopology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;

/// Every test step gets this long; a hang fails the test instead of the CI job.
pub const STEP: Duration = Duration::from_secs(20);

/// Runs `future` with the [`STEP`] deadline.
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {STEP:?}"),
    }
}

/// Broker warnings (closed connections and why) in the test output; RUST_LOG overrides the level.
/// Moves a cluster's virtual clock by `total` in steps of `step`, letting the brokers' tasks run in between.
pub async fn advance_in_steps(
    cluster: &openmrs_etl_harness::broker::Cluster,
    total: std::time::Duration,
    step: std::time::Duration,
) {
    let mut done = std::time::Duration::ZERO;
    while done < total {
        cluster.clock().advance(step).unwrap();
        done += step;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// An rskafka client that gives up instead of retrying forever.
pub async fn client(bootstrap: &str) -> Client {
    init_tracing();
    let backoff = BackoffConfig {
        init_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        base: 2.0,
        deadline: Some(Duration::from_secs(5)),
    };
    bounded(
        "connecting rskafka",
        ClientBuilder::new(bootstrap.split(',').map(str::to_string).collect())
            .backoff_config(backoff)
            .build(),
    )
    .await
    .expect("rskafka connects to the embedded cluster")
}

pub async fn partition(client: &Client, topic: &str, partition: i32) -> PartitionClient {
    bounded(
        "partition client",
        client.partition_client(topic, partition, UnknownTopicHandling::Error),
    )
    .await
    .expect("partition client")
}

/// A record with a key, a value and a CreateTime in ms.
pub fn record(key: &str, value: &str, timestamp_ms: i64) -> Record {
    Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: Default::default(),
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(timestamp_ms)
            .expect("valid timestamp"),
    }
}

/// A tombstone (null value) for `key`.
pub fn tombstone(key: &str, timestamp_ms: i64) -> Record {
    Record {
        value: None,
        ..record(key, "", timestamp_ms)
    }
}

/// Every record from `offset` up to the high watermark, as (offset, key, value).
pub async fn read_all(
    client: &PartitionClient,
    mut offset: i64,
) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    loop {
        let (records, high_watermark) =
            bounded("fetch", client.fetch_records(offset, 1..1_000_000, 10))
                .await
                .expect("fetch");
        for r in &records {
            let text =
                |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            out.push((
                r.offset,
                text(&r.record.key).unwrap_or_default(),
                text(&r.record.value),
            ));
            offset = r.offset + 1;
        }
        if records.is_empty() || offset >= high_watermark {
            return out;
        }
    }
}

/// Encodes a request frame with its length prefix.
pub fn request_frame<R: Request>(request: &R, version: i16, correlation_id: i32) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw-request")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame.freeze()
}

pub async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let size = bounded("read size", stream.read_i32()).await.ok()?;
    let mut buf = vec![0; size as usize];
    bounded("read body", stream.read_exact(&mut buf))
        .await
        .ok()?;
    Some(Bytes::from(buf))
}

/// Sends one request and decodes its response.
pub async fn call<R: Request>(stream: &mut TcpStream, request: &R, version: i16) -> R::Response {
    stream
        .write_all(&request_frame(request, version, 42))
        .await
        .unwrap();
    let mut frame = read_frame(stream).await.expect("a response");
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 42);
    R::Response::decode(&mut frame, version).unwrap()
}

/// Raw Kafka requests for what rskafka cannot send (acks other than -1) or does not show (error codes as sent).
pub mod raw {
    use bytes::{Buf, Bytes, BytesMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Sends one request on a fresh connection and decodes the response; `Err` on any I/O failure.
    pub async fn call<R: Request>(
        addr: std::net::SocketAddr,
        request: &R,
        version: i16,
    ) -> std::io::Result<R::Response> {
        let mut stream = TcpStream::connect(addr).await?;
        let frame = super::request_frame(request, version, 7);
        stream.write_all(&frame).await?;
        let size = stream.read_i32().await?;
        let mut buf = vec![0; size.max(0) as usize];
        stream.read_exact(&mut buf).await?;
        let mut buf = Bytes::from(buf);
        ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(std::io::Error::other)?;
        let response = R::Response::decode(&mut buf, version).map_err(std::io::Error::other)?;
        let _ = buf.remaining();
        Ok(response)
    }

    /// One record batch with `values` (key "k"), CreateTime 1,000.
    pub fn batch(values: &[String]) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch when offset - sequence changes.
                sequence: i as i32,
                timestamp: 1_000,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodable batch");
        buf.freeze()
    }

    /// Produce v7 of `values` as one batch with `acks`; returns (error code, base offset).
    pub async fn produce(
        addr: std::net::SocketAddr,
        topic: &str,
        partition: i32,
        acks: i16,
        values: &[String],
    ) -> std::io::Result<(i16, i64)> {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(2_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch(values)))])]);
        let response = call(addr, &request, 9).await?;
        let p = &response.responses[0].partition_responses[0];
        if p.error_code != 0 {
            eprintln!("produce error {}: {:?}", p.error_code, p.error_message);
        }
        Ok((p.error_code, p.base_offset))
    }

    /// Metadata v4 for `topic`: (leader id, error code) of each partition, and the listed broker ids.
    pub async fn leaders(
        addr: std::net::SocketAddr,
        topic: &str,
    ) -> std::io::Result<(Vec<(i32, i16)>, Vec<i32>)> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
        let response = call(addr, &request, 4).await?;
        let partitions = response
            .topics
            .first()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.leader_id.0, p.error_code))
                    .collect()
            })
            .unwrap_or_default();
        let brokers = response.brokers.iter().map(|b| b.node_id.0).collect();
        Ok((partitions, brokers))
    }
}

/// What a whole local topology needs: MariaDB, Java, and Maven to provision the JVM components.
pub const LOCAL_TOPOLOGY_PROGRAMS: [&str; 4] = ["mariadbd", "mariadb-install-db", "java", "mvn"];
/// How long a local topology may take to start, a cold Maven resolve of the JVM components included.
pub const LOCAL_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether a test needing real services can run: true when every named program is found. Otherwise it prints
/// `skipped: …` and returns false — or panics when `ETL_HARNESS_REQUIRE_REAL=1` (CI), where a skip would hide a
/// missing service.
pub fn real_services_available(programs: &[&str]) -> bool {
    use openmrs_etl_harness::topology::local::prerequisites::missing_programs;
    let missing: Vec<String> = missing_programs()
        .into_iter()
        .filter(|p| programs.contains(&p.name))
        .map(|p| {
            format!(
                "{} not found ({}); install with {}",
                p.name, p.purpose, p.install
            )
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join("; ");
    if std::env::var("ETL_HARNESS_REQUIRE_REAL").is_ok_and(|v| v == "1") {
        panic!("ETL_HARNESS_REQUIRE_REAL=1 requires the real services, but {reason}");
    }
    println!("skipped: {reason}");
    false
}

/// A MariaDB server with the schema fixture loaded, on a free 127.0.0.1 port (killed on drop). The tests check
/// what is stored, not durability: the fsync per commit is off.
pub async fn start_mariadb() -> openmrs_etl_harness::topology::local::StandaloneMariaDb {
    use mysql_async::prelude::Queryable;
    use openmrs_etl_harness::topology::local::{LocalTopologyOptions, StandaloneMariaDb};
    use openmrs_etl_harness::workload::reference;
    let server = tokio::time::timeout(
        Duration::from_secs(120),
        StandaloneMariaDb::start(&LocalTopologyOptions::new(reference::schema_fixture_sql())),
    )
    .await
    .expect("MariaDB started within 120 s")
    .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = mysql_async::Conn::from_url(server.endpoint().url().as_str())
        .await
        .unwrap();
    conn.query_drop("SET GLOBAL innodb_flush_log_at_trx_commit = 0")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    server
}

/// ZooKeeper and one real Kafka 3.9.1 broker as local processes (killed on drop).
pub async fn start_real_kafka() -> openmrs_etl_harness::topology::local::StandaloneKafka {
    use openmrs_etl_harness::topology::local::{LocalTopologyOptions, StandaloneKafka};
    init_tracing();
    tokio::time::timeout(
        Duration::from_secs(600),
        StandaloneKafka::start(&LocalTopologyOptions::new(String::new())),
    )
    .await
    .expect("Kafka starts within 10 minutes")
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Polls Metadata until `done` holds or `timeout` passes; returns the last answer and the time it took.
pub async fn wait_for_metadata(
    topology: &LocalTopology,
    topics: &[String],
    timeout: Duration,
    what: &str,
    done: impl Fn(&ClusterMetadata) -> bool,
) -> (ClusterMetadata, Duration) {
    wait_for_views(topology, topics, &[], timeout, what, done).await
}

/// Polls Metadata until `done` holds for the answer of every broker in `askers`, each asked directly (empty: the
/// first broker that answers), or `timeout` passes; returns the first asker's answer and the time it took. A
/// broker that was just isolated answers from what it knew, so a condition that must hold cluster-wide asks all.
pub async fn wait_for_views(
    topology: &LocalTopology,
    topics: &[String],
    askers: &[i32],
    timeout: Duration,
    what: &str,
    done: impl Fn(&ClusterMetadata) -> bool,
) -> (ClusterMetadata, Duration) {
    let started = std::time::Instant::now();
    loop {
        let mut answers = if askers.is_empty() {
            vec![topology.metadata(Some(topics)).await]
        } else {
            let mut answers = Vec::new();
            for id in askers {
                answers.push(topology.broker_metadata(*id, Some(topics)).await);
            }
            answers
        };
        let last = match answers
            .iter()
            .find(|answer| !answer.as_ref().is_ok_and(&done))
        {
            None => {
                let first = answers
                    .swap_remove(0)
                    .expect("every answer satisfied `done`");
                return (first, started.elapsed());
            }
            Some(Ok(answer)) => format!("{answer:?}"),
            Some(Err(error)) => error.to_string(),
        };
        if started.elapsed() > timeout {
            panic!(
                "{what}: not within {timeout:?}; last Metadata: {last}\nlogs: {}",
                topology.run_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every shipped scenario (`scenarios/*.toml`, by file name) whose `backends` lists `backend`, parsed: the one
/// list the tests run on each backend, so a scenario that lists a backend is run there and none is forgotten. A
/// shipped file that does not parse fails the caller.
pub fn shipped_scenarios(
    backend: openmrs_etl_harness::scenario::Backend,
) -> Vec<(String, openmrs_etl_harness::scenario::Scenario)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scenario files in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let shown = format!(
                "scenarios/{}",
                path.file_name().expect("a file name").to_string_lossy()
            );
            let scenario = openmrs_etl_harness::scenario::Scenario::load(&path)
                .unwrap_or_else(|e| panic!("{shown}: {e}"));
            (shown, scenario)
        })
        .filter(|(_, scenario)| scenario.backends.contains(&backend))
        .collect()
}

/// A small scenario that runs in well under a second on the embedded backend: 3 brokers, RF 3, min ISR 2,
/// acks=all, 300 operations, 2 consumers; `extra` is appended (an `[expect]` table, faults).
pub fn small_scenario(name: &str, seed: u64, extra: &str) -> String {
    format!(
        r#"name = "{name}"
seed = {seed}

[topology]
brokers = 3

[topics]
partitions = 2
replication_factor = 3
min_insync_replicas = 2

[producer]
acks = "all"
linger = "2ms"

[workload]
patients = 30
operations = 300
rate = 3000

[pipeline]
consumers = 2

{extra}"#
    )
}

/// kcat, or `None` (after saying why) when the test may be skipped; with ETL_HARNESS_REQUIRE_REAL=1 a missing kcat
/// fails the test.
pub fn kcat() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kcat"))
            .find(|c| c.is_file())
    });
    if found.is_none() {
        if std::env::var("ETL_HARNESS_REQUIRE_REAL").as_deref() == Ok("1") {
            panic!("kcat is not on PATH but ETL_HARNESS_REQUIRE_REAL=1 requires it (apt-get install kcat)");
        }
        println!("skipped: kcat is not on PATH (apt-get install kcat)");
    }
    found
}

/// The container daemon, when one answers at the Docker API testcontainers 0.28 speaks. Without one, tests print
/// "skipped: no container daemon" and return, unless `ETL_HARNESS_REQUIRE_REAL=1` (CI) makes that a failure.
pub async fn container_daemon() -> Option<openmrs_etl_harness::topology::containers::daemon::Daemon>
{
    match openmrs_etl_harness::topology::containers::daemon::connect().await {
        Ok(daemon) => Some(daemon),
        Err(e) => {
            if std::env::var("ETL_HARNESS_REQUIRE_REAL").is_ok_and(|v| v == "1") {
                panic!("ETL_HARNESS_REQUIRE_REAL=1 requires a container daemon: {e}");
            }
            println!("skipped: no container daemon ({e})");
            None
        }
    }
}

/// Scenario text with its `backends = …` line replaced by `backends = [<list>]` (`list`: `"embedded"`, …), whatever
/// backends the shipped file lists.
pub fn with_backends(text: &str, list: &[&str]) -> String {
    let listed = list
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    text.lines()
        .map(|line| {
            if line.starts_with("backends = ") {
                format!("backends = [{listed}]\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// The embedded cluster's record batch memory once its spilling thread has brought it within `budget` (it spills
/// off the produce path); panics after 10 s.
pub async fn log_memory_within(
    cluster: &openmrs_etl_harness::broker::Cluster,
    budget: u64,
) -> openmrs_etl_harness::broker::SpillStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = cluster.log_memory().expect("a memory budget was set");
        if stats.resident_bytes <= budget {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never within {budget} bytes: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
