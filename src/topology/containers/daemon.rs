//! The container daemon: where testcontainers finds it, and whether it speaks what testcontainers 0.28 speaks.
//!
//! testcontainers 0.28 (bollard 0.21) sends every request as Docker API 1.53 and never negotiates a lower
//! version. A Docker Engine older than that refuses each request ("client version 1.53 is too new"); podman's
//! Docker-compatible API service accepts it. [`connect`] asks the daemon for its version at 1.53 — the request
//! every later call depends on — and turns each way that can fail into one sentence with the way out.

use testcontainers::bollard::Docker;

/// The Docker API version testcontainers 0.28 speaks (bollard 0.21's fixed client version).
pub const API_VERSION: &str = "1.53";

/// podman's Docker-compatible API socket when run as root (`podman system service`).
pub const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

/// A daemon that answered at [`API_VERSION`].
#[derive(Clone, Debug)]
pub struct Daemon {
    pub(crate) docker: Docker,
    /// What it said it is: `Podman Engine 4.3.1`, `Docker Engine 29.0.0`, ….
    pub product: String,
}

impl Daemon {
    /// The Docker API client (bollard's, as testcontainers re-exports it).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Whether `image` exists in the daemon's store.
    pub async fn has_image(&self, image: &super::images::ImageRef) -> bool {
        self.docker.inspect_image(&image.to_string()).await.is_ok()
    }
}

/// Why no usable daemon answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error("no container daemon: {why}. Start one that speaks Docker API {API_VERSION}: podman's service (`podman system service --time=0 unix://{PODMAN_SOCKET}` and DOCKER_HOST=unix://{PODMAN_SOCKET}) or Docker Engine 29 or newer")]
    Missing { why: String },
    #[error("the container daemon ({product}) speaks Docker API up to {max}, and testcontainers 0.28 sends every request as {API_VERSION} without negotiating: use Docker Engine 29 or newer, or podman's service (`podman system service --time=0 unix://{PODMAN_SOCKET}` and DOCKER_HOST=unix://{PODMAN_SOCKET})")]
    TooOld { product: String, max: String },
}

/// Connects to the daemon testcontainers would use (`DOCKER_HOST`, `~/.testcontainers.properties`, then the
/// default sockets) and checks it answers at [`API_VERSION`].
pub async fn connect() -> Result<Daemon, DaemonError> {
    let docker = testcontainers::core::client::docker_client_instance()
        .await
        .map_err(|e| DaemonError::Missing {
            why: format!("{e}{}", podman_hint()),
        })?;
    match docker.version().await {
        Ok(version) => {
            let product = version
                .components
                .as_ref()
                .and_then(|c| c.first())
                .map(|c| format!("{} {}", c.name, c.version))
                .or_else(|| {
                    version
                        .version
                        .clone()
                        .map(|v| format!("Docker Engine {v}"))
                })
                .unwrap_or_else(|| "an unnamed daemon".into());
            Ok(Daemon { docker, product })
        }
        Err(e) => Err(classify(&e.to_string())),
    }
}

/// Maps a failed version request to why: a daemon too old for 1.53 says so in its answer; anything else means
/// nothing usable answered.
fn classify(error: &str) -> DaemonError {
    // Docker Engine: "client version 1.53 is too new. Maximum supported API version is 1.41"
    if let Some(max) = error
        .split("Maximum supported API version is ")
        .nth(1)
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()
                .unwrap_or(rest)
        })
    {
        return DaemonError::TooOld {
            product: "Docker Engine".into(),
            max: max.trim_end_matches('.').to_owned(),
        };
    }
    DaemonError::Missing {
        why: format!("{error}{}", podman_hint()),
    }
}

/// When podman's service is there but DOCKER_HOST does not name it (testcontainers looks for Docker's sockets).
fn podman_hint() -> String {
    let docker_host = std::env::var("DOCKER_HOST").unwrap_or_default();
    if std::path::Path::new(PODMAN_SOCKET).exists() && !docker_host.contains(PODMAN_SOCKET) {
        format!(" (podman's socket {PODMAN_SOCKET} exists: set DOCKER_HOST=unix://{PODMAN_SOCKET})")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_docker_is_named_with_its_maximum_and_the_way_out() {
        let e = classify("Docker responded with status code 400: client version 1.53 is too new. Maximum supported API version is 1.41");
        assert_eq!(
            e,
            DaemonError::TooOld {
                product: "Docker Engine".into(),
                max: "1.41".into()
            }
        );
        let text = e.to_string();
        assert!(text.contains("up to 1.41"), "{text}");
        assert!(text.contains("podman system service"), "{text}");
        assert!(!text.contains('\n'), "one sentence: {text}");
    }

    #[test]
    fn anything_else_is_a_missing_daemon() {
        let e = classify("error trying to connect: No such file or directory (os error 2)");
        assert!(matches!(e, DaemonError::Missing { .. }));
        assert!(e
            .to_string()
            .starts_with("no container daemon: error trying to connect"));
    }
}
