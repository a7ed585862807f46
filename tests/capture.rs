//! The embedded capture against real Debezium output: the rows of `fixtures/debezium/fixture-rows.sql` go through
//! a MemorySource and the capture into an embedded broker, every topic is read back with rskafka and compared with
//! `fixtures/debezium/mariadb/` as its README says (counts and kinds in offset order, keys byte-identical, headers
//! identical, values equal after masking volatile fields). Then the MySQL flavour's source block, and a kill and
//! restart mid-stream that must produce every change at least once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use openmrs_etl_harness::broker::{Cluster, NewTopic};
use openmrs_etl_harness::cdc::{schema_topics, Capture, CaptureConfig, CaptureProgress};
use openmrs_etl_harness::client::{Acks, ProducerConfig};
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::{ChangeId, ChangeOp, ProduceOutcome, Recorder};
use openmrs_etl_harness::model::schema::{self, SqlType, TableDef};
use openmrs_etl_harness::model::value::{datetime_ms, days_from_civil};
use openmrs_etl_harness::model::{OpKind, Row, Value};
use openmrs_etl_harness::scenario::Connector;
use openmrs_etl_harness::source::MemorySource;
use openmrs_etl_harness::workload::operation::{ChangeKind, Operation, Phase, RowChange};
use openmrs_etl_harness::workload::{Generator, WorkloadSpec};
use serde_json::Value as J;

use common::{bounded, client, partition};

const PREFIX: &str = "dbserver1";
const DB: &str = "openmrs";
const FIXTURE_TABLES: [&str; 5] = ["person", "patient", "encounter", "orders", "obs"];

// ---------------------------------------------------------------------------------------------------------
// fixture-rows.sql as operations

/// One SQL literal of the fixture as a column value.
fn literal(ty: SqlType, text: &str) -> Value {
    let text = text.trim();
    if text.eq_ignore_ascii_case("NULL") {
        return Value::Null;
    }
    let unquoted = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\''));
    let date = |s: &str| -> i64 {
        let p: Vec<i64> = s.split('-').map(|x| x.parse().unwrap()).collect();
        days_from_civil(p[0], p[1] as u32, p[2] as u32)
    };
    match ty {
        SqlType::Int => Value::Int(text.parse().unwrap()),
        SqlType::Boolean => Value::Bool(text == "1"),
        SqlType::Double => Value::Double(text.parse().unwrap()),
        SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Text => Value::text(unquoted.unwrap()),
        SqlType::Date => Value::Date(date(unquoted.unwrap()) as i32),
        SqlType::Datetime => {
            let s = unquoted.unwrap();
            let (d, t) = s.split_once(' ').unwrap();
            let hms: Vec<i64> = t.split(':').map(|x| x.parse().unwrap()).collect();
            Value::Datetime(date(d) * 86_400_000 + (hms[0] * 3600 + hms[1] * 60 + hms[2]) * 1000)
        }
        SqlType::Time => {
            let hms: Vec<i64> = unquoted
                .unwrap()
                .split(':')
                .map(|x| x.parse().unwrap())
                .collect();
            Value::Time((hms[0] * 3600 + hms[1] * 60 + hms[2]) * 1_000_000)
        }
    }
}

/// Splits on commas outside quotes.
fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                cur.push(ch);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(ch),
        }
    }
    out.push(cur.trim().to_string());
    out
}

fn column(t: &TableDef, name: &str) -> usize {
    t.column_index(name)
        .unwrap_or_else(|| panic!("{}.{name}", t.name))
}

/// The fixture's statements as (section, operation); `rows` tracks the state so updates and deletes carry
/// the before images the database holds.
fn fixture_operations() -> Vec<Operation> {
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/debezium/fixture-rows.sql"
    ))
    .unwrap();
    let mut rows: HashMap<(&str, i64), Arc<Row>> = HashMap::new();
    let mut phase = Phase::Baseline;
    let mut ops = Vec::new();
    for line in sql.lines() {
        let line = line.trim();
        if line == "-- section: stream" {
            phase = Phase::Stream;
        }
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        let stmt = line.trim_end_matches(';');
        let change = if let Some(rest) = stmt.strip_prefix("INSERT INTO ") {
            let (name, rest) = rest.split_once(' ').unwrap();
            let t = schema::table(name).unwrap();
            let (cols, vals) = rest.split_once(" VALUES ").unwrap();
            let cols = split_list(cols.trim().trim_start_matches('(').trim_end_matches(')'));
            let vals = split_list(vals.trim().trim_start_matches('(').trim_end_matches(')'));
            let mut row = t.empty_row();
            for (c, v) in cols.iter().zip(&vals) {
                let i = column(t, c);
                row[i] = literal(t.columns[i].ty, v);
            }
            let row = Arc::new(row);
            rows.insert((t.name, row[0].as_int().unwrap()), Arc::clone(&row));
            RowChange {
                table: t,
                kind: ChangeKind::Insert,
                before: None,
                after: Some(row),
            }
        } else if let Some(rest) = stmt.strip_prefix("UPDATE ") {
            let (name, rest) = rest.split_once(" SET ").unwrap();
            let t = schema::table(name).unwrap();
            let (sets, cond) = rest.split_once(" WHERE ").unwrap();
            let key: i64 = cond.split_once(" = ").unwrap().1.parse().unwrap();
            let before = rows[&(t.name, key)].clone();
            let mut after = (*before).clone();
            for set in split_list(sets) {
                let (c, v) = set.split_once(" = ").unwrap();
                let i = column(t, c.trim());
                after[i] = literal(t.columns[i].ty, v);
            }
            let after = Arc::new(after);
            rows.insert((t.name, key), Arc::clone(&after));
            RowChange {
                table: t,
                kind: ChangeKind::Update,
                before: Some(before),
                after: Some(after),
            }
        } else if let Some(rest) = stmt.strip_prefix("DELETE FROM ") {
            let (name, cond) = rest.split_once(" WHERE ").unwrap();
            let t = schema::table(name).unwrap();
            let key: i64 = cond.split_once(" = ").unwrap().1.parse().unwrap();
            let before = rows.remove(&(t.name, key)).unwrap();
            RowChange {
                table: t,
                kind: ChangeKind::Delete,
                before: Some(before),
                after: None,
            }
        } else {
            panic!("unexpected fixture statement: {stmt}");
        };
        ops.push(Operation {
            seq: ops.len() as u64 + 1,
            at_ms: datetime_ms(2024, 1, 15),
            phase,
            kind: OpKind::UpdateDemographics,
            patient_id: 0,
            changes: vec![change],
        });
    }
    ops
}

// ---------------------------------------------------------------------------------------------------------
// running the capture into an embedded cluster

fn producer_config() -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        linger: Duration::from_millis(1),
        delivery_timeout: Duration::from_secs(15),
        request_timeout: Duration::from_secs(5),
        max_block: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(20),
        ..ProducerConfig::default()
    }
}

async fn cluster() -> Cluster {
    common::init_tracing();
    let cluster = Cluster::builder()
        .brokers(1)
        .auto_create_topics(false)
        .start()
        .await
        .expect("cluster");
    for t in schema::MODELED_TABLES {
        cluster
            .create_topic(NewTopic::new(format!("{PREFIX}.{DB}.{}", t.name), 1))
            .expect("change topic");
    }
    for t in schema_topics(PREFIX, DB) {
        cluster
            .create_topic(NewTopic::new(t, 1))
            .expect("schema topic");
    }
    cluster
}

fn capture_config(connector: Connector, bootstrap: &str) -> CaptureConfig {
    CaptureConfig {
        connector,
        prefix: PREFIX.into(),
        database: DB.into(),
        include_schema_changes: true,
        bootstrap: bootstrap.into(),
        producer: producer_config(),
    }
}

async fn wait_for(capture: &Capture, what: &str, done: impl Fn(&CaptureProgress) -> bool) {
    bounded(what, async {
        loop {
            let p = capture.progress();
            assert!(p.failed.is_none(), "{what}: capture failed: {p:?}");
            if done(&p) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[derive(Debug, Clone)]
struct Fetched {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

async fn read_topic(bootstrap: &str, topic: &str) -> Vec<Fetched> {
    let client = client(bootstrap).await;
    let pc = partition(&client, topic, 0).await;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (records, high_watermark) =
            bounded("fetch", pc.fetch_records(offset, 1..10_000_000, 100))
                .await
                .expect("fetch");
        for r in records {
            assert_eq!(r.offset, offset, "{topic}: offsets are dense");
            let mut headers: Vec<(String, Vec<u8>)> = r.record.headers.into_iter().collect();
            headers.sort();
            out.push(Fetched {
                key: r.record.key,
                value: r.record.value,
                headers,
            });
            offset += 1;
        }
        if offset >= high_watermark {
            return out;
        }
    }
}

/// Runs the fixture rows through a MemorySource and the capture; returns every record of the fixture topics.
async fn run_fixture(connector: Connector) -> BTreeMap<String, Vec<Fetched>> {
    let cluster = cluster().await;
    let bootstrap = cluster.bootstrap_servers();
    let recorder = Recorder::new(1);
    let clock = Clock::real();
    let source = Arc::new(MemorySource::new(
        connector,
        recorder.clone(),
        clock.clone(),
    ));
    let ops = fixture_operations();
    for op in ops.iter().filter(|o| o.phase == Phase::Baseline) {
        source.load(op).expect("snapshot rows apply");
    }
    let capture = bounded(
        "capture start",
        Capture::start(
            Arc::clone(&source),
            capture_config(connector, &bootstrap),
            recorder.clone(),
            clock,
        ),
    )
    .await
    .expect("capture starts");
    wait_for(&capture, "snapshot", |p| p.snapshot_done).await;
    let mut last = 0;
    for op in ops.iter().filter(|o| o.phase == Phase::Stream) {
        last = source.commit_now(op).expect("stream rows apply").txn;
    }
    wait_for(&capture, "stream acked", |p| p.acked_txn == last).await;
    capture.shutdown().await;
    let mut topics: Vec<String> = FIXTURE_TABLES
        .iter()
        .map(|t| format!("{PREFIX}.{DB}.{t}"))
        .collect();
    topics.extend(schema_topics(PREFIX, DB));
    let mut out = BTreeMap::new();
    for t in topics {
        out.insert(t.clone(), read_topic(&bootstrap, &t).await);
    }
    cluster.shutdown().await;
    out
}

// ---------------------------------------------------------------------------------------------------------
// comparing with the fixtures

const VOLATILE: [&str; 11] = [
    "ts_ms", "ts_us", "ts_ns", "ts_sec", "file", "pos", "row", "thread", "gtid", "gtids", "query",
];

fn mask(v: &mut J) {
    match v {
        J::Object(map) => {
            for (k, x) in map.iter_mut() {
                if VOLATILE.contains(&k.as_str()) {
                    *x = J::Null;
                } else {
                    mask(x);
                }
            }
            if let Some(J::Object(source)) = map.get_mut("source") {
                if source.contains_key("version") {
                    source.insert("version".into(), J::Null);
                }
            }
        }
        J::Array(items) => items.iter_mut().for_each(mask),
        // Numbers as numbers: Java's `1.0E7` and Rust's `10000000.0` are the same double.
        J::Number(n) if n.is_f64() => *v = J::from(n.as_f64().unwrap()),
        _ => {}
    }
}

fn masked(bytes: &[u8]) -> J {
    let mut v: J = serde_json::from_slice(bytes).expect("value is JSON");
    mask(&mut v);
    v
}

/// The first differing path of two JSON documents, for a readable failure.
fn first_difference(a: &J, b: &J, path: &str) -> Option<String> {
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (l, r) = (x.get(k).unwrap_or(&J::Null), y.get(k).unwrap_or(&J::Null));
                if x.contains_key(k) != y.contains_key(k) {
                    return Some(format!(
                        "{path}.{k}: present {} vs {}",
                        x.contains_key(k),
                        y.contains_key(k)
                    ));
                }
                if let Some(d) = first_difference(l, r, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

fn fixture(topic: &str) -> Vec<J> {
    let dir = format!(
        "{}/fixtures/debezium/mariadb/{topic}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

fn kind(topic: &str, f: &Fetched) -> String {
    if topic == PREFIX {
        return "schema-change".into();
    }
    if topic.starts_with("schema-changes.") {
        return "schema-history".into();
    }
    match &f.value {
        None => "tombstone".into(),
        Some(v) => masked(v)["payload"]["op"].as_str().unwrap().to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_flavour_matches_the_real_connectors_records() {
    let got = run_fixture(Connector::Mariadb).await;
    for (topic, records) in &got {
        let expected = fixture(topic);
        let kinds: Vec<String> = records.iter().map(|r| kind(topic, r)).collect();
        let expected_kinds: Vec<&str> = expected
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, expected_kinds, "{topic}: kinds in offset order");
        for (offset, (r, e)) in records.iter().zip(&expected).enumerate() {
            let at = format!("{topic}@{offset}");
            let key = r
                .key
                .as_deref()
                .map(|k| String::from_utf8(k.to_vec()).unwrap());
            assert_eq!(key.as_deref(), e["key"].as_str(), "{at}: key bytes");
            let headers: Vec<(String, Vec<u8>)> = {
                let mut h: Vec<_> = e["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        (
                            h["key"].as_str().unwrap().to_string(),
                            h["value"].as_str().unwrap().as_bytes().to_vec(),
                        )
                    })
                    .collect();
                h.sort();
                h
            };
            assert_eq!(r.headers, headers, "{at}: headers");
            match (&r.value, e["value"].as_str()) {
                (None, None) => {}
                (Some(v), Some(ev)) => {
                    let (got, want) = (masked(v), masked(ev.as_bytes()));
                    if let Some(d) = first_difference(&got, &want, "") {
                        panic!("{at}: value differs at {d}");
                    }
                }
                (v, ev) => panic!("{at}: value {:?} vs fixture {ev:?}", v.is_some()),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_flavour_has_the_mysql_source_block_and_the_same_keys() {
    let mysql = run_fixture(Connector::Mysql).await;
    let expected_fields = [
        "version",
        "connector",
        "name",
        "ts_ms",
        "snapshot",
        "db",
        "sequence",
        "ts_us",
        "ts_ns",
        "table",
        "server_id",
        "gtid",
        "file",
        "pos",
        "row",
        "thread",
        "query",
    ];
    for table in FIXTURE_TABLES {
        let topic = format!("{PREFIX}.{DB}.{table}");
        let expected = fixture(&topic);
        let records = &mysql[&topic];
        assert_eq!(records.len(), expected.len(), "{topic}");
        for (r, e) in records.iter().zip(&expected) {
            // Keys are the MariaDB connector's bytes exactly: the same partitions either way.
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            assert_eq!(Some(key.as_str()), e["key"].as_str(), "{topic}");
            let header = r
                .headers
                .iter()
                .find(|(k, _)| k == "__debezium.context.connectorName")
                .unwrap();
            assert_eq!(header.1, b"mysql");
            let Some(value) = &r.value else { continue };
            let v: J = serde_json::from_slice(value).unwrap();
            let schema = &v["schema"]["fields"][2];
            assert_eq!(schema["name"], "io.debezium.connector.mysql.Source");
            let names: Vec<&str> = schema["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["field"].as_str().unwrap())
                .collect();
            assert_eq!(names, expected_fields);
            // The payload writes the fields in the schema's order.
            let text = std::str::from_utf8(value).unwrap();
            let source_text = &text[text.find("\"source\":{\"version\"").unwrap()..];
            let mut at = 0;
            for f in expected_fields {
                let i = source_text[at..]
                    .find(&format!("\"{f}\":"))
                    .unwrap_or_else(|| panic!("{f} in order"));
                at += i + 1;
            }
            let source = &v["payload"]["source"];
            assert_eq!(source["connector"], "mysql");
            if source["snapshot"] == "false" {
                let gtid = source["gtid"].as_str().unwrap();
                let (uuid, n) = gtid.split_once(':').expect("uuid:n");
                assert_eq!(uuid.len(), 36, "{gtid}");
                assert!(n.parse::<u64>().unwrap() > 0);
                assert_eq!(source["server_id"], 1);
                assert!(source["file"].as_str().unwrap().starts_with("mysql-bin."));
            } else {
                assert_eq!(source["server_id"], 0);
                assert!(source["gtid"].is_null());
            }
        }
    }
    let schema_change = &mysql[PREFIX][0];
    let key = String::from_utf8(schema_change.key.clone().unwrap()).unwrap();
    assert!(
        key.contains("io.debezium.connector.mysql.SchemaChangeKey"),
        "{key}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// kill and restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_capture_produces_every_change_at_least_once() {
    let cluster = cluster().await;
    let bootstrap = cluster.bootstrap_servers();
    let recorder = Recorder::new(3);
    let clock = Clock::real();
    let source = Arc::new(MemorySource::new(
        Connector::Mysql,
        recorder.clone(),
        clock.clone(),
    ));
    let spec = WorkloadSpec {
        patients: 20,
        operations: 600,
        ..WorkloadSpec::default()
    };
    let ops: Vec<Operation> = Generator::new(&spec, 11).collect();
    let (baseline, stream): (Vec<_>, Vec<_>) =
        ops.into_iter().partition(|o| o.phase == Phase::Baseline);
    for op in &baseline {
        source.load(op).unwrap();
    }
    let mut capture = Capture::start(
        Arc::clone(&source),
        capture_config(Connector::Mysql, &bootstrap),
        recorder.clone(),
        clock,
    )
    .await
    .expect("capture starts");
    wait_for(&capture, "snapshot", |p| p.snapshot_done).await;
    let (first, second) = stream.split_at(stream.len() / 2);
    for op in first {
        source.commit_now(op).unwrap();
    }
    // Let part of it through, then kill with records still in flight.
    let quarter = first[first.len() / 2].seq;
    wait_for(&capture, "some acked", |p| p.acked_txn >= quarter).await;
    capture.kill();
    let killed_at = capture.progress();
    for op in second {
        source.commit_now(op).unwrap();
    }
    bounded("restart", capture.restart())
        .await
        .expect("restarts");
    let head = source.head_txn();
    wait_for(&capture, "all acked after restart", |p| p.acked_txn == head).await;
    capture.shutdown().await;
    assert!(killed_at.acked_txn < head, "the kill came mid-stream");

    let history = recorder.snapshot();
    let mut acked: HashMap<(ChangeId, bool), usize> = HashMap::new();
    for p in &history.produced {
        if let (Some(change), ProduceOutcome::Acked { .. }) = (p.change, &p.outcome) {
            *acked.entry((change, p.tombstone)).or_default() += 1;
        }
    }
    let mut changes = 0;
    for (id, _, change) in history.changes() {
        changes += 1;
        assert!(
            acked.contains_key(&(id, false)),
            "{id:?} {change:?} was never acknowledged"
        );
        if change.op == ChangeOp::Delete {
            assert!(acked.contains_key(&(id, true)), "{id:?}: no tombstone");
        }
    }
    assert!(
        changes > 600,
        "snapshot reads and stream changes: {changes}"
    );
    cluster.shutdown().await;
}
