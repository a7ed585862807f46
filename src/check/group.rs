//! What the consumer group did, counted (group mode only): the generations its members saw, assignments,
//! revocations and losses, and commits acknowledged or refused. The report prints it next to the cluster's line;
//! the duplicate and loss checkers use the same events to attribute what they find.

use serde::Serialize;

use crate::history::{GroupEventKind, History};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupCounts {
    /// The generation the stream started in (the group had formed), and the highest one a member was assigned
    /// partitions in.
    pub first_generation: i32,
    pub last_generation: i32,
    /// Generations after the first: rebalances while the run went on.
    pub rebalances: u64,
    pub assignments: u64,
    pub revocations: u64,
    /// Assignments lost without a handover (session expired, `max_poll_interval` exceeded).
    pub lost_assignments: u64,
    pub commits: u64,
    pub commits_refused: u64,
    /// Members that left: killed, removed for polling too slowly (not the clean closes at the end of the run).
    pub departures: u64,
}

/// `None` when the run had no consumer group.
pub(super) fn counts(history: &History) -> Option<GroupCounts> {
    if history.group.is_empty() {
        return None;
    }
    let mut c = GroupCounts {
        first_generation: i32::MAX,
        last_generation: -1,
        ..GroupCounts::default()
    };
    for e in &history.group {
        match &e.kind {
            GroupEventKind::Assigned { .. } => {
                c.assignments += 1;
                c.last_generation = c.last_generation.max(e.generation);
            }
            GroupEventKind::Formed => c.first_generation = c.first_generation.min(e.generation),
            GroupEventKind::Revoked { .. } => c.revocations += 1,
            GroupEventKind::Lost { .. } => c.lost_assignments += 1,
            GroupEventKind::Committed { .. } => c.commits += 1,
            GroupEventKind::CommitFailed { .. } => c.commits_refused += 1,
            GroupEventKind::Left { .. } => c.departures += 1,
            GroupEventKind::Closed => {}
        }
    }
    if c.first_generation == i32::MAX {
        c.first_generation = -1;
    }
    c.rebalances =
        u64::try_from(c.last_generation.saturating_sub(c.first_generation.max(0))).unwrap_or(0);
    Some(c)
}
