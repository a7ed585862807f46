//! Judging a team's ETL (`kind = "command"`): the MariaDB server its sink database lives on (the backend's, or
//! one the harness starts when the backend has none), and after the run the comparison of its table with its
//! `oracle_sql` run over a scratch database loaded with the source's final state — "the streaming result equals
//! the batch result".

use std::path::PathBuf;

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::RunError;
use crate::check::{self, flat_shape, Cell, CellKind, FinalStateDiff};
use crate::model::flat::RowImages;
use crate::model::schema;
use crate::pipeline::COMMAND_SINK_DATABASE;
use crate::scenario::{CommandEtl, Oracle, Scenario};
use crate::topology::local::{LocalTopologyOptions, StandaloneMariaDb};
use crate::workload::sql::write_insert;

/// The scratch database the oracle query runs in.
pub const ORACLE_DATABASE: &str = "etl_oracle";
/// Rows per INSERT when loading the scratch database.
const INSERT_ROWS: usize = 500;

/// Where a command ETL's sink lives, and what judges it.
pub(crate) struct ForeignSink {
    /// The server the harness started (embedded has none of its own); stopped when this is dropped.
    _server: Option<StandaloneMariaDb>,
    server_url: String,
    etl: CommandEtl,
    log_dir: PathBuf,
}

fn error(what: impl std::fmt::Display) -> RunError {
    RunError::LocalRun(what.to_string())
}

impl ForeignSink {
    /// The backend's database server (`database_url`), or a MariaDB of this machine started for the run.
    pub(crate) async fn open(
        scenario: &Scenario,
        database_url: Option<&str>,
    ) -> Result<ForeignSink, RunError> {
        let etl = scenario
            .pipeline
            .command
            .clone()
            .ok_or_else(|| error("kind = \"command\" without [pipeline.command]"))?;
        let (server, server_url, runs) = match database_url {
            Some(url) => (
                None,
                url.to_owned(),
                std::env::temp_dir().join("openmrs-etl-harness"),
            ),
            None => {
                let options =
                    LocalTopologyOptions::new(crate::workload::reference::schema_fixture_sql());
                let server = StandaloneMariaDb::start(&options).await.map_err(|e| {
                    error(format!(
                        "starting a MariaDB server for the command ETL's sink: {e}"
                    ))
                })?;
                let url = server.endpoint().url();
                let runs = server.run_dir().to_path_buf();
                (Some(server), url, runs)
            }
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let log_dir =
            runs.join("etl-logs")
                .join(format!("{}-{}-{stamp}", scenario.name, std::process::id()));
        Ok(ForeignSink {
            _server: server,
            server_url,
            etl,
            log_dir,
        })
    }

    pub(crate) fn server_url(&self) -> &str {
        &self.server_url
    }

    pub(crate) fn log_dir(&self) -> PathBuf {
        self.log_dir.clone()
    }

    /// Judges the ETL's table(s) against its oracle over `images` (the source's final state).
    pub(crate) async fn judge(&self, images: &RowImages) -> Result<FinalStateDiff, RunError> {
        let mut conn = Conn::from_url(self.server_url.as_str())
            .await
            .map_err(|e| error(format!("connecting to {}: {e}", self.server_url)))?;
        let diff = match (self.etl.oracle, &self.etl.oracle_sql) {
            (Some(Oracle::FlatEncounter), _) => Ok(self.judge_flat(&mut conn, images).await),
            (None, Some(sql)) => self.judge_sql(&mut conn, images, sql).await,
            (None, None) => Err(error(
                "[pipeline.command] has neither oracle_sql nor oracle",
            )),
        };
        let _ = conn.disconnect().await;
        diff
    }

    /// Loads `images` into the scratch database, runs the oracle query there and compares its rows with the
    /// ETL's table.
    async fn judge_sql(
        &self,
        conn: &mut Conn,
        images: &RowImages,
        sql: &str,
    ) -> Result<FinalStateDiff, RunError> {
        load_scratch(conn, images).await?;
        let digits = self.etl.float_digits;
        let oracle: Vec<Row> = conn
            .query(sql)
            .await
            .map_err(|e| error(format!("running oracle_sql in {ORACLE_DATABASE}: {e}")))?;
        let columns: Vec<String> = match oracle.first() {
            Some(row) => row
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect(),
            None => column_names(conn, sql).await?,
        };
        let oracle_cells: Vec<Vec<Cell>> = oracle.iter().map(|r| cells(r, digits)).collect();
        Ok(compare_with_sink(
            conn,
            &self.etl.table,
            "oracle_sql",
            columns,
            oracle_cells,
            |r| cells(r, digits),
        )
        .await)
    }

    /// The ETL's three tables of the documented shape against the flat encounter table of `images`.
    async fn judge_flat(&self, conn: &mut Conn, images: &RowImages) -> FinalStateDiff {
        const NAME: &str = "the built-in flat encounter table";
        let digits = self.etl.float_digits;
        let oracle = flat_shape::oracle_rows(&crate::model::flat::build(images), digits);
        let mut parts = Vec::new();
        for (i, (shape, oracle)) in flat_shape::TABLES.iter().zip(oracle).enumerate() {
            let columns: Vec<String> = shape.columns.iter().map(|c| c.0.to_owned()).collect();
            let table = format!("{}{}", self.etl.table, shape.suffix);
            parts.push(
                compare_with_sink(conn, &table, NAME, columns, oracle, |r| {
                    flat_shape::normalise_row(i, texts(r), digits)
                })
                .await,
            );
        }
        check::merge_tables(parts)
    }
}

/// Reads `columns` of `etl_sink.<table>`, each row normalised by `normalise`, and compares them with the
/// oracle's rows; a table that cannot be read that way is not comparable (every oracle row missing).
async fn compare_with_sink(
    conn: &mut Conn,
    table: &str,
    oracle_name: &str,
    columns: Vec<String>,
    oracle: Vec<Vec<Cell>>,
    normalise: impl Fn(&Row) -> Vec<Cell>,
) -> FinalStateDiff {
    let select = format!(
        "SELECT {} FROM `{COMMAND_SINK_DATABASE}`.`{table}`",
        columns
            .iter()
            .map(|c| format!("`{}`", c.replace('`', "``")))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let table = format!("{COMMAND_SINK_DATABASE}.{table}");
    let sink: Result<Vec<Row>, _> = conn.query(select.as_str()).await;
    match sink {
        Ok(rows) => check::compare_tables(
            &table,
            oracle_name,
            columns,
            rows.iter().map(normalise).collect(),
            oracle,
        ),
        Err(e) => check::not_comparable(
            &table,
            oracle_name,
            columns,
            oracle.len() as u64,
            format!("reading the ETL's table ({select}): {e}"),
        ),
    }
}

/// The oracle query's column names when it returns no row: from the same query, limited to none.
async fn column_names(conn: &mut Conn, sql: &str) -> Result<Vec<String>, RunError> {
    let result = conn
        .query_iter(format!(
            "SELECT * FROM ({}) AS oracle LIMIT 0",
            sql.trim().trim_end_matches(';')
        ))
        .await
        .map_err(|e| error(format!("reading oracle_sql's columns: {e}")))?;
    let names = result
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    result
        .drop_result()
        .await
        .map_err(|e| error(format!("reading oracle_sql's columns: {e}")))?;
    Ok(names)
}

/// A fresh `etl_oracle` database with the OpenMRS schema and reference rows, every captured table replaced by
/// its final images.
async fn load_scratch(conn: &mut Conn, images: &RowImages) -> Result<(), RunError> {
    let stage = |what: &'static str| {
        move |e: mysql_async::Error| error(format!("{what} ({ORACLE_DATABASE}): {e}"))
    };
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS `{ORACLE_DATABASE}`; CREATE DATABASE `{ORACLE_DATABASE}` CHARACTER SET utf8mb4; USE `{ORACLE_DATABASE}`"
    ))
    .await
    .map_err(stage("creating the scratch database"))?;
    conn.query_drop(crate::workload::reference::schema_fixture_sql())
        .await
        .map_err(stage("loading the schema fixture"))?;
    conn.query_drop("SET FOREIGN_KEY_CHECKS = 0")
        .await
        .map_err(stage("turning foreign-key checks off"))?;
    for (name, rows) in images {
        let Some(table) = schema::table(name) else {
            continue;
        };
        conn.query_drop(format!("DELETE FROM `{name}`"))
            .await
            .map_err(stage("emptying a table"))?;
        let rows: Vec<_> = rows.values().map(|r| (**r).clone()).collect();
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut sql = String::new();
            write_insert(&mut sql, table, chunk);
            conn.query_drop(sql)
                .await
                .map_err(stage("loading the final images"))?;
        }
    }
    conn.query_drop("SET FOREIGN_KEY_CHECKS = 1")
        .await
        .map_err(stage("turning foreign-key checks on"))
}

fn kind(t: ColumnType) -> CellKind {
    use ColumnType::*;
    match t {
        MYSQL_TYPE_TINY
        | MYSQL_TYPE_SHORT
        | MYSQL_TYPE_LONG
        | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG
        | MYSQL_TYPE_YEAR
        | MYSQL_TYPE_DECIMAL
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_FLOAT
        | MYSQL_TYPE_DOUBLE => CellKind::Number,
        MYSQL_TYPE_DATE
        | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_TIME
        | MYSQL_TYPE_TIME2 => CellKind::Temporal,
        _ => CellKind::Text,
    }
}

/// One value as text (`None` is NULL), before normalisation.
fn text(value: Option<&mysql_async::Value>) -> Option<String> {
    use mysql_async::Value::*;
    match value? {
        NULL => None,
        Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Int(v) => Some(v.to_string()),
        UInt(v) => Some(v.to_string()),
        Float(v) => Some(v.to_string()),
        Double(v) => Some(v.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

/// One row's values as text.
fn texts(row: &Row) -> Vec<Option<String>> {
    (0..row.len()).map(|i| text(row.as_ref(i))).collect()
}

/// One row's values, normalised by their column types (a value the server sent as a number is a number).
fn cells(row: &Row, digits: u32) -> Vec<Cell> {
    let columns = row.columns_ref();
    (0..row.len())
        .map(|i| {
            let value = row.as_ref(i);
            let k = match value {
                Some(
                    mysql_async::Value::Int(_)
                    | mysql_async::Value::UInt(_)
                    | mysql_async::Value::Float(_)
                    | mysql_async::Value::Double(_),
                ) => CellKind::Number,
                _ => columns
                    .get(i)
                    .map_or(CellKind::Text, |c| kind(c.column_type())),
            };
            text(value).map(|t| check::normalise(k, &t, digits))
        })
        .collect()
}
