//! What the group coordinator is asked and answers: its settings, the group states, JoinGroup's request and
//! answers, SyncGroup's answers, held answers coming due, committed offsets, member descriptions.

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
    pub(super) fn new(error: ResponseError) -> JoinError {
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
