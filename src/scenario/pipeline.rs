//! `[pipeline]`: the built-in ETL — how many consumers, how they share the partitions (a fixed assignment, or a
//! consumer group through librdkafka), when they commit, and where they write — and the consumer events a fault
//! can wait for (`after = "consumer 1 commits"`).

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sink {
    Memory,
    Mysql,
}

/// How the consumers share the change topics' partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// A fixed assignment dealt by the harness; offsets live in the sink. No group, no rebalance.
    Manual,
    /// One consumer group (librdkafka, the classic protocol): the coordinator's assignment, rebalances, commits.
    Group,
}

/// When a group consumer commits its offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitPolicy {
    /// Offsets are stored with the data in the sink, in the same write; the group commits nothing and a new owner
    /// starts where the sink says (effectively once).
    WithSink,
    /// A synchronous commit after each batch is written (at least once: a death in between re-delivers).
    AfterWrite,
    /// A synchronous commit before each batch is written (at most once: a death in between loses the batch).
    BeforeWrite,
    /// librdkafka's auto-commit every `auto_commit_interval` of what was polled, written or not.
    Auto,
}

impl CommitPolicy {
    pub fn name(self) -> &'static str {
        match self {
            CommitPolicy::WithSink => "with_sink",
            CommitPolicy::AfterWrite => "after_write",
            CommitPolicy::BeforeWrite => "before_write",
            CommitPolicy::Auto => "auto",
        }
    }
}

/// The group's partition assignor (`partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignor {
    /// Eager: every rebalance revokes everything, then assigns per-topic ranges.
    Range,
    /// Incremental: only partitions that move are revoked.
    CooperativeSticky,
}

impl Assignor {
    /// librdkafka's (and the Java client's) name for it.
    pub fn client_name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    /// The harness's own ETL, or a team's program (`[pipeline.command]`).
    pub kind: super::command::Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<super::command::CommandEtl>,
    pub consumers: u32,
    pub sink: Sink,
    /// After the workload ends: how long capture and consumers get to catch up before a liveness failure.
    pub quiesce_timeout: Millis,
    pub assignment: Assignment,
    /// Group mode only.
    pub commit: CommitPolicy,
    /// Group mode only.
    pub assignor: Assignor,
    /// Group mode: `session.timeout.ms` — how long the coordinator waits for a silent member's heartbeat.
    pub session_timeout: Millis,
    /// Group mode: `max.poll.interval.ms` — a member that does not poll for this long leaves the group.
    pub max_poll_interval: Millis,
    /// Group mode with `commit = "auto"`: `auto.commit.interval.ms`.
    pub auto_commit_interval: Millis,
    /// Group mode: static membership; consumer N joins as `{group_instance_id}-N`, so a restart within the
    /// session timeout gets its partitions back without a rebalance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_instance_id: Option<String>,
    /// Group mode: consumers that do not start with the run; a `restart` (or `resume`) fault starts them, so they
    /// join mid-stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join_later: Vec<u32>,
}

impl Default for Pipeline {
    fn default() -> Pipeline {
        Pipeline {
            kind: super::command::Kind::BuiltIn,
            command: None,
            consumers: 1,
            sink: Sink::Memory,
            quiesce_timeout: Millis(60_000),
            assignment: Assignment::Manual,
            commit: CommitPolicy::WithSink,
            assignor: Assignor::Range,
            // Kafka 3.x's defaults.
            session_timeout: Millis(45_000),
            max_poll_interval: Millis(300_000),
            auto_commit_interval: Millis(5_000),
            group_instance_id: None,
            join_later: Vec::new(),
        }
    }
}

impl Pipeline {
    /// Whether the run's ETL is in a consumer group: the built-in ETL in group mode, or a command ETL whose
    /// progress is its group's committed offsets.
    pub fn uses_group(&self) -> bool {
        match (self.kind, &self.command) {
            (super::command::Kind::Command, Some(c)) => {
                c.progress == super::command::Progress::GroupOffsets
            }
            (super::command::Kind::Command, None) => false,
            (super::command::Kind::BuiltIn, _) => self.assignment == Assignment::Group,
        }
    }
}

/// What a group consumer does that a fault can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Its offset commit was acknowledged (an explicit commit; auto-commits happen off the consumer's thread).
    Commits,
    /// It wrote a batch to the sink.
    Writes,
}

/// `after = "consumer N commits"` / `"consumer N writes"`: the fault fires at the first such event once its `at`
/// has passed, while the consumer waits — nothing else happens on that consumer between the event and the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerEvent {
    pub consumer: u32,
    pub kind: EventKind,
}

impl fmt::Display for ConsumerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.kind {
            EventKind::Commits => "commits",
            EventKind::Writes => "writes",
        };
        write!(f, "consumer {} {verb}", self.consumer)
    }
}

impl std::str::FromStr for ConsumerEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<ConsumerEvent, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let expected =
            || format!("expected \"consumer N commits\" or \"consumer N writes\", found \"{s}\"");
        let ["consumer", n, verb] = words.as_slice() else {
            return Err(expected());
        };
        let consumer: u32 = n.parse().map_err(|_| expected())?;
        let kind = match *verb {
            "commits" => EventKind::Commits,
            "writes" => EventKind::Writes,
            _ => return Err(expected()),
        };
        Ok(ConsumerEvent { consumer, kind })
    }
}

impl Serialize for ConsumerEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConsumerEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ConsumerEvent, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// The group-mode keys, each with whether the file set it away from its default.
pub(super) fn group_keys_set(p: &Pipeline) -> [(&'static str, bool); 7] {
    let defaults = Pipeline::default();
    [
        ("commit", p.commit != defaults.commit),
        ("assignor", p.assignor != defaults.assignor),
        (
            "session_timeout",
            p.session_timeout != defaults.session_timeout,
        ),
        (
            "max_poll_interval",
            p.max_poll_interval != defaults.max_poll_interval,
        ),
        (
            "auto_commit_interval",
            p.auto_commit_interval != defaults.auto_commit_interval,
        ),
        ("group_instance_id", p.group_instance_id.is_some()),
        ("join_later", !p.join_later.is_empty()),
    ]
}

/// What is wrong with `[pipeline]`'s group settings, key by key (the rest is checked with the other sections).
pub(super) fn group_problems(s: &super::Scenario) -> Vec<(&'static str, String)> {
    let p = &s.pipeline;
    let mut out = Vec::new();
    if p.kind == super::command::Kind::Command {
        // A command ETL's own settings: `command::command_problems`.
        return out;
    }
    if p.assignment == Assignment::Manual {
        let group_only = group_keys_set(p);
        for (key, set) in group_only {
            if set {
                out.push((key, format!("{key} applies to a consumer group; set assignment = \"group\" (the manual assignment stores offsets with the data and never rebalances)")));
            }
        }
        return out;
    }
    if s.topology.clock == super::ClockMode::Virtual {
        out.push(("assignment", "a consumer group (librdkafka) keeps real time for its heartbeats, sessions and poll intervals; set [topology] clock = \"real\"".into()));
    }
    // Kafka's group.min/max.session.timeout.ms defaults: the coordinator refuses a join outside them.
    if !(6_000..=1_800_000).contains(&p.session_timeout.0) {
        out.push(("session_timeout", format!("expected between 6s and 30min (the brokers' group.min/max.session.timeout.ms), found {}", p.session_timeout)));
    }
    if p.max_poll_interval.0 < p.session_timeout.0 {
        out.push((
            "max_poll_interval",
            format!(
                "expected at least session_timeout ({}), as librdkafka requires, found {}",
                p.session_timeout, p.max_poll_interval
            ),
        ));
    }
    if p.commit == CommitPolicy::Auto && p.auto_commit_interval.0 == 0 {
        out.push((
            "auto_commit_interval",
            "expected a duration > 0, found 0".into(),
        ));
    }
    if p.group_instance_id
        .as_deref()
        .is_some_and(|id| id.trim().is_empty())
    {
        out.push((
            "group_instance_id",
            "expected a non-empty prefix, found \"\"".into(),
        ));
    }
    for n in &p.join_later {
        if *n == 0 || *n > p.consumers {
            out.push((
                "join_later",
                format!(
                    "expected consumers between 1 and {} (pipeline.consumers), found {n}",
                    p.consumers
                ),
            ));
        }
    }
    if p.join_later.len() as u32 >= p.consumers {
        out.push((
            "join_later",
            "expected at least one consumer to start with the run".into(),
        ));
    }
    out
}

/// What is wrong with a fault's `after` event.
pub(super) fn event_problem(s: &super::Scenario, event: ConsumerEvent) -> Option<String> {
    let p = &s.pipeline;
    if p.kind == super::command::Kind::Command {
        let progress = p.command.as_ref().map(|c| c.progress);
        return if event.kind != EventKind::Commits {
            Some(format!("the harness sees a command ETL's commits, not its writes; use \"consumer {} commits\" or fault at a time", event.consumer))
        } else if progress != Some(super::command::Progress::GroupOffsets) {
            Some("\"consumer N commits\" watches the group's committed offsets; it needs progress = \"group_offsets\"".into())
        } else if p.consumers != 1 || event.consumer != 1 {
            Some(format!("with a command ETL the harness sees the group's commits, not whose they are, so \"consumer N commits\" needs consumers = 1 and consumer 1 (found consumers = {}, consumer {})", p.consumers, event.consumer))
        } else {
            None
        };
    }
    if p.assignment != Assignment::Group {
        return Some(
            "consumer events exist for a consumer group; set [pipeline] assignment = \"group\""
                .into(),
        );
    }
    if event.consumer == 0 || event.consumer > p.consumers {
        return Some(format!(
            "expected a consumer between 1 and {} (pipeline.consumers), found {}",
            p.consumers, event.consumer
        ));
    }
    if event.kind == EventKind::Commits
        && !matches!(
            p.commit,
            CommitPolicy::AfterWrite | CommitPolicy::BeforeWrite
        )
    {
        return Some(format!(
            "with commit = \"{}\" the consumer makes no commit of its own to wait for; use \"consumer {} writes\", or commit = \"after_write\" / \"before_write\"",
            p.commit.name(),
            event.consumer
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    const BASE: &str =
        "name = \"g\"\n[workload]\noperations = 300\nrate = 100\n[topics]\npartitions = 2\n";

    fn errors(extra: &str) -> String {
        crate::scenario::errors_of(&format!("{BASE}{extra}"), "g.toml")
    }

    #[test]
    fn a_group_scenario_with_an_event_fault_is_valid() {
        let text = "[pipeline]\nconsumers = 3\nassignment = \"group\"\ncommit = \"before_write\"\nsession_timeout = \"6s\"\njoin_later = [3]\n\n[[faults]]\nat = \"1s\"\nafter = \"consumer 1 commits\"\naction = \"kill\"\ntarget = \"consumer 1\"\n";
        let s = Scenario::parse(&format!("{BASE}{text}"), "g.toml").expect("valid");
        assert_eq!(s.pipeline.assignment, Assignment::Group);
        assert_eq!(s.pipeline.commit, CommitPolicy::BeforeWrite);
        assert_eq!(
            s.faults[0].after,
            Some(ConsumerEvent {
                consumer: 1,
                kind: EventKind::Commits
            })
        );
    }

    #[test]
    fn group_settings_are_refused_with_their_place_when_they_cannot_work() {
        let e = errors("[pipeline]\ncommit = \"after_write\"\n");
        assert!(
            e.contains("g.toml:8:")
                && e.contains("pipeline.commit: commit applies to a consumer group"),
            "{e}"
        );
        let e = errors("[topology]\nclock = \"virtual\"\n[pipeline]\nassignment = \"group\"\n");
        assert!(
            e.contains("pipeline.assignment") && e.contains("clock = \"real\""),
            "{e}"
        );
        let e = errors("[pipeline]\nassignment = \"group\"\nsession_timeout = \"10s\"\nmax_poll_interval = \"5s\"\n");
        assert!(
            e.contains("pipeline.max_poll_interval: expected at least session_timeout"),
            "{e}"
        );
        let e = errors("[pipeline]\nassignment = \"group\"\nsession_timeout = \"1s\"\n");
        assert!(
            e.contains("pipeline.session_timeout: expected between 6s and 30min"),
            "{e}"
        );
        let e = errors("[pipeline]\nassignment = \"group\"\njoin_later = [1]\n");
        assert!(
            e.contains("pipeline.join_later: expected at least one consumer to start"),
            "{e}"
        );
    }

    #[test]
    fn an_event_fault_needs_a_group_and_an_event_the_policy_has() {
        let fault = "[[faults]]\nat = \"1s\"\nafter = \"consumer 1 commits\"\naction = \"kill\"\ntarget = \"consumer 1\"\n";
        let e = errors(fault);
        assert!(
            e.contains("faults[0].after: consumer events exist for a consumer group"),
            "{e}"
        );
        let e = errors(&format!("[pipeline]\nassignment = \"group\"\n{fault}"));
        assert!(
            e.contains("faults[0].after: with commit = \"with_sink\" the consumer makes no commit"),
            "{e}"
        );
        let e = errors(&format!(
            "[pipeline]\nassignment = \"group\"\ncommit = \"after_write\"\n{}",
            fault.replace("consumer 1 commits", "consumer 4 commits")
        ));
        assert!(
            e.contains("faults[0].after: expected a consumer between 1 and 1"),
            "{e}"
        );
        let e = errors(&fault.replace("consumer 1 commits", "consumer 1 sleeps"));
        assert!(
            e.contains("faults[0].after") && e.contains("expected \"consumer N commits\""),
            "{e}"
        );
    }

    #[test]
    fn consumer_events_parse_and_print_back() {
        let e: ConsumerEvent = "consumer 2 commits".parse().unwrap();
        assert_eq!(
            e,
            ConsumerEvent {
                consumer: 2,
                kind: EventKind::Commits
            }
        );
        assert_eq!(e.to_string(), "consumer 2 commits");
        assert_eq!(
            "consumer 1  writes".parse::<ConsumerEvent>().unwrap().kind,
            EventKind::Writes
        );
        let err = "consumer one commits".parse::<ConsumerEvent>().unwrap_err();
        assert!(err.contains("expected \"consumer N commits\""), "{err}");
        assert!("broker 1 commits".parse::<ConsumerEvent>().is_err());
    }
}
