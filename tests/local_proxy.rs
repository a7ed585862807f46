//! Network faults on the local topology, through the brokers' proxies, on one 3-broker topology: a follower
//! isolated from everyone leaves the ISR once its ZooKeeper session expires while acks=all writes still succeed,
//! and rejoins when healed; an isolated leader loses its partitions to another broker and comes back as a
//! follower; a broker isolated from its peers still serves clients (with what it last knew) while the others
//! drop it; added latency delays a broker's answers.
//!
//! Without `mariadbd`, `java` or `mvn` the test prints why and passes as skipped, unless
//! `ETL_HARNESS_REQUIRE_REAL=1` (CI) makes that a failure.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openmrs_etl_harness::broker::Isolation;
use openmrs_etl_harness::scenario::Scenario;
use openmrs_etl_harness::topology::local::{
    ClusterMetadata, LocalTopology, LocalTopologyOptions, PartitionMetadata,
    ZOOKEEPER_SESSION_TIMEOUT,
};
use openmrs_etl_harness::workload::reference;

/// After the session expires the controller still has to notice, elect and tell the others.
const FAILOVER_SLACK: Duration = Duration::from_secs(15);
/// A healed broker needs a new session, the controller's requests, and to catch up.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(90);
const ACKS_ALL: i16 = -1;
const ACKS_ONE: i16 = 1;
const BROKERS: [i32; 3] = [1, 2, 3];

/// One topic (the obs table's) with 3 partitions on all 3 brokers, min ISR 2: one broker may be cut off. The raw
/// test records carry CreateTime 1970 (`common::raw::batch`): a century of retention keeps them readable.
const SCENARIO: &str = r#"
name = "local-proxy-test"
backends = ["local"]

[topology]
backend = "local"
brokers = 3

[topics]
partitions = 3
replication_factor = 3
min_insync_replicas = 2
retention_ms = "36500d"
"#;

fn address(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("broker address {text}: {e}"))
}

fn partition<'a>(answer: &'a ClusterMetadata, topic: &str, index: i32) -> &'a PartitionMetadata {
    answer
        .topics
        .get(topic)
        .and_then(|partitions| partitions.iter().find(|p| p.partition == index))
        .unwrap_or_else(|| panic!("{topic} partition {index} missing from {answer:?}"))
}

/// Every broker but `id`: those whose views count while `id` is isolated.
fn others(id: i32) -> Vec<i32> {
    BROKERS.into_iter().filter(|other| *other != id).collect()
}

/// `broker` is registered and in the ISR of every partition it replicates.
fn in_every_isr(answer: &ClusterMetadata, broker: i32) -> bool {
    answer.brokers.contains_key(&broker)
        && answer
            .topics
            .values()
            .flatten()
            .all(|p| !p.replicas.contains(&broker) || p.isr.contains(&broker))
}

/// Isolates `broker` and waits until every other broker sees `done` (the isolated one's own view is stale);
/// returns the first other's view and the time since the isolation.
async fn isolate_until(
    topology: &LocalTopology,
    topics: &[String],
    broker: i32,
    isolation: Isolation,
    what: &str,
    done: impl Fn(&ClusterMetadata) -> bool,
) -> (ClusterMetadata, Duration) {
    topology.isolate_broker(broker, isolation).expect("isolate");
    let timeout = ZOOKEEPER_SESSION_TIMEOUT + FAILOVER_SLACK;
    common::wait_for_views(topology, topics, &others(broker), timeout, what, done).await
}

/// Heals `broker` and waits until every broker, itself included, sees it in every ISR.
async fn heal_and_rejoin(
    topology: &LocalTopology,
    topics: &[String],
    broker: i32,
) -> (ClusterMetadata, Duration) {
    topology.heal_broker(broker).expect("heal");
    common::wait_for_views(
        topology,
        topics,
        &BROKERS,
        REJOIN_TIMEOUT,
        &format!("healed broker {broker} back in every ISR"),
        |answer| in_every_isr(answer, broker),
    )
    .await
}

/// How long a Metadata request through `broker`'s proxy, on a fresh connection, takes to be answered.
async fn metadata_round_trip(topology: &LocalTopology, broker: i32, topic: &str) -> Duration {
    let target = address(&topology.broker_address(broker).expect("address"));
    let asked = Instant::now();
    common::bounded(
        &format!("Metadata through broker {broker}"),
        common::raw::leaders(target, topic),
    )
    .await
    .unwrap_or_else(|e| panic!("Metadata through broker {broker}: {e}"));
    asked.elapsed()
}

/// One acks=`acks` record to `topic`/`partition` through `broker`'s proxy: (error code, offset).
async fn produce(
    topology: &LocalTopology,
    broker: i32,
    topic: &str,
    partition: i32,
    acks: i16,
    value: &str,
) -> (i16, i64) {
    let target = address(&topology.broker_address(broker).expect("address"));
    common::bounded(
        &format!("acks={acks} produce through broker {broker}"),
        common::raw::produce(target, topic, partition, acks, &[value.to_string()]),
    )
    .await
    .unwrap_or_else(|e| panic!("produce through broker {broker}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_and_latency_act_through_the_brokers_proxies() {
    if !common::real_services_available(&common::LOCAL_TOPOLOGY_PROGRAMS) {
        return;
    }
    let scenario = Scenario::parse(SCENARIO, "local_proxy.rs").expect("the test scenario is valid");
    let mut options = LocalTopologyOptions::new(reference::schema_fixture_sql());
    options.brokers = scenario.topology.brokers;
    let topology =
        tokio::time::timeout(common::LOCAL_START_TIMEOUT, LocalTopology::start(&options))
            .await
            .expect("the topology starts in time")
            .unwrap_or_else(|e| panic!("the local topology did not start: {e}"));
    let plan = scenario
        .topic_plans()
        .into_iter()
        .find(|plan| plan.table == "obs")
        .expect("an obs topic");
    let topic = plan.name.clone();
    let topics = [topic.clone()];
    topology
        .create_topics(std::slice::from_ref(&plan), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("creating {topic}: {e}"));
    for bootstrap in topology.bootstrap_servers().split(',') {
        assert!(
            topology
                .broker_ids()
                .iter()
                .all(|id| topology.broker_port(*id).expect("port") != address(bootstrap).port()),
            "clients bootstrap from the proxies, not the brokers' own ports"
        );
    }
    let (cluster, _) = common::wait_for_views(
        &topology,
        &topics,
        &BROKERS,
        REJOIN_TIMEOUT,
        "every replica in the ISR",
        |answer| BROKERS.into_iter().all(|id| in_every_isr(answer, id)),
    )
    .await;
    let controller = cluster.controller.expect("a controller");
    let advertised: Vec<String> = cluster
        .brokers
        .values()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    assert_eq!(
        advertised.join(","),
        topology.bootstrap_servers(),
        "the brokers advertise their proxies"
    );

    // (a) A follower cut off from everyone leaves the ISR; the leader and the other follower still take
    // acks=all writes; healed, it catches up and rejoins.
    let first = partition(&cluster, &topic, 0).clone();
    let leader = first.leader.expect("partition 0 has a leader");
    let follower = *first
        .replicas
        .iter()
        .find(|id| **id != leader && **id != controller)
        .expect("a follower that is not the controller");
    let (_, shrunk) = isolate_until(
        &topology,
        &topics,
        follower,
        Isolation::FromEveryone,
        &format!("isolated follower {follower} out of partition 0's ISR"),
        |answer| !partition(answer, &topic, 0).isr.contains(&follower),
    )
    .await;
    let (code, offset) = produce(&topology, leader, &topic, 0, ACKS_ALL, "while-isolated").await;
    assert_eq!(
        code, 0,
        "acks=all with min ISR 2 succeeds without the isolated follower"
    );
    println!(
        "(a) follower {follower} isolated from everyone: out of partition 0's ISR after {shrunk:?} \
         (session timeout {ZOOKEEPER_SESSION_TIMEOUT:?}); acks=all through leader {leader} appended at {offset}"
    );
    let (_, rejoined) = heal_and_rejoin(&topology, &topics, follower).await;
    println!("(a) follower {follower} healed: back in every ISR after {rejoined:?}");

    // (b) A leader cut off from everyone loses its partitions once its session expires; healed, it comes back as
    // a follower of the new leader.
    let (cluster, _) = common::wait_for_views(
        &topology,
        &topics,
        &BROKERS,
        REJOIN_TIMEOUT,
        "one view of the cluster",
        |_| true,
    )
    .await;
    let controller = cluster.controller.expect("a controller");
    let led = cluster
        .topics
        .get(&topic)
        .and_then(|partitions| {
            partitions
                .iter()
                .find(|p| p.leader.is_some_and(|leader| leader != controller))
        })
        .cloned()
        .unwrap_or_else(|| {
            panic!("no partition led by a broker besides controller {controller}: {cluster:?}")
        });
    let old_leader = led.leader.expect("a leader");
    let index = led.partition;
    let (moved, failover) = isolate_until(
        &topology,
        &topics,
        old_leader,
        Isolation::FromEveryone,
        &format!("partition {index} led by another broker than the isolated {old_leader}"),
        |answer| {
            !answer.brokers.contains_key(&old_leader)
                && partition(answer, &topic, index)
                    .leader
                    .is_some_and(|leader| leader != old_leader)
        },
    )
    .await;
    let new_leader = partition(&moved, &topic, index).leader.expect("a leader");
    let (code, _) = produce(
        &topology,
        new_leader,
        &topic,
        index,
        ACKS_ALL,
        "after-failover",
    )
    .await;
    assert_eq!(code, 0, "the new leader {new_leader} takes acks=all writes");
    println!(
        "(b) leader {old_leader} of partition {index} isolated from everyone: broker {new_leader} leads after {failover:?}"
    );
    let (back, rejoined) = heal_and_rejoin(&topology, &topics, old_leader).await;
    let after = partition(&back, &topic, index);
    assert_ne!(
        after.leader,
        Some(old_leader),
        "partition {index} kept its new leader (preferred elections run every 300 s): {after:?}"
    );
    println!(
        "(b) {old_leader} healed: follower of partition {index} (leader {:?}) and in every ISR after {rejoined:?}",
        after.leader
    );

    // (d) A broker cut off from its peers still serves clients, with the cluster as it last knew it, while the
    // others drop it once its session expires.
    let controller = back.controller.expect("a controller");
    let cut_off = BROKERS
        .into_iter()
        .filter(|id| *id != controller)
        .max_by_key(|id| back.led_by(*id).len())
        .expect("a broker besides the controller");
    let led = back.led_by(cut_off);
    let (others_view, dropped) = isolate_until(
        &topology,
        &topics,
        cut_off,
        Isolation::FromPeers,
        &format!("broker {cut_off}, isolated from its peers, dropped by the others"),
        |answer| !answer.brokers.contains_key(&cut_off) && answer.led_by(cut_off).is_empty(),
    )
    .await;
    let its_view = common::bounded(
        "Metadata from a broker isolated from its peers",
        topology.broker_metadata(cut_off, Some(&topics)),
    )
    .await
    .expect("a broker isolated from its peers answers clients");
    println!(
        "(d) broker {cut_off} isolated from its peers: dropped by the others after {dropped:?}; it still answers \
         clients, listing brokers {:?} and leading {:?} (it led {led:?})",
        its_view.brokers.keys().collect::<Vec<_>>(),
        its_view.led_by(cut_off)
    );
    assert!(
        its_view.brokers.contains_key(&cut_off),
        "its own view still lists itself: {its_view:?}"
    );
    assert_eq!(
        its_view.led_by(cut_off),
        led,
        "it still calls itself leader of what it led"
    );
    let (_, stale_index) = led.first().cloned().unwrap_or_else(|| {
        panic!("broker {cut_off} led no partition of {topic} before its isolation")
    });
    let (acks_one, stale_offset) = produce(
        &topology,
        cut_off,
        &topic,
        stale_index,
        ACKS_ONE,
        "stale-leader",
    )
    .await;
    assert_eq!(acks_one, 0, "the stale leader appends an acks=1 write");
    let (acks_all, _) = produce(
        &topology,
        cut_off,
        &topic,
        stale_index,
        ACKS_ALL,
        "stale-leader",
    )
    .await;
    assert_ne!(
        acks_all, 0,
        "acks=all cannot be acknowledged without the followers"
    );
    let new_leader = partition(&others_view, &topic, stale_index)
        .leader
        .expect("the others elected a leader");
    let (code, _) = produce(
        &topology,
        new_leader,
        &topic,
        stale_index,
        ACKS_ALL,
        "while-cut-off",
    )
    .await;
    assert_eq!(
        code, 0,
        "the others' leader {new_leader} takes acks=all writes"
    );
    println!(
        "(d) through {cut_off}, partition {stale_index}: acks=1 appended at {stale_offset}, acks=all answered \
         error {acks_all}; its new leader {new_leader} took an acks=all write"
    );
    let (_, rejoined) = heal_and_rejoin(&topology, &topics, cut_off).await;
    let client = common::client(&topology.bootstrap_servers()).await;
    let records = common::read_all(&common::partition(&client, &topic, stale_index).await, 0).await;
    let values: Vec<Option<&str>> = records
        .iter()
        .map(|(_, _, value)| value.as_deref())
        .collect();
    assert!(
        values.contains(&Some("while-cut-off")) && !values.contains(&Some("stale-leader")),
        "the new leader's write kept, the stale leader's truncated when it rejoined: {records:?}"
    );
    println!(
        "(d) {cut_off} healed: back in every ISR after {rejoined:?}; partition {stale_index} holds {values:?}"
    );

    // (c) Latency on a broker delays its answers; zero removes it.
    let slow = controller;
    let latency = Duration::from_millis(500);
    topology.set_broker_latency(slow, latency).expect("latency");
    let slow_round_trip = metadata_round_trip(&topology, slow, &topic).await;
    assert!(
        slow_round_trip >= latency,
        "a Metadata round trip through broker {slow} took {slow_round_trip:?}, less than its latency {latency:?}"
    );
    topology
        .set_broker_latency(slow, Duration::ZERO)
        .expect("latency");
    let round_trip = metadata_round_trip(&topology, slow, &topic).await;
    println!(
        "(c) Metadata round trip through broker {slow}: {slow_round_trip:?} with {latency:?} latency, \
         {round_trip:?} without"
    );

    let run_dir = topology.shutdown().await.expect("shutdown");
    println!("shut down; logs in {}", run_dir.display());
}
