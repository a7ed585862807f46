//! FindCoordinator: for a group key, the broker leading the group's `__consumer_offsets` partition (v0–3 one key,
//! v4+ a batch of keys). The first request creates that topic and answers COORDINATOR_NOT_AVAILABLE, as Kafka
//! does; a partition without a leader answers the same. A transaction key (key type 1) always answers
//! COORDINATOR_NOT_AVAILABLE: this cluster has no transaction coordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator as WireCoordinator;
use kafka_protocol::messages::{
    BrokerId as WireBrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, BrokerContext};
use crate::broker::coordinator::Coordinator;

pub(super) fn handle(
    broker: &BrokerContext,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let key_type = request.key_type;
    let answer = |key: &str| -> WireCoordinator {
        let found = match key_type {
            0 => Coordinator::find(&broker.core, key),
            1 => Err(ResponseError::CoordinatorNotAvailable),
            _ => Err(ResponseError::InvalidRequest),
        };
        let coordinator = WireCoordinator::default().with_key(str_bytes(key));
        match found {
            Ok(info) => coordinator
                .with_node_id(WireBrokerId(info.id.0))
                .with_host(str_bytes(info.host))
                .with_port(i32::from(info.port)),
            Err(error) => {
                let message = match key_type {
                    0 => "the group coordinator is not available yet",
                    1 => "the embedded cluster has no transaction coordinator",
                    _ => "unknown coordinator key type",
                };
                coordinator
                    .with_node_id(WireBrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1)
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message)))
            }
        }
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| answer(key.as_str()))
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let one = answer(request.key.as_str());
    FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_error_message(one.error_message)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port)
}
