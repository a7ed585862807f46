//! The data model every layer shares: the OpenMRS tables, their rows, the kinds of operation, and the flat
//! encounter table derived from row images.
//!
//! - [`schema`]: the modeled tables with real column names and MySQL types; renders the schema fixture.
//! - [`value`]: column values and rows ([`Row`], [`Value`]) with their SQL and JSON spellings.
//! - [`op`]: [`OpKind`], the kinds of operation a clinic produces.
//! - [`flat`]: the flat encounter table as a pure function of row images ([`flat::build`]).
//!
//! This module is part of the floor: it imports nothing of the crate but itself, so the generator, the source,
//! the pipeline, history and the checkers can all speak it.

pub mod flat;
pub mod op;
pub mod schema;
pub mod value;

pub use op::OpKind;
pub use value::{Row, Value};
