//! What admin tools ask a group coordinator: ListGroups (the groups this broker coordinates, filtered by state on
//! v4+ and by type on v5 — every group here is "classic"), DescribeGroups (an unknown group is Dead, no error, as
//! in Kafka) and DeleteGroups (only Empty groups).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};

use super::{str_bytes, BrokerContext};

pub(super) fn list(broker: &BrokerContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let groups = broker
        .core
        .coordinator
        .list(&broker.core, broker.id)
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.name().to_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group)))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_group_state(str_bytes(g.state.name()))
                .with_group_type(str_bytes("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(super) fn describe(
    broker: &BrokerContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                // Not requested, or not computed: Kafka's "unknown" marker.
                .with_authorized_operations(i32::MIN);
            match broker
                .core
                .coordinator
                .describe(&broker.core, broker.id, id.0.as_str())
            {
                Err(error) => described
                    .with_error_code(error.code())
                    .with_group_state(str_bytes("")),
                Ok(view) => described
                    .with_group_state(str_bytes(view.state.name()))
                    .with_protocol_type(str_bytes(view.protocol_type))
                    .with_protocol_data(str_bytes(view.protocol))
                    .with_members(
                        view.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.group_instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) fn delete(broker: &BrokerContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .iter()
        .map(|id| {
            let result =
                broker
                    .core
                    .coordinator
                    .delete_group(&broker.core, broker.id, id.0.as_str());
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(result.err().map_or(0, |e| e.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
