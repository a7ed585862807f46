//! Step 3: the cluster's event log (and the consumers' retention gaps) as offset ranges per partition, and the
//! counts the report shows of what happened to the logs.

use std::collections::HashMap;

use serde::Serialize;

use super::index::{Placement, RangeSet, TopicPartitions};
use crate::history::History;
use crate::history::{ClusterEventKind, ElectionKind};

/// What the cluster's event log says happened to the logs (timing-dependent context for the report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterCounts {
    pub truncations: u64,
    pub truncated_offsets: u64,
    pub unclean_elections: u64,
    pub segments_deleted: u64,
    pub records_deleted: u64,
    pub compactions: u64,
}

/// Step 3: the event log as offset ranges per partition.
pub(super) struct EventRanges {
    truncated: HashMap<usize, RangeSet>,
    pub(super) deleted: HashMap<usize, RangeSet>,
    /// The highest offset compaction cleaned below.
    pub(super) compacted_below: HashMap<usize, i64>,
    pub(super) counts: ClusterCounts,
}

impl EventRanges {
    pub(super) fn new(history: &History, tps: &mut TopicPartitions) -> EventRanges {
        let mut truncated: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
        let mut deleted: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
        let mut compacted_below: HashMap<usize, i64> = HashMap::new();
        let mut counts = ClusterCounts::default();
        for e in &history.cluster_events {
            match &e.kind {
                ClusterEventKind::Truncated {
                    topic,
                    partition,
                    start_offset,
                    end_offset,
                    ..
                } => {
                    counts.truncations += 1;
                    counts.truncated_offsets += (end_offset - start_offset).max(0) as u64;
                    truncated
                        .entry(tps.id(topic, *partition))
                        .or_default()
                        .push((*start_offset, *end_offset));
                }
                ClusterEventKind::SegmentDeleted {
                    topic,
                    partition,
                    start_offset,
                    end_offset,
                    ..
                } => {
                    counts.segments_deleted += 1;
                    deleted
                        .entry(tps.id(topic, *partition))
                        .or_default()
                        .push((*start_offset, *end_offset));
                }
                ClusterEventKind::RecordsDeleted {
                    topic,
                    partition,
                    start_offset,
                    end_offset,
                } => {
                    counts.records_deleted += 1;
                    deleted
                        .entry(tps.id(topic, *partition))
                        .or_default()
                        .push((*start_offset, *end_offset));
                }
                ClusterEventKind::Compacted {
                    topic,
                    partition,
                    end_offset,
                    ..
                } => {
                    counts.compactions += 1;
                    let below = compacted_below
                        .entry(tps.id(topic, *partition))
                        .or_insert(0);
                    *below = (*below).max(*end_offset);
                }
                ClusterEventKind::Election {
                    kind: ElectionKind::Unclean,
                    ..
                } => counts.unclean_elections += 1,
                _ => {}
            }
        }
        for g in &history.retention_gaps {
            deleted
                .entry(tps.id(&g.topic, g.partition))
                .or_default()
                .push((g.requested, g.log_start_offset));
        }
        EventRanges {
            truncated: truncated
                .into_iter()
                .map(|(k, v)| (k, RangeSet::new(v)))
                .collect(),
            deleted: deleted
                .into_iter()
                .map(|(k, v)| (k, RangeSet::new(v)))
                .collect(),
            compacted_below,
            counts,
        }
    }

    pub(super) fn truncated(&self, p: &Placement) -> bool {
        self.truncated
            .get(&p.tp)
            .is_some_and(|r| r.contains(p.offset))
    }

    pub(super) fn deleted(&self, p: &Placement) -> bool {
        self.deleted
            .get(&p.tp)
            .is_some_and(|r| r.contains(p.offset))
    }

    pub(super) fn compacted(&self, p: &Placement) -> bool {
        self.compacted_below
            .get(&p.tp)
            .is_some_and(|&below| p.offset >= 0 && p.offset < below)
    }
}
