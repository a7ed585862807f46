//! One partition replica's files while the cluster serves: appends through a buffered active segment, rolls,
//! flushes, truncation, reset, segment deletion and compaction's rewrite, the leader-epoch and log start offset
//! checkpoints.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::checkpoint::leader_epoch_checkpoint_text;
use super::log_dir::BrokerLogDir;
use super::{
    io_error, parse_segment_file_name, replace_file, segment_file_name, StorageError,
    CLEANED_SUFFIX, LEADER_EPOCH_CHECKPOINT, WRITE_BUFFER,
};

/// The segment file appends go to.
pub(super) struct ActiveSegment {
    base_offset: i64,
    path: PathBuf,
    writer: BufWriter<File>,
}

/// One partition replica's files: a directory of segment files, the last one open for appends.
pub(crate) struct DiskLog {
    pub(super) dir: PathBuf,
    pub(super) broker: Arc<BrokerLogDir>,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) active: Option<ActiveSegment>,
    /// The log start offset last written to the checkpoint.
    pub(super) checkpointed: i64,
    /// The first write that failed: from then on the log refuses appends.
    pub(super) failed: Option<StorageError>,
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
    pub(super) fn create(
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

    pub(super) fn open_segment(
        &self,
        base_offset: i64,
        new: bool,
    ) -> Result<ActiveSegment, StorageError> {
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
}
