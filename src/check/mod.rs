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

mod final_state;
mod index;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::history::{ChangeId, ClusterEventKind, ElectionKind, History, ProduceOutcome};
use crate::pipeline::flat::FlatTable;

pub use final_state::{FieldDiff, FinalStateDiff, RowDiff, RowDiffKind};
use index::{Placement, RangeSet, SourceIndex, TopicPartitions};

/// How many examples each anomaly keeps.
pub const EXAMPLES: usize = 5;

/// The flat tables at the end of the run: what the streaming sink built, and the batch recomputation from the
/// source's final state.
#[derive(Debug, Clone, Default)]
pub struct FinalStates {
    pub sink: FlatTable,
    pub oracle: FlatTable,
}

/// Whether the pipeline caught up with the source after the workload ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Liveness {
    /// Capture and every consumer reached the end of what was committed.
    Quiesced,
    /// The quiesce timeout passed first; `pending` says what had not caught up (e.g. `consumer 2: obs/3 at 120
    /// of 180`).
    TimedOut {
        waited_ms: u64,
        pending: Vec<String>,
    },
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
    /// End-to-end latency of first deliveries (consumed − committed), ms; the report reads its percentiles.
    #[serde(skip)]
    pub(crate) latency_ms: Option<hdrhistogram::Histogram<u64>>,
}

/// What the source committed: decided by the seed alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceCounts {
    /// Transactions (the snapshot pseudo-commit not counted).
    pub commits: u64,
    /// Rows the initial snapshot read.
    pub snapshot_reads: u64,
    /// Every change, snapshot reads included.
    pub changes: u64,
    /// Changes per table, then per Debezium op letter.
    pub by_table: BTreeMap<String, BTreeMap<String, u64>>,
    /// Transactions per workload operation kind.
    pub by_operation: BTreeMap<String, u64>,
}

/// What the consumers read (timing-dependent: retries and restarts change it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsumedCounts {
    pub records: u64,
    pub tombstones: u64,
    /// Distinct source changes delivered at least once.
    pub changes_delivered: u64,
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

/// Where the cluster acknowledged a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub seq: u64,
    pub consumer: u32,
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
    pub unexplained: u64,
    /// The first few of each cause, most severe cause first (unexplained, never produced, truncated, retention,
    /// compacted).
    pub examples: Vec<LostChange>,
}

/// One extra delivery of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub change: ChangeRef,
    pub first: Delivery,
    pub again: Delivery,
}

/// `duplicate`: changes consumed more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Duplicates {
    /// Extra deliveries (a change read three times counts 2).
    pub count: u64,
    /// Distinct changes delivered more than once.
    pub changes: u64,
    pub examples: Vec<Duplicate>,
}

/// A change first delivered after a later change of the same row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reorder {
    pub table: String,
    pub key: i64,
    /// The later source change, consumed first.
    pub later: ChangeRef,
    pub later_delivery: Delivery,
    /// The earlier source change, consumed after it.
    pub earlier: ChangeRef,
    pub earlier_delivery: Delivery,
}

/// `reordered`: per-row order violations among first deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reorders {
    pub count: u64,
    pub examples: Vec<Reorder>,
}

/// Unread offsets `[start, end)` of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GapRange {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// `offset-gap`: offsets no consumer read that nothing explains.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OffsetGaps {
    /// Unexplained unread offsets.
    pub count: u64,
    /// Unread offsets that retention or DeleteRecords explain.
    pub deleted: u64,
    /// Unread offsets below a compaction point.
    pub compacted: u64,
    pub examples: Vec<GapRange>,
}

/// What a consumed record claimed to carry: its table, key, op and Debezium `source` position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimedChange {
    pub table: String,
    pub key: i64,
    pub op: &'static str,
    pub snapshot: bool,
    pub binlog_file: String,
    pub binlog_pos: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// A consumed record that resolves to no source change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phantom {
    pub delivery: Delivery,
    /// What the record claimed (none for a record that is neither a change nor a tombstone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed: Option<ClaimedChange>,
}

/// Records that resolve to no source change: the pipeline read something the source never committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Phantoms {
    pub count: u64,
    pub examples: Vec<Phantom>,
}

/// `retention-loss`: exactly which changes retention deleted before the pipeline read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionLoss {
    pub count: u64,
    /// Every one of them, in source order.
    pub changes: Vec<ChangeRef>,
    /// OFFSET_OUT_OF_RANGE answers the consumers recorded.
    pub consumer_gaps: u64,
}

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
        latency_ms: deliveries.latency_ms,
    }
}

impl Analysis {
    /// The count an `[expect]` relation refers to.
    pub fn count_var(&self, var: crate::scenario::CountVar) -> u64 {
        match var {
            crate::scenario::CountVar::TruncatedAcked => self.lost.truncated_acked,
            crate::scenario::CountVar::RetentionLost => self.retention_loss.count,
        }
    }
}

fn source_counts(history: &History) -> SourceCounts {
    let mut counts = SourceCounts::default();
    for c in &history.commits {
        if c.snapshot {
            counts.snapshot_reads += c.changes.len() as u64;
        } else {
            counts.commits += 1;
            let kind = c.kind.map_or("unknown", |k| k.name());
            *counts.by_operation.entry(kind.to_string()).or_default() += 1;
        }
        for ch in &c.changes {
            counts.changes += 1;
            *counts
                .by_table
                .entry(ch.table.to_string())
                .or_default()
                .entry(ch.op.letter().to_string())
                .or_default() += 1;
        }
    }
    counts
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

/// Step 3: the event log as offset ranges per partition.
struct EventRanges {
    truncated: HashMap<usize, RangeSet>,
    deleted: HashMap<usize, RangeSet>,
    /// The highest offset compaction cleaned below.
    compacted_below: HashMap<usize, i64>,
    counts: ClusterCounts,
}

impl EventRanges {
    fn new(history: &History, tps: &mut TopicPartitions) -> EventRanges {
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

    fn truncated(&self, p: &Placement) -> bool {
        self.truncated
            .get(&p.tp)
            .is_some_and(|r| r.contains(p.offset))
    }

    fn deleted(&self, p: &Placement) -> bool {
        self.deleted
            .get(&p.tp)
            .is_some_and(|r| r.contains(p.offset))
    }

    fn compacted(&self, p: &Placement) -> bool {
        self.compacted_below
            .get(&p.tp)
            .is_some_and(|&below| p.offset >= 0 && p.offset < below)
    }
}

/// Step 2: where each change was acknowledged.
struct AckIndex {
    /// Per dense change: its first acknowledgement.
    first: Vec<Option<Placement>>,
    /// Further acknowledgements of a change (a retry that wrote it again); rare.
    more: HashMap<usize, Vec<Placement>>,
    /// Per dense change never acknowledged: the index of its last failed attempt.
    last_error: HashMap<usize, usize>,
    /// Per row: the highest acknowledged offset of any of its changes, and its partition (for compaction).
    row_latest: HashMap<(&'static str, i64), Placement>,
}

impl AckIndex {
    fn new(history: &History, source: &SourceIndex, tps: &mut TopicPartitions) -> AckIndex {
        let mut first = vec![None; source.len()];
        let mut more: HashMap<usize, Vec<Placement>> = HashMap::new();
        let mut last_error = HashMap::new();
        let mut row_latest: HashMap<(&'static str, i64), Placement> = HashMap::new();
        for (i, p) in history.produced.iter().enumerate() {
            let Some(d) = p.change.and_then(|id| source.dense(id)) else {
                continue;
            };
            match &p.outcome {
                ProduceOutcome::Acked { partition, offset } => {
                    let placement = Placement {
                        tp: tps.id(&p.topic, *partition),
                        offset: *offset,
                    };
                    if let Some(row) = source.row(history, d) {
                        let latest = row_latest.entry(row).or_insert(placement);
                        if latest.tp == placement.tp && placement.offset > latest.offset {
                            *latest = placement;
                        }
                    }
                    if first[d].is_none() {
                        first[d] = Some(placement);
                    } else {
                        more.entry(d).or_default().push(placement);
                    }
                }
                ProduceOutcome::Failed { .. } => {
                    last_error.insert(d, i);
                }
            }
        }
        AckIndex {
            first,
            more,
            last_error,
            row_latest,
        }
    }

    fn placements(&self, d: usize) -> impl Iterator<Item = &Placement> {
        self.first[d]
            .iter()
            .chain(self.more.get(&d).into_iter().flatten())
    }
}

/// Step 4: the deliveries, resolved.
struct Deliveries {
    counts: ConsumedCounts,
    /// Per dense change: how many times it was delivered.
    delivered: Vec<u32>,
    /// Per partition: every offset read (sorted, deduplicated).
    read: HashMap<usize, Vec<i64>>,
    duplicates: Duplicates,
    reorders: Reorders,
    phantoms: Phantoms,
    latency_ms: Option<hdrhistogram::Histogram<u64>>,
}

fn delivery(c: &crate::history::Consumed) -> Delivery {
    Delivery {
        seq: c.seq,
        consumer: c.consumer,
        topic: c.topic.clone(),
        partition: c.partition,
        offset: c.offset,
    }
}

impl Deliveries {
    fn new(history: &History, source: &SourceIndex, tps: &mut TopicPartitions) -> Deliveries {
        let resolver = history.resolver();
        let mut order: Vec<usize> = (0..history.consumed.len()).collect();
        if !history.consumed.windows(2).all(|w| w[0].seq <= w[1].seq) {
            order.sort_by_key(|&i| history.consumed[i].seq);
        }
        let mut counts = ConsumedCounts::default();
        let mut delivered = vec![0u32; source.len()];
        // Per dense change: the consumed index of its first delivery (u32::MAX: none yet).
        let mut first_at = vec![u32::MAX; source.len()];
        let mut read: HashMap<usize, Vec<i64>> = HashMap::new();
        // Per row: the greatest change first-delivered so far, and where.
        let mut row_max: HashMap<(&'static str, i64), (ChangeId, usize)> = HashMap::new();
        let mut duplicates = Duplicates::default();
        let mut reorders = Reorders::default();
        let mut phantoms = Phantoms::default();
        let mut latency_ms = hdrhistogram::Histogram::<u64>::new(3).ok();

        for i in order {
            let c = &history.consumed[i];
            counts.records += 1;
            read.entry(tps.id(&c.topic, c.partition))
                .or_default()
                .push(c.offset);
            let Some(change) = &c.change else {
                if c.tombstone_key.is_some() {
                    counts.tombstones += 1;
                } else {
                    phantoms.count += 1;
                    if phantoms.examples.len() < EXAMPLES {
                        phantoms.examples.push(Phantom {
                            delivery: delivery(c),
                            claimed: None,
                        });
                    }
                }
                continue;
            };
            let resolved = resolver
                .resolve(change)
                .and_then(|id| source.dense(id).map(|d| (id, d)));
            let Some((id, d)) = resolved else {
                phantoms.count += 1;
                if phantoms.examples.len() < EXAMPLES {
                    phantoms.examples.push(Phantom {
                        delivery: delivery(c),
                        claimed: Some(ClaimedChange {
                            table: change.table.to_string(),
                            key: change.key,
                            op: change.op.letter(),
                            snapshot: change.source.snapshot,
                            binlog_file: change.source.file.clone(),
                            binlog_pos: change.source.pos,
                            gtid: change.source.gtid.clone(),
                        }),
                    });
                }
                continue;
            };
            delivered[d] = delivered[d].saturating_add(1);
            if delivered[d] > 1 {
                duplicates.count += 1;
                if delivered[d] == 2 {
                    duplicates.changes += 1;
                }
                if duplicates.examples.len() < EXAMPLES {
                    if let Some(change) = change_ref(history, source, id) {
                        duplicates.examples.push(Duplicate {
                            change,
                            first: delivery(&history.consumed[first_at[d] as usize]),
                            again: delivery(c),
                        });
                    }
                }
                continue;
            }
            first_at[d] = i as u32;
            counts.changes_delivered += 1;
            if let (Some(h), Some(commit)) = (
                latency_ms.as_mut(),
                source.commit_of(id.txn).map(|ci| &history.commits[ci]),
            ) {
                // A consumer clock behind the source's (real backends) counts as zero, not as a wrap.
                let _ = h.record(c.at_ms.saturating_sub(commit.committed_at_ms).max(0) as u64);
            }
            match row_max.entry((change.table, change.key)) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert((id, i));
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let (max, max_at) = *o.get();
                    if id > max {
                        o.insert((id, i));
                    } else {
                        reorders.count += 1;
                        if reorders.examples.len() < EXAMPLES {
                            if let (Some(later), Some(earlier)) = (
                                change_ref(history, source, max),
                                change_ref(history, source, id),
                            ) {
                                reorders.examples.push(Reorder {
                                    table: change.table.to_string(),
                                    key: change.key,
                                    later,
                                    later_delivery: delivery(&history.consumed[max_at]),
                                    earlier,
                                    earlier_delivery: delivery(c),
                                });
                            }
                        }
                    }
                }
            }
        }
        for offsets in read.values_mut() {
            offsets.sort_unstable();
            offsets.dedup();
        }
        Deliveries {
            counts,
            delivered,
            read,
            duplicates,
            reorders,
            phantoms,
            latency_ms,
        }
    }
}

struct Lost {
    summary: LostChanges,
    retention: Vec<ChangeRef>,
}

/// Step 5: changes never delivered, and why.
fn lost_changes(
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

/// Step 6: unread offsets nothing explains.
fn offset_gaps(
    history: &History,
    events: &EventRanges,
    deliveries: &Deliveries,
    tps: &TopicPartitions,
) -> OffsetGaps {
    let mut gaps = OffsetGaps::default();
    let empty = Vec::new();
    let mut ends = history.end_offsets.clone();
    ends.sort();
    ends.dedup();
    for (topic, partition, end) in &ends {
        let tp = tps.find(topic, *partition);
        let read = tp.and_then(|tp| deliveries.read.get(&tp)).unwrap_or(&empty);
        let deleted = tp.and_then(|tp| events.deleted.get(&tp));
        let compacted_below = tp
            .and_then(|tp| events.compacted_below.get(&tp))
            .copied()
            .unwrap_or(0);
        let mut next = 0i64;
        let mut unread = Vec::new();
        for &o in read.iter().filter(|&&o| o >= 0 && o < *end) {
            if o > next {
                unread.push((next, o));
            }
            next = o + 1;
        }
        if next < *end {
            unread.push((next, *end));
        }
        for (start, stop) in unread {
            // Split each unread range into what deletion explains, what compaction explains, and the rest.
            let explained = deleted.map_or_else(Vec::new, |d| d.overlaps(start, stop));
            let mut at = start;
            for (ds, de) in explained.iter().copied().chain([(stop, stop)]) {
                if ds > at {
                    let (gs, ge) = (at, ds);
                    let compacted_end = compacted_below.clamp(gs, ge);
                    gaps.compacted += (compacted_end - gs) as u64;
                    if compacted_end < ge {
                        gaps.count += (ge - compacted_end) as u64;
                        if gaps.examples.len() < EXAMPLES {
                            gaps.examples.push(GapRange {
                                topic: topic.clone(),
                                partition: *partition,
                                start: compacted_end,
                                end: ge,
                            });
                        }
                    }
                }
                gaps.deleted += (de - ds) as u64;
                at = at.max(de);
            }
        }
    }
    gaps
}
