//! Cross-field checks: what each key cannot tell alone.

use super::location::{Located, Seg};
use super::{
    Acks, Backend, ClockMode, FaultAction, FaultTarget, Scenario, ScenarioError, TopicOverride,
};
use crate::model::{schema, OpKind};

pub(super) fn check(s: &Scenario, doc: &Located) -> Vec<ScenarioError> {
    let mut errors = Vec::new();
    let mut err = |path: &[Seg], message: String| errors.push(doc.error_at(path, message));
    use Seg::{Index, Key};

    if s.name.trim().is_empty() {
        err(
            &[Key("name")],
            "expected a non-empty name, found \"\"".into(),
        );
    }
    if s.backends.is_empty() {
        err(
            &[Key("backends")],
            "expected at least one backend (embedded, local, containers, external), found []"
                .into(),
        );
    }
    if !s.backends.contains(&s.topology.backend) {
        let listed: Vec<&str> = s.backends.iter().map(|b| b.name()).collect();
        err(
            &[Key("topology"), Key("backend")],
            format!(
                "expected one of the scenario's backends [{}], found \"{}\" (add it to `backends` if the scenario is valid there)",
                listed.join(", "),
                s.topology.backend.name()
            ),
        );
    }
    let off_embedded = off_embedded(s);
    if s.topology.clock == ClockMode::Virtual && !off_embedded.is_empty() {
        err(
            &[Key("topology"), Key("clock")],
            format!(
                "a virtual clock exists only on the embedded backend, but `backends` also lists {}",
                off_embedded.join(", ")
            ),
        );
    }
    if s.topology.deterministic && s.topology.clock != ClockMode::Virtual {
        err(
            &[Key("topology"), Key("deterministic")],
            "deterministic mode needs `clock = \"virtual\"` (time must move only when the run moves it); add it, or drop `deterministic`".into(),
        );
    }
    if s.topology.deterministic && !off_embedded.is_empty() {
        err(
            &[Key("topology"), Key("deterministic")],
            format!(
                "deterministic mode exists only on the embedded backend, but `backends` also lists {}",
                off_embedded.join(", ")
            ),
        );
    }

    if !s.topology.images.is_empty() {
        if !s.backends.contains(&Backend::Containers) {
            err(
                &[Key("topology"), Key("images")],
                "images are for the containers backend, which `backends` does not list".into(),
            );
        }
        if let Err(e) = crate::topology::containers::registry::Chosen::resolve(&s.topology.images) {
            err(&[Key("topology"), Key("images"), Key(e.key)], e.message);
        }
    }

    if s.pipeline.sink == super::Sink::Mysql && s.backends.contains(&Backend::Embedded) {
        err(
            &[Key("pipeline"), Key("sink")],
            "the MySQL sink lives in the local backend's MariaDB, but `backends` lists embedded; use `sink = \"memory\"`, or list only backends with a MariaDB (`backends = [\"local\"]`)".into(),
        );
    }

    let brokers = s.topology.brokers;
    if brokers == 0 {
        err(
            &[Key("topology"), Key("brokers")],
            "expected at least 1 broker, found 0".into(),
        );
    }

    // Topics: the defaults, then each override resolved against them.
    let check_topic = |path: &[Seg],
                       settings: &super::TopicSettings,
                       written: &dyn Fn(&str) -> bool,
                       out: &mut Vec<ScenarioError>| {
        let at = |key: &'static str| {
            let mut p = path.to_vec();
            p.push(Seg::Key(key));
            p
        };
        if settings.partitions == 0 {
            out.push(doc.error_at(
                &at("partitions"),
                "expected at least 1 partition, found 0".into(),
            ));
        }
        if settings.replication_factor == 0 {
            out.push(doc.error_at(
                &at("replication_factor"),
                "expected a replication factor of at least 1, found 0".into(),
            ));
        } else if settings.replication_factor > brokers && brokers > 0 {
            out.push(doc.error_at(
                &at("replication_factor"),
                format!(
                    "expected at most {brokers} (topology.brokers), found {}: each replica needs its own broker",
                    settings.replication_factor
                ),
            ));
        }
        if settings.min_insync_replicas == 0 {
            out.push(doc.error_at(
                &at("min_insync_replicas"),
                "expected at least 1, found 0".into(),
            ));
        } else if settings.min_insync_replicas > settings.replication_factor
            && settings.replication_factor > 0
        {
            let key = if written("min_insync_replicas") || !written("replication_factor") {
                "min_insync_replicas"
            } else {
                "replication_factor"
            };
            out.push(doc.error_at(
                &at(key),
                format!(
                    "min_insync_replicas ({}) must not exceed replication_factor ({}): no write with acks=all could ever succeed",
                    settings.min_insync_replicas, settings.replication_factor
                ),
            ));
        }
        if settings.segment_bytes.0 < 14 {
            out.push(doc.error_at(
                &at("segment_bytes"),
                format!(
                    "expected at least 14 bytes (Kafka's minimum), found {}",
                    settings.segment_bytes
                ),
            ));
        }
    };
    let mut topic_errors = Vec::new();
    check_topic(
        &[Key("topics")],
        &s.topics.defaults(),
        &|_| true,
        &mut topic_errors,
    );
    let known_tables: Vec<&str> = schema::MODELED_TABLES.iter().map(|t| t.name).collect();
    for (table, o) in &s.topics.tables {
        let path = [Key("topics"), Key("tables"), Key(table.as_str())];
        if !known_tables.contains(&table.as_str()) {
            topic_errors.push(doc.error_at(
                &path,
                format!(
                    "expected a captured table ({}), found \"{table}\"",
                    known_tables.join(", ")
                ),
            ));
            continue;
        }
        let written = |key: &str| override_has(o, key);
        check_topic(&path, &s.topic_settings(table), &written, &mut topic_errors);
    }
    errors.extend(topic_errors);
    let mut err = |path: &[Seg], message: String| errors.push(doc.error_at(path, message));

    // Producer: the Java client's own rules for idempotence.
    let p = &s.producer;
    if p.max_in_flight == 0 {
        err(
            &[Key("producer"), Key("max_in_flight")],
            "expected at least 1, found 0".into(),
        );
    }
    // The Java client refuses a configured delivery.timeout.ms below linger.ms + request.timeout.ms.
    let floor = p.linger.0.saturating_add(super::REQUEST_TIMEOUT.0);
    if p.delivery_timeout.0 < floor {
        err(
            &[Key("producer"), Key("delivery_timeout")],
            format!(
                "expected at least linger + request.timeout.ms (30s) = {floor}ms, found {}ms; the Java producer refuses less",
                p.delivery_timeout.0
            ),
        );
    }
    if p.delivery_timeout.0 > i32::MAX as u64 {
        err(
            &[Key("producer"), Key("delivery_timeout")],
            format!(
                "expected at most 2147483647ms (delivery.timeout.ms is a Java int), found {}ms",
                p.delivery_timeout.0
            ),
        );
    }
    if p.idempotence {
        if p.acks != Acks::All {
            err(
                &[Key("producer"), Key("acks")],
                format!("idempotence requires acks = \"all\", found {}; set idempotence = false to use it", acks_name(p.acks)),
            );
        }
        if p.max_in_flight > 5 {
            err(
                &[Key("producer"), Key("max_in_flight")],
                format!(
                    "idempotence allows at most 5 in-flight requests, found {}",
                    p.max_in_flight
                ),
            );
        }
        if p.retries == 0 {
            err(
                &[Key("producer"), Key("retries")],
                "idempotence requires retries > 0, found 0".into(),
            );
        }
    }

    // Workload.
    let w = &s.workload;
    if !(w.rate.is_finite() && w.rate > 0.0) {
        err(
            &[Key("workload"), Key("rate")],
            format!("expected operations per second > 0, found {}", w.rate),
        );
    }
    if w.operations.is_some() && w.duration.is_some() {
        err(
            &[Key("workload"), Key("duration")],
            "give either `operations` or `duration`, not both".into(),
        );
    }
    if !(0.0..=1.0).contains(&w.skew.hot_share) {
        err(
            &[Key("workload"), Key("skew"), Key("hot_share")],
            format!(
                "expected a share between 0 and 1, found {}",
                w.skew.hot_share
            ),
        );
    }
    if w.skew.hot_share > 0.0 && w.skew.hot_patients == 0 {
        err(
            &[Key("workload"), Key("skew"), Key("hot_patients")],
            "expected at least 1 hot patient when hot_share > 0, found 0".into(),
        );
    }
    for kind in OpKind::ALL {
        let v = w.mix.weight(kind);
        if !(v.is_finite() && v >= 0.0) {
            err(
                &[Key("workload"), Key("mix"), Key(kind.name())],
                format!("expected a weight >= 0, found {v}"),
            );
        }
    }
    if let Some((key, why)) = w.mix.infeasibility() {
        err(&[Key("workload"), Key("mix"), Key(key)], why);
    }
    // NaN weights were reported above; a total that is not positive (or NaN) has nothing to draw.
    if w.mix.total().partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        err(
            &[Key("workload"), Key("mix")],
            "expected at least one operation kind with a weight > 0, found all 0".into(),
        );
    }

    if s.pipeline.consumers == 0 {
        err(
            &[Key("pipeline"), Key("consumers")],
            "expected at least 1 consumer, found 0".into(),
        );
    }
    // The pipeline shares out partitions: more consumers than the largest change topic has partitions leaves
    // consumers idle on the hot topic, which is never what a sizing run means.
    let most_partitions = s
        .topic_plans()
        .iter()
        .map(|t| t.settings.partitions)
        .max()
        .unwrap_or(0);
    for (key, message) in super::pipeline::group_problems(s) {
        err(&[Key("pipeline"), Key(key)], message);
    }
    for (key, message) in super::command::command_problems(s) {
        err(&[Key("pipeline"), Key(key)], message);
    }
    if s.pipeline.consumers > most_partitions
        && s.pipeline.assignment == super::Assignment::Manual
        && s.pipeline.kind == super::command::Kind::BuiltIn
    {
        err(
            &[Key("pipeline"), Key("consumers")],
            format!("expected at most {most_partitions} consumers (the most partitions of any change topic), found {}; add partitions or use fewer consumers", s.pipeline.consumers),
        );
    }
    if s.pipeline.quiesce_timeout.0 == 0 {
        err(
            &[Key("pipeline"), Key("quiesce_timeout")],
            "expected a duration > 0, found 0".into(),
        );
    }

    // Faults: targets must exist, times must fall inside the run, actions must fit target and backends.
    let run = w.run_length();
    for (i, f) in s.faults.iter().enumerate() {
        let at = |key: &'static str| [Key("faults"), Index(i), Key(key)];
        if f.at >= run {
            err(&at("at"), format!("expected a time inside the run (before {run}: {} operations at {}/s), found {}", w.operation_count(), w.rate, f.at));
        }
        for (key, message) in fault_problems(s, f) {
            err(&at(key), message);
        }
        if let Some(d) = f.duration {
            if f.at.0.saturating_add(d.0) > run.0 {
                err(
                    &at("duration"),
                    format!(
                        "the fault would last past the end of the run ({} + {} > {run})",
                        f.at, d
                    ),
                );
            }
        }
    }
    errors
}

/// What is wrong with fault `f` in scenario `s`, key by key, apart from its timing (the file's `at` and the end
/// of the run; a fault asked for while a run is live fires now): its target exists, its action fits the target
/// and the backends, and the keys the action needs or refuses.
pub(crate) fn fault_problems(s: &Scenario, f: &super::Fault) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let mut err = |key: &'static str, message: String| problems.push((key, message));
    let brokers = s.topology.brokers;
    let topics = s.topic_plans();
    let off_embedded = off_embedded(s);
    match &f.target {
        FaultTarget::Broker(id) if *id == 0 || *id > brokers => {
            err(
                "target",
                format!("expected a broker id between 1 and {brokers}, found {id}"),
            );
        }
        FaultTarget::Consumer(n) if *n == 0 || *n > s.pipeline.consumers => {
            err(
                "target",
                format!(
                    "expected a consumer between 1 and {} (pipeline.consumers), found {n}",
                    s.pipeline.consumers
                ),
            );
        }
        FaultTarget::LeaderOf { topic, partition }
        | FaultTarget::FollowerOf { topic, partition }
        | FaultTarget::FollowersOf { topic, partition } => {
            match topics.iter().find(|t| &t.name == topic) {
                None => err(
                    "target",
                    format!(
                        "expected a change topic such as \"{}\", found \"{topic}\"",
                        s.topic_name("obs")
                    ),
                ),
                Some(t) if *partition >= t.settings.partitions => err(
                    "target",
                    format!(
                        "{topic} has partitions 0..{}, found partition {partition}",
                        t.settings.partitions
                    ),
                ),
                Some(t)
                    if matches!(
                        f.target,
                        FaultTarget::FollowerOf { .. } | FaultTarget::FollowersOf { .. }
                    ) && t.settings.replication_factor < 2 =>
                {
                    err(
                        "target",
                        format!(
                            "{topic} has replication_factor {}, so it has no followers",
                            t.settings.replication_factor
                        ),
                    )
                }
                Some(_) => {}
            }
        }
        _ => {}
    }
    let allowed: &[FaultAction] = if f.target.is_broker() {
        &[
            FaultAction::Stop,
            FaultAction::Kill,
            FaultAction::Crash,
            FaultAction::Restart,
            FaultAction::Isolate,
            FaultAction::Heal,
            FaultAction::Pause,
            FaultAction::Resume,
            FaultAction::Latency,
        ]
    } else if f.target == FaultTarget::Connector {
        &[
            FaultAction::Stop,
            FaultAction::Kill,
            FaultAction::Restart,
            FaultAction::Pause,
            FaultAction::Resume,
        ]
    } else if s.pipeline.kind == super::PipelineKind::Command
        && matches!(f.target, FaultTarget::Consumer(_))
    {
        // A process: SIGTERM (stop), SIGKILL, a new process, SIGSTOP for a while or until resumed.
        &[
            FaultAction::Stop,
            FaultAction::Kill,
            FaultAction::Restart,
            FaultAction::Stall,
            FaultAction::Pause,
            FaultAction::Resume,
        ]
    } else {
        &[
            FaultAction::Kill,
            FaultAction::Restart,
            FaultAction::Stall,
            FaultAction::Pause,
            FaultAction::Resume,
        ]
    };
    if !allowed.contains(&f.action) {
        let names: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
        err(
            "action",
            format!(
                "{} cannot be applied to {}; expected one of {}",
                f.action.name(),
                f.target,
                names.join(", ")
            ),
        );
    }
    if f.action == FaultAction::Crash && !off_embedded.is_empty() {
        err("action",
            format!("crash (losing the unflushed log) exists only on the embedded backend, but `backends` also lists {}", off_embedded.join(", ")),
        );
    }
    if f.target == FaultTarget::Coordinator && !s.pipeline.uses_group() {
        err(
            "target",
            "the group coordinator exists for a consumer group; set [pipeline] assignment = \"group\"".into(),
        );
    }
    if let Some(event) = f.after {
        if let Some(message) = super::pipeline::event_problem(s, event) {
            err("after", message);
        }
    }
    if f.action == FaultAction::Latency && f.latency.is_none() {
        err(
            "latency",
            "the latency action needs `latency`, e.g. latency = \"200ms\"".into(),
        );
    }
    if f.action == FaultAction::Stall && f.duration.is_none() {
        err(
            "duration",
            "the stall action needs `duration`, e.g. duration = \"30s\"".into(),
        );
    }
    // `duration` undoes the fault after D; restart, heal and resume undo something themselves.
    if f.duration.is_some()
        && matches!(
            f.action,
            FaultAction::Restart | FaultAction::Heal | FaultAction::Resume
        )
    {
        err("duration",
            format!(
                "{} has nothing to undo, so it takes no duration; duration belongs on the fault it ends (e.g. kill with duration = \"2s\" restarts after 2 s)",
                f.action.name()
            ),
        );
    }
    problems
}

/// The backends `s` lists besides embedded.
fn off_embedded(s: &Scenario) -> Vec<&'static str> {
    s.backends
        .iter()
        .filter(|b| **b != Backend::Embedded)
        .map(|b| b.name())
        .collect()
}

fn acks_name(a: Acks) -> String {
    match a {
        Acks::All => "\"all\"".into(),
        other => other.wire().to_string(),
    }
}

fn override_has(o: &TopicOverride, key: &str) -> bool {
    match key {
        "partitions" => o.partitions.is_some(),
        "replication_factor" => o.replication_factor.is_some(),
        "min_insync_replicas" => o.min_insync_replicas.is_some(),
        _ => false,
    }
}
