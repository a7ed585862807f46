//! `lost-change` (step 5): changes never delivered, each explained by the first cause that fits.

use std::collections::BTreeMap;

use serde::Serialize;

use super::acks::AckIndex;
use super::deliveries::Deliveries;
use super::events::EventRanges;
use super::index::{Placement, SourceIndex, TopicPartitions};
use super::{change_ref, ChangeRef, EXAMPLES};
use crate::history::{GroupEventKind, History, ProduceOutcome};

/// Where the cluster acknowledged a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a change never reached a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossCause {
    /// No produce attempt was acknowledged.
    NeverProduced,
    /// Acknowledged at an offset the log later truncated: lost by the cluster.
    TruncatedAcked,
    /// Acknowledged at an offset retention (or DeleteRecords) removed before a consumer read it.
    Retention,
    /// Acknowledged below a compaction point and superseded by a later change of its row.
    Compacted,
    /// Read by a group consumer whose acknowledged commit passed it before it was written, and never written:
    /// the commit went ahead of its write (at most once), so no member read it again.
    CommittedBeforeWritten,
    /// Acknowledged, still in the log as far as the event log tells, never read.
    Unexplained,
}

/// One lost change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostChange {
    pub change: ChangeRef,
    pub cause: LossCause,
    /// Where it was acknowledged (empty when never produced).
    pub acked: Vec<Offset>,
    /// The last produce error, when it was never acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produce_error: Option<String>,
}

/// `lost-change`: committed at the source, never consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LostChanges {
    pub count: u64,
    pub never_produced: u64,
    pub truncated_acked: u64,
    pub retention: u64,
    pub compacted: u64,
    /// Consumer groups only: passed by an acknowledged commit, never written.
    #[serde(skip_serializing_if = "is_zero")]
    pub committed_before_written: u64,
    pub unexplained: u64,
    /// The first few of each cause, most severe cause first (unexplained, never produced, truncated, retention,
    /// compacted).
    pub examples: Vec<LostChange>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The highest offset an acknowledged group commit reached on each partition.
pub(super) fn committed(history: &History) -> std::collections::HashMap<(&str, i32), i64> {
    let mut out = std::collections::HashMap::new();
    for e in &history.group {
        if let GroupEventKind::Committed { offsets, .. } = &e.kind {
            for o in offsets {
                let at = out
                    .entry((o.topic.as_str(), o.partition))
                    .or_insert(o.offset);
                *at = (*at).max(o.offset);
            }
        }
    }
    out
}

pub(super) struct Lost {
    pub(super) summary: LostChanges,
    pub(super) retention: Vec<ChangeRef>,
}

/// Step 5: changes never delivered, and why.
pub(super) fn lost_changes(
    history: &History,
    source: &SourceIndex,
    acks: &AckIndex,
    events: &EventRanges,
    deliveries: &Deliveries,
    tps: &TopicPartitions,
) -> Lost {
    let mut summary = LostChanges::default();
    let mut retention = Vec::new();
    // Examples per cause, so the most severe can be shown first whatever order the losses came in.
    let mut by_cause: BTreeMap<u8, Vec<LostChange>> = BTreeMap::new();
    let committed = committed(history);
    let passed = |p: &Placement| {
        let (topic, partition) = tps.name(p.tp);
        committed
            .get(&(topic, partition))
            .is_some_and(|c| *c > p.offset)
    };
    for (d, (id, _, ch)) in history.changes().enumerate() {
        if deliveries.delivered.get(d).copied().unwrap_or(0) > 0 {
            continue;
        }
        let superseded = |p: &Placement| {
            acks.row_latest
                .get(&(ch.table, ch.key))
                .is_some_and(|l| l.tp == p.tp && l.offset > p.offset)
        };
        let placements: Vec<&Placement> = acks.placements(d).collect();
        let cause = if placements.is_empty() {
            LossCause::NeverProduced
        } else if placements.iter().any(|p| events.truncated(p)) {
            LossCause::TruncatedAcked
        } else if placements.iter().any(|p| events.deleted(p)) {
            LossCause::Retention
        } else if placements
            .iter()
            .any(|p| events.compacted(p) && superseded(p))
        {
            LossCause::Compacted
        } else if placements.iter().any(|p| passed(p)) {
            LossCause::CommittedBeforeWritten
        } else {
            LossCause::Unexplained
        };
        summary.count += 1;
        let (counter, severity) = match cause {
            LossCause::Unexplained => (&mut summary.unexplained, 0),
            LossCause::NeverProduced => (&mut summary.never_produced, 1),
            LossCause::TruncatedAcked => (&mut summary.truncated_acked, 2),
            LossCause::Retention => (&mut summary.retention, 3),
            LossCause::Compacted => (&mut summary.compacted, 4),
            LossCause::CommittedBeforeWritten => (&mut summary.committed_before_written, 5),
        };
        *counter += 1;
        let examples = by_cause.entry(severity).or_default();
        if cause != LossCause::Retention && examples.len() >= EXAMPLES {
            continue;
        }
        let Some(change) = change_ref(history, source, id) else {
            continue;
        };
        if cause == LossCause::Retention {
            retention.push(change.clone());
            if examples.len() >= EXAMPLES {
                continue;
            }
        }
        examples.push(LostChange {
            change,
            cause,
            acked: placements
                .iter()
                .map(|p| {
                    let (topic, partition) = tps.name(p.tp);
                    Offset {
                        topic: topic.to_string(),
                        partition,
                        offset: p.offset,
                    }
                })
                .collect(),
            produce_error: acks
                .last_error
                .get(&d)
                .filter(|_| placements.is_empty())
                .and_then(|&i| match &history.produced[i].outcome {
                    ProduceOutcome::Failed { error } => Some(error.clone()),
                    ProduceOutcome::Acked { .. } => None,
                }),
        });
    }
    summary.examples = by_cause.into_values().flatten().collect();
    Lost { summary, retention }
}
