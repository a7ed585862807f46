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

use std::fs;
use std::path::{Path, PathBuf};

use super::BrokerId;

mod checkpoint;
mod disk_log;
mod log_dir;
mod recovery;

pub(crate) use checkpoint::OffsetCheckpoint;
pub(crate) use disk_log::DiskLog;
pub(crate) use log_dir::{Loaded, LoadedPartition, LogDir};

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

pub(crate) fn io_error<'a>(
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
