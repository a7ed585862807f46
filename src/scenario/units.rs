//! Durations and sizes in human form: `"90s"`, `"7d"`, `"250ms"`, `"64MiB"`, `"1GB"`.
//!
//! In a scenario file either form is accepted where a key takes a duration or a size: a string with a unit,
//! or a bare integer (milliseconds, bytes). Rendering picks the largest unit that divides the value exactly,
//! so `validate` prints what a person would write.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// A duration in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub u64);

/// A size in bytes; `-1` in Kafka means unlimited, spelled `"unlimited"` here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Bytes(pub i64);

/// The embedded cluster's default memory budget for record batches (`[topology] log_memory`).
pub const DEFAULT_LOG_MEMORY: Bytes = Bytes(256 << 20);

impl Bytes {
    pub(crate) fn is_default_log_memory(&self) -> bool {
        *self == DEFAULT_LOG_MEMORY
    }
}

const DURATION_UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];
const SIZE_UNITS: &[(&str, i64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1000),
    ("KB", 1000),
    ("B", 1),
];

/// Parses `"90s"`, `"1h30m"`, `"7d"`, `"250ms"`.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("an empty string".into());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("\"{text}\" (a number must come before each unit)"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("\"{text}\" (number too large)"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        let Some((_, factor)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(if unit.is_empty() {
                format!("\"{text}\" (no unit; write e.g. \"{number}s\" or \"{number}ms\")")
            } else {
                format!("\"{text}\" (unknown unit \"{unit}\"; use ms, s, m, h or d)")
            });
        };
        total = number
            .checked_mul(*factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("\"{text}\" (too long)"))?;
        rest = &rest[unit_len..];
    }
    Ok(Millis(total))
}

/// Parses `"64MiB"`, `"1GB"`, `"512"`, `"unlimited"`.
pub fn parse_size(text: &str) -> Result<Bytes, String> {
    let s = text.trim();
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(Bytes(-1));
    }
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!(
            "\"{text}\" (expected a number and a unit such as \"64MiB\")"
        ));
    }
    let number: i64 = s[..digits]
        .parse()
        .map_err(|_| format!("\"{text}\" (number too large)"))?;
    let unit = s[digits..].trim();
    let factor = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                format!("\"{text}\" (unknown unit \"{unit}\"; use B, KiB, MiB, GiB, kB, MB or GB)")
            })?
    };
    number
        .checked_mul(factor)
        .map(Bytes)
        .ok_or_else(|| format!("\"{text}\" (too large)"))
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0ms");
        }
        let (unit, factor) = DURATION_UNITS
            .iter()
            .find(|(_, d)| self.0.is_multiple_of(*d))
            .copied()
            .unwrap_or(("ms", 1));
        write!(f, "{}{unit}", self.0 / factor)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            return f.write_str("unlimited");
        }
        if self.0 == 0 {
            return f.write_str("0B");
        }
        let binary = SIZE_UNITS
            .iter()
            .filter(|(u, _)| u.ends_with("iB") || *u == "B");
        let (unit, factor) = binary
            .clone()
            .find(|(_, d)| self.0 % d == 0)
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{unit}", self.0 / factor)
    }
}

impl Millis {
    pub fn from_secs(s: u64) -> Millis {
        Millis(s * 1000)
    }
    pub fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

struct MillisVisitor;

impl Visitor<'_> for MillisVisitor {
    type Value = Millis;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a duration such as \"90s\", \"250ms\" or \"7d\" (or an integer of milliseconds)",
        )
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
        parse_duration(v).map_err(|found| {
            E::custom(format!(
                "expected a duration such as \"90s\" or \"7d\", found {found}"
            ))
        })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
        u64::try_from(v)
            .map(Millis)
            .map_err(|_| E::custom(format!("expected a duration of at least 0 ms, found {v}")))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
        Ok(Millis(v))
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        d.deserialize_any(MillisVisitor)
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Bytes;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a size such as \"64MiB\" or \"1GB\" (or an integer of bytes, -1 for unlimited)",
        )
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
        parse_size(v)
            .map_err(|found| E::custom(format!("expected a size such as \"64MiB\", found {found}")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
        if v < -1 {
            return Err(E::custom(format!(
                "expected a size in bytes (or -1 for unlimited), found {v}"
            )));
        }
        Ok(Bytes(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
        i64::try_from(v)
            .map(Bytes)
            .map_err(|_| E::custom(format!("expected a size, found {v} (too large)")))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_any(BytesVisitor)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Millis(90_000)));
        assert_eq!(parse_duration("7d"), Ok(Millis(604_800_000)));
        assert_eq!(parse_duration("1h30m"), Ok(Millis(5_400_000)));
        assert_eq!(parse_duration("250ms"), Ok(Millis(250)));
        assert!(parse_duration("90").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 weeks")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(Millis(604_800_000).to_string(), "7d");
        assert_eq!(Millis(90_000).to_string(), "90s");
        assert_eq!(Millis(1500).to_string(), "1500ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(Bytes(64 << 20)));
        assert_eq!(parse_size("1GB"), Ok(Bytes(1_000_000_000)));
        assert_eq!(parse_size("unlimited"), Ok(Bytes(-1)));
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(Bytes(1 << 30).to_string(), "1GiB");
        assert_eq!(Bytes(1_000_000_000).to_string(), "1000000000B");
        assert_eq!(Bytes(-1).to_string(), "unlimited");
    }
}
