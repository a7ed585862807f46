//! DeleteTopics by name, or (v6) by topic id. The logs go at once; a topic of the same name can be created again.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{str_bytes, BrokerContext};

pub(super) fn handle(
    broker: &BrokerContext,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let core = &broker.core;
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| {
                core.topic_by_id(id)
                    .map(|t| TopicName(str_bytes(t.name.clone())))
            });
            let result = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            let Some(name) = name else {
                return result
                    .with_error_code(ResponseError::UnknownTopicId.code())
                    .with_error_message(Some(str_bytes(format!("no topic with id {id}"))));
            };
            match core.delete_topic(&name.0) {
                Ok(id) => result.with_topic_id(id),
                Err(error) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(error.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
