//! End to end on the embedded default (numbers go in docs/benchmarks.md, never into test assertions).
//!
//! Run: `cargo bench --bench end_to_end` (both), or `-- quickstart` / `-- million`.
//! - quickstart: `scenarios/quickstart.toml` as shipped, 3 runs, wall time of each (start of the cluster to the
//!   report).
//! - million: about 1,000,000 row changes (obs-heavy clinic workload) through 3 brokers at RF 3, acks=all,
//!   3 consumers; wall time, row changes per second and the process's peak resident memory (VmHWM).

use std::path::Path;
use std::time::Instant;

use openmrs_etl_harness::run::{run, RunOptions};
use openmrs_etl_harness::scenario::Scenario;

/// The binary's allocator (src/main.rs), so the numbers are the CLI's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

async fn timed(scenario: &Scenario, path: &str) -> (f64, usize, bool) {
    let options = RunOptions {
        scenario_path: path.to_string(),
        progress: false,
    };
    let started = Instant::now();
    let outcome = run(scenario, &options)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let secs = started.elapsed().as_secs_f64();
    if !outcome.report.passed() {
        eprintln!("{}", outcome.report.terminal());
    }
    (
        secs,
        outcome.history.changes().count(),
        outcome.report.passed(),
    )
}

async fn quickstart() {
    let path = "scenarios/quickstart.toml";
    let scenario = Scenario::load(Path::new(path)).expect("quickstart loads");
    for i in 1..=3 {
        let (secs, changes, passed) = timed(&scenario, path).await;
        println!("quickstart run {i}: {secs:.2} s wall, {changes} row changes, passed: {passed}");
    }
}

const MILLION: &str = r#"
name = "million"
seed = 1

[topology]
brokers = 3

[topics]
partitions = 3
replication_factor = 3
min_insync_replicas = 2

[topics.tables.obs]
partitions = 6

[producer]
acks = "all"
linger = "5ms"
batch_size = "256KiB"
compression = "lz4"

[workload]
patients = 2000
operations = 210000
rate = 20000

[pipeline]
consumers = 3
quiesce_timeout = "300s"
"#;

async fn million() {
    let scenario = Scenario::parse(MILLION, "million (benches/end_to_end.rs)").expect("valid");
    let (secs, changes, passed) = timed(&scenario, "benches/end_to_end.rs#million").await;
    println!(
        "million: {changes} row changes in {secs:.1} s wall ({:.0} changes/s), passed: {passed}, peak RSS {} MiB",
        changes as f64 / secs,
        peak_rss_mib().map(|m| m.to_string()).unwrap_or_else(|| "?".into())
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if wants("quickstart") {
        runtime.block_on(quickstart());
    }
    if wants("million") {
        runtime.block_on(million());
    }
}
