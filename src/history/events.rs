//! The vocabulary of the cluster's event log: what a cluster did to topics and logs, as data that tests and
//! checkers read (`Cluster::events`, the local watch). Not log lines: tracing output is for people, this is for
//! assertions. The history records these events; the brokers and the local watch write them.

/// A broker's `node.id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerId(pub i32);

impl std::fmt::Display for BrokerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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

/// Why a replica's log was truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TruncationReason {
    /// The replica's log diverged from its leader's (the leader's end offset for the replica's last leader epoch
    /// is below the replica's log end offset): what Kafka 3.9 learns from DivergingEpoch in a Fetch response.
    DivergingEpoch,
    /// A machine crash lost what had not been flushed.
    Crash,
    /// The replica's log ended below the leader's log start offset; it starts over there.
    OffsetOutOfRange,
}

/// How a partition leader was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElectionKind {
    /// The first live ISR replica in assignment order.
    Clean,
    /// No live ISR replica: the first live replica in assignment order (`unclean.leader.election.enable`); records
    /// above its log end offset are lost.
    Unclean,
    /// Leadership moved back to the preferred replica (the head of the assignment).
    Preferred,
    /// A controlled shutdown moved leadership away from the stopping broker.
    ControlledShutdown,
}

/// Why the controller stopped counting a broker as alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FenceReason {
    /// No heartbeat for the session timeout.
    SessionExpired,
    /// The broker stopped cleanly (controlled shutdown).
    ControlledShutdown,
    /// The broker registered again after a restart (a new incarnation replaces the old one).
    Restarted,
}

/// A fault injected through the cluster handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    Stop,
    Kill,
    Crash,
    Restart,
    IsolateAll,
    IsolatePeers,
    Heal,
    Pause,
    Resume,
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
    /// A partition got a leader: at creation, and after every election that found one.
    LeaderChanged {
        topic: String,
        partition: i32,
        leader: BrokerId,
        leader_epoch: i32,
    },
    /// A controller election chose a leader for a partition, or found none (`leader: None`: the partition is
    /// offline).
    Election {
        topic: String,
        partition: i32,
        leader: Option<BrokerId>,
        leader_epoch: i32,
        kind: ElectionKind,
    },
    /// A replica left the ISR (lagging for replica.lag.time.max.ms, or its broker was fenced).
    IsrShrunk {
        topic: String,
        partition: i32,
        removed: BrokerId,
        isr: Vec<BrokerId>,
    },
    /// A caught-up replica joined the ISR again.
    IsrExpanded {
        topic: String,
        partition: i32,
        added: BrokerId,
        isr: Vec<BrokerId>,
    },
    /// A replica's log lost `[start_offset, end_offset)`.
    Truncated {
        topic: String,
        partition: i32,
        broker: BrokerId,
        start_offset: i64,
        end_offset: i64,
        reason: TruncationReason,
    },
    /// The controller stopped counting a broker as alive: it leaves every ISR and leads nothing.
    BrokerFenced {
        broker: BrokerId,
        reason: FenceReason,
    },
    /// A broker registered with the controller again (after a restart, a resume or a heal).
    BrokerUnfenced { broker: BrokerId },
    /// A fault was injected.
    Fault { broker: BrokerId, fault: FaultKind },
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
    /// A broker became the group coordinator of a `__consumer_offsets` partition and loaded its groups from the
    /// log (it had become that partition's leader).
    CoordinatorLoaded {
        broker: BrokerId,
        partition: i32,
        leader_epoch: i32,
        groups: usize,
        offsets: usize,
    },
    /// A member joined a consumer group.
    GroupMemberJoined {
        group: String,
        member: String,
        client_id: String,
    },
    /// A member left a consumer group or was removed from it.
    GroupMemberRemoved {
        group: String,
        member: String,
        reason: MemberRemoval,
    },
    /// A consumer group began a rebalance (its members must rejoin); `generation` is the one ending.
    GroupRebalanceStarted { group: String, generation: i32 },
    /// A rebalance's join phase ended: a new generation with these members (in join order), its leader and
    /// protocol (assignor).
    GroupGenerationFormed {
        group: String,
        generation: i32,
        protocol: Option<String>,
        leader: Option<String>,
        members: Vec<String>,
    },
    /// The leader's assignment arrived: the generation is Stable.
    GroupStable { group: String, generation: i32 },
    /// Offsets were committed (and replicated) for a group; `generation` -1 for a simple (non-member) commit.
    OffsetsCommitted {
        group: String,
        generation: i32,
        offsets: Vec<(String, i32, i64)>,
    },
    /// A consumer group and its offsets were deleted.
    GroupDeleted { group: String },
}

/// Why a member left its consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberRemoval {
    /// LeaveGroup.
    Left,
    /// No heartbeat within its session timeout.
    SessionExpired,
    /// It did not rejoin before the rebalance deadline.
    NotRejoined,
    /// A static member's instance id was taken over by a new member id.
    Replaced,
}
