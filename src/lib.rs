//! openmrs-etl-harness (architecture doc filled in as modules land).
pub mod broker;
pub mod clock;
