//! How a partition's read loop reports failed reads: a fault the scenario scheduled (a leader killed, a broker
//! isolated) makes reads fail until the cluster moves on, and the loop retries — that is the run working as
//! meant, so it is logged at debug. Only a streak that outlasts [`PERSISTENT`] with no successful read is worth
//! a warning (once per streak), and its end an info line.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long reads of one partition may keep failing before it is worth a warning: longer than a leader election
/// or a killed broker's session expiry (the faults the harness schedules), shorter than a quiesce timeout.
pub(crate) const PERSISTENT: Duration = Duration::from_secs(15);

/// One partition's current run of failed reads.
#[derive(Debug, Default)]
pub(crate) struct FailureStreak {
    since: Option<Instant>,
    warned: bool,
}

impl FailureStreak {
    /// A read failed (`what` says which step) and will be retried.
    pub(crate) fn failed(
        &mut self,
        what: &str,
        consumer: u32,
        topic: &str,
        partition: i32,
        error: &dyn Display,
    ) {
        let since = *self.since.get_or_insert_with(Instant::now);
        let failing = since.elapsed();
        if !self.warned && failing >= PERSISTENT {
            self.warned = true;
            tracing::warn!(consumer, topic, partition, %error, failing = ?failing, "{what}, and has kept failing; still retrying");
        } else {
            tracing::debug!(consumer, topic, partition, %error, "{what}; retrying");
        }
    }

    /// A read succeeded: the streak, if any, is over.
    pub(crate) fn succeeded(&mut self, consumer: u32, topic: &str, partition: i32) {
        if let Some(since) = self.since.take() {
            if self.warned {
                tracing::info!(consumer, topic, partition, failed_for = ?since.elapsed(), "reading again");
            }
        }
        self.warned = false;
    }

    /// Whether this streak has been warned about (for tests).
    #[cfg(test)]
    fn warned(&self) -> bool {
        self.warned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_streak_is_not_warned_about_and_a_success_ends_it() {
        let mut streak = FailureStreak::default();
        streak.failed("fetch failed", 1, "t", 0, &"leader down");
        streak.failed("fetch failed", 1, "t", 0, &"leader down");
        assert!(!streak.warned());
        streak.succeeded(1, "t", 0);
        assert!(streak.since.is_none());
    }

    #[test]
    fn a_streak_past_the_bound_is_warned_about_once() {
        let mut streak = FailureStreak {
            since: Instant::now().checked_sub(PERSISTENT),
            warned: false,
        };
        assert!(
            streak.since.is_some(),
            "the clock allows going back {PERSISTENT:?}"
        );
        streak.failed("fetch failed", 1, "t", 0, &"still down");
        assert!(streak.warned());
        streak.succeeded(1, "t", 0);
        assert!(!streak.warned());
        assert!(streak.since.is_none());
    }
}
