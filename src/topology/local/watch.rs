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
//!     <M>` (end M + 1), `Reset fetch offset for partition <tp> from <M> to …`. Records the replica appended
//!     after the last poll and before a truncation without such a line are outside the range; with no end offset
//!     known at all the range is empty (`end_offset == start_offset`), still counted as a truncation.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::admin::{self, ClusterMetadata, PartitionMetadata};
use crate::history::{
    BrokerId, ClusterEvent, ClusterEventKind, DeletionReason, ElectionKind, FenceReason,
    TruncationReason,
};

use crate::client::wire::BrokerConnection;
use crate::clock::Clock;

/// How often the watch polls by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
/// How long a connect or a request to one broker may take by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const CLIENT_ID: &str = "etl-harness-watch";
/// At most this much of one log is read per poll; the rest waits for the next.
const MAX_LOG_READ: u64 = 16 * 1024 * 1024;

/// The brokers' addresses to ask, in order of preference, called before every poll.
pub type BootstrapOrder = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

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
            ),
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

struct Poller {
    options: WatchOptions,
    /// Address → an open connection, reused across polls; dropped after any failure.
    connections: HashMap<String, Arc<BrokerConnection>>,
    tails: Vec<LogTail>,
    state: WatchState,
    events: Arc<Mutex<Vec<ClusterEvent>>>,
}

impl Poller {
    async fn poll(&mut self) {
        let order = (self.options.bootstraps)();
        let topics = Arc::new(self.options.topics.clone());
        let timeout = self.options.request_timeout;
        let mut asks = tokio::task::JoinSet::new();
        for (index, addr) in order.into_iter().enumerate() {
            let connection = self.connections.remove(&addr);
            let topics = Arc::clone(&topics);
            asks.spawn(async move {
                let (connection, answer) = tokio::time::timeout(
                    timeout * 4,
                    ask_broker(&addr, connection, &topics, timeout),
                )
                .await
                .unwrap_or((None, None));
                (index, addr, connection, answer)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = asks.join_next().await {
            let Ok((index, addr, connection, answer)) = joined else {
                continue;
            };
            if let Some(connection) = connection {
                self.connections.insert(addr, connection);
            }
            if let Some(answer) = answer {
                answers.push((index, answer));
            }
        }
        answers.sort_by_key(|(index, _)| *index);
        let answers: Vec<BrokerAnswer> = answers.into_iter().map(|(_, answer)| answer).collect();
        // Read after the answers: a line written before a change the answers show is in the file by now.
        let mut lines = Vec::new();
        for tail in &mut self.tails {
            for line in tail.read_new_lines() {
                if let Some(parsed) = parse_line(&line) {
                    lines.push((tail.broker, parsed));
                }
            }
        }
        let now_ms = self.options.clock.now_ms();
        let kinds = self.state.observe(&lines, &answers);
        if !kinds.is_empty() {
            lock(&self.events).extend(kinds.into_iter().map(|kind| ClusterEvent {
                at_ms: now_ms,
                kind,
            }));
        }
    }
}

/// What one broker answered in one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BrokerAnswer {
    /// Its id, found by its address's port among the brokers its Metadata lists; `None` if it does not list
    /// itself (not registered yet).
    broker: Option<i32>,
    metadata: ClusterMetadata,
    /// (topic, partition) → (log start offset, log end offset) of its own replicas.
    offsets: BTreeMap<(String, i32), (i64, i64)>,
}

/// Metadata, then the log start and end offsets of the watched replicas the broker holds. The connection comes
/// back only if every request on it succeeded.
async fn ask_broker(
    addr: &str,
    connection: Option<Arc<BrokerConnection>>,
    topics: &[String],
    timeout: Duration,
) -> (Option<Arc<BrokerConnection>>, Option<BrokerAnswer>) {
    let connection = match connection {
        Some(connection) if !connection.is_closed() => connection,
        _ => match BrokerConnection::connect(addr, CLIENT_ID, timeout).await {
            Ok(connection) => Arc::new(connection),
            Err(_) => return (None, None),
        },
    };
    let Ok(metadata) = admin::metadata_on(&connection, Some(topics), timeout).await else {
        return (None, None);
    };
    let port = addr
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok());
    let broker = metadata
        .brokers
        .iter()
        .find(|(_, advertised)| Some(**advertised) == port)
        .map(|(id, _)| *id);
    let mut answer = BrokerAnswer {
        broker,
        metadata,
        offsets: BTreeMap::new(),
    };
    let Some(id) = broker else {
        return (Some(connection), Some(answer));
    };
    let held: Vec<(String, i32)> = answer
        .metadata
        .topics
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .filter(|p| p.replicas.contains(&id))
                .map(|p| (topic.clone(), p.partition))
        })
        .collect();
    if held.is_empty() {
        return (Some(connection), Some(answer));
    }
    let starts =
        admin::replica_offsets(&connection, &held, admin::EARLIEST_TIMESTAMP, timeout).await;
    let ends = admin::replica_offsets(&connection, &held, admin::LATEST_TIMESTAMP, timeout).await;
    match (starts, ends) {
        (Ok(starts), Ok(ends)) => {
            answer.offsets = starts
                .into_iter()
                .filter_map(|(key, start)| {
                    let end = *ends.get(&key)?;
                    Some((key, (start, end)))
                })
                .collect();
            (Some(connection), Some(answer))
        }
        _ => (None, Some(answer)),
    }
}

/// Reads what a log file gained since the last read, in whole lines.
struct LogTail {
    broker: i32,
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    fn at_end(broker: i32, path: PathBuf) -> LogTail {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogTail {
            broker,
            path,
            offset,
            partial: Vec::new(),
        }
    }

    fn read_new_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Replaced or truncated: start over.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        let Ok(read) = file.take(MAX_LOG_READ).read_to_end(&mut bytes) else {
            return Vec::new();
        };
        self.offset += read as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(last_newline) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        complete
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }
}

/// A broker log line the watch reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LogLine {
    /// `[UnifiedLog partition=<tp>, dir=…] Truncating to offset <offset>`: records at and above `offset` dropped.
    TruncatedTo {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// A line stating a replica's log end offset: `Truncating to <N> has no effect as the largest offset in the
    /// log is <M>` (end M + 1), `Completed load of Log(… logEndOffset=<M>)`.
    EndOffset {
        topic: String,
        partition: i32,
        end_offset: i64,
    },
    /// `Reset fetch offset for partition <tp> from <from> to current leader's latest offset <to>`.
    ResetFetchOffset {
        topic: String,
        partition: i32,
        from: i64,
        to: i64,
    },
    /// `[UnifiedLog partition=<tp>, dir=…] Deleting segment(s) … due to <reason>`.
    SegmentDeletion {
        topic: String,
        partition: i32,
        reason: DeletionReason,
    },
    /// `[UnifiedLog partition=<tp>, dir=…] Incremented log start offset to <N> due to client delete records
    /// request`.
    RecordsDeleted { topic: String, partition: i32 },
    /// `[KafkaServer id=<broker>] Starting controlled shutdown` (ZooKeeper mode), `[BrokerLifecycleManager
    /// id=<broker>] Beginning controlled shutdown.` (KRaft).
    ControlledShutdown { broker: i32 },
}

fn parse_line(line: &str) -> Option<LogLine> {
    if let Some(at) = line.find("[UnifiedLog partition=") {
        let rest = &line[at + "[UnifiedLog partition=".len()..];
        let (tp, rest) = rest.split_once(", dir=")?;
        let (topic, partition) = split_topic_partition(tp)?;
        let (_, message) = rest.split_once("] ")?;
        if let Some(offset) = message.strip_prefix("Truncating to offset ") {
            return Some(LogLine::TruncatedTo {
                topic,
                partition,
                offset: leading_number(offset)?,
            });
        }
        if let Some(no_effect) = message.strip_prefix("Truncating to ") {
            let (_, largest) =
                no_effect.split_once(" has no effect as the largest offset in the log is ")?;
            return Some(LogLine::EndOffset {
                topic,
                partition,
                end_offset: leading_number(largest)? + 1,
            });
        }
        if message.starts_with("Deleting segment") {
            let (_, why) = message.split_once(" due to ")?;
            let reason = if why.contains("retention time") {
                DeletionReason::RetentionTime
            } else if why.contains("retention size") {
                DeletionReason::RetentionSize
            } else if why.contains("log start offset") {
                DeletionReason::LogStartOffset
            } else {
                return None;
            };
            return Some(LogLine::SegmentDeletion {
                topic,
                partition,
                reason,
            });
        }
        if message.starts_with("Incremented log start offset to ")
            && message.contains(" due to client delete records request")
        {
            return Some(LogLine::RecordsDeleted { topic, partition });
        }
        return None;
    }
    if let Some(at) = line.find("Completed load of Log(") {
        let fields = &line[at + "Completed load of Log(".len()..];
        let fields = &fields[..fields.find(") with ")?];
        let field = |name: &str| {
            fields
                .split(", ")
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        return Some(LogLine::EndOffset {
            topic: field("topic")?.to_owned(),
            partition: field("partition")?.parse().ok()?,
            end_offset: field("logEndOffset")?.parse().ok()?,
        });
    }
    if let Some(at) = line.find("Reset fetch offset for partition ") {
        let rest = &line[at + "Reset fetch offset for partition ".len()..];
        let (tp, rest) = rest.split_once(" from ")?;
        let (from, rest) = rest.split_once(" to current leader's latest offset ")?;
        let (topic, partition) = split_topic_partition(tp)?;
        return Some(LogLine::ResetFetchOffset {
            topic,
            partition,
            from: from.parse().ok()?,
            to: leading_number(rest)?,
        });
    }
    for (prefix, announcement) in [
        ("[KafkaServer id=", "Starting controlled shutdown"),
        (
            "[BrokerLifecycleManager id=",
            "Beginning controlled shutdown",
        ),
    ] {
        if let Some(at) = line.find(prefix) {
            let rest = &line[at + prefix.len()..];
            let (id, message) = rest.split_once("] ")?;
            if message.starts_with(announcement) {
                return Some(LogLine::ControlledShutdown {
                    broker: id.parse().ok()?,
                });
            }
        }
    }
    None
}

/// `dbserver1.openmrs.obs-2` → (`dbserver1.openmrs.obs`, 2).
fn split_topic_partition(tp: &str) -> Option<(String, i32)> {
    let (topic, partition) = tp.rsplit_once('-')?;
    Some((topic.to_owned(), partition.parse().ok()?))
}

fn leading_number(text: &str) -> Option<i64> {
    let end = text
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
        .map_or(text.len(), |(i, _)| i);
    text[..end].parse().ok()
}

/// What the watch knows between polls.
#[derive(Debug, Default)]
struct WatchState {
    topics: BTreeSet<String>,
    /// The last merged Metadata view; `None` before the first answer.
    view: Option<ClusterMetadata>,
    /// KRaft: Metadata's controller is not the controller (see [`WatchOptions::controller_in_metadata`]).
    ignore_controller: bool,
    /// Brokers whose log announced a controlled shutdown, until they are registered again.
    controlled_shutdowns: BTreeSet<i32>,
    /// (broker, topic, partition) → the replica's last known log end offset.
    end_offsets: BTreeMap<(i32, String, i32), i64>,
    /// (broker, topic, partition) → why its next truncation happens.
    truncation_reasons: BTreeMap<(i32, String, i32), TruncationReason>,
    /// (topic, partition) → the partition's log start offset, as its leader reported it.
    log_starts: BTreeMap<(String, i32), i64>,
    /// (topic, partition) → why its log start offset moved, from the last deletion line.
    deletions: BTreeMap<(String, i32), Deletion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletion {
    Segments(DeletionReason),
    Records,
}

impl WatchState {
    fn new(topics: BTreeSet<String>, controller_in_metadata: bool) -> WatchState {
        WatchState {
            topics,
            ignore_controller: !controller_in_metadata,
            ..WatchState::default()
        }
    }

    /// The events of one poll: the broker log lines read (in file order, per broker), then the answers.
    fn observe(
        &mut self,
        lines: &[(i32, LogLine)],
        answers: &[BrokerAnswer],
    ) -> Vec<ClusterEventKind> {
        let mut events = Vec::new();
        for (broker, line) in lines {
            self.apply_line(*broker, line, &mut events);
        }
        if let Some(mut next) = merge_views(answers.iter().map(|answer| &answer.metadata)) {
            if self.ignore_controller {
                next.controller = None;
            }
            let next = match self.view.take() {
                Some(previous) => {
                    let next = carry_over(&previous, next);
                    events.extend(diff_views(&previous, &next, &mut self.controlled_shutdowns));
                    next
                }
                None => next,
            };
            self.view = Some(next);
        }
        for answer in answers {
            let Some(broker) = answer.broker else {
                continue;
            };
            for ((topic, partition), (_, end)) in &answer.offsets {
                self.end_offsets
                    .insert((broker, topic.clone(), *partition), *end);
            }
        }
        self.observe_log_starts(answers, &mut events);
        events
    }

    fn apply_line(&mut self, broker: i32, line: &LogLine, events: &mut Vec<ClusterEventKind>) {
        match line {
            LogLine::ControlledShutdown { broker } => {
                self.controlled_shutdowns.insert(*broker);
            }
            LogLine::EndOffset {
                topic,
                partition,
                end_offset,
            } if self.topics.contains(topic) => {
                self.end_offsets
                    .insert((broker, topic.clone(), *partition), *end_offset);
            }
            LogLine::ResetFetchOffset {
                topic,
                partition,
                from,
                ..
            } if self.topics.contains(topic) => {
                let key = (broker, topic.clone(), *partition);
                let known = self.end_offsets.entry(key.clone()).or_insert(*from);
                *known = (*known).max(*from);
                self.truncation_reasons
                    .insert(key, TruncationReason::OffsetOutOfRange);
            }
            LogLine::TruncatedTo {
                topic,
                partition,
                offset,
            } if self.topics.contains(topic) => {
                let key = (broker, topic.clone(), *partition);
                let end = self
                    .end_offsets
                    .get(&key)
                    .copied()
                    .unwrap_or(*offset)
                    .max(*offset);
                let reason = self
                    .truncation_reasons
                    .remove(&key)
                    .unwrap_or(TruncationReason::DivergingEpoch);
                self.end_offsets.insert(key, *offset);
                events.push(ClusterEventKind::Truncated {
                    topic: topic.clone(),
                    partition: *partition,
                    broker: BrokerId(broker),
                    start_offset: *offset,
                    end_offset: end,
                    reason,
                });
            }
            LogLine::SegmentDeletion {
                topic,
                partition,
                reason,
            } if self.topics.contains(topic) => {
                self.deletions
                    .insert((topic.clone(), *partition), Deletion::Segments(*reason));
            }
            LogLine::RecordsDeleted { topic, partition } if self.topics.contains(topic) => {
                self.deletions
                    .insert((topic.clone(), *partition), Deletion::Records);
            }
            _ => {}
        }
    }

    /// Compares each partition leader's log start offset with the last one known.
    fn observe_log_starts(&mut self, answers: &[BrokerAnswer], events: &mut Vec<ClusterEventKind>) {
        let Some(view) = &self.view else {
            return;
        };
        for (topic, partitions) in &view.topics {
            for p in partitions {
                let Some(leader) = p.leader else {
                    continue;
                };
                let key = (topic.clone(), p.partition);
                let reported = answers
                    .iter()
                    .find(|answer| answer.broker == Some(leader))
                    .and_then(|answer| answer.offsets.get(&key))
                    .map(|(start, _)| *start);
                let Some(start) = reported else {
                    continue;
                };
                match self.log_starts.get(&key).copied() {
                    None => {
                        self.log_starts.insert(key, start);
                    }
                    Some(known) if start > known => {
                        let deletion = self
                            .deletions
                            .remove(&key)
                            .unwrap_or(Deletion::Segments(DeletionReason::RetentionTime));
                        events.push(match deletion {
                            Deletion::Segments(reason) => ClusterEventKind::SegmentDeleted {
                                topic: topic.clone(),
                                partition: p.partition,
                                start_offset: known,
                                end_offset: start,
                                reason,
                            },
                            Deletion::Records => ClusterEventKind::RecordsDeleted {
                                topic: topic.clone(),
                                partition: p.partition,
                                start_offset: known,
                                end_offset: start,
                            },
                        });
                        self.log_starts.insert(key, start);
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// Sum of the leader epochs of an answer's partitions: a broker that missed updates reports lower ones.
fn epoch_total(view: &ClusterMetadata) -> i64 {
    view.topics
        .values()
        .flatten()
        .map(|p| i64::from(p.leader_epoch.max(0)))
        .sum()
}

/// One view from several brokers' answers (in bootstrap order): the primary answer (highest epoch total, the
/// earliest on ties) gives brokers, controller and partitions; a partition another answer reports with a higher
/// leader epoch is taken from that answer.
fn merge_views<'a>(
    answers: impl IntoIterator<Item = &'a ClusterMetadata>,
) -> Option<ClusterMetadata> {
    let answers: Vec<&ClusterMetadata> = answers.into_iter().collect();
    let primary = answers
        .iter()
        .enumerate()
        .max_by_key(|(index, view)| (epoch_total(view), std::cmp::Reverse(*index)))
        .map(|(_, view)| *view)?;
    let mut merged = primary.clone();
    for other in &answers {
        for (topic, partitions) in &other.topics {
            let mine = merged
                .topics
                .entry(topic.clone())
                .or_insert_with(|| partitions.clone());
            for p in partitions {
                match mine.iter_mut().find(|m| m.partition == p.partition) {
                    Some(m) if p.leader_epoch > m.leader_epoch => *m = p.clone(),
                    Some(_) => {}
                    None => mine.push(p.clone()),
                }
            }
            mine.sort_by_key(|p| p.partition);
        }
    }
    Some(merged)
}

/// Topics the new view lacks (no broker answered for them) keep their previous state.
fn carry_over(previous: &ClusterMetadata, mut next: ClusterMetadata) -> ClusterMetadata {
    for (topic, partitions) in &previous.topics {
        next.topics
            .entry(topic.clone())
            .or_insert_with(|| partitions.clone());
    }
    next
}

/// The events that turn `previous` into `next`. `controlled_shutdowns`: brokers that announced a controlled
/// shutdown; a broker leaves the set when it leaves or joins the live set.
fn diff_views(
    previous: &ClusterMetadata,
    next: &ClusterMetadata,
    controlled_shutdowns: &mut BTreeSet<i32>,
) -> Vec<ClusterEventKind> {
    let mut events = Vec::new();
    if let Some(controller) = next.controller {
        if previous.controller != Some(controller) {
            events.push(ClusterEventKind::ControllerElected {
                broker: BrokerId(controller),
            });
        }
    }
    for broker in previous.brokers.keys() {
        if !next.brokers.contains_key(broker) {
            let reason = if controlled_shutdowns.contains(broker) {
                FenceReason::ControlledShutdown
            } else {
                FenceReason::SessionExpired
            };
            events.push(ClusterEventKind::BrokerFenced {
                broker: BrokerId(*broker),
                reason,
            });
        }
    }
    for broker in next.brokers.keys() {
        if !previous.brokers.contains_key(broker) {
            events.push(ClusterEventKind::BrokerUnfenced {
                broker: BrokerId(*broker),
            });
        }
    }
    for (topic, partitions) in &next.topics {
        for new in partitions {
            let old = previous
                .topics
                .get(topic)
                .and_then(|old| old.iter().find(|p| p.partition == new.partition));
            match old {
                Some(old) => {
                    diff_partition(topic, old, new, next, controlled_shutdowns, &mut events)
                }
                None => {
                    if let Some(leader) = new.leader {
                        events.push(ClusterEventKind::LeaderChanged {
                            topic: topic.clone(),
                            partition: new.partition,
                            leader: BrokerId(leader),
                            leader_epoch: new.leader_epoch,
                        });
                    }
                }
            }
        }
    }
    // A fenced broker's announcement is used up; one registered again starts afresh.
    for broker in previous.brokers.keys().chain(next.brokers.keys()) {
        if previous.brokers.contains_key(broker) != next.brokers.contains_key(broker) {
            controlled_shutdowns.remove(broker);
        }
    }
    events
}

fn diff_partition(
    topic: &str,
    old: &PartitionMetadata,
    new: &PartitionMetadata,
    next: &ClusterMetadata,
    controlled_shutdowns: &BTreeSet<i32>,
    events: &mut Vec<ClusterEventKind>,
) {
    // A stale answer (lower epoch) never moves the view back.
    if new.leader_epoch < old.leader_epoch {
        return;
    }
    if new.leader != old.leader {
        match new.leader {
            Some(leader) => {
                let kind = election_kind(old, leader, &new.isr, next, controlled_shutdowns);
                events.push(ClusterEventKind::LeaderChanged {
                    topic: topic.to_owned(),
                    partition: new.partition,
                    leader: BrokerId(leader),
                    leader_epoch: new.leader_epoch,
                });
                events.push(ClusterEventKind::Election {
                    topic: topic.to_owned(),
                    partition: new.partition,
                    leader: Some(BrokerId(leader)),
                    leader_epoch: new.leader_epoch,
                    kind,
                });
            }
            None => events.push(ClusterEventKind::Election {
                topic: topic.to_owned(),
                partition: new.partition,
                leader: None,
                leader_epoch: new.leader_epoch,
                kind: ElectionKind::Clean,
            }),
        }
    }
    let isr: Vec<BrokerId> = new.isr.iter().copied().map(BrokerId).collect();
    for removed in old.isr.iter().filter(|b| !new.isr.contains(b)) {
        events.push(ClusterEventKind::IsrShrunk {
            topic: topic.to_owned(),
            partition: new.partition,
            removed: BrokerId(*removed),
            isr: isr.clone(),
        });
    }
    for added in new.isr.iter().filter(|b| !old.isr.contains(b)) {
        events.push(ClusterEventKind::IsrExpanded {
            topic: topic.to_owned(),
            partition: new.partition,
            added: BrokerId(*added),
            isr: isr.clone(),
        });
    }
}

fn election_kind(
    old: &PartitionMetadata,
    leader: i32,
    next_isr: &[i32],
    next: &ClusterMetadata,
    controlled_shutdowns: &BTreeSet<i32>,
) -> ElectionKind {
    // An unclean election leaves the ISR as the new leader alone: none of the last ISR is in it. A leader
    // that joined the ISR and was elected between two polls (a restarted broker caught up, then the
    // preferred-leader election moved the partition back to it) is outside the last ISR too, but the new
    // ISR still holds the replicas that were in it.
    if !old.isr.is_empty()
        && !old.isr.contains(&leader)
        && !old.isr.iter().any(|b| next_isr.contains(b))
    {
        return ElectionKind::Unclean;
    }
    match old.leader {
        Some(previous) if controlled_shutdowns.contains(&previous) => {
            ElectionKind::ControlledShutdown
        }
        Some(previous) if next.brokers.contains_key(&previous) => {
            if old.replicas.first() == Some(&leader) {
                ElectionKind::Preferred
            } else {
                ElectionKind::ControlledShutdown
            }
        }
        _ => ElectionKind::Clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines written by Kafka 3.9.1 brokers of this harness's local topology (run logs under
    // /tmp/openmrs-etl-harness/runs), verbatim.
    const TRUNCATED: &str = "[2026-12-03 12:11:39,214] INFO [UnifiedLog partition=dbserver1.openmrs.obs-1, dir=/tmp/openmrs-etl-harness/runs/run-1796299861-3697-0/data/kafka-1] Truncating to offset 1 (kafka.log.UnifiedLog)";
    const FETCHER_TRUNCATION: &str = "[2026-12-03 12:11:39,213] INFO [ReplicaFetcher replicaId=1, leaderId=2, fetcherId=0] Truncating partition dbserver1.openmrs.obs-1 with TruncationState(offset=1, completed=true) due to leader epoch and offset EpochEndOffset(errorCode=0, partition=1, leaderEpoch=2, endOffset=1) (kafka.server.ReplicaFetcherThread)";
    const NO_EFFECT: &str = "[2026-12-03 12:16:26,521] INFO [UnifiedLog partition=connect-offsets-0, dir=/tmp/openmrs-etl-harness/runs/run-1796300136-4085-3/data/kafka-2] Truncating to 0 has no effect as the largest offset in the log is -1 (kafka.log.UnifiedLog)";
    const LOADED: &str = "[2026-12-03 12:12:48,576] INFO Completed load of Log(dir=/tmp/openmrs-etl-harness/runs/run-1796299908-4085-0/data/kafka-1/dbserver1.openmrs.patient_identifier-1, topicId=LdBX3tZ5Tnilh5yCU4xvZw, topic=dbserver1.openmrs.patient_identifier, partition=1, highWatermark=0, lastStableOffset=0, logStartOffset=0, logEndOffset=21) with 1 segments, local-log-start-offset 0 and log-end-offset 21 in 104ms (2/49 completed in /tmp/openmrs-etl-harness/runs/run-1796299908-4085-0/data/kafka-1) (kafka.log.LogManager)";
    const CONTROLLED: &str = "[2026-12-03 12:16:01,002] INFO [KafkaServer id=3] Starting controlled shutdown (kafka.server.KafkaServer)";
    // A KRaft broker's (a Kafka 3.9.1 broker started by hand with this harness's KRaft settings).
    const CONTROLLED_KRAFT: &str = "[2026-12-03 15:35:06,141] INFO [BrokerLifecycleManager id=2] Beginning controlled shutdown. (kafka.server.BrokerLifecycleManager)";
    const RETENTION_TIME: &str = "[2026-12-03 13:12:46,373] INFO [UnifiedLog partition=dbserver1.openmrs.encounter-0, dir=/tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-1] Deleting segment LogSegment(baseOffset=0, size=88, lastModifiedTime=1796303557306, largestRecordTimestamp=1000) due to log retention time 1000ms breach based on the largest record timestamp in the segment (kafka.log.UnifiedLog)";
    const SEGMENT_DELETION_START: &str = "[2026-12-03 13:12:46,371] INFO [UnifiedLog partition=dbserver1.openmrs.encounter-0, dir=/tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-1] Incremented log start offset to 3 due to segment deletion (kafka.log.UnifiedLog)";
    // Built from the messages of Kafka 3.9's UnifiedLog and AbstractFetcherThread (size retention, DeleteRecords,
    // an out-of-range follower); no harness run wrote them yet.
    const RETENTION_SIZE: &str = "[2026-12-03 12:30:00,100] INFO [UnifiedLog partition=watch-retention-0, dir=/tmp/runs/run-1/data/kafka-2] Deleting segment LogSegment(baseOffset=0, size=213, lastModifiedTime=1796300000000, largestRecordTimestamp=1000) due to log retention size 100 breach. Log size after deletion will be 0. (kafka.log.UnifiedLog)";
    const DELETE_RECORDS: &str = "[2026-12-03 12:30:00,100] INFO [UnifiedLog partition=watch-retention-0, dir=/tmp/runs/run-1/data/kafka-2] Incremented log start offset to 3 due to client delete records request (kafka.log.UnifiedLog)";
    const RESET_FETCH: &str = "[2026-12-03 12:30:00,100] WARN [ReplicaFetcher replicaId=1, leaderId=2, fetcherId=0] Reset fetch offset for partition dbserver1.openmrs.obs-0 from 12 to current leader's latest offset 9 (kafka.server.ReplicaFetcherThread)";

    #[test]
    fn parses_the_lines_kafka_writes() {
        assert_eq!(
            parse_line(TRUNCATED),
            Some(LogLine::TruncatedTo {
                topic: "dbserver1.openmrs.obs".into(),
                partition: 1,
                offset: 1
            })
        );
        assert_eq!(parse_line(FETCHER_TRUNCATION), None);
        assert_eq!(parse_line(SEGMENT_DELETION_START), None);
        assert_eq!(
            parse_line(NO_EFFECT),
            Some(LogLine::EndOffset {
                topic: "connect-offsets".into(),
                partition: 0,
                end_offset: 0
            })
        );
        assert_eq!(
            parse_line(LOADED),
            Some(LogLine::EndOffset {
                topic: "dbserver1.openmrs.patient_identifier".into(),
                partition: 1,
                end_offset: 21
            })
        );
        assert_eq!(
            parse_line(CONTROLLED),
            Some(LogLine::ControlledShutdown { broker: 3 })
        );
        assert_eq!(
            parse_line(CONTROLLED_KRAFT),
            Some(LogLine::ControlledShutdown { broker: 2 })
        );
        assert_eq!(
            parse_line(RETENTION_TIME),
            Some(LogLine::SegmentDeletion {
                topic: "dbserver1.openmrs.encounter".into(),
                partition: 0,
                reason: DeletionReason::RetentionTime
            })
        );
        assert_eq!(
            parse_line(RETENTION_SIZE),
            Some(LogLine::SegmentDeletion {
                topic: "watch-retention".into(),
                partition: 0,
                reason: DeletionReason::RetentionSize
            })
        );
        assert_eq!(
            parse_line(DELETE_RECORDS),
            Some(LogLine::RecordsDeleted {
                topic: "watch-retention".into(),
                partition: 0
            })
        );
        assert_eq!(
            parse_line(RESET_FETCH),
            Some(LogLine::ResetFetchOffset {
                topic: "dbserver1.openmrs.obs".into(),
                partition: 0,
                from: 12,
                to: 9
            })
        );
        assert_eq!(parse_line("[2026-12-03 12:16:01,002] INFO [KafkaServer id=3] started (kafka.server.KafkaServer)"), None);
        assert_eq!(parse_line(""), None);
    }

    fn partition(index: i32, leader: Option<i32>, epoch: i32, isr: &[i32]) -> PartitionMetadata {
        PartitionMetadata {
            partition: index,
            leader,
            leader_epoch: epoch,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    fn view(
        brokers: &[i32],
        controller: i32,
        partitions: Vec<PartitionMetadata>,
    ) -> ClusterMetadata {
        ClusterMetadata {
            brokers: brokers.iter().map(|b| (*b, 9000 + *b as u16)).collect(),
            controller: Some(controller),
            topics: [("t".to_string(), partitions)].into_iter().collect(),
        }
    }

    fn ids(brokers: &[i32]) -> Vec<BrokerId> {
        brokers.iter().copied().map(BrokerId).collect()
    }

    #[test]
    fn a_killed_leader_is_fenced_replaced_and_rejoins() {
        let mut controlled = BTreeSet::new();
        let before = view(&[1, 2, 3], 1, vec![partition(0, Some(1), 0, &[1, 2, 3])]);
        let failed = view(&[2, 3], 2, vec![partition(0, Some(2), 1, &[2, 3])]);
        assert_eq!(
            diff_views(&before, &failed, &mut controlled),
            vec![
                ClusterEventKind::ControllerElected {
                    broker: BrokerId(2)
                },
                ClusterEventKind::BrokerFenced {
                    broker: BrokerId(1),
                    reason: FenceReason::SessionExpired
                },
                ClusterEventKind::LeaderChanged {
                    topic: "t".into(),
                    partition: 0,
                    leader: BrokerId(2),
                    leader_epoch: 1
                },
                ClusterEventKind::Election {
                    topic: "t".into(),
                    partition: 0,
                    leader: Some(BrokerId(2)),
                    leader_epoch: 1,
                    kind: ElectionKind::Clean
                },
                ClusterEventKind::IsrShrunk {
                    topic: "t".into(),
                    partition: 0,
                    removed: BrokerId(1),
                    isr: ids(&[2, 3])
                },
            ]
        );
        let back = view(&[1, 2, 3], 2, vec![partition(0, Some(2), 1, &[2, 3, 1])]);
        assert_eq!(
            diff_views(&failed, &back, &mut controlled),
            vec![
                ClusterEventKind::BrokerUnfenced {
                    broker: BrokerId(1)
                },
                ClusterEventKind::IsrExpanded {
                    topic: "t".into(),
                    partition: 0,
                    added: BrokerId(1),
                    isr: ids(&[2, 3, 1])
                },
            ]
        );
    }

    /// The kinds of the elections between two views, in order.
    fn election_kinds(
        previous: &ClusterMetadata,
        next: &ClusterMetadata,
        controlled: &mut BTreeSet<i32>,
    ) -> Vec<ElectionKind> {
        diff_views(previous, next, controlled)
            .into_iter()
            .filter_map(|e| match e {
                ClusterEventKind::Election { kind, .. } => Some(kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn election_kinds_follow_the_old_leader_and_the_isr() {
        let mut controlled = BTreeSet::new();
        // The old leader is still registered and the preferred replica takes over: preferred.
        let before = view(&[1, 2, 3], 1, vec![partition(0, Some(2), 3, &[1, 2, 3])]);
        let after = view(&[1, 2, 3], 1, vec![partition(0, Some(1), 4, &[1, 2, 3])]);
        let kinds = election_kinds(&before, &after, &mut controlled);
        assert_eq!(kinds, [ElectionKind::Preferred]);
        // Announced controlled shutdown: the leader moves, then the broker leaves.
        controlled.insert(1);
        let moved = view(&[1, 2, 3], 1, vec![partition(0, Some(2), 5, &[2, 3])]);
        let events = diff_views(&after, &moved, &mut controlled);
        assert!(events.contains(&ClusterEventKind::Election {
            topic: "t".into(),
            partition: 0,
            leader: Some(BrokerId(2)),
            leader_epoch: 5,
            kind: ElectionKind::ControlledShutdown
        }));
        assert!(
            controlled.contains(&1),
            "still registered: the announcement holds"
        );
        let gone = view(&[2, 3], 2, vec![partition(0, Some(2), 5, &[2, 3])]);
        assert!(diff_views(&moved, &gone, &mut controlled).contains(
            &ClusterEventKind::BrokerFenced {
                broker: BrokerId(1),
                reason: FenceReason::ControlledShutdown
            }
        ));
        assert!(controlled.is_empty(), "the fence used the announcement up");
        // A leader outside the last ISR: unclean; no leader: offline.
        let offline = view(&[3], 3, vec![partition(0, None, 6, &[2])]);
        assert!(diff_views(&gone, &offline, &mut controlled).contains(
            &ClusterEventKind::Election {
                topic: "t".into(),
                partition: 0,
                leader: None,
                leader_epoch: 6,
                kind: ElectionKind::Clean
            }
        ));
        let unclean = view(&[3], 3, vec![partition(0, Some(3), 7, &[3])]);
        assert!(diff_views(&offline, &unclean, &mut controlled).contains(
            &ClusterEventKind::Election {
                topic: "t".into(),
                partition: 0,
                leader: Some(BrokerId(3)),
                leader_epoch: 7,
                kind: ElectionKind::Unclean
            }
        ));
        // A restarted preferred replica rejoins the ISR and is elected back between two polls: it was not in
        // the last ISR, but the ISR it joined still holds the replica that led: a preferred election.
        let failed_over = view(&[2, 3], 2, vec![partition(0, Some(2), 8, &[2])]);
        let back = view(&[1, 2, 3], 2, vec![partition(0, Some(1), 9, &[1, 2])]);
        let kinds = election_kinds(&failed_over, &back, &mut controlled);
        assert_eq!(kinds, [ElectionKind::Preferred]);
    }

    #[test]
    fn a_stale_answer_loses_to_higher_epochs() {
        // Broker 1, cut off from its peers, still thinks it leads at epoch 0 and is asked first.
        let stale = view(&[1, 2, 3], 1, vec![partition(0, Some(1), 0, &[1, 2, 3])]);
        let fresh = view(&[2, 3], 2, vec![partition(0, Some(2), 1, &[2, 3])]);
        let merged = merge_views([&stale, &fresh]).expect("answers");
        assert_eq!(merged, fresh);
        // The primary answer (highest epoch total) gives partitions of equal epochs; a partition with a higher
        // epoch elsewhere is taken from there.
        let mut other = fresh.clone();
        other.topics.get_mut("t").unwrap()[0].isr = vec![2];
        other
            .topics
            .insert("u".into(), vec![partition(0, Some(3), 2, &[3])]);
        let mut first = fresh.clone();
        first
            .topics
            .insert("u".into(), vec![partition(0, Some(2), 1, &[2])]);
        first
            .topics
            .insert("v".into(), vec![partition(0, Some(1), 5, &[1])]);
        let merged = merge_views([&first, &other]).expect("answers");
        assert_eq!(merged.topics["t"], fresh.topics["t"]);
        assert_eq!(merged.topics["u"], vec![partition(0, Some(3), 2, &[3])]);
        // A stale view never moves a partition back.
        let mut controlled = BTreeSet::new();
        assert!(diff_views(&fresh, &stale, &mut controlled)
            .iter()
            .all(|e| !matches!(e, ClusterEventKind::LeaderChanged { .. })));
    }

    fn answer(
        broker: i32,
        metadata: &ClusterMetadata,
        offsets: &[(i32, i64, i64)],
    ) -> BrokerAnswer {
        BrokerAnswer {
            broker: Some(broker),
            metadata: metadata.clone(),
            offsets: offsets
                .iter()
                .map(|(p, start, end)| (("t".to_string(), *p), (*start, *end)))
                .collect(),
        }
    }

    #[test]
    fn a_truncation_spans_from_its_offset_to_the_last_known_end() {
        let mut state = WatchState::new(["t".to_string()].into_iter().collect(), true);
        let led_by_1 = view(&[1, 2, 3], 1, vec![partition(0, Some(1), 0, &[1, 2, 3])]);
        // Broker 1 leads and holds 6 records, 5 of them replicated.
        assert!(state
            .observe(
                &[],
                &[
                    answer(1, &led_by_1, &[(0, 0, 6)]),
                    answer(2, &led_by_1, &[(0, 0, 5)])
                ]
            )
            .is_empty());
        // Broker 1 comes back, its log recovered to 6, and truncates to 5 after the fetcher's line.
        let line = |text: &str| (1, parse_line(text).expect("a line the watch reads"));
        let events = state.observe(
            &[
                // A restarted leader's lines (the local_watch test's run), topic renamed.
                line(&"[2026-12-03 13:12:48,813] INFO Completed load of Log(dir=/tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-2/dbserver1.openmrs.obs-0, topicId=38CMj1iFQOKLxr6SQfvR3A, topic=dbserver1.openmrs.obs, partition=0, highWatermark=0, lastStableOffset=0, logStartOffset=0, logEndOffset=6) with 1 segments, local-log-start-offset 0 and log-end-offset 6 in 49ms (5/6 completed in /tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-2) (kafka.log.LogManager)".replace("dbserver1.openmrs.obs", "t")),
                line(&"[2026-12-03 13:12:51,405] INFO [UnifiedLog partition=dbserver1.openmrs.obs-0, dir=/tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-2] Truncating to offset 5 (kafka.log.UnifiedLog)".replace("dbserver1.openmrs.obs", "t")),
            ],
            &[],
        );
        assert_eq!(
            events,
            vec![ClusterEventKind::Truncated {
                topic: "t".into(),
                partition: 0,
                broker: BrokerId(1),
                start_offset: 5,
                end_offset: 6,
                reason: TruncationReason::DivergingEpoch
            }]
        );
        // Out of range, the fetcher's line names the old end; another topic's line is ignored.
        let events = state.observe(
            &[
                line(RESET_FETCH.replace("dbserver1.openmrs.obs", "t").as_str()),
                line("[2026-12-03 12:30:00,101] INFO [UnifiedLog partition=t-0, dir=/d/kafka-1] Truncating to offset 9 (kafka.log.UnifiedLog)"),
                line(TRUNCATED),
            ],
            &[],
        );
        assert_eq!(
            events,
            vec![ClusterEventKind::Truncated {
                topic: "t".into(),
                partition: 0,
                broker: BrokerId(1),
                start_offset: 9,
                end_offset: 12,
                reason: TruncationReason::OffsetOutOfRange
            }]
        );
    }

    #[test]
    fn the_leaders_log_start_offset_moving_is_a_deletion() {
        let mut state = WatchState::new(["t".to_string()].into_iter().collect(), true);
        let led_by_2 = view(&[1, 2, 3], 1, vec![partition(0, Some(2), 0, &[1, 2, 3])]);
        assert!(state
            .observe(
                &[],
                &[
                    answer(1, &led_by_2, &[(0, 0, 3)]),
                    answer(2, &led_by_2, &[(0, 0, 3)])
                ]
            )
            .is_empty());
        // A follower's start offset alone means nothing.
        assert!(state
            .observe(
                &[],
                &[
                    answer(1, &led_by_2, &[(0, 3, 3)]),
                    answer(2, &led_by_2, &[(0, 0, 3)])
                ]
            )
            .is_empty());
        let deleted = state.observe(
            &[(
                2,
                parse_line(&RETENTION_SIZE.replace("watch-retention", "t")).expect("parsed"),
            )],
            &[answer(2, &led_by_2, &[(0, 3, 3)])],
        );
        assert_eq!(
            deleted,
            vec![ClusterEventKind::SegmentDeleted {
                topic: "t".into(),
                partition: 0,
                start_offset: 0,
                end_offset: 3,
                reason: DeletionReason::RetentionSize
            }]
        );
        let records = state.observe(
            &[(
                2,
                parse_line(&DELETE_RECORDS.replace("watch-retention", "t")).expect("parsed"),
            )],
            &[answer(2, &led_by_2, &[(0, 4, 5)])],
        );
        assert_eq!(
            records,
            vec![ClusterEventKind::RecordsDeleted {
                topic: "t".into(),
                partition: 0,
                start_offset: 3,
                end_offset: 4
            }]
        );
        // Without a line: retention by time.
        let timed = state.observe(&[], &[answer(2, &led_by_2, &[(0, 5, 5)])]);
        assert!(matches!(
            timed.as_slice(),
            [ClusterEventKind::SegmentDeleted {
                start_offset: 4,
                end_offset: 5,
                reason: DeletionReason::RetentionTime,
                ..
            }]
        ));
    }

    #[test]
    fn a_log_tail_reads_whole_new_lines_only() {
        let dir = std::env::temp_dir().join(format!("watch-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kafka-1.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut tail = LogTail::at_end(1, path.clone());
        assert!(tail.read_new_lines().is_empty());
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"first\nsec").unwrap();
        assert_eq!(tail.read_new_lines(), ["first"]);
        file.write_all(b"ond\n").unwrap();
        assert_eq!(tail.read_new_lines(), ["second"]);
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(tail.read_new_lines(), ["new"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
