//! The change capture as a plug: what reads the source's commits and writes Debezium's records to Kafka, with
//! the source it reads. A backend picks the plug its services can run; the driver sees only [`Capture`].
//!
//! | plug | source | capture | acknowledgements |
//! |---|---|---|---|
//! | [`embedded::EmbeddedCapture`] | the in-memory OpenMRS database | the harness's Debezium-compatible capture ([`crate::cdc`]) | recorded by its producer |
//! | [`debezium::DebeziumCapture`] | MariaDB | Debezium's MariaDB connector in a Kafka Connect worker | decoded by the local backend's broker proxies from Debezium's Produce requests and the answers |

pub mod debezium;
pub mod embedded;

use std::time::Duration;

use crate::history::{Produced, Recorder};
use crate::model::flat::RowImages;
use crate::run::RunError;
use crate::scenario::{FaultAction, Scenario};
use crate::source::{Source, SourceError};
use crate::workload::Operation;

/// How far the capture must have got with a transaction before a pacing wait ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMark {
    /// Handed to the producer.
    Shipped,
    /// Every record of it has its final outcome (acknowledged or failed).
    Acknowledged,
}

/// The quiesce probe's capture position: whether everything committed is delivered.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Every commit is in Kafka (or the capture failed and stopped): the end offsets now cover the last commit.
    pub in_kafka: bool,
    /// Whatever else the capture needs before the run is quiet (e.g. a change of the last commit read).
    pub complete: bool,
    /// Why the capture failed and stopped, if it did.
    pub failed: Option<String>,
    /// What is still pending, one line each, for a liveness failure's report.
    pub pending: Vec<String>,
}

/// A change capture and its source, for one run.
#[allow(async_fn_in_trait)]
pub trait Capture: Sync {
    /// The source the capture reads, where the stream is committed.
    type Source: Source;

    /// Where operations are committed.
    fn source(&self) -> &Self::Source;

    /// Loads a baseline operation: the population that exists before capture starts.
    async fn load(&self, op: &Operation) -> Result<(), SourceError>;

    /// Starts capturing (the initial snapshot, then the stream of commits) once the baseline is loaded.
    async fn start(&mut self, scenario: &Scenario, recorder: &Recorder) -> Result<(), RunError>;

    /// Waits until the stream may begin (the consumers pipeline runs by then): on Debezium, the snapshot read by
    /// the consumers and Connect's offsets past it.
    async fn ready(&mut self, scenario: &Scenario, recorder: &Recorder) -> Result<(), RunError>;

    /// Pacing probe: whether the capture reached `mark` for `txn` and every transaction before it, or is not
    /// running, or failed. A capture whose progress is not visible answers `true` (pacing never waits on it).
    async fn reached(&self, txn: u64, mark: CaptureMark) -> bool;

    /// Pacing probe: a value that changes whenever the capture makes progress (for stall detection).
    async fn progress_fingerprint(&self) -> (u64, u64);

    /// Quiesce probe: whether everything committed is delivered; `recorder` holds what the consumers read.
    async fn delivery(&self, recorder: &Recorder) -> Delivery;

    /// How often quiesce asks [`Capture::delivery`] (a probe over a REST API is asked less often).
    fn poll_interval(&self) -> Duration;

    /// Applies a connector fault; errors are the text the history records.
    async fn fault(&self, action: FaultAction) -> Result<(), String>;

    /// Why the capture stopped on its own, if it did (a send not acknowledged fails a Connect task).
    async fn failure(&self) -> Option<String>;

    /// The source's final state, for the oracle.
    async fn final_images(&self) -> Result<RowImages, RunError>;

    /// Stops capturing. Returns the produce acknowledgements when the capture could not record them itself (a
    /// stand-in read up to `ends`, the end offsets quiesce saw), to replace the history's.
    async fn finish(
        self,
        ends: &[(String, i32, i64)],
        recorder: &Recorder,
    ) -> Option<Vec<Produced>>;
}
