//! What `etl-harness fuzz-faults` runs: property tests over fault schedules, shrunk to a scenario file.
//!
//! The property is the one the harness exists for: whatever faults a schedule throws at a safely configured
//! pipeline (acks=all, replication factor 3, min ISR 2, clean election, idempotence), no change is lost, none is
//! reordered, the sink equals the batch recomputation, and the pipeline catches up. A campaign draws schedules
//! from a seed, runs each as a whole scenario through [`crate::run::run`], stops at the first one that breaks the
//! property, shrinks it (fewer faults, earlier, shorter, simpler ones) and writes the smallest failing schedule as
//! a scenario file that `etl-harness run <file> --seed N` reproduces. `etl-harness fuzz-faults` runs long
//! campaigns; `tests/fault_properties.rs` runs short ones in CI.
//!
//! ## How a schedule is drawn
//!
//! A schedule is drawn as *episodes* — "bounce broker 2", "pause the leader of obs/0 for a while", "stall
//! consumer 1" — with start and length as fractions of the run, so one draw fits any base scenario and
//! shrinking moves toward "earlier" and "shorter" without knowing the run's length. [`proptest`] does the drawing
//! and the shrinking (dropping episodes, lowering numbers, choosing earlier alternatives: the alternatives are
//! listed simplest first). Each draw is then laid out into `[[faults]]` by rules that keep it within what the
//! safe settings promise to survive:
//! - episodes on brokers never overlap: at most one broker is away at any time (RF 3 with min ISR 2 tolerates
//!   one);
//! - a broker taken down by id is restarted by the same id before the run ends;
//! - a role target ("leader of …", "a follower of …", "the controller") is resolved when its fault fires, so a
//!   later fault could not name the broker it hit: roles are paused, isolated or slowed with a `duration` (undone
//!   on the broker they hit), or taken down for good as the last broker episode of the run;
//! - the connector and each consumer are their own lanes: one episode at a time, each undone before the end.
//!
//! An episode that no longer fits before the end of the run is dropped. Every laid-out schedule is rendered as
//! TOML and parsed back with [`Scenario::parse`](crate::scenario::Scenario::parse): a schedule the scenario language rejects is a bug of this
//! module and stops the campaign.
//!
//! ## Differential campaigns
//!
//! With several backends (`--backends embedded,local`) every case runs on each with the same seed
//! ([`crate::run::diff::diff_on`]; the local runs share one topology for the whole campaign), schedules keep to
//! the faults every listed backend performs (a `crash` becomes a `kill` where one cannot crash), and a case fails
//! when any backend breaks the property or when the backends' verdicts differ. The shrunk case is written listing
//! those backends, reproduced by `etl-harness diff <file> --backends …`.
//!
//! This module is not the nemesis: it writes schedules, [`crate::run::run`] executes them.

mod config;
mod draw;
mod error;
mod failure_file;
mod layout;
mod report;
mod search;

pub use config::{base_scenario, CampaignConfig, FaultMix, DIFFERENTIAL_BASE, SAFE_BASE};
pub use draw::{sample_schedules, MAX_EPISODES};
pub use error::CampaignError;
pub use report::{CampaignReport, CaseVerdict, FoundFailure, Progress};
pub use search::search;
