//! Embedded cluster benchmarks (numbers go in docs/benchmarks.md, never into test assertions).
//!
//! Run: `cargo bench --bench broker` (release profile). Measures:
//! 1. `Cluster::start` until a 6-partition topic has leaders on 3 brokers;
//! 2. produce throughput through rskafka: 1 KiB values, 16-byte keys, 6 partitions, 200,000 records, 900 records
//!    per produce call, one task per partition; and the process's memory before and after (RSS);
//! 3. the same at replication factor 3 (rskafka sends acks=all), with the bytes every replica holds against the
//!    raw payload (replicas share buffers);
//! 4. the comparison (`mock`): the same rskafka workload on a [`MOCK_PARTITIONS`]-partition topic, acks=all,
//!    against librdkafka's mock cluster (3 brokers, replicates nothing, keeps at most 5 MiB per partition; kept alive
//!    by an idle kcat consumer) and against the embedded cluster at RF 3 twice: keeping everything (Kafka's default
//!    retention) and with the mock's log limit (retention.bytes 5 MiB per partition); [`COMPARISON_ROUNDS`] rounds, each
//!    ratio's median;
//! 5. the same with kcat (librdkafka) as the client (`kcat`): 200,000 records, 1,000-record batches, into the
//!    mock cluster it runs in its own process (the 4-partition topic it creates on first use) and into both embedded
//!    variants, with the CPU time each side used (kcat and the mock share kcat's process; the embedded cluster is
//!    this process). Both comparisons are skipped with a printed reason when kcat is not on the PATH;
//! 6. failover: real-time clock, 2 s session timeout; time from killing a partition leader until a produce through
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
/// 4 partitions, RF 3); the embedded cluster's topic in both comparisons has as many.
const MOCK_PARTITIONS: i32 = 4;
/// Rounds of each comparison with the mock, mock and embedded alternating: single rounds vary by ±30 % on 2 cores
/// (the client's own CPU time varies that much), so the summary is the median ratio.
const COMPARISON_ROUNDS: usize = 9;

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

/// Produces [`RECORDS`] records ([`VALUE_BYTES`] values, [`KEY_BYTES`] keys) to topic `obs` on `bootstrap` through
/// rskafka: the records split evenly over `partitions`, [`PER_CALL`] per produce call, one task per partition
/// (rskafka sends acks=all). The records are built first; returns the seconds from the first call to the last answer.
async fn rskafka_produce(bootstrap: &str, partitions: i32) -> f64 {
    let client = ClientBuilder::new(vec![bootstrap.to_string()])
        .backoff_config(BackoffConfig {
            deadline: Some(Duration::from_secs(30)),
            ..Default::default()
        })
        .build()
        .await
        .expect("client");
    let timestamp = rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
        .expect("valid timestamp");
    let per_partition = RECORDS.div_ceil(partitions as usize);
    let mut work = Vec::new();
    for p in 0..partitions {
        let partition = client
            .partition_client("obs", p, UnknownTopicHandling::Retry)
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
    started.elapsed().as_secs_f64()
}

async fn produce_throughput(replication_factor: i16) {
    let rss_baseline = rss_bytes();
    let cluster = Cluster::builder()
        .brokers(3)
        .topic(NewTopic::new("obs", PARTITIONS).replication_factor(replication_factor))
        .start()
        .await
        .expect("cluster starts");
    let elapsed = rskafka_produce(&cluster.broker_addrs()[0].to_string(), PARTITIONS).await;
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

/// True (with `what` reported skipped) when kcat is not on the PATH: both comparisons need it.
fn kcat_missing(what: &str) -> bool {
    let missing = std::process::Command::new("kcat")
        .arg("-V")
        .output()
        .is_err();
    if missing {
        println!("{what} skipped: kcat is not on the PATH (apt-get install kcat)");
    }
    missing
}

async fn kcat_comparison() {
    if kcat_missing("kcat comparison") {
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
    let mut ratios = Ratios::default();
    for round in 1..=COMPARISON_ROUNDS {
        let children_before = cpu_seconds(libc::RUSAGE_CHILDREN);
        let mock = kcat_produce(
            &file,
            &["-b", "127.0.0.1:1"],
            &["-X", "test.mock.num.brokers=3"],
        );
        let mock_cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - children_before;
        let Some(mock) = mock else {
            return;
        };
        for trimmed in embedded_order(round) {
            let cluster = bench_cluster(trimmed).await;
            let bootstrap = cluster.bootstrap_servers();
            let (children_before, self_before) = (
                cpu_seconds(libc::RUSAGE_CHILDREN),
                cpu_seconds(libc::RUSAGE_SELF),
            );
            let embedded = kcat_produce(&file, &["-b", &bootstrap], &[]);
            let kcat_cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - children_before;
            let cluster_cpu = cpu_seconds(libc::RUSAGE_SELF) - self_before;
            cluster.shutdown().await;
            let Some(embedded) = embedded else {
                return;
            };
            ratios.push(trimmed, mock / embedded);
            println!(
                "kcat round {round}: {RECORDS} x {VALUE_BYTES} B acks=all, 1,000-record batches, {MOCK_PARTITIONS} partitions: librdkafka mock cluster (3 brokers, no replication, keeps 5 MiB per partition) {:.0} records/s, embedded cluster RF 3 {} {:.0} records/s (embedded / mock = {:.2}); CPU: mock run (kcat and its mock cluster) {mock_cpu:.2} s, embedded run kcat {kcat_cpu:.2} s + embedded cluster {cluster_cpu:.2} s",
                RECORDS as f64 / mock,
                keeping(trimmed),
                RECORDS as f64 / embedded,
                mock / embedded,
            );
        }
    }
    ratios.print_medians("kcat");
}

/// The two embedded variants of a comparison round (`trimmed` or not), swapping places every round: a run can
/// reuse memory the run before it freed.
fn embedded_order(round: usize) -> [bool; 2] {
    if round % 2 == 1 {
        [false, true]
    } else {
        [true, false]
    }
}

/// What the embedded topic keeps in a comparison run.
fn keeping(trimmed: bool) -> &'static str {
    if trimmed {
        "keeping 5 MiB per partition"
    } else {
        "keeping everything"
    }
}

/// Embedded / mock rate ratios of a comparison, per embedded variant.
#[derive(Default)]
struct Ratios {
    keeping_everything: Vec<f64>,
    trimmed: Vec<f64>,
}

impl Ratios {
    fn push(&mut self, trimmed: bool, ratio: f64) {
        if trimmed {
            self.trimmed.push(ratio);
        } else {
            self.keeping_everything.push(ratio);
        }
    }

    /// Prints the median and range of each variant's ratios.
    fn print_medians(mut self, client: &str) {
        for (trimmed, ratios) in [
            (false, &mut self.keeping_everything),
            (true, &mut self.trimmed),
        ] {
            if ratios.is_empty() {
                continue;
            }
            ratios.sort_by(f64::total_cmp);
            println!(
                "{client}: embedded RF 3 {} / mock over {} rounds: median {:.2}, range {:.2}-{:.2}",
                keeping(trimmed),
                ratios.len(),
                ratios[ratios.len() / 2],
                ratios[0],
                ratios[ratios.len() - 1]
            );
        }
    }
}

/// A fresh embedded cluster for the mock comparisons: 3 brokers, topic `obs` at RF 3 with [`MOCK_PARTITIONS`]
/// partitions. `trimmed` gives the topic the mock's log limit (retention.bytes 5 MiB per partition, no time limit,
/// 1 MiB segments, retention checked every 10 ms); otherwise it keeps everything (the default retention, checked
/// every 5 minutes, never runs during a run).
async fn bench_cluster(trimmed: bool) -> Cluster {
    let mut topic = NewTopic::new("obs", MOCK_PARTITIONS).replication_factor(3);
    let mut builder = Cluster::builder();
    builder.brokers(3);
    if trimmed {
        topic = topic
            .config("retention.bytes", (5 * 1024 * 1024).to_string())
            // The records carry a fixed 2023 timestamp: time retention would delete all but the active segments.
            .config("retention.ms", "-1")
            .config("segment.bytes", (1024 * 1024).to_string());
        builder.retention_check_interval(Duration::from_millis(10));
    }
    builder.topic(topic).start().await.expect("cluster starts")
}

/// librdkafka's mock cluster (3 brokers) kept alive by an idle kcat consumer; killed on drop.
struct MockCluster {
    kcat: std::process::Child,
    /// The first mock broker's address.
    bootstrap: String,
}

impl MockCluster {
    /// `None` (with the reason printed) when kcat cannot start or never names the mock's brokers.
    fn start() -> Option<MockCluster> {
        use std::io::BufRead;
        let mut kcat = std::process::Command::new("kcat")
            .args(["-C", "-t", "idle", "-o", "end", "-q"])
            .args(["-X", "test.mock.num.brokers=3", "-b", "127.0.0.1:1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| println!("mock cluster skipped: cannot run kcat: {e}"))
            .ok()?;
        let stderr = kcat.stderr.take()?;
        // librdkafka logs at notice level: "Mock cluster enabled: ... replaced with 127.0.0.1:p1,127.0.0.1:p2,...".
        let bootstrap = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let (_, servers) = line.split_once("replaced with ")?;
                servers.trim().split(',').next().map(str::to_string)
            });
        let mut mock = MockCluster {
            kcat,
            bootstrap: String::new(),
        };
        match bootstrap {
            Some(servers) => {
                mock.bootstrap = servers;
                Some(mock)
            }
            None => {
                println!("mock cluster skipped: kcat did not print the mock brokers' addresses");
                None
            }
        }
    }

    /// CPU seconds the kcat process (its mock brokers included) has used so far, from /proc.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.kcat.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
            .sum();
        // SAFETY: sysconf only reads a system constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / per_second.max(1.0)
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        let _ = self.kcat.kill();
        let _ = self.kcat.wait();
    }
}

/// The same rskafka workload as the produce benchmark against librdkafka's mock cluster (replicates nothing) and
/// the embedded cluster at RF 3, acks=all, both on a [`MOCK_PARTITIONS`]-partition topic, alternating.
async fn mock_comparison() {
    if kcat_missing("mock comparison") {
        return;
    }
    let mut ratios = Ratios::default();
    for round in 1..=COMPARISON_ROUNDS {
        let Some(mock) = MockCluster::start() else {
            return;
        };
        let (before, client_before) = (mock.cpu_seconds(), cpu_seconds(libc::RUSAGE_SELF));
        let mock_seconds = rskafka_produce(&mock.bootstrap, MOCK_PARTITIONS).await;
        let mock_cpu = mock.cpu_seconds() - before;
        let client_cpu = cpu_seconds(libc::RUSAGE_SELF) - client_before;
        drop(mock);
        for trimmed in embedded_order(round) {
            let cluster = bench_cluster(trimmed).await;
            let bootstrap = cluster.broker_addrs()[0].to_string();
            let before = cpu_seconds(libc::RUSAGE_SELF);
            let seconds = rskafka_produce(&bootstrap, MOCK_PARTITIONS).await;
            let cpu = cpu_seconds(libc::RUSAGE_SELF) - before;
            let kept: u64 = cluster.stored_bytes("obs").expect("topic").iter().sum();
            cluster.shutdown().await;
            ratios.push(trimmed, mock_seconds / seconds);
            println!(
                "rskafka round {round}: {RECORDS} x {VALUE_BYTES} B, {PER_CALL}/call, {MOCK_PARTITIONS} partitions, acks=all: librdkafka mock cluster (3 brokers, no replication, keeps 5 MiB per partition) {:.0} records/s, embedded cluster RF 3 {} {:.0} records/s (embedded / mock = {:.2}, {:.1} MB kept); CPU: mock run: mock {mock_cpu:.2} s, client {client_cpu:.2} s; embedded run: client and embedded cluster {cpu:.2} s",
                RECORDS as f64 / mock_seconds,
                keeping(trimmed),
                RECORDS as f64 / seconds,
                mock_seconds / seconds,
                kept as f64 / 1e6,
            );
        }
    }
    ratios.print_medians("rskafka");
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
    // `cargo bench --bench broker -- kcat` runs only the named parts (startup, produce, mock, kcat, failover).
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
        if wants("mock") {
            mock_comparison().await;
        }
        if wants("kcat") {
            kcat_comparison().await;
        }
        if wants("failover") {
            failover().await;
        }
    });
}
