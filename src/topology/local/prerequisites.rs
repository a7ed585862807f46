//! The programs the local topology needs from the machine, found on PATH (and in /usr/sbin, where Debian puts
//! `mariadbd` but a non-login PATH may not look).

use std::path::{Path, PathBuf};

use super::error::LocalError;

/// A program the local topology runs, with what it is for and how to install it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredProgram {
    pub name: &'static str,
    pub purpose: &'static str,
    pub install: &'static str,
}

/// Everything `LocalTopology::start` and provisioning run.
pub const REQUIRED_PROGRAMS: [RequiredProgram; 4] = [
    RequiredProgram {
        name: "mariadbd",
        purpose: "the MariaDB source database",
        install: "apt-get install mariadb-server",
    },
    RequiredProgram {
        name: "mariadb-install-db",
        purpose: "creating MariaDB's data directory",
        install: "apt-get install mariadb-server",
    },
    RequiredProgram {
        name: "java",
        purpose: "ZooKeeper, Kafka and Kafka Connect (Java 17)",
        install: "apt-get install openjdk-17-jre-headless",
    },
    RequiredProgram {
        name: "mvn",
        purpose: "resolving the pinned Kafka, Connect and Debezium jars",
        install: "apt-get install maven",
    },
];

/// The required programs that cannot be found, in the order of [`REQUIRED_PROGRAMS`].
pub fn missing_programs() -> Vec<RequiredProgram> {
    REQUIRED_PROGRAMS
        .iter()
        .filter(|program| find_program(program.name).is_none())
        .copied()
        .collect()
}

/// The path of a required program, or an error that says how to install it.
pub(crate) fn require(name: &'static str) -> Result<PathBuf, LocalError> {
    let program = REQUIRED_PROGRAMS
        .iter()
        .find(|program| program.name == name)
        .copied()
        .unwrap_or(RequiredProgram {
            name,
            purpose: "the local topology",
            install: "your package manager",
        });
    find_program(name).ok_or(LocalError::MissingProgram {
        program: program.name,
        purpose: program.purpose,
        install: program.install,
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
