//! Admin requests against the local brokers on the harness's own wire client: Metadata (who is alive, who
//! controls, who leads and follows each partition), CreateTopics with topic configs, which rskafka's controller
//! client cannot send (it takes no configs), DescribeConfigs of a topic, and ListOffsets of one replica's own log
//! (its log start and end offsets, for [`super::ClusterWatch`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DescribeConfigsRequest, FindCoordinatorRequest,
    ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::error::LocalError;
use crate::client::wire::BrokerConnection;
use crate::scenario::TopicPlan;

const CLIENT_ID: &str = "etl-harness-admin";
/// Per request; a paused broker never answers, so every call is bounded.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Kafka error codes the harness reacts to.
const NOT_CONTROLLER: i16 = 41;
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// DescribeConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;

/// One Metadata answer: the live brokers, the controller and the partitions of the asked topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Broker id → advertised port (on the topology: its proxy's) of every broker registered (alive) in the
    /// cluster.
    pub brokers: BTreeMap<i32, u16>,
    pub controller: Option<i32>,
    /// Topic → its partitions by index; topics the cluster does not know are absent.
    pub topics: BTreeMap<String, Vec<PartitionMetadata>>,
}

/// Leader and replicas of one partition, as the answering broker knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    /// `None` while the partition has no leader (all its replicas down).
    pub leader: Option<i32>,
    /// The leader epoch the answering broker knows (Metadata v7+; -1 from older versions). The controller bumps it
    /// at every election, and in ZooKeeper mode also when it removes a dead follower from the ISR.
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl ClusterMetadata {
    /// Partitions (topic, partition) led by `broker`.
    pub fn led_by(&self, broker: i32) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .filter(|p| p.leader == Some(broker))
                    .map(|p| (topic.clone(), p.partition))
            })
            .collect()
    }
}

/// Asks the first of `bootstraps` that answers. `topics`: `None` for every topic, `Some(names)` for those.
pub(crate) async fn metadata(
    bootstraps: &[String],
    topics: Option<&[String]>,
) -> Result<ClusterMetadata, String> {
    let mut failures = Vec::new();
    for bootstrap in bootstraps {
        match metadata_from(bootstrap, topics).await {
            Ok(answer) => return Ok(answer),
            Err(reason) => failures.push(format!("{bootstrap}: {reason}")),
        }
    }
    Err(failures.join("; "))
}

async fn metadata_from(
    bootstrap: &str,
    topics: Option<&[String]>,
) -> Result<ClusterMetadata, String> {
    let connection = BrokerConnection::connect(bootstrap, CLIENT_ID, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    metadata_on(&connection, topics, REQUEST_TIMEOUT).await
}

/// Metadata on an open connection, waiting at most `timeout` for the answer.
pub(crate) async fn metadata_on(
    connection: &BrokerConnection,
    topics: Option<&[String]>,
    timeout: Duration,
) -> Result<ClusterMetadata, String> {
    let version = connection
        .version::<MetadataRequest>((1, 12))
        .ok_or("the broker speaks no Metadata version from 1 to 12")?;
    let request = MetadataRequest::default()
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    let answer = connection
        .call(&request, version, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let brokers = answer
        .brokers
        .iter()
        .map(|broker| (broker.node_id.0, broker.port as u16))
        .collect();
    let topics = answer
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0)
        .filter_map(|topic| {
            let name = topic.name.as_ref()?.0.to_string();
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|id| id.0).collect(),
                    isr: p.isr_nodes.iter().map(|id| id.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            Some((name, partitions))
        })
        .collect();
    Ok(ClusterMetadata {
        brokers,
        controller: (answer.controller_id.0 >= 0).then_some(answer.controller_id.0),
        topics,
    })
}

/// Creates `plans` with their partitions, replication factor and configs, sending CreateTopics to the
/// controller (asked again when the controller moves), then waits until every partition has a leader.
pub(crate) async fn create_topics(
    bootstraps: &[String],
    plans: &[TopicPlan],
    timeout: Duration,
) -> Result<(), LocalError> {
    let started = Instant::now();
    let bootstrap_list = bootstraps.join(",");
    let failed = |topic: &str, reason: String| LocalError::TopicCreation {
        topic: topic.to_owned(),
        bootstrap: bootstrap_list.clone(),
        reason,
    };
    let mut pending: Vec<&TopicPlan> = plans.iter().collect();
    let mut last_reason = String::from("no answer yet");
    let mut attempt = 0;
    while let Some(first_pending) = pending.first() {
        if started.elapsed() > timeout {
            return Err(failed(
                &first_pending.name,
                format!("not created within {timeout:?}; last answer: {last_reason}"),
            ));
        }
        match send_create_topics(bootstraps, &pending).await {
            Ok(results) => {
                let mut retry = Vec::new();
                for plan in pending {
                    match results.get(&plan.name) {
                        Some((0, _)) => {}
                        // An earlier attempt whose answer was lost went through.
                        Some((TOPIC_ALREADY_EXISTS, _)) if attempt > 0 => {}
                        Some((NOT_CONTROLLER, message)) => {
                            last_reason = message.clone();
                            retry.push(plan);
                        }
                        Some((code, message)) => {
                            return Err(failed(
                                &plan.name,
                                format!("error code {code}: {message}"),
                            ));
                        }
                        None => {
                            return Err(failed(
                                &plan.name,
                                "the controller's answer does not mention it".into(),
                            ))
                        }
                    }
                }
                pending = retry;
            }
            Err(reason) => last_reason = reason,
        }
        attempt += 1;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let names: Vec<String> = plans.iter().map(|plan| plan.name.clone()).collect();
    loop {
        let leaderless = match metadata(bootstraps, Some(&names)).await {
            Ok(answer) => names
                .iter()
                .filter(|name| {
                    answer.topics.get(*name).is_none_or(|parts| {
                        parts.is_empty() || parts.iter().any(|p| p.leader.is_none())
                    })
                })
                .cloned()
                .collect::<Vec<_>>(),
            Err(reason) => {
                last_reason = reason;
                names.clone()
            }
        };
        if leaderless.is_empty() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(failed(
                &leaderless[0],
                format!(
                    "created, but {} still without a leader after {timeout:?} ({last_reason})",
                    leaderless.join(", ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Topic → (error code, error message) from the controller.
async fn send_create_topics(
    bootstraps: &[String],
    plans: &[&TopicPlan],
) -> Result<BTreeMap<String, (i16, String)>, String> {
    let cluster = metadata(bootstraps, Some(&[])).await?;
    let controller = cluster.controller.ok_or("no controller yet")?;
    let port = cluster
        .brokers
        .get(&controller)
        .ok_or_else(|| format!("controller {controller} is not among the live brokers"))?;
    let addr = format!("127.0.0.1:{port}");
    let connection = BrokerConnection::connect(&addr, CLIENT_ID, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let version = connection
        .version::<CreateTopicsRequest>((2, 7))
        .ok_or("the controller speaks no CreateTopics version from 2 to 7")?;
    let topics = plans
        .iter()
        .map(|plan| {
            CreatableTopic::default()
                .with_name(topic_name(&plan.name))
                .with_num_partitions(plan.settings.partitions as i32)
                .with_replication_factor(plan.settings.replication_factor as i16)
                .with_configs(
                    plan.settings
                        .kafka_configs()
                        .into_iter()
                        .map(|(name, value)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_static_str(name))
                                .with_value(Some(StrBytes::from_string(value)))
                        })
                        .collect(),
                )
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32);
    let answer = connection
        .call(&request, version, REQUEST_TIMEOUT * 2)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer
        .topics
        .into_iter()
        .map(|result| {
            let message = result
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            (result.name.0.to_string(), (result.error_code, message))
        })
        .collect())
}

/// The effective configs (name → value) of `topic`, from the first of `bootstraps` that answers.
pub(crate) async fn topic_configs(
    bootstraps: &[String],
    topic: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut failures = Vec::new();
    for bootstrap in bootstraps {
        match topic_configs_from(bootstrap, topic).await {
            Ok(configs) => return Ok(configs),
            Err(reason) => failures.push(format!("{bootstrap}: {reason}")),
        }
    }
    Err(failures.join("; "))
}

async fn topic_configs_from(
    bootstrap: &str,
    topic: &str,
) -> Result<BTreeMap<String, String>, String> {
    let connection = BrokerConnection::connect(bootstrap, CLIENT_ID, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let version = connection
        .version::<DescribeConfigsRequest>((1, 4))
        .ok_or("the broker speaks no DescribeConfigs version from 1 to 4")?;
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))]);
    let answer = connection
        .call(&request, version, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let result = answer
        .results
        .into_iter()
        .next()
        .ok_or("DescribeConfigs answered no resource")?;
    if result.error_code != 0 {
        return Err(format!(
            "error code {}: {}",
            result.error_code,
            result
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default()
        ));
    }
    Ok(result
        .configs
        .into_iter()
        .filter_map(|config| Some((config.name.to_string(), config.value?.to_string())))
        .collect())
}

/// The broker coordinating consumer group `group` (FindCoordinator, key type 0), asking each bootstrap in turn.
pub(crate) async fn find_coordinator(bootstraps: &[String], group: &str) -> Result<i32, String> {
    let mut failures = Vec::new();
    for bootstrap in bootstraps {
        match find_coordinator_from(bootstrap, group).await {
            Ok(id) => return Ok(id),
            Err(reason) => failures.push(format!("{bootstrap}: {reason}")),
        }
    }
    Err(format!(
        "FindCoordinator for group {group}: {}",
        failures.join("; ")
    ))
}

async fn find_coordinator_from(bootstrap: &str, group: &str) -> Result<i32, String> {
    let connection = BrokerConnection::connect(bootstrap, CLIENT_ID, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let version = connection
        .version::<FindCoordinatorRequest>((1, 3))
        .ok_or("the broker speaks no FindCoordinator version from 1 to 3")?;
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_owned()))
        .with_key_type(0);
    let answer = connection
        .call(&request, version, REQUEST_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if answer.error_code != 0 {
        return Err(format!(
            "error code {}: {}",
            answer.error_code,
            answer
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default()
        ));
    }
    Ok(answer.node_id.0)
}

/// ListOffsets `timestamp` for the log start offset.
pub(crate) const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets `timestamp` for the log end offset (of a debugging replica's request: see [`replica_offsets`]).
pub(crate) const LATEST_TIMESTAMP: i64 = -1;
/// ListOffsets `replica_id` of a debugging client: the broker answers from its own replica, leader or follower,
/// and, the request not being a consumer's, "latest" is the log end offset rather than the high watermark.
const DEBUGGING_REPLICA_ID: i32 = -2;

/// The offsets at `timestamp` ([`EARLIEST_TIMESTAMP`]: log start, [`LATEST_TIMESTAMP`]: log end) of the
/// replicas of `partitions` that the broker on `connection` holds, leader or follower. Partitions it does not
/// hold (or answers with an error) are absent.
pub(crate) async fn replica_offsets(
    connection: &BrokerConnection,
    partitions: &[(String, i32)],
    timestamp: i64,
    timeout: Duration,
) -> Result<BTreeMap<(String, i32), i64>, String> {
    let version = connection
        .version::<ListOffsetsRequest>((1, 8))
        .ok_or("the broker speaks no ListOffsets version from 1 to 8")?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(DEBUGGING_REPLICA_ID))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, indexes)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            indexes
                                .into_iter()
                                .map(|index| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(index)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let answer = connection
        .call(&request, version, timeout)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .filter(|p| p.error_code == 0 && p.offset >= 0)
                .map(|p| ((topic.name.0.to_string(), p.partition_index), p.offset))
        })
        .collect())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}
