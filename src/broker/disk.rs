//! Logs on disk, so a cluster can stop and start again from a directory (`ClusterBuilder::log_dir`). Memory stays
//! the serving copy: every change to any replica's log is written through to its files, and the files are read
//! only when a cluster starts.
//!
//! # Layout (Kafka's, where Kafka has one)
//!
//! Every replica has its own files under its broker's directory, as every Kafka broker has its own `log.dirs`:
//!
//! ```text
//! <dir>/cluster.json                                   topics: name, id, assignments, leader epochs, configs
//! <dir>/broker-<id>/meta.properties                    cluster.id and node.id, as Kafka writes them
//! <dir>/broker-<id>/log-start-offset-checkpoint        0, count, "topic partition offset" lines
//! <dir>/broker-<id>/replication-offset-checkpoint      0, count, "topic partition highWatermark" lines
//! <dir>/broker-<id>/<topic>-<partition>/leader-epoch-checkpoint   0, count, "epoch startOffset" lines
//! <dir>/broker-<id>/<topic>-<partition>/00000000000000000000.log
//! <dir>/broker-<id>/<topic>-<partition>/00000000000000000042.log
//! ```
//!
//! What is written when:
//!
//! | file | written | Kafka |
//! |---|---|---|
//! | segment files | every append (leader) and every replicated batch (follower), through a 64 KiB buffer; a roll flushes and creates the next file; truncation cuts the last kept segment and deletes later ones; a reset (follower below the leader's log start) replaces them all; retention/DeleteRecords delete, compaction rewrites | same (`LogSegment.truncateTo`, `truncateFullyAndStartAt`) |
//! | `leader-epoch-checkpoint` | whenever the replica's epoch cache changes: created with the replica, a new epoch (leadership or a copied batch of a new epoch), truncation, reset | same (`LeaderEpochFileCache`) |
//! | `replication-offset-checkpoint` | every 5 s of clock time (`replica.high.watermark.checkpoint.interval.ms`), at every flush (`Cluster::flush`, the `log.flush.interval.ms` timer), on `stop(b)` and at shutdown — by running brokers only | periodic (5 s) and at clean shutdown |
//! | `log-start-offset-checkpoint` | whenever a log start offset moves | every minute |
//! | `cluster.json` | when a topic is created or deleted (it is KRaft's metadata log; leader, ISR and later epochs are not in it) | metadata log |
//!
//! - A segment file is named by its base offset (20 digits) and holds the record batches exactly as stored in
//!   memory (Kafka's on-disk format: v2 batches back to back, base offset and partition leader epoch set). An
//!   empty active segment still records the log end offset. Compaction writes `<base>.log.cleaned` and renames it
//!   over the segment.
//! - Configs in `cluster.json` are the topic's overrides; broker defaults come from the builder of the cluster
//!   that starts, as in Kafka.
//! - Nothing is fsynced (Kafka does not by default). [`DiskLog::flush`] hands buffered bytes to the operating
//!   system; `Cluster::flush` does it for every replica and `Cluster::shutdown` calls it. A replica's
//!   `flushed_offset` is what a machine crash keeps: `Cluster::crash(b)` truncates b's replicas to it in memory
//!   **and in the segment files**, as if the page cache were lost (checkpoint files keep what they last held).
//!
//! # Recovery rule
//!
//! At start every assigned replica is read from its own broker's directory; every segment is checked batch by
//! batch: the length field, magic 2, the CRC, offsets that only grow and stay below the next segment's base
//! offset. Then:
//! - An invalid batch that reaches the end of the **last** segment (too short to hold its declared length, or
//!   complete but with a bad CRC) is a torn write: the file is truncated to the last whole batch, as Kafka's
//!   `LogSegment.recover` does, with a warning and a [`ClusterEventKind::LogLoaded`] event (one per replica) that
//!   counts the bytes. A damaged length field that points past the end of the file looks the same.
//! - Any other invalid batch is corruption, and the cluster does not start: [`StorageError::CorruptSegment`] names
//!   the file, the byte position and the offset expected there. (Kafka would truncate there too and drop every
//!   later segment; silently losing acknowledged records is worse for a test bench than refusing to start.)
//! - A missing replica directory is an empty replica (created, with a warning) that catches up by replication;
//!   when every replica directory of a partition is missing the start stops with
//!   [`StorageError::MissingPartition`].
//! - Log start offset = max(checkpointed value, first segment's base offset). The epoch cache is the
//!   `leader-epoch-checkpoint` without entries starting at or past the log end offset (Kafka's
//!   `truncateFromEnd` at load); a malformed checkpoint stops the start with [`StorageError::Metadata`].
//!   Everything read back counts as flushed (`flushed_offset` = log end offset).
//! - Leader = the replica with the latest epoch and, among those, the longest log (first in assignment order on a
//!   tie): it holds every record the ISR had committed. Leader epoch = the largest in `cluster.json` or any cache.
//!   ISR = the replicas whose log end offset and latest epoch equal the leader's — what Kafka shows once they
//!   have fetched; the others rejoin through the normal path once caught up. Each replica's high watermark is its
//!   checkpointed one (clamped to its log; the log start offset without one); the leader's then moves as usual.
//!
//! Not kept across a restart: when the cleaner first saw a tombstone (they get a new `delete.retention.ms`), and a
//! segment's creation time (it stands in for the largest timestamp only when records carry none; it restarts at
//! the clock's time). There is no `.lock` file: two clusters on one directory at once corrupt it.
//!
//! Any I/O failure while serving takes the partition's log offline for writes (Kafka takes the whole log
//! directory offline): later produces get KAFKA_STORAGE_ERROR with the first failure's message.
//!
//! [`ClusterEventKind::LogLoaded`]: crate::history::ClusterEventKind::LogLoaded

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use uuid::Uuid;

use super::batch;
use super::config::TopicConfig;
use super::log::{Log, StoredBatch};
use super::state::Topic;
use super::BrokerId;

/// Why a log directory could not be read or written. Each variant names the file and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {message}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        kind: std::io::ErrorKind,
        message: String,
    },
    /// A batch in the middle of a segment is invalid: not a torn write, so the cluster refuses to start.
    #[error(
        "corrupt log segment {}: the record batch at byte {position} (offset {offset} or later expected there) is \
         invalid: {reason}; restore the file, or delete the segment and every later one to start without them",
        path.display()
    )]
    CorruptSegment {
        path: PathBuf,
        position: u64,
        offset: i64,
        reason: String,
    },
    /// `cluster.json`, `meta.properties` or a checkpoint file cannot be parsed.
    #[error("cannot read {}: {reason}", path.display())]
    Metadata { path: PathBuf, reason: String },
    /// The directory belongs to another cluster.
    #[error(
        "{} belongs to cluster '{found}', not '{expected}': start with cluster_id(\"{found}\") or another log dir",
        path.display()
    )]
    ClusterIdMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    /// A partition is assigned to a broker the starting cluster does not have.
    #[error(
        "{}: partition {topic}-{partition} lives on broker {broker}, but this cluster has brokers 1..={brokers}; \
         start it with at least {broker} brokers",
        path.display()
    )]
    UnknownBroker {
        path: PathBuf,
        topic: String,
        partition: i32,
        broker: BrokerId,
        brokers: usize,
    },
    /// `cluster.json` names a partition whose directory is gone.
    #[error(
        "partition directory {} of {topic}-{partition} is missing; restore it, or remove the topic from cluster.json",
        path.display()
    )]
    MissingPartition {
        path: PathBuf,
        topic: String,
        partition: i32,
    },
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |e| StorageError::Io {
        action,
        path: path.to_path_buf(),
        kind: e.kind(),
        message: e.to_string(),
    }
}

const METADATA_FILE: &str = "cluster.json";
const META_PROPERTIES: &str = "meta.properties";
const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";
const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const SEGMENT_SUFFIX: &str = ".log";
const CLEANED_SUFFIX: &str = ".log.cleaned";
/// Appends are buffered up to this many bytes before they reach the file.
const WRITE_BUFFER: usize = 64 * 1024;

fn segment_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}{SEGMENT_SUFFIX}")
}

/// The base offset a segment file is named by; `None` for any other file.
fn parse_segment_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes `contents` to a temporary file next to `path`, then renames it over `path`, so readers see the old or
/// the new file, never half of one.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).map_err(io_error("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("rename into place", path))
}

/// The cluster's log directory: one subdirectory per broker.
pub(crate) struct LogDir {
    root: PathBuf,
    brokers: BTreeMap<BrokerId, Arc<BrokerLogDir>>,
}

/// (topic, partition) → offset: what Kafka's offset checkpoint files hold.
pub(crate) type OffsetCheckpoint = BTreeMap<(String, i32), i64>;

/// Kafka's offset checkpoint text: version 0, the entry count, then `topic partition offset` lines.
fn offset_checkpoint_text(offsets: &OffsetCheckpoint) -> String {
    let mut text = format!("0\n{}\n", offsets.len());
    for ((topic, partition), offset) in offsets {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    text
}

/// Kafka's `leader-epoch-checkpoint` text: version 0, the entry count, then `epoch startOffset` lines.
pub(crate) fn leader_epoch_checkpoint_text(epochs: &[(i32, i64)]) -> String {
    let mut text = format!("0\n{}\n", epochs.len());
    for (epoch, start_offset) in epochs {
        text.push_str(&format!("{epoch} {start_offset}\n"));
    }
    text
}

/// Parses a `leader-epoch-checkpoint` (see [`leader_epoch_checkpoint_text`]); `path` names the file in errors.
pub(crate) fn parse_leader_epoch_checkpoint(
    path: &Path,
    text: &str,
) -> Result<Vec<(i32, i64)>, StorageError> {
    let bad = |reason: String| StorageError::Metadata {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err(bad("the first line is not version 0".to_string()));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("the second line is not an entry count".to_string()))?;
    let mut epochs: Vec<(i32, i64)> = Vec::with_capacity(count.min(1024));
    for (n, line) in lines.enumerate() {
        let entry = match line.split(' ').collect::<Vec<_>>().as_slice() {
            [epoch, offset] => epoch.parse::<i32>().ok().zip(offset.parse::<i64>().ok()),
            _ => None,
        };
        let (epoch, offset) =
            entry.ok_or_else(|| bad(format!("line {} is not 'epoch startOffset'", n + 3)))?;
        if epochs
            .last()
            .is_some_and(|&(e, o)| e >= epoch || o > offset)
        {
            return Err(bad(format!(
                "line {}: epochs and start offsets must grow",
                n + 3
            )));
        }
        epochs.push((epoch, offset));
    }
    if epochs.len() != count {
        return Err(bad(format!(
            "{} entries, but the count says {count}",
            epochs.len()
        )));
    }
    Ok(epochs)
}

/// One broker's directory and its checkpoint files.
pub(crate) struct BrokerLogDir {
    path: PathBuf,
    /// Log start offsets, as `log-start-offset-checkpoint` holds them.
    log_start_offsets: Mutex<OffsetCheckpoint>,
    /// High watermarks, as `replication-offset-checkpoint` held them when the directory was opened.
    high_watermarks: OffsetCheckpoint,
}

impl BrokerLogDir {
    fn checkpoint_path(&self) -> PathBuf {
        self.path.join(LOG_START_OFFSET_CHECKPOINT)
    }

    /// Sets (or with `None` removes) one partition's entry and rewrites the checkpoint file.
    fn checkpoint(
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

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.path.join(format!("{topic}-{partition}"))
    }

    fn checkpointed(&self, topic: &str, partition: i32) -> Option<i64> {
        self.log_start_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

fn read_checkpoint(path: &Path) -> Result<OffsetCheckpoint, StorageError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    let bad = |reason: String| StorageError::Metadata {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err(bad("the first line is not version 0".to_string()));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("the second line is not an entry count".to_string()))?;
    let mut out = BTreeMap::new();
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let entry = match fields.as_slice() {
            [topic, partition, offset] => partition
                .parse::<i32>()
                .ok()
                .zip(offset.parse::<i64>().ok())
                .map(|(p, o)| ((topic.to_string(), p), o)),
            _ => None,
        };
        let (key, offset) =
            entry.ok_or_else(|| bad(format!("line {} is not 'topic partition offset'", n + 3)))?;
        out.insert(key, offset);
    }
    if out.len() != count {
        return Err(bad(format!(
            "{} entries, but the count says {count}",
            out.len()
        )));
    }
    Ok(out)
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

/// The segment file appends go to.
struct ActiveSegment {
    base_offset: i64,
    path: PathBuf,
    writer: BufWriter<File>,
}

/// One partition replica's files: a directory of segment files, the last one open for appends.
pub(crate) struct DiskLog {
    dir: PathBuf,
    broker: Arc<BrokerLogDir>,
    topic: String,
    partition: i32,
    active: Option<ActiveSegment>,
    /// The log start offset last written to the checkpoint.
    checkpointed: i64,
    /// The first write that failed: from then on the log refuses appends.
    failed: Option<StorageError>,
}

impl std::fmt::Debug for DiskLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DiskLog {
    /// A new, empty partition directory with its first segment file (base offset 0).
    fn create(
        broker: &Arc<BrokerLogDir>,
        topic: &str,
        partition: i32,
    ) -> Result<DiskLog, StorageError> {
        let dir = broker.path.join(format!("{topic}-{partition}"));
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .map_err(io_error("remove the stale partition directory", &dir))?;
        }
        fs::create_dir_all(&dir).map_err(io_error("create the partition directory", &dir))?;
        let mut disk = DiskLog {
            dir,
            broker: broker.clone(),
            topic: topic.to_string(),
            partition,
            active: None,
            checkpointed: 0,
            failed: None,
        };
        disk.active = Some(disk.open_segment(0, true)?);
        if broker.checkpointed(topic, partition).is_some() {
            // Left by an earlier topic of the same name; the new log starts at 0.
            broker.checkpoint(topic, partition, None)?;
        }
        Ok(disk)
    }

    fn open_segment(&self, base_offset: i64, new: bool) -> Result<ActiveSegment, StorageError> {
        let path = self.dir.join(segment_file_name(base_offset));
        let file = if new {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
        } else {
            OpenOptions::new().append(true).open(&path)
        }
        .map_err(io_error("open the segment file", &path))?;
        Ok(ActiveSegment {
            base_offset,
            path,
            writer: BufWriter::with_capacity(WRITE_BUFFER, file),
        })
    }

    /// Keeps the first failure (later appends return it) and logs it.
    fn record(&mut self, result: Result<(), StorageError>) {
        if let Err(error) = result {
            tracing::error!(topic = %self.topic, partition = self.partition, %error, "log write failed; the partition refuses appends from now on");
            self.failed.get_or_insert(error);
        }
    }

    /// Writes a stored batch to the active segment.
    pub(crate) fn append(&mut self, data: &[u8]) -> Result<(), StorageError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = match &mut self.active {
            Some(active) => active
                .writer
                .write_all(data)
                .map_err(io_error("append to", &active.path)),
            None => Err(StorageError::Io {
                action: "append to the active segment of",
                path: self.dir.clone(),
                kind: std::io::ErrorKind::NotFound,
                message: "no active segment file".to_string(),
            }),
        };
        self.record(result.clone());
        result
    }

    /// Flushes the active segment and starts the next one, whose file exists from now on.
    pub(crate) fn roll(&mut self, base_offset: i64) {
        let result = self
            .flush()
            .and_then(|()| self.open_segment(base_offset, true));
        match result {
            Ok(active) => self.active = Some(active),
            Err(error) => self.record(Err(error)),
        }
    }

    /// Hands buffered appends to the operating system (no fsync).
    pub(crate) fn flush(&mut self) -> Result<(), StorageError> {
        let result = match &mut self.active {
            Some(active) => active
                .writer
                .flush()
                .map_err(io_error("flush", &active.path)),
            None => Ok(()),
        };
        self.record(result.clone());
        result
    }

    /// Removes a segment file (retention, DeleteRecords, or compaction emptied it).
    pub(crate) fn delete_segment(&mut self, base_offset: i64) {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.base_offset == base_offset)
        {
            self.active = None;
        }
        let path = self.dir.join(segment_file_name(base_offset));
        let result = fs::remove_file(&path).map_err(io_error("delete the segment file", &path));
        self.record(result);
    }

    /// Replaces a segment file with `batches` (compaction; never the active segment).
    pub(crate) fn rewrite_segment<'a>(
        &mut self,
        base_offset: i64,
        batches: impl IntoIterator<Item = &'a Bytes>,
    ) {
        let path = self.dir.join(segment_file_name(base_offset));
        let cleaned = self.dir.join(format!("{base_offset:020}{CLEANED_SUFFIX}"));
        let result = (|| {
            let file = File::create(&cleaned).map_err(io_error("create", &cleaned))?;
            let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
            for data in batches {
                writer
                    .write_all(data)
                    .map_err(io_error("write", &cleaned))?;
            }
            writer.flush().map_err(io_error("write", &cleaned))?;
            fs::rename(&cleaned, &path).map_err(io_error("rename the cleaned segment over", &path))
        })();
        self.record(result);
    }

    /// Truncation reaches the files: `kept` is every segment that remains, as (base offset, bytes), oldest first.
    /// Later segment files are deleted and the last kept one is cut to its length, as Kafka's `LogSegment.truncateTo`
    /// and `UnifiedLog.truncateTo` do; appends continue at its end.
    pub(crate) fn truncate(&mut self, kept: &[(i64, u64)]) {
        let result = self.flush().and_then(|()| {
            self.active = None;
            self.delete_segments_except(kept.iter().map(|&(base, _)| base))?;
            for &(base, len) in kept {
                let path = self.dir.join(segment_file_name(base));
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(io_error("open for truncation", &path))?;
                let on_disk = file
                    .metadata()
                    .map_err(io_error("read the length of", &path))?
                    .len();
                if on_disk > len {
                    file.set_len(len)
                        .map_err(io_error("truncate the segment file", &path))?;
                }
            }
            if let Some(&(last, _)) = kept.last() {
                self.active = Some(self.open_segment(last, false)?);
            }
            Ok(())
        });
        self.record(result);
    }

    /// A replica that starts over at `offset` (its log ended below the leader's log start offset): every segment
    /// file goes and an empty one at `offset` replaces them, as Kafka's `UnifiedLog.truncateFullyAndStartAt`.
    pub(crate) fn reset(&mut self, offset: i64) {
        self.active = None;
        let result = self
            .delete_segments_except(std::iter::empty())
            .and_then(|()| self.open_segment(offset, true));
        match result {
            Ok(active) => self.active = Some(active),
            Err(error) => self.record(Err(error)),
        }
        self.set_log_start_offset(offset);
    }

    /// Deletes every segment file whose base offset is not in `keep`.
    fn delete_segments_except(
        &self,
        keep: impl IntoIterator<Item = i64>,
    ) -> Result<(), StorageError> {
        let keep: BTreeSet<i64> = keep.into_iter().collect();
        let entries = fs::read_dir(&self.dir).map_err(io_error("list", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_error("list", &self.dir))?;
            let name = entry.file_name();
            if parse_segment_file_name(&name.to_string_lossy()).is_some_and(|b| !keep.contains(&b))
            {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error("delete the segment file", &path))?;
            }
        }
        Ok(())
    }

    /// Rewrites the partition's `leader-epoch-checkpoint` (Kafka writes it whenever the epoch cache changes).
    pub(crate) fn checkpoint_leader_epochs(&mut self, epochs: &[(i32, i64)]) {
        let result = replace_file(
            &self.dir.join(LEADER_EPOCH_CHECKPOINT),
            leader_epoch_checkpoint_text(epochs).as_bytes(),
        );
        self.record(result);
    }

    /// Records a moved log start offset in the broker's checkpoint file.
    pub(crate) fn set_log_start_offset(&mut self, offset: i64) {
        if offset != self.checkpointed {
            self.checkpointed = offset;
            let result = self
                .broker
                .checkpoint(&self.topic, self.partition, Some(offset));
            self.record(result);
        }
    }

    /// Removes the partition's directory and checkpoint entry (its topic was deleted).
    pub(crate) fn delete(mut self) {
        self.active = None;
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove the directory of a deleted partition");
        }
        if let Err(error) = self.broker.checkpoint(&self.topic, self.partition, None) {
            tracing::warn!(%error, "cannot update the log start offset checkpoint");
        }
    }

    /// Reads a replica's segments and leader-epoch checkpoint back (see the module docs for the rules); its log
    /// is served from the files' bytes. A missing directory gives a new, empty replica.
    fn recover(
        id: BrokerId,
        broker: &Arc<BrokerLogDir>,
        topic: &str,
        partition: i32,
        config: TopicConfig,
        now_ms: i64,
    ) -> Result<LoadedReplica, StorageError> {
        let dir = broker.partition_dir(topic, partition);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), "replica directory missing; the replica starts empty and catches up");
                let mut log = Log::new(topic, partition, config, now_ms);
                log.attach_disk(DiskLog::create(broker, topic, partition)?);
                return Ok(LoadedReplica {
                    broker: id,
                    log,
                    truncated_bytes: 0,
                    epochs: Vec::new(),
                    high_watermark: None,
                    created: true,
                });
            }
            Err(e) => return Err(io_error("list", &dir)(e)),
        };
        let mut bases = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(io_error("list", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = parse_segment_file_name(&name) {
                bases.insert(base);
            } else if name.ends_with(CLEANED_SUFFIX) || name.ends_with(".tmp") {
                // An interrupted compaction: the segment it was replacing is still whole.
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error("remove the leftover", &path))?;
            }
        }
        let bases: Vec<i64> = bases.into_iter().collect();
        let mut segments = Vec::with_capacity(bases.len());
        let mut expected = bases.first().copied().unwrap_or(0);
        let mut truncated_bytes = 0;
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(segment_file_name(base));
            let next_base = bases.get(i + 1).copied();
            expected = expected.max(base);
            let (batches, truncated) = read_segment(&path, expected, next_base)?;
            if let Some(last) = batches.last() {
                expected = last.last_offset + 1;
            }
            if truncated > 0 {
                truncated_bytes = truncated;
            }
            segments.push((base, batches));
        }
        let mut disk = DiskLog {
            dir,
            broker: broker.clone(),
            topic: topic.to_string(),
            partition,
            active: None,
            checkpointed: 0,
            failed: None,
        };
        let first_base = bases.first().copied();
        let checkpointed = broker.checkpointed(topic, partition);
        let log_start_offset = checkpointed.unwrap_or(0).max(first_base.unwrap_or(0));
        disk.checkpointed = checkpointed.unwrap_or(-1);
        match bases.last() {
            Some(&last) => disk.active = Some(disk.open_segment(last, false)?),
            None => {
                // Every file is gone: start again at the log start offset, as Kafka does.
                disk.active = Some(disk.open_segment(log_start_offset, true)?);
                segments.push((log_start_offset, Vec::new()));
            }
        }
        let epoch_path = disk.dir.join(LEADER_EPOCH_CHECKPOINT);
        let mut epochs = match fs::read_to_string(&epoch_path) {
            Ok(text) => parse_leader_epoch_checkpoint(&epoch_path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error("read", &epoch_path)(e)),
        };
        let log = Log::restore(
            topic,
            partition,
            config,
            segments,
            log_start_offset,
            disk,
            now_ms,
        );
        // Kafka's LeaderEpochFileCache.truncateFromEnd(logEndOffset) at load.
        let end = log.log_end_offset();
        epochs.retain(|&(_, start)| start < end);
        Ok(LoadedReplica {
            broker: id,
            log,
            truncated_bytes,
            epochs,
            high_watermark: broker
                .high_watermarks
                .get(&(topic.to_string(), partition))
                .copied(),
            created: false,
        })
    }
}

/// Reads one segment file's batches (sharing the file's bytes); cuts off a torn tail when it is the last segment
/// (`next_base` is `None`) and returns how many bytes went.
fn read_segment(
    path: &Path,
    mut expected: i64,
    next_base: Option<i64>,
) -> Result<(Vec<StoredBatch>, u64), StorageError> {
    let data = Bytes::from(fs::read(path).map_err(io_error("read", path))?);
    let mut batches = Vec::new();
    let mut position = 0usize;
    while position < data.len() {
        let rest = &data[position..];
        let checked = check_stored_batch(rest, expected, next_base);
        let (base_offset, last_offset, max_timestamp, len) = match checked {
            Ok(fields) => fields,
            Err(reason) => {
                if next_base.is_none() && reaches_end(rest) {
                    let cut = rest.len() as u64;
                    tracing::warn!(
                        file = %path.display(),
                        position,
                        bytes = cut,
                        %reason,
                        "truncating a torn batch at the end of the log"
                    );
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io_error("open for truncation", path))?;
                    file.set_len(position as u64)
                        .map_err(io_error("truncate the torn tail of", path))?;
                    return Ok((batches, cut));
                }
                return Err(StorageError::CorruptSegment {
                    path: path.to_path_buf(),
                    position: position as u64,
                    offset: expected,
                    reason,
                });
            }
        };
        batches.push(StoredBatch {
            base_offset,
            last_offset,
            max_timestamp,
            data: data.slice(position..position + len),
        });
        expected = last_offset + 1;
        position += len;
    }
    Ok((batches, 0))
}

/// Does the batch starting at `rest[0]` extend to (or claim to extend past) the end of the file? Only such a
/// batch can be a torn write; an invalid batch with bytes after it is corruption.
fn reaches_end(rest: &[u8]) -> bool {
    let Some(length) = rest.get(8..12) else {
        return true;
    };
    let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
    12 + i64::from(length) >= rest.len() as i64
}

/// Checks one stored batch → (base offset, last offset, max timestamp, bytes).
fn check_stored_batch(
    rest: &[u8],
    expected: i64,
    next_base: Option<i64>,
) -> Result<(i64, i64, i64, usize), String> {
    let (header, len) = batch::parse_header(rest).map_err(|e| e.to_string())?;
    batch::check_crc(&rest[..len]).map_err(|e| e.to_string())?;
    if header.last_offset_delta < 0 {
        return Err("negative last offset delta".to_string());
    }
    if header.base_offset < expected {
        return Err(format!("base offset {} goes backwards", header.base_offset));
    }
    let last_offset = header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .ok_or_else(|| "last offset overflows".to_string())?;
    if let Some(next) = next_base {
        if last_offset >= next {
            return Err(format!(
                "last offset {last_offset} reaches into the next segment (base offset {next})"
            ));
        }
    }
    Ok((header.base_offset, last_offset, header.max_timestamp, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_checkpoint_round_trips_in_kafkas_format() {
        let path = Path::new("/logs/broker-1/obs-0/leader-epoch-checkpoint");
        let epochs = vec![(0, 0), (2, 17), (5, 17), (6, 230)];
        let text = leader_epoch_checkpoint_text(&epochs);
        assert_eq!(text, "0\n4\n0 0\n2 17\n5 17\n6 230\n");
        assert_eq!(parse_leader_epoch_checkpoint(path, &text).unwrap(), epochs);
        assert_eq!(
            parse_leader_epoch_checkpoint(path, &leader_epoch_checkpoint_text(&[])).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_bad_leader_epoch_checkpoint_is_an_error_naming_the_file() {
        let path = Path::new("/logs/broker-2/obs-0/leader-epoch-checkpoint");
        for (text, why) in [
            ("1\n0\n", "version 0"),
            ("0\n2\n0 0\n", "count says 2"),
            ("0\n1\n0\n", "line 3"),
            ("0\n2\n3 10\n2 20\n", "must grow"),
            ("0\n2\n1 10\n2 5\n", "must grow"),
        ] {
            let error = parse_leader_epoch_checkpoint(path, text).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(&path.display().to_string()) && message.contains(why),
                "{text:?}: {message}"
            );
        }
    }
}
