//! The accumulator: records appended to per-partition batches by [`Producer::send`](super::Producer::send), and
//! the drain that takes the ready batches (full, lingered long enough, due for a retry, or flushed) out for the
//! sender, grouped per leader.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{TimestampType, NO_PARTITION_LEADER_EPOCH};
use tokio::sync::oneshot;

use super::idempotence::assign_sequence;
use super::{Ack, ProduceError, Producer, Record, Shared};
use crate::client::partitioner::partition_for_key;

/// Bytes a record batch v2 header takes, and a generous bound of one record's framing (varints, attributes).
const BATCH_OVERHEAD: usize = 61;
const RECORD_OVERHEAD: usize = 21;

type Waiter = oneshot::Sender<Result<Ack, ProduceError>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TopicPartition {
    pub(super) topic: String,
    pub(super) partition: i32,
}

#[derive(Debug)]
pub(super) struct Batch {
    pub(super) tp: TopicPartition,
    pub(super) records: Vec<kafka_protocol::records::Record>,
    pub(super) waiters: Vec<Waiter>,
    pub(super) bytes: usize,
    pub(super) created: Instant,
    pub(super) full: bool,
    pub(super) attempts: u32,
    pub(super) retry_at: Option<Instant>,
    pub(super) base_sequence: Option<i32>,
    pub(super) encoded: Option<Bytes>,
    pub(super) last_failure: Option<String>,
}

impl Batch {
    pub(super) fn fail(self, error: ProduceError) {
        for waiter in self.waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct PartitionQueue {
    pub(super) batches: VecDeque<Batch>,
    pub(super) in_flight: usize,
    pub(super) next_sequence: i32,
}

impl Producer {
    pub(super) async fn enqueue(
        &self,
        record: Record,
    ) -> Result<oneshot::Receiver<Result<Ack, ProduceError>>, ProduceError> {
        let shared = &self.shared;
        let config = &shared.config;
        let size = estimated_size(&record);
        if size + BATCH_OVERHEAD > config.max_request_size {
            return Err(ProduceError::RecordTooLarge {
                size: size + BATCH_OVERHEAD,
                limit: config.max_request_size,
            });
        }
        let num_partitions = shared.wait_for_topic(&record.topic).await?;
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let (tx, rx) = oneshot::channel();
        let mut state = shared.lock();
        if state.closing {
            return Err(ProduceError::Closed);
        }
        if let Some(reason) = &state.poisoned {
            return Err(ProduceError::Poisoned(reason.clone()));
        }
        let partition = match &record.key {
            Some(key) => partition_for_key(key, num_partitions),
            None => state.sticky.partition(&record.topic, num_partitions),
        };
        if record.key.is_none() {
            state
                .sticky
                .record_appended(&record.topic, num_partitions, size);
        }
        let tp = TopicPartition {
            topic: record.topic.clone(),
            partition,
        };
        let wire_record = kafka_protocol::records::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: shared.producer_id,
            producer_epoch: shared.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp,
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|(name, value)| (StrBytes::from_string(name), value))
                .collect::<IndexMap<_, _>>(),
        };
        let batch_size = config.batch_size;
        let queue = state.queues.entry(tp.clone()).or_default();
        let fits = queue
            .batches
            .back()
            .is_some_and(|b| !b.full && b.attempts == 0 && b.bytes + size <= batch_size);
        let mut new_batch = false;
        if !fits {
            if let Some(last) = queue.batches.back_mut() {
                last.full = true;
            }
            queue.batches.push_back(Batch {
                tp,
                records: Vec::new(),
                waiters: Vec::new(),
                bytes: BATCH_OVERHEAD,
                created: Instant::now(),
                full: false,
                attempts: 0,
                retry_at: None,
                base_sequence: None,
                encoded: None,
                last_failure: None,
            });
            new_batch = true;
        }
        let batch = queue.batches.back_mut().expect("a batch was just ensured");
        batch.records.push(wire_record);
        batch.waiters.push(tx);
        batch.bytes += size;
        if batch.bytes >= batch_size {
            batch.full = true;
        }
        let wake = new_batch || batch.full;
        state.outstanding += 1;
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
        Ok(rx)
    }
}

/// One request's worth of batches for one broker.
pub(super) struct Drained {
    pub(super) broker: i32,
    pub(super) addr: String,
    pub(super) batches: Vec<Batch>,
}

/// Takes the ready batches out of the accumulator, grouped per leader. Returns them, when to look again, whether
/// metadata must be refreshed first, and whether the sender is done (closing with nothing left).
pub(super) fn drain(shared: &Shared) -> (Vec<Drained>, Option<Instant>, bool, bool) {
    let config = &shared.config;
    let now = Instant::now();
    let mut state = shared.lock();
    let state = &mut *state;
    let force = state.flushing > 0 || state.closing;
    let mut next_wake: Option<Instant> = None;
    let mut wake_at = |at: Instant| {
        next_wake = Some(next_wake.map_or(at, |n: Instant| n.min(at)));
    };
    let mut refresh = state.metadata.stale;
    let mut per_broker: HashMap<i32, Drained> = HashMap::new();
    let mut expired = Vec::new();
    let mut failed_sequence = None;
    for (tp, queue) in state.queues.iter_mut() {
        // Expire batches past their delivery timeout that are not in flight.
        while let Some(front) = queue.batches.front() {
            if now.duration_since(front.created) < config.delivery_timeout {
                break;
            }
            let batch = queue.batches.pop_front().expect("front exists");
            if batch.base_sequence.is_some() {
                failed_sequence = Some(format!("{}-{} expired", tp.topic, tp.partition));
            }
            expired.push(batch);
        }
        let Some(front) = queue.batches.front() else {
            continue;
        };
        wake_at(front.created + config.delivery_timeout);
        if config.idempotence && queue.in_flight > 0 {
            continue;
        }
        if let Some(at) = front.retry_at {
            if at > now {
                wake_at(at);
                continue;
            }
        }
        let linger_due = front.created + config.linger;
        let ready = force
            || front.full
            || queue.batches.len() > 1
            || front.retry_at.is_some()
            || linger_due <= now;
        if !ready {
            wake_at(linger_due);
            continue;
        }
        let leader = state
            .metadata
            .topics
            .get(&tp.topic)
            .and_then(|leaders| leaders.get(tp.partition as usize))
            .copied()
            .unwrap_or(-1);
        let Some(addr) = state.metadata.brokers.get(&leader).cloned() else {
            refresh = true;
            continue;
        };
        let in_flight = state
            .in_flight_per_broker
            .get(&leader)
            .copied()
            .unwrap_or(0);
        let pending_here = per_broker.contains_key(&leader);
        if in_flight >= config.max_in_flight && !pending_here {
            continue;
        }
        let drained = per_broker.entry(leader).or_insert_with(|| Drained {
            broker: leader,
            addr,
            batches: Vec::new(),
        });
        let request_bytes: usize = drained.batches.iter().map(|b| b.bytes).sum();
        if !drained.batches.is_empty() && request_bytes + front.bytes > config.max_request_size {
            wake_at(now);
            continue;
        }
        let mut batch = queue.batches.pop_front().expect("front exists");
        if config.idempotence {
            assign_sequence(&mut batch, queue);
        }
        batch.attempts += 1;
        queue.in_flight += 1;
        drained.batches.push(batch);
    }
    for drained in per_broker.values() {
        *state
            .in_flight_per_broker
            .entry(drained.broker)
            .or_default() += 1;
    }
    if let Some(reason) = failed_sequence {
        state.poisoned.get_or_insert(reason);
    }
    let mut answered = 0;
    for batch in expired {
        answered += batch.records.len();
        let error = ProduceError::DeliveryTimeout {
            topic: batch.tp.topic.clone(),
            partition: batch.tp.partition,
            timeout: config.delivery_timeout,
            attempts: batch.attempts,
            last: batch.last_failure.clone(),
        };
        batch.fail(error);
    }
    state.outstanding -= answered;
    // An idle queue may go, unless it carries an idempotent sequence: a partition's sequence must never start
    // over at 0 (the broker would take the next batch for a duplicate of the first and not append it).
    state
        .queues
        .retain(|_, q| !q.batches.is_empty() || q.in_flight > 0 || q.next_sequence != 0);
    let idle = state
        .queues
        .values()
        .all(|q| q.batches.is_empty() && q.in_flight == 0)
        && state.in_flight_per_broker.values().all(|n| *n == 0);
    let done = state.closing && idle && per_broker.is_empty();
    if answered > 0 {
        shared.progress.notify_waiters();
    }
    (
        per_broker.into_values().collect(),
        next_wake,
        refresh && !done,
        done,
    )
}

fn estimated_size(record: &Record) -> usize {
    RECORD_OVERHEAD
        + record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 10)
            .sum::<usize>()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
