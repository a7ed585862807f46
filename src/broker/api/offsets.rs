//! OffsetCommit, OffsetFetch (v8+ several groups in one request) and OffsetDelete. A commit is fenced by the
//! group's generation (`broker::group`), written to `__consumer_offsets` and answered once replicated
//! (`broker::coordinator`). Per partition, a topic the cluster does not know is UNKNOWN_TOPIC_OR_PARTITION and
//! metadata over `offset.metadata.max.bytes` (4096) is OFFSET_METADATA_TOO_LARGE, as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{str_bytes, BrokerContext};
use crate::broker::group::CommittedOffset;
use crate::history::ClusterEventKind;

/// Per topic, its partitions and what each gets.
type PerTopic<T> = Vec<(String, Vec<(i32, T)>)>;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

pub(super) async fn commit(
    broker: &BrokerContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let core = &broker.core;
    let group_id = request.group_id.0.to_string();
    let member = request.member_id.to_string();
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let generation = request.generation_id_or_member_epoch;
    let now = core.clock.now_ms();
    // (topic, partition) → its error, or None when it goes to the coordinator.
    let mut answers: PerTopic<Option<ResponseError>> = Vec::new();
    let mut accepted = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let known = core.topic(&name);
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let exists = known.as_ref().is_some_and(|t| {
                p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len()
            });
            let error = if !exists {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
            {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                accepted.push((
                    (name.clone(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: Some(
                            p.committed_metadata
                                .as_ref()
                                .map(|m| m.to_string())
                                .unwrap_or_default(),
                        ),
                        commit_timestamp_ms: now,
                    },
                ));
                None
            };
            partitions.push((p.partition_index, error));
        }
        answers.push((name, partitions));
    }
    let committed: Vec<(String, i32, i64)> = accepted
        .iter()
        .map(|((t, p), o)| (t.clone(), *p, o.offset))
        .collect();
    let outcome = if accepted.is_empty() {
        Ok(())
    } else {
        match core.coordinator.commit(
            core,
            broker.id,
            &group_id,
            (&member, instance.as_deref()),
            generation,
            accepted,
        ) {
            Ok(written) => written.wait(core).await,
            Err(error) => Err(error),
        }
    };
    if outcome.is_ok() && !committed.is_empty() {
        core.record([ClusterEventKind::OffsetsCommitted {
            group: group_id,
            generation,
            offsets: committed,
        }]);
    }
    let group_error = outcome.err();
    OffsetCommitResponse::default().with_topics(
        answers
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, error)| {
                                let error = error.or(group_error);
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(error.map_or(0, |e| e.code()))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// One group's fetch: the group-level error, or (topic, partitions with offsets).
type Fetched = Result<PerTopic<Option<CommittedOffset>>, ResponseError>;

fn fetch_group(
    broker: &BrokerContext,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Fetched {
    let partitions = wanted.map(|topics| {
        topics
            .into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    let found = broker
        .core
        .coordinator
        .fetch(&broker.core, broker.id, group_id, partitions)?;
    let mut topics: PerTopic<Option<CommittedOffset>> = Vec::new();
    for ((topic, partition), committed) in found {
        match topics.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, list)) => list.push((partition, committed)),
            None => topics.push((topic, vec![(partition, committed)])),
        }
    }
    Ok(topics)
}

pub(super) fn fetch(
    broker: &BrokerContext,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch_group(broker, g.group_id.0.as_str(), wanted) {
                    Err(error) => group.with_error_code(error.code()),
                    Ok(topics) => group.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(name)))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|(index, c)| {
                                                let (offset, epoch, metadata) = fields(c);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(index)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(str_bytes(metadata)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect::<Vec<_>>()
    });
    let group_id = GroupId::clone(&request.group_id);
    match fetch_group(broker, group_id.0.as_str(), wanted.clone()) {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, c)| {
                                    let (offset, epoch, metadata) = fields(c);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(metadata)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        // v1 has no group-level error: it goes on every requested partition.
        Err(error) if version < 2 => OffsetFetchResponse::default().with_topics(
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|index| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_metadata(Some(Default::default()))
                                        .with_error_code(error.code())
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(error) => OffsetFetchResponse::default().with_error_code(error.code()),
    }
}

/// A committed offset's (offset, leader epoch, metadata); -1, -1, "" when nothing is committed.
fn fields(committed: Option<CommittedOffset>) -> (i64, i32, String) {
    match committed {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.unwrap_or_default()),
        None => (-1, -1, String::new()),
    }
}

pub(super) async fn delete(
    broker: &BrokerContext,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let core = &broker.core;
    let group_id = request.group_id.0.to_string();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let (group_error, partition_error) =
        match core
            .coordinator
            .delete_offsets(core, broker.id, &group_id, &partitions)
        {
            Err(error) => (Some(error), None),
            Ok(Err(error)) => (None, Some(error)),
            Ok(Ok(written)) => (written.wait(core).await.err(), None),
        };
    if let Some(error) = group_error {
        return OffsetDeleteResponse::default().with_error_code(error.code());
    }
    OffsetDeleteResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(partition_error.map_or(0, |e| e.code()))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
