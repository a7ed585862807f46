//! The Java `KafkaConsumer` (kafka-clients 3.9.1, `fixtures/java/GroupMember.java`) in groups on the embedded
//! cluster and on a real Kafka 3.9.1 broker, run through one script: a member alone; a second joins; the second is
//! killed (SIGKILL: its partitions move only after its session timeout); a third joins and stops polling past
//! `max.poll.interval.ms` (it is removed, its next commit fails with CommitFailedException, and it rejoins).
//! Each member's observable sequence — partitions assigned, revoked and lost per generation, commit failures — must
//! be the same on both, with range and with cooperative-sticky assignment. At the end Kafka's own
//! ConsumerGroupCommand describes the group on both: every partition committed at its log end, lag 0.
//!
//! Needs java, javac and mvn (the JVM cache of the local backend); skipped with a printed reason when they are
//! missing, unless ETL_HARNESS_REQUIRE_REAL=1.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openmrs_etl_harness::broker::Cluster;
use openmrs_etl_harness::topology::local::{jvm_cache_dir, provision_jvm_components};
use rskafka::client::partition::Compression;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

const PARTITIONS: i32 = 12;
const PER_PARTITION: usize = 20;
const SESSION_TIMEOUT_MS: &str = "6000";

/// The compiled member and its classpath.
struct Java {
    classpath: String,
    tools: PathBuf,
    _classes: tempfile::TempDir,
}

fn java() -> Option<Java> {
    if !common::real_services_available(&["java", "mvn"]) {
        return None;
    }
    let javac = std::process::Command::new("javac").arg("-version").output();
    if !javac.is_ok_and(|o| o.status.success()) {
        let reason =
            "javac not found (install openjdk-17-jdk-headless; .ci/install-real-stack does)";
        if std::env::var("ETL_HARNESS_REQUIRE_REAL").as_deref() == Ok("1") {
            panic!("ETL_HARNESS_REQUIRE_REAL=1 requires it: {reason}");
        }
        println!("skipped: {reason}");
        return None;
    }
    let jvm = provision_jvm_components(&jvm_cache_dir()).expect("JVM components");
    let tools = jvm.components.tools_libs();
    let classes = tempfile::tempdir().expect("temp dir");
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/java/GroupMember.java"
    );
    let compiled = std::process::Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg("-cp")
        .arg(format!("{}/*", tools.display()))
        .arg(source)
        .output()
        .expect("javac runs");
    assert!(
        compiled.status.success(),
        "GroupMember.java compiles: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    Some(Java {
        classpath: format!("{}:{}/*", classes.path().display(), tools.display()),
        tools,
        _classes: classes,
    })
}

/// One running member: its process, its stdin, and every line it printed so far.
struct Member {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Member {
    fn start(
        java: &Java,
        name: &'static str,
        bootstrap: &str,
        group: &str,
        topic: &str,
        assignor: &str,
        max_poll_interval_ms: &str,
    ) -> Member {
        let mut child = Command::new("java")
            .args(["-Xmx128m", "-Dlog4j.configuration=file:/dev/null", "-cp"])
            .arg(&java.classpath)
            .arg("GroupMember")
            .args([
                bootstrap,
                group,
                topic,
                assignor,
                SESSION_TIMEOUT_MS,
                max_poll_interval_ms,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("java starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Member {
            name,
            child,
            stdin,
            lines,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The partitions it holds now (cooperative callbacks name only what changed, so this replays them all).
    fn holds(&self) -> BTreeSet<i32> {
        let mut held = BTreeSet::new();
        for line in self.lines() {
            let mut parts = line.split(' ');
            let (kind, partitions) = (parts.next(), parts.nth(1).unwrap_or("-"));
            let listed = partitions
                .split(',')
                .filter(|p| *p != "-")
                .map(|p| p.parse::<i32>().expect("partition"));
            match kind {
                Some("assigned") => held.extend(listed),
                Some("revoked" | "lost") => {
                    for p in listed {
                        held.remove(&p);
                    }
                }
                _ => {}
            }
        }
        held
    }

    fn records(&self) -> usize {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("records "))
            .map(|n| n.parse::<usize>().expect("count"))
            .sum()
    }

    /// What is compared across backends: every line but the record counts (how records fall into polls is
    /// timing), with each partition list reduced to its size (which member gets which partitions depends on the
    /// random member ids). One race is left out too: in the first round of a cooperative rebalance a follower gets
    /// nothing, and the leader, having revoked what moves, rejoins at once; whether the follower's SyncGroup beats
    /// that rejoin (it sees "assigned N: 0 partitions") or not (REBALANCE_IN_PROGRESS, so it sees nothing for
    /// generation N) is a matter of microseconds on either broker, and the next generation is the same.
    fn observed(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| !l.starts_with("records "))
            .filter(|l| !(l.starts_with("assigned ") && l.ends_with(" -")))
            .map(|l| {
                let parts: Vec<&str> = l.split(' ').collect();
                match parts.as_slice() {
                    [kind @ ("assigned" | "revoked" | "lost"), generation, partitions] => {
                        let count = partitions.split(',').filter(|p| *p != "-").count();
                        format!("{kind} generation {generation}: {count} partitions")
                    }
                    _ => l,
                }
            })
            .collect()
    }

    async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("command sent");
    }

    async fn exit(mut self) -> Vec<String> {
        self.send("exit").await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        // Give the reader the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.observed()
    }
}

/// Waits until the members hold every partition between them, each exactly once, and nothing changed for 2 s.
async fn settled(members: &[&Member], what: &str) {
    let started = Instant::now();
    let mut last = Vec::new();
    let mut quiet_since = Instant::now();
    loop {
        let now: Vec<Vec<String>> = members.iter().map(|m| m.lines()).collect();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
        let held: Vec<BTreeSet<i32>> = members.iter().map(|m| m.holds()).collect();
        let total: usize = held.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = held.iter().flatten().copied().collect();
        if total == PARTITIONS as usize
            && union.len() == PARTITIONS as usize
            && quiet_since.elapsed() > Duration::from_secs(2)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{what}: not settled within 90 s: {:?}",
            members
                .iter()
                .map(|m| (m.name, m.lines()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn until(what: &str, members: &[&Member], condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{what}: not within 90 s: {:?}",
            members
                .iter()
                .map(|m| (m.name, m.lines()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates the topic and fills it; returns how many records it holds.
async fn prepare(bootstrap: &str, topic: &str) -> usize {
    let client = common::client(bootstrap).await;
    common::bounded(
        "create topic",
        client
            .controller_client()
            .expect("controller")
            .create_topic(topic, PARTITIONS, 1, 10_000),
    )
    .await
    .expect("topic created");
    // Timestamps of now: older ones would fall to the real broker's time retention.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    for p in 0..PARTITIONS {
        let partition = common::partition(&client, topic, p).await;
        let records = (0..PER_PARTITION)
            .map(|n| common::record(&format!("k{n}"), &format!("v{p}-{n}"), now))
            .collect();
        common::bounded(
            "produce",
            partition.produce(records, Compression::NoCompression),
        )
        .await
        .expect("produced");
    }
    PARTITIONS as usize * PER_PARTITION
}

/// The script (see the module docs); returns each member's observed sequence, in member order a, b, c.
async fn script(java: &Java, bootstrap: &str, assignor: &str) -> Vec<(String, Vec<String>)> {
    let topic = format!("members-{assignor}");
    let group = format!("group-{assignor}");
    let total = prepare(bootstrap, &topic).await;
    let start =
        |name, max_poll| Member::start(java, name, bootstrap, &group, &topic, assignor, max_poll);
    let a = start("a", "300000");
    settled(&[&a], "a alone").await;
    until("a read everything", &[&a], || a.records() >= total).await;
    let b = start("b", "300000");
    settled(&[&a, &b], "a and b").await;
    let mut b = b;
    b.child.start_kill().expect("kill b");
    let _ = b.child.wait().await;
    settled(&[&a], "b killed").await;
    let mut c = start("c", "3000");
    settled(&[&a, &c], "a and c").await;
    c.send("stall 6000").await;
    until("c's commit after the stall", &[&a, &c], || {
        c.lines().iter().any(|l| l.starts_with("commit-failed"))
    })
    .await;
    settled(&[&a, &c], "c back").await;
    let b_seen = b.observed();
    let c_seen = c.exit().await;
    // c's leaving starts one more rebalance: a takes it before closing, on both brokers alike (closing at once
    // raced it: whether a saw that generation depended on its next heartbeat).
    settled(&[&a], "c left").await;
    let a_seen = a.exit().await;
    vec![
        ("a".to_string(), a_seen),
        ("b".to_string(), b_seen),
        ("c".to_string(), c_seen),
    ]
}

/// ConsumerGroupCommand --describe: (topic, partition, current offset, log end offset, lag), sorted.
fn describe(tools: &Path, bootstrap: &str, group: &str) -> Vec<(String, i32, i64, i64, i64)> {
    let output = std::process::Command::new("java")
        .args(["-Xmx128m", "-Dlog4j.configuration=file:/dev/null", "-cp"])
        .arg(format!("{}/*", tools.display()))
        .arg("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")
        .args([
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
        ])
        .output()
        .expect("ConsumerGroupCommand runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ConsumerGroupCommand failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rows: Vec<_> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 || f[0] != group {
                return None;
            }
            Some((
                f[1].to_string(),
                f[2].parse().ok()?,
                f[3].parse().ok()?,
                f[4].parse().ok()?,
                f[5].parse().ok()?,
            ))
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_consumer_sees_the_same_group_on_embedded_and_on_kafka() {
    let Some(java) = java() else { return };
    let kafka = common::start_real_kafka().await;
    let mut builder = Cluster::builder();
    // As the real broker the harness starts: one broker, no initial rebalance delay.
    builder
        .brokers(1)
        .log_default("group.initial.rebalance.delay.ms", "0");
    let cluster = builder.start().await.expect("embedded cluster");
    for assignor in ["range", "cooperative-sticky"] {
        let real = script(&java, &kafka.bootstrap_servers(), assignor).await;
        let embedded = script(&java, &cluster.bootstrap_servers(), assignor).await;

        for ((name, on_kafka), (_, on_embedded)) in real.iter().zip(&embedded) {
            assert_eq!(
                on_embedded, on_kafka,
                "{assignor}: member {name} saw a different sequence on the embedded cluster than on Kafka 3.9.1"
            );
        }
        let group = format!("group-{assignor}");
        let real_rows = describe(&java.tools, &kafka.bootstrap_servers(), &group);
        let embedded_rows = describe(&java.tools, &cluster.bootstrap_servers(), &group);
        assert_eq!(real_rows.len(), PARTITIONS as usize, "{real_rows:?}");
        assert!(
            real_rows.iter().all(|r| r.2 == r.3 && r.4 == 0),
            "{real_rows:?}"
        );
        assert_eq!(embedded_rows, real_rows, "{assignor}: ConsumerGroupCommand");
    }
}
