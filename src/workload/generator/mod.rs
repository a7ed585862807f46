//! The seeded generator of clinical operations.
//!
//! It keeps just enough of the database in memory to write correct changes: each patient's person and name
//! rows, the open visit, a window of recent encounters with their obs and orders, and the patient's orders.
//! Older encounters leave the window (clinics rarely edit last year's vitals), which bounds memory on long runs.
//! Every row change carries full row images, the way a ROW-format binlog does.

mod encounters;
mod orders;
mod patients;

use arcstr::ArcStr;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::concepts::{Concept, ConceptDictionary, Role};
use super::operation::{ChangeKind, Operation, Phase, RowChange};
use super::reference::{self, *};
use super::WorkloadSpec;
use crate::model::schema::{self, TableDef};
use crate::model::value::{Row, Value};
use crate::model::OpKind;
use crate::rng::SeededRng;
use orders::active;

/// How many of a patient's most recent encounters stay editable.
const ENCOUNTER_WINDOW: usize = 4;
/// How many patients are tried before an operation whose precondition nobody meets is drawn again.
const PATIENT_TRIES: usize = 16;

/// A table's default row and the positions `new_row` fills, computed once per table.
struct RowTemplate {
    table: &'static TableDef,
    row: Row,
    id: Option<usize>,
    uuid: Option<usize>,
    creator: Option<usize>,
    date_created: Option<usize>,
}

impl RowTemplate {
    fn of(table: &'static TableDef, id_column: Option<&'static str>) -> RowTemplate {
        RowTemplate {
            table,
            row: table.empty_row(),
            id: id_column.and_then(|c| table.column_index(c)),
            uuid: table.column_index("uuid"),
            creator: table.column_index("creator"),
            date_created: table.column_index("date_created"),
        }
    }
}

struct EncounterState {
    row: Row,
    /// Every obs of the encounter as it now stands (voided ones included, purged ones removed).
    obs: Vec<ObsState>,
}

/// An obs row kept compactly: the columns the generator ever sets, nothing else. Long runs hold a window of
/// encounters per patient, so a full 30-column row per obs would make the generator memory-bound; the row is
/// rebuilt exactly (`to_row`) only when an edit, void or purge needs its before image.
#[derive(Clone)]
struct ObsState {
    obs_id: i64,
    person_id: i64,
    concept_id: i64,
    encounter_id: i64,
    obs_datetime: i64,
    location_id: Option<i64>,
    obs_group_id: Option<i64>,
    value_coded: Option<i64>,
    value_coded_name_id: Option<i64>,
    value_numeric: Option<f64>,
    value_text: Option<ArcStr>,
    date_created: i64,
    uuid: ArcStr,
    previous_version: Option<i64>,
    amended: bool,
    /// `(date_voided, void_reason)` once voided (always by the admin user).
    voided: Option<(i64, ArcStr)>,
}

impl ObsState {
    /// Captures a row the generator built. A column this form does not keep would be lost; the round-trip
    /// test below and the stream-integrity property test (before images equal stored rows) guard against it.
    fn from_row(row: &Row) -> ObsState {
        use schema::obs;
        let int = |c: usize| row[c].as_int();
        let ms = |c: usize| match row[c] {
            Value::Datetime(ms) => Some(ms),
            _ => None,
        };
        let text = |c: usize| match &row[c] {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        };
        ObsState {
            obs_id: int(obs::obs_id).unwrap_or(0),
            person_id: int(obs::person_id).unwrap_or(0),
            concept_id: int(obs::concept_id).unwrap_or(0),
            encounter_id: int(obs::encounter_id).unwrap_or(0),
            obs_datetime: ms(obs::obs_datetime).unwrap_or(0),
            location_id: int(obs::location_id),
            obs_group_id: int(obs::obs_group_id),
            value_coded: int(obs::value_coded),
            value_coded_name_id: int(obs::value_coded_name_id),
            value_numeric: match row[obs::value_numeric] {
                Value::Double(v) => Some(v),
                _ => None,
            },
            value_text: text(obs::value_text),
            date_created: ms(obs::date_created).unwrap_or(0),
            uuid: text(obs::uuid).unwrap_or_default(),
            previous_version: int(obs::previous_version),
            amended: row[obs::status].is_text("AMENDED"),
            voided: match (
                row[obs::voided] == Value::Bool(true),
                ms(obs::date_voided),
                text(obs::void_reason),
            ) {
                (true, Some(at), Some(reason)) => Some((at, reason)),
                _ => None,
            },
        }
    }

    /// The full row, equal to the one `from_row` captured (and to what the database holds).
    fn to_row(&self, template: &Row) -> Row {
        use schema::obs;
        let opt = |v: Option<i64>| v.map(Value::Int).unwrap_or(Value::Null);
        let mut row = template.clone();
        row[obs::obs_id] = Value::Int(self.obs_id);
        row[obs::person_id] = Value::Int(self.person_id);
        row[obs::concept_id] = Value::Int(self.concept_id);
        row[obs::encounter_id] = Value::Int(self.encounter_id);
        row[obs::obs_datetime] = Value::Datetime(self.obs_datetime);
        row[obs::location_id] = opt(self.location_id);
        row[obs::obs_group_id] = opt(self.obs_group_id);
        row[obs::value_coded] = opt(self.value_coded);
        row[obs::value_coded_name_id] = opt(self.value_coded_name_id);
        row[obs::value_numeric] = self.value_numeric.map(Value::Double).unwrap_or(Value::Null);
        row[obs::value_text] = self
            .value_text
            .clone()
            .map(Value::Text)
            .unwrap_or(Value::Null);
        row[obs::creator] = Value::Int(ADMIN_USER);
        row[obs::date_created] = Value::Datetime(self.date_created);
        row[obs::uuid] = Value::Text(self.uuid.clone());
        row[obs::previous_version] = opt(self.previous_version);
        row[obs::status] = Value::text(if self.amended { "AMENDED" } else { "FINAL" });
        if let Some((at, reason)) = &self.voided {
            row[obs::voided] = Value::Bool(true);
            row[obs::voided_by] = Value::Int(ADMIN_USER);
            row[obs::date_voided] = Value::Datetime(*at);
            row[obs::void_reason] = Value::Text(reason.clone());
        }
        row
    }

    /// A non-voided top-level obs with a value (group parents and members are edited as a group, not here).
    fn editable(&self) -> bool {
        self.voided.is_none()
            && self.obs_group_id.is_none()
            && (self.value_numeric.is_some()
                || self.value_text.is_some()
                || self.value_coded.is_some())
    }

    /// A non-voided obs that is no group's parent (non-voided obs never have a newer version).
    fn purgeable(&self, siblings: &[ObsState]) -> bool {
        self.voided.is_none() && !siblings.iter().any(|s| s.obs_group_id == Some(self.obs_id))
    }
}

struct PatientState {
    person: Row,
    name: Row,
    female: bool,
    visit: Option<Row>,
    encounters: VecDeque<EncounterState>,
    /// Orders the patient may still revise or discontinue, and those of encounters still in the window.
    orders: Vec<(Row, Row)>,
}

impl PatientState {
    fn alive(&self) -> bool {
        self.person[schema::person::dead] == Value::Bool(false)
    }
}

/// Generates a workload: the baseline population first, then the stream of operations.
pub struct Generator {
    spec: WorkloadSpec,
    rng: SeededRng,
    dict: &'static ConceptDictionary,
    vitals: Vec<&'static Concept>,
    labs: Vec<&'static Concept>,
    diagnoses: Vec<&'static Concept>,
    drugs: Vec<(i64, &'static Concept)>,
    patients: Vec<PatientState>,
    next_id: BTreeMap<&'static str, i64>,
    live_rows: BTreeMap<&'static str, i64>,
    seq: u64,
    baseline_left: u64,
    stream_left: u64,
    clock_ms: f64,
    now_ms: i64,
    pending: VecDeque<Operation>,
    mix_weights: Vec<f64>,
    unmet: [u64; OpKind::ALL.len()],
    templates: Vec<RowTemplate>,
    obs_defaults: Row,
}

impl Generator {
    pub fn new(spec: &WorkloadSpec, seed: u64) -> Generator {
        let dict = ConceptDictionary::get();
        let baseline_start = spec.start_ms - spec.patients as i64 * 60_000;
        let mix_weights = OpKind::ALL.iter().map(|k| spec.mix.weight(*k)).collect();
        Generator {
            spec: spec.clone(),
            rng: SeededRng::new(seed, "workload"),
            dict,
            vitals: dict.with_role(Role::Vital).collect(),
            labs: dict.with_role(Role::Lab).collect(),
            diagnoses: dict.with_role(Role::Diagnosis).collect(),
            drugs: reference::drug_rows().collect(),
            patients: Vec::new(),
            next_id: BTreeMap::new(),
            live_rows: BTreeMap::new(),
            seq: 0,
            baseline_left: spec.patients,
            stream_left: spec.operations,
            clock_ms: baseline_start as f64,
            now_ms: baseline_start,
            pending: VecDeque::new(),
            mix_weights,
            unmet: [0; OpKind::ALL.len()],
            templates: Vec::new(),
            obs_defaults: schema::obs::TABLE.empty_row(),
        }
    }

    /// Rows each modeled table holds after everything generated so far (reference rows excluded).
    pub fn row_counts(&self) -> &BTreeMap<&'static str, i64> {
        &self.live_rows
    }

    fn id(&mut self, table: &'static str) -> i64 {
        let next = self.next_id.entry(table).or_insert(1);
        let id = *next;
        *next += 1;
        id
    }

    /// Current DATETIME value: the operation's commit time at second precision.
    fn now(&self) -> Value {
        Value::Datetime(self.now_ms - self.now_ms.rem_euclid(1000))
    }

    fn new_row(&mut self, table: &'static TableDef, id_column: Option<&'static str>) -> Row {
        let t = match self
            .templates
            .iter()
            .position(|t| std::ptr::eq(t.table, table))
        {
            Some(i) => i,
            None => {
                self.templates.push(RowTemplate::of(table, id_column));
                self.templates.len() - 1
            }
        };
        let id = self.templates[t].id.map(|_| self.id(table.name));
        let now = self.now();
        let uuid = self.templates[t].uuid.map(|_| Value::Text(self.rng.uuid()));
        let template = &self.templates[t];
        let mut row = template.row.clone();
        if let (Some(i), Some(id)) = (template.id, id) {
            row[i] = Value::Int(id);
        }
        if let (Some(i), Some(uuid)) = (template.uuid, uuid) {
            row[i] = uuid;
        }
        if let Some(i) = template.creator {
            row[i] = Value::Int(ADMIN_USER);
        }
        if let Some(i) = template.date_created {
            row[i] = now;
        }
        row
    }

    /// The default obs row (what `ObsState::to_row` starts from).
    fn obs_template(&self) -> &Row {
        &self.obs_defaults
    }

    fn insert(&mut self, changes: &mut Vec<RowChange>, table: &'static TableDef, row: Row) {
        *self.live_rows.entry(table.name).or_insert(0) += 1;
        changes.push(RowChange {
            table,
            kind: ChangeKind::Insert,
            before: None,
            after: Some(Arc::new(row)),
        });
    }

    /// Records an update; one that changes nothing is no change at all (MySQL writes no row event for it).
    fn update(changes: &mut Vec<RowChange>, table: &'static TableDef, before: Row, after: Row) {
        if before == after {
            return;
        }
        changes.push(RowChange {
            table,
            kind: ChangeKind::Update,
            before: Some(Arc::new(before)),
            after: Some(Arc::new(after)),
        });
    }

    fn void(&mut self, row: &mut Row, table: &'static TableDef, reason: &str) -> Row {
        let before = row.clone();
        let set = |row: &mut Row, name: &str, v: Value| {
            row[table.column_index(name).expect("void column")] = v
        };
        set(row, "voided", Value::Bool(true));
        set(row, "voided_by", Value::Int(ADMIN_USER));
        set(row, "date_voided", self.now());
        set(row, "void_reason", Value::text(reason));
        before
    }

    fn advance_clock(&mut self, phase: Phase) {
        let step = match phase {
            Phase::Baseline => 60_000.0,
            // Interarrival jittered uniformly in [0.5, 1.5) of the mean, integer-free of platform math.
            Phase::Stream => 1000.0 / self.spec.rate * (0.5 + self.rng.unit()),
        };
        self.clock_ms += step;
        self.now_ms = self.clock_ms as i64;
    }

    fn emit(&mut self, phase: Phase, kind: OpKind, patient: usize, changes: Vec<RowChange>) {
        self.seq += 1;
        let patient_id = self
            .patients
            .get(patient)
            .map(|p| p.person[0].as_int().unwrap_or(0))
            .unwrap_or(0);
        self.pending.push_back(Operation {
            seq: self.seq,
            at_ms: self.now_ms,
            phase,
            kind,
            patient_id,
            changes,
        });
    }

    fn baseline_step(&mut self) {
        self.advance_clock(Phase::Baseline);
        let (p, changes) = self.register_patient();
        self.emit(Phase::Baseline, OpKind::RegisterPatient, p, changes);
        if self.rng.chance(0.3) {
            let changes = self.start_visit(p);
            self.emit(Phase::Baseline, OpKind::StartVisit, p, changes);
            if self.rng.chance(0.7) {
                let changes = self.vitals(p);
                self.emit(Phase::Baseline, OpKind::Vitals, p, changes);
            }
        }
    }

    fn stream_step(&mut self) {
        self.advance_clock(Phase::Stream);
        loop {
            let Some(k) = self.rng.weighted(&self.mix_weights) else {
                return;
            };
            let kind = OpKind::ALL[k];
            if kind == OpKind::RegisterPatient || self.patients.is_empty() {
                let (p, changes) = self.register_patient();
                self.emit(Phase::Stream, OpKind::RegisterPatient, p, changes);
                return;
            }
            let Some(p) = self.pick_patient(kind) else {
                continue;
            };
            let changes = match kind {
                OpKind::RegisterPatient => unreachable!("handled above"),
                OpKind::StartVisit => self.start_visit(p),
                OpKind::StopVisit => self.stop_visit(p),
                OpKind::Vitals => self.vitals(p),
                OpKind::LabResults => self.lab_results(p),
                OpKind::Diagnosis => self.visit_note(p),
                OpKind::NewOrder => self.new_drug_order(p),
                OpKind::ReviseOrder => self.revise_order(p),
                OpKind::DiscontinueOrder => self.discontinue_order(p),
                OpKind::EditObs => self.edit_obs(p),
                OpKind::VoidEncounter => self.void_encounter(p),
                OpKind::UpdateDemographics => self.update_demographics(p),
                OpKind::PurgeObs => self.purge_obs(p),
            };
            self.emit(Phase::Stream, kind, p, changes);
            return;
        }
    }

    /// A patient for `kind`, honouring the hot-patient skew; `None` if the tries found nobody eligible.
    fn pick_patient(&mut self, kind: OpKind) -> Option<usize> {
        for _ in 0..PATIENT_TRIES {
            let hot = (self.spec.hot_patients as usize).min(self.patients.len());
            let p = if hot > 0 && self.rng.chance(self.spec.hot_share) {
                self.rng.below(hot as u64) as usize
            } else {
                self.rng.below(self.patients.len() as u64) as usize
            };
            if self.eligible(p, kind) {
                return Some(p);
            }
        }
        // Few patients qualify (say, three open visits among thousands): choose among exactly those.
        let eligible: Vec<usize> = (0..self.patients.len())
            .filter(|&p| self.eligible(p, kind))
            .collect();
        if eligible.is_empty() {
            self.unmet[kind as usize] += 1;
            return None;
        }
        Some(*self.rng.pick(&eligible))
    }

    /// How often each kind was drawn when no patient could take it (the draw is then repeated). A mix that
    /// stops visits faster than it starts them shows up here.
    pub fn unmet(&self) -> impl Iterator<Item = (OpKind, u64)> + '_ {
        OpKind::ALL
            .iter()
            .map(|k| (*k, self.unmet[*k as usize]))
            .filter(|(_, n)| *n > 0)
    }

    fn eligible(&self, p: usize, kind: OpKind) -> bool {
        let s = &self.patients[p];
        match kind {
            OpKind::RegisterPatient | OpKind::UpdateDemographics => true,
            OpKind::StartVisit => s.alive() && s.visit.is_none(),
            OpKind::StopVisit => s.visit.is_some(),
            OpKind::Vitals | OpKind::LabResults | OpKind::Diagnosis | OpKind::NewOrder => s.alive(),
            OpKind::ReviseOrder => s
                .orders
                .iter()
                .any(|(o, d)| active(o) && d.len() == schema::drug_order::TABLE.columns.len()),
            OpKind::DiscontinueOrder => s.orders.iter().any(|(o, _)| active(o)),
            OpKind::EditObs => s
                .encounters
                .iter()
                .any(|e| e.obs.iter().any(ObsState::editable)),
            OpKind::VoidEncounter => s
                .encounters
                .iter()
                .any(|e| e.row[schema::encounter::voided] == Value::Bool(false)),
            OpKind::PurgeObs => s
                .encounters
                .iter()
                .any(|e| e.obs.iter().any(|o| o.purgeable(&e.obs))),
        }
    }
}

impl Iterator for Generator {
    type Item = Operation;

    fn next(&mut self) -> Option<Operation> {
        while self.pending.is_empty() {
            if self.baseline_left > 0 {
                self.baseline_left -= 1;
                self.baseline_step();
            } else if self.stream_left > 0 {
                self.stream_left -= 1;
                self.stream_step();
            } else {
                return None;
            }
        }
        self.pending.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_obs_row_survives_the_compact_form() {
        let spec = WorkloadSpec {
            patients: 30,
            operations: 3000,
            ..WorkloadSpec::default()
        };
        let template = schema::obs::TABLE.empty_row();
        let mut seen = 0;
        for op in Generator::new(&spec, 11) {
            for c in op.changes.iter().filter(|c| c.table.name == "obs") {
                for row in c.before.iter().chain(c.after.iter()) {
                    assert_eq!(&ObsState::from_row(row).to_row(&template), &**row);
                    seen += 1;
                }
            }
        }
        assert!(seen > 10_000, "{seen}");
    }
}
