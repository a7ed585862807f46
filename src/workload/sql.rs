//! The workload written out: SQL statements (one transaction per operation, loadable into MySQL/MariaDB after
//! `fixtures/openmrs-schema.sql`) or JSON lines (one operation per line).

use std::fmt::Write as _;

use super::operation::{ChangeKind, Operation, Phase, RowChange};
use crate::model::schema::TableDef;
use crate::model::value::{format_datetime, write_json_string, Row};

/// Appends one multi-row INSERT for `rows` of `table`.
pub fn write_insert(out: &mut String, table: &TableDef, rows: &[Row]) {
    let _ = write!(out, "INSERT INTO `{}` (", table.name);
    for (i, c) in table.columns.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "`{}`", c.name);
    }
    out.push_str(") VALUES\n");
    for (r, row) in rows.iter().enumerate() {
        out.push_str(if r == 0 { "  (" } else { ",\n  (" });
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            v.write_sql(out);
        }
        out.push(')');
    }
    out.push_str(";\n");
}

fn write_key_condition(out: &mut String, table: &TableDef, row: &Row) {
    for (n, i) in table.primary_key().into_iter().enumerate() {
        if n > 0 {
            out.push_str(" AND ");
        }
        let _ = write!(out, "`{}` = ", table.columns[i].name);
        row[i].write_sql(out);
    }
}

/// Appends the one statement (`INSERT`, `UPDATE` or `DELETE`, with its `;`) that makes `change`; nothing for a
/// change without the images its kind needs.
pub(crate) fn write_change_sql(out: &mut String, change: &RowChange) {
    let table = change.table;
    match (change.kind, &change.before, &change.after) {
        (ChangeKind::Insert, _, Some(after)) => {
            write_insert(out, table, std::slice::from_ref(after))
        }
        (ChangeKind::Update, Some(before), Some(after)) => {
            let _ = write!(out, "UPDATE `{}` SET ", table.name);
            let mut first = true;
            for (i, c) in table.columns.iter().enumerate() {
                if before[i] != after[i] {
                    if !first {
                        out.push_str(", ");
                    }
                    first = false;
                    let _ = write!(out, "`{}` = ", c.name);
                    after[i].write_sql(out);
                }
            }
            out.push_str(" WHERE ");
            write_key_condition(out, table, before);
            out.push_str(";\n");
        }
        (ChangeKind::Delete, Some(before), _) => {
            let _ = write!(out, "DELETE FROM `{}` WHERE ", table.name);
            write_key_condition(out, table, before);
            out.push_str(";\n");
        }
        _ => {}
    }
}

/// Appends the operation as one SQL transaction.
pub fn write_operation_sql(out: &mut String, op: &Operation) {
    let _ = writeln!(
        out,
        "-- #{} {} {} patient {} at {}",
        op.seq,
        phase_name(op.phase),
        op.kind.name(),
        op.patient_id,
        format_datetime(op.at_ms)
    );
    out.push_str("START TRANSACTION;\n");
    for change in &op.changes {
        write_change_sql(out, change);
    }
    out.push_str("COMMIT;\n");
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Baseline => "baseline",
        Phase::Stream => "stream",
    }
}

fn write_row_json(out: &mut String, table: &TableDef, row: &Row) {
    out.push('{');
    for (i, c) in table.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, c.name);
        out.push(':');
        row[i].write_json(out);
    }
    out.push('}');
}

/// Appends the operation as one line of JSON (with the trailing newline).
pub fn write_operation_json(out: &mut String, op: &Operation) {
    let _ = write!(
        out,
        "{{\"seq\":{},\"at\":\"{}\",\"at_ms\":{},\"phase\":\"{}\",\"kind\":\"{}\",\"patient_id\":{},\"changes\":[",
        op.seq,
        format_datetime(op.at_ms),
        op.at_ms,
        phase_name(op.phase),
        op.kind.name(),
        op.patient_id
    );
    for (n, change) in op.changes.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"table\":\"{}\",\"op\":\"{}\"",
            change.table.name,
            change.kind.as_str()
        );
        if let Some(before) = &change.before {
            out.push_str(",\"before\":");
            write_row_json(out, change.table, before);
        }
        if let Some(after) = &change.after {
            out.push_str(",\"after\":");
            write_row_json(out, change.table, after);
        }
        out.push('}');
    }
    out.push_str("]}\n");
}
