//! The per-run directory that holds every generated config, process log and data directory, and the pruning of
//! old ones.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::process::Launch;
use super::LocalError;
use crate::topology::containers::images::{ImageRef, Images};

/// Run directories kept under the runs directory; older ones are removed when a new run starts, so failed runs
/// (which keep their data) cannot fill the disk.
const KEPT_RUNS: usize = 20;

/// The per-run directory: `conf/` (generated configs), `logs/` (one log per process), `data/` (datadirs).
#[derive(Debug)]
pub(crate) struct RunDir {
    pub root: PathBuf,
    /// The containers the services run in (the containers backend), or `None`: processes of this machine.
    pub images: Option<Images>,
}

impl RunDir {
    pub(super) fn create(runs_dir: &Path) -> Result<Self, LocalError> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default();
        let name = format!(
            "run-{unix_secs}-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        prune_old_runs(runs_dir, KEPT_RUNS - 1);
        let root = runs_dir.join(name);
        for sub in ["conf", "logs", "data"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
        }
        Ok(RunDir { root, images: None })
    }

    /// Where a JVM service runs.
    pub(crate) fn launch_jvm(&self) -> Launch {
        self.launch(|images| (images.jvm.clone(), images.jvm_mounts.clone()))
    }

    /// Where MariaDB and its tools run.
    pub(crate) fn launch_mariadb(&self) -> Launch {
        self.launch(|images| (images.mariadb.clone(), Vec::new()))
    }

    /// A process of this machine, or a container of the image `pick` chooses (with the host directories it
    /// mounts read-only) and the run directory.
    fn launch(&self, pick: impl Fn(&Images) -> (ImageRef, Vec<PathBuf>)) -> Launch {
        match &self.images {
            None => Launch::Host,
            Some(images) => {
                let (image, read_only) = pick(images);
                Launch::Container {
                    image,
                    binds: vec![self.root.clone()],
                    read_only,
                }
            }
        }
    }

    /// A program the services run: the path on this machine (checked), or, in containers, its name on the
    /// image's PATH.
    pub(crate) fn program(&self, name: &'static str) -> Result<PathBuf, LocalError> {
        match self.images {
            None => super::prerequisites::require(name),
            Some(_) => Ok(PathBuf::from(name)),
        }
    }

    pub fn conf_path(&self, file_name: &str) -> PathBuf {
        self.root.join("conf").join(file_name)
    }

    pub fn log_path(&self, service: &str) -> PathBuf {
        self.root.join("logs").join(format!("{service}.log"))
    }

    /// Creates and returns `data/<name>`.
    pub fn data_dir(&self, name: &str) -> Result<PathBuf, LocalError> {
        let dir = self.root.join("data").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
        Ok(dir)
    }

    pub(super) fn remove_data(&self) -> Result<(), LocalError> {
        let dir = self.root.join("data");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LocalError::io("removing", &dir, e)),
        }
    }
}

/// Removes all but the newest `keep` `run-*` directories (names start with the start time, so they sort by age).
fn prune_old_runs(runs_dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return;
    };
    let mut runs: Vec<(u64, PathBuf)> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let started: u64 = name.strip_prefix("run-")?.split('-').next()?.parse().ok()?;
            Some((started, path))
        })
        .collect();
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    for (_, old_run) in runs.into_iter().take(excess) {
        // Best effort: a run directory that cannot be removed is left for the user.
        let _ = std::fs::remove_dir_all(old_run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_run_directories_are_pruned_newest_kept() {
        let runs = tempfile::tempdir().expect("temp dir");
        for started in [100, 300, 200, 400] {
            std::fs::create_dir_all(runs.path().join(format!("run-{started}-1-0")))
                .expect("run dir");
        }
        std::fs::create_dir_all(runs.path().join("notes")).expect("other dir");
        prune_old_runs(runs.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(runs.path())
            .expect("list")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["notes", "run-300-1-0", "run-400-1-0"]);
    }
}
