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
use openmrs_etl_harness::pipeline::flat;
use openmrs_etl_harness::scenario::Connector;
use openmrs_etl_harness::source::{MemorySource, MySqlSource, SourceError};
use openmrs_etl_harness::topology::local::{LocalTopologyOptions, StandaloneMariaDb};
use openmrs_etl_harness::workload::{
    reference, ChangeKind, Generator, Operation, Phase, RowChange, Value, WorkloadSpec,
};

const SEED: u64 = 2027;

async fn start_mariadb() -> Option<StandaloneMariaDb> {
    if !common::real_services_available(&["mariadbd", "mariadb-install-db"]) {
        return None;
    }
    let server = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        StandaloneMariaDb::start(&LocalTopologyOptions::new(reference::schema_fixture_sql())),
    )
    .await
    .expect("MariaDB started within 120 s")
    .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = mysql_async::Conn::from_url(server.endpoint().url().as_str())
        .await
        .unwrap();
    // The tests check what is stored, not durability: skip the fsync per commit.
    conn.query_drop("SET GLOBAL innodb_flush_log_at_trx_commit = 0")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    Some(server)
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
                file: commit.position.file.clone(),
                pos: commit.position.pos,
                row: 0,
                gtid: commit.gtid.clone(),
            },
            source_ts_ms: commit.committed_at_ms,
        };
        assert_eq!(resolver.resolve(&consumed), Some(id));
    }

    let from_db = mysql.final_images().await.unwrap_or_else(|e| panic!("{e}"));
    let from_memory = memory.final_images();
    for (table, rows) in &from_memory {
        assert_eq!(
            from_db.get(table),
            Some(rows),
            "{table}: the rows read back from MariaDB"
        );
    }
    let flat_db = flat::build(&from_db);
    assert!(flat_db.len() > 20, "{} flat rows", flat_db.len());
    assert_eq!(flat_db, flat::build(&from_memory));

    // An operation whose second statement fails leaves nothing of its first and records nothing.
    let person = from_db["person"].values().next_back().unwrap().clone();
    let mut fresh = (*person).clone();
    fresh[0] = Value::Int(person_key_unused(&from_db));
    let uuid_column = openmrs_etl_harness::workload::schema::person::TABLE
        .column_index("uuid")
        .unwrap();
    fresh[uuid_column] = Value::text("fresh-person-uuid-not-in-the-database");
    let fresh_key = fresh[0].as_int().unwrap();
    let person_table = &openmrs_etl_harness::workload::schema::person::TABLE;
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
    assert_eq!(after_failure, from_db);
    drop(server);
}

fn person_key_unused(images: &flat::RowImages) -> i64 {
    images["person"].keys().next_back().copied().unwrap_or(0) + 1000
}
