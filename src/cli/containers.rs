//! `etl-harness images` and `etl-harness down`: the container images the containers backend runs, built on this
//! machine, and the sweep of containers a killed harness left.

use std::future::Future;

use crate::topology::containers::daemon::{self, Daemon};
use crate::topology::containers::{images, labels};
use crate::topology::local::{default_jvm_components, JvmComponents};

/// Runs `command` with the daemon testcontainers finds, on a runtime of its own.
fn with_daemon<F: Future<Output = Result<(), String>>>(
    command: impl FnOnce(Daemon) -> F,
) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let daemon = daemon::connect().await.map_err(|e| e.to_string())?;
        command(daemon).await
    })
}

async fn jvm() -> Result<JvmComponents, String> {
    default_jvm_components()
        .await
        .map_err(|e| format!("resolving the JVM jars: {e}"))
}

/// `etl-harness images build`: builds the images whose inputs changed (resolving the JVM jars first, as the local
/// backend does), one line per image.
pub fn build_images() -> Result<(), String> {
    with_daemon(|daemon| async move {
        println!("daemon: {}", daemon.product);
        let jvm = jvm().await?;
        let built = images::ensure(&daemon, &jvm, &mut |line| println!("{line}")).await;
        built.map(drop).map_err(|e| e.to_string())
    })
}

/// `etl-harness images plugins`: the pinned Debezium plugin's directory (its parent is Connect's `plugin.path`).
pub fn plugin_dir() -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let jvm = runtime.block_on(jvm())?;
    println!("{}", jvm.plugin_path().display());
    Ok(())
}

/// `etl-harness images list`: the images this machine's inputs name, and whether each is built.
pub fn list_images() -> Result<(), String> {
    with_daemon(|daemon| async move {
        let jvm = jvm().await?;
        let (base, planned) = images::planned(&jvm).map_err(|e| e.to_string())?;
        for image in [&base, &planned.mariadb, &planned.jvm] {
            let state = if daemon.has_image(image).await {
                "built"
            } else {
                "not built (etl-harness images build)"
            };
            println!("{image}  {state}");
        }
        Ok(())
    })
}

/// `etl-harness down`: removes the containers whose harness is gone, and names those a running one still owns.
pub fn down() -> Result<(), String> {
    with_daemon(|daemon| async move {
        let swept = labels::sweep(&daemon).await?;
        for name in &swept.removed {
            println!("removed {}", name.trim_start_matches('/'));
        }
        for (name, owner) in &swept.kept {
            let pid = owner.split(':').next().unwrap_or(owner);
            println!(
                "kept {}: harness process {pid} still runs",
                name.trim_start_matches('/')
            );
        }
        if swept.removed.is_empty() && swept.kept.is_empty() {
            println!("no containers of the harness");
        }
        Ok(())
    })
}
