//! What `etl-harness up --describe-groups` and tests read about the groups: members with their assignments
//! (decoded when the protocol type is `consumer`), committed offsets and lag against the high watermark.

use bytes::Buf;

use super::{Coordinator, OFFSETS_TOPIC};
use crate::broker::state::ClusterCore;
use crate::broker::BrokerId;

/// One consumer group, as its coordinator holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: String,
    /// The broker coordinating it (leader of its `__consumer_offsets` partition).
    pub coordinator: BrokerId,
    /// Empty, PreparingRebalance, CompletingRebalance or Stable.
    pub state: String,
    pub generation: i32,
    pub protocol_type: String,
    /// The assignor of the current generation.
    pub protocol: String,
    pub members: Vec<MemberSummary>,
    pub offsets: Vec<OffsetSummary>,
}

/// A member and what it was assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partitions) of a `consumer` member's assignment; empty for other protocol types or while the
    /// group is not Stable.
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A committed offset and how far the partition's high watermark is ahead of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSummary {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// The partition's high watermark, if the partition exists.
    pub high_watermark: Option<i64>,
    /// `high_watermark - committed`, if the partition exists.
    pub lag: Option<i64>,
}

impl Coordinator {
    /// Every group of every loaded shard, by group id.
    pub(crate) fn summaries(&self, core: &ClusterCore) -> Vec<GroupSummary> {
        let mut out = Vec::new();
        let shards = self.lock();
        let topic = core.topic(OFFSETS_TOPIC);
        for (index, shard) in shards.iter() {
            // A shard whose partition moved is stale: the new leader has not loaded it yet.
            let current = topic
                .as_ref()
                .and_then(|t| t.partitions.get(*index as usize))
                .is_some_and(|p| {
                    let s = p.lock();
                    s.leader == Some(shard.broker) && s.leader_epoch == shard.leader_epoch
                });
            if !current {
                continue;
            }
            for group in shard.groups.values() {
                let consumer = group.protocol_type() == Some("consumer");
                let members = group
                    .describe()
                    .into_iter()
                    .map(|m| MemberSummary {
                        assignment: if consumer {
                            decode_assignment(&m.assignment).unwrap_or_default()
                        } else {
                            Vec::new()
                        },
                        member_id: m.member_id,
                        instance_id: m.group_instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                    })
                    .collect();
                let offsets = group
                    .offsets()
                    .iter()
                    .map(|((topic, partition), c)| {
                        let high_watermark = core
                            .topic(topic)
                            .and_then(|t| t.partitions.get(*partition as usize).cloned())
                            .map(|p| p.lock().log().high_watermark());
                        OffsetSummary {
                            topic: topic.clone(),
                            partition: *partition,
                            committed: c.offset,
                            high_watermark,
                            lag: high_watermark.map(|hw| (hw - c.offset).max(0)),
                        }
                    })
                    .collect();
                out.push(GroupSummary {
                    group: group.id().to_string(),
                    coordinator: shard.broker,
                    state: group.state().name().to_string(),
                    generation: group.generation(),
                    protocol_type: group.protocol_type().unwrap_or("").to_string(),
                    protocol: group.protocol().unwrap_or("").to_string(),
                    members,
                    offsets,
                });
            }
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }
}

/// A `ConsumerProtocolAssignment` (any version: they all start with the assigned partitions), read with every
/// length checked against the bytes present; `None` if it is not one.
pub(crate) fn decode_assignment(mut bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let need = |b: &[u8], n: usize| (b.remaining() >= n).then_some(());
    need(bytes, 2)?;
    let _version = bytes.get_i16();
    need(bytes, 4)?;
    let topics = usize::try_from(bytes.get_i32()).ok()?;
    let mut out = Vec::new();
    for _ in 0..topics {
        need(bytes, 2)?;
        let len = usize::try_from(bytes.get_i16()).ok()?;
        need(bytes, len)?;
        let topic = std::str::from_utf8(&bytes[..len]).ok()?.to_string();
        bytes.advance(len);
        need(bytes, 4)?;
        let count = usize::try_from(bytes.get_i32()).ok()?;
        need(bytes, count.checked_mul(4)?)?;
        let partitions = (0..count).map(|_| bytes.get_i32()).collect();
        out.push((topic, partitions));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_decode_with_every_length_checked() {
        // v0: one topic "t" with partitions 1 and 4, then empty user data.
        let bytes = [
            0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0,
        ];
        assert_eq!(
            decode_assignment(&bytes),
            Some(vec![("t".to_string(), vec![1, 4])])
        );
        // A count of two billion partitions with none present is refused, not allocated.
        let lying = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(decode_assignment(&lying), None);
        assert_eq!(decode_assignment(&[]), Some(Vec::new()));
    }
}
