//! The cluster's log directory: one directory per broker with its `meta.properties` and offset checkpoints,
//! `cluster.json` with the topics, creating a new topic's partition directories and loading everything back at
//! start.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::checkpoint::{offset_checkpoint_text, read_checkpoint, OffsetCheckpoint};
use super::disk_log::DiskLog;
use super::{
    io_error, replace_file, StorageError, LOG_START_OFFSET_CHECKPOINT, METADATA_FILE,
    META_PROPERTIES, REPLICATION_OFFSET_CHECKPOINT,
};
use crate::broker::config::TopicConfig;
use crate::broker::log::Log;
use crate::broker::state::Topic;
use crate::broker::BrokerId;

/// The cluster's log directory: one subdirectory per broker.
pub(crate) struct LogDir {
    root: PathBuf,
    brokers: BTreeMap<BrokerId, Arc<BrokerLogDir>>,
}

/// One broker's directory and its checkpoint files.
pub(crate) struct BrokerLogDir {
    pub(super) path: PathBuf,
    /// Log start offsets, as `log-start-offset-checkpoint` holds them.
    pub(super) log_start_offsets: Mutex<OffsetCheckpoint>,
    /// High watermarks, as `replication-offset-checkpoint` held them when the directory was opened.
    pub(super) high_watermarks: OffsetCheckpoint,
}

impl BrokerLogDir {
    fn checkpoint_path(&self) -> PathBuf {
        self.path.join(LOG_START_OFFSET_CHECKPOINT)
    }

    /// Sets (or with `None` removes) one partition's entry and rewrites the checkpoint file.
    pub(super) fn checkpoint(
        &self,
        topic: &str,
        partition: i32,
        offset: Option<i64>,
    ) -> Result<(), StorageError> {
        let mut offsets = self
            .log_start_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (topic.to_string(), partition);
        match offset {
            Some(offset) => offsets.insert(key, offset),
            None => offsets.remove(&key),
        };
        replace_file(
            &self.checkpoint_path(),
            offset_checkpoint_text(&offsets).as_bytes(),
        )
    }

    /// Rewrites `replication-offset-checkpoint` with every replica this broker holds.
    pub(crate) fn checkpoint_high_watermarks(
        &self,
        high_watermarks: &OffsetCheckpoint,
    ) -> Result<(), StorageError> {
        replace_file(
            &self.path.join(REPLICATION_OFFSET_CHECKPOINT),
            offset_checkpoint_text(high_watermarks).as_bytes(),
        )
    }

    pub(super) fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.path.join(format!("{topic}-{partition}"))
    }

    pub(super) fn checkpointed(&self, topic: &str, partition: i32) -> Option<i64> {
        self.log_start_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

/// `meta.properties`: checks the cluster id of an existing broker directory, or writes it for a new one.
fn check_meta_properties(
    dir: &Path,
    cluster_id: &str,
    broker: BrokerId,
) -> Result<(), StorageError> {
    let path = dir.join(META_PROPERTIES);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found = text
                .lines()
                .find_map(|l| l.strip_prefix("cluster.id="))
                .ok_or_else(|| StorageError::Metadata {
                    path: path.clone(),
                    reason: "no cluster.id line".to_string(),
                })?;
            if found != cluster_id {
                return Err(StorageError::ClusterIdMismatch {
                    path,
                    found: found.to_string(),
                    expected: cluster_id.to_string(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => replace_file(
            &path,
            format!("version=1\ncluster.id={cluster_id}\nnode.id={broker}\n").as_bytes(),
        ),
        Err(e) => Err(io_error("read", &path)(e)),
    }
}

/// `cluster.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct MetadataFile {
    version: u32,
    cluster_id: String,
    /// Topics created so far, deleted ones included: topic ids and leader placement continue from it.
    topics_created: u64,
    topics: Vec<TopicRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TopicRecord {
    name: String,
    id: String,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    partitions: Vec<PartitionRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PartitionRecord {
    /// Broker ids holding a replica, preferred leader first.
    assignment: Vec<i32>,
    leader_epoch: i32,
}

/// What a log directory held: the topics, each partition's log recovered from its files.
pub(crate) struct Loaded {
    pub topics_created: u64,
    pub topics: Vec<LoadedTopic>,
}

pub(crate) struct LoadedTopic {
    pub name: String,
    pub id: Uuid,
    pub replication_factor: i16,
    pub overrides: BTreeMap<String, String>,
    pub config: TopicConfig,
    pub partitions: Vec<LoadedPartition>,
}

pub(crate) struct LoadedPartition {
    pub assignment: Vec<BrokerId>,
    pub leader_epoch: i32,
    /// One per assigned broker, in assignment order.
    pub replicas: Vec<LoadedReplica>,
}

/// One replica read back from its broker's directory.
pub(crate) struct LoadedReplica {
    pub broker: BrokerId,
    pub log: Log,
    /// Bytes of a torn tail batch cut off the last segment.
    pub truncated_bytes: u64,
    /// The `leader-epoch-checkpoint`, without entries at or past the log end offset (as Kafka truncates it).
    pub epochs: Vec<(i32, i64)>,
    /// From `replication-offset-checkpoint`, if the broker had written one for this partition.
    pub high_watermark: Option<i64>,
    /// The directory was missing: an empty replica that catches up by replication.
    pub created: bool,
}

impl LogDir {
    /// Creates (or reopens) `root` and one directory per broker; checks that they belong to `cluster_id`.
    pub(crate) fn open(
        root: &Path,
        cluster_id: &str,
        brokers: &[BrokerId],
    ) -> Result<LogDir, StorageError> {
        fs::create_dir_all(root).map_err(io_error("create the log directory", root))?;
        let mut dirs = BTreeMap::new();
        for &broker in brokers {
            let path = root.join(format!("broker-{broker}"));
            fs::create_dir_all(&path).map_err(io_error("create the broker directory", &path))?;
            check_meta_properties(&path, cluster_id, broker)?;
            let log_start_offsets =
                Mutex::new(read_checkpoint(&path.join(LOG_START_OFFSET_CHECKPOINT))?);
            let high_watermarks = read_checkpoint(&path.join(REPLICATION_OFFSET_CHECKPOINT))?;
            dirs.insert(
                broker,
                Arc::new(BrokerLogDir {
                    path,
                    log_start_offsets,
                    high_watermarks,
                }),
            );
        }
        Ok(LogDir {
            root: root.to_path_buf(),
            brokers: dirs,
        })
    }

    /// Rewrites `broker`'s `replication-offset-checkpoint`.
    pub(crate) fn checkpoint_high_watermarks(
        &self,
        broker: BrokerId,
        high_watermarks: &OffsetCheckpoint,
    ) -> Result<(), StorageError> {
        self.broker(broker)?
            .checkpoint_high_watermarks(high_watermarks)
    }

    fn broker(&self, broker: BrokerId) -> Result<&Arc<BrokerLogDir>, StorageError> {
        self.brokers.get(&broker).ok_or_else(|| StorageError::Io {
            action: "find the directory of broker",
            path: self.root.join(format!("broker-{broker}")),
            kind: std::io::ErrorKind::NotFound,
            message: "no such broker in this cluster".to_string(),
        })
    }

    /// Rewrites `cluster.json` with every topic.
    pub(crate) fn write_metadata<'a>(
        &self,
        cluster_id: &str,
        topics_created: u64,
        topics: impl IntoIterator<Item = &'a Arc<Topic>>,
    ) -> Result<(), StorageError> {
        let topics = topics
            .into_iter()
            .map(|topic| TopicRecord {
                name: topic.name.clone(),
                id: topic.id.to_string(),
                replication_factor: topic.replication_factor,
                configs: topic.overrides.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let state = p.lock();
                        PartitionRecord {
                            assignment: state.assignment.iter().map(|b| b.0).collect(),
                            leader_epoch: state.leader_epoch,
                        }
                    })
                    .collect(),
            })
            .collect();
        let file = MetadataFile {
            version: 1,
            cluster_id: cluster_id.to_string(),
            topics_created,
            topics,
        };
        let path = self.root.join(METADATA_FILE);
        let json = serde_json::to_vec_pretty(&file).map_err(|e| StorageError::Metadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        replace_file(&path, &json)
    }

    /// Gives every replica of a new topic its partition directory, first segment file and leader-epoch checkpoint
    /// on its broker. A directory left from an earlier topic of the same name is removed first. On failure nothing
    /// is left behind.
    pub(crate) fn attach_topic(&self, topic: &Topic) -> Result<(), StorageError> {
        for (n, partition) in topic.partitions.iter().enumerate() {
            let mut state = partition.lock();
            if state.replicas.is_empty() {
                return Err(StorageError::Metadata {
                    path: self.root.join(METADATA_FILE),
                    reason: format!(
                        "partition {}-{} has no replica",
                        topic.name, partition.index
                    ),
                });
            }
            for r in 0..state.replicas.len() {
                let created = self
                    .broker(state.replicas[r].broker)
                    .and_then(|broker| DiskLog::create(broker, &topic.name, partition.index));
                match created {
                    Ok(disk) => state.replicas[r].attach_disk(disk),
                    Err(error) => {
                        for replica in &mut state.replicas[..r] {
                            replica.log.delete_files();
                        }
                        drop(state);
                        for earlier in &topic.partitions[..n] {
                            for replica in &mut earlier.lock().replicas {
                                replica.log.delete_files();
                            }
                        }
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads `cluster.json` and recovers every partition's log from its segment files; `None` for a new directory.
    pub(crate) fn load(
        &self,
        cluster_id: &str,
        defaults: &TopicConfig,
        now_ms: i64,
    ) -> Result<Option<Loaded>, StorageError> {
        let path = self.root.join(METADATA_FILE);
        let json = match fs::read(&path) {
            Ok(json) => json,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let bad = |reason: String| StorageError::Metadata {
            path: path.clone(),
            reason,
        };
        let file: MetadataFile = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
        if file.version != 1 {
            return Err(bad(format!("unknown version {}", file.version)));
        }
        if file.cluster_id != cluster_id {
            return Err(StorageError::ClusterIdMismatch {
                path,
                found: file.cluster_id,
                expected: cluster_id.to_string(),
            });
        }
        let mut topics = Vec::with_capacity(file.topics.len());
        for record in file.topics {
            let id = Uuid::parse_str(&record.id)
                .map_err(|e| bad(format!("topic '{}' has an invalid id: {e}", record.name)))?;
            let config = defaults
                .clone()
                .with_overrides(record.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| bad(format!("topic '{}': {e}", record.name)))?;
            let mut partitions = Vec::with_capacity(record.partitions.len());
            for (index, p) in record.partitions.iter().enumerate() {
                let index = index as i32;
                let assignment: Vec<BrokerId> =
                    p.assignment.iter().copied().map(BrokerId).collect();
                if assignment.is_empty() {
                    return Err(bad(format!(
                        "partition {}-{index} has no replica",
                        record.name
                    )));
                }
                let mut brokers = Vec::with_capacity(assignment.len());
                for &id in &assignment {
                    let broker =
                        self.brokers
                            .get(&id)
                            .ok_or_else(|| StorageError::UnknownBroker {
                                path: path.clone(),
                                topic: record.name.clone(),
                                partition: index,
                                broker: id,
                                brokers: self.brokers.len(),
                            })?;
                    brokers.push((id, broker));
                }
                // A missing replica directory is an empty replica that catches up by replication; with every
                // directory gone the records are gone, and the operator decides.
                if brokers
                    .iter()
                    .all(|(_, b)| !b.partition_dir(&record.name, index).is_dir())
                {
                    return Err(StorageError::MissingPartition {
                        path: brokers[0].1.partition_dir(&record.name, index),
                        topic: record.name.clone(),
                        partition: index,
                    });
                }
                let mut replicas = Vec::with_capacity(brokers.len());
                for (id, broker) in brokers {
                    replicas.push(DiskLog::recover(
                        id,
                        broker,
                        &record.name,
                        index,
                        config.clone(),
                        now_ms,
                    )?);
                }
                partitions.push(LoadedPartition {
                    assignment,
                    leader_epoch: p.leader_epoch,
                    replicas,
                });
            }
            topics.push(LoadedTopic {
                name: record.name,
                id,
                replication_factor: record.replication_factor,
                overrides: record.configs,
                config,
                partitions,
            });
        }
        Ok(Some(Loaded {
            topics_created: file.topics_created,
            topics,
        }))
    }
}
