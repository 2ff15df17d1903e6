//! A token bucket per connection.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Limits how often something (an error reply) is done: at most once per `interval`.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    next: Option<Instant>,
}

impl Throttle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: None,
        }
    }

    pub fn ready(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|next| now < next) {
            return false;
        }
        self.next = Some(now + self.interval);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, t0);
        assert_eq!(
            (0..8).filter(|_| bucket.try_take(t0)).count(),
            5,
            "burst of 5"
        );
        assert!(
            !bucket.try_take(t0 + Duration::from_millis(50)),
            "half a token"
        );
        assert!(
            bucket.try_take(t0 + Duration::from_millis(100)),
            "one token after 100 ms"
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            (0..8).filter(|_| bucket.try_take(later)).count(),
            5,
            "refills to the burst only"
        );
    }

    #[test]
    fn throttle_allows_once_per_interval() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(1));
        assert!(throttle.ready(t0));
        assert!(!throttle.ready(t0 + Duration::from_millis(999)));
        assert!(throttle.ready(t0 + Duration::from_secs(1)));
    }
}
