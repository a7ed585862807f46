//! The sender: one task that drains ready batches, writes them as Produce requests to the partitions' leaders
//! (at most `max_in_flight` per connection), waits for the answers, and acknowledges, retries with backoff or
//! fails each batch; and the metadata (brokers, leaders) it sends by, refreshed when a leader moved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::accumulator::{drain, Batch, Drained};
use super::{Ack, Acks, Compression, ProduceError, Shared};
use crate::client::wire::{BrokerConnection, PendingCall, WireError};

/// Versions this producer speaks; the highest one the broker also speaks is used.
const PRODUCE_VERSIONS: (i16, i16) = (3, 11);
const METADATA_VERSIONS: (i16, i16) = (4, 12);

#[derive(Debug, Default)]
pub(super) struct Metadata {
    /// node id → host:port
    pub(super) brokers: HashMap<i32, String>,
    /// topic → leader per partition (-1 when none)
    pub(super) topics: HashMap<String, Vec<i32>>,
    pub(super) topic_errors: HashMap<String, ResponseError>,
    pub(super) stale: bool,
}

impl Shared {
    /// A live connection to `addr`, connecting if needed.
    pub(super) async fn connection(&self, addr: &str) -> Result<Arc<BrokerConnection>, WireError> {
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

    pub(super) async fn forget_connection(&self, addr: &str) {
        self.connections.lock().await.remove(addr);
    }

    /// Known brokers first, then the bootstrap list.
    pub(super) fn candidate_addrs(&self) -> Vec<String> {
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
    pub(super) async fn refresh_metadata(&self, topic: Option<&str>) -> Result<(), ProduceError> {
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
    pub(super) async fn wait_for_topic(&self, topic: &str) -> Result<i32, ProduceError> {
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
}

pub(super) async fn run_sender(shared: Arc<Shared>) {
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
    let bytes = super::wire_batch::encode(&batch.records, compression, base_sequence)?;
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
