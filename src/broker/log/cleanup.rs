//! What removes data from a log: DeleteRecords, time and size retention, and compaction, by Kafka 3.9's rules.
//! Each removal reports a [`ClusterEventKind`] and, with a log directory, is followed on disk.

use std::collections::HashMap;

use bytes::Bytes;

use super::{BatchBytes, DecodedBatch, Log, OffsetOutOfRange, StoredBatch};
use crate::broker::batch;
use crate::history::{ClusterEventKind, DeletionReason, RollReason};

impl Log {
    /// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark) and drops the segments wholly
    /// below it. Returns the new log start offset.
    pub(crate) fn delete_records_before(
        &mut self,
        offset: i64,
        now_ms: i64,
        events: &mut Vec<ClusterEventKind>,
    ) -> Result<i64, OffsetOutOfRange> {
        let offset = if offset == -1 {
            self.high_watermark
        } else {
            offset
        };
        if offset < 0 || offset > self.high_watermark {
            return Err(OffsetOutOfRange {
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        if offset > self.log_start_offset {
            events.push(ClusterEventKind::RecordsDeleted {
                topic: self.topic.clone(),
                partition: self.partition,
                start_offset: self.log_start_offset,
                end_offset: offset,
            });
            self.log_start_offset = offset;
            self.delete_below_log_start(now_ms, events);
            self.checkpoint_log_start_offset();
        }
        Ok(self.log_start_offset)
    }

    fn segment_end(&self, index: usize) -> i64 {
        self.segments
            .get(index + 1)
            .map(|s| s.base_offset)
            .unwrap_or(self.log_end_offset)
    }

    fn delete_below_log_start(&mut self, now_ms: i64, events: &mut Vec<ClusterEventKind>) {
        while !self.segments.is_empty() && self.segment_end(0) <= self.log_start_offset {
            let is_active = self.segments.len() == 1;
            if is_active && self.segments[0].batches.is_empty() {
                break;
            }
            self.delete_oldest(now_ms, DeletionReason::LogStartOffset, events);
        }
    }

    /// Removes the oldest segment; when it is the active one, an empty segment at the log end offset replaces it.
    fn delete_oldest(
        &mut self,
        now_ms: i64,
        reason: DeletionReason,
        events: &mut Vec<ClusterEventKind>,
    ) {
        if self.segments.len() == 1 {
            self.roll(now_ms, RollReason::Retention, events);
        }
        let end_offset = self.segment_end(0);
        if let Some(segment) = self.segments.pop_front() {
            let start_offset = segment.base_offset.max(self.log_start_offset);
            self.tombstones_cleaned_at
                .retain(|&offset, _| offset >= end_offset);
            if let Some(disk) = &mut self.disk {
                disk.delete_segment(segment.base_offset);
            }
            events.push(ClusterEventKind::SegmentDeleted {
                topic: self.topic.clone(),
                partition: self.partition,
                start_offset,
                end_offset,
                reason,
            });
        }
        if let Some(first) = self.segments.front() {
            self.log_start_offset = self.log_start_offset.max(first.base_offset);
        }
        self.checkpoint_log_start_offset();
    }

    /// One run of the retention check: time retention, then size retention (when `cleanup.policy` has `delete`),
    /// then compaction (when it has `compact`).
    pub(crate) fn enforce_retention(&mut self, now_ms: i64, events: &mut Vec<ClusterEventKind>) {
        if self.config.cleanup_delete {
            self.delete_by_time(now_ms, events);
            self.delete_by_size(now_ms, events);
        }
        if self.config.cleanup_compact {
            self.compact(now_ms, events);
        }
    }

    /// Can the oldest segment go? Only when it is non-empty (an empty active segment stays) and fully below the HW.
    fn oldest_is_deletable(&self) -> bool {
        match self.segments.front() {
            None => false,
            Some(s) if s.batches.is_empty() => false,
            Some(_) => self.high_watermark >= self.segment_end(0),
        }
    }

    fn delete_by_time(&mut self, now_ms: i64, events: &mut Vec<ClusterEventKind>) {
        let retention_ms = self.config.retention_ms;
        if retention_ms < 0 {
            return;
        }
        while self.oldest_is_deletable()
            && self
                .segments
                .front()
                .is_some_and(|s| now_ms.saturating_sub(s.retention_timestamp()) > retention_ms)
        {
            self.delete_oldest(now_ms, DeletionReason::RetentionTime, events);
        }
    }

    fn delete_by_size(&mut self, now_ms: i64, events: &mut Vec<ClusterEventKind>) {
        let retention_bytes = self.config.retention_bytes;
        if retention_bytes < 0 {
            return;
        }
        let mut excess = self.size_bytes() as i64 - retention_bytes;
        while self.oldest_is_deletable() {
            let size = self.segments.front().map_or(0, |s| s.size_bytes as i64);
            if excess - size < 0 {
                break;
            }
            excess -= size;
            self.delete_oldest(now_ms, DeletionReason::RetentionSize, events);
        }
    }

    /// Keeps the last record per key in every segment but the active one, below the HW. A tombstone is kept for
    /// `delete.retention.ms` after the cleaner first saw it. Removed batches and emptied segments leave offset gaps;
    /// the log start offset does not move. Unlike Kafka, it does not wait for min.cleanable.dirty.ratio.
    fn compact(&mut self, now_ms: i64, events: &mut Vec<ClusterEventKind>) {
        let active_index = self.segments.len().saturating_sub(1);
        let cleanable = (0..active_index)
            .take_while(|&i| self.segment_end(i) <= self.high_watermark)
            .count();
        if cleanable == 0 {
            return;
        }
        let end_offset = self.segment_end(cleanable - 1);
        // Pass 1: the last offset of every key in the cleanable range.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        let mut decoded: Vec<Vec<DecodedBatch>> = Vec::with_capacity(cleanable);
        for segment in self.segments.iter().take(cleanable) {
            let mut per_batch = Vec::with_capacity(segment.batches.len());
            for stored in &segment.batches {
                // A batch the cleaner cannot read (it passed the CRC check, so this is a client's bug) is kept as is.
                let parsed = stored.data.get().ok().and_then(|bytes| {
                    batch::records(&bytes)
                        .ok()
                        .filter(|(h, _)| !h.is_control())
                        .map(|(_, records)| (bytes, records))
                });
                if let Some((_, records)) = &parsed {
                    for record in records {
                        if let Some(key) = &record.key {
                            latest.insert(key.clone(), record.offset);
                        }
                    }
                }
                per_batch.push(parsed);
            }
            decoded.push(per_batch);
        }
        // Pass 2: rebuild batches without superseded records and expired tombstones.
        let delete_retention_ms = self.config.delete_retention_ms;
        let mut removed = 0u64;
        let mut tombstones_removed = 0u64;
        let mut rewritten = Vec::new();
        for (segment, per_batch) in self.segments.iter_mut().take(cleanable).zip(decoded) {
            let removed_before = removed;
            let mut kept_batches = Vec::with_capacity(segment.batches.len());
            for (stored, parsed) in segment.batches.drain(..).zip(per_batch) {
                let Some((original, records)) = parsed else {
                    kept_batches.push(stored);
                    continue;
                };
                let total = records.len();
                let kept: Vec<batch::RecordView> = records
                    .into_iter()
                    .filter(|r| {
                        let Some(key) = &r.key else { return true };
                        if latest.get(key) != Some(&r.offset) {
                            return false;
                        }
                        if r.is_tombstone {
                            let first_seen =
                                *self.tombstones_cleaned_at.entry(r.offset).or_insert(now_ms);
                            if now_ms.saturating_sub(first_seen) > delete_retention_ms {
                                tombstones_removed += 1;
                                self.tombstones_cleaned_at.remove(&r.offset);
                                return false;
                            }
                        }
                        true
                    })
                    .collect();
                removed += (total - kept.len()) as u64;
                if kept.len() == total {
                    kept_batches.push(stored);
                } else if !kept.is_empty() {
                    let data = batch::rebuild_with(&original, &kept);
                    let data = BatchBytes::new(data, self.spill.as_ref());
                    kept_batches.push(StoredBatch { data, ..stored });
                }
            }
            segment.size_bytes = kept_batches.iter().map(|b| b.data.len() as u64).sum();
            segment.batches = kept_batches;
            if removed > removed_before {
                rewritten.push(segment.base_offset);
            }
        }
        // Emptied segments go, except the first, which keeps the log start offset's place.
        let mut index = 1;
        let mut limit = cleanable;
        while index < limit {
            if self.segments[index].batches.is_empty() {
                let segment = self.segments.remove(index);
                if let (Some(disk), Some(segment)) = (&mut self.disk, segment) {
                    disk.delete_segment(segment.base_offset);
                }
                limit -= 1;
            } else {
                index += 1;
            }
        }
        if let Some(disk) = &mut self.disk {
            for segment in self
                .segments
                .iter()
                .filter(|s| rewritten.contains(&s.base_offset))
            {
                let bytes: Result<Vec<Bytes>, _> =
                    segment.batches.iter().map(|b| b.data.get()).collect();
                match bytes {
                    Ok(bytes) => disk.rewrite_segment(segment.base_offset, bytes.iter()),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cannot read a compacted batch back; its segment file is not rewritten"
                    ),
                }
            }
        }
        if removed > 0 {
            events.push(ClusterEventKind::Compacted {
                topic: self.topic.clone(),
                partition: self.partition,
                end_offset,
                records_removed: removed - tombstones_removed,
                tombstones_removed,
            });
        }
    }
}
