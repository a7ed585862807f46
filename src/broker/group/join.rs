//! JoinGroup: a member's first join (MEMBER_ID_REQUIRED, static members), a known member's rejoin, and what a
//! join does to the group's members and protocols.

use kafka_protocol::error::ResponseError;

use super::*;

impl Group {
    /// JoinGroup.
    pub fn join(&mut self, now: i64, request: JoinRequest) -> (JoinOutcome, Vec<Completion>) {
        let mut done = Vec::new();
        let outcome = self.join_inner(now, request, &mut done);
        done.extend(self.try_complete_join(now));
        (outcome, done)
    }

    fn join_inner(
        &mut self,
        now: i64,
        request: JoinRequest,
        done: &mut Vec<Completion>,
    ) -> JoinOutcome {
        let fail = |error| JoinOutcome::Done(Err(JoinError::new(error)));
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if request.session_timeout_ms < self.config.min_session_timeout_ms
            || request.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty()
            || request.protocols.is_empty()
            || !self.fits_protocols(&request)
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if request.member_id.is_empty() {
            return self.join_unknown(now, request, done);
        }
        // A known member id.
        if let Some(instance) = &request.group_instance_id {
            if let Some(current) = self.static_members.get(instance) {
                if *current != request.member_id {
                    return fail(ResponseError::FencedInstanceId);
                }
            }
        }
        if self.pending.remove(&request.member_id).is_some() {
            self.add_member(now, request.member_id.clone(), &request);
            self.prepare_rebalance(now, done);
            return JoinOutcome::Waiting;
        }
        let Some(member) = self.members.get_mut(&request.member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        member.last_heartbeat_ms = now;
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&request);
                JoinOutcome::Waiting
            }
            GroupState::CompletingRebalance if member.same_protocols(&request) => {
                // The member lost the answer: it gets it again.
                JoinOutcome::Done(Ok(self.join_response(&request.member_id)))
            }
            GroupState::Stable
                if member.same_protocols(&request)
                    && self.leader.as_deref() != Some(request.member_id.as_str()) =>
            {
                JoinOutcome::Done(Ok(self.join_response(&request.member_id)))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&request);
                self.prepare_rebalance(now, done);
                JoinOutcome::Waiting
            }
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
        }
    }

    fn join_unknown(
        &mut self,
        now: i64,
        request: JoinRequest,
        done: &mut Vec<Completion>,
    ) -> JoinOutcome {
        let new_id = self.new_member_id(&request.client_id);
        if let Some(instance) = request.group_instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                if let Some(old) = self.members.remove(&old_id) {
                    // The old member id is fenced from now on; the new one takes its place.
                    let unchanged = old.same_protocols(&request);
                    let was_leader = self.leader.as_deref() == Some(old_id.as_str());
                    let mut member = old;
                    member.last_heartbeat_ms = now;
                    member.session_timeout_ms = request.session_timeout_ms;
                    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
                    member.client_id = request.client_id.clone();
                    member.client_host = request.client_host.clone();
                    let held_join = std::mem::replace(&mut member.awaiting_join, false);
                    let held_sync = std::mem::replace(&mut member.awaiting_sync, false);
                    self.members.insert(new_id.clone(), member);
                    self.static_members.insert(instance, new_id.clone());
                    if was_leader {
                        self.leader = Some(new_id.clone());
                    }
                    if held_join {
                        done.push(Completion::Join {
                            member_id: old_id.clone(),
                            result: Err(JoinError::new(ResponseError::FencedInstanceId)),
                        });
                    }
                    if held_sync {
                        done.push(Completion::Sync {
                            member_id: old_id,
                            result: Err(ResponseError::FencedInstanceId),
                        });
                    }
                    return match self.state {
                        GroupState::Stable if unchanged => {
                            JoinOutcome::Done(Ok(self.join_response(&new_id)))
                        }
                        _ => {
                            self.update_member_as(&new_id, &request);
                            self.prepare_rebalance(now, done);
                            JoinOutcome::Waiting
                        }
                    };
                }
            }
            self.static_members.insert(instance, new_id.clone());
            self.add_member(now, new_id, &request);
            self.prepare_rebalance(now, done);
            return JoinOutcome::Waiting;
        }
        if request.require_known_member_id {
            self.pending.insert(new_id.clone(), now);
            return JoinOutcome::Done(Err(JoinError {
                error: ResponseError::MemberIdRequired,
                member_id: new_id,
            }));
        }
        self.add_member(now, new_id, &request);
        self.prepare_rebalance(now, done);
        JoinOutcome::Waiting
    }

    /// A deterministic member id in Kafka's shape (`<client id>-<uuid>`).
    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_seq += 1;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.id.bytes().chain(self.next_seq.to_be_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let low = h.rotate_left(29) ^ self.next_seq;
        format!(
            "{client_id}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            h & 0xffff,
            (low >> 48) & 0xffff,
            low & 0xffff_ffff_ffff
        )
    }

    fn fits_protocols(&self, request: &JoinRequest) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(request.protocol_type.as_str()) {
            return false;
        }
        // Some protocol of the request must be supported by every other member.
        request.protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .filter(|(id, _)| **id != request.member_id)
                .all(|(_, m)| m.supports(name))
        })
    }

    fn add_member(&mut self, now: i64, id: String, request: &JoinRequest) {
        self.next_seq += 1;
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        self.members.insert(
            id,
            Member {
                instance_id: request.group_instance_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                session_timeout_ms: request.session_timeout_ms,
                rebalance_timeout_ms: request.rebalance_timeout_ms,
                protocol_type: request.protocol_type.clone(),
                protocols: request.protocols.clone(),
                last_heartbeat_ms: now,
                awaiting_join: true,
                awaiting_sync: false,
                assignment: Bytes::new(),
                joined_seq: self.next_seq,
            },
        );
        if let Some(JoinTimer::Initial { new_member, .. }) = &mut self.join_timer {
            *new_member = true;
        }
    }

    fn update_member(&mut self, request: &JoinRequest) {
        let id = request.member_id.clone();
        self.update_member_as(&id, request);
    }

    fn update_member_as(&mut self, id: &str, request: &JoinRequest) {
        if let Some(m) = self.members.get_mut(id) {
            m.protocols = request.protocols.clone();
            m.protocol_type = request.protocol_type.clone();
            m.session_timeout_ms = request.session_timeout_ms;
            m.rebalance_timeout_ms = request.rebalance_timeout_ms;
            m.awaiting_join = true;
        }
    }
}
