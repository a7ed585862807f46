//! The embedded cluster through rskafka 0.6, the client the pipeline uses: topics, produce, fetch, offsets and
//! DeleteRecords across three brokers.

mod common;

use std::collections::BTreeSet;

use common::{bounded, client, partition, read_all, record};
use openmrs_etl_harness::broker::Cluster;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt};

#[tokio::test]
async fn rskafka_creates_produces_fetches_lists_and_deletes_across_three_brokers() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let client = client(&cluster.bootstrap_servers()).await;

    let controller = client.controller_client().unwrap();
    bounded(
        "create topic",
        controller.create_topic("visits", 6, 1, 5_000),
    )
    .await
    .unwrap();
    let topics = bounded("list topics", client.list_topics()).await.unwrap();
    let visits = topics
        .iter()
        .find(|t| t.name == "visits")
        .expect("topic listed");
    assert_eq!(visits.partitions.len(), 6);
    let leaders: BTreeSet<_> = cluster
        .partition_leaders("visits")
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        leaders.len(),
        3,
        "leaders spread over all brokers: {leaders:?}"
    );

    // Each partition client talks to its own leader; every partition gets its own records.
    for p in 0..6 {
        let pc = partition(&client, "visits", p).await;
        let batch1: Vec<_> = (0..5)
            .map(|i| record(&format!("k{i}"), &format!("p{p}-v{i}"), 1_000 + i))
            .collect();
        let offsets = bounded("produce", pc.produce(batch1, Compression::NoCompression))
            .await
            .unwrap();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
        let batch2: Vec<_> = (5..8)
            .map(|i| record(&format!("k{i}"), &format!("p{p}-v{i}"), 1_000 + i))
            .collect();
        let offsets = bounded("produce zstd", pc.produce(batch2, Compression::Zstd))
            .await
            .unwrap();
        assert_eq!(offsets, vec![5, 6, 7]);

        let records = read_all(&pc, 0).await;
        let values: Vec<_> = records.iter().map(|(_, _, v)| v.clone().unwrap()).collect();
        assert_eq!(
            values,
            (0..8).map(|i| format!("p{p}-v{i}")).collect::<Vec<_>>()
        );
        // A fetch from the middle of a batch starts at the requested offset.
        assert_eq!(read_all(&pc, 3).await.first().map(|r| r.0), Some(3));

        assert_eq!(
            bounded("earliest", pc.get_offset(OffsetAt::Earliest))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            bounded("latest", pc.get_offset(OffsetAt::Latest))
                .await
                .unwrap(),
            8
        );
        let at = rskafka::chrono::DateTime::from_timestamp_millis(1_006).unwrap();
        assert_eq!(
            bounded("by timestamp", pc.get_offset(OffsetAt::Timestamp(at)))
                .await
                .unwrap(),
            6
        );

        bounded("delete records", pc.delete_records(4, 5_000))
            .await
            .unwrap();
        assert_eq!(
            bounded("earliest", pc.get_offset(OffsetAt::Earliest))
                .await
                .unwrap(),
            4
        );
        let below = bounded("fetch below start", pc.fetch_records(2, 1..1_000_000, 10)).await;
        assert!(
            matches!(
                below,
                Err(ClientError::ServerError {
                    protocol_error: ProtocolError::OffsetOutOfRange,
                    ..
                })
            ),
            "fetch below the log start offset: {below:?}"
        );
        assert_eq!(read_all(&pc, 4).await.len(), 4);
    }

    let controller = client.controller_client().unwrap();
    bounded("delete topic", controller.delete_topic("visits", 5_000))
        .await
        .unwrap();
    let topics = bounded("list topics", client.list_topics()).await.unwrap();
    assert!(topics.iter().all(|t| t.name != "visits"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn replication_factor_up_to_the_broker_count_is_accepted() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let client = client(&cluster.bootstrap_servers()).await;
    let controller = client.controller_client().unwrap();
    bounded("create rf 3", controller.create_topic("rf3", 2, 3, 5_000))
        .await
        .unwrap();
    let view = cluster.partition("rf3", 0).unwrap();
    assert_eq!(view.replicas.len(), 3);
    assert_eq!(view.isr, view.replicas);
    let error = bounded("create rf 4", controller.create_topic("rf4", 1, 4, 5_000))
        .await
        .unwrap_err();
    match error {
        ClientError::ServerError { protocol_error, .. } => {
            assert_eq!(protocol_error, ProtocolError::InvalidReplicationFactor);
        }
        other => panic!("expected INVALID_REPLICATION_FACTOR, got {other:?}"),
    }
    cluster.shutdown().await;
}
