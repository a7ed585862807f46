//! A member's requests to its group coordinator: JoinGroup, SyncGroup, Heartbeat, LeaveGroup. A JoinGroup or
//! SyncGroup the rebalance holds back keeps its connection waiting (requests on one connection are answered in
//! order, as Kafka does) until the coordinator completes it; a coordinator that moves meanwhile answers
//! NOT_COORDINATOR. The semantics are in `broker::group`, the placement in `broker::coordinator`.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::{str_bytes, BrokerContext};
use crate::broker::coordinator::{JoinWait, SyncWait};
use crate::broker::group::{JoinError, JoinRequest, JoinResponse};

/// Who sent a request: the client id of its header and the peer address.
pub(super) struct Client<'a> {
    pub id: &'a str,
    pub host: &'a str,
}

pub(super) async fn join(
    broker: &BrokerContext,
    request: JoinGroupRequest,
    version: i16,
    client: Client<'_>,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client.id.to_string(),
        client_host: client.host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let result = match broker
        .core
        .coordinator
        .join(&broker.core, broker.id, &group_id, join)
    {
        Err(error) => Err(JoinError {
            error,
            member_id: request.member_id.to_string(),
        }),
        Ok(JoinWait::Done(result)) => result,
        Ok(JoinWait::Later(answer)) => answer.await.unwrap_or_else(|_| {
            Err(JoinError {
                error: ResponseError::NotCoordinator,
                member_id: request.member_id.to_string(),
            })
        }),
    };
    join_response(result, version)
}

fn join_response(result: Result<JoinResponse, JoinError>, version: i16) -> JoinGroupResponse {
    match result {
        Ok(r) => JoinGroupResponse::default()
            .with_generation_id(r.generation_id)
            .with_protocol_type((version >= 7).then(|| str_bytes(r.protocol_type)))
            .with_protocol_name(Some(str_bytes(r.protocol_name)))
            .with_leader(str_bytes(r.leader))
            .with_member_id(str_bytes(r.member_id))
            .with_members(
                r.members
                    .into_iter()
                    .map(|(id, instance, metadata)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(id))
                            .with_group_instance_id(instance.map(str_bytes))
                            .with_metadata(metadata)
                    })
                    .collect(),
            ),
        Err(e) => JoinGroupResponse::default()
            .with_error_code(e.error.code())
            .with_generation_id(-1)
            .with_protocol_name(if version >= 7 {
                None
            } else {
                Some(Default::default())
            })
            .with_member_id(str_bytes(e.member_id)),
    }
}

pub(super) async fn sync(
    broker: &BrokerContext,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let member = request.member_id.to_string();
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let core = &broker.core;
    // v5 names the protocol the member thinks it is syncing; a mismatch is INCONSISTENT_GROUP_PROTOCOL.
    let consistent = version < 5 || {
        match core.coordinator.describe(core, broker.id, &group_id) {
            Ok(view) => {
                request
                    .protocol_type
                    .as_ref()
                    .is_none_or(|t| t.as_str() == view.protocol_type)
                    && request
                        .protocol_name
                        .as_ref()
                        .is_none_or(|p| p.as_str() == view.protocol)
            }
            Err(_) => true,
        }
    };
    let result = if !consistent {
        Err(ResponseError::InconsistentGroupProtocol)
    } else {
        let assignments = request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect();
        match core.coordinator.sync(
            core,
            broker.id,
            &group_id,
            (&member, instance.as_deref()),
            request.generation_id,
            assignments,
        ) {
            Err(error) => Err(error),
            Ok(SyncWait::Done(result)) => result,
            Ok(SyncWait::Later(answer)) => {
                answer.await.unwrap_or(Err(ResponseError::NotCoordinator))
            }
        }
    };
    let mut response = SyncGroupResponse::default();
    match result {
        Ok(assignment) => {
            response.assignment = assignment;
            if version >= 5 {
                if let Ok(view) = core.coordinator.describe(core, broker.id, &group_id) {
                    response.protocol_type = Some(str_bytes(view.protocol_type));
                    response.protocol_name = Some(str_bytes(view.protocol));
                }
            }
        }
        Err(error) => {
            response.error_code = error.code();
            response.assignment = Bytes::new();
        }
    }
    response
}

pub(super) fn heartbeat(broker: &BrokerContext, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let member = request.member_id.to_string();
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let result = broker.core.coordinator.heartbeat(
        &broker.core,
        broker.id,
        &group_id,
        (&member, instance.as_deref()),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}

pub(super) fn leave(
    broker: &BrokerContext,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match broker
        .core
        .coordinator
        .leave(&broker.core, broker.id, &group_id, &leaving)
    {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(results) if version >= 3 => LeaveGroupResponse::default().with_members(
            leaving
                .into_iter()
                .zip(results)
                .map(|((member, instance), result)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_error_code(result.err().map_or(0, |e| e.code()))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default().with_error_code(
            results
                .into_iter()
                .find_map(Result::err)
                .map_or(0, |e| e.code()),
        ),
    }
}
