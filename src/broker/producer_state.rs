//! Producer state of one replica of a partition: for every producer id, its current ProducerEpoch and the last
//! [`BATCHES_TO_RETAIN`] batches it wrote (first and last sequence, first and last offset). Kafka 3.9's rules
//! (ProducerStateManager, ProducerStateEntry, ProducerAppendInfo):
//!
//! - A batch whose ProducerEpoch and sequence range equal one of the retained batches is a duplicate: the leader
//!   answers it with the original base offset and does not append it again.
//! - An older epoch is INVALID_PRODUCER_EPOCH (produce answers that, not PRODUCER_FENCED, since Kafka 2.7).
//! - A newer epoch must start at BaseSequence 0; within an epoch the BaseSequence must follow the last sequence
//!   (wrapping after `i32::MAX`); otherwise OUT_OF_ORDER_SEQUENCE_NUMBER.
//! - A producer id the replica has no state for is accepted with any sequence (since KIP-360 its state may have
//!   been removed with the records, so Kafka no longer answers UNKNOWN_PRODUCER_ID).
//! - Batches without a producer id (-1) and control batches are not tracked.
//!
//! Leaders check and record; followers only record what they copy, so the state survives a leader change. After
//! a truncation the state is rebuilt from the batches left in the log ([`ProducerStates::rebuild`]), which is
//! also how a log read back from disk gets its state: no producer snapshot files are kept. Not here: producer id
//! expiration (`producer.id.expiration.ms`) and transactions.

use std::collections::{HashMap, VecDeque};

use kafka_protocol::error::ResponseError;

use super::log::Log;

/// How many batches per producer a partition remembers for deduplication (Kafka's `NUM_BATCHES_TO_RETAIN`, the
/// reason idempotence allows at most 5 requests in flight).
pub(crate) const BATCHES_TO_RETAIN: usize = 5;

/// The ProducerId of a batch written without idempotence.
const NO_PRODUCER_ID: i64 = -1;

/// The producer fields of a record batch v2 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub last_sequence: i32,
}

impl ProducerBatch {
    /// Reads the producer fields of the batch starting at `data[0]`; `None` for a batch without a producer id, a
    /// control batch, or bytes too short for a header.
    pub(crate) fn of(data: &[u8]) -> Option<ProducerBatch> {
        let attributes = i16::from_be_bytes(data.get(21..23)?.try_into().ok()?);
        let last_offset_delta = i32::from_be_bytes(data.get(23..27)?.try_into().ok()?);
        let producer_id = i64::from_be_bytes(data.get(43..51)?.try_into().ok()?);
        let producer_epoch = i16::from_be_bytes(data.get(51..53)?.try_into().ok()?);
        let base_sequence = i32::from_be_bytes(data.get(53..57)?.try_into().ok()?);
        if producer_id == NO_PRODUCER_ID || attributes & 0x20 != 0 {
            return None;
        }
        Some(ProducerBatch {
            producer_id,
            producer_epoch,
            base_sequence,
            last_sequence: sequence_after(base_sequence, last_offset_delta),
        })
    }
}

/// `base + delta`, wrapping to 0 after `i32::MAX` as sequences do.
fn sequence_after(base: i32, delta: i32) -> i32 {
    let delta = delta.max(0);
    if base > i32::MAX - delta {
        delta - (i32::MAX - base) - 1
    } else {
        base + delta
    }
}

/// One remembered batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug)]
struct ProducerEntry {
    producer_epoch: i16,
    /// Oldest first, at most [`BATCHES_TO_RETAIN`], all of `producer_epoch`.
    batches: VecDeque<BatchMetadata>,
}

/// What the leader does with a batch that passed the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Append it, then [`ProducerStates::record`] it.
    Append,
    /// Already in the log: answer with this batch's offsets, append nothing.
    Duplicate(BatchMetadata),
}

/// Why a leader refuses a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SequenceError {
    #[error(
        "ProducerEpoch {epoch} of producer {producer_id} is older than its current epoch {current}"
    )]
    OldEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id} starts ProducerEpoch {epoch} at BaseSequence {base_sequence}; a new epoch starts at 0")]
    NewEpochNotAtZero {
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
    },
    #[error("out of order sequence for producer {producer_id}: BaseSequence {base_sequence} does not follow the last sequence {last_sequence}")]
    OutOfOrder {
        producer_id: i64,
        base_sequence: i32,
        last_sequence: i32,
    },
}

impl SequenceError {
    /// Kafka's error code for the produce answer.
    pub(crate) fn response_error(&self) -> ResponseError {
        match self {
            SequenceError::OldEpoch { .. } => ResponseError::InvalidProducerEpoch,
            SequenceError::NewEpochNotAtZero { .. } | SequenceError::OutOfOrder { .. } => {
                ResponseError::OutOfOrderSequenceNumber
            }
        }
    }
}

/// Every producer's state on one replica.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// The state the batches of `log` leave behind, oldest batch first.
    pub(crate) fn rebuild(log: &Log) -> ProducerStates {
        let mut states = ProducerStates::default();
        for stored in log.batches_from(log.log_start_offset(), usize::MAX) {
            let bytes = match stored.data.get() {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a batch back; its producer state is not restored");
                    continue;
                }
            };
            if let Some(batch) = ProducerBatch::of(&bytes) {
                states.record(&batch, stored.base_offset, stored.last_offset);
            }
        }
        states
    }

    /// The leader's check before appending `batch`.
    pub(crate) fn check(&self, batch: &ProducerBatch) -> Result<Verdict, SequenceError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return Ok(Verdict::Append);
        };
        if batch.producer_epoch == entry.producer_epoch {
            if let Some(original) = entry.batches.iter().find(|b| {
                b.first_sequence == batch.base_sequence && b.last_sequence == batch.last_sequence
            }) {
                return Ok(Verdict::Duplicate(*original));
            }
        }
        if batch.producer_epoch < entry.producer_epoch {
            return Err(SequenceError::OldEpoch {
                producer_id: batch.producer_id,
                epoch: batch.producer_epoch,
                current: entry.producer_epoch,
            });
        }
        if batch.producer_epoch > entry.producer_epoch {
            if batch.base_sequence != 0 {
                return Err(SequenceError::NewEpochNotAtZero {
                    producer_id: batch.producer_id,
                    epoch: batch.producer_epoch,
                    base_sequence: batch.base_sequence,
                });
            }
            return Ok(Verdict::Append);
        }
        match entry.batches.back() {
            Some(last) if !follows(last.last_sequence, batch.base_sequence) => {
                Err(SequenceError::OutOfOrder {
                    producer_id: batch.producer_id,
                    base_sequence: batch.base_sequence,
                    last_sequence: last.last_sequence,
                })
            }
            _ => Ok(Verdict::Append),
        }
    }

    /// Remembers an appended batch (on the leader after its check, on a follower as it copies it). A new epoch
    /// forgets the batches of the old one.
    pub(crate) fn record(&mut self, batch: &ProducerBatch, base_offset: i64, last_offset: i64) {
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_epoch: batch.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_TO_RETAIN),
            });
        if batch.producer_epoch != entry.producer_epoch {
            entry.producer_epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence,
            base_offset,
            last_offset,
        });
    }
}

/// Whether `next` is the sequence right after `last`.
fn follows(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, base: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            producer_epoch: epoch,
            base_sequence: base,
            last_sequence: sequence_after(base, count - 1),
        }
    }

    fn appended(states: &mut ProducerStates, b: ProducerBatch, base_offset: i64) {
        assert_eq!(states.check(&b), Ok(Verdict::Append));
        states.record(
            &b,
            base_offset,
            base_offset + i64::from(b.last_sequence - b.base_sequence),
        );
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut states = ProducerStates::default();
        // Unknown producer: any sequence (KIP-360).
        appended(&mut states, batch(0, 10, 2), 0);
        appended(&mut states, batch(0, 12, 3), 2);
        assert!(matches!(
            states.check(&batch(0, 10, 2)),
            Ok(Verdict::Duplicate(BatchMetadata { base_offset: 0, .. }))
        ));
        // Same start, different range: not a duplicate, and out of order.
        assert!(matches!(
            states.check(&batch(0, 10, 1)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        assert!(matches!(
            states.check(&batch(0, 16, 1)),
            Err(SequenceError::OutOfOrder {
                last_sequence: 14,
                ..
            })
        ));
        assert!(matches!(
            states.check(&batch(1, 3, 1)),
            Err(SequenceError::NewEpochNotAtZero { .. })
        ));
        appended(&mut states, batch(1, 0, 1), 5);
        assert_eq!(
            states.check(&batch(0, 15, 1)).unwrap_err().response_error(),
            ResponseError::InvalidProducerEpoch
        );
        // The old epoch's batches are forgotten.
        assert!(states.check(&batch(0, 10, 2)).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..6 {
            appended(&mut states, batch(0, i, 1), i64::from(i));
        }
        assert!(matches!(
            states.check(&batch(0, 0, 1)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        for i in 1..6 {
            assert!(matches!(
                states.check(&batch(0, i, 1)),
                Ok(Verdict::Duplicate(m)) if m.base_offset == i64::from(i)
            ));
        }
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
        let mut states = ProducerStates::default();
        appended(&mut states, batch(0, i32::MAX - 1, 2), 0);
        appended(&mut states, batch(0, 0, 1), 2);
    }

    #[test]
    fn header_fields_of_a_real_batch() {
        let data = crate::broker::batch::tests::encode(
            &[(None, Some("a"), 1), (None, Some("b"), 2)],
            kafka_protocol::records::Compression::None,
        );
        // The test encoder writes no producer id.
        assert_eq!(ProducerBatch::of(&data), None);
        let mut with_id = data.to_vec();
        with_id[43..51].copy_from_slice(&5i64.to_be_bytes());
        with_id[51..53].copy_from_slice(&2i16.to_be_bytes());
        with_id[53..57].copy_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            ProducerBatch::of(&with_id),
            Some(ProducerBatch {
                producer_id: 5,
                producer_epoch: 2,
                base_sequence: 9,
                last_sequence: 10
            })
        );
        assert_eq!(ProducerBatch::of(&with_id[..50]), None);
    }
}
