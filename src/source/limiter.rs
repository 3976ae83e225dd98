//! Rate-limited warnings: a flood of bad records must not become a flood of
//! log lines. Each reason logs at most once per interval, with the number of
//! occurrences suppressed since its last line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct LogLimiter {
    interval: Duration,
    last: HashMap<&'static str, (Instant, u64)>,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        LogLimiter { interval, last: HashMap::new() }
    }

    /// Returns `Some(suppressed)` when a line for `reason` may be logged now.
    pub fn allow(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((at, suppressed)) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_suppressed_count() {
        let mut l = LogLimiter::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(l.allow("bad_magic", t0), Some(0));
        assert_eq!(l.allow("bad_magic", t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow("bad_magic", t0 + Duration::from_secs(2)), None);
        assert_eq!(l.allow("truncated", t0 + Duration::from_secs(2)), Some(0), "reasons are independent");
        assert_eq!(l.allow("bad_magic", t0 + Duration::from_secs(6)), Some(2));
    }
}
