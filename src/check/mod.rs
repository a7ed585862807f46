//! Checkers: what went wrong in a run, found by reading only its [`History`] (with the cluster's event log) and
//! the final states of the sink and the oracle. Checkers return data — counts and the first examples of each
//! anomaly; whether the run passes is decided separately, by the scenario's `[expect]` (see `report`).
//!
//! ## The model
//!
//! The source commits transactions; every row change of every commit (the initial snapshot's reads included) is a
//! *change*, named by its [`ChangeId`] `(txn, index)`, which orders like the source. The capture produces one
//! Debezium record per change (plus a tombstone after each delete) to the change topic of the change's table,
//! keyed by the row's primary key, so all changes of one row share one partition. The cluster acknowledges a
//! record at a (topic, partition, offset) — or does not. Consumers read records at offsets and report what they
//! decoded: table, key, op and Debezium's `source` block, which [`History::resolver`] maps back to the change. A
//! delivery is one consumed record; a change may be delivered zero, one or many times.
//!
//! The sink keeps the latest image per row by source position, so it tolerates duplicates and cross-partition
//! interleaving, but not a lost change or a row's changes applied out of order.
//!
//! ## The analysis, step by step
//!
//! 1. **Index the source.** Number every change densely in history order; count commits, snapshot reads, and
//!    changes per table and op. These counts depend on the seed alone.
//! 2. **Index the produce attempts.** For each change, where the cluster acknowledged it (one place, or several
//!    when a retry wrote it twice) and the last produce error if it was never acknowledged.
//! 3. **Index the cluster's event log** per (topic, partition), as merged half-open offset ranges: truncations
//!    (`Truncated`), deletions (`SegmentDeleted`, `RecordsDeleted`, and every consumer's [`RetentionGap`](crate::history::RetentionGap)
//!    `[requested, log_start)`), and the highest offset compaction has cleaned below.
//! 4. **Resolve the deliveries** in consumption order (`seq`). A record that resolves to no change is a
//!    *phantom*. The first delivery of a change is timed (consumed − committed, for the report's latency); every
//!    later one is a *duplicate*. Among first deliveries of one row, a change consumed after a greater change of
//!    that row is *reordered* (replays are duplicates, never reorders).
//! 5. **Lost changes**: changes never delivered, each explained by the first cause that fits — never
//!    acknowledged (*never produced*); acknowledged at an offset the log later truncated (*truncated_acked*: lost
//!    by the cluster); acknowledged at an offset retention deleted (*retention*); acknowledged below a compaction
//!    point and superseded by a later change of its row in the same partition (*compacted*); else
//!    *unexplained*. The retention-lost changes are listed in full.
//! 6. **Offset gaps**: for every partition of the change topics (those in `History::end_offsets`), offsets in `[0, end)` that no consumer read and
//!    that no deletion or compaction explains. A consumer that skips silently shows up here.
//! 7. **Final state**: the sink's flat table against the oracle's, row by row, with the fields that differ.
//! 8. **Liveness**: whether the pipeline caught up before the quiesce timeout, as the runner observed it.
//!
//! Every step is a pass over the history with hash maps or sorted ranges: a million changes and two million
//! deliveries take a few seconds at most.
//!
//! One file per step or checker: `index.rs` (the indexes every step shares), `source_counts.rs` (1),
//! `acks.rs` (2), `events.rs` (3), `deliveries.rs` (4, which finds `duplicates.rs`, `reorders.rs` and
//! `phantoms.rs`), `lost.rs` (5, with `retention_loss.rs`), `offset_gaps.rs` (6), `final_state.rs` (7),
//! `liveness.rs` (8); this file runs them ([`all`]) and holds the [`Analysis`].

mod acks;
mod deliveries;
mod duplicates;
mod events;
mod final_state;
pub mod flat_shape;
mod foreign;
mod group;
mod index;
mod liveness;
mod lost;
mod offset_gaps;
mod phantoms;
mod reorders;
mod retention_loss;
mod source_counts;

use serde::Serialize;

use crate::history::{ChangeId, History};
use crate::model::flat::FlatTable;

use acks::AckIndex;
use deliveries::Deliveries;
pub use deliveries::{ConsumedCounts, Delivery};
pub use duplicates::{Duplicate, Duplicates};
pub use events::ClusterCounts;
use events::EventRanges;
pub use final_state::{FieldDiff, FinalStateDiff, RowDiff, RowDiffKind};
pub use foreign::{
    compare as compare_tables, merge as merge_tables, normalise, not_comparable, Cell, CellKind,
    ForeignFinal, TableDiff,
};
pub use group::GroupCounts;
use index::{SourceIndex, TopicPartitions};
pub use liveness::Liveness;
use lost::lost_changes;
pub use lost::{LossCause, LostChange, LostChanges, Offset};
use offset_gaps::offset_gaps;
pub use offset_gaps::{GapRange, OffsetGaps};
pub use phantoms::{ClaimedChange, Phantom, Phantoms};
pub use reorders::{Reorder, Reorders};
pub use retention_loss::RetentionLoss;
use source_counts::source_counts;
pub use source_counts::SourceCounts;

/// How many examples each anomaly keeps.
pub const EXAMPLES: usize = 5;

/// The flat tables at the end of the run: what the streaming sink built, and the batch recomputation from the
/// source's final state.
#[derive(Debug, Clone, Default)]
pub struct FinalStates {
    pub sink: FlatTable,
    pub oracle: FlatTable,
    /// A command ETL's table against its oracle query: then the delivery checks have nothing to read (the
    /// harness does not see what the program consumed) and the loss is what the table lacks.
    pub foreign: Option<ForeignFinal>,
}

/// Everything the checkers found.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub source: SourceCounts,
    pub consumed: ConsumedCounts,
    pub lost: LostChanges,
    pub duplicates: Duplicates,
    pub reordered: Reorders,
    pub offset_gaps: OffsetGaps,
    pub phantoms: Phantoms,
    pub retention_loss: RetentionLoss,
    pub final_state: FinalStateDiff,
    pub liveness: Liveness,
    pub cluster: ClusterCounts,
    /// What the consumer group did (group mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupCounts>,
    /// End-to-end latency of first deliveries (consumed − committed), ms; the report reads its percentiles.
    #[serde(skip)]
    pub(crate) latency_ms: Option<hdrhistogram::Histogram<u64>>,
}

/// A source change, as examples name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeRef {
    pub txn: u64,
    pub index: u32,
    pub table: String,
    pub key: i64,
    pub op: &'static str,
    /// Binlog file and position of its commit (empty file for the snapshot).
    pub binlog_file: String,
    pub binlog_pos: u64,
}

/// Runs every checker.
pub fn all(history: &History, finals: &FinalStates, liveness: &Liveness) -> Analysis {
    let source = SourceIndex::new(history);
    let mut tps = TopicPartitions::default();
    let events = EventRanges::new(history, &mut tps);
    let acks = AckIndex::new(history, &source, &mut tps);
    let deliveries = Deliveries::new(history, &source, &mut tps);

    let lost = lost_changes(history, &source, &acks, &events, &deliveries, &tps);
    let retention_loss = RetentionLoss {
        count: lost.retention.len() as u64,
        changes: lost.retention,
        consumer_gaps: history.retention_gaps.len() as u64,
    };
    let offset_gaps = offset_gaps(history, &events, &deliveries, &tps);

    if let Some(foreign) = &finals.foreign {
        return foreign_analysis(
            history,
            foreign,
            liveness,
            events.counts,
            source_counts(history),
        );
    }
    Analysis {
        source: source_counts(history),
        consumed: deliveries.counts.clone(),
        lost: lost.summary,
        duplicates: deliveries.duplicates,
        reordered: deliveries.reorders,
        offset_gaps,
        phantoms: deliveries.phantoms,
        retention_loss,
        final_state: final_state::diff(&finals.sink, &finals.oracle),
        liveness: liveness.clone(),
        cluster: events.counts,
        group: group::counts(history),
        latency_ms: deliveries.latency_ms,
    }
}

/// A command ETL's analysis: the table comparison, the loss it shows (missing rows), attributed to
/// acknowledgements ahead of writes when the program's progress had reached every partition's end.
fn foreign_analysis(
    history: &History,
    foreign: &ForeignFinal,
    liveness: &Liveness,
    cluster: ClusterCounts,
    source: SourceCounts,
) -> Analysis {
    // Rows of the batch result the table lacks or holds stale: what the ETL lost.
    let missing = foreign.diff.missing + foreign.diff.different;
    let acknowledged = foreign.progress_complete && missing > 0;
    Analysis {
        source,
        consumed: ConsumedCounts::default(),
        lost: LostChanges {
            count: missing,
            committed_before_written: if acknowledged { missing } else { 0 },
            unexplained: if acknowledged { 0 } else { missing },
            ..LostChanges::default()
        },
        duplicates: Duplicates::default(),
        reordered: Reorders::default(),
        offset_gaps: OffsetGaps::default(),
        phantoms: Phantoms::default(),
        retention_loss: RetentionLoss::default(),
        final_state: foreign.diff.clone(),
        liveness: liveness.clone(),
        cluster,
        group: group::counts(history),
        latency_ms: None,
    }
}

impl Analysis {
    /// The count an `[expect]` relation refers to.
    pub fn count_var(&self, var: crate::scenario::CountVar) -> u64 {
        match var {
            crate::scenario::CountVar::TruncatedAcked => self.lost.truncated_acked,
            crate::scenario::CountVar::RetentionLost => self.retention_loss.count,
            crate::scenario::CountVar::CommittedBeforeWritten => self.lost.committed_before_written,
        }
    }
}

fn change_ref(history: &History, source: &SourceIndex, id: ChangeId) -> Option<ChangeRef> {
    let commit = &history.commits[source.commit_of(id.txn)?];
    let ch = commit.changes.get(id.index as usize)?;
    Some(ChangeRef {
        txn: id.txn,
        index: id.index,
        table: ch.table.to_string(),
        key: ch.key,
        op: ch.op.letter(),
        binlog_file: commit.position.file.clone(),
        binlog_pos: commit.position.pos,
    })
}
