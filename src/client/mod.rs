//! The harness's own Kafka client side: a producer with the Java producer's semantics (acks 0/1/all, linger and
//! batch size, compression, retries with backoff and a delivery timeout, max in flight, idempotence, murmur2 keyed
//! partitioning identical to Java's, sticky partitioning for null keys) on the `kafka-protocol` wire types.
//!
//! rskafka stays the consumer and admin client; it cannot choose acks or do idempotence, which are exactly the
//! choices a scenario tests (Debezium's Connect worker uses the Java producer). Nothing here knows which backend
//! runs: the producer speaks the wire protocol to the embedded cluster and to a real Kafka alike.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use openmrs_etl_harness::client::{Producer, ProducerConfig, Record};
//! let producer = Producer::connect("127.0.0.1:9092", ProducerConfig::default()).await?;
//! let ack = producer.send(Record::new("encounters", "value").key("patient-1")).await.await?;
//! println!("partition {} offset {}", ack.partition, ack.offset);
//! producer.close().await;
//! # Ok(()) }
//! ```
//!
//! Against a broker without InitProducerId, [`Producer::connect`] with idempotence on fails with
//! [`ProduceError::IdempotenceUnsupported`]; the embedded cluster and Kafka 3.9.1 both serve it.
//!
//! Not built yet: transactions, splitting a
//! batch the broker refused as too large (the whole batch fails with MESSAGE_TOO_LARGE), epoch bumps after an
//! idempotent batch failed (the producer refuses further sends instead, [`ProduceError::Poisoned`]).

mod partitioner;
mod producer;
pub(crate) mod wire;

pub use partitioner::{murmur2, partition_for_key};
pub use producer::{
    Ack, Acks, Compression, Delivery, ProduceError, Producer, ProducerConfig, Record,
};
pub use wire::WireError;
