//! Step 2: where the cluster acknowledged each change (and the last produce error of those it never did).

use std::collections::HashMap;

use super::index::{Placement, SourceIndex, TopicPartitions};
use crate::history::{History, ProduceOutcome};

/// Step 2: where each change was acknowledged.
pub(super) struct AckIndex {
    /// Per dense change: its first acknowledgement.
    first: Vec<Option<Placement>>,
    /// Further acknowledgements of a change (a retry that wrote it again); rare.
    more: HashMap<usize, Vec<Placement>>,
    /// Per dense change never acknowledged: the index of its last failed attempt.
    pub(super) last_error: HashMap<usize, usize>,
    /// Per row: the highest acknowledged offset of any of its changes, and its partition (for compaction).
    pub(super) row_latest: HashMap<(&'static str, i64), Placement>,
}

impl AckIndex {
    pub(super) fn new(
        history: &History,
        source: &SourceIndex,
        tps: &mut TopicPartitions,
    ) -> AckIndex {
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

    pub(super) fn placements(&self, d: usize) -> impl Iterator<Item = &Placement> {
        self.first[d]
            .iter()
            .chain(self.more.get(&d).into_iter().flatten())
    }
}
