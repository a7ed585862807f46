//! The flat encounter table as three relational tables, for a team's ETL judged with `oracle =
//! "flat_encounter"`: `<table>` (one row per flat encounter), `<table>_obs` (its obs) and `<table>_orders` (its
//! orders). docs/your-etl.md documents the columns; this module renders the oracle ([`FlatTable`]) in that shape
//! and says how each column of either side is normalised before the multiset comparison.

use super::foreign::{normalise, Cell, CellKind};
use crate::model::flat::FlatTable;
use crate::model::value::{format_date, format_datetime};

/// One table of the shape: its name after the team's table name, and its columns with how they compare. The
/// first column is each row's key (the one a differing row is paired by).
pub struct ShapeTable {
    pub suffix: &'static str,
    pub columns: &'static [(&'static str, CellKind)],
}

use CellKind::{Number, Temporal, Text};

/// The three tables, in the order they are judged.
pub const TABLES: [ShapeTable; 3] = [
    ShapeTable {
        suffix: "",
        columns: &[
            ("encounter_id", Number),
            ("patient_id", Number),
            ("location_id", Number),
            ("visit_id", Number),
            ("encounter_datetime", Temporal),
            ("encounter_type", Number),
            ("gender", Text),
            ("birthdate", Temporal),
            ("dead", Number),
            ("death_date", Temporal),
            ("patient_uuid", Text),
            ("visit_type_id", Number),
        ],
    },
    ShapeTable {
        suffix: "_obs",
        columns: &[
            ("obs_id", Number),
            ("encounter_id", Number),
            ("concept_id", Number),
            ("obs_datetime", Temporal),
            // Compared by `value_type`: a number for numeric, drug and coded, a datetime for datetime.
            ("value", Text),
            ("value_type", Text),
            ("obs_group_id", Number),
            ("parent_concept_id", Number),
        ],
    },
    ShapeTable {
        suffix: "_orders",
        columns: &[
            ("order_id", Number),
            ("encounter_id", Number),
            ("order_concept_id", Number),
            ("date_activated", Temporal),
        ],
    },
];

/// The column of `_obs` whose kind is named by the next one.
const OBS_VALUE: usize = 4;

/// How an obs value of `value_type` compares.
fn value_kind(value_type: Option<&str>) -> CellKind {
    match value_type {
        Some("numeric" | "drug" | "coded") => Number,
        Some("datetime") => Temporal,
        _ => Text,
    }
}

/// Normalises one row of `TABLES[table]` read as text (`None` is NULL), column by column.
pub fn normalise_row(table: usize, raw: Vec<Option<String>>, digits: u32) -> Vec<Cell> {
    let columns = TABLES[table].columns;
    let value_type = (table == 1).then(|| raw.get(OBS_VALUE + 1).cloned().flatten());
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let kind = match &value_type {
                Some(t) if i == OBS_VALUE => value_kind(t.as_deref()),
                _ => columns.get(i).map_or(Text, |c| c.1),
            };
            v.map(|v| normalise(kind, &v, digits))
        })
        .collect()
}

fn int(v: i64) -> Option<String> {
    Some(v.to_string())
}

/// The oracle's rows of each of [`TABLES`], normalised.
pub fn oracle_rows(flat: &FlatTable, digits: u32) -> [Vec<Vec<Cell>>; 3] {
    let mut out: [Vec<Vec<Cell>>; 3] = Default::default();
    for e in flat.values() {
        let raw = vec![
            int(e.encounter_id),
            int(e.patient_id),
            e.location_id.map(|v| v.to_string()),
            e.visit_id.map(|v| v.to_string()),
            e.encounter_datetime.map(format_datetime),
            e.encounter_type.map(|v| v.to_string()),
            e.gender.clone(),
            e.birthdate.map(format_date),
            Some(u8::from(e.dead).to_string()),
            e.death_date.map(format_datetime),
            e.patient_uuid.clone(),
            e.visit_type_id.map(|v| v.to_string()),
        ];
        out[0].push(normalise_row(0, raw, digits));
        for o in &e.obs {
            let raw = vec![
                int(o.obs_id),
                int(e.encounter_id),
                int(o.concept_id),
                Some(format_datetime(o.obs_datetime)),
                o.value.clone(),
                Some(o.value_type.to_owned()),
                o.obs_group_id.map(|v| v.to_string()),
                o.parent_concept_id.map(|v| v.to_string()),
            ];
            out[1].push(normalise_row(1, raw, digits));
        }
        for r in &e.orders {
            let raw = vec![
                int(r.order_id),
                int(e.encounter_id),
                int(r.order_concept_id),
                r.date_activated.map(format_datetime),
            ];
            out[2].push(normalise_row(2, raw, digits));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::flat::{FlatEncounter, FlatObs};

    #[test]
    fn the_oracle_renders_one_row_per_encounter_obs_and_order() {
        let mut flat = FlatTable::new();
        flat.insert(
            (5, 40),
            FlatEncounter {
                patient_id: 5,
                encounter_id: 40,
                location_id: Some(1),
                visit_id: None,
                encounter_datetime: Some(86_400_000 + 3_600_000),
                encounter_type: Some(2),
                gender: Some("F".into()),
                birthdate: Some(1),
                dead: false,
                death_date: None,
                patient_uuid: Some("u".into()),
                visit_type_id: None,
                obs: vec![FlatObs {
                    obs_id: 9,
                    voided: false,
                    concept_id: 5089,
                    obs_datetime: 0,
                    value: Some("61.5".into()),
                    value_type: "numeric",
                    obs_group_id: None,
                    parent_concept_id: None,
                }],
                orders: Vec::new(),
            },
        );
        let [encounters, obs, orders] = oracle_rows(&flat, 12);
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            encounters,
            [vec![
                some("40"),
                some("5"),
                some("1"),
                None,
                some("1970-01-02 01:00:00"),
                some("2"),
                some("F"),
                some("1970-01-02"),
                some("0"),
                None,
                some("u"),
                None
            ]]
        );
        assert_eq!(obs[0][3], some("1970-01-01"));
        assert!(orders.is_empty());
        // The team's spelling of the same obs: a DOUBLE cast to text, a DATETIME(6).
        let theirs = normalise_row(
            1,
            vec![
                some("9"),
                some("40"),
                some("5089"),
                some("1970-01-01 00:00:00.000000"),
                some("61.50"),
                some("numeric"),
                None,
                None,
            ],
            12,
        );
        assert_eq!(theirs, obs[0]);
        // A text value is compared exactly.
        let text =
            |v: &str| normalise_row(1, vec![None, None, None, None, some(v), some("text")], 12);
        assert_ne!(text("61.50"), text("61.5"));
    }
}
