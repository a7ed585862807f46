//! Builders of the encounter-level operations: encounters with their obs (vitals, lab results, visit notes with
//! diagnosis groups), obs edits the OpenMRS way, voided encounters and purged obs.

use std::sync::Arc;

use super::orders::active;
use super::{EncounterState, Generator, ObsState, ENCOUNTER_WINDOW};
use crate::model::schema;
use crate::model::value::{Row, Value};
use crate::workload::concepts::{Concept, Role};
use crate::workload::names;
use crate::workload::operation::{ChangeKind, RowChange};
use crate::workload::reference::{self, *};

impl Generator {
    /// Inserts an encounter row (in the open visit, if any) and returns its index in the patient's window.
    pub(super) fn encounter(
        &mut self,
        p: usize,
        encounter_type: i64,
        form: Option<i64>,
        changes: &mut Vec<RowChange>,
    ) -> usize {
        use schema::encounter;
        let mut row = self.new_row(&encounter::TABLE, Some("encounter_id"));
        row[encounter::encounter_type] = Value::Int(encounter_type);
        row[encounter::patient_id] = Value::Int(self.patient_id(p));
        let (location, visit_id) = match &self.patients[p].visit {
            Some(v) => (
                v[schema::visit::location_id].clone(),
                v[schema::visit::visit_id].clone(),
            ),
            None => (Value::Int(LOCATION_OUTPATIENT), Value::Null),
        };
        row[encounter::location_id] = if encounter_type == ENCOUNTER_LAB_RESULTS {
            Value::Int(LOCATION_LABORATORY)
        } else {
            location
        };
        row[encounter::visit_id] = visit_id;
        row[encounter::form_id] = form.map(Value::Int).unwrap_or(Value::Null);
        row[encounter::encounter_datetime] = self.now();
        self.insert(changes, &encounter::TABLE, row.clone());
        let state = &mut self.patients[p];
        state.encounters.push_back(EncounterState {
            row,
            obs: Vec::new(),
        });
        if state.encounters.len() > ENCOUNTER_WINDOW {
            let old = state
                .encounters
                .pop_front()
                .map(|e| e.row[encounter::encounter_id].clone());
            // Orders of encounters leaving the window stay only while they can still be revised.
            state.orders.retain(|(o, _)| {
                active(o) || Some(&o[schema::orders::encounter_id]) != old.as_ref()
            });
        }
        state.encounters.len() - 1
    }

    /// A new obs row in encounter `e` of patient `p` (not yet inserted).
    fn obs_row(&mut self, p: usize, e: usize, concept_id: i64) -> Row {
        use schema::obs;
        let mut row = self.new_row(&obs::TABLE, Some("obs_id"));
        let enc = &self.patients[p].encounters[e].row;
        row[obs::person_id] = Value::Int(self.patient_id(p));
        row[obs::concept_id] = Value::Int(concept_id);
        row[obs::encounter_id] = enc[schema::encounter::encounter_id].clone();
        row[obs::obs_datetime] = enc[schema::encounter::encounter_datetime].clone();
        row[obs::location_id] = enc[schema::encounter::location_id].clone();
        row
    }

    fn add_obs(&mut self, p: usize, e: usize, row: Row, changes: &mut Vec<RowChange>) {
        *self.live_rows.entry(schema::obs::TABLE.name).or_insert(0) += 1;
        let state = ObsState::from_row(&row);
        changes.push(RowChange {
            table: &schema::obs::TABLE,
            kind: ChangeKind::Insert,
            before: None,
            after: Some(Arc::new(row)),
        });
        self.patients[p].encounters[e].obs.push(state);
    }

    fn numeric_obs(&mut self, p: usize, e: usize, c: &Concept, changes: &mut Vec<RowChange>) {
        let mut row = self.obs_row(p, e, c.id);
        let value = self
            .rng
            .bell(c.min.unwrap_or(0.0), c.max.unwrap_or(1.0), c.decimals);
        row[schema::obs::value_numeric] = Value::Double(value);
        self.add_obs(p, e, row, changes);
    }

    pub(super) fn vitals(&mut self, p: usize) -> Vec<RowChange> {
        let mut changes = Vec::with_capacity(9);
        let e = self.encounter(p, ENCOUNTER_VITALS, Some(FORM_VITALS), &mut changes);
        for c in self.vitals.clone() {
            self.numeric_obs(p, e, c, &mut changes);
        }
        changes
    }

    pub(super) fn lab_results(&mut self, p: usize) -> Vec<RowChange> {
        let mut changes = Vec::new();
        let e = self.encounter(
            p,
            ENCOUNTER_LAB_RESULTS,
            Some(FORM_LAB_RESULTS),
            &mut changes,
        );
        let n = self.rng.range(1, 3) as usize;
        let mut tests: Vec<&Concept> = Vec::with_capacity(n);
        while tests.len() < n {
            let c = *self.rng.pick(&self.labs);
            if !tests.iter().any(|t| t.id == c.id) {
                tests.push(c);
            }
        }
        for c in &tests {
            self.numeric_obs(p, e, c, &mut changes);
        }
        if self.rng.chance(1.0 / 3.0) {
            let c = *self.rng.pick(&self.labs);
            let (mut order, _) = self.order_row(p, e, ORDER_TYPE_TEST, c.id, "NEW", None);
            order[schema::orders::care_setting] = Value::Int(CARE_SETTING_OUTPATIENT);
            let mut test = schema::test_order::TABLE.empty_row();
            test[schema::test_order::order_id] = order[schema::orders::order_id].clone();
            test[schema::test_order::specimen_source] =
                Value::Int(self.dict.one(Role::Specimen).id);
            test[schema::test_order::clinical_history] = Value::text("Routine monitoring");
            self.insert(&mut changes, &schema::orders::TABLE, order.clone());
            self.insert(&mut changes, &schema::test_order::TABLE, test.clone());
            self.patients[p].orders.push((order, test));
        }
        changes
    }

    fn coded_obs(
        &mut self,
        p: usize,
        e: usize,
        question: i64,
        answer: i64,
        group: Option<i64>,
    ) -> Row {
        let mut row = self.obs_row(p, e, question);
        row[schema::obs::value_coded] = Value::Int(answer);
        row[schema::obs::value_coded_name_id] = reference::preferred_name_id(answer)
            .map(Value::Int)
            .unwrap_or(Value::Null);
        row[schema::obs::obs_group_id] = group.map(Value::Int).unwrap_or(Value::Null);
        row
    }

    pub(super) fn visit_note(&mut self, p: usize) -> Vec<RowChange> {
        let mut changes = Vec::new();
        let e = self.encounter(p, ENCOUNTER_VISIT_NOTE, Some(FORM_VISIT_NOTE), &mut changes);
        let mut note = self.obs_row(p, e, self.dict.one(Role::Note).id);
        let text = format!(
            "{} {}. {}",
            self.rng.pick(names::NOTE_OPENINGS),
            self.rng.pick(names::NOTE_FINDINGS),
            self.rng.pick(names::NOTE_PLANS)
        );
        note[schema::obs::value_text] = Value::text(text);
        self.add_obs(p, e, note, &mut changes);
        let groups = self.rng.range(1, 2);
        let certainties: Vec<i64> = self.dict.with_role(Role::Certainty).map(|c| c.id).collect();
        let ranks: Vec<i64> = self.dict.with_role(Role::Rank).map(|c| c.id).collect();
        for g in 0..groups {
            let parent = self.obs_row(p, e, self.dict.one(Role::DiagnosisSet).id);
            let parent_id = parent[schema::obs::obs_id].as_int();
            self.add_obs(p, e, parent, &mut changes);
            let diagnosis = self.rng.pick(&self.diagnoses).id;
            let certainty = *self.rng.pick(&certainties);
            let members = [
                (self.dict.one(Role::DiagnosisQuestion).id, diagnosis),
                (self.dict.one(Role::CertaintyQuestion).id, certainty),
                (
                    self.dict.one(Role::RankQuestion).id,
                    ranks[(g as usize).min(ranks.len() - 1)],
                ),
            ];
            for (question, answer) in members {
                let row = self.coded_obs(p, e, question, answer, parent_id);
                self.add_obs(p, e, row, &mut changes);
            }
        }
        if self.patients[p].female && self.rng.chance(0.3) {
            let answer = if self.rng.chance(0.2) {
                Role::BooleanTrue
            } else {
                Role::BooleanFalse
            };
            let row = self.coded_obs(
                p,
                e,
                self.dict.one(Role::BooleanQuestion).id,
                self.dict.one(answer).id,
                None,
            );
            self.add_obs(p, e, row, &mut changes);
        }
        changes
    }

    /// `(encounter, obs)` positions of patient `p`'s obs that pass `keep` (given the obs and its siblings).
    fn obs_where(
        &self,
        p: usize,
        keep: impl Fn(&ObsState, &[ObsState]) -> bool,
    ) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for (e, enc) in self.patients[p].encounters.iter().enumerate() {
            for (i, o) in enc.obs.iter().enumerate() {
                if keep(o, &enc.obs) {
                    found.push((e, i));
                }
            }
        }
        found
    }

    /// Edits an obs the OpenMRS way: insert the new version (previous_version = old id), then void the old.
    pub(super) fn edit_obs(&mut self, p: usize) -> Vec<RowChange> {
        use schema::obs;
        let mut changes = Vec::new();
        let candidates = self.obs_where(p, |o, _| o.editable());
        if candidates.is_empty() {
            return changes;
        }
        let (e, i) = *self.rng.pick(&candidates);
        let old = self.patients[p].encounters[e].obs[i].to_row(self.obs_template());
        let mut new = self.new_row(&obs::TABLE, Some("obs_id"));
        for c in [
            obs::person_id,
            obs::concept_id,
            obs::encounter_id,
            obs::obs_datetime,
            obs::location_id,
            obs::value_text,
            obs::value_coded,
            obs::value_coded_name_id,
        ] {
            new[c] = old[c].clone();
        }
        if let Value::Double(v) = old[obs::value_numeric] {
            let concept = old[obs::concept_id].as_int();
            let c = self.dict.concepts.iter().find(|c| Some(c.id) == concept);
            let (lo, hi, d) = c
                .map(|c| (c.min.unwrap_or(0.0), c.max.unwrap_or(v + 1.0), c.decimals))
                .unwrap_or((0.0, v + 1.0, 1));
            new[obs::value_numeric] = Value::Double(self.rng.bell(lo, hi, d));
        }
        if let Value::Text(t) = &old[obs::value_text] {
            new[obs::value_text] =
                Value::text(format!("{t} Amended: {}", self.rng.pick(names::NOTE_PLANS)));
        }
        new[obs::previous_version] = old[obs::obs_id].clone();
        let was_final = old[obs::status].is_text("FINAL");
        new[obs::status] = Value::text(if was_final { "AMENDED" } else { "FINAL" });
        self.add_obs(p, e, new, &mut changes);
        let mut voided = old;
        let before = self.void(&mut voided, &obs::TABLE, "Edited");
        self.patients[p].encounters[e].obs[i] = ObsState::from_row(&voided);
        Self::update(&mut changes, &obs::TABLE, before, voided);
        changes
    }

    /// Voids an encounter: its obs (group parents before members), its orders, then the encounter.
    pub(super) fn void_encounter(&mut self, p: usize) -> Vec<RowChange> {
        use schema::{encounter, obs, orders};
        let mut changes = Vec::new();
        let candidates: Vec<usize> = (0..self.patients[p].encounters.len())
            .filter(|&e| {
                self.patients[p].encounters[e].row[encounter::voided] == Value::Bool(false)
            })
            .collect();
        if candidates.is_empty() {
            return changes;
        }
        let e = *self.rng.pick(&candidates);
        let reason = *self.rng.pick(names::VOID_REASONS);
        let mut obs_rows = std::mem::take(&mut self.patients[p].encounters[e].obs);
        let mut idx: Vec<usize> = (0..obs_rows.len()).collect();
        idx.sort_by_key(|&i| obs_rows[i].obs_group_id.is_some());
        for i in idx {
            if obs_rows[i].voided.is_none() {
                let mut row = obs_rows[i].to_row(self.obs_template());
                let before = self.void(&mut row, &obs::TABLE, reason);
                obs_rows[i] = ObsState::from_row(&row);
                Self::update(&mut changes, &obs::TABLE, before, row);
            }
        }
        self.patients[p].encounters[e].obs = obs_rows;
        let enc_id = self.patients[p].encounters[e].row[encounter::encounter_id].clone();
        let mut order_rows = std::mem::take(&mut self.patients[p].orders);
        for (o, _) in order_rows.iter_mut() {
            if o[orders::encounter_id] == enc_id && o[orders::voided] == Value::Bool(false) {
                let before = self.void(o, &orders::TABLE, reason);
                Self::update(&mut changes, &orders::TABLE, before, o.clone());
            }
        }
        self.patients[p].orders = order_rows;
        let mut row = self.patients[p].encounters[e].row.clone();
        let before = self.void(&mut row, &encounter::TABLE, reason);
        Self::update(&mut changes, &encounter::TABLE, before, row.clone());
        self.patients[p].encounters[e].row = row;
        changes
    }

    /// purgeObs: a hard delete of an obs nothing refers to.
    pub(super) fn purge_obs(&mut self, p: usize) -> Vec<RowChange> {
        let mut changes = Vec::new();
        let candidates = self.obs_where(p, ObsState::purgeable);
        if candidates.is_empty() {
            return changes;
        }
        let (e, i) = *self.rng.pick(&candidates);
        let row = Arc::new(
            self.patients[p].encounters[e]
                .obs
                .remove(i)
                .to_row(self.obs_template()),
        );
        *self.live_rows.entry(schema::obs::TABLE.name).or_insert(0) -= 1;
        changes.push(RowChange {
            table: &schema::obs::TABLE,
            kind: ChangeKind::Delete,
            before: Some(row),
            after: None,
        });
        changes
    }
}
