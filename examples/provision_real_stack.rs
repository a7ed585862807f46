//! Resolves the pinned JVM components of the local real stack into the JVM cache (the same entry
//! `LocalTopology::start` uses) and reports the machine programs the stack needs. Used by
//! `.ci/install-real-stack`; exits non-zero when something is missing.
//!
//! ```text
//! cargo run --example provision_real_stack
//! ```

use std::process::ExitCode;

use openmrs_etl_harness::topology::local::prerequisites::missing_programs;
use openmrs_etl_harness::topology::local::{
    jvm_cache_dir, provision_jvm_components, JvmComponents,
};

fn main() -> ExitCode {
    let missing = missing_programs();
    for program in &missing {
        eprintln!(
            "{} not found ({}); install with: {}",
            program.name, program.purpose, program.install
        );
    }
    let cache = jvm_cache_dir();
    match provision_jvm_components(&cache) {
        Ok(provisioned) => {
            println!(
                "JVM components (Kafka {}, Debezium {}) {} in {:.1} s: {}",
                JvmComponents::kafka_version(),
                JvmComponents::debezium_version(),
                if provisioned.resolved {
                    "resolved"
                } else {
                    "already cached"
                },
                provisioned.elapsed.as_secs_f64(),
                provisioned.components.root.display()
            );
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    }
    if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
