//! `etl-harness up --backend local` (or `containers`): the real topology kept running for people and their tools. Starts every
//! service, creates the scenario's change topics, registers the Debezium connector with the scenario's producer
//! settings, prints the endpoints and waits for Ctrl-C, then stops everything.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::scenario::{Coordination, Scenario, TopicPlan};
use crate::topology::local::{
    ConnectorFlavour, DebeziumConnector, LocalTopology, LocalTopologyOptions, CONTROLLER_NODE_ID,
};

/// How long topic creation and the connector's start may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts the local topology with `brokers` brokers (default: the scenario's `[topology] brokers`) and the
/// scenario at `scenario` (default: every scenario default), prints where it is and serves until `stop`
/// completes; `stop` completing during the start stops at once.
pub async fn serve(
    brokers: Option<u32>,
    scenario: Option<&Path>,
    in_containers: bool,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let scenario = match scenario {
        Some(path) => Scenario::load(path).map_err(|errors| {
            anyhow::anyhow!("{errors}\n(scenario reference: scenarios/README.md)")
        })?,
        None => Scenario::parse("name = \"up\"\n", "<the default scenario>")
            .map_err(|errors| anyhow::anyhow!("the default scenario: {errors}"))?,
    };
    let mut options = LocalTopologyOptions::new(crate::workload::reference::schema_fixture_sql());
    options.database = scenario.topics.database.clone();
    options.brokers = brokers.unwrap_or(scenario.topology.brokers).max(1);
    options.coordination = scenario.topology.coordination;
    if in_containers {
        // Ctrl-C is `up`'s to handle: it stops every service, which removes their containers.
        crate::topology::containers::bridge::caller_handles_interrupts();
        options.containers = Some(
            crate::topology::local::container_images(&scenario.topology.images)
                .await
                .context("cannot prepare the containers")?,
        );
    }

    tokio::pin!(stop);
    let (topology, plans, connector) = tokio::select! {
        started = start(&scenario, &options) => started?,
        () = &mut stop => {
            // Whatever had started was dropped with the start future, which killed it.
            println!("stopped before the topology was ready");
            return Ok(());
        }
    };
    // KRaft: Metadata names a random live broker as "controller"; the quorum controller is not a broker.
    let controller = match topology.coordination() {
        Coordination::Zookeeper => topology
            .metadata(Some(&[]))
            .await
            .ok()
            .and_then(|metadata| metadata.controller)
            .map_or_else(
                || "controller unknown".to_string(),
                |id| format!("controller {id}"),
            ),
        Coordination::Kraft => format!("KRaft controller node {}", CONTROLLER_NODE_ID),
    };

    println!("mariadb: {}", topology.mariadb().url());
    println!("bootstrap servers: {}", topology.bootstrap_servers());
    println!("connect: {}", topology.connect().base_url());
    for plan in &plans {
        println!(
            "topic {}: {} partitions, replication factor {}",
            plan.name, plan.settings.partitions, plan.settings.replication_factor
        );
    }
    println!("run directory: {}", topology.run_dir().display());
    println!(
        "ready: {} topology, {} brokers, {controller}, connector {} running (Ctrl-C to stop)",
        if in_containers { "containers" } else { "local" },
        topology.broker_ids().len(),
        connector.name
    );
    stop.await;
    println!("stopping");
    let run_dir = topology
        .shutdown()
        .await
        .context("stopping the local topology")?;
    println!("stopped; configs and logs kept in {}", run_dir.display());
    Ok(())
}

/// The topology with the scenario's topics and a running connector.
async fn start(
    scenario: &Scenario,
    options: &LocalTopologyOptions,
) -> anyhow::Result<(LocalTopology, Vec<TopicPlan>, DebeziumConnector)> {
    let topology = LocalTopology::start(options)
        .await
        .context("cannot start the local topology")?;
    let run_dir = topology.run_dir().display().to_string();
    let plans = topology
        .create_scenario_topics(scenario, SETUP_TIMEOUT)
        .await
        .with_context(|| {
            format!("cannot create the scenario's topics (run directory {run_dir})")
        })?;
    let mut connector =
        DebeziumConnector::seed(ConnectorFlavour::MariaDb).with_producer(&scenario.producer);
    connector.topic_prefix = scenario.topics.prefix.clone();
    topology
        .start_connector(&connector, SETUP_TIMEOUT)
        .await
        .with_context(|| {
            format!("cannot start the Debezium connector (run directory {run_dir})")
        })?;
    Ok((topology, plans, connector))
}
