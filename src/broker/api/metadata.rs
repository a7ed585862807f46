//! Metadata: every live broker (fenced ones are left out, as Kafka does), the controller, and for the requested topics (all when the list is null) their
//! partitions with leader (-1 and LEADER_NOT_AVAILABLE while offline), leader epoch, replicas, ISR and offline
//! replicas. A requested topic that does not exist is created when
//! both the request and `auto.create.topics.enable` allow it; its first answer is LEADER_NOT_AVAILABLE, as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId as WireBrokerId, MetadataRequest, MetadataResponse, TopicName,
};

use super::{str_bytes, BrokerContext};
use crate::broker::replication::BrokerLiveness;
use crate::broker::state::{NewTopic, Topic};

pub(super) fn handle(
    broker: &BrokerContext,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let core = &broker.core;
    let live = core.liveness();
    // Like Kafka, only brokers the controller counts as alive are listed.
    let brokers = core
        .brokers
        .iter()
        .filter(|b| live.iter().any(|l| l.id == b.id && !l.fenced))
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(WireBrokerId(b.id.0))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
        })
        .collect();
    // Before v4 a request could not say "don't create"; every version before it creates.
    let may_create =
        (version < 4 || request.allow_auto_topic_creation) && core.defaults.auto_create_topics;
    let topics = match request.topics {
        None => core.topics().iter().map(|t| describe(t, &live)).collect(),
        Some(requested) => requested
            .into_iter()
            .map(|wanted| {
                let found = match &wanted.name {
                    Some(name) => core.topic(name),
                    None => core.topic_by_id(wanted.topic_id),
                };
                match (found, wanted.name) {
                    (Some(topic), _) => describe(&topic, &live),
                    (None, Some(name)) if may_create => {
                        match core.create_topic(&NewTopic::new(name.0.to_string(), -1), true) {
                            Ok(_) => topic_error(Some(name), ResponseError::LeaderNotAvailable),
                            Err(error) => {
                                tracing::debug!(%error, "auto-creation refused");
                                topic_error(Some(name), ResponseError::UnknownTopicOrPartition)
                            }
                        }
                    }
                    (None, Some(name)) => {
                        topic_error(Some(name), ResponseError::UnknownTopicOrPartition)
                    }
                    (None, None) => topic_error(None, ResponseError::UnknownTopicId)
                        .with_topic_id(wanted.topic_id),
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(core.cluster_id.clone())))
        .with_controller_id(WireBrokerId(core.controller().0))
        .with_topics(topics)
}

fn topic_error(name: Option<TopicName>, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_error_code(error.code())
}

fn describe(topic: &Topic, live: &[BrokerLiveness]) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let state = partition.lock();
            let ids = |ids: &[crate::broker::BrokerId]| {
                ids.iter().map(|b| WireBrokerId(b.0)).collect::<Vec<_>>()
            };
            let (leader, error) = match state.leader {
                Some(leader) => (leader.0, 0),
                None => (-1, ResponseError::LeaderNotAvailable.code()),
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(partition.index)
                .with_leader_id(WireBrokerId(leader))
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(ids(&state.assignment))
                .with_isr_nodes(ids(&state.isr))
                .with_offline_replicas(
                    state
                        .assignment
                        .iter()
                        .filter(|b| live.iter().any(|l| l.id == **b && l.fenced))
                        .map(|b| WireBrokerId(b.0))
                        .collect(),
                )
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == crate::broker::coordinator::OFFSETS_TOPIC)
        .with_partitions(partitions)
}
