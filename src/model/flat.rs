//! The flat encounter table: the ETL's output, one row per encounter keyed (patient_id, encounter_id), in the
//! shape openmrs-elt's `flat_obs_orders` gave it.
//!
//! It is a pure function of row images ([`RowImages`]): the streaming sink derives it from the latest image of
//! each row it has consumed, and the oracle derives it from the source's final state. Equal inputs give equal
//! tables, so "sink = oracle" is exactly "nothing was lost, nothing is stale".

use std::collections::{BTreeMap, BTreeSet};

use crate::model::schema::{encounter, obs, orders, patient, person, visit};
use crate::model::value::format_datetime;
use crate::model::{Row, Value};

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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlatOrder {
    pub order_id: i64,
    pub voided: bool,
    pub order_concept_id: i64,
    /// ms since the epoch.
    pub date_activated: Option<i64>,
}

/// One row of the flat encounter table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
pub type RowImages = BTreeMap<&'static str, BTreeMap<i64, std::sync::Arc<crate::model::Row>>>;

/// The flat table of `images`: one row per non-voided encounter whose patient row exists, plus one row per
/// non-voided obs without an encounter (synthetic encounter id `SYNTHETIC_ENCOUNTER_BASE + obs_id`).
///
/// An obs or order whose encounter row is not there yet simply does not appear: it joins the table when the
/// encounter arrives, which is what lets the streaming sink consume topics in any interleaving.
pub fn build(images: &RowImages) -> FlatTable {
    let index = FlatIndex::from_images(images);
    let mut table = FlatTable::new();
    for key in index.all_keys() {
        if let Some(row) = index.row(images, key) {
            table.insert(key, row);
        }
    }
    table
}

/// Reverse links between rows, so one changed row finds the flat rows it takes part in without a scan. It
/// indexes every image, voided or not: voiding is a filter applied when a flat row is built.
#[derive(Debug, Default, Clone)]
pub(crate) struct FlatIndex {
    encounters_by_patient: BTreeMap<i64, BTreeSet<i64>>,
    encounters_by_visit: BTreeMap<i64, BTreeSet<i64>>,
    obs_by_encounter: BTreeMap<i64, BTreeSet<i64>>,
    /// Obs with no encounter, by person: they are that patient's synthetic encounters.
    loose_obs_by_person: BTreeMap<i64, BTreeSet<i64>>,
    members_by_group: BTreeMap<i64, BTreeSet<i64>>,
    orders_by_encounter: BTreeMap<i64, BTreeSet<i64>>,
}

fn int(row: &Row, column: usize) -> Option<i64> {
    row.get(column).and_then(Value::as_int)
}

fn flag(row: &Row, column: usize) -> bool {
    matches!(
        row.get(column),
        Some(Value::Bool(true)) | Some(Value::Int(1))
    )
}

fn millis(row: &Row, column: usize) -> Option<i64> {
    match row.get(column) {
        Some(Value::Datetime(ms)) => Some(*ms),
        _ => None,
    }
}

fn link(map: &mut BTreeMap<i64, BTreeSet<i64>>, from: Option<i64>, to: Option<i64>, add: bool) {
    let (Some(from), Some(to)) = (from, to) else {
        return;
    };
    if add {
        map.entry(from).or_default().insert(to);
    } else if let Some(set) = map.get_mut(&from) {
        set.remove(&to);
        if set.is_empty() {
            map.remove(&from);
        }
    }
}

impl FlatIndex {
    pub(crate) fn from_images(images: &RowImages) -> FlatIndex {
        let mut index = FlatIndex::default();
        for (table, rows) in images {
            for row in rows.values() {
                index.update(table, row, true);
            }
        }
        index
    }

    /// Adds (`add`) or removes the links of one row image.
    pub(crate) fn update(&mut self, table: &str, row: &Row, add: bool) {
        match table {
            "encounter" => {
                let id = int(row, encounter::encounter_id);
                link(
                    &mut self.encounters_by_patient,
                    int(row, encounter::patient_id),
                    id,
                    add,
                );
                link(
                    &mut self.encounters_by_visit,
                    int(row, encounter::visit_id),
                    id,
                    add,
                );
            }
            "obs" => {
                let id = int(row, obs::obs_id);
                match int(row, obs::encounter_id) {
                    Some(e) => link(&mut self.obs_by_encounter, Some(e), id, add),
                    None => link(
                        &mut self.loose_obs_by_person,
                        int(row, obs::person_id),
                        id,
                        add,
                    ),
                }
                link(
                    &mut self.members_by_group,
                    int(row, obs::obs_group_id),
                    id,
                    add,
                );
            }
            "orders" => link(
                &mut self.orders_by_encounter,
                int(row, orders::encounter_id),
                int(row, orders::order_id),
                add,
            ),
            _ => {}
        }
    }

    /// Every key that may have a flat row: each encounter's and each loose obs's.
    fn all_keys(&self) -> Vec<(i64, i64)> {
        let mut keys = Vec::new();
        for (patient, encounters) in &self.encounters_by_patient {
            keys.extend(encounters.iter().map(|e| (*patient, *e)));
        }
        for (person, loose) in &self.loose_obs_by_person {
            keys.extend(
                loose
                    .iter()
                    .map(|o| (*person, SYNTHETIC_ENCOUNTER_BASE + o)),
            );
        }
        keys
    }

    /// The key of the flat row an obs belongs to (needs its encounter's image for the patient).
    fn obs_key(&self, images: &RowImages, row: &Row) -> Option<(i64, i64)> {
        match int(row, obs::encounter_id) {
            Some(e) => self.encounter_key(images, e),
            None => Some((
                int(row, obs::person_id)?,
                SYNTHETIC_ENCOUNTER_BASE + int(row, obs::obs_id)?,
            )),
        }
    }

    fn encounter_key(&self, images: &RowImages, encounter_id: i64) -> Option<(i64, i64)> {
        let row = images.get("encounter")?.get(&encounter_id)?;
        Some((int(row, encounter::patient_id)?, encounter_id))
    }

    /// The flat rows one image of a `table` row takes part in. Called with the old and the new image of a
    /// changed row (after the images and this index hold the new state), so rows it left are rebuilt too.
    pub(crate) fn affected(
        &self,
        images: &RowImages,
        table: &str,
        row: &Row,
        out: &mut BTreeSet<(i64, i64)>,
    ) {
        match table {
            "encounter" => {
                if let (Some(p), Some(e)) = (
                    int(row, encounter::patient_id),
                    int(row, encounter::encounter_id),
                ) {
                    out.insert((p, e));
                }
            }
            "obs" => {
                out.extend(self.obs_key(images, row));
                // A group's concept is its members' parent_concept_id.
                let members = int(row, obs::obs_id).and_then(|id| self.members_by_group.get(&id));
                let obs_images = images.get("obs");
                for member in members.into_iter().flatten() {
                    if let Some(m) = obs_images.and_then(|rows| rows.get(member)) {
                        out.extend(self.obs_key(images, m));
                    }
                }
            }
            "orders" => {
                if let Some(e) = int(row, orders::encounter_id) {
                    out.extend(self.encounter_key(images, e));
                }
            }
            "person" | "patient" => {
                let id = match table {
                    "person" => int(row, person::person_id),
                    _ => int(row, patient::patient_id),
                };
                let Some(id) = id else { return };
                for e in self.encounters_by_patient.get(&id).into_iter().flatten() {
                    out.insert((id, *e));
                }
                for o in self.loose_obs_by_person.get(&id).into_iter().flatten() {
                    out.insert((id, SYNTHETIC_ENCOUNTER_BASE + o));
                }
            }
            "visit" => {
                let id = int(row, visit::visit_id);
                for e in id
                    .and_then(|v| self.encounters_by_visit.get(&v))
                    .into_iter()
                    .flatten()
                {
                    out.extend(self.encounter_key(images, *e));
                }
            }
            _ => {}
        }
    }

    /// The flat row at `key`, or `None` when there is none (voided, patient missing, encounter not arrived).
    pub(crate) fn row(&self, images: &RowImages, key: (i64, i64)) -> Option<FlatEncounter> {
        let (patient_id, encounter_id) = key;
        let rows = |table: &str| images.get(table);
        rows("patient")?.get(&patient_id)?;
        let person_row = rows("person").and_then(|r| r.get(&patient_id));
        let obs_rows = rows("obs");
        let flat_obs = |id: &i64| -> Option<FlatObs> {
            let row = obs_rows?.get(id)?;
            if flag(row, obs::voided) {
                return None;
            }
            let group = int(row, obs::obs_group_id);
            Some(
                FlatObs {
                    obs_id: *id,
                    voided: false,
                    concept_id: int(row, obs::concept_id).unwrap_or(0),
                    obs_datetime: millis(row, obs::obs_datetime).unwrap_or(0),
                    value: None,
                    value_type: "none",
                    obs_group_id: group,
                    parent_concept_id: group
                        .and_then(|g| obs_rows?.get(&g))
                        .and_then(|g| int(g, obs::concept_id)),
                }
                .with_value(row),
            )
        };
        let mut flat = if encounter_id >= SYNTHETIC_ENCOUNTER_BASE {
            let obs_id = encounter_id - SYNTHETIC_ENCOUNTER_BASE;
            let row = obs_rows?.get(&obs_id)?;
            if int(row, obs::encounter_id).is_some() || int(row, obs::person_id) != Some(patient_id)
            {
                return None;
            }
            FlatEncounter {
                patient_id,
                encounter_id,
                location_id: int(row, obs::location_id),
                visit_id: None,
                encounter_datetime: millis(row, obs::obs_datetime),
                encounter_type: None,
                gender: None,
                birthdate: None,
                dead: false,
                death_date: None,
                patient_uuid: None,
                visit_type_id: None,
                obs: vec![flat_obs(&obs_id)?],
                orders: Vec::new(),
            }
        } else {
            let row = rows("encounter")?.get(&encounter_id)?;
            if flag(row, encounter::voided) || int(row, encounter::patient_id) != Some(patient_id) {
                return None;
            }
            let visit_id = int(row, encounter::visit_id);
            let order_rows = rows("orders");
            FlatEncounter {
                patient_id,
                encounter_id,
                location_id: int(row, encounter::location_id),
                visit_id,
                encounter_datetime: millis(row, encounter::encounter_datetime),
                encounter_type: int(row, encounter::encounter_type),
                gender: None,
                birthdate: None,
                dead: false,
                death_date: None,
                patient_uuid: None,
                visit_type_id: visit_id
                    .and_then(|v| rows("visit")?.get(&v))
                    .and_then(|v| int(v, visit::visit_type_id)),
                obs: self
                    .obs_by_encounter
                    .get(&encounter_id)
                    .into_iter()
                    .flatten()
                    .filter_map(flat_obs)
                    .collect(),
                orders: self
                    .orders_by_encounter
                    .get(&encounter_id)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| {
                        let row = order_rows?.get(id)?;
                        (!flag(row, orders::voided)).then(|| FlatOrder {
                            order_id: *id,
                            voided: false,
                            order_concept_id: int(row, orders::concept_id).unwrap_or(0),
                            date_activated: millis(row, orders::date_activated),
                        })
                    })
                    .collect(),
            }
        };
        if let Some(p) = person_row {
            flat.gender = match p.get(person::gender) {
                Some(Value::Text(t)) => Some(t.to_string()),
                _ => None,
            };
            flat.birthdate = match p.get(person::birthdate) {
                Some(Value::Date(d)) => Some(*d),
                _ => None,
            };
            flat.dead = flag(p, person::dead);
            flat.death_date = millis(p, person::death_date);
            flat.patient_uuid = match p.get(person::uuid) {
                Some(Value::Text(t)) => Some(t.to_string()),
                _ => None,
            };
        }
        Some(flat)
    }
}

/// The names `value_type` can take.
const VALUE_TYPES: [&str; 6] = ["numeric", "text", "drug", "datetime", "coded", "none"];

/// A [`FlatObs`] as a database sink stores it (JSON), before its `value_type` is checked.
#[derive(serde::Deserialize)]
struct StoredFlatObs {
    obs_id: i64,
    voided: bool,
    concept_id: i64,
    obs_datetime: i64,
    value: Option<String>,
    value_type: String,
    obs_group_id: Option<i64>,
    parent_concept_id: Option<i64>,
}

// By hand: a derived impl would borrow `value_type` from the input, which a `'static` field cannot.
impl<'de> serde::Deserialize<'de> for FlatObs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FlatObs, D::Error> {
        let s = StoredFlatObs::deserialize(d)?;
        let value_type = VALUE_TYPES
            .into_iter()
            .find(|t| *t == s.value_type)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s.value_type, &VALUE_TYPES))?;
        Ok(FlatObs {
            obs_id: s.obs_id,
            voided: s.voided,
            concept_id: s.concept_id,
            obs_datetime: s.obs_datetime,
            value: s.value,
            value_type,
            obs_group_id: s.obs_group_id,
            parent_concept_id: s.parent_concept_id,
        })
    }
}

impl FlatObs {
    /// Fills `value`/`value_type` from the first non-null of numeric, text, drug, datetime, coded. Numbers use
    /// Rust's shortest round-trip spelling (`61.5`, `10000000`), datetimes MySQL's (`2024-01-15 09:45:00`).
    fn with_value(mut self, row: &Row) -> FlatObs {
        let candidates = [
            (obs::value_numeric, "numeric"),
            (obs::value_text, "text"),
            (obs::value_drug, "drug"),
            (obs::value_datetime, "datetime"),
            (obs::value_coded, "coded"),
        ];
        for (column, kind) in candidates {
            let value = match row.get(column) {
                None | Some(Value::Null) => continue,
                Some(Value::Double(d)) => d.to_string(),
                Some(Value::Text(t)) => t.to_string(),
                Some(Value::Int(i)) => i.to_string(),
                Some(Value::Datetime(ms)) => format_datetime(*ms),
                Some(other) => format!("{other:?}"),
            };
            self.value = Some(value);
            self.value_type = kind;
            break;
        }
        self
    }
}
