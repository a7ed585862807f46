//! openmrs-etl-harness (architecture doc filled in as modules land).

pub mod scenario;
pub mod topology;
pub mod workload;
