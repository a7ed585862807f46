//! InitProducerId for idempotent producers: a new ProducerId from the cluster-wide counter, ProducerEpoch 0.
//! Kafka hands every non-transactional request a fresh id (the producer id and epoch a v3+ request may carry are
//! only used for transactional ids), and so does this. Transactional ids are refused with INVALID_REQUEST:
//! transactions are not implemented.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::BrokerContext;

pub(super) fn handle(
    broker: &BrokerContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(transactional_id) = &request.transactional_id {
        tracing::debug!(transactional_id = %transactional_id.0.as_str(), "InitProducerId for a transactional id refused");
        return response.with_error_code(ResponseError::InvalidRequest.code());
    }
    response
        .with_producer_id(ProducerId(broker.core.next_producer_id()))
        .with_producer_epoch(0)
}
