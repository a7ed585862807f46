//! Kafka 3.9's classic consumer-group protocol, as the group coordinator runs it: one [`Group`]'s membership,
//! generations, rebalances and committed offsets, with no wire and no log. The coordinator API handlers (to come)
//! decode a request, call the matching method with the cluster clock's time, and answer; answers a rebalance holds
//! back (JoinGroup until the join phase ends, SyncGroup until the leader's assignment arrives) come out of
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

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

/// The broker settings a group coordinator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (Kafka: 6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (Kafka: 1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (Kafka: 3000).
    pub initial_rebalance_delay_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
        }
    }
}

/// A group's state (Kafka's `GroupState` of the classic protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, as the coordinator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Empty on a member's first join.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a dynamic member's first join gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub generation_id: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member (id, instance id, metadata of the chosen protocol), in join order; empty for
    /// the others.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What a JoinGroup gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Answered now.
    Done(Result<JoinResponse, JoinError>),
    /// Held until the join phase ends: the answer comes as a [`Completion::Join`].
    Waiting,
}

/// A JoinGroup error, with the member id to return when it has one (MEMBER_ID_REQUIRED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    pub error: ResponseError,
    pub member_id: String,
}

impl JoinError {
    fn new(error: ResponseError) -> JoinError {
        JoinError {
            error,
            member_id: String::new(),
        }
    }
}

/// What a SyncGroup gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Answered now: the member's assignment, or the error.
    Done(Result<Bytes, ResponseError>),
    /// Held until the leader's assignment: the answer comes as a [`Completion::Sync`].
    Waiting,
}

/// An answer a rebalance held back, now due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Join {
        member_id: String,
        result: Result<JoinResponse, JoinError>,
    },
    Sync {
        member_id: String,
        result: Result<Bytes, ResponseError>,
    },
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The metadata of the group's protocol (empty unless Stable or CompletingRebalance).
    pub metadata: Bytes,
    /// The assignment (empty unless Stable).
    pub assignment: Bytes,
}

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

    /// Checks a member's identity for Heartbeat, SyncGroup and OffsetCommit.
    fn check_member(
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
