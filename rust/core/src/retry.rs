//! Retry policies for runs that fail with a retryable error.

/// What happens when a run's retries are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnMaxAttempts {
    /// The run completes with a terminal failure, which the handler sees.
    #[default]
    Fail,
    /// The invocation is paused (V7 only).
    Pause,
}

/// How a failing run is retried.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Retry forever, with the runtime's default delay.
    #[default]
    Infinite,
    /// Never retry: the first retryable failure becomes a terminal failure.
    None,
    /// Fixed delay between attempts.
    FixedDelay {
        /// Delay between attempts (ms); `None` leaves it to the runtime.
        interval_ms: Option<u64>,
        /// Attempts in total, the first one included.
        max_attempts: Option<u32>,
        /// Total time spent retrying (ms).
        max_duration_ms: Option<u64>,
        /// What to do when exhausted.
        on_max: OnMaxAttempts,
    },
    /// Exponentially growing delay.
    Exponential {
        /// First delay (ms).
        initial_interval_ms: u64,
        /// Growth factor per attempt.
        factor: f64,
        /// Upper bound for the delay (ms).
        max_interval_ms: Option<u64>,
        /// Attempts in total, the first one included.
        max_attempts: Option<u32>,
        /// Total time spent retrying (ms).
        max_duration_ms: Option<u64>,
        /// What to do when exhausted.
        on_max: OnMaxAttempts,
    },
}

/// The decision after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    /// Fail the attempt; the runtime retries after the given delay (ms) or its default.
    Retry(Option<u64>),
    /// Give up: the run completes with a terminal failure.
    FailAsTerminal,
    /// Give up and pause the invocation (V7).
    Pause,
}

impl RetryPolicy {
    /// Decides, given the number of attempts made so far (this one included) and the total
    /// time spent in them.
    pub fn decide(&self, attempts: u32, elapsed_ms: u64) -> RetryDecision {
        let exhausted = |max_attempts: &Option<u32>, max_duration_ms: &Option<u64>| {
            max_attempts.is_some_and(|m| m <= attempts)
                || max_duration_ms.is_some_and(|m| m <= elapsed_ms)
        };
        let give_up = |on_max: &OnMaxAttempts| match on_max {
            OnMaxAttempts::Fail => RetryDecision::FailAsTerminal,
            OnMaxAttempts::Pause => RetryDecision::Pause,
        };
        match self {
            RetryPolicy::Infinite => RetryDecision::Retry(None),
            RetryPolicy::None => RetryDecision::FailAsTerminal,
            RetryPolicy::FixedDelay {
                interval_ms,
                max_attempts,
                max_duration_ms,
                on_max,
            } => {
                if exhausted(max_attempts, max_duration_ms) {
                    give_up(on_max)
                } else {
                    RetryDecision::Retry(*interval_ms)
                }
            }
            RetryPolicy::Exponential {
                initial_interval_ms,
                factor,
                max_interval_ms,
                max_attempts,
                max_duration_ms,
                on_max,
            } => {
                if exhausted(max_attempts, max_duration_ms) {
                    give_up(on_max)
                } else {
                    let exp = attempts.saturating_sub(1).min(1024) as i32;
                    let delay = (*initial_interval_ms as f64) * factor.powi(exp);
                    let cap = max_interval_ms.map_or(f64::MAX, |m| m as f64);
                    RetryDecision::Retry(Some(delay.min(cap).min(u64::MAX as f64) as u64))
                }
            }
        }
    }

    /// Whether exhausting this policy pauses the invocation (needs protocol V7).
    pub fn pauses(&self) -> bool {
        matches!(
            self,
            RetryPolicy::FixedDelay {
                on_max: OnMaxAttempts::Pause,
                ..
            } | RetryPolicy::Exponential {
                on_max: OnMaxAttempts::Pause,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(
            RetryPolicy::Infinite.decide(100, 1 << 40),
            RetryDecision::Retry(None)
        );
        assert_eq!(
            RetryPolicy::None.decide(1, 0),
            RetryDecision::FailAsTerminal
        );
        let fixed = RetryPolicy::FixedDelay {
            interval_ms: Some(10),
            max_attempts: Some(3),
            max_duration_ms: None,
            on_max: OnMaxAttempts::Fail,
        };
        assert_eq!(fixed.decide(1, 0), RetryDecision::Retry(Some(10)));
        assert_eq!(fixed.decide(2, 0), RetryDecision::Retry(Some(10)));
        assert_eq!(fixed.decide(3, 0), RetryDecision::FailAsTerminal);
        let exp = RetryPolicy::Exponential {
            initial_interval_ms: 50,
            factor: 2.0,
            max_interval_ms: Some(300),
            max_attempts: None,
            max_duration_ms: Some(1000),
            on_max: OnMaxAttempts::Pause,
        };
        assert_eq!(exp.decide(1, 0), RetryDecision::Retry(Some(50)));
        assert_eq!(exp.decide(2, 0), RetryDecision::Retry(Some(100)));
        assert_eq!(exp.decide(3, 0), RetryDecision::Retry(Some(200)));
        assert_eq!(exp.decide(4, 0), RetryDecision::Retry(Some(300)));
        assert_eq!(exp.decide(4, 1000), RetryDecision::Pause);
    }
}
