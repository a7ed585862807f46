//! The cluster's event log: what the cluster did to topics and logs, as data that tests and checkers read
//! (`Cluster::events`). Not log lines: tracing output is for people, this is for assertions.

use super::BrokerId;

/// One thing the cluster did, stamped with the cluster clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEvent {
    /// Clock time (ms since the Unix epoch, virtual or real) at which it happened.
    pub at_ms: i64,
    /// What happened.
    pub kind: ClusterEventKind,
}

/// Why a segment left the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeletionReason {
    /// `retention.ms` passed since the segment's largest record timestamp.
    RetentionTime,
    /// The partition was larger than `retention.bytes`.
    RetentionSize,
    /// DeleteRecords moved the log start offset past the whole segment.
    LogStartOffset,
}

/// Why a new segment was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RollReason {
    /// The next batch would have made the segment larger than `segment.bytes`.
    SegmentBytes,
    /// The next batch's timestamp is more than `segment.ms` after the segment's first.
    SegmentMs,
    /// Retention deletes the active segment; an empty one takes its place.
    Retention,
}

/// What happened. Offset ranges are half-open: `[start_offset, end_offset)`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEventKind {
    /// A broker started serving.
    BrokerStarted { broker: BrokerId, port: u16 },
    /// A broker became the controller.
    ControllerElected { broker: BrokerId },
    /// A topic was created, explicitly or automatically.
    TopicCreated {
        topic: String,
        partitions: i32,
        replication_factor: i16,
        auto_created: bool,
    },
    /// A topic and its logs were deleted.
    TopicDeleted { topic: String },
    /// A partition got a leader (at creation here; leader changes come with replication, issue 5).
    LeaderChanged {
        topic: String,
        partition: i32,
        leader: BrokerId,
        leader_epoch: i32,
    },
    /// A new active segment was started.
    SegmentRolled {
        topic: String,
        partition: i32,
        base_offset: i64,
        reason: RollReason,
    },
    /// A whole segment was deleted; its records are gone.
    SegmentDeleted {
        topic: String,
        partition: i32,
        start_offset: i64,
        end_offset: i64,
        reason: DeletionReason,
    },
    /// DeleteRecords moved the log start offset.
    RecordsDeleted {
        topic: String,
        partition: i32,
        start_offset: i64,
        end_offset: i64,
    },
    /// A partition's log was read back from the log directory when the cluster started; `truncated_bytes` of a
    /// torn batch at its end were cut off (0 after a clean shutdown).
    LogLoaded {
        broker: BrokerId,
        topic: String,
        partition: i32,
        log_start_offset: i64,
        log_end_offset: i64,
        truncated_bytes: u64,
    },
    /// Compaction removed superseded records (and expired tombstones) below `end_offset`.
    Compacted {
        topic: String,
        partition: i32,
        end_offset: i64,
        records_removed: u64,
        tombstones_removed: u64,
    },
}
