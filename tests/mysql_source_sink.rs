//! The local backend's source and sink against a real MariaDB (Debian's `mariadbd`, started by each test on a
//! free 127.0.0.1 port with a fresh data directory):
//!
//! - `MySqlSource` records in history exactly the changes `MemorySource` records for the same operations, with
//!   the server's GTIDs and binlog positions, and the rows it leaves give the same flat table; a refused
//!   statement rolls the whole operation back and records nothing.
//! - `MySqlSink` fed the same batches as `MemorySink` ends with the same flat table and offsets; a batch whose
//!   transaction fails leaves images, flat rows and offsets as they were.
//!
//! Without `mariadbd` the tests print why and pass as skipped, unless `ETL_HARNESS_REQUIRE_REAL=1` (CI).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::{ChangeOp, ConsumedChange, Recorder, SourceRef};
use openmrs_etl_harness::model::flat;
use openmrs_etl_harness::model::schema::MODELED_TABLES;
use openmrs_etl_harness::model::Value;
use openmrs_etl_harness::pipeline::{Batch, Decoded, MemorySink, MySqlSink, Sink, SinkRecord};
use openmrs_etl_harness::rng::SeededRng;
use openmrs_etl_harness::scenario::Connector;
use openmrs_etl_harness::source::{MemorySource, MySqlSource, SourceError};
use openmrs_etl_harness::topology::local::StandaloneMariaDb;
use openmrs_etl_harness::workload::{
    ChangeKind, Generator, Operation, Phase, RowChange, WorkloadSpec,
};

const SEED: u64 = 2027;

async fn start_mariadb() -> Option<StandaloneMariaDb> {
    if !common::real_services_available(&["mariadbd", "mariadb-install-db"]) {
        return None;
    }
    Some(common::start_mariadb().await)
}

fn workload(patients: u64, operations: u64) -> Vec<Operation> {
    let spec = WorkloadSpec {
        patients,
        operations,
        ..WorkloadSpec::default()
    };
    Generator::new(&spec, SEED).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_source_records_what_the_memory_source_records_and_leaves_the_same_rows() {
    let Some(server) = start_mariadb().await else {
        return;
    };
    let clock = Clock::virtual_at(1_700_000_000_000);
    let memory_history = Recorder::new(SEED);
    let memory = MemorySource::new(Connector::Mariadb, memory_history.clone(), clock.clone());
    let mysql_history = Recorder::new(SEED);
    let mysql = MySqlSource::connect(&server.endpoint().url(), mysql_history.clone(), clock)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let ops = workload(12, 200);
    for op in &ops {
        match op.phase {
            Phase::Baseline => {
                memory.load(op).unwrap();
                mysql.load(op).await.unwrap_or_else(|e| panic!("{e}"));
            }
            Phase::Stream => {
                memory.commit_now(op).unwrap();
                mysql.commit_now(op).await.unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    let expected = memory_history.snapshot().commits;
    let got = mysql_history.snapshot().commits;
    assert_eq!(got.len(), 200, "every stream operation is recorded once");
    assert_eq!(got.len(), expected.len());
    for (m, e) in got.iter().zip(&expected) {
        assert_eq!(
            (m.txn, m.snapshot, m.kind, m.patient_id),
            (e.txn, e.snapshot, e.kind, e.patient_id)
        );
        assert_eq!(m.changes, e.changes, "txn {}: the recorded changes", m.txn);
        assert_eq!(m.server_id, 1, "the local backend's server id");
        let gtid = m
            .gtid
            .as_deref()
            .expect("MariaDB gives every commit a GTID");
        assert!(gtid.starts_with("0-1-"), "txn {}: GTID {gtid}", m.txn);
    }
    for w in got.windows(2) {
        assert!(
            w[0].position < w[1].position,
            "binlog positions increase: {:?} then {:?}",
            w[0].position,
            w[1].position
        );
        assert_ne!(w[0].gtid, w[1].gtid);
    }

    // What Debezium will report for a change resolves to the commit that made it.
    let history = mysql_history.snapshot();
    let resolver = history.resolver();
    for (id, commit, change) in history.changes() {
        let consumed = ConsumedChange {
            table: change.table,
            key: change.key,
            op: change.op,
            source: SourceRef {
                snapshot: false,
                file: commit.position.file.as_str().into(),
                pos: commit.position.pos,
                row: 0,
                gtid: commit.gtid.as_deref().map(Into::into),
            },
            source_ts_ms: commit.committed_at_ms,
        };
        assert_eq!(resolver.resolve(&consumed), Some(id));
    }

    let from_db = mysql.final_images().await.unwrap_or_else(|e| panic!("{e}"));
    let from_memory = memory.final_images();
    for (table, rows) in &from_memory {
        same(
            &from_db[table],
            rows,
            &format!("{table} read back from MariaDB"),
        );
    }
    let flat_db = flat::build(&from_db);
    assert!(flat_db.len() > 20, "{} flat rows", flat_db.len());
    same(&flat_db, &flat::build(&from_memory), "flat table");

    // An operation whose second statement fails leaves nothing of its first and records nothing.
    let person = from_db["person"].values().next_back().unwrap().clone();
    let mut fresh = (*person).clone();
    fresh[0] = Value::Int(person_key_unused(&from_db));
    let uuid_column = openmrs_etl_harness::model::schema::person::TABLE
        .column_index("uuid")
        .unwrap();
    fresh[uuid_column] = Value::text("fresh-person-uuid-not-in-the-database");
    let fresh_key = fresh[0].as_int().unwrap();
    let person_table = &openmrs_etl_harness::model::schema::person::TABLE;
    let last = ops.last().unwrap();
    let failing = Operation {
        seq: last.seq + 1,
        changes: vec![
            RowChange {
                table: person_table,
                kind: ChangeKind::Insert,
                before: None,
                after: Some(Arc::new(fresh)),
            },
            RowChange {
                table: person_table,
                kind: ChangeKind::Insert,
                before: None,
                after: Some(person.clone()),
            },
        ],
        ..last.clone()
    };
    let error = mysql.commit_now(&failing).await.unwrap_err();
    match &error {
        SourceError::Mysql {
            txn,
            doing,
            message,
        } => {
            assert_eq!(*txn, Some(failing.seq));
            assert!(doing.contains("change 1 on person"), "{doing}");
            assert!(message.contains("Duplicate"), "{message}");
        }
        other => panic!("expected a MySQL error, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .starts_with(&format!("txn {}: ", failing.seq)),
        "{error}"
    );
    assert_eq!(
        mysql_history.snapshot().commits.len(),
        200,
        "nothing recorded"
    );
    assert_eq!(mysql.head_txn().await, last.seq);
    let after_failure = mysql.final_images().await.unwrap();
    assert!(
        !after_failure["person"].contains_key(&fresh_key),
        "the first insert was rolled back"
    );
    same(&after_failure, &from_db, "rows after the failed operation");
    drop(server);
}

/// Asserts two maps equal, naming the first key where they differ rather than printing both whole.
fn same<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    got: &BTreeMap<K, V>,
    expected: &BTreeMap<K, V>,
    what: &str,
) {
    if got == expected {
        return;
    }
    let key = got
        .keys()
        .chain(expected.keys())
        .find(|k| got.get(*k) != expected.get(*k))
        .expect("maps that differ differ at a key");
    let show = |v: Option<&V>| {
        let text = format!("{v:?}");
        text.chars().take(1500).collect::<String>()
    };
    panic!(
        "{what}: {} entries, expected {}; first difference at {key:?}:\n got      {}\n expected {}",
        got.len(),
        expected.len(),
        show(got.get(key)),
        show(expected.get(key))
    );
}

fn person_key_unused(images: &flat::RowImages) -> i64 {
    images["person"].keys().next_back().copied().unwrap_or(0) + 1000
}

/// Every change the memory source made (snapshot reads, then the binlog) as the records on its topic: the
/// change, then a tombstone after a delete. Two partitions per table, by key.
fn topic_logs(ops: &[Operation]) -> (BTreeMap<(String, i32), Vec<SinkRecord>>, flat::RowImages) {
    let source = MemorySource::new(
        Connector::Mariadb,
        Recorder::new(SEED),
        Clock::virtual_at(1_700_000_000_000),
    );
    for op in ops.iter().filter(|op| op.phase == Phase::Baseline) {
        source.load(op).unwrap();
    }
    let snapshot = source.snapshot();
    for op in ops.iter().filter(|op| op.phase == Phase::Stream) {
        source.commit_now(op).unwrap();
    }
    let mut logs: BTreeMap<(String, i32), Vec<SinkRecord>> = BTreeMap::new();
    let mut push = |table: &'static str, key: i64, op: ChangeOp, source: SourceRef, image| {
        let tp = (
            format!("dbserver1.openmrs.{table}"),
            key.rem_euclid(2) as i32,
        );
        let log = logs.entry(tp.clone()).or_default();
        let mut append = |decoded| {
            let offset = log.len() as i64;
            log.push(SinkRecord {
                topic: tp.0.clone(),
                partition: tp.1,
                offset,
                decoded,
            });
        };
        append(Decoded::Change {
            change: ConsumedChange {
                table,
                key,
                op,
                source,
                source_ts_ms: 0,
            },
            image,
        });
        if op == ChangeOp::Delete {
            append(Decoded::Tombstone { table, key });
        }
    };
    for (table, rows) in &snapshot.tables {
        if !MODELED_TABLES.iter().any(|t| t.name == table.name) {
            continue;
        }
        for row in rows {
            let source = SourceRef {
                snapshot: true,
                file: snapshot.position.file.as_str().into(),
                pos: snapshot.position.pos,
                row: 0,
                gtid: None,
            };
            push(
                table.name,
                row[0].as_int().unwrap(),
                ChangeOp::Read,
                source,
                row.clone(),
            );
        }
    }
    for txn in source.read_binlog(snapshot.cursor, usize::MAX) {
        for r in &txn.rows {
            let source = SourceRef {
                snapshot: false,
                file: txn.position.file.as_str().into(),
                pos: txn.position.pos,
                row: r.row,
                gtid: Some(txn.gtid.as_str().into()),
            };
            let image = r.after.clone().or(r.before.clone()).unwrap();
            push(r.table.name, r.key, r.op, source, image);
        }
    }
    (logs, source.final_images())
}

/// The logs cut into small batches in a seeded interleaving of partitions; now and then a batch starts at an
/// older offset, as a consumer restarted from an earlier commit would read again.
fn batches(logs: &BTreeMap<(String, i32), Vec<SinkRecord>>) -> Vec<Batch> {
    let mut rng = SeededRng::new(SEED, "sink interleaving");
    let mut cursors: Vec<(&Vec<SinkRecord>, usize)> = logs.values().map(|log| (log, 0)).collect();
    let mut out = Vec::new();
    loop {
        let live: Vec<usize> = (0..cursors.len())
            .filter(|&i| cursors[i].1 < cursors[i].0.len())
            .collect();
        if live.is_empty() {
            return out;
        }
        let (log, at) = &mut cursors[*rng.pick(&live)];
        let n = (1 + rng.below(8) as usize).min(log.len() - *at);
        let from = if *at > 10 && rng.chance(0.05) {
            rng.below(*at as u64) as usize
        } else {
            *at
        };
        *at += n;
        let records = log[from..*at].to_vec();
        let last = &records[records.len() - 1];
        out.push(Batch {
            next_offsets: vec![(last.topic.clone(), last.partition, last.offset + 1)],
            records,
        });
    }
}

async fn apply_both(memory: &MemorySink, mysql: &MySqlSink, batches: &[Batch]) {
    for batch in batches {
        memory.apply_batch(1, batch.clone());
        Sink::apply(mysql, 1, batch.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sink_matches_the_memory_sink_and_a_failed_batch_changes_nothing() {
    let Some(server) = start_mariadb().await else {
        return;
    };
    let url = server.endpoint().url();
    let ops = workload(12, 200);
    let (logs, oracle_images) = topic_logs(&ops);
    let batches = batches(&logs);
    assert!(batches.len() > 100, "{} batches", batches.len());
    let memory = MemorySink::new();
    let mysql = MySqlSink::open(&url, "etl_sink")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let cut = batches.len() * 2 / 3;
    apply_both(&memory, &mysql, &batches[..cut]).await;
    assert_eq!(mysql.offsets(), memory.offsets());
    same(
        &mysql.flat_table().await.unwrap(),
        &memory.flat_table(),
        "flat table",
    );

    // A failure injected inside the transaction, after the images and flat rows are written: the trigger
    // refuses the offsets.
    let mut admin = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    admin
        .query_drop(
            "CREATE TRIGGER etl_sink.refuse_offsets BEFORE INSERT ON etl_sink.sink_offsets FOR EACH ROW \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected failure'",
        )
        .await
        .unwrap();
    let failing = &batches[cut];
    assert!(
        failing
            .records
            .iter()
            .any(|r| matches!(r.decoded, Decoded::Change { .. })),
        "the failing batch carries changes"
    );
    let (images, flat_rows, offsets) = (
        mysql.images().await.unwrap(),
        mysql.flat_table().await.unwrap(),
        mysql.offsets(),
    );
    let error = Sink::apply(&mysql, 1, failing.clone()).await.unwrap_err();
    assert!(error.to_string().contains("injected failure"), "{error}");
    same(
        &mysql.images().await.unwrap(),
        &images,
        "images after the failed batch",
    );
    same(
        &mysql.flat_table().await.unwrap(),
        &flat_rows,
        "flat rows after the failed batch",
    );
    assert_eq!(mysql.offsets(), offsets, "offsets unchanged");
    admin
        .query_drop("DROP TRIGGER etl_sink.refuse_offsets")
        .await
        .unwrap();
    admin.disconnect().await.unwrap();

    // The batch read again, and the rest: the same result as the memory sink, which is the oracle's.
    apply_both(&memory, &mysql, &batches[cut..]).await;
    assert_eq!(mysql.offsets(), memory.offsets());
    let flat_rows = mysql.flat_table().await.unwrap();
    same(&flat_rows, &memory.flat_table(), "flat table");
    same(&mysql.images().await.unwrap(), &memory.images(), "images");
    same(
        &flat_rows,
        &flat::build(&oracle_images),
        "flat table against the oracle",
    );
    assert!(flat_rows.len() > 20, "{} flat rows", flat_rows.len());
    let ends: BTreeMap<(String, i32), i64> = logs
        .iter()
        .map(|(tp, log)| (tp.clone(), log.len() as i64))
        .collect();
    assert_eq!(mysql.offsets(), ends, "every partition read to its end");
    mysql.close().await;

    // A sink opened again over the schema starts where the last one stopped.
    let reopened = MySqlSink::open(&url, "etl_sink").await.unwrap();
    assert_eq!(reopened.offsets(), ends);
    same(
        &reopened.flat_table().await.unwrap(),
        &flat_rows,
        "flat table reopened",
    );
    reopened.close().await;
    drop(server);
}
