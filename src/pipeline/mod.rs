//! The ETL: consumers that share the change topics' partitions, the sink that keeps the latest image of every
//! row, and the flat encounter table derived from those images.
//!
//! - [`decode`](mod@decode): Debezium JSON records (MySQL and MariaDB connectors) back into typed row images.
//! - [`flat`](crate::model::flat): the flat encounter table as a pure function of row images, lives in the model.
//! - [`sink`]: [`MemorySink`] keeps images by source position, the flat table incrementally, and the offsets.
//! - [`Pipeline`]: C consumers reading with rskafka at explicit offsets taken from the sink.
//!
//! ## Consumers
//!
//! There are no consumer groups (rskafka has none, and a rebalance would only blur what a fault did). The
//! partitions of all change topics are sorted by (topic, partition) and dealt round-robin: consumer `n`
//! (1-based, as scenario targets name them) reads every C-th entry starting at `n - 1`. Dealing over the whole
//! list, rather than Kafka's per-topic ranges, keeps consumers even when topics have fewer partitions than there
//! are consumers — per-topic ranges would hand partition 0 of every topic to consumer 1 — and needs no
//! tie-break, so it is the same on every run.
//!
//! Each assigned partition is read by its own task inside the consumer's task, from the offset the sink stored
//! (never Earliest/Latest, which would skip silently). A fetch that finds its offset deleted by retention
//! records a [`RetentionGap`] and continues at the log start. Every record read, tombstones included, is
//! recorded as [`Consumed`] before it is applied, so a kill between the two shows as a redelivery, never as
//! data the history does not explain.

pub mod decode;
mod failures;
pub mod sink;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use tokio::task::{JoinHandle, JoinSet};

use crate::clock::Clock;
use crate::history::{Consumed, Recorder, RetentionGap};

pub use decode::{decode, DecodeError, DecodeProblem, Decoded};
pub use sink::{Batch, MemorySink, MySqlSink, Sink, SinkError, SinkRecord};

/// Most bytes one fetch asks for (Kafka still returns a whole first batch when it is larger).
const FETCH_MAX_BYTES: i32 = 4 << 20;
/// How long the broker may hold a fetch that finds nothing new.
const FETCH_MAX_WAIT_MS: i32 = 100;
/// Pause after an error before the next attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
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
    #[error("there is no consumer {consumer}: consumers are numbered 1..={consumers}")]
    NoSuchConsumer { consumer: u32, consumers: u32 },
}

/// What every consumer task shares.
struct Shared {
    client: Client,
    sink: Arc<dyn Sink>,
    recorder: Recorder,
    clock: Clock,
    decode_errors: Mutex<Vec<DecodeError>>,
}

struct ConsumerSlot {
    partitions: Vec<(String, i32)>,
    task: Option<JoinHandle<()>>,
    /// Fetches wait until this instant (a stall fault).
    stalled_until: Arc<Mutex<Option<tokio::time::Instant>>>,
}

/// The running ETL consumers.
pub struct Pipeline {
    shared: Arc<Shared>,
    consumers: Vec<ConsumerSlot>,
    /// Partition clients for [`Pipeline::end_offsets`], made on first use.
    offset_clients: tokio::sync::Mutex<BTreeMap<(String, i32), Arc<PartitionClient>>>,
    topics: Vec<(String, i32)>,
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
        let assignment = config.assignment();
        let partitions = assignment.iter().map(Vec::len).sum();
        if config.consumers as usize > partitions {
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
        let mut pipeline = Pipeline {
            shared,
            consumers: assignment
                .into_iter()
                .map(|partitions| ConsumerSlot {
                    partitions,
                    task: None,
                    stalled_until: Arc::new(Mutex::new(None)),
                })
                .collect(),
            offset_clients: tokio::sync::Mutex::new(BTreeMap::new()),
            topics: config.topics,
        };
        for n in 1..=config.consumers {
            pipeline.spawn(n);
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

    fn spawn(&mut self, consumer: u32) {
        let shared = self.shared.clone();
        let Ok(slot) = self.slot(consumer) else {
            return;
        };
        *lock(&slot.stalled_until) = None;
        let partitions = slot.partitions.clone();
        let stall = slot.stalled_until.clone();
        slot.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every partition reader with it.
            let mut readers = JoinSet::new();
            for (topic, partition) in partitions {
                readers.spawn(read_partition(
                    shared.clone(),
                    consumer,
                    topic,
                    partition,
                    stall.clone(),
                ));
            }
            while readers.join_next().await.is_some() {}
        }));
    }

    /// The consumers' partitions: index `n - 1` holds consumer `n`'s.
    pub fn assignment(&self) -> Vec<Vec<(String, i32)>> {
        self.consumers
            .iter()
            .map(|c| c.partitions.clone())
            .collect()
    }

    /// Kills consumer `n` (1-based) and waits until it has stopped: what it applied stays, what it was reading
    /// is read again by its replacement.
    pub async fn kill_consumer(&mut self, consumer: u32) -> Result<(), PipelineError> {
        if let Some(task) = self.slot(consumer)?.task.take() {
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }

    /// Starts consumer `n` again (killing it first if it runs), from the offsets stored in the sink.
    pub async fn restart_consumer(&mut self, consumer: u32) -> Result<(), PipelineError> {
        self.kill_consumer(consumer).await?;
        self.spawn(consumer);
        Ok(())
    }

    /// Consumer `n` fetches nothing for `duration` (real time) from now; it keeps its partitions.
    pub fn stall_consumer(
        &mut self,
        consumer: u32,
        duration: Duration,
    ) -> Result<(), PipelineError> {
        let slot = self.slot(consumer)?;
        *lock(&slot.stalled_until) = Some(tokio::time::Instant::now() + duration);
        Ok(())
    }

    /// The partitions of the consumers that read now: running, and not stalled.
    pub fn reading_partitions(&self) -> Vec<(String, i32)> {
        let now = tokio::time::Instant::now();
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
            .and_then(|c| c.task.as_ref())
            .is_some_and(|t| !t.is_finished())
    }

    /// The high watermark of every partition of every change topic: `(topic, partition, end)`.
    pub async fn end_offsets(&self) -> Result<Vec<(String, i32, i64)>, PipelineError> {
        let mut out = Vec::new();
        let mut clients = self.offset_clients.lock().await;
        for (topic, count) in &self.topics {
            for partition in 0..*count {
                let key = (topic.clone(), partition);
                let error = |source| PipelineError::ListOffsets {
                    topic: topic.clone(),
                    partition,
                    source,
                };
                let pc = match clients.get(&key) {
                    Some(pc) => pc.clone(),
                    None => {
                        let pc = Arc::new(
                            self.shared
                                .client
                                .partition_client(topic, partition, UnknownTopicHandling::Error)
                                .await
                                .map_err(error)?,
                        );
                        clients.insert(key, pc.clone());
                        pc
                    }
                };
                // rskafka has no request timeout: a broker that never answers would hold this call forever.
                let end = tokio::time::timeout(REQUEST_DEADLINE, pc.get_offset(OffsetAt::Latest))
                    .await
                    .map_err(|_| PipelineError::ListOffsetsTimeout {
                        topic: topic.clone(),
                        partition,
                        waited: REQUEST_DEADLINE,
                    })?
                    .map_err(error)?;
                out.push((topic.clone(), partition, end));
            }
        }
        Ok(out)
    }

    /// Whether the sink's offsets have reached `ends` (as [`Pipeline::end_offsets`] returned them).
    pub fn caught_up(&self, ends: &[(String, i32, i64)]) -> bool {
        let offsets = self.shared.sink.offsets();
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
        self.shared
            .sink
            .offsets()
            .values()
            .fold(0u64, |sum, offset| {
                sum.wrapping_mul(31).wrapping_add(*offset as u64)
            })
    }

    /// Records no consumer could decode (skipped, with where they were).
    pub fn decode_errors(&self) -> Vec<DecodeError> {
        lock(&self.shared.decode_errors).clone()
    }

    /// Stops every consumer.
    pub async fn shutdown(mut self) {
        for n in 1..=self.consumers.len() as u32 {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One partition's read loop: fetch at the stored offset, decode, record, apply; forever, until aborted.
async fn read_partition(
    shared: Arc<Shared>,
    consumer: u32,
    topic: String,
    partition: i32,
    stall: Arc<Mutex<Option<tokio::time::Instant>>>,
) {
    let mut offset = shared
        .sink
        .offsets()
        .get(&(topic.clone(), partition))
        .copied()
        .unwrap_or(0);
    let mut client: Option<PartitionClient> = None;
    let mut failures = failures::FailureStreak::default();
    loop {
        let until = *lock(&stall);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        let pc = match &client {
            Some(pc) => pc,
            None => match shared
                .client
                .partition_client(&topic, partition, UnknownTopicHandling::Retry)
                .await
            {
                Ok(pc) => client.insert(pc),
                Err(e) => {
                    failures.failed("no partition client yet", consumer, &topic, partition, &e);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        match pc
            .fetch_records(offset, 1..FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS)
            .await
        {
            Ok((records, _high_watermark)) => {
                failures.succeeded(consumer, &topic, partition);
                // A stall that began while the fetch was out holds from the moment it began: what the fetch
                // brought is dropped, not applied, and read again when the stall ends.
                if lock(&stall).is_some_and(|until| until > tokio::time::Instant::now()) {
                    continue;
                }
                let Some(last) = records.last() else {
                    continue;
                };
                let next = last.offset + 1;
                let batch = to_batch(&shared, consumer, &topic, partition, records, next);
                if apply(&shared, consumer, batch).await {
                    offset = next;
                }
            }
            Err(ClientError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => match out_of_range(&shared, pc, consumer, &topic, partition, offset).await {
                Some(moved) => offset = moved,
                None => tokio::time::sleep(RETRY_PAUSE).await,
            },
            Err(e) => {
                failures.failed("fetch failed", consumer, &topic, partition, &e);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Decodes fetched records into a batch and records them as consumed.
fn to_batch(
    shared: &Shared,
    consumer: u32,
    topic: &str,
    partition: i32,
    records: Vec<rskafka::record::RecordAndOffset>,
    next: i64,
) -> Batch {
    let at_ms = shared.clock.now_ms();
    let mut consumed = Vec::with_capacity(records.len());
    let mut batch = Batch {
        records: Vec::with_capacity(records.len()),
        next_offsets: vec![(topic.to_string(), partition, next)],
    };
    for r in records {
        let decoded = match decode(
            topic,
            partition,
            r.offset,
            r.record.key.as_deref(),
            r.record.value.as_deref(),
        ) {
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
            topic: topic.to_string(),
            partition,
            offset: r.offset,
            change,
            tombstone_key,
            at_ms,
            record_timestamp_ms: r.record.timestamp.timestamp_millis(),
        });
        batch.records.push(SinkRecord {
            topic: topic.to_string(),
            partition,
            offset: r.offset,
            decoded,
        });
    }
    shared.recorder.consumed_batch(consumed);
    batch
}

/// Hands a batch to the sink; `false` (after a pause) when the sink refused it, so it is fetched again.
async fn apply(shared: &Shared, consumer: u32, batch: Batch) -> bool {
    match shared.sink.apply(consumer, batch).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(consumer, error = %e, "sink refused a batch; reading it again");
            tokio::time::sleep(RETRY_PAUSE).await;
            false
        }
    }
}

/// OFFSET_OUT_OF_RANGE at `offset`: below the log start, records what retention took and moves to the log
/// start; above the log end (the log was truncated under the reader), moves back to the end. Returns the new
/// offset, stored in the sink; `None` when the offsets could not be listed.
async fn out_of_range(
    shared: &Shared,
    pc: &PartitionClient,
    consumer: u32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<i64> {
    let listed = async {
        Ok::<_, ClientError>((
            pc.get_offset(OffsetAt::Earliest).await?,
            pc.get_offset(OffsetAt::Latest).await?,
        ))
    };
    let (start, end) = match listed.await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(consumer, topic, partition, error = %e, "cannot list offsets after OFFSET_OUT_OF_RANGE");
            return None;
        }
    };
    let moved = if offset < start {
        shared.recorder.retention_gap(RetentionGap {
            consumer,
            topic: topic.to_string(),
            partition,
            requested: offset,
            log_start_offset: start,
            at_ms: shared.clock.now_ms(),
        });
        start
    } else if offset > end {
        tracing::warn!(
            consumer,
            topic,
            partition,
            offset,
            end,
            "the log ends below the stored offset (truncated); reading from its end"
        );
        end
    } else {
        // The range moved between the fetch and the listing: try the same offset again.
        return Some(offset);
    };
    let batch = Batch {
        records: Vec::new(),
        next_offsets: vec![(topic.to_string(), partition, moved)],
    };
    apply(shared, consumer, batch).await.then_some(moved)
}
