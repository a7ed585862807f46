//! Embedded cluster benchmarks (numbers go in the README, never into test assertions).
//!
//! Run: `cargo bench --bench broker` (release profile). Measures:
//! 1. `Cluster::start` until a 6-partition topic has leaders on 3 brokers;
//! 2. produce throughput through rskafka: 1 KiB values, 16-byte keys, 6 partitions, 200,000 records, 900 records
//!    per produce call, one task per partition; and the process's memory before and after (RSS);
//! 3. the same at replication factor 3 (rskafka sends acks=all), with the bytes every replica holds against the
//!    raw payload (replicas share buffers);
//! 4. the same client against both clusters: kcat (librdkafka) producing the same 200,000 records, acks=all,
//!    1,000-record batches, into librdkafka's own mock cluster (3 brokers, replicates nothing; the 4-partition topic
//!    it creates on first use) and into the embedded cluster at RF 3 on a topic of as many partitions, alternating,
//!    [`KCAT_ROUNDS`] rounds and their median ratio (skipped with a printed reason when kcat is not on the PATH),
//!    with the CPU time each side used (kcat and the mock cluster share kcat's process; the embedded cluster is this
//!    process);
//! 5. failover: real-time clock, 2 s session timeout; time from killing a partition leader until a produce through
//!    rskafka succeeds on the new leader.

use std::time::{Duration, Instant};

use openmrs_etl_harness::broker::{Cluster, NewTopic};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use rskafka::BackoffConfig;

const RECORDS: usize = 200_000;
const PER_CALL: usize = 900;
const PARTITIONS: i32 = 6;
const VALUE_BYTES: usize = 1024;
const KEY_BYTES: usize = 16;
/// Partitions of the topic librdkafka's mock cluster creates on first use (its default; `kcat -L` against it shows
/// 4 partitions, RF 3); the embedded cluster's topic in the kcat comparison has as many.
const MOCK_PARTITIONS: i32 = 4;
/// Rounds of the kcat comparison, mock and embedded alternating: single rounds vary by ±30 % on 2 cores (kcat's
/// own CPU time varies that much), so the summary is the median ratio.
const KCAT_ROUNDS: usize = 9;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn startup() {
    let runs = 200;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let cluster = Cluster::builder()
            .brokers(3)
            .topic(NewTopic::new("encounters", 6))
            .start()
            .await
            .expect("cluster starts");
        let leaders = cluster
            .partition_leaders("encounters")
            .expect("topic exists");
        let distinct: std::collections::BTreeSet<_> = leaders.iter().flatten().collect();
        let elapsed = started.elapsed();
        assert_eq!(distinct.len(), 3);
        times.push(elapsed);
        cluster.shutdown().await;
    }
    times.sort();
    println!(
        "start 3 brokers + 6-partition topic with leaders on 3 brokers: median {:?}, p99 {:?} ({runs} runs)",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}

async fn produce_throughput(replication_factor: i16) {
    let rss_baseline = rss_bytes();
    let cluster = Cluster::builder()
        .brokers(3)
        .topic(NewTopic::new("obs", PARTITIONS).replication_factor(replication_factor))
        .start()
        .await
        .expect("cluster starts");
    let client = ClientBuilder::new(vec![cluster.broker_addrs()[0].to_string()])
        .backoff_config(BackoffConfig {
            deadline: Some(Duration::from_secs(30)),
            ..Default::default()
        })
        .build()
        .await
        .expect("client");
    let timestamp = rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
        .expect("valid timestamp");
    let per_partition = RECORDS.div_ceil(PARTITIONS as usize);
    let mut work = Vec::new();
    for p in 0..PARTITIONS {
        let partition = client
            .partition_client("obs", p, UnknownTopicHandling::Error)
            .await
            .expect("partition client");
        let start = p as usize * per_partition;
        let end = (start + per_partition).min(RECORDS);
        let calls: Vec<Vec<Record>> = (start..end)
            .collect::<Vec<_>>()
            .chunks(PER_CALL)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|i| Record {
                        key: Some(format!("patient-{i:08}").into_bytes()[..KEY_BYTES].to_vec()),
                        value: Some(vec![b'o'; VALUE_BYTES]),
                        headers: Default::default(),
                        timestamp,
                    })
                    .collect()
            })
            .collect();
        work.push((partition, calls));
    }
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .map(|(partition, calls)| {
            tokio::spawn(async move {
                for records in calls {
                    partition
                        .produce(records, Compression::NoCompression)
                        .await
                        .expect("produce");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("producer task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let payload = (RECORDS * (VALUE_BYTES + KEY_BYTES)) as f64;
    let stored: u64 = cluster.stored_bytes("obs").expect("topic").iter().sum();
    cluster.wait_for_replication(Duration::from_secs(30)).await;
    let replicated: u64 = cluster.replica_stored_bytes("obs").expect("topic");
    println!(
        "RF {replication_factor}, acks=all: produce {RECORDS} x {VALUE_BYTES} B (keys {KEY_BYTES} B), {PER_CALL}/call, {PARTITIONS} partitions, rskafka: \
         {:.0} records/s, {:.1} MB/s payload, {elapsed:.3} s",
        RECORDS as f64 / elapsed,
        payload / elapsed / 1e6,
    );
    println!(
        "memory: stored batches {:.1} MB ({:.2} x payload {:.1} MB); process RSS {:.1} MB before the records were \
         built, {:.1} MB after producing (+{:.1} MB: broker logs plus what the allocator kept of the client's buffers)",
        stored as f64 / 1e6,
        stored as f64 / payload,
        payload / 1e6,
        rss_baseline as f64 / 1e6,
        rss_after as f64 / 1e6,
        (rss_after.saturating_sub(rss_baseline)) as f64 / 1e6,
    );
    println!(
        "RF {replication_factor}: all replicas hold {:.1} MB of batches, {:.1} MB of distinct buffers ({:.2} x payload)",
        replicated as f64 / 1e6,
        cluster.distinct_buffer_bytes("obs").expect("topic") as f64 / 1e6,
        cluster.distinct_buffer_bytes("obs").expect("topic") as f64 / payload,
    );
    cluster.shutdown().await;
}

/// CPU seconds (user + system) used so far by this process (`RUSAGE_SELF`, every thread) or by its waited-for
/// children (`RUSAGE_CHILDREN`).
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Runs kcat as a producer of `file` (`key:value` lines) and returns its wall time.
fn kcat_produce(file: &std::path::Path, brokers: &[&str], extra: &[&str]) -> Option<f64> {
    let mut command = std::process::Command::new("kcat");
    command.args([
        "-P",
        "-t",
        "obs",
        "-K:",
        "-X",
        "acks=all",
        "-X",
        "linger.ms=5",
    ]);
    command.args([
        "-X",
        "batch.num.messages=1000",
        "-X",
        "queue.buffering.max.messages=1000000",
    ]);
    command
        .args(["-X", "queue.buffering.max.kbytes=2000000", "-l"])
        .arg(file);
    command.args(brokers).args(extra);
    let started = Instant::now();
    let out = command.output().ok()?;
    let elapsed = started.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!("kcat failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(elapsed)
}

async fn kcat_comparison() {
    if std::process::Command::new("kcat")
        .arg("-V")
        .output()
        .is_err()
    {
        println!("kcat comparison skipped: kcat is not on the PATH (apt-get install kcat)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("records.txt");
    let value = "o".repeat(VALUE_BYTES);
    let mut lines = String::with_capacity(RECORDS * (VALUE_BYTES + KEY_BYTES + 2));
    for i in 0..RECORDS {
        lines.push_str(&format!("patient-{i:08}")[..KEY_BYTES]);
        lines.push(':');
        lines.push_str(&value);
        lines.push('\n');
    }
    std::fs::write(&file, lines).expect("records file");
    let mut ratios = Vec::new();
    for round in 1..=KCAT_ROUNDS {
        let children_before = cpu_seconds(libc::RUSAGE_CHILDREN);
        let mock = kcat_produce(
            &file,
            &["-b", "127.0.0.1:1"],
            &["-X", "test.mock.num.brokers=3"],
        );
        let mock_cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - children_before;
        let cluster = Cluster::builder()
            .brokers(3)
            .topic(NewTopic::new("obs", MOCK_PARTITIONS).replication_factor(3))
            .start()
            .await
            .expect("cluster starts");
        let bootstrap = cluster.bootstrap_servers();
        let (children_before, self_before) = (
            cpu_seconds(libc::RUSAGE_CHILDREN),
            cpu_seconds(libc::RUSAGE_SELF),
        );
        let embedded = kcat_produce(&file, &["-b", &bootstrap], &[]);
        let kcat_cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - children_before;
        let cluster_cpu = cpu_seconds(libc::RUSAGE_SELF) - self_before;
        cluster.shutdown().await;
        let rate = |s: Option<f64>| {
            s.map_or("failed".to_string(), |s| {
                format!("{:.0} records/s", RECORDS as f64 / s)
            })
        };
        println!(
            "kcat round {round}: {RECORDS} x {VALUE_BYTES} B acks=all, 1,000-record batches, {MOCK_PARTITIONS} partitions: librdkafka mock cluster (3 brokers, no replication) {}, embedded cluster RF 3 {}{}",
            rate(mock),
            rate(embedded),
            match (mock, embedded) {
                (Some(m), Some(e)) => {
                    ratios.push(m / e);
                    format!(" (embedded / mock = {:.2})", m / e)
                }
                _ => String::new(),
            }
        );
        println!(
            "kcat round {round} CPU: mock run (kcat and its mock cluster) {mock_cpu:.2} s; embedded run: kcat {kcat_cpu:.2} s, embedded cluster {cluster_cpu:.2} s"
        );
    }
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        println!(
            "kcat: embedded / mock over {} rounds: median {:.2}, range {:.2}-{:.2}",
            ratios.len(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}

async fn failover() {
    let runs = 10;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cluster = Cluster::builder()
            .brokers(3)
            .session_timeout(Duration::from_secs(2))
            .topic(NewTopic::new("obs", 1).replication_factor(3))
            .start()
            .await
            .expect("cluster starts");
        let client = ClientBuilder::new(
            cluster
                .broker_addrs()
                .iter()
                .map(|a| a.to_string())
                .collect(),
        )
        .backoff_config(BackoffConfig {
            init_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            base: 2.0,
            deadline: Some(Duration::from_secs(30)),
        })
        .build()
        .await
        .expect("client");
        let partition = client
            .partition_client("obs", 0, UnknownTopicHandling::Error)
            .await
            .expect("partition client");
        let timestamp = rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
            .expect("valid timestamp");
        let one = || {
            vec![Record {
                key: None,
                value: Some(b"v".to_vec()),
                headers: Default::default(),
                timestamp,
            }]
        };
        partition
            .produce(one(), Compression::NoCompression)
            .await
            .expect("produce");
        let leader = cluster
            .partition("obs", 0)
            .and_then(|p| p.leader)
            .expect("leader");
        let started = Instant::now();
        cluster.kill(leader).await.expect("kill");
        partition
            .produce(one(), Compression::NoCompression)
            .await
            .expect("produce on the new leader");
        times.push(started.elapsed());
        cluster.shutdown().await;
    }
    times.sort();
    println!(
        "failover (real time, session timeout 2 s): leader kill -> produce acknowledged by the new leader: median {:?}, max {:?} ({runs} runs)",
        percentile(&times, 0.5),
        percentile(&times, 1.0)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `cargo bench --bench broker -- kcat` runs only the named parts (startup, produce, kcat, failover).
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    runtime.block_on(async {
        if wants("startup") {
            startup().await;
        }
        if wants("produce") {
            produce_throughput(1).await;
            produce_throughput(3).await;
        }
        if wants("kcat") {
            kcat_comparison().await;
        }
        if wants("failover") {
            failover().await;
        }
    });
}
