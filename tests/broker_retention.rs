//! Retention, DeleteRecords and compaction on a virtual clock, observed through rskafka and the event log.
//! Seven-day settings are not needed: an hour of retention passes in microseconds when the test advances the clock.

mod common;

use std::time::Duration;

use common::{bounded, client, partition, read_all, record, tombstone};
use openmrs_etl_harness::broker::{Cluster, NewTopic};
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::{ClusterEventKind, DeletionReason};
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient};

const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

async fn produce(pc: &PartitionClient, records: Vec<rskafka::record::Record>) -> Vec<i64> {
    bounded("produce", pc.produce(records, Compression::NoCompression))
        .await
        .unwrap()
}

async fn earliest(pc: &PartitionClient) -> i64 {
    bounded("earliest", pc.get_offset(OffsetAt::Earliest))
        .await
        .unwrap()
}

fn deleted_ranges(cluster: &Cluster, topic: &str) -> Vec<(i64, i64, DeletionReason)> {
    cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::SegmentDeleted {
                topic: t,
                start_offset,
                end_offset,
                reason,
                ..
            } if t == topic => Some((start_offset, end_offset, reason)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn time_retention_deletes_old_segments_one_by_one_and_moves_the_log_start_offset() {
    let cluster = Cluster::builder()
        .brokers(3)
        .clock(Clock::virtual_at(T0))
        .topic(
            NewTopic::new("vitals", 1)
                .config("retention.ms", (60 * MINUTE).to_string())
                .config("segment.ms", (10 * MINUTE).to_string()),
        )
        .start()
        .await
        .unwrap();
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "vitals", 0).await;
    // Four batches 15 minutes apart (CreateTime from the producer): each starts a new segment (segment.ms 10 min).
    for batch in 0..4 {
        let ts = T0 + batch * 15 * MINUTE;
        produce(
            &pc,
            (0..3)
                .map(|i| record(&format!("k{i}"), &format!("b{batch}-{i}"), ts))
                .collect(),
        )
        .await;
    }
    assert_eq!(earliest(&pc).await, 0);

    // The retention check runs every 5 minutes of clock time: at T0+60m nothing is older than an hour yet, at
    // T0+65m the first segment (largest timestamp T0) is, and only that one.
    cluster
        .clock()
        .advance(Duration::from_secs(60 * 60))
        .unwrap();
    assert_eq!(earliest(&pc).await, 0);
    cluster
        .clock()
        .advance(Duration::from_secs(6 * 60))
        .unwrap();
    assert_eq!(earliest(&pc).await, 3);
    assert_eq!(
        deleted_ranges(&cluster, "vitals"),
        vec![(0, 3, DeletionReason::RetentionTime)]
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
    assert_eq!(read_all(&pc, 3).await.len(), 9);

    // 30 more minutes: the segments of T0+15m and T0+30m go too, in order.
    cluster
        .clock()
        .advance(Duration::from_secs(30 * 60))
        .unwrap();
    assert_eq!(earliest(&pc).await, 9);
    // Then the last (active) segment: it is deleted once it qualifies, an empty one takes its place.
    cluster
        .clock()
        .advance(Duration::from_secs(30 * 60))
        .unwrap();
    assert_eq!(earliest(&pc).await, 12);
    assert_eq!(
        bounded("latest", pc.get_offset(OffsetAt::Latest))
            .await
            .unwrap(),
        12
    );
    assert_eq!(
        deleted_ranges(&cluster, "vitals"),
        vec![
            (0, 3, DeletionReason::RetentionTime),
            (3, 6, DeletionReason::RetentionTime),
            (6, 9, DeletionReason::RetentionTime),
            (9, 12, DeletionReason::RetentionTime),
        ]
    );
    // The log goes on at offset 12.
    assert_eq!(
        produce(&pc, vec![record("k", "after", T0 + 200 * MINUTE)]).await,
        vec![12]
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn size_retention_keeps_the_partition_near_retention_bytes() {
    let cluster = Cluster::builder()
        .brokers(1)
        .clock(Clock::virtual_at(T0))
        .topic(
            NewTopic::new("labs", 1)
                .config("retention.bytes", "2500")
                .config("segment.bytes", "100"),
        )
        .start()
        .await
        .unwrap();
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "labs", 0).await;
    // Five batches of about 1.1 kB; segment.bytes 100 puts each in its own segment.
    let value = "x".repeat(1_000);
    for i in 0..5 {
        produce(&pc, vec![record(&format!("k{i}"), &value, T0)]).await;
    }
    cluster
        .clock()
        .advance(Duration::from_secs(5 * 60))
        .unwrap();
    // Deleting a third segment would leave less than retention.bytes: two go.
    assert_eq!(earliest(&pc).await, 2);
    assert_eq!(
        deleted_ranges(&cluster, "labs"),
        vec![
            (0, 1, DeletionReason::RetentionSize),
            (1, 2, DeletionReason::RetentionSize)
        ]
    );
    assert_eq!(read_all(&pc, 2).await.len(), 3);
    cluster.shutdown().await;
}

#[tokio::test]
async fn delete_records_is_recorded_with_its_range() {
    let cluster = Cluster::builder()
        .brokers(2)
        .clock(Clock::virtual_at(T0))
        .topic(NewTopic::new("orders", 2))
        .start()
        .await
        .unwrap();
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "orders", 1).await;
    produce(
        &pc,
        (0..10).map(|i| record("k", &i.to_string(), T0)).collect(),
    )
    .await;
    bounded("delete records", pc.delete_records(7, 5_000))
        .await
        .unwrap();
    assert_eq!(earliest(&pc).await, 7);
    let deleted: Vec<_> = cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::RecordsDeleted {
                partition,
                start_offset,
                end_offset,
                ..
            } => Some((partition, start_offset, end_offset, e.at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![(1, 0, 7, T0)]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn compaction_keeps_the_last_value_per_key_and_drops_tombstones_after_delete_retention() {
    compaction(None).await;
}

/// The same, with every batch in the spill file: the cleaner reads them back and its rewritten batches spill too.
#[tokio::test]
async fn compaction_of_spilled_batches_keeps_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    compaction(Some(dir.path())).await;
}

async fn compaction(spill_dir: Option<&std::path::Path>) {
    let mut builder = Cluster::builder();
    builder.brokers(3).clock(Clock::virtual_at(T0)).topic(
        NewTopic::new("patients", 1)
            .config("cleanup.policy", "compact")
            .config("segment.ms", (10 * MINUTE).to_string())
            .config("delete.retention.ms", (60 * MINUTE).to_string()),
    );
    if let Some(dir) = spill_dir {
        builder.log_memory_budget(0, dir);
    }
    let cluster = builder.start().await.unwrap();
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "patients", 0).await;
    produce(&pc, vec![record("k1", "a", T0), record("k2", "b", T0)]).await;
    produce(
        &pc,
        vec![
            record("k1", "c", T0 + 15 * MINUTE),
            record("k3", "d", T0 + 15 * MINUTE),
        ],
    )
    .await;
    produce(&pc, vec![tombstone("k2", T0 + 30 * MINUTE)]).await;
    // The active segment: compaction never touches it, so k1=e does not yet supersede k1=c.
    produce(&pc, vec![record("k1", "e", T0 + 45 * MINUTE)]).await;
    if spill_dir.is_some() {
        // Everything in the file before the cleaner runs (the store spills on its own thread).
        common::log_memory_within(&cluster, 0).await;
    }

    cluster
        .clock()
        .advance(Duration::from_secs(5 * 60))
        .unwrap();
    let survivors = read_all(&pc, 0).await;
    let expected = |rows: &[(i64, &str, Option<&str>)]| {
        rows.iter()
            .map(|(o, k, v)| (*o, k.to_string(), v.map(str::to_string)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        survivors,
        expected(&[
            (2, "k1", Some("c")),
            (3, "k3", Some("d")),
            (4, "k2", None),
            (5, "k1", Some("e"))
        ])
    );
    // Compaction does not move the log start offset.
    assert_eq!(earliest(&pc).await, 0);

    // delete.retention.ms after the cleaner first saw it, the tombstone goes too.
    cluster
        .clock()
        .advance(Duration::from_secs(70 * 60))
        .unwrap();
    let survivors = read_all(&pc, 0).await;
    assert_eq!(
        survivors,
        expected(&[
            (2, "k1", Some("c")),
            (3, "k3", Some("d")),
            (5, "k1", Some("e"))
        ])
    );
    let compactions: Vec<_> = cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::Compacted {
                records_removed,
                tombstones_removed,
                ..
            } => Some((records_removed, tombstones_removed)),
            _ => None,
        })
        .collect();
    assert_eq!(compactions, vec![(2, 0), (0, 1)]);
    if spill_dir.is_some() {
        let stats = common::log_memory_within(&cluster, 0).await;
        assert!(
            stats.written_bytes > stats.spilled_bytes && stats.read_bytes > 0,
            "the cleaner read spilled batches and its rewritten ones replaced them: {stats:?}"
        );
    }
    cluster.shutdown().await;
}
