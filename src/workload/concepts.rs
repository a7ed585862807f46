//! The concept dictionary (`fixtures/concepts.json`): which questions and answers the workload uses, and the
//! plausible range of each numeric value.

use serde::Deserialize;
use std::sync::OnceLock;

/// The dictionary as checked in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptDictionary {
    #[allow(dead_code)]
    comment: String,
    pub datatypes: Vec<Datatype>,
    pub classes: Vec<ConceptClass>,
    pub concepts: Vec<Concept>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datatype {
    pub id: i64,
    pub name: String,
    pub hl7: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptClass {
    pub id: i64,
    pub name: String,
}

/// One concept and the part it plays in generated encounters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concept {
    pub id: i64,
    pub name: String,
    pub short: Option<String>,
    pub datatype: String,
    pub class: String,
    pub role: Role,
    #[serde(default)]
    pub is_set: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    #[serde(default)]
    pub decimals: u32,
}

/// What the generator uses a concept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Vital,
    Lab,
    Note,
    DiagnosisSet,
    DiagnosisQuestion,
    CertaintyQuestion,
    RankQuestion,
    Certainty,
    Rank,
    Diagnosis,
    BooleanTrue,
    BooleanFalse,
    BooleanQuestion,
    Drug,
    Frequency,
    DoseUnits,
    QuantityUnits,
    DurationUnits,
    Route,
    Specimen,
}

impl ConceptDictionary {
    /// The checked-in dictionary, parsed once. It is compiled into the binary, so a parse failure is a build
    /// defect caught by the unit tests, not user input.
    pub fn get() -> &'static ConceptDictionary {
        static DICTIONARY: OnceLock<ConceptDictionary> = OnceLock::new();
        DICTIONARY.get_or_init(|| {
            serde_json::from_str(include_str!("../../fixtures/concepts.json"))
                .expect("fixtures/concepts.json is valid (checked by unit tests)")
        })
    }

    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Concept> {
        self.concepts.iter().filter(move |c| c.role == role)
    }

    /// The single concept with a role (for roles that have exactly one).
    pub fn one(&self, role: Role) -> &Concept {
        self.with_role(role)
            .next()
            .expect("every single-concept role is in the dictionary")
    }

    pub fn datatype_id(&self, name: &str) -> Option<i64> {
        self.datatypes.iter().find(|d| d.name == name).map(|d| d.id)
    }

    pub fn class_id(&self, name: &str) -> Option<i64> {
        self.classes.iter().find(|c| c.name == name).map(|c| c.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_consistent() {
        let d = ConceptDictionary::get();
        for c in &d.concepts {
            assert!(
                d.datatype_id(&c.datatype).is_some(),
                "{}: datatype {}",
                c.name,
                c.datatype
            );
            assert!(
                d.class_id(&c.class).is_some(),
                "{}: class {}",
                c.name,
                c.class
            );
            if matches!(c.role, Role::Vital | Role::Lab) {
                let (min, max) = (c.min.unwrap(), c.max.unwrap());
                assert!(min < max, "{}: range", c.name);
                assert_eq!(c.datatype, "Numeric");
            }
        }
        for role in [
            Role::Note,
            Role::DiagnosisSet,
            Role::DiagnosisQuestion,
            Role::BooleanQuestion,
        ] {
            assert_eq!(d.with_role(role).count(), 1, "{role:?}");
        }
        assert_eq!(d.with_role(Role::Vital).count(), 8);
    }
}
