//! The ETL: consumers that share the change topics' partitions, the sink that keeps the latest image of every
//! row, and the flat encounter table derived from those images.
//!
//! - [`decode`](mod@decode): Debezium JSON records (MySQL and MariaDB connectors) back into typed row images.
//! - [`flat`](crate::model::flat): the flat encounter table as a pure function of row images, lives in the model.
//! - [`sink`]: [`MemorySink`] keeps images by source position, the flat table (the rows a batch touched marked
//!   stale, each built once when the table is read), and the offsets.
//! - [`Pipeline`]: C consumers reading with rskafka at explicit offsets taken from the sink (manual assignment),
//!   or C members of one consumer group through librdkafka (`group`: group mode, commit policies, event faults;
//!   `docs/consumer-groups.md`).
//! - `command`: a team's own ETL (`kind = "command"`, `docs/your-etl.md`): its processes with the documented
//!   environment, consumer faults as signals, its progress read from its group's committed offsets or its
//!   `etl_progress` row. One manual reader of the harness's own follows every partition meanwhile, so the
//!   capture's readiness and delivery checks (the snapshot read, the last commit in Kafka) work unchanged.
//!
//! ## Consumers (manual assignment)
//!
//! Without `assignment = "group"` there is no consumer group (a rebalance would only blur what a fault did). The
//! partitions of all change topics are sorted by (topic, partition) and dealt round-robin: consumer `n`
//! (1-based, as scenario targets name them) reads every C-th entry starting at `n - 1`. Dealing over the whole
//! list, rather than Kafka's per-topic ranges, keeps consumers even when topics have fewer partitions than there
//! are consumers — per-topic ranges would hand partition 0 of every topic to consumer 1 — and needs no
//! tie-break, so it is the same on every run.
//!
//! Each assigned partition is read by its own task inside the consumer's task, from the offset the sink stored
//! (never Earliest/Latest, which would skip silently). A fetch that finds its offset deleted by retention
//! records a [`RetentionGap`](crate::history::RetentionGap) and continues at the log start. Every record read, tombstones included, is
//! recorded as [`Consumed`] before it is applied, so a kill between the two shows as a redelivery, never as
//! data the history does not explain.

mod command;
mod command_watch;
pub mod decode;
mod end_offsets;
mod failures;
mod group;
mod manual;
mod member_client;
pub mod sink;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::error::Error as ClientError;
use rskafka::client::partition::PartitionClient;
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use tokio::task::{JoinHandle, JoinSet};

use crate::clock::Clock;
use crate::history::{Consumed, Recorder};

pub use command::{CommandConfig, COMMAND_SINK_DATABASE, PROGRESS_TABLE};
pub use decode::{decode, DecodeError, DecodeProblem, Decoded};
pub use group::{Gate, GroupConfig};
pub use sink::{Batch, MemorySink, MySqlSink, Sink, SinkError, SinkRecord};

/// Most bytes one fetch asks for (Kafka still returns a whole first batch when it is larger).
const FETCH_MAX_BYTES: i32 = 4 << 20;
/// How long the broker may hold a fetch that finds nothing new.
const FETCH_MAX_WAIT_MS: i32 = 100;
/// Pause after an error before the next attempt.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Every rskafka request gives up after this long, so a dead cluster returns control to the consumer loop
/// instead of hanging it.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// What the pipeline reads and how many consumers share it.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub consumers: u32,
    /// Change topics and their partition counts.
    pub topics: Vec<(String, i32)>,
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// Group mode: one consumer group through librdkafka instead of the fixed assignment.
    pub group: Option<GroupConfig>,
    /// A team's ETL instead of the built-in consumers (`kind = "command"`).
    pub command: Option<CommandConfig>,
}

impl PipelineConfig {
    /// Partitions per consumer: index `n - 1` holds consumer `n`'s (see the module docs).
    pub fn assignment(&self) -> Vec<Vec<(String, i32)>> {
        let mut all: Vec<(String, i32)> = self
            .topics
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
            .collect();
        all.sort();
        let c = self.consumers.max(1) as usize;
        let mut out = vec![Vec::new(); c];
        for (i, tp) in all.into_iter().enumerate() {
            out[i % c].push(tp);
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("the pipeline needs at least one consumer (set [pipeline] consumers)")]
    NoConsumers,
    #[error("{consumers} consumers for {partitions} partitions: consumers beyond the partition count would stay idle; lower [pipeline] consumers or raise partitions")]
    MoreConsumersThanPartitions { consumers: u32, partitions: usize },
    #[error("cannot connect to the brokers at {bootstrap}: {source}")]
    Connect {
        bootstrap: String,
        #[source]
        source: ClientError,
    },
    #[error("cannot list the offsets of {topic}/{partition}: {source}")]
    ListOffsets {
        topic: String,
        partition: i32,
        #[source]
        source: ClientError,
    },
    #[error("list offsets of {topic}-{partition}: no answer within {waited:?} (a paused or isolated broker takes requests and never answers)")]
    ListOffsetsTimeout {
        topic: String,
        partition: i32,
        waited: Duration,
    },
    #[error("the command ETL: {0}")]
    Command(String),
    #[error("there is no consumer {consumer}: consumers are numbered 1..={consumers}")]
    NoSuchConsumer { consumer: u32, consumers: u32 },
    #[error("consumer events exist in group mode only ([pipeline] assignment = \"group\")")]
    EventsNeedGroup,
    #[error("group consumer {consumer}: {message}")]
    GroupClient { consumer: u32, message: String },
    #[error("the consumer group did not form within {waited:?}: consumers {missing:?} never got an assignment")]
    GroupNotFormed { waited: Duration, missing: Vec<u32> },
}

/// What every consumer task shares.
pub(crate) struct Shared {
    client: Client,
    sink: Arc<dyn Sink>,
    recorder: Recorder,
    clock: Clock,
    decode_errors: Mutex<Vec<DecodeError>>,
}

struct ConsumerSlot {
    /// Manual mode: the partitions it reads (group mode: empty, the coordinator decides).
    partitions: Vec<(String, i32)>,
    task: Option<JoinHandle<()>>,
    /// Group mode: the running member.
    member: Option<group::Member>,
    /// Fetches wait until this instant (a stall fault).
    stalled_until: Arc<Mutex<Option<tokio::time::Instant>>>,
}

/// The running ETL consumers.
pub struct Pipeline {
    shared: Arc<Shared>,
    /// Group mode: what the members share.
    group: Option<Arc<group::GroupShared>>,
    consumers: Vec<ConsumerSlot>,
    /// Partition clients for [`Pipeline::end_offsets`], made on first use.
    offset_clients: tokio::sync::Mutex<BTreeMap<(String, i32), Arc<PartitionClient>>>,
    topics: Vec<(String, i32)>,
    /// `kind = "command"`: the team's processes, instead of consumers.
    command: Option<command::CommandEtlProcesses>,
}

impl Pipeline {
    /// Connects and starts every consumer at the sink's offsets.
    pub async fn start<S: Sink>(
        config: PipelineConfig,
        sink: Arc<S>,
        recorder: Recorder,
        clock: Clock,
    ) -> Result<Pipeline, PipelineError> {
        if config.consumers == 0 {
            return Err(PipelineError::NoConsumers);
        }
        let mut assignment = config.assignment();
        let partitions = assignment.iter().map(Vec::len).sum();
        if config.command.is_some() {
            // A team's ETL: one reader of the harness's own follows every partition, so the capture's view
            // (the snapshot read, the last commit in Kafka) stays what it is with the built-in ETL.
            assignment = vec![assignment.concat()];
        } else if config.group.is_some() {
            // The coordinator assigns; more members than partitions is allowed (the spares stand by).
            assignment = vec![Vec::new(); config.consumers as usize];
        } else if config.consumers as usize > partitions && config.command.is_none() {
            return Err(PipelineError::MoreConsumersThanPartitions {
                consumers: config.consumers,
                partitions,
            });
        }
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
            deadline: Some(REQUEST_DEADLINE),
        };
        let client = ClientBuilder::new(
            config
                .bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
        )
        .client_id("etl-harness-pipeline")
        .backoff_config(backoff)
        .build()
        .await
        .map_err(|source| PipelineError::Connect {
            bootstrap: config.bootstrap.clone(),
            source,
        })?;
        let sink: Arc<dyn Sink> = sink;
        let shared = Arc::new(Shared {
            client,
            sink,
            recorder,
            clock,
            decode_errors: Mutex::new(Vec::new()),
        });
        let group = config.group.clone().map(|g| {
            Arc::new(group::GroupShared {
                config: g,
                topics: config.topics.iter().map(|(t, _)| t.clone()).collect(),
                bootstrap: config.bootstrap.clone(),
                committed: Mutex::new(BTreeMap::new()),
                assigned: Mutex::new(BTreeMap::new()),
                triggers: group::Triggers::default(),
                runtime: tokio::runtime::Handle::current(),
            })
        });
        let later = config
            .group
            .as_ref()
            .map(|g| g.join_later.clone())
            .unwrap_or_default();
        let mut pipeline = Pipeline {
            shared,
            group,
            consumers: assignment
                .into_iter()
                .map(|partitions| ConsumerSlot {
                    partitions,
                    task: None,
                    member: None,
                    stalled_until: Arc::new(Mutex::new(None)),
                })
                .collect(),
            offset_clients: tokio::sync::Mutex::new(BTreeMap::new()),
            topics: config.topics,
            command: None,
        };
        if let Some(command) = config.command {
            pipeline.spawn(1)?;
            pipeline.command = Some(command::CommandEtlProcesses::start(command).await?);
            return Ok(pipeline);
        }
        for n in (1..=config.consumers).filter(|n| !later.contains(n)) {
            pipeline.spawn(n)?;
        }
        Ok(pipeline)
    }

    fn slot(&mut self, consumer: u32) -> Result<&mut ConsumerSlot, PipelineError> {
        let consumers = self.consumers.len() as u32;
        self.consumers
            .get_mut((consumer as usize).wrapping_sub(1))
            .ok_or(PipelineError::NoSuchConsumer {
                consumer,
                consumers,
            })
    }

    fn spawn(&mut self, consumer: u32) -> Result<(), PipelineError> {
        let shared = self.shared.clone();
        let group = self.group.clone();
        let slot = self.slot(consumer)?;
        if let Some(group) = group {
            slot.member = Some(group::Member::start(consumer, shared, group)?);
            return Ok(());
        }
        *lock(&slot.stalled_until) = None;
        let partitions = slot.partitions.clone();
        let stall = slot.stalled_until.clone();
        slot.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every partition reader with it.
            let mut readers = JoinSet::new();
            for (topic, partition) in partitions {
                readers.spawn(manual::read_partition(
                    shared.clone(),
                    consumer,
                    topic,
                    partition,
                    stall.clone(),
                ));
            }
            while readers.join_next().await.is_some() {}
        }));
        Ok(())
    }

    /// Group mode: waits until every running member has had its first assignment (the group formed), so the
    /// schedule's times count from a working group; at most `bound`. Manual mode: at once.
    pub async fn group_formed(&mut self, bound: Duration) -> Result<(), PipelineError> {
        if let Some(command) = &mut self.command {
            return command.ready(bound).await;
        }
        let Some(group) = &self.group else {
            return Ok(());
        };
        let began = tokio::time::Instant::now();
        loop {
            let missing: Vec<u32> = {
                let assigned = lock(&group.assigned);
                (1..=self.consumers.len() as u32)
                    .filter(|n| self.is_running(*n) && !assigned.contains_key(n))
                    .collect()
            };
            if missing.is_empty() {
                let generation = self
                    .shared
                    .recorder
                    .snapshot_group()
                    .iter()
                    .map(|e| e.generation)
                    .max()
                    .unwrap_or(-1);
                self.shared.recorder.group(crate::history::GroupEvent {
                    at_ms: self.shared.clock.now_ms(),
                    consumer: 0,
                    generation,
                    member_id: String::new(),
                    kind: crate::history::GroupEventKind::Formed,
                });
                return Ok(());
            }
            if began.elapsed() >= bound {
                return Err(PipelineError::GroupNotFormed {
                    waited: bound,
                    missing,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The consumers' partitions: index `n - 1` holds consumer `n`'s (in group mode, what the coordinator last
    /// gave each).
    pub fn assignment(&self) -> Vec<Vec<(String, i32)>> {
        let Some(group) = &self.group else {
            return self
                .consumers
                .iter()
                .map(|c| c.partitions.clone())
                .collect();
        };
        let assigned = lock(&group.assigned);
        (1..=self.consumers.len() as u32)
            .map(|n| {
                assigned
                    .get(&n)
                    .map(|ps| ps.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Arms fault `fault` to fire at consumer `event` (group mode): the member hands a [`Gate`] to `to` and waits
    /// until it is dropped.
    pub fn arm(
        &mut self,
        event: crate::scenario::ConsumerEvent,
        fault: usize,
        to: tokio::sync::mpsc::UnboundedSender<(usize, Gate)>,
    ) -> Result<(), PipelineError> {
        if let Some(command) = &mut self.command {
            if event.kind != crate::scenario::EventKind::Commits {
                return Err(PipelineError::Command(format!(
                    "{event}: the harness sees a command ETL's commits, not its writes"
                )));
            }
            return command.arm(event.consumer, fault, to);
        }
        let group = self.group.as_ref().ok_or(PipelineError::EventsNeedGroup)?;
        group.triggers.arm(event, fault, to);
        Ok(())
    }

    /// The consumer group's id (group mode).
    pub fn group_id(&self) -> Option<String> {
        if let Some(command) = &self.command {
            return command.group_id();
        }
        self.group.as_ref().map(|g| g.config.group_id.clone())
    }

    /// Forgets every armed event fault (the schedule is over).
    pub fn disarm_all(&mut self) {
        if let Some(command) = &mut self.command {
            command.disarm_all();
        }
        if let Some(group) = &self.group {
            group.triggers.disarm_all();
        }
    }

    /// Kills consumer `n` (1-based) and waits until it has stopped: what it applied stays, what it was reading
    /// is read again by its replacement.
    pub async fn kill_consumer(&mut self, consumer: u32) -> Result<(), PipelineError> {
        if let Some(command) = &mut self.command {
            return command.kill(consumer);
        }
        if let Some(member) = self.slot(consumer)?.member.take() {
            member.kill().await;
        }
        if let Some(task) = self.slot(consumer)?.task.take() {
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }

    /// Starts consumer `n` again (killing it first if it runs), from the offsets stored in the sink.
    pub async fn restart_consumer(&mut self, consumer: u32) -> Result<(), PipelineError> {
        if let Some(command) = &mut self.command {
            return command.restart(consumer).await;
        }
        self.kill_consumer(consumer).await?;
        self.spawn(consumer)
    }

    /// A command ETL's instance `n` gets SIGTERM (SIGKILL after its grace); the built-in consumers have no clean
    /// stop of their own (validation refuses it).
    pub async fn stop_consumer(&mut self, consumer: u32) -> Result<(), PipelineError> {
        match &mut self.command {
            Some(command) => command.stop(consumer).await,
            None => Err(PipelineError::Command(
                "stop applies to a command ETL's processes".into(),
            )),
        }
    }

    /// `pause`: a command ETL's process is frozen (SIGSTOP); a built-in consumer is killed.
    pub async fn pause_consumer(&mut self, consumer: u32) -> Result<(), PipelineError> {
        match &mut self.command {
            Some(command) => command.freeze(consumer, true),
            None => self.kill_consumer(consumer).await,
        }
    }

    /// `resume`: a command ETL's process goes on (SIGCONT); a built-in consumer starts again.
    pub async fn resume_consumer(&mut self, consumer: u32) -> Result<(), PipelineError> {
        match &mut self.command {
            Some(command) => command.freeze(consumer, false),
            None => self.restart_consumer(consumer).await,
        }
    }

    /// Consumer `n` fetches nothing for `duration` (real time) from now; it keeps its partitions.
    pub fn stall_consumer(
        &mut self,
        consumer: u32,
        duration: Duration,
    ) -> Result<(), PipelineError> {
        if let Some(command) = &mut self.command {
            return command.stall(consumer, duration);
        }
        let slot = self.slot(consumer)?;
        if let Some(member) = &slot.member {
            member.stall(duration);
        }
        *lock(&slot.stalled_until) = Some(tokio::time::Instant::now() + duration);
        Ok(())
    }

    /// The partitions of the consumers that read now: running, and not stalled.
    pub fn reading_partitions(&self) -> Vec<(String, i32)> {
        let now = tokio::time::Instant::now();
        if self.group.is_some() {
            let assignment = self.assignment();
            return self
                .consumers
                .iter()
                .zip(assignment)
                .filter(|(c, _)| {
                    c.member
                        .as_ref()
                        .is_some_and(|m| m.is_running() && !m.is_stalled())
                })
                .flat_map(|(_, ps)| ps)
                .collect();
        }
        self.consumers
            .iter()
            .filter(|c| c.task.as_ref().is_some_and(|t| !t.is_finished()))
            .filter(|c| lock(&c.stalled_until).is_none_or(|until| until <= now))
            .flat_map(|c| c.partitions.iter().cloned())
            .collect()
    }

    /// Whether consumer `n` is running (not killed).
    pub fn is_running(&self, consumer: u32) -> bool {
        self.consumers
            .get((consumer as usize).wrapping_sub(1))
            .is_some_and(|c| {
                c.task.as_ref().is_some_and(|t| !t.is_finished())
                    || c.member.as_ref().is_some_and(group::Member::is_running)
            })
    }

    /// Whether the sink's offsets have reached `ends` (as [`Pipeline::end_offsets`] returned them).
    /// In group mode with group commits, the group's acknowledged commits count: records committed and never
    /// written are gone for good, waiting for them would only turn a loss into a timeout.
    pub fn caught_up(&self, ends: &[(String, i32, i64)]) -> bool {
        let offsets = self.positions();
        ends.iter().all(|(topic, partition, end)| {
            offsets
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0)
                >= *end
        })
    }

    /// A number that changes whenever a consumer's stored offset moves.
    pub fn consumed_fingerprint(&self) -> u64 {
        self.positions().values().fold(0u64, |sum, offset| {
            sum.wrapping_mul(31).wrapping_add(*offset as u64)
        })
    }

    /// Where the consumers stand: the sink's offsets, or in group mode with group commits the group's
    /// acknowledged commits.
    pub fn positions(&self) -> BTreeMap<(String, i32), i64> {
        if let Some(command) = &self.command {
            return command.positions();
        }
        match &self.group {
            Some(g) if g.config.commit != crate::scenario::CommitPolicy::WithSink => {
                lock(&g.committed).clone()
            }
            _ => self.shared.sink.offsets(),
        }
    }

    /// Reads a command ETL's progress again (its group's committed offsets or its progress row), for
    /// [`Pipeline::positions`]; the built-in consumers' is always current.
    pub async fn refresh_progress(&mut self) {
        if let Some(command) = &self.command {
            command.refresh_progress().await;
        }
    }

    /// A command ETL's instances that exited (each with its log and the log's last lines).
    pub fn exited(&mut self) -> Vec<String> {
        self.command
            .as_mut()
            .map(|c| c.exited(10))
            .unwrap_or_default()
    }

    /// A command ETL none of whose processes runs any more: quiesce need not wait for it.
    pub fn command_gone(&mut self) -> bool {
        self.command.as_mut().is_some_and(|c| c.all_exited())
    }

    /// Whether the ETL is a team's program.
    pub fn is_command(&self) -> bool {
        self.command.is_some()
    }

    /// Records no consumer could decode (skipped, with where they were).
    pub fn decode_errors(&self) -> Vec<DecodeError> {
        lock(&self.shared.decode_errors).clone()
    }

    /// Stops every consumer.
    /// Group members leave the group (and auto-commit once more), as consumers stopping cleanly do.
    pub async fn shutdown(mut self) {
        if let Some(command) = self.command.take() {
            command.shutdown().await;
        }
        for n in 1..=self.consumers.len() as u32 {
            if let Ok(slot) = self.slot(n) {
                if let Some(member) = slot.member.take() {
                    member.close().await;
                }
            }
            let _ = self.kill_consumer(n).await;
        }
    }
}

/// A pipeline dropped without [`Pipeline::shutdown`] (a run that ended on an error) stops its consumers all the
/// same: on a runtime that lives on (several runs on one local topology) they would read forever.
impl Drop for Pipeline {
    fn drop(&mut self) {
        for slot in &mut self.consumers {
            if let Some(task) = slot.task.take() {
                task.abort();
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One record as fetched, from either client.
pub(crate) struct FetchedRecord<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) timestamp_ms: i64,
}

/// Decodes fetched records into a batch and what the history will record as consumed (undecodable records are
/// skipped and kept as decode errors).
pub(crate) fn decode_records(
    shared: &Shared,
    consumer: u32,
    records: Vec<FetchedRecord<'_>>,
    next_offsets: Vec<(String, i32, i64)>,
) -> (Batch, Vec<Consumed>) {
    let at_ms = shared.clock.now_ms();
    let mut topics = crate::history::Interner::new(4);
    let mut consumed = Vec::with_capacity(records.len());
    let mut batch = Batch {
        records: Vec::with_capacity(records.len()),
        next_offsets,
    };
    for r in records {
        let decoded = match decode(r.topic, r.partition, r.offset, r.key, r.value) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(consumer, error = %e, "skipping a record the ETL cannot decode");
                lock(&shared.decode_errors).push(e);
                continue;
            }
        };
        let (change, tombstone_key) = match &decoded {
            Decoded::Change { change, .. } => (Some(change.clone()), None),
            Decoded::Tombstone { key, .. } => (None, Some(*key)),
        };
        consumed.push(Consumed {
            seq: 0,
            consumer,
            topic: topics.get(r.topic),
            partition: r.partition,
            offset: r.offset,
            change,
            tombstone_key,
            at_ms,
            record_timestamp_ms: r.timestamp_ms,
        });
        batch.records.push(SinkRecord {
            topic: r.topic.to_string(),
            partition: r.partition,
            offset: r.offset,
            decoded,
        });
    }
    (batch, consumed)
}
