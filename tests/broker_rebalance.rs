//! Automatic preferred-leader rebalance on the cluster clock. In ZooKeeper mode a controller that takes over checks
//! the leader imbalance 5 s later (Kafka 3.9.1 `KafkaController.onControllerFailover`), so a broker killed while it
//! was controller gets its preferred leaderships back 5 s after its successor's election, once it is back in the
//! ISR — seen on the local backend, where a Debezium task with `retries = 0` failed on that move. KRaft's controller
//! waits a whole `leader.imbalance.check.interval.seconds`.

mod common;

use std::time::Duration;

use common::{advance_in_steps, init_tracing};
use openmrs_etl_harness::broker::{Cluster, MetadataMode, NewTopic};
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::{BrokerId, ClusterEventKind, ElectionKind};

const SESSION: Duration = Duration::from_secs(6);
const INTERVAL: Duration = Duration::from_secs(300);

async fn cluster(mode: MetadataMode) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .clock(Clock::virtual_at(1_700_000_000_000))
        .metadata_mode(mode)
        .session_timeout(SESSION)
        .auto_leader_rebalance(true, INTERVAL)
        // Three partitions: each broker heads one assignment, so each is the preferred leader of one.
        .topic(
            NewTopic::new("obs", 3)
                .replication_factor(3)
                .config("min.insync.replicas", "1"),
        )
        .start()
        .await
        .unwrap()
}

/// The clock times of the controller elections, and of the preferred elections that gave `broker` a leadership.
fn timeline(cluster: &Cluster, broker: BrokerId) -> (Vec<i64>, Vec<i64>) {
    let mut controllers = Vec::new();
    let mut preferred = Vec::new();
    for e in cluster.events() {
        match e.kind {
            ClusterEventKind::ControllerElected { .. } => controllers.push(e.at_ms),
            ClusterEventKind::Election {
                leader: Some(leader),
                kind: ElectionKind::Preferred,
                ..
            } if leader == broker => preferred.push(e.at_ms),
            _ => {}
        }
    }
    (controllers, preferred)
}

/// Kills the controller, lets its session expire, restarts it and lets it catch up; returns the killed broker and
/// the time its successor was elected.
async fn kill_the_controller_and_bring_it_back(cluster: &Cluster) -> (BrokerId, i64) {
    let killed = cluster.controller();
    let preferred_partitions =
        |leaders: Vec<Option<BrokerId>>| leaders.iter().filter(|l| **l == Some(killed)).count();
    assert_eq!(
        preferred_partitions(cluster.partition_leaders("obs").unwrap()),
        1,
        "each broker leads the partition it is preferred for"
    );
    cluster.kill(killed).await.unwrap();
    advance_in_steps(
        cluster,
        SESSION + Duration::from_secs(3),
        Duration::from_millis(250),
    )
    .await;
    assert_ne!(
        cluster.controller(),
        killed,
        "the session expired and another broker took over"
    );
    let (controllers, _) = timeline(cluster, killed);
    let failover = *controllers.last().unwrap();
    cluster.restart(killed).await.unwrap();
    (killed, failover)
}

#[tokio::test]
async fn zookeeper_mode_gives_a_returning_broker_its_leaderships_back_5s_after_a_controller_failover(
) {
    let cluster = cluster(MetadataMode::Zookeeper).await;
    let (killed, failover) = kill_the_controller_and_bring_it_back(&cluster).await;
    let elapsed = cluster.clock().now_ms() - failover;
    assert!(
        elapsed < 5_000,
        "restarted before the check ({elapsed} ms after the failover)"
    );
    advance_in_steps(
        &cluster,
        Duration::from_secs(10),
        Duration::from_millis(100),
    )
    .await;
    let (_, preferred) = timeline(&cluster, killed);
    assert_eq!(
        preferred,
        vec![failover + 5_000],
        "one preferred election, 5 s after the new controller's election; events: {:#?}",
        cluster.events()
    );
    assert_eq!(
        cluster
            .partition_leaders("obs")
            .unwrap()
            .iter()
            .filter(|l| **l == Some(killed))
            .count(),
        1
    );
}

#[tokio::test]
async fn kraft_mode_waits_a_whole_imbalance_interval() {
    let cluster = cluster(MetadataMode::Kraft).await;
    let (killed, _) = kill_the_controller_and_bring_it_back(&cluster).await;
    advance_in_steps(
        &cluster,
        Duration::from_secs(60),
        Duration::from_millis(250),
    )
    .await;
    let (_, preferred) = timeline(&cluster, killed);
    assert!(
        preferred.is_empty(),
        "no preferred election within a minute: {preferred:?}"
    );
    assert!(
        !cluster
            .partition_leaders("obs")
            .unwrap()
            .contains(&Some(killed)),
        "the restarted broker leads nothing yet"
    );
    advance_in_steps(&cluster, INTERVAL, Duration::from_secs(1)).await;
    let (_, preferred) = timeline(&cluster, killed);
    assert_eq!(
        preferred.len(),
        1,
        "the periodic check gave it back: {preferred:?}"
    );
}
