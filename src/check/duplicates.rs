//! `duplicate`: changes consumed more than once (found by the deliveries pass, `deliveries.rs`).

use serde::Serialize;

use super::{ChangeRef, Delivery};
use crate::history::{Consumed, GroupEventKind, History};

/// One extra delivery of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub change: ChangeRef,
    pub first: Delivery,
    pub again: Delivery,
    /// Consumer groups: the rebalance between the two deliveries that moved the partition, or that there was
    /// none (a replay from the last acknowledged commit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `duplicate`: changes consumed more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Duplicates {
    /// Extra deliveries (a change read three times counts 2).
    pub count: u64,
    /// Distinct changes delivered more than once.
    pub changes: u64,
    /// Consumer groups: extra deliveries with a rebalance of their partition in between.
    #[serde(skip_serializing_if = "is_zero")]
    pub after_rebalance: u64,
    /// Consumer groups: extra deliveries without one (read again from the last acknowledged commit).
    #[serde(skip_serializing_if = "is_zero")]
    pub replayed: u64,
    pub examples: Vec<Duplicate>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a group consumer delivered a change again (`Some(true, text)`: a rebalance; `Some(false, text)`: none).
/// Delivered by two consumers: the assignment that gave the partition to the second. By one: the first rebalance
/// event of the partition between the two deliveries, if any. `None` without a consumer group.
pub(super) fn cause(
    history: &History,
    first: &Consumed,
    again: &Consumed,
) -> Option<(bool, String)> {
    if history.group.is_empty() {
        return None;
    }
    let tp = (first.topic.to_string(), first.partition);
    let on_partition =
        |e: &&crate::history::GroupEvent| e.at_ms <= again.at_ms && e.partitions().contains(&tp);
    let moved = if first.consumer != again.consumer {
        // Two members wrote it, so the partition moved to the second, whenever the first wrote: a member that
        // lost the partition (removed for polling too slowly) still writes what it had polled.
        let events = || history.group.iter().rev().filter(on_partition);
        events()
            .find(|e| {
                e.consumer == again.consumer && matches!(e.kind, GroupEventKind::Assigned { .. })
            })
            .or_else(|| events().next())
    } else {
        history
            .group
            .iter()
            .filter(on_partition)
            .find(|e| e.at_ms >= first.at_ms)
    };
    Some(match moved {
        Some(e) => {
            let what = match &e.kind {
                GroupEventKind::Assigned { .. } => "assigned to",
                GroupEventKind::Revoked { .. } => "revoked from",
                _ => "lost by",
            };
            (
                true,
                format!(
                    "after a rebalance: {}-{} {what} consumer {} in generation {}",
                    tp.0, tp.1, e.consumer, e.generation
                ),
            )
        }
        None => (
            false,
            "replayed: no rebalance of the partition in between, read again from the last acknowledged commit"
                .into(),
        ),
    })
}
