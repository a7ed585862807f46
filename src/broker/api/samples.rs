//! Sample request bodies of every advertised API and version, encoded by `kafka-protocol`, for tests: the shape
//! walk is checked against them, and the property tests mutate them to reach deep into the handlers.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

/// The values a sample request carries.
#[derive(Clone, Debug)]
pub(crate) struct Knobs {
    pub topic: &'static str,
    pub partition: i32,
    pub offset: i64,
    pub acks: i16,
    pub records: Bytes,
    pub resource_type: i8,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            topic: "t",
            partition: 1,
            offset: -2,
            acks: -1,
            records: Bytes::from_static(b"abc"),
            resource_type: 2,
        }
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn group(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

/// A member id: empty (a first join) when the knobs' offset is negative.
fn member(k: &Knobs, _v: i16) -> StrBytes {
    if k.offset < 0 {
        StrBytes::default()
    } else {
        StrBytes::from_string(format!("member-{}", k.offset % 3))
    }
}

fn encoded<R: Encodable>(request: &R, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    request
        .encode(&mut buf, version)
        .expect("sample requests encode");
    buf.freeze()
}

/// The body of a request of `api` at version `v` (an advertised one) carrying `k`.
pub(crate) fn body(api: ApiKey, v: i16, k: &Knobs) -> Bytes {
    match api {
        ApiKey::Produce => encoded(
            &ProduceRequest::default()
                .with_acks(k.acks)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(name(k.topic))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(k.partition)
                            .with_records(Some(k.records.clone())),
                    ])]),
            v,
        ),
        ApiKey::Fetch => {
            let topic = fetch_request::FetchTopic::default().with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(k.partition)
                    .with_fetch_offset(k.offset)
                    .with_partition_max_bytes(1 << 20),
            ]);
            let topic = if v >= 13 {
                topic.with_topic_id(uuid::Uuid::from_u128(7))
            } else {
                topic.with_topic(name(k.topic))
            };
            let mut request = FetchRequest::default().with_topics(vec![topic.clone()]);
            if v >= 7 {
                let forgotten =
                    fetch_request::ForgottenTopic::default().with_partitions(vec![1, 2]);
                let forgotten = if v >= 13 {
                    forgotten.with_topic_id(uuid::Uuid::from_u128(8))
                } else {
                    forgotten.with_topic(name("f"))
                };
                request = request.with_forgotten_topics_data(vec![forgotten]);
            }
            if v >= 11 {
                request = request.with_rack_id(StrBytes::from_static_str("rack"));
            }
            if v >= 12 {
                request = request.with_cluster_id(Some(StrBytes::from_static_str("c")));
            }
            encoded(&request, v)
        }
        ApiKey::ListOffsets => encoded(
            &ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name(k.topic))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(k.partition)
                        .with_timestamp(k.offset)]),
            ]),
            v,
        ),
        ApiKey::Metadata => {
            let topic =
                metadata_request::MetadataRequestTopic::default().with_name(Some(name(k.topic)));
            encoded(
                &MetadataRequest::default().with_topics(Some(vec![topic])),
                v,
            )
        }
        ApiKey::ApiVersions => encoded(
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("x"))
                .with_client_software_version(StrBytes::from_static_str("1")),
            v,
        ),
        ApiKey::CreateTopics => encoded(
            &CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name(k.topic))
                    .with_assignments(vec![
                        create_topics_request::CreatableReplicaAssignment::default()
                            .with_broker_ids(vec![BrokerId(1), BrokerId(2)]),
                    ])
                    .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("1")))]),
            ]),
            v,
        ),
        ApiKey::DeleteTopics => {
            let request = if v >= 6 {
                DeleteTopicsRequest::default()
                    .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(name(k.topic)))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name(k.topic), name("u")])
            };
            encoded(&request, v)
        }
        ApiKey::DeleteRecords => encoded(
            &DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name(k.topic))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(k.partition)
                            .with_offset(k.offset),
                    ]),
            ]),
            v,
        ),
        ApiKey::DescribeConfigs => encoded(
            &DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(k.resource_type)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")])),
            ]),
            v,
        ),
        ApiKey::InitProducerId => encoded(
            &InitProducerIdRequest::default()
                .with_transactional_id(
                    (k.partition == 0).then(|| TransactionalId(StrBytes::from_static_str(k.topic))),
                )
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(if v >= 3 { k.offset } else { -1 }))
                .with_producer_epoch(if v >= 3 { k.acks } else { -1 }),
            v,
        ),
        ApiKey::FindCoordinator => encoded(
            &FindCoordinatorRequest::default()
                .with_key(if v <= 3 {
                    StrBytes::from_static_str(k.topic)
                } else {
                    Default::default()
                })
                .with_key_type(if v >= 1 { k.resource_type } else { 0 })
                .with_coordinator_keys(if v >= 4 {
                    vec![StrBytes::from_static_str(k.topic)]
                } else {
                    Vec::new()
                }),
            v,
        ),
        ApiKey::JoinGroup => encoded(
            &JoinGroupRequest::default()
                .with_group_id(group(k.topic))
                .with_session_timeout_ms(k.partition.saturating_mul(1000))
                .with_rebalance_timeout_ms(if v >= 1 { 1_000 } else { -1 })
                .with_member_id(member(k, v))
                .with_group_instance_id(
                    (v >= 5 && k.acks == 0).then(|| StrBytes::from_static_str("i")),
                )
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(k.records.clone())])
                .with_reason((v >= 8).then(|| StrBytes::from_static_str("sample"))),
            v,
        ),
        ApiKey::SyncGroup => encoded(
            &SyncGroupRequest::default()
                .with_group_id(group(k.topic))
                .with_generation_id(k.partition)
                .with_member_id(member(k, v))
                .with_protocol_type((v >= 5).then(|| StrBytes::from_static_str("consumer")))
                .with_protocol_name((v >= 5).then(|| StrBytes::from_static_str("range")))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(member(k, v))
                        .with_assignment(k.records.clone()),
                ]),
            v,
        ),
        ApiKey::Heartbeat => encoded(
            &HeartbeatRequest::default()
                .with_group_id(group(k.topic))
                .with_generation_id(k.partition)
                .with_member_id(member(k, v)),
            v,
        ),
        ApiKey::LeaveGroup => encoded(
            &if v <= 2 {
                LeaveGroupRequest::default()
                    .with_group_id(group(k.topic))
                    .with_member_id(member(k, v))
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(group(k.topic))
                    .with_members(vec![leave_group_request::MemberIdentity::default()
                        .with_member_id(member(k, v))
                        .with_reason((v >= 5).then(|| StrBytes::from_static_str("sample")))])
            },
            v,
        ),
        ApiKey::OffsetCommit => encoded(
            &OffsetCommitRequest::default()
                .with_group_id(group(k.topic))
                .with_generation_id_or_member_epoch(i32::from(k.acks))
                .with_member_id(member(k, v))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name(k.topic))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(k.partition)
                                .with_committed_offset(k.offset)
                                .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                        ]),
                ]),
            v,
        ),
        ApiKey::OffsetFetch => {
            let request = if v <= 7 {
                OffsetFetchRequest::default()
                    .with_group_id(group(k.topic))
                    .with_topics((k.partition != 0).then(|| {
                        vec![offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name(k.topic))
                            .with_partition_indexes(vec![k.partition])]
                    }))
            } else {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group(k.topic))
                        .with_member_epoch(-1)
                        .with_topics((k.partition != 0).then(|| {
                            vec![offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(name(k.topic))
                                .with_partition_indexes(vec![k.partition])]
                        })),
                ])
            };
            encoded(&request, v)
        }
        ApiKey::OffsetDelete => encoded(
            &OffsetDeleteRequest::default()
                .with_group_id(group(k.topic))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name(k.topic))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(k.partition),
                        ]),
                ]),
            v,
        ),
        ApiKey::ListGroups => encoded(
            &ListGroupsRequest::default()
                .with_states_filter(if v >= 4 {
                    vec![StrBytes::from_static_str("Stable")]
                } else {
                    Vec::new()
                })
                .with_types_filter(if v >= 5 {
                    vec![StrBytes::from_static_str("classic")]
                } else {
                    Vec::new()
                }),
            v,
        ),
        ApiKey::DescribeGroups => encoded(
            &DescribeGroupsRequest::default().with_groups(vec![group(k.topic)]),
            v,
        ),
        ApiKey::DeleteGroups => encoded(
            &DeleteGroupsRequest::default().with_groups_names(vec![group(k.topic)]),
            v,
        ),
        ApiKey::OffsetForLeaderEpoch => encoded(
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(name(k.topic))
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(k.partition)
                                .with_current_leader_epoch(i32::from(k.acks))
                                .with_leader_epoch(k.offset as i32),
                        ]),
                ]),
            v,
        ),
        other => panic!("no sample request for {other:?}"),
    }
}

/// A whole request frame (header v1/v2 and body, without the length prefix).
pub(crate) fn frame(api: ApiKey, v: i16, correlation_id: i32, k: &Knobs) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(v)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("samples")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(v))
        .expect("headers encode");
    buf.extend_from_slice(&body(api, v, k));
    buf.freeze()
}
