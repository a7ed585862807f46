//! ListOffsets: earliest (-2, the log start offset), latest (-1, the high watermark), max timestamp (-3), earliest
//! local (-4, same as earliest: nothing is tiered) and by timestamp (the first record at or after it; -1 when none).
//! Latest tiered (-5) answers -1: there is no tiered storage.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::BrokerContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(super) fn handle(
    broker: &BrokerContext,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let core = &broker.core;
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = core.topic(&wanted.name.0);
            let partitions = wanted
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let partition = topic.as_ref().and_then(|t| {
                        usize::try_from(p.partition_index)
                            .ok()
                            .and_then(|i| t.partitions.get(i))
                    });
                    let Some(partition) = partition else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let state = partition.lock();
                    if state.leader != Some(broker.id) {
                        return response.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < state.leader_epoch {
                        return response.with_error_code(ResponseError::FencedLeaderEpoch.code());
                    }
                    if p.current_leader_epoch > state.leader_epoch {
                        return response.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    let log = state.log();
                    let found = match p.timestamp {
                        LATEST => Some((log.high_watermark(), -1)),
                        EARLIEST | EARLIEST_LOCAL => Some((log.log_start_offset(), -1)),
                        MAX_TIMESTAMP => log.offset_of_max_timestamp(),
                        LATEST_TIERED => None,
                        ts if ts >= 0 => log.offset_for_timestamp(ts),
                        _ => return response.with_error_code(ResponseError::InvalidRequest.code()),
                    };
                    match found {
                        // The crate refuses to encode a leader epoch before v4, where the field does not exist.
                        Some((offset, timestamp)) if version >= 4 => response
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(state.leader_epoch),
                        Some((offset, timestamp)) => {
                            response.with_offset(offset).with_timestamp(timestamp)
                        }
                        None => response,
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
