//! Fetch for consumers: whole stored batches from the fetch offset up to the high watermark, within
//! partition_max_bytes and the response's max_bytes (the first batch is always whole, KIP-74). When fewer than
//! min_bytes are ready the request waits — in real time, up to max_wait_ms — for appends. Below the log start
//! offset or above the log end offset: OFFSET_OUT_OF_RANGE. Topic ids from v13.
//!
//! Not implemented: incremental fetch sessions (KIP-227; every fetch is answered in full with session id 0, which
//! clients treat as "no session"), follower fetches over the wire (replicas copy inside the process, see `replication`), transactions (aborted_transactions is always empty).

use std::time::Duration;

use bytes::Bytes;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId as WireBrokerId, FetchRequest, FetchResponse};

use super::BrokerContext;
use crate::broker::log::ReadError;
use crate::broker::state::Topic;

/// Longest a fetch may park the connection, whatever the client asks for.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub(super) async fn handle(
    broker: &BrokerContext,
    request: FetchRequest,
    version: i16,
) -> FetchResponse {
    let wait =
        Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let mut appends = broker.core.subscribe_appends();
    loop {
        appends.borrow_and_update();
        let (response, bytes, has_error) = read(broker, &request, version);
        if bytes >= min_bytes || has_error || tokio::time::Instant::now() >= deadline {
            return response;
        }
        tokio::select! {
            changed = appends.changed() => if changed.is_err() { return response },
            _ = tokio::time::sleep_until(deadline) => {},
        }
    }
}

fn read(
    broker: &BrokerContext,
    request: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, bool) {
    let core = &broker.core;
    let mut remaining = usize::try_from(request.max_bytes).unwrap_or(0);
    if version < 3 || request.max_bytes <= 0 {
        remaining = usize::MAX;
    }
    let mut total = 0usize;
    let mut has_error = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    for wanted in &request.topics {
        let (topic, missing): (Option<std::sync::Arc<Topic>>, ResponseError) = if version >= 13 {
            (
                core.topic_by_id(wanted.topic_id),
                ResponseError::UnknownTopicId,
            )
        } else {
            (
                core.topic(&wanted.topic.0),
                ResponseError::UnknownTopicOrPartition,
            )
        };
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for fetch in &wanted.partitions {
            // Kafka sends empty records, never null: librdkafka refuses a null record set.
            let response = PartitionData::default()
                .with_records(Some(Bytes::new()))
                .with_partition_index(fetch.partition)
                .with_preferred_read_replica(WireBrokerId(-1))
                .with_aborted_transactions(Some(Vec::new()));
            let partition = topic.as_ref().and_then(|t| {
                usize::try_from(fetch.partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            });
            let Some(partition) = partition else {
                let code = if topic.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    missing
                };
                has_error = true;
                partitions.push(offsets_unknown(response, code));
                continue;
            };
            let state = partition.lock();
            let log = state.log();
            let response = response
                .with_high_watermark(log.high_watermark())
                .with_last_stable_offset(log.high_watermark())
                .with_log_start_offset(log.log_start_offset());
            let error = if state.leader != Some(broker.id) {
                Some(ResponseError::NotLeaderOrFollower)
            } else if fetch.current_leader_epoch >= 0
                && fetch.current_leader_epoch < state.leader_epoch
            {
                Some(ResponseError::FencedLeaderEpoch)
            } else if fetch.current_leader_epoch > state.leader_epoch {
                Some(ResponseError::UnknownLeaderEpoch)
            } else {
                None
            };
            if let Some(error) = error {
                has_error = true;
                partitions.push(offsets_unknown(response, error));
                continue;
            }
            let limit = usize::try_from(fetch.partition_max_bytes)
                .unwrap_or(0)
                .min(remaining);
            // KIP-74: the first batch of the response goes out whole even when it is above the limits.
            let limit = if total == 0 { limit.max(1) } else { limit };
            if limit == 0 {
                partitions.push(response);
                continue;
            }
            match log.read(fetch.fetch_offset, limit, log.high_watermark()) {
                Ok(read) => {
                    total += read.bytes;
                    remaining = remaining.saturating_sub(read.bytes);
                    partitions.push(response.with_records(Some(read.records.unwrap_or_default())));
                }
                Err(ReadError::OutOfRange) => {
                    has_error = true;
                    partitions
                        .push(response.with_error_code(ResponseError::OffsetOutOfRange.code()));
                }
                Err(ReadError::Storage(e)) => {
                    tracing::warn!(error = %e, "fetch: a batch could not be read back");
                    has_error = true;
                    partitions.push(offsets_unknown(response, ResponseError::KafkaStorageError));
                }
            }
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(wanted.topic.clone())
                .with_topic_id(wanted.topic_id)
                .with_partitions(partitions),
        );
    }
    (
        FetchResponse::default().with_responses(responses),
        total,
        has_error,
    )
}

fn offsets_unknown(response: PartitionData, error: ResponseError) -> PartitionData {
    response
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
}
