//! The containers backend's foundations, on testcontainers 0.28: the container daemon ([`daemon`]: found the
//! way testcontainers finds it, refused in one sentence when it cannot speak Docker API 1.53), the images built on
//! this machine ([`images`]: a debootstrapped Debian, MariaDB, and Java with the pinned Kafka, Connect and
//! Debezium jars, tagged by what went into them), and the labels every container carries ([`labels`]: what a
//! killed harness left is swept at the next start and by `etl-harness down`).
//!
//! The backend itself is the local backend's topology ([`crate::topology::local`]) with its services launched
//! through [`bridge`] instead of as processes: the same commands and configs, so the two cannot drift apart.
//! `docker/docker-compose.yml` is held to the same configurations and to the registry images by the `compose` tests.

pub mod bridge;
#[cfg(test)]
mod compose;
pub mod daemon;
pub mod images;
pub mod labels;
pub mod registry;
