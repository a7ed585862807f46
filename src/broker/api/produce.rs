//! Produce: validate each partition's record batch (size against max.message.bytes, then CRC, then structure),
//! append it on the leader, answer with its base offset. acks must be -1, 0 or 1 (INVALID_REQUIRED_ACKS otherwise).
//! acks=1 answers after the leader's append; acks=0 gets no response (a failure closes the connection instead).
//! acks=-1 first needs an ISR of at least min(min.insync.replicas, replication factor) (NOT_ENOUGH_REPLICAS,
//! nothing appended), then waits — up to the request's timeout_ms, in real time — until the high watermark passes
//! the batch; if the ISR is then below min.insync.replicas the answer is NOT_ENOUGH_REPLICAS_AFTER_APPEND (the
//! records stay in the log). A leadership lost while waiting answers NOT_LEADER_OR_FOLLOWER; the timeout answers
//! REQUEST_TIMED_OUT.
//!
//! Idempotent producers (a producer id in the batch): the leader checks ProducerEpoch and BaseSequence against the
//! partition's producer state first (`producer_state`): a duplicate of one of the producer's last 5 batches is
//! answered with the original base offset (acks=-1 then waits for the original to be replicated) and not
//! appended; a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch INVALID_PRODUCER_EPOCH. Transactions
//! are not implemented.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use std::sync::Arc;
use std::time::Duration;

use super::{str_bytes, BrokerContext, RequestError};
use crate::broker::batch::{self, BatchHeader, ProducedBatchError};
use crate::broker::producer_state::{ProducerBatch, Verdict};
use crate::broker::replication::advance_high_watermark;
use crate::broker::state::{Partition, PartitionState};
use crate::broker::BrokerId;
use crate::history::ClusterEventKind;

/// An acks=-1 append waiting for the high watermark: where its answer goes and the offset the HW must reach.
pub(crate) struct Pending {
    pub topic: usize,
    pub index: usize,
    pub partition: Arc<Partition>,
    pub leader_epoch: i32,
    pub required_offset: i64,
    pub min_insync_replicas: i64,
}

pub(super) async fn handle(
    broker: &BrokerContext,
    request: ProduceRequest,
) -> Result<Option<ProduceResponse>, RequestError> {
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let mut appends = broker.core.subscribe_appends();
    let (response, pending) = append(broker, request)?;
    let Some(mut response) = response else {
        return Ok(None);
    };
    if pending.is_empty() {
        return Ok(Some(response));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting = pending;
    loop {
        appends.borrow_and_update();
        waiting.retain(|p| match check(p) {
            None => true,
            Some(error) => {
                if let Some(r) = response
                    .responses
                    .get_mut(p.topic)
                    .and_then(|t| t.partition_responses.get_mut(p.index))
                {
                    if let Some((error, message)) = error {
                        r.error_code = error.code();
                        r.error_message = Some(str_bytes(message));
                    }
                }
                false
            }
        });
        if waiting.is_empty() {
            return Ok(Some(response));
        }
        tokio::select! {
            changed = appends.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    for p in waiting {
        if let Some(r) = response
            .responses
            .get_mut(p.topic)
            .and_then(|t| t.partition_responses.get_mut(p.index))
        {
            r.error_code = ResponseError::RequestTimedOut.code();
            r.error_message = Some(str_bytes(format!(
                "the high watermark did not reach offset {} within {timeout:?}",
                p.required_offset
            )));
        }
    }
    Ok(Some(response))
}

/// `None` while still waiting; `Some(None)` when done; `Some(Some(error))` when done with an error.
#[allow(clippy::option_option)]
pub(crate) fn check(p: &Pending) -> Option<Option<(ResponseError, String)>> {
    let state = p.partition.lock();
    if state.leader_epoch != p.leader_epoch {
        return Some(Some((
            ResponseError::NotLeaderOrFollower,
            "leadership moved while waiting for replication".to_string(),
        )));
    }
    if state.log().high_watermark() < p.required_offset {
        return None;
    }
    if (state.isr.len() as i64) < p.min_insync_replicas {
        return Some(Some((
            ResponseError::NotEnoughReplicasAfterAppend,
            format!(
                "appended, but the ISR {:?} is below min.insync.replicas={}",
                state.isr, p.min_insync_replicas
            ),
        )));
    }
    Some(None)
}

/// Validates and appends every partition's batch; returns the response (`None` for acks=0) and the acks=-1
/// appends still waiting for the high watermark.
#[allow(clippy::type_complexity)]
fn append(
    broker: &BrokerContext,
    request: ProduceRequest,
) -> Result<(Option<ProduceResponse>, Vec<Pending>), RequestError> {
    let core = &broker.core;
    let mut request = request;
    let acks = request.acks;
    let topic_data = std::mem::take(&mut request.topic_data);
    drop(request);
    let valid_acks = matches!(acks, -1..=1);
    // A request that carries one batch hands its frame's buffer to the log (no copy) once nothing else points into
    // it: the topic name is copied out first. With several batches each is copied, so that no stored batch keeps
    // its neighbours' bytes alive.
    let single = topic_data.len() == 1 && topic_data[0].partition_data.len() == 1;
    let _shared_frame = if single {
        None
    } else {
        topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .find_map(|p| p.records.clone())
    };
    let now = core.clock.now_ms();
    let mut events = Vec::new();
    let mut appended = false;
    let mut first_failure: Option<String> = None;
    let mut responses = Vec::with_capacity(topic_data.len());
    let mut pending = Vec::new();
    for (topic_index, topic_data) in topic_data.into_iter().enumerate() {
        let mut topic_data = topic_data;
        let name = TopicName(StrBytes::from_string(topic_data.name.0.to_string()));
        let partition_data = std::mem::take(&mut topic_data.partition_data);
        drop(topic_data);
        let topic = core.topic(&name.0);
        let mut partition_responses = Vec::with_capacity(partition_data.len());
        for (partition_index, data) in partition_data.into_iter().enumerate() {
            let mut data = data;
            let (index, records) = (data.index, data.records.take());
            drop(data);
            let response = PartitionProduceResponse::default().with_index(index);
            let found = topic.as_ref().and_then(|t| {
                let partition = usize::try_from(index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))?;
                Some((t, partition))
            });
            let outcome: Result<(i64, i64), (ResponseError, String)> = match found {
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("{}-{} does not exist", name.0.as_str(), index),
                )),
                _ if !valid_acks => Err((
                    ResponseError::InvalidRequiredAcks,
                    format!("acks={acks} is not one of -1, 0, 1"),
                )),
                Some((topic, partition)) => {
                    let mut state = partition.lock();
                    if state.leader != Some(broker.id) {
                        Err((
                            ResponseError::NotLeaderOrFollower,
                            format!(
                                "broker {} does not lead {}-{}",
                                broker.id, topic.name, index
                            ),
                        ))
                    } else {
                        match records {
                            None => Err((
                                ResponseError::CorruptMessage,
                                "records are null".to_string(),
                            )),
                            Some(records) => match batch::validate_produced(
                                &records,
                                topic.config.max_message_bytes,
                            ) {
                                Err(error) => Err((error_code(&error), error.to_string())),
                                Ok(header) => {
                                    let min_isr = topic.config.min_insync_replicas;
                                    let needed = min_isr.min(i64::from(topic.replication_factor));
                                    if acks == -1 && (state.isr.len() as i64) < needed {
                                        Err((
                                            ResponseError::NotEnoughReplicas,
                                            format!(
                                                "ISR {:?} of {}-{} is below min.insync.replicas={min_isr}",
                                                state.isr, topic.name, index
                                            ),
                                        ))
                                    } else {
                                        let epoch = state.leader_epoch;
                                        append_on_leader(
                                            &mut state,
                                            broker.id,
                                            records,
                                            &header,
                                            now,
                                            &mut events,
                                        )
                                        .map(|a| {
                                            advance_high_watermark(&mut state, min_isr);
                                            appended |= a.new;
                                            if acks == -1 {
                                                pending.push(Pending {
                                                    topic: topic_index,
                                                    index: partition_index,
                                                    partition: (*partition).clone(),
                                                    leader_epoch: epoch,
                                                    required_offset: a.required_offset,
                                                    min_insync_replicas: min_isr,
                                                });
                                            }
                                            (a.base_offset, a.log_start_offset)
                                        })
                                    }
                                }
                            },
                        }
                    }
                }
            };
            partition_responses.push(match outcome {
                Ok((base_offset, log_start_offset)) => response
                    .with_base_offset(base_offset)
                    .with_log_start_offset(log_start_offset)
                    .with_log_append_time_ms(-1),
                Err((error, message)) => {
                    tracing::debug!(%error, %message, "produce refused");
                    first_failure.get_or_insert_with(|| message.clone());
                    response
                        .with_error_code(error.code())
                        .with_error_message(Some(str_bytes(message)))
                        .with_base_offset(-1)
                        .with_log_start_offset(-1)
                        .with_log_append_time_ms(-1)
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses),
        );
    }
    if !events.is_empty() {
        core.record(events);
    }
    if appended {
        core.notify_appended();
    }
    if acks == 0 {
        return match first_failure {
            Some(reason) => Err(RequestError::AcksZeroFailed(reason)),
            None => Ok((None, Vec::new())),
        };
    }
    Ok((
        Some(ProduceResponse::default().with_responses(responses)),
        pending,
    ))
}

/// A batch in the leader's log, just appended or found there as a duplicate.
pub(crate) struct Appended {
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// The high watermark acks=-1 waits for: past the batch.
    pub required_offset: i64,
    pub new: bool,
}

/// The leader's append of one validated batch: producer state check (an idempotent producer's duplicate is
/// answered with the original offsets and not appended again), append, producer state update.
pub(crate) fn append_on_leader(
    state: &mut PartitionState,
    leader: BrokerId,
    records: Bytes,
    header: &BatchHeader,
    now: i64,
    events: &mut Vec<ClusterEventKind>,
) -> Result<Appended, (ResponseError, String)> {
    let epoch = state.leader_epoch;
    let producer = ProducerBatch::of(&records);
    if let (Some(producer), Some(replica)) = (&producer, state.replica(leader)) {
        match replica.producers.check(producer) {
            Err(error) => return Err((error.response_error(), error.to_string())),
            Ok(Verdict::Duplicate(original)) => {
                tracing::debug!(
                    ?producer,
                    ?original,
                    "duplicate batch answered with its original offsets"
                );
                return Ok(Appended {
                    base_offset: original.base_offset,
                    log_start_offset: replica.log.log_start_offset(),
                    required_offset: original.last_offset + 1,
                    new: false,
                });
            }
            Ok(Verdict::Append) => {}
        }
    }
    let log = state.log_mut();
    let base = log
        .append(records, header, epoch, now, events)
        .map_err(|error| (ResponseError::KafkaStorageError, error.to_string()))?;
    let required_offset = log.log_end_offset();
    let log_start_offset = log.log_start_offset();
    if let Some(r) = state.replica_mut(leader) {
        r.begin_epoch_at(epoch, base);
        if let Some(producer) = &producer {
            r.producers.record(producer, base, required_offset - 1);
        }
    }
    Ok(Appended {
        base_offset: base,
        log_start_offset,
        required_offset,
        new: true,
    })
}

fn error_code(error: &ProducedBatchError) -> ResponseError {
    match error {
        ProducedBatchError::Corrupt(_) => ResponseError::CorruptMessage,
        ProducedBatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
        ProducedBatchError::Invalid(_) => ResponseError::InvalidRecord,
    }
}
