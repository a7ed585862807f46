//! Committed offsets: OffsetCommit (fenced, or simple while Empty), OffsetFetch, OffsetDelete, and DeleteGroups.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::*;

impl Group {
    /// OffsetCommit of `offsets` ((topic, partition) → offset) for a member of `generation`, or a simple commit
    /// (generation -1, empty member id) while the group is Empty.
    pub fn commit(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let simple = generation < 0 && member_id.is_empty() && instance_id.is_none();
        if !(simple && self.state == GroupState::Empty) {
            self.check_member(member_id, instance_id, generation)?;
            if self.state == GroupState::CompletingRebalance {
                return Err(ResponseError::RebalanceInProgress);
            }
            if let Some(m) = self.members.get_mut(member_id) {
                m.last_heartbeat_ms = now;
            }
        }
        for (key, committed) in offsets {
            self.offsets.insert(key, committed);
        }
        Ok(())
    }

    /// OffsetFetch: the committed offset of (topic, partition), if any.
    pub fn committed(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(&(topic.to_string(), partition))
    }

    /// Every committed offset, by (topic, partition).
    pub fn offsets(&self) -> &BTreeMap<(String, i32), CommittedOffset> {
        &self.offsets
    }

    /// OffsetDelete: refused with GROUP_SUBSCRIBED_TO_TOPIC for a topic a member of a Stable consumer group may be
    /// reading (the coordinator cannot read subscriptions from opaque metadata here, so: while any member is in
    /// the group); otherwise the offsets go.
    pub fn delete_offsets(&mut self, partitions: &[(String, i32)]) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::GroupIdNotFound);
        }
        if !self.members.is_empty() {
            return Err(ResponseError::GroupSubscribedToTopic);
        }
        for key in partitions {
            self.offsets.remove(key);
        }
        Ok(())
    }

    /// DeleteGroups: only an Empty group can go (NON_EMPTY_GROUP otherwise); it becomes Dead.
    pub fn delete(&mut self) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {
                self.state = GroupState::Dead;
                self.offsets.clear();
                Ok(())
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }
}
