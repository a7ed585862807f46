//! The flat encounter table: the ETL's output, one row per encounter keyed (patient_id, encounter_id), in the
//! shape openmrs-elt's `flat_obs_orders` gave it (see `../shared/reference/openmrs.md`).
//!
//! It is a pure function of row images ([`RowImages`]): the streaming sink derives it from the latest image of
//! each row it has consumed, and the oracle derives it from the source's final state. Equal inputs give equal
//! tables, so "sink = oracle" is exactly "nothing was lost, nothing is stale".

use std::collections::BTreeMap;

/// Obs without an encounter get a synthetic encounter id: obs_id + this.
pub const SYNTHETIC_ENCOUNTER_BASE: i64 = 10_000_000_000;

/// One obs of an encounter (only non-voided obs appear).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlatObs {
    pub obs_id: i64,
    pub voided: bool,
    pub concept_id: i64,
    /// ms since the epoch.
    pub obs_datetime: i64,
    /// The first non-null of value_numeric, value_text, value_drug, value_datetime, value_coded, as a string.
    pub value: Option<String>,
    /// Which column `value` came from: `numeric`, `text`, `drug`, `datetime`, `coded`, or `none`.
    pub value_type: &'static str,
    pub obs_group_id: Option<i64>,
    /// The concept of the obs group this obs belongs to.
    pub parent_concept_id: Option<i64>,
}

/// One order of an encounter (only non-voided orders appear).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlatOrder {
    pub order_id: i64,
    pub voided: bool,
    pub order_concept_id: i64,
    /// ms since the epoch.
    pub date_activated: Option<i64>,
}

/// One row of the flat encounter table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlatEncounter {
    pub patient_id: i64,
    pub encounter_id: i64,
    pub location_id: Option<i64>,
    pub visit_id: Option<i64>,
    /// ms since the epoch.
    pub encounter_datetime: Option<i64>,
    pub encounter_type: Option<i64>,
    pub gender: Option<String>,
    /// Days since the epoch.
    pub birthdate: Option<i32>,
    pub dead: bool,
    /// ms since the epoch.
    pub death_date: Option<i64>,
    pub patient_uuid: Option<String>,
    pub visit_type_id: Option<i64>,
    /// Ordered by obs_id.
    pub obs: Vec<FlatObs>,
    /// Ordered by order_id.
    pub orders: Vec<FlatOrder>,
}

/// The whole table, ordered by (patient_id, encounter_id).
pub type FlatTable = BTreeMap<(i64, i64), FlatEncounter>;

/// The latest image of every row, per table name and primary key: what the flat table is derived from.
pub type RowImages = BTreeMap<&'static str, BTreeMap<i64, std::sync::Arc<crate::workload::Row>>>;
