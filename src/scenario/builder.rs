//! Scenarios written in code: [`ScenarioBuilder`] sets the same fields a scenario file does, and
//! [`ScenarioBuilder::build`] checks the result exactly as a file is checked — it renders the scenario as TOML and
//! parses that back, so defaults, cross-field rules and error messages are the file's, and the text is what a
//! failing run writes out to reproduce it.

use std::time::Duration;

use super::{
    Acks, Backend, ClockMode, Compression, Coordination, Count, Expect, Fault, FaultAction,
    FaultTarget, FinalState, Millis, Scenario, ScenarioErrors, Sink, TopicOverride,
};

/// A scenario built field by field, checked by [`build`](ScenarioBuilder::build) as a file is.
///
/// Starts from the defaults a file with only `name` gets (see `scenarios/README.md`); every setter names the key
/// it sets. [`with`](ScenarioBuilder::with) reaches any other field of [`Scenario`].
///
/// ```
/// use std::time::Duration;
/// use openmrs_etl_harness::scenario::{Count, Fault, FaultAction, FaultTarget, Scenario};
///
/// let scenario = Scenario::builder("leader kill under acks=all")
///     .seed(7)
///     .brokers(3)
///     .partitions(3)
///     .replication_factor(3)
///     .min_insync_replicas(2)
///     .operations(400)
///     .rate(200.0)
///     .fault(
///         Fault::new(FaultAction::Kill, FaultTarget::leader_of("dbserver1.openmrs.obs", 0))
///             .at(Duration::from_millis(500))
///             .lasting(Duration::from_secs(1)),
///     )
///     .expect_lost(Count::Exactly(0))
///     .build()
///     .expect("a valid scenario");
/// assert_eq!(scenario.faults.len(), 1);
///
/// // Checked as a file would be: a replication factor above the broker count is refused, with the key.
/// let refused = Scenario::builder("too few brokers").brokers(1).replication_factor(3).build();
/// assert!(refused.unwrap_err().to_string().contains("topics.replication_factor"));
/// ```
#[derive(Debug, Clone)]
pub struct ScenarioBuilder {
    scenario: Scenario,
}

impl Scenario {
    /// A builder for a scenario named `name`, with every other field at its default.
    pub fn builder(name: &str) -> ScenarioBuilder {
        ScenarioBuilder::new(name)
    }
}

fn millis(d: Duration) -> Millis {
    Millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ScenarioBuilder {
    /// A scenario named `name` with the defaults of a file that sets nothing else.
    pub fn new(name: &str) -> ScenarioBuilder {
        ScenarioBuilder {
            scenario: Scenario {
                name: name.to_owned(),
                description: None,
                seed: super::default_seed(),
                backends: super::default_backends(),
                topology: Default::default(),
                topics: Default::default(),
                producer: Default::default(),
                workload: Default::default(),
                capture: Default::default(),
                pipeline: Default::default(),
                expect: None,
                faults: Vec::new(),
            },
        }
    }

    /// Starts from an existing scenario (one loaded from a file, say) to change some of it.
    pub fn from_scenario(scenario: Scenario) -> ScenarioBuilder {
        ScenarioBuilder { scenario }
    }

    /// `description`
    pub fn description(mut self, text: &str) -> Self {
        self.scenario.description = Some(text.to_owned());
        self
    }

    /// `seed`: every random choice of the run derives from it.
    pub fn seed(mut self, seed: u64) -> Self {
        self.scenario.seed = seed;
        self
    }

    /// `backends`: where the scenario's expectations are claimed to hold.
    pub fn backends(mut self, backends: &[Backend]) -> Self {
        self.scenario.backends = backends.to_vec();
        self
    }

    /// `[topology] backend`, added to `backends` when not listed there.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.scenario.topology.backend = backend;
        if !self.scenario.backends.contains(&backend) {
            self.scenario.backends.push(backend);
        }
        self
    }

    /// `[topology] brokers`
    pub fn brokers(mut self, brokers: u32) -> Self {
        self.scenario.topology.brokers = brokers;
        self
    }

    /// `[topology] coordination`
    pub fn coordination(mut self, coordination: Coordination) -> Self {
        self.scenario.topology.coordination = coordination;
        self
    }

    /// `[topology] clock = "virtual"` and `deterministic = true` (embedded only): exact counts for a seed.
    pub fn deterministic(mut self) -> Self {
        self.scenario.topology.clock = ClockMode::Virtual;
        self.scenario.topology.deterministic = true;
        self
    }

    /// `[topics] partitions`, for every change topic without an override.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.scenario.topics.partitions = partitions;
        self
    }

    /// `[topics] replication_factor`
    pub fn replication_factor(mut self, factor: u32) -> Self {
        self.scenario.topics.replication_factor = factor;
        self
    }

    /// `[topics] min_insync_replicas`
    pub fn min_insync_replicas(mut self, replicas: u32) -> Self {
        self.scenario.topics.min_insync_replicas = replicas;
        self
    }

    /// `[topics] retention_ms`
    pub fn retention(mut self, retention: Duration) -> Self {
        self.scenario.topics.retention_ms = millis(retention);
        self
    }

    /// `[topics.tables.<table>]`: overrides for one table's change topic.
    pub fn table(mut self, table: &str, edit: impl FnOnce(&mut TopicOverride)) -> Self {
        edit(
            self.scenario
                .topics
                .tables
                .entry(table.to_owned())
                .or_default(),
        );
        self
    }

    /// `[producer] acks`
    pub fn acks(mut self, acks: Acks) -> Self {
        self.scenario.producer.acks = acks;
        self
    }

    /// `[producer] idempotence`
    pub fn idempotence(mut self, on: bool) -> Self {
        self.scenario.producer.idempotence = on;
        self
    }

    /// `[producer] compression`
    pub fn compression(mut self, compression: Compression) -> Self {
        self.scenario.producer.compression = compression;
        self
    }

    /// `[producer] linger`
    pub fn linger(mut self, linger: Duration) -> Self {
        self.scenario.producer.linger = millis(linger);
        self
    }

    /// `[workload] patients`
    pub fn patients(mut self, patients: u64) -> Self {
        self.scenario.workload.patients = patients;
        self
    }

    /// `[workload] operations` (instead of `duration`).
    pub fn operations(mut self, operations: u64) -> Self {
        self.scenario.workload.operations = Some(operations);
        self.scenario.workload.duration = None;
        self
    }

    /// `[workload] duration` (instead of `operations`): the count is `rate` × duration.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.scenario.workload.duration = Some(millis(duration));
        self.scenario.workload.operations = None;
        self
    }

    /// `[workload] rate`: operations committed per second.
    pub fn rate(mut self, per_second: f64) -> Self {
        self.scenario.workload.rate = per_second;
        self
    }

    /// `[pipeline] consumers`
    pub fn consumers(mut self, consumers: u32) -> Self {
        self.scenario.pipeline.consumers = consumers;
        self
    }

    /// `[pipeline] sink`
    pub fn sink(mut self, sink: Sink) -> Self {
        self.scenario.pipeline.sink = sink;
        self
    }

    /// `[pipeline] quiesce_timeout`
    pub fn quiesce_timeout(mut self, timeout: Duration) -> Self {
        self.scenario.pipeline.quiesce_timeout = millis(timeout);
        self
    }

    /// One `[[faults]]` entry.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.scenario.faults.push(fault);
        self
    }

    /// `[expect]`, whole.
    pub fn expect(mut self, expect: Expect) -> Self {
        self.scenario.expect = Some(expect);
        self
    }

    /// `[expect] lost`
    pub fn expect_lost(mut self, count: Count) -> Self {
        self.scenario
            .expect
            .get_or_insert_with(Expect::default)
            .lost = count;
        self
    }

    /// `[expect] duplicates`
    pub fn expect_duplicates(mut self, count: Count) -> Self {
        self.scenario
            .expect
            .get_or_insert_with(Expect::default)
            .duplicates = count;
        self
    }

    /// `[expect] reordered`
    pub fn expect_reordered(mut self, count: Count) -> Self {
        self.scenario
            .expect
            .get_or_insert_with(Expect::default)
            .reordered = count;
        self
    }

    /// `[expect] final_state`
    pub fn expect_final_state(mut self, state: FinalState) -> Self {
        self.scenario
            .expect
            .get_or_insert_with(Expect::default)
            .final_state = state;
        self
    }

    /// Any other field, through the same types the file is read into.
    pub fn with(mut self, edit: impl FnOnce(&mut Scenario)) -> Self {
        edit(&mut self.scenario);
        self
    }

    /// The scenario, checked as a file is: its TOML rendering goes through [`Scenario::parse`], so an error
    /// names the key (at a line of that rendering, which [`Scenario::to_toml`] prints).
    pub fn build(self) -> Result<Scenario, ScenarioErrors> {
        let text = toml::to_string(&self.scenario).map_err(|e| {
            ScenarioErrors(vec![super::ScenarioError {
                file: self.origin(),
                line: 1,
                column: 1,
                key: String::new(),
                message: format!("cannot render the scenario as TOML: {e}"),
            }])
        })?;
        Scenario::parse(&text, &self.origin())
    }

    fn origin(&self) -> String {
        format!("<scenario `{}` built in code>", self.scenario.name)
    }
}

impl Fault {
    /// `action` on `target` at the start of the stream (move it with [`at`](Fault::at)).
    pub fn new(action: FaultAction, target: FaultTarget) -> Fault {
        Fault {
            at: Millis(0),
            action,
            target,
            duration: None,
            latency: None,
            after: None,
        }
    }

    /// `at`: when it fires, from the start of the stream.
    pub fn at(mut self, at: Duration) -> Fault {
        self.at = millis(at);
        self
    }

    /// `duration`: undone after this long (a killed broker restarted, an isolated one healed, a stall ended).
    pub fn lasting(mut self, duration: Duration) -> Fault {
        self.duration = Some(millis(duration));
        self
    }

    /// `latency`: for the `latency` action, the delay added to each answer.
    pub fn latency(mut self, latency: Duration) -> Fault {
        self.latency = Some(millis(latency));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_scenario_equals_the_file_that_says_the_same() {
        let file = Scenario::parse(
            r#"
name = "same"
seed = 9
backends = ["embedded", "local"]
[topology]
brokers = 3
[topics]
partitions = 2
replication_factor = 3
min_insync_replicas = 2
[topics.tables.obs]
partitions = 6
[producer]
acks = 1
idempotence = false
[workload]
operations = 300
rate = 100
[pipeline]
consumers = 2
[expect]
lost = "= truncated_acked"
[[faults]]
at = "1s"
action = "kill"
target = "leader of dbserver1.openmrs.obs partition 5"
duration = "1s"
"#,
            "same.toml",
        )
        .unwrap();
        let built = Scenario::builder("same")
            .seed(9)
            .backends(&[Backend::Embedded, Backend::Local])
            .brokers(3)
            .partitions(2)
            .replication_factor(3)
            .min_insync_replicas(2)
            .table("obs", |o| o.partitions = Some(6))
            .acks(Acks::Leader)
            .idempotence(false)
            .operations(300)
            .rate(100.0)
            .consumers(2)
            .expect_lost(Count::parse("= truncated_acked").unwrap())
            .fault(
                Fault::new(
                    FaultAction::Kill,
                    FaultTarget::leader_of("dbserver1.openmrs.obs", 5),
                )
                .at(Duration::from_secs(1))
                .lasting(Duration::from_secs(1)),
            )
            .build()
            .unwrap();
        assert_eq!(built, file);
    }

    #[test]
    fn a_built_scenario_is_refused_where_a_file_would_be_with_the_key() {
        let errors = Scenario::builder("bad")
            .brokers(3)
            .fault(Fault::new(FaultAction::Stall, FaultTarget::Consumer(4)))
            .build()
            .unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("<scenario `bad` built in code>"), "{text}");
        assert!(text.contains("faults[0].target"), "{text}");
        assert!(
            text.contains("expected a consumer between 1 and 1"),
            "{text}"
        );
        assert!(text.contains("faults[0].duration"), "{text}");
    }

    #[test]
    fn backend_adds_itself_to_the_listed_backends() {
        let s = Scenario::builder("b")
            .backend(Backend::Local)
            .build()
            .unwrap();
        assert_eq!(s.backends, vec![Backend::Embedded, Backend::Local]);
        assert_eq!(s.topology.backend, Backend::Local);
    }
}
