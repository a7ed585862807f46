//! The cluster's shared state: registered brokers, the controller, topics and their partitions, the event log.
//! What a real cluster keeps in its controller quorum plus every broker's replicas, here in one process behind
//! locks that are never held across an `.await`.
//!
//! Partition state: an assignment (replica list, preferred leader first), an ISR, a leader, a leader epoch, and one
//! [`Replica`] (its own log) per assigned broker. How replicas follow their leader is in `replication`; how leaders
//! are chosen is in `controller`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};

use tokio::sync::watch;
use uuid::Uuid;

use super::config::{BrokerDefaults, TopicConfig};
use super::disk::{Loaded, LoadedPartition, LogDir, OffsetCheckpoint, StorageError};
use super::log::{Log, SpillStore};
use super::replication::{advance_high_watermark, BrokerLiveness, Replica};
use super::BrokerId;
use crate::clock::Clock;
use crate::clock::Timer;
use crate::history::{ClusterEvent, ClusterEventKind};

mod topics;

pub use topics::{NewTopic, TopicError, MAX_PARTITIONS};

/// A registered broker: where clients reach it.
#[derive(Clone, Debug)]
pub(crate) struct BrokerInfo {
    pub id: BrokerId,
    pub host: String,
    pub port: u16,
}

pub(crate) struct Topic {
    pub name: String,
    pub id: Uuid,
    pub config: TopicConfig,
    /// Configs set at creation, as DescribeConfigs reports them (source DYNAMIC_TOPIC_CONFIG).
    pub overrides: BTreeMap<String, String>,
    pub replication_factor: i16,
    pub partitions: Vec<Arc<Partition>>,
}

pub(crate) struct Partition {
    pub index: i32,
    state: Mutex<PartitionState>,
}

pub(crate) struct PartitionState {
    /// Brokers holding a replica, preferred leader first.
    pub assignment: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: Option<BrokerId>,
    pub leader_epoch: i32,
    /// One per assigned broker, in assignment order.
    pub replicas: Vec<Replica>,
}

impl PartitionState {
    fn position(&self, broker: BrokerId) -> Option<usize> {
        self.replicas.iter().position(|r| r.broker == broker)
    }

    /// The replica on `broker`, if it holds one.
    pub(crate) fn replica(&self, broker: BrokerId) -> Option<&Replica> {
        self.position(broker).map(|i| &self.replicas[i])
    }

    pub(crate) fn replica_mut(&mut self, broker: BrokerId) -> Option<&mut Replica> {
        self.position(broker).map(|i| &mut self.replicas[i])
    }

    /// The log clients read: the leader's, or while the partition is offline the preferred replica's.
    pub(crate) fn log(&self) -> &Log {
        let index = self.leader.and_then(|l| self.position(l)).unwrap_or(0);
        &self.replicas[index].log
    }

    pub(crate) fn log_mut(&mut self) -> &mut Log {
        let index = self.leader.and_then(|l| self.position(l)).unwrap_or(0);
        &mut self.replicas[index].log
    }
}

impl Partition {
    pub(crate) fn lock(&self) -> MutexGuard<'_, PartitionState> {
        // The state is only changed through Log methods that keep it consistent at every step; a panic elsewhere
        // while the lock was held must not take the partition down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Metadata {
    topics: BTreeMap<String, Arc<Topic>>,
    ids: HashMap<Uuid, String>,
    topics_created: u64,
}

/// Everything the brokers of one cluster share.
pub(crate) struct ClusterCore {
    pub cluster_id: String,
    pub defaults: BrokerDefaults,
    pub clock: Clock,
    pub brokers: Vec<BrokerInfo>,
    controller: RwLock<BrokerId>,
    metadata: RwLock<Metadata>,
    events: Mutex<Vec<ClusterEvent>>,
    /// Bumped after every append, high watermark move and leader change, so waiting fetches (min_bytes),
    /// acks=all produces and the replica fetcher re-check.
    appended: watch::Sender<u64>,
    /// Where logs and topic metadata are written through to, if anywhere.
    log_dir: Option<LogDir>,
    /// The memory budget for record batch bytes and where the rest goes, when the cluster has one.
    spill: Option<Arc<SpillStore>>,
    /// Each broker's process and network state and the controller's view of it, in broker order.
    liveness: Mutex<Vec<BrokerLiveness>>,
    /// Bumped whenever `liveness` changes, so held connections re-check.
    liveness_changed: watch::Sender<u64>,
    /// The next ProducerId InitProducerId hands out (Kafka's controller allocates them cluster-wide).
    next_producer_id: AtomicI64,
    /// Itself, for timers the controller starts (set when the replication runtime starts).
    this: OnceLock<Weak<ClusterCore>>,
    /// ZooKeeper mode: the leader-imbalance check a newly elected controller runs 5 s after it took over.
    failover_rebalance: Mutex<Option<Timer>>,
    /// The consumer groups, by `__consumer_offsets` partition.
    pub coordinator: super::coordinator::Coordinator,
}

impl ClusterCore {
    pub(crate) fn new(
        cluster_id: String,
        defaults: BrokerDefaults,
        clock: Clock,
        brokers: Vec<BrokerInfo>,
    ) -> ClusterCore {
        let controller = brokers.first().map_or(BrokerId(0), |b| b.id);
        let now = clock.now_ms();
        let liveness = brokers
            .iter()
            .map(|b| BrokerLiveness::new(b.id, now))
            .collect();
        ClusterCore {
            cluster_id,
            defaults,
            clock,
            brokers,
            controller: RwLock::new(controller),
            metadata: RwLock::new(Metadata::default()),
            events: Mutex::new(Vec::new()),
            appended: watch::Sender::new(0),
            log_dir: None,
            spill: None,
            liveness: Mutex::new(liveness),
            liveness_changed: watch::Sender::new(0),
            next_producer_id: AtomicI64::new(0),
            this: OnceLock::new(),
            failover_rebalance: Mutex::new(None),
            coordinator: Default::default(),
        }
    }

    /// Lets the controller start timers of its own on this core.
    pub(crate) fn set_self(self: &Arc<Self>) {
        let _ = self.this.set(Arc::downgrade(self));
    }

    /// Runs `task` on this core once, `delay` of clock time from now, replacing the one set before (ZooKeeper
    /// mode's post-failover imbalance check). Does nothing before the replication runtime started.
    pub(crate) fn schedule_failover_rebalance(
        &self,
        delay: std::time::Duration,
        task: fn(&ClusterCore),
    ) {
        let Some(weak) = self.this.get().cloned() else {
            return;
        };
        let timer = self.clock.after(delay, move |_| {
            if let Some(core) = weak.upgrade() {
                task(&core);
            }
        });
        let previous = std::mem::replace(
            &mut *self
                .failover_rebalance
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            timer.ok(),
        );
        drop(previous);
    }

    /// A ProducerId no other producer of this cluster got.
    pub(crate) fn next_producer_id(&self) -> i64 {
        self.next_producer_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes topics and logs through to `log_dir` from now on.
    pub(crate) fn with_log_dir(mut self, log_dir: Option<LogDir>) -> ClusterCore {
        self.log_dir = log_dir;
        self
    }

    /// Keeps batch bytes under `spill`'s memory budget from now on.
    pub(crate) fn with_spill(mut self, spill: Option<Arc<SpillStore>>) -> ClusterCore {
        self.spill = spill;
        self
    }

    pub(crate) fn spill(&self) -> Option<&Arc<SpillStore>> {
        self.spill.as_ref()
    }

    pub(crate) fn log_dir(&self) -> Option<&LogDir> {
        self.log_dir.as_ref()
    }

    /// Serves the topics and logs read back from the log directory; returns their names.
    pub(crate) fn restore(&self, loaded: Loaded) -> Vec<String> {
        let mut metadata = self.metadata.write().unwrap_or_else(|e| e.into_inner());
        metadata.topics_created = metadata.topics_created.max(loaded.topics_created);
        let now = self.clock.now_ms();
        let mut events = Vec::new();
        let mut names = Vec::with_capacity(loaded.topics.len());
        for topic in loaded.topics {
            let min_isr = topic.config.min_insync_replicas;
            let partitions = topic
                .partitions
                .into_iter()
                .enumerate()
                .map(|(index, p)| {
                    let state = restore_partition(
                        p,
                        &topic.name,
                        index as i32,
                        min_isr,
                        now,
                        self.spill.as_ref(),
                        &mut events,
                    );
                    Arc::new(Partition {
                        index: index as i32,
                        state: Mutex::new(state),
                    })
                })
                .collect();
            metadata.ids.insert(topic.id, topic.name.clone());
            names.push(topic.name.clone());
            metadata.topics.insert(
                topic.name.clone(),
                Arc::new(Topic {
                    name: topic.name,
                    id: topic.id,
                    config: topic.config,
                    overrides: topic.overrides,
                    replication_factor: topic.replication_factor,
                    partitions,
                }),
            );
        }
        drop(metadata);
        self.record(events);
        names
    }

    /// Rewrites the `replication-offset-checkpoint` of each of `brokers` with the high watermark of every replica
    /// it holds (a no-op without a log directory). Returns the first failure; the other brokers are still written.
    pub(crate) fn checkpoint_high_watermarks(
        &self,
        brokers: &[BrokerId],
    ) -> Result<(), StorageError> {
        let Some(dir) = &self.log_dir else {
            return Ok(());
        };
        let mut per_broker: BTreeMap<BrokerId, OffsetCheckpoint> = brokers
            .iter()
            .map(|&b| (b, OffsetCheckpoint::new()))
            .collect();
        for topic in self.topics() {
            for partition in &topic.partitions {
                let state = partition.lock();
                for replica in &state.replicas {
                    if let Some(entries) = per_broker.get_mut(&replica.broker) {
                        entries.insert(
                            (topic.name.clone(), partition.index),
                            replica.log.high_watermark(),
                        );
                    }
                }
            }
        }
        let mut first_error = None;
        for (broker, entries) in &per_broker {
            if let Err(error) = dir.checkpoint_high_watermarks(*broker, entries) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Rewrites the log directory's topic list (after a topic was created or deleted).
    fn persist_metadata(&self, metadata: &Metadata) -> Result<(), StorageError> {
        match &self.log_dir {
            Some(dir) => dir.write_metadata(
                &self.cluster_id,
                metadata.topics_created,
                metadata.topics.values(),
            ),
            None => Ok(()),
        }
    }

    pub(crate) fn set_controller(&self, broker: BrokerId) {
        *self.controller.write().unwrap_or_else(|e| e.into_inner()) = broker;
    }

    /// A copy of every broker's liveness, in broker order.
    pub(crate) fn liveness(&self) -> Vec<BrokerLiveness> {
        self.liveness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes one broker's liveness (no-op for an unknown id) and wakes whoever waits on it.
    pub(crate) fn update_liveness<T>(
        &self,
        broker: BrokerId,
        change: impl FnOnce(&mut BrokerLiveness) -> T,
    ) -> Option<T> {
        let result = {
            let mut all = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
            all.iter_mut().find(|l| l.id == broker).map(change)
        };
        self.liveness_changed
            .send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    pub(crate) fn subscribe_liveness(&self) -> watch::Receiver<u64> {
        self.liveness_changed.subscribe()
    }

    pub(crate) fn controller(&self) -> BrokerId {
        *self.controller.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record(&self, kinds: impl IntoIterator<Item = ClusterEventKind>) {
        let at_ms = self.clock.now_ms();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        for kind in kinds {
            tracing::debug!(?kind, at_ms, "cluster event");
            events.push(ClusterEvent { at_ms, kind });
        }
    }

    pub(crate) fn events(&self) -> Vec<ClusterEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_metadata().topics.get(name).cloned()
    }

    pub(crate) fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let metadata = self.read_metadata();
        metadata
            .ids
            .get(&id)
            .and_then(|name| metadata.topics.get(name))
            .cloned()
    }

    pub(crate) fn topics(&self) -> Vec<Arc<Topic>> {
        self.read_metadata().topics.values().cloned().collect()
    }

    fn read_metadata(&self) -> std::sync::RwLockReadGuard<'_, Metadata> {
        self.metadata.read().unwrap_or_else(|e| e.into_inner())
    }

    /// One retention check over every partition (the `log.retention.check.interval.ms` timer calls this).
    pub(crate) fn enforce_retention(&self, now_ms: i64) {
        let mut events = Vec::new();
        for topic in self.topics() {
            for partition in &topic.partitions {
                let mut state = partition.lock();
                let leader = state.leader.or(state.assignment.first().copied());
                for replica in &mut state.replicas {
                    // Every replica applies retention to its own log; the event log tells the partition's story once.
                    if Some(replica.broker) == leader {
                        replica.log.enforce_retention(now_ms, &mut events);
                    } else {
                        replica.log.enforce_retention(now_ms, &mut Vec::new());
                    }
                }
            }
        }
        if !events.is_empty() {
            self.record(events);
        }
    }
}

/// One partition read back from the log directory (the recovery rules are in `disk/mod.rs`):
/// - every replica comes from its broker's directory, with its epoch cache and its checkpointed high watermark;
/// - the leader is the replica with the latest leader epoch and, among those, the longest log (the first in
///   assignment order on a tie): every record the ISR had committed is in it, whatever the metadata kept;
/// - the leader epoch is the largest known (cluster.json or any replica's cache);
/// - the ISR is the leader and the replicas whose log end offset and latest epoch equal the leader's — those a
///   Kafka leader would keep (or re-admit at their first fetch); the others rejoin once caught up;
/// - the leader's high watermark is its checkpointed one (between log start and end offset), then moves as usual.
fn restore_partition(
    p: LoadedPartition,
    topic: &str,
    index: i32,
    min_insync_replicas: i64,
    now_ms: i64,
    spill: Option<&Arc<SpillStore>>,
    events: &mut Vec<ClusterEventKind>,
) -> PartitionState {
    let stored_epoch = p.leader_epoch;
    let mut replicas: Vec<Replica> = Vec::with_capacity(p.replicas.len());
    for loaded in p.replicas {
        events.push(ClusterEventKind::LogLoaded {
            broker: loaded.broker,
            topic: topic.to_string(),
            partition: index,
            log_start_offset: loaded.log.log_start_offset(),
            log_end_offset: loaded.log.log_end_offset(),
            truncated_bytes: loaded.truncated_bytes,
        });
        let mut epochs = loaded.epochs;
        if epochs.is_empty() && !loaded.created && loaded.log.log_end_offset() > 0 {
            // Written before leader-epoch checkpoints existed: one epoch from the log start.
            epochs.push((stored_epoch, loaded.log.log_start_offset()));
        }
        let log = loaded.log.with_spill(spill.cloned());
        let mut replica = Replica::restored(loaded.broker, log, epochs);
        let hw = loaded
            .high_watermark
            .unwrap_or(replica.log.log_start_offset());
        replica.log.set_high_watermark(hw);
        replica.last_caught_up_ms = now_ms;
        replicas.push(replica);
    }
    let rank = |r: &Replica| (r.last_epoch().unwrap_or(-1), r.log.log_end_offset());
    let best = replicas.iter().map(rank).max().unwrap_or((-1, 0));
    let leader_index = replicas.iter().position(|r| rank(r) == best).unwrap_or(0);
    let leader_epoch = stored_epoch.max(best.0);
    let leader = replicas[leader_index].broker;
    replicas[leader_index].begin_epoch(leader_epoch);
    let isr: Vec<BrokerId> = replicas
        .iter()
        .filter(|r| r.broker == leader || rank(r) == best)
        .map(|r| r.broker)
        .collect();
    events.push(ClusterEventKind::LeaderChanged {
        topic: topic.to_string(),
        partition: index,
        leader,
        leader_epoch,
    });
    let mut state = PartitionState {
        assignment: p.assignment,
        isr,
        leader: Some(leader),
        leader_epoch,
        replicas,
    };
    advance_high_watermark(&mut state, min_insync_replicas);
    state
}
