//! Group mode: each consumer is a librdkafka consumer in one consumer group (the classic protocol), so
//! assignments, rebalances, session expiry, `max.poll.interval.ms` and offset commits are what a real client
//! does, not a model of it.
//!
//! A member runs on a thread of its own: poll a batch (up to [`BATCH`] records or [`BATCH_WAIT`]), then, by the
//! commit policy, write it to the sink and commit, or commit and write, or only write (auto-commit, or offsets
//! stored with the data). Records enter the history as [`Consumed`] when they are *written*, so a batch polled
//! and never written is not a delivery: a commit that covered it is what the lost checker blames.
//!
//! - **kill** destroys the client without closing it (librdkafka's `RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE`): no
//!   LeaveGroup, no final commit, its sockets close — what a SIGKILLed process looks like to the coordinator,
//!   which moves its partitions when its session expires.
//! - **stall** holds the member between polling a batch and handling it (a slow batch): past
//!   `max_poll_interval` librdkafka leaves the group, and the commit after the stall is refused.
//! - **events** ([`ConsumerEvent`]): after a write or an acknowledged commit the member offers the event to
//!   the nemesis; an armed fault takes it and the member waits until that fault is done, so a kill between a
//!   commit and its write is certain.
//! - The end of the run closes every member (LeaveGroup; with auto-commit, a final commit).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::member_client::{client_config, note_committed, MemberContext};
use super::{decode_records, lock, FetchedRecord, PipelineError, Shared};
use crate::history::{CommittedOffset, GroupEventKind};
use crate::scenario::{Assignor, CommitPolicy, ConsumerEvent, EventKind};

/// Most records one batch takes.
const BATCH: usize = 500;
/// How long a member polls for one batch before handling what it has.
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// How often a member waiting at an event (or in a stall) looks whether it was killed.
const WAKE: Duration = Duration::from_millis(10);

/// The group settings of a pipeline (group mode).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    pub group_id: String,
    pub commit: CommitPolicy,
    pub assignor: Assignor,
    pub session_timeout: Duration,
    pub max_poll_interval: Duration,
    pub auto_commit_interval: Duration,
    /// Static membership: consumer N is `{prefix}-N`.
    pub group_instance_id: Option<String>,
    /// Consumers that start only when a fault (re)starts them.
    pub join_later: Vec<u32>,
}

/// An armed event fault took an event: the member waits until this is dropped.
pub struct Gate {
    _release: std_mpsc::Sender<()>,
}

impl Gate {
    /// A gate, and what sees it dropped (`recv` fails then).
    pub(super) fn new() -> (Gate, std_mpsc::Receiver<()>) {
        let (release, released) = std_mpsc::channel();
        (Gate { _release: release }, released)
    }

    /// Waits until the gate behind `released` is dropped, or `give_up` says to stop waiting (looked at every
    /// `wake`).
    pub(super) fn wait(
        released: &std_mpsc::Receiver<()>,
        wake: Duration,
        give_up: impl Fn() -> bool,
    ) {
        loop {
            match released.recv_timeout(wake) {
                Err(std_mpsc::RecvTimeoutError::Timeout) if !give_up() => {}
                _ => break,
            }
        }
    }
}

/// A fault waiting for a consumer event: the event, the fault's index, where to hand the gate.
type Armed = (ConsumerEvent, usize, mpsc::UnboundedSender<(usize, Gate)>);

/// Faults waiting for consumer events.
#[derive(Default)]
pub(super) struct Triggers {
    armed: Mutex<Vec<Armed>>,
}

impl Triggers {
    pub(super) fn arm(
        &self,
        event: ConsumerEvent,
        fault: usize,
        to: mpsc::UnboundedSender<(usize, Gate)>,
    ) {
        lock(&self.armed).push((event, fault, to));
    }

    pub(super) fn disarm_all(&self) {
        lock(&self.armed).clear();
    }

    /// Consumer `event` happened: hands it to every fault armed for it and waits until each is done (or the
    /// member is killed meanwhile).
    fn reached(&self, event: ConsumerEvent, killed: &AtomicBool) {
        let taken: Vec<_> = {
            let mut armed = lock(&self.armed);
            let (hit, rest): (Vec<_>, Vec<_>) = armed.drain(..).partition(|(e, _, _)| *e == event);
            *armed = rest;
            hit
        };
        for (_, fault, to) in taken {
            let (gate, released) = Gate::new();
            if to.send((fault, gate)).is_err() {
                continue;
            }
            Gate::wait(&released, WAKE, || killed.load(Ordering::SeqCst));
        }
    }
}

/// What every member of one pipeline's group shares.
pub(super) struct GroupShared {
    pub(super) config: GroupConfig,
    pub(super) topics: Vec<String>,
    pub(super) bootstrap: String,
    /// The latest acknowledged commit of every partition.
    pub(super) committed: Mutex<BTreeMap<(String, i32), i64>>,
    /// What each member holds now (from its rebalance callbacks).
    pub(super) assigned: Mutex<BTreeMap<u32, BTreeSet<(String, i32)>>>,
    pub(super) triggers: Triggers,
    pub(super) runtime: tokio::runtime::Handle,
}

/// One running member.
pub(super) struct Member {
    killed: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    stalled_until: Arc<Mutex<Option<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    /// Creates the member's client and starts its thread; the client's configuration errors are returned here.
    pub(super) fn start(
        consumer: u32,
        shared: Arc<Shared>,
        group: Arc<GroupShared>,
    ) -> Result<Member, PipelineError> {
        let context = MemberContext {
            consumer,
            shared: shared.clone(),
            group: group.clone(),
        };
        let failed = |e: rdkafka::error::KafkaError| PipelineError::GroupClient {
            consumer,
            message: e.to_string(),
        };
        let client: BaseConsumer<MemberContext> = client_config(consumer, &group)
            .create_with_context(context)
            .map_err(failed)?;
        let topics: Vec<&str> = group.topics.iter().map(String::as_str).collect();
        client.subscribe(&topics).map_err(failed)?;
        let killed = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let stalled_until = Arc::new(Mutex::new(None));
        let state = MemberState {
            consumer,
            shared,
            group,
            killed: killed.clone(),
            closing: closing.clone(),
            stalled_until: stalled_until.clone(),
            pending: Default::default(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("etl-consumer-{consumer}"))
            .spawn(move || state.run(client))
            .map_err(|e| PipelineError::GroupClient {
                consumer,
                message: format!("cannot start its thread: {e}"),
            })?;
        Ok(Member {
            killed,
            closing,
            stalled_until,
            thread: Some(thread),
        })
    }

    pub(super) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub(super) fn is_stalled(&self) -> bool {
        lock(&self.stalled_until).is_some_and(|until| until > Instant::now())
    }

    pub(super) fn stall(&self, duration: Duration) {
        *lock(&self.stalled_until) = Some(Instant::now() + duration);
    }

    /// Dies as a killed process does: no LeaveGroup, no last commit.
    pub(super) async fn kill(mut self) {
        self.killed.store(true, Ordering::SeqCst);
        self.join().await;
    }

    /// Leaves the group as a stopping consumer does (and auto-commits once more when it auto-commits).
    pub(super) async fn close(mut self) {
        self.closing.store(true, Ordering::SeqCst);
        self.join().await;
    }

    async fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Member {
    /// A pipeline dropped on an error path: the member dies with it (its thread ends on its own).
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.killed.store(true, Ordering::SeqCst);
        }
    }
}

struct MemberState {
    consumer: u32,
    shared: Arc<Shared>,
    group: Arc<GroupShared>,
    killed: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    stalled_until: Arc<Mutex<Option<Instant>>>,
    /// `after_write`: offsets written but whose commit was refused, committed again with the next chance while
    /// the member still holds the partition (a cooperative rebalance keeps a partition and its fetch position,
    /// so nothing would ever read it again to commit it).
    pending: std::cell::RefCell<BTreeMap<(String, i32), i64>>,
}

impl MemberState {
    fn run(self, consumer: BaseConsumer<MemberContext>) {
        loop {
            if self.killed.load(Ordering::SeqCst) {
                return self.die(consumer);
            }
            if self.closing.load(Ordering::SeqCst) {
                consumer.context().record(&consumer, GroupEventKind::Closed);
                // Dropping closes: LeaveGroup, and with auto-commit one last commit.
                drop(consumer);
                return;
            }
            let batch = self.poll_batch(&consumer);
            // A stall holds a polled batch: the member neither polls nor handles it until the stall ends.
            if !self.wait_out_stall() {
                return self.die(consumer);
            }
            self.retry_pending(&consumer);
            if batch.is_empty() {
                continue;
            }
            if !self.handle(&consumer, batch) {
                return self.die(consumer);
            }
        }
    }

    /// Polls until [`BATCH`] records, [`BATCH_WAIT`] or nothing more to read.
    fn poll_batch(&self, consumer: &BaseConsumer<MemberContext>) -> Vec<OwnedMessage> {
        let started = Instant::now();
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            let left = BATCH_WAIT.saturating_sub(started.elapsed());
            match consumer.poll(left) {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => {
                    tracing::info!(consumer = self.consumer, error = %e, "group consumer error");
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::PollExceeded)
                    ) {
                        self.left(consumer, "removed: max_poll_interval exceeded");
                    }
                    break;
                }
                None => break,
            }
            if left.is_zero() {
                break;
            }
        }
        batch
    }

    /// Waits while stalled; `false` when killed meanwhile.
    fn wait_out_stall(&self) -> bool {
        loop {
            let until = *lock(&self.stalled_until);
            match until {
                Some(until) if until > Instant::now() => {
                    if self.killed.load(Ordering::SeqCst) {
                        return false;
                    }
                    std::thread::sleep(WAKE.min(until - Instant::now()));
                }
                _ => return true,
            }
        }
    }

    /// One batch by the commit policy; `false` when the member was killed at one of its events.
    fn handle(&self, consumer: &BaseConsumer<MemberContext>, batch: Vec<OwnedMessage>) -> bool {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut firsts: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let fetched: Vec<FetchedRecord> = batch
            .iter()
            .map(|m| {
                next.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                firsts
                    .entry((m.topic().to_string(), m.partition()))
                    .or_insert(m.offset());
                FetchedRecord {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key(),
                    value: m.payload(),
                    timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                }
            })
            .collect();
        let offsets: Vec<CommittedOffset> = next
            .iter()
            .map(|((topic, partition), offset)| CommittedOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            })
            .collect();
        let (batch, consumed) = decode_records(
            &self.shared,
            self.consumer,
            fetched,
            next.into_iter().map(|((t, p), o)| (t, p, o)).collect(),
        );
        let event = |kind| ConsumerEvent {
            consumer: self.consumer,
            kind,
        };
        match self.group.config.commit {
            CommitPolicy::BeforeWrite => {
                if !self.commit(consumer, offsets) {
                    // Refused: the batch is not written, as in an ETL whose commit threw; it is read again from
                    // its start — by the group's new owner, or by this member for a partition it kept.
                    self.rewind(consumer, &firsts);
                    return !self.killed.load(Ordering::SeqCst);
                }
                if !self.at(event(EventKind::Commits)) {
                    return false;
                }
                self.write(batch, consumed) && self.at(event(EventKind::Writes))
            }
            CommitPolicy::AfterWrite => {
                if !(self.write(batch, consumed) && self.at(event(EventKind::Writes))) {
                    return false;
                }
                if self.commit(consumer, offsets.clone()) {
                    return self.at(event(EventKind::Commits));
                }
                let mut pending = self.pending.borrow_mut();
                for o in offsets {
                    pending.insert((o.topic, o.partition), o.offset);
                }
                !self.killed.load(Ordering::SeqCst)
            }
            CommitPolicy::Auto | CommitPolicy::WithSink => {
                self.write(batch, consumed) && self.at(event(EventKind::Writes))
            }
        }
    }

    /// Offers `event` to armed faults; `false` when one killed the member.
    /// A stall the fault started holds the member right here.
    fn at(&self, event: ConsumerEvent) -> bool {
        self.group.triggers.reached(event, &self.killed);
        self.wait_out_stall() && !self.killed.load(Ordering::SeqCst)
    }

    /// Writes the batch (again and again while the sink refuses it), then records it as delivered. `false` when
    /// killed before it was written.
    fn write(&self, batch: super::Batch, consumed: Vec<crate::history::Consumed>) -> bool {
        loop {
            if self.killed.load(Ordering::SeqCst) {
                return false;
            }
            let applied = self
                .group
                .runtime
                .block_on(self.shared.sink.apply(self.consumer, batch.clone()));
            match applied {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(consumer = self.consumer, error = %e, "sink refused a batch; writing it again");
                    std::thread::sleep(super::RETRY_PAUSE);
                }
            }
        }
        let at_ms = self.shared.clock.now_ms();
        self.shared
            .recorder
            .consumed_batch(consumed.into_iter().map(|mut c| {
                c.at_ms = at_ms;
                c
            }));
        true
    }

    /// The partitions of `offsets` this member holds now.
    fn held(
        &self,
        consumer: &BaseConsumer<MemberContext>,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Vec<(String, i32, i64)> {
        let Ok(assignment) = consumer.assignment() else {
            return Vec::new();
        };
        offsets
            .iter()
            .filter(|((t, p), _)| assignment.find_partition(t, *p).is_some())
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect()
    }

    /// Commits again what a refused commit left written but uncommitted, for the partitions still held; the rest
    /// their new owners read again.
    fn retry_pending(&self, consumer: &BaseConsumer<MemberContext>) {
        if self.pending.borrow().is_empty() {
            return;
        }
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let held = self.held(consumer, &pending);
        if held.is_empty() {
            return;
        }
        let offsets: Vec<CommittedOffset> = held
            .into_iter()
            .map(|(topic, partition, offset)| CommittedOffset {
                topic,
                partition,
                offset,
            })
            .collect();
        if !self.commit(consumer, offsets.clone()) {
            let mut pending = self.pending.borrow_mut();
            for o in offsets {
                pending.entry((o.topic, o.partition)).or_insert(o.offset);
            }
        }
    }

    /// Moves the fetch position of the partitions this member still holds back to `firsts`.
    fn rewind(
        &self,
        consumer: &BaseConsumer<MemberContext>,
        firsts: &BTreeMap<(String, i32), i64>,
    ) {
        for (topic, partition, offset) in self.held(consumer, firsts) {
            if let Err(e) = consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(5),
            ) {
                tracing::warn!(consumer = self.consumer, topic, partition, error = %e, "cannot read a refused batch again");
            }
        }
    }

    /// A synchronous commit, recorded with its outcome; `true` when acknowledged.
    fn commit(
        &self,
        consumer: &BaseConsumer<MemberContext>,
        offsets: Vec<CommittedOffset>,
    ) -> bool {
        let mut tpl = TopicPartitionList::new();
        for o in &offsets {
            let _ = tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset));
        }
        let result = consumer.commit(&tpl, CommitMode::Sync);
        let ok = result.is_ok();
        let kind = match result {
            Ok(()) => {
                note_committed(&self.group, &offsets);
                // A newer commit supersedes a refused one still waiting to be made again.
                let mut pending = self.pending.borrow_mut();
                for o in &offsets {
                    pending.remove(&(o.topic.clone(), o.partition));
                }
                GroupEventKind::Committed {
                    offsets,
                    auto: false,
                }
            }
            Err(e) => GroupEventKind::CommitFailed {
                offsets,
                auto: false,
                error: e.to_string(),
            },
        };
        consumer.context().record(consumer, kind);
        ok
    }

    fn left(&self, consumer: &BaseConsumer<MemberContext>, why: &str) {
        consumer.context().record(
            consumer,
            GroupEventKind::Left {
                why: why.to_string(),
            },
        );
    }

    /// Killed: the client is destroyed without closing (no LeaveGroup, no commit) and its sockets close.
    fn die(&self, consumer: BaseConsumer<MemberContext>) {
        self.left(&consumer, "killed");
        lock(&self.group.assigned).remove(&self.consumer);
        // SAFETY: the handle is destroyed once, here, and the Rust wrapper is forgotten so its Drop (which would
        // close the consumer and destroy the handle again) never runs; what it owned besides the handle (the
        // queue reference, the context) is leaked, a few hundred bytes per killed member.
        unsafe {
            let rk = consumer.client().native_ptr();
            rd::rd_kafka_destroy_flags(rk, rd::RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        }
        std::mem::forget(consumer);
    }
}
