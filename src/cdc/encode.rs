//! Debezium change events as JsonConverter writes them (schemas on): the key and the envelope value of a row
//! change, and the three context headers.
//!
//! Each table's key schema, envelope schema and column-name fragments are rendered once ([`TableCodec`]); a record
//! is then one buffer: the pre-rendered schema, and the payload written value by value. That keeps encoding well
//! above the pipeline's rate although every value carries its full schema, as Debezium's do.

use std::fmt::Write as _;

use bytes::Bytes;

use super::json::{Json, SchemaField};
use crate::history::ChangeOp;
use crate::model::schema::{ColumnDef, SqlType, TableDef};
use crate::model::value::write_json_string;
use crate::model::{Row, Value};
use crate::scenario::Connector;

/// The Debezium release whose output the capture reproduces (the fixtures' version).
pub const DEBEZIUM_VERSION: &str = "3.2.0.Final";

/// The `snapshot` field of the source block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotMark {
    False,
    True,
    First,
    FirstInDataCollection,
    LastInDataCollection,
    Last,
}

impl SnapshotMark {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SnapshotMark::False => "false",
            SnapshotMark::True => "true",
            SnapshotMark::First => "first",
            SnapshotMark::FirstInDataCollection => "first_in_data_collection",
            SnapshotMark::LastInDataCollection => "last_in_data_collection",
            SnapshotMark::Last => "last",
        }
    }
}

/// What the source block of one record says.
#[derive(Debug, Clone)]
pub(crate) struct SourceInfo<'a> {
    /// ms since the epoch: the commit (streaming) or the snapshot (reads, DDL).
    pub ts_ms: i64,
    pub snapshot: SnapshotMark,
    pub db: &'a str,
    pub table: Option<&'a str>,
    pub server_id: u32,
    pub gtid: Option<&'a str>,
    pub file: &'a str,
    pub pos: u64,
    pub row: u32,
}

/// The connector-wide parts of every record.
#[derive(Debug, Clone)]
pub(crate) struct Flavour {
    pub connector: Connector,
    pub prefix: String,
    pub database: String,
    /// `"version":"3.2.0.Final","connector":"mariadb","name":"dbserver1",` — the source block's constant start.
    source_head: String,
}

impl Flavour {
    pub(crate) fn new(connector: Connector, prefix: &str, database: &str) -> Flavour {
        let mut source_head = String::from("\"version\":");
        write_json_string(&mut source_head, DEBEZIUM_VERSION);
        source_head.push_str(",\"connector\":");
        write_json_string(&mut source_head, connector.name());
        source_head.push_str(",\"name\":");
        write_json_string(&mut source_head, prefix);
        source_head.push(',');
        Flavour {
            connector,
            prefix: prefix.to_string(),
            database: database.to_string(),
            source_head,
        }
    }

    /// `io.debezium.connector.<mysql|mariadb>.<what>`
    pub(crate) fn schema_name(&self, what: &str) -> String {
        format!("io.debezium.connector.{}.{what}", self.connector.name())
    }

    /// The three headers Debezium 3.x puts on every record.
    pub(crate) fn headers(&self) -> Vec<(String, Option<Bytes>)> {
        vec![
            (
                "__debezium.context.connectorLogicalName".into(),
                Some(Bytes::from(self.prefix.clone())),
            ),
            (
                "__debezium.context.connectorName".into(),
                Some(Bytes::from_static(self.connector.name().as_bytes())),
            ),
            (
                "__debezium.context.taskId".into(),
                Some(Bytes::from_static(b"0")),
            ),
        ]
    }

    /// The source block's schema: the same fields, in the same order, for both connectors.
    pub(crate) fn source_schema(&self) -> SchemaField {
        let s = |ty, optional, f: &str| SchemaField::new(ty, optional, f);
        SchemaField::structure(
            vec![
                s("string", false, "version"),
                s("string", false, "connector"),
                s("string", false, "name"),
                s("int64", false, "ts_ms"),
                s("string", true, "snapshot")
                    .named("io.debezium.data.Enum", Some(1))
                    .parameters(Json::Obj(vec![(
                        "allowed",
                        Json::str(
                            "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental",
                        ),
                    )]))
                    .default(Json::str("false")),
                s("string", false, "db"),
                s("string", true, "sequence"),
                s("int64", true, "ts_us"),
                s("int64", true, "ts_ns"),
                s("string", true, "table"),
                s("int64", false, "server_id"),
                s("string", true, "gtid"),
                s("string", false, "file"),
                s("int64", false, "pos"),
                s("int32", false, "row"),
                s("int64", true, "thread"),
                s("string", true, "query"),
            ],
            false,
        )
        .named(self.schema_name("Source"), Some(1))
        .field("source")
    }

    /// Appends the source block (`{...}`).
    pub(crate) fn write_source(&self, out: &mut String, s: &SourceInfo<'_>) {
        out.push('{');
        out.push_str(&self.source_head);
        let _ = write!(out, "\"ts_ms\":{},\"snapshot\":\"", s.ts_ms);
        out.push_str(s.snapshot.as_str());
        out.push_str("\",\"db\":");
        write_json_string(out, s.db);
        let _ = write!(
            out,
            ",\"sequence\":null,\"ts_us\":{},\"ts_ns\":{},\"table\":",
            s.ts_ms.saturating_mul(1_000),
            s.ts_ms.saturating_mul(1_000_000)
        );
        match s.table {
            Some(t) => write_json_string(out, t),
            None => out.push_str("null"),
        }
        let _ = write!(out, ",\"server_id\":{},\"gtid\":", s.server_id);
        match s.gtid {
            Some(g) => write_json_string(out, g),
            None => out.push_str("null"),
        }
        out.push_str(",\"file\":");
        write_json_string(out, s.file);
        let _ = write!(
            out,
            ",\"pos\":{},\"row\":{},\"thread\":null,\"query\":null}}",
            s.pos, s.row
        );
    }
}

/// The Connect schema of one column, with Debezium's type mapping.
fn column_schema(c: &ColumnDef) -> SchemaField {
    let (ty, logical) = match c.ty {
        SqlType::Int => ("int32", None),
        SqlType::Boolean => ("int16", None),
        SqlType::Double => ("double", None),
        SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Text => ("string", None),
        SqlType::Date => ("int32", Some("io.debezium.time.Date")),
        SqlType::Datetime => ("int64", Some("io.debezium.time.Timestamp")),
        SqlType::Time => ("int64", Some("io.debezium.time.MicroTime")),
    };
    let mut f = SchemaField::new(ty, c.nullable, c.name);
    if let Some(name) = logical {
        f = f.named(name, Some(1));
    }
    if let Some(d) = c.default {
        let value = match c.ty {
            SqlType::Int | SqlType::Boolean => d.parse::<i64>().ok().map(Json::Int),
            SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Text => {
                Some(Json::str(d.trim_matches('\'')))
            }
            _ => None,
        };
        if let Some(v) = value {
            f = f.default(v);
        }
    }
    f
}

/// One table's pre-rendered pieces.
#[derive(Debug, Clone)]
pub(crate) struct TableCodec {
    pub topic: String,
    /// `{"schema":<key schema>,"payload":{"<pk>":`
    key_head: String,
    /// `{"schema":<envelope schema>,"payload":{"before":`
    value_head: String,
    /// `{"<col>":`, `,"<col2>":`, … per column.
    column_heads: Vec<String>,
}

impl TableCodec {
    pub(crate) fn new(flavour: &Flavour, table: &'static TableDef) -> TableCodec {
        let base = format!("{}.{}.{}", flavour.prefix, flavour.database, table.name);
        let pk = &table.columns[0];
        let key_schema = SchemaField::structure(vec![column_schema(pk)], false)
            .named(format!("{base}.Key"), None)
            .no_field();
        let mut key_head = String::from("{\"schema\":");
        key_schema.to_json().write_compact(&mut key_head);
        key_head.push_str(",\"payload\":{");
        write_json_string(&mut key_head, pk.name);
        key_head.push(':');

        let row = |field: &str| {
            SchemaField::structure(table.columns.iter().map(column_schema).collect(), true)
                .named(format!("{base}.Value"), None)
                .field(field)
        };
        let s = |ty, optional, f: &str| SchemaField::new(ty, optional, f);
        let envelope = SchemaField::structure(
            vec![
                row("before"),
                row("after"),
                flavour.source_schema(),
                SchemaField::structure(
                    vec![
                        s("string", false, "id"),
                        s("int64", false, "total_order"),
                        s("int64", false, "data_collection_order"),
                    ],
                    true,
                )
                .named("event.block", Some(1))
                .field("transaction"),
                s("string", false, "op"),
                s("int64", true, "ts_ms"),
                s("int64", true, "ts_us"),
                s("int64", true, "ts_ns"),
            ],
            false,
        )
        .named(format!("{base}.Envelope"), Some(2))
        .no_field();
        let mut value_head = String::from("{\"schema\":");
        envelope.to_json().write_compact(&mut value_head);
        value_head.push_str(",\"payload\":{\"before\":");

        let column_heads = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut h = String::from(if i == 0 { "{" } else { "," });
                write_json_string(&mut h, c.name);
                h.push(':');
                h
            })
            .collect();
        TableCodec {
            topic: base,
            key_head,
            value_head,
            column_heads,
        }
    }

    /// The record key for primary key `key`.
    pub(crate) fn key(&self, key: i64) -> Bytes {
        let mut out = String::with_capacity(self.key_head.len() + 24);
        out.push_str(&self.key_head);
        let _ = write!(out, "{key}}}}}");
        Bytes::from(out)
    }

    /// The envelope value of one row change.
    pub(crate) fn value(
        &self,
        flavour: &Flavour,
        op: ChangeOp,
        before: Option<&Row>,
        after: Option<&Row>,
        source: &SourceInfo<'_>,
        now_ms: i64,
    ) -> Bytes {
        let mut out = String::with_capacity(self.value_head.len() + 2048);
        out.push_str(&self.value_head);
        self.write_row(&mut out, before);
        out.push_str(",\"after\":");
        self.write_row(&mut out, after);
        out.push_str(",\"source\":");
        flavour.write_source(&mut out, source);
        out.push_str(",\"transaction\":null,\"op\":\"");
        out.push_str(op.letter());
        let _ = write!(
            out,
            "\",\"ts_ms\":{now_ms},\"ts_us\":{},\"ts_ns\":{}}}}}",
            now_ms.saturating_mul(1_000),
            now_ms.saturating_mul(1_000_000)
        );
        Bytes::from(out)
    }

    fn write_row(&self, out: &mut String, row: Option<&Row>) {
        let Some(row) = row else {
            out.push_str("null");
            return;
        };
        for (head, v) in self.column_heads.iter().zip(row.iter()) {
            out.push_str(head);
            write_value(out, v);
        }
        out.push('}');
    }
}

/// A column value as Debezium emits it: TINYINT(1) as 0/1, dates as days, datetimes as epoch ms, times as µs.
fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bool(b) => out.push(if *b { '1' } else { '0' }),
        Value::Double(d) if d.is_finite() => {
            let _ = write!(out, "{d:?}");
        }
        // JSON has no NaN or infinity; MySQL cannot store them either.
        Value::Double(_) => out.push_str("null"),
        Value::Text(s) => write_json_string(out, s),
        Value::Date(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Datetime(ms) => {
            let _ = write!(out, "{ms}");
        }
        Value::Time(us) => {
            let _ = write!(out, "{us}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema;

    #[test]
    fn key_is_compact_connect_json() {
        let flavour = Flavour::new(Connector::Mariadb, "dbserver1", "openmrs");
        let codec = TableCodec::new(&flavour, &schema::obs::TABLE);
        assert_eq!(
            std::str::from_utf8(&codec.key(401)).unwrap(),
            r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"obs_id"}],"optional":false,"name":"dbserver1.openmrs.obs.Key"},"payload":{"obs_id":401}}"#
        );
    }

    #[test]
    fn value_parses_and_maps_types() {
        let flavour = Flavour::new(Connector::Mysql, "p", "db");
        let codec = TableCodec::new(&flavour, &schema::person::TABLE);
        let mut row = schema::person::TABLE.empty_row();
        row[schema::person::person_id] = Value::Int(7);
        row[schema::person::dead] = Value::Bool(true);
        row[schema::person::birthdate] = Value::Date(5184);
        row[schema::person::birthtime] = Value::Time(3_600_000_000);
        row[schema::person::uuid] = Value::text("u\"1");
        let source = SourceInfo {
            ts_ms: 1_000,
            snapshot: SnapshotMark::False,
            db: "db",
            table: Some("person"),
            server_id: 1,
            gtid: Some("x:1"),
            file: "mysql-bin.000001",
            pos: 4,
            row: 0,
        };
        let bytes = codec.value(&flavour, ChangeOp::Create, None, Some(&row), &source, 2_000);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let after = &v["payload"]["after"];
        assert_eq!(after["dead"], 1);
        assert_eq!(after["birthdate"], 5184);
        assert_eq!(after["birthtime"], 3_600_000_000i64);
        assert_eq!(after["uuid"], "u\"1");
        assert_eq!(v["payload"]["source"]["connector"], "mysql");
        assert_eq!(
            v["schema"]["fields"][2]["name"],
            "io.debezium.connector.mysql.Source"
        );
        assert_eq!(v["payload"]["op"], "c");
        assert_eq!(v["payload"]["ts_ns"], 2_000_000_000i64);
    }
}
