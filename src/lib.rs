//! # openmrs-etl-harness
//!
//! The test and simulation bench for the OpenMRS streaming ETL: clinical data committed in MySQL is captured
//! by Debezium, carried by Kafka, and turned by an ETL job into analytics tables. The harness stands that
//! topology up, drives it with seeded clinical workloads, injects faults, and checks what came out against
//! what went in.
//!
//! ## Architecture as the code has it
//!
//! The vocabulary is Jepsen's (see `../shared/design/ARCHITECTURE.md` for the full plan):
//!
//! | module | status | what it is |
//! |---|---|---|
//! | [`scenario`] | built | the test plan: one TOML file, parsed with located errors, defaults, cross-field checks |
//! | [`workload`] | built | the OpenMRS data model (real columns and MySQL types), schema fixture, seeded generator of clinical operations |
//! | [`broker`] | parts 1–2 | the embedded Kafka cluster: N brokers on the real wire protocol (kafka-protocol), logs with segments, retention, compaction, DeleteRecords (in memory, optionally written through to disk), replication with ISR, high watermark, controller, elections, truncation, faults on the cluster handle, an event log; `etl-harness up` |
//! | [`clock`] | built | one clock for the cluster (and later generator and capture): real, or virtual with timers that fire as it advances |
//! | [`kafka`] | producer | the harness producer on `kafka-protocol`: Java-producer semantics (acks, linger/batch, compression, retries, max in flight, client-side idempotence), murmur2 partitioning identical to Java's |
//! | [`topology`] | local | the `local` backend's processes: MariaDB, ZooKeeper or a KRaft quorum controller, N Kafka 3.9.1 brokers, Kafka Connect + Debezium (producer settings as `producer.override.*`), provisioned from a Maven manifest like images; scenario topics by CreateTopics; stop/kill/pause/resume/restart of brokers and the Connect worker, isolation and latency at per-broker loopback proxies; a cluster watch (Metadata, replica offsets and broker logs polled) that writes leader/ISR changes, fencing, truncations and retention deletions into the event log; `etl-harness up --backend local` |
//! | [`source`] | in-memory, MariaDB | where operations are committed: the `Source` trait; the in-memory OpenMRS database with a binlog (file/pos, GTIDs, commit times), consistent snapshots and the final state for the oracle; the MariaDB source of the local backend (one SQL transaction per operation, GTID read back) |
//! | [`cdc`] | embedded | the Debezium-compatible capture: Debezium 3.2's JsonConverter bytes (MySQL or MariaDB connector flavour), initial snapshot, schema-change and schema-history topics, produced through the harness producer; resumes from its last acknowledged transaction |
//! | [`pipeline`] | memory sink | the ETL: consumers sharing partitions by the harness's assignment at explicit offsets, the Debezium decoder, the sink (latest image per row by source position, offsets stored with the data), the flat encounter table |
//! | [`history`] | built | what a run recorded: commits, produce outcomes, consumed records, retention gaps, faults, the cluster's event log; maps consumed records back to source changes |
//! | [`check`] | built | checkers over the history and final states: lost (by cause), duplicates, reorders, offset gaps, phantoms, retention loss, final state against the oracle, liveness |
//! | [`report`] | built | verdicts against `[expect]` (counts and relations), metrics; terminal, JSON and stable text |
//! | [`campaign`] | built | property tests over fault schedules: seeded schedules of safe faults, shrinking, the minimal failing case written as a scenario file; `etl-harness fuzz-faults` |
//! | [`nemesis`] | embedded, local | runs `[[faults]]` at their times (real or virtual clock), resolving roles (leader, follower, controller) when they fire; undoes what is left after the stream; acts through a `FaultHost`: the embedded cluster and capture, or the local processes (signals, loopback proxies, Connect's REST API) |
//! | [`run`] | embedded, local | one run end to end: topology, baseline, capture, pipeline, paced stream with the nemesis, quiesce, check, report; on `local` the capture is Debezium itself, faults act on the processes, and quiesce waits for Connect's committed offset of the last commit; a log observer (a consumer of the harness's own) stands in for Debezium's invisible produce acknowledgements; `run::LocalSession` keeps one local topology for several runs (fresh database, connector and topic names per run); `run::diff` runs one scenario on several backends (the embedded run beside the others) and compares verdicts (`etl-harness diff`) |
//!
//! Planned modules (each lands with its issue, never as an empty placeholder): `sweep`. The runner
//! lives in its own module `run` (the design's data flow names its steps but no module): it is the one place
//! that knows every part, so the parts only know the history contract and the bytes on the wire.
//!
//! ## Data flow of one run
//!
//! ```text
//! scenario.toml ─► Scenario ─► Topology::start(backend)
//! workload::Generator ─ops─► Source (commit → history) ─► CDC ─records─► brokers ─► Pipeline ─► Sink
//!                                       ▲                                  ▲            │
//!                           Nemesis (fault schedule) ──────────────────────┘            ▼
//!                                                        quiesce ─► check ─► report ─► exit code
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

pub mod broker;
pub mod cdc;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
pub mod fuzz_faults;
pub mod history;
pub mod model;
pub mod nemesis;
pub mod pipeline;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod source;
pub mod topology;
pub mod workload;
