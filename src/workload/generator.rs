//! The seeded generator of clinical operations.
//!
//! It keeps just enough of the database in memory to write correct changes: each patient's person and name
//! rows, the open visit, a window of recent encounters with their obs and orders, and the patient's orders.
//! Older encounters leave the window (clinics rarely edit last year's vitals), which bounds memory on long runs.
//! Every row change carries full row images, the way a ROW-format binlog does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::concepts::{Concept, ConceptDictionary, Role};
use super::names;
use super::reference::{self, *};
use super::WorkloadSpec;
use crate::model::schema::{self, TableDef};
use crate::model::value::{Row, Value};
use crate::model::OpKind;
use crate::rng::SeededRng;

/// How many of a patient's most recent encounters stay editable.
const ENCOUNTER_WINDOW: usize = 4;
/// How many patients are tried before an operation whose precondition nobody meets is drawn again.
const PATIENT_TRIES: usize = 16;

/// What a row change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One row changed by an operation, with the images before and after (as a ROW-format binlog has them).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub table: &'static TableDef,
    pub kind: ChangeKind,
    /// Images are shared with the generator's own state, so emitting a change copies no row.
    pub before: Option<Arc<Row>>,
    pub after: Option<Arc<Row>>,
}

impl RowChange {
    /// The row image that identifies the row (after for inserts and updates, before for deletes).
    pub fn image(&self) -> &Row {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .expect("a change has an image")
    }
}

/// Whether an operation builds the population that exists before capture starts, or is part of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Baseline,
    Stream,
}

/// One source transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// 1-based position in the whole workload (baseline and stream).
    pub seq: u64,
    /// When it is committed, epoch milliseconds.
    pub at_ms: i64,
    pub phase: Phase,
    pub kind: OpKind,
    pub patient_id: i64,
    pub changes: Vec<RowChange>,
}

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
    value_text: Option<Arc<str>>,
    date_created: i64,
    uuid: Arc<str>,
    previous_version: Option<i64>,
    amended: bool,
    /// `(date_voided, void_reason)` once voided (always by the admin user).
    voided: Option<(i64, Arc<str>)>,
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
            uuid: text(obs::uuid).unwrap_or_else(|| Arc::from("")),
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

    fn register_patient(&mut self) -> (usize, Vec<RowChange>) {
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

    fn patient_id(&self, p: usize) -> i64 {
        self.patients[p].person[schema::person::person_id]
            .as_int()
            .unwrap_or(0)
    }

    fn start_visit(&mut self, p: usize) -> Vec<RowChange> {
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

    fn stop_visit(&mut self, p: usize) -> Vec<RowChange> {
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

    /// Inserts an encounter row (in the open visit, if any) and returns its index in the patient's window.
    fn encounter(
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

    fn vitals(&mut self, p: usize) -> Vec<RowChange> {
        let mut changes = Vec::with_capacity(9);
        let e = self.encounter(p, ENCOUNTER_VITALS, Some(FORM_VITALS), &mut changes);
        for c in self.vitals.clone() {
            self.numeric_obs(p, e, c, &mut changes);
        }
        changes
    }

    fn lab_results(&mut self, p: usize) -> Vec<RowChange> {
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

    fn visit_note(&mut self, p: usize) -> Vec<RowChange> {
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

    /// An orders row (not yet inserted) and an empty subtype row for it.
    fn order_row(
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

    fn new_drug_order(&mut self, p: usize) -> Vec<RowChange> {
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

    fn revise_order(&mut self, p: usize) -> Vec<RowChange> {
        self.follow_up_order(p, "REVISE")
    }

    fn discontinue_order(&mut self, p: usize) -> Vec<RowChange> {
        self.follow_up_order(p, "DISCONTINUE")
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
    fn edit_obs(&mut self, p: usize) -> Vec<RowChange> {
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
    fn void_encounter(&mut self, p: usize) -> Vec<RowChange> {
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

    fn update_demographics(&mut self, p: usize) -> Vec<RowChange> {
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

    /// purgeObs: a hard delete of an obs nothing refers to.
    fn purge_obs(&mut self, p: usize) -> Vec<RowChange> {
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

/// An order that has not been stopped, voided, or is itself a discontinuation.
fn active(o: &Row) -> bool {
    o[schema::orders::date_stopped].is_null()
        && o[schema::orders::voided] == Value::Bool(false)
        && !o[schema::orders::order_action].is_text("DISCONTINUE")
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
