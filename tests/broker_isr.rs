//! The ISR on the cluster clock: a follower that stops fetching leaves the ISR once it has lagged for
//! `replica.lag.time.max.ms` (not before; the leader checks every half of it), rejoins when it has caught up, and a large step of the virtual clock
//! never makes a caught-up follower look lagging.

mod common;

use std::time::Duration;

use common::{advance_in_steps, init_tracing, raw};
use openmrs_etl_harness::broker::{Cluster, NewTopic};
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::{BrokerId, ClusterEventKind};

const LAG_MAX: Duration = Duration::from_secs(30);

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .clock(Clock::virtual_at(1_700_000_000_000))
        .replica_lag_time_max(LAG_MAX)
        // Sessions far longer than the test's clock moves: only the ISR rule is under test, not fencing.
        .session_timeout(Duration::from_secs(3600))
        .topic(
            NewTopic::new("obs", 1)
                .replication_factor(3)
                .config("min.insync.replicas", "1"),
        )
        .start()
        .await
        .unwrap()
}

fn isr_events(cluster: &Cluster) -> Vec<ClusterEventKind> {
    cluster
        .events()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| {
            matches!(
                k,
                ClusterEventKind::IsrShrunk { .. } | ClusterEventKind::IsrExpanded { .. }
            )
        })
        .collect()
}

async fn produce(cluster: &Cluster, leader: BrokerId, values: &[String]) {
    let addr = cluster.broker_addrs()[(leader.0 - 1) as usize];
    let (error, _) = tokio::time::timeout(
        Duration::from_secs(10),
        raw::produce(addr, "obs", 0, 1, values),
    )
    .await
    .expect("produce answered")
    .expect("produce sent");
    assert_eq!(error, 0);
}

#[tokio::test]
async fn a_stalled_follower_leaves_the_isr_after_the_lag_time_and_rejoins_when_caught_up() {
    let cluster = cluster().await;
    let view = cluster.partition("obs", 0).unwrap();
    let leader = view.leader.unwrap();
    let follower = *view.replicas.iter().find(|b| **b != leader).unwrap();
    assert_eq!(view.isr.len(), 3);

    cluster.pause(follower).unwrap();
    produce(&cluster, leader, &["a".into(), "b".into()]).await;
    // Lagging, but for less than replica.lag.time.max.ms: still in sync.
    advance_in_steps(&cluster, Duration::from_secs(20), Duration::from_secs(1)).await;
    assert!(
        cluster.partition("obs", 0).unwrap().isr.contains(&follower),
        "left the ISR too early"
    );
    assert!(isr_events(&cluster).is_empty());

    // Past the lag time and the next check (the leader checks every replica.lag.time.max.ms / 2): out.
    advance_in_steps(&cluster, Duration::from_secs(30), Duration::from_secs(1)).await;
    let view = cluster.partition("obs", 0).unwrap();
    assert!(!view.isr.contains(&follower), "still in the ISR: {view:?}");
    assert!(matches!(
        isr_events(&cluster).as_slice(),
        [ClusterEventKind::IsrShrunk { removed, .. }] if *removed == follower
    ));
    // With min.insync.replicas 1 the high watermark moves on without it.
    assert_eq!(view.high_watermark, 2);

    cluster.resume(follower).unwrap();
    assert!(cluster.wait_for_replication(Duration::from_secs(10)).await);
    advance_in_steps(&cluster, Duration::from_secs(2), Duration::from_millis(500)).await;
    let view = cluster.partition("obs", 0).unwrap();
    assert!(
        view.isr.contains(&follower),
        "did not rejoin: {:?}",
        view.isr
    );
    assert!(
        view.log_end_offsets.iter().all(|(_, leo)| *leo == 2),
        "{:?}",
        view.log_end_offsets
    );
    assert!(matches!(
        isr_events(&cluster).last(),
        Some(ClusterEventKind::IsrExpanded { added, .. }) if *added == follower
    ));
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_big_clock_step_does_not_make_caught_up_followers_lag() {
    let cluster = cluster().await;
    let leader = cluster.partition("obs", 0).unwrap().leader.unwrap();
    produce(&cluster, leader, &["a".into(), "b".into(), "c".into()]).await;
    assert!(cluster.wait_for_replication(Duration::from_secs(10)).await);

    // Ten minutes in one step, twenty times the lag limit, with nobody producing.
    cluster.clock().advance(Duration::from_secs(600)).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    produce(&cluster, leader, &["d".into()]).await;
    cluster.clock().advance(Duration::from_secs(600)).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let view = cluster.partition("obs", 0).unwrap();
    assert_eq!(
        view.isr.len(),
        3,
        "ISR shrank on a clock step: {:?}",
        view.isr
    );
    assert!(
        isr_events(&cluster).is_empty(),
        "{:?}",
        isr_events(&cluster)
    );
    cluster.shutdown().await;
}
