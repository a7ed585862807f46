//! The harness's one notion of time, shared by the embedded brokers, the workload generator and CDC.
//!
//! A [`Clock`] is either real (milliseconds since the Unix epoch, timers on tokio) or virtual: time stands still
//! until the owner calls [`Clock::advance`], which moves it forward in bounded steps, one due timer at a time, so
//! periodic work such as the brokers' retention check runs at exactly the virtual instants it would have run at in
//! real time. Seven days of retention then pass in milliseconds, and the same steps give the same results.
//!
//! What it is not for: timeouts of network operations (a fetch's `max_wait_ms`, a client deadline) — those stay in
//! real time, otherwise a test that stops advancing the clock would hang.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a clock operation could not be done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockError {
    /// `advance` was called on a real clock.
    #[error(
        "cannot advance a real clock; build the cluster with Clock::virtual_at(ms) to control time"
    )]
    NotVirtual,
    /// A real-time timer needs a tokio runtime to run on.
    #[error("a real-time timer needs a tokio runtime; create it from inside the runtime")]
    NoRuntime,
}

/// A periodic task: receives the clock's time (ms) at which it runs.
type TimerTask = Arc<dyn Fn(i64) + Send + Sync>;

/// Real or virtual time; cheap to clone, all clones share one time line.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

struct ClockInner {
    /// `None` for real time; the current virtual time in ms otherwise.
    virtual_now: Option<AtomicI64>,
    timers: Mutex<Vec<VirtualTimer>>,
    next_timer_id: AtomicU64,
}

/// The period of a one-shot virtual timer ([`Clock::after`]): it is removed once it has run.
const ONCE: i64 = i64::MAX;

struct VirtualTimer {
    id: u64,
    due_ms: i64,
    period_ms: i64,
    task: TimerTask,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.virtual_now {
            None => write!(f, "Clock::real"),
            Some(now) => write!(f, "Clock::virtual(now_ms={})", now.load(Ordering::SeqCst)),
        }
    }
}

impl Clock {
    /// Wall-clock time.
    pub fn real() -> Clock {
        Clock::new(None)
    }

    /// Virtual time starting at `start_ms` (ms since the Unix epoch); moves only through [`Clock::advance`].
    pub fn virtual_at(start_ms: i64) -> Clock {
        Clock::new(Some(AtomicI64::new(start_ms)))
    }

    fn new(virtual_now: Option<AtomicI64>) -> Clock {
        Clock {
            inner: Arc::new(ClockInner {
                virtual_now,
                timers: Mutex::new(Vec::new()),
                next_timer_id: AtomicU64::new(1),
            }),
        }
    }

    /// Current time in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.inner.virtual_now {
            Some(now) => now.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        }
    }

    /// Whether this clock only moves through [`Clock::advance`].
    pub fn is_virtual(&self) -> bool {
        self.inner.virtual_now.is_some()
    }

    /// Moves virtual time forward by `by`. Time stops at every timer that falls due on the way, runs it, and goes on,
    /// so a timer with a 5-minute period runs 12 times when the clock advances by an hour.
    pub fn advance(&self, by: Duration) -> Result<(), ClockError> {
        let now = self
            .inner
            .virtual_now
            .as_ref()
            .ok_or(ClockError::NotVirtual)?;
        let by_ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let target = now.load(Ordering::SeqCst).saturating_add(by_ms);
        loop {
            // Take the earliest due timer out of the lock before running it: a task may read the clock or add timers.
            let due = {
                let mut timers = self.timers();
                let next = timers
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.due_ms <= target)
                    .min_by_key(|(_, t)| (t.due_ms, t.id))
                    .map(|(i, _)| i);
                next.map(|i| {
                    let t = &mut timers[i];
                    let at = t.due_ms;
                    let task = t.task.clone();
                    if t.period_ms == ONCE {
                        timers.swap_remove(i);
                    } else {
                        t.due_ms = t.due_ms.saturating_add(t.period_ms);
                    }
                    (at, task)
                })
            };
            match due {
                Some((at, task)) => {
                    now.fetch_max(at, Ordering::SeqCst);
                    task(at);
                }
                None => break,
            }
        }
        now.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `task` every `period` (the first time one period from now) until the returned [`Timer`] is dropped.
    /// Real clocks run it on a tokio task; virtual clocks run it inside [`Clock::advance`].
    pub fn every(
        &self,
        period: Duration,
        task: impl Fn(i64) + Send + Sync + 'static,
    ) -> Result<Timer, ClockError> {
        let period = period.max(Duration::from_millis(1));
        self.schedule(period, Some(period), Arc::new(task))
    }

    /// Runs `task` once, `delay` from now, unless the returned [`Timer`] is dropped first. Real clocks run it on a
    /// tokio task; virtual clocks run it inside [`Clock::advance`].
    pub fn after(
        &self,
        delay: Duration,
        task: impl Fn(i64) + Send + Sync + 'static,
    ) -> Result<Timer, ClockError> {
        self.schedule(delay, None, Arc::new(task))
    }

    /// Runs `task` `first` from now, then every `period` (none: once).
    fn schedule(
        &self,
        first: Duration,
        period: Option<Duration>,
        task: TimerTask,
    ) -> Result<Timer, ClockError> {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match &self.inner.virtual_now {
            Some(now) => {
                let id = self.inner.next_timer_id.fetch_add(1, Ordering::SeqCst);
                self.timers().push(VirtualTimer {
                    id,
                    due_ms: now.load(Ordering::SeqCst).saturating_add(millis(first)),
                    period_ms: period.map_or(ONCE, millis),
                    task,
                });
                Ok(Timer {
                    kind: TimerKind::Virtual {
                        clock: Arc::downgrade(&self.inner),
                        id,
                    },
                })
            }
            None => {
                let runtime =
                    tokio::runtime::Handle::try_current().map_err(|_| ClockError::NoRuntime)?;
                let clock = self.clone();
                let stopped = Arc::new(AtomicBool::new(false));
                let stopped_in_task = stopped.clone();
                let handle = runtime.spawn(async move {
                    let start = tokio::time::Instant::now() + first;
                    let Some(period) = period else {
                        tokio::time::sleep_until(start).await;
                        if !stopped_in_task.load(Ordering::SeqCst) {
                            task(clock.now_ms());
                        }
                        return;
                    };
                    let mut ticks = tokio::time::interval_at(start, period);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        if stopped_in_task.load(Ordering::SeqCst) {
                            break;
                        }
                        task(clock.now_ms());
                    }
                });
                Ok(Timer {
                    kind: TimerKind::Real { handle, stopped },
                })
            }
        }
    }

    fn timers(&self) -> MutexGuard<'_, Vec<VirtualTimer>> {
        // A task that panicked while the lock was held cannot leave the Vec inconsistent: keep going.
        self.inner.timers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A task registered with [`Clock::every`] or [`Clock::after`]; dropping it stops the task.
pub struct Timer {
    kind: TimerKind,
}

enum TimerKind {
    Real {
        handle: tokio::task::JoinHandle<()>,
        stopped: Arc<AtomicBool>,
    },
    Virtual {
        clock: std::sync::Weak<ClockInner>,
        id: u64,
    },
}

impl Drop for Timer {
    fn drop(&mut self) {
        match &self.kind {
            TimerKind::Real { handle, stopped } => {
                stopped.store(true, Ordering::SeqCst);
                handle.abort();
            }
            TimerKind::Virtual { clock, id } => {
                if let Some(clock) = clock.upgrade() {
                    let mut timers = clock.timers.lock().unwrap_or_else(|e| e.into_inner());
                    timers.retain(|t| t.id != *id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn virtual_time_moves_only_when_advanced_and_runs_timers_at_their_instants() {
        let clock = Clock::virtual_at(1_000);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_in_task = seen.clone();
        let timer = clock
            .every(Duration::from_millis(300), move |at| {
                seen_in_task.lock().unwrap().push(at)
            })
            .unwrap();
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_millis(1_000)).unwrap();
        assert_eq!(clock.now_ms(), 2_000);
        assert_eq!(*seen.lock().unwrap(), vec![1_300, 1_600, 1_900]);
        drop(timer);
        clock.advance(Duration::from_millis(1_000)).unwrap();
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_one_shot_timer_runs_once_at_its_instant_and_not_after_it_is_dropped() {
        let clock = Clock::virtual_at(1_000);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_in_task = seen.clone();
        let once = clock
            .after(Duration::from_millis(5_000), move |at| {
                seen_in_task.lock().unwrap().push(at)
            })
            .unwrap();
        let seen_in_dropped = seen.clone();
        let dropped = clock
            .after(Duration::from_millis(2_000), move |at| {
                seen_in_dropped.lock().unwrap().push(-at)
            })
            .unwrap();
        drop(dropped);
        clock.advance(Duration::from_millis(4_999)).unwrap();
        assert!(seen.lock().unwrap().is_empty());
        clock.advance(Duration::from_millis(60_000)).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![6_000]);
        clock.advance(Duration::from_secs(86_400)).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![6_000]);
        drop(once);
    }

    #[test]
    fn a_real_clock_cannot_be_advanced() {
        assert_eq!(
            Clock::real().advance(Duration::from_secs(1)),
            Err(ClockError::NotVirtual)
        );
    }
}
