//! # openmrs-etl-harness
//!
//! The test and simulation bench for the OpenMRS streaming ETL: clinical data committed in MySQL is captured
//! by Debezium, carried by Kafka, and turned by an ETL job into analytics tables. The harness stands that
//! topology up, drives it with seeded clinical workloads, injects faults, and checks what came out against
//! what went in.
//!
//! ## From a team's Rust tests
//!
//! The documented API is small: build or load a [`scenario::Scenario`] ([`scenario::ScenarioBuilder`] sets the
//! same fields a file does and checks them the same way), run it with [`live::Harness`] on any backend it lists,
//! and read the [`report::Report`] (`stable_text()` for `insta` snapshots, `assert_passed()` for a failure that
//! prints the seed and the command to reproduce). [`live::Harness::start`] gives a [`live::LiveRun`] while the
//! run goes on: the bootstrap servers and database URL for the test's own clients, and fault verbs recorded in
//! the history like the scenario's. [`broker`] is the embedded Kafka cluster on its own, for tests that only need
//! a Kafka. `examples/team-tests` is a crate that uses only this API, and `cargo test` runs it.
//!
//! The modules marked hidden (the capture, the clients, the pipeline, the topology backends, …) are public for
//! the CLI, the benches and the project's own tests; they change without notice.
//!
//! ## Architecture as the code has it
//!
//! The vocabulary is Jepsen's. `docs/architecture.md` has the data flow, the floors and what never imports
//! what; `tests/architecture.rs` checks those promises on the sources. Modules, from the bottom floor up:
//!
//! | floor | module | what it is |
//! |---|---|---|
//! | neutral | [`clock`] | one clock for the cluster, generator and capture: real, or virtual with timers that fire as it advances |
//! | neutral | [`rng`] | the seeded RNG every random choice derives from |
//! | neutral | [`model`] | the OpenMRS tables (real columns and MySQL types), row values, operation kinds, and the flat-encounter specification with row images — what the pipeline builds and the checkers' oracle recomputes |
//! | neutral | [`history`] | what a run recorded: commits, produce outcomes, consumed records, retention gaps, faults, a consumer group's assignments and commits, and the cluster-event vocabulary (leaders, ISRs, truncations, deletions); maps consumed records back to source changes |
//! | language | [`scenario`] | the test plan: one TOML file, parsed with located errors, defaults, cross-field checks |
//! | parts | [`workload`] | the schema fixture, reference data and the seeded generator of clinical operations |
//! | parts | [`source`] | where operations are committed: the in-memory OpenMRS database with a binlog, or MariaDB |
//! | parts | [`client`] | the harness's own Kafka client side: the Java-semantics producer (config, accumulator, sender, idempotence), murmur2 partitioning, wire helpers; takes its own config types |
//! | parts | [`broker`] | the embedded Kafka cluster: N brokers on the real wire protocol, logs with segments, retention, compaction, replication with ISR, controller, elections, truncation, faults, optional disk; record batch bytes shared by a partition's replicas and kept under a memory budget, the oldest in one spill file (`broker::log::spill`); consumer groups: `broker::group` (Kafka's classic protocol as a state machine) and `broker::coordinator` (placement on `__consumer_offsets`, its records, reload on leader change) |
//! | parts | [`cdc`] | the embedded Debezium-compatible capture: Debezium 3.2's JsonConverter bytes, snapshot, schema topics, produced through the harness producer |
//! | parts | [`pipeline`] | the ETL: consumers at explicit offsets, or members of one consumer group through librdkafka (`rdkafka`) with a commit policy and the consumer events event-triggered faults wait for; the Debezium decoder (a topic's schema bytes recognised and only the payload parsed; row images read straight into typed rows, with a generic path for what that reader leaves and for the error), the sinks (memory, MySQL); or a team's own ETL as processes (`kind = "command"`: the documented environment, consumer faults as signals, progress from its group's committed offsets or its progress row, `after = "consumer 1 commits"` by watching those offsets and freezing the process when they move) |
//! | parts | [`check`] | one checker per file over the history and final states: lost (by cause), duplicates, reorders, offset gaps, phantoms, retention loss, final state, liveness; for a team's ETL (`check::foreign`) its table against its batch query as normalised multisets, or (`check::flat_shape`) its three tables against the flat encounter table in a documented relational shape, the loss attributed by its progress |
//! | parts | [`report`] | verdicts against `[expect]`, metrics; terminal, JSON and stable text |
//! | parts | [`nemesis`] | runs `[[faults]]` at their times (or at a consumer event, `after = "consumer 1 commits"`, while the consumer waits), resolving roles when they fire, through a `FaultHost` |
//! | backends | [`topology`] | the `Topology` contract and its backends (`embedded`: the in-process cluster; `local`: MariaDB, ZooKeeper or KRaft, Kafka, Connect as processes; `containers`: the local backend's services each in a container through testcontainers, from images built on this machine or named from a registry by `[topology.images]`, with `docker/docker-compose.yml` held to the same configurations), and the capture as a plug (`capture::embedded`, `capture::debezium`); the one place a backend is chosen |
//! | driver | [`run`] | one driver for every backend: drive, pace (virtual clock), quiesce, judge; `Session` keeps a topology for several runs; `configure` maps a scenario to each component's config; `diff` compares verdicts across backends; `foreign` gives a team's ETL its MariaDB sink (a server started on embedded) and runs its `oracle_sql` over a scratch database of the source's final state, or renders the flat encounter oracle for it |
//! | driver | [`live`] | the library API: [`live::Harness`] runs a scenario on a thread and runtime of its own (any test flavour works, a blocking client in the test holds nothing up); [`live::LiveRun`] hands out the endpoints and sends fault verbs to the run's nemesis, which fires and records them as it does the file's faults |
//! | driver | [`fuzz_faults`] | property campaigns over fault schedules (`etl-harness fuzz-faults`): seeded schedules, shrinking, the minimal failing case written as a scenario; with several backends each case runs on every one through the diff and differing verdicts fail it |
//! | edge | [`cli`] | CLI commands that are more than a call into the library: `etl-harness up` (a cluster or the local stack to point clients at), `etl-harness test` (a suite runner with JUnit XML) |
//!
//! Why the structure differs from the shared design: the design's `Topology::start(backend)` hands back
//! endpoints and fault hooks; here a backend also answers the quiesce probe's cluster questions and hands the
//! driver its capture as a separate plug with the source it reads, because what "delivered" means depends on
//! the capture (the embedded producer's acknowledgements, or Connect's committed offsets plus the consumers' reads),
//! not on where the brokers run. The runner is its own module `run` (the design names its steps but no
//! module): it is the one place that knows every part, so the parts only know the floor and the bytes on the
//! wire. Planned modules (each lands with its issue, never as an empty placeholder): `sweep`.
//!
//! ## Data flow of one run
//!
//! ```text
//! scenario.toml ─► Scenario ─► topology::run_once ─► Topology::start / prepare
//! workload::Generator ─ops─► Capture plug: Source (commit → history) ─► capture ─records─► brokers ─► Pipeline ─► Sink
//!                                         ▲                                                 ▲            │
//!                             Nemesis (fault schedule) through run::Host ───────────────────┘            ▼
//!                                                         run::quiesce ─► check::all ─► report ─► exit code
//! ```
//!
//! No module reaches back up this chain: the generator does not know where its operations are committed,
//! the checker reads history rather than calling the broker.
//!
//! ## Determinism
//!
//! Every random choice derives from the scenario seed through [`rng::SeededRng`], which uses only
//! integer arithmetic and IEEE `+ - * /` on ChaCha8 output: the same seed gives the same bytes on every
//! machine (guarded by an insta snapshot of the first operations).
#![deny(rustdoc::broken_intra_doc_links)]

// The documented API: what a team's tests rely on.
pub mod broker;
pub mod check;
pub mod history;
pub mod live;
pub mod report;
pub mod run;
pub mod scenario;

// The parts behind it: public for the CLI, the benches and the project's own tests, not an API to rely on.
#[doc(hidden)]
pub mod cdc;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod client;
#[doc(hidden)]
pub mod clock;
#[doc(hidden)]
pub mod fuzz_faults;
#[doc(hidden)]
pub mod model;
#[doc(hidden)]
pub mod nemesis;
#[doc(hidden)]
pub mod pipeline;
#[doc(hidden)]
pub mod rng;
#[doc(hidden)]
pub mod source;
#[doc(hidden)]
pub mod topology;
#[doc(hidden)]
pub mod workload;
