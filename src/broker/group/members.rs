//! What a member does once it has joined: SyncGroup, Heartbeat, LeaveGroup, and the identity check they share.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::*;

impl Group {
    /// Checks a member's identity for Heartbeat, SyncGroup and OffsetCommit.
    pub(super) fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(instance) = instance_id {
            if let Some(current) = self.static_members.get(instance) {
                if current != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// SyncGroup. `assignments` is the leader's (member id → assignment); others send none.
    pub fn sync(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> (SyncOutcome, Vec<Completion>) {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return (SyncOutcome::Done(Err(e)), Vec::new());
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now;
        }
        match self.state {
            GroupState::PreparingRebalance => (
                SyncOutcome::Done(Err(ResponseError::RebalanceInProgress)),
                Vec::new(),
            ),
            GroupState::Stable => {
                let assignment = self.members[member_id].assignment.clone();
                (SyncOutcome::Done(Ok(assignment)), Vec::new())
            }
            GroupState::CompletingRebalance => {
                if self.leader.as_deref() != Some(member_id) {
                    if let Some(m) = self.members.get_mut(member_id) {
                        m.awaiting_sync = true;
                    }
                    return (SyncOutcome::Waiting, Vec::new());
                }
                let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                let mut done = Vec::new();
                for (id, m) in &mut self.members {
                    m.assignment = given.remove(id).unwrap_or_default();
                    if std::mem::replace(&mut m.awaiting_sync, false) {
                        done.push(Completion::Sync {
                            member_id: id.clone(),
                            result: Ok(m.assignment.clone()),
                        });
                    }
                    m.last_heartbeat_ms = m.last_heartbeat_ms.max(now);
                }
                self.state = GroupState::Stable;
                let own = self.members[member_id].assignment.clone();
                (SyncOutcome::Done(Ok(own)), done)
            }
            GroupState::Empty | GroupState::Dead => (
                SyncOutcome::Done(Err(ResponseError::UnknownMemberId)),
                Vec::new(),
            ),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        now: i64,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        self.check_member(member_id, instance_id, generation)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for each (member id, instance id): a static member may leave by instance id alone (an empty
    /// member id). Each gets its own result.
    pub fn leave(
        &mut self,
        now: i64,
        leaving: &[(String, Option<String>)],
    ) -> (Vec<Result<(), ResponseError>>, Vec<Completion>) {
        let mut done = Vec::new();
        if self.state == GroupState::Dead {
            let results = leaving
                .iter()
                .map(|_| Err(ResponseError::CoordinatorNotAvailable))
                .collect();
            return (results, done);
        }
        let mut results = Vec::new();
        let mut removed_any = false;
        for (member_id, instance_id) in leaving {
            let id = match instance_id {
                Some(instance) => match self.static_members.get(instance) {
                    Some(current) if member_id.is_empty() || current == member_id => {
                        current.clone()
                    }
                    Some(_) => {
                        results.push(Err(ResponseError::FencedInstanceId));
                        continue;
                    }
                    None => {
                        results.push(Err(ResponseError::UnknownMemberId));
                        continue;
                    }
                },
                None => member_id.clone(),
            };
            if self.pending.remove(&id).is_some() {
                results.push(Ok(()));
                continue;
            }
            match self.remove_member(&id) {
                Some(m) => {
                    if m.awaiting_join {
                        done.push(Completion::Join {
                            member_id: id.clone(),
                            result: Err(JoinError::new(ResponseError::UnknownMemberId)),
                        });
                    }
                    if m.awaiting_sync {
                        done.push(Completion::Sync {
                            member_id: id,
                            result: Err(ResponseError::UnknownMemberId),
                        });
                    }
                    removed_any = true;
                    results.push(Ok(()));
                }
                None => results.push(Err(ResponseError::UnknownMemberId)),
            }
        }
        if removed_any {
            self.after_removal(now, &mut done);
        }
        (results, done)
    }
}
