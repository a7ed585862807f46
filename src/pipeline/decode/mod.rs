//! Debezium change records (JsonConverter, with or without schemas) back into typed rows.
//!
//! The decoder reads what a consumer can read and nothing more: the record's key, its value, and where it sat
//! (topic, partition, offset — only to say where a bad record was). Both connector flavours decode the same
//! way; they differ only in `source.connector` and the GTID spelling, which are carried through untouched.
//!
//! Column values are typed by the table's [`TableDef`], not by the JSON: Debezium writes TINYINT(1) as an
//! integer, DATE as days and DATETIME as epoch milliseconds, and only the column type says which is which. So
//! a decoded image is equal, value for value, to the source row it was captured from.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use crate::history::{ChangeOp, ConsumedChange, Interner, SourceRef};
use crate::model::schema::{self, SqlType, TableDef};
use crate::model::{Row, Value};

mod typed;

/// One decoded change-topic record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A row change: what the record says happened, and the row image it leaves (the `after` image; the
    /// `before` image for a delete, so the sink knows which encounters the deleted row belonged to).
    Change {
        change: ConsumedChange,
        image: Arc<Row>,
    },
    /// The null-valued record that follows a delete.
    Tombstone { table: &'static str, key: i64 },
}

impl Decoded {
    pub fn table(&self) -> &'static str {
        match self {
            Decoded::Change { change, .. } => change.table,
            Decoded::Tombstone { table, .. } => table,
        }
    }

    pub fn key(&self) -> i64 {
        match self {
            Decoded::Change { change, .. } => change.key,
            Decoded::Tombstone { key, .. } => *key,
        }
    }
}

/// A record the ETL cannot use, and where it was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot decode the record at {topic}/{partition}@{offset}: {problem}")]
pub struct DecodeError {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub problem: DecodeProblem,
}

/// What was wrong with a record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeProblem {
    #[error("the record has no key (change records are keyed by the row's primary key)")]
    MissingKey,
    #[error("the {part} is not JSON: {reason}")]
    NotJson { part: &'static str, reason: String },
    #[error("the {part} is not a Debezium {expected}: {reason}")]
    Shape {
        part: &'static str,
        expected: &'static str,
        reason: String,
    },
    #[error("table `{table}` is not one the harness models (from {from})")]
    UnknownTable { table: String, from: &'static str },
    #[error("op `{op}` is not a row change the ETL applies (expected r, c, u or d)")]
    UnsupportedOp { op: String },
    #[error("op `{op}` needs a `{image}` image, but it is null")]
    MissingImage {
        op: &'static str,
        image: &'static str,
    },
    #[error("column `{table}.{column}` is missing from the {image} image")]
    MissingColumn {
        table: &'static str,
        column: &'static str,
        image: &'static str,
    },
    #[error("column `{table}.{column}` ({ty:?}) cannot hold {found}")]
    BadValue {
        table: &'static str,
        column: &'static str,
        ty: SqlType,
        found: String,
    },
    #[error("the key says {key_column}={key} but the row image says {image_key}")]
    KeyMismatch {
        key_column: &'static str,
        key: i64,
        image_key: String,
    },
}

/// The envelope, found either under `payload` (schemas enabled, Connect's default) or at the top level
/// (schemas disabled). The fields are listed twice rather than flattened: flattening would buffer the large
/// `schema` object, which serde otherwise skips without building anything. The images are kept as the raw JSON
/// text they are (borrowed, not copied) until the op says which one the change needs.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow)]
    payload: Option<Envelope<'a>>,
    #[serde(borrow)]
    before: Option<&'a RawValue>,
    #[serde(borrow)]
    after: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<Source<'a>>,
    op: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    before: Option<&'a RawValue>,
    #[serde(borrow)]
    after: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<Source<'a>>,
    op: Option<String>,
}

#[derive(Deserialize)]
struct Source<'a> {
    ts_ms: i64,
    /// A string in Debezium 2.x/3.x (`"true"`, `"last"`, `"false"`…), a boolean in older versions.
    snapshot: Option<Json>,
    #[serde(borrow)]
    table: Option<Cow<'a, str>>,
    #[serde(borrow)]
    file: Cow<'a, str>,
    pos: u64,
    row: Option<u32>,
    #[serde(borrow)]
    gtid: Option<Cow<'a, str>>,
}

/// Decodes one record of a change topic. `value` is `None` for a tombstone.
pub fn decode(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Decoded, DecodeError> {
    decode_inner(topic, key, value).map_err(|problem| DecodeError {
        topic: topic.to_string(),
        partition,
        offset,
        problem,
    })
}

fn decode_inner(
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Decoded, DecodeProblem> {
    let key = key.ok_or(DecodeProblem::MissingKey)?;
    let Some(value) = value else {
        // A tombstone carries no envelope: its table is the topic's (`<prefix>.<db>.<table>`).
        let name = topic.rsplit('.').next().unwrap_or(topic);
        let table = schema::table(name).ok_or_else(|| DecodeProblem::UnknownTable {
            table: name.to_string(),
            from: "the topic name",
        })?;
        return Ok(Decoded::Tombstone {
            table: table.name,
            key: decode_key(table, key)?,
        });
    };
    let envelope = envelope(topic, value)?;
    let op_letter = envelope.op.as_deref().ok_or_else(|| DecodeProblem::Shape {
        part: "value",
        expected: "change envelope",
        reason: "no `op` field".into(),
    })?;
    let op = ChangeOp::from_letter(op_letter).ok_or_else(|| DecodeProblem::UnsupportedOp {
        op: op_letter.to_string(),
    })?;
    let source = envelope.source.ok_or_else(|| DecodeProblem::Shape {
        part: "value",
        expected: "change envelope",
        reason: "no `source` block".into(),
    })?;
    let table_name = source
        .table
        .as_deref()
        .unwrap_or_else(|| topic.rsplit('.').next().unwrap_or(topic));
    let table = schema::table(table_name).ok_or_else(|| DecodeProblem::UnknownTable {
        table: table_name.to_string(),
        from: "source.table",
    })?;
    let key = decode_key(table, key)?;
    let (image_name, fields) = match op {
        ChangeOp::Delete => ("before", envelope.before),
        _ => ("after", envelope.after),
    };
    let fields = fields.ok_or(DecodeProblem::MissingImage {
        op: op.letter(),
        image: image_name,
    })?;
    let image = decode_row(table, fields, image_name)?;
    let pk = table.primary_key();
    if let [pk] = pk[..] {
        if image[pk] != Value::Int(key) {
            return Err(DecodeProblem::KeyMismatch {
                key_column: table.columns[pk].name,
                key,
                image_key: format!("{:?}", image[pk]),
            });
        }
    }
    let snapshot = match &source.snapshot {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) => s != "false",
        Some(other) => {
            return Err(DecodeProblem::Shape {
                part: "value",
                expected: "source block",
                reason: format!("`snapshot` is {other}"),
            })
        }
    };
    Ok(Decoded::Change {
        change: ConsumedChange {
            table: table.name,
            key,
            op,
            source: SourceRef {
                snapshot,
                file: SHARED.with(|s| s.borrow_mut().0.get(&source.file)),
                pos: source.pos,
                row: source.row.unwrap_or(0),
                gtid: source
                    .gtid
                    .map(|g| SHARED.with(|s| s.borrow_mut().1.get(&g))),
            },
            source_ts_ms: source.ts_ms,
        },
        image: Arc::new(image),
    })
}

/// What a value of JsonConverter with schemas starts with: the schema, then the payload's key.
const SCHEMA_KEY: &[u8] = br#"{"schema":"#;
const PAYLOAD_KEY: &[u8] = br#","payload":"#;

thread_local! {
    /// The binlog files and GTIDs this thread decoded last: consecutive records share them (history::Interner).
    static SHARED: std::cell::RefCell<(Interner, Interner)> =
        std::cell::RefCell::new((Interner::new(16), Interner::new(4)));
    /// Per topic, the bytes before the payload of the last value fully parsed: `{"schema":…,"payload":`. Every
    /// value of a table carries the same schema, so a value that starts with these bytes (compared byte for
    /// byte) needs only its payload parsed; one that does not is parsed whole and teaches the new prefix (a
    /// schema change). Per thread, so consumers never contend for it.
    static PREFIXES: std::cell::RefCell<std::collections::HashMap<String, Vec<u8>>> =
        Default::default();
}

/// The change envelope of a value: from its payload alone when the topic's schema bytes are known and this
/// value starts with them, else from the whole value.
fn envelope<'a>(topic: &str, value: &'a [u8]) -> Result<Envelope<'a>, DecodeProblem> {
    let known = PREFIXES.with(|p| {
        p.borrow()
            .get(topic)
            .and_then(|prefix| value.starts_with(prefix).then_some(prefix.len()))
    });
    if let Some(start) = known {
        let body = &value[start..];
        // The payload, then the top-level object's closing brace (JsonConverter writes no whitespace).
        if let Some(end) = body.iter().rposition(|b| *b == b'}') {
            if let Ok(envelope) = serde_json::from_slice::<Envelope>(&body[..end]) {
                return Ok(envelope);
            }
        }
        // Not the shape expected after all: the whole value, for the same answer or error as always.
    }
    let top: Top = serde_json::from_slice(value).map_err(|e| json_problem("value", e))?;
    Ok(match top.payload {
        Some(envelope) => {
            if let Some(prefix) = schema_prefix(value) {
                PREFIXES.with(|p| p.borrow_mut().insert(topic.to_owned(), prefix.to_vec()));
            }
            envelope
        }
        None => Envelope {
            before: top.before,
            after: top.after,
            source: top.source,
            op: top.op,
        },
    })
}

/// `{"schema":<one JSON value>,"payload":` at the start of `value`, found by parsing the schema once.
fn schema_prefix(value: &[u8]) -> Option<&[u8]> {
    let rest = value.strip_prefix(SCHEMA_KEY)?;
    let mut values =
        serde_json::Deserializer::from_slice(rest).into_iter::<serde::de::IgnoredAny>();
    values.next()?.ok()?;
    let end = SCHEMA_KEY.len() + values.byte_offset();
    value[end..]
        .starts_with(PAYLOAD_KEY)
        .then(|| &value[..end + PAYLOAD_KEY.len()])
}

fn json_problem(part: &'static str, e: serde_json::Error) -> DecodeProblem {
    if e.is_data() {
        DecodeProblem::Shape {
            part,
            expected: "change envelope",
            reason: e.to_string(),
        }
    } else {
        DecodeProblem::NotJson {
            part,
            reason: e.to_string(),
        }
    }
}

/// The key's single primary-key field, from `{"schema":…,"payload":{…}}` or a bare `{…}`.
fn decode_key(table: &'static TableDef, key: &[u8]) -> Result<i64, DecodeProblem> {
    if let [pk] = table.primary_key()[..] {
        if let Some(found) = typed::key(table.columns[pk].name, key) {
            return Ok(found);
        }
    }
    let json: Json = serde_json::from_slice(key).map_err(|e| DecodeProblem::NotJson {
        part: "key",
        reason: e.to_string(),
    })?;
    let fields = match json.get("payload") {
        Some(payload) if json.get("schema").is_some() => payload,
        _ => &json,
    };
    let shape = |reason: String| DecodeProblem::Shape {
        part: "key",
        expected: "primary key struct",
        reason,
    };
    let fields = fields
        .as_object()
        .ok_or_else(|| shape(format!("expected an object, found {fields}")))?;
    let pk = match table.primary_key()[..] {
        [pk] => &table.columns[pk],
        _ => {
            return Err(shape(format!(
                "table `{}` has no single-column primary key",
                table.name
            )))
        }
    };
    let value = fields
        .get(pk.name)
        .ok_or_else(|| shape(format!("no `{}` field", pk.name)))?;
    value
        .as_i64()
        .ok_or_else(|| shape(format!("`{}` is {value}, not an integer", pk.name)))
}

/// A row image in the table's column order, every value typed by its column: read straight into the row
/// ([`typed::row`]), or, for an image that reader does not take, through a `serde_json::Map` for the precise
/// problem.
fn decode_row(
    table: &'static TableDef,
    fields: &RawValue,
    image: &'static str,
) -> Result<Row, DecodeProblem> {
    match typed::row(table, fields) {
        Some(row) => Ok(row),
        None => generic_row(table, fields, image),
    }
}

/// The row image through a `serde_json::Map`: slower, and it says what is wrong with an image.
fn generic_row(
    table: &'static TableDef,
    fields: &RawValue,
    image: &'static str,
) -> Result<Row, DecodeProblem> {
    let fields: Map<String, Json> =
        serde_json::from_str(fields.get()).map_err(|e| DecodeProblem::Shape {
            part: "value",
            expected: "row image",
            reason: format!("the `{image}` image: {e}"),
        })?;
    table
        .columns
        .iter()
        .map(|column| {
            let json = fields
                .get(column.name)
                .ok_or(DecodeProblem::MissingColumn {
                    table: table.name,
                    column: column.name,
                    image,
                })?;
            decode_value(column.ty, json).ok_or_else(|| DecodeProblem::BadValue {
                table: table.name,
                column: column.name,
                ty: column.ty,
                found: json.to_string(),
            })
        })
        .collect()
}

/// Debezium's default mapping read backwards: TINYINT(1) is int16 0/1, DATE is `io.debezium.time.Date` (days),
/// DATETIME is `io.debezium.time.Timestamp` (epoch ms, no zone shift), TIME is `io.debezium.time.MicroTime`.
fn decode_value(ty: SqlType, json: &Json) -> Option<Value> {
    if json.is_null() {
        return Some(Value::Null);
    }
    Some(match ty {
        SqlType::Int => Value::Int(json.as_i64()?),
        SqlType::Boolean => match json {
            Json::Bool(b) => Value::Bool(*b),
            _ => match json.as_i64()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return None,
            },
        },
        SqlType::Double => Value::Double(json.as_f64()?),
        SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Text => Value::text(json.as_str()?),
        SqlType::Date => Value::Date(i32::try_from(json.as_i64()?).ok()?),
        SqlType::Datetime => Value::Datetime(json.as_i64()?),
        SqlType::Time => Value::Time(json.as_i64()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = br#"{"obs_id":7}"#;

    /// The typed reader takes every real image and key, and agrees with the generic path on them and on images
    /// changed in every way it must either read the same or leave to the generic path.
    #[test]
    fn the_typed_reader_agrees_with_the_generic_path() {
        let records = real_records();
        let mut images = 0;
        for (topic, key, value) in &records {
            let name = topic.rsplit('.').next().unwrap();
            let table = schema::table(name).expect("a modeled table");
            let pk = table.columns[table.primary_key()[0]].name;
            let generic_key: Json = serde_json::from_str(key).unwrap();
            assert_eq!(
                typed::key(pk, key.as_bytes()),
                generic_key["payload"][pk].as_i64(),
                "{key}"
            );
            let value: Json = serde_json::from_str(value).unwrap();
            for side in ["before", "after"] {
                let Some(image) = value["payload"][side].as_object() else {
                    continue;
                };
                images += 1;
                let raw = |m: &Map<String, Json>| {
                    RawValue::from_string(serde_json::to_string(m).unwrap()).unwrap()
                };
                let taken = typed::row(table, &raw(image));
                assert_eq!(
                    taken.as_ref(),
                    generic_row(table, &raw(image), side).as_ref().ok(),
                    "{topic} {side}"
                );
                assert!(taken.is_some(), "the typed reader left {topic} {side}");
                let mut variants: Vec<Map<String, Json>> = Vec::new();
                for (i, column) in table.columns.iter().enumerate() {
                    for replace in [
                        Json::Null,
                        Json::from("x\"\\u00e9\n"),
                        Json::from(1.5),
                        Json::from(true),
                        Json::from(0),
                        Json::from(2),
                        Json::from(u64::MAX),
                        Json::from(i64::MIN),
                        Json::Array(vec![]),
                    ] {
                        let mut v = image.clone();
                        v.insert(column.name.to_owned(), replace);
                        variants.push(v);
                    }
                    let mut v = image.clone();
                    v.remove(column.name);
                    variants.push(v);
                    if i == 0 {
                        let mut v = image.clone();
                        v.insert("not_a_column".into(), Json::from(1));
                        variants.push(v);
                    }
                }
                for v in &variants {
                    let typed = typed::row(table, &raw(v));
                    let generic = generic_row(table, &raw(v), side);
                    match (&typed, &generic) {
                        (Some(t), Ok(g)) => assert_eq!(t, g, "{v:?}"),
                        (Some(t), Err(e)) => panic!("typed read {t:?} where generic says {e}"),
                        (None, _) => {}
                    }
                }
                // Reordered fields and a repeated field (the last one counts) read the same both ways.
                let reversed = format!(
                    "{{{}}}",
                    image
                        .iter()
                        .rev()
                        .map(|(k, v)| format!("{}:{v}", Json::from(k.as_str())))
                        .chain(std::iter::once(format!(
                            r#""{pk}":-1,"{pk}":{}"#,
                            image[pk]
                        )))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let reversed = RawValue::from_string(reversed).unwrap();
                assert_eq!(
                    typed::row(table, &reversed),
                    generic_row(table, &reversed, side).ok()
                );
                assert!(typed::row(table, &reversed).is_some());
            }
        }
        assert!(images >= 10, "{images} images");
    }

    #[test]
    fn bad_records_are_typed_errors_with_their_place() {
        let e = decode("dbserver1.openmrs.obs", 3, 41, None, Some(b"{}")).unwrap_err();
        assert_eq!((e.partition, e.offset), (3, 41));
        assert_eq!(e.problem, DecodeProblem::MissingKey);
        let e = decode("t.openmrs.obs", 0, 0, Some(KEY), Some(b"{not json")).unwrap_err();
        assert!(matches!(
            e.problem,
            DecodeProblem::NotJson { part: "value", .. }
        ));
        let e = decode("t.openmrs.obs", 0, 0, Some(KEY), Some(br#"{"op":"t"}"#)).unwrap_err();
        assert!(matches!(e.problem, DecodeProblem::UnsupportedOp { .. }));
        let e = decode("t.openmrs.nope", 0, 0, Some(KEY), None).unwrap_err();
        assert!(matches!(e.problem, DecodeProblem::UnknownTable { .. }));
        let e = decode("t.openmrs.obs", 0, 0, Some(br#"{"obs_id":"x"}"#), None).unwrap_err();
        assert!(matches!(
            e.problem,
            DecodeProblem::Shape { part: "key", .. }
        ));
        assert!(e.to_string().contains("t.openmrs.obs/0@0"), "{e}");
    }

    /// Every value of the real Debezium fixtures (topic, key, value).
    fn real_records() -> Vec<(String, String, String)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/debezium/mariadb");
        let mut out = Vec::new();
        let mut dirs: Vec<_> = std::fs::read_dir(root)
            .expect("fixtures")
            .flatten()
            .collect();
        dirs.sort_by_key(|d| d.file_name());
        for dir in dirs
            .iter()
            .filter(|d| d.file_name().to_string_lossy().contains(".openmrs."))
        {
            let mut files: Vec<_> = std::fs::read_dir(dir.path())
                .expect("a topic")
                .flatten()
                .collect();
            files.sort_by_key(|f| f.file_name());
            for f in files {
                let record: Json =
                    serde_json::from_str(&std::fs::read_to_string(f.path()).expect("a record"))
                        .expect("JSON");
                if let (Some(t), Some(k), Some(v)) = (
                    record["topic"].as_str(),
                    record["key"].as_str(),
                    record["value"].as_str(),
                ) {
                    out.push((t.to_owned(), k.to_owned(), v.to_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn a_known_schema_is_skipped_byte_for_byte_and_a_changed_one_parsed_whole() {
        let records = real_records();
        assert!(records.len() >= 10, "{} fixture records", records.len());
        let full = |t: &str, k: &str, v: &[u8]| {
            PREFIXES.with(|p| p.borrow_mut().clear());
            decode(t, 0, 0, Some(k.as_bytes()), Some(v))
        };
        for (topic, key, value) in &records {
            let whole = full(topic, key, value.as_bytes());
            let prefix = PREFIXES.with(|p| p.borrow().get(topic.as_str()).cloned());
            let prefix = prefix.unwrap_or_else(|| panic!("no schema prefix learned for {topic}"));
            assert!(prefix.ends_with(PAYLOAD_KEY) && value.as_bytes().starts_with(&prefix));
            // The second time only the payload is parsed: the same decoding.
            let fast = decode(topic, 0, 0, Some(key.as_bytes()), Some(value.as_bytes()));
            assert_eq!(fast, whole, "{topic}");
            // A schema that differs by one byte is not taken for the known one.
            let changed = value.replacen(r#""optional":false"#, r#""optional":true"#, 1);
            assert_ne!(&changed, value);
            let got = decode(topic, 0, 0, Some(key.as_bytes()), Some(changed.as_bytes()));
            assert_eq!(got, full(topic, key, changed.as_bytes()), "{topic}");
            // A payload that is not JSON after a known schema gets the whole value's error.
            decode(topic, 0, 0, Some(key.as_bytes()), Some(value.as_bytes()))
                .expect("learns again");
            let broken = format!("{}{{\"op\":}}}}", String::from_utf8_lossy(&prefix));
            let fast_error = decode(topic, 0, 0, Some(key.as_bytes()), Some(broken.as_bytes()));
            assert_eq!(fast_error, full(topic, key, broken.as_bytes()), "{topic}");
            assert!(fast_error.is_err());
        }
    }

    #[test]
    fn schemaless_tombstone_names_its_table_by_topic() {
        let d = decode("p.db.obs", 0, 5, Some(KEY), None).unwrap();
        assert_eq!(
            d,
            Decoded::Tombstone {
                table: "obs",
                key: 7
            }
        );
    }

    #[test]
    fn booleans_accept_only_zero_and_one() {
        assert_eq!(
            decode_value(SqlType::Boolean, &Json::from(1)),
            Some(Value::Bool(true))
        );
        assert_eq!(decode_value(SqlType::Boolean, &Json::from(2)), None);
        assert_eq!(decode_value(SqlType::Int, &Json::from(1.5)), None);
        assert_eq!(
            decode_value(SqlType::Date, &Json::from(i64::MAX)),
            None,
            "a DATE outside i32 days is refused, not wrapped"
        );
    }
}
