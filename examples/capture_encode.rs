//! Measures the capture's encoding rate: a generated workload is committed to a MemorySource, then every
//! binlog row change is encoded as Debezium's key and value bytes on one core.
//!
//! ```sh
//! cargo run --release --example capture_encode -- [operations]
//! ```

use std::time::Instant;

use openmrs_etl_harness::cdc::ChangeEncoder;
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::Recorder;
use openmrs_etl_harness::scenario::Connector;
use openmrs_etl_harness::source::MemorySource;
use openmrs_etl_harness::workload::{Generator, Phase, WorkloadSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let operations: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let spec = WorkloadSpec {
        patients: 500,
        operations,
        ..WorkloadSpec::default()
    };
    let source = MemorySource::new(
        Connector::Mariadb,
        Recorder::new(1),
        Clock::virtual_at(spec.start_ms),
    );
    for op in Generator::new(&spec, 1) {
        match op.phase {
            Phase::Baseline => source.load(&op)?,
            Phase::Stream => {
                source.commit_now(&op)?;
            }
        }
    }
    let txns = source.read_binlog(0, usize::MAX);
    for connector in [Connector::Mariadb, Connector::Mysql] {
        let encoder = ChangeEncoder::new(connector, "dbserver1", "openmrs");
        let started = Instant::now();
        let (mut records, mut bytes) = (0u64, 0u64);
        for txn in &txns {
            for i in 0..txn.rows.len() {
                if let Some((_, key, value)) = encoder.encode(txn, i, 1_800_000_000_000) {
                    records += 1;
                    bytes += (key.len() + value.len()) as u64;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}: {records} records, {:.0} MB in {secs:.2} s: {:.0} records/s, {:.0} MB/s, {:.0} bytes/record",
            connector.name(),
            bytes as f64 / 1e6,
            records as f64 / secs,
            bytes as f64 / 1e6 / secs,
            bytes as f64 / records as f64
        );
    }
    Ok(())
}
