//! The embedded capture plug: the harness's Debezium-compatible capture ([`crate::cdc`]) over the in-memory
//! OpenMRS database ([`MemorySource`]). Its producer records every acknowledgement, so its progress (shipped and
//! acknowledged transactions) paces a virtual clock and decides quiesce.
//!
//! Connector faults, as Kafka Connect does them: `pause` stops handing new records to the producer (what it was
//! sending is still sent; nothing is replayed) and `resume` goes on from there; `stop` is a clean stop at a
//! transaction boundary, abandoned like `kill` after Connect's 5 s graceful shutdown timeout; `kill` an abort
//! (queued records are not sent); `restart` (and `resume` of a task that is not running) a start from the last
//! acknowledged position.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::{Capture, CaptureMark, Delivery};
use crate::cdc;
use crate::clock::Clock;
use crate::history::{Produced, Recorder};
use crate::model::flat::RowImages;
use crate::run::{configure, RunError};
use crate::scenario::{FaultAction, Scenario};
use crate::source::{MemorySource, SourceError};
use crate::workload::Operation;

/// How often quiesce looks at the capture's progress.
const QUIESCE_POLL: Duration = Duration::from_millis(20);

/// The embedded capture and its in-memory source.
pub struct EmbeddedCapture {
    source: Arc<MemorySource>,
    clock: Clock,
    bootstrap: String,
    /// Started by [`Capture::start`]; the nemesis and the driver share it (each locks only while acting).
    capture: Mutex<Option<cdc::Capture>>,
}

impl EmbeddedCapture {
    /// A capture (not started) of a new in-memory source, producing to `bootstrap`.
    pub fn new(scenario: &Scenario, recorder: &Recorder, clock: &Clock, bootstrap: String) -> Self {
        EmbeddedCapture {
            source: Arc::new(MemorySource::new(
                scenario.capture.connector,
                recorder.clone(),
                clock.clone(),
            )),
            clock: clock.clone(),
            bootstrap,
            capture: Mutex::new(None),
        }
    }
}

impl Capture for EmbeddedCapture {
    type Source = MemorySource;

    fn source(&self) -> &MemorySource {
        &self.source
    }

    async fn load(&self, op: &Operation) -> Result<(), SourceError> {
        self.source.load(op)
    }

    async fn start(&mut self, scenario: &Scenario, recorder: &Recorder) -> Result<(), RunError> {
        let config = configure::capture(scenario, self.bootstrap.clone());
        let capture = cdc::Capture::start(
            self.source.clone(),
            config,
            recorder.clone(),
            self.clock.clone(),
        )
        .await?;
        *self.capture.get_mut() = Some(capture);
        Ok(())
    }

    async fn ready(&mut self, _scenario: &Scenario, _recorder: &Recorder) -> Result<(), RunError> {
        Ok(())
    }

    async fn reached(&self, txn: u64, mark: CaptureMark) -> bool {
        let capture = self.capture.lock().await;
        let Some(capture) = capture.as_ref() else {
            return true;
        };
        let p = capture.progress();
        let reached = match mark {
            CaptureMark::Shipped => p.shipped_txn,
            CaptureMark::Acknowledged => p.acked_txn,
        };
        reached >= txn || p.failed.is_some() || !capture.is_running() || capture.is_paused()
    }

    async fn progress_fingerprint(&self) -> (u64, u64) {
        match self.capture.lock().await.as_ref() {
            Some(c) => {
                let p = c.progress();
                (p.shipped_txn, p.acked_txn)
            }
            None => (0, 0),
        }
    }

    async fn delivery(&self, _recorder: &Recorder) -> Delivery {
        let head = self.source.head_txn();
        let Some(progress) = self.capture.lock().await.as_ref().map(|c| c.progress()) else {
            return Delivery::default();
        };
        let in_kafka =
            progress.failed.is_some() || (progress.snapshot_done && progress.acked_txn >= head);
        let mut pending = Vec::new();
        if !progress.snapshot_done {
            pending.push("capture: the initial snapshot has not finished".to_string());
        } else if progress.acked_txn < head {
            pending.push(format!(
                "capture: acknowledged up to transaction {} of {head} (shipped {})",
                progress.acked_txn, progress.shipped_txn
            ));
        }
        if let Some(why) = &progress.failed {
            pending.push(format!("capture failed and stopped: {why}"));
        }
        Delivery {
            in_kafka,
            complete: in_kafka,
            failed: progress.failed,
            pending,
        }
    }

    fn poll_interval(&self) -> Duration {
        QUIESCE_POLL
    }

    async fn fault(&self, action: FaultAction) -> Result<(), String> {
        let mut capture = self.capture.lock().await;
        let Some(capture) = capture.as_mut() else {
            return Err("the capture has not started".into());
        };
        match action {
            FaultAction::Stop => {
                capture.stop().await;
                Ok(())
            }
            FaultAction::Pause => {
                capture.pause();
                Ok(())
            }
            FaultAction::Kill => {
                capture.kill();
                Ok(())
            }
            FaultAction::Restart => capture.restart().await.map_err(|e| e.to_string()),
            FaultAction::Resume => capture.resume().await.map_err(|e| e.to_string()),
            other => Err(crate::nemesis::unsupported(other, "the connector")),
        }
    }

    async fn failure(&self) -> Option<String> {
        self.capture.lock().await.as_ref()?.progress().failed
    }

    async fn final_images(&self) -> Result<RowImages, RunError> {
        Ok(self.source.final_images())
    }

    async fn finish(
        self,
        _ends: &[(String, i32, i64)],
        _recorder: &Recorder,
    ) -> Option<Vec<Produced>> {
        if let Some(capture) = self.capture.into_inner() {
            capture.shutdown().await;
        }
        None
    }
}
