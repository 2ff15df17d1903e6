//! When to show each decoded video frame, sans-IO: on its capture clock (the RTP
//! timestamp) plus a playout delay that covers a repair round while repairs are late
//! enough to freeze the picture.
//!
//! Frames leave the assembler in order, so a frame that waits for a retransmission holds
//! every frame after it; shown the moment they are decoded, the picture stops for the
//! repair and the held frames then flash past. On a far path (200 ms round trip) every
//! repair is a W3C freeze. libwebrtc adds the round trip to its playout delay once frames
//! were NACKed; here the delay is what the repairs measurably took: the 80th percentile
//! of how late repaired frames completed (against the earliest any frame completed for
//! its capture time) over the last 10 s, when that is [`MIN_REPAIR_DELAY`] or more and
//! so is one round of repair (the round trip and two NACK intervals), at most
//! [`MAX_DELAY`]. Raising it costs nothing at the moment a late repaired frame
//! completes (the picture already waits for it); it comes down 5 % faster than real
//! time (frames shown a little quicker) once repairs stop or get quicker. Where most
//! repairs are quicker than [`MIN_REPAIR_DELAY`] there is no delay: a hitch that short
//! is not a W3C freeze, and latency counts more in a conversation (with the delay from
//! 80 ms on, the loopback paths that lose 20 % or in bursts waited 100–200 ms for every
//! frame to save no freeze); on a near path only repairs that took several rounds are
//! that late, and covering those would hold every frame for the rare one (decision 10,
//! "A far, lossy path").

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window over which completion offsets and repair delays are remembered.
const WINDOW: Duration = Duration::from_secs(10);
/// Repairs quicker than this do not delay playout: a frame this late makes a gap of
/// 150 ms and a frame interval, a W3C freeze at 30 fps.
pub const MIN_REPAIR_DELAY: Duration = Duration::from_millis(150);
/// The longest playout delay, however slow repairs are.
pub const MAX_DELAY: Duration = Duration::from_millis(400);
/// How many repaired frames within the window it takes to judge them.
const MIN_REPAIRS: usize = 3;
/// A frame this far from the capture clock's expectation (a restarted sender, a clock
/// jump) starts the estimate over.
const RESET: Duration = Duration::from_secs(3);
/// How often the receiver asks for a missing packet (peer/interceptors.rs): a repair
/// round is the round trip and up to two of these.
const NACK_INTERVAL: Duration = Duration::from_millis(25);
/// The 90 kHz video clock.
const TICKS_PER_MS: i64 = 90;

#[derive(Debug)]
pub struct Playout {
    epoch: Instant,
    /// The last RTP timestamp and its extension to 64 bits (in ticks).
    last_rtp: Option<(u32, i64)>,
    /// (completed at, offset µs: completion − capture clock), for the minimum: a deque
    /// of increasing offsets (each entry is the lowest since it completed).
    offsets: VecDeque<(Instant, i64)>,
    /// (completed at, how late, µs) of repaired frames.
    repairs: VecDeque<(Instant, i64)>,
    /// What the delay should be, µs (from `repairs`).
    target_us: i64,
    /// Room to sort the repairs' lateness in (kept: no allocation per frame).
    sorted: Vec<i64>,
    /// The playout delay, µs.
    delay_us: i64,
}

impl Playout {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            last_rtp: None,
            offsets: VecDeque::new(),
            repairs: VecDeque::new(),
            target_us: 0,
            sorted: Vec::new(),
            delay_us: 0,
        }
    }

    /// The playout delay now.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us as u64)
    }

    /// A frame with capture time `rtp_timestamp` completed at `complete` (`repaired`: it
    /// waited for a packet that came out of order), on a path of round trip `rtt`.
    /// Returns when to show it (at `complete` or later).
    pub fn schedule(
        &mut self,
        rtp_timestamp: u32,
        complete: Instant,
        repaired: bool,
        rtt: Duration,
    ) -> Instant {
        let (rtp_ticks, advanced) = self.extend(rtp_timestamp);
        let capture_us = rtp_ticks * 1000 / TICKS_PER_MS;
        let complete_us = complete.saturating_duration_since(self.epoch).as_micros() as i64;
        let offset = complete_us - capture_us;
        if let Some(base) = self.base()
            && (offset - base).abs() > RESET.as_micros() as i64
        {
            self.offsets.clear();
            self.repairs.clear();
            self.target_us = 0;
            self.delay_us = 0;
        }
        // The lowest offset within the window: the frames that met no queue or repair.
        let horizon = complete.checked_sub(WINDOW);
        forget_before(&mut self.offsets, horizon);
        while self.offsets.back().is_some_and(|&(_, o)| o >= offset) {
            self.offsets.pop_back();
        }
        self.offsets.push_back((complete, offset));
        let base = self.base().unwrap_or(offset);
        let late = offset - base;

        let before = self.repairs.len();
        forget_before(&mut self.repairs, horizon);
        if repaired {
            self.repairs.push_back((complete, late));
        }
        if repaired || self.repairs.len() != before {
            self.target_us = self.target();
        }
        let far = rtt + NACK_INTERVAL * 2 >= MIN_REPAIR_DELAY;
        let target = if far { self.target_us } else { 0 };
        if target > self.delay_us {
            self.delay_us = target;
        } else {
            // Down by 5 % of the media time since the last frame.
            let step = advanced * 1000 / TICKS_PER_MS / 20;
            self.delay_us = (self.delay_us - step.max(0)).max(target);
        }
        let due = base + capture_us + self.delay_us;
        if due <= complete_us {
            complete
        } else {
            complete + Duration::from_micros((due - complete_us) as u64)
        }
    }

    /// What the delay should be: the 80th percentile of how late repaired frames were,
    /// when that is a freeze's worth.
    fn target(&mut self) -> i64 {
        if self.repairs.len() < MIN_REPAIRS {
            return 0;
        }
        let late = &mut self.sorted;
        late.clear();
        late.extend(self.repairs.iter().map(|&(_, l)| l));
        late.sort_unstable();
        let p80 = late[(late.len() * 4 / 5).min(late.len() - 1)];
        if p80 < MIN_REPAIR_DELAY.as_micros() as i64 {
            return 0;
        }
        p80.min(MAX_DELAY.as_micros() as i64)
    }

    fn base(&self) -> Option<i64> {
        self.offsets.front().map(|&(_, o)| o)
    }

    /// Extends a 32-bit RTP timestamp (ticks) by its distance from the last one; returns
    /// it and how far it advanced (0 for an older frame).
    fn extend(&mut self, ts: u32) -> (i64, i64) {
        let extended = match self.last_rtp {
            None => i64::from(ts),
            Some((last, last_ext)) => last_ext + i64::from(ts.wrapping_sub(last) as i32),
        };
        let advanced = self.last_rtp.map_or(0, |(_, e)| (extended - e).max(0));
        self.last_rtp = Some((ts, extended));
        (extended, advanced)
    }
}

/// Drops the entries that completed before `horizon` (none while the call is younger
/// than the window).
fn forget_before(entries: &mut VecDeque<(Instant, i64)>, horizon: Option<Instant>) {
    while entries
        .front()
        .is_some_and(|&(at, _)| horizon.is_some_and(|h| at < h))
    {
        entries.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u32 = 3000; // 33.3 ms at 90 kHz
    /// A round trip long enough for one repair round to freeze the picture.
    const FAR: Duration = Duration::from_millis(200);
    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Frame `i` captured at i × 33.3 ms; `delay` after that it completes.
    fn at(t0: Instant, i: u32, delay: Duration) -> Instant {
        t0 + Duration::from_micros(u64::from(i * FRAME) * 1000 / 90) + delay
    }

    /// Within a millisecond (capture times are whole microseconds).
    fn near(d: Duration, want: Duration) -> bool {
        d.abs_diff(want) <= ms(1)
    }

    #[test]
    fn frames_on_time_are_shown_at_once() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0);
        for i in 0..100 {
            // 20–30 ms of path delay, uneven: no repair, no delay.
            let complete = at(t0, i, ms(20 + u64::from(i % 3) * 5));
            assert_eq!(p.schedule(i * FRAME, complete, false, FAR), complete);
        }
        assert_eq!(p.delay(), Duration::ZERO);
    }

    #[test]
    fn quick_repairs_add_no_delay() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0);
        for i in 0..100 {
            let repaired = i % 4 == 0;
            let late = if repaired { ms(60) } else { ms(0) };
            let complete = at(t0, i, ms(20) + late);
            assert_eq!(p.schedule(i * FRAME, complete, repaired, FAR), complete);
        }
        assert_eq!(p.delay(), Duration::ZERO);
    }

    #[test]
    fn an_occasional_slow_repair_among_quick_ones_adds_no_delay() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0);
        for i in 0..300 {
            let repaired = i % 3 == 0;
            // One repair in eight takes a second round.
            let late = match (repaired, i % 24) {
                (false, _) => ms(0),
                (true, 0) => ms(220),
                (true, _) => ms(90),
            };
            let complete = at(t0, i, ms(5) + late);
            assert_eq!(p.schedule(i * FRAME, complete, repaired, FAR), complete);
        }
        assert_eq!(p.delay(), Duration::ZERO);
    }

    #[test]
    fn slow_repairs_delay_playout_so_frames_keep_their_spacing() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0);
        let path = ms(100);
        // Every fifth frame waits a 250 ms repair, and holds the frames behind it: they
        // complete with it.
        let mut shown = Vec::new();
        for i in 0..150u32 {
            let repaired = i % 5 == 0 && i > 0;
            let held_by = i - i % 5;
            let complete = if i % 5 == 0 && i > 0 {
                at(t0, i, path + ms(250))
            } else if i > 5 {
                at(t0, i, path).max(at(t0, held_by, path + ms(250)))
            } else {
                at(t0, i, path)
            };
            let due = p.schedule(i * FRAME, complete, repaired, FAR);
            assert!(due >= complete);
            shown.push(due);
        }
        assert!(near(p.delay(), ms(250)), "the delay is what repairs took");
        // Once the delay is on, frames are shown on their capture clock: evenly.
        let gaps: Vec<Duration> = shown[60..].windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().all(|&g| g > ms(30) && g < ms(37)),
            "uneven: {gaps:?}"
        );
        // Repairs stop: once they leave the window (10 s) the delay comes down, 5 % of
        // media time, to none, never up.
        let mut last = p.delay();
        for i in 150..700u32 {
            let complete = at(t0, i, path);
            assert!(p.schedule(i * FRAME, complete, false, FAR) >= complete);
            assert!(p.delay() <= last);
            last = p.delay();
        }
        for i in 700..800u32 {
            let complete = at(t0, i, path);
            assert_eq!(p.schedule(i * FRAME, complete, false, FAR), complete);
        }
        assert_eq!(p.delay(), Duration::ZERO);
    }

    #[test]
    fn on_a_near_path_repairs_of_several_rounds_add_no_delay() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0);
        for i in 0..300u32 {
            // 5 ms round trip; bursts of loss make every repair take 200 ms.
            let repaired = i % 3 == 0;
            let late = if repaired { ms(200) } else { ms(0) };
            let complete = at(t0, i, ms(3) + late);
            assert_eq!(p.schedule(i * FRAME, complete, repaired, ms(5)), complete);
        }
        assert_eq!(p.delay(), Duration::ZERO);
    }

    #[test]
    fn the_delay_has_a_ceiling() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0);
        for i in 0..60u32 {
            let repaired = i % 3 == 2;
            let late = if repaired { ms(900) } else { ms(0) };
            p.schedule(i * FRAME, at(t0, i, ms(10) + late), repaired, FAR);
        }
        assert_eq!(p.delay(), MAX_DELAY);
    }

    #[test]
    fn a_clock_jump_starts_over_and_timestamps_wrap() {
        let t0 = Instant::now();
        let mut p = Playout::new(t0);
        let start = u32::MAX - 10 * FRAME;
        for i in 0..30u32 {
            let repaired = i % 3 == 2;
            let late = if repaired { ms(200) } else { ms(0) };
            let complete = at(t0, i, ms(10) + late);
            let due = p.schedule(start.wrapping_add(i * FRAME), complete, repaired, FAR);
            assert!(due <= complete + ms(200), "the wrap read as a jump");
        }
        assert!(near(p.delay(), ms(200)), "{:?}", p.delay());
        // The sender's clock jumps 10 s: nothing is held for it.
        let complete = at(t0, 30, ms(10));
        let jumped = start.wrapping_add(30 * FRAME).wrapping_add(900_000);
        assert_eq!(p.schedule(jumped, complete, false, FAR), complete);
        assert_eq!(p.delay(), Duration::ZERO);
    }
}
