//! The local backend's sink: the ETL's output in a MariaDB schema of its own (`etl_sink` by default, created if
//! missing), apart from the OpenMRS database it is derived from.
//!
//! Three tables:
//! - `row_images`: per (table, key) the held change's source position, its origin (partition, offset), whether
//!   the row is live or a delete marker, and the live row's image (JSON with typed values);
//! - `flat_encounter`: the flat encounter table, one JSON document per (patient_id, encounter_id);
//! - `sink_offsets`: the next offset to read per (topic, partition).
//!
//! Which changes win is decided by the same code as [`super::MemorySink`] (`State::apply`) on an in-memory copy
//! of the tables; a batch's changed rows, flat rows and offsets are then written in one transaction. When that
//! transaction fails the copy has run ahead of the database, so it is read back from the database before the
//! next batch: both stay what the last committed batch left. [`Sink::offsets`] answers from memory, updated only
//! after a commit.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, Opts, Pool};

use super::{Batch, Held, Position, Sink, SinkError, SinkFuture, State};
use crate::model::flat::{FlatEncounter, FlatTable, RowImages};
use crate::model::{schema, Row, Value};

/// The schema the sink writes when none is given.
pub const DEFAULT_SINK_SCHEMA: &str = "etl_sink";

/// Multi-row statements are cut at about this size, well under MariaDB's default `max_allowed_packet`.
const STATEMENT_BYTES: usize = 1 << 20;

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS row_images (
  table_name VARCHAR(64) NOT NULL,
  row_key BIGINT NOT NULL,
  streamed TINYINT(1) NOT NULL,
  binlog_file VARCHAR(255) NOT NULL,
  binlog_pos BIGINT UNSIGNED NOT NULL,
  binlog_row INT UNSIGNED NOT NULL,
  live TINYINT(1) NOT NULL,
  origin_partition INT NOT NULL,
  origin_offset BIGINT NOT NULL,
  image LONGTEXT NULL,
  PRIMARY KEY (table_name, row_key)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS flat_encounter (
  patient_id BIGINT NOT NULL,
  encounter_id BIGINT NOT NULL,
  body LONGTEXT NOT NULL,
  PRIMARY KEY (patient_id, encounter_id)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS sink_offsets (
  topic VARCHAR(255) NOT NULL,
  `partition` INT NOT NULL,
  next_offset BIGINT NOT NULL,
  PRIMARY KEY (topic, `partition`)
) ENGINE=InnoDB;
";

/// The ETL's output in a MariaDB schema. See the module docs.
pub struct MySqlSink {
    name: String,
    pool: Pool,
    /// The tables as the last committed batch left them; `None` after a failed batch until read back.
    state: tokio::sync::Mutex<Option<State>>,
    /// Committed offsets, for [`Sink::offsets`].
    offsets: std::sync::Mutex<BTreeMap<(String, i32), i64>>,
}

impl std::fmt::Debug for MySqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MySqlSink {
    /// Connects to the server at `url` (`mysql://user@host:port/…`; the database in it is not used), creates
    /// `schema` and its tables if missing, and reads back what an earlier sink left there.
    pub async fn open(url: &str, schema: &str) -> Result<MySqlSink, SinkError> {
        let name = format!("mysql schema {schema}");
        let open_error = |doing: &str, e: &dyn std::fmt::Display| SinkError::Open {
            sink: name.clone(),
            reason: format!("{doing}: {e}"),
        };
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(open_error(
                "checking the schema name",
                &"use letters, digits and underscores",
            ));
        }
        let server = Opts::from_url(url).map_err(|e| open_error("parsing the URL", &e))?;
        // A connection naming a schema that does not exist yet is refused: create it from a bare one first.
        let bare = mysql_async::OptsBuilder::from_opts(server.clone()).db_name(None::<String>);
        let mut conn = Conn::new(bare)
            .await
            .map_err(|e| open_error(&format!("connecting to {url}"), &e))?;
        conn.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS `{schema}` CHARACTER SET utf8mb4"
        ))
        .await
        .map_err(|e| open_error("creating the schema", &e))?;
        conn.disconnect()
            .await
            .map_err(|e| open_error("disconnecting", &e))?;
        let opts: Opts = mysql_async::OptsBuilder::from_opts(server)
            .db_name(Some(schema))
            .into();
        let mut conn = Conn::new(opts.clone())
            .await
            .map_err(|e| open_error(&format!("connecting to schema {schema}"), &e))?;
        conn.query_drop(CREATE_TABLES)
            .await
            .map_err(|e| open_error("creating the sink tables", &e))?;
        let state = read_state(&mut conn)
            .await
            .map_err(|e| open_error("reading the sink tables", &e))?;
        conn.disconnect()
            .await
            .map_err(|e| open_error("disconnecting", &e))?;
        Ok(MySqlSink {
            name,
            pool: Pool::new(opts),
            offsets: std::sync::Mutex::new(state.offsets.clone()),
            state: tokio::sync::Mutex::new(Some(state)),
        })
    }

    fn error(&self, records: usize, reason: impl std::fmt::Display) -> SinkError {
        SinkError::Write {
            sink: self.name.clone(),
            records,
            reason: reason.to_string(),
        }
    }

    async fn apply_batch(&self, consumer: u32, batch: Batch) -> Result<(), SinkError> {
        let records = batch.records.len();
        let mut guard = self.state.lock().await;
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(|e| self.error(records, format!("connecting: {e}")))?;
        if guard.is_none() {
            let state = read_state(&mut conn)
                .await
                .map_err(|e| self.error(records, format!("reading back the sink tables: {e}")))?;
            *guard = Some(state);
        }
        let state = guard.as_mut().expect("read back above");
        let changed = state.apply(consumer, &batch);
        let statements = batch_statements(state, &changed.rows, &changed.flat, &batch);
        match write_in_one_transaction(&mut conn, &statements).await {
            Ok(()) => {
                *lock(&self.offsets) = state.offsets.clone();
                Ok(())
            }
            Err(e) => {
                // The copy holds the batch, the database does not: read it back before the next batch.
                *guard = None;
                if let Ok(state) = read_state(&mut conn).await {
                    *guard = Some(state);
                }
                Err(self.error(records, format!("the transaction was rolled back: {e}")))
            }
        }
    }

    /// The flat encounter table as stored in the sink's schema.
    pub async fn flat_table(&self) -> Result<FlatTable, SinkError> {
        let mut conn = self.conn().await?;
        let bodies: Vec<String> = conn
            .query("SELECT body FROM flat_encounter ORDER BY patient_id, encounter_id")
            .await
            .map_err(|e| self.error(0, format!("reading flat_encounter: {e}")))?;
        bodies
            .iter()
            .map(|body| {
                let row: FlatEncounter = serde_json::from_str(body)
                    .map_err(|e| self.error(0, format!("a flat_encounter row: {e}")))?;
                Ok(((row.patient_id, row.encounter_id), row))
            })
            .collect()
    }

    /// The latest image of every live row, as stored in the sink's schema.
    pub async fn images(&self) -> Result<RowImages, SinkError> {
        let mut conn = self.conn().await?;
        let state = read_state(&mut conn)
            .await
            .map_err(|e| self.error(0, format!("reading row_images: {e}")))?;
        Ok(state.images)
    }

    async fn conn(&self) -> Result<Conn, SinkError> {
        self.pool
            .get_conn()
            .await
            .map_err(|e| self.error(0, format!("connecting: {e}")))
    }

    /// Closes the sink's connections.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}

impl Sink for MySqlSink {
    fn apply(&self, consumer: u32, batch: Batch) -> SinkFuture<'_, ()> {
        Box::pin(self.apply_batch(consumer, batch))
    }

    fn offsets(&self) -> BTreeMap<(String, i32), i64> {
        lock(&self.offsets).clone()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Appends `text` as a quoted SQL string.
fn quoted(out: &mut String, text: &str) {
    Value::text(text).write_sql(out);
}

/// Multi-row statements with a common head, cut at [`STATEMENT_BYTES`].
struct Statements {
    done: Vec<String>,
    current: String,
}

impl Statements {
    fn row(&mut self, head: &str, row: impl FnOnce(&mut String)) {
        if self.current.is_empty() {
            self.current.push_str(head);
        } else {
            self.current.push(',');
        }
        self.current.push('(');
        row(&mut self.current);
        self.current.push(')');
        if self.current.len() > STATEMENT_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
        }
    }
}

/// The statements that store a batch: its changed rows, its flat rows, then its offsets.
fn batch_statements(
    state: &State,
    rows: &std::collections::BTreeSet<(&'static str, i64)>,
    flat: &std::collections::BTreeSet<(i64, i64)>,
    batch: &Batch,
) -> Vec<String> {
    let mut out = Statements {
        done: Vec::new(),
        current: String::new(),
    };
    const IMAGES: &str =
        "REPLACE INTO row_images (table_name, row_key, streamed, binlog_file, binlog_pos, \
                          binlog_row, live, origin_partition, origin_offset, image) VALUES ";
    for &(table, key) in rows {
        let Some(held) = state.held.get(&(table, key)) else {
            continue;
        };
        let image = state.images.get(table).and_then(|rows| rows.get(&key));
        out.row(IMAGES, |s| {
            quoted(s, table);
            let p = &held.position;
            let _ = write!(s, ", {key}, {}, ", u8::from(p.streamed));
            quoted(s, &p.file);
            let _ = write!(
                s,
                ", {}, {}, {}, {}, {}, ",
                p.pos,
                p.row,
                u8::from(held.live),
                held.origin.0,
                held.origin.1
            );
            match image.filter(|_| held.live) {
                Some(image) => quoted(s, &encode_image(image)),
                None => s.push_str("NULL"),
            }
        });
    }
    out.flush();
    let mut gone = Vec::new();
    for key in flat {
        match state.flat.get(key) {
            Some(row) => out.row(
                "REPLACE INTO flat_encounter (patient_id, encounter_id, body) VALUES ",
                |s| {
                    let _ = write!(s, "{}, {}, ", key.0, key.1);
                    quoted(s, &serde_json::to_string(row).unwrap_or_default());
                },
            ),
            None => gone.push(*key),
        }
    }
    out.flush();
    for chunk in gone.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|(p, e)| format!("({p}, {e})")).collect();
        out.done.push(format!(
            "DELETE FROM flat_encounter WHERE (patient_id, encounter_id) IN ({})",
            keys.join(", ")
        ));
    }
    for (topic, partition, next) in &batch.next_offsets {
        out.row(
            "REPLACE INTO sink_offsets (topic, `partition`, next_offset) VALUES ",
            |s| {
                quoted(s, topic);
                let _ = write!(s, ", {partition}, {next}");
            },
        );
    }
    out.flush();
    out.done
}

async fn write_in_one_transaction(
    conn: &mut Conn,
    statements: &[String],
) -> Result<(), mysql_async::Error> {
    conn.query_drop("BEGIN").await?;
    let outcome = async {
        for statement in statements {
            conn.query_drop(statement.as_str()).await?;
        }
        conn.query_drop("COMMIT").await
    }
    .await;
    if outcome.is_err() {
        // A broken connection rolls back on its own; the first error is the one worth reporting.
        let _ = conn.query_drop("ROLLBACK").await;
    }
    outcome
}

/// Why the stored tables could not be read back.
#[derive(Debug)]
enum ReadError {
    Mysql(mysql_async::Error),
    Corrupt(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Mysql(e) => write!(f, "{e}"),
            ReadError::Corrupt(what) => write!(f, "{what}"),
        }
    }
}

fn column<T: FromValue>(row: &mysql_async::Row, index: usize) -> Result<T, ReadError> {
    match row.get_opt::<T, _>(index) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(ReadError::Corrupt(format!("column {index}: {e}"))),
        None => Err(ReadError::Corrupt(format!("column {index} is missing"))),
    }
}

/// What the sink's tables hold, as the in-memory state `State::apply` works on.
async fn read_state(conn: &mut Conn) -> Result<State, ReadError> {
    let rows: Vec<mysql_async::Row> = conn
        .query(
            "SELECT table_name, row_key, streamed, binlog_file, binlog_pos, binlog_row, live, \
             origin_partition, origin_offset, image FROM row_images",
        )
        .await
        .map_err(ReadError::Mysql)?;
    let mut held = HashMap::new();
    let mut images = RowImages::new();
    for row in &rows {
        let name: String = column(row, 0)?;
        let table = schema::table(&name)
            .ok_or_else(|| ReadError::Corrupt(format!("row_images names an unknown table {name}")))?
            .name;
        let key: i64 = column(row, 1)?;
        let live: bool = column::<i64>(row, 6)? != 0;
        held.insert(
            (table, key),
            Held {
                position: Position {
                    streamed: column::<i64>(row, 2)? != 0,
                    file: column(row, 3)?,
                    pos: column(row, 4)?,
                    row: column(row, 5)?,
                },
                live,
                origin: (column(row, 7)?, column(row, 8)?),
            },
        );
        let image: Option<String> = column(row, 9)?;
        if let (true, Some(image)) = (live, image) {
            let image = decode_image(&image)
                .map_err(|e| ReadError::Corrupt(format!("the image of {table} row {key}: {e}")))?;
            images
                .entry(table)
                .or_default()
                .insert(key, Arc::new(image));
        }
    }
    let offsets: Vec<(String, i32, i64)> = conn
        .query("SELECT topic, `partition`, next_offset FROM sink_offsets")
        .await
        .map_err(ReadError::Mysql)?;
    let offsets = offsets
        .into_iter()
        .map(|(topic, partition, next)| ((topic, partition), next))
        .collect();
    Ok(State::restore(held, images, offsets))
}

/// A row as JSON that keeps each value's type: `null`, or a one-key object (`{"i":5}`, `{"s":"text"}`; doubles
/// as their bits, so every value, NaN included, reads back identical).
fn encode_image(row: &Row) -> String {
    use serde_json::{json, Value as Json};
    let values: Vec<Json> = row
        .iter()
        .map(|v| match v {
            Value::Null => Json::Null,
            Value::Int(i) => json!({ "i": i }),
            Value::Bool(b) => json!({ "b": b }),
            Value::Double(d) => json!({ "f": d.to_bits() }),
            Value::Text(t) => json!({ "s": &**t }),
            Value::Date(d) => json!({ "d": d }),
            Value::Datetime(ms) => json!({ "dt": ms }),
            Value::Time(us) => json!({ "t": us }),
        })
        .collect();
    Json::Array(values).to_string()
}

fn decode_image(text: &str) -> Result<Row, String> {
    use serde_json::Value as Json;
    let values: Vec<Json> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    values
        .iter()
        .map(|v| {
            let Some(object) = v.as_object() else {
                return if v.is_null() {
                    Ok(Value::Null)
                } else {
                    Err(format!("{v} is not a typed value"))
                };
            };
            let (tag, inner) = object
                .iter()
                .next()
                .filter(|_| object.len() == 1)
                .ok_or_else(|| format!("{v} is not a typed value"))?;
            let int = || inner.as_i64().ok_or_else(|| format!("{v}: not an integer"));
            Ok(match tag.as_str() {
                "i" => Value::Int(int()?),
                "b" => Value::Bool(
                    inner
                        .as_bool()
                        .ok_or_else(|| format!("{v}: not a boolean"))?,
                ),
                "f" => Value::Double(f64::from_bits(
                    inner
                        .as_u64()
                        .ok_or_else(|| format!("{v}: not double bits"))?,
                )),
                "s" => Value::text(inner.as_str().ok_or_else(|| format!("{v}: not a string"))?),
                "d" => Value::Date(i32::try_from(int()?).map_err(|e| e.to_string())?),
                "dt" => Value::Datetime(int()?),
                "t" => Value::Time(int()?),
                other => return Err(format!("unknown value tag {other}")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_round_trip_with_their_types() {
        let row: Row = vec![
            Value::Int(7),
            Value::Null,
            Value::Bool(true),
            Value::Double(61.5),
            Value::Double(f64::NAN),
            Value::text("O'Brien \\ \"x\""),
            Value::Date(-3),
            Value::Datetime(1_700_000_000_123),
            Value::Time(3_600_000_000),
        ];
        let back = decode_image(&encode_image(&row)).unwrap();
        assert_eq!(back.len(), row.len());
        assert_eq!(back[..4], row[..4]);
        assert!(matches!(back[4], Value::Double(d) if d.is_nan()));
        assert_eq!(back[5..], row[5..]);
        assert!(decode_image("[{\"x\":1}]").is_err());
    }
}
