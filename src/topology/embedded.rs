//! The `embedded` backend (the default): the in-process Kafka cluster ([`crate::broker`]) on the scenario's clock
//! (real, or virtual so days of retention pass in seconds), with the embedded capture over the in-memory source
//! ([`super::capture::embedded`]). Nothing to install; every fault of the scenario language, `crash` (losing what
//! was not flushed) included.
//!
//! Broker faults are the [`Cluster`]'s fault verbs; `isolate` cuts the broker off from everyone. The quiesce
//! probe reads the cluster's state directly (high watermarks, whether replication is idle), which is what lets
//! deterministic mode wait for quiet points without a request.

use std::time::Duration;

use super::capture::embedded::EmbeddedCapture;
use super::{Endpoints, Topology};
use crate::broker::{
    BrokerId, Cluster, ClusterError, FaultError, Isolation, MetadataMode, NewTopic,
};
use crate::cdc;
use crate::clock::Clock;
use crate::history::{ClusterEvent, Recorder};
use crate::nemesis::BrokerFaults;
use crate::run::RunError;
use crate::scenario::{ClockMode, Coordination, Fault, FaultAction, Scenario};

/// `log.retention.check.interval.ms` of the embedded cluster on a real clock: the local backend's brokers' value.
const REAL_CLOCK_RETENTION_CHECK: Duration = Duration::from_secs(1);

/// The embedded cluster of one run, on the run's clock.
pub struct EmbeddedTopology {
    cluster: Cluster,
    clock: Clock,
    /// What the cluster was started for: brokers, coordination, clock.
    shape: (u32, Coordination, ClockMode),
    /// Whether a run was prepared on it (its topics and clock are that run's).
    used: bool,
}

impl Topology for EmbeddedTopology {
    type Capture<'a> = EmbeddedCapture;

    fn supports(_fault: &Fault) -> bool {
        true
    }

    fn log_memory(&self) -> Option<crate::broker::SpillStats> {
        self.cluster.log_memory()
    }

    async fn start(scenario: &Scenario) -> Result<Self, RunError> {
        let clock = match scenario.topology.clock {
            ClockMode::Real => Clock::real(),
            ClockMode::Virtual => Clock::virtual_at(crate::model::value::datetime_ms(2026, 1, 1)),
        };
        let mut builder = Cluster::builder();
        builder
            .brokers(scenario.topology.brokers as usize)
            .clock(clock.clone())
            .metadata_mode(match scenario.topology.coordination {
                Coordination::Zookeeper => MetadataMode::Zookeeper,
                Coordination::Kraft => MetadataMode::Kraft,
            })
            .auto_create_topics(false)
            // As the local backend's brokers (and Kafka's own config/server.properties) have it: a consumer
            // group forms at once, its offsets in one partition.
            .group_initial_rebalance_delay(Duration::ZERO)
            .offsets_topic_partitions(1);
        if scenario.topology.clock == ClockMode::Real {
            // The local backend's brokers check retention every second (tuned down from Kafka's 5 minutes so a
            // scenario finishes in minutes); on a real clock the embedded cluster does the same, so a retention
            // scenario means the same on both. A virtual clock keeps Kafka's default: time is cheap there.
            builder.retention_check_interval(REAL_CLOCK_RETENTION_CHECK);
        }
        if let Ok(budget) = u64::try_from(scenario.topology.log_memory.0) {
            builder.log_memory_budget(budget, std::env::temp_dir());
        }
        let cluster = builder.start().await?;
        Ok(EmbeddedTopology {
            cluster,
            clock,
            shape: shape(scenario),
            used: false,
        })
    }

    /// A new cluster for every run (it starts in milliseconds, and its clock is the run's): only the one just
    /// started for `scenario` fits.
    fn fits(&self, scenario: &Scenario) -> bool {
        !self.used && self.shape == shape(scenario)
    }

    async fn prepare(&mut self, scenario: &Scenario) -> Result<Scenario, RunError> {
        self.used = true;
        let topic_error =
            |topic: String| move |error: ClusterError| RunError::Topic { topic, error };
        for plan in scenario.topic_plans() {
            let mut topic = NewTopic::new(&plan.name, plan.settings.partitions as i32)
                .replication_factor(plan.settings.replication_factor as i16);
            for (name, value) in plan.settings.kafka_configs() {
                topic = topic.config(name, value);
            }
            self.cluster
                .create_topic(topic)
                .map_err(topic_error(plan.name.clone()))?;
        }
        // Debezium's schema topics: one partition, kept forever, replicated like the change topics.
        let rf = scenario.topics.replication_factor as i16;
        for name in cdc::schema_topics(&scenario.topics.prefix, &scenario.topics.database) {
            let topic = NewTopic::new(&name, 1)
                .replication_factor(rf)
                .config("retention.ms", "-1")
                .config("retention.bytes", "-1");
            self.cluster
                .create_topic(topic)
                .map_err(topic_error(name))?;
        }
        Ok(scenario.clone())
    }

    fn clock(&self) -> Clock {
        self.clock.clone()
    }

    async fn endpoints(&self) -> Endpoints {
        Endpoints {
            bootstrap_servers: self.cluster.bootstrap_servers(),
            database_url: None,
            connect_url: None,
        }
    }

    async fn capture(
        &self,
        scenario: &Scenario,
        recorder: &Recorder,
    ) -> Result<EmbeddedCapture, RunError> {
        Ok(EmbeddedCapture::new(
            scenario,
            recorder,
            &self.clock,
            self.cluster.bootstrap_servers(),
        ))
    }

    fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        Some(self.cluster.partition(topic, partition)?.high_watermark)
    }

    fn replication_idle(&self) -> bool {
        self.cluster.replication_idle()
    }

    fn replication_fingerprint(&self) -> u64 {
        self.cluster.replication_fingerprint()
    }

    async fn cluster_events(&mut self) -> Vec<ClusterEvent> {
        self.cluster.events()
    }

    async fn failure_hint(&self) -> Option<String> {
        None
    }

    async fn shutdown(self) {
        self.cluster.shutdown().await;
    }
}

impl BrokerFaults for EmbeddedTopology {
    async fn partition_roles(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Option<BrokerId>, Vec<BrokerId>), String> {
        let view = self
            .cluster
            .partition(topic, partition)
            .ok_or_else(|| format!("{topic} partition {partition} does not exist"))?;
        Ok((view.leader, view.isr))
    }

    async fn controller(&self) -> Result<BrokerId, String> {
        Ok(self.cluster.controller())
    }

    async fn group_coordinator(&self, group: &str) -> Result<BrokerId, String> {
        self.cluster.group_coordinator(group).ok_or_else(|| {
            format!("group {group} has no coordinator (its offsets partition has no leader)")
        })
    }

    async fn broker_fault(
        &self,
        action: FaultAction,
        b: BrokerId,
        latency: Duration,
    ) -> Result<(), String> {
        let c = &self.cluster;
        let text = |e: FaultError| e.to_string();
        match action {
            FaultAction::Stop => c.stop(b).await.map_err(text),
            FaultAction::Kill => c.kill(b).await.map_err(text),
            FaultAction::Crash => c.crash(b).await.map_err(text),
            FaultAction::Restart => c.restart(b).await.map_err(text),
            FaultAction::Isolate => c.isolate(b, Isolation::FromEveryone).map_err(text),
            FaultAction::Heal => c.heal(b).map_err(text),
            FaultAction::Pause => c.pause(b).map_err(text),
            FaultAction::Resume => c.resume(b).map_err(text),
            FaultAction::Latency => c.set_latency(b, latency).map_err(text),
            FaultAction::Stall => Err(crate::nemesis::unsupported(action, "a broker")),
        }
    }

    async fn registration_held_until(&self, b: BrokerId) -> Option<i64> {
        self.cluster.registration_held_until(b)
    }

    async fn restore_broker(&self, b: BrokerId) -> Result<(), String> {
        match self.cluster.restart(b).await {
            Ok(()) => Ok(()),
            // Restarted in the meantime by another fault: nothing left to undo.
            Err(FaultError::AlreadyRunning(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// What an embedded cluster is started for.
fn shape(scenario: &Scenario) -> (u32, Coordination, ClockMode) {
    (
        scenario.topology.brokers,
        scenario.topology.coordination,
        scenario.topology.clock,
    )
}
