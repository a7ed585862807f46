//! Fault injection on a running cluster, turmoil style, by broker id — `stop`, `kill`, `crash`, `restart`,
//! `isolate`/`heal`, `pause`/`resume`, added latency — and the background work that makes faults matter: the
//! replica fetcher, heartbeats, the ISR check, preferred-leader rebalance and the flush timer. What a client
//! observes for each fault is the table in the `broker` module docs.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::api::BrokerContext;
use super::replication::{self, Isolation, Process};
use super::server;
use super::state::ClusterCore;
use super::{controller, BrokerId, Cluster, RunningBroker, Server};
use crate::clock::{ClockError, Timer};
use crate::history::{ClusterEventKind, FaultKind, FenceReason, TruncationReason};

/// `replica.high.watermark.checkpoint.interval.ms`, in clock time.
const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: i64 = 5_000;

/// The cluster's replication tasks; stopping it (or dropping the cluster) ends them.
pub(crate) struct ReplicationRuntime {
    timers: Vec<Timer>,
    fetcher: Option<tokio::task::JoinHandle<()>>,
}

impl ReplicationRuntime {
    pub(crate) fn start(core: &Arc<ClusterCore>) -> Result<ReplicationRuntime, ClockError> {
        let settings = core.defaults.replication.clone();
        let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(1).max(1));
        let mut timers = Vec::new();
        let every = |period: Duration, task: fn(&ClusterCore, i64)| {
            let weak = Arc::downgrade(core);
            core.clock.every(period, move |now| {
                if let Some(core) = weak.upgrade() {
                    task(&core, now);
                }
            })
        };
        timers.push(every(
            ms(settings.heartbeat_interval_ms()),
            controller::heartbeat_tick,
        )?);
        timers.push(every(
            ms(settings.replica_lag_time_max_ms / 2),
            replication::check_isr,
        )?);
        core.set_self();
        if settings.auto_leader_rebalance {
            timers.push(every(
                ms(settings.leader_imbalance_check_interval_ms),
                |core, _| controller::rebalance_imbalanced(core),
            )?);
        }
        if core.log_dir().is_some() {
            // replica.high.watermark.checkpoint.interval.ms (Kafka's default: 5 s).
            timers.push(every(
                ms(HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS),
                |core, _| replication::checkpoint_running_high_watermarks(core),
            )?);
        }
        if let Some(interval) = settings.flush_interval_ms {
            timers.push(every(ms(interval), |core, _| replication::flush_all(core))?);
        }
        let fetcher = tokio::runtime::Handle::try_current()
            .map_err(|_| ClockError::NoRuntime)?
            .spawn(replication::run_fetcher(core.clone()));
        Ok(ReplicationRuntime {
            timers,
            fetcher: Some(fetcher),
        })
    }

    pub(crate) fn stop(&mut self) {
        if let Some(fetcher) = self.fetcher.take() {
            fetcher.abort();
        }
        self.timers.clear();
    }
}

/// Why a fault could not be injected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    #[error("broker {0} is not part of this cluster (brokers are numbered from 1)")]
    UnknownBroker(BrokerId),
    #[error("broker {0} is already running; stop, kill or crash it before restarting it")]
    AlreadyRunning(BrokerId),
    #[error("broker {broker}: cannot listen on {addr} again: {source}")]
    Rebind {
        broker: BrokerId,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// One partition as the controller and the replicas see it (for tests and checkers).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionView {
    pub leader: Option<BrokerId>,
    pub leader_epoch: i32,
    /// Assignment order: preferred leader first.
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// The leader's (or, offline, the preferred replica's) high watermark.
    pub high_watermark: i64,
    /// Every replica's log end offset, in assignment order.
    pub log_end_offsets: Vec<(BrokerId, i64)>,
}

impl Cluster {
    fn broker(&self, id: BrokerId) -> Result<&RunningBroker, FaultError> {
        self.brokers
            .iter()
            .find(|b| b.id == id)
            .ok_or(FaultError::UnknownBroker(id))
    }

    fn fault(&self, broker: BrokerId, fault: FaultKind) {
        self.core
            .record([ClusterEventKind::Fault { broker, fault }]);
    }

    /// Closes the listener and every connection of `broker` (clients see refused connections and resets).
    async fn close_server(&self, broker: &RunningBroker) {
        let server = broker.server().take();
        if let Some(server) = server {
            let _ = server.shutdown.send(true);
            let _ = server.task.await;
        }
    }

    /// SIGTERM: a controlled shutdown moves the broker's leaderships to other ISR replicas, its logs are flushed,
    /// then it stops listening.
    pub async fn stop(&self, id: BrokerId) -> Result<(), FaultError> {
        let broker = self.broker(id)?;
        self.fault(id, FaultKind::Stop);
        controller::controlled_shutdown(&self.core, id);
        self.for_each_replica(id, |r| r.flush());
        if let Err(error) = self.core.checkpoint_high_watermarks(&[id]) {
            tracing::error!(broker = %id, %error, "cannot write the replication offset checkpoint at stop");
        }
        self.core
            .update_liveness(id, |l| l.process = Process::Stopped);
        self.close_server(broker).await;
        Ok(())
    }

    /// SIGKILL: the broker stops at once; its log survives (the page cache does), and the controller notices only
    /// when its session expires.
    pub async fn kill(&self, id: BrokerId) -> Result<(), FaultError> {
        let broker = self.broker(id)?;
        self.fault(id, FaultKind::Kill);
        self.core
            .update_liveness(id, |l| l.process = Process::Killed);
        self.close_server(broker).await;
        Ok(())
    }

    /// A machine crash: like [`Cluster::kill`], and every replica on the broker loses what was not flushed
    /// (see [`super::ClusterBuilder::flush_interval`]) — with a log directory in its segment files too, as if the
    /// page cache were lost. Checkpoint files keep what they last held.
    pub async fn crash(&self, id: BrokerId) -> Result<(), FaultError> {
        let broker = self.broker(id)?;
        self.fault(id, FaultKind::Crash);
        self.core
            .update_liveness(id, |l| l.process = Process::Crashed);
        self.close_server(broker).await;
        let mut events = Vec::new();
        for topic in self.core.topics() {
            for partition in &topic.partitions {
                let mut state = partition.lock();
                if let Some(replica) = state.replica_mut(id) {
                    if let Some((start_offset, end_offset)) = replica.crash() {
                        events.push(ClusterEventKind::Truncated {
                            topic: topic.name.clone(),
                            partition: partition.index,
                            broker: id,
                            start_offset,
                            end_offset,
                            reason: TruncationReason::Crash,
                        });
                    }
                }
            }
        }
        self.core.record(events);
        Ok(())
    }

    /// When (clock ms) the controller will have let go of broker `id`'s registration, while a process that died
    /// without deregistering (killed or crashed) still holds it; `None` when nothing holds it. A real broker
    /// started again before then cannot register: on ZooKeeper `/brokers/ids/<id>` is still taken and the new
    /// process exits at start with `NodeExists`, on KRaft the controller refuses it with
    /// `DUPLICATE_BROKER_REGISTRATION` until the old session expires. The controller notices the expiry on a
    /// heartbeat tick, so the time is never earlier than the next tick.
    pub fn registration_held_until(&self, id: BrokerId) -> Option<i64> {
        let live = self.core.liveness();
        let l = live.iter().find(|l| l.id == id)?;
        let died = matches!(l.process, Process::Killed | Process::Crashed);
        if !died || l.fenced {
            return None;
        }
        let settings = &self.core.defaults.replication;
        let expires = l
            .last_heartbeat_ms
            .saturating_add(settings.session_timeout_ms())
            .saturating_add(1);
        let next_tick = self
            .core
            .clock
            .now_ms()
            .saturating_add(settings.heartbeat_interval_ms());
        Some(expires.max(next_tick))
    }

    /// Starts a stopped, killed or crashed broker again on its port. It registers as a new incarnation: the
    /// controller first fences the old one (leaderships move), then its replicas follow, truncate where they
    /// diverged, and rejoin the ISR once caught up. A paused or isolated state is kept; pause ends.
    pub async fn restart(&self, id: BrokerId) -> Result<(), FaultError> {
        let broker = self.broker(id)?;
        let running = self
            .core
            .liveness()
            .iter()
            .any(|l| l.id == id && l.process == Process::Running);
        if running || broker.server().is_some() {
            return Err(FaultError::AlreadyRunning(id));
        }
        let listener =
            TcpListener::bind(broker.addr)
                .await
                .map_err(|source| FaultError::Rebind {
                    broker: id,
                    addr: broker.addr,
                    source,
                })?;
        self.fault(id, FaultKind::Restart);
        let fenced = self.core.liveness().iter().any(|l| l.id == id && l.fenced);
        if !fenced {
            controller::fence(&self.core, id, FenceReason::Restarted);
        }
        self.core.update_liveness(id, |l| {
            l.process = Process::Running;
            l.paused = false;
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let context = Arc::new(BrokerContext {
            id,
            core: self.core.clone(),
        });
        let task = tokio::spawn(server::run(listener, context, shutdown_rx));
        *broker.server() = Some(Server { shutdown, task });
        let reaches = self
            .core
            .liveness()
            .iter()
            .any(|l| l.id == id && l.reaches_peers());
        if reaches {
            controller::register(&self.core, id);
        }
        Ok(())
    }

    /// Cuts the broker off from everyone (clients' requests then get no answer) or from its peers and the
    /// controller quorum only. Its session expires after the session timeout unless healed first.
    pub fn isolate(&self, id: BrokerId, isolation: Isolation) -> Result<(), FaultError> {
        self.broker(id)?;
        self.fault(
            id,
            match isolation {
                Isolation::FromEveryone => FaultKind::IsolateAll,
                Isolation::FromPeers => FaultKind::IsolatePeers,
            },
        );
        self.core
            .update_liveness(id, |l| l.isolation = Some(isolation));
        Ok(())
    }

    /// Ends an isolation; a fenced broker registers again at its next heartbeat.
    pub fn heal(&self, id: BrokerId) -> Result<(), FaultError> {
        self.broker(id)?;
        self.fault(id, FaultKind::Heal);
        self.core.update_liveness(id, |l| l.isolation = None);
        Ok(())
    }

    /// SIGSTOP: the broker neither answers, nor fetches, nor heartbeats; connections stay open.
    pub fn pause(&self, id: BrokerId) -> Result<(), FaultError> {
        self.broker(id)?;
        self.fault(id, FaultKind::Pause);
        self.core.update_liveness(id, |l| l.paused = true);
        Ok(())
    }

    /// SIGCONT: held requests are answered (as the broker sees things now).
    pub fn resume(&self, id: BrokerId) -> Result<(), FaultError> {
        self.broker(id)?;
        self.fault(id, FaultKind::Resume);
        self.core.update_liveness(id, |l| l.paused = false);
        Ok(())
    }

    /// Delays every answer of `id` to clients by `latency` (real time); zero removes it.
    pub fn set_latency(&self, id: BrokerId, latency: Duration) -> Result<(), FaultError> {
        self.broker(id)?;
        self.core.update_liveness(id, |l| l.latency = latency);
        Ok(())
    }

    /// Moves every leadership back to its preferred replica where that is alive and in the ISR (what
    /// `auto.leader.rebalance.enable` does every check interval).
    pub fn elect_preferred_leaders(&self) {
        controller::elect_preferred(&self.core);
    }

    /// Record batch bytes in memory and in the spill file, when the cluster has a memory budget.
    pub fn log_memory(&self) -> Option<super::SpillStats> {
        self.core.spill().map(|s| s.stats())
    }

    /// Leader, epoch, ISR and offsets of one partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionView> {
        let topic = self.core.topic(topic)?;
        let state = usize::try_from(partition)
            .ok()
            .and_then(|i| topic.partitions.get(i))?
            .lock();
        Some(PartitionView {
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            replicas: state.assignment.clone(),
            isr: state.isr.clone(),
            high_watermark: state.log().high_watermark(),
            log_end_offsets: state
                .replicas
                .iter()
                .map(|r| (r.broker, r.log.log_end_offset()))
                .collect(),
        })
    }

    /// Waits (real time, at most `timeout`) until every follower that can reach its leader has copied everything
    /// and the high watermarks have followed; false on timeout. With a virtual clock, call it before advancing
    /// time when a test needs replication to be idle.
    pub async fn wait_for_replication(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.replication_idle() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A number that changes whenever any replica's log end offset or any high watermark moves: equal readings
    /// a while apart mean replication stood still in between.
    pub fn replication_fingerprint(&self) -> u64 {
        let mut sum = 0u64;
        for topic in self.core.topics() {
            for partition in &topic.partitions {
                let state = partition.lock();
                sum = sum.wrapping_add(state.log().high_watermark() as u64);
                for r in &state.replicas {
                    sum = sum
                        .wrapping_mul(31)
                        .wrapping_add(r.log.log_end_offset() as u64);
                }
            }
        }
        sum
    }

    /// Every follower that can reach its leader has copied everything and the high watermarks have followed.
    pub fn replication_idle(&self) -> bool {
        let live = self.core.liveness();
        let reaches = |b: BrokerId| {
            live.iter()
                .any(|l| l.id == b && l.reaches_peers() && !l.fenced)
        };
        self.core.topics().iter().all(|topic| {
            topic.partitions.iter().all(|partition| {
                let state = partition.lock();
                let Some(leader) = state.leader.filter(|l| reaches(*l)) else {
                    return true;
                };
                let leo = state.log().log_end_offset();
                let followers_done = state
                    .replicas
                    .iter()
                    .filter(|r| r.broker != leader && reaches(r.broker))
                    .all(|r| r.log.log_end_offset() == leo && r.fetched_leo == Some(leo));
                followers_done
                    && (state.log().high_watermark() == leo
                        || (state.isr.len() as i64) < topic.config.min_insync_replicas
                        || state.isr.iter().any(|b| !reaches(*b)))
            })
        })
    }

    fn for_each_replica(&self, id: BrokerId, mut f: impl FnMut(&mut replication::Replica)) {
        for topic in self.core.topics() {
            for partition in &topic.partitions {
                if let Some(replica) = partition.lock().replica_mut(id) {
                    f(replica);
                }
            }
        }
    }
}
