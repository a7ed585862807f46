//! What a consumer group did in a run, as its members saw it: every assignment, revocation and loss with the
//! generation it belongs to, and every offset commit with its outcome. The checkers attribute duplicates to
//! rebalances and losses to commits that went ahead of their writes from these.

/// One partition's offset in a commit: the next offset the group will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What happened to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEventKind {
    /// The coordinator gave it these partitions (for cooperative assignment: these more).
    Assigned { partitions: Vec<(String, i32)> },
    /// It gave these up in a rebalance (for eager assignment: everything it had).
    Revoked { partitions: Vec<(String, i32)> },
    /// It lost these without a rebalance handing them over: its session expired or it stopped polling for longer
    /// than `max_poll_interval` and left the group.
    Lost { partitions: Vec<(String, i32)> },
    /// A commit the coordinator acknowledged.
    Committed {
        offsets: Vec<CommittedOffset>,
        auto: bool,
    },
    /// A commit the coordinator refused (or that failed): the offsets stay where they were.
    CommitFailed {
        offsets: Vec<CommittedOffset>,
        auto: bool,
        error: String,
    },
    /// The member left the group or stopped (killed, or removed for polling too slowly).
    Left { why: String },
    /// The member closed cleanly at the end of the run (LeaveGroup; with auto-commit, a last commit).
    Closed,
    /// Every member that starts with the run had its first assignment: the stream starts in this generation
    /// (recorded once, by the pipeline, with consumer 0).
    Formed,
}

/// One event of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEvent {
    /// Ms since the epoch (the run's clock).
    pub at_ms: i64,
    pub consumer: u32,
    /// The group generation the member was in (`-1` before its first join completed).
    pub generation: i32,
    pub member_id: String,
    pub kind: GroupEventKind,
}

impl GroupEvent {
    /// The partitions an assignment change names (empty for commits and departures).
    pub fn partitions(&self) -> &[(String, i32)] {
        match &self.kind {
            GroupEventKind::Assigned { partitions }
            | GroupEventKind::Revoked { partitions }
            | GroupEventKind::Lost { partitions } => partitions,
            _ => &[],
        }
    }
}
