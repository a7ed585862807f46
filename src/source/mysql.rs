//! The local backend's source: workload operations committed to a real MariaDB over `mysql_async`.
//!
//! Each operation runs as one transaction (`BEGIN`, the operation's statements, `COMMIT`) on one connection, so
//! commits happen in the order the harness issues them. The harness is the database's only writer, so the
//! binlog position `SHOW MASTER STATUS` reports just before `BEGIN` is where the transaction starts — the
//! position Debezium puts in its `source` block — and `@@last_gtid` read after `COMMIT` is the GTID the server
//! gave it. History then links every Debezium event back to its commit by GTID (or by position).
//!
//! The database checks the operation, not the harness: a statement the server refuses, or one that does not
//! touch exactly one row, rolls the transaction back and nothing is recorded.
//!
//! Not for: reading the binlog (Debezium does that on the local backend).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::Mutex;

use super::{Source, SourceError};
use crate::clock::Clock;
use crate::history::{BinlogPosition, ChangeOp, ChangeRecord, Commit, Recorder};
use crate::model::flat::RowImages;
use crate::model::schema::{self, SqlType, TableDef};
use crate::model::value::days_from_civil;
use crate::model::{Row, Value};
use crate::workload::operation::{ChangeKind, Operation, Phase, RowChange};
use crate::workload::sql;

/// How much of a statement an error message quotes.
const QUOTED_SQL: usize = 160;

struct Session {
    conn: Conn,
    /// The highest txn committed so far (0 before the first stream commit).
    head_txn: u64,
}

/// A MariaDB database the harness commits workload operations to. See the module docs.
pub struct MySqlSource {
    session: Mutex<Session>,
    recorder: Recorder,
    clock: Clock,
    server_id: u32,
}

impl std::fmt::Debug for MySqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlSource")
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

fn mysql_error(
    txn: Option<u64>,
    doing: impl Into<String>,
) -> impl FnOnce(mysql_async::Error) -> SourceError {
    let doing = doing.into();
    move |e| SourceError::Mysql {
        txn,
        doing,
        message: e.to_string(),
    }
}

impl MySqlSource {
    /// Connects to the OpenMRS database at `url` (`mysql://user@host:port/openmrs`), which already holds the
    /// schema fixture and its reference rows.
    pub async fn connect(
        url: &str,
        recorder: Recorder,
        clock: Clock,
    ) -> Result<MySqlSource, SourceError> {
        let opts = Opts::from_url(url).map_err(|e| SourceError::Mysql {
            txn: None,
            doing: format!("parsing the source URL {url}"),
            message: e.to_string(),
        })?;
        // Affected rows count the rows a statement matched, so an UPDATE that finds its row counts it even when
        // the server sees no difference.
        let opts = OptsBuilder::from_opts(opts).client_found_rows(true);
        let mut conn = Conn::new(opts)
            .await
            .map_err(mysql_error(None, format!("connecting to {url}")))?;
        let server_id: Option<u32> = conn
            .query_first("SELECT @@server_id")
            .await
            .map_err(mysql_error(None, "reading @@server_id"))?;
        Ok(MySqlSource {
            session: Mutex::new(Session { conn, head_txn: 0 }),
            recorder,
            clock,
            server_id: server_id.unwrap_or(0),
        })
    }

    /// Applies a baseline operation without recording it in history, as [`super::MemorySource::load`] does:
    /// baseline rows reach the pipeline through Debezium's snapshot.
    pub async fn load(&self, op: &Operation) -> Result<(), SourceError> {
        if op.phase != Phase::Baseline {
            return Err(SourceError::WrongPhase {
                txn: op.seq,
                found: op.phase,
                method: "load",
                expected: "commit",
            });
        }
        let mut session = self.session.lock().await;
        run_transaction(&mut session.conn, op).await
    }

    /// Commits a stream operation as one transaction and records it in history with the server's GTID and the
    /// binlog position the transaction starts at.
    pub async fn commit_now(&self, op: &Operation) -> Result<Commit, SourceError> {
        if op.phase != Phase::Stream {
            return Err(SourceError::WrongPhase {
                txn: op.seq,
                found: op.phase,
                method: "commit",
                expected: "load",
            });
        }
        let changes = change_records(op)?;
        let txn = Some(op.seq);
        let mut session = self.session.lock().await;
        if op.seq <= session.head_txn {
            return Err(SourceError::OutOfOrder {
                txn: op.seq,
                head: session.head_txn,
            });
        }
        let position = binlog_position(&mut session.conn, txn).await?;
        run_transaction(&mut session.conn, op).await?;
        let committed_at_ms = self.clock.now_ms();
        let gtid: Option<String> = session
            .conn
            .query_first("SELECT @@last_gtid")
            .await
            .map_err(mysql_error(txn, "reading @@last_gtid after COMMIT"))?;
        let commit = Commit {
            txn: op.seq,
            snapshot: false,
            kind: Some(op.kind),
            patient_id: Some(op.patient_id),
            position,
            gtid: gtid.filter(|g| !g.is_empty()),
            server_id: self.server_id,
            committed_at_ms,
            changes,
        };
        // Recorded under the session lock so history's commit order is the binlog's order.
        self.recorder.commit(commit.clone());
        session.head_txn = op.seq;
        Ok(commit)
    }

    /// The highest txn committed so far (0 before the first stream commit).
    pub async fn head_txn(&self) -> u64 {
        self.session.lock().await.head_txn
    }

    /// The current rows of every modeled table, read back from the database with the value types the generator
    /// uses: the oracle's input on the local backend.
    pub async fn final_images(&self) -> Result<RowImages, SourceError> {
        let mut session = self.session.lock().await;
        let mut images = RowImages::new();
        for table in schema::MODELED_TABLES {
            let rows = read_table(&mut session.conn, table).await?;
            images.insert(table.name, rows);
        }
        Ok(images)
    }
}

impl Source for MySqlSource {
    async fn commit(&self, op: &Operation) -> Result<Commit, SourceError> {
        self.commit_now(op).await
    }
}

/// The history records of `op`'s changes, in op order — what [`super::MemorySource`] records for the same op.
fn change_records(op: &Operation) -> Result<Vec<ChangeRecord>, SourceError> {
    op.changes
        .iter()
        .enumerate()
        .map(|(index, change)| {
            let key = super::row_key(op, index, change)?;
            let op = match change.kind {
                ChangeKind::Insert => ChangeOp::Create,
                ChangeKind::Update => ChangeOp::Update,
                ChangeKind::Delete => ChangeOp::Delete,
            };
            Ok(ChangeRecord {
                table: change.table.name,
                key,
                op,
            })
        })
        .collect()
}

async fn binlog_position(conn: &mut Conn, txn: Option<u64>) -> Result<BinlogPosition, SourceError> {
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(mysql_error(txn, "reading SHOW MASTER STATUS"))?;
    let missing = || SourceError::Mysql {
        txn,
        doing: "reading SHOW MASTER STATUS".into(),
        message: "no binlog file and position: is log-bin enabled on the server?".into(),
    };
    let row = row.ok_or_else(missing)?;
    let file = row.get_opt::<String, _>(0).and_then(Result::ok);
    let pos = row.get_opt::<u64, _>(1).and_then(Result::ok);
    match (file, pos) {
        (Some(file), Some(pos)) => Ok(BinlogPosition { file, pos }),
        _ => Err(missing()),
    }
}

/// Runs `op` as one transaction; on any failure rolls it back and says which change failed.
async fn run_transaction(conn: &mut Conn, op: &Operation) -> Result<(), SourceError> {
    let txn = Some(op.seq);
    conn.query_drop("BEGIN")
        .await
        .map_err(mysql_error(txn, "starting the transaction"))?;
    let outcome = async {
        for (index, change) in op.changes.iter().enumerate() {
            run_change(conn, op.seq, index, change).await?;
        }
        conn.query_drop("COMMIT")
            .await
            .map_err(mysql_error(txn, "committing"))
    }
    .await;
    if outcome.is_err() {
        // A broken connection rolls back on its own; the first error is the one worth reporting.
        let _ = conn.query_drop("ROLLBACK").await;
    }
    outcome
}

async fn run_change(
    conn: &mut Conn,
    txn: u64,
    index: usize,
    change: &RowChange,
) -> Result<(), SourceError> {
    let mut statement = String::new();
    sql::write_change_sql(&mut statement, change);
    let statement = statement.trim_end().trim_end_matches(';');
    if statement.is_empty() {
        return Err(SourceError::MalformedChange {
            txn,
            index,
            table: change.table.name,
            problem: format!("a {} without the images it needs", change.kind.as_str()),
        });
    }
    let doing = || {
        let quoted: String = statement.chars().take(QUOTED_SQL).collect();
        let ellipsis = if quoted.len() < statement.len() {
            "…"
        } else {
            ""
        };
        format!(
            "running change {index} on {}: {quoted}{ellipsis}",
            change.table.name
        )
    };
    conn.query_drop(statement)
        .await
        .map_err(|e| mysql_error(Some(txn), doing())(e))?;
    let affected = conn.affected_rows();
    if affected != 1 {
        return Err(SourceError::Mysql {
            txn: Some(txn),
            doing: doing(),
            message: format!("the statement touched {affected} rows, the change one"),
        });
    }
    Ok(())
}

async fn read_table(
    conn: &mut Conn,
    table: &'static TableDef,
) -> Result<std::collections::BTreeMap<i64, std::sync::Arc<Row>>, SourceError> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("`{}`", c.name))
        .collect();
    let query = format!(
        "SELECT {} FROM `{}` ORDER BY `{}`",
        columns.join(", "),
        table.name,
        table.columns[0].name
    );
    let doing = format!("reading table {}", table.name);
    let rows: Vec<mysql_async::Row> = conn
        .query(query)
        .await
        .map_err(mysql_error(None, doing.clone()))?;
    let mut out = std::collections::BTreeMap::new();
    for row in rows {
        let values: Row = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let raw = row.as_ref(i).unwrap_or(&mysql_async::Value::NULL);
                to_value(c.ty, raw).ok_or_else(|| SourceError::Mysql {
                    txn: None,
                    doing: doing.clone(),
                    message: format!("column {} holds {raw:?}, not a {:?}", c.name, c.ty),
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(Value::Int(key)) = values.first() {
            out.insert(*key, std::sync::Arc::new(values));
        }
    }
    Ok(out)
}

/// A column value as the generator types it. Handles the text protocol (bytes) and the binary one.
fn to_value(ty: SqlType, raw: &mysql_async::Value) -> Option<Value> {
    use mysql_async::Value as My;
    let text = match raw {
        My::NULL => return Some(Value::Null),
        My::Bytes(b) => Some(std::str::from_utf8(b).ok()?),
        _ => None,
    };
    Some(match ty {
        SqlType::Int => Value::Int(match raw {
            My::Int(i) => *i,
            My::UInt(u) => i64::try_from(*u).ok()?,
            _ => text?.parse().ok()?,
        }),
        SqlType::Boolean => Value::Bool(match raw {
            My::Int(i) => *i != 0,
            My::UInt(u) => *u != 0,
            _ => text?.parse::<i64>().ok()? != 0,
        }),
        SqlType::Double => Value::Double(match raw {
            My::Double(d) => *d,
            My::Float(f) => *f as f64,
            _ => text?.parse().ok()?,
        }),
        SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Text => Value::text(text?),
        SqlType::Date => match raw {
            My::Date(y, m, d, ..) => {
                Value::Date(days_from_civil(*y as i64, *m as u32, *d as u32) as i32)
            }
            _ => Value::Date(parse_date(text?)? as i32),
        },
        SqlType::Datetime => match raw {
            My::Date(y, mo, d, h, mi, s, us) => Value::Datetime(
                days_from_civil(*y as i64, *mo as u32, *d as u32) * 86_400_000
                    + (*h as i64 * 3600 + *mi as i64 * 60 + *s as i64) * 1000
                    + *us as i64 / 1000,
            ),
            _ => {
                let text = text?;
                let (date, time) = text.split_once(' ')?;
                Value::Datetime(parse_date(date)? * 86_400_000 + parse_time_us(time)? / 1000)
            }
        },
        SqlType::Time => match raw {
            My::Time(negative, days, h, m, s, us) => {
                let us = ((*days as i64 * 24 + *h as i64) * 3600 + *m as i64 * 60 + *s as i64)
                    * 1_000_000
                    + *us as i64;
                Value::Time(if *negative { -us } else { us })
            }
            _ => Value::Time(parse_time_us(text?)?),
        },
    })
}

/// Days since the epoch of `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    Some(days_from_civil(y, m, d))
}

/// Microseconds of `HH:MM:SS[.ffffff]`.
fn parse_time_us(text: &str) -> Option<i64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (hms, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = hms.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next()?.parse().ok()?;
    let micros = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").get(..6)?.parse().ok()?
    };
    let us = (h * 3600 + m * 60 + s) * 1_000_000 + micros;
    Some(if negative { -us } else { us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_parse_to_the_generator_types() {
        let bytes = |s: &str| mysql_async::Value::Bytes(s.as_bytes().to_vec());
        assert_eq!(
            to_value(SqlType::Datetime, &bytes("2026-01-02 01:02:03")),
            Some(Value::Datetime(
                crate::model::value::datetime_ms(2026, 1, 2) + 3_723_000
            ))
        );
        assert_eq!(
            to_value(SqlType::Date, &bytes("1970-01-02")),
            Some(Value::Date(1))
        );
        assert_eq!(
            to_value(SqlType::Time, &bytes("00:00:01.5")),
            Some(Value::Time(1_500_000))
        );
        assert_eq!(
            to_value(SqlType::Boolean, &bytes("1")),
            Some(Value::Bool(true))
        );
        assert_eq!(
            to_value(SqlType::Int, &mysql_async::Value::NULL),
            Some(Value::Null)
        );
        assert_eq!(to_value(SqlType::Int, &bytes("x")), None);
    }
}
