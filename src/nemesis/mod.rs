//! The nemesis: runs a scenario's `[[faults]]` against the running topology at their times, measured from the
//! start of the stream on the run's clock, and writes every step into the history.
//!
//! Targets are roles, resolved when a fault fires, never when the file is read: "leader of T partition N" is
//! whoever leads it then (a partition without a leader is recorded as such and nothing is done), "a follower of
//! …" one in-sync follower chosen with the scenario seed (preferring one the nemesis has not already disturbed),
//! "followers of …" every in-sync follower, "the controller" the active controller. Because the leader moves
//! when it is killed, a kill that must be undone on the same broker says `duration`: the nemesis remembers the
//! broker it resolved and restarts that one after D.
//!
//! | target | actions | what they do on the embedded backend |
//! |---|---|---|
//! | a broker (by id or role) | `stop` `kill` `crash` `restart` `isolate` `heal` `pause` `resume` `latency` | the [`Cluster`](crate::broker::Cluster) fault verbs; `isolate` cuts the broker off from everyone |
//! | the connector | `stop` `kill` `restart` `pause` `resume` | [`Capture`](crate::cdc::Capture): `pause` is a clean stop at a transaction boundary, `resume` a restart from the last acknowledged position (what pausing a Connect task amounts to) |
//! | consumer N | `kill` `restart` `stall` `pause` `resume` | [`Pipeline`]: `pause`/`resume` stop the consumer and start it again from the offsets in the sink; `stall` holds its fetches for `duration`; in group mode `kill` destroys the client without leaving the group |
//!
//! A fault with `after = "consumer N commits"` (or `writes`) is armed on the pipeline when its `at` comes and fires
//! when that consumer event does: the member hands over a [`Gate`] and waits until the fault is done and the gate
//! dropped. Armed faults that never fire by the end of the stream are recorded as such by `Nemesis::restore`.
//!
//! With a real clock `Nemesis::run` sleeps until each step is due, concurrently with the stream. With a
//! virtual clock the stream loop owns time: it calls `Nemesis::advance_to` before each commit, which moves the
//! clock to each due step and applies it there. A stall on a virtual clock holds the consumer's fetches for as
//! long as the run may take and ends by restarting the consumer from its stored offsets at the virtual instant
//! the stall ends (the pipeline's own stall counts real time).
//!
//! A restart of a broker whose process died without deregistering (killed, crashed) waits for its session to
//! expire, as on real Kafka, where a new process cannot register the same id before then (ZooKeeper: it exits
//! with `NodeExists`; KRaft: `DUPLICATE_BROKER_REGISTRATION`): the step moves to the time the backend names
//! ([`BrokerFaults::registration_held_until`]) — a later step on both clocks, so the stream goes on meanwhile.
//!
//! When the schedule is done, `Nemesis::restore` undoes whatever is still undone — restarts stopped brokers,
//! heals, resumes, restarts the capture and consumers — so the pipeline can quiesce; and a capture that failed on
//! its own during the faults (a send not acknowledged, as a Connect task fails) is restarted the way an operator
//! would. Each of those is recorded too, with its own phase.
//!
//! Each backend documents what the actions do on its services ([`crate::topology::local`]'s backend, the Debezium
//! capture plug). A fault the backend cannot perform is refused by `Nemesis::new`, before anything starts.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::broker::BrokerId;
use crate::clock::Clock;
use crate::history::{FaultPhase, FaultRecord, Recorder};
use crate::pipeline::{Gate, Pipeline};
use crate::rng::SeededRng;
use crate::scenario::{Backend, Fault, FaultAction, FaultTarget, Scenario};
use resolve::Resolved;

/// How long a stall on a virtual clock holds the consumer in real time at most: it normally ends earlier, by a
/// restart at the stall's virtual end.
const VIRTUAL_STALL_BOUND: Duration = Duration::from_secs(24 * 3600);

/// Why the nemesis cannot run a scenario's faults.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NemesisError {
    #[error("faults[{index}]: the {backend} backend cannot {action} {target} yet; run the scenario on the embedded backend or remove the fault")]
    Unsupported {
        index: usize,
        backend: &'static str,
        action: &'static str,
        target: String,
    },
    #[error("clock: {0}")]
    Clock(String),
}

/// A cluster's brokers as the nemesis acts on them: roles resolved from what the cluster says now, and the
/// broker faults. Every backend implements it ([`crate::topology::Topology`] requires it). Errors are the text
/// recorded in the history.
#[allow(async_fn_in_trait)]
pub trait BrokerFaults {
    /// A partition's leader (`None` while it has none) and in-sync replicas, as the cluster says now.
    async fn partition_roles(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Option<BrokerId>, Vec<BrokerId>), String>;
    /// The active controller.
    async fn controller(&self) -> Result<BrokerId, String>;
    /// The broker coordinating consumer group `group` now (FindCoordinator).
    async fn group_coordinator(&self, group: &str) -> Result<BrokerId, String>;
    /// Applies a broker fault (`latency` is used by [`FaultAction::Latency`] only).
    async fn broker_fault(
        &self,
        action: FaultAction,
        broker: BrokerId,
        latency: Duration,
    ) -> Result<(), String>;
    /// Undoes a stop, kill or crash: starts the broker again unless it already runs.
    async fn restore_broker(&self, broker: BrokerId) -> Result<(), String>;
    /// When (clock ms) a restart of `broker` can first register: a killed broker's registration outlives its
    /// process until its session expires, and real brokers cannot start again before that. The nemesis moves a
    /// restart due earlier to then, so the schedule's other steps are not held up meanwhile. `None` (the default)
    /// when nothing holds it.
    async fn registration_held_until(&self, _broker: BrokerId) -> Option<i64> {
        None
    }
}

/// A running run the nemesis can act on: the brokers ([`BrokerFaults`]), the change capture and the pipeline's
/// consumers (the run driver's `run::Host`). Errors are the text recorded in the history.
pub(crate) trait FaultHost: BrokerFaults {
    fn clock(&self) -> &Clock;
    /// The clock's time (ms since the epoch) when the stream started.
    fn stream_start_ms(&self) -> i64;
    /// The ETL consumers (the same pipeline on every backend).
    fn pipeline(&self) -> &Mutex<Pipeline>;
    /// Applies a fault to the change capture (the embedded capture, or Debezium in its Connect worker).
    async fn connector_fault(&self, action: FaultAction) -> Result<(), String>;
    /// Why the capture stopped on its own, if it did (a send not acknowledged fails a Connect task).
    async fn capture_failure(&self) -> Option<String>;
}

/// A fault asked for while a run is live (the fault verbs of [`crate::live::LiveRun`]): it fires when it
/// arrives, and from then on is one of the schedule's — recorded (phase `live`, its index after the file's
/// faults), undone after its `duration`, and by `restore` if still in place. The reply names what the target
/// resolved to, or why nothing was done.
pub(crate) struct LiveFault {
    pub(crate) fault: Fault,
    pub(crate) reply: oneshot::Sender<Result<Vec<String>, String>>,
}

/// Something a fault left in place, and how to undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    RestartBroker(BrokerId),
    Heal(BrokerId),
    ResumeBroker(BrokerId),
    ClearLatency(BrokerId),
    RestartCapture,
    RestartConsumer(u32),
    EndStall(u32),
}

impl Undo {
    fn action(self) -> FaultAction {
        match self {
            Undo::RestartBroker(_) | Undo::RestartCapture | Undo::RestartConsumer(_) => {
                FaultAction::Restart
            }
            Undo::Heal(_) => FaultAction::Heal,
            Undo::ResumeBroker(_) | Undo::EndStall(_) => FaultAction::Resume,
            Undo::ClearLatency(_) => FaultAction::Latency,
        }
    }

    fn what(self) -> String {
        match self {
            Undo::RestartBroker(b)
            | Undo::Heal(b)
            | Undo::ResumeBroker(b)
            | Undo::ClearLatency(b) => format!("broker {}", b.0),
            Undo::RestartCapture => "the connector".into(),
            Undo::RestartConsumer(n) | Undo::EndStall(n) => format!("consumer {n}"),
        }
    }

    /// Whether `self` and `other` are undone by the same act (an explicit resume also ends a stall).
    fn same_target_kind(self, other: Undo) -> bool {
        self == other
            || matches!(
                (self, other),
                (Undo::RestartConsumer(a), Undo::EndStall(b)) | (Undo::EndStall(a), Undo::RestartConsumer(b)) if a == b
            )
    }
}

#[derive(Debug, Clone, Copy)]
enum StepKind {
    /// `[[faults]]` entry `i`.
    Fire(usize),
    /// The end of entry `fault`'s duration.
    Undo { fault: usize, undo: Undo },
}

#[derive(Debug, Clone, Copy)]
struct Step {
    due_ms: u64,
    /// When the schedule put it, what the history records as its due time: a restart moved to when the broker
    /// can register keeps it (that move depends on heartbeat timing, the schedule does not).
    scheduled_ms: u64,
    seq: u64,
    kind: StepKind,
}

/// Runs one scenario's fault schedule. See the module docs.
pub(crate) struct Nemesis {
    faults: Vec<Fault>,
    /// Pending steps, kept sorted by (due, seq).
    steps: Vec<Step>,
    next_seq: u64,
    /// Disturbances still in place: what undoes them and the fault that caused them.
    outstanding: Vec<(Undo, usize)>,
    rng: SeededRng,
    recorder: Recorder,
    virtual_clock: bool,
    /// While a step moved to when its broker could register is applied: the time it ran at (ms from the start
    /// of the stream), noted in what the history records it resolved to.
    late: Option<u64>,
    /// Faults asked for while the run is live; the schedule is not done until the sender is gone.
    live: Option<mpsc::UnboundedReceiver<LiveFault>>,
    /// Event faults (`after = "consumer N commits"`) armed on the pipeline, by index, not fired yet.
    armed: Vec<usize>,
    /// Where members hand over the events armed faults wait for.
    events_tx: mpsc::UnboundedSender<(usize, Gate)>,
    events: Option<mpsc::UnboundedReceiver<(usize, Gate)>>,
    /// While an event fault fires: the event, noted in what the history records it resolved to.
    event_note: Option<String>,
}

impl Nemesis {
    /// Whether `scenario`'s backend can perform every fault of its schedule (`Nemesis::new` checks it too).
    pub(crate) fn check(scenario: &Scenario, can: fn(&Fault) -> bool) -> Result<(), NemesisError> {
        supported(scenario.topology.backend, can, &scenario.faults)
    }

    /// The schedule of `scenario`, checked against what its backend can do.
    pub(crate) fn new(
        scenario: &Scenario,
        can: fn(&Fault) -> bool,
        recorder: Recorder,
    ) -> Result<Nemesis, NemesisError> {
        supported(scenario.topology.backend, can, &scenario.faults)?;
        let steps = scenario
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| Step {
                due_ms: f.at.0,
                scheduled_ms: f.at.0,
                seq: i as u64,
                kind: StepKind::Fire(i),
            })
            .collect();
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut nemesis = Nemesis {
            faults: scenario.faults.clone(),
            steps,
            next_seq: scenario.faults.len() as u64,
            outstanding: Vec::new(),
            rng: SeededRng::new(scenario.seed, "nemesis"),
            recorder,
            virtual_clock: scenario.topology.clock == crate::scenario::ClockMode::Virtual,
            late: None,
            live: None,
            armed: Vec::new(),
            events_tx,
            events: Some(events),
            event_note: None,
        };
        nemesis.sort();
        Ok(nemesis)
    }

    fn sort(&mut self) {
        self.steps.sort_by_key(|s| (s.due_ms, s.seq));
    }

    /// When the next step is due, ms from the start of the stream.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.steps.first().map(|s| s.due_ms)
    }

    /// Takes faults asked for while the run is live from `faults` too (real clock only), until its sender is
    /// dropped.
    pub(crate) fn take_live(&mut self, faults: mpsc::UnboundedReceiver<LiveFault>) {
        self.live = Some(faults);
    }

    /// A live fault, now (the asker checked it against the scenario and the backend): fired, recorded and
    /// tracked as a scheduled one.
    async fn fire_live(
        &mut self,
        mut fault: Fault,
        t: &impl FaultHost,
    ) -> Result<Vec<String>, String> {
        let due_ms = u64::try_from(t.clock().now_ms() - t.stream_start_ms()).unwrap_or(0);
        fault.at = crate::scenario::Millis(due_ms);
        self.faults.push(fault);
        let index = self.faults.len() - 1;
        self.fire(index, due_ms, FaultPhase::Live, t).await
    }

    /// Virtual clock: applies every step due at or before `until_ms` (from the stream's start), moving the clock
    /// to each step's time first. `None` applies every step left.
    pub(crate) async fn advance_to(
        &mut self,
        until_ms: Option<u64>,
        t: &impl FaultHost,
    ) -> Result<(), NemesisError> {
        while let Some(due) = self.next_due() {
            if until_ms.is_some_and(|u| due > u) {
                break;
            }
            let at = t.stream_start_ms().saturating_add(due as i64);
            let now = t.clock().now_ms();
            if at > now {
                t.clock()
                    .advance(Duration::from_millis((at - now) as u64))
                    .map_err(|e| NemesisError::Clock(e.to_string()))?;
            }
            self.apply_next(t).await;
        }
        Ok(())
    }

    async fn apply_next(&mut self, t: &impl FaultHost) {
        if self.steps.is_empty() {
            return;
        }
        let step = self.steps.remove(0);
        if let Some(at_ms) = self.held_restart(&step, t).await {
            // Move the step to when the broker can register; it keeps its place among steps due then.
            let due_ms = u64::try_from(at_ms.saturating_sub(t.stream_start_ms())).unwrap_or(0);
            self.steps.push(Step {
                due_ms: due_ms.max(step.due_ms),
                ..step
            });
            self.sort();
            return;
        }
        self.late = (step.due_ms != step.scheduled_ms).then_some(step.due_ms);
        match step.kind {
            StepKind::Fire(i) if self.faults[i].after.is_some() => {
                self.arm(i, step.scheduled_ms, t).await;
            }
            StepKind::Fire(i) => {
                // Recorded either way; a scheduled fault has no one to answer.
                let _ = self
                    .fire(i, step.scheduled_ms, FaultPhase::Scheduled, t)
                    .await;
            }
            StepKind::Undo { fault, undo } => {
                // An explicit restart/heal/resume may have undone it already.
                if let Some(pos) = self.outstanding.iter().position(|(u, _)| *u == undo) {
                    self.outstanding.remove(pos);
                    self.undo(undo, Some(fault), step.scheduled_ms, FaultPhase::Undone, t)
                        .await;
                }
            }
        }
        self.late = None;
    }

    /// `resolved`, with when a late step really ran.
    fn noted(&self, resolved: String) -> String {
        if let Some(event) = &self.event_note {
            return format!("{resolved} ({event})");
        }
        match self.late {
            Some(ms) => format!(
                "{resolved} (at +{}.{:03}s, once its old registration had expired)",
                ms / 1000,
                ms % 1000
            ),
            None => resolved,
        }
    }

    /// For a step that restarts a broker whose registration a dead process still holds: when it can register.
    async fn held_restart(&self, step: &Step, t: &impl FaultHost) -> Option<i64> {
        let broker = match step.kind {
            StepKind::Undo {
                undo: Undo::RestartBroker(b),
                ..
            } => b,
            StepKind::Fire(i) => match (&self.faults[i].action, &self.faults[i].target) {
                (FaultAction::Restart, FaultTarget::Broker(id)) => BrokerId(*id as i32),
                _ => return None,
            },
            StepKind::Undo { .. } => return None,
        };
        t.registration_held_until(broker).await
    }

    /// Fires fault `index`: resolves its target, performs the action on each broker it resolved to, records
    /// each step. Returns what the target resolved to, or the first reason something was not done.
    async fn fire(
        &mut self,
        index: usize,
        due_ms: u64,
        phase: FaultPhase,
        t: &impl FaultHost,
    ) -> Result<Vec<String>, String> {
        let fault = self.faults[index].clone();
        let resolved_all = match self.resolve(&fault.target, t).await {
            Ok(all) => all,
            Err(why) => {
                let error = "the target resolved to nothing, so nothing was done";
                self.record(FaultRecord {
                    at_ms: t.clock().now_ms(),
                    action: fault.action.name().to_string(),
                    target: fault.target.to_string(),
                    resolved: why.clone(),
                    due_ms,
                    fault: Some(index),
                    phase,
                    error: Some(error.into()),
                });
                return Err(format!("{why}: {error}"));
            }
        };
        let mut outcome = Ok(Vec::new());
        for target in resolved_all {
            let result = self.perform(fault.action, target, &fault, t).await;
            let resolved = match (fault.action, fault.latency) {
                (FaultAction::Latency, Some(l)) => format!("{} (+{l} per answer)", target.name()),
                _ => self.noted(target.name()),
            };
            let ok = result.is_ok();
            match (&mut outcome, &result) {
                (Ok(names), Ok(())) => names.push(resolved.clone()),
                (Ok(_), Err(e)) => outcome = Err(format!("{resolved}: {e}")),
                (Err(_), _) => {}
            }
            self.record(FaultRecord {
                at_ms: t.clock().now_ms(),
                action: fault.action.name().to_string(),
                target: fault.target.to_string(),
                resolved,
                due_ms,
                fault: Some(index),
                phase,
                error: result.err(),
            });
            if ok {
                self.track(
                    fault.action,
                    target,
                    index,
                    fault.duration.map(|d| due_ms + d.0),
                );
            }
        }
        outcome
    }

    /// Notes what `a` on `target` left in place (and schedules its undo when the fault has a duration), or
    /// what earlier disturbance it undid.
    fn track(&mut self, a: FaultAction, target: Resolved, index: usize, undo_at: Option<u64>) {
        let left = match target {
            Resolved::Broker(b) => match a {
                FaultAction::Stop | FaultAction::Kill | FaultAction::Crash => {
                    Some(Undo::RestartBroker(b))
                }
                FaultAction::Isolate => Some(Undo::Heal(b)),
                FaultAction::Pause => Some(Undo::ResumeBroker(b)),
                FaultAction::Latency => Some(Undo::ClearLatency(b)),
                FaultAction::Restart => return self.settle(Undo::RestartBroker(b)),
                FaultAction::Heal => return self.settle(Undo::Heal(b)),
                FaultAction::Resume => return self.settle(Undo::ResumeBroker(b)),
                FaultAction::Stall => None,
            },
            Resolved::Connector => match a {
                FaultAction::Stop | FaultAction::Kill | FaultAction::Pause => {
                    Some(Undo::RestartCapture)
                }
                FaultAction::Restart | FaultAction::Resume => {
                    return self.settle(Undo::RestartCapture)
                }
                _ => None,
            },
            Resolved::Consumer(n) => match a {
                FaultAction::Kill | FaultAction::Pause => Some(Undo::RestartConsumer(n)),
                FaultAction::Stall => Some(Undo::EndStall(n)),
                FaultAction::Restart | FaultAction::Resume => {
                    return self.settle(Undo::RestartConsumer(n))
                }
                _ => None,
            },
        };
        let Some(undo) = left else { return };
        if !self.outstanding.iter().any(|(u, _)| *u == undo) {
            self.outstanding.push((undo, index));
        }
        if let Some(at) = undo_at {
            self.steps.push(Step {
                due_ms: at,
                scheduled_ms: at,
                seq: self.next_seq,
                kind: StepKind::Undo { fault: index, undo },
            });
            self.next_seq += 1;
            self.sort();
        }
    }

    /// An explicit restart/heal/resume undid what earlier faults left.
    fn settle(&mut self, undone: Undo) {
        self.outstanding
            .retain(|(u, _)| !u.same_target_kind(undone));
    }

    /// After the schedule: undoes what is still in place, then restarts a capture that failed on its own.
    pub(crate) async fn restore(&mut self, t: &impl FaultHost) {
        let due_ms = u64::try_from(t.clock().now_ms() - t.stream_start_ms()).unwrap_or(0);
        self.disarm(due_ms, t).await;
        for (undo, fault) in std::mem::take(&mut self.outstanding) {
            if let Undo::RestartBroker(b) = undo {
                wait_for_registration(b, t).await;
            }
            self.undo(undo, Some(fault), due_ms, FaultPhase::AfterStream, t)
                .await;
        }
        if let Some(why) = t.capture_failure().await {
            let result = t.connector_fault(FaultAction::Restart).await;
            self.record(FaultRecord {
                at_ms: t.clock().now_ms(),
                action: FaultAction::Restart.name().to_string(),
                target: "the connector".into(),
                resolved: format!("the connector (it had failed: {why})"),
                due_ms,
                fault: None,
                phase: FaultPhase::Recovery,
                error: result.err(),
            });
        }
    }

    async fn undo(
        &mut self,
        undo: Undo,
        fault: Option<usize>,
        due_ms: u64,
        phase: FaultPhase,
        t: &impl FaultHost,
    ) {
        let consumer = |n: u32| async move {
            t.pipeline()
                .lock()
                .await
                .restart_consumer(n)
                .await
                .map_err(|e| e.to_string())
        };
        let result = match undo {
            Undo::RestartBroker(b) => t.restore_broker(b).await,
            Undo::Heal(b) => t.broker_fault(FaultAction::Heal, b, Duration::ZERO).await,
            Undo::ResumeBroker(b) => t.broker_fault(FaultAction::Resume, b, Duration::ZERO).await,
            Undo::ClearLatency(b) => {
                t.broker_fault(FaultAction::Latency, b, Duration::ZERO)
                    .await
            }
            Undo::RestartCapture => t.connector_fault(FaultAction::Restart).await,
            Undo::RestartConsumer(n) => consumer(n).await,
            // A real-clock stall ends by itself; a virtual-clock one by a restart from the stored offsets.
            Undo::EndStall(n) if self.virtual_clock => consumer(n).await,
            Undo::EndStall(_) => Ok(()),
        };
        let target = match fault {
            Some(i) => self.faults[i].target.to_string(),
            None => undo.what(),
        };
        let action = undo.action();
        let resolved = match undo {
            Undo::ClearLatency(_) => format!("{} (latency removed)", undo.what()),
            Undo::EndStall(_) => format!("{} (stall over)", undo.what()),
            _ => self.noted(undo.what()),
        };
        self.record(FaultRecord {
            at_ms: t.clock().now_ms(),
            action: action.name().to_string(),
            target,
            resolved,
            due_ms,
            fault,
            phase,
            error: result.err(),
        });
    }

    async fn perform(
        &mut self,
        action: FaultAction,
        target: Resolved,
        fault: &Fault,
        t: &impl FaultHost,
    ) -> Result<(), String> {
        let text = |e: &dyn std::fmt::Display| e.to_string();
        match target {
            Resolved::Broker(b) => {
                let latency = Duration::from_millis(fault.latency.map_or(0, |l| l.0));
                t.broker_fault(action, b, latency).await
            }
            Resolved::Connector => t.connector_fault(action).await,
            Resolved::Consumer(n) => {
                let mut pipeline = t.pipeline().lock().await;
                match action {
                    FaultAction::Kill => pipeline.kill_consumer(n).await.map_err(|e| text(&e)),
                    FaultAction::Stop => pipeline.stop_consumer(n).await.map_err(|e| text(&e)),
                    FaultAction::Pause => pipeline.pause_consumer(n).await.map_err(|e| text(&e)),
                    FaultAction::Restart => {
                        pipeline.restart_consumer(n).await.map_err(|e| text(&e))
                    }
                    FaultAction::Resume => pipeline.resume_consumer(n).await.map_err(|e| text(&e)),
                    FaultAction::Stall => {
                        let d = if self.virtual_clock {
                            VIRTUAL_STALL_BOUND
                        } else {
                            Duration::from_millis(fault.duration.map_or(0, |d| d.0))
                        };
                        pipeline.stall_consumer(n, d).map_err(|e| text(&e))
                    }
                    other => Err(unsupported(other, "a consumer")),
                }
            }
        }
    }

    fn record(&self, r: FaultRecord) {
        match &r.error {
            Some(e) => {
                tracing::warn!(phase = r.phase.name(), action = %r.action, target = %r.target, resolved = %r.resolved, error = %e, "fault not applied")
            }
            None => {
                tracing::info!(phase = r.phase.name(), action = %r.action, target = %r.target, resolved = %r.resolved, "fault")
            }
        }
        self.recorder.fault(r);
    }
}

/// Scenario validation already refuses these; reaching one is a harness bug, reported rather than ignored.
/// After the stream: waits on the run's clock (advancing a virtual one) until a dead broker's registration is
/// gone, so its restart can register.
async fn wait_for_registration(b: BrokerId, t: &impl FaultHost) {
    while let Some(at_ms) = t.registration_held_until(b).await {
        let now = t.clock().now_ms();
        let wait =
            Duration::from_millis(u64::try_from(at_ms.saturating_sub(now)).unwrap_or(0).max(1));
        if t.clock().is_virtual() {
            if t.clock().advance(wait).is_err() {
                return;
            }
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}

pub(crate) fn unsupported(action: FaultAction, what: &str) -> String {
    format!("{} cannot be applied to {what}", action.name())
}

/// Which faults each backend can perform. The embedded backend does all of them; the local backend acts on its
/// processes and their loopback proxies (see [`local`]) but has no machine crash (the scenario language already
/// refuses it there); the containers and external backends run no scenario. A fault a backend cannot perform is
/// refused before anything starts rather than silently skipped.
/// Whether every fault of `faults` is one `backend` can perform (`can`, from the backend).
fn supported(
    backend: Backend,
    can: fn(&Fault) -> bool,
    faults: &[Fault],
) -> Result<(), NemesisError> {
    match faults.iter().enumerate().find(|(_, f)| !can(f)) {
        Some((index, f)) => Err(NemesisError::Unsupported {
            index,
            backend: backend.name(),
            action: f.action.name(),
            target: f.target.to_string(),
        }),
        None => Ok(()),
    }
}

mod realtime;
mod resolve;
#[cfg(test)]
mod tests;
