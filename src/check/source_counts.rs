//! Step 1's counts: what the source committed, per table, op and operation kind (decided by the seed alone).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::History;

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

pub(super) fn source_counts(history: &History) -> SourceCounts {
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
