//! OffsetForLeaderEpoch (KIP-320), as a consumer asks it after a leader change to validate its position: for each
//! partition, the largest leader epoch not above the one asked for and where it ended on the leader (the next
//! epoch's start, or the log end offset). A leader epoch in the request older than the partition's is
//! FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH; -1 skips that check. An epoch older than every one the
//! leader knows answers -1/-1, as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::BrokerContext;

pub(super) fn handle(
    broker: &BrokerContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.core.topic(&t.topic);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let found = topic.as_ref().and_then(|topic| {
                        usize::try_from(p.partition)
                            .ok()
                            .and_then(|i| topic.partitions.get(i))
                    });
                    let Some(partition) = found else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let state = partition.lock();
                    if state.leader != Some(broker.id) {
                        return answer.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < state.leader_epoch {
                        return answer.with_error_code(ResponseError::FencedLeaderEpoch.code());
                    }
                    if p.current_leader_epoch > state.leader_epoch {
                        return answer.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    match state
                        .replica(broker.id)
                        .and_then(|r| r.end_offset_for_epoch(p.leader_epoch))
                    {
                        Some((epoch, end)) if p.leader_epoch >= 0 => {
                            answer.with_leader_epoch(epoch).with_end_offset(end)
                        }
                        _ => answer,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
