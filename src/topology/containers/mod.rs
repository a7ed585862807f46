//! The containers backend's foundations, on testcontainers 0.28: the container daemon ([`daemon`]: found the
//! way testcontainers finds it, refused in one sentence when it cannot speak Docker API 1.53), the images built on
//! this machine ([`images`]: a debootstrapped Debian, MariaDB, and Java with the pinned Kafka, Connect and
//! Debezium jars, tagged by what went into them), and the labels every container carries ([`labels`]: what a
//! killed harness left is swept at the next start and by `etl-harness down`).
//!
//! Running scenarios in containers is not wired into the run driver yet: `backend = "containers"` is refused
//! with `RunError::BackendUnavailable` until it is.

pub mod daemon;
pub mod images;
pub mod labels;
