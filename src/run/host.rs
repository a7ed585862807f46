//! The nemesis's view of a running backend: the topology's brokers, the capture plug's connector, and the
//! pipeline's consumers, behind [`FaultHost`]. One host for every backend; what differs is in the topology and
//! the capture.

use tokio::sync::Mutex;

use crate::broker::BrokerId;
use crate::clock::Clock;
use crate::nemesis::{BrokerFaults, FaultHost};
use crate::pipeline::Pipeline;
use crate::scenario::FaultAction;
use crate::topology::capture::Capture;
use crate::topology::Topology;

/// What the nemesis (and the pacing waits) act on in one run.
pub(crate) struct Host<'a, T: Topology, C: Capture> {
    pub(crate) topology: &'a T,
    pub(crate) capture: &'a C,
    pub(crate) pipeline: &'a Mutex<Pipeline>,
    pub(crate) clock: &'a Clock,
    /// The clock's time (ms since the epoch) when the stream started.
    pub(crate) stream_start_ms: i64,
}

impl<T: Topology, C: Capture> BrokerFaults for Host<'_, T, C> {
    async fn partition_roles(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Option<BrokerId>, Vec<BrokerId>), String> {
        self.topology.partition_roles(topic, partition).await
    }

    async fn controller(&self) -> Result<BrokerId, String> {
        self.topology.controller().await
    }

    async fn group_coordinator(&self, group: &str) -> Result<BrokerId, String> {
        self.topology.group_coordinator(group).await
    }

    async fn broker_fault(
        &self,
        action: FaultAction,
        broker: BrokerId,
        latency: std::time::Duration,
    ) -> Result<(), String> {
        self.topology.broker_fault(action, broker, latency).await
    }

    async fn restore_broker(&self, broker: BrokerId) -> Result<(), String> {
        self.topology.restore_broker(broker).await
    }

    async fn registration_held_until(&self, broker: BrokerId) -> Option<i64> {
        self.topology.registration_held_until(broker).await
    }
}

impl<T: Topology, C: Capture> FaultHost for Host<'_, T, C> {
    fn clock(&self) -> &Clock {
        self.clock
    }

    fn stream_start_ms(&self) -> i64 {
        self.stream_start_ms
    }

    fn pipeline(&self) -> &Mutex<Pipeline> {
        self.pipeline
    }

    async fn connector_fault(&self, action: FaultAction) -> Result<(), String> {
        self.capture.fault(action).await
    }

    async fn capture_failure(&self) -> Option<String> {
        self.capture.failure().await
    }
}
