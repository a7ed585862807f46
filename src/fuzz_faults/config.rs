//! What a campaign does: its base scenario (the built-in safe one, or the user's), the kinds of fault it draws, how
//! many cases, from which seed, and where the failure goes.

use std::path::PathBuf;

use crate::scenario::{Backend, Scenario, ScenarioErrors};

/// The base scenario of a campaign when the user gives none: small (30 patients, 500 operations in half a
/// second) so a case takes about a second, with the settings that promise no loss.
pub const SAFE_BASE: &str = r#"name = "fault-campaign"
description = "fault-schedule property: safe settings, every schedule must lose nothing"
seed = 1

[topology]
brokers = 3

[topics]
partitions = 2
replication_factor = 3
min_insync_replicas = 2
unclean_leader_election = false

[producer]
acks = "all"
linger = "2ms"
idempotence = true

[workload]
patients = 30
operations = 500
rate = 1000

[pipeline]
consumers = 2
quiesce_timeout = "45s"
"#;

/// The base of a differential campaign (`--backends embedded,local`) when the user gives none: the safe settings
/// on a real clock (the local backend has no virtual one), a 10 s stream so faults meet real sessions (6 s on
/// local) and real retries, listing both backends.
pub const DIFFERENTIAL_BASE: &str = r#"name = "fault-campaign-differential"
description = "fault-schedule property on several backends: safe settings lose nothing, and every backend gives the same verdicts"
seed = 1
backends = ["embedded", "local"]

[topology]
brokers = 3

[topics]
partitions = 2
replication_factor = 3
min_insync_replicas = 2
unclean_leader_election = false

[producer]
acks = "all"
linger = "2ms"
idempotence = true
max_in_flight = 1

[workload]
patients = 30
operations = 800
rate = 80

[pipeline]
consumers = 2
quiesce_timeout = "90s"
"#;

/// Which kinds of episode a campaign draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMix {
    /// Every kind: broker stop/kill/crash/restart/isolate/pause/latency by id or role, connector and consumer
    /// restarts, pauses and stalls.
    Any,
    /// Only broker outages that take leaders away (leader kills while the partition's followers are paused,
    /// bounces by id, leader kills): the faults that lose acknowledged writes under unsafe settings.
    LeaderKills,
}

/// What a campaign does.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// Passing cases wanted before the campaign ends.
    pub cases: u32,
    /// Seed of every schedule and case seed the campaign draws.
    pub seed: u64,
    pub mix: FaultMix,
    /// Runs the shrinker may spend on a failure (each is a whole scenario run).
    pub max_shrink_runs: u32,
    /// Where the shrunk failing scenario is written.
    pub out_dir: PathBuf,
    /// The backends each case runs on: one (the property alone), or several (each case on every one with the
    /// same seed; differing verdicts fail the case too).
    pub backends: Vec<Backend>,
}

impl CampaignConfig {
    pub fn new(cases: u32, seed: u64, out_dir: impl Into<PathBuf>) -> CampaignConfig {
        CampaignConfig {
            cases,
            seed,
            mix: FaultMix::Any,
            max_shrink_runs: 48,
            out_dir: out_dir.into(),
            backends: vec![crate::topology::default_backend()],
        }
    }
}

/// Parses a base scenario for a campaign (its own `[[faults]]` and `[expect]` are replaced by each case's).
pub fn base_scenario(text: &str, file: &str) -> Result<Scenario, ScenarioErrors> {
    Scenario::parse(text, file)
}
