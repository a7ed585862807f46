//! Builders of the order operations: new drug orders with their dosing, and REVISE or DISCONTINUE orders that
//! stop the order they follow.

use super::Generator;
use crate::model::schema;
use crate::model::value::{Row, Value};
use crate::workload::concepts::{Concept, Role};
use crate::workload::operation::RowChange;
use crate::workload::reference::{self, *};

impl Generator {
    /// An orders row (not yet inserted) and an empty subtype row for it.
    pub(super) fn order_row(
        &mut self,
        p: usize,
        e: usize,
        order_type: i64,
        concept: i64,
        action: &str,
        previous: Option<&Row>,
    ) -> (Row, Row) {
        use schema::orders;
        let mut row = self.new_row(&orders::TABLE, Some("order_id"));
        let id = row[orders::order_id].as_int().unwrap_or(0);
        row[orders::order_type_id] = Value::Int(order_type);
        row[orders::concept_id] = Value::Int(concept);
        row[orders::orderer] = Value::Int(self.rng.range(2, PROVIDERS));
        row[orders::date_activated] = self.now();
        row[orders::patient_id] = Value::Int(self.patient_id(p));
        row[orders::order_number] = Value::text(format!("ORD-{id}"));
        row[orders::order_action] = Value::text(action);
        row[orders::care_setting] = Value::Int(CARE_SETTING_OUTPATIENT);
        row[orders::encounter_id] =
            self.patients[p].encounters[e].row[schema::encounter::encounter_id].clone();
        if let Some(prev) = previous {
            row[orders::previous_order_id] = prev[orders::order_id].clone();
            row[orders::care_setting] = prev[orders::care_setting].clone();
        }
        (row, Row::new())
    }

    fn drug_details(&mut self, order_id: &Value, drug: (i64, &Concept)) -> Row {
        use schema::drug_order as d;
        let mut row = d::TABLE.empty_row();
        row[d::order_id] = order_id.clone();
        row[d::drug_inventory_id] = Value::Int(drug.0);
        row[d::dose] = Value::Double(self.rng.bell(
            drug.1.min.unwrap_or(1.0),
            drug.1.max.unwrap_or(1.0),
            0,
        ));
        row[d::dose_units] = Value::Int(self.dict.one(Role::DoseUnits).id);
        row[d::as_needed] = Value::Bool(false);
        row[d::dosing_type] = Value::text("org.openmrs.SimpleDosingInstructions");
        row[d::route] = Value::Int(self.dict.one(Role::Route).id);
        row[d::frequency] = Value::Int(
            self.rng
                .range(1, reference::frequency_rows().count() as i64),
        );
        row[d::duration] = Value::Int(*self.rng.pick(&[5, 7, 14, 30]));
        row[d::duration_units] = Value::Int(self.dict.one(Role::DurationUnits).id);
        row[d::quantity] = Value::Double(self.rng.range(10, 60) as f64);
        row[d::quantity_units] = Value::Int(self.dict.one(Role::QuantityUnits).id);
        row[d::num_refills] = Value::Int(self.rng.range(0, 2));
        row
    }

    pub(super) fn new_drug_order(&mut self, p: usize) -> Vec<RowChange> {
        let mut changes = Vec::new();
        let e = self.encounter(p, ENCOUNTER_ORDER_ENTRY, None, &mut changes);
        let drug = *self.rng.pick(&self.drugs);
        let (order, _) = self.order_row(p, e, ORDER_TYPE_DRUG, drug.1.id, "NEW", None);
        let details = self.drug_details(&order[schema::orders::order_id], drug);
        self.insert(&mut changes, &schema::orders::TABLE, order.clone());
        self.insert(&mut changes, &schema::drug_order::TABLE, details.clone());
        self.patients[p].orders.push((order, details));
        changes
    }

    /// Index of a random active order of patient `p` that passes `filter`.
    fn pick_order(&mut self, p: usize, filter: impl Fn(&(Row, Row)) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.patients[p].orders.len())
            .filter(|&i| {
                active(&self.patients[p].orders[i].0) && filter(&self.patients[p].orders[i])
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(*self.rng.pick(&candidates))
    }

    /// REVISE or DISCONTINUE: a new order row linked to the previous one, then the previous one's date_stopped
    /// (inserts are flushed before updates, as Hibernate does).
    fn follow_up_order(&mut self, p: usize, action: &str) -> Vec<RowChange> {
        use schema::orders;
        let mut changes = Vec::new();
        let is_drug = |(_, d): &(Row, Row)| d.len() == schema::drug_order::TABLE.columns.len();
        let pick = if action == "REVISE" {
            self.pick_order(p, is_drug)
        } else {
            self.pick_order(p, |_| true)
        };
        let Some(i) = pick else { return changes };
        let (prev, prev_details) = self.patients[p].orders[i].clone();
        // The new encounter may prune the order list, so the previous order is found again by id below.
        let e = self.encounter(p, ENCOUNTER_ORDER_ENTRY, None, &mut changes);
        let order_type = prev[orders::order_type_id]
            .as_int()
            .unwrap_or(ORDER_TYPE_DRUG);
        let concept = prev[orders::concept_id].as_int().unwrap_or(0);
        let (new, _) = self.order_row(p, e, order_type, concept, action, Some(&prev));
        let new_id = new[orders::order_id].clone();
        let details = if is_drug(&(prev.clone(), prev_details.clone())) {
            let drug_id = prev_details[schema::drug_order::drug_inventory_id]
                .as_int()
                .unwrap_or(1);
            let drug = self
                .drugs
                .iter()
                .copied()
                .find(|(id, _)| *id == drug_id)
                .unwrap_or(self.drugs[0]);
            let mut d = self.drug_details(&new_id, drug);
            if action == "DISCONTINUE" {
                d = prev_details.clone();
                d[schema::drug_order::order_id] = new_id.clone();
            }
            (schema::drug_order::TABLE.name, d)
        } else {
            let mut d = prev_details.clone();
            d[schema::test_order::order_id] = new_id.clone();
            (schema::test_order::TABLE.name, d)
        };
        let details_table = schema::table(details.0).expect("order subtype table");
        self.insert(&mut changes, &orders::TABLE, new.clone());
        self.insert(&mut changes, details_table, details.1.clone());
        let mut stopped = prev.clone();
        stopped[orders::date_stopped] =
            Value::Datetime(self.now_ms - self.now_ms.rem_euclid(1000) - 1000);
        Self::update(&mut changes, &orders::TABLE, prev, stopped.clone());
        let state = &mut self.patients[p];
        let prev_id = &stopped[orders::order_id];
        if let Some(slot) = state
            .orders
            .iter_mut()
            .find(|(o, _)| &o[orders::order_id] == prev_id)
        {
            slot.0 = stopped.clone();
        }
        if action == "REVISE" {
            state.orders.push((new, details.1));
        }
        changes
    }

    pub(super) fn revise_order(&mut self, p: usize) -> Vec<RowChange> {
        self.follow_up_order(p, "REVISE")
    }

    pub(super) fn discontinue_order(&mut self, p: usize) -> Vec<RowChange> {
        self.follow_up_order(p, "DISCONTINUE")
    }
}

/// An order that has not been stopped, voided, or is itself a discontinuation.
pub(super) fn active(o: &Row) -> bool {
    o[schema::orders::date_stopped].is_null()
        && o[schema::orders::voided] == Value::Bool(false)
        && !o[schema::orders::order_action].is_text("DISCONTINUE")
}
