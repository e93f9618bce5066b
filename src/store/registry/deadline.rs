//! Every wait on a registry has an end: one attempt gets so long to answer, one request (all its attempts,
//! the waits between them and its body) so long in all, and nothing outlives the stage's own deadline.
//!
//! A peer controls how fast it answers, so none of these limits may depend on what it says; only a body's
//! expected size buys more time, at a floor rate that any working link exceeds.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// No body gets more extra time than this, whatever its size.
const MAXIMUM_ALLOWANCE: Duration = Duration::from_secs(24 * 60 * 60);

/// A stalled attempt may take at most this part of the stage's time limit, so that a stage given a short
/// `--timeout` survives several stalls, each retried. With the default limit (an hour) `attempt` is the smaller.
const ATTEMPT_SHARE_OF_STAGE: u32 = 8;

/// The limits a client applies; built from `--timeout` and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One attempt must answer with its status line and headers within this (and a body being read must not go
    /// quiet for longer); a stalled attempt is abandoned and retried. A short stage gets less: see
    /// [`Timeouts::attempt_limit`].
    pub attempt: Duration,
    /// One request, with every retry, every wait between attempts and reading its body, ends within this.
    pub request: Duration,
    /// Bodies get extra time at this many bytes per second on top of `request`, so a large layer on a slow
    /// link is not cut off while a peer that dribbles a byte now and then still is.
    pub minimum_rate: u64,
    /// The stage's deadline (`--timeout`): no request starts, waits or reads past it.
    pub stage: Option<StageDeadline>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            attempt: Duration::from_secs(30),
            request: Duration::from_secs(120),
            minimum_rate: 256 * 1024,
            stage: None,
        }
    }
}

/// When the stage must be done, and the limit it came from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageDeadline {
    pub at: Instant,
    pub limit: Duration,
}

impl StageDeadline {
    /// A deadline `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Self {
            at: Instant::now() + limit,
            limit,
        }
    }
}

/// Which limit ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLimit {
    /// The request's own limit (with its allowance for the body).
    Request(Duration),
    /// The stage's `--timeout`.
    Stage(Duration),
}

impl fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(limit) => write!(
                f,
                "it was still pending after {}, the limit for one request",
                humantime::format_duration(*limit)
            ),
            Self::Stage(limit) => write!(
                f,
                "it was still pending when the stage's time limit of {} (`--timeout`) ran out",
                humantime::format_duration(*limit)
            ),
        }
    }
}

/// When one request must be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub limit: TimeLimit,
}

impl Timeouts {
    /// The deadline of a request starting now that moves a body of `body_bytes`.
    pub fn request_deadline(&self, body_bytes: u64) -> Deadline {
        let allowed = self.request + self.allowance(body_bytes);
        let own = Deadline {
            at: Instant::now() + allowed,
            limit: TimeLimit::Request(allowed),
        };
        self.within_stage(own)
    }

    /// `deadline` pushed out by the time a body of `body_bytes` may take, still within the stage.
    pub fn extended(&self, deadline: Deadline, body_bytes: u64) -> Deadline {
        let extra = self.allowance(body_bytes);
        let limit = match deadline.limit {
            TimeLimit::Request(limit) => TimeLimit::Request(limit + extra),
            stage => stage,
        };
        self.within_stage(Deadline {
            at: deadline.at + extra,
            limit,
        })
    }

    /// `deadline` pushed out by `waited` (queued behind other requests, not yet sent), still within the stage.
    pub fn postponed(&self, deadline: Deadline, waited: Duration) -> Deadline {
        self.within_stage(Deadline {
            at: deadline.at + waited,
            limit: deadline.limit,
        })
    }

    /// How long one attempt may wait for its answer, or a body may go quiet: `attempt`, but at most an eighth of
    /// the stage's limit; else a single stall in a stage given `--timeout 20s` would use all of it, never retried.
    pub fn attempt_limit(&self) -> Duration {
        match self.stage {
            Some(stage) => self.attempt.min(stage.limit / ATTEMPT_SHARE_OF_STAGE),
            None => self.attempt,
        }
    }

    /// When the current attempt of a request must have answered; sending a request body of `body_bytes` buys
    /// the same extra time as receiving one.
    pub fn attempt_deadline(&self, request: Deadline, body_bytes: u64) -> Instant {
        (Instant::now() + self.attempt_limit() + self.allowance(body_bytes)).min(request.at)
    }

    /// Extra time for a body; capped, since the size may be a peer's claim and an `Instant` can overflow.
    fn allowance(&self, body_bytes: u64) -> Duration {
        Duration::from_secs(body_bytes / self.minimum_rate.max(1)).min(MAXIMUM_ALLOWANCE)
    }

    fn within_stage(&self, deadline: Deadline) -> Deadline {
        match self.stage {
            Some(stage) if stage.at <= deadline.at => Deadline {
                at: stage.at,
                limit: TimeLimit::Stage(stage.limit),
            },
            _ => deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `at` is `expected` after `start`, allowing for the time the test itself takes.
    fn after(start: Instant, at: Instant, expected: u64) -> bool {
        let elapsed = at - start;
        elapsed >= Duration::from_secs(expected)
            && elapsed < Duration::from_secs(expected) + Duration::from_secs(2)
    }

    #[tokio::test]
    async fn bodies_buy_time_but_never_past_the_stage() {
        let timeouts = Timeouts {
            attempt: Duration::from_secs(5),
            request: Duration::from_secs(10),
            minimum_rate: 1000,
            stage: None,
        };
        let start = Instant::now();
        let small = timeouts.request_deadline(0);
        assert!(after(start, small.at, 10));
        assert_eq!(small.limit, TimeLimit::Request(Duration::from_secs(10)));
        let large = timeouts.request_deadline(50_000);
        assert!(after(start, large.at, 60));
        assert_eq!(
            timeouts.extended(small, 20_000).limit,
            TimeLimit::Request(Duration::from_secs(30))
        );
        assert!(after(start, timeouts.attempt_deadline(large, 0), 5));
        assert!(
            after(start, timeouts.attempt_deadline(large, 20_000), 25),
            "an upload's body buys its attempt time"
        );
        assert_eq!(timeouts.attempt_limit(), Duration::from_secs(5));

        let staged = Timeouts {
            stage: Some(StageDeadline::after(Duration::from_secs(20))),
            ..timeouts
        };
        let cut = staged.request_deadline(50_000);
        assert!(after(start, cut.at, 20));
        assert_eq!(cut.limit, TimeLimit::Stage(Duration::from_secs(20)));
        assert!(after(start, staged.request_deadline(0).at, 10));
        assert_eq!(staged.attempt_limit(), Duration::from_millis(2500));
        let short = Timeouts {
            stage: Some(StageDeadline::after(Duration::from_secs(16))),
            ..timeouts
        };
        assert_eq!(
            short.attempt_limit(),
            Duration::from_secs(2),
            "an eighth of a short stage"
        );
        let long = Timeouts {
            stage: Some(StageDeadline::after(Duration::from_secs(3600))),
            ..Timeouts::default()
        };
        assert_eq!(long.attempt_limit(), Duration::from_secs(30));
        assert!(after(
            start,
            short.attempt_deadline(short.request_deadline(0), 0),
            2
        ));
        assert_eq!(
            staged.extended(staged.request_deadline(0), 1_000_000).limit,
            TimeLimit::Stage(Duration::from_secs(20))
        );
    }
}
