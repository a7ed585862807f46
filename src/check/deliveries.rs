//! Step 4: the deliveries resolved in consumption order, in one pass that counts what was consumed, times first
//! deliveries, and finds the duplicates, reorders and phantoms.

use std::collections::HashMap;

use serde::Serialize;

use super::index::{SourceIndex, TopicPartitions};
use super::{
    change_ref, ClaimedChange, Duplicate, Duplicates, Phantom, Phantoms, Reorder, Reorders,
    EXAMPLES,
};
use crate::history::{ChangeId, History};

/// What the consumers read (timing-dependent: retries and restarts change it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsumedCounts {
    pub records: u64,
    pub tombstones: u64,
    /// Distinct source changes delivered at least once.
    pub changes_delivered: u64,
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

/// Step 4: the deliveries, resolved.
pub(super) struct Deliveries {
    pub(super) counts: ConsumedCounts,
    /// Per dense change: how many times it was delivered.
    pub(super) delivered: Vec<u32>,
    /// Per partition: every offset read (sorted, deduplicated).
    pub(super) read: HashMap<usize, Vec<i64>>,
    pub(super) duplicates: Duplicates,
    pub(super) reorders: Reorders,
    pub(super) phantoms: Phantoms,
    pub(super) latency_ms: Option<hdrhistogram::Histogram<u64>>,
}

fn delivery(c: &crate::history::Consumed) -> Delivery {
    Delivery {
        seq: c.seq,
        consumer: c.consumer,
        topic: c.topic.to_string(),
        partition: c.partition,
        offset: c.offset,
    }
}

impl Deliveries {
    pub(super) fn new(
        history: &History,
        source: &SourceIndex,
        tps: &mut TopicPartitions,
    ) -> Deliveries {
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
                            binlog_file: change.source.file.to_string(),
                            binlog_pos: change.source.pos,
                            gtid: change.source.gtid.as_deref().map(str::to_string),
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
                let first = &history.consumed[first_at[d] as usize];
                let cause = super::duplicates::cause(history, first, c);
                match cause {
                    Some((true, _)) => duplicates.after_rebalance += 1,
                    Some((false, _)) => duplicates.replayed += 1,
                    None => {}
                }
                if duplicates.examples.len() < EXAMPLES {
                    if let Some(change) = change_ref(history, source, id) {
                        duplicates.examples.push(Duplicate {
                            change,
                            first: delivery(first),
                            again: delivery(c),
                            cause: cause.map(|(_, why)| why),
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
