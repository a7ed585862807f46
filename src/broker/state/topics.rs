//! Topics in the cluster's state: what a CreateTopics asks for ([`NewTopic`]), why a request is refused
//! ([`TopicError`]), and creating, validating and deleting topics.

use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::{ClusterCore, Partition, PartitionState, Topic};
use crate::broker::config::{ConfigError, TopicConfig};
use crate::broker::disk::StorageError;
use crate::broker::log::Log;
use crate::broker::replication::Replica;
use crate::broker::BrokerId;
use crate::history::ClusterEventKind;

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

impl ClusterCore {
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
                        let log = Log::new(&spec.name, index, config.clone(), now)
                            .with_spill(self.spill.clone());
                        let mut replica = Replica::new(broker, log);
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
