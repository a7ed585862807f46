//! `etl-harness up`: start an embedded cluster in real time (or, with `--backend local`, the real services; see
//! `up/local.rs`), print its bootstrap servers and a ready line, and serve until Ctrl-C, so people
//! can point kcat or their own code at it.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::broker::{Cluster, NewTopic};

mod local;

/// Arguments of `etl-harness up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Which services: the embedded cluster, or the real MariaDB, ZooKeeper, Kafka and Connect with Debezium.
    #[arg(long, value_enum, default_value_t = UpBackend::Embedded)]
    pub backend: UpBackend,
    /// Number of brokers (ids 1..=N); default 3 (local: the scenario's `[topology] brokers`).
    #[arg(long)]
    pub brokers: Option<usize>,
    /// Local backend: the scenario whose change topics, database name, topic prefix and producer settings to use
    /// (default: every scenario default).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Partitions of the --topic topics and of auto-created topics (num.partitions).
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor of the --topic topics and of auto-created topics (default.replication.factor); at most
    /// the number of brokers.
    #[arg(long, value_name = "N")]
    pub replication_factor: Option<i16>,
    /// Broker N listens on PORT_BASE + N - 1 (default: ephemeral ports).
    #[arg(long, value_name = "PORT_BASE")]
    pub port_base: Option<u16>,
    /// A topic to create at start; repeat for more.
    #[arg(long = "topic", value_name = "NAME")]
    pub topics: Vec<String>,
    /// A broker-wide default: a topic default (retention.ms=60000, segment.bytes, ...) or a broker setting
    /// (default.replication.factor, num.partitions, auto.create.topics.enable, group.initial.rebalance.delay.ms,
    /// group.min/max.session.timeout.ms, offsets.topic.num.partitions, offsets.topic.replication.factor); repeat.
    #[arg(long = "log-default", value_name = "NAME=VALUE")]
    pub log_defaults: Vec<String>,
    /// Print the consumer groups (state, generation, members and their partitions, committed offsets, lag) every
    /// SECONDS when they changed, and once more at stop.
    #[arg(long, value_name = "SECONDS")]
    pub describe_groups: Option<u64>,
}

/// The services `up` starts.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpBackend {
    /// The in-process Kafka cluster.
    Embedded,
    /// The real services as local processes (needs mariadbd, java and mvn).
    Local,
    /// The same services, each in a container (the containers backend: a daemon speaking Docker API 1.53).
    Containers,
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
    if args.backend != UpBackend::Embedded {
        return serve_local(args).await;
    }
    if args.scenario.is_some() {
        anyhow::bail!(
            "--scenario needs --backend local or containers (the embedded `up` takes --topic and --partitions)"
        );
    }
    let brokers = args.brokers.unwrap_or(3);
    if let Some(rf) = args.replication_factor {
        if rf < 1 || rf as usize > brokers {
            anyhow::bail!(
                "--replication-factor {rf} needs between 1 and {brokers} brokers (--brokers {brokers})"
            );
        }
    }
    let mut builder = Cluster::builder();
    builder.brokers(brokers).num_partitions(args.partitions);
    if let Some(rf) = args.replication_factor {
        builder.default_replication_factor(rf);
    }
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
        let mut spec = NewTopic::new(topic.clone(), args.partitions);
        if let Some(rf) = args.replication_factor {
            spec = spec.replication_factor(rf);
        }
        builder.topic(spec);
    }
    let cluster = builder
        .start()
        .await
        .context("cannot start the embedded cluster")?;
    // Listen for Ctrl-C before saying "ready": a signal right after the ready line must stop us cleanly.
    let interrupted = interrupt()?;
    println!("bootstrap servers: {}", cluster.bootstrap_servers());
    for topic in &args.topics {
        println!(
            "topic {topic}: {} partitions, replication factor {}",
            args.partitions,
            args.replication_factor.unwrap_or(1)
        );
    }
    println!(
        "ready: {} brokers, controller {} (Ctrl-C to stop)",
        cluster.broker_ids().len(),
        cluster.controller()
    );
    match args.describe_groups {
        Some(seconds) => {
            let every = std::time::Duration::from_secs(seconds.max(1));
            let mut shown = String::new();
            tokio::pin!(interrupted);
            loop {
                tokio::select! {
                    _ = &mut interrupted => break,
                    _ = tokio::time::sleep(every) => {
                        let text = format_groups(&cluster.groups());
                        if text != shown {
                            print!("{text}");
                            shown = text;
                        }
                    }
                }
            }
            print!("{}", format_groups(&cluster.groups()));
        }
        None => interrupted.await,
    }
    println!("stopping");
    cluster.shutdown().await;
    Ok(())
}

/// The consumer groups as `--describe-groups` prints them.
pub fn format_groups(groups: &[crate::broker::GroupSummary]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if groups.is_empty() {
        out.push_str("groups: none\n");
        return out;
    }
    for g in groups {
        let _ = writeln!(
            out,
            "group {}: {} generation {} protocol {}/{} coordinator {}",
            g.group,
            g.state,
            g.generation,
            if g.protocol_type.is_empty() {
                "-"
            } else {
                &g.protocol_type
            },
            if g.protocol.is_empty() {
                "-"
            } else {
                &g.protocol
            },
            g.coordinator
        );
        for m in &g.members {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|(topic, partitions)| {
                    let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
                    format!("{topic}[{}]", list.join(","))
                })
                .collect();
            let _ = writeln!(
                out,
                "  member {} client {} host {}{}: {}",
                m.member_id,
                m.client_id,
                m.client_host,
                m.instance_id
                    .as_ref()
                    .map(|i| format!(" instance {i}"))
                    .unwrap_or_default(),
                if assignment.is_empty() {
                    "-".to_string()
                } else {
                    assignment.join(" ")
                }
            );
        }
        for o in &g.offsets {
            let or_dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "  offset {}-{}: committed {} high watermark {} lag {}",
                o.topic,
                o.partition,
                o.committed,
                or_dash(o.high_watermark),
                or_dash(o.lag)
            );
        }
    }
    out
}

async fn serve_local(args: UpArgs) -> anyhow::Result<()> {
    let embedded_only = [
        ("--port-base", args.port_base.is_some()),
        ("--topic", !args.topics.is_empty()),
        ("--log-default", !args.log_defaults.is_empty()),
        ("--partitions", args.partitions != 1),
        ("--replication-factor", args.replication_factor.is_some()),
        ("--describe-groups", args.describe_groups.is_some()),
    ];
    if let Some((flag, _)) = embedded_only.iter().find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag} is for the embedded backend; with --backend local or containers, topics and their settings come from --scenario"
        );
    }
    let brokers = args
        .brokers
        .map(|n| u32::try_from(n).context("--brokers is too large"))
        .transpose()?;
    let interrupted = interrupt()?;
    let in_containers = args.backend == UpBackend::Containers;
    local::serve(
        brokers,
        args.scenario.as_deref(),
        in_containers,
        interrupted,
    )
    .await
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
