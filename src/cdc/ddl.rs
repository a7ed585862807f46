//! The snapshot's DDL as Debezium records it: one statement per record on the schema-change topic
//! (`<prefix>`, Connect JSON with `SchemaChangeKey`/`SchemaChangeValue`) and on the schema-history topic
//! (null key, Jackson-pretty JSON). The statements are those Debezium issues and reads while snapshotting:
//! `SET character_set_server…`, `DROP TABLE IF EXISTS` per table, `DROP DATABASE IF EXISTS`, `CREATE DATABASE`,
//! `USE`, then each table's `CREATE TABLE` as the server's `SHOW CREATE TABLE` prints it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::encode::{Flavour, SnapshotMark, SourceInfo};
use super::json::{Json, SchemaField};
use crate::model::schema::{ColumnDef, SqlType, TableDef};
use crate::scenario::Connector;

/// One DDL statement of the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct DdlEvent {
    /// `""` for the server-level `SET`, the database otherwise.
    pub database: String,
    pub table: Option<&'static TableDef>,
    pub ddl: String,
    pub change: Option<TableChange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableChange {
    Create,
    Drop,
}

fn collation(connector: Connector) -> &'static str {
    match connector {
        Connector::Mysql => "utf8mb4_0900_ai_ci",
        Connector::Mariadb => "utf8mb4_general_ci",
    }
}

/// The snapshot's DDL statements in Debezium's order (tables by name).
pub(crate) fn snapshot_ddl(
    flavour: &Flavour,
    tables: &[&'static TableDef],
    auto_increment: &BTreeMap<&'static str, i64>,
) -> Vec<DdlEvent> {
    let db = &flavour.database;
    let mut sorted: Vec<&'static TableDef> = tables.to_vec();
    sorted.sort_by_key(|t| t.name);
    let coll = collation(flavour.connector);
    let mut out = vec![DdlEvent {
        database: String::new(),
        table: None,
        ddl: format!("SET character_set_server=utf8mb4, collation_server={coll}"),
        change: None,
    }];
    for t in &sorted {
        out.push(DdlEvent {
            database: db.clone(),
            table: Some(t),
            ddl: format!("DROP TABLE IF EXISTS `{db}`.`{}`", t.name),
            change: Some(TableChange::Drop),
        });
    }
    for ddl in [
        format!("DROP DATABASE IF EXISTS `{db}`"),
        format!("CREATE DATABASE `{db}` CHARSET utf8mb4 COLLATE {coll}"),
        format!("USE `{db}`"),
    ] {
        out.push(DdlEvent {
            database: db.clone(),
            table: None,
            ddl,
            change: None,
        });
    }
    for t in &sorted {
        out.push(DdlEvent {
            database: db.clone(),
            table: Some(t),
            ddl: show_create_table(flavour.connector, t, auto_increment.get(t.name).copied()),
            change: Some(TableChange::Create),
        });
    }
    out
}

fn column_type(connector: Connector, ty: SqlType) -> String {
    match (connector, ty) {
        (Connector::Mariadb, SqlType::Int) => "int(11)".into(),
        (Connector::Mysql, SqlType::Int) => "int".into(),
        (_, SqlType::Boolean) => "tinyint(1)".into(),
        (_, SqlType::Double) => "double".into(),
        (_, SqlType::Varchar(n)) => format!("varchar({n})"),
        (_, SqlType::Char(n)) => format!("char({n})"),
        (_, SqlType::Text) => "text".into(),
        (_, SqlType::Date) => "date".into(),
        (_, SqlType::Datetime) => "datetime".into(),
        (_, SqlType::Time) => "time".into(),
    }
}

/// A default as `SHOW CREATE TABLE` prints it: MariaDB leaves numbers bare, MySQL 8 quotes every literal.
fn default_literal(connector: Connector, c: &ColumnDef) -> Option<String> {
    let d = c.default?;
    let quoted = d.starts_with('\'');
    Some(match connector {
        Connector::Mariadb => d.to_string(),
        Connector::Mysql if quoted => d.to_string(),
        Connector::Mysql => format!("'{d}'"),
    })
}

/// `SHOW CREATE TABLE` of a table as the flavour's server prints it: columns, primary key, unique keys, the
/// index InnoDB creates for each foreign key not already led by another index, constraints by name.
pub(crate) fn show_create_table(
    connector: Connector,
    t: &TableDef,
    auto_increment: Option<i64>,
) -> String {
    let mut lines: Vec<String> = Vec::new();
    for c in t.columns {
        let mut line = format!("  `{}` {}", c.name, column_type(connector, c.ty));
        if !c.nullable {
            line.push_str(" NOT NULL");
        }
        if c.auto_increment {
            line.push_str(" AUTO_INCREMENT");
        }
        match default_literal(connector, c) {
            Some(d) => {
                let _ = write!(line, " DEFAULT {d}");
            }
            None if c.nullable => line.push_str(" DEFAULT NULL"),
            None => {}
        }
        lines.push(line);
    }
    let pk: Vec<&ColumnDef> = t.columns.iter().filter(|c| c.primary_key).collect();
    let pk_names: Vec<String> = pk.iter().map(|c| format!("`{}`", c.name)).collect();
    lines.push(format!("  PRIMARY KEY ({})", pk_names.join(",")));
    // Columns that lead an index already (primary key, unique keys) need no index for their foreign key.
    let mut led: Vec<&str> = pk.first().map(|c| c.name).into_iter().collect();
    for c in t.columns.iter().filter(|c| c.unique) {
        lines.push(format!(
            "  UNIQUE KEY `{}_{}` (`{}`)",
            t.name, c.name, c.name
        ));
        led.push(c.name);
    }
    for c in t.columns {
        if c.references.is_some() && !led.contains(&c.name) {
            lines.push(format!("  KEY `fk_{}_{}` (`{}`)", t.name, c.name, c.name));
        }
    }
    let mut constraints: Vec<(String, String)> = t
        .columns
        .iter()
        .filter_map(|c| {
            let (table, column) = c.references?;
            let name = format!("fk_{}_{}", t.name, c.name);
            Some((
                name.clone(),
                format!(
                    "  CONSTRAINT `{name}` FOREIGN KEY (`{}`) REFERENCES `{table}` (`{column}`)",
                    c.name
                ),
            ))
        })
        .collect();
    constraints.sort();
    lines.extend(constraints.into_iter().map(|(_, l)| l));
    let mut sql = format!(
        "CREATE TABLE `{}` (\n{}\n) ENGINE=InnoDB",
        t.name,
        lines.join(",\n")
    );
    if let Some(next) = auto_increment.filter(|n| *n > 1) {
        let _ = write!(sql, " AUTO_INCREMENT={next}");
    }
    let _ = write!(
        sql,
        " DEFAULT CHARSET=utf8mb4 COLLATE={}",
        collation(connector)
    );
    sql
}

/// JDBC type code, type name and length as Debezium's DDL parser reports a column.
fn jdbc(connector: Connector, ty: SqlType) -> (i64, &'static str, Option<i64>, bool) {
    // (jdbcType, typeName, length, has a charset)
    match ty {
        SqlType::Int => (
            4,
            "INT",
            matches!(connector, Connector::Mariadb).then_some(11),
            false,
        ),
        SqlType::Boolean => (5, "TINYINT", Some(1), false),
        SqlType::Double => (8, "DOUBLE", None, false),
        SqlType::Varchar(n) => (12, "VARCHAR", Some(n as i64), true),
        SqlType::Char(n) => (1, "CHAR", Some(n as i64), true),
        SqlType::Text => (12, "TEXT", None, true),
        SqlType::Date => (91, "DATE", None, false),
        SqlType::Datetime => (93, "DATETIME", None, false),
        SqlType::Time => (92, "TIME", None, false),
    }
}

/// How a table change is written: on the schema-change topic (every field, nulls included) or in the schema
/// history (Debezium's document writer: null optionals left out, `hasDefaultValue`, `attributes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    ChangeTopic,
    History,
}

fn table_change_json(
    connector: Connector,
    db: &str,
    t: &TableDef,
    change: TableChange,
    form: Form,
) -> Json {
    let id = format!("\"{db}\".\"{}\"", t.name);
    let kind = match change {
        TableChange::Create => "CREATE",
        TableChange::Drop => "DROP",
    };
    if change == TableChange::Drop {
        let mut o = vec![("type", Json::str(kind)), ("id", Json::str(id))];
        if form == Form::ChangeTopic {
            o.push(("table", Json::Null));
        }
        return Json::Obj(o);
    }
    let columns = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (code, name, length, charset) = jdbc(connector, c.ty);
            let default = c.default.map(|d| d.trim_matches('\'').to_string());
            let charset = if charset {
                Json::str("utf8mb4")
            } else {
                Json::Null
            };
            let mut o = vec![("name", Json::str(c.name)), ("jdbcType", Json::Int(code))];
            if form == Form::ChangeTopic {
                o.push(("nativeType", Json::Null));
            }
            o.push(("typeName", Json::str(name)));
            o.push(("typeExpression", Json::str(name)));
            o.push(("charsetName", charset));
            match (form, length) {
                (_, Some(l)) => o.push(("length", Json::Int(l))),
                (Form::ChangeTopic, None) => o.push(("length", Json::Null)),
                (Form::History, None) => {}
            }
            if form == Form::ChangeTopic {
                o.push(("scale", Json::Null));
            }
            o.push(("position", Json::Int(i as i64 + 1)));
            o.push(("optional", Json::Bool(c.nullable)));
            o.push(("autoIncremented", Json::Bool(c.auto_increment)));
            // Debezium marks auto-increment columns as generated too.
            o.push(("generated", Json::Bool(c.auto_increment)));
            o.push(("comment", Json::Null));
            match form {
                Form::ChangeTopic => {
                    o.push(("defaultValueExpression", Json::opt_str(default)));
                    o.push(("enumValues", Json::Null));
                }
                Form::History => {
                    o.push((
                        "hasDefaultValue",
                        Json::Bool(c.nullable || c.default.is_some()),
                    ));
                    if let Some(d) = default {
                        o.push(("defaultValueExpression", Json::str(d)));
                    }
                    o.push(("enumValues", Json::Arr(vec![])));
                }
            }
            Json::Obj(o)
        })
        .collect();
    let pk = t
        .columns
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| Json::str(c.name))
        .collect();
    let mut table = vec![
        ("defaultCharsetName", Json::str("utf8mb4")),
        ("primaryKeyColumnNames", Json::Arr(pk)),
        ("columns", Json::Arr(columns)),
    ];
    match form {
        Form::ChangeTopic => table.push(("comment", Json::Null)),
        Form::History => table.push(("attributes", Json::Arr(vec![]))),
    }
    let mut change = vec![
        ("type", Json::str(kind)),
        ("id", Json::str(id)),
        ("table", Json::Obj(table)),
    ];
    // The history document carries the change's comment; the Connect struct has no such field.
    if form == Form::History {
        change.push(("comment", Json::Null));
    }
    Json::Obj(change)
}

/// Pre-rendered pieces of the schema-change topic's records.
#[derive(Debug, Clone)]
pub(crate) struct SchemaChangeCodec {
    key_head: String,
    value_head: String,
}

impl SchemaChangeCodec {
    pub(crate) fn new(flavour: &Flavour) -> SchemaChangeCodec {
        let s = |ty, optional, f: &str| SchemaField::new(ty, optional, f);
        let key = SchemaField::structure(vec![s("string", false, "databaseName")], false)
            .named(flavour.schema_name("SchemaChangeKey"), Some(1))
            .no_field();
        let column = SchemaField::structure(
            vec![
                s("string", false, "name"),
                s("int32", false, "jdbcType"),
                s("int32", true, "nativeType"),
                s("string", false, "typeName"),
                s("string", true, "typeExpression"),
                s("string", true, "charsetName"),
                s("int32", true, "length"),
                s("int32", true, "scale"),
                s("int32", false, "position"),
                s("boolean", true, "optional"),
                s("boolean", true, "autoIncremented"),
                s("boolean", true, "generated"),
                s("string", true, "comment"),
                s("string", true, "defaultValueExpression"),
                SchemaField::array(
                    SchemaField::new("string", false, "").no_field(),
                    true,
                    "enumValues",
                ),
            ],
            false,
        )
        .named("io.debezium.connector.schema.Column", Some(1))
        .no_field();
        let table = SchemaField::structure(
            vec![
                s("string", true, "defaultCharsetName"),
                SchemaField::array(
                    SchemaField::new("string", false, "").no_field(),
                    true,
                    "primaryKeyColumnNames",
                ),
                SchemaField::array(column, false, "columns"),
                s("string", true, "comment"),
            ],
            true,
        )
        .named("io.debezium.connector.schema.Table", Some(1))
        .field("table");
        let change = SchemaField::structure(
            vec![s("string", false, "type"), s("string", false, "id"), table],
            false,
        )
        .named("io.debezium.connector.schema.Change", Some(1))
        .no_field();
        let value = SchemaField::structure(
            vec![
                flavour.source_schema(),
                s("int64", false, "ts_ms"),
                s("string", true, "databaseName"),
                s("string", true, "schemaName"),
                s("string", true, "ddl"),
                SchemaField::array(change, false, "tableChanges"),
            ],
            false,
        )
        .named(flavour.schema_name("SchemaChangeValue"), Some(1))
        .no_field();
        let mut key_head = String::from("{\"schema\":");
        key.to_json().write_compact(&mut key_head);
        key_head.push_str(",\"payload\":{\"databaseName\":");
        let mut value_head = String::from("{\"schema\":");
        value.to_json().write_compact(&mut value_head);
        value_head.push_str(",\"payload\":{\"source\":");
        SchemaChangeCodec {
            key_head,
            value_head,
        }
    }

    pub(crate) fn key(&self, database: &str) -> String {
        let mut out = self.key_head.clone();
        crate::model::value::write_json_string(&mut out, database);
        out.push_str("}}");
        out
    }

    pub(crate) fn value(
        &self,
        flavour: &Flavour,
        event: &DdlEvent,
        source: &SourceInfo<'_>,
        now_ms: i64,
    ) -> String {
        let mut out = self.value_head.clone();
        flavour.write_source(&mut out, source);
        let changes = Json::Arr(
            event
                .table
                .zip(event.change)
                .map(|(t, c)| {
                    table_change_json(
                        flavour.connector,
                        &flavour.database,
                        t,
                        c,
                        Form::ChangeTopic,
                    )
                })
                .into_iter()
                .collect(),
        );
        let rest = Json::Obj(vec![
            ("ts_ms", Json::Int(now_ms)),
            ("databaseName", Json::str(event.database.clone())),
            ("schemaName", Json::Null),
            ("ddl", Json::str(event.ddl.clone())),
            ("tableChanges", changes),
        ]);
        // The rest of the payload object, after the source block.
        let rendered = rest.compact();
        out.push(',');
        out.push_str(&rendered[1..]);
        out.push('}');
        out
    }
}

/// Where the snapshot's DDL stands in the binlog, as the schema history records it.
#[derive(Debug, Clone)]
pub(crate) struct HistoryPosition<'a> {
    pub ts_sec: i64,
    pub file: &'a str,
    pub pos: u64,
    pub gtids: &'a str,
}

/// One schema-history record (Jackson-pretty JSON).
pub(crate) fn history_value(
    flavour: &Flavour,
    event: &DdlEvent,
    position: &HistoryPosition<'_>,
    now_ms: i64,
) -> String {
    let changes = event
        .table
        .zip(event.change)
        .map(|(t, c)| table_change_json(flavour.connector, &flavour.database, t, c, Form::History))
        .into_iter()
        .collect();
    Json::Obj(vec![
        (
            "source",
            Json::Obj(vec![("server", Json::str(flavour.prefix.clone()))]),
        ),
        (
            "position",
            Json::Obj(vec![
                ("ts_sec", Json::Int(position.ts_sec)),
                ("file", Json::str(position.file)),
                ("pos", Json::Int(position.pos as i64)),
                ("gtids", Json::str(position.gtids)),
                ("snapshot", Json::str("INITIAL")),
            ]),
        ),
        ("ts_ms", Json::Int(now_ms)),
        ("databaseName", Json::str(event.database.clone())),
        ("ddl", Json::str(event.ddl.clone())),
        ("tableChanges", Json::Arr(changes)),
    ])
    .pretty()
}

/// The source block of a DDL record: a snapshot record without a row.
pub(crate) fn ddl_source<'a>(
    event: &'a DdlEvent,
    file: &'a str,
    pos: u64,
    ts_ms: i64,
) -> SourceInfo<'a> {
    SourceInfo {
        ts_ms,
        snapshot: SnapshotMark::True,
        db: &event.database,
        table: event.table.map(|t| t.name),
        server_id: 0,
        gtid: None,
        file,
        pos,
        row: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema;

    #[test]
    fn mariadb_show_create_table_has_fk_indexes_and_sorted_constraints() {
        let sql = show_create_table(Connector::Mariadb, &schema::patient::TABLE, None);
        assert!(sql.starts_with("CREATE TABLE `patient` (\n  `patient_id` int(11) NOT NULL,\n"));
        // patient_id leads the primary key: no extra index for its foreign key.
        assert!(!sql.contains("KEY `fk_patient_patient_id`"));
        let creator = sql.find("CONSTRAINT `fk_patient_creator`").unwrap();
        let patient = sql.find("CONSTRAINT `fk_patient_patient_id`").unwrap();
        assert!(creator < patient);
        assert!(sql.ends_with(") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"));
    }

    #[test]
    fn mysql_quotes_defaults_and_drops_int_width() {
        let sql = show_create_table(Connector::Mysql, &schema::obs::TABLE, Some(10));
        assert!(sql.contains("`concept_id` int NOT NULL DEFAULT '0',"));
        assert!(
            sql.contains("AUTO_INCREMENT=10 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci")
        );
    }
}
