//! A group as `__consumer_offsets` stores it (Kafka's `GroupMetadataValue`), and a group rebuilt from what a new
//! coordinator reads back: after a leader change of the group's offsets partition, the new coordinator loads every
//! group of that partition this way (Kafka's `GroupMetadataManager.loadGroup`).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;

/// A group's stored metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<SnapshotMember>,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

impl Group {
    /// What the coordinator stores after a generation's assignment (Stable) or when the group became Empty.
    pub fn snapshot(&self, now: i64) -> GroupSnapshot {
        let protocol = self.protocol.clone();
        let name = protocol.as_deref().unwrap_or("");
        GroupSnapshot {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: now,
            members: self
                .members_in_join_order()
                .into_iter()
                .map(|(id, m)| SnapshotMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(name),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// A group as a new coordinator loads it: Stable with its stored members and assignments (their sessions start
    /// now), or Empty; with its committed offsets.
    pub fn restore(
        id: impl Into<String>,
        config: GroupConfig,
        snapshot: Option<GroupSnapshot>,
        offsets: BTreeMap<(String, i32), CommittedOffset>,
        now: i64,
    ) -> Group {
        let mut group = Group::new(id, config);
        group.offsets = offsets;
        let Some(snapshot) = snapshot else {
            return group;
        };
        group.generation = snapshot.generation;
        if snapshot.members.is_empty() {
            return group;
        }
        let protocol = snapshot.protocol.clone().unwrap_or_default();
        for m in snapshot.members {
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let seq = group.next_seq;
            group.next_seq += 1;
            group.members.insert(
                m.member_id,
                Member {
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocol_type: snapshot.protocol_type.clone(),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    last_heartbeat_ms: now,
                    awaiting_join: false,
                    awaiting_sync: false,
                    assignment: m.assignment,
                    joined_seq: seq,
                },
            );
        }
        group.protocol_type = Some(snapshot.protocol_type);
        group.protocol = snapshot.protocol;
        group.leader = snapshot.leader;
        group.state = GroupState::Stable;
        group
    }
}
