//! The producer: a per-partition accumulator filled by [`Producer::send`] and one sender task that drains ready
//! batches to partition leaders, as the Java client's RecordAccumulator and Sender do.
//!
//! A batch is ready when it is full (`batch.size`), when `linger` has passed since it was opened, when it is due
//! for a retry, or when [`Producer::flush`] / [`Producer::close`] asks. Each drain sends at most one batch per
//! partition per request and at most `max_in_flight` requests per broker connection. With idempotence a
//! partition with a batch in flight is muted until that batch is answered, so sequences reach the broker in
//! order even across retries (the Java client allows up to 5 per partition and relies on the broker to reorder;
//! muting gives the same guarantee with less broker state).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, MetadataRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as WireCompression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use tokio::sync::{oneshot, Notify};

use super::partitioner::{partition_for_key, StickyPartitioner};
use super::wire::{BrokerConnection, PendingCall, WireError};
use crate::scenario::{self, Acks, Compression};

/// Versions this producer speaks; the highest one the broker also speaks is used.
const PRODUCE_VERSIONS: (i16, i16) = (3, 11);
const METADATA_VERSIONS: (i16, i16) = (4, 12);
const INIT_PRODUCER_ID_VERSIONS: (i16, i16) = (0, 5);
/// Bytes a record batch v2 header takes, and a generous bound of one record's framing (varints, attributes).
const BATCH_OVERHEAD: usize = 61;
const RECORD_OVERHEAD: usize = 21;

/// The Java producer's settings this producer honours (Kafka 3.9 defaults).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// `batch.size`: bytes per partition batch; a record larger than this goes alone in its batch.
    pub batch_size: usize,
    /// `retries`: sends of a batch after the first, bounded anyway by `delivery_timeout`.
    pub retries: u32,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight: usize,
    /// `enable.idempotence`: producer id, epoch and per-partition sequences (needs broker support).
    pub idempotence: bool,
    pub compression: Compression,
    /// `delivery.timeout.ms`: from `send` to the final answer, retries included.
    pub delivery_timeout: Duration,
    /// `request.timeout.ms`: one request's wait for its answer; a timeout closes the connection.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `max.block.ms`: how long `send` waits for metadata of its topic.
    pub max_block: Duration,
    /// `max.request.size`: a larger record is refused before it is queued.
    pub max_request_size: usize,
    /// `allow.auto.create.topics` (asked of the broker in Metadata requests).
    pub allow_auto_create_topics: bool,
    pub client_id: String,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig::from(&scenario::Producer::default())
    }
}

impl From<&scenario::Producer> for ProducerConfig {
    fn from(p: &scenario::Producer) -> ProducerConfig {
        ProducerConfig {
            acks: p.acks,
            linger: Duration::from_millis(p.linger.0),
            batch_size: usize::try_from(p.batch_size.0).unwrap_or(0),
            retries: p.retries,
            max_in_flight: p.max_in_flight as usize,
            idempotence: p.idempotence,
            compression: p.compression,
            delivery_timeout: Duration::from_millis(p.delivery_timeout.0),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            max_block: Duration::from_secs(60),
            max_request_size: 1_048_576,
            allow_auto_create_topics: true,
            client_id: "etl-harness-producer".into(),
        }
    }
}

impl ProducerConfig {
    /// The Java client's own consistency rules.
    fn check(&self) -> Result<(), ProduceError> {
        let invalid = |message: String| Err(ProduceError::Config(message));
        if self.max_in_flight == 0 {
            return invalid("max_in_flight must be at least 1".into());
        }
        if self.idempotence {
            if self.acks != Acks::All {
                return invalid(format!(
                    "idempotence requires acks = all, found {:?}; disable idempotence to use it",
                    self.acks
                ));
            }
            if self.max_in_flight > 5 {
                return invalid(format!(
                    "idempotence allows at most 5 in-flight requests, found {}",
                    self.max_in_flight
                ));
            }
            if self.retries == 0 {
                return invalid("idempotence requires retries > 0".into());
            }
        }
        Ok(())
    }
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub topic: String,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// CreateTime in ms since the epoch; `None` takes the time of `send`.
    pub timestamp: Option<i64>,
}

impl Record {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Record {
        Record {
            topic: topic.into(),
            value: Some(value.into()),
            ..Record::default()
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }
}

/// Where an acknowledged record was written. With acks=0 the broker does not answer and the offset is -1, as in
/// the Java client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
}

/// Why a record was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    #[error("invalid producer config: {0}")]
    Config(String),
    #[error("no broker of {bootstrap} answered: {last}")]
    NoBroker { bootstrap: String, last: String },
    #[error("topic {topic} not present in metadata after {waited:?}{}", last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    TopicNotAvailable {
        topic: String,
        waited: Duration,
        last_error: Option<ResponseError>,
    },
    #[error("topic {topic} cannot be produced to: {error}")]
    Topic { topic: String, error: ResponseError },
    #[error("the record is {size} bytes, larger than max.request.size {limit}")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("{topic}-{partition}: broker answered {error}{} after {attempts} attempt(s)", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        topic: String,
        partition: i32,
        error: ResponseError,
        message: Option<String>,
        attempts: u32,
    },
    #[error("{topic}-{partition}: not acknowledged within delivery timeout {timeout:?} after {attempts} attempt(s){}", last.as_ref().map(|m| format!("; last failure: {m}")).unwrap_or_default())]
    DeliveryTimeout {
        topic: String,
        partition: i32,
        timeout: Duration,
        attempts: u32,
        last: Option<String>,
    },
    #[error(
        "{topic}-{partition}: retries exhausted after {attempts} attempt(s); last failure: {last}"
    )]
    RetriesExhausted {
        topic: String,
        partition: i32,
        attempts: u32,
        last: String,
    },
    #[error("idempotence needs InitProducerId, which broker {addr} does not support; set idempotence = false")]
    IdempotenceUnsupported { addr: String },
    #[error("InitProducerId failed: {0}")]
    InitProducerId(String),
    #[error("an earlier idempotent batch failed ({0}); the producer can no longer guarantee its sequences, create a new one")]
    Poisoned(String),
    #[error("the producer is closed")]
    Closed,
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// The acknowledgement of one [`Producer::send`]: resolves to where the record was written, or why it was not.
#[derive(Debug)]
pub struct Delivery {
    inner: DeliveryState,
}

#[derive(Debug)]
enum DeliveryState {
    Ready(Option<ProduceError>),
    Waiting(oneshot::Receiver<Result<Ack, ProduceError>>),
}

impl Future for Delivery {
    type Output = Result<Ack, ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            DeliveryState::Ready(error) => {
                Poll::Ready(Err(error.take().unwrap_or(ProduceError::Closed)))
            }
            DeliveryState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|answer| answer.unwrap_or(Err(ProduceError::Closed))),
        }
    }
}

type Waiter = oneshot::Sender<Result<Ack, ProduceError>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TopicPartition {
    topic: String,
    partition: i32,
}

#[derive(Debug)]
struct Batch {
    tp: TopicPartition,
    records: Vec<kafka_protocol::records::Record>,
    waiters: Vec<Waiter>,
    bytes: usize,
    created: Instant,
    full: bool,
    attempts: u32,
    retry_at: Option<Instant>,
    base_sequence: Option<i32>,
    encoded: Option<Bytes>,
    last_failure: Option<String>,
}

impl Batch {
    fn fail(self, error: ProduceError) {
        for waiter in self.waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }
}

#[derive(Debug, Default)]
struct PartitionQueue {
    batches: VecDeque<Batch>,
    in_flight: usize,
    next_sequence: i32,
}

#[derive(Debug, Default)]
struct Metadata {
    /// node id → host:port
    brokers: HashMap<i32, String>,
    /// topic → leader per partition (-1 when none)
    topics: HashMap<String, Vec<i32>>,
    topic_errors: HashMap<String, ResponseError>,
    stale: bool,
}

#[derive(Debug)]
struct State {
    metadata: Metadata,
    queues: HashMap<TopicPartition, PartitionQueue>,
    sticky: StickyPartitioner,
    in_flight_per_broker: HashMap<i32, usize>,
    /// Records handed to `send` and not yet answered.
    outstanding: usize,
    flushing: usize,
    closing: bool,
    poisoned: Option<String>,
}

#[derive(Debug)]
struct Shared {
    config: ProducerConfig,
    bootstrap: Vec<String>,
    state: Mutex<State>,
    /// Wakes the sender task: new batch, answer, flush, close.
    wake: Notify,
    /// Wakes `flush` and `send` waiting for metadata.
    progress: Notify,
    connections: tokio::sync::Mutex<HashMap<String, Arc<BrokerConnection>>>,
    metadata_refresh: tokio::sync::Mutex<()>,
    producer_id: i64,
    producer_epoch: i16,
}

/// A Kafka producer with the Java client's semantics. See the module docs.
#[derive(Debug)]
pub struct Producer {
    shared: Arc<Shared>,
    sender: Option<tokio::task::JoinHandle<()>>,
}

impl Producer {
    /// Connects to the cluster of `bootstrap` (comma-separated host:port), reads its metadata and, with
    /// idempotence, obtains a producer id.
    pub async fn connect(
        bootstrap: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ProduceError> {
        config.check()?;
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut shared = Shared {
            bootstrap,
            state: Mutex::new(State {
                metadata: Metadata::default(),
                queues: HashMap::new(),
                sticky: StickyPartitioner::new(config.batch_size, seed),
                in_flight_per_broker: HashMap::new(),
                outstanding: 0,
                flushing: 0,
                closing: false,
                poisoned: None,
            }),
            config,
            wake: Notify::new(),
            progress: Notify::new(),
            connections: tokio::sync::Mutex::new(HashMap::new()),
            metadata_refresh: tokio::sync::Mutex::new(()),
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        };
        shared.refresh_metadata(None).await?;
        if shared.config.idempotence {
            let (id, epoch) = shared.init_producer_id().await?;
            shared.producer_id = id;
            shared.producer_epoch = epoch;
        }
        let shared = Arc::new(shared);
        let sender = tokio::spawn(run_sender(Arc::clone(&shared)));
        Ok(Producer {
            shared,
            sender: Some(sender),
        })
    }

    /// The producer id and epoch from InitProducerId, with idempotence.
    pub fn producer_identity(&self) -> Option<(i64, i16)> {
        (self.shared.producer_id != NO_PRODUCER_ID)
            .then_some((self.shared.producer_id, self.shared.producer_epoch))
    }

    /// Queues `record` and returns its acknowledgement. Waits (up to `max_block`) only for the topic's metadata.
    /// Errors found before queueing are delivered through the returned [`Delivery`] as well.
    pub async fn send(&self, record: Record) -> Delivery {
        match self.enqueue(record).await {
            Ok(rx) => Delivery {
                inner: DeliveryState::Waiting(rx),
            },
            Err(error) => Delivery {
                inner: DeliveryState::Ready(Some(error)),
            },
        }
    }

    async fn enqueue(
        &self,
        record: Record,
    ) -> Result<oneshot::Receiver<Result<Ack, ProduceError>>, ProduceError> {
        let shared = &self.shared;
        let config = &shared.config;
        let size = estimated_size(&record);
        if size + BATCH_OVERHEAD > config.max_request_size {
            return Err(ProduceError::RecordTooLarge {
                size: size + BATCH_OVERHEAD,
                limit: config.max_request_size,
            });
        }
        let num_partitions = shared.wait_for_topic(&record.topic).await?;
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let (tx, rx) = oneshot::channel();
        let mut state = shared.lock();
        if state.closing {
            return Err(ProduceError::Closed);
        }
        if let Some(reason) = &state.poisoned {
            return Err(ProduceError::Poisoned(reason.clone()));
        }
        let partition = match &record.key {
            Some(key) => partition_for_key(key, num_partitions),
            None => state.sticky.partition(&record.topic, num_partitions),
        };
        if record.key.is_none() {
            state
                .sticky
                .record_appended(&record.topic, num_partitions, size);
        }
        let tp = TopicPartition {
            topic: record.topic.clone(),
            partition,
        };
        let wire_record = kafka_protocol::records::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: shared.producer_id,
            producer_epoch: shared.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp,
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|(name, value)| (StrBytes::from_string(name), value))
                .collect::<IndexMap<_, _>>(),
        };
        let batch_size = config.batch_size;
        let queue = state.queues.entry(tp.clone()).or_default();
        let fits = queue
            .batches
            .back()
            .is_some_and(|b| !b.full && b.attempts == 0 && b.bytes + size <= batch_size);
        let mut new_batch = false;
        if !fits {
            if let Some(last) = queue.batches.back_mut() {
                last.full = true;
            }
            queue.batches.push_back(Batch {
                tp,
                records: Vec::new(),
                waiters: Vec::new(),
                bytes: BATCH_OVERHEAD,
                created: Instant::now(),
                full: false,
                attempts: 0,
                retry_at: None,
                base_sequence: None,
                encoded: None,
                last_failure: None,
            });
            new_batch = true;
        }
        let batch = queue.batches.back_mut().expect("a batch was just ensured");
        batch.records.push(wire_record);
        batch.waiters.push(tx);
        batch.bytes += size;
        if batch.bytes >= batch_size {
            batch.full = true;
        }
        let wake = new_batch || batch.full;
        state.outstanding += 1;
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
        Ok(rx)
    }

    /// Sends every queued record now and waits until all records sent so far are answered.
    pub async fn flush(&self) {
        self.shared.lock().flushing += 1;
        self.shared.wake.notify_one();
        loop {
            let progress = self.shared.progress.notified();
            if self.shared.lock().outstanding == 0 {
                break;
            }
            // The sender also wakes flush on every answer; the sleep only guards against a missed wake.
            let _ = tokio::time::timeout(Duration::from_millis(50), progress).await;
        }
        self.shared.lock().flushing -= 1;
    }

    /// Flushes, then stops the sender and closes the connections. Later sends fail with [`ProduceError::Closed`].
    pub async fn close(mut self) {
        self.flush().await;
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(sender) = self.sender.take() {
            let _ = sender.await;
        }
        self.shared.connections.lock().await.clear();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.abort();
        }
        // Whatever is still queued is failed, not dropped silently.
        let mut state = self.shared.lock();
        state.closing = true;
        for (_, queue) in state.queues.drain() {
            for batch in queue.batches {
                batch.fail(ProduceError::Closed);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live connection to `addr`, connecting if needed.
    async fn connection(&self, addr: &str) -> Result<Arc<BrokerConnection>, WireError> {
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(addr) {
            if !connection.is_closed() {
                return Ok(Arc::clone(connection));
            }
        }
        let connection = Arc::new(
            BrokerConnection::connect(addr, &self.config.client_id, self.config.request_timeout)
                .await?,
        );
        connections.insert(addr.to_string(), Arc::clone(&connection));
        Ok(connection)
    }

    async fn forget_connection(&self, addr: &str) {
        self.connections.lock().await.remove(addr);
    }

    /// Known brokers first, then the bootstrap list.
    fn candidate_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self.lock().metadata.brokers.values().cloned().collect();
        addrs.sort();
        for addr in &self.bootstrap {
            if !addrs.contains(addr) {
                addrs.push(addr.clone());
            }
        }
        addrs
    }

    /// Asks one broker for the metadata of every known topic plus `topic`.
    async fn refresh_metadata(&self, topic: Option<&str>) -> Result<(), ProduceError> {
        let _one_at_a_time = self.metadata_refresh.lock().await;
        let mut topics: Vec<String> = self.lock().metadata.topics.keys().cloned().collect();
        if let Some(topic) = topic {
            if !topics.iter().any(|t| t == topic) {
                topics.push(topic.to_string());
            }
        }
        let mut last = String::from("no bootstrap servers given");
        for addr in self.candidate_addrs() {
            let connection = match self.connection(&addr).await {
                Ok(connection) => connection,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let Some(version) = connection.version::<MetadataRequest>(METADATA_VERSIONS) else {
                last = format!("{addr} speaks no Metadata version in {METADATA_VERSIONS:?}");
                continue;
            };
            let request = MetadataRequest::default()
                .with_topics(Some(
                    topics
                        .iter()
                        .map(|t| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                        })
                        .collect(),
                ))
                .with_allow_auto_topic_creation(self.config.allow_auto_create_topics);
            match connection
                .call(&request, version, self.config.request_timeout)
                .await
            {
                Ok(answer) => {
                    let mut state = self.lock();
                    let metadata = &mut state.metadata;
                    metadata.brokers = answer
                        .brokers
                        .iter()
                        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                        .collect();
                    for t in &answer.topics {
                        let Some(name) = &t.name else { continue };
                        let name = name.0.to_string();
                        match ResponseError::try_from_code(t.error_code) {
                            None => {
                                let mut leaders = vec![-1; t.partitions.len()];
                                for p in &t.partitions {
                                    if let Some(slot) = usize::try_from(p.partition_index)
                                        .ok()
                                        .and_then(|i| leaders.get_mut(i))
                                    {
                                        *slot = if p.error_code == 0 { p.leader_id.0 } else { -1 };
                                    }
                                }
                                metadata.topic_errors.remove(&name);
                                metadata.topics.insert(name, leaders);
                            }
                            Some(error) => {
                                metadata.topics.remove(&name);
                                metadata.topic_errors.insert(name, error);
                            }
                        }
                    }
                    metadata.stale = false;
                    drop(state);
                    self.progress.notify_waiters();
                    return Ok(());
                }
                Err(e) => {
                    last = e.to_string();
                    self.forget_connection(&addr).await;
                }
            }
        }
        self.lock().metadata.stale = true;
        Err(ProduceError::NoBroker {
            bootstrap: self.bootstrap.join(","),
            last,
        })
    }

    /// The partition count of `topic`, refreshing metadata until it is known or `max_block` has passed.
    async fn wait_for_topic(&self, topic: &str) -> Result<i32, ProduceError> {
        let started = Instant::now();
        loop {
            let last_error = {
                let state = self.lock();
                if let Some(leaders) = state.metadata.topics.get(topic) {
                    if !leaders.is_empty() {
                        return Ok(leaders.len() as i32);
                    }
                }
                state.metadata.topic_errors.get(topic).copied()
            };
            if let Some(error) = last_error {
                if !error.is_retriable() {
                    return Err(ProduceError::Topic {
                        topic: topic.to_string(),
                        error,
                    });
                }
            }
            if started.elapsed() >= self.config.max_block {
                return Err(ProduceError::TopicNotAvailable {
                    topic: topic.to_string(),
                    waited: self.config.max_block,
                    last_error,
                });
            }
            if let Err(e) = self.refresh_metadata(Some(topic)).await {
                tracing::debug!("metadata refresh for {topic}: {e}");
            }
            let known = self
                .lock()
                .metadata
                .topics
                .get(topic)
                .is_some_and(|l| !l.is_empty());
            if !known {
                let left = self.config.max_block.saturating_sub(started.elapsed());
                tokio::time::sleep(self.config.retry_backoff.min(left)).await;
            }
        }
    }

    async fn init_producer_id(&self) -> Result<(i64, i16), ProduceError> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < self.config.delivery_timeout {
            for addr in self.candidate_addrs() {
                let connection = match self.connection(&addr).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                };
                let Some(version) =
                    connection.version::<InitProducerIdRequest>(INIT_PRODUCER_ID_VERSIONS)
                else {
                    return Err(ProduceError::IdempotenceUnsupported { addr });
                };
                let request = InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(NO_PRODUCER_ID))
                    .with_producer_epoch(NO_PRODUCER_EPOCH);
                match connection
                    .call(&request, version, self.config.request_timeout)
                    .await
                {
                    Ok(answer) => match ResponseError::try_from_code(answer.error_code) {
                        None => return Ok((answer.producer_id.0, answer.producer_epoch)),
                        Some(error) if error.is_retriable() => last = error.to_string(),
                        Some(error) => return Err(ProduceError::InitProducerId(error.to_string())),
                    },
                    Err(e) => {
                        last = e.to_string();
                        self.forget_connection(&addr).await;
                    }
                }
            }
            tokio::time::sleep(self.config.retry_backoff).await;
        }
        Err(ProduceError::InitProducerId(format!(
            "no answer within {:?}: {last}",
            self.config.delivery_timeout
        )))
    }
}

/// One request's worth of batches for one broker.
struct Drained {
    broker: i32,
    addr: String,
    batches: Vec<Batch>,
}

async fn run_sender(shared: Arc<Shared>) {
    loop {
        let (requests, next_wake, refresh, done) = drain(&shared);
        if done {
            return;
        }
        // Written here, in drain order, so batches of one partition reach the broker in order; only the wait for
        // the answers runs in parallel.
        for request in requests {
            let in_flight = start_request(&shared, request).await;
            tokio::spawn(finish_request(Arc::clone(&shared), in_flight));
        }
        if refresh {
            if let Err(e) = shared.refresh_metadata(None).await {
                tracing::debug!("metadata refresh: {e}");
                tokio::time::sleep(shared.config.retry_backoff).await;
            }
            continue;
        }
        let woken = shared.wake.notified();
        match next_wake {
            Some(at) => {
                let _ = tokio::time::timeout_at(at.into(), woken).await;
            }
            None => woken.await,
        }
    }
}

/// Takes the ready batches out of the accumulator, grouped per leader. Returns them, when to look again, whether
/// metadata must be refreshed first, and whether the sender is done (closing with nothing left).
fn drain(shared: &Shared) -> (Vec<Drained>, Option<Instant>, bool, bool) {
    let config = &shared.config;
    let now = Instant::now();
    let mut state = shared.lock();
    let state = &mut *state;
    let force = state.flushing > 0 || state.closing;
    let mut next_wake: Option<Instant> = None;
    let mut wake_at = |at: Instant| {
        next_wake = Some(next_wake.map_or(at, |n: Instant| n.min(at)));
    };
    let mut refresh = state.metadata.stale;
    let mut per_broker: HashMap<i32, Drained> = HashMap::new();
    let mut expired = Vec::new();
    let mut failed_sequence = None;
    for (tp, queue) in state.queues.iter_mut() {
        // Expire batches past their delivery timeout that are not in flight.
        while let Some(front) = queue.batches.front() {
            if now.duration_since(front.created) < config.delivery_timeout {
                break;
            }
            let batch = queue.batches.pop_front().expect("front exists");
            if batch.base_sequence.is_some() {
                failed_sequence = Some(format!("{}-{} expired", tp.topic, tp.partition));
            }
            expired.push(batch);
        }
        let Some(front) = queue.batches.front() else {
            continue;
        };
        wake_at(front.created + config.delivery_timeout);
        if config.idempotence && queue.in_flight > 0 {
            continue;
        }
        if let Some(at) = front.retry_at {
            if at > now {
                wake_at(at);
                continue;
            }
        }
        let linger_due = front.created + config.linger;
        let ready = force
            || front.full
            || queue.batches.len() > 1
            || front.retry_at.is_some()
            || linger_due <= now;
        if !ready {
            wake_at(linger_due);
            continue;
        }
        let leader = state
            .metadata
            .topics
            .get(&tp.topic)
            .and_then(|leaders| leaders.get(tp.partition as usize))
            .copied()
            .unwrap_or(-1);
        let Some(addr) = state.metadata.brokers.get(&leader).cloned() else {
            refresh = true;
            continue;
        };
        let in_flight = state
            .in_flight_per_broker
            .get(&leader)
            .copied()
            .unwrap_or(0);
        let pending_here = per_broker.contains_key(&leader);
        if in_flight >= config.max_in_flight && !pending_here {
            continue;
        }
        let drained = per_broker.entry(leader).or_insert_with(|| Drained {
            broker: leader,
            addr,
            batches: Vec::new(),
        });
        let request_bytes: usize = drained.batches.iter().map(|b| b.bytes).sum();
        if !drained.batches.is_empty() && request_bytes + front.bytes > config.max_request_size {
            wake_at(now);
            continue;
        }
        let mut batch = queue.batches.pop_front().expect("front exists");
        if config.idempotence && batch.base_sequence.is_none() {
            batch.base_sequence = Some(queue.next_sequence);
            queue.next_sequence =
                queue.next_sequence.wrapping_add(batch.records.len() as i32) & i32::MAX;
        }
        batch.attempts += 1;
        queue.in_flight += 1;
        drained.batches.push(batch);
    }
    for drained in per_broker.values() {
        *state
            .in_flight_per_broker
            .entry(drained.broker)
            .or_default() += 1;
    }
    if let Some(reason) = failed_sequence {
        state.poisoned.get_or_insert(reason);
    }
    let mut answered = 0;
    for batch in expired {
        answered += batch.records.len();
        let error = ProduceError::DeliveryTimeout {
            topic: batch.tp.topic.clone(),
            partition: batch.tp.partition,
            timeout: config.delivery_timeout,
            attempts: batch.attempts,
            last: batch.last_failure.clone(),
        };
        batch.fail(error);
    }
    state.outstanding -= answered;
    // An idle queue may go, unless it carries an idempotent sequence: a partition's sequence must never start
    // over at 0 (the broker would take the next batch for a duplicate of the first and not append it).
    state
        .queues
        .retain(|_, q| !q.batches.is_empty() || q.in_flight > 0 || q.next_sequence != 0);
    let idle = state
        .queues
        .values()
        .all(|q| q.batches.is_empty() && q.in_flight == 0)
        && state.in_flight_per_broker.values().all(|n| *n == 0);
    let done = state.closing && idle && per_broker.is_empty();
    if answered > 0 {
        shared.progress.notify_waiters();
    }
    (
        per_broker.into_values().collect(),
        next_wake,
        refresh && !done,
        done,
    )
}

fn wire_compression(compression: Compression) -> WireCompression {
    match compression {
        Compression::None => WireCompression::None,
        Compression::Gzip => WireCompression::Gzip,
        Compression::Snappy => WireCompression::Snappy,
        Compression::Lz4 => WireCompression::Lz4,
        Compression::Zstd => WireCompression::Zstd,
    }
}

/// Encodes `batch` once; retries resend the same bytes (same sequence numbers).
fn encoded(batch: &mut Batch, compression: Compression) -> Result<Bytes, String> {
    if let Some(bytes) = &batch.encoded {
        return Ok(bytes.clone());
    }
    // The encoder groups records into one batch while offset − sequence stays constant; without idempotence the
    // base sequence must be -1, so the sequences run -1, 0, 1, …
    let base_sequence = batch.base_sequence.unwrap_or(-1);
    for (i, record) in batch.records.iter_mut().enumerate() {
        record.offset = i as i64;
        record.sequence = base_sequence.wrapping_add(i as i32);
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        batch.records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: wire_compression(compression),
        },
    )
    .map_err(|e| e.to_string())?;
    let bytes = buf.freeze();
    batch.encoded = Some(bytes.clone());
    Ok(bytes)
}

enum Outcome {
    Acked(i64),
    Retry(String, bool),
    Fail(ProduceError),
}

/// A produce request on its way: the batches, the outcome of each so far, and the answer to wait for.
struct InFlight {
    request: Drained,
    outcomes: Vec<Outcome>,
    sendable: Vec<usize>,
    answer: Answer,
}

enum Answer {
    Failed(String),
    NoAck,
    Pending(PendingCall<ProduceRequest>),
}

async fn start_request(shared: &Shared, mut request: Drained) -> InFlight {
    let config = &shared.config;
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(request.batches.len());
    let mut topic_data: IndexMap<String, Vec<PartitionProduceData>> = IndexMap::new();
    let mut sendable = Vec::new();
    for (i, batch) in request.batches.iter_mut().enumerate() {
        match encoded(batch, config.compression) {
            Ok(bytes) => {
                topic_data.entry(batch.tp.topic.clone()).or_default().push(
                    PartitionProduceData::default()
                        .with_index(batch.tp.partition)
                        .with_records(Some(bytes)),
                );
                sendable.push(i);
                outcomes.push(Outcome::Retry(String::new(), false));
            }
            Err(e) => outcomes.push(Outcome::Fail(ProduceError::Config(format!(
                "cannot encode a record batch: {e}"
            )))),
        }
    }
    if !sendable.is_empty() {
        let produce = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(config.acks.wire())
            .with_timeout_ms(config.request_timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(
                topic_data
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(topic)))
                            .with_partition_data(partitions)
                    })
                    .collect(),
            );
        let answer = start_produce(shared, &request.addr, &produce).await;
        return InFlight {
            request,
            outcomes,
            sendable,
            answer,
        };
    }
    InFlight {
        request,
        outcomes,
        sendable,
        answer: Answer::NoAck,
    }
}

async fn finish_request(shared: Arc<Shared>, in_flight: InFlight) {
    let InFlight {
        request,
        mut outcomes,
        sendable,
        answer,
    } = in_flight;
    let answer = match answer {
        Answer::Failed(failure) => Err(failure),
        Answer::NoAck => Ok(None),
        Answer::Pending(call) => call
            .wait(shared.config.request_timeout * 2)
            .await
            .map(Some)
            .map_err(|e| e.to_string()),
    };
    {
        match answer {
            Err(failure) => {
                shared.forget_connection(&request.addr).await;
                for &i in &sendable {
                    outcomes[i] = Outcome::Retry(failure.clone(), true);
                }
            }
            Ok(None) => {
                for &i in &sendable {
                    outcomes[i] = Outcome::Acked(-1);
                }
            }
            Ok(Some(response)) => {
                for &i in &sendable {
                    let batch = &request.batches[i];
                    let partition = response
                        .responses
                        .iter()
                        .filter(|t| t.name.0.as_str() == batch.tp.topic)
                        .flat_map(|t| t.partition_responses.iter())
                        .find(|p| p.index == batch.tp.partition);
                    outcomes[i] = match partition {
                        None => Outcome::Retry(
                            format!("{} did not answer for this partition", request.addr),
                            true,
                        ),
                        Some(p) => match ResponseError::try_from_code(p.error_code) {
                            None | Some(ResponseError::DuplicateSequenceNumber) => {
                                Outcome::Acked(p.base_offset)
                            }
                            Some(error) if error.is_retriable() => {
                                let refresh = matches!(
                                    error,
                                    ResponseError::NotLeaderOrFollower
                                        | ResponseError::UnknownTopicOrPartition
                                        | ResponseError::LeaderNotAvailable
                                        | ResponseError::KafkaStorageError
                                        | ResponseError::FencedLeaderEpoch
                                        | ResponseError::UnknownLeaderEpoch
                                );
                                Outcome::Retry(error.to_string(), refresh)
                            }
                            Some(error) => Outcome::Fail(ProduceError::Broker {
                                topic: batch.tp.topic.clone(),
                                partition: batch.tp.partition,
                                error,
                                message: p.error_message.as_ref().map(|m| m.to_string()),
                                attempts: batch.attempts,
                            }),
                        },
                    };
                }
            }
        }
    }
    complete(&shared, request, outcomes);
}

/// Writes one Produce request; with acks=0 there is no answer to wait for.
async fn start_produce(shared: &Shared, addr: &str, produce: &ProduceRequest) -> Answer {
    let connection = match shared.connection(addr).await {
        Ok(connection) => connection,
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let Some(version) = connection.version::<ProduceRequest>(PRODUCE_VERSIONS) else {
        return Answer::Failed(format!(
            "{addr} speaks no Produce version in {PRODUCE_VERSIONS:?}"
        ));
    };
    if shared.config.acks == Acks::None {
        return match connection.send_only(produce, version).await {
            Ok(()) => Answer::NoAck,
            Err(e) => Answer::Failed(e.to_string()),
        };
    }
    match connection.start_call(produce, version).await {
        Ok(call) => Answer::Pending(call),
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// Applies the outcome of each batch of a finished request: acknowledge, requeue for retry, or fail.
fn complete(shared: &Shared, request: Drained, outcomes: Vec<Outcome>) {
    let config = &shared.config;
    let now = Instant::now();
    let mut guard = shared.lock();
    let state = &mut *guard;
    if let Some(n) = state.in_flight_per_broker.get_mut(&request.broker) {
        *n = n.saturating_sub(1);
    }
    let mut answered = 0;
    let mut retry_front: Vec<Batch> = Vec::new();
    for (mut batch, outcome) in request.batches.into_iter().zip(outcomes) {
        let queue = state.queues.entry(batch.tp.clone()).or_default();
        queue.in_flight = queue.in_flight.saturating_sub(1);
        let result = match outcome {
            Outcome::Acked(base_offset) => Ok(base_offset),
            Outcome::Fail(error) => Err(error),
            Outcome::Retry(reason, refresh) => {
                if refresh {
                    state.metadata.stale = true;
                }
                if now.duration_since(batch.created) >= config.delivery_timeout {
                    Err(ProduceError::DeliveryTimeout {
                        topic: batch.tp.topic.clone(),
                        partition: batch.tp.partition,
                        timeout: config.delivery_timeout,
                        attempts: batch.attempts,
                        last: Some(reason),
                    })
                } else if batch.attempts > config.retries {
                    Err(ProduceError::RetriesExhausted {
                        topic: batch.tp.topic.clone(),
                        partition: batch.tp.partition,
                        attempts: batch.attempts,
                        last: reason,
                    })
                } else {
                    tracing::debug!(
                        "{}-{}: retrying after {reason}",
                        batch.tp.topic,
                        batch.tp.partition
                    );
                    batch.retry_at = Some(now + config.retry_backoff);
                    batch.last_failure = Some(reason);
                    retry_front.push(batch);
                    continue;
                }
            }
        };
        answered += batch.records.len();
        match result {
            Ok(base_offset) => {
                let partition = batch.tp.partition;
                for (i, waiter) in batch.waiters.into_iter().enumerate() {
                    let offset = if base_offset < 0 {
                        -1
                    } else {
                        base_offset + i as i64
                    };
                    let _ = waiter.send(Ok(Ack { partition, offset }));
                }
            }
            Err(error) => {
                if batch.base_sequence.is_some() {
                    state.poisoned.get_or_insert_with(|| error.to_string());
                }
                batch.fail(error);
            }
        }
    }
    for batch in retry_front {
        let queue = state.queues.entry(batch.tp.clone()).or_default();
        queue.batches.push_front(batch);
    }
    state.outstanding -= answered;
    drop(guard);
    shared.wake.notify_one();
    shared.progress.notify_waiters();
}

fn estimated_size(record: &Record) -> usize {
    RECORD_OVERHEAD
        + record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 10)
            .sum::<usize>()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
