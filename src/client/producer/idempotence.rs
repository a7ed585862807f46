//! Idempotence: the producer id and epoch from InitProducerId, and the per-partition sequence numbers that let
//! the broker recognise a retried batch it already appended.

use std::time::Instant;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use kafka_protocol::records::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};

use super::accumulator::{Batch, PartitionQueue};
use super::{ProduceError, Shared};

/// InitProducerId versions this producer speaks; the highest one the broker also speaks is used.
const INIT_PRODUCER_ID_VERSIONS: (i16, i16) = (0, 5);

impl Shared {
    pub(super) async fn init_producer_id(&self) -> Result<(i64, i16), ProduceError> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < self.config.delivery_timeout {
            for addr in self.candidate_addrs() {
                let connection = match self.connection(&addr).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                };
                let Some(version) =
                    connection.version::<InitProducerIdRequest>(INIT_PRODUCER_ID_VERSIONS)
                else {
                    return Err(ProduceError::IdempotenceUnsupported { addr });
                };
                let request = InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(NO_PRODUCER_ID))
                    .with_producer_epoch(NO_PRODUCER_EPOCH);
                match connection
                    .call(&request, version, self.config.request_timeout)
                    .await
                {
                    Ok(answer) => match ResponseError::try_from_code(answer.error_code) {
                        None => return Ok((answer.producer_id.0, answer.producer_epoch)),
                        Some(error) if error.is_retriable() => last = error.to_string(),
                        Some(error) => return Err(ProduceError::InitProducerId(error.to_string())),
                    },
                    Err(e) => {
                        last = e.to_string();
                        self.forget_connection(&addr).await;
                    }
                }
            }
            tokio::time::sleep(self.config.retry_backoff).await;
        }
        Err(ProduceError::InitProducerId(format!(
            "no answer within {:?}: {last}",
            self.config.delivery_timeout
        )))
    }
}

/// Gives `batch` the partition's next sequence numbers when it is first drained; a retry keeps them.
pub(super) fn assign_sequence(batch: &mut Batch, queue: &mut PartitionQueue) {
    if batch.base_sequence.is_none() {
        batch.base_sequence = Some(queue.next_sequence);
        queue.next_sequence =
            queue.next_sequence.wrapping_add(batch.records.len() as i32) & i32::MAX;
    }
}
