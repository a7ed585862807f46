//! DescribeConfigs for TOPIC resources (every config of [`TopicConfig::NAMES`], overrides marked
//! DYNAMIC_TOPIC_CONFIG, the rest DEFAULT_CONFIG) and BROKER resources (the cluster's broker-wide defaults).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{str_bytes, BrokerContext};
use crate::broker::config::TopicConfig;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// Kafka's ConfigType for each topic config (DescribeConfigs v3+).
fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => 7, // LIST
        "segment.bytes" | "max.message.bytes" | "min.insync.replicas" | "num.partitions" => 3, // INT
        "message.timestamp.type" => 2, // STRING
        "auto.create.topics.enable" | "delete.topic.enable" => 1, // BOOLEAN
        _ => 5,                        // LONG
    }
}

pub(super) fn handle(
    broker: &BrokerContext,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let core = &broker.core;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let entry = |name: &str, value: String, source: i8| {
                let mut entry = DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value.clone())))
                    .with_config_source(source)
                    .with_read_only(resource.resource_type == BROKER);
                if version >= 3 {
                    entry = entry.with_config_type(config_type(name));
                }
                if request.include_synonyms {
                    entry = entry.with_synonyms(vec![DescribeConfigsSynonym::default()
                        .with_name(str_bytes(name))
                        .with_value(Some(str_bytes(value)))
                        .with_source(source)]);
                }
                entry
            };
            match resource.resource_type {
                TOPIC => match core.topic(resource.resource_name.as_str()) {
                    None => result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(format!(
                            "topic '{}' does not exist",
                            resource.resource_name.as_str()
                        )))),
                    Some(topic) => result.with_configs(
                        TopicConfig::NAMES
                            .iter()
                            .filter(|name| wanted(name))
                            .filter_map(|name| {
                                let value = topic.config.get(name)?;
                                let source = if topic.overrides.contains_key(*name) {
                                    DYNAMIC_TOPIC_CONFIG
                                } else {
                                    DEFAULT_CONFIG
                                };
                                Some(entry(name, value, source))
                            })
                            .collect(),
                    ),
                },
                BROKER => result.with_configs(
                    core.defaults
                        .describe()
                        .into_iter()
                        .filter(|(name, _)| wanted(name))
                        .map(|(name, value)| entry(name, value, STATIC_BROKER_CONFIG))
                        .collect(),
                ),
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "resource type {other} is not supported (only TOPIC=2 and BROKER=4)"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
