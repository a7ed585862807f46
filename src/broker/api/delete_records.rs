//! DeleteRecords: moves a partition's log start offset (offset -1: to the high watermark); segments wholly below
//! it are deleted at once. Above the high watermark: OFFSET_OUT_OF_RANGE. Only the leader accepts it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::BrokerContext;

pub(super) fn handle(
    broker: &BrokerContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let core = &broker.core;
    let now = core.clock.now_ms();
    let mut events = Vec::new();
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = core.topic(&wanted.name.0);
            let partitions = wanted
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let partition = topic.as_ref().and_then(|t| {
                        usize::try_from(p.partition_index)
                            .ok()
                            .and_then(|i| t.partitions.get(i))
                    });
                    let Some(partition) = partition else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let mut state = partition.lock();
                    if state.leader != Some(broker.id) {
                        return result.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    match state
                        .log_mut()
                        .delete_records_before(p.offset, now, &mut events)
                    {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(_) => result.with_error_code(ResponseError::OffsetOutOfRange.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    if !events.is_empty() {
        core.record(events);
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
