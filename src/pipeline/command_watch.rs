//! `after = "consumer N commits"` for a team's ETL: the harness cannot see inside the program, but it sees its
//! group's committed offsets. Once armed, a thread asks for them (OffsetFetch) every [`POLL`]; the first time
//! any partition's offset moves past what it was when the fault was armed, the program's process group is
//! frozen (SIGSTOP) at once and the fault handed to the nemesis, which fires it while the program is frozen — so
//! a kill lands between the commit and whatever the program does after it (its write, for an ETL that commits
//! first). When the fault is done the program goes on (SIGCONT), unless the fault froze it itself (`stall`,
//! `pause`) or replaced it.
//!
//! Only one process may commit (the scenario has `consumers = 1`): with several, the harness could not tell
//! whose commit it saw, and the scenario is refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use tokio::sync::mpsc;

use super::group::Gate;
use super::lock;

/// How often an armed watch asks for the committed offsets.
const POLL: Duration = Duration::from_millis(2);
/// How often a watch waiting for its fault looks whether it was disarmed.
const WAKE: Duration = Duration::from_millis(50);

/// What the watch knows of each instance: its process group and whether a fault froze it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Instance {
    pub(super) pid: i32,
    pub(super) frozen: bool,
}

pub(super) type Instances = Arc<Mutex<Vec<Instance>>>;

/// A signal to process group `pid` (nothing for no process).
pub(super) fn signal_group(pid: i32, signal: libc::c_int) {
    if pid > 0 {
        // SAFETY: killpg has no memory-safety preconditions; a group that is gone yields ESRCH.
        unsafe {
            libc::killpg(pid, signal);
        }
    }
}

/// The watches armed on one command ETL; disarming stops every one.
#[derive(Debug, Default)]
pub(super) struct CommitWatches {
    disarmed: Arc<AtomicBool>,
}

/// What one watch reads the offsets with.
pub(super) type Read =
    Arc<dyn Fn() -> Result<BTreeMap<(String, i32), i64>, String> + Send + Sync + 'static>;

impl CommitWatches {
    /// Starts a watch for instance `n`'s next commit, handing `fault` to `to` when it comes.
    pub(super) fn arm(
        &mut self,
        read: Read,
        instances: Instances,
        n: u32,
        fault: usize,
        to: mpsc::UnboundedSender<(usize, Gate)>,
    ) {
        if self.disarmed.load(Ordering::SeqCst) {
            self.disarmed = Arc::new(AtomicBool::new(false));
        }
        let disarmed = self.disarmed.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("commit-watch-{n}"))
            .spawn(move || watch(read, instances, n, fault, to, disarmed));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "the commit watch could not start");
        }
    }

    pub(super) fn disarm_all(&mut self) {
        self.disarmed.store(true, Ordering::SeqCst);
    }
}

impl Drop for CommitWatches {
    fn drop(&mut self) {
        self.disarm_all();
    }
}

/// The offsets of `observer`'s group, as the watch reads them.
pub(super) fn reader(observer: Arc<BaseConsumer>, topics: Vec<(String, i32)>) -> Read {
    Arc::new(move || super::command::committed(&observer, &topics))
}

fn watch(
    read: Read,
    instances: Instances,
    n: u32,
    fault: usize,
    to: mpsc::UnboundedSender<(usize, Gate)>,
    disarmed: Arc<AtomicBool>,
) {
    let index = (n as usize).saturating_sub(1);
    let mut baseline = None;
    while !disarmed.load(Ordering::SeqCst) {
        let Ok(now) = read() else {
            std::thread::sleep(POLL);
            continue;
        };
        let Some(before) = &baseline else {
            baseline = Some(now);
            continue;
        };
        if !now
            .iter()
            .any(|(k, at)| before.get(k).is_none_or(|b| at > b))
        {
            std::thread::sleep(POLL);
            continue;
        }
        let pid = lock(&instances).get(index).map_or(0, |i| i.pid);
        signal_group(pid, libc::SIGSTOP);
        tracing::info!(
            consumer = n,
            pid,
            "command ETL committed: frozen for the fault"
        );
        let (gate, released) = Gate::new();
        if to.send((fault, gate)).is_ok() {
            Gate::wait(&released, WAKE, || disarmed.load(Ordering::SeqCst));
        }
        let now = lock(&instances).get(index).copied().unwrap_or_default();
        if now.pid == pid && !now.frozen {
            signal_group(pid, libc::SIGCONT);
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_hands_its_fault_over_at_the_first_commit_after_arming_and_only_then() {
        let offsets = Arc::new(Mutex::new(BTreeMap::from([(("t".to_string(), 0), 5i64)])));
        let seen = offsets.clone();
        let read: Read = Arc::new(move || Ok(lock(&seen).clone()));
        let instances: Instances = Arc::new(Mutex::new(vec![Instance::default()]));
        let (to, mut from) = mpsc::unbounded_channel();
        let mut watches = CommitWatches::default();
        watches.arm(read, instances, 1, 3, to);
        std::thread::sleep(Duration::from_millis(50));
        assert!(from.try_recv().is_err(), "no commit yet");
        lock(&offsets).insert(("t".to_string(), 0), 7);
        let mut waited = 0;
        let (fault, gate) = loop {
            match from.try_recv() {
                Ok(got) => break got,
                Err(_) if waited < 1_000 => {
                    waited += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => panic!("the commit was not seen within 5 s"),
            }
        };
        assert_eq!(fault, 3);
        drop(gate);
        watches.disarm_all();
    }
}
