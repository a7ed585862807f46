//! Fault targets, named the way people think of them during an incident.
//!
//! A target names a role, not a process: "the leader of dbserver1.openmrs.obs partition 0" is resolved to a
//! broker id when the fault fires (leaders move), never when the file is read.
//!
//! | written | meaning |
//! |---|---|
//! | `"broker 2"` or `2` | broker id 2 (ids run 1..=brokers) |
//! | `"leader of dbserver1.openmrs.obs partition 0"` | the broker leading that partition at fault time |
//! | `"a follower of dbserver1.openmrs.obs partition 0"` | one in-sync follower of it (chosen by the seed) |
//! | `"followers of dbserver1.openmrs.obs partition 0"` | every in-sync follower of it at once |
//! | `"the controller"` | the active controller |
//! | `"the connector"` | the CDC connector (Debezium or the embedded capture) |
//! | `"consumer 2"` | ETL consumer 2 (numbered 1..=consumers) |
//!
//! `the`/`a` are optional; `partition` may be written `p`; case does not matter.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Where a fault lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    Broker(u32),
    LeaderOf {
        topic: String,
        partition: u32,
    },
    FollowerOf {
        topic: String,
        partition: u32,
    },
    /// Every in-sync follower at once: how "the leader's followers fall behind" is written.
    FollowersOf {
        topic: String,
        partition: u32,
    },
    Controller,
    /// The broker coordinating the pipeline's consumer group (group mode) when the fault fires.
    Coordinator,
    Connector,
    Consumer(u32),
}

impl FaultTarget {
    /// The broker leading `topic` partition `partition` when the fault fires.
    pub fn leader_of(topic: &str, partition: u32) -> FaultTarget {
        FaultTarget::LeaderOf {
            topic: topic.to_owned(),
            partition,
        }
    }

    /// One in-sync follower of `topic` partition `partition` when the fault fires (chosen with the seed).
    pub fn follower_of(topic: &str, partition: u32) -> FaultTarget {
        FaultTarget::FollowerOf {
            topic: topic.to_owned(),
            partition,
        }
    }

    /// Every in-sync follower of `topic` partition `partition` when the fault fires.
    pub fn followers_of(topic: &str, partition: u32) -> FaultTarget {
        FaultTarget::FollowersOf {
            topic: topic.to_owned(),
            partition,
        }
    }

    /// Whether the target is a broker (directly or by role).
    pub fn is_broker(&self) -> bool {
        matches!(
            self,
            FaultTarget::Broker(_)
                | FaultTarget::LeaderOf { .. }
                | FaultTarget::FollowerOf { .. }
                | FaultTarget::FollowersOf { .. }
                | FaultTarget::Controller
                | FaultTarget::Coordinator
        )
    }

    /// The `(topic, partition)` the target refers to, if any.
    pub fn partition(&self) -> Option<(&str, u32)> {
        match self {
            FaultTarget::LeaderOf { topic, partition }
            | FaultTarget::FollowerOf { topic, partition }
            | FaultTarget::FollowersOf { topic, partition } => Some((topic.as_str(), *partition)),
            _ => None,
        }
    }
}

const FORMS: &str =
    "\"broker 2\", \"leader of <topic> partition <n>\", \"a follower of <topic> partition <n>\", \
                     \"followers of <topic> partition <n>\", \"the controller\", \"the group coordinator\", \"the connector\" or \"consumer <n>\"";

/// Parses a target; the error says what forms exist.
pub fn parse_target(text: &str) -> Result<FaultTarget, String> {
    // Keywords are matched without case; the topic keeps its spelling (Kafka topic names are case-sensitive).
    let original: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !matches!(w.to_ascii_lowercase().as_str(), "the" | "a" | "an"))
        .collect();
    let lower: Vec<String> = original.iter().map(|w| w.to_ascii_lowercase()).collect();
    let words: Vec<&str> = lower.iter().map(String::as_str).collect();
    let number = |w: &str, what: &str| -> Result<u32, String> {
        w.parse::<u32>()
            .map_err(|_| format!("\"{text}\": {what} must be a number, found \"{w}\""))
    };
    match words.as_slice() {
        [n] if n.chars().all(|c| c.is_ascii_digit()) => {
            Ok(FaultTarget::Broker(number(n, "a broker id")?))
        }
        ["broker", n] => Ok(FaultTarget::Broker(number(n, "the broker id")?)),
        ["controller"] => Ok(FaultTarget::Controller),
        ["coordinator"] | ["group", "coordinator"] => Ok(FaultTarget::Coordinator),
        ["connector"] | ["capture"] => Ok(FaultTarget::Connector),
        ["consumer", n] => Ok(FaultTarget::Consumer(number(n, "the consumer number")?)),
        [role @ ("leader" | "follower" | "followers"), "of", rest @ ..] => {
            let partition = match rest {
                [_, "partition" | "p", n] => number(n, "the partition")?,
                [_] => 0,
                _ => {
                    return Err(format!(
                        "\"{text}\": expected \"{role} of <topic> partition <n>\""
                    ))
                }
            };
            let topic = original[2].to_string();
            Ok(match *role {
                "leader" => FaultTarget::LeaderOf { topic, partition },
                "follower" => FaultTarget::FollowerOf { topic, partition },
                _ => FaultTarget::FollowersOf { topic, partition },
            })
        }
        _ => Err(format!("\"{text}\" is not a target; write {FORMS}")),
    }
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTarget::Broker(id) => write!(f, "broker {id}"),
            FaultTarget::LeaderOf { topic, partition } => {
                write!(f, "leader of {topic} partition {partition}")
            }
            FaultTarget::FollowerOf { topic, partition } => {
                write!(f, "a follower of {topic} partition {partition}")
            }
            FaultTarget::FollowersOf { topic, partition } => {
                write!(f, "followers of {topic} partition {partition}")
            }
            FaultTarget::Controller => f.write_str("the controller"),
            FaultTarget::Coordinator => f.write_str("the group coordinator"),
            FaultTarget::Connector => f.write_str("the connector"),
            FaultTarget::Consumer(n) => write!(f, "consumer {n}"),
        }
    }
}

impl<'de> Deserialize<'de> for FaultTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FaultTarget, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(i64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom(format!("expected a target: {FORMS}")))?
        {
            Raw::Id(id) => u32::try_from(id).map(FaultTarget::Broker).map_err(|_| {
                serde::de::Error::custom(format!("expected a broker id (1 or more), found {id}"))
            }),
            Raw::Text(s) => parse_target(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for FaultTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for FaultTarget {
    type Err = String;

    /// The forms a scenario file takes (`"leader of dbserver1.openmrs.obs partition 0"`, `"broker 2"`, …).
    fn from_str(text: &str) -> Result<FaultTarget, String> {
        parse_target(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_language() {
        assert_eq!(parse_target("broker 2"), Ok(FaultTarget::Broker(2)));
        assert_eq!(parse_target("3"), Ok(FaultTarget::Broker(3)));
        assert_eq!(
            parse_target("the leader of dbserver1.openmrs.obs partition 0"),
            Ok(FaultTarget::LeaderOf {
                topic: "dbserver1.openmrs.obs".into(),
                partition: 0
            })
        );
        assert_eq!(
            parse_target("a follower of Dbserver1.openmrs.OBS p 3"),
            Ok(FaultTarget::FollowerOf {
                topic: "Dbserver1.openmrs.OBS".into(),
                partition: 3
            })
        );
        assert_eq!(
            parse_target("the followers of dbserver1.openmrs.obs partition 1"),
            Ok(FaultTarget::FollowersOf {
                topic: "dbserver1.openmrs.obs".into(),
                partition: 1
            })
        );
        assert_eq!(parse_target("The Controller"), Ok(FaultTarget::Controller));
        assert_eq!(parse_target("the connector"), Ok(FaultTarget::Connector));
        assert_eq!(parse_target("consumer 2"), Ok(FaultTarget::Consumer(2)));
        assert!(parse_target("the database")
            .unwrap_err()
            .contains("is not a target"));
        assert!(parse_target("consumer two")
            .unwrap_err()
            .contains("must be a number"));
        for t in [
            "broker 2",
            "leader of x.y.z partition 1",
            "a follower of x.y.z partition 0",
            "followers of x.y.z partition 2",
            "the controller",
        ] {
            assert_eq!(parse_target(t).unwrap().to_string(), t);
        }
    }
}
