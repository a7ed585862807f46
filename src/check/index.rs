//! Indexes the checkers build once per analysis: dense change numbers, interned partitions, and merged offset
//! ranges with logarithmic lookup. They exist so that no checker scans the history once per change.

use std::collections::HashMap;

use crate::history::{ChangeId, History};

/// Numbers every source change densely, in history order (the order of [`History::changes`]).
pub(crate) struct SourceIndex {
    commit_of_txn: HashMap<u64, usize>,
    /// Per commit: the dense number of its first change.
    base: Vec<usize>,
    len: usize,
}

impl SourceIndex {
    pub(crate) fn new(history: &History) -> SourceIndex {
        let mut commit_of_txn = HashMap::with_capacity(history.commits.len());
        let mut base = Vec::with_capacity(history.commits.len());
        let mut len = 0;
        for (i, c) in history.commits.iter().enumerate() {
            // A txn recorded twice keeps its first commit, as the resolver's ids point at one commit only.
            commit_of_txn.entry(c.txn).or_insert(i);
            base.push(len);
            len += c.changes.len();
        }
        SourceIndex {
            commit_of_txn,
            base,
            len,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn commit_of(&self, txn: u64) -> Option<usize> {
        self.commit_of_txn.get(&txn).copied()
    }

    /// The dense number of a change, or `None` if the history has no such change.
    pub(crate) fn dense(&self, id: ChangeId) -> Option<usize> {
        let c = self.commit_of(id.txn)?;
        let next = self.base.get(c + 1).copied().unwrap_or(self.len);
        let d = self.base[c] + id.index as usize;
        (d < next).then_some(d)
    }

    /// The row a dense change touches.
    pub(crate) fn row(&self, history: &History, d: usize) -> Option<(&'static str, i64)> {
        let c = self.base.partition_point(|&b| b <= d).checked_sub(1)?;
        let ch = history.commits[c].changes.get(d - self.base[c])?;
        Some((ch.table, ch.key))
    }
}

/// Interned (topic, partition) pairs, so per-partition maps key on a small integer.
#[derive(Default)]
pub(crate) struct TopicPartitions {
    ids: HashMap<String, HashMap<i32, usize>>,
    names: Vec<(String, i32)>,
}

impl TopicPartitions {
    pub(crate) fn id(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(id) = self.find(topic, partition) {
            return id;
        }
        let id = self.names.len();
        self.names.push((topic.to_string(), partition));
        self.ids
            .entry(topic.to_string())
            .or_default()
            .insert(partition, id);
        id
    }

    pub(crate) fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        self.ids.get(topic)?.get(&partition).copied()
    }

    pub(crate) fn name(&self, id: usize) -> (&str, i32) {
        let (t, p) = &self.names[id];
        (t, *p)
    }
}

/// A record's place in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) tp: usize,
    pub(crate) offset: i64,
}

/// A union of half-open offset ranges, merged and sorted.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeSet {
    ranges: Vec<(i64, i64)>,
}

impl RangeSet {
    pub(crate) fn new(mut ranges: Vec<(i64, i64)>) -> RangeSet {
        ranges.retain(|(s, e)| s < e);
        ranges.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        RangeSet { ranges: merged }
    }

    pub(crate) fn contains(&self, offset: i64) -> bool {
        let i = self.ranges.partition_point(|&(s, _)| s <= offset);
        i > 0 && offset < self.ranges[i - 1].1
    }

    /// The parts of `[start, end)` the set covers, in order.
    pub(crate) fn overlaps(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        let first = self.ranges.partition_point(|&(_, e)| e <= start);
        self.ranges[first..]
            .iter()
            .take_while(|&&(s, _)| s < end)
            .map(|&(s, e)| (s.max(start), e.min(end)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_answer_membership_and_overlap() {
        let set = RangeSet::new(vec![(5, 8), (0, 2), (7, 10), (12, 12), (20, 15)]);
        assert_eq!(set.ranges, vec![(0, 2), (5, 10)]);
        let inside: Vec<i64> = (-1..12).filter(|&o| set.contains(o)).collect();
        assert_eq!(inside, vec![0, 1, 5, 6, 7, 8, 9]);
        assert_eq!(set.overlaps(1, 6), vec![(1, 2), (5, 6)]);
        assert_eq!(set.overlaps(2, 5), vec![]);
        assert_eq!(set.overlaps(9, 30), vec![(9, 10)]);
    }
}
