//! Manual assignment: each of a consumer's partitions is read by its own task with rskafka, from the offset the
//! sink stored, and every batch is recorded as consumed before it is applied (see the module docs of
//! [`crate::pipeline`]).

use std::sync::{Arc, Mutex};

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};

use super::{
    decode_records, failures, lock, Batch, FetchedRecord, Shared, FETCH_MAX_BYTES,
    FETCH_MAX_WAIT_MS, RETRY_PAUSE,
};
use crate::history::RetentionGap;

/// One partition's read loop: fetch at the stored offset, decode, record, apply; forever, until aborted.
pub(super) async fn read_partition(
    shared: Arc<Shared>,
    consumer: u32,
    topic: String,
    partition: i32,
    stall: Arc<Mutex<Option<tokio::time::Instant>>>,
) {
    let mut offset = shared
        .sink
        .offsets()
        .get(&(topic.clone(), partition))
        .copied()
        .unwrap_or(0);
    let mut client: Option<PartitionClient> = None;
    let mut failures = failures::FailureStreak::default();
    loop {
        let until = *lock(&stall);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        let pc = match &client {
            Some(pc) => pc,
            None => match shared
                .client
                .partition_client(&topic, partition, UnknownTopicHandling::Retry)
                .await
            {
                Ok(pc) => client.insert(pc),
                Err(e) => {
                    failures.failed("no partition client yet", consumer, &topic, partition, &e);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        match pc
            .fetch_records(offset, 1..FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS)
            .await
        {
            Ok((records, _high_watermark)) => {
                failures.succeeded(consumer, &topic, partition);
                // A stall that began while the fetch was out holds from the moment it began: what the fetch
                // brought is dropped, not applied, and read again when the stall ends.
                if lock(&stall).is_some_and(|until| until > tokio::time::Instant::now()) {
                    continue;
                }
                let Some(last) = records.last() else {
                    continue;
                };
                let next = last.offset + 1;
                let batch = to_batch(&shared, consumer, &topic, partition, records, next);
                if apply(&shared, consumer, batch).await {
                    offset = next;
                }
            }
            Err(ClientError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => match out_of_range(&shared, pc, consumer, &topic, partition, offset).await {
                Some(moved) => offset = moved,
                None => tokio::time::sleep(RETRY_PAUSE).await,
            },
            Err(e) => {
                failures.failed("fetch failed", consumer, &topic, partition, &e);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Decodes fetched records into a batch and records them as consumed.
fn to_batch(
    shared: &Shared,
    consumer: u32,
    topic: &str,
    partition: i32,
    records: Vec<rskafka::record::RecordAndOffset>,
    next: i64,
) -> Batch {
    let fetched = records
        .iter()
        .map(|r| FetchedRecord {
            topic,
            partition,
            offset: r.offset,
            key: r.record.key.as_deref(),
            value: r.record.value.as_deref(),
            timestamp_ms: r.record.timestamp.timestamp_millis(),
        })
        .collect();
    let (batch, consumed) = decode_records(
        shared,
        consumer,
        fetched,
        vec![(topic.to_string(), partition, next)],
    );
    shared.recorder.consumed_batch(consumed);
    batch
}

/// Hands a batch to the sink; `false` (after a pause) when the sink refused it, so it is fetched again.
async fn apply(shared: &Shared, consumer: u32, batch: Batch) -> bool {
    match shared.sink.apply(consumer, batch).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(consumer, error = %e, "sink refused a batch; reading it again");
            tokio::time::sleep(RETRY_PAUSE).await;
            false
        }
    }
}

/// OFFSET_OUT_OF_RANGE at `offset`: below the log start, records what retention took and moves to the log
/// start; above the log end (the log was truncated under the reader), moves back to the end. Returns the new
/// offset, stored in the sink; `None` when the offsets could not be listed.
async fn out_of_range(
    shared: &Shared,
    pc: &PartitionClient,
    consumer: u32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<i64> {
    let listed = async {
        Ok::<_, ClientError>((
            pc.get_offset(OffsetAt::Earliest).await?,
            pc.get_offset(OffsetAt::Latest).await?,
        ))
    };
    let (start, end) = match listed.await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(consumer, topic, partition, error = %e, "cannot list offsets after OFFSET_OUT_OF_RANGE");
            return None;
        }
    };
    let moved = if offset < start {
        shared.recorder.retention_gap(RetentionGap {
            consumer,
            topic: topic.to_string(),
            partition,
            requested: offset,
            log_start_offset: start,
            at_ms: shared.clock.now_ms(),
        });
        start
    } else if offset > end {
        tracing::warn!(
            consumer,
            topic,
            partition,
            offset,
            end,
            "the log ends below the stored offset (truncated); reading from its end"
        );
        end
    } else {
        // The range moved between the fetch and the listing: try the same offset again.
        return Some(offset);
    };
    let batch = Batch {
        records: Vec::new(),
        next_offsets: vec![(topic.to_string(), partition, moved)],
    };
    apply(shared, consumer, batch).await.then_some(moved)
}
