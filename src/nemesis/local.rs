//! The nemesis on the local backend: faults are signals to the real processes and calls to Connect's REST API.
//!
//! | target | action | what is done |
//! |---|---|---|
//! | a broker | `stop` | SIGTERM: Kafka's controlled shutdown moves its leaders, then it exits (SIGKILL after 20 s) |
//! | | `kill` | SIGKILL: its session (ZooKeeper's, or KRaft's without heartbeats) lingers 6 s, then the controller moves its leaders |
//! | | `pause` / `resume` | SIGSTOP / SIGCONT: sockets stay open, nothing is answered meanwhile |
//! | | `restart` | the same command, config, port and log directory; waits until it answers Metadata |
//! | | `isolate` / `heal` / `latency` | at the broker's loopback proxies: client and inter-broker traffic held, its ZooKeeper session or KRaft heartbeats cut (isolate); answers delayed, to peers too (latency) |
//! | the connector | `kill` | SIGKILL to the Connect worker: Debezium resumes from the last committed source offsets, so what it sent after them is sent again |
//! | | `stop` | SIGTERM to the worker (tasks stop and commit their offsets) |
//! | | `pause` / `resume` | Connect's REST pause / resume of the connector |
//! | | `restart` | the worker started again if it is down, then the connector resumed and its tasks restarted; a task that does not run again in its worker (Debezium 3.2.0 cannot restart a task in the JVM it failed in) gets the worker restarted |
//! | consumer N | every action | the same pipeline as on the embedded backend |
//!
//! Roles resolve from a Metadata request when the fault fires: "leader of …" is the leader the cluster names
//! then, "the controller" the controller it names. `crash` (losing the unflushed log) does not exist here: the
//! scenario language refuses it for a scenario that lists `local`.

use std::time::Duration;

use tokio::sync::Mutex;

use super::{unsupported, FaultHost};
use crate::broker::{BrokerId, Isolation};
use crate::clock::Clock;
use crate::pipeline::Pipeline;
use crate::scenario::FaultAction;
use crate::topology::local::LocalTopology;

/// How long the connector may take to run again after its worker restarted.
const CONNECTOR_BACK: Duration = Duration::from_secs(60);

/// What the nemesis acts on in a local run.
pub(crate) struct LocalTargets<'a> {
    pub(crate) topology: &'a Mutex<LocalTopology>,
    pub(crate) pipeline: &'a Mutex<Pipeline>,
    pub(crate) clock: &'a Clock,
    pub(crate) stream_start_ms: i64,
    /// The Debezium connector's name in Connect.
    pub(crate) connector: &'a str,
}

impl FaultHost for LocalTargets<'_> {
    fn clock(&self) -> &Clock {
        self.clock
    }

    fn stream_start_ms(&self) -> i64 {
        self.stream_start_ms
    }

    fn pipeline(&self) -> &Mutex<Pipeline> {
        self.pipeline
    }

    async fn partition_roles(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Option<BrokerId>, Vec<BrokerId>), String> {
        let topics = [topic.to_string()];
        let metadata = self
            .topology
            .lock()
            .await
            .metadata(Some(&topics))
            .await
            .map_err(|e| e.to_string())?;
        let p = metadata
            .topics
            .get(topic)
            .and_then(|partitions| partitions.iter().find(|p| p.partition == partition))
            .ok_or_else(|| format!("{topic} partition {partition} does not exist"))?;
        Ok((
            p.leader.map(BrokerId),
            p.isr.iter().copied().map(BrokerId).collect(),
        ))
    }

    async fn controller(&self) -> Result<BrokerId, String> {
        let metadata = self
            .topology
            .lock()
            .await
            .metadata(Some(&[]))
            .await
            .map_err(|e| e.to_string())?;
        metadata
            .controller
            .map(BrokerId)
            .ok_or_else(|| "the cluster names no controller".to_string())
    }

    async fn broker_fault(
        &self,
        action: FaultAction,
        b: BrokerId,
        latency: Duration,
    ) -> Result<(), String> {
        let mut topology = self.topology.lock().await;
        let id = b.0;
        let result = match action {
            FaultAction::Stop => topology.stop_broker(id).await,
            FaultAction::Kill => topology.kill_broker(id),
            FaultAction::Pause => topology.pause_broker(id),
            FaultAction::Resume => topology.resume_broker(id),
            FaultAction::Restart => {
                if topology.broker_running(id).map_err(|e| e.to_string())? {
                    return Err(format!(
                        "broker {id} is already running; stop or kill it before restarting it"
                    ));
                }
                topology.restart_broker(id).await
            }
            FaultAction::Isolate => topology.isolate_broker(id, Isolation::FromEveryone),
            FaultAction::Heal => topology.heal_broker(id),
            FaultAction::Latency => topology.set_broker_latency(id, latency),
            FaultAction::Crash | FaultAction::Stall => {
                return Err(unsupported(action, "a broker on the local backend"))
            }
        };
        result.map_err(|e| e.to_string())
    }

    async fn restore_broker(&self, b: BrokerId) -> Result<(), String> {
        let mut topology = self.topology.lock().await;
        if topology.broker_running(b.0).map_err(|e| e.to_string())? {
            return Ok(());
        }
        topology
            .restart_broker(b.0)
            .await
            .map_err(|e| e.to_string())
    }

    async fn connector_fault(&self, action: FaultAction) -> Result<(), String> {
        let mut topology = self.topology.lock().await;
        let text = |e: crate::topology::local::LocalError| e.to_string();
        match action {
            FaultAction::Kill => {
                topology.kill_connect();
                Ok(())
            }
            FaultAction::Stop => {
                topology.stop_connect().await;
                Ok(())
            }
            FaultAction::Pause => topology
                .connect()
                .pause_connector(self.connector)
                .await
                .map_err(text),
            FaultAction::Restart | FaultAction::Resume => {
                if topology.connect_running() {
                    let rest = topology.connect();
                    let in_worker = async {
                        rest.resume_connector(self.connector).await?;
                        rest.restart_connector(self.connector).await?;
                        rest.wait_until_running(self.connector, CONNECTOR_BACK)
                            .await
                    };
                    match in_worker.await {
                        Ok(()) => return Ok(()),
                        // Debezium 3.2.0 cannot start a task again inside the JVM it failed in (its OpenLineage
                        // emitter was shut down with the old task: "DebeziumOpenLineageEmitter not initialized",
                        // DBZ-9504/DBZ-9524, fixed in later releases); what an operator does then is restart
                        // the worker.
                        Err(e) => tracing::warn!(
                            error = %e,
                            "the connector did not run again in its worker; restarting the worker"
                        ),
                    }
                }
                topology.restart_connect().await.map_err(text)?;
                let rest = topology.connect();
                rest.wait_until_known(self.connector, CONNECTOR_BACK)
                    .await
                    .map_err(text)?;
                rest.resume_connector(self.connector).await.map_err(text)?;
                rest.wait_until_running(self.connector, CONNECTOR_BACK)
                    .await
                    .map_err(text)
            }
            other => Err(unsupported(other, "the connector")),
        }
    }

    async fn capture_failure(&self) -> Option<String> {
        let mut topology = self.topology.lock().await;
        if !topology.connect_running() {
            return Some("the Connect worker is not running".into());
        }
        match topology.connect().connector_status(self.connector).await {
            Ok(Some(status)) => std::iter::once(&status.connector)
                .chain(status.tasks.iter())
                .find(|s| s.state == "FAILED")
                .map(|s| {
                    let trace = s.trace.as_deref().unwrap_or("no trace");
                    let first = trace.lines().next().unwrap_or(trace);
                    format!("Debezium task FAILED: {first}")
                }),
            Ok(None) => Some("the connector is not registered".into()),
            Err(e) => Some(format!("its status cannot be read: {e}")),
        }
    }
}
