//! The one place a [`Scenario`] becomes each component's own config: the harness producer's, the embedded
//! capture's and the pipeline's. The components take their own types and never read a scenario.

use std::time::Duration;

use crate::cdc::CaptureConfig;
use crate::client::{self, ProducerConfig};
use crate::pipeline::{CommandConfig, GroupConfig, PipelineConfig};
use crate::scenario::{self, Assignment, PipelineKind, Scenario};

/// The scenario's `[producer]` settings as the harness producer's config; what a scenario does not set keeps
/// [`ProducerConfig::default`].
pub(crate) fn producer(scenario: &Scenario) -> ProducerConfig {
    let p = &scenario.producer;
    ProducerConfig {
        acks: acks(p.acks),
        linger: Duration::from_millis(p.linger.0),
        batch_size: usize::try_from(p.batch_size.0).unwrap_or(0),
        retries: p.retries,
        max_in_flight: p.max_in_flight as usize,
        idempotence: p.idempotence,
        compression: compression(p.compression),
        delivery_timeout: Duration::from_millis(p.delivery_timeout.0),
        ..ProducerConfig::default()
    }
}

fn acks(acks: scenario::Acks) -> client::Acks {
    match acks {
        scenario::Acks::None => client::Acks::None,
        scenario::Acks::Leader => client::Acks::Leader,
        scenario::Acks::All => client::Acks::All,
    }
}

fn compression(compression: scenario::Compression) -> client::Compression {
    match compression {
        scenario::Compression::None => client::Compression::None,
        scenario::Compression::Gzip => client::Compression::Gzip,
        scenario::Compression::Snappy => client::Compression::Snappy,
        scenario::Compression::Lz4 => client::Compression::Lz4,
        scenario::Compression::Zstd => client::Compression::Zstd,
    }
}

/// The capture a scenario describes, producing to `bootstrap`. Deterministic mode sends one request at a time
/// without linger: a batch holds what one transaction put on a partition, whatever the machine's speed, and
/// retries cannot reorder.
pub(crate) fn capture(scenario: &Scenario, bootstrap: impl Into<String>) -> CaptureConfig {
    let mut producer = ProducerConfig {
        client_id: "connector-producer-openmrs-connector-0".into(),
        ..producer(scenario)
    };
    if scenario.topology.deterministic {
        producer.max_in_flight = 1;
        producer.linger = Duration::ZERO;
    }
    CaptureConfig {
        connector: scenario.capture.connector,
        prefix: scenario.topics.prefix.clone(),
        database: scenario.topics.database.clone(),
        include_schema_changes: scenario.capture.include_schema_changes,
        bootstrap: bootstrap.into(),
        producer,
    }
}

/// The scenario's consumers and change topics (one per modeled table).
pub(crate) fn pipeline(scenario: &Scenario, bootstrap: impl Into<String>) -> PipelineConfig {
    PipelineConfig {
        consumers: scenario.pipeline.consumers,
        topics: scenario
            .topic_plans()
            .into_iter()
            .map(|t| (t.name, t.settings.partitions as i32))
            .collect(),
        bootstrap: bootstrap.into(),
        group: (scenario.pipeline.assignment == Assignment::Group
            && scenario.pipeline.kind == PipelineKind::BuiltIn)
            .then(|| group(scenario)),
        command: None,
    }
}

/// A command ETL's settings: the scenario's `[pipeline.command]`, the run's topics and group, the server its
/// sink database goes on, where its logs go.
pub(crate) fn command(
    scenario: &Scenario,
    pipeline: &PipelineConfig,
    server_url: &str,
    log_dir: std::path::PathBuf,
) -> Option<CommandConfig> {
    let etl = scenario.pipeline.command.clone()?;
    Some(CommandConfig {
        etl,
        instances: scenario.pipeline.consumers,
        group_id: group_id(scenario),
        bootstrap: pipeline.bootstrap.clone(),
        topics: pipeline.topics.clone(),
        seed: scenario.seed,
        server_url: server_url.to_owned(),
        log_dir,
    })
}

fn group_id(scenario: &Scenario) -> String {
    format!("etl-harness-{}", scenario.topics.prefix)
}

/// Group mode's settings. The group is named after the run's topic prefix, which a reused topology renames
/// per run, so a run never inherits another's committed offsets.
fn group(scenario: &Scenario) -> GroupConfig {
    let p = &scenario.pipeline;
    GroupConfig {
        group_id: group_id(scenario),
        commit: p.commit,
        assignor: p.assignor,
        session_timeout: p.session_timeout.as_duration(),
        max_poll_interval: p.max_poll_interval.as_duration(),
        auto_commit_interval: p.auto_commit_interval.as_duration(),
        group_instance_id: p.group_instance_id.clone(),
        join_later: p.join_later.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_without_producer_settings_gives_the_producer_defaults() {
        // The Java client's defaults, but Kafka Connect's delivery timeout (a source task's producer never expires
        // a batch).
        let scenario = Scenario::parse("name = \"defaults\"\n", "defaults.toml").expect("valid");
        let expected = ProducerConfig {
            delivery_timeout: std::time::Duration::from_millis(i32::MAX as u64),
            ..ProducerConfig::default()
        };
        assert_eq!(
            format!("{:?}", producer(&scenario)),
            format!("{:?}", expected)
        );
    }

    #[test]
    fn every_acks_and_compression_maps_to_the_same_name() {
        for a in [
            scenario::Acks::None,
            scenario::Acks::Leader,
            scenario::Acks::All,
        ] {
            assert_eq!(acks(a).wire(), a.wire());
        }
        for c in [
            scenario::Compression::None,
            scenario::Compression::Gzip,
            scenario::Compression::Snappy,
            scenario::Compression::Lz4,
            scenario::Compression::Zstd,
        ] {
            assert_eq!(format!("{:?}", compression(c)), format!("{c:?}"));
        }
    }
}
