//! Measures the local real stack: provisioning time (cold when the JVM cache is empty, else cached), time from
//! start to "connector RUNNING", and the resident memory of each process.
//!
//! ```text
//! cargo run --release --example real_stack_measure            # uses the normal JVM cache
//! ETL_HARNESS_JVM_CACHE=$(mktemp -d) cargo run --release --example real_stack_measure   # cold provisioning
//! ```

use std::time::{Duration, Instant};

use openmrs_etl_harness::topology::local::{
    ConnectorFlavour, DebeziumConnector, LocalTopology, LocalTopologyOptions,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/openmrs-schema.sql");
    let schema = std::fs::read_to_string(schema_path)
        .map_err(|e| format!("reading the schema fixture {schema_path}: {e}"))?;
    let options = LocalTopologyOptions::new(schema);
    let started = Instant::now();
    let topology = LocalTopology::start(&options).await?;
    let connector = DebeziumConnector::seed(ConnectorFlavour::MariaDb);
    topology
        .start_connector(&connector, Duration::from_secs(120))
        .await?;
    let running_after = started.elapsed();

    let timings = topology.timings().clone();
    println!("run directory: {}", topology.run_dir().display());
    println!(
        "provisioning: {:.1} s ({})",
        timings.provision.as_secs_f64(),
        if timings.provision_resolved {
            "cold: Maven resolved into an empty cache entry"
        } else {
            "cached"
        }
    );
    println!("mariadb ready:   {:>6.1} s", timings.mariadb.as_secs_f64());
    println!(
        "coordinator ready: {:>6.1} s",
        timings.coordinator.as_secs_f64()
    );
    println!("kafka ready:     {:>6.1} s", timings.kafka.as_secs_f64());
    println!("connect ready:   {:>6.1} s", timings.connect.as_secs_f64());
    println!(
        "start to connector RUNNING: {:.1} s (of which provisioning {:.1} s)",
        running_after.as_secs_f64(),
        timings.provision.as_secs_f64()
    );
    // Let the snapshot finish and the JVMs settle before reading memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("resident memory (VmRSS) 5 s after RUNNING:");
    for process in topology.processes() {
        let rss = process
            .resident_bytes()
            .map(|bytes| format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "gone".into());
        println!("  {:<10} pid {:>7}  {rss}", process.name(), process.pid());
    }
    topology.shutdown().await?;
    Ok(())
}
