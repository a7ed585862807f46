//! The seeded generator of clinical operations over the OpenMRS data model ([`crate::model`]).
//!
//! - [`reference`](mod@reference): rows every database has before the first patient (concepts, locations, encounter types…).
//! - [`generator`]: [`Generator`] yields [`Operation`]s ([`operation`]) — one source transaction each, with full before/after
//!   row images — first the baseline population (rows that exist before capture starts), then the stream.
//! - [`sql`]: the workload as SQL (loads into MySQL/MariaDB after the schema fixture) or JSON lines.
//!
//! The generator knows nothing of where its operations are committed. The same seed gives a byte-identical
//! stream on every machine: all randomness is [`crate::rng::SeededRng`], maps are ordered, and no platform math is
//! used.

pub mod concepts;
pub mod generator;
mod names;
pub mod operation;
pub mod reference;
pub mod sql;

pub use generator::Generator;
pub use operation::{ChangeKind, Operation, Phase, RowChange};

use serde::{Deserialize, Serialize};

use crate::model::value;
use crate::model::OpKind;

/// Relative weights of the operation kinds in the stream. The defaults follow the reference demo data: obs
/// writers (vitals, lab results, diagnoses, obs edits) dominate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub register_patient: f64,
    pub start_visit: f64,
    pub stop_visit: f64,
    pub vitals: f64,
    pub lab_results: f64,
    pub diagnosis: f64,
    pub new_order: f64,
    pub revise_order: f64,
    pub discontinue_order: f64,
    pub edit_obs: f64,
    pub void_encounter: f64,
    pub update_demographics: f64,
    pub purge_obs: f64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            register_patient: 2.0,
            start_visit: 8.0,
            stop_visit: 7.0,
            vitals: 22.0,
            lab_results: 12.0,
            diagnosis: 14.0,
            new_order: 8.0,
            revise_order: 3.0,
            discontinue_order: 3.0,
            edit_obs: 12.0,
            void_encounter: 3.0,
            update_demographics: 5.0,
            purge_obs: 1.0,
        }
    }
}

impl Mix {
    /// Why this mix cannot be honoured over a long stream, if it cannot: operations that consume a state
    /// (an open visit, an active order) must not outrun those that create it.
    pub fn infeasibility(&self) -> Option<(&'static str, String)> {
        if self.stop_visit > self.start_visit {
            return Some((
                "stop_visit",
                format!("stop_visit ({}) exceeds start_visit ({}): visits cannot stop faster than they start", self.stop_visit, self.start_visit),
            ));
        }
        if self.start_visit > self.stop_visit + self.register_patient {
            return Some((
                "start_visit",
                format!(
                    "start_visit ({}) exceeds stop_visit + register_patient ({}): soon every patient would have an open visit",
                    self.start_visit,
                    self.stop_visit + self.register_patient
                ),
            ));
        }
        if self.revise_order > 0.0 && self.new_order == 0.0 {
            return Some((
                "revise_order",
                format!(
                    "revise_order ({}) needs drug orders to revise, but new_order is 0",
                    self.revise_order
                ),
            ));
        }
        let created = self.new_order + self.lab_results / 3.0;
        if self.discontinue_order > created {
            return Some((
                "discontinue_order",
                format!(
                    "discontinue_order ({}) exceeds the orders created (new_order + lab_results/3 = {created}): orders cannot stop faster than they start",
                    self.discontinue_order
                ),
            ));
        }
        None
    }

    pub fn weight(&self, kind: OpKind) -> f64 {
        match kind {
            OpKind::RegisterPatient => self.register_patient,
            OpKind::StartVisit => self.start_visit,
            OpKind::StopVisit => self.stop_visit,
            OpKind::Vitals => self.vitals,
            OpKind::LabResults => self.lab_results,
            OpKind::Diagnosis => self.diagnosis,
            OpKind::NewOrder => self.new_order,
            OpKind::ReviseOrder => self.revise_order,
            OpKind::DiscontinueOrder => self.discontinue_order,
            OpKind::EditObs => self.edit_obs,
            OpKind::VoidEncounter => self.void_encounter,
            OpKind::UpdateDemographics => self.update_demographics,
            OpKind::PurgeObs => self.purge_obs,
        }
    }

    pub fn total(&self) -> f64 {
        OpKind::ALL.iter().map(|k| self.weight(*k)).sum()
    }

    /// The share of `kind` in the stream (weight / total).
    pub fn share(&self, kind: OpKind) -> f64 {
        let total = self.total();
        if total > 0.0 {
            self.weight(kind) / total
        } else {
            0.0
        }
    }
}

/// What to generate: the resolved `[workload]` section of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Patients registered in the baseline, before the stream starts.
    pub patients: u64,
    /// Operations in the stream.
    pub operations: u64,
    /// Mean stream rate in operations per second of (virtual or real) time.
    pub rate: f64,
    /// When the stream starts, epoch milliseconds.
    pub start_ms: i64,
    pub mix: Mix,
    /// The first `hot_patients` patients receive `hot_share` of the operations.
    pub hot_patients: u64,
    pub hot_share: f64,
}

impl Default for WorkloadSpec {
    fn default() -> WorkloadSpec {
        WorkloadSpec {
            patients: 100,
            operations: 1000,
            rate: 50.0,
            start_ms: value::datetime_ms(2026, 1, 1),
            mix: Mix::default(),
            hot_patients: 0,
            hot_share: 0.0,
        }
    }
}
