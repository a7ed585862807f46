//! The producer's settings: the Java producer's names and Kafka 3.9 defaults, the acks and compression it
//! offers, and the Java client's rules for combining them. The client's own types: a scenario's settings map onto
//! them in `run::configure`.

use std::time::Duration;

use super::ProduceError;

/// Producer acknowledgements (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the broker does not answer.
    None,
    /// `acks=1`: the leader has appended.
    Leader,
    /// `acks=all` (-1): every in-sync replica has appended.
    All,
}

impl Acks {
    /// The value on the wire (`acks` of ProduceRequest).
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// `compression.type` of the record batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// The Java producer's settings this producer honours (Kafka 3.9 defaults).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// `batch.size`: bytes per partition batch; a record larger than this goes alone in its batch.
    pub batch_size: usize,
    /// `retries`: sends of a batch after the first, bounded anyway by `delivery_timeout`.
    pub retries: u32,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight: usize,
    /// `enable.idempotence`: producer id, epoch and per-partition sequences (needs broker support).
    pub idempotence: bool,
    pub compression: Compression,
    /// `delivery.timeout.ms`: from `send` to the final answer, retries included.
    pub delivery_timeout: Duration,
    /// `request.timeout.ms`: one request's wait for its answer; a timeout closes the connection.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `max.block.ms`: how long `send` waits for metadata of its topic.
    pub max_block: Duration,
    /// `max.request.size`: a larger record is refused before it is queued.
    pub max_request_size: usize,
    /// `allow.auto.create.topics` (asked of the broker in Metadata requests).
    pub allow_auto_create_topics: bool,
    pub client_id: String,
}

impl Default for ProducerConfig {
    /// The Java producer's defaults in Kafka 3.9.
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::ZERO,
            batch_size: 16 * 1024,
            retries: i32::MAX as u32,
            max_in_flight: 5,
            idempotence: true,
            compression: Compression::None,
            delivery_timeout: Duration::from_millis(120_000),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            max_block: Duration::from_secs(60),
            max_request_size: 1_048_576,
            allow_auto_create_topics: true,
            client_id: "etl-harness-producer".into(),
        }
    }
}

impl ProducerConfig {
    /// The Java client's own consistency rules.
    pub(super) fn check(&self) -> Result<(), ProduceError> {
        let invalid = |message: String| Err(ProduceError::Config(message));
        if self.max_in_flight == 0 {
            return invalid("max_in_flight must be at least 1".into());
        }
        if self.idempotence {
            if self.acks != Acks::All {
                return invalid(format!(
                    "idempotence requires acks = all, found {:?}; disable idempotence to use it",
                    self.acks
                ));
            }
            if self.max_in_flight > 5 {
                return invalid(format!(
                    "idempotence allows at most 5 in-flight requests, found {}",
                    self.max_in_flight
                ));
            }
            if self.retries == 0 {
                return invalid("idempotence requires retries > 0".into());
            }
        }
        Ok(())
    }
}
