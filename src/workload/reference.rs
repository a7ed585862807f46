//! Reference data every OpenMRS database has before the first patient: users, concepts, locations, encounter
//! types, providers, and minimal rows of the tables the harness does not model. The schema fixture seeds them;
//! an in-memory source starts from them.

use super::concepts::{ConceptDictionary, Role};
use crate::model::schema::{self, TableDef};
use crate::model::value::{datetime_ms, Row, Value};
use crate::rng::stable_uuid;

/// When the reference rows were created (a fixed instant, so the fixture is stable).
pub fn reference_epoch_ms() -> i64 {
    datetime_ms(2020, 1, 1)
}

/// Location ids used by the generator.
pub const LOCATION_UNKNOWN: i64 = 1;
pub const LOCATION_OUTPATIENT: i64 = 2;
pub const LOCATION_INPATIENT: i64 = 3;
pub const LOCATION_LABORATORY: i64 = 4;

/// Encounter type ids.
pub const ENCOUNTER_VITALS: i64 = 1;
pub const ENCOUNTER_VISIT_NOTE: i64 = 2;
pub const ENCOUNTER_LAB_RESULTS: i64 = 3;
pub const ENCOUNTER_ADMISSION: i64 = 4;
pub const ENCOUNTER_DISCHARGE: i64 = 5;
pub const ENCOUNTER_ORDER_ENTRY: i64 = 6;

pub const VISIT_TYPE_FACILITY: i64 = 1;
pub const VISIT_TYPE_INPATIENT: i64 = 2;
pub const ORDER_TYPE_DRUG: i64 = 1;
pub const ORDER_TYPE_TEST: i64 = 2;
pub const CARE_SETTING_OUTPATIENT: i64 = 1;
pub const CARE_SETTING_INPATIENT: i64 = 2;
pub const IDENTIFIER_TYPE_OPENMRS_ID: i64 = 1;
pub const FORM_VITALS: i64 = 1;
pub const FORM_VISIT_NOTE: i64 = 2;
pub const FORM_LAB_RESULTS: i64 = 3;
/// The admin user who creates everything the workload writes.
pub const ADMIN_USER: i64 = 1;
/// Provider ids 1..=PROVIDERS exist.
pub const PROVIDERS: i64 = 5;

const ENCOUNTER_TYPES: &[(i64, &str, &str)] = &[
    (ENCOUNTER_VITALS, "Vitals", "Vital signs taken at triage"),
    (
        ENCOUNTER_VISIT_NOTE,
        "Visit Note",
        "Clinician's note with diagnoses",
    ),
    (
        ENCOUNTER_LAB_RESULTS,
        "Lab Results",
        "Results entered by the laboratory",
    ),
    (
        ENCOUNTER_ADMISSION,
        "Admission",
        "Admission to an inpatient ward",
    ),
    (
        ENCOUNTER_DISCHARGE,
        "Discharge",
        "Discharge from an inpatient ward",
    ),
    (
        ENCOUNTER_ORDER_ENTRY,
        "Order Entry",
        "Orders placed outside a visit note",
    ),
];

const LOCATIONS: &[(i64, &str)] = &[
    (LOCATION_UNKNOWN, "Unknown Location"),
    (LOCATION_OUTPATIENT, "Outpatient Clinic"),
    (LOCATION_INPATIENT, "Inpatient Ward"),
    (LOCATION_LABORATORY, "Laboratory"),
    (5, "Pharmacy"),
];

const PROVIDER_NAMES: &[&str] = &[
    "Super User",
    "Dr. Amina Wekesa",
    "Dr. Joseph Otieno",
    "Nurse Mary Njeri",
    "Lab Tech Paul Kiptoo",
];

/// Builds a row of `table` from its defaults, the common uuid/creator/date_created columns, and `values`.
fn reference_row(table: &TableDef, id: i64, values: &[(&str, Value)]) -> Row {
    let mut row = table.empty_row();
    row[0] = Value::Int(id);
    let mut set = |name: &str, v: Value| {
        if let Some(i) = table.column_index(name) {
            row[i] = v;
        }
    };
    set("uuid", Value::text(stable_uuid(table.name, id)));
    set("creator", Value::Int(ADMIN_USER));
    set("date_created", Value::Datetime(reference_epoch_ms()));
    for (name, v) in values {
        debug_assert!(table.column_index(name).is_some(), "{}.{name}", table.name);
        set(name, v.clone());
    }
    row
}

/// Every reference row, grouped by table in foreign-key order.
pub fn reference_rows() -> Vec<(&'static TableDef, Vec<Row>)> {
    use Value::Int;
    let dict = ConceptDictionary::get();
    let t = |s: &str| Value::text(s);
    let mut out: Vec<(&'static TableDef, Vec<Row>)> = Vec::new();

    out.push((
        &schema::users::TABLE,
        vec![
            reference_row(
                &schema::users::TABLE,
                1,
                &[("system_id", t("admin")), ("username", t("admin"))],
            ),
            reference_row(
                &schema::users::TABLE,
                2,
                &[("system_id", t("daemon")), ("username", t("daemon"))],
            ),
        ],
    ));
    out.push((
        &schema::concept_datatype::TABLE,
        dict.datatypes
            .iter()
            .map(|d| {
                reference_row(
                    &schema::concept_datatype::TABLE,
                    d.id,
                    &[("name", t(&d.name)), ("hl7_abbreviation", t(&d.hl7))],
                )
            })
            .collect(),
    ));
    out.push((
        &schema::concept_class::TABLE,
        dict.classes
            .iter()
            .map(|c| reference_row(&schema::concept_class::TABLE, c.id, &[("name", t(&c.name))]))
            .collect(),
    ));
    let mut concepts = Vec::new();
    let mut names = Vec::new();
    for c in &dict.concepts {
        concepts.push(reference_row(
            &schema::concept::TABLE,
            c.id,
            &[
                (
                    "short_name",
                    c.short.as_deref().map(t).unwrap_or(Value::Null),
                ),
                (
                    "datatype_id",
                    Int(dict.datatype_id(&c.datatype).unwrap_or(4)),
                ),
                ("class_id", Int(dict.class_id(&c.class).unwrap_or(8))),
                ("is_set", Value::Bool(c.is_set)),
                ("version", t("1")),
            ],
        ));
        let mut name = |name: &str, kind: &str, preferred: bool| {
            let id = names.len() as i64 + 1;
            names.push(reference_row(
                &schema::concept_name::TABLE,
                id,
                &[
                    ("concept_id", Int(c.id)),
                    ("name", t(name)),
                    ("locale", t("en")),
                    ("locale_preferred", Value::Bool(preferred)),
                    ("concept_name_type", t(kind)),
                ],
            ));
        };
        name(&c.name, "FULLY_SPECIFIED", true);
        if let Some(short) = &c.short {
            name(short, "SHORT", false);
        }
    }
    out.push((&schema::concept::TABLE, concepts));
    out.push((&schema::concept_name::TABLE, names));
    out.push((
        &schema::location::TABLE,
        LOCATIONS
            .iter()
            .map(|(id, name)| {
                reference_row(
                    &schema::location::TABLE,
                    *id,
                    &[("name", t(name)), ("country", t("Kenya"))],
                )
            })
            .collect(),
    ));
    out.push((
        &schema::encounter_type::TABLE,
        ENCOUNTER_TYPES
            .iter()
            .map(|(id, name, d)| {
                reference_row(
                    &schema::encounter_type::TABLE,
                    *id,
                    &[("name", t(name)), ("description", t(d))],
                )
            })
            .collect(),
    ));
    let simple = |table: &'static TableDef,
                  rows: &[(i64, &[(&str, &str)])]|
     -> (&'static TableDef, Vec<Row>) {
        let built = rows
            .iter()
            .map(|(id, cols)| {
                let values: Vec<(&str, Value)> = cols.iter().map(|(k, v)| (*k, t(v))).collect();
                reference_row(table, *id, &values)
            })
            .collect();
        (table, built)
    };
    out.push(simple(
        &schema::visit_type::TABLE,
        &[
            (VISIT_TYPE_FACILITY, &[("name", "Facility Visit")]),
            (VISIT_TYPE_INPATIENT, &[("name", "Inpatient Admission")]),
        ],
    ));
    out.push(simple(
        &schema::order_type::TABLE,
        &[
            (
                ORDER_TYPE_DRUG,
                &[
                    ("name", "Drug Order"),
                    ("java_class_name", "org.openmrs.DrugOrder"),
                ],
            ),
            (
                ORDER_TYPE_TEST,
                &[
                    ("name", "Test Order"),
                    ("java_class_name", "org.openmrs.TestOrder"),
                ],
            ),
        ],
    ));
    out.push(simple(
        &schema::care_setting::TABLE,
        &[
            (
                CARE_SETTING_OUTPATIENT,
                &[("name", "Outpatient"), ("care_setting_type", "OUTPATIENT")],
            ),
            (
                CARE_SETTING_INPATIENT,
                &[("name", "Inpatient"), ("care_setting_type", "INPATIENT")],
            ),
        ],
    ));
    out.push(simple(
        &schema::patient_identifier_type::TABLE,
        &[
            (IDENTIFIER_TYPE_OPENMRS_ID, &[("name", "OpenMRS ID")]),
            (2, &[("name", "Old Identification Number")]),
        ],
    ));
    out.push(simple(
        &schema::form::TABLE,
        &[
            (FORM_VITALS, &[("name", "Vitals"), ("version", "1.0")]),
            (
                FORM_VISIT_NOTE,
                &[("name", "Visit Note"), ("version", "1.0")],
            ),
            (
                FORM_LAB_RESULTS,
                &[("name", "Lab Results"), ("version", "1.0")],
            ),
        ],
    ));
    out.push((
        &schema::drug::TABLE,
        drug_rows()
            .map(|(id, c)| {
                reference_row(
                    &schema::drug::TABLE,
                    id,
                    &[("concept_id", Int(c.id)), ("name", t(&c.name))],
                )
            })
            .collect(),
    ));
    out.push(simple(
        &schema::encounter_role::TABLE,
        &[(1, &[("name", "Unknown")]), (2, &[("name", "Clinician")])],
    ));
    out.push((
        &schema::order_frequency::TABLE,
        frequency_rows()
            .map(|(id, c)| {
                reference_row(
                    &schema::order_frequency::TABLE,
                    id,
                    &[
                        ("concept_id", Int(c.id)),
                        ("frequency_per_day", Value::Double(c.min.unwrap_or(1.0))),
                    ],
                )
            })
            .collect(),
    ));
    out.push((
        &schema::provider::TABLE,
        PROVIDER_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let id = i as i64 + 1;
                reference_row(
                    &schema::provider::TABLE,
                    id,
                    &[
                        ("name", t(name)),
                        ("identifier", Value::text(format!("PRV-{id:04}"))),
                    ],
                )
            })
            .collect(),
    ));
    out
}

/// Drug rows: `(drug_id, concept)`, numbered in dictionary order.
pub fn drug_rows() -> impl Iterator<Item = (i64, &'static super::concepts::Concept)> {
    ConceptDictionary::get()
        .with_role(Role::Drug)
        .enumerate()
        .map(|(i, c)| (i as i64 + 1, c))
}

/// Order frequency rows: `(order_frequency_id, concept)`.
pub fn frequency_rows() -> impl Iterator<Item = (i64, &'static super::concepts::Concept)> {
    ConceptDictionary::get()
        .with_role(Role::Frequency)
        .enumerate()
        .map(|(i, c)| (i as i64 + 1, c))
}

/// The concept_name_id of a concept's preferred (fully specified) name, as numbered in [`reference_rows`].
pub fn preferred_name_id(concept_id: i64) -> Option<i64> {
    let mut next = 1;
    for c in &ConceptDictionary::get().concepts {
        if c.id == concept_id {
            return Some(next);
        }
        next += if c.short.is_some() { 2 } else { 1 };
    }
    None
}

/// `fixtures/openmrs-schema.sql`: every table and the reference rows, loadable into MySQL 8 or MariaDB 10.11.
pub fn schema_fixture_sql() -> String {
    let mut sql = String::new();
    sql.push_str(
        "-- OpenMRS schema subset for openmrs-etl-harness: real column names and MySQL types (openmrs-core 2.x),\n\
         -- foreign keys kept, reference tables seeded. Generated from src/model/schema.rs and\n\
         -- fixtures/concepts.json; regenerate with: ETL_HARNESS_UPDATE_FIXTURES=1 cargo test --lib schema_fixture\n\
         SET NAMES utf8mb4;\n\n",
    );
    for table in schema::ALL_TABLES {
        sql.push_str(&table.create_table_sql());
        sql.push('\n');
    }
    for (table, rows) in reference_rows() {
        if rows.is_empty() {
            continue;
        }
        super::sql::write_insert(&mut sql, table, &rows);
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_fixture_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/openmrs-schema.sql");
        let expected = schema_fixture_sql();
        if std::env::var_os("ETL_HARNESS_UPDATE_FIXTURES").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        let found = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            found == expected,
            "fixtures/openmrs-schema.sql is out of date; regenerate: ETL_HARNESS_UPDATE_FIXTURES=1 cargo test --lib schema_fixture"
        );
    }

    #[test]
    fn preferred_names_match_rows() {
        let rows = reference_rows();
        let names = &rows
            .iter()
            .find(|(t, _)| t.name == "concept_name")
            .unwrap()
            .1;
        let id = preferred_name_id(5089).unwrap();
        let row = &names[(id - 1) as usize];
        assert_eq!(row[schema::concept_name::concept_id], Value::Int(5089));
        assert_eq!(
            row[schema::concept_name::concept_name_type],
            Value::text("FULLY_SPECIFIED")
        );
    }
}
