//! What admin tools ask a coordinator: ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.

use kafka_protocol::error::ResponseError;

use super::records::{OffsetsRecord, OFFSETS_TOPIC};
use super::{write, Coordinator, GroupView, Written};
use crate::broker::group::{Group, GroupState};
use crate::broker::state::ClusterCore;
use crate::broker::BrokerId;
use crate::history::ClusterEventKind;

impl Coordinator {
    /// The groups `broker` coordinates (loading the shards it leads that were not loaded yet).
    pub(crate) fn list(&self, core: &ClusterCore, broker: BrokerId) -> Vec<GroupView> {
        let Some(topic) = core.topic(OFFSETS_TOPIC) else {
            return Vec::new();
        };
        let mut views = Vec::new();
        for partition in &topic.partitions {
            let leads = partition.lock().leader == Some(broker);
            if !leads {
                continue;
            }
            // Loads the shard if this broker has not served it since it became the leader.
            let shard_groups = self.with_partition(core, broker, partition.index, |shard, _| {
                shard.groups.values().map(view).collect::<Vec<_>>()
            });
            views.extend(shard_groups.unwrap_or_default());
        }
        views
    }

    /// DescribeGroups of one group: an unknown group is reported Dead, as Kafka does.
    pub(crate) fn describe(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
    ) -> Result<GroupView, ResponseError> {
        self.with_shard(core, broker, group_id, |shard, _| {
            shard.groups.get(group_id).map(view).unwrap_or(GroupView {
                group: group_id.to_string(),
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            })
        })
    }

    /// DeleteGroups of one group: only an Empty group; its metadata and offsets get tombstones.
    pub(crate) fn delete_group(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        self.with_shard(core, broker, group_id, |shard, events| {
            let group = shard
                .groups
                .get_mut(group_id)
                .ok_or(ResponseError::GroupIdNotFound)?;
            let offsets: Vec<(String, i32)> = group.offsets().keys().cloned().collect();
            group.delete()?;
            shard.groups.remove(group_id);
            let mut records: Vec<OffsetsRecord> = offsets
                .into_iter()
                .map(|(topic, partition)| OffsetsRecord::Offset {
                    group: group_id.to_string(),
                    topic,
                    partition,
                    value: None,
                })
                .collect();
            records.push(OffsetsRecord::Group {
                group: group_id.to_string(),
                value: None,
            });
            // The group is gone from the cache whether or not the tombstones replicate, as in Kafka.
            if let Err(error) = write::append(core, broker, shard.index, &records) {
                tracing::debug!(%error, group = group_id, "group tombstones not written");
            }
            events.push(ClusterEventKind::GroupDeleted {
                group: group_id.to_string(),
            });
            Ok(())
        })?
    }

    /// OffsetDelete: refused per partition while the group has members; otherwise tombstones.
    pub(crate) fn delete_offsets(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Result<Written, ResponseError>, ResponseError> {
        self.with_shard(core, broker, group_id, |shard, _| {
            let group = shard
                .groups
                .get_mut(group_id)
                .ok_or(ResponseError::GroupIdNotFound)?;
            if let Err(error) = group.delete_offsets(partitions) {
                return Ok(Err(error));
            }
            let records: Vec<OffsetsRecord> = partitions
                .iter()
                .map(|(topic, partition)| OffsetsRecord::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                })
                .collect();
            Ok(write::append(core, broker, shard.index, &records))
        })?
    }
}

pub(super) fn view(group: &Group) -> GroupView {
    GroupView {
        group: group.id().to_string(),
        state: group.state(),
        protocol_type: group.protocol_type().unwrap_or("").to_string(),
        protocol: group.protocol().unwrap_or("").to_string(),
        members: group.describe(),
    }
}
