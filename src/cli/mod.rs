//! The command line's own commands: code that serves people at a terminal and may use every backend, so that no
//! backend module has to import another (`etl-harness up` starts either the embedded cluster or the local
//! topology; `etl-harness test` runs scenarios on whichever backends they name; `etl-harness images` and `down` manage the
//! containers backend's images and leftovers).

pub mod containers;
pub mod test;
pub mod up;
