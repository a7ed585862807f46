//! Consumer groups on the embedded cluster, through clients nobody here wrote: kafka-python's `KafkaConsumer`
//! (`fixtures/python/group_consumer.py`, from the virtualenv `.ci/install-real-stack` makes), kcat's balanced
//! consumer (librdkafka), and raw requests for the coordinator's error answers. The Java consumer and Kafka's own
//! ConsumerGroupCommand are in `broker_groups_java.rs`.
//!
//! With ETL_HARNESS_REQUIRE_REAL=1 (CI) a missing kafka-python or kcat fails the test; otherwise it is skipped with
//! the reason printed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{bounded, call, init_tracing};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use openmrs_etl_harness::broker::{BrokerId, Cluster, NewTopic};
use openmrs_etl_harness::history::{ClusterEventKind, MemberRemoval};
use rskafka::client::partition::Compression;
use tokio::net::TcpStream;
use tokio::process::Command;

/// The virtualenv's python with kafka-python, or `None` (after saying why) when the test may be skipped.
fn kafka_python() -> Option<PathBuf> {
    let venv = std::env::var_os("ETL_HARNESS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("openmrs-etl-harness").join("venv")
        });
    let python = venv.join("bin").join("python");
    let works = std::process::Command::new(&python)
        .args(["-c", "import kafka"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    let reason = format!(
        "no virtualenv with kafka-python at {} (run .ci/install-real-stack)",
        venv.display()
    );
    if std::env::var("ETL_HARNESS_REQUIRE_REAL").as_deref() == Ok("1") {
        panic!("ETL_HARNESS_REQUIRE_REAL=1 requires kafka-python, but {reason}");
    }
    println!("skipped: {reason}");
    None
}

async fn cluster(brokers: usize, initial_delay_ms: u32) -> Cluster {
    init_tracing();
    let mut builder = Cluster::builder();
    builder
        .brokers(brokers)
        .session_timeout(Duration::from_secs(3))
        .log_default(
            "group.initial.rebalance.delay.ms",
            initial_delay_ms.to_string(),
        );
    bounded("cluster start", builder.start())
        .await
        .expect("cluster starts")
}

/// Produces `per_partition` records to each partition of `topic`, values `<tag>-<partition>-<n>`; returns them.
async fn produce(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    tag: &str,
) -> BTreeSet<String> {
    let client = common::client(&cluster.bootstrap_servers()).await;
    let mut values = BTreeSet::new();
    for p in 0..partitions {
        let partition = common::partition(&client, topic, p).await;
        let records: Vec<_> = (0..per_partition)
            .map(|n| {
                let value = format!("{tag}-{p}-{n}");
                values.insert(value.clone());
                common::record(&format!("k{n}"), &value, 1_700_000_000_000)
            })
            .collect();
        bounded(
            "produce",
            partition.produce(records, Compression::NoCompression),
        )
        .await
        .expect("produced");
    }
    values
}

/// What one kafka-python consumer reports when it is done.
#[derive(Debug, serde::Deserialize)]
struct PythonReport {
    assignment: Vec<i32>,
    records: Vec<(i32, i64, String)>,
}

fn python_consumer(
    python: &PathBuf,
    bootstrap: &str,
    group: &str,
    topic: &str,
    idle_ms: u32,
) -> tokio::process::Child {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/python/group_consumer.py"
    );
    Command::new(python)
        .args([script, bootstrap, group, topic, &idle_ms.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts")
}

async fn report(child: tokio::process::Child, who: &str) -> PythonReport {
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{who} finishes within 180 s"))
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{who} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{who} printed no report ({e}): {stdout}"))
}

fn values(report: &PythonReport) -> Vec<String> {
    report.records.iter().map(|(_, _, v)| v.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_consumers_split_a_topic_and_a_third_resumes_at_their_commits() {
    let Some(python) = kafka_python() else { return };
    // Kafka's default initial delay (3 s): both members, started together, are in the first generation.
    let cluster = cluster(3, 3_000).await;
    let topic = "visits";
    cluster
        .create_topic(NewTopic::new(topic, 6).replication_factor(3))
        .expect("topic");
    let first = produce(&cluster, topic, 6, 50, "first").await;
    let bootstrap = cluster.bootstrap_servers();
    let a = python_consumer(&python, &bootstrap, "etl", topic, 4_000);
    let b = python_consumer(&python, &bootstrap, "etl", topic, 4_000);
    let (a, b) = tokio::join!(report(a, "consumer a"), report(b, "consumer b"));

    let events = cluster.events();
    let formed: Vec<(i32, usize)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            ClusterEventKind::GroupGenerationFormed {
                group,
                generation,
                members,
                ..
            } if group == "etl" => Some((*generation, members.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        formed.first(),
        Some(&(1, 2)),
        "both joined the first generation: {formed:?}"
    );
    // One generation, three partitions each, disjoint: every record read exactly once.
    assert_eq!(a.assignment.len(), 3, "{:?}", a.assignment);
    assert_eq!(b.assignment.len(), 3, "{:?}", b.assignment);
    let union: BTreeSet<i32> = a.assignment.iter().chain(&b.assignment).copied().collect();
    assert_eq!(union, (0..6).collect());
    let mut read = values(&a);
    read.extend(values(&b));
    assert_eq!(read.len(), first.len(), "no record read twice");
    assert_eq!(read.into_iter().collect::<BTreeSet<_>>(), first);
    let left = events
        .iter()
        .filter(|e| {
            matches!(&e.kind, ClusterEventKind::GroupMemberRemoved { group, reason: MemberRemoval::Left, .. } if group == "etl")
        })
        .count();
    assert_eq!(left, 2, "both closed consumers left the group");

    // A third member of the group starts where the first two committed: only the new records.
    let second = produce(&cluster, topic, 6, 10, "second").await;
    let c = report(
        python_consumer(&python, &bootstrap, "etl", topic, 3_000),
        "consumer c",
    )
    .await;
    assert_eq!(c.assignment, (0..6).collect::<Vec<_>>());
    assert_eq!(values(&c).into_iter().collect::<BTreeSet<_>>(), second);
    assert_eq!(c.records.len(), second.len());
    let summary = cluster.groups();
    let etl = summary
        .iter()
        .find(|g| g.group == "etl")
        .expect("group etl");
    assert_eq!(etl.state, "Empty");
    assert_eq!(etl.offsets.len(), 6);
    assert!(
        etl.offsets
            .iter()
            .all(|o| o.committed == 60 && o.lag == Some(0)),
        "{etl:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_broker_killed_while_a_consumer_runs_it_resumes_on_the_new_one() {
    let Some(python) = kafka_python() else { return };
    let cluster = cluster(3, 0).await;
    let topic = "obs";
    cluster
        .create_topic(NewTopic::new(topic, 6).replication_factor(3))
        .expect("topic");
    let first = produce(&cluster, topic, 6, 40, "first").await;
    let bootstrap = cluster.bootstrap_servers();
    // Idle for 15 s before it gives up: long enough to ride out the failover.
    let a = python_consumer(&python, &bootstrap, "failover", topic, 15_000);
    let committed_everywhere = |cluster: &Cluster, offset: i64| {
        cluster.groups().iter().any(|g| {
            g.group == "failover"
                && g.offsets.len() == 6
                && g.offsets.iter().all(|o| o.committed == offset)
        })
    };
    let mut waited = 0;
    while !committed_everywhere(&cluster, 40) {
        assert!(waited < 600, "a committed the first records within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let old = cluster
        .group_coordinator("failover")
        .expect("a coordinator");
    cluster.kill(old).await.expect("kill");
    let mut new = None;
    for _ in 0..200 {
        match cluster.group_coordinator("failover") {
            Some(b) if b != old => {
                new = Some(b);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let new = new.expect("the offsets partition got a new leader within 20 s");
    let second = produce(&cluster, topic, 6, 10, "second").await;
    let a = report(a, "consumer a").await;
    // One member, its group reloaded Stable by the new coordinator: no rebalance, every record exactly once.
    let mut expected = first.clone();
    expected.extend(second.iter().cloned());
    assert_eq!(values(&a).into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(a.records.len(), expected.len(), "nothing read twice");
    assert!(committed_everywhere(&cluster, 50), "{:?}", cluster.groups());

    // Nothing committed was lost: a new member starts exactly at a's commits.
    let third = produce(&cluster, topic, 6, 5, "third").await;
    let b = report(
        python_consumer(&python, &bootstrap, "failover", topic, 3_000),
        "consumer b",
    )
    .await;
    assert_eq!(values(&b).into_iter().collect::<BTreeSet<_>>(), third);
    assert_eq!(b.records.len(), third.len());
    let loaded = cluster.events().into_iter().find_map(|e| match e.kind {
        ClusterEventKind::CoordinatorLoaded {
            broker, offsets, ..
        } if broker == new && offsets >= 6 => Some(offsets),
        _ => None,
    });
    assert!(
        loaded.is_some(),
        "broker {new} loaded the group's offsets from its replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_balanced_consumers_read_every_record_and_resume_at_their_commits() {
    let Some(kcat) = common::kcat() else { return };
    let cluster = cluster(3, 3_000).await;
    let topic = "encounters";
    cluster
        .create_topic(NewTopic::new(topic, 6).replication_factor(3))
        .expect("topic");
    let first = produce(&cluster, topic, 6, 30, "first").await;
    let bootstrap = cluster.bootstrap_servers();
    let run = |kcat: PathBuf, bootstrap: String| async move {
        let output = tokio::time::timeout(
            Duration::from_secs(120),
            Command::new(kcat)
                // Not `-o beginning`: in -G mode kcat would seek there on every assignment, ignoring the commits.
                .args([
                    "-G",
                    "kcat-group",
                    "-b",
                    &bootstrap,
                    "-X",
                    "auto.offset.reset=earliest",
                    "-e",
                ])
                .args(["-f", "%s\n", topic])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kcat exits within 120 s")
        .expect("kcat runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (x, y) = tokio::join!(
        run(kcat.clone(), bootstrap.clone()),
        run(kcat.clone(), bootstrap.clone())
    );
    let read: BTreeSet<String> = x.iter().chain(&y).cloned().collect();
    assert_eq!(read, first, "every record read by one of the two members");
    let second = produce(&cluster, topic, 6, 5, "second").await;
    let z = run(kcat.clone(), bootstrap.clone()).await;
    assert_eq!(z.iter().cloned().collect::<BTreeSet<_>>(), second);
    assert_eq!(
        z.len(),
        second.len(),
        "the third member starts at the commits"
    );
}

async fn connect(cluster: &Cluster, broker: BrokerId) -> TcpStream {
    let index = cluster
        .broker_ids()
        .iter()
        .position(|b| *b == broker)
        .expect("broker");
    TcpStream::connect(cluster.broker_addrs()[index])
        .await
        .expect("connect")
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn find(group: &str) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default().with_key(s(group))
}

#[tokio::test]
async fn the_coordinator_answers_as_kafka_does() {
    let cluster = cluster(3, 0).await;
    let mut any = connect(&cluster, BrokerId(1)).await;
    // The first FindCoordinator creates __consumer_offsets and answers COORDINATOR_NOT_AVAILABLE.
    let first = call(&mut any, &find("openmrs-etl"), 3).await;
    assert_eq!(
        first.error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
    let leaders = cluster
        .partition_leaders("__consumer_offsets")
        .expect("created");
    assert_eq!(leaders.len(), 50);
    // "openmrs-etl".hashCode() is -536456908: Utils.abs, then % 50 → partition 8. "polygenelubricants" hashes to
    // Integer.MIN_VALUE, which Utils.abs maps to 0.
    for (group, partition) in [("openmrs-etl", 8usize), ("polygenelubricants", 0)] {
        let answer = call(&mut any, &find(group), 3).await;
        assert_eq!(answer.error_code, 0, "{group}");
        assert_eq!(
            Some(BrokerId(answer.node_id.0)),
            leaders[partition],
            "{group}"
        );
    }
    // Batched (v4+): a transaction key has no coordinator here.
    let batched = call(
        &mut any,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s("tx-1")]),
        4,
    )
    .await;
    assert_eq!(
        batched.coordinators[0].error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );

    let coordinator = cluster.group_coordinator("g").expect("coordinator");
    let other = cluster
        .broker_ids()
        .into_iter()
        .find(|b| *b != coordinator)
        .unwrap();
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(bytes::Bytes::from_static(b"sub"))]);
    let mut wrong = connect(&cluster, other).await;
    let refused = call(&mut wrong, &join, 9).await;
    assert_eq!(refused.error_code, ResponseError::NotCoordinator.code());

    let mut stream = connect(&cluster, coordinator).await;
    let required = call(&mut stream, &join, 9).await;
    assert_eq!(required.error_code, ResponseError::MemberIdRequired.code());
    let member = required.member_id.clone();
    assert!(!member.is_empty());
    let joined = call(&mut stream, &join.clone().with_member_id(member.clone()), 9).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, member);
    assert_eq!(joined.members.len(), 1);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(1)
        .with_member_id(member.clone())
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(bytes::Bytes::from_static(b"mine")),
        ]);
    let synced = call(&mut stream, &sync, 5).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"mine");
    assert_eq!(synced.protocol_name.as_deref(), Some("range"));

    cluster.create_topic(NewTopic::new("t", 2)).expect("topic");
    let commit = |generation: i32, offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member.clone())
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(0),
                    ]),
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("no-such-topic")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1),
                    ]),
            ])
    };
    let committed = call(&mut stream, &commit(1, 17), 9).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        committed.topics[1].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let stale = call(&mut stream, &commit(0, 99), 9).await;
    assert_eq!(
        stale.topics[0].partitions[0].error_code,
        ResponseError::IllegalGeneration.code()
    );
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(1)
        .with_member_id(member.clone());
    assert_eq!(call(&mut stream, &heartbeat, 4).await.error_code, 0);

    let fetch = |group: &str| {
        OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_member_epoch(-1)
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 1]),
                ])),
        ])
    };
    let fetched = call(&mut stream, &fetch("g"), 8).await;
    let partitions: BTreeMap<i32, i64> = fetched.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(partitions, BTreeMap::from([(0, -1), (1, 17)]));

    let described = call(
        &mut stream,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g")), GroupId(s("nobody"))]),
        5,
    )
    .await;
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(
        described.groups[0].members[0].client_host.as_str(),
        "/127.0.0.1"
    );
    assert_eq!(
        &described.groups[0].members[0].member_assignment[..],
        b"mine"
    );
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");
    let listed = call(&mut stream, &ListGroupsRequest::default(), 4).await;
    assert!(listed.groups.iter().any(|g| g.group_id.0.as_str() == "g"));

    // A member cannot delete its group; after it leaves, the Empty group can go, offsets and all.
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]);
    assert_eq!(
        call(&mut stream, &delete, 2).await.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(member.clone())
        ]);
    let left = call(&mut stream, &leave, 5).await;
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(call(&mut stream, &delete, 2).await.results[0].error_code, 0);
    let after = call(&mut stream, &fetch("g"), 8).await;
    assert!(after.groups[0].topics[0]
        .partitions
        .iter()
        .all(|p| p.committed_offset == -1));
    let events = cluster.events();
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, ClusterEventKind::GroupDeleted { group } if group == "g")));
    assert!(events.iter().any(|e| matches!(&e.kind, ClusterEventKind::OffsetsCommitted { group, offsets, .. } if group == "g" && offsets == &vec![("t".to_string(), 1, 17)])));
}
