//! `[topology.images]`: the images the containers backend runs instead of those it builds.

use serde::{Deserialize, Serialize};

/// `[topology.images]`: for machines that reach a registry, the images the containers backend runs instead of the
/// ones `etl-harness images build` makes here. The Debezium plugin always comes from the harness's JVM cache
/// (mounted read-only), so the connector is the pinned one whichever image runs Connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageChoices {
    /// The source database: an image with `mariadbd` and `mariadb-install-db` on its PATH
    /// (`docker.io/library/mariadb:10.11`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mariadb: Option<String>,
    /// ZooKeeper or the KRaft controller, the brokers and Connect: an image with `java` on its PATH and a Kafka
    /// distribution's jars (`docker.io/apache/kafka:3.9.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jvm: Option<String>,
    /// Where the `jvm` image keeps Kafka's jars (the distribution's `libs/`), for an image whose layout the
    /// harness does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jvm_libs: Option<String>,
}

impl ImageChoices {
    /// No image named: the containers backend builds its own.
    pub fn is_empty(&self) -> bool {
        self == &ImageChoices::default()
    }
}
