//! Column values and rows, with their SQL and JSON spellings.
//!
//! Times are kept as integers (days, epoch milliseconds, microseconds of the day) — the same units Debezium
//! emits — so rendering is exact and identical on every machine.

use arcstr::ArcStr;
use std::fmt::Write as _;

/// One column value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Double(f64),
    /// Shared, so cloning a row (before/after images, the generator's own state) never copies text; one word
    /// wide (`ArcStr` keeps its length in its allocation), so a value is 16 bytes, not the 24 of an `Arc<str>`.
    Text(ArcStr),
    /// DATE as days since 1970-01-01.
    Date(i32),
    /// DATETIME as milliseconds since 1970-01-01T00:00:00 (no zone, as MySQL stores it).
    Datetime(i64),
    /// TIME as microseconds since midnight.
    Time(i64),
}

/// A row in its table's column order.
pub type Row = Vec<Value>;

impl Value {
    pub fn text(s: impl Into<ArcStr>) -> Value {
        Value::Text(s.into())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether this is the text `s` (without building a value to compare with).
    pub fn is_text(&self, s: &str) -> bool {
        matches!(self, Value::Text(t) if &**t == s)
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Appends the value as a MySQL literal.
    pub fn write_sql(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("NULL"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Bool(b) => out.push(if *b { '1' } else { '0' }),
            Value::Double(d) => {
                let _ = write!(out, "{d:?}");
            }
            Value::Text(s) => {
                out.push('\'');
                for ch in s.chars() {
                    match ch {
                        '\'' => out.push_str("''"),
                        '\\' => out.push_str("\\\\"),
                        '\0' => out.push_str("\\0"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
                out.push('\'');
            }
            Value::Date(d) => {
                out.push('\'');
                write_date(out, *d);
                out.push('\'');
            }
            Value::Datetime(ms) => {
                out.push('\'');
                write_datetime(out, *ms);
                out.push('\'');
            }
            Value::Time(us) => {
                out.push('\'');
                write_time(out, *us);
                out.push('\'');
            }
        }
    }

    /// Appends the value as JSON: numbers stay numbers, booleans are `true`/`false`, dates and times are
    /// strings in MySQL's own spelling.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Double(d) if d.is_finite() => {
                let _ = write!(out, "{d:?}");
            }
            Value::Double(_) => out.push_str("null"),
            Value::Text(s) => write_json_string(out, s),
            Value::Date(d) => {
                out.push('"');
                write_date(out, *d);
                out.push('"');
            }
            Value::Datetime(ms) => {
                out.push('"');
                write_datetime(out, *ms);
                out.push('"');
            }
            Value::Time(us) => {
                out.push('"');
                write_time(out, *us);
                out.push('"');
            }
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day count since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const MS_PER_DAY: i64 = 86_400_000;

fn write_date(out: &mut String, days: i32) {
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
}

fn write_datetime(out: &mut String, ms: i64) {
    let days = ms.div_euclid(MS_PER_DAY);
    let rest = ms.rem_euclid(MS_PER_DAY);
    write_date(out, days as i32);
    let secs = rest / 1000;
    let _ = write!(
        out,
        " {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

fn write_time(out: &mut String, micros: i64) {
    let secs = micros / 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// Epoch milliseconds of a civil date at midnight.
pub fn datetime_ms(year: i64, month: u32, day: u32) -> i64 {
    days_from_civil(year, month, day) * MS_PER_DAY
}

/// Renders a day count since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let mut s = String::new();
    write_date(&mut s, days);
    s
}

/// Renders epoch milliseconds as `YYYY-MM-DD HH:MM:SS`.
pub fn format_datetime(ms: i64) -> String {
    let mut s = String::new();
    write_datetime(&mut s, ms);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows are most of a run's memory (the source's, the sink's, the binlog's images): a value stays two words.
    #[test]
    fn a_value_is_two_words() {
        assert_eq!(std::mem::size_of::<Value>(), 16);
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 365, 11_016, 20_454, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn sql_and_json_spellings() {
        let mut s = String::new();
        Value::text("O'Brien\\").write_sql(&mut s);
        assert_eq!(s, "'O''Brien\\\\'");
        let mut j = String::new();
        Value::Datetime(datetime_ms(2026, 1, 2) + 3_723_000).write_json(&mut j);
        assert_eq!(j, "\"2026-01-02 01:02:03\"");
        let mut d = String::new();
        Value::Double(72.0).write_sql(&mut d);
        assert_eq!(d, "72.0");
    }
}
