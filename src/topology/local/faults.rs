//! Faults on the topology's processes and network: brokers stopped, killed, paused, resumed, restarted, isolated,
//! healed and slowed; the Connect worker killed, stopped and restarted; and everything put back as started.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::restartable::{BROKER_STOP_GRACE, CONNECT_STOP_GRACE};
use super::{connect, kafka, ConnectorFlavour, LocalError, LocalTopology};
use crate::broker::Isolation;

impl LocalTopology {
    /// SIGTERM to broker `id` (a controlled shutdown: it hands its leaders over first), SIGKILL if it has not
    /// exited within 20 s.
    pub async fn stop_broker(&mut self, id: i32) -> Result<(), LocalError> {
        self.broker_mut(id)?.service.stop(BROKER_STOP_GRACE).await;
        Ok(())
    }

    /// SIGKILL to broker `id`: its session lingers for [`LocalTopology::session_timeout`], then the controller
    /// moves its leaders.
    pub fn kill_broker(&mut self, id: i32) -> Result<(), LocalError> {
        let broker = self.broker_mut(id)?;
        broker.service.process.kill();
        broker.killed_at = Some(SystemTime::now());
        Ok(())
    }

    /// When (ms since the Unix epoch) a new process of broker `id` can first register: the session of a broker
    /// SIGKILLed at T (its last heartbeat was at T or before) has expired by T + [`LocalTopology::session_timeout`].
    /// `None` when it runs, was not killed, or that time has passed. The nemesis moves a restart due earlier to
    /// then, so the schedule's other steps run on time meanwhile ([`LocalTopology::restart_broker`] alone would
    /// hold them up while it waits).
    pub fn registration_held_until(&mut self, id: i32) -> Result<Option<i64>, LocalError> {
        let session = self.session_timeout();
        let broker = self.broker_mut(id)?;
        if !broker.service.process.has_exited() {
            return Ok(None);
        }
        let Some(until) = broker.killed_at.map(|at| at + session) else {
            return Ok(None);
        };
        if SystemTime::now() >= until {
            return Ok(None);
        }
        Ok(until
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok()))
    }

    /// SIGSTOP to broker `id`: it keeps its sockets but answers nothing until resumed.
    pub fn pause_broker(&mut self, id: i32) -> Result<(), LocalError> {
        self.broker_mut(id)?.service.process.signal(libc::SIGSTOP);
        Ok(())
    }

    /// SIGCONT to broker `id`.
    pub fn resume_broker(&mut self, id: i32) -> Result<(), LocalError> {
        self.broker_mut(id)?.service.process.signal(libc::SIGCONT);
        Ok(())
    }

    /// Starts broker `id` again with the same config, port and log directory (stopping it first if it still
    /// runs), behind the same proxies, and waits until it answers Metadata naming a controller. An isolated
    /// broker cannot reach the coordinator, so it cannot start: heal it first.
    ///
    /// A broker that was SIGKILLed or paused keeps its registration until its session expires, and a new process
    /// registering the same id before then exits at start in ZooKeeper mode (`NodeExists` on `/brokers/ids/<id>`)
    /// or is refused until then in KRaft mode (`DUPLICATE_BROKER_REGISTRATION`, retried), so the restart first
    /// waits (up to three session timeouts) until the cluster no longer lists the old one.
    pub async fn restart_broker(&mut self, id: i32) -> Result<(), LocalError> {
        let timeout = self.ready_timeout;
        self.broker_mut(id)?.service.stop(BROKER_STOP_GRACE).await;
        let deadline = Instant::now() + 3 * self.session_timeout();
        while Instant::now() < deadline {
            match self.metadata(Some(&[])).await {
                Ok(metadata) if metadata.brokers.contains_key(&id) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // Deregistered, or no broker answers (then nobody holds the registration up either).
                _ => break,
            }
        }
        let broker = self.brokers.iter_mut().find(|broker| broker.id == id);
        let Some(broker) = broker else {
            return Err(self.unknown_broker(id));
        };
        broker.service.respawn(BROKER_STOP_GRACE).await?;
        broker.killed_at = None;
        self.network.set_pid(id, broker.service.process.pid());
        kafka::wait_for_broker(&mut broker.service.process, broker.service.port, timeout).await
    }

    /// Cuts broker `id` off from everyone (clients and peers) or from its peers only, at its proxies: its
    /// connections are held, not closed, and its session expires after [`LocalTopology::session_timeout`]
    /// unless healed first. See the module docs for what clients observe.
    pub fn isolate_broker(&self, id: i32, isolation: Isolation) -> Result<(), LocalError> {
        self.broker(id)?;
        self.network.isolate(id, isolation);
        Ok(())
    }

    /// Ends broker `id`'s isolation: held bytes flow again; with an expired session it registers anew and
    /// rejoins as a follower.
    pub fn heal_broker(&self, id: i32) -> Result<(), LocalError> {
        self.broker(id)?;
        self.network.heal(id);
        Ok(())
    }

    /// Delays every answer of broker `id` (to clients and peers alike) by `latency`; zero removes it.
    pub fn set_broker_latency(&self, id: i32, latency: Duration) -> Result<(), LocalError> {
        self.broker(id)?;
        self.network.set_latency(id, latency);
        Ok(())
    }

    /// SIGKILL to the Connect worker (and so to the Debezium task in it).
    pub fn kill_connect(&mut self) {
        self.connect.process.kill();
    }

    /// SIGTERM to the Connect worker (its tasks stop and commit their offsets), SIGKILL after 10 s.
    pub async fn stop_connect(&mut self) {
        self.connect.stop(CONNECT_STOP_GRACE).await;
    }

    /// Whether the Connect worker process is alive (running or paused).
    pub fn connect_running(&mut self) -> bool {
        !self.connect.process.has_exited()
    }

    /// Whether broker `id`'s process is alive (running or paused).
    pub fn broker_running(&mut self, id: i32) -> Result<bool, LocalError> {
        Ok(!self.broker_mut(id)?.service.process.has_exited())
    }

    /// Starts the Connect worker again (stopping it first if it still runs) on the same port and internal topics,
    /// and waits until its REST API answers; registered connectors resume from their committed offsets.
    pub async fn restart_connect(&mut self) -> Result<(), LocalError> {
        self.connect.respawn(CONNECT_STOP_GRACE).await?;
        let port = self.connect.port;
        connect::wait_for_worker(
            &mut self.connect.process,
            port,
            ConnectorFlavour::MariaDb.connector_class(),
            self.ready_timeout,
        )
        .await
    }

    /// Puts every service back as started, whatever faults left behind: network faults healed, paused brokers
    /// resumed, exited brokers and an exited Connect worker started again. MariaDB and the coordinator are not
    /// restarted (no fault touches them): one that exited is an error.
    pub async fn recover(&mut self) -> Result<(), LocalError> {
        self.network.heal_all();
        for id in self.broker_ids() {
            if self.broker_running(id)? {
                self.resume_broker(id)?;
            } else {
                self.restart_broker(id).await?;
            }
        }
        if !self.connect_running() {
            self.restart_connect().await?;
        }
        self.ensure_running()
    }
}
