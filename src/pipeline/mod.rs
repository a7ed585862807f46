//! The ETL: consumers that share the change topics' partitions, the sink that keeps the latest image of every
//! row, and the flat encounter table derived from those images.

pub mod flat;
