//! Replication inside a partition: followers copy their leader's log asynchronously, the leader tracks how far
//! each follower got, the ISR shrinks and grows, the high watermark follows the ISR, and a follower whose log
//! diverged truncates. Kafka 3.9's rules (Partition.scala, ReplicaFetcherThread):
//!
//! - One replica fetcher task per cluster runs rounds in real time: in each round every follower that can reach
//!   its leader copies what the leader has beyond its own log end offset (up to `replica.fetch.max.bytes`). It
//!   waits for the next append, or `replica.fetch.wait.max.ms`, between rounds, plus an optional harness delay
//!   (`replica_fetch_delay`) that widens the window in which a leader holds records no follower has. A copy is
//!   never made inside Produce: acks=1 data can be lost, as in Kafka.
//! - Copies share the leader's record buffers (`bytes::Bytes`): replication factor 3 costs handles, not bytes.
//! - Before copying, the follower checks its last leader epoch against the leader's epoch cache — the result
//!   Kafka's DivergingEpoch gives (KIP-101/279/320) — and truncates to the leader's end offset for that epoch,
//!   walking back through older epochs.
//! - HW = min log end offset over the ISR as the leader last saw it; it stands still while the ISR is smaller than
//!   `min.insync.replicas` (KAFKA-15583, Kafka 3.7+), and never moves back on the leader.
//! - A follower leaves the ISR when it has not been caught up for `replica.lag.time.max.ms` of cluster clock time
//!   (checked every half of it) and rejoins once its log end offset reaches the HW and the current epoch's start.
//!   With a virtual clock, the check first lets every follower that can fetch finish fetching, so a clock step
//!   only makes a follower lag when a fault keeps it from fetching.

use std::sync::Arc;
use std::time::Duration;

use super::disk::DiskLog;
use super::log::Log;
use super::producer_state::{ProducerBatch, ProducerStates};
use super::state::{ClusterCore, PartitionState};
use super::BrokerId;
use crate::history::{ClusterEventKind, TruncationReason};

mod settings;

pub use settings::MetadataMode;
pub(crate) use settings::ReplicationSettings;

/// Whom an isolated broker cannot reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Neither clients nor peers (nor the controller quorum).
    FromEveryone,
    /// Peers and the controller quorum only; clients still reach it.
    FromPeers,
}

/// A broker process's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Process {
    Running,
    Stopped,
    Killed,
    Crashed,
}

/// One broker's process and network state, and whether the controller counts it as alive.
#[derive(Clone, Debug)]
pub(crate) struct BrokerLiveness {
    pub id: BrokerId,
    pub process: Process,
    pub paused: bool,
    pub isolation: Option<Isolation>,
    /// Added before every response to a client.
    pub latency: Duration,
    /// The controller does not count it as alive (session expired, stopped, or not registered again yet).
    pub fenced: bool,
    pub last_heartbeat_ms: i64,
}

impl BrokerLiveness {
    pub(crate) fn new(id: BrokerId, now_ms: i64) -> BrokerLiveness {
        BrokerLiveness {
            id,
            process: Process::Running,
            paused: false,
            isolation: None,
            latency: Duration::ZERO,
            fenced: false,
            last_heartbeat_ms: now_ms,
        }
    }

    /// Clients get answers (a paused or fully isolated broker holds requests; a dead one has no listener).
    pub(crate) fn serves_clients(&self) -> bool {
        self.process == Process::Running
            && !self.paused
            && self.isolation != Some(Isolation::FromEveryone)
    }

    /// It can fetch from, be fetched from, and heartbeat to the controller.
    pub(crate) fn reaches_peers(&self) -> bool {
        self.process == Process::Running && !self.paused && self.isolation.is_none()
    }
}

/// One broker's replica of a partition: its log, its leader-epoch cache, and what the leader knows of it.
pub(crate) struct Replica {
    pub broker: BrokerId,
    pub log: Log,
    /// (LeaderEpoch, start offset), ascending: Kafka's leader-epoch checkpoint.
    epochs: Vec<(i32, i64)>,
    /// The leader's view: this follower's log end offset at its last fetch in the current leader epoch.
    pub fetched_leo: Option<i64>,
    /// The leader's view: clock time this follower was last caught up.
    pub last_caught_up_ms: i64,
    /// Everything below it survives a machine crash.
    pub flushed_offset: i64,
    /// What this replica's log says about idempotent producers; kept on followers too, so a new leader dedups.
    pub producers: ProducerStates,
}

impl Replica {
    pub(crate) fn new(broker: BrokerId, log: Log) -> Replica {
        Replica {
            broker,
            producers: ProducerStates::rebuild(&log),
            log,
            epochs: Vec::new(),
            fetched_leo: None,
            last_caught_up_ms: 0,
            flushed_offset: 0,
        }
    }

    /// A new leader epoch starts at the current log end offset (Kafka assigns it when the replica becomes leader).
    pub(crate) fn begin_epoch(&mut self, epoch: i32) {
        let start = self.log.log_end_offset();
        self.note_epoch(epoch, start);
    }

    /// Records that `epoch` starts at `start`, unless the cache already has it (or a later one).
    pub(crate) fn begin_epoch_at(&mut self, epoch: i32, start: i64) {
        self.note_epoch(epoch, start);
    }

    /// A replica read back from the log directory: its epoch cache from the `leader-epoch-checkpoint`, and
    /// everything on disk counts as flushed.
    pub(crate) fn restored(broker: BrokerId, log: Log, epochs: Vec<(i32, i64)>) -> Replica {
        let mut replica = Replica::new(broker, log);
        replica.epochs = epochs;
        replica.flushed_offset = replica.log.log_end_offset();
        replica
    }

    fn note_epoch(&mut self, epoch: i32, start: i64) {
        match self.epochs.last() {
            Some(&(last, _)) if last >= epoch => {}
            _ => {
                self.epochs.push((epoch, start));
                self.checkpoint_epochs();
            }
        }
    }

    /// Kafka writes the `leader-epoch-checkpoint` whenever the cache changes.
    fn checkpoint_epochs(&mut self) {
        self.log.checkpoint_leader_epochs(&self.epochs);
    }

    /// Forgets every epoch (the log starts over or shares nothing with the leader's).
    fn clear_epochs(&mut self) {
        if !self.epochs.is_empty() {
            self.epochs.clear();
            self.checkpoint_epochs();
        }
    }

    /// The latest epoch this replica holds data or leadership for.
    pub(crate) fn last_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|&(e, _)| e)
    }

    /// Start offset of `epoch` in this replica's cache.
    pub(crate) fn epoch_start(&self, epoch: i32) -> Option<i64> {
        self.epochs
            .iter()
            .find(|&&(e, _)| e == epoch)
            .map(|&(_, s)| s)
    }

    /// OffsetsForLeaderEpoch on this replica: the largest epoch ≤ `epoch` it knows and the offset where that epoch
    /// ended (the next epoch's start, or the log end offset); `None` when it knows no such epoch.
    pub(crate) fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let index = self.epochs.iter().rposition(|&(e, _)| e <= epoch)?;
        let end = self
            .epochs
            .get(index + 1)
            .map_or(self.log.log_end_offset(), |&(_, s)| s);
        Some((self.epochs[index].0, end))
    }

    /// Drops epochs above `max_epoch` and those starting at or after the log end offset (after a truncation).
    fn trim_epochs(&mut self, max_epoch: i32) {
        let end = self.log.log_end_offset();
        let before = self.epochs.len();
        self.epochs.retain(|&(e, s)| e <= max_epoch && s < end);
        if self.epochs.len() != before {
            self.checkpoint_epochs();
        }
    }

    /// Writes this (new) replica's log through to `disk` from now on, starting with its epoch cache.
    pub(crate) fn attach_disk(&mut self, disk: DiskLog) {
        self.log.attach_disk(disk);
        self.checkpoint_epochs();
    }

    /// What survives a machine crash: everything flushed, and every rolled segment (Kafka flushes those).
    pub(crate) fn durable_offset(&self) -> i64 {
        self.flushed_offset
            .max(self.log.active_segment_base_offset())
            .min(self.log.log_end_offset())
    }

    /// A machine crash: the unflushed tail is gone, in memory and (with a log directory) in the segment files, as
    /// if the page cache were lost. Returns the removed range.
    pub(crate) fn crash(&mut self) -> Option<(i64, i64)> {
        let removed = self.log.truncate_to(self.durable_offset());
        self.flushed_offset = self.log.log_end_offset();
        self.trim_epochs(i32::MAX);
        if removed.is_some() {
            self.producers = ProducerStates::rebuild(&self.log);
        }
        removed
    }

    /// A clean stop or the flush timer: everything written reaches the files and is durable.
    pub(crate) fn flush(&mut self) {
        // A failed write is kept by the log (later appends report it); what did reach the file is durable.
        if self.log.flush().is_ok() {
            self.flushed_offset = self.log.log_end_offset();
        }
    }
}

/// The partition leader epoch stored in a batch (bytes 12..16), as the follower's epoch cache learns it.
fn batch_epoch(data: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = data.get(12..16)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

/// Where a partition is, for events.
pub(crate) struct PartitionRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
}

impl PartitionRef<'_> {
    fn truncated(
        &self,
        broker: BrokerId,
        (start_offset, end_offset): (i64, i64),
        reason: TruncationReason,
    ) -> ClusterEventKind {
        ClusterEventKind::Truncated {
            topic: self.topic.to_string(),
            partition: self.partition,
            broker,
            start_offset,
            end_offset,
            reason,
        }
    }
}

/// The truncation step of a follower fetch (DivergingEpoch): walks back through the follower's epochs until its
/// log is a prefix of the leader's. Returns whether anything was removed.
fn truncate_diverged(
    state: &mut PartitionState,
    leader: usize,
    follower: usize,
    at: &PartitionRef<'_>,
    events: &mut Vec<ClusterEventKind>,
) -> bool {
    let mut changed = false;
    // Each step removes at least one epoch from the follower's cache, so this ends; the cap is a safety net.
    for _ in 0..1_000 {
        let f = &state.replicas[follower];
        let Some(f_epoch) = f.last_epoch() else { break };
        let f_leo = f.log.log_end_offset();
        let (l_epoch, l_end) = state.replicas[leader]
            .end_offset_for_epoch(f_epoch)
            .unwrap_or((-1, state.replicas[leader].log.log_start_offset()));
        if l_epoch == f_epoch && l_end >= f_leo {
            break;
        }
        // KIP-279: the smaller of the leader's end for that epoch and the follower's own end for it.
        let f_end = if l_epoch < 0 {
            f_leo
        } else {
            f.end_offset_for_epoch(l_epoch)
                .map_or(f.log.log_start_offset(), |(_, end)| end)
        };
        let target = l_end.min(f_end).min(f_leo);
        let f = &mut state.replicas[follower];
        let truncated = f.log.truncate_to(target);
        // The cut reaches the files; what is written after it is not durable until the next flush.
        f.flushed_offset = f.flushed_offset.min(f.log.log_end_offset());
        if let Some(range) = truncated {
            events.push(at.truncated(f.broker, range, TruncationReason::DivergingEpoch));
            f.producers = ProducerStates::rebuild(&f.log);
            changed = true;
        }
        let before = f.epochs.len();
        f.trim_epochs(l_epoch.max(-1));
        if l_epoch == f_epoch || l_epoch < 0 || f.epochs.len() == before {
            if l_epoch < 0 {
                f.clear_epochs();
            }
            break;
        }
    }
    changed
}

/// One fetch by `follower` from the partition's current leader: truncation, copy, the leader's bookkeeping (ISR
/// expansion, HW). The caller has checked that both brokers can reach each other. Returns whether anything changed.
pub(crate) fn fetch_once(
    state: &mut PartitionState,
    follower: BrokerId,
    min_insync_replicas: i64,
    max_bytes: usize,
    now_ms: i64,
    at: &PartitionRef<'_>,
    events: &mut Vec<ClusterEventKind>,
) -> bool {
    let Some(leader_id) = state.leader else {
        return false;
    };
    let positions = (
        state.replicas.iter().position(|r| r.broker == leader_id),
        state.replicas.iter().position(|r| r.broker == follower),
    );
    let (Some(li), Some(fi)) = positions else {
        return false;
    };
    if li == fi {
        return false;
    }
    let mut changed = truncate_diverged(state, li, fi, at, events);

    let (leader_lso, leader_leo, leader_hw) = {
        let log = &state.replicas[li].log;
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark(),
        )
    };
    let f_leo = state.replicas[fi].log.log_end_offset();
    if f_leo < leader_lso {
        let f = &mut state.replicas[fi];
        let lost = (f.log.log_start_offset(), f_leo);
        f.log.reset_to(leader_lso, now_ms);
        f.clear_epochs();
        f.producers = ProducerStates::default();
        f.flushed_offset = leader_lso;
        if lost.0 < lost.1 {
            events.push(at.truncated(follower, lost, TruncationReason::OffsetOutOfRange));
        }
        changed = true;
    }
    let f_leo = state.replicas[fi].log.log_end_offset();
    if f_leo < leader_leo {
        let batches = state.replicas[li].log.batches_from(f_leo, max_bytes);
        let f = &mut state.replicas[fi];
        let mut ignored = Vec::new();
        for stored in batches {
            let bytes = match stored.data.get() {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a batch to replicate; the follower waits");
                    break;
                }
            };
            let epoch = batch_epoch(&bytes);
            let producer = ProducerBatch::of(&bytes);
            let (base, last) = (stored.base_offset, stored.last_offset);
            if !f.log.append_replica(stored, now_ms, &mut ignored) {
                break;
            }
            if let Some(producer) = producer {
                f.producers.record(&producer, base, last);
            }
            if let Some(epoch) = epoch {
                f.note_epoch(epoch, base);
            }
            changed = true;
        }
    }

    // The leader's view of this follower, then the follower's view of the leader (HW, log start offset).
    let f = &mut state.replicas[fi];
    let f_leo = f.log.log_end_offset();
    f.fetched_leo = Some(f_leo);
    if f_leo >= leader_leo {
        f.last_caught_up_ms = now_ms;
    }
    f.log.set_high_watermark(leader_hw.min(f_leo));
    if leader_lso > f.log.log_start_offset() {
        let upto = leader_lso.min(f.log.high_watermark());
        let _ = f.log.delete_records_before(upto, now_ms, &mut Vec::new());
    }

    let leader_epoch_start = state.replicas[li]
        .epoch_start(state.leader_epoch)
        .unwrap_or(0);
    if !state.isr.contains(&follower) && f_leo >= leader_hw && f_leo >= leader_epoch_start {
        state.isr.push(follower);
        let order = state.assignment.clone();
        state.isr.sort_by_key(|b| order.iter().position(|a| a == b));
        events.push(ClusterEventKind::IsrExpanded {
            topic: at.topic.to_string(),
            partition: at.partition,
            added: follower,
            isr: state.isr.clone(),
        });
        changed = true;
    }
    advance_high_watermark(state, min_insync_replicas) || changed
}

/// Moves the leader's HW to the minimum log end offset over the ISR, unless the ISR is below
/// `min.insync.replicas`. Returns whether it moved.
pub(crate) fn advance_high_watermark(state: &mut PartitionState, min_insync_replicas: i64) -> bool {
    let Some(leader) = state.leader else {
        return false;
    };
    if (state.isr.len() as i64) < min_insync_replicas {
        return false;
    }
    let Some(leader_replica) = state.replica(leader) else {
        return false;
    };
    let current = leader_replica.log.high_watermark();
    let mut candidate = leader_replica.log.log_end_offset();
    for member in &state.isr {
        if *member == leader {
            continue;
        }
        let seen = state
            .replica(*member)
            .and_then(|r| r.fetched_leo)
            .unwrap_or(current);
        candidate = candidate.min(seen);
    }
    if candidate > current {
        if let Some(r) = state.replica_mut(leader) {
            r.log.set_high_watermark(candidate);
        }
        return true;
    }
    false
}

/// The leader's periodic ISR check: followers not caught up for `replica.lag.time.max.ms` leave the ISR.
fn shrink_isr(
    state: &mut PartitionState,
    now_ms: i64,
    lag_max_ms: i64,
    at: &PartitionRef<'_>,
    events: &mut Vec<ClusterEventKind>,
) -> bool {
    let Some(leader) = state.leader else {
        return false;
    };
    let Some(leader_leo) = state.replica(leader).map(|r| r.log.log_end_offset()) else {
        return false;
    };
    let lagging: Vec<BrokerId> = state
        .isr
        .iter()
        .copied()
        .filter(|&b| b != leader)
        .filter(|&b| {
            state.replica(b).is_some_and(|r| {
                r.fetched_leo != Some(leader_leo)
                    && now_ms.saturating_sub(r.last_caught_up_ms) > lag_max_ms
            })
        })
        .collect();
    for removed in &lagging {
        state.isr.retain(|b| b != removed);
        events.push(ClusterEventKind::IsrShrunk {
            topic: at.topic.to_string(),
            partition: at.partition,
            removed: *removed,
            isr: state.isr.clone(),
        });
    }
    !lagging.is_empty()
}

/// One fetch round of every follower that can reach its leader. Returns whether anything changed.
pub(crate) fn replicate_round(core: &ClusterCore) -> bool {
    let live = core.liveness();
    let can_fetch = |b: BrokerId| {
        live.iter()
            .any(|l| l.id == b && l.reaches_peers() && !l.fenced)
    };
    let now = core.clock.now_ms();
    let max_bytes = core.defaults.replication.replica_fetch_max_bytes;
    let mut events = Vec::new();
    let mut changed = false;
    for topic in core.topics() {
        if topic.replication_factor <= 1 {
            continue;
        }
        let min_isr = topic.config.min_insync_replicas;
        for partition in &topic.partitions {
            let mut state = partition.lock();
            let Some(leader) = state.leader else { continue };
            if !can_fetch(leader) {
                continue;
            }
            let at = PartitionRef {
                topic: &topic.name,
                partition: partition.index,
            };
            let followers: Vec<BrokerId> = state
                .assignment
                .iter()
                .copied()
                .filter(|&b| b != leader && can_fetch(b))
                .collect();
            for follower in followers {
                changed |= fetch_once(
                    &mut state,
                    follower,
                    min_isr,
                    max_bytes,
                    now,
                    &at,
                    &mut events,
                );
            }
        }
    }
    if !events.is_empty() {
        core.record(events);
    }
    if changed {
        core.notify_appended();
    }
    changed
}

/// The ISR timer (every `replica.lag.time.max.ms / 2` of clock time).
pub(crate) fn check_isr(core: &ClusterCore, now_ms: i64) {
    if core.clock.is_virtual() {
        // A clock step happens "after" every fetch that could happen: only a fault makes a follower lag.
        for _ in 0..10_000 {
            if !replicate_round(core) {
                break;
            }
        }
    }
    let live = core.liveness();
    let lag_max = core.defaults.replication.replica_lag_time_max_ms;
    let mut events = Vec::new();
    let mut changed = false;
    for topic in core.topics() {
        for partition in &topic.partitions {
            let mut state = partition.lock();
            let Some(leader) = state.leader else { continue };
            // The leader changes the ISR through the controller (AlterPartition): it must reach it.
            if !live
                .iter()
                .any(|l| l.id == leader && l.reaches_peers() && !l.fenced)
            {
                continue;
            }
            let at = PartitionRef {
                topic: &topic.name,
                partition: partition.index,
            };
            if shrink_isr(&mut state, now_ms, lag_max, &at, &mut events) {
                advance_high_watermark(&mut state, topic.config.min_insync_replicas);
                changed = true;
            }
        }
    }
    if !events.is_empty() {
        core.record(events);
    }
    if changed {
        core.notify_appended();
    }
}

/// The flush timer (`log.flush.interval.ms`): every running broker's replicas become durable, and their high
/// watermarks are checkpointed.
pub(crate) fn flush_all(core: &ClusterCore) {
    let live = core.liveness();
    for topic in core.topics() {
        for partition in &topic.partitions {
            let mut state = partition.lock();
            for replica in &mut state.replicas {
                if live
                    .iter()
                    .any(|l| l.id == replica.broker && l.process == Process::Running)
                {
                    replica.flush();
                }
            }
        }
    }
    checkpoint_running_high_watermarks(core);
}

/// Every running broker rewrites its `replication-offset-checkpoint` (the timer of
/// `replica.high.watermark.checkpoint.interval.ms`, flushes and clean stops); a failure is logged.
pub(crate) fn checkpoint_running_high_watermarks(core: &ClusterCore) {
    let running: Vec<BrokerId> = core
        .liveness()
        .iter()
        .filter(|l| l.process == Process::Running)
        .map(|l| l.id)
        .collect();
    if let Err(error) = core.checkpoint_high_watermarks(&running) {
        tracing::error!(%error, "cannot write the replication offset checkpoint");
    }
}

/// The replica fetcher: rounds of [`replicate_round`] whenever something was appended, the brokers' state
/// changed, or `replica.fetch.wait.max.ms` passed.
pub(crate) async fn run_fetcher(core: Arc<ClusterCore>) {
    let settings = core.defaults.replication.clone();
    let wait =
        Duration::from_millis(u64::try_from(settings.replica_fetch_wait_max_ms).unwrap_or(500));
    let mut appends = core.subscribe_appends();
    let mut liveness = core.subscribe_liveness();
    loop {
        appends.borrow_and_update();
        liveness.borrow_and_update();
        if replicate_round(&core) {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            changed = appends.changed() => {
                if changed.is_err() {
                    return;
                }
                if !settings.replica_fetch_delay.is_zero() {
                    tokio::time::sleep(settings.replica_fetch_delay).await;
                }
            }
            changed = liveness.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
