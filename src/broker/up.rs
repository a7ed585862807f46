//! `etl-harness up`: start an embedded cluster in real time, print its bootstrap servers and a ready line, and
//! serve until Ctrl-C, so people can point kcat or their own code at it.

use anyhow::Context as _;

use super::{Cluster, NewTopic};

/// Arguments of `etl-harness up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Number of brokers (ids 1..=N).
    #[arg(long, default_value_t = 3)]
    pub brokers: usize,
    /// Partitions of the --topic topics and of auto-created topics (num.partitions).
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Broker N listens on PORT_BASE + N - 1 (default: ephemeral ports).
    #[arg(long, value_name = "PORT_BASE")]
    pub port_base: Option<u16>,
    /// A topic to create at start; repeat for more.
    #[arg(long = "topic", value_name = "NAME")]
    pub topics: Vec<String>,
    /// A broker-wide topic config default, e.g. retention.ms=60000; repeat for more.
    #[arg(long = "log-default", value_name = "NAME=VALUE")]
    pub log_defaults: Vec<String>,
}

/// Runs `up` on a runtime of its own; for callers that are not async. From async code, use [`serve`].
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve(args))
}

/// Starts the cluster, prints where it is, serves until Ctrl-C.
pub async fn serve(args: UpArgs) -> anyhow::Result<()> {
    let mut builder = Cluster::builder();
    builder
        .brokers(args.brokers)
        .num_partitions(args.partitions);
    if let Some(port_base) = args.port_base {
        builder.port_base(port_base);
    }
    for setting in &args.log_defaults {
        let (name, value) = setting
            .split_once('=')
            .with_context(|| format!("--log-default '{setting}' is not NAME=VALUE"))?;
        builder.log_default(name, value);
    }
    for topic in &args.topics {
        builder.topic(NewTopic::new(topic.clone(), args.partitions));
    }
    let cluster = builder
        .start()
        .await
        .context("cannot start the embedded cluster")?;
    // Listen for Ctrl-C before saying "ready": a signal right after the ready line must stop us cleanly.
    let interrupted = interrupt()?;
    println!("bootstrap servers: {}", cluster.bootstrap_servers());
    for topic in &args.topics {
        println!("topic {topic}: {} partitions", args.partitions);
    }
    println!(
        "ready: {} brokers, controller {} (Ctrl-C to stop)",
        cluster.broker_ids().len(),
        cluster.controller()
    );
    interrupted.await;
    println!("stopping");
    cluster.shutdown().await;
    Ok(())
}

/// A future that completes on Ctrl-C (SIGINT); the handler is installed before this returns.
#[cfg(unix)]
fn interrupt() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for Ctrl-C")?;
    Ok(async move {
        signal.recv().await;
    })
}

/// A future that completes on Ctrl-C.
#[cfg(not(unix))]
fn interrupt() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
