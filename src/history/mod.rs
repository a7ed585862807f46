//! What happened in one run, recorded as data: source commits, the capture's snapshot, every record the capture
//! produced (and whether the cluster acknowledged it), every record the pipeline consumed, the ranges a consumer
//! found deleted by retention, and the cluster's event log.
//!
//! Writers (source, capture, pipeline, nemesis) append through a shared [`Recorder`]; when the run is over the
//! runner takes the finished [`History`] and hands it to the checkers. Nothing here calls back into a running
//! component: the checkers read only this and the final states.
//!
//! ## Identifying a change
//!
//! A source transaction is a [`Commit`] with a sequence number `txn` (the workload operation's `seq`; the
//! initial snapshot is the pseudo-commit with `snapshot = true`). Its row changes are numbered in commit order,
//! so a change is a [`ChangeId`] `(txn, index)`. Consumers see Debezium records, not changes: what they can read
//! is the record's table, key, op and `source` block ([`SourceRef`]: snapshot flag, binlog file/pos/row, GTID).
//! [`Resolver::resolve`] maps that back to the change — by GTID when the source has GTIDs (the local backend links
//! each commit to its `@@last_gtid`), else by binlog file and position, then by (table, key) inside the commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::OpKind;

mod events;
mod group;

pub use events::{
    BrokerId, ClusterEvent, ClusterEventKind, DeletionReason, ElectionKind, FaultKind, FenceReason,
    MemberRemoval, RollReason, TruncationReason,
};
pub use group::{CommittedOffset, GroupEvent, GroupEventKind};

/// A transaction's place in the source binlog, as Debezium's `source` block reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BinlogPosition {
    /// Binlog file name, e.g. `mysql-bin.000001` (fixed-width numbering, so names order like positions).
    pub file: String,
    /// Byte position of the transaction in that file.
    pub pos: u64,
}

/// One source transaction as committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The workload operation's `seq`; 0 for the snapshot pseudo-commit.
    pub txn: u64,
    /// The initial snapshot's reads (op `r`) rather than a transaction.
    pub snapshot: bool,
    /// What operation it was (`None` for the snapshot).
    pub kind: Option<OpKind>,
    pub patient_id: Option<i64>,
    pub position: BinlogPosition,
    /// GTID as the source spells it (MySQL `uuid:n`, MariaDB `domain-server-seq`), when it has one.
    pub gtid: Option<String>,
    pub server_id: u32,
    /// Commit time, ms since the epoch (the clock of the run).
    pub committed_at_ms: i64,
    pub changes: Vec<ChangeRecord>,
}

/// What a change does to a row, in Debezium's letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeOp {
    /// `r`: read by the initial snapshot.
    Read,
    /// `c`
    Create,
    /// `u`
    Update,
    /// `d` (followed by a tombstone on the topic)
    Delete,
}

impl ChangeOp {
    pub fn letter(self) -> &'static str {
        match self {
            ChangeOp::Read => "r",
            ChangeOp::Create => "c",
            ChangeOp::Update => "u",
            ChangeOp::Delete => "d",
        }
    }

    pub fn from_letter(letter: &str) -> Option<ChangeOp> {
        Some(match letter {
            "r" => ChangeOp::Read,
            "c" => ChangeOp::Create,
            "u" => ChangeOp::Update,
            "d" => ChangeOp::Delete,
            _ => return None,
        })
    }
}

/// One row change inside a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub table: &'static str,
    /// The row's primary key (every modeled table has a single integer key).
    pub key: i64,
    pub op: ChangeOp,
}

/// A change: the commit's `txn` and the change's index inside it. Orders like the source: snapshot reads (txn 0)
/// first, then transactions in commit order, then rows within a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChangeId {
    pub txn: u64,
    pub index: u32,
}

/// What a consumer can read from a Debezium record's `source` block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceRef {
    pub snapshot: bool,
    /// Shared: consecutive records of one binlog file (and of one transaction) hold one copy.
    pub file: Arc<str>,
    pub pos: u64,
    pub row: u32,
    pub gtid: Option<Arc<str>>,
}

/// The capture's attempt to produce one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Produced {
    /// The change it carries; `None` for records that carry no change (schema changes, schema history).
    pub change: Option<ChangeId>,
    /// A tombstone (null value) following a delete.
    pub tombstone: bool,
    pub topic: Arc<str>,
    /// Where the cluster acknowledged it, or why it did not.
    pub outcome: ProduceOutcome,
    /// When the capture handed it to the producer, ms since the epoch.
    pub sent_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProduceOutcome {
    /// Acknowledged at this partition and offset (offset -1 with acks=0: the broker does not say).
    Acked { partition: i32, offset: i64 },
    /// Not acknowledged: the producer's error, as text.
    Failed { error: String },
}

/// One record a pipeline consumer read and handed to the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    /// Global consumption order over all consumers.
    pub seq: u64,
    pub consumer: u32,
    /// Shared by every record of a topic (a million records hold a handful of copies).
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Decoded from the record: the table, the key, the op and the source block. `None` for a tombstone.
    pub change: Option<ConsumedChange>,
    /// The key for a tombstone (its row's primary key).
    pub tombstone_key: Option<i64>,
    /// When it was read, ms since the epoch (the run's clock).
    pub at_ms: i64,
    /// The record's timestamp (CreateTime: when the capture produced it).
    pub record_timestamp_ms: i64,
}

/// The change part of a consumed Debezium record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedChange {
    pub table: &'static str,
    pub key: i64,
    pub op: ChangeOp,
    pub source: SourceRef,
    /// Debezium's `source.ts_ms`: the commit time at the source.
    pub source_ts_ms: i64,
}

/// Offsets a consumer could not read because retention (or DeleteRecords) had removed them: it asked for
/// `requested`, the broker answered OFFSET_OUT_OF_RANGE, and the log started at `log_start_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionGap {
    pub consumer: u32,
    pub topic: String,
    pub partition: i32,
    pub requested: i64,
    pub log_start_offset: i64,
    pub at_ms: i64,
}

/// A fault the nemesis injected (or undid) and the target it resolved to when it fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRecord {
    /// When it was applied, ms since the epoch (the run's clock).
    pub at_ms: i64,
    /// `kill`, `restart`, `heal`, … as the scenario spells actions.
    pub action: String,
    /// The target as the scenario wrote it (`leader of dbserver1.openmrs.obs partition 0`).
    pub target: String,
    /// What the target was when the fault fired (`broker 2`), or why nothing was (`no leader`).
    pub resolved: String,
    /// When it was due, ms from the start of the stream.
    pub due_ms: u64,
    /// The `[[faults]]` entry (0-based) it comes from; `None` for the restarts after the stream.
    pub fault: Option<usize>,
    pub phase: FaultPhase,
    /// Why it could not be applied (the run goes on; the checkers judge what happened).
    pub error: Option<String>,
}

/// Why the nemesis did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPhase {
    /// A `[[faults]]` entry at its `at`.
    Scheduled,
    /// A fault asked for through a live run's handle ([`crate::live::LiveRun`]), when it was asked.
    Live,
    /// A `[[faults]]` entry with `after`, when its consumer event came (timing decides when).
    Event,
    /// The end of a fault's `duration`: the restart, heal or resume it implies.
    Undone,
    /// After the stream: a disturbance the schedule left in place, undone so the pipeline can quiesce.
    AfterStream,
    /// After the stream: the capture had failed on its own during the faults (a send was not acknowledged)
    /// and is restarted, as an operator restarts a failed Connect task. Timing decides whether it happens.
    Recovery,
}

impl FaultPhase {
    pub fn name(self) -> &'static str {
        match self {
            FaultPhase::Scheduled => "scheduled",
            FaultPhase::Live => "live",
            FaultPhase::Event => "on event",
            FaultPhase::Undone => "undone",
            FaultPhase::AfterStream => "after stream",
            FaultPhase::Recovery => "recovery",
        }
    }
}

/// Everything recorded in one run.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub seed: u64,
    /// Source commits in commit order, the snapshot pseudo-commit (when capture took one) first.
    pub commits: Vec<Commit>,
    pub produced: Vec<Produced>,
    pub consumed: Vec<Consumed>,
    pub retention_gaps: Vec<RetentionGap>,
    pub faults: Vec<FaultRecord>,
    /// What the consumer group's members saw and committed (group mode only).
    pub group: Vec<GroupEvent>,
    /// The cluster's event log at the end of the run (empty for backends that cannot tell).
    pub cluster_events: Vec<ClusterEvent>,
    /// Log end offset of every partition of the change topics at quiescence: `(topic, partition) → end`.
    pub end_offsets: Vec<(String, i32, i64)>,
}

impl History {
    /// Every source change with its id, in source order.
    pub fn changes(&self) -> impl Iterator<Item = (ChangeId, &Commit, &ChangeRecord)> {
        self.commits.iter().flat_map(|c| {
            c.changes.iter().enumerate().map(move |(i, ch)| {
                (
                    ChangeId {
                        txn: c.txn,
                        index: i as u32,
                    },
                    c,
                    ch,
                )
            })
        })
    }

    /// An index that maps what consumers read back to source changes.
    pub fn resolver(&self) -> Resolver<'_> {
        let mut by_gtid = HashMap::new();
        let mut by_position = HashMap::new();
        let mut snapshot = None;
        let mut snapshot_rows = HashMap::new();
        for (i, c) in self.commits.iter().enumerate() {
            if c.snapshot {
                snapshot = Some(i);
                for (j, ch) in c.changes.iter().enumerate() {
                    snapshot_rows.insert((ch.table, ch.key), j as u32);
                }
                continue;
            }
            if let Some(g) = &c.gtid {
                by_gtid.insert(g.as_str(), i);
            }
            by_position.insert((c.position.file.as_str(), c.position.pos), i);
        }
        Resolver {
            history: self,
            by_gtid,
            by_position,
            snapshot,
            snapshot_rows,
        }
    }
}

/// Shared copies of the few distinct strings records repeat — topics, binlog file names, a transaction's GTID —
/// so a million records hold a handful of copies instead of a million. Keeps the `cap` most recently seen.
#[derive(Debug)]
pub(crate) struct Interner {
    recent: std::collections::VecDeque<Arc<str>>,
    cap: usize,
}

impl Interner {
    pub(crate) fn new(cap: usize) -> Interner {
        Interner {
            recent: std::collections::VecDeque::with_capacity(cap),
            cap,
        }
    }

    pub(crate) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(known) = self.recent.iter().rev().find(|k| ***k == *s) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(s);
        if self.recent.len() >= self.cap {
            self.recent.pop_front();
        }
        self.recent.push_back(new.clone());
        new
    }
}

/// Maps a consumed record's (table, key, source block) to the change it carries. Built once per check.
pub struct Resolver<'h> {
    history: &'h History,
    by_gtid: HashMap<&'h str, usize>,
    by_position: HashMap<(&'h str, u64), usize>,
    snapshot: Option<usize>,
    /// The snapshot reads every row once: (table, key) → index, so resolving a read is not a scan.
    snapshot_rows: HashMap<(&'static str, i64), u32>,
}

impl Resolver<'_> {
    /// The change a consumed record carries, or `None` when no commit matches (a record the source never
    /// committed: itself an anomaly).
    pub fn resolve(&self, change: &ConsumedChange) -> Option<ChangeId> {
        if change.source.snapshot || change.op == ChangeOp::Read {
            let c = &self.history.commits[self.snapshot?];
            let index = *self.snapshot_rows.get(&(change.table, change.key))?;
            return Some(ChangeId { txn: c.txn, index });
        }
        let commit = {
            change
                .source
                .gtid
                .as_deref()
                .and_then(|g| self.by_gtid.get(g))
                .or_else(|| {
                    self.by_position
                        .get(&(&*change.source.file, change.source.pos))
                })
                .copied()?
        };
        let c = &self.history.commits[commit];
        let index = c
            .changes
            .iter()
            .position(|ch| ch.table == change.table && ch.key == change.key)?;
        Some(ChangeId {
            txn: c.txn,
            index: index as u32,
        })
    }
}

/// The shared, appendable history of a running run. Cheap to clone; every writer appends under a short lock.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<History>>,
}

impl Recorder {
    pub fn new(seed: u64) -> Recorder {
        Recorder {
            inner: Arc::new(Mutex::new(History {
                seed,
                ..History::default()
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut History) -> T) -> T {
        // A writer that panicked mid-append leaves a whole entry or none: the history stays usable.
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut h)
    }

    pub fn commit(&self, commit: Commit) {
        self.with(|h| h.commits.push(commit));
    }

    pub fn produced(&self, produced: Produced) {
        self.with(|h| h.produced.push(produced));
    }

    /// Appends a consumed record, giving it the next global sequence number.
    pub fn consumed(&self, mut consumed: Consumed) {
        self.with(|h| {
            consumed.seq = h.consumed.len() as u64;
            h.consumed.push(consumed)
        });
    }

    /// Appends many consumed records at once (one lock), numbering them in the order given.
    pub fn consumed_batch(&self, batch: impl IntoIterator<Item = Consumed>) {
        self.with(|h| {
            for mut c in batch {
                c.seq = h.consumed.len() as u64;
                h.consumed.push(c);
            }
        });
    }

    pub fn retention_gap(&self, gap: RetentionGap) {
        self.with(|h| h.retention_gaps.push(gap));
    }

    pub fn group(&self, event: GroupEvent) {
        self.with(|h| h.group.push(event));
    }

    /// The group events so far.
    pub fn snapshot_group(&self) -> Vec<GroupEvent> {
        self.with(|h| h.group.clone())
    }

    pub fn fault(&self, fault: FaultRecord) {
        self.with(|h| h.faults.push(fault));
    }

    /// The history so far (a copy; the run may keep recording).
    pub fn snapshot(&self) -> History {
        self.with(|h| h.clone())
    }

    /// Ends recording and returns the history, with the cluster's event log and end offsets attached.
    pub fn finish(
        &self,
        cluster_events: Vec<ClusterEvent>,
        end_offsets: Vec<(String, i32, i64)>,
    ) -> History {
        self.with(|h| {
            let mut done = std::mem::take(h);
            // The taken history carries the seed; the emptied recorder keeps it too.
            h.seed = done.seed;
            done.cluster_events = cluster_events;
            done.end_offsets = end_offsets;
            done
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_history_keeps_the_recorders_seed() {
        let recorder = Recorder::new(42);
        let end_offsets = vec![("obs".to_string(), 0, 7)];
        let history = recorder.finish(Vec::new(), end_offsets.clone());
        assert_eq!(history.seed, 42);
        assert_eq!(history.end_offsets, end_offsets);
        assert_eq!(recorder.snapshot().seed, 42, "the recorder keeps its seed");
    }

    #[test]
    fn an_interner_shares_what_it_saw_lately_and_forgets_the_oldest() {
        let mut i = Interner::new(2);
        let a = i.get("binlog.000001");
        assert!(Arc::ptr_eq(&a, &i.get("binlog.000001")));
        i.get("binlog.000002");
        assert!(Arc::ptr_eq(&a, &i.get("binlog.000001")));
        i.get("binlog.000003");
        assert!(!Arc::ptr_eq(&a, &i.get("binlog.000001")), "the oldest went");
        assert_eq!(&*i.get("x"), "x");
    }
}
