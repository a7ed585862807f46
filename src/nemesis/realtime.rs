//! The real-clock loop of the nemesis (`Nemesis::run`) and the faults that wait for a consumer event
//! (`after = "consumer N commits"`): armed on the pipeline when their `at` comes, fired when a member hands over
//! its event, recorded as never fired when the stream ends first.

use std::time::Duration;

use tokio::sync::watch;

use super::{FaultHost, LiveFault, Nemesis};
use crate::history::{FaultPhase, FaultRecord};
use crate::pipeline::Gate;

impl Nemesis {
    /// Real clock: applies every step at its time from `start` (the stream's start), each live fault when it is
    /// asked for, and each event fault when its consumer event comes, until no step is left, no live fault can
    /// come, and no armed event fault can fire any more (`stream_done` turned true: the stream is over).
    pub(crate) async fn run(
        &mut self,
        start: tokio::time::Instant,
        t: &impl FaultHost,
        mut stream_done: watch::Receiver<bool>,
    ) {
        enum Next {
            Step,
            Live(Option<LiveFault>),
            Event(Option<(usize, Gate)>),
            StreamDone,
        }
        let mut stream_over = false;
        loop {
            let due = self.next_due();
            stream_over = stream_over || *stream_done.borrow();
            let waiting = !self.armed.is_empty() && !stream_over;
            if due.is_none() && self.live.is_none() && !waiting {
                return;
            }
            let mut live = self.live.take();
            let mut events = self.events.take();
            let next = tokio::select! {
                () = async {
                    match due {
                        Some(due) => tokio::time::sleep_until(start + Duration::from_millis(due)).await,
                        None => std::future::pending().await,
                    }
                } => Next::Step,
                asked = async {
                    match live.as_mut() {
                        Some(l) => l.recv().await,
                        None => std::future::pending().await,
                    }
                } => Next::Live(asked),
                event = async {
                    match events.as_mut() {
                        Some(e) if waiting => e.recv().await,
                        _ => std::future::pending().await,
                    }
                } => Next::Event(event),
                changed = stream_done.changed(), if waiting => {
                    if changed.is_err() {
                        stream_over = true;
                    }
                    Next::StreamDone
                }
            };
            self.events = events;
            match next {
                Next::Step => {
                    self.live = live;
                    self.apply_next(t).await;
                }
                Next::Live(Some(asked)) => {
                    self.live = live;
                    let result = self.fire_live(asked.fault, t).await;
                    // The asker may have stopped waiting: the fault is recorded either way.
                    let _ = asked.reply.send(result);
                }
                // The asker is gone: no more live faults.
                Next::Live(None) => {}
                Next::Event(event) => {
                    self.live = live;
                    if let Some((index, gate)) = event {
                        self.fire_on_event(index, gate, t).await;
                    }
                }
                Next::StreamDone => self.live = live,
            }
        }
    }

    /// Arms fault `index` on the pipeline: it fires at its consumer event.
    pub(super) async fn arm(&mut self, index: usize, due_ms: u64, t: &impl FaultHost) {
        let Some(event) = self.faults[index].after else {
            return;
        };
        let armed = t
            .pipeline()
            .lock()
            .await
            .arm(event, index, self.events_tx.clone());
        match armed {
            Ok(()) => {
                tracing::info!(fault = index, %event, "fault armed");
                self.armed.push(index);
            }
            Err(e) => self.not_fired(index, due_ms, FaultPhase::Scheduled, e.to_string(), t),
        }
    }

    /// An armed fault's consumer event came: fires it while the member waits at `gate`.
    async fn fire_on_event(&mut self, index: usize, gate: Gate, t: &impl FaultHost) {
        self.armed.retain(|i| *i != index);
        let due_ms = u64::try_from(t.clock().now_ms() - t.stream_start_ms()).unwrap_or(0);
        self.event_note = self.faults[index].after.map(|e| format!("after {e}"));
        // Recorded either way; a scheduled fault has no one to answer.
        let _ = self.fire(index, due_ms, FaultPhase::Event, t).await;
        self.event_note = None;
        drop(gate);
    }

    /// The stream is over: event faults still armed never fire (recorded as such), and a member that reached
    /// an event meanwhile is let go.
    pub(super) async fn disarm(&mut self, due_ms: u64, t: &impl FaultHost) {
        t.pipeline().lock().await.disarm_all();
        if let Some(events) = self.events.as_mut() {
            while let Ok((_, gate)) = events.try_recv() {
                drop(gate);
            }
        }
        for index in std::mem::take(&mut self.armed) {
            let fault = &self.faults[index];
            let event = fault.after.map(|e| e.to_string()).unwrap_or_default();
            let why = format!(
                "{event} never happened between +{} and the end of the stream, so the fault never fired",
                fault.at
            );
            self.not_fired(index, due_ms, FaultPhase::AfterStream, why, t);
        }
    }

    /// Records that event fault `index` was not fired, and why.
    fn not_fired(
        &self,
        index: usize,
        due_ms: u64,
        phase: FaultPhase,
        why: String,
        t: &impl FaultHost,
    ) {
        let fault = &self.faults[index];
        let event = fault.after.map(|e| e.to_string()).unwrap_or_default();
        self.record(FaultRecord {
            at_ms: t.clock().now_ms(),
            action: fault.action.name().to_string(),
            target: fault.target.to_string(),
            resolved: format!("after {event}"),
            due_ms,
            fault: Some(index),
            phase,
            error: Some(why),
        });
    }
}
