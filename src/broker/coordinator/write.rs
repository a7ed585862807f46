//! The coordinator and its log: appending `__consumer_offsets` records on the partition's leader and waiting for
//! them to be replicated, and loading a partition's groups back from a replica's log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::records::{OffsetsRecord, OFFSETS_TOPIC};
use super::Shard;
use crate::broker::api::{append_on_leader, replication_check, Pending};
use crate::broker::batch;
use crate::broker::group::{CommittedOffset, Group, GroupSnapshot};
use crate::broker::replication::advance_high_watermark;
use crate::broker::state::{ClusterCore, PartitionState};
use crate::broker::BrokerId;
use crate::history::ClusterEventKind;

/// Kafka's `offsets.commit.timeout.ms`.
const COMMIT_TIMEOUT: Duration = Duration::from_millis(5_000);

/// Records appended on the leader, not yet known to be replicated.
pub(crate) struct Written {
    pending: Option<Pending>,
}

impl Written {
    /// Waits until the high watermark passes the records (acks=all), mapping failures as Kafka's group metadata
    /// manager does.
    pub(crate) async fn wait(self, core: &ClusterCore) -> Result<(), ResponseError> {
        let Some(pending) = self.pending else {
            return Ok(());
        };
        let mut appends = core.subscribe_appends();
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        loop {
            appends.borrow_and_update();
            match replication_check(&pending) {
                None => {}
                Some(None) => return Ok(()),
                Some(Some((error, _))) => return Err(map_error(error)),
            }
            tokio::select! {
                changed = appends.changed() => if changed.is_err() {
                    return Err(ResponseError::CoordinatorNotAvailable);
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
            }
        }
    }
}

/// Kafka's `GroupMetadataManager` error mapping for writes to the offsets topic.
fn map_error(error: ResponseError) -> ResponseError {
    match error {
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
            ResponseError::NotCoordinator
        }
        ResponseError::MessageTooLarge
        | ResponseError::RecordListTooLarge
        | ResponseError::InvalidFetchSize => ResponseError::InvalidCommitOffsetSize,
        other => other,
    }
}

/// Appends `records` as one batch on `broker`, which must lead partition `index` of `__consumer_offsets`.
pub(super) fn append(
    core: &ClusterCore,
    broker: BrokerId,
    index: i32,
    records: &[OffsetsRecord],
) -> Result<Written, ResponseError> {
    if records.is_empty() {
        return Ok(Written { pending: None });
    }
    let topic = core
        .topic(OFFSETS_TOPIC)
        .ok_or(ResponseError::NotCoordinator)?;
    let partition = topic
        .partitions
        .get(index as usize)
        .ok_or(ResponseError::NotCoordinator)?;
    let now = core.clock.now_ms();
    let data = encode(records, now);
    let (header, _) = batch::parse_header(&data).map_err(|_| ResponseError::UnknownServerError)?;
    let min_isr = topic.config.min_insync_replicas;
    let needed = min_isr.min(i64::from(topic.replication_factor));
    let mut events = Vec::new();
    let pending = {
        let mut state = partition.lock();
        if state.leader != Some(broker) {
            return Err(ResponseError::NotCoordinator);
        }
        if (state.isr.len() as i64) < needed {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let epoch = state.leader_epoch;
        let appended = append_on_leader(&mut state, broker, data, &header, now, &mut events)
            .map_err(|(error, _)| map_error(error))?;
        advance_high_watermark(&mut state, min_isr);
        Pending {
            topic: 0,
            index: 0,
            partition: Arc::clone(partition),
            leader_epoch: epoch,
            required_offset: appended.required_offset,
            min_insync_replicas: min_isr,
        }
    };
    core.record(events);
    core.notify_appended();
    Ok(Written {
        pending: Some(pending),
    })
}

fn encode(records: &[OffsetsRecord], now: i64) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = r.encode();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch wherever offset - sequence changes: this keeps every record in one
                // batch with base sequence -1, as Kafka's own (non-idempotent) coordinator writes have.
                sequence: i as i32 - 1,
                timestamp: now,
                key: Some(key),
                value,
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("an uncompressed batch of in-memory records always encodes");
    buf.freeze()
}

/// Rebuilds the groups of partition `index` from `broker`'s replica of it (the leader's log, whose state the caller
/// holds locked).
pub(super) fn load(
    core: &ClusterCore,
    broker: BrokerId,
    index: i32,
    state: &PartitionState,
    events: &mut Vec<ClusterEventKind>,
) -> Shard {
    let mut snapshots: BTreeMap<String, Option<GroupSnapshot>> = BTreeMap::new();
    let mut offsets: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>> = BTreeMap::new();
    let log = state.replica(broker).map(|r| &r.log);
    let batches = log
        .map(|log| log.batches_from(log.log_start_offset(), usize::MAX))
        .unwrap_or_default();
    for stored in batches {
        let Some(set) = stored
            .data
            .get()
            .ok()
            .and_then(|mut bytes| RecordBatchDecoder::decode(&mut bytes).ok())
        else {
            tracing::warn!(
                partition = index,
                "skipping an unreadable batch of {OFFSETS_TOPIC}"
            );
            continue;
        };
        for record in set.records {
            let Some(key) = record.key.as_deref() else {
                continue;
            };
            match OffsetsRecord::decode(key, record.value.as_deref()) {
                Ok(Some(OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })) => {
                    let group_offsets = offsets.entry(group).or_default();
                    match value {
                        Some(v) => {
                            group_offsets.insert((topic, partition), v);
                        }
                        None => {
                            group_offsets.remove(&(topic, partition));
                        }
                    }
                }
                Ok(Some(OffsetsRecord::Group { group, value })) => {
                    if value.is_none() {
                        offsets.remove(&group);
                    }
                    snapshots.insert(group, value);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, partition = index, "skipping a record"),
            }
        }
    }
    let now = core.clock.now_ms();
    let config = core.defaults.group;
    let mut groups = BTreeMap::new();
    let names: std::collections::BTreeSet<String> =
        snapshots.keys().chain(offsets.keys()).cloned().collect();
    let mut offset_count = 0;
    for name in names {
        let snapshot = snapshots.get(&name).cloned().flatten();
        let group_offsets = offsets.remove(&name).unwrap_or_default();
        // A deleted group with nothing committed since is gone.
        if snapshot.is_none() && group_offsets.is_empty() {
            continue;
        }
        offset_count += group_offsets.len();
        let group = Group::restore(name.clone(), config, snapshot, group_offsets, now);
        groups.insert(name, group);
    }
    events.push(ClusterEventKind::CoordinatorLoaded {
        broker,
        partition: index,
        leader_epoch: state.leader_epoch,
        groups: groups.len(),
        offsets: offset_count,
    });
    Shard {
        index,
        broker,
        leader_epoch: state.leader_epoch,
        groups,
        joins: HashMap::new(),
        syncs: HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit of several partitions is one batch holding every record (a coordinator write is atomic).
    #[test]
    fn a_write_is_one_batch_with_every_record() {
        let records: Vec<OffsetsRecord> = (0..6)
            .map(|p| OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: p,
                value: None,
            })
            .collect();
        let data = encode(&records, 5);
        let (header, len) = batch::parse_header(&data).unwrap();
        assert_eq!(len, data.len(), "one batch");
        assert_eq!(header.records_count, 6);
        assert_eq!(header.last_offset_delta, 5);
        assert_eq!(header.producer_id, -1);
        let set = RecordBatchDecoder::decode(&mut data.clone()).unwrap();
        assert_eq!(set.records.len(), 6);
    }
}
