//! `offset-gap` (step 6): offsets of the change topics no consumer read and no deletion or compaction explains.

use serde::Serialize;

use super::deliveries::Deliveries;
use super::events::EventRanges;
use super::index::TopicPartitions;
use super::EXAMPLES;
use crate::history::History;

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
    /// Consumer groups: unread offsets an acknowledged commit passed (read, never written: the lost checker
    /// blames the commit).
    #[serde(skip_serializing_if = "is_zero")]
    pub committed_past: u64,
    pub examples: Vec<GapRange>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Step 6: unread offsets nothing explains.
pub(super) fn offset_gaps(
    history: &History,
    events: &EventRanges,
    deliveries: &Deliveries,
    tps: &TopicPartitions,
) -> OffsetGaps {
    let mut gaps = OffsetGaps::default();
    let empty = Vec::new();
    let committed = super::lost::committed(history);
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
        let committed_below = committed
            .get(&(topic.as_str(), *partition))
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
                    let committed_end = committed_below.clamp(compacted_end, ge);
                    gaps.committed_past += (committed_end - compacted_end) as u64;
                    if committed_end < ge {
                        gaps.count += (ge - committed_end) as u64;
                        if gaps.examples.len() < EXAMPLES {
                            gaps.examples.push(GapRange {
                                topic: topic.clone(),
                                partition: *partition,
                                start: committed_end,
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
