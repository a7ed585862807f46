//! Logs on disk: a cluster stopped and started again on the same directory serves the same topics, configs,
//! records (byte for byte), offsets and log start offsets; retention and DeleteRecords keep working after the
//! restart; a torn tail is cut back to the last whole batch; a corrupt batch in the middle stops the start with an
//! error that names the file and the offset. Replicated topics keep every replica in its own broker's directory:
//! a restart serves every acknowledged record with the followers in sync, truncation by the replication protocol
//! and a crash's lost tail reach the files. Every cluster gets its own temporary directory.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, call, client, partition, raw, read_all, record, tombstone};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{DescribeConfigsRequest, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use openmrs_etl_harness::broker::{Cluster, ClusterBuilder, ClusterError, NewTopic, StorageError};
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::{BrokerId, ClusterEventKind, DeletionReason, TruncationReason};
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient};
use tokio::net::TcpStream;

const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// What a consumer sees of one partition, read with a raw Fetch (v11) from its leader.
#[derive(Debug, PartialEq, Eq)]
struct RawPartition {
    high_watermark: i64,
    log_start_offset: i64,
    records: Option<Bytes>,
}

fn leader_addr(cluster: &Cluster, topic: &str, partition: usize) -> std::net::SocketAddr {
    let leader =
        cluster.partition_leaders(topic).expect("topic exists")[partition].expect("a leader");
    cluster.broker_addrs()[leader.0 as usize - 1]
}

/// One Fetch of `topic`-`partition` at `offset` → (error code, what it returned).
async fn raw_fetch(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, RawPartition) {
    let addr = leader_addr(cluster, topic, partition as usize);
    let mut stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(64 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(64 << 20)])]);
    let response = call(&mut stream, &request, 11).await;
    let data = &response.responses[0].partitions[0];
    let raw = RawPartition {
        high_watermark: data.high_watermark,
        log_start_offset: data.log_start_offset,
        records: data.records.clone(),
    };
    (data.error_code, raw)
}

/// Every partition of `topic`, fetched from its log start offset.
async fn raw_fetch_all(cluster: &Cluster, topic: &str) -> Vec<RawPartition> {
    let partitions = cluster
        .partition_leaders(topic)
        .expect("topic exists")
        .len();
    let mut out = Vec::new();
    for p in 0..partitions as i32 {
        // Below the log start offset the answer is OFFSET_OUT_OF_RANGE, with the log start offset to go to.
        let (mut error, mut raw) = raw_fetch(cluster, topic, p, 0).await;
        if error == OFFSET_OUT_OF_RANGE {
            (error, raw) = raw_fetch(cluster, topic, p, raw.log_start_offset).await;
        }
        assert_eq!(error, 0, "fetch {topic}-{p}");
        out.push(raw);
    }
    out
}

/// The topic's configs as DescribeConfigs (v1) reports them, from the controller.
async fn topic_configs(cluster: &Cluster, topic: &str) -> BTreeMap<String, String> {
    let addr = cluster.broker_addrs()[cluster.controller().0 as usize - 1];
    let mut stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None)]);
    let response = call(&mut stream, &request, 1).await;
    let result = &response.results[0];
    assert_eq!(result.error_code, 0, "describe {topic}");
    result
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

async fn produce(
    pc: &PartitionClient,
    records: Vec<rskafka::record::Record>,
    compression: Compression,
) -> Vec<i64> {
    bounded("produce", pc.produce(records, compression))
        .await
        .unwrap()
}

async fn offset(pc: &PartitionClient, at: OffsetAt) -> i64 {
    bounded("list offsets", pc.get_offset(at)).await.unwrap()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

fn partition_dir(root: &Path, cluster: &Cluster, topic: &str, partition: usize) -> PathBuf {
    let leader = cluster.partition_leaders(topic).unwrap()[partition].unwrap();
    root.join(format!("broker-{leader}"))
        .join(format!("{topic}-{partition}"))
}

fn builder(dir: &Path, clock: &Clock) -> ClusterBuilder {
    let mut builder = Cluster::builder();
    builder.brokers(3).clock(clock.clone()).log_dir(dir);
    builder
}

#[tokio::test]
async fn a_restarted_cluster_serves_the_same_topics_configs_records_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::virtual_at(T0);
    let mut builder = builder(dir.path(), &clock);
    builder.topic(
        NewTopic::new("visits", 3)
            .config("segment.bytes", "400")
            .config("retention.ms", (90 * MINUTE).to_string()),
    );
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    for p in 0..3 {
        let pc = partition(&kafka, "visits", p).await;
        for batch in 0..6i64 {
            let records = (0..4)
                .map(|i| {
                    record(
                        &format!("k{i}"),
                        &format!("p{p}-b{batch}-v{i}"),
                        T0 + batch * 1_000 + i,
                    )
                })
                .collect();
            let compression = if batch % 2 == 0 {
                Compression::NoCompression
            } else {
                Compression::Zstd
            };
            produce(&pc, records, compression).await;
        }
    }
    // DeleteRecords in the middle of a segment: the log start offset lives in the checkpoint file.
    let pc0 = partition(&kafka, "visits", 0).await;
    bounded("delete records", pc0.delete_records(6, 5_000))
        .await
        .unwrap();
    assert_eq!(offset(&pc0, OffsetAt::Earliest).await, 6);

    let before = raw_fetch_all(&cluster, "visits").await;
    let configs_before = topic_configs(&cluster, "visits").await;
    let leaders_before = cluster.partition_leaders("visits").unwrap();
    let segments_before = segment_files(&partition_dir(dir.path(), &cluster, "visits", 1));
    assert!(
        segments_before.len() > 1,
        "segment.bytes=400 rolls: {segments_before:?}"
    );
    assert_eq!(segments_before[0], "00000000000000000000.log");
    cluster.shutdown().await;

    let cluster = builder.start().await.unwrap();
    assert_eq!(cluster.partition_leaders("visits").unwrap(), leaders_before);
    assert_eq!(raw_fetch_all(&cluster, "visits").await, before);
    assert_eq!(topic_configs(&cluster, "visits").await, configs_before);
    assert_eq!(
        configs_before.get("segment.bytes").map(String::as_str),
        Some("400")
    );
    assert_eq!(
        segment_files(&partition_dir(dir.path(), &cluster, "visits", 1)),
        segments_before
    );
    let loaded: Vec<(i32, i64, i64, u64)> = cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::LogLoaded {
                partition,
                log_start_offset,
                log_end_offset,
                truncated_bytes,
                ..
            } => Some((partition, log_start_offset, log_end_offset, truncated_bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(loaded, vec![(0, 6, 24, 0), (1, 0, 24, 0), (2, 0, 24, 0)]);

    // Clients see the same records and offsets, and appends continue at the log end offset.
    let kafka = client(&cluster.bootstrap_servers()).await;
    for p in 0..3 {
        let pc = partition(&kafka, "visits", p).await;
        let start = if p == 0 { 6 } else { 0 };
        let records = read_all(&pc, start).await;
        assert_eq!(records.len(), 24 - start as usize);
        assert_eq!(records[0].0, start);
        assert_eq!(offset(&pc, OffsetAt::Earliest).await, start);
        assert_eq!(offset(&pc, OffsetAt::Latest).await, 24);
        let offsets = produce(
            &pc,
            vec![record("k", "after restart", T0 + 10_000)],
            Compression::NoCompression,
        )
        .await;
        assert_eq!(offsets, vec![24]);
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn retention_and_delete_records_keep_working_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::virtual_at(T0);
    let mut builder = builder(dir.path(), &clock);
    builder.topic(
        NewTopic::new("vitals", 1)
            .config("retention.ms", (60 * MINUTE).to_string())
            .config("segment.ms", (10 * MINUTE).to_string()),
    );
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "vitals", 0).await;
    // Four batches 15 minutes apart, each in its own segment.
    for batch in 0..4 {
        let ts = T0 + batch * 15 * MINUTE;
        let records = (0..3)
            .map(|i| record(&format!("k{i}"), &format!("b{batch}-{i}"), ts))
            .collect();
        produce(&pc, records, Compression::NoCompression).await;
    }
    let pdir = partition_dir(dir.path(), &cluster, "vitals", 0);
    assert_eq!(segment_files(&pdir).len(), 4);
    cluster.shutdown().await;

    // Started again later: the first segment's records are more than an hour old at the first check after T0+65m.
    clock.advance(Duration::from_secs(62 * 60)).unwrap();
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "vitals", 0).await;
    assert_eq!(offset(&pc, OffsetAt::Earliest).await, 0);
    clock.advance(Duration::from_secs(5 * 60)).unwrap();
    assert_eq!(offset(&pc, OffsetAt::Earliest).await, 3);
    let deleted: Vec<_> = cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::SegmentDeleted {
                start_offset,
                end_offset,
                reason,
                ..
            } => Some((start_offset, end_offset, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![(0, 3, DeletionReason::RetentionTime)]);
    assert_eq!(
        segment_files(&pdir),
        vec![
            "00000000000000000003.log",
            "00000000000000000006.log",
            "00000000000000000009.log"
        ]
    );
    let below = bounded("fetch below start", pc.fetch_records(0, 1..1_000_000, 10)).await;
    assert!(
        matches!(
            below,
            Err(ClientError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            })
        ),
        "{below:?}"
    );

    // DeleteRecords after the restart removes the segments below it and survives the next restart.
    bounded("delete records", pc.delete_records(7, 5_000))
        .await
        .unwrap();
    assert_eq!(offset(&pc, OffsetAt::Earliest).await, 7);
    assert_eq!(
        segment_files(&pdir),
        vec!["00000000000000000006.log", "00000000000000000009.log"]
    );
    cluster.shutdown().await;

    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "vitals", 0).await;
    assert_eq!(offset(&pc, OffsetAt::Earliest).await, 7);
    assert_eq!(offset(&pc, OffsetAt::Latest).await, 12);
    let values: Vec<_> = read_all(&pc, 7)
        .await
        .into_iter()
        .map(|r| r.2.unwrap())
        .collect();
    assert_eq!(values, vec!["b2-1", "b2-2", "b3-0", "b3-1", "b3-2"]);

    // An hour later everything is old, the active segment included: an empty segment file at the log end offset
    // is all that is left, and it is enough for the next start to know where the log ends.
    clock.advance(Duration::from_secs(60 * 60)).unwrap();
    assert_eq!(offset(&pc, OffsetAt::Earliest).await, 12);
    assert_eq!(segment_files(&pdir), vec!["00000000000000000012.log"]);
    cluster.shutdown().await;
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "vitals", 0).await;
    assert_eq!(offset(&pc, OffsetAt::Earliest).await, 12);
    assert_eq!(offset(&pc, OffsetAt::Latest).await, 12);
    cluster.shutdown().await;
}

#[tokio::test]
async fn compacted_segments_are_rewritten_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::virtual_at(T0);
    let mut builder = builder(dir.path(), &clock);
    builder.topic(
        NewTopic::new("patients", 1)
            .config("cleanup.policy", "compact")
            .config("segment.ms", MINUTE.to_string())
            .config("delete.retention.ms", "0"),
    );
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "patients", 0).await;
    produce(
        &pc,
        vec![record("a", "1", T0), record("b", "1", T0)],
        Compression::NoCompression,
    )
    .await;
    produce(
        &pc,
        vec![
            record("a", "2", T0 + 2 * MINUTE),
            tombstone("b", T0 + 2 * MINUTE),
        ],
        Compression::NoCompression,
    )
    .await;
    produce(
        &pc,
        vec![record("c", "1", T0 + 4 * MINUTE)],
        Compression::NoCompression,
    )
    .await;
    // Two retention checks: the first compacts and notes the tombstone, the second drops it.
    clock.advance(Duration::from_secs(10 * 60)).unwrap();
    let compacted: Vec<_> = read_all(&pc, 0).await;
    assert_eq!(
        compacted,
        vec![
            (2, "a".to_string(), Some("2".to_string())),
            (4, "c".to_string(), Some("1".to_string()))
        ]
    );
    let before = raw_fetch_all(&cluster, "patients").await;
    cluster.shutdown().await;

    let cluster = builder.start().await.unwrap();
    assert_eq!(raw_fetch_all(&cluster, "patients").await, before);
    cluster.shutdown().await;
}

/// Produces three batches of three records each to a 1-partition topic, stops the cluster, and
/// returns the builder, the last segment file and the byte length of each batch in it.
async fn three_batches_on_disk(dir: &Path) -> (ClusterBuilder, PathBuf, Vec<usize>) {
    let clock = Clock::virtual_at(T0);
    let mut builder = builder(dir, &clock);
    builder.topic(NewTopic::new("obs", 1));
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "obs", 0).await;
    let mut sizes = Vec::new();
    let mut stored = 0;
    for batch in 0..3 {
        let records = (0..3)
            .map(|i| record(&format!("k{i}"), &format!("b{batch}-{i}"), T0 + i))
            .collect();
        produce(&pc, records, Compression::NoCompression).await;
        let now = cluster.stored_bytes("obs").unwrap()[0] as usize;
        sizes.push(now - stored);
        stored = now;
    }
    let file = partition_dir(dir, &cluster, "obs", 0).join("00000000000000000000.log");
    cluster.shutdown().await;
    assert_eq!(fs::metadata(&file).unwrap().len() as usize, stored);
    (builder, file, sizes)
}

#[tokio::test]
async fn a_torn_tail_is_cut_back_to_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (builder, file, sizes) = three_batches_on_disk(dir.path()).await;
    let whole = (sizes[0] + sizes[1]) as u64;
    let len = fs::metadata(&file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let cluster = builder.start().await.unwrap();
    assert_eq!(
        fs::metadata(&file).unwrap().len(),
        whole,
        "truncated to the end of batch 2"
    );
    let truncated: Vec<_> = cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::LogLoaded {
                log_end_offset,
                truncated_bytes,
                ..
            } => Some((log_end_offset, truncated_bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(truncated, vec![(6, sizes[2] as u64 - 5)]);
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "obs", 0).await;
    assert_eq!(offset(&pc, OffsetAt::Latest).await, 6);
    let values: Vec<_> = read_all(&pc, 0)
        .await
        .into_iter()
        .map(|r| r.2.unwrap())
        .collect();
    assert_eq!(values, vec!["b0-0", "b0-1", "b0-2", "b1-0", "b1-1", "b1-2"]);
    // The log goes on from the cut: the next batch gets offset 6 and survives another restart.
    assert_eq!(
        produce(
            &pc,
            vec![record("k", "after", T0 + 9)],
            Compression::NoCompression
        )
        .await,
        vec![6]
    );
    cluster.shutdown().await;
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "obs", 0).await;
    assert_eq!(read_all(&pc, 6).await[0].2.as_deref(), Some("after"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_batch_in_the_middle_stops_the_start_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (builder, file, sizes) = three_batches_on_disk(dir.path()).await;
    // Flip a byte inside the second batch's records: its CRC no longer matches, and a whole batch follows it.
    let mut bytes = fs::read(&file).unwrap();
    let inside = sizes[0] + sizes[1] - 3;
    bytes[inside] ^= 0xff;
    fs::write(&file, &bytes).unwrap();

    let error = match builder.start().await {
        Err(error) => error,
        Ok(_) => panic!("a corrupt segment must stop the start"),
    };
    match &error {
        ClusterError::Storage(StorageError::CorruptSegment {
            path,
            position,
            offset,
            ..
        }) => {
            assert_eq!(path, &file);
            assert_eq!(*position, sizes[0] as u64);
            assert_eq!(*offset, 3);
        }
        other => panic!("expected CorruptSegment, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("CRC"),
        "{message}"
    );
    // Nothing was cut: the operator decides.
    assert_eq!(fs::read(&file).unwrap(), bytes);
}

#[tokio::test]
async fn an_unusable_log_dir_is_a_typed_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("a-file");
    fs::write(&not_a_dir, b"x").unwrap();
    let error = match builder(&not_a_dir, &Clock::virtual_at(T0)).start().await {
        Err(error) => error,
        Ok(_) => panic!("a file is not a log directory"),
    };
    assert!(
        matches!(error, ClusterError::Storage(StorageError::Io { .. })),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&not_a_dir.display().to_string()),
        "{error}"
    );

    // A directory of another cluster is refused too.
    let used = dir.path().join("used");
    let cluster = builder(&used, &Clock::virtual_at(T0))
        .start()
        .await
        .unwrap();
    cluster.shutdown().await;
    let error = match builder(&used, &Clock::virtual_at(T0))
        .cluster_id("other")
        .start()
        .await
    {
        Err(error) => error,
        Ok(_) => panic!("another cluster's directory"),
    };
    assert!(
        matches!(
            error,
            ClusterError::Storage(StorageError::ClusterIdMismatch { .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_deleted_topic_leaves_no_files_and_does_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::virtual_at(T0);
    let builder = builder(dir.path(), &clock);
    let cluster = builder.start().await.unwrap();
    cluster.create_topic(NewTopic::new("gone", 2)).unwrap();
    let dirs: Vec<_> = (0..2)
        .map(|p| partition_dir(dir.path(), &cluster, "gone", p))
        .collect();
    assert!(dirs.iter().all(|d| d.is_dir()));
    cluster.delete_topic("gone").unwrap();
    assert!(dirs.iter().all(|d| !d.exists()));
    cluster.shutdown().await;
    let cluster = builder.start().await.unwrap();
    assert!(cluster.partition_leaders("gone").is_none());
    cluster.shutdown().await;
}

fn replica_dir(root: &Path, broker: BrokerId, topic: &str, partition: i32) -> PathBuf {
    root.join(format!("broker-{broker}"))
        .join(format!("{topic}-{partition}"))
}

/// The bytes of every segment file of one replica, concatenated in offset order.
fn replica_bytes(root: &Path, broker: BrokerId, topic: &str, partition: i32) -> Vec<u8> {
    let dir = replica_dir(root, broker, topic, partition);
    segment_files(&dir)
        .iter()
        .flat_map(|name| fs::read(dir.join(name)).unwrap())
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// (broker, log end offset) of every LogLoaded event for `topic`-0.
fn loaded_replicas(cluster: &Cluster, topic: &str) -> Vec<(BrokerId, i64)> {
    cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::LogLoaded {
                broker,
                topic: t,
                partition: 0,
                log_end_offset,
                ..
            } if t == topic => Some((broker, log_end_offset)),
            _ => None,
        })
        .collect()
}

fn raw_values(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// Moves the virtual clock by `total` in half-second steps, letting the brokers' tasks run in between.
async fn advance(cluster: &Cluster, total: Duration) {
    let step = Duration::from_millis(500);
    let mut done = Duration::ZERO;
    while done < total {
        cluster.clock().advance(step).unwrap();
        done += step;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_replicated_topic_restarts_with_every_replica_from_its_own_broker_directory() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::virtual_at(T0);
    let mut builder = builder(dir.path(), &clock);
    builder.topic(
        NewTopic::new("obs", 1)
            .replication_factor(3)
            .config("min.insync.replicas", "2")
            .config("segment.bytes", "400"),
    );
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "obs", 0).await;
    let mut acked = Vec::new();
    for batch in 0..10 {
        let records = (0..3)
            .map(|i| record("k", &format!("b{batch}-{i}"), T0 + i))
            .collect();
        // rskafka produces with acks=all: an offset back means the ISR has it.
        let offsets = produce(&pc, records, Compression::NoCompression).await;
        acked.extend(
            offsets
                .into_iter()
                .zip((0..3).map(|i| format!("b{batch}-{i}"))),
        );
    }
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    let view = cluster.partition("obs", 0).unwrap();
    assert_eq!(view.replicas.len(), 3);
    let leader_files = replica_bytes(dir.path(), view.leader.unwrap(), "obs", 0);
    for &broker in &view.replicas {
        let rdir = replica_dir(dir.path(), broker, "obs", 0);
        assert!(
            segment_files(&rdir).len() > 1,
            "segment.bytes=400 rolls on {broker}"
        );
        assert_eq!(
            replica_bytes(dir.path(), broker, "obs", 0),
            leader_files,
            "replica on {broker}"
        );
        assert_eq!(
            fs::read_to_string(rdir.join("leader-epoch-checkpoint")).unwrap(),
            "0\n1\n0 0\n",
            "epoch 0 from offset 0 on {broker}"
        );
    }
    cluster.shutdown().await;
    for &broker in &view.replicas {
        let checkpoint = fs::read_to_string(
            dir.path()
                .join(format!("broker-{broker}"))
                .join("replication-offset-checkpoint"),
        )
        .unwrap();
        assert_eq!(checkpoint, "0\n1\nobs 0 30\n", "high watermark of {broker}");
    }

    let cluster = builder.start().await.unwrap();
    assert_eq!(
        loaded_replicas(&cluster, "obs"),
        view.replicas.iter().map(|&b| (b, 30)).collect::<Vec<_>>()
    );
    let after = cluster.partition("obs", 0).unwrap();
    assert_eq!(after.leader, view.leader);
    assert_eq!(
        after.isr, view.replicas,
        "every replica ends where the leader does"
    );
    assert_eq!(after.high_watermark, 30);
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "obs", 0).await;
    let read: Vec<(i64, String)> = read_all(&pc, 0)
        .await
        .into_iter()
        .map(|(offset, _, value)| (offset, value.unwrap()))
        .collect();
    assert_eq!(read, acked);
    // Replication goes on from the files: a new record reaches every replica's directory.
    let offsets = produce(
        &pc,
        vec![record("k", "after", T0 + 9)],
        Compression::NoCompression,
    )
    .await;
    assert_eq!(offsets, vec![30]);
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    cluster.flush().unwrap();
    let leader_files = replica_bytes(dir.path(), after.leader.unwrap(), "obs", 0);
    assert!(contains(&leader_files, "after"));
    for &broker in &view.replicas {
        assert_eq!(
            replica_bytes(dir.path(), broker, "obs", 0),
            leader_files,
            "replica on {broker}"
        );
    }
    cluster.shutdown().await;

    // A replica directory that is gone is an empty replica, filled again by replication.
    let lost = view.replicas[2];
    fs::remove_dir_all(replica_dir(dir.path(), lost, "obs", 0)).unwrap();
    let cluster = builder.start().await.unwrap();
    assert!(loaded_replicas(&cluster, "obs").contains(&(lost, 0)));
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    cluster.flush().unwrap();
    assert_eq!(
        replica_bytes(dir.path(), lost, "obs", 0),
        replica_bytes(dir.path(), after.leader.unwrap(), "obs", 0)
    );
    assert_eq!(cluster.partition("obs", 0).unwrap().isr, view.replicas);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_follower_truncated_by_replication_has_its_files_truncated_too() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::virtual_at(T0);
    let mut builder = builder(dir.path(), &clock);
    builder.topic(NewTopic::new("obs", 1).replication_factor(3));
    let cluster = builder.start().await.unwrap();
    let view = cluster.partition("obs", 0).unwrap();
    let leader = view.leader.unwrap();
    let followers: Vec<BrokerId> = view
        .replicas
        .iter()
        .copied()
        .filter(|b| *b != leader)
        .collect();
    let addr = |b: BrokerId| cluster.broker_addrs()[(b.0 - 1) as usize];

    for chunk in raw_values("a", 0..10).chunks(5) {
        let (error, _) = raw::produce(addr(leader), "obs", 0, -1, chunk)
            .await
            .unwrap();
        assert_eq!(error, 0);
    }
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    // acks=1 records only the leader gets: its followers are paused.
    for f in &followers {
        cluster.pause(*f).unwrap();
    }
    for chunk in raw_values("b", 0..20).chunks(4) {
        let (error, _) = raw::produce(addr(leader), "obs", 0, 1, chunk)
            .await
            .unwrap();
        assert_eq!(error, 0);
    }
    cluster.kill(leader).await.unwrap();
    cluster.flush().unwrap();
    assert!(
        contains(&replica_bytes(dir.path(), leader, "obs", 0), "b19"),
        "kill keeps the page cache"
    );
    for f in &followers {
        cluster.resume(*f).unwrap();
    }
    advance(&cluster, Duration::from_secs(20)).await;
    let new_leader = cluster.partition("obs", 0).unwrap().leader.unwrap();
    assert!(followers.contains(&new_leader));
    for chunk in raw_values("c", 0..5).chunks(5) {
        let (error, base) = raw::produce(addr(new_leader), "obs", 0, -1, chunk)
            .await
            .unwrap();
        assert_eq!((error, base), (0, 10));
    }
    cluster.restart(leader).await.unwrap();
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    cluster.flush().unwrap();

    let truncated: Vec<(BrokerId, i64, i64)> = cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::Truncated {
                broker,
                start_offset,
                end_offset,
                reason: TruncationReason::DivergingEpoch,
                ..
            } => Some((broker, start_offset, end_offset)),
            _ => None,
        })
        .collect();
    assert_eq!(truncated, vec![(leader, 10, 30)]);
    // The old leader's files: the acks=1 tail cut off, the new leader's epoch copied after it.
    let old = replica_bytes(dir.path(), leader, "obs", 0);
    assert!(
        !contains(&old, "b0"),
        "the diverged tail is gone from the file"
    );
    assert_eq!(old, replica_bytes(dir.path(), new_leader, "obs", 0));
    assert_eq!(
        fs::read_to_string(
            replica_dir(dir.path(), leader, "obs", 0).join("leader-epoch-checkpoint")
        )
        .unwrap(),
        "0\n2\n0 0\n1 10\n"
    );
    cluster.shutdown().await;

    // A restart reads the truncated state back.
    let cluster = builder.start().await.unwrap();
    let loaded = loaded_replicas(&cluster, "obs");
    assert_eq!(loaded.len(), 3);
    assert!(loaded.iter().all(|&(_, leo)| leo == 15), "{loaded:?}");
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "obs", 0).await;
    let values: Vec<String> = read_all(&pc, 0)
        .await
        .into_iter()
        .filter_map(|r| r.2)
        .collect();
    let expected: Vec<String> = raw_values("a", 0..10)
        .into_iter()
        .chain(raw_values("c", 0..5))
        .collect();
    assert_eq!(values, expected);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_crash_with_a_log_dir_cuts_the_unflushed_tail_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::virtual_at(T0);
    let mut builder = builder(dir.path(), &clock);
    builder
        .flush_interval(Some(Duration::from_secs(60)))
        .topic(NewTopic::new("obs", 1).replication_factor(3));
    let cluster = builder.start().await.unwrap();
    let kafka = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&kafka, "obs", 0).await;
    let batch = |name: &str| {
        (0..3)
            .map(|i| record("k", &format!("{name}{i}"), T0 + i))
            .collect::<Vec<_>>()
    };
    produce(&pc, batch("flushed"), Compression::NoCompression).await;
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    let flushed_bytes = cluster.stored_bytes("obs").unwrap()[0];
    // The flush timer (log.flush.interval.ms) makes the first batch durable on every broker.
    advance(&cluster, Duration::from_secs(60)).await;
    produce(&pc, batch("unflushed"), Compression::NoCompression).await;
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    let all_bytes = cluster.stored_bytes("obs").unwrap()[0];
    assert!(all_bytes > flushed_bytes);

    let view = cluster.partition("obs", 0).unwrap();
    let follower = view
        .replicas
        .iter()
        .copied()
        .find(|b| Some(*b) != view.leader)
        .unwrap();
    let segment = replica_dir(dir.path(), follower, "obs", 0).join("00000000000000000000.log");
    cluster.crash(follower).await.unwrap();
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        flushed_bytes,
        "exactly the unflushed tail is gone"
    );
    let on_disk = fs::read(&segment).unwrap();
    assert!(contains(&on_disk, "flushed2") && !contains(&on_disk, "unflushed0"));
    let crashed: Vec<_> = cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::Truncated {
                broker,
                start_offset,
                end_offset,
                reason: TruncationReason::Crash,
                ..
            } => Some((broker, start_offset, end_offset)),
            _ => None,
        })
        .collect();
    assert_eq!(crashed, vec![(follower, 3, 6)]);
    let leader_segment =
        replica_dir(dir.path(), view.leader.unwrap(), "obs", 0).join("00000000000000000000.log");
    cluster.flush().unwrap();
    assert_eq!(
        fs::metadata(&leader_segment).unwrap().len(),
        all_bytes,
        "the leader keeps everything"
    );
    cluster.shutdown().await;

    // Started again: the crashed replica comes back short, out of the ISR, and catches up by replication.
    let cluster = builder.start().await.unwrap();
    let loaded = loaded_replicas(&cluster, "obs");
    assert!(loaded.contains(&(follower, 3)), "{loaded:?}");
    let after = cluster.partition("obs", 0).unwrap();
    assert_eq!(after.leader, view.leader);
    assert!(!after.isr.contains(&follower), "{after:?}");
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    cluster.flush().unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), all_bytes);
    assert_eq!(cluster.partition("obs", 0).unwrap().isr, view.replicas);
    cluster.shutdown().await;
}
