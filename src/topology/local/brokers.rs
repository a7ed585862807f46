//! The topology's Kafka brokers: starting them together (behind their proxies when network faults are wanted) and
//! what the topology keeps of each.

use std::path::PathBuf;

use super::proxy::{Link, NetworkFaults, Proxy};
use super::restartable::RestartableService;
use super::{
    admin, kafka, kraft, process, JvmComponents, LocalError, LocalTopologyOptions, RunDir,
    ServiceProcess,
};

/// Brokers 1..=`options.brokers`, each on its own free loopback port, started together; ready when each
/// answers Metadata and one of them lists them all with a controller. With `network`, each broker advertises a
/// proxy in front of its port and reaches the coordinator through a proxy of its own, both under `network`'s
/// faults. In KRaft mode their storage is formatted first, with the controller's cluster id.
pub(super) async fn start_brokers(
    run: &RunDir,
    jvm: &JvmComponents,
    coordinator: kafka::Coordinator,
    options: &LocalTopologyOptions,
    network: Option<&NetworkFaults>,
) -> Result<Vec<LocalBroker>, LocalError> {
    let count = options.brokers.max(1);
    let coordinator_port = coordinator.port();
    let mut prepared = Vec::new();
    for id in 1..=count as i32 {
        let port = process::free_loopback_port()?;
        let proxies = network
            .map(|network| -> Result<BrokerProxies, LocalError> {
                Ok(BrokerProxies {
                    kafka: Proxy::start(port, Link::Broker(id), network)?,
                    coordinator: Proxy::start(coordinator_port, Link::CoordinatorOf(id), network)?,
                })
            })
            .transpose()?;
        let reached_at = proxies
            .as_ref()
            .map_or(coordinator_port, |p| p.coordinator.port());
        let command = kafka::broker_command(
            run,
            jvm,
            &kafka::BrokerSettings {
                broker_id: id,
                port,
                advertised_port: proxies.as_ref().map_or(port, |p| p.kafka.port()),
                coordinator: coordinator.at(reached_at),
                cluster_size: count,
                max_heap: &options.kafka_heap,
            },
        )?;
        prepared.push((id, port, proxies, command));
    }
    if let kafka::Coordinator::Kraft { .. } = coordinator {
        let names: Vec<String> = (1..=count as i32).map(kafka::broker_name).collect();
        let nodes: Vec<(&str, PathBuf)> = names
            .iter()
            .zip(1..=count as i32)
            .map(|(name, id)| (name.as_str(), kafka::broker_config_path(run, id)))
            .collect();
        kraft::format_storage(run, jvm, &nodes, &kraft::cluster_id(run)).await?;
    }
    let mut brokers = Vec::new();
    for (id, port, proxies, command) in prepared {
        let process = ServiceProcess::spawn(&command)?;
        if let Some(network) = network {
            network.set_pid(id, process.pid());
        }
        brokers.push(LocalBroker {
            id,
            service: RestartableService {
                process,
                command,
                port,
            },
            proxies,
            killed_at: None,
        });
    }
    for broker in &mut brokers {
        kafka::wait_for_broker(
            &mut broker.service.process,
            broker.service.port,
            options.ready_timeout,
        )
        .await?;
    }
    let bootstraps: Vec<String> = brokers.iter().map(LocalBroker::address).collect();
    let expected: Vec<i32> = brokers.iter().map(|broker| broker.id).collect();
    let first = &mut brokers[0].service.process;
    process::wait_until_ready(
        first,
        &format!("Metadata listing brokers {expected:?} and a controller"),
        options.ready_timeout,
        || {
            let bootstraps = bootstraps.clone();
            let expected = expected.clone();
            async move {
                let answer = admin::metadata(&bootstraps, Some(&[])).await?;
                let listed: Vec<i32> = answer.brokers.keys().copied().collect();
                if listed != expected {
                    return Err(format!("Metadata lists brokers {listed:?}"));
                }
                answer
                    .controller
                    .map(|_| ())
                    .ok_or_else(|| "Metadata names no controller yet".to_string())
            }
        },
    )
    .await?;
    Ok(brokers)
}

/// One Kafka broker of the topology.
#[derive(Debug)]
pub(super) struct LocalBroker {
    pub(super) id: i32,
    pub(super) service: RestartableService,
    /// The topology's brokers have them (network faults); a standalone broker is reached directly.
    proxies: Option<BrokerProxies>,
    /// When the harness last SIGKILLed it, until it is restarted: its registration outlives the process.
    pub(super) killed_at: Option<std::time::SystemTime>,
}

/// The proxies of one broker; they outlive its processes, so a restarted broker is back behind the same ones.
#[derive(Debug)]
struct BrokerProxies {
    /// In front of its Kafka listener: the address it advertises.
    kafka: Proxy,
    /// In front of the coordinator (ZooKeeper or the KRaft controller), for its session alone.
    coordinator: Proxy,
}

impl LocalBroker {
    /// Where clients and peers reach it: its proxy if it has one.
    pub(super) fn address(&self) -> String {
        let port = self
            .proxies
            .as_ref()
            .map_or(self.service.port, |proxies| proxies.kafka.port());
        format!("127.0.0.1:{port}")
    }
}
