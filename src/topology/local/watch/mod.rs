//! What the local cluster did, as [`ClusterEvent`]s in the embedded backend's vocabulary, for the checkers: a
//! [`ClusterWatch`] polls the real brokers and tails their logs while a scenario runs.
//!
//! # What is observed, and how
//!
//! Every poll (default every [`DEFAULT_INTERVAL`]) asks every broker of the current bootstrap order, concurrently
//! and each request bounded by a timeout (a SIGSTOPped broker never answers; one that fails is skipped, never
//! fatal), for:
//!
//! * **Metadata** of the watched topics. The answers are merged: the *primary* answer is the one whose watched
//!   partitions carry the highest leader epochs in total (ties: the earliest in the bootstrap order, and
//!   `LocalTopology` orders isolated brokers last), which gives the live brokers, the controller and each
//!   partition's ISR; a partition that another broker reports with a strictly higher leader epoch is taken from
//!   that broker. A broker cut off from its peers answers from what it knew before and never wins. The merged
//!   view is diffed against the previous one:
//!   - a broker leaving the live set → `BrokerFenced` (reason `ControlledShutdown` when its log said `Starting
//!     controlled shutdown` before, `SessionExpired` otherwise: SIGKILL, SIGSTOP, isolation); a broker joining
//!     it → `BrokerUnfenced`;
//!   - another controller → `ControllerElected` (ZooKeeper mode only: a KRaft broker names a random live broker);
//!   - another leader → `LeaderChanged` (with the new leader epoch) and `Election`, like the embedded controller
//!     emits them; no leader → `Election { leader: None }` (offline). The election kind: `Unclean` when the new
//!     leader was not in the previous ISR and no replica of the previous ISR is in the new one (an unclean
//!     election leaves the ISR as the leader alone; a broker that rejoined the ISR and was elected between two
//!     polls keeps the others beside it); `ControlledShutdown` when the old leader had announced a controlled
//!     shutdown, or is still registered and the new leader is not the preferred replica; `Preferred` when the
//!     old leader is still registered and the new leader is the head of the assignment; `Clean` otherwise (the
//!     old leader left the live set). A leader epoch bump that keeps the leader (in ZooKeeper mode the
//!     controller bumps the epoch when it removes a dead follower from the ISR) emits nothing;
//!   - replicas leaving or joining the ISR → one `IsrShrunk` / `IsrExpanded` per replica, with the new ISR;
//!   - a watched partition first seen after the watch started → `LeaderChanged` for its leader.
//!
//!   The first poll is the baseline: the state at the start emits no events.
//! * **ListOffsets** with the debugging replica id (-2), so each broker answers from its own replica, leader or
//!   follower: the log start offset (timestamp -2) and the log end offset (timestamp -1; the request is not a
//!   consumer's, so this is the end offset, not the high watermark) of every watched partition it holds.
//!   - The leader's log start offset moving forward from `old` to `new` → `SegmentDeleted { start_offset: old,
//!     end_offset: new }`, or `RecordsDeleted` when the leader's log said the start offset moved `due to client
//!     delete records request`. The deletion reason comes from the leader's log line `Deleting segment …
//!     due to log retention time …` (`RetentionTime`), `… retention size …` (`RetentionSize`) or `… log start
//!     offset …` (`LogStartOffset`); offsets alone cannot tell time from size, so without such a line the reason
//!     is `RetentionTime`. Decreases (a new leader whose own start offset lags) are ignored: the range is the
//!     partition's, and only grows.
//!   - Each replica's end offset is remembered (below).
//! * **The brokers' logs** (each `kafka-<id>.log`, log4j INFO to stdout; tailed from where each file ended when
//!   the watch started, restarted processes append to the same file):
//!   - `[UnifiedLog partition=<topic>-<p>, dir=<dir>] Truncating to offset <N>`, which Kafka 3.9 writes only when
//!     the replica really drops records, → `Truncated { broker, start_offset: N, end_offset }`. The line lacks the
//!     old end offset, so `end_offset` is the last end offset known for that replica: from the last poll's
//!     ListOffsets, or from a later line of that broker: `Completed load of Log(… logEndOffset=<M>)` (a
//!     restarted broker's log as recovered), `Truncating to <N> has no effect as the largest offset in the log is
//!     <M>` (end M + 1), `Reset fetch offset for partition <tp> from <M> to …`, or from what that broker
//!     acknowledged to Debezium since the replica's last truncation ([`WatchOptions::acked_ends`]: its highest
//!     acknowledged offset + 1, whichever is highest). Records the replica appended after the last poll and
//!     before a truncation that none of these covers are outside the range; with no end offset known at all the
//!     range is empty (`end_offset == start_offset`), still counted as a truncation.
//!   - The reason: `OffsetOutOfRange` when the fetcher's line `Reset fetch offset for partition <tp> from <M> to
//!     current leader's latest offset <N>` preceded it, `DivergingEpoch` otherwise (Kafka 3.9's fetcher truncates
//!     after an OffsetsForLeaderEpoch answer or, lacking epochs, to its high watermark; both cut a tail the
//!     leader does not have).
//!
//! # Granularity and approximations
//!
//! * Everything from polling is sampled: a leader change and back, or an ISR shrink and expand, within one
//!   interval is missed, and a leader change observed after several elections is one `LeaderChanged` with the
//!   latest epoch. Requests to a stopped broker take their timeout, so while one is paused the interval
//!   stretches to about [`DEFAULT_REQUEST_TIMEOUT`].
//! * `at_ms` is the watch's clock when the poll that observed the change finished, not the broker's own time:
//!   up to an interval (plus the slowest answer) late; events of one poll keep the order metadata, log lines,
//!   offsets.
//! * A retention deletion is seen only when the leader answers ListOffsets; one that happens while no broker
//!   answers shows up, merged, at the next answer. Kafka writes `Incremented log start offset to <N> due to
//!   segment deletion` a few ms before the `Deleting segment … due to …` line that names the reason: a poll that
//!   sees the new start offset between the two reports `RetentionTime`, and the late line's reason then waits
//!   for the partition's next deletion. Followers delete their own expired segments too; their lines count as
//!   the partition's reason.
//! * Retention deletes only below the high watermark: while a dead replica holds the ISR back (up to the
//!   ZooKeeper session timeout), expired records stay and their `SegmentDeleted` comes after the ISR shrink.
//! * A broker runs its first retention check `log.initial.task.delay.ms` (Kafka's default, 30 s) after it starts:
//!   a restarted broker that leads again (a preferred-leader election) serves expired records until then, while
//!   its followers have deleted theirs; the `SegmentDeleted` comes when the leader deletes.

mod broker_log;
mod election;
#[cfg(test)]
mod fixtures;
mod poll;
mod state;
mod views;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::history::ClusterEvent;
use broker_log::LogTail;
use poll::Poller;
use state::WatchState;

use crate::clock::Clock;

/// How often the watch polls by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
/// How long a connect or a request to one broker may take by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The brokers' addresses to ask, in order of preference, called before every poll.
pub type BootstrapOrder = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// What acknowledgements prove of a replica's log, asked when `broker`'s replica of (`topic`, `partition`)
/// truncates: one past the highest offset that broker acknowledged there since the replica's previous truncation,
/// if any (and forgotten then). The local backend answers from the Produce answers its proxies decode
/// ([`super::ProduceLog::take_acked_end`]).
#[derive(Clone)]
pub struct AckedEnds(pub Arc<AckedEndFn>);

/// [`AckedEnds`]' function: (broker, topic, partition) → the acknowledged end, taken.
pub type AckedEndFn = dyn Fn(i32, &str, i32) -> Option<i64> + Send + Sync;

impl std::fmt::Debug for AckedEnds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckedEnds")
    }
}

/// How to start a [`ClusterWatch`].
#[derive(Clone)]
pub struct WatchOptions {
    /// The brokers to ask (`host:port`), asked anew before each poll. [`WatchOptions::new`] takes a fixed list.
    pub bootstraps: BootstrapOrder,
    /// Topics whose partitions are watched; events of other topics are not reported.
    pub topics: Vec<String>,
    /// Broker id → the file its log4j output goes to ([`super::ServiceProcess::log_path`] of `kafka-<id>`).
    pub broker_logs: Vec<(i32, PathBuf)>,
    /// Pause between the end of a poll and the start of the next.
    pub interval: Duration,
    /// Bound of each connect and request.
    pub request_timeout: Duration,
    /// Stamps the events.
    pub clock: Clock,
    /// Whether Metadata's controller is the cluster's controller (ZooKeeper mode): a change emits
    /// `ControllerElected`. In KRaft mode brokers name a random live broker there, and nothing is emitted.
    pub controller_in_metadata: bool,
    /// Where a truncation's end comes from when the records a replica appended since the last poll were
    /// acknowledged: without it they are outside the truncation's range.
    pub acked_ends: Option<AckedEnds>,
}

impl std::fmt::Debug for WatchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchOptions")
            .field("bootstraps", &(self.bootstraps)())
            .field("topics", &self.topics)
            .field("broker_logs", &self.broker_logs)
            .field("interval", &self.interval)
            .field("request_timeout", &self.request_timeout)
            .field("clock", &self.clock)
            .field("controller_in_metadata", &self.controller_in_metadata)
            .field("acked_ends", &self.acked_ends)
            .finish()
    }
}

impl WatchOptions {
    /// A fixed bootstrap list, [`DEFAULT_INTERVAL`], [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn new(
        bootstraps: Vec<String>,
        topics: Vec<String>,
        broker_logs: Vec<(i32, PathBuf)>,
        clock: Clock,
    ) -> Self {
        WatchOptions {
            bootstraps: Arc::new(move || bootstraps.clone()),
            topics,
            broker_logs,
            interval: DEFAULT_INTERVAL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            clock,
            controller_in_metadata: true,
            acked_ends: None,
        }
    }

    /// Asks `order` for the brokers before every poll (e.g. the topology's list with isolated brokers last).
    pub fn with_bootstrap_order(mut self, order: BootstrapOrder) -> Self {
        self.bootstraps = order;
        self
    }
}

/// A running watch: a tokio task polling the cluster. See the module docs.
pub struct ClusterWatch {
    events: Arc<Mutex<Vec<ClusterEvent>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ClusterWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterWatch")
            .field("events", &lock(&self.events).len())
            .finish()
    }
}

impl ClusterWatch {
    /// Notes where each broker log ends, then starts polling on the current tokio runtime; the first poll is the
    /// baseline.
    pub fn start(options: WatchOptions) -> ClusterWatch {
        let events = Arc::new(Mutex::new(Vec::new()));
        let tails = options
            .broker_logs
            .iter()
            .map(|(broker, path)| LogTail::at_end(*broker, path.clone()))
            .collect();
        let mut poller = Poller {
            state: WatchState::new(
                options.topics.iter().cloned().collect(),
                options.controller_in_metadata,
            )
            .with_acked_ends(options.acked_ends.clone()),
            options,
            connections: HashMap::new(),
            tails,
            events: Arc::clone(&events),
        };
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                poller.poll().await;
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(poller.options.interval) => {}
                }
            }
            poller.poll().await;
        });
        ClusterWatch { events, stop, task }
    }

    /// The events observed so far, in time order.
    pub fn events(&self) -> Vec<ClusterEvent> {
        sorted(lock(&self.events).clone())
    }

    /// Polls a last time, stops the task and returns every event, in time order.
    pub async fn stop(self) -> Vec<ClusterEvent> {
        let ClusterWatch { events, stop, task } = self;
        let _ = stop.send(());
        if let Err(e) = task.await {
            tracing::warn!("the cluster watch task ended abnormally: {e}");
        }
        let events = std::mem::take(&mut *lock(&events));
        sorted(events)
    }
}

fn sorted(mut events: Vec<ClusterEvent>) -> Vec<ClusterEvent> {
    events.sort_by_key(|event| event.at_ms);
    events
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
