//! Produce: validate each partition's record batch (size against max.message.bytes, then CRC, then structure),
//! append it on the leader, answer with its base offset. acks must be -1, 0 or 1 (INVALID_REQUIRED_ACKS otherwise).
//! With one replica the high watermark follows the leader's log end offset at once, so acks=1 and acks=-1 answer
//! after the append; acks=0 gets no response, and a failure closes the connection instead.
//!
//! Not implemented yet: idempotence and transactions (issue 6); producer ids and sequences are stored, not checked.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{str_bytes, RequestError};
use crate::broker::batch::{self, ProducedBatchError};
use crate::broker::server::BrokerContext;

pub(super) fn handle(
    broker: &BrokerContext,
    request: ProduceRequest,
) -> Result<Option<ProduceResponse>, RequestError> {
    let core = &broker.core;
    let acks = request.acks;
    let valid_acks = matches!(acks, -1..=1);
    let now = core.clock.now_ms();
    let mut events = Vec::new();
    let mut appended = false;
    let mut first_failure: Option<String> = None;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = core.topic(&topic_data.name.0);
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let response = PartitionProduceResponse::default().with_index(data.index);
            let found = topic.as_ref().and_then(|t| {
                let partition = usize::try_from(data.index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))?;
                Some((t, partition))
            });
            let outcome: Result<(i64, i64), (ResponseError, String)> = match found {
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!(
                        "{}-{} does not exist",
                        topic_data.name.0.as_str(),
                        data.index
                    ),
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
                                broker.id, topic.name, data.index
                            ),
                        ))
                    } else {
                        match data.records.as_deref() {
                            None => Err((
                                ResponseError::CorruptMessage,
                                "records are null".to_string(),
                            )),
                            Some(records) => match batch::validate_produced(
                                records,
                                topic.config.max_message_bytes,
                            ) {
                                Err(error) => Err((error_code(&error), error.to_string())),
                                Ok(header) => {
                                    let epoch = state.leader_epoch;
                                    match state.log.append(
                                        records,
                                        &header,
                                        epoch,
                                        now,
                                        &mut events,
                                    ) {
                                        Err(error) => Err((
                                            ResponseError::KafkaStorageError,
                                            error.to_string(),
                                        )),
                                        Ok(base) => {
                                            let leo = state.log.log_end_offset();
                                            // One replica: it is the whole ISR, so the high watermark is its end
                                            // offset.
                                            state.log.set_high_watermark(leo);
                                            appended = true;
                                            Ok((base, state.log.log_start_offset()))
                                        }
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
                .with_name(topic_data.name)
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
            None => Ok(None),
        };
    }
    Ok(Some(ProduceResponse::default().with_responses(responses)))
}

fn error_code(error: &ProducedBatchError) -> ResponseError {
    match error {
        ProducedBatchError::Corrupt(_) => ResponseError::CorruptMessage,
        ProducedBatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
        ProducedBatchError::Invalid(_) => ResponseError::InvalidRecord,
    }
}
