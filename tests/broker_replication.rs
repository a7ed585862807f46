//! Replication, elections, truncation and faults of the embedded cluster, seen through real clients (rskafka, raw
//! Kafka requests for acks other than -1, kcat for metadata). Time is virtual: sessions expire when the test
//! advances the clock, never because a machine was slow.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{bounded, client, init_tracing, partition, raw, read_all, record};
use openmrs_etl_harness::broker::{Cluster, Isolation, NewTopic};
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::{
    BrokerId, ClusterEventKind, ElectionKind, FenceReason, TruncationReason,
};
use rskafka::client::partition::Compression;

const NOT_ENOUGH_REPLICAS: i16 = 19;
const LEADER_NOT_AVAILABLE: i16 = 5;

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

/// Past the default (ZooKeeper) session timeout of 18 s.
const SESSION: Duration = Duration::from_secs(20);

async fn cluster_with(topic: NewTopic) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .clock(Clock::virtual_at(1_700_000_000_000))
        .topic(topic)
        .start()
        .await
        .unwrap()
}

fn addr(cluster: &Cluster, id: BrokerId) -> std::net::SocketAddr {
    cluster.broker_addrs()[(id.0 - 1) as usize]
}

fn values(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn acks_all_keeps_every_acknowledged_record_when_the_leader_dies_mid_stream() {
    let cluster = cluster_with(
        NewTopic::new("obs", 1)
            .replication_factor(3)
            .config("min.insync.replicas", "2"),
    )
    .await;
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "obs", 0).await;
    let first_leader = cluster.partition("obs", 0).unwrap().leader.unwrap();

    let mut acked: Vec<(i64, String)> = Vec::new();
    for i in 0..60 {
        if i == 30 {
            cluster.kill(first_leader).await.unwrap();
            advance(&cluster, SESSION).await;
        }
        let value = format!("v{i}");
        // A produce cut off by the kill is not acknowledged; rskafka retries the others on the new leader.
        if let Ok(Ok(offsets)) = tokio::time::timeout(
            Duration::from_secs(10),
            pc.produce(vec![record("k", &value, 1_000)], Compression::NoCompression),
        )
        .await
        {
            acked.push((offsets[0], value));
        }
    }
    let view = cluster.partition("obs", 0).unwrap();
    assert_ne!(view.leader, Some(first_leader));
    assert!(!view.isr.contains(&first_leader), "{view:?}");
    assert!(
        acked.len() >= 50,
        "most produces are acknowledged: {acked:?}"
    );
    assert!(acked.windows(2).all(|w| w[0].0 < w[1].0), "acks in order");
    let read = read_all(&pc, 0).await;
    for (offset, value) in &acked {
        let found = read.iter().find(|r| r.0 == *offset);
        assert_eq!(
            found.and_then(|r| r.2.as_deref()),
            Some(value.as_str()),
            "acknowledged record at {offset} is readable from the new leader"
        );
    }

    // Only one replica left: acks=all is refused before anything is appended.
    let second_leader = view.leader.unwrap();
    cluster.kill(second_leader).await.unwrap();
    advance(&cluster, SESSION).await;
    let view = cluster.partition("obs", 0).unwrap();
    assert_eq!(view.isr.len(), 1, "{view:?}");
    let survivor = view.leader.unwrap();
    let before = view.log_end_offsets.clone();
    let (error, _) = bounded(
        "acks=all with one replica",
        raw::produce(addr(&cluster, survivor), "obs", 0, -1, &values("x", 0..3)),
    )
    .await
    .unwrap();
    assert_eq!(error, NOT_ENOUGH_REPLICAS);
    assert_eq!(cluster.partition("obs", 0).unwrap().log_end_offsets, before);
    cluster.shutdown().await;
}

#[tokio::test]
async fn acks_one_loses_exactly_what_only_the_killed_leader_had() {
    let cluster = cluster_with(NewTopic::new("obs", 1).replication_factor(3)).await;
    let view = cluster.partition("obs", 0).unwrap();
    let leader = view.leader.unwrap();
    let followers: Vec<BrokerId> = view
        .replicas
        .iter()
        .copied()
        .filter(|b| *b != leader)
        .collect();
    let leader_addr = addr(&cluster, leader);

    // Replicated before the fault.
    let mut acked: Vec<(i64, String)> = Vec::new();
    for chunk in values("a", 0..10).chunks(5) {
        let (error, base) = raw::produce(leader_addr, "obs", 0, -1, chunk)
            .await
            .unwrap();
        assert_eq!(error, 0);
        acked.extend(
            chunk
                .iter()
                .enumerate()
                .map(|(i, v)| (base + i as i64, v.clone())),
        );
    }
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    for f in &followers {
        cluster.pause(*f).unwrap();
    }
    for chunk in values("b", 0..20).chunks(4) {
        let (error, base) = raw::produce(leader_addr, "obs", 0, 1, chunk).await.unwrap();
        assert_eq!(error, 0);
        acked.extend(
            chunk
                .iter()
                .enumerate()
                .map(|(i, v)| (base + i as i64, v.clone())),
        );
    }
    // What some follower had when the leader died: the expected set is computed from it.
    let at_kill = cluster.partition("obs", 0).unwrap();
    let follower_end = at_kill
        .log_end_offsets
        .iter()
        .filter(|(b, _)| *b != leader)
        .map(|(_, leo)| *leo)
        .max()
        .unwrap();
    cluster.kill(leader).await.unwrap();
    for f in &followers {
        cluster.resume(*f).unwrap();
    }
    advance(&cluster, SESSION).await;
    let new_leader = cluster.partition("obs", 0).unwrap().leader.unwrap();
    assert!(followers.contains(&new_leader));
    cluster.restart(leader).await.unwrap();
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);

    let expected_lost: BTreeSet<String> = acked
        .iter()
        .filter(|(offset, _)| *offset >= follower_end)
        .map(|(_, v)| v.clone())
        .collect();
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "obs", 0).await;
    let read: BTreeSet<String> = read_all(&pc, 0)
        .await
        .into_iter()
        .filter_map(|r| r.2)
        .collect();
    let lost: BTreeSet<String> = acked
        .iter()
        .map(|(_, v)| v.clone())
        .filter(|v| !read.contains(v))
        .collect();
    assert_eq!(lost, expected_lost);
    assert_eq!(lost.len(), 20, "every acks=1 record only the leader had");
    let truncated: Vec<(i64, i64)> = cluster
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            ClusterEventKind::Truncated {
                broker,
                start_offset,
                end_offset,
                reason: TruncationReason::DivergingEpoch,
                ..
            } if broker == leader => Some((start_offset, end_offset)),
            _ => None,
        })
        .collect();
    assert_eq!(truncated, vec![(follower_end, 30)]);
    let view = cluster.partition("obs", 0).unwrap();
    assert!(
        view.log_end_offsets
            .iter()
            .all(|(_, leo)| *leo == follower_end),
        "the returning replica truncated to the new leader's end: {view:?}"
    );
    cluster.shutdown().await;
}

/// Kills the follower, writes to the leader alone, kills the leader, brings the follower back.
async fn lose_the_isr(cluster: &Cluster, topic: &str) -> (BrokerId, BrokerId) {
    let view = cluster.partition(topic, 0).unwrap();
    let (leader, follower) = (view.replicas[0], view.replicas[1]);
    assert_eq!(view.leader, Some(leader));
    let (error, _) = raw::produce(addr(cluster, leader), topic, 0, -1, &values("a", 0..5))
        .await
        .unwrap();
    assert_eq!(error, 0);
    assert!(cluster.wait_for_replication(Duration::from_secs(5)).await);
    cluster.kill(follower).await.unwrap();
    advance(cluster, SESSION).await;
    let (error, _) = raw::produce(addr(cluster, leader), topic, 0, 1, &values("b", 0..5))
        .await
        .unwrap();
    assert_eq!(error, 0);
    cluster.kill(leader).await.unwrap();
    cluster.restart(follower).await.unwrap();
    advance(cluster, SESSION).await;
    (leader, follower)
}

#[tokio::test]
async fn without_unclean_election_the_partition_goes_offline() {
    let cluster = cluster_with(NewTopic::new("strict", 1).replication_factor(2)).await;
    let (leader, _) = lose_the_isr(&cluster, "strict").await;
    let view = cluster.partition("strict", 0).unwrap();
    assert_eq!(view.leader, None);
    assert_eq!(view.isr, vec![leader], "the ISR keeps its last member");
    let live = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != leader)
        .unwrap();
    let (partitions, _) = raw::leaders(addr(&cluster, live), "strict").await.unwrap();
    assert_eq!(partitions, vec![(-1, LEADER_NOT_AVAILABLE)]);

    // The last ISR member returns: a clean election, nothing lost.
    cluster.restart(leader).await.unwrap();
    assert_eq!(cluster.partition("strict", 0).unwrap().leader, Some(leader));
    cluster.shutdown().await;
}

#[tokio::test]
async fn with_unclean_election_a_stale_replica_leads_and_the_rest_is_lost() {
    let cluster = cluster_with(
        NewTopic::new("loose", 1)
            .replication_factor(2)
            .config("unclean.leader.election.enable", "true"),
    )
    .await;
    let (_, follower) = lose_the_isr(&cluster, "loose").await;
    let view = cluster.partition("loose", 0).unwrap();
    assert_eq!(view.leader, Some(follower));
    assert_eq!(view.isr, vec![follower]);
    assert!(cluster.events().iter().any(|e| matches!(
        &e.kind,
        ClusterEventKind::Election { kind: ElectionKind::Unclean, leader: Some(b), .. } if *b == follower
    )));
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "loose", 0).await;
    let read: Vec<String> = read_all(&pc, 0)
        .await
        .into_iter()
        .filter_map(|r| r.2)
        .collect();
    assert_eq!(read, values("a", 0..5), "the acks=1 records are gone");
    cluster.shutdown().await;
}

#[tokio::test]
async fn controlled_shutdown_moves_leaders_first_and_a_killed_controller_is_replaced() {
    let cluster = cluster_with(NewTopic::new("visits", 6).replication_factor(3)).await;
    let stopping = BrokerId(2);
    let led: usize = cluster
        .partition_leaders("visits")
        .unwrap()
        .iter()
        .filter(|l| **l == Some(stopping))
        .count();
    assert!(led > 0);
    cluster.stop(stopping).await.unwrap();
    // No clock advance: leaders moved during the shutdown, not after a session timeout.
    let leaders = cluster.partition_leaders("visits").unwrap();
    assert!(
        leaders.iter().all(|l| l.is_some() && *l != Some(stopping)),
        "{leaders:?}"
    );
    let events = cluster.events();
    let fenced_at = events
        .iter()
        .position(|e| {
            e.kind
                == ClusterEventKind::BrokerFenced {
                    broker: stopping,
                    reason: FenceReason::ControlledShutdown,
                }
        })
        .unwrap();
    let moved = events[..fenced_at]
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                ClusterEventKind::Election {
                    kind: ElectionKind::ControlledShutdown,
                    ..
                }
            )
        })
        .count();
    assert_eq!(moved, led);
    let client = client(&cluster.bootstrap_servers()).await;
    for p in 0..6 {
        let pc = partition(&client, "visits", p).await;
        bounded(
            "produce after the stop",
            pc.produce(vec![record("k", "v", 1_000)], Compression::NoCompression),
        )
        .await
        .unwrap();
    }

    let controller = cluster.controller();
    cluster.kill(controller).await.unwrap();
    assert_eq!(
        cluster.controller(),
        controller,
        "noticed only after the session"
    );
    advance(&cluster, SESSION).await;
    assert_ne!(cluster.controller(), controller);
    assert_ne!(cluster.controller(), stopping);
    assert!(cluster.events().iter().any(|e| matches!(
        e.kind,
        ClusterEventKind::ControllerElected { broker } if broker != controller
    )));
    cluster.shutdown().await;
}

/// One test per row of the fault table in the `broker` module docs.
#[tokio::test]
async fn what_a_client_observes_for_each_fault() {
    let cluster = cluster_with(NewTopic::new("t", 1).replication_factor(3)).await;
    let leader = cluster.partition("t", 0).unwrap().leader.unwrap();
    let other = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != leader)
        .unwrap();
    let quick = Duration::from_millis(300);

    // pause: connections accepted, requests held until resume.
    cluster.pause(leader).unwrap();
    let held = tokio::spawn(raw::leaders(addr(&cluster, leader), "t"));
    tokio::time::sleep(quick).await;
    assert!(!held.is_finished(), "a paused broker answers nothing");
    cluster.resume(leader).unwrap();
    bounded("answer after resume", held).await.unwrap().unwrap();

    // isolate from everyone: requests time out; heal: answered.
    cluster.isolate(leader, Isolation::FromEveryone).unwrap();
    let timed_out = tokio::time::timeout(quick, raw::leaders(addr(&cluster, leader), "t")).await;
    assert!(timed_out.is_err(), "an isolated broker answers nothing");
    cluster.heal(leader).unwrap();

    // isolate from peers: clients are served; the leader moves after the session timeout.
    cluster.isolate(leader, Isolation::FromPeers).unwrap();
    let (partitions, _) = bounded("metadata", raw::leaders(addr(&cluster, leader), "t"))
        .await
        .unwrap();
    assert_eq!(partitions[0].0, leader.0);
    advance(&cluster, SESSION).await;
    let moved = cluster.partition("t", 0).unwrap().leader.unwrap();
    assert_ne!(moved, leader);
    let (partitions, brokers) = raw::leaders(addr(&cluster, other), "t").await.unwrap();
    assert_eq!(partitions[0].0, moved.0);
    assert!(
        !brokers.contains(&leader.0),
        "a fenced broker is not listed"
    );
    let (error, _) = raw::produce(addr(&cluster, leader), "t", 0, 1, &values("x", 0..1))
        .await
        .unwrap();
    assert_eq!(error, 6, "NOT_LEADER_OR_FOLLOWER from the old leader");
    cluster.heal(leader).unwrap();
    advance(&cluster, Duration::from_secs(3)).await;
    let (_, brokers) = raw::leaders(addr(&cluster, other), "t").await.unwrap();
    assert!(
        brokers.contains(&leader.0),
        "registered again after the heal"
    );

    // kill: connection refused at once; metadata unchanged until the session expires.
    let leader = moved;
    cluster.kill(leader).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr(&cluster, leader))
        .await
        .is_err());
    let (partitions, _) = raw::leaders(addr(&cluster, other_than(&cluster, leader)), "t")
        .await
        .unwrap();
    assert_eq!(
        partitions[0].0, leader.0,
        "still the leader before the session expires"
    );
    advance(&cluster, SESSION).await;
    assert_ne!(cluster.partition("t", 0).unwrap().leader, Some(leader));
    cluster.restart(leader).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr(&cluster, leader))
        .await
        .is_ok());

    // stop: connection refused, leader moved at once.
    let leader = cluster.partition("t", 0).unwrap().leader.unwrap();
    cluster.stop(leader).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr(&cluster, leader))
        .await
        .is_err());
    assert_ne!(cluster.partition("t", 0).unwrap().leader, Some(leader));
    cluster.restart(leader).await.unwrap();

    // crash: like kill, and the unflushed tail is truncated.
    let leader = cluster.partition("t", 0).unwrap().leader.unwrap();
    let (error, _) = raw::produce(addr(&cluster, leader), "t", 0, 1, &values("c", 0..3))
        .await
        .unwrap();
    assert_eq!(error, 0);
    cluster.crash(leader).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr(&cluster, leader))
        .await
        .is_err());
    assert!(cluster.events().iter().any(|e| matches!(
        e.kind,
        ClusterEventKind::Truncated { broker, reason: TruncationReason::Crash, .. } if broker == leader
    )));

    // latency: answers still come.
    let live = other_than(&cluster, leader);
    cluster
        .set_latency(live, Duration::from_millis(20))
        .unwrap();
    bounded(
        "metadata with latency",
        raw::leaders(addr(&cluster, live), "t"),
    )
    .await
    .unwrap();
    cluster.shutdown().await;
}

fn other_than(cluster: &Cluster, broker: BrokerId) -> BrokerId {
    cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != broker)
        .unwrap()
}

#[tokio::test]
async fn kcat_sees_the_new_leader_after_a_kill() {
    let kcat = std::path::Path::new("/usr/bin/kcat");
    if !kcat.is_file() {
        if std::env::var("ETL_HARNESS_REQUIRE_REAL").as_deref() == Ok("1") {
            panic!("/usr/bin/kcat is missing but ETL_HARNESS_REQUIRE_REAL=1 requires it");
        }
        eprintln!("skipping: /usr/bin/kcat is missing (apt-get install kcat)");
        return;
    }
    let cluster = cluster_with(NewTopic::new("enc", 3).replication_factor(3)).await;
    let victim = cluster.partition("enc", 0).unwrap().leader.unwrap();
    cluster.kill(victim).await.unwrap();
    advance(&cluster, SESSION).await;
    let bootstrap = addr(&cluster, other_than(&cluster, victim)).to_string();
    let output = bounded(
        "kcat -L",
        tokio::process::Command::new(kcat)
            .args(["-b", &bootstrap, "-L", "-t", "enc"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{listing}");
    assert!(
        !listing.contains(&format!("broker {victim} at")),
        "{listing}"
    );
    for line in listing.lines().filter(|l| l.contains("partition ")) {
        assert!(!line.contains(&format!("leader {victim},")), "{line}");
        let isrs = line.split("isrs:").nth(1).unwrap_or_default();
        assert!(
            !isrs.split(',').any(|b| b.trim() == victim.to_string()),
            "{line}"
        );
    }
    cluster.shutdown().await;
}

/// OffsetForLeaderEpoch (KIP-320), as the Java consumer asks it to validate its position after a leader change:
/// the end of each epoch on the new leader, and the current-epoch fencing.
#[tokio::test]
async fn offset_for_leader_epoch_tells_where_each_epoch_ended() {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        BrokerId as WireBrokerId, OffsetForLeaderEpochRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    let cluster = cluster_with(NewTopic::new("epochs", 1).replication_factor(3)).await;
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "epochs", 0).await;
    let produce = |n: usize| {
        let records = (0..n)
            .map(|i| record("k", &format!("v{i}"), 1_000))
            .collect();
        pc.produce(records, Compression::NoCompression)
    };
    bounded("produce in epoch 0", produce(5)).await.unwrap();
    let first = cluster.partition("epochs", 0).unwrap();
    assert!(cluster.wait_for_replication(Duration::from_secs(10)).await);
    cluster.kill(first.leader.unwrap()).await.unwrap();
    advance(&cluster, SESSION).await;
    let view = cluster.partition("epochs", 0).unwrap();
    assert!(view.leader_epoch > first.leader_epoch, "{view:?}");
    bounded("produce in the new epoch", produce(3))
        .await
        .unwrap();

    let ask = |current: i32, epoch: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(WireBrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("epochs")))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)])])
    };
    let mut stream = tokio::net::TcpStream::connect(addr(&cluster, view.leader.unwrap()))
        .await
        .unwrap();
    let answer = |r: kafka_protocol::messages::OffsetForLeaderEpochResponse| {
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    let old =
        answer(common::call(&mut stream, &ask(view.leader_epoch, first.leader_epoch), 4).await);
    assert_eq!(
        old,
        (0, first.leader_epoch, 5),
        "epoch {} ended at 5",
        first.leader_epoch
    );
    let now = answer(common::call(&mut stream, &ask(-1, view.leader_epoch), 4).await);
    assert_eq!(
        now,
        (0, view.leader_epoch, 8),
        "the current epoch ends at the log end"
    );
    let fenced = answer(common::call(&mut stream, &ask(first.leader_epoch, 0), 4).await);
    assert_eq!(fenced.0, ResponseError::FencedLeaderEpoch.code());
    let unknown = answer(common::call(&mut stream, &ask(view.leader_epoch + 1, 0), 4).await);
    assert_eq!(unknown.0, ResponseError::UnknownLeaderEpoch.code());
    cluster.shutdown().await;
}

async fn offsets_and_values(
    pc: &rskafka::client::partition::PartitionClient,
) -> Vec<(i64, String)> {
    let read = read_all(pc, 0).await.into_iter();
    read.map(|(o, _, v)| (o, v.unwrap())).collect()
}

/// With no memory for record batches, every batch lives in the spill file: a follower that was down catches up
/// from it, consumers read it back byte for byte from any leader, and the file holds one copy whatever the
/// replication factor.
#[tokio::test]
async fn batches_past_the_memory_budget_are_served_and_replicated_from_the_spill_file() {
    init_tracing();
    let spill_dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::builder()
        .brokers(3)
        .clock(Clock::virtual_at(1_700_000_000_000))
        .log_memory_budget(0, spill_dir.path())
        .topic(NewTopic::new("obs", 1).replication_factor(3))
        .start()
        .await
        .unwrap();
    let client = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&client, "obs", 0).await;
    let view = cluster.partition("obs", 0).unwrap();
    let (leader, late) = (view.leader.unwrap(), view.replicas[2]);
    assert_ne!(leader, late);

    // One follower is down while the first half is written; it must catch up from spilled batches.
    cluster.kill(late).await.unwrap();
    advance(&cluster, SESSION).await;
    let mut written = Vec::new();
    for i in 0..40 {
        let batch: Vec<_> = (0..5)
            .map(|j| record(&format!("k{j}"), &format!("v{i}-{j}"), 1_000))
            .collect();
        let offsets = bounded("produce", pc.produce(batch, Compression::NoCompression))
            .await
            .unwrap();
        written.extend(offsets.into_iter().zip((0..5).map(|j| format!("v{i}-{j}"))));
        if i == 19 {
            cluster.restart(late).await.unwrap();
        }
    }
    assert!(cluster.wait_for_replication(Duration::from_secs(10)).await);
    let view = cluster.partition("obs", 0).unwrap();
    assert_eq!(view.isr.len(), 3, "the late follower caught up: {view:?}");

    let stats = common::log_memory_within(&cluster, 0).await;
    assert!(stats.spilled_bytes > 0, "{stats:?}");
    assert_eq!(
        Some(stats.spilled_bytes),
        cluster.distinct_buffer_bytes("obs"),
        "one copy of each batch in the file for three replicas"
    );
    let expect = written;
    assert_eq!(offsets_and_values(&pc).await, expect);

    // The leader dies: the late follower's copy (the same spilled batches) serves everything.
    cluster.kill(leader).await.unwrap();
    advance(&cluster, SESSION).await;
    let new_leader = cluster.partition("obs", 0).unwrap().leader.unwrap();
    assert_ne!(new_leader, leader);
    assert_eq!(offsets_and_values(&pc).await, expect);
    cluster.shutdown().await;
}
