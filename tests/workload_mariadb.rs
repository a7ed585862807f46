//! The generated SQL loads into a real MariaDB (Debian's `mariadbd`, started by the test on a free 127.0.0.1
//! port with a fresh data directory) after the schema fixture, and every table then holds exactly the rows the
//! generator says it wrote.
//!
//! Without `mariadbd` the test prints why and passes as skipped, unless `ETL_HARNESS_REQUIRE_REAL=1` (CI).

mod common;

use mysql_async::prelude::Queryable;
use openmrs_etl_harness::workload::{reference, sql, Generator, WorkloadSpec};

const SEED: u64 = 2026;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_sql_loads_into_mariadb_and_row_counts_match() {
    if !common::real_services_available(&["mariadbd", "mariadb-install-db"]) {
        return;
    }

    let server = common::start_mariadb().await;
    let mut conn = mysql_async::Conn::from_url(server.endpoint().url().as_str())
        .await
        .unwrap();

    let spec = WorkloadSpec {
        patients: 150,
        operations: 4000,
        ..WorkloadSpec::default()
    };
    let mut generator = Generator::new(&spec, SEED);
    let mut batch = String::new();
    for (ops, op) in generator.by_ref().enumerate() {
        sql::write_operation_sql(&mut batch, &op);
        if batch.len() > 256 * 1024 {
            conn.query_drop(std::mem::take(&mut batch)).await.unwrap_or_else(|e| {
                panic!("loading operations up to #{ops} failed: {e}\nreproduce: etl-harness generate --seed {SEED} --patients 150 --operations 4000")
            });
        }
    }
    conn.query_drop(batch)
        .await
        .unwrap_or_else(|e| panic!("loading the last operations failed: {e}"));

    let counts = generator.row_counts().clone();
    assert!(counts["obs"] > 5000, "{counts:?}");
    for (table, expected) in &counts {
        let reference_rows = reference::reference_rows()
            .iter()
            .find(|(t, _)| t.name == *table)
            .map(|(_, rows)| rows.len() as i64)
            .unwrap_or(0);
        let found: i64 = conn
            .query_first(format!("SELECT COUNT(*) FROM `{table}`"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            found - reference_rows,
            *expected,
            "{table}: MariaDB holds {found}, the generator wrote {expected}"
        );
    }
    // The stream's own invariants, as the database sees them.
    let orphans: i64 = conn
        .query_first("SELECT COUNT(*) FROM obs o JOIN obs p ON o.obs_group_id = p.obs_id WHERE o.encounter_id <> p.encounter_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        orphans, 0,
        "obs group members outside their parent's encounter"
    );
    let unvoided_predecessors: i64 = conn
        .query_first("SELECT COUNT(*) FROM obs n JOIN obs o ON n.previous_version = o.obs_id WHERE o.voided = 0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        unvoided_predecessors, 0,
        "previous_version pointing at a live obs"
    );
    conn.disconnect().await.unwrap();
    drop(server);
}
