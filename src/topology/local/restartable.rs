//! A service that faults stop and start again, and how long a SIGTERM is given before SIGKILL.

use std::time::{Duration, Instant};

use super::process::ServiceCommand;
use super::{LocalError, ServiceProcess};

/// A service that faults can stop and start again: the command (same config, port and data) is kept.
#[derive(Debug)]
pub(super) struct RestartableService {
    pub(super) process: ServiceProcess,
    pub(super) command: ServiceCommand,
    pub(super) port: u16,
}

impl RestartableService {
    /// SIGTERM (and SIGCONT, so a paused process can act on it), SIGKILL if it is still alive after `grace`.
    pub(super) async fn stop(&mut self, grace: Duration) {
        if self.process.has_exited() {
            return;
        }
        self.process.signal(libc::SIGTERM);
        self.process.signal(libc::SIGCONT);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.process.has_exited() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.process.kill();
    }

    /// Stops the process if it still runs, then starts the same command again.
    pub(super) async fn respawn(&mut self, grace: Duration) -> Result<(), LocalError> {
        self.stop(grace).await;
        self.process = ServiceProcess::spawn(&self.command)?;
        Ok(())
    }
}

/// Grace periods of a SIGTERM before SIGKILL.
pub(super) const BROKER_STOP_GRACE: Duration = Duration::from_secs(20);
pub(super) const CONNECT_STOP_GRACE: Duration = Duration::from_secs(10);
