//! CreateTopics: partitions (-1: num.partitions), replication factor (-1: default.replication.factor; at most the
//! broker count), topic configs, validate_only. Any broker accepts it (Kafka 3.9
//! forwards to the controller). Manual replica assignments are refused (INVALID_REPLICA_ASSIGNMENT).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{str_bytes, BrokerContext};
use crate::broker::config::TopicConfig;
use crate::broker::state::NewTopic;

pub(super) fn handle(
    broker: &BrokerContext,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let core = &broker.core;
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let result = CreatableTopicResult::default().with_name(wanted.name.clone());
            if !wanted.assignments.is_empty() {
                return result
                    .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                    .with_error_message(Some(str_bytes(
                        "manual replica assignment is not implemented",
                    )));
            }
            let mut spec = NewTopic::new(wanted.name.0.to_string(), wanted.num_partitions)
                .replication_factor(wanted.replication_factor);
            for config in &wanted.configs {
                let value = config
                    .value
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                spec = spec.config(config.name.to_string(), value);
            }
            let outcome = if request.validate_only {
                core.validate_topic(&spec)
                    .map(|(p, rf, config)| (p, rf, config, Default::default()))
            } else {
                core.create_topic(&spec, false).map(|t| {
                    (
                        t.partitions.len() as i32,
                        t.replication_factor,
                        t.config.clone(),
                        t.id,
                    )
                })
            };
            match outcome {
                Ok((partitions, replication_factor, config, id)) => {
                    let result = result.with_topic_id(id);
                    if version < 5 {
                        return result;
                    }
                    result
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication_factor)
                        .with_configs(Some(configs(&config, &spec)))
                }
                Err(error) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(error.to_string())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn configs(config: &TopicConfig, spec: &NewTopic) -> Vec<CreatableTopicConfigs> {
    TopicConfig::NAMES
        .iter()
        .filter_map(|name| {
            let value = config.get(name)?;
            let overridden = spec.configs.iter().any(|(k, _)| k == name);
            Some(
                CreatableTopicConfigs::default()
                    .with_name(str_bytes(*name))
                    .with_value(Some(str_bytes(value)))
                    .with_config_source(if overridden { 1 } else { 5 }),
            )
        })
        .collect()
}
