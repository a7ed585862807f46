//! The images the containers backend runs, built on this machine: no registry is needed (or reachable here).
//!
//! | image | what it is | built from |
//! |---|---|---|
//! | `localhost/openmrs-etl-harness-base` | a minimal Debian of the machine's release | `debootstrap --variant=minbase` from the machine's configured apt mirror, imported as a root filesystem; the machine's apt sources copied in |
//! | `localhost/openmrs-etl-harness-mariadb` | MariaDB from Debian's packages (the local backend's `mariadbd`) | the base, `apt-get install mariadb-server` |
//! | `localhost/openmrs-etl-harness-jvm` | Java 17 and the pinned Kafka, ZooKeeper, Connect and Debezium jars under [`JVM_ROOT`] | the base, `apt-get install openjdk-17-jre-headless`, the jars copied from the JVM cache the local backend fills |
//!
//! Each tag is a hash of what went into the image (the recipe, the apt sources, the parent's tag, the JVM
//! manifest hash), so [`ensure`] builds an image only when one of those changed, as a pull would fetch only a new
//! digest. A derived image is built by running its recipe in a host-network container of the parent (through
//! testcontainers) and committing the result; build containers carry the harness's label, so a build cut short
//! is swept like any leftover.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use testcontainers::bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateImageOptionsBuilder, TagImageOptionsBuilder,
};
use testcontainers::core::Mount;
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};
use tokio_stream::StreamExt;

use super::daemon::Daemon;
use super::labels;
use crate::topology::local::{JarLayout, JvmComponents};

/// Bumped whenever a recipe below changes in a way its inputs do not show.
const RECIPE_VERSION: &str = "1";

/// Where the JVM image keeps the jars (the layout of a JVM cache entry: `kafka/`, `connect/`, `plugins/`).
pub const JVM_ROOT: &str = "/opt/openmrs-etl-harness/jvm";

/// How long one derived image's recipe may run (apt downloads included).
const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A local image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repo: String,
    pub tag: String,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

/// The images a containers run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    pub mariadb: ImageRef,
    pub jvm: ImageRef,
    /// Where the JVM services find their jars: inside the image, except the Debezium plugin of an image not
    /// built here, which is the JVM cache's copy mounted read-only.
    pub jars: JarLayout,
    /// Host directories the JVM containers mount read-only at the same path.
    pub jvm_mounts: Vec<PathBuf>,
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("building {image}: {why}")]
    Build { image: String, why: String },
    #[error("{0}")]
    Choice(String),
    #[error("pulling {image} (topology.images.{role}): {why}")]
    Pull {
        image: String,
        role: &'static str,
        why: String,
    },
    #[error("the base image is built with debootstrap from this machine's apt sources, and {0}")]
    NoAptSources(String),
}

fn build_error(image: &impl fmt::Display, why: impl fmt::Display) -> ImageError {
    ImageError::Build {
        image: image.to_string(),
        why: why.to_string(),
    }
}

/// What the machine's apt configuration says: the release, the mirror debootstrap uses, and the files copied
/// into the base so `apt-get` inside it sees the same archive.
#[derive(Debug, Clone)]
struct AptSources {
    codename: String,
    mirror: String,
    files: Vec<(PathBuf, String)>,
}

fn apt_sources() -> Result<AptSources, ImageError> {
    let os_release = std::fs::read_to_string("/etc/os-release")
        .map_err(|e| ImageError::NoAptSources(format!("/etc/os-release cannot be read: {e}")))?;
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_owned())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ImageError::NoAptSources("/etc/os-release names no VERSION_CODENAME".into())
        })?;
    let mut files = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        files.push((PathBuf::from("/etc/apt/sources.list"), text));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path
                .extension()
                .is_some_and(|x| x == "sources" || x == "list")
            {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    files.push((path, text));
                }
            }
        }
    }
    let mirror = files
        .iter()
        .flat_map(|(_, text)| mirrors(text, &codename))
        .next()
        .ok_or_else(|| {
            ImageError::NoAptSources(format!(
                "no apt source of this machine serves `{codename}` (checked /etc/apt/sources.list and /etc/apt/sources.list.d)"
            ))
        })?;
    Ok(AptSources {
        codename,
        mirror,
        files,
    })
}

/// The archive URIs of `text` (one-line or deb822 format) that serve `codename` itself.
fn mirrors(text: &str, codename: &str) -> Vec<String> {
    let mut found = Vec::new();
    // One-line format: `deb [options] URI suite components`.
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
        if words.next() == Some("deb") {
            if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
                if suite == codename {
                    found.push(uri.to_owned());
                }
            }
        }
    }
    // deb822 format: paragraphs with `URIs:` and `Suites:`.
    for paragraph in text.split("\n\n") {
        let field = |name: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
        };
        if field("Suites:").split_whitespace().any(|s| s == codename) {
            found.extend(field("URIs:").split_whitespace().map(str::to_owned));
        }
    }
    found
}

fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

const MARIADB_RECIPE: &str = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server && apt-get clean && rm -rf /var/lib/apt/lists/*";

fn jvm_recipe() -> String {
    format!(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless && apt-get clean && rm -rf /var/lib/apt/lists/* \
         && mkdir -p {JVM_ROOT} && for d in kafka connect plugins; do cp -a /mnt/jvm/$d {JVM_ROOT}/; done"
    )
}

/// The names the images of this machine's inputs have (built or not).
pub fn planned(jvm: &JvmComponents) -> Result<(ImageRef, Images), ImageError> {
    let (_, base, images) = plan(jvm)?;
    Ok((base, images))
}

/// [`planned`], with the apt sources the base's tag was computed from: a build uses exactly those.
fn plan(jvm: &JvmComponents) -> Result<(AptSources, ImageRef, Images), ImageError> {
    let apt = apt_sources()?;
    let sources: Vec<&str> = apt.files.iter().map(|(_, t)| t.as_str()).collect();
    let mut base_inputs = vec![
        RECIPE_VERSION,
        "debootstrap minbase",
        &apt.codename,
        &apt.mirror,
    ];
    base_inputs.extend(sources);
    let base = ImageRef {
        repo: "localhost/openmrs-etl-harness-base".into(),
        tag: short_hash(&base_inputs),
    };
    let manifest = jvm
        .root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = Path::new(JVM_ROOT);
    let images = Images {
        mariadb: ImageRef {
            repo: "localhost/openmrs-etl-harness-mariadb".into(),
            tag: short_hash(&[RECIPE_VERSION, &base.tag, MARIADB_RECIPE]),
        },
        jvm: ImageRef {
            repo: "localhost/openmrs-etl-harness-jvm".into(),
            tag: short_hash(&[RECIPE_VERSION, &base.tag, &jvm_recipe(), &manifest]),
        },
        jars: JarLayout {
            kafka: root.join("kafka"),
            connect: root.join("connect"),
            plugins: root.join("plugins"),
        },
        jvm_mounts: Vec::new(),
    };
    Ok((apt, base, images))
}

/// Builds whichever of the images is missing; `say` hears one line per image (present, or built and how long it
/// took).
pub async fn ensure(
    daemon: &Daemon,
    jvm: &JvmComponents,
    say: &mut dyn FnMut(String),
) -> Result<Images, ImageError> {
    ensure_some(daemon, jvm, [true, true], say).await
}

/// [`ensure`] for the images `wanted` marks (MariaDB, JVM); all of them are named in the answer.
pub(super) async fn ensure_some(
    daemon: &Daemon,
    jvm: &JvmComponents,
    wanted: [bool; 2],
    say: &mut dyn FnMut(String),
) -> Result<Images, ImageError> {
    let (apt, base, images) = plan(jvm)?;
    let mut base_ready = daemon.has_image(&base).await;
    let recipes = [
        (&images.mariadb, MARIADB_RECIPE.to_owned(), None),
        (&images.jvm, jvm_recipe(), Some(jvm.root.as_path())),
    ];
    for ((image, recipe, mount), wanted) in recipes.into_iter().zip(wanted) {
        if !wanted {
            continue;
        }
        if daemon.has_image(image).await {
            say(format!("{image}: present"));
            continue;
        }
        if !base_ready {
            let started = Instant::now();
            build_base(daemon, &apt, &base).await?;
            say(format!(
                "{base}: built in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            base_ready = true;
        }
        let started = Instant::now();
        build_derived(daemon, &base, image, &recipe, mount).await?;
        say(format!(
            "{image}: built in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(images)
}

/// debootstrap into a scratch directory, the machine's apt sources copied in, imported as `base`.
async fn build_base(daemon: &Daemon, apt: &AptSources, base: &ImageRef) -> Result<(), ImageError> {
    let scratch = tempfile::Builder::new()
        .prefix("etl-harness-base-")
        .tempdir_in(
            std::env::var_os("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/var/tmp".into()),
        )
        .map_err(|e| build_error(base, format!("creating a scratch directory: {e}")))?;
    let root = scratch.path().join("root");
    let output = tokio::process::Command::new("debootstrap")
        .args(["--variant=minbase", &apt.codename])
        .arg(&root)
        .arg(&apt.mirror)
        .output()
        .await
        .map_err(|e| {
            build_error(
                base,
                format!("running debootstrap (apt-get install debootstrap): {e}"),
            )
        })?;
    if !output.status.success() {
        return Err(build_error(
            base,
            format!(
                "debootstrap {} {} exited with {}: {}",
                apt.codename,
                apt.mirror,
                output.status,
                tail(&output.stdout, &output.stderr)
            ),
        ));
    }
    // The machine's sources (security and updates too), and no service starts while packages install.
    let copy = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(root.join("etc/apt/sources.list"));
        std::fs::create_dir_all(root.join("etc/apt/sources.list.d"))?;
        for (path, text) in &apt.files {
            let inside = root.join(path.strip_prefix("/").unwrap_or(path));
            std::fs::write(inside, text)?;
        }
        std::fs::write(root.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n")?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("usr/sbin/policy-rc.d"),
            std::fs::Permissions::from_mode(0o755),
        )
    };
    copy()
        .map_err(|e| build_error(base, format!("configuring apt in the root filesystem: {e}")))?;
    import(daemon, &root, base).await
}

/// Streams `root` as a tar into the daemon's image import, then tags the result as `image`.
async fn import(daemon: &Daemon, root: &Path, image: &ImageRef) -> Result<(), ImageError> {
    let mut tar = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| build_error(image, format!("running tar: {e}")))?;
    let stdout = tar
        .stdout
        .take()
        .ok_or_else(|| build_error(image, "tar has no stdout"))?;
    let body = testcontainers::bollard::body_try_stream(tokio_util::io::ReaderStream::new(stdout));
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(&image.repo)
        .tag(&image.tag)
        .build();
    let mut progress = daemon.docker.create_image(Some(options), Some(body), None);
    let mut id = None;
    while let Some(step) = progress.next().await {
        let step =
            step.map_err(|e| build_error(image, format!("importing the root filesystem: {e}")))?;
        if let Some(error) = step.error_detail.and_then(|d| d.message) {
            return Err(build_error(
                image,
                format!("importing the root filesystem: {error}"),
            ));
        }
        id = step.id.or(id);
    }
    let status = tar
        .wait()
        .await
        .map_err(|e| build_error(image, format!("waiting for tar: {e}")))?;
    if !status.success() {
        return Err(build_error(image, format!("tar exited with {status}")));
    }
    let id = id.ok_or_else(|| build_error(image, "the import named no image"))?;
    // Some daemons (podman) take the repository but not the tag of an import, and name it `latest`: tag it
    // explicitly, and drop the `latest` name (only the name: the image stays under its tag).
    daemon
        .docker
        .tag_image(
            &id,
            Some(
                TagImageOptionsBuilder::new()
                    .repo(&image.repo)
                    .tag(&image.tag)
                    .build(),
            ),
        )
        .await
        .map_err(|e| build_error(image, format!("tagging the import: {e}")))?;
    if image.tag != "latest" {
        let _ = daemon
            .docker
            .remove_image(
                &format!("{}:latest", image.repo),
                None::<testcontainers::bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
    Ok(())
}

/// Runs `recipe` in a host-network container of `base` (with the JVM cache at `/mnt/jvm` when `mount` is given)
/// and commits the container as `image`.
async fn build_derived(
    daemon: &Daemon,
    base: &ImageRef,
    image: &ImageRef,
    recipe: &str,
    mount: Option<&Path>,
) -> Result<(), ImageError> {
    let mut request = GenericImage::new(base.repo.as_str(), base.tag.as_str())
        .with_cmd(["sh", "-c", recipe])
        .with_label(labels::OWNER, labels::owner_value())
        .with_label(labels::PURPOSE, format!("building {image}"))
        .with_host_config_modifier(|hc| hc.network_mode = Some("host".into()));
    if let Some(dir) = mount {
        request = request.with_mount(
            Mount::bind_mount(dir.display().to_string(), "/mnt/jvm")
                .with_access_mode(testcontainers::core::AccessMode::ReadOnly),
        );
    }
    let container = request
        .start()
        .await
        .map_err(|e| build_error(image, format!("starting the build container: {e}")))?;
    let started = Instant::now();
    let code = loop {
        match container.exit_code().await {
            Ok(Some(code)) => break code,
            Ok(None) if started.elapsed() < BUILD_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Ok(None) => {
                return Err(build_error(
                    image,
                    format!("the recipe ran longer than {BUILD_TIMEOUT:?}"),
                ))
            }
            Err(e) => return Err(build_error(image, format!("waiting for the recipe: {e}"))),
        }
    };
    if code != 0 {
        let out = container.stdout_to_vec().await.unwrap_or_default();
        let err = container.stderr_to_vec().await.unwrap_or_default();
        return Err(build_error(
            image,
            format!("`{recipe}` exited with {code}: {}", tail(&out, &err)),
        ));
    }
    let options = CommitContainerOptionsBuilder::new()
        .container(container.id())
        .repo(&image.repo)
        .tag(&image.tag)
        .build();
    daemon
        .docker
        .commit_container(
            options,
            testcontainers::bollard::models::ContainerConfig::default(),
        )
        .await
        .map_err(|e| build_error(image, format!("committing the build container: {e}")))?;
    container
        .rm()
        .await
        .map_err(|e| build_error(image, format!("removing the build container: {e}")))
}

/// The last lines a failed command printed.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_comes_from_either_apt_format_for_the_release_itself() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(
            mirrors(deb822, "bookworm"),
            ["http://deb.debian.org/debian"]
        );
        let one_line = "deb [arch=amd64] http://mirror.example/debian bookworm main\ndeb http://security.example bookworm-security main\n";
        assert_eq!(
            mirrors(one_line, "bookworm"),
            ["http://mirror.example/debian"]
        );
        assert!(mirrors(one_line, "trixie").is_empty());
    }

    #[test]
    fn a_tag_changes_with_what_went_into_the_image() {
        assert_eq!(short_hash(&["a", "b"]), short_hash(&["a", "b"]));
        assert_ne!(short_hash(&["a", "b"]), short_hash(&["ab"]));
        assert_eq!(short_hash(&["x"]).len(), 12);
    }
}
