//! The row image and the key read straight into typed values: each field name is looked up among the table's
//! columns as it is read and each value is typed by its column, so nothing is built for a field on the way (no
//! `serde_json::Map`, no `String` per field name). Only for answers: any record these readers do not take — a
//! missing column, a value of the wrong type, a shape they do not know — is read again by the generic path in
//! the parent module, which gives the same answer (for a record both read) and the precise error (for one they
//! do not).

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::schema::{SqlType, TableDef};
use crate::model::{Row, Value};

/// The image's columns in the table's order, or `None` when the typed reader does not take it.
pub(super) fn row(table: &'static TableDef, image: &RawValue) -> Option<Row> {
    let mut de = serde_json::Deserializer::from_str(image.get());
    let values = RowSeed(table).deserialize(&mut de).ok()?;
    de.end().ok()?;
    values.into_iter().collect()
}

/// The primary key of a key with schemas (`{"schema":…,"payload":{"<pk>":n}}`), or `None` when the typed reader
/// does not take it (a schemaless key, a key without the field, …).
pub(super) fn key(pk: &'static str, key: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Top<'a> {
        schema: Option<IgnoredAny>,
        #[serde(borrow)]
        payload: Option<&'a RawValue>,
    }
    let top: Top = serde_json::from_slice(key).ok()?;
    top.schema?;
    let mut de = serde_json::Deserializer::from_str(top.payload?.get());
    let found = KeySeed(pk).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// Reads an object into one slot per column; fields that name no column are skipped.
struct RowSeed(&'static TableDef);

impl<'de> DeserializeSeed<'de> for RowSeed {
    type Value = Vec<Option<Value>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a row image of `{}`", self.0.name)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let columns = &self.0.columns;
        let mut values: Vec<Option<Value>> = vec![None; columns.len()];
        let mut next = 0;
        while let Some(found) = map.next_key_seed(ColumnSeed {
            table: self.0,
            next,
        })? {
            match found {
                Some(i) => {
                    values[i] = Some(map.next_value_seed(TypedSeed(columns[i].ty))?);
                    next = i + 1;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
}

/// A field name as the index of the column it names. Debezium writes the columns in table order, so the column
/// after the previous one is tried first.
struct ColumnSeed {
    table: &'static TableDef,
    next: usize,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for ColumnSeed {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        let columns = &self.table.columns;
        if columns.get(self.next).is_some_and(|c| c.name == name) {
            return Ok(Some(self.next));
        }
        Ok(columns.iter().position(|c| c.name == name))
    }
}

/// One value, typed by its column as the generic path's `decode_value` types it.
struct TypedSeed(SqlType);

impl<'de> DeserializeSeed<'de> for TypedSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for TypedSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {:?} value", self.0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        match self.0 {
            SqlType::Boolean => Ok(Value::Bool(b)),
            _ => Err(E::custom("a boolean")),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(match self.0 {
            SqlType::Int => Value::Int(n),
            SqlType::Boolean => match n {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(E::custom("a boolean out of range")),
            },
            SqlType::Double => Value::Double(n as f64),
            SqlType::Date => Value::Date(i32::try_from(n).map_err(E::custom)?),
            SqlType::Datetime => Value::Datetime(n),
            SqlType::Time => Value::Time(n),
            SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Text => {
                return Err(E::custom("a number for text"))
            }
        })
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        match (self.0, i64::try_from(n)) {
            (SqlType::Double, _) => Ok(Value::Double(n as f64)),
            (_, Ok(n)) => self.visit_i64(n),
            (_, Err(e)) => Err(E::custom(e)),
        }
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        match self.0 {
            SqlType::Double => Ok(Value::Double(n)),
            _ => Err(E::custom("a fraction")),
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        match self.0 {
            SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Text => Ok(Value::text(s)),
            _ => Err(E::custom("text")),
        }
    }
}

/// The named field of a key's payload, as an integer; `None` when absent.
struct KeySeed(&'static str);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<i64>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key payload")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name == self.0 {
                found = Some(map.next_value::<i64>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}
