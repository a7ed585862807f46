//! The built-in ETL's Debezium decoding on one core: records per second over the real connector's records
//! (`fixtures/debezium/mariadb`, JsonConverter with schemas — the schema is most of each value's bytes).
//!
//! Run: `cargo bench --bench decode` (numbers go to docs/benchmarks.md, never asserted).

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

use std::hint::black_box;

use openmrs_etl_harness::pipeline::decode;

/// (topic, key, value) of every change record of the fixtures (tombstones and schema topics left out).
fn records() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/debezium/mariadb");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).expect("the fixtures").flatten() {
        if !dir.file_name().to_string_lossy().contains(".openmrs.") {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).expect("a topic").flatten() {
            let text = std::fs::read_to_string(f.path()).expect("a record");
            let record: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            if let (Some(t), Some(k), Some(v)) = (
                record["topic"].as_str(),
                record["key"].as_str(),
                record["value"].as_str(),
            ) {
                out.push((t.to_owned(), k.as_bytes().to_vec(), v.as_bytes().to_vec()));
            }
        }
    }
    out
}

fn main() {
    let records = records();
    let bytes: usize = records.iter().map(|r| r.2.len()).sum();
    let rounds = 200_000 / records.len().max(1);
    let mut best = f64::MAX;
    for round in 0..4 {
        let cpu = cpu_seconds();
        for _ in 0..rounds {
            for (topic, key, value) in &records {
                black_box(decode(topic, 0, 0, Some(key), Some(value)).expect("decodes"));
            }
        }
        let secs = cpu_seconds() - cpu;
        if round > 0 {
            best = best.min(secs);
        }
    }
    let n = (rounds * records.len()) as f64;
    println!(
        "decode: {} fixture records ({:.0} B mean), {:.0} records/s, {:.1} MB/s of values (best of 3, CPU time, one thread)",
        records.len(),
        bytes as f64 / records.len() as f64,
        n / best,
        (rounds * bytes) as f64 / best / 1e6
    );
}
