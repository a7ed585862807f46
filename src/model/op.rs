//! The kinds of operation the workload generates: what history records for each commit and what the
//! scenario's mix weighs.

use serde::{Deserialize, Serialize};

/// The kinds of operation a clinic produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// person, person_name, patient, patient_identifier.
    RegisterPatient,
    /// A visit row (and an Admission encounter for inpatient visits).
    StartVisit,
    /// The visit's date_stopped (and a Discharge encounter for inpatient visits).
    StopVisit,
    /// A Vitals encounter with 8 numeric obs.
    Vitals,
    /// A Lab Results encounter with 1–3 lab obs; a third add a test order.
    LabResults,
    /// A Visit Note: a text obs and 1–2 "Visit Diagnoses" obs groups of 3 coded members.
    Diagnosis,
    /// A new drug order in an Order Entry encounter.
    NewOrder,
    /// A REVISE order linked to an active drug order, which gets date_stopped.
    ReviseOrder,
    /// A DISCONTINUE order linked to an active order, which gets date_stopped.
    DiscontinueOrder,
    /// An obs edited the OpenMRS way: new version inserted, old one voided.
    EditObs,
    /// An encounter voided with its obs and orders.
    VoidEncounter,
    /// A person or person_name update (birthdate correction, new family name, rarely death).
    UpdateDemographics,
    /// A hard delete (purgeObs) of an obs nothing refers to.
    PurgeObs,
}

impl OpKind {
    pub const ALL: [OpKind; 13] = [
        OpKind::RegisterPatient,
        OpKind::StartVisit,
        OpKind::StopVisit,
        OpKind::Vitals,
        OpKind::LabResults,
        OpKind::Diagnosis,
        OpKind::NewOrder,
        OpKind::ReviseOrder,
        OpKind::DiscontinueOrder,
        OpKind::EditObs,
        OpKind::VoidEncounter,
        OpKind::UpdateDemographics,
        OpKind::PurgeObs,
    ];

    /// The snake_case name used in scenario files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::RegisterPatient => "register_patient",
            OpKind::StartVisit => "start_visit",
            OpKind::StopVisit => "stop_visit",
            OpKind::Vitals => "vitals",
            OpKind::LabResults => "lab_results",
            OpKind::Diagnosis => "diagnosis",
            OpKind::NewOrder => "new_order",
            OpKind::ReviseOrder => "revise_order",
            OpKind::DiscontinueOrder => "discontinue_order",
            OpKind::EditObs => "edit_obs",
            OpKind::VoidEncounter => "void_encounter",
            OpKind::UpdateDemographics => "update_demographics",
            OpKind::PurgeObs => "purge_obs",
        }
    }
}
