//! Checked-in Debezium output (`fixtures/debezium/`): the file format of one captured Kafka record, and the
//! comparison rule for real against expected events — keys byte-identical, values equal after masking volatile
//! fields (timestamps, binlog coordinates, GTIDs, thread, query, connector version), numbers compared as numbers.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Object keys whose values change from run to run, wherever they appear in a record value.
const VOLATILE_KEYS: [&str; 11] = [
    "ts_ms", "ts_us", "ts_ns", "ts_sec", "file", "pos", "row", "thread", "gtid", "gtids", "query",
];
const MASK: &str = "<volatile>";

/// One record as read from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// One fixture file: a record's real bytes (as UTF-8 text where they are text, always as base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordFixture {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `r`, `c`, `u`, `d` for row changes, `tombstone`, `schema-change` or `schema-history`.
    pub kind: String,
    pub key: Option<String>,
    pub key_base64: Option<String>,
    pub value: Option<String>,
    pub value_base64: Option<String>,
    pub headers: Vec<HeaderFixture>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderFixture {
    pub key: String,
    pub value: Option<String>,
    pub value_base64: String,
}

impl RecordFixture {
    pub fn from_record(
        record: &CapturedRecord,
        schema_change_topic: &str,
        history_topic: &str,
    ) -> Self {
        let text = |bytes: &Option<Vec<u8>>| {
            bytes
                .as_ref()
                .and_then(|bytes| String::from_utf8(bytes.clone()).ok())
        };
        let base64 = |bytes: &Option<Vec<u8>>| bytes.as_ref().map(|bytes| BASE64.encode(bytes));
        let kind = if record.topic == history_topic {
            "schema-history".to_owned()
        } else if record.topic == schema_change_topic {
            "schema-change".to_owned()
        } else if record.value.is_none() {
            "tombstone".to_owned()
        } else {
            text(&record.value)
                .and_then(|value| serde_json::from_str::<Value>(&value).ok())
                .and_then(|value| {
                    value
                        .pointer("/payload/op")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "unknown".to_owned())
        };
        RecordFixture {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            kind,
            key: text(&record.key),
            key_base64: base64(&record.key),
            value: text(&record.value),
            value_base64: base64(&record.value),
            headers: record
                .headers
                .iter()
                .map(|(key, value)| HeaderFixture {
                    key: key.clone(),
                    value: String::from_utf8(value.clone()).ok(),
                    value_base64: BASE64.encode(value),
                })
                .collect(),
        }
    }

    /// The key bytes: the readable text when the bytes were UTF-8 (so a hand edit of a fixture counts), else
    /// the base64 copy.
    fn key_bytes(&self) -> Option<Vec<u8>> {
        bytes_of(&self.key, &self.key_base64)
    }

    fn value_bytes(&self) -> Option<Vec<u8>> {
        bytes_of(&self.value, &self.value_base64)
    }

    /// Why `actual` does not match this expected record, or `None` when it does.
    pub fn mismatch(&self, actual: &RecordFixture) -> Option<String> {
        if self.topic != actual.topic || self.partition != actual.partition {
            return Some(format!(
                "expected topic {} partition {}, got {} partition {}",
                self.topic, self.partition, actual.topic, actual.partition
            ));
        }
        if self.kind != actual.kind {
            return Some(format!(
                "expected a {} record, got {}",
                self.kind, actual.kind
            ));
        }
        if self.key_bytes() != actual.key_bytes() {
            return Some(format!(
                "key bytes differ (they decide the partition):\n  expected {:?}\n  actual   {:?}",
                self.key, actual.key
            ));
        }
        let headers = |fixture: &RecordFixture| {
            fixture
                .headers
                .iter()
                .map(|header| (header.key.clone(), header.value_base64.clone()))
                .collect::<Vec<_>>()
        };
        if headers(self) != headers(actual) {
            return Some(format!(
                "headers differ: expected {:?}, got {:?}",
                self.headers, actual.headers
            ));
        }
        match (self.value_bytes(), actual.value_bytes()) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => Some(format!(
                "one value is null: expected {:?}, got {:?}",
                self.value, actual.value
            )),
            (Some(expected), Some(got)) => {
                let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).ok();
                match (parse(&expected), parse(&got)) {
                    (Some(mut expected), Some(mut got)) => {
                        mask_volatile(&mut expected);
                        mask_volatile(&mut got);
                        first_difference("", &expected, &got)
                    }
                    _ if expected == got => None,
                    _ => Some("values are not JSON and their bytes differ".to_owned()),
                }
            }
        }
    }
}

fn bytes_of(text: &Option<String>, base64: &Option<String>) -> Option<Vec<u8>> {
    match (text, base64) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(encoded)) => Some(
            BASE64
                .decode(encoded)
                .unwrap_or_else(|_| encoded.as_bytes().to_vec()),
        ),
        (None, None) => None,
    }
}

/// Replaces the values of volatile fields with a mask, in place.
pub fn mask_volatile(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, field) in object.iter_mut() {
                if VOLATILE_KEYS.contains(&key.as_str()) {
                    *field = Value::String(MASK.to_owned());
                } else if key == "source" {
                    // The connector version (source.version) changes with every Debezium release.
                    if let Some(version) = field.get_mut("version") {
                        *version = Value::String(MASK.to_owned());
                    }
                    mask_volatile(field);
                } else {
                    mask_volatile(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_volatile),
        _ => {}
    }
}

/// The JSON path of the first difference, comparing numbers by value (`1.0E7` in Java is `10000000.0` here).
pub fn first_difference(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            let same = a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y);
            (!same).then(|| format!("{path}: expected {a}, got {b}"))
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys_a: Vec<_> = a.keys().collect();
            let keys_b: Vec<_> = b.keys().collect();
            if keys_a != keys_b {
                return Some(format!(
                    "{path}: expected fields {keys_a:?}, got {keys_b:?}"
                ));
            }
            a.iter()
                .find_map(|(key, value)| first_difference(&format!("{path}/{key}"), value, &b[key]))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!(
                    "{path}: expected {} items, got {}",
                    a.len(),
                    b.len()
                ));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(index, (x, y))| first_difference(&format!("{path}/{index}"), x, y))
        }
        _ => (expected != actual).then(|| format!("{path}: expected {expected}, got {actual}")),
    }
}

/// `dir/<topic>/<offset>.json` for each record.
pub fn fixture_path(dir: &Path, fixture: &RecordFixture) -> PathBuf {
    dir.join(&fixture.topic)
        .join(format!("{:04}.json", fixture.offset))
}

/// All fixtures under `dir`, ordered by topic then offset.
pub fn load_fixtures(dir: &Path) -> std::io::Result<Vec<RecordFixture>> {
    let mut fixtures = Vec::new();
    let mut topics: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    topics.sort();
    for topic in topics {
        let mut files: Vec<_> = std::fs::read_dir(&topic)?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            let fixture = serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", file.display()),
                )
            })?;
            fixtures.push(fixture);
        }
    }
    Ok(fixtures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masking_hides_only_volatile_fields() {
        let mut value = json!({"payload": {"after": {"pos": 1, "name": "x"}, "ts_ms": 5,
            "source": {"version": "3.2.0.Final", "file": "binlog.000001", "db": "openmrs"}}});
        mask_volatile(&mut value);
        assert_eq!(value["payload"]["source"]["db"], "openmrs");
        assert_eq!(value["payload"]["source"]["version"], MASK);
        assert_eq!(value["payload"]["ts_ms"], MASK);
        assert_eq!(value["payload"]["after"]["name"], "x");
    }

    #[test]
    fn numbers_compare_by_value() {
        let java: Value = serde_json::from_str(r#"{"v": 1.0E7}"#).unwrap();
        let rust: Value = serde_json::from_str(r#"{"v": 10000000.0}"#).unwrap();
        assert_eq!(first_difference("", &java, &rust), None);
        let other: Value = serde_json::from_str(r#"{"v": 10000001}"#).unwrap();
        assert!(first_difference("", &java, &other).is_some());
    }
}
