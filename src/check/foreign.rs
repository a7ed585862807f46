//! `final-state` for a team's ETL (`kind = "command"`): its sink table against the batch result of its
//! `oracle_sql` over the source's final state, as multisets of normalised rows (docs/your-etl.md says the
//! rules). The harness does not see what the program read, so the delivery checks have nothing to read; what
//! the sink lacks is the loss, attributed by what the program acknowledged (its progress).

use std::collections::BTreeMap;

use serde::Serialize;

use super::final_state::FinalStateDiff;

/// How many differing rows of each kind the report lists.
pub const TABLE_EXAMPLES: usize = 10;

/// A value as compared: `None` is SQL NULL.
pub type Cell = Option<String>;

/// The comparison of a command ETL's table with its oracle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableDiff {
    /// `database.table` as read.
    pub table: String,
    /// What it was judged against: `oracle_sql`, or a built-in oracle's name.
    pub oracle: String,
    /// The oracle's columns, the ones compared.
    pub columns: Vec<String>,
    /// This table's rows: the oracle's, and how many of them are missing, only in the table, or different.
    pub oracle_rows: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    /// Why the table could not be compared (it or a column is missing), when so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Oracle rows the table lacks (with multiplicity), the first few rendered `column=value, …`.
    pub missing_examples: Vec<String>,
    /// Table rows the oracle lacks.
    pub extra_examples: Vec<String>,
    /// Rows on both sides under one key (the first column) with other columns that differ.
    pub different_examples: Vec<String>,
}

/// What the judge of a command ETL hands the checkers.
#[derive(Debug, Clone, Default)]
pub struct ForeignFinal {
    pub diff: FinalStateDiff,
    /// The ETL's progress had reached every partition's end: it acknowledged every record, so what its sink lacks
    /// went past an acknowledgement ahead of its write.
    pub progress_complete: bool,
}

/// Rounds a number to `digits` significant digits; integral values within 2^53 print as integers, so `3`,
/// `3.0` and `3.00` compare equal.
fn number(v: f64, digits: u32) -> String {
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        return format!("{}", v as i64);
    }
    let text = format!("{:.*e}", (digits.max(1) - 1) as usize, v);
    // Parse back to drop the trailing zeros the rounding left, and print integral results as integers.
    match text.parse::<f64>() {
        Ok(r) if r.fract() == 0.0 && r.abs() < 9_007_199_254_740_992.0 => format!("{}", r as i64),
        Ok(r) => format!("{r}"),
        Err(_) => text,
    }
}

/// How a value of a column of `kind` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Number,
    Temporal,
    Text,
}

/// Normalises one value (docs/your-etl.md): numbers rounded, datetimes without a zero fraction or a midnight
/// time, text as is.
pub fn normalise(kind: CellKind, text: &str, digits: u32) -> String {
    match kind {
        CellKind::Number => text
            .trim()
            .parse::<f64>()
            .map(|v| number(v, digits))
            .unwrap_or_else(|_| text.to_owned()),
        CellKind::Temporal => {
            let mut t = text.trim();
            if let Some((whole, fraction)) = t.split_once('.') {
                if fraction.chars().all(|c| c == '0') {
                    t = whole;
                }
            }
            t.strip_suffix(" 00:00:00").unwrap_or(t).to_owned()
        }
        CellKind::Text => text.to_owned(),
    }
}

fn render(columns: &[String], row: &[Cell]) -> String {
    columns
        .iter()
        .zip(row)
        .map(|(c, v)| format!("{c}={}", v.as_deref().unwrap_or("NULL")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn differs(columns: &[String], sink: &[Cell], oracle: &[Cell]) -> String {
    let show = |v: &Cell| v.clone().unwrap_or_else(|| "NULL".into());
    let key = format!(
        "{}={}",
        columns.first().map_or("", String::as_str),
        oracle.first().map(show).unwrap_or_default()
    );
    let fields: Vec<String> = columns
        .iter()
        .zip(sink.iter().zip(oracle))
        .filter(|(_, (a, b))| a != b)
        .map(|(c, (a, b))| format!("{c}: table {}, oracle {}", show(a), show(b)))
        .collect();
    format!("{key}: {}", fields.join("; "))
}

/// The table's rows against the oracle's, as multisets.
pub fn compare(
    table: &str,
    oracle_name: &str,
    columns: Vec<String>,
    sink: Vec<Vec<Cell>>,
    oracle: Vec<Vec<Cell>>,
) -> FinalStateDiff {
    let mut d = FinalStateDiff {
        sink_rows: sink.len() as u64,
        oracle_rows: oracle.len() as u64,
        ..FinalStateDiff::default()
    };
    let mut balance: BTreeMap<Vec<Cell>, i64> = BTreeMap::new();
    for row in oracle {
        *balance.entry(row).or_default() += 1;
    }
    for row in sink {
        *balance.entry(row).or_default() -= 1;
    }
    let mut t = TableDiff {
        table: table.to_owned(),
        oracle: oracle_name.to_owned(),
        ..TableDiff::default()
    };
    // Unmatched rows on each side, by their first column (the key, in a table that has one): a row on both
    // sides with the same key is one row that differs, shown column by column.
    let mut only_oracle: BTreeMap<Cell, Vec<Vec<Cell>>> = BTreeMap::new();
    let mut only_sink: BTreeMap<Cell, Vec<Vec<Cell>>> = BTreeMap::new();
    for (row, n) in balance {
        let side = if n > 0 {
            &mut only_oracle
        } else {
            &mut only_sink
        };
        for _ in 0..n.unsigned_abs() {
            side.entry(row.first().cloned().flatten())
                .or_default()
                .push(row.clone());
        }
    }
    for (key, oracle_rows) in only_oracle {
        for want in oracle_rows {
            let paired = only_sink
                .get_mut(&key)
                .and_then(|rows| (!rows.is_empty()).then(|| rows.remove(0)));
            match paired {
                Some(got) => {
                    d.different += 1;
                    if t.different_examples.len() < TABLE_EXAMPLES {
                        t.different_examples.push(differs(&columns, &got, &want));
                    }
                }
                None => {
                    d.missing += 1;
                    if t.missing_examples.len() < TABLE_EXAMPLES {
                        t.missing_examples.push(render(&columns, &want));
                    }
                }
            }
        }
    }
    for row in only_sink.into_values().flatten() {
        d.extra += 1;
        if t.extra_examples.len() < TABLE_EXAMPLES {
            t.extra_examples.push(render(&columns, &row));
        }
    }
    d.count = d.missing + d.extra + d.different;
    (t.oracle_rows, t.missing, t.extra, t.different) =
        (d.oracle_rows, d.missing, d.extra, d.different);
    t.columns = columns;
    d.tables = vec![t];
    d
}

/// Several tables' comparisons as one: counts added, each table's examples kept.
pub fn merge(parts: Vec<FinalStateDiff>) -> FinalStateDiff {
    let mut d = FinalStateDiff::default();
    for p in parts {
        d.sink_rows += p.sink_rows;
        d.oracle_rows += p.oracle_rows;
        d.count += p.count;
        d.missing += p.missing;
        d.extra += p.extra;
        d.different += p.different;
        d.tables.extend(p.tables);
    }
    d
}

/// A table that could not be read the way the oracle's columns say: every oracle row counts as missing.
pub fn not_comparable(
    table: &str,
    oracle_name: &str,
    columns: Vec<String>,
    oracle_rows: u64,
    problem: String,
) -> FinalStateDiff {
    FinalStateDiff {
        sink_rows: 0,
        oracle_rows,
        count: oracle_rows.max(1),
        missing: oracle_rows,
        tables: vec![TableDiff {
            table: table.to_owned(),
            oracle: oracle_name.to_owned(),
            oracle_rows,
            missing: oracle_rows,
            columns,
            problem: Some(problem),
            ..TableDiff::default()
        }],
        ..FinalStateDiff::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(values: &[&str]) -> Vec<Cell> {
        values
            .iter()
            .map(|v| (*v != "NULL").then(|| v.to_string()))
            .collect()
    }

    #[test]
    fn numbers_and_times_normalise_as_documented() {
        assert_eq!(normalise(CellKind::Number, "3.00", 12), "3");
        assert_eq!(normalise(CellKind::Number, "3", 12), "3");
        assert_eq!(
            normalise(CellKind::Number, "0.1000000000001", 12),
            normalise(CellKind::Number, "0.1", 12)
        );
        assert_ne!(
            normalise(CellKind::Number, "0.1001", 12),
            normalise(CellKind::Number, "0.1", 12)
        );
        assert_eq!(
            normalise(CellKind::Temporal, "2020-01-02 03:04:05.000000", 12),
            "2020-01-02 03:04:05"
        );
        assert_eq!(
            normalise(CellKind::Temporal, "2020-01-02 00:00:00", 12),
            "2020-01-02"
        );
        assert_eq!(
            normalise(CellKind::Temporal, "2020-01-02 03:04:05.5", 12),
            "2020-01-02 03:04:05.5"
        );
        assert_eq!(normalise(CellKind::Text, " a ", 12), " a ");
    }

    #[test]
    fn rows_compare_as_multisets_with_bounded_examples() {
        let cols = vec!["id".to_string(), "v".to_string()];
        let oracle = vec![
            cells(&["1", "a"]),
            cells(&["2", "NULL"]),
            cells(&["2", "NULL"]),
            cells(&["4", "d"]),
        ];
        let sink = vec![
            cells(&["2", "NULL"]),
            cells(&["1", "a"]),
            cells(&["3", "c"]),
            cells(&["4", "e"]),
        ];
        let d = compare("etl_sink.t", "oracle_sql", cols, sink, oracle);
        assert_eq!((d.missing, d.extra, d.different, d.count), (1, 1, 1, 3));
        let t = d.tables[0].clone();
        assert_eq!(t.missing_examples, ["id=2, v=NULL"]);
        assert_eq!(t.extra_examples, ["id=3, v=c"]);
        assert_eq!(t.different_examples, ["id=4: v: table e, oracle d"]);
        let many: Vec<Vec<Cell>> = (0..50).map(|i| cells(&[&i.to_string(), "x"])).collect();
        let d = compare(
            "t",
            "oracle_sql",
            vec!["id".into(), "v".into()],
            Vec::new(),
            many,
        );
        assert_eq!(d.missing, 50);
        assert_eq!(d.tables[0].missing_examples.len(), TABLE_EXAMPLES);
        let both = merge(vec![d.clone(), d]);
        assert_eq!(
            (both.missing, both.oracle_rows, both.tables.len()),
            (100, 100, 2)
        );
    }
}
