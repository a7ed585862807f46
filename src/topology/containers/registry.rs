//! `[topology.images]` (and `etl-harness run --image`): images from a registry instead of those built here. A
//! MariaDB image needs `mariadbd` and `mariadb-install-db` on its PATH; a JVM image needs `java` and a Kafka
//! distribution's jars, at a place the harness knows for the images it names (`apache/kafka`: `/opt/kafka/libs`) or at
//! `jvm_libs`. The Debezium plugin is always the JVM cache's, mounted read-only, so the connector is the pinned
//! one whichever image runs Connect; each container's entrypoint is the service's program and its user root.

use std::path::PathBuf;
use std::time::Instant;

use testcontainers::runners::AsyncRunner;
use testcontainers::GenericImage;

use super::daemon::Daemon;
use super::images::{ensure_some, ImageError, ImageRef, Images};
use crate::scenario::ImageChoices;
use crate::topology::local::{JarLayout, JvmComponents};

impl ImageRef {
    /// `[registry/]repository[:tag]` (tag `latest` when none is given). A digest (`@sha256:…`) is refused: the
    /// testcontainers request names a repository and a tag.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let expected = "expected an image name like `docker.io/apache/kafka:3.9.1`";
        if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(format!("{expected}, found {text:?}"));
        }
        if text.contains('@') {
            return Err(format!(
                "{expected}, found {text:?}: images are named by tag, not by digest"
            ));
        }
        // A colon after the last slash starts the tag; one before it belongs to a registry's port.
        let name_start = text.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match text[name_start..].rfind(':') {
            Some(i) => (&text[..name_start + i], &text[name_start + i + 1..]),
            None => (text, "latest"),
        };
        if repo.is_empty() || tag.is_empty() || repo.ends_with('/') {
            return Err(format!("{expected}, found {text:?}"));
        }
        Ok(ImageRef {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The repository without its registry (`apache/kafka` for `docker.io/apache/kafka`).
    fn path(&self) -> &str {
        match self.repo.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
            _ => &self.repo,
        }
    }
}

/// The registry image of the MariaDB series the built image carries (Debian 12's MariaDB is 10.11): what
/// `docker/docker-compose.yml` runs, and a `[topology.images] mariadb` for machines that reach Docker Hub.
pub const REGISTRY_MARIADB: &str = "docker.io/library/mariadb:10.11";

/// The registry image of the pinned Kafka version (`docker.io/apache/kafka:3.9.1`).
pub fn registry_jvm() -> String {
    format!("docker.io/apache/kafka:{}", JvmComponents::kafka_version())
}

/// Where registry images the harness knows keep Kafka's jars (a Kafka distribution's `libs/`).
const KNOWN_JVM_IMAGES: [(&str, &str); 1] = [("apache/kafka", "/opt/kafka/libs")];

/// Where `image`'s Kafka jars are, if it is a registry image the harness knows.
pub fn known_jvm_libs(image: &ImageRef) -> Option<&'static str> {
    KNOWN_JVM_IMAGES
        .iter()
        .find(|(path, _)| image.path() == *path)
        .map(|(_, libs)| *libs)
}

/// Why `[topology.images]` cannot be used: the key (`mariadb`, `jvm`, `jvm_libs`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topology.images.{key}: {message}")]
pub struct ChoiceError {
    pub key: &'static str,
    pub message: String,
}

fn refuse(key: &'static str, message: impl Into<String>) -> ChoiceError {
    ChoiceError {
        key,
        message: message.into(),
    }
}

/// Images named in `[topology.images]`, resolved: the image and, for the JVM one, where its jars are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chosen {
    pub mariadb: Option<ImageRef>,
    pub jvm: Option<(ImageRef, PathBuf)>,
}

impl Chosen {
    /// Checks `[topology.images]`; an error names the key.
    pub fn resolve(choices: &ImageChoices) -> Result<Chosen, ChoiceError> {
        let mariadb = choices
            .mariadb
            .as_deref()
            .map(ImageRef::parse)
            .transpose()
            .map_err(|e| refuse("mariadb", e))?;
        let jvm = match choices.jvm.as_deref() {
            None if choices.jvm_libs.is_some() => {
                return Err(refuse(
                    "jvm_libs",
                    "says where the `jvm` image keeps Kafka's jars, but no `jvm` image is named",
                ))
            }
            None => None,
            Some(text) => {
                let image = ImageRef::parse(text).map_err(|e| refuse("jvm", e))?;
                let libs = match (choices.jvm_libs.as_deref(), known_jvm_libs(&image)) {
                    (Some(libs), _) if !libs.starts_with('/') => {
                        return Err(refuse(
                            "jvm_libs",
                            format!("expected an absolute path inside the image, found {libs:?}"),
                        ))
                    }
                    (Some(libs), _) => PathBuf::from(libs),
                    (None, Some(libs)) => PathBuf::from(libs),
                    (None, None) => {
                        return Err(refuse(
                            "jvm",
                            format!(
                                "the harness does not know where `{image}` keeps Kafka's jars (it knows {}); \
                                 say so with `jvm_libs = \"/path/to/kafka/libs\"`",
                                KNOWN_JVM_IMAGES
                                    .iter()
                                    .map(|(path, libs)| format!("{path} at {libs}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ))
                    }
                };
                Some((image, libs))
            }
        };
        Ok(Chosen { mariadb, jvm })
    }
}

/// The images of a run: those `[topology.images]` names (pulled when the daemon does not have them), the others
/// built here as [`ensure`](super::images::ensure) does.
pub async fn for_run(
    daemon: &Daemon,
    jvm: &JvmComponents,
    choices: &ImageChoices,
    say: &mut dyn FnMut(String),
) -> Result<Images, ImageError> {
    let chosen = Chosen::resolve(choices).map_err(|e| ImageError::Choice(e.to_string()))?;
    let mut images = ensure_some(
        daemon,
        jvm,
        [chosen.mariadb.is_none(), chosen.jvm.is_none()],
        say,
    )
    .await?;
    if let Some(image) = chosen.mariadb {
        pull_if_missing(daemon, &image, "mariadb", say).await?;
        images.mariadb = image;
    }
    if let Some((image, libs)) = chosen.jvm {
        pull_if_missing(daemon, &image, "jvm", say).await?;
        // A Kafka distribution keeps the broker's and Connect's jars in one directory; Debezium is mounted.
        let plugins = jvm.plugin_path();
        images.jars = JarLayout {
            kafka: libs.clone(),
            connect: libs,
            plugins: plugins.clone(),
        };
        images.jvm_mounts = vec![plugins];
        images.jvm = image;
    }
    Ok(images)
}

async fn pull_if_missing(
    daemon: &Daemon,
    image: &ImageRef,
    role: &'static str,
    say: &mut dyn FnMut(String),
) -> Result<(), ImageError> {
    if daemon.has_image(image).await {
        say(format!("{image}: present"));
        return Ok(());
    }
    let started = Instant::now();
    let _pulled = GenericImage::new(image.repo.as_str(), image.tag.as_str())
        .pull_image()
        .await
        .map_err(|e| ImageError::Pull {
            image: image.to_string(),
            role,
            why: e.to_string(),
        })?;
    say(format!(
        "{image}: pulled in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_repository_and_tag_as_docker_does() {
        let parsed = |text: &str| ImageRef::parse(text).map(|i| (i.repo, i.tag));
        let ok = |repo: &str, tag: &str| Ok((repo.to_owned(), tag.to_owned()));
        assert_eq!(
            parsed("docker.io/apache/kafka:3.9.1"),
            ok("docker.io/apache/kafka", "3.9.1")
        );
        assert_eq!(parsed("mariadb"), ok("mariadb", "latest"));
        assert_eq!(
            parsed("registry.local:5000/kafka"),
            ok("registry.local:5000/kafka", "latest")
        );
        assert_eq!(
            parsed("registry.local:5000/kafka:3.9.1"),
            ok("registry.local:5000/kafka", "3.9.1")
        );
        for bad in ["", "kafka:", "a b", "kafka@sha256:00", "registry:5000/"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
        let kafka = |text: &str| known_jvm_libs(&ImageRef::parse(text).unwrap());
        assert_eq!(kafka("apache/kafka:3.9.1"), Some("/opt/kafka/libs"));
        assert_eq!(
            kafka("docker.io/apache/kafka:3.9.1"),
            Some("/opt/kafka/libs")
        );
        assert_eq!(kafka("quay.io/debezium/connect:3.2.7.Final"), None);
    }

    #[test]
    fn chosen_images_need_a_known_layout_or_jvm_libs() {
        let choices = |jvm: Option<&str>, libs: Option<&str>| ImageChoices {
            mariadb: Some("docker.io/library/mariadb:10.11".into()),
            jvm: jvm.map(str::to_owned),
            jvm_libs: libs.map(str::to_owned),
        };
        let chosen = Chosen::resolve(&choices(Some("docker.io/apache/kafka:3.9.1"), None)).unwrap();
        assert_eq!(chosen.jvm.unwrap().1, PathBuf::from("/opt/kafka/libs"));
        assert_eq!(chosen.mariadb.unwrap().tag, "10.11");
        let custom = Chosen::resolve(&choices(Some("team/kafka:1"), Some("/kafka/libs"))).unwrap();
        assert_eq!(custom.jvm.unwrap().1, PathBuf::from("/kafka/libs"));
        let unknown = Chosen::resolve(&choices(Some("quay.io/debezium/connect:3.2"), None))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("topology.images.jvm") && unknown.contains("jvm_libs"),
            "{unknown}"
        );
        let relative = Chosen::resolve(&choices(Some("team/kafka:1"), Some("libs"))).unwrap_err();
        assert_eq!(relative.key, "jvm_libs");
        assert!(relative.message.contains("absolute"), "{relative}");
        let orphan = Chosen::resolve(&choices(None, Some("/libs"))).unwrap_err();
        assert_eq!(orphan.key, "jvm_libs");
        assert!(orphan.message.contains("no `jvm` image"), "{orphan}");
        assert_eq!(
            Chosen::resolve(&ImageChoices::default()).unwrap(),
            Chosen::default()
        );
    }
}
