//! Minimal CLI of the broker branch: only `up`. The lead merges it into the real CLI.
use clap::{Parser, Subcommand};
use openmrs_etl_harness::broker::up::{self, UpArgs};

#[derive(Parser)]
#[command(
    name = "etl-harness",
    version,
    about = "Test and simulation bench for the OpenMRS streaming ETL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start an embedded Kafka cluster and serve until Ctrl-C.
    Up(UpArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up(args) => up::run(args),
    }
}
