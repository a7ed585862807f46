//! Kafka 3.9's classic consumer-group protocol, as the group coordinator runs it: one [`Group`]'s membership,
//! generations, rebalances and committed offsets, with no wire and no log. The coordinator API handlers
//! (`api::groups`, `api::offsets`, `api::group_admin`, through `coordinator`) decode a request, call the matching
//! method with the cluster clock's time, and answer; answers a rebalance holds back (JoinGroup until the join phase
//! ends, SyncGroup until the leader's assignment arrives) come out of
//! [`Group::tick`] and of the call that completes them, as [`Completion`]s.
//!
//! What follows Kafka's `GroupCoordinator` / `GroupMetadata` (classic protocol):
//!
//! - States Empty → PreparingRebalance → CompletingRebalance → Stable, and Dead once deleted.
//! - A dynamic member's first JoinGroup (v4+) gets MEMBER_ID_REQUIRED with its new id, and joins with it (KIP-394);
//!   a static member (`group.instance.id`, KIP-345) joins at once, and a rejoin under the same instance id replaces
//!   the old member id, which is fenced from then on (FENCED_INSTANCE_ID). A static member that rejoins a Stable
//!   group with the same protocols gets the current generation back without a rebalance.
//! - The join phase ends when every member has rejoined and no pending member is left, or at the rebalance
//!   deadline (the largest rebalance timeout of the members, from the phase's start), which removes members that
//!   did not rejoin. A rebalance from Empty first waits `group.initial.rebalance.delay.ms`, again after each new
//!   member, up to the rebalance timeout (Kafka's `InitialDelayedJoin`).
//! - The protocol is the one every member supports that gets the most votes (each member votes for the first of
//!   its own list that all support); ties go to the one earliest in the leader's list. The leader stays if it
//!   rejoined, else the first member (in join order) becomes it. Only the leader's JoinGroup answer lists the
//!   members with their metadata; the assignment the leader sends in SyncGroup is relayed as opaque bytes.
//! - Sessions are kept alive by heartbeats (and by any JoinGroup/SyncGroup); a member waiting in the join or sync
//!   phase does not expire. An expired or leaving member starts a rebalance.
//! - Fencing: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID; session timeouts
//!   outside `group.min/max.session.timeout.ms` get INVALID_SESSION_TIMEOUT; a protocol type or protocol set that
//!   does not fit the group's gets INCONSISTENT_GROUP_PROTOCOL; a Dead group answers COORDINATOR_NOT_AVAILABLE.
//! - OffsetCommit from a member is fenced by generation (allowed while PreparingRebalance, refused while
//!   CompletingRebalance); a "simple" commit (generation -1, no member id) is accepted only while the group is
//!   Empty.

mod join;
mod load;
mod members;
mod offsets;
#[cfg(test)]
mod tests;
mod types;

pub use load::{GroupSnapshot, SnapshotMember};
pub use types::*;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    last_heartbeat_ms: i64,
    awaiting_join: bool,
    awaiting_sync: bool,
    assignment: Bytes,
    /// Join order, for choosing a leader.
    joined_seq: u64,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, request: &JoinRequest) -> bool {
        self.protocol_type == request.protocol_type && self.protocols == request.protocols
    }
}

/// The join phase's timer: the rebalance deadline, or Kafka's `InitialDelayedJoin` for a group that was Empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    Deadline(i64),
    Initial {
        at: i64,
        remaining_ms: i64,
        new_member: bool,
    },
}

/// One classic consumer group. See the module docs.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    config: GroupConfig,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED and not joined yet (id → when handed out).
    pending: BTreeMap<String, i64>,
    /// instance id → its current member id.
    static_members: BTreeMap<String, String>,
    join_timer: Option<JoinTimer>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    next_seq: u64,
}

impl Group {
    pub fn new(id: impl Into<String>, config: GroupConfig) -> Group {
        Group {
            id: id.into(),
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            static_members: BTreeMap::new(),
            join_timer: None,
            offsets: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The chosen protocol (assignor) of the current generation.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The member ids, in id order.
    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// The members as DescribeGroups reports them.
    pub fn describe(&self) -> Vec<MemberDescription> {
        let protocol = self.protocol.as_deref().unwrap_or("");
        let shows_metadata = matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        );
        self.members_in_join_order()
            .into_iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if shows_metadata {
                    m.metadata(protocol)
                } else {
                    Bytes::new()
                },
                assignment: if self.state == GroupState::Stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect()
    }

    /// When [`Group::tick`] next has something to do (a join timer or a session expiring), if ever.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let timer = self.join_timer.map(|t| match t {
            JoinTimer::Deadline(at) | JoinTimer::Initial { at, .. } => at,
        });
        let sessions = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && !m.awaiting_sync)
            .map(|m| m.last_heartbeat_ms + i64::from(m.session_timeout_ms));
        timer.into_iter().chain(sessions).min()
    }

    /// Starts a rebalance (if one is not under way): every waiting SyncGroup gets REBALANCE_IN_PROGRESS.
    fn prepare_rebalance(&mut self, now: i64, done: &mut Vec<Completion>) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        for (id, m) in &mut self.members {
            if std::mem::replace(&mut m.awaiting_sync, false) {
                done.push(Completion::Sync {
                    member_id: id.clone(),
                    result: Err(ResponseError::RebalanceInProgress),
                });
            }
        }
        let rebalance_timeout = i64::from(
            self.members
                .values()
                .map(|m| m.rebalance_timeout_ms)
                .max()
                .unwrap_or(0),
        );
        self.join_timer = Some(if self.state == GroupState::Empty {
            let delay = i64::from(self.config.initial_rebalance_delay_ms).min(rebalance_timeout);
            JoinTimer::Initial {
                at: now + delay,
                remaining_ms: (rebalance_timeout - delay).max(0),
                new_member: false,
            }
        } else {
            JoinTimer::Deadline(now + rebalance_timeout)
        });
        self.state = GroupState::PreparingRebalance;
    }

    /// Ends the join phase when it can: everyone rejoined (not during an initial delay), or its timer is due.
    fn try_complete_join(&mut self, now: i64) -> Vec<Completion> {
        if self.state != GroupState::PreparingRebalance {
            return Vec::new();
        }
        match self.join_timer {
            Some(JoinTimer::Initial {
                at,
                remaining_ms,
                new_member,
            }) => {
                if now < at {
                    return Vec::new();
                }
                if new_member && remaining_ms > 0 {
                    let delay = i64::from(self.config.initial_rebalance_delay_ms).min(remaining_ms);
                    self.join_timer = Some(JoinTimer::Initial {
                        at: at + delay,
                        remaining_ms: remaining_ms - delay,
                        new_member: false,
                    });
                    return self.try_complete_join(now);
                }
            }
            Some(JoinTimer::Deadline(at)) => {
                let all_joined =
                    self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join);
                if !all_joined && now < at {
                    return Vec::new();
                }
            }
            None => {}
        }
        self.complete_join()
    }

    fn complete_join(&mut self) -> Vec<Completion> {
        self.join_timer = None;
        self.pending.clear();
        // Members that did not rejoin are removed.
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.awaiting_join)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return Vec::new();
        }
        let order: Vec<String> = self
            .members_in_join_order()
            .into_iter()
            .map(|(id, _)| id.clone())
            .collect();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = order.first().cloned();
        }
        self.protocol = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let mut done = Vec::new();
        for id in order {
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = false;
                m.awaiting_sync = false;
                m.assignment = Bytes::new();
            }
            done.push(Completion::Join {
                result: Ok(self.join_response(&id)),
                member_id: id,
            });
        }
        done
    }

    fn members_in_join_order(&self) -> Vec<(&String, &Member)> {
        let mut members: Vec<_> = self.members.iter().collect();
        members.sort_by_key(|(_, m)| m.joined_seq);
        members
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, each member votes for the first of
    /// its own list; the most votes win, ties going to the earliest in the leader's list.
    fn select_protocol(&self) -> Option<String> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l))?;
        let candidates: Vec<&String> = leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|c| votes.get(c) == Some(&best))
            .cloned()
    }

    fn join_response(&self, member_id: &str) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members_in_join_order()
                    .into_iter()
                    .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let m = self.members.remove(id)?;
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        Some(m)
    }

    /// After members went: a rebalance, or (in a join phase) perhaps its end.
    fn after_removal(&mut self, now: i64, done: &mut Vec<Completion>) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, done);
            }
            _ => {}
        }
        done.extend(self.try_complete_join(now));
    }

    /// Time passes: sessions expire (members not waiting in a join or sync phase), pending member ids that never
    /// joined lapse, and a join phase ends when its timer is due.
    pub fn tick(&mut self, now: i64) -> Vec<Completion> {
        let mut done = Vec::new();
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                !m.awaiting_join
                    && !m.awaiting_sync
                    && now >= m.last_heartbeat_ms + i64::from(m.session_timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let lapsed: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, since)| now >= **since + i64::from(self.config.max_session_timeout_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            self.pending.remove(&id);
        }
        if !expired.is_empty() {
            for id in &expired {
                self.remove_member(id);
            }
            self.after_removal(now, &mut done);
        }
        done.extend(self.try_complete_join(now));
        done
    }
}
