//! The embedded Kafka cluster: N brokers in this process, each with its own TCP listener on 127.0.0.1, speaking
//! Kafka's wire protocol (decoded and encoded by the `kafka-protocol` crate), so any Kafka client — rskafka,
//! kcat/librdkafka, the Java client — is a valid peer. Behaviour follows Kafka 3.9 (its documentation and
//! sources); time comes from one [`Clock`], real or virtual.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use openmrs_etl_harness::broker::{Cluster, NewTopic};
//! let cluster = Cluster::builder().brokers(3).start().await?;
//! cluster.create_topic(NewTopic::new("encounters", 6).config("retention.ms", "60000"))?;
//! println!("{}", cluster.bootstrap_servers());
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # APIs advertised (ApiVersions)
//!
//! | API | versions | notes |
//! |---|---|---|
//! | Produce (0) | 3–11 | acks -1/0/1; one v2 batch per partition; max.message.bytes, CRC checked |
//! | Fetch (1) | 4–17 | up to the HW; max_wait/min_bytes; topic ids from v13; no fetch sessions |
//! | ListOffsets (2) | 1–9 | earliest, latest, max timestamp, by timestamp |
//! | Metadata (3) | 0–12 | auto-creation; names the controller |
//! | ApiVersions (18) | 0–4 | unknown versions get UNSUPPORTED_VERSION in v0 form |
//! | CreateTopics (19) | 2–7 | replication factor up to the broker count; no manual assignment |
//! | DeleteTopics (20) | 1–6 | by name, or by id (v6) |
//! | DeleteRecords (21) | 0–2 | |
//! | DescribeConfigs (32) | 1–4 | TOPIC and BROKER resources |
//! | InitProducerId (22) | 0–5 | idempotent producers only: a new producer id, epoch 0; transactional ids get INVALID_REQUEST |
//! | OffsetForLeaderEpoch (23) | 2–4 | KIP-320 position validation: an epoch's end offset on the leader; FENCED/UNKNOWN_LEADER_EPOCH |
//! | FindCoordinator (10) | 0–6 | group keys (batched from v4); a transaction key answers COORDINATOR_NOT_AVAILABLE |
//! | JoinGroup (11), SyncGroup (14), Heartbeat (12), LeaveGroup (13) | 0–9, 0–5, 0–4, 0–5 | the classic protocol ([`group`]): MEMBER_ID_REQUIRED (v4+), static members, batched leaves (v3+) |
//! | OffsetCommit (8), OffsetFetch (9), OffsetDelete (47) | 2–9, 1–9, 0 | fenced by generation; several groups per fetch (v8+) |
//! | ListGroups (16), DescribeGroups (15), DeleteGroups (42) | 0–5, 0–5, 0–2 | what admin tools and ConsumerGroupCommand ask |
//!
//! These are the overlap of what `kafka-protocol` 0.18 decodes (its lowest ListOffsets, CreateTopics, DeleteTopics
//! and DescribeConfigs versions are above Kafka's), what Kafka 3.9 documents, and what is implemented here. They
//! cover every version rskafka 0.6 uses (observed: ApiVersions v3, Metadata v4, Produce v7, Fetch v4, ListOffsets
//! v3, CreateTopics v5, DeleteTopics v5, DeleteRecords v2) and what kcat 1.7.1 / librdkafka 2.0.2 uses for `-L`,
//! `-P` and `-C` (observed: ApiVersions v3, Metadata v4, Produce v7, Fetch v11, ListOffsets v2). Before decoding,
//! every body goes through a schema walk (`api::shape`) that refuses lying array lengths, because the
//! crate would otherwise size allocations from them.
//!
//! # Not implemented (yet)
//!
//! - Follower fetching is internal, not over the wire (Fetch with a replica id is not served); no rack awareness,
//!   no reassignment, no ZooKeeper-mode epoch bump on ISR shrink.
//! - Transactions (AddPartitionsToTxn, EndTxn, markers) and producer id expiration. Idempotent producers are
//!   served (issue 6): per partition and producer the last 5 batches are remembered (`producer_state`), on
//!   followers too, and rebuilt from the log after a truncation or a restart from disk.
//! - KIP-848's ConsumerGroupHeartbeat (a preview in Kafka 3.9, not for production there): groups speak the classic
//!   protocol only, which every client tested here uses by default.
//! - SASL/TLS, quotas, ACLs, AlterConfigs, CreatePartitions, fetch sessions, LogAppendTime.
//! - Requests of an API or version not advertised close the connection (Kafka does the same), with a logged reason.
//!
//! # Consumer groups
//!
//! Kafka 3.9's classic group coordinator: the protocol's semantics are the state machine in [`group`]; where a
//! group lives, how its offsets and metadata are written to `__consumer_offsets` (Kafka's record formats, acks=all)
//! and reloaded by a partition's new leader, and the tick on the cluster clock are in `coordinator`. Broker
//! settings by Kafka's names through [`ClusterBuilder::log_default`]: `group.initial.rebalance.delay.ms` (3000),
//! `group.min.session.timeout.ms` (6000), `group.max.session.timeout.ms` (1800000), `offsets.topic.num.partitions`
//! (50), `offsets.topic.replication.factor` (3, capped at the broker count). [`Cluster::groups`] describes every
//! group (members, assignments, committed offsets, lag), [`Cluster::group_coordinator`] finds a group's
//! coordinator, and the event log records joins, removals (left, session expired, not rejoined, replaced),
//! rebalances, generations, commits and coordinator loads. Sessions are timed on the cluster clock: with a
//! virtual clock, clients outside the process would be expired as virtual time runs, so `etl-harness up` always
//! runs on the real clock and a JoinGroup on a virtual-clock cluster is logged as a warning.
//!
//! # Replication and faults
//!
//! Every assigned broker holds a replica with its own log; followers copy from the leader asynchronously (one
//! fetcher task, `replica.fetch.wait.max.ms`, an optional extra delay) sharing the leader's buffers. ISR, high
//! watermark (frozen below `min.insync.replicas`), acks 0/1/all, leader epochs and DivergingEpoch truncation are in
//! `replication`; sessions, clean/unclean elections, controlled shutdown, preferred leaders and controller
//! failover in `controller`; the fault verbs on [`Cluster`] in `faults`. Session, ISR, rebalance and flush timers
//! run on the cluster [`Clock`]. What a client observes (each row is tested in `tests/broker_replication.rs`):
//!
//! | fault | new connection | open connection / in-flight request | metadata | leader moves |
//! |---|---|---|---|---|
//! | `stop(b)` (SIGTERM) | refused | closed (EOF/reset), no answer | leaders moved, `b` no longer listed | at once, before the listener closes (controlled shutdown) |
//! | `kill(b)` (SIGKILL) | refused | closed (EOF/reset), no answer | unchanged until the session expires, then `b` unlisted and out of every ISR | after the session timeout (18 s ZooKeeper / 9 s KRaft, clock time) |
//! | `crash(b)` | as kill | as kill | as kill | as kill; `b` also lost its unflushed tail (Truncated/Crash events), in its segment files too with a log dir |
//! | `restart(b)` | accepted | — | `b` listed again; its replicas rejoin the ISR once caught up | leaderships of `b` move away first (new incarnation); preferred election brings them back |
//! | `isolate(b, FromEveryone)` | accepted, but nothing is answered: request timeout | requests held (answered after `heal` if the client still waits) | as kill | after the session timeout |
//! | `isolate(b, FromPeers)` | served | served; acks=all waits (timeout), acks=1 appends | as kill; afterwards `b` answers NOT_LEADER_OR_FOLLOWER | after the session timeout |
//! | `pause(b)` (SIGSTOP) | accepted, nothing answered | held until `resume` | as kill | after the session timeout |
//! | `set_latency(b, d)` | accepted | every answer `d` later | unchanged | never |
//!
//! # Logs
//!
//! In memory, batches stored as received in shared `bytes::Bytes` (only base offset and partition leader epoch are
//! rewritten, both outside the CRC). Segments roll on `segment.bytes` / `segment.ms`; every
//! `log.retention.check.interval.ms` of clock time the cluster applies `retention.ms` (by the segment's largest
//! record timestamp), `retention.bytes` and `cleanup.policy=compact`, recording each deletion in the event log
//! ([`Cluster::events`]).
//!
//! With [`ClusterBuilder::log_memory_budget`] at most that many batch bytes stay in memory (one copy per batch for
//! all its replicas); the oldest move to one spill file and are read back when fetched (`log/spill.rs`).
//!
//! With [`ClusterBuilder::log_dir`] every replica's log is also written through to segment files in Kafka's
//! format under its own broker's directory, with Kafka's checkpoint files, and a cluster started on the same
//! directory serves the same topics, configs, records, offsets and log start offsets, with every replica loaded
//! from its broker's directory:
//!
//! ```text
//! <dir>/cluster.json                                   topics, ids, assignments, config overrides
//! <dir>/broker-<id>/meta.properties                    cluster.id, node.id
//! <dir>/broker-<id>/log-start-offset-checkpoint        rewritten when a log start offset moves
//! <dir>/broker-<id>/replication-offset-checkpoint      high watermarks: every 5 s, at flushes, stop and shutdown
//! <dir>/broker-<id>/<topic>-<partition>/leader-epoch-checkpoint    the replica's (epoch, start offset) history
//! <dir>/broker-<id>/<topic>-<partition>/<base offset, 20 digits>.log   record batches back to back
//! ```
//!
//! Truncation (DivergingEpoch), a follower's reset and [`Cluster::crash`] reach the files: segments are cut and
//! later ones deleted, and a crash cuts each replica of the broker back to what was flushed, as if the page cache
//! were lost. Recovery at start checks every batch (length, magic, CRC, offsets): an invalid batch at the very end
//! of a replica's last segment is a torn write and is truncated away (event [`ClusterEventKind::LogLoaded`], one
//! per replica, counts the bytes); an invalid batch anywhere else stops the start with
//! [`StorageError::CorruptSegment`], naming the file, the byte position and the offset. A missing replica
//! directory is an empty replica that catches up. The leader after a restart is the replica with the latest epoch
//! and longest log; the ISR is the replicas that match it. Nothing is fsynced; [`Cluster::flush`] hands buffered
//! writes to the operating system. Details: `disk/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::{Clock, ClockError, Timer};
use crate::history::{ClusterEvent, ClusterEventKind};

mod api;
mod batch;
mod config;
mod controller;
mod coordinator;
mod disk;
mod faults;
pub mod group;
mod log;
mod producer_state;
mod replication;
mod server;
mod state;

/// A broker's id is part of the event vocabulary the history owns; the broker API names brokers by it.
pub use crate::history::BrokerId;
pub use config::{ConfigError, TopicConfig};
pub use coordinator::{GroupSummary, MemberSummary, OffsetSummary};
pub use disk::StorageError;
pub use faults::{FaultError, PartitionView};
pub use log::SpillStats;
pub use replication::{Isolation, MetadataMode};
pub use state::{NewTopic, TopicError, MAX_PARTITIONS};

use api::BrokerContext;
use config::BrokerDefaults;
use state::{BrokerInfo, ClusterCore};

/// Decodes one request frame (without its length prefix) exactly as a broker does before handling it; true when it
/// is a request the cluster would serve. For the fuzz target (`fuzz/`); never panics, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_request_decode(frame: &[u8]) -> bool {
    api::decode(bytes::Bytes::copy_from_slice(frame)).is_ok()
}

/// Why a cluster could not start or an operation on it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A cluster needs at least one broker.
    #[error("a cluster needs at least one broker")]
    NoBrokers,
    /// The listener of a broker could not be bound.
    #[error("broker {broker}: cannot listen on 127.0.0.1:{port}: {source} (choose another --port-base, or 0 for ephemeral ports)")]
    Bind {
        broker: BrokerId,
        port: u16,
        source: std::io::Error,
    },
    /// A broker-wide log default is invalid.
    #[error("invalid broker log default: {0}")]
    Config(#[from] ConfigError),
    /// A topic operation was refused.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The clock could not schedule the retention check.
    #[error(transparent)]
    Clock(#[from] ClockError),
    /// The log directory could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Settings for a [`Cluster`]; every setter returns `&mut Self`, and `start` can be called again for an identical
/// cluster (on fresh ephemeral ports).
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    brokers: usize,
    port_base: Option<u16>,
    clock: Option<Clock>,
    cluster_id: String,
    defaults: BrokerDefaults,
    log_defaults: Vec<(String, String)>,
    topics: Vec<NewTopic>,
    log_dir: Option<PathBuf>,
    /// Memory budget for record batches, and the directory of the spill file for the rest (`log/spill.rs`).
    log_memory: Option<(u64, PathBuf)>,
}

impl ClusterBuilder {
    /// Number of brokers (default 3); their ids are 1..=n.
    pub fn brokers(&mut self, brokers: usize) -> &mut Self {
        self.brokers = brokers;
        self
    }

    /// Broker n listens on `port_base + n - 1` instead of an ephemeral port.
    pub fn port_base(&mut self, port_base: u16) -> &mut Self {
        self.port_base = Some(port_base);
        self
    }

    /// The cluster's clock (default: real time).
    pub fn clock(&mut self, clock: Clock) -> &mut Self {
        self.clock = Some(clock);
        self
    }

    /// The cluster id named in Metadata.
    pub fn cluster_id(&mut self, cluster_id: impl Into<String>) -> &mut Self {
        self.cluster_id = cluster_id.into();
        self
    }

    /// `num.partitions`: partitions of auto-created topics (default 1).
    pub fn num_partitions(&mut self, partitions: i32) -> &mut Self {
        self.defaults.num_partitions = partitions;
        self
    }

    /// `default.replication.factor` (default 1).
    pub fn default_replication_factor(&mut self, replication_factor: i16) -> &mut Self {
        self.defaults.default_replication_factor = replication_factor;
        self
    }

    /// `auto.create.topics.enable` (default true).
    pub fn auto_create_topics(&mut self, enable: bool) -> &mut Self {
        self.defaults.auto_create_topics = enable;
        self
    }

    /// `log.retention.check.interval.ms` in clock time (default 5 minutes).
    pub fn retention_check_interval(&mut self, interval: Duration) -> &mut Self {
        self.defaults.retention_check_interval_ms =
            i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// `group.initial.rebalance.delay.ms`: how long a new group's coordinator waits for more members before its
    /// first rebalance (default 3 s, Kafka's).
    pub fn group_initial_rebalance_delay(&mut self, delay: Duration) -> &mut Self {
        self.defaults.group.initial_rebalance_delay_ms =
            i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
        self
    }

    /// `offsets.topic.num.partitions` (default 50, Kafka's).
    pub fn offsets_topic_partitions(&mut self, partitions: i32) -> &mut Self {
        self.defaults.offsets_topic_partitions = partitions.max(1);
        self
    }

    /// `socket.request.max.bytes`: a larger request frame closes its connection (default 100 MiB).
    pub fn max_request_bytes(&mut self, bytes: usize) -> &mut Self {
        self.defaults.max_request_bytes = bytes;
        self
    }

    /// A broker-wide default for a topic config, by its topic-level name (`retention.ms`, `segment.bytes`,
    /// `max.message.bytes` for `message.max.bytes`, …); checked at `start`.
    pub fn log_default(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.log_defaults.push((name.into(), value.into()));
        self
    }

    /// ZooKeeper (default, session timeout 18 s) or KRaft (9 s) failure detection.
    pub fn metadata_mode(&mut self, mode: MetadataMode) -> &mut Self {
        self.defaults.replication.metadata_mode = mode;
        self
    }

    /// The session timeout after which a silent broker is fenced (default: the metadata mode's).
    pub fn session_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.defaults.replication.session_timeout_ms = Some(duration_ms(timeout));
        self
    }

    /// `replica.lag.time.max.ms` in clock time (default 30 s).
    pub fn replica_lag_time_max(&mut self, lag: Duration) -> &mut Self {
        self.defaults.replication.replica_lag_time_max_ms = duration_ms(lag).max(1);
        self
    }

    /// `replica.fetch.wait.max.ms` in real time (default 500 ms).
    pub fn replica_fetch_wait_max(&mut self, wait: Duration) -> &mut Self {
        self.defaults.replication.replica_fetch_wait_max_ms = duration_ms(wait);
        self
    }

    /// Real time followers wait after an append before fetching it (default 0): widens the window in which only
    /// the leader holds acks=1 records.
    pub fn replica_fetch_delay(&mut self, delay: Duration) -> &mut Self {
        self.defaults.replication.replica_fetch_delay = delay;
        self
    }

    /// `log.flush.interval.ms` in clock time (default `None`, as Kafka: no fsync, only rolled segments and clean
    /// stops are flushed, so [`Cluster::crash`] loses the rest).
    pub fn flush_interval(&mut self, interval: Option<Duration>) -> &mut Self {
        self.defaults.replication.flush_interval_ms = interval.map(duration_ms);
        self
    }

    /// `auto.leader.rebalance.enable` (default true) and `leader.imbalance.check.interval.seconds` (default 300 s).
    pub fn auto_leader_rebalance(&mut self, enable: bool, interval: Duration) -> &mut Self {
        self.defaults.replication.auto_leader_rebalance = enable;
        self.defaults.replication.leader_imbalance_check_interval_ms = duration_ms(interval).max(1);
        self
    }

    /// A topic to create when the cluster starts. With a [`log_dir`](Self::log_dir) that already holds a topic of
    /// that name, the stored topic is served as it was and this one is ignored.
    pub fn topic(&mut self, topic: NewTopic) -> &mut Self {
        self.topics.push(topic);
        self
    }

    /// Keeps every broker's logs in `dir` too (created if missing), so that a cluster started again on the same
    /// directory, with the same cluster id and at least as many brokers, serves the same topics and records.
    pub fn log_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// Keeps at most `budget` bytes of record batches in memory; the oldest spill to a file in `dir` (`log/spill.rs`).
    pub fn log_memory_budget(&mut self, budget: u64, dir: impl Into<PathBuf>) -> &mut Self {
        self.log_memory = Some((budget, dir.into()));
        self
    }

    /// Binds every broker's listener, starts serving, and creates the configured topics.
    pub async fn start(&self) -> Result<Cluster, ClusterError> {
        if self.brokers == 0 {
            return Err(ClusterError::NoBrokers);
        }
        let mut defaults = self.defaults.clone();
        for (name, value) in &self.log_defaults {
            match defaults.set_broker_setting(name, value) {
                Some(result) => result?,
                None => defaults.topic.set(name, value)?,
            }
        }
        if defaults.default_replication_factor as usize > self.brokers {
            return Err(ClusterError::Config(ConfigError::Invalid {
                name: "default.replication.factor".to_string(),
                value: defaults.default_replication_factor.to_string(),
                reason: "larger than the number of brokers",
            }));
        }
        let mut listeners = Vec::with_capacity(self.brokers);
        let mut infos = Vec::with_capacity(self.brokers);
        for n in 0..self.brokers {
            let id = BrokerId(n as i32 + 1);
            let port = match self.port_base {
                Some(base) => base.saturating_add(n as u16),
                None => 0,
            };
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|source| ClusterError::Bind {
                    broker: id,
                    port,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| ClusterError::Bind {
                broker: id,
                port,
                source,
            })?;
            infos.push(BrokerInfo {
                id,
                host: "127.0.0.1".to_string(),
                port: addr.port(),
            });
            listeners.push((id, addr, listener));
        }
        let clock = self.clock.clone().unwrap_or_else(Clock::real);
        let log_dir = match &self.log_dir {
            Some(dir) => {
                let ids: Vec<BrokerId> = infos.iter().map(|b| b.id).collect();
                Some(disk::LogDir::open(dir, &self.cluster_id, &ids)?)
            }
            None => None,
        };
        let spill = self.log_memory.as_ref();
        let spill = spill
            .map(|(b, dir)| log::SpillStore::new(*b, dir.clone()))
            .transpose()?;
        let core = Arc::new(
            ClusterCore::new(self.cluster_id.clone(), defaults, clock.clone(), infos)
                .with_log_dir(log_dir)
                .with_spill(spill),
        );
        let loaded = match core.log_dir() {
            Some(dir) => dir.load(&core.cluster_id, &core.defaults.topic, clock.now_ms())?,
            None => None,
        };
        let restored = loaded
            .map(|loaded| core.restore(loaded))
            .unwrap_or_default();
        let mut events = Vec::new();
        let mut brokers = Vec::with_capacity(listeners.len());
        for (id, addr, listener) in listeners {
            let (shutdown, shutdown_rx) = watch::channel(false);
            let context = Arc::new(BrokerContext {
                id,
                core: core.clone(),
            });
            let task = tokio::spawn(server::run(listener, context, shutdown_rx));
            events.push(ClusterEventKind::BrokerStarted {
                broker: id,
                port: addr.port(),
            });
            brokers.push(RunningBroker {
                id,
                addr,
                server: std::sync::Mutex::new(Some(Server { shutdown, task })),
            });
        }
        events.push(ClusterEventKind::ControllerElected {
            broker: core.controller(),
        });
        core.record(events);
        let weak: Weak<ClusterCore> = Arc::downgrade(&core);
        let interval = Duration::from_millis(
            u64::try_from(core.defaults.retention_check_interval_ms).unwrap_or(1),
        );
        let retention_timer = clock.every(interval, move |now| {
            if let Some(core) = weak.upgrade() {
                core.enforce_retention(now);
            }
        })?;
        let weak: Weak<ClusterCore> = Arc::downgrade(&core);
        let group_timer = clock.every(coordinator::TICK, move |now| {
            if let Some(core) = weak.upgrade() {
                core.coordinator.tick(&core, now);
            }
        })?;
        let replication = faults::ReplicationRuntime::start(&core)?;
        let cluster = Cluster {
            core,
            brokers,
            _retention_timer: retention_timer,
            _group_timer: group_timer,
            replication,
        };
        for topic in self.topics.iter().filter(|t| !restored.contains(&t.name)) {
            cluster.create_topic(topic.clone())?;
        }
        Ok(cluster)
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct RunningBroker {
    id: BrokerId,
    addr: SocketAddr,
    /// `None` while the broker is stopped, killed or crashed.
    server: std::sync::Mutex<Option<Server>>,
}

struct Server {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBroker {
    fn server(&self) -> std::sync::MutexGuard<'_, Option<Server>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running embedded cluster. Dropping it stops the brokers too; [`Cluster::shutdown`] also waits for them.
pub struct Cluster {
    core: Arc<ClusterCore>,
    brokers: Vec<RunningBroker>,
    _retention_timer: Timer,
    _group_timer: Timer,
    replication: faults::ReplicationRuntime,
}

impl Cluster {
    /// Settings with Kafka's defaults and 3 brokers.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            brokers: 3,
            port_base: None,
            clock: None,
            cluster_id: "etl-harness-embedded".to_string(),
            defaults: BrokerDefaults::default(),
            log_defaults: Vec::new(),
            topics: Vec::new(),
            log_dir: None,
            log_memory: None,
        }
    }

    /// `host:port,host:port,…` of every broker, for a client's bootstrap list.
    pub fn bootstrap_servers(&self) -> String {
        self.broker_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every broker's listening address, in broker id order.
    pub fn broker_addrs(&self) -> Vec<SocketAddr> {
        self.brokers.iter().map(|b| b.addr).collect()
    }

    /// Every broker's id.
    pub fn broker_ids(&self) -> Vec<BrokerId> {
        self.brokers.iter().map(|b| b.id).collect()
    }

    /// The broker holding the controller role (named in Metadata).
    pub fn controller(&self) -> BrokerId {
        self.core.controller()
    }

    /// The cluster's clock; advance it to make retention happen when it is virtual.
    pub fn clock(&self) -> &Clock {
        &self.core.clock
    }

    /// Creates a topic, as CreateTopics would.
    pub fn create_topic(&self, topic: NewTopic) -> Result<(), ClusterError> {
        self.core.create_topic(&topic, false)?;
        Ok(())
    }

    /// Deletes a topic and its logs, as DeleteTopics would.
    pub fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        self.core.delete_topic(name)?;
        Ok(())
    }

    /// The broker coordinating consumer group `group`: the leader of its `__consumer_offsets` partition (`None`
    /// before the first FindCoordinator created that topic, or while the partition has no leader).
    pub fn group_coordinator(&self, group: &str) -> Option<BrokerId> {
        let topic = self.core.topic(coordinator::OFFSETS_TOPIC)?;
        let index = coordinator::partition_for(group, topic.partitions.len() as i32);
        let leader = topic.partitions.get(index as usize)?.lock().leader;
        leader
    }

    /// Every consumer group the coordinators hold now: members, assignments, committed offsets and lag.
    pub fn groups(&self) -> Vec<GroupSummary> {
        self.core.coordinator.summaries(&self.core)
    }

    /// The leader of each partition of `topic`, in partition order; `None` if the topic does not exist.
    pub fn partition_leaders(&self, topic: &str) -> Option<Vec<Option<BrokerId>>> {
        let topic = self.core.topic(topic)?;
        Some(topic.partitions.iter().map(|p| p.lock().leader).collect())
    }

    /// Bytes of record batches each partition of `topic` holds, in partition order; `None` if it does not exist.
    pub fn stored_bytes(&self, topic: &str) -> Option<Vec<u64>> {
        let topic = self.core.topic(topic)?;
        Some(
            topic
                .partitions
                .iter()
                .map(|p| p.lock().log().size_bytes())
                .collect(),
        )
    }

    /// Bytes of record batches held by every replica of every partition of `topic` together.
    pub fn replica_stored_bytes(&self, topic: &str) -> Option<u64> {
        let topic = self.core.topic(topic)?;
        Some(
            topic
                .partitions
                .iter()
                .map(|p| {
                    p.lock()
                        .replicas
                        .iter()
                        .map(|r| r.log.size_bytes())
                        .sum::<u64>()
                })
                .sum(),
        )
    }

    /// Bytes of distinct record buffers behind every replica of `topic` (replicas share the leader's buffers, so
    /// this stays near one copy at any replication factor).
    pub fn distinct_buffer_bytes(&self, topic: &str) -> Option<u64> {
        let topic = self.core.topic(topic)?;
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        for partition in &topic.partitions {
            let state = partition.lock();
            for replica in &state.replicas {
                for (ptr, len) in replica.log.buffers() {
                    if seen.insert(ptr) {
                        total += len as u64;
                    }
                }
            }
        }
        Some(total)
    }

    /// Runs one retention check now, at the clock's current time (the timer does this every
    /// `log.retention.check.interval.ms`).
    pub fn enforce_retention(&self) {
        self.core.enforce_retention(self.core.clock.now_ms());
    }

    /// What the cluster did so far, oldest first.
    pub fn events(&self) -> Vec<ClusterEvent> {
        self.core.events()
    }

    /// Hands every replica's buffered writes to the operating system (no fsync, as Kafka by default) and rewrites
    /// every running broker's `replication-offset-checkpoint`; a no-op without a
    /// [`log_dir`](ClusterBuilder::log_dir). A log whose writes failed reports its first failure.
    pub fn flush(&self) -> Result<(), ClusterError> {
        for topic in self.core.topics() {
            for partition in &topic.partitions {
                for replica in &mut partition.lock().replicas {
                    replica.log.flush()?;
                }
            }
        }
        let running: Vec<BrokerId> = self
            .core
            .liveness()
            .iter()
            .filter(|l| l.process == replication::Process::Running)
            .map(|l| l.id)
            .collect();
        self.core.checkpoint_high_watermarks(&running)?;
        Ok(())
    }

    /// Stops every broker: listeners close, open connections are dropped, logs are flushed to their files.
    pub async fn shutdown(mut self) {
        self.replication.stop();
        let servers: Vec<Server> = self
            .brokers
            .iter()
            .filter_map(|b| b.server().take())
            .collect();
        for server in &servers {
            let _ = server.shutdown.send(true);
        }
        for server in servers {
            let _ = server.task.await;
        }
        if let Err(error) = self.flush() {
            tracing::error!(%error, "cannot flush the logs at shutdown");
        }
        self.brokers.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.replication.stop();
        for broker in &self.brokers {
            if let Some(server) = broker.server().as_ref() {
                let _ = server.shutdown.send(true);
            }
        }
    }
}
