//! The OpenMRS tables the harness models, with their real column names and MySQL types.
//!
//! One definition serves three readers: the generator builds rows by column index (`obs::voided`), the SQL
//! fixture (`fixtures/openmrs-schema.sql`) is rendered from it, and change capture will read the column types
//! to map them the way Debezium does. Column order follows openmrs-core's liquibase snapshot where it matters
//! (primary key first), so positional rows stay stable.

use std::fmt::Write as _;

/// A MySQL column type, as far as the harness needs to distinguish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Int,
    /// TINYINT(1), which MySQL calls BOOLEAN.
    Boolean,
    Double,
    Varchar(u16),
    /// CHAR(38), used for every `uuid` column.
    Char(u16),
    Text,
    Date,
    Datetime,
    Time,
}

impl SqlType {
    /// The type as MySQL/MariaDB DDL spells it.
    pub fn ddl(self) -> String {
        match self {
            SqlType::Int => "INT".into(),
            SqlType::Boolean => "TINYINT(1)".into(),
            SqlType::Double => "DOUBLE".into(),
            SqlType::Varchar(n) => format!("VARCHAR({n})"),
            SqlType::Char(n) => format!("CHAR({n})"),
            SqlType::Text => "TEXT".into(),
            SqlType::Date => "DATE".into(),
            SqlType::Datetime => "DATETIME".into(),
            SqlType::Time => "TIME".into(),
        }
    }
}

/// One column: its type, nullability, default, and the keys it takes part in.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    pub ty: SqlType,
    pub nullable: bool,
    /// A DDL default literal (already quoted where it is a string).
    pub default: Option<&'static str>,
    pub primary_key: bool,
    pub auto_increment: bool,
    pub unique: bool,
    /// `(table, column)` this column refers to.
    pub references: Option<(&'static str, &'static str)>,
}

/// Column builders, usable in constant tables.
pub(crate) const fn col(ty: SqlType) -> ColumnDef {
    ColumnDef {
        name: "",
        ty,
        nullable: true,
        default: None,
        primary_key: false,
        auto_increment: false,
        unique: false,
        references: None,
    }
}

impl ColumnDef {
    pub(crate) const fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }
    pub(crate) const fn default(mut self, literal: &'static str) -> Self {
        self.default = Some(literal);
        self
    }
    pub(crate) const fn pk(mut self) -> Self {
        self.primary_key = true;
        self.nullable = false;
        self
    }
    pub(crate) const fn auto(mut self) -> Self {
        self.auto_increment = true;
        self
    }
    pub(crate) const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    pub(crate) const fn fk(mut self, table: &'static str, column: &'static str) -> Self {
        self.references = Some((table, column));
        self
    }
    const fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
}

/// A table: its name and columns in order.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [ColumnDef],
}

/// Tables are static and named uniquely: the name is their identity.
impl PartialEq for TableDef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl TableDef {
    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Indexes of the primary key columns.
    pub fn primary_key(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.columns[i].primary_key)
            .collect()
    }

    /// `CREATE TABLE` for MySQL/MariaDB (InnoDB, utf8mb4), with its keys.
    pub fn create_table_sql(&self) -> String {
        let mut sql = format!("CREATE TABLE `{}` (\n", self.name);
        let mut lines: Vec<String> = Vec::new();
        for c in self.columns {
            let mut line = format!("  `{}` {}", c.name, c.ty.ddl());
            line.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
            if c.auto_increment {
                line.push_str(" AUTO_INCREMENT");
            }
            if let Some(d) = c.default {
                let _ = write!(line, " DEFAULT {d}");
            }
            lines.push(line);
        }
        let pk: Vec<String> = self
            .primary_key()
            .into_iter()
            .map(|i| format!("`{}`", self.columns[i].name))
            .collect();
        lines.push(format!("  PRIMARY KEY ({})", pk.join(", ")));
        for c in self.columns.iter().filter(|c| c.unique) {
            lines.push(format!(
                "  UNIQUE KEY `{}_{}` (`{}`)",
                self.name, c.name, c.name
            ));
        }
        for c in self.columns {
            if let Some((table, column)) = c.references {
                lines.push(format!(
                    "  CONSTRAINT `fk_{}_{}` FOREIGN KEY (`{}`) REFERENCES `{}` (`{}`)",
                    self.name, c.name, c.name, table, column
                ));
            }
        }
        sql.push_str(&lines.join(",\n"));
        sql.push_str("\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n");
        sql
    }
}

macro_rules! tables {
    ($( $module:ident $sql_name:literal { $( $column:ident : $def:expr ),+ $(,)? } )+) => {
        $(
            #[doc = concat!("Column indexes of `", $sql_name, "`.")]
            #[allow(non_upper_case_globals, dead_code)]
            pub mod $module {
                #[allow(unused_imports)]
                use super::*;
                #[allow(non_camel_case_types, clippy::enum_variant_names)]
                #[repr(usize)]
                enum Index { $( $column ),+ }
                $( pub const $column: usize = Index::$column as usize; )+
                pub static TABLE: super::TableDef = super::TableDef {
                    name: $sql_name,
                    columns: &[ $( super::ColumnDef::named($def, stringify!($column)) ),+ ],
                };
            }
        )+

        /// Every table, in an order where each table comes after the tables it refers to.
        pub static ALL_TABLES: &[&TableDef] = &[ $( &$module::TABLE ),+ ];
    };
}

use SqlType::*;

const UUID: ColumnDef = col(Char(38)).not_null().unique();
const CREATOR: ColumnDef = col(Int).not_null().default("0").fk("users", "user_id");
const USER: ColumnDef = col(Int).fk("users", "user_id");
const CREATED: ColumnDef = col(Datetime).not_null();
const FLAG: ColumnDef = col(Boolean).not_null().default("0");
const REASON: ColumnDef = col(Varchar(255));

tables! {
    users "users" {
        user_id: col(Int).pk().auto(),
        system_id: col(Varchar(50)).not_null(),
        username: col(Varchar(50)),
        person_id: col(Int),
        retired: FLAG,
        uuid: UUID,
    }
    concept_datatype "concept_datatype" {
        concept_datatype_id: col(Int).pk().auto(),
        name: col(Varchar(255)).not_null(),
        hl7_abbreviation: col(Varchar(3)),
        uuid: UUID,
    }
    concept_class "concept_class" {
        concept_class_id: col(Int).pk().auto(),
        name: col(Varchar(255)).not_null(),
        uuid: UUID,
    }
    concept "concept" {
        concept_id: col(Int).pk().auto(),
        retired: FLAG,
        short_name: col(Varchar(255)),
        description: col(Text),
        datatype_id: col(Int).not_null().default("0").fk("concept_datatype", "concept_datatype_id"),
        class_id: col(Int).not_null().default("0").fk("concept_class", "concept_class_id"),
        is_set: FLAG,
        creator: CREATOR,
        date_created: CREATED,
        version: col(Varchar(50)),
        changed_by: USER,
        date_changed: col(Datetime),
        retired_by: USER,
        date_retired: col(Datetime),
        retire_reason: REASON,
        uuid: UUID,
    }
    concept_name "concept_name" {
        concept_name_id: col(Int).pk().auto(),
        concept_id: col(Int).fk("concept", "concept_id"),
        name: col(Varchar(255)).not_null(),
        locale: col(Varchar(50)).not_null(),
        locale_preferred: col(Boolean).default("0"),
        creator: CREATOR,
        date_created: CREATED,
        concept_name_type: col(Varchar(50)),
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        uuid: UUID,
        date_changed: col(Datetime),
        changed_by: USER,
    }
    location "location" {
        location_id: col(Int).pk().auto(),
        name: col(Varchar(255)).not_null(),
        description: col(Varchar(255)),
        address1: col(Varchar(255)),
        city_village: col(Varchar(255)),
        state_province: col(Varchar(255)),
        country: col(Varchar(50)),
        creator: CREATOR,
        date_created: CREATED,
        retired: FLAG,
        retired_by: USER,
        date_retired: col(Datetime),
        retire_reason: REASON,
        uuid: UUID,
    }
    encounter_type "encounter_type" {
        encounter_type_id: col(Int).pk().auto(),
        name: col(Varchar(50)).not_null().unique(),
        description: col(Text),
        creator: CREATOR,
        date_created: CREATED,
        retired: FLAG,
        retired_by: USER,
        date_retired: col(Datetime),
        retire_reason: REASON,
        uuid: UUID,
    }
    visit_type "visit_type" {
        visit_type_id: col(Int).pk().auto(),
        name: col(Varchar(255)).not_null(),
        uuid: UUID,
    }
    order_type "order_type" {
        order_type_id: col(Int).pk().auto(),
        name: col(Varchar(255)).not_null(),
        java_class_name: col(Varchar(255)).not_null(),
        uuid: UUID,
    }
    care_setting "care_setting" {
        care_setting_id: col(Int).pk().auto(),
        name: col(Varchar(255)).not_null(),
        care_setting_type: col(Varchar(50)).not_null(),
        uuid: UUID,
    }
    patient_identifier_type "patient_identifier_type" {
        patient_identifier_type_id: col(Int).pk().auto(),
        name: col(Varchar(50)).not_null(),
        uuid: UUID,
    }
    form "form" {
        form_id: col(Int).pk().auto(),
        name: col(Varchar(255)).not_null(),
        version: col(Varchar(50)).not_null(),
        uuid: UUID,
    }
    drug "drug" {
        drug_id: col(Int).pk().auto(),
        concept_id: col(Int).not_null().fk("concept", "concept_id"),
        name: col(Varchar(255)),
        uuid: UUID,
    }
    encounter_role "encounter_role" {
        encounter_role_id: col(Int).pk().auto(),
        name: col(Varchar(255)).not_null(),
        uuid: UUID,
    }
    order_frequency "order_frequency" {
        order_frequency_id: col(Int).pk().auto(),
        concept_id: col(Int).not_null().unique().fk("concept", "concept_id"),
        frequency_per_day: col(Double),
        uuid: UUID,
    }
    person "person" {
        person_id: col(Int).pk().auto(),
        gender: col(Varchar(50)).default("''"),
        birthdate: col(Date),
        birthdate_estimated: FLAG,
        dead: FLAG,
        death_date: col(Datetime),
        cause_of_death: col(Int).fk("concept", "concept_id"),
        creator: USER,
        date_created: CREATED,
        changed_by: USER,
        date_changed: col(Datetime),
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        uuid: UUID,
        deathdate_estimated: FLAG,
        birthtime: col(Time),
        cause_of_death_non_coded: col(Varchar(255)),
    }
    person_name "person_name" {
        person_name_id: col(Int).pk().auto(),
        preferred: FLAG,
        person_id: col(Int).not_null().fk("person", "person_id"),
        prefix: col(Varchar(50)),
        given_name: col(Varchar(50)),
        middle_name: col(Varchar(50)),
        family_name_prefix: col(Varchar(50)),
        family_name: col(Varchar(50)),
        family_name2: col(Varchar(50)),
        family_name_suffix: col(Varchar(50)),
        degree: col(Varchar(50)),
        creator: CREATOR,
        date_created: CREATED,
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        changed_by: USER,
        date_changed: col(Datetime),
        uuid: UUID,
    }
    provider "provider" {
        provider_id: col(Int).pk().auto(),
        person_id: col(Int).fk("person", "person_id"),
        name: col(Varchar(255)),
        identifier: col(Varchar(255)),
        creator: CREATOR,
        date_created: CREATED,
        changed_by: USER,
        date_changed: col(Datetime),
        retired: FLAG,
        retired_by: USER,
        date_retired: col(Datetime),
        retire_reason: REASON,
        uuid: UUID,
    }
    patient "patient" {
        patient_id: col(Int).pk().fk("person", "person_id"),
        creator: CREATOR,
        date_created: CREATED,
        changed_by: USER,
        date_changed: col(Datetime),
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        allergy_status: col(Varchar(50)).not_null().default("'Unknown'"),
    }
    patient_identifier "patient_identifier" {
        patient_identifier_id: col(Int).pk().auto(),
        patient_id: col(Int).not_null().default("0").fk("patient", "patient_id"),
        identifier: col(Varchar(50)).not_null().default("''"),
        identifier_type: col(Int).not_null().default("0").fk("patient_identifier_type", "patient_identifier_type_id"),
        preferred: FLAG,
        location_id: col(Int).fk("location", "location_id"),
        creator: CREATOR,
        date_created: CREATED,
        date_changed: col(Datetime),
        changed_by: USER,
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        uuid: UUID,
    }
    visit "visit" {
        visit_id: col(Int).pk().auto(),
        patient_id: col(Int).not_null().fk("patient", "patient_id"),
        visit_type_id: col(Int).not_null().fk("visit_type", "visit_type_id"),
        date_started: col(Datetime).not_null(),
        date_stopped: col(Datetime),
        indication_concept_id: col(Int).fk("concept", "concept_id"),
        location_id: col(Int).fk("location", "location_id"),
        creator: CREATOR,
        date_created: CREATED,
        changed_by: USER,
        date_changed: col(Datetime),
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        uuid: UUID,
    }
    encounter "encounter" {
        encounter_id: col(Int).pk().auto(),
        encounter_type: col(Int).not_null().fk("encounter_type", "encounter_type_id"),
        patient_id: col(Int).not_null().default("0").fk("patient", "patient_id"),
        location_id: col(Int).fk("location", "location_id"),
        form_id: col(Int).fk("form", "form_id"),
        encounter_datetime: col(Datetime).not_null(),
        creator: CREATOR,
        date_created: CREATED,
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        changed_by: USER,
        date_changed: col(Datetime),
        visit_id: col(Int).fk("visit", "visit_id"),
        uuid: UUID,
    }
    orders "orders" {
        order_id: col(Int).pk().auto(),
        order_type_id: col(Int).not_null().default("0").fk("order_type", "order_type_id"),
        concept_id: col(Int).not_null().default("0").fk("concept", "concept_id"),
        orderer: col(Int).not_null().fk("provider", "provider_id"),
        instructions: col(Text),
        date_activated: col(Datetime),
        auto_expire_date: col(Datetime),
        date_stopped: col(Datetime),
        order_reason: col(Int).fk("concept", "concept_id"),
        order_reason_non_coded: col(Varchar(255)),
        creator: CREATOR,
        date_created: CREATED,
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        patient_id: col(Int).not_null().fk("patient", "patient_id"),
        accession_number: col(Varchar(255)),
        uuid: UUID,
        urgency: col(Varchar(50)).not_null().default("'ROUTINE'"),
        order_number: col(Varchar(50)).not_null(),
        previous_order_id: col(Int).fk("orders", "order_id"),
        order_action: col(Varchar(50)).not_null(),
        comment_to_fulfiller: col(Varchar(1024)),
        care_setting: col(Int).not_null().fk("care_setting", "care_setting_id"),
        scheduled_date: col(Datetime),
        order_group_id: col(Int),
        sort_weight: col(Double),
        fulfiller_comment: col(Varchar(1024)),
        fulfiller_status: col(Varchar(50)),
        encounter_id: col(Int).not_null().fk("encounter", "encounter_id"),
    }
    drug_order "drug_order" {
        order_id: col(Int).pk().default("0").fk("orders", "order_id"),
        drug_inventory_id: col(Int).fk("drug", "drug_id"),
        dose: col(Double),
        as_needed: col(Boolean),
        dosing_type: col(Varchar(255)),
        quantity: col(Double),
        as_needed_condition: col(Varchar(255)),
        num_refills: col(Int),
        dosing_instructions: col(Text),
        duration: col(Int),
        duration_units: col(Int).fk("concept", "concept_id"),
        quantity_units: col(Int).fk("concept", "concept_id"),
        route: col(Int).fk("concept", "concept_id"),
        dose_units: col(Int).fk("concept", "concept_id"),
        frequency: col(Int).fk("order_frequency", "order_frequency_id"),
        brand_name: col(Varchar(255)),
        dispense_as_written: FLAG,
        drug_non_coded: col(Varchar(255)),
    }
    test_order "test_order" {
        order_id: col(Int).pk().default("0").fk("orders", "order_id"),
        specimen_source: col(Int).fk("concept", "concept_id"),
        laterality: col(Varchar(20)),
        clinical_history: col(Text),
        frequency: col(Int).fk("order_frequency", "order_frequency_id"),
        number_of_repeats: col(Int),
    }
    obs "obs" {
        obs_id: col(Int).pk().auto(),
        person_id: col(Int).not_null().fk("person", "person_id"),
        concept_id: col(Int).not_null().default("0").fk("concept", "concept_id"),
        encounter_id: col(Int).fk("encounter", "encounter_id"),
        order_id: col(Int).fk("orders", "order_id"),
        obs_datetime: col(Datetime).not_null(),
        location_id: col(Int).fk("location", "location_id"),
        obs_group_id: col(Int).fk("obs", "obs_id"),
        accession_number: col(Varchar(255)),
        value_group_id: col(Int),
        value_coded: col(Int).fk("concept", "concept_id"),
        value_coded_name_id: col(Int).fk("concept_name", "concept_name_id"),
        value_drug: col(Int).fk("drug", "drug_id"),
        value_datetime: col(Datetime),
        value_numeric: col(Double),
        value_modifier: col(Varchar(2)),
        value_text: col(Text),
        value_complex: col(Varchar(1000)),
        comments: col(Varchar(255)),
        creator: CREATOR,
        date_created: CREATED,
        voided: FLAG,
        voided_by: USER,
        date_voided: col(Datetime),
        void_reason: REASON,
        uuid: UUID,
        previous_version: col(Int).fk("obs", "obs_id"),
        form_namespace_and_path: col(Varchar(255)),
        status: col(Varchar(16)).not_null().default("'FINAL'"),
        interpretation: col(Varchar(32)),
    }
}

/// The tables whose rows the workload generates and the ETL reads (the rest are seeded reference tables).
pub static MODELED_TABLES: &[&TableDef] = &[
    &person::TABLE,
    &person_name::TABLE,
    &patient::TABLE,
    &patient_identifier::TABLE,
    &visit::TABLE,
    &encounter::TABLE,
    &encounter_type::TABLE,
    &obs::TABLE,
    &orders::TABLE,
    &drug_order::TABLE,
    &test_order::TABLE,
    &concept::TABLE,
    &concept_name::TABLE,
    &location::TABLE,
    &provider::TABLE,
];

/// Looks a table up by its SQL name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    ALL_TABLES.iter().copied().find(|t| t.name == name)
}

impl TableDef {
    /// A row holding every column's default (NULL where there is none).
    pub fn empty_row(&self) -> crate::model::value::Row {
        use crate::model::value::Value;
        self.columns
            .iter()
            .map(|c| match (c.default, c.ty) {
                (None, _) => Value::Null,
                (Some(d), SqlType::Boolean) => Value::Bool(d == "1"),
                (Some(d), SqlType::Int) => Value::Int(d.parse().unwrap_or(0)),
                (Some(d), SqlType::Double) => Value::Double(d.parse().unwrap_or(0.0)),
                (Some(d), _) => Value::text(d.trim_matches('\'')),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_comes_after_the_tables_it_refers_to() {
        for (i, t) in ALL_TABLES.iter().enumerate() {
            for c in t.columns {
                if let Some((target, column)) = c.references {
                    let j = ALL_TABLES
                        .iter()
                        .position(|x| x.name == target)
                        .expect(target);
                    assert!(
                        j <= i,
                        "{}.{} refers to {target}, defined later",
                        t.name,
                        c.name
                    );
                    assert!(table(target).unwrap().column_index(column).is_some());
                }
            }
            assert!(!t.primary_key().is_empty(), "{} has no primary key", t.name);
        }
    }

    #[test]
    fn column_indexes_follow_the_definition_order() {
        assert_eq!(obs::TABLE.columns[obs::voided].name, "voided");
        assert_eq!(
            orders::TABLE.columns[orders::encounter_id].name,
            "encounter_id"
        );
        assert_eq!(
            patient::TABLE.columns[patient::patient_id].name,
            "patient_id"
        );
    }
}
