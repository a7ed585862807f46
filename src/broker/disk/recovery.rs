//! Reading a replica back at start (the recovery rule in the module docs): its segment files checked batch by
//! batch, a torn tail cut off, corruption refused, and its leader-epoch checkpoint.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::checkpoint::parse_leader_epoch_checkpoint;
use super::disk_log::DiskLog;
use super::log_dir::{BrokerLogDir, LoadedReplica};
use super::{
    io_error, parse_segment_file_name, segment_file_name, StorageError, CLEANED_SUFFIX,
    LEADER_EPOCH_CHECKPOINT,
};
use crate::broker::batch;
use crate::broker::config::TopicConfig;
use crate::broker::log::{BatchBytes, Log, StoredBatch};
use crate::broker::BrokerId;

impl DiskLog {
    /// Reads a replica's segments and leader-epoch checkpoint back (see the module docs for the rules); its log
    /// is served from the files' bytes. A missing directory gives a new, empty replica.
    pub(super) fn recover(
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
            data: BatchBytes::memory(data.slice(position..position + len)),
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
