//! `[expect]`: what a run must show — counts (exact, bounded, or related to another count the checkers derive)
//! and the final state against the oracle.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// An expected count: exactly n, a bound, anything, or a relation to another count of the run.
///
/// Relations exist because over real sockets some counts depend on timing: with `acks = 1` a crash loses
/// whatever the leader had acknowledged but not replicated, so the scenario cannot name a number, only say
/// that every loss is one the cluster's log explains (`lost = "= truncated_acked"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Any,
    Exactly(u64),
    AtLeast(u64),
    AtMost(u64),
    /// `"= truncated_acked"`, `"<= retention_lost"`, …: compared with a count the checkers derive.
    Relation(Relation, CountVar),
}

/// How a count compares with the count it is related to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Eq,
    Le,
    Ge,
    Lt,
    Gt,
}

impl Relation {
    pub fn symbol(self) -> &'static str {
        match self {
            Relation::Eq => "=",
            Relation::Le => "<=",
            Relation::Ge => ">=",
            Relation::Lt => "<",
            Relation::Gt => ">",
        }
    }

    pub fn holds(self, left: u64, right: u64) -> bool {
        match self {
            Relation::Eq => left == right,
            Relation::Le => left <= right,
            Relation::Ge => left >= right,
            Relation::Lt => left < right,
            Relation::Gt => left > right,
        }
    }
}

/// A count of the run that an expectation may be related to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountVar {
    /// Lost changes whose acknowledged offset the cluster's log later truncated (a loss the cluster explains).
    TruncatedAcked,
    /// Changes deleted by retention before a consumer read them.
    RetentionLost,
    /// Lost changes a consumer group's acknowledged commit had passed before they were written (at most once).
    CommittedBeforeWritten,
}

impl CountVar {
    pub const ALL: [CountVar; 3] = [
        CountVar::TruncatedAcked,
        CountVar::RetentionLost,
        CountVar::CommittedBeforeWritten,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CountVar::TruncatedAcked => "truncated_acked",
            CountVar::RetentionLost => "retention_lost",
            CountVar::CommittedBeforeWritten => "committed_before_written",
        }
    }

    pub fn from_name(name: &str) -> Option<CountVar> {
        CountVar::ALL.into_iter().find(|v| v.name() == name)
    }
}

impl Count {
    /// Whether `n` meets the expectation; `var` gives the counts a relation refers to (the report passes the
    /// analysis's).
    pub fn admits(self, n: u64, var: impl Fn(CountVar) -> u64) -> bool {
        match self {
            Count::Any => true,
            Count::Exactly(x) => n == x,
            Count::AtLeast(x) => n >= x,
            Count::AtMost(x) => n <= x,
            Count::Relation(r, v) => r.holds(n, var(v)),
        }
    }

    /// Parses the text form (`"any"`, `"3"`, `">0"`, `"<=5"`, `"= truncated_acked"`); `None` if it is none of
    /// them.
    pub fn parse(text: &str) -> Option<Count> {
        let s = text.trim();
        if s == "any" {
            return Some(Count::Any);
        }
        let (relation, rest) = [
            ("<=", Relation::Le),
            (">=", Relation::Ge),
            ("<", Relation::Lt),
            (">", Relation::Gt),
            ("=", Relation::Eq),
        ]
        .into_iter()
        .find_map(|(p, r)| s.strip_prefix(p).map(|rest| (r, rest.trim())))
        .unwrap_or((Relation::Eq, s));
        if let Ok(n) = rest.parse::<u64>() {
            return match relation {
                Relation::Eq => Some(Count::Exactly(n)),
                Relation::Le => Some(Count::AtMost(n)),
                Relation::Ge => Some(Count::AtLeast(n)),
                Relation::Lt => n.checked_sub(1).map(Count::AtMost),
                Relation::Gt => n.checked_add(1).map(Count::AtLeast),
            };
        }
        CountVar::from_name(rest).map(|v| Count::Relation(relation, v))
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Any => f.write_str("any"),
            Count::Exactly(n) => write!(f, "{n}"),
            Count::AtLeast(n) => write!(f, ">={n}"),
            Count::AtMost(n) => write!(f, "<={n}"),
            Count::Relation(r, v) => write!(f, "{} {}", r.symbol(), v.name()),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Exactly(n) => s.serialize_u64(*n),
            other => s.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let expected =
            "expected a count: a number, \"any\", \">0\", \">=N\", \"<N\", \"<=N\", or a relation \
                        to a count of the run (\"= truncated_acked\", \"<= retention_lost\")";
        match Raw::deserialize(d).map_err(|_| de::Error::custom(expected))? {
            Raw::Int(n) if n >= 0 => Ok(Count::Exactly(n as u64)),
            Raw::Int(n) => Err(de::Error::custom(format!("{expected}, found {n}"))),
            Raw::Text(t) => Count::parse(&t)
                .ok_or_else(|| de::Error::custom(format!("{expected}, found \"{t}\""))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalState {
    /// The sink equals the batch recomputation from the source.
    Equal,
    /// The sink differs (e.g. retention deleted changes before they were read).
    Differs,
    Any,
}

/// What must hold at the end of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    pub lost: Count,
    pub duplicates: Count,
    pub reordered: Count,
    pub retention_lost: Count,
    pub final_state: FinalState,
    /// Group mode: rebalances after the group first formed (generations past the first). Judged only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalances: Option<Count>,
}

impl Default for Expect {
    fn default() -> Expect {
        Expect {
            lost: Count::Exactly(0),
            duplicates: Count::Any,
            reordered: Count::Exactly(0),
            retention_lost: Count::Exactly(0),
            final_state: FinalState::Equal,
            rebalances: None,
        }
    }
}
