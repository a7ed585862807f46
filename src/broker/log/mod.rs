//! One partition replica's log: segments of stored record batches, the log start offset, the log end offset and
//! the high watermark, and what happens to them — append (with segment rolling), reads up to the high watermark,
//! time and size retention, DeleteRecords and compaction, by Kafka 3.9's rules (its `UnifiedLog` and
//! `LogCleaner`, and the topic configs' documentation).
//!
//! Batches are `Bytes` shared with fetch responses: a read clones handles, it does not copy record data (except to
//! concatenate several batches into one response). Every change that removes data reports a [`ClusterEventKind`].
//!
//! With a log directory, a [`DiskLog`] follows every change (append, replica append, roll, segment deletion,
//! compaction, truncation, reset, log start offset); see `disk/` for the files and the recovery rule.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader};
use super::config::TopicConfig;
use super::disk::{DiskLog, StorageError};
use crate::history::{ClusterEventKind, RollReason};

mod cleanup;
mod spill;

pub use spill::SpillStats;
pub(crate) use spill::{BatchBytes, SpillStore};

/// A stored record batch; `data` is the batch exactly as produced except base offset and partition leader epoch,
/// in memory or in the cluster's spill file (see [`spill`]).
#[derive(Clone, Debug)]
pub(crate) struct StoredBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub data: BatchBytes,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    pub batches: Vec<StoredBatch>,
    pub size_bytes: u64,
    /// Max timestamp of the first batch: `segment.ms` counts from it.
    first_timestamp: Option<i64>,
    /// Largest record timestamp in the segment: `retention.ms` counts from it.
    pub max_timestamp: i64,
    /// Clock time the segment was created; stands in for the largest timestamp when records carry none (-1).
    created_ms: i64,
}

impl Segment {
    fn new(base_offset: i64, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            batches: Vec::new(),
            size_bytes: 0,
            first_timestamp: None,
            max_timestamp: -1,
            created_ms: now_ms,
        }
    }

    fn retention_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.created_ms
        }
    }

    fn push(&mut self, batch: StoredBatch) {
        self.first_timestamp.get_or_insert(batch.max_timestamp);
        self.max_timestamp = self.max_timestamp.max(batch.max_timestamp);
        self.size_bytes += batch.data.len() as u64;
        self.batches.push(batch);
    }
}

/// A batch's records as the cleaner read them; `None` for batches it leaves alone.
type DecodedBatch = Option<(Bytes, Vec<batch::RecordView>)>;

/// An offset outside `[log start offset, log end offset]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetOutOfRange {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Why a read gave no records.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The offset is outside `[log start offset, log end offset]`.
    OutOfRange,
    /// A batch could not be read back from the spill file.
    Storage(StorageError),
}

/// The result of a read: the batches' bytes and the partition's offsets at the time of the read.
#[derive(Debug, Default)]
pub(crate) struct ReadResult {
    pub records: Option<Bytes>,
    pub bytes: usize,
}

pub(crate) struct Log {
    topic: String,
    partition: i32,
    config: TopicConfig,
    /// Oldest first; never empty: the last one is the active segment.
    segments: VecDeque<Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    /// Offset of a tombstone → clock time it was first seen by the cleaner (it expires `delete.retention.ms` later).
    tombstones_cleaned_at: HashMap<i64, i64>,
    /// The files this log is written through to, when the cluster has a log directory.
    disk: Option<DiskLog>,
    /// Where the bytes of this log's batches go past the cluster's memory budget, when it has one.
    spill: Option<Arc<SpillStore>>,
}

impl Log {
    pub(crate) fn new(topic: &str, partition: i32, config: TopicConfig, now_ms: i64) -> Log {
        Log {
            topic: topic.to_string(),
            partition,
            config,
            segments: VecDeque::from([Segment::new(0, now_ms)]),
            log_start_offset: 0,
            log_end_offset: 0,
            high_watermark: 0,
            tombstones_cleaned_at: HashMap::new(),
            disk: None,
            spill: None,
        }
    }

    /// Keeps the bytes of batches appended from now on under `spill`'s memory budget.
    pub(crate) fn with_spill(mut self, spill: Option<Arc<SpillStore>>) -> Log {
        self.spill = spill;
        self
    }

    /// A log read back from its files: `segments` as (base offset, batches), oldest first. The high watermark starts
    /// at the log end offset; the caller sets it from the replication offset checkpoint.
    pub(crate) fn restore(
        topic: &str,
        partition: i32,
        config: TopicConfig,
        segments: Vec<(i64, Vec<StoredBatch>)>,
        log_start_offset: i64,
        disk: DiskLog,
        now_ms: i64,
    ) -> Log {
        let mut log = Log::new(topic, partition, config, now_ms);
        log.segments.clear();
        for (base_offset, batches) in segments {
            let mut segment = Segment::new(base_offset, now_ms);
            log.log_end_offset = log.log_end_offset.max(base_offset);
            for stored in batches {
                log.log_end_offset = log.log_end_offset.max(stored.last_offset + 1);
                segment.push(stored);
            }
            log.segments.push_back(segment);
        }
        log.log_start_offset = log_start_offset.min(log.log_end_offset);
        log.high_watermark = log.log_end_offset;
        log.disk = Some(disk);
        log
    }

    /// Writes this (new, empty) log through to `disk` from now on.
    pub(crate) fn attach_disk(&mut self, disk: DiskLog) {
        self.disk = Some(disk);
    }

    /// Removes the log's files (its topic was deleted).
    pub(crate) fn delete_files(&mut self) {
        if let Some(disk) = self.disk.take() {
            disk.delete();
        }
    }

    /// Hands appended bytes to the operating system (a no-op without a log directory).
    pub(crate) fn flush(&mut self) -> Result<(), StorageError> {
        match &mut self.disk {
            Some(disk) => disk.flush(),
            None => Ok(()),
        }
    }

    fn checkpoint_log_start_offset(&mut self) {
        if let Some(disk) = &mut self.disk {
            disk.set_log_start_offset(self.log_start_offset);
        }
    }

    pub(crate) fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub(crate) fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }
    pub(crate) fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    pub(crate) fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    /// Moves the high watermark (replication decides it; with one replica it follows the log end offset).
    pub(crate) fn set_high_watermark(&mut self, hw: i64) {
        self.high_watermark = hw.clamp(self.log_start_offset, self.log_end_offset);
    }

    fn active(&mut self) -> &mut Segment {
        if self.segments.is_empty() {
            self.segments
                .push_back(Segment::new(self.log_end_offset, 0));
        }
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Appends a validated batch at the log end offset; returns its base offset. Fails, appending nothing, when
    /// the batch cannot be written to the log directory. A `data` that is the only handle on its buffer becomes the
    /// stored batch without a copy (see [`batch::with_offset_and_epoch`]).
    pub(crate) fn append(
        &mut self,
        data: Bytes,
        header: &BatchHeader,
        leader_epoch: i32,
        now_ms: i64,
        events: &mut Vec<ClusterEventKind>,
    ) -> Result<i64, StorageError> {
        let base_offset = self.log_end_offset;
        self.roll_if_needed(data.len() as i64, header.max_timestamp, now_ms, events);
        let data = batch::with_offset_and_epoch(data, base_offset, leader_epoch);
        if let Some(disk) = &mut self.disk {
            disk.append(&data)?;
        }
        let stored = StoredBatch {
            base_offset,
            last_offset: base_offset + header.last_offset_delta as i64,
            max_timestamp: header.max_timestamp,
            data: BatchBytes::new(data, self.spill.as_ref()),
        };
        self.log_end_offset = stored.last_offset + 1;
        self.active().push(stored);
        Ok(base_offset)
    }

    /// Starts a new segment when a batch of `len` bytes with `max_timestamp` would not fit the active one.
    fn roll_if_needed(
        &mut self,
        len: i64,
        max_timestamp: i64,
        now_ms: i64,
        events: &mut Vec<ClusterEventKind>,
    ) {
        let (segment_bytes, segment_ms) = (self.config.segment_bytes, self.config.segment_ms);
        let active = self.active();
        let roll = if active.batches.is_empty() {
            None
        } else if active.size_bytes as i64 + len > segment_bytes {
            Some(RollReason::SegmentBytes)
        } else if active
            .first_timestamp
            .is_some_and(|first| max_timestamp.saturating_sub(first) > segment_ms)
        {
            Some(RollReason::SegmentMs)
        } else {
            None
        };
        if let Some(reason) = roll {
            self.roll(now_ms, reason, events);
        }
    }

    /// Replication: appends a batch copied from the leader's log as it is (offsets and leader epoch already set),
    /// sharing its bytes. The batch must start at this log's end offset and reach the log directory; otherwise nothing
    /// is appended (false).
    pub(crate) fn append_replica(
        &mut self,
        stored: StoredBatch,
        now_ms: i64,
        events: &mut Vec<ClusterEventKind>,
    ) -> bool {
        if stored.base_offset != self.log_end_offset || stored.last_offset < stored.base_offset {
            return false;
        }
        self.roll_if_needed(
            stored.data.len() as i64,
            stored.max_timestamp,
            now_ms,
            events,
        );
        if let Some(disk) = &mut self.disk {
            let Ok(data) = stored.data.get() else {
                return false;
            };
            if disk.append(&data).is_err() {
                return false;
            }
        }
        self.log_end_offset = stored.last_offset + 1;
        self.active().push(stored);
        true
    }

    /// Replication: whole stored batches from the one holding `offset` up to the log end offset, within
    /// `max_bytes` but at least one; the handles share the log's bytes.
    pub(crate) fn batches_from(&self, offset: i64, max_bytes: usize) -> Vec<StoredBatch> {
        let mut picked = Vec::new();
        let mut total = 0usize;
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        'segments: for segment in self.segments.iter().skip(first) {
            let start = segment.batches.partition_point(|b| b.last_offset < offset);
            for stored in &segment.batches[start..] {
                if !picked.is_empty() && total + stored.data.len() > max_bytes {
                    break 'segments;
                }
                total += stored.data.len();
                picked.push(stored.clone());
            }
        }
        picked
    }

    /// Truncation (a replica diverged from its leader, or a crash lost the unflushed tail): removes every batch that
    /// ends at or after `offset`, so the log end offset becomes `offset` (or the base of the batch holding it).
    /// Returns the removed range `[new log end offset, old log end offset)`, if anything was removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Option<(i64, i64)> {
        let old_end = self.log_end_offset;
        if offset >= old_end {
            return None;
        }
        let mut new_end = offset.max(self.log_start_offset);
        while let Some(segment) = self.segments.back_mut() {
            while segment
                .batches
                .last()
                .is_some_and(|b| b.last_offset >= new_end)
            {
                if let Some(batch) = segment.batches.pop() {
                    new_end = new_end.min(batch.base_offset);
                    segment.size_bytes = segment.size_bytes.saturating_sub(batch.data.len() as u64);
                }
            }
            segment.max_timestamp = segment
                .batches
                .iter()
                .map(|b| b.max_timestamp)
                .max()
                .unwrap_or(-1);
            if segment.batches.is_empty() {
                segment.first_timestamp = None;
            }
            if segment.batches.is_empty() && self.segments.len() > 1 {
                self.segments.pop_back();
            } else {
                break;
            }
        }
        if let Some(active) = self.segments.back_mut() {
            if active.batches.is_empty() {
                active.base_offset = active.base_offset.min(new_end);
            }
        }
        let new_end = new_end.max(self.log_start_offset);
        self.log_end_offset = new_end;
        self.high_watermark = self.high_watermark.min(new_end);
        self.tombstones_cleaned_at.retain(|&o, _| o < new_end);
        if let Some(disk) = &mut self.disk {
            let kept: Vec<(i64, u64)> = self
                .segments
                .iter()
                .map(|s| (s.base_offset, s.size_bytes))
                .collect();
            disk.truncate(&kept);
        }
        (new_end < old_end).then_some((new_end, old_end))
    }

    /// Replication: a follower whose log ends below the leader's log start offset drops everything and starts over
    /// at `offset`, as Kafka's fetcher does on OFFSET_OUT_OF_RANGE.
    pub(crate) fn reset_to(&mut self, offset: i64, now_ms: i64) {
        self.segments = VecDeque::from([Segment::new(offset, now_ms)]);
        self.log_start_offset = offset;
        self.log_end_offset = offset;
        self.high_watermark = offset;
        self.tombstones_cleaned_at.clear();
        if let Some(disk) = &mut self.disk {
            disk.reset(offset);
        }
    }

    /// Writes the replica's leader-epoch cache to its `leader-epoch-checkpoint` (a no-op without a log directory).
    pub(crate) fn checkpoint_leader_epochs(&mut self, epochs: &[(i32, i64)]) {
        if let Some(disk) = &mut self.disk {
            disk.checkpoint_leader_epochs(epochs);
        }
    }

    /// Identity and length of every stored batch's bytes (to measure how much replicas share).
    pub(crate) fn buffers(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.segments
            .iter()
            .flat_map(|s| s.batches.iter())
            .map(|b| (b.data.id(), b.data.len()))
    }

    /// Base offset of the active segment: Kafka flushes a segment when it rolls, so a machine crash with the default
    /// flush settings (no fsync) keeps at least everything below it.
    pub(crate) fn active_segment_base_offset(&self) -> i64 {
        self.segments
            .back()
            .map_or(self.log_end_offset, |s| s.base_offset)
    }

    fn roll(&mut self, now_ms: i64, reason: RollReason, events: &mut Vec<ClusterEventKind>) {
        self.segments
            .push_back(Segment::new(self.log_end_offset, now_ms));
        if let Some(disk) = &mut self.disk {
            disk.roll(self.log_end_offset);
        }
        events.push(ClusterEventKind::SegmentRolled {
            topic: self.topic.clone(),
            partition: self.partition,
            base_offset: self.log_end_offset,
            reason,
        });
    }

    /// Whole batches from the one holding `offset`, below `upper` (the high watermark for consumers), up to
    /// `max_bytes` — but always at least one batch, so a consumer can make progress (KIP-74).
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadResult, ReadError> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(ReadError::OutOfRange);
        }
        let mut picked: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        // First segment that may hold `offset`: the last one whose base offset is ≤ offset.
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        'segments: for segment in self.segments.iter().skip(first) {
            let start = segment.batches.partition_point(|b| b.last_offset < offset);
            for stored in &segment.batches[start..] {
                if stored.base_offset >= upper {
                    break 'segments;
                }
                if !picked.is_empty() && total + stored.data.len() > max_bytes {
                    break 'segments;
                }
                total += stored.data.len();
                picked.push(stored.data.get().map_err(ReadError::Storage)?);
            }
        }
        let records = match picked.len() {
            0 => None,
            1 => picked.pop(),
            _ => {
                let mut buf = BytesMut::with_capacity(total);
                for data in picked {
                    buf.extend_from_slice(&data);
                }
                Some(buf.freeze())
            }
        };
        Ok(ReadResult {
            records,
            bytes: total,
        })
    }

    /// ListOffsets by timestamp: the first record at or after `timestamp` → (offset, its timestamp).
    pub(crate) fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64)> {
        let candidate = self
            .segments
            .iter()
            .flat_map(|s| s.batches.iter())
            .find(|b| b.max_timestamp >= timestamp && b.last_offset >= self.log_start_offset)?;
        let (_, records) = batch::records(&candidate.data.get().ok()?).ok()?;
        records
            .iter()
            .find(|r| r.timestamp >= timestamp && r.offset >= self.log_start_offset)
            .map(|r| (r.offset, r.timestamp))
    }

    /// ListOffsets MAX_TIMESTAMP: the first record holding the largest timestamp → (offset, timestamp).
    pub(crate) fn offset_of_max_timestamp(&self) -> Option<(i64, i64)> {
        let mut best: Option<&StoredBatch> = None;
        for stored in self.segments.iter().flat_map(|s| s.batches.iter()) {
            if best.is_none_or(|b| stored.max_timestamp > b.max_timestamp) {
                best = Some(stored);
            }
        }
        let best = best?;
        let (_, records) = batch::records(&best.data.get().ok()?).ok()?;
        records
            .iter()
            .find(|r| r.timestamp == best.max_timestamp)
            .map(|r| (r.offset, r.timestamp))
    }
}
