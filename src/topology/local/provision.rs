//! Provisioning the JVM components like container images: the Maven manifests in `fixtures/jvm/` pin Kafka,
//! ZooKeeper, Kafka Connect and Debezium; on first use `mvn dependency:copy-dependencies` copies their jars into a
//! cache directory keyed by the manifests' hash, and later runs reuse it. The `tools` manifest adds Kafka's
//! command-line tools and the Java clients, which tests use as real group clients.
//!
//! Cache: `$ETL_HARNESS_JVM_CACHE`, else `$XDG_CACHE_HOME/openmrs-etl-harness/jvm`, else
//! `~/.cache/openmrs-etl-harness/jvm`. Inside it, `<hash>/` holds `kafka/`, `connect/`, `tools/` and `plugins/debezium/`
//! and a `.complete` marker written last. Maven's own repository (`~/.m2`) is used as usual.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::LocalError;
use super::prerequisites;

/// Environment variable that overrides the JVM cache directory.
pub const JVM_CACHE_ENV: &str = "ETL_HARNESS_JVM_CACHE";

/// The manifests, compiled in so an installed binary provisions the same versions as the repository.
const MANIFESTS: [(&str, &str); 5] = [
    ("pom.xml", include_str!("../../../fixtures/jvm/pom.xml")),
    (
        "kafka/pom.xml",
        include_str!("../../../fixtures/jvm/kafka/pom.xml"),
    ),
    (
        "connect/pom.xml",
        include_str!("../../../fixtures/jvm/connect/pom.xml"),
    ),
    (
        "debezium/pom.xml",
        include_str!("../../../fixtures/jvm/debezium/pom.xml"),
    ),
    (
        "tools/pom.xml",
        include_str!("../../../fixtures/jvm/tools/pom.xml"),
    ),
];

const COMPLETE_MARKER: &str = ".complete";
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Where the resolved jars of one manifest version are.
#[derive(Debug, Clone)]
pub struct JvmComponents {
    /// `<cache>/<hash>`.
    pub root: PathBuf,
    /// Where the services find the jars when that is not `root`'s layout (inside a container image).
    pub layout: Option<JarLayout>,
}

/// Directories of jars as the JVM services see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JarLayout {
    /// The broker's, ZooKeeper's and the KRaft controller's classpath.
    pub kafka: PathBuf,
    /// The Connect worker's classpath.
    pub connect: PathBuf,
    /// The worker's `plugin.path`.
    pub plugins: PathBuf,
}

impl JvmComponents {
    /// The jars of a JVM cache entry, where it is.
    pub fn at(root: PathBuf) -> JvmComponents {
        JvmComponents { root, layout: None }
    }

    /// Jars of the Kafka broker and ZooKeeper (one classpath serves both).
    pub fn kafka_libs(&self) -> PathBuf {
        match &self.layout {
            Some(layout) => layout.kafka.clone(),
            None => self.root.join("kafka"),
        }
    }

    /// Jars of the Kafka Connect worker.
    pub fn connect_libs(&self) -> PathBuf {
        match &self.layout {
            Some(layout) => layout.connect.clone(),
            None => self.root.join("connect"),
        }
    }

    /// Kafka's command-line tools (`ConsumerGroupCommand`) and the Java clients, for tests running real group
    /// clients.
    pub fn tools_libs(&self) -> PathBuf {
        self.root.join("tools")
    }

    /// The worker's `plugin.path`: one subdirectory per plugin (`debezium/`).
    pub fn plugin_path(&self) -> PathBuf {
        match &self.layout {
            Some(layout) => layout.plugins.clone(),
            None => self.root.join("plugins"),
        }
    }

    /// The Debezium version pinned by the manifest (e.g. `3.2.0.Final`).
    pub fn debezium_version() -> &'static str {
        manifest_property("debezium.version").unwrap_or("unknown")
    }

    /// The Kafka version pinned by the manifest (e.g. `3.9.1`).
    pub fn kafka_version() -> &'static str {
        manifest_property("kafka.version").unwrap_or("unknown")
    }
}

/// What provisioning did.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub components: JvmComponents,
    /// True when Maven ran; false when a complete cache entry was reused.
    pub resolved: bool,
    pub elapsed: Duration,
}

/// The JVM cache directory (see the module docs for the lookup order).
pub fn jvm_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(JVM_CACHE_ENV).filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache_home = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache_home.join("openmrs-etl-harness").join("jvm")
}

/// Short hex hash of the manifests; it names the cache entry, so a changed pin never reuses old jars.
pub fn manifest_hash() -> String {
    let mut hasher = Sha256::new();
    for (name, text) in MANIFESTS {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The JVM components of the default cache ([`jvm_cache_dir`]), resolved on a blocking thread (Maven may run for
/// minutes on a cold cache).
pub async fn default_jvm_components() -> Result<JvmComponents, LocalError> {
    tokio::task::spawn_blocking(|| provision_jvm_components(&jvm_cache_dir()))
        .await
        .map_err(|e| LocalError::io("provisioning", jvm_cache_dir(), std::io::Error::other(e)))?
        .map(|provisioned| provisioned.components)
}

/// Returns the JVM components, resolving them with Maven into `cache_dir` unless a complete entry exists.
/// Blocking (Maven may run for minutes on a cold cache); prints progress to stderr.
pub fn provision_jvm_components(cache_dir: &Path) -> Result<Provisioned, LocalError> {
    let started = Instant::now();
    let hash = manifest_hash();
    let root = cache_dir.join(&hash);
    if is_complete(&root, &hash) {
        return Ok(Provisioned {
            components: JvmComponents::at(root),
            resolved: false,
            elapsed: started.elapsed(),
        });
    }

    let mvn = prerequisites::require("mvn")?;
    fs::create_dir_all(cache_dir)
        .map_err(|e| LocalError::io("creating the JVM cache", cache_dir, e))?;
    // Resolve into a private directory and rename it into place, so a concurrent or interrupted run never
    // leaves a half-filled entry that looks complete.
    let partial = cache_dir.join(format!("{hash}.partial-{}", std::process::id()));
    remove_dir_if_present(&partial)?;
    let manifest_dir = partial.join("manifest");
    for (name, text) in MANIFESTS {
        let path = manifest_dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| LocalError::io("creating", parent, e))?;
        }
        fs::write(&path, text).map_err(|e| LocalError::io("writing", &path, e))?;
    }

    eprintln!(
        "[etl-harness] provisioning Kafka {} and Debezium {} with Maven into {} (first use; later runs reuse it)",
        JvmComponents::kafka_version(),
        JvmComponents::debezium_version(),
        root.display()
    );
    let log_path = cache_dir.join(format!("{hash}.maven.log"));
    run_maven(&mvn, &manifest_dir, &partial, &log_path)?;

    let marker = format!("{hash}\n");
    fs::write(partial.join(COMPLETE_MARKER), marker)
        .map_err(|e| LocalError::io("writing", &partial, e))?;
    match fs::rename(&partial, &root) {
        Ok(()) => {}
        // Another run finished first: use its entry.
        Err(_) if is_complete(&root, &hash) => remove_dir_if_present(&partial)?,
        Err(e) => return Err(LocalError::io("moving the resolved jars to", &root, e)),
    }
    eprintln!(
        "[etl-harness] provisioned {} jars in {:.1}s",
        count_jars(&root),
        started.elapsed().as_secs_f64()
    );
    Ok(Provisioned {
        components: JvmComponents::at(root),
        resolved: true,
        elapsed: started.elapsed(),
    })
}

fn run_maven(
    mvn: &Path,
    manifest_dir: &Path,
    output: &Path,
    log_path: &Path,
) -> Result<(), LocalError> {
    let log = fs::File::create(log_path).map_err(|e| LocalError::io("creating", log_path, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| LocalError::io("opening", log_path, e))?;
    let mut child = Command::new(mvn)
        .arg("-B")
        .arg("-Dstyle.color=never")
        .arg("-f")
        .arg(manifest_dir.join("pom.xml"))
        .arg("dependency:copy-dependencies")
        .arg(format!("-Djvm.cache={}", output.display()))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| LocalError::io("running Maven for", manifest_dir, e))?;
    let mut last_progress = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(LocalError::io("waiting for Maven in", manifest_dir, e)),
        }
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            eprintln!(
                "[etl-harness] still resolving: {} jars copied so far (Maven log: {})",
                count_jars(output),
                log_path.display()
            );
            last_progress = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log_path).unwrap_or_default();
    let tail = text
        .lines()
        .filter(|line| line.contains("ERROR"))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n");
    Err(LocalError::Provisioning {
        status: status.to_string(),
        log: log_path.to_path_buf(),
        tail,
    })
}

fn is_complete(root: &Path, hash: &str) -> bool {
    fs::read_to_string(root.join(COMPLETE_MARKER))
        .map(|marker| marker.trim() == hash)
        .unwrap_or(false)
}

fn remove_dir_if_present(dir: &Path) -> Result<(), LocalError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LocalError::io("removing", dir, e)),
    }
}

fn count_jars(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                count_jars(&path)
            } else {
                usize::from(path.extension().is_some_and(|ext| ext == "jar"))
            }
        })
        .sum()
}

/// A `<name>value</name>` property of the root manifest.
fn manifest_property(name: &str) -> Option<&'static str> {
    let root = MANIFESTS[0].1;
    let open = format!("<{name}>");
    let start = root.find(&open)? + open.len();
    let end = start + root[start..].find('<')?;
    Some(&root[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_pins_are_readable() {
        assert_eq!(JvmComponents::kafka_version(), "3.9.1");
        assert!(JvmComponents::debezium_version().starts_with("3.2."));
    }

    #[test]
    fn complete_entries_are_reused_without_maven() {
        let cache = tempfile::tempdir().expect("temp dir");
        let hash = manifest_hash();
        let root = cache.path().join(&hash);
        fs::create_dir_all(&root).expect("entry dir");
        fs::write(root.join(COMPLETE_MARKER), format!("{hash}\n")).expect("marker");
        let provisioned = provision_jvm_components(cache.path()).expect("reuse");
        assert!(!provisioned.resolved);
        assert_eq!(provisioned.components.root, root);
    }
}
