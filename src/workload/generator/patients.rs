//! Builders of the patient-level operations: registration (person, name, patient, identifier), visits starting
//! and stopping, and demographic updates.

use std::collections::VecDeque;

use super::{Generator, PatientState};
use crate::model::schema;
use crate::model::value::Value;
use crate::workload::names;
use crate::workload::operation::RowChange;
use crate::workload::reference::*;

impl Generator {
    pub(super) fn register_patient(&mut self) -> (usize, Vec<RowChange>) {
        use schema::{patient, patient_identifier as pid, person, person_name};
        let mut changes = Vec::new();
        let female = self.rng.chance(0.55);
        let mut person_row = self.new_row(&person::TABLE, Some("person_id"));
        let person_id = person_row[person::person_id].as_int().unwrap_or(0);
        person_row[person::gender] = Value::text(if female { "F" } else { "M" });
        let age_days = self.rng.range(0, 85 * 365);
        let today = self.now_ms.div_euclid(86_400_000);
        person_row[person::birthdate] = Value::Date((today - age_days) as i32);
        person_row[person::birthdate_estimated] = Value::Bool(self.rng.chance(0.15));
        if self.rng.chance(0.05) {
            person_row[person::birthtime] = Value::Time(self.rng.range(0, 86_399) * 1_000_000);
        }
        self.insert(&mut changes, &person::TABLE, person_row.clone());

        let mut name = self.new_row(&person_name::TABLE, Some("person_name_id"));
        name[person_name::person_id] = Value::Int(person_id);
        name[person_name::preferred] = Value::Bool(true);
        let given = if female {
            names::GIVEN_FEMALE
        } else {
            names::GIVEN_MALE
        };
        name[person_name::given_name] = Value::text(*self.rng.pick(given));
        if self.rng.chance(0.4) {
            name[person_name::middle_name] = Value::text(*self.rng.pick(given));
        }
        name[person_name::family_name] = Value::text(*self.rng.pick(names::FAMILY));
        self.insert(&mut changes, &person_name::TABLE, name.clone());

        let mut patient_row = self.new_row(&patient::TABLE, None);
        patient_row[patient::patient_id] = Value::Int(person_id);
        self.insert(&mut changes, &patient::TABLE, patient_row);

        let mut ident = self.new_row(&pid::TABLE, Some("patient_identifier_id"));
        ident[pid::patient_id] = Value::Int(person_id);
        ident[pid::identifier] = Value::text(openmrs_identifier(person_id));
        ident[pid::identifier_type] = Value::Int(IDENTIFIER_TYPE_OPENMRS_ID);
        ident[pid::preferred] = Value::Bool(true);
        ident[pid::location_id] = Value::Int(LOCATION_OUTPATIENT);
        self.insert(&mut changes, &pid::TABLE, ident);

        self.patients.push(PatientState {
            person: person_row,
            name,
            female,
            visit: None,
            encounters: VecDeque::new(),
            orders: Vec::new(),
        });
        (self.patients.len() - 1, changes)
    }

    pub(super) fn patient_id(&self, p: usize) -> i64 {
        self.patients[p].person[schema::person::person_id]
            .as_int()
            .unwrap_or(0)
    }

    pub(super) fn start_visit(&mut self, p: usize) -> Vec<RowChange> {
        use schema::visit;
        let mut changes = Vec::new();
        let inpatient = self.rng.chance(0.1);
        let mut row = self.new_row(&visit::TABLE, Some("visit_id"));
        row[visit::patient_id] = Value::Int(self.patient_id(p));
        row[visit::visit_type_id] = Value::Int(if inpatient {
            VISIT_TYPE_INPATIENT
        } else {
            VISIT_TYPE_FACILITY
        });
        row[visit::date_started] = self.now();
        row[visit::location_id] = Value::Int(if inpatient {
            LOCATION_INPATIENT
        } else {
            LOCATION_OUTPATIENT
        });
        if self.rng.chance(0.3) {
            let indication = self.rng.pick(&self.diagnoses).id;
            row[visit::indication_concept_id] = Value::Int(indication);
        }
        self.insert(&mut changes, &visit::TABLE, row.clone());
        self.patients[p].visit = Some(row);
        if inpatient {
            self.encounter(p, ENCOUNTER_ADMISSION, None, &mut changes);
        }
        changes
    }

    pub(super) fn stop_visit(&mut self, p: usize) -> Vec<RowChange> {
        use schema::visit;
        let mut changes = Vec::new();
        let Some(mut row) = self.patients[p].visit.take() else {
            return changes;
        };
        if row[visit::visit_type_id] == Value::Int(VISIT_TYPE_INPATIENT) {
            self.patients[p].visit = Some(row.clone());
            self.encounter(p, ENCOUNTER_DISCHARGE, None, &mut changes);
            self.patients[p].visit = None;
        }
        let before = row.clone();
        row[visit::date_stopped] = self.now();
        row[visit::changed_by] = Value::Int(ADMIN_USER);
        row[visit::date_changed] = self.now();
        Self::update(&mut changes, &visit::TABLE, before, row);
        changes
    }

    pub(super) fn update_demographics(&mut self, p: usize) -> Vec<RowChange> {
        use schema::{person, person_name};
        let mut changes = Vec::new();
        let roll = self.rng.unit();
        if roll < 0.45 {
            let mut name = self.patients[p].name.clone();
            let before = name.clone();
            let mut family = *self.rng.pick(names::FAMILY);
            while Value::text(family) == before[person_name::family_name] {
                family = *self.rng.pick(names::FAMILY);
            }
            name[person_name::family_name] = Value::text(family);
            name[person_name::changed_by] = Value::Int(ADMIN_USER);
            name[person_name::date_changed] = self.now();
            Self::update(&mut changes, &person_name::TABLE, before, name.clone());
            self.patients[p].name = name;
            return changes;
        }
        let mut row = self.patients[p].person.clone();
        let before = row.clone();
        if roll < 0.95 || !self.patients[p].alive() {
            let shift = self.rng.range(1, 400) * if self.rng.chance(0.5) { 1 } else { -1 };
            if let Value::Date(d) = row[person::birthdate] {
                row[person::birthdate] = Value::Date(d + shift as i32);
            }
            row[person::birthdate_estimated] = Value::Bool(false);
        } else {
            row[person::dead] = Value::Bool(true);
            row[person::death_date] = self.now();
            row[person::cause_of_death] = Value::Int(self.rng.pick(&self.diagnoses).id);
        }
        row[person::changed_by] = Value::Int(ADMIN_USER);
        row[person::date_changed] = self.now();
        Self::update(&mut changes, &person::TABLE, before, row.clone());
        self.patients[p].person = row;
        changes
    }
}

/// An OpenMRS-style identifier: digits of the id and a Luhn check digit.
fn openmrs_identifier(id: i64) -> String {
    let digits = format!("{:06}", 100_000 + id);
    let mut sum = 0;
    for (i, ch) in digits.chars().rev().enumerate() {
        let mut d = ch.to_digit(10).unwrap_or(0);
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    format!("{digits}-{}", (10 - sum % 10) % 10)
}
