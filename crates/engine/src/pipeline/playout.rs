//! When to show each video frame, sans-IO: on its capture clock (the RTP timestamp)
//! plus a playout delay that covers how unevenly frames complete, so that a path's
//! jitter does not become judder (frames shown the moment they are decoded arrive in
//! clumps and gaps).
//!
//! A frame's *transit* is when it was complete against its timestamp, on a clock whose
//! zero is the first frame. The delay is the 95th percentile of transit above its least,
//! over the last [`WINDOW`] of frames, up to [`MAX_DELAY`]: raised at once, lowered
//! slowly. Frames that waited for a retransmission are left out of the estimate
//! (libwebrtc does the same): at random loss every frame would otherwise wait a round
//! trip for the few that need one; they are shown late instead. A frame whose time has
//! passed is shown at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The longest playout delay, however uneven the path.
pub const MAX_DELAY: Duration = Duration::from_millis(200);
/// The frames the estimate looks at.
const WINDOW: Duration = Duration::from_secs(4);
/// The delay comes down by at most this much per frame (~1 ms per frame at 30 fps:
/// a third of a frame interval per second).
const DOWN_STEP: Duration = Duration::from_millis(5);
/// RTP video clock.
const CLOCK_HZ: i64 = 90_000;
/// A timestamp this far from the last one is a new stream: start over.
const RESET_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Playout {
    /// The first frame's extended timestamp and when it was complete.
    origin: Option<(i64, Instant)>,
    last_ts: Option<i64>,
    /// (when, transit µs) of frames that did not wait for a retransmission.
    window: VecDeque<(Instant, i64)>,
    delay: Duration,
}

impl Playout {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current playout delay above the path's least transit.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Extends a 32-bit timestamp next to the last one.
    fn extend(&self, ts: u32) -> i64 {
        match self.last_ts {
            None => i64::from(ts),
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
        }
    }

    /// A frame with RTP timestamp `ts` was complete at `now` (`repaired`: it waited for a
    /// retransmission). Returns when to show it, never before `now`.
    pub fn schedule(&mut self, ts: u32, now: Instant, repaired: bool) -> Instant {
        let mut ext = self.extend(ts);
        let far = self.last_ts.is_some_and(|last| {
            (ext - last).unsigned_abs() > RESET_AFTER.as_secs() * CLOCK_HZ as u64
        });
        if far {
            *self = Self::default();
            ext = i64::from(ts);
        }
        self.last_ts = Some(self.last_ts.map_or(ext, |last| last.max(ext)));
        let (ts0, t0) = *self.origin.get_or_insert((ext, now));
        let media_us = (ext - ts0) * 1_000_000 / CLOCK_HZ;
        let elapsed_us = now.saturating_duration_since(t0).as_micros() as i64
            - t0.saturating_duration_since(now).as_micros() as i64;
        let transit = elapsed_us - media_us;
        if !repaired {
            self.window.push_back((now, transit));
        }
        while self
            .window
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) > WINDOW)
        {
            self.window.pop_front();
        }
        let Some(least) = self.window.iter().map(|&(_, t)| t).min() else {
            return now;
        };
        let mut spread: Vec<i64> = self.window.iter().map(|&(_, t)| t - least).collect();
        let rank = (spread.len() - 1) * 95 / 100;
        let (_, p95, _) = spread.select_nth_unstable(rank);
        let target = Duration::from_micros(*p95 as u64).min(MAX_DELAY);
        self.delay = if target >= self.delay {
            target
        } else {
            target.max(self.delay.saturating_sub(DOWN_STEP))
        };
        // Shown at its media time on the path's fastest clock, plus the delay.
        let show_us = media_us + least + self.delay.as_micros() as i64;
        let show = if show_us >= 0 {
            t0 + Duration::from_micros(show_us as u64)
        } else {
            t0.checked_sub(Duration::from_micros(show_us.unsigned_abs()))
                .unwrap_or(now)
        };
        show.max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 25 fps: a whole number of microseconds per frame.
    const FRAME_TICKS: u32 = 3600;
    const FRAME: Duration = Duration::from_millis(40);

    /// Feeds frames captured every 40 ms that complete after `transit(i)`; returns the
    /// intervals between the times they are shown (µs), after the first second.
    fn intervals(transit: impl Fn(u32) -> Duration, repaired: impl Fn(u32) -> bool) -> Vec<i64> {
        let t0 = Instant::now();
        let mut p = Playout::new();
        let mut shown = Vec::new();
        for i in 0..300u32 {
            let complete = t0 + FRAME * i + transit(i);
            shown.push(p.schedule(i * FRAME_TICKS, complete, repaired(i)));
        }
        shown
            .windows(2)
            .skip(30)
            .map(|w| w[1].duration_since(w[0]).as_micros() as i64)
            .collect()
    }

    fn spread_ms(intervals: &[i64]) -> f64 {
        let n = intervals.len() as f64;
        let mean = intervals.iter().sum::<i64>() as f64 / n;
        let var = intervals
            .iter()
            .map(|&d| (d as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        var.sqrt() / 1000.0
    }

    #[test]
    fn a_steady_path_adds_no_delay() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        for i in 0..100u32 {
            let complete = t0 + FRAME * i + Duration::from_millis(5);
            assert_eq!(p.schedule(i * FRAME_TICKS, complete, false), complete);
        }
        assert!(p.delay() < Duration::from_micros(100), "{:?}", p.delay());
    }

    #[test]
    fn jitter_is_absorbed_on_the_capture_clock() {
        // Each frame completes 0–60 ms late, pseudo-randomly: shown as decoded, the
        // intervals spread by ~20 ms; scheduled, they come back to ~40 ms.
        let late = |i: u32| Duration::from_millis(u64::from(i.wrapping_mul(2_654_435_761) >> 26));
        let raw: Vec<i64> = {
            let t0 = Instant::now();
            let times: Vec<Instant> = (0..300u32).map(|i| t0 + FRAME * i + late(i)).collect();
            times
                .windows(2)
                .skip(30)
                .map(|w| w[1].saturating_duration_since(w[0]).as_micros() as i64)
                .collect()
        };
        let smooth = intervals(late, |_| false);
        assert!(spread_ms(&raw) > 15.0, "raw {}", spread_ms(&raw));
        assert!(spread_ms(&smooth) < 5.0, "scheduled {}", spread_ms(&smooth));
    }

    #[test]
    fn frames_that_waited_for_a_retransmission_do_not_raise_the_delay() {
        // One frame in five waits 80 ms for a retransmission; the others arrive evenly.
        let repaired = |i: u32| i.is_multiple_of(5);
        let transit = |i: u32| Duration::from_millis(if repaired(i) { 85 } else { 5 });
        let t0 = Instant::now();
        let mut p = Playout::new();
        for i in 0..200u32 {
            let complete = t0 + FRAME * i + transit(i);
            let shown = p.schedule(i * FRAME_TICKS, complete, repaired(i));
            assert_eq!(shown, complete, "frame {i} is shown when complete");
        }
        assert!(p.delay() < Duration::from_millis(1));
    }

    #[test]
    fn the_delay_is_bounded_and_comes_down_slowly() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        // A path that swings by a second: the delay stops at the bound.
        for i in 0..60u32 {
            let late = Duration::from_millis(if i % 2 == 0 { 0 } else { 1000 });
            p.schedule(i * FRAME_TICKS, t0 + FRAME * i + late, false);
        }
        assert_eq!(p.delay(), MAX_DELAY);
        // Calm again: it comes down, a little per frame, once the swings leave the window.
        let mut last = p.delay();
        for i in 60..400u32 {
            p.schedule(i * FRAME_TICKS, t0 + FRAME * i, false);
            assert!(last.saturating_sub(p.delay()) <= DOWN_STEP);
            last = p.delay();
        }
        assert!(p.delay() < Duration::from_millis(5), "{:?}", p.delay());
    }

    #[test]
    fn timestamps_wrap_and_a_new_stream_starts_over() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        let start = u32::MAX - 5 * FRAME_TICKS;
        for i in 0..20u32 {
            let complete = t0 + FRAME * i;
            let ts = start.wrapping_add(i * FRAME_TICKS);
            assert_eq!(p.schedule(ts, complete, false), complete, "frame {i}");
        }
        // A timestamp an hour away: not a frame from the far future.
        let now = t0 + FRAME * 20;
        assert_eq!(
            p.schedule(start.wrapping_add(90_000 * 3600), now, false),
            now
        );
    }
}
