//! The topics Debezium writes besides a scenario's planned change topics, created with the topology's.

use super::kafka;
use crate::scenario::{Scenario, TopicPlan, TopicSettings};

/// The topics Debezium writes besides the planned change topics (see [`LocalTopology::create_scenario_topics`]),
/// with what an auto-created topic gets from the brokers' settings: 1 partition (`num.partitions`), the brokers'
/// `default.replication.factor`, and Kafka's defaults for the rest (the brokers set none of those).
pub(super) fn side_topic_plans(scenario: &Scenario, brokers: u32) -> Vec<TopicPlan> {
    use crate::model::schema;
    use crate::scenario::{Bytes, CleanupPolicy, Millis};
    let settings = TopicSettings {
        partitions: 1,
        replication_factor: kafka::default_replication_factor(brokers),
        min_insync_replicas: 1,
        retention_ms: Millis(7 * 24 * 3600 * 1000),
        retention_bytes: Bytes(-1),
        segment_bytes: Bytes(1 << 30),
        cleanup_policy: CleanupPolicy::Delete,
        unclean_leader_election: false,
    };
    let prefix = &scenario.topics.prefix;
    let tables = schema::ALL_TABLES
        .iter()
        .filter(|t| !schema::MODELED_TABLES.iter().any(|m| m.name == t.name))
        .map(|t| (t.name, scenario.topic_name(t.name)));
    let debezium = [
        ("schema changes", prefix.clone()),
        ("heartbeats", format!("__debezium-heartbeat.{prefix}")),
    ];
    tables
        .chain(debezium)
        .map(|(table, name)| TopicPlan {
            table,
            name,
            settings: settings.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_topics_are_what_debezium_writes_beside_the_planned_ones() {
        let scenario = Scenario::parse("name = \"side\"\n", "side.toml").expect("valid");
        let planned: Vec<String> = scenario.topic_plans().into_iter().map(|p| p.name).collect();
        let side = side_topic_plans(&scenario, 3);
        let names: Vec<&str> = side.iter().map(|p| p.name.as_str()).collect();
        for expected in [
            "dbserver1.openmrs.care_setting",
            "dbserver1.openmrs.users",
            "dbserver1",
            "__debezium-heartbeat.dbserver1",
        ] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        assert!(names.iter().all(|n| !planned.iter().any(|p| p == n)));
        assert!(side
            .iter()
            .all(|p| (p.settings.partitions, p.settings.replication_factor) == (1, 3)));
        assert_eq!(
            side_topic_plans(&scenario, 1)[0]
                .settings
                .replication_factor,
            1
        );
    }
}
