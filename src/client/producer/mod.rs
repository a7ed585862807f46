//! The producer: a per-partition accumulator filled by [`Producer::send`] and one sender task that drains ready
//! batches to partition leaders, as the Java client's RecordAccumulator and Sender do.
//!
//! A batch is ready when it is full (`batch.size`), when `linger` has passed since it was opened, when it is due
//! for a retry, or when [`Producer::flush`] / [`Producer::close`] asks. Each drain sends at most one batch per
//! partition per request and at most `max_in_flight` requests per broker connection. With idempotence a
//! partition with a batch in flight is muted until that batch is answered, so sequences reach the broker in
//! order even across retries (the Java client allows up to 5 per partition and relies on the broker to reorder;
//! muting gives the same guarantee with less broker state).

mod accumulator;
mod config;
mod idempotence;
mod lz4_frame;
mod sender;
mod wire_batch;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use tokio::sync::{oneshot, Notify};

use super::partitioner::StickyPartitioner;
use super::wire::{BrokerConnection, WireError};
use accumulator::{PartitionQueue, TopicPartition};
use sender::{run_sender, Metadata};

pub use config::{Acks, Compression, ProducerConfig};

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
}
