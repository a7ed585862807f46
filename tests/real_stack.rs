//! The real stack end to end: MariaDB 10.11 → Debezium (MariaDB connector) on Kafka Connect → Kafka 3.9.1, all
//! as local processes. Row changes from `fixtures/debezium/fixture-rows.sql` (snapshot rows, then inserts,
//! updates and deletes of person, patient, encounter, obs and orders) must come out of Kafka as the checked-in
//! records in `fixtures/debezium/mariadb/` (keys byte-identical, values equal after masking volatile fields), and
//! the broker must answer ApiVersions as in `fixtures/kafka/api-versions-3.9.1.json`.
//!
//! Without `mariadbd`, `java` or `mvn` the test prints why and passes as skipped, unless
//! `ETL_HARNESS_REQUIRE_REAL=1` (CI) makes that a failure. `ETL_HARNESS_UPDATE_FIXTURES=1` rewrites the fixtures
//! from this run instead of comparing.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use mysql_async::prelude::Queryable;
use openmrs_etl_harness::topology::local::prerequisites::missing_programs;
use openmrs_etl_harness::topology::local::{
    ConnectorFlavour, DebeziumConnector, JvmComponents, LocalTopology, LocalTopologyOptions,
};
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::debezium_fixture::{fixture_path, load_fixtures, CapturedRecord, RecordFixture};

const REQUIRE_REAL_ENV: &str = "ETL_HARNESS_REQUIRE_REAL";
const UPDATE_FIXTURES_ENV: &str = "ETL_HARNESS_UPDATE_FIXTURES";
/// Whole test, provisioning included (a cold Maven resolve is part of it).
const OVERALL_TIMEOUT: Duration = Duration::from_secs(900);
const CAPTURED_TABLES: [&str; 5] = ["person", "patient", "encounter", "obs", "orders"];
const API_VERSIONS_REQUEST_VERSION: i16 = 3;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| value == "1" || value.eq_ignore_ascii_case("true"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_on_mariadb_matches_the_checked_in_fixtures() {
    let missing = missing_programs();
    if !missing.is_empty() {
        let reason = missing
            .iter()
            .map(|program| {
                format!(
                    "{} not found; install with {}",
                    program.name, program.install
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        if env_flag(REQUIRE_REAL_ENV) {
            panic!("{REQUIRE_REAL_ENV}=1 requires the real stack, but {reason} (or run .ci/install-real-stack)");
        }
        println!("skipped: {reason}");
        return;
    }

    let schema_path = repo_path("fixtures/openmrs-schema.sql");
    let schema = std::fs::read_to_string(&schema_path)
        .unwrap_or_else(|e| panic!("reading the schema fixture {}: {e}", schema_path.display()));
    let rows_path = repo_path("fixtures/debezium/fixture-rows.sql");
    let rows = FixtureRows::parse(
        &std::fs::read_to_string(&rows_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", rows_path.display())),
    );
    let options = LocalTopologyOptions::new(schema);

    let run = tokio::time::timeout(OVERALL_TIMEOUT, async {
        let topology = LocalTopology::start(&options).await?;
        let outcome = exercise(&topology, &rows).await;
        Ok::<_, anyhow::Error>((topology, outcome))
    })
    .await;
    // Any early return or panic below drops the topology, which kills every process.
    let (topology, outcome) = match run {
        Ok(Ok(started)) => started,
        Ok(Err(error)) => panic!("the real stack did not start: {error:#}"),
        Err(_) => {
            panic!("the real stack took longer than {OVERALL_TIMEOUT:?} to start and capture")
        }
    };
    let run_dir = topology.run_dir().to_path_buf();
    let capture = outcome.unwrap_or_else(|error| {
        panic!(
            "{error:#}\nconfigs and logs of this run: {}",
            run_dir.display()
        )
    });

    let problems = check_behaviour(&capture);
    assert!(
        problems.is_empty(),
        "the captured events are not what Debezium should send:\n{}\nconfigs and logs: {}",
        problems.join("\n"),
        run_dir.display()
    );

    let fixture_dir = repo_path("fixtures/debezium/mariadb");
    let api_versions_path = repo_path("fixtures/kafka/api-versions-3.9.1.json");
    if env_flag(UPDATE_FIXTURES_ENV) {
        write_fixtures(&fixture_dir, &capture.records).expect("writing the Debezium fixtures");
        write_json(&api_versions_path, &capture.api_versions)
            .expect("writing the ApiVersions fixture");
        println!(
            "wrote {} Debezium records to {} and {}",
            capture.records.len(),
            fixture_dir.display(),
            api_versions_path.display()
        );
    } else {
        let mut mismatches = compare_with_fixtures(&fixture_dir, &capture.records);
        let expected_api_versions: Value = std::fs::read_to_string(&api_versions_path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        if expected_api_versions != capture.api_versions {
            mismatches.push(format!(
                "ApiVersions answer differs from {}:\n  got {}",
                api_versions_path.display(),
                capture.api_versions
            ));
        }
        assert!(
            mismatches.is_empty(),
            "the real stack's output differs from the checked-in fixtures:\n{}\n\
             if the change is intended (new schema fixture, new pinned version), regenerate with\n  \
             {UPDATE_FIXTURES_ENV}=1 cargo test --test real_stack\nconfigs and logs: {}",
            mismatches.join("\n"),
            run_dir.display()
        );
    }

    topology.shutdown().await.expect("stopping the real stack");
}

/// The statements of `fixture-rows.sql`, by section.
struct FixtureRows {
    snapshot: Vec<String>,
    stream: Vec<String>,
}

impl FixtureRows {
    fn parse(text: &str) -> Self {
        let mut rows = FixtureRows {
            snapshot: Vec::new(),
            stream: Vec::new(),
        };
        let mut in_stream = false;
        let mut statement = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(section) = line.strip_prefix("-- section:") {
                in_stream = section.trim() == "stream";
                continue;
            }
            if line.is_empty() || line.starts_with("--") {
                continue;
            }
            statement.push_str(line);
            statement.push('\n');
            if line.ends_with(';') {
                let finished = std::mem::take(&mut statement);
                if in_stream {
                    rows.stream.push(finished);
                } else {
                    rows.snapshot.push(finished);
                }
            }
        }
        rows
    }
}

/// What one run captured.
struct Capture {
    records: Vec<RecordFixture>,
    api_versions: Value,
    connector: DebeziumConnector,
}

async fn exercise(topology: &LocalTopology, rows: &FixtureRows) -> anyhow::Result<Capture> {
    let mut db = mysql_async::Conn::from_url(topology.mariadb().url().as_str())
        .await
        .context("connecting to MariaDB")?;
    for statement in &rows.snapshot {
        db.query_drop(statement)
            .await
            .with_context(|| format!("snapshot row: {statement}"))?;
    }

    let connector = DebeziumConnector::seed(ConnectorFlavour::MariaDb);
    topology
        .start_connector(&connector, Duration::from_secs(180))
        .await?;
    println!(
        "connector RUNNING {:.1} s after start (Debezium {})",
        topology.uptime().as_secs_f64(),
        JvmComponents::debezium_version()
    );

    let bootstrap = topology.bootstrap_servers();
    let api_versions = api_versions(&bootstrap).await?;
    let client = ClientBuilder::new(vec![bootstrap])
        .backoff_config(BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(Duration::from_secs(30)),
        })
        .build()
        .await
        .context("connecting rskafka to the broker")?;
    let database = &topology.mariadb().database;

    // RUNNING comes before the snapshot has finished; a change committed during the snapshot may be read as
    // part of it (op r) instead of streamed (op c), so the stream starts only after the snapshot's last record.
    let table_prefix = format!("{}.{database}.", connector.topic_prefix);
    wait_for_snapshot_end(&client, &table_prefix, Duration::from_secs(120)).await?;

    for statement in &rows.stream {
        db.query_drop(statement)
            .await
            .with_context(|| format!("streamed change: {statement}"))?;
    }
    db.disconnect().await.ok();

    let mut topics: Vec<String> = CAPTURED_TABLES
        .iter()
        .map(|table| connector.table_topic(database, table))
        .collect();
    topics.push(connector.topic_prefix.clone());
    topics.push(connector.history_topic.clone());

    // The last statement deletes person 102: once its tombstone is in Kafka, wait for every topic to settle.
    let person_topic = connector.table_topic(database, "person");
    let records =
        read_until_settled(&client, &topics, &person_topic, Duration::from_secs(120)).await?;
    Ok(Capture {
        records: records
            .iter()
            .map(|record| {
                RecordFixture::from_record(
                    record,
                    &connector.topic_prefix,
                    &connector.history_topic,
                )
            })
            .collect(),
        api_versions,
        connector,
    })
}

/// Waits until some table topic ends with the snapshot's final record (`source.snapshot` = "last").
async fn wait_for_snapshot_end(
    client: &Client,
    table_prefix: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let topics = client.list_topics().await.context("listing topics")?;
        for topic in topics
            .iter()
            .filter(|topic| topic.name.starts_with(table_prefix))
        {
            let Ok(records) = read_topic(client, &topic.name).await else {
                continue;
            };
            let last_marker = records
                .last()
                .and_then(|record| record.value.as_deref())
                .and_then(|value| serde_json::from_slice::<Value>(value).ok())
                .is_some_and(|value| {
                    value.pointer("/payload/source/snapshot") == Some(&json!("last"))
                });
            if last_marker {
                return Ok(());
            }
        }
        if started.elapsed() > timeout {
            bail!("the Debezium snapshot did not finish within {timeout:?} (no record with source.snapshot=last)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn read_until_settled(
    client: &Client,
    topics: &[String],
    last_topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<CapturedRecord>> {
    let started = Instant::now();
    let mut previous_ends: Option<Vec<i64>> = None;
    loop {
        let mut ends = Vec::new();
        for topic in topics {
            ends.push(high_watermark(client, topic).await.unwrap_or(-1));
        }
        let last_seen = match read_topic(client, last_topic).await {
            Ok(records) => records.last().is_some_and(|record| record.value.is_none()),
            Err(_) => false,
        };
        if last_seen && previous_ends.as_ref() == Some(&ends) {
            let mut records = Vec::new();
            for topic in topics {
                records.extend(read_topic(client, topic).await?);
            }
            return Ok(records);
        }
        if started.elapsed() > timeout {
            bail!(
                "the change events did not arrive within {timeout:?} (topic ends {ends:?} for {topics:?}; \
                 last tombstone on {last_topic} seen: {last_seen})"
            );
        }
        previous_ends = last_seen.then_some(ends);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn high_watermark(client: &Client, topic: &str) -> anyhow::Result<i64> {
    let partition = client
        .partition_client(topic, 0, UnknownTopicHandling::Error)
        .await?;
    Ok(partition.get_offset(OffsetAt::Latest).await?)
}

/// Every record of partition 0 of `topic`, from offset 0 (nothing is deleted by retention in this test).
async fn read_topic(client: &Client, topic: &str) -> anyhow::Result<Vec<CapturedRecord>> {
    let partition = client
        .partition_client(topic, 0, UnknownTopicHandling::Error)
        .await
        .with_context(|| format!("opening {topic}"))?;
    let end = partition.get_offset(OffsetAt::Latest).await?;
    let mut offset = partition.get_offset(OffsetAt::Earliest).await?;
    let mut records = Vec::new();
    while offset < end {
        let (batch, _high_watermark) = partition
            .fetch_records(offset, 1..10_000_000, 1_000)
            .await
            .with_context(|| format!("fetching {topic} at offset {offset}"))?;
        for record in batch {
            offset = record.offset + 1;
            records.push(CapturedRecord {
                topic: topic.to_owned(),
                partition: 0,
                offset: record.offset,
                key: record.record.key,
                value: record.record.value,
                headers: record.record.headers.into_iter().collect(),
            });
        }
    }
    Ok(records)
}

/// Sends ApiVersions (v3) over a plain TCP connection and returns the broker's answer as fixture JSON.
async fn api_versions(bootstrap: &str) -> anyhow::Result<Value> {
    let version = API_VERSIONS_REQUEST_VERSION;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("openmrs-etl-harness")));
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("openmrs-etl-harness"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let mut payload = BytesMut::new();
    header.encode(
        &mut payload,
        ApiKey::ApiVersions.request_header_version(version),
    )?;
    body.encode(&mut payload, version)?;
    let mut frame = BytesMut::with_capacity(payload.len() + 4);
    frame.put_i32(i32::try_from(payload.len())?);
    frame.extend_from_slice(&payload);

    let mut stream = tokio::net::TcpStream::connect(bootstrap)
        .await
        .with_context(|| format!("connecting to {bootstrap}"))?;
    stream.write_all(&frame).await?;
    let length = usize::try_from(stream.read_i32().await?)?;
    let mut answer = vec![0u8; length];
    stream.read_exact(&mut answer).await?;
    let mut answer = bytes::Bytes::from(answer);
    let response_header = ResponseHeader::decode(
        &mut answer,
        ApiKey::ApiVersions.response_header_version(version),
    )?;
    let response = ApiVersionsResponse::decode(&mut answer, version)?;
    if answer.has_remaining() {
        bail!(
            "{} bytes left after the ApiVersions response",
            answer.remaining()
        );
    }
    if response_header.correlation_id != 7 {
        bail!(
            "correlation id {} instead of 7",
            response_header.correlation_id
        );
    }
    let apis: Vec<Value> = response
        .api_keys
        .iter()
        .map(|api| {
            let name = ApiKey::try_from(api.api_key)
                .map(|key| format!("{key:?}"))
                .unwrap_or_else(|_| inter_broker_api_name(api.api_key).into());
            json!({"api_key": api.api_key, "name": name, "min_version": api.min_version, "max_version": api.max_version})
        })
        .collect();
    let features: Vec<Value> = response
        .supported_features
        .iter()
        .map(|feature| {
            json!({"name": feature.name.to_string(), "min_version": feature.min_version, "max_version": feature.max_version})
        })
        .collect();
    Ok(json!({
        "broker": format!("Apache Kafka {} (ZooKeeper mode)", JvmComponents::kafka_version()),
        "request_version": version,
        "error_code": response.error_code,
        "api_keys": apis,
        "supported_features": features,
    }))
}

/// ZooKeeper-mode inter-broker APIs that kafka-protocol has no messages for.
fn inter_broker_api_name(api_key: i16) -> &'static str {
    match api_key {
        4 => "LeaderAndIsr",
        5 => "StopReplica",
        6 => "UpdateMetadata",
        7 => "ControlledShutdown",
        _ => "Unknown",
    }
}

/// Checks that do not depend on the fixtures, so a fixture regeneration still proves the stack behaves.
fn check_behaviour(capture: &Capture) -> Vec<String> {
    let mut kinds: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for record in &capture.records {
        kinds.entry(&record.topic).or_default().push(&record.kind);
    }
    let mut problems = Vec::new();
    for table in CAPTURED_TABLES {
        let topic = capture.connector.table_topic("openmrs", table);
        let seen = kinds.get(topic.as_str()).cloned().unwrap_or_default();
        for kind in ["r", "c", "u", "d", "tombstone"] {
            if !seen.contains(&kind) {
                problems.push(format!("{topic}: no {kind} record (saw {seen:?})"));
            }
        }
        if let Some(position) = seen.iter().position(|kind| *kind == "d") {
            if seen.get(position + 1) != Some(&"tombstone") {
                problems.push(format!(
                    "{topic}: the delete is not followed by a tombstone ({seen:?})"
                ));
            }
        }
    }
    for topic in [
        &capture.connector.topic_prefix,
        &capture.connector.history_topic,
    ] {
        if !kinds.contains_key(topic.as_str()) {
            problems.push(format!("{topic}: no record"));
        }
    }
    problems
}

fn compare_with_fixtures(dir: &Path, actual: &[RecordFixture]) -> Vec<String> {
    let expected = match load_fixtures(dir) {
        Ok(expected) if !expected.is_empty() => expected,
        Ok(_) => return vec![format!("no fixtures in {}", dir.display())],
        Err(e) => return vec![format!("reading fixtures in {}: {e}", dir.display())],
    };
    let by_topic = |records: &[RecordFixture]| {
        let mut topics: BTreeMap<String, Vec<RecordFixture>> = BTreeMap::new();
        for record in records {
            topics
                .entry(record.topic.clone())
                .or_default()
                .push(record.clone());
        }
        topics
    };
    let expected = by_topic(&expected);
    let actual = by_topic(actual);
    let mut mismatches = Vec::new();
    for (topic, expected_records) in &expected {
        let actual_records = actual.get(topic).map(Vec::as_slice).unwrap_or_default();
        if expected_records.len() != actual_records.len() {
            mismatches.push(format!(
                "{topic}: expected {} records, got {} (kinds expected {:?}, got {:?})",
                expected_records.len(),
                actual_records.len(),
                expected_records
                    .iter()
                    .map(|r| r.kind.as_str())
                    .collect::<Vec<_>>(),
                actual_records
                    .iter()
                    .map(|r| r.kind.as_str())
                    .collect::<Vec<_>>()
            ));
            continue;
        }
        for (expected_record, actual_record) in expected_records.iter().zip(actual_records) {
            if let Some(why) = expected_record.mismatch(actual_record) {
                mismatches.push(format!(
                    "{}: {why}",
                    fixture_path(dir, expected_record).display()
                ));
            }
        }
    }
    for topic in actual.keys().filter(|topic| !expected.contains_key(*topic)) {
        mismatches.push(format!(
            "{topic}: records captured but no fixtures checked in"
        ));
    }
    mismatches
}

fn write_fixtures(dir: &Path, records: &[RecordFixture]) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    for record in records {
        let path = fixture_path(dir, record);
        write_json(&path, &serde_json::to_value(record)?)?;
    }
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text)
}
