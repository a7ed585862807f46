//! Consumer-group benchmark, embedded cluster and real Kafka 3.9.1 side by side in one run, with the same Java
//! client and settings (`fixtures/java/GroupBench.java`): one broker each, `group.initial.rebalance.delay.ms` 0,
//! a 12-partition topic, range assignment, heartbeat 1 s.
//!
//! - Full rebalance time, client side: a third member subscribes to a group of two; from its subscribe until all
//!   three hold their partitions of the new generation.
//! - Coordinator-side rebalance latency: from the end of the join phase (the last JoinGroup of the round) to the
//!   group being Stable (the leader's SyncGroup received, every held SyncGroup answered). Embedded: the cluster's
//!   events. Kafka: its log lines "Stabilized group ... generation N" and "Assignment received from leader ... for
//!   generation N" (ms resolution).
//! - OffsetCommit throughput of one client (commitSync of all 12 partitions in a loop).
//!
//! Run: `cargo bench --bench groups` (needs java, javac and mvn, as the local backend does). Prints a table; the
//! numbers go to docs/benchmarks.md with the date.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openmrs_etl_harness::broker::Cluster;
use openmrs_etl_harness::history::ClusterEventKind;
use openmrs_etl_harness::topology::local::{
    jvm_cache_dir, provision_jvm_components, LocalTopologyOptions, StandaloneKafka,
};

const ROUNDS: usize = 10;
const COMMIT_SECONDS: u32 = 10;
const TOPIC: &str = "bench-groups";

struct Measured {
    rebalance_ms: Vec<f64>,
    commits_per_s: f64,
}

fn run_java(classpath: &str, bootstrap: &str) -> Measured {
    let output = std::process::Command::new("java")
        .args([
            "-Xmx256m",
            "-Dlog4j.configuration=file:/dev/null",
            "-cp",
            classpath,
        ])
        .arg("GroupBench")
        .args([
            bootstrap,
            TOPIC,
            &ROUNDS.to_string(),
            &COMMIT_SECONDS.to_string(),
        ])
        .output()
        .expect("java runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "GroupBench failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rebalance_ms = Vec::new();
    let mut commits_per_s = 0.0;
    for line in text.lines() {
        if let Some(ms) = line.strip_prefix("rebalance_ms ") {
            rebalance_ms.push(ms.parse().expect("ms"));
        }
        if let Some(n) = line.strip_prefix("commits_per_s ") {
            commits_per_s = n.parse().expect("rate");
        }
    }
    Measured {
        rebalance_ms,
        commits_per_s,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v
}

/// Coordinator-side latencies from Kafka's log: "Stabilized group G generation N" to "Assignment received from
/// leader ... for group G for generation N".
fn kafka_coordinator_ms(run_dir: &Path) -> Vec<f64> {
    let mut stabilized: BTreeMap<i64, i64> = BTreeMap::new();
    let mut assigned: BTreeMap<i64, i64> = BTreeMap::new();
    let mut stack = vec![run_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines().filter(|l| l.contains("bench-rebalance")) {
                let Some(at) = timestamp_ms(line) else {
                    continue;
                };
                let generation = line
                    .split("generation ")
                    .nth(1)
                    .and_then(|g| g.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|g| g.parse::<i64>().ok());
                let Some(generation) = generation else {
                    continue;
                };
                if line.contains("Stabilized group") {
                    stabilized.insert(generation, at);
                } else if line.contains("Assignment received from leader") {
                    assigned.insert(generation, at);
                }
            }
        }
    }
    stabilized
        .iter()
        .filter_map(|(g, start)| assigned.get(g).map(|end| (end - start) as f64))
        .collect()
}

/// `[2026-12-05 03:40:01,123]` → ms (only differences are used, so the date part is reduced to seconds of day).
fn timestamp_ms(line: &str) -> Option<i64> {
    let stamp = line.strip_prefix('[')?.get(..23)?;
    let time = stamp.get(11..)?;
    let (hms, ms) = time.split_once(',')?;
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<i64>().ok()?)
}

fn embedded_coordinator_ms(cluster: &Cluster) -> Vec<f64> {
    let mut formed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in cluster.events() {
        match e.kind {
            ClusterEventKind::GroupGenerationFormed {
                group, generation, ..
            } if group == "bench-rebalance" => {
                formed.insert(generation, e.at_ms);
            }
            ClusterEventKind::GroupStable { group, generation } if group == "bench-rebalance" => {
                if let Some(start) = formed.get(&generation) {
                    out.push((e.at_ms - start) as f64);
                }
            }
            _ => {}
        }
    }
    out
}

async fn create_topic(bootstrap: &str) {
    let client = rskafka::client::ClientBuilder::new(vec![bootstrap.to_string()])
        .build()
        .await
        .expect("client");
    client
        .controller_client()
        .expect("controller")
        .create_topic(TOPIC, 12, 1, 10_000)
        .await
        .expect("topic");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let jvm = provision_jvm_components(&jvm_cache_dir()).expect("JVM components");
        let tools = jvm.components.tools_libs();
        let classes = tempfile::tempdir().expect("temp dir");
        let compiled = std::process::Command::new("javac")
            .arg("-d")
            .arg(classes.path())
            .arg("-cp")
            .arg(format!("{}/*", tools.display()))
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/java/GroupBench.java"))
            .status()
            .expect("javac runs");
        assert!(compiled.success(), "GroupBench.java compiles");
        let classpath = format!("{}:{}/*", classes.path().display(), tools.display());

        let kafka = tokio::time::timeout(
            Duration::from_secs(600),
            StandaloneKafka::start(&LocalTopologyOptions::new(String::new())),
        )
        .await
        .expect("Kafka starts")
        .expect("Kafka starts");
        let mut builder = Cluster::builder();
        builder
            .brokers(1)
            .log_default("group.initial.rebalance.delay.ms", "0");
        let cluster = builder.start().await.expect("embedded cluster");

        create_topic(&kafka.bootstrap_servers()).await;
        create_topic(&cluster.bootstrap_servers()).await;
        let real = {
            let bootstrap = kafka.bootstrap_servers();
            let classpath = classpath.clone();
            tokio::task::spawn_blocking(move || run_java(&classpath, &bootstrap))
                .await
                .expect("bench")
        };
        let embedded = {
            let bootstrap = cluster.bootstrap_servers();
            let classpath = classpath.clone();
            tokio::task::spawn_blocking(move || run_java(&classpath, &bootstrap))
                .await
                .expect("bench")
        };
        let real_coordinator = sorted(kafka_coordinator_ms(kafka.run_dir()));
        let embedded_coordinator = sorted(embedded_coordinator_ms(&cluster));
        let (real_full, embedded_full) = (sorted(real.rebalance_ms), sorted(embedded.rebalance_ms));
        println!("consumer groups, {ROUNDS} rebalances (3rd member joins 2, 12 partitions), {COMMIT_SECONDS} s of commits");
        println!("| measure | embedded | Kafka 3.9.1 |");
        println!("|---|---|---|");
        let row = |name: &str, e: &[f64], k: &[f64]| {
            println!(
                "| {name} p50 / max (ms, n={}/{}) | {:.1} / {:.1} | {:.1} / {:.1} |",
                e.len(),
                k.len(),
                percentile(e, 0.5),
                percentile(e, 1.0),
                percentile(k, 0.5),
                percentile(k, 1.0)
            );
        };
        row("full rebalance, client side", &embedded_full, &real_full);
        row("coordinator: join end → Stable", &embedded_coordinator, &real_coordinator);
        println!(
            "| OffsetCommit (12 partitions) per s, one client | {:.0} | {:.0} |",
            embedded.commits_per_s, real.commits_per_s
        );
        cluster.shutdown().await;
        let _ = kafka.shutdown().await;
    });
}
