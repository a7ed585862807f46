//! The cluster's shared state: registered brokers, the controller, topics and their partitions, the event log.
//! What a real cluster keeps in its controller quorum plus every broker's replicas, here in one process behind
//! locks that are never held across an `.await`.
//!
//! Partition state: an assignment (replica list, preferred leader first), an ISR, a leader, a leader epoch, and one
//! [`Replica`] (its own log) per assigned broker. How replicas follow their leader is in `replication`; how leaders
//! are chosen is in `controller`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::watch;
use uuid::Uuid;

use super::config::{BrokerDefaults, ConfigError, TopicConfig};
use super::disk::{Loaded, LoadedPartition, LogDir, OffsetCheckpoint, StorageError};
use super::log::Log;
use super::replication::{advance_high_watermark, BrokerLiveness, Replica};
use super::BrokerId;
use crate::clock::Clock;
use crate::history::{ClusterEvent, ClusterEventKind};

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

/// More partitions per topic than any test needs; a request above it is refused rather than allocated.
pub const MAX_PARTITIONS: i32 = 100_000;

/// What to create: a topic name, a partition count and topic config overrides.
#[derive(Clone, Debug)]
pub struct NewTopic {
    pub(crate) name: String,
    pub(crate) partitions: i32,
    pub(crate) replication_factor: i16,
    pub(crate) configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions (-1: the cluster's `num.partitions`), default replication factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    /// Sets a topic config such as `retention.ms` or `cleanup.policy`.
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> NewTopic {
        self.configs.push((name.into(), value.into()));
        self
    }

    /// Sets the replication factor (-1: `default.replication.factor`).
    pub fn replication_factor(mut self, replication_factor: i16) -> NewTopic {
        self.replication_factor = replication_factor;
        self
    }
}

/// Why a topic operation failed; each variant maps to Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    Unknown(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid partition count {0} for topic '{1}': must be between 1 and {MAX_PARTITIONS}")]
    InvalidPartitions(i32, String),
    #[error("invalid replication factor {requested} for topic '{topic}': must be at least 1 and at most the {brokers} brokers")]
    InvalidReplicationFactor {
        topic: String,
        requested: i16,
        brokers: usize,
    },
    #[error("topic '{topic}': {source}")]
    InvalidConfig { topic: String, source: ConfigError },
    #[error("topic '{topic}': {source}")]
    Storage { topic: String, source: StorageError },
}

impl TopicError {
    /// Kafka's error code for this failure.
    pub(crate) fn code(&self) -> i16 {
        use kafka_protocol::error::ResponseError as E;
        match self {
            TopicError::AlreadyExists(_) => E::TopicAlreadyExists.code(),
            TopicError::Unknown(_) => E::UnknownTopicOrPartition.code(),
            TopicError::InvalidName { .. } => E::InvalidTopicException.code(),
            TopicError::InvalidPartitions(..) => E::InvalidPartitions.code(),
            TopicError::InvalidReplicationFactor { .. } => E::InvalidReplicationFactor.code(),
            TopicError::InvalidConfig { .. } => E::InvalidConfig.code(),
            TopicError::Storage { .. } => E::KafkaStorageError.code(),
        }
    }
}

fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| TopicError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if name.len() > 249 {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
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
    /// Each broker's process and network state and the controller's view of it, in broker order.
    liveness: Mutex<Vec<BrokerLiveness>>,
    /// Bumped whenever `liveness` changes, so held connections re-check.
    liveness_changed: watch::Sender<u64>,
    /// The next ProducerId InitProducerId hands out (Kafka's controller allocates them cluster-wide).
    next_producer_id: AtomicI64,
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
            liveness: Mutex::new(liveness),
            liveness_changed: watch::Sender::new(0),
            next_producer_id: AtomicI64::new(0),
        }
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
                    let state =
                        restore_partition(p, &topic.name, index as i32, min_isr, now, &mut events);
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

    /// Checks a topic request without creating anything (CreateTopics with validate_only).
    pub(crate) fn validate_topic(
        &self,
        spec: &NewTopic,
    ) -> Result<(i32, i16, TopicConfig), TopicError> {
        validate_topic_name(&spec.name)?;
        if self.read_metadata().topics.contains_key(&spec.name) {
            return Err(TopicError::AlreadyExists(spec.name.clone()));
        }
        let partitions = if spec.partitions == -1 {
            self.defaults.num_partitions
        } else {
            spec.partitions
        };
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions, spec.name.clone()));
        }
        let replication_factor = if spec.replication_factor == -1 {
            self.defaults.default_replication_factor
        } else {
            spec.replication_factor
        };
        if replication_factor < 1 || replication_factor as usize > self.brokers.len() {
            return Err(TopicError::InvalidReplicationFactor {
                topic: spec.name.clone(),
                requested: replication_factor,
                brokers: self.brokers.len(),
            });
        }
        let config = self
            .defaults
            .topic
            .clone()
            .with_overrides(spec.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|source| TopicError::InvalidConfig {
                topic: spec.name.clone(),
                source,
            })?;
        Ok((partitions, replication_factor, config))
    }

    /// Creates a topic with its leaders spread round-robin over the brokers, starting one broker further for
    /// every topic, as Kafka's assignment does (it starts at a random broker).
    pub(crate) fn create_topic(
        &self,
        spec: &NewTopic,
        auto_created: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let (partitions, replication_factor, config) = self.validate_topic(spec)?;
        let now = self.clock.now_ms();
        let mut metadata = self.metadata.write().unwrap_or_else(|e| e.into_inner());
        if metadata.topics.contains_key(&spec.name) {
            return Err(TopicError::AlreadyExists(spec.name.clone()));
        }
        let start = metadata.topics_created as usize;
        metadata.topics_created += 1;
        let brokers = self.brokers.len().max(1);
        let mut events = vec![ClusterEventKind::TopicCreated {
            topic: spec.name.clone(),
            partitions,
            replication_factor,
            auto_created,
        }];
        let registered: Vec<BrokerId> = self
            .liveness()
            .iter()
            .filter(|l| !l.fenced)
            .map(|l| l.id)
            .collect();
        let rf = usize::try_from(replication_factor).unwrap_or(1).max(1);
        let partitions: Vec<Arc<Partition>> = (0..partitions)
            .map(|index| {
                // The preferred leader rotates over the brokers; followers are the brokers after it.
                let assignment: Vec<BrokerId> = (0..rf)
                    .map(|j| {
                        self.brokers
                            .get((start + index as usize + j) % brokers)
                            .map_or(BrokerId(0), |b| b.id)
                    })
                    .collect();
                let isr: Vec<BrokerId> = assignment
                    .iter()
                    .copied()
                    .filter(|b| registered.contains(b))
                    .collect();
                let leader = isr.first().copied();
                let isr = if isr.is_empty() {
                    assignment[..1].to_vec()
                } else {
                    isr
                };
                match leader {
                    Some(leader) => events.push(ClusterEventKind::LeaderChanged {
                        topic: spec.name.clone(),
                        partition: index,
                        leader,
                        leader_epoch: 0,
                    }),
                    None => events.push(ClusterEventKind::Election {
                        topic: spec.name.clone(),
                        partition: index,
                        leader: None,
                        leader_epoch: 0,
                        kind: crate::history::ElectionKind::Clean,
                    }),
                }
                let replicas = assignment
                    .iter()
                    .map(|&broker| {
                        let mut replica =
                            Replica::new(broker, Log::new(&spec.name, index, config.clone(), now));
                        // As a new leader does (Kafka resets followers' caught-up time), count every
                        // replica as caught up at creation, not at the epoch of the clock.
                        replica.last_caught_up_ms = now;
                        if Some(broker) == leader {
                            replica.begin_epoch(0);
                        }
                        replica
                    })
                    .collect();
                Arc::new(Partition {
                    index,
                    state: Mutex::new(PartitionState {
                        assignment,
                        isr,
                        leader,
                        leader_epoch: 0,
                        replicas,
                    }),
                })
            })
            .collect();
        let id = topic_id(&self.cluster_id, &spec.name, metadata.topics_created);
        let topic = Arc::new(Topic {
            name: spec.name.clone(),
            id,
            config,
            overrides: spec.configs.iter().cloned().collect(),
            replication_factor,
            partitions,
        });
        let storage_error = |source| TopicError::Storage {
            topic: spec.name.clone(),
            source,
        };
        if let Some(dir) = &self.log_dir {
            dir.attach_topic(&topic).map_err(storage_error)?;
        }
        metadata.ids.insert(id, spec.name.clone());
        metadata.topics.insert(spec.name.clone(), topic.clone());
        if let Err(error) = self.persist_metadata(&metadata) {
            metadata.ids.remove(&id);
            metadata.topics.remove(&spec.name);
            for partition in &topic.partitions {
                for replica in &mut partition.lock().replicas {
                    replica.log.delete_files();
                }
            }
            return Err(storage_error(error));
        }
        drop(metadata);
        self.record(events);
        Ok(topic)
    }

    pub(crate) fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        let mut metadata = self.metadata.write().unwrap_or_else(|e| e.into_inner());
        let topic = metadata
            .topics
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        metadata.ids.remove(&topic.id);
        let persisted = self.persist_metadata(&metadata);
        drop(metadata);
        match persisted {
            Ok(()) => {
                for partition in &topic.partitions {
                    for replica in &mut partition.lock().replicas {
                        replica.log.delete_files();
                    }
                }
            }
            // The deletion stands for this cluster; the files stay, so a restart serves the topic again rather
            // than finding its directories gone.
            Err(error) => {
                tracing::warn!(topic = name, %error, "cannot record the topic deletion in the log directory")
            }
        }
        self.record([ClusterEventKind::TopicDeleted {
            topic: name.to_string(),
        }]);
        Ok(topic.id)
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
        let mut replica = Replica::restored(loaded.broker, loaded.log, epochs);
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

/// A topic id that is the same for the same cluster, name and creation order (runs stay reproducible), and
/// changes when a topic is deleted and created again, as Kafka's does.
fn topic_id(cluster_id: &str, name: &str, sequence: u64) -> Uuid {
    // FNV-1a over the inputs, twice with different seeds, to fill 128 bits.
    let hash = |seed: u64| {
        let mut h = seed;
        for b in cluster_id
            .bytes()
            .chain([0])
            .chain(name.bytes())
            .chain(sequence.to_be_bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let value =
        (u128::from(hash(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(hash(0x8422_2325_cbf2_9ce4));
    // Version 4 / variant bits set, so tools that check them are satisfied; never the all-zero id.
    uuid::Builder::from_random_bytes(value.to_be_bytes()).into_uuid()
}
