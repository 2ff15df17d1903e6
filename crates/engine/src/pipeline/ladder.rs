//! What the encoder sends for a given bandwidth estimate: a bitrate, and a size and frame
//! rate from a ladder (720p30 → 540p30 → 360p30 → 270p30 → 180p30 → 180p15 for a 720p
//! camera; 480p30 → 360p30 → 240p30 → 240p15 for 640x480), so that a low estimate buys a
//! smaller, sharp picture rather than a large, smeared one the encoder cannot fit.
//! Sans-IO: the estimate and the time in, a decision out.
//!
//! Down at once when the budget falls well below what the current rung needs, after
//! [`DOWN_AFTER`] when only a little below; up only after the budget has covered the next
//! rung with a margin for [`UP_AFTER`], so the picture does not flap between sizes (each
//! change of size is a keyframe, which on a slow link is a freeze).
//!
//! The last rung's halved frame rate buys sharper frames when the path is short of
//! capacity. When the estimate is held down by random loss instead, the frame rate is
//! kept ([`Ladder::hold_frame_rate`]): at 15 fps a frame lost whole is missed for 133 ms,
//! and its loss shows only when the next frame arrives 66 ms later. At 40 % loss each way
//! (`bench --net loss40`, seeds 1–4, 20 s), keeping 30 fps cut the frozen time per
//! direction from 1.9–3.5 s to 0.2–1.8 s, the freezes from 7–14 to 1–8 and the longest
//! still from 0.29–0.49 s to 0.18–0.31 s.

use std::time::{Duration, Instant};

/// Reserved for audio (Opus at up to 32 kbit/s, with RTP/SRTP/UDP overhead).
pub const AUDIO_RESERVE_BPS: u64 = 48_000;
/// The encoder gets this share of what is left (headers, retransmissions).
const VIDEO_SHARE: f64 = 0.9;
/// The target (all media) at which the encoder gets `video_bps`: the inverse of the
/// budget in [`Ladder::decide`].
pub fn target_for_video(video_bps: u32) -> u32 {
    (f64::from(video_bps) / VIDEO_SHARE) as u32 + AUDIO_RESERVE_BPS as u32 + 1
}

/// The least we ask of the encoder.
pub const MIN_VIDEO_BPS: u32 = 30_000;
/// What a rung needs, in bits per pixel per frame (the moving test pattern needs ~0.06
/// before openh264 runs out of quantiser; camera pictures need less).
const BITS_PER_PIXEL: f64 = 0.05;
/// A rung up must be covered by this much more than it needs ...
const UP_MARGIN: f64 = 1.3;
/// ... for this long.
pub const UP_AFTER: Duration = Duration::from_secs(2);
/// A budget at least this share of what the current rung needs keeps the rung ...
const DOWN_AT_ONCE: f64 = 0.75;
/// ... for this long. On a 500 kbit/s uplink the estimate dipped just under 480x360's
/// needs after each step up (the step's keyframe filled the queue) and recovered within
/// a second; stepping straight down cost a second keyframe and a second freeze, every
/// ~5 s.
pub const DOWN_AFTER: Duration = Duration::from_secs(1);
/// Narrower than this is not worth scaling to; the last rung halves the frame rate.
const MIN_WIDTH: usize = 320;

/// One way of sending: a size and a frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
}

impl Rung {
    /// The least bitrate this rung looks acceptable at.
    pub fn needs_bps(&self) -> f64 {
        (self.width * self.height) as f64 * f64::from(self.fps) * BITS_PER_PIXEL
    }
}

/// The rungs for a source of `width` x `height` at `fps`, best first.
pub fn rungs(width: usize, height: usize, fps: u32) -> Vec<Rung> {
    let mut out = vec![Rung { width, height, fps }];
    for (num, den) in [(3, 4), (1, 2), (3, 8), (1, 4)] {
        let (w, h) = (width * num / den, height * num / den);
        // Even sizes only (I420), and exact, so the barcode reader can undo the scale.
        if w < MIN_WIDTH
            || !w.is_multiple_of(2)
            || !h.is_multiple_of(2)
            || !(width * num).is_multiple_of(den)
        {
            break;
        }
        out.push(Rung {
            width: w,
            height: h,
            fps,
        });
    }
    let last = *out.last().unwrap_or(&Rung { width, height, fps });
    if fps > 15 {
        out.push(Rung { fps: 15, ..last });
    }
    out
}

/// What the encoder should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub rung: Rung,
    pub bitrate_bps: u32,
}

#[derive(Debug)]
pub struct Ladder {
    rungs: Vec<Rung>,
    ceiling_bps: u32,
    current: usize,
    /// Since when the budget has covered the next rung up.
    up_since: Option<Instant>,
    /// Since when the budget has been a little short of the current rung's needs.
    down_since: Option<Instant>,
    /// Keep the source's frame rate: no rung below the last one at it.
    hold_frame_rate: bool,
}

impl Ladder {
    /// A ladder for this source, never asking for more than `ceiling_bps` of video.
    pub fn new(width: usize, height: usize, fps: u32, ceiling_bps: u32) -> Self {
        Self {
            rungs: rungs(width, height, fps),
            ceiling_bps: ceiling_bps.max(MIN_VIDEO_BPS),
            current: 0,
            up_since: None,
            down_since: None,
            hold_frame_rate: false,
        }
    }

    /// Whether to keep the source's frame rate however low the estimate (the path loses
    /// packets at random rather than running out of capacity). Takes effect at the next
    /// [`Ladder::decide`]; a change of frame rate alone needs no keyframe.
    pub fn hold_frame_rate(&mut self, hold: bool) {
        self.hold_frame_rate = hold;
    }

    /// The lowest rung allowed now.
    fn lowest(&self) -> usize {
        let last = self.rungs.len() - 1;
        if self.hold_frame_rate {
            let fps = self.rungs[0].fps;
            (0..=last)
                .rev()
                .find(|&i| self.rungs[i].fps == fps)
                .unwrap_or(last)
        } else {
            last
        }
    }

    /// The source this ladder was built for.
    pub fn source(&self) -> Rung {
        self.rungs[0]
    }

    /// The decision for an estimate of `target_bps` for all media (`0`: none yet, send at
    /// the ceiling as before congestion control).
    pub fn decide(&mut self, target_bps: u64, now: Instant) -> Decision {
        if target_bps == 0 {
            return Decision {
                rung: self.rungs[self.current],
                bitrate_bps: self.ceiling_bps,
            };
        }
        let budget = (target_bps.saturating_sub(AUDIO_RESERVE_BPS) as f64 * VIDEO_SHARE)
            .clamp(f64::from(MIN_VIDEO_BPS), f64::from(self.ceiling_bps));
        // Down as far as needed: at once when well short of the current rung, after
        // DOWN_AFTER when only a little.
        let lowest = self.lowest();
        if self.current > lowest {
            self.current = lowest;
            self.up_since = None;
        }
        let mut stepped = false;
        while self.current < lowest && budget < self.rungs[self.current].needs_bps() {
            let slight = budget >= self.rungs[self.current].needs_bps() * DOWN_AT_ONCE;
            if slight && !stepped {
                let since = *self.down_since.get_or_insert(now);
                if now.saturating_duration_since(since) < DOWN_AFTER {
                    break;
                }
            }
            self.current += 1;
            self.up_since = None;
            stepped = true;
        }
        if stepped || budget >= self.rungs[self.current].needs_bps() {
            self.down_since = None;
        }
        // Up one rung once the budget has covered it, with a margin, for long enough.
        if self.current > 0 && budget >= self.rungs[self.current - 1].needs_bps() * UP_MARGIN {
            let since = *self.up_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= UP_AFTER {
                self.current -= 1;
                self.up_since = None;
            }
        } else {
            self.up_since = None;
        }
        Decision {
            rung: self.rungs[self.current],
            bitrate_bps: budget as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladders_for_common_cameras() {
        let sizes = |w, h| -> Vec<(usize, usize, u32)> {
            rungs(w, h, 30)
                .iter()
                .map(|r| (r.width, r.height, r.fps))
                .collect()
        };
        assert_eq!(
            sizes(1280, 720),
            vec![
                (1280, 720, 30),
                (960, 540, 30),
                (640, 360, 30),
                (480, 270, 30),
                (320, 180, 30),
                (320, 180, 15)
            ]
        );
        assert_eq!(
            sizes(640, 480),
            vec![
                (640, 480, 30),
                (480, 360, 30),
                (320, 240, 30),
                (320, 240, 15)
            ]
        );
        assert_eq!(sizes(320, 240), vec![(320, 240, 30), (320, 240, 15)]);
        assert_eq!(rungs(320, 240, 15).len(), 1);
    }

    #[test]
    fn a_falling_estimate_steps_down_at_once_and_a_rising_one_up_slowly() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(640, 480, 30, 1_000_000);
        let d = ladder.decide(2_000_000, t0);
        assert_eq!((d.rung.width, d.bitrate_bps), (640, 1_000_000));
        // 300 kbit/s: below 640x480 and 480x360's needs; 320x240 at 30 fps fits.
        let d = ladder.decide(300_000, t0 + Duration::from_secs(1));
        assert_eq!((d.rung.width, d.rung.fps), (320, 30));
        assert!(d.bitrate_bps < 300_000);
        // Recovered: one rung up only after UP_AFTER, then the next.
        let mut t = t0 + Duration::from_secs(2);
        assert_eq!(ladder.decide(2_000_000, t).rung.width, 320);
        t += UP_AFTER;
        assert_eq!(ladder.decide(2_000_000, t).rung.width, 480);
        t += Duration::from_millis(100);
        assert_eq!(ladder.decide(2_000_000, t).rung.width, 480);
        t += UP_AFTER;
        assert_eq!(ladder.decide(2_000_000, t).rung.width, 640);
    }

    #[test]
    fn a_dip_resets_the_wait_to_go_up() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(640, 480, 30, 1_000_000);
        ladder.decide(300_000, t0);
        ladder.decide(2_000_000, t0 + Duration::from_secs(1));
        ladder.decide(300_000, t0 + Duration::from_millis(2500));
        let d = ladder.decide(2_000_000, t0 + Duration::from_millis(3100));
        assert_eq!(d.rung.width, 320, "the dip must restart the wait");
    }

    #[test]
    fn a_budget_a_little_short_keeps_the_rung_for_a_while() {
        let t0 = Instant::now();
        let mut ladder = Ladder::new(640, 480, 30, 1_000_000);
        let at_480 = |share: f64| {
            let needs = rungs(640, 480, 30)[1].needs_bps() * share;
            u64::from(target_for_video(needs as u32))
        };
        // Down to 480x360 (well short of 640x480's needs).
        assert_eq!(ladder.decide(at_480(1.0), t0).rung.width, 480);
        // 90 % of 480x360's needs: kept for DOWN_AFTER ...
        let mut t = t0 + Duration::from_secs(1);
        assert_eq!(ladder.decide(at_480(0.9), t).rung.width, 480);
        t += DOWN_AFTER - Duration::from_millis(100);
        assert_eq!(ladder.decide(at_480(0.9), t).rung.width, 480);
        // ... a recovery in time restarts the wait ...
        t += Duration::from_millis(50);
        assert_eq!(ladder.decide(at_480(1.0), t).rung.width, 480);
        t += Duration::from_millis(50);
        assert_eq!(ladder.decide(at_480(0.9), t).rung.width, 480);
        t += DOWN_AFTER - Duration::from_millis(100);
        assert_eq!(ladder.decide(at_480(0.9), t).rung.width, 480);
        // ... and a shortfall that lasts steps down.
        t += Duration::from_millis(100);
        assert_eq!(ladder.decide(at_480(0.9), t).rung.width, 320);
        // 70 % of a rung's needs: down at once.
        let mut ladder = Ladder::new(640, 480, 30, 1_000_000);
        ladder.decide(at_480(1.0), t0);
        assert_eq!(ladder.decide(at_480(0.7), t0).rung.width, 320);
    }

    #[test]
    fn the_floor_is_the_smallest_rung_at_half_rate_and_the_bitrate_never_below_the_minimum() {
        let mut ladder = Ladder::new(1280, 720, 30, 2_500_000);
        let d = ladder.decide(50_000, Instant::now());
        assert_eq!(
            d.rung,
            Rung {
                width: 320,
                height: 180,
                fps: 15
            }
        );
        assert_eq!(d.bitrate_bps, MIN_VIDEO_BPS);
    }

    #[test]
    fn under_random_loss_the_floor_keeps_the_frame_rate() {
        let mut ladder = Ladder::new(640, 480, 30, 1_000_000);
        let t0 = Instant::now();
        let at_floor = |d: Decision| (d.rung.width, d.rung.fps);
        assert_eq!(at_floor(ladder.decide(150_000, t0)), (320, 15));
        // The loss turns out random: back to 30 fps at once, at the same size.
        ladder.hold_frame_rate(true);
        assert_eq!(at_floor(ladder.decide(150_000, t0)), (320, 30));
        // However low the estimate, while it lasts.
        let t = t0 + Duration::from_secs(5);
        assert_eq!(at_floor(ladder.decide(50_000, t)), (320, 30));
        // The size still follows the estimate.
        let t = t + UP_AFTER * 2;
        ladder.decide(2_000_000, t);
        let d = ladder.decide(2_000_000, t + UP_AFTER);
        assert_eq!(at_floor(d), (480, 30));
        // A path that runs out of capacity gets the halved frame rate again.
        ladder.hold_frame_rate(false);
        let t = t + UP_AFTER * 2;
        assert_eq!(at_floor(ladder.decide(50_000, t)), (320, 15));
    }

    #[test]
    fn at_the_most_congestion_control_allows_the_encoder_gets_its_ceiling() {
        let mut ladder = Ladder::new(1280, 720, 30, 2_500_000);
        let d = ladder.decide(u64::from(target_for_video(2_500_000)), Instant::now());
        assert_eq!(d.bitrate_bps, 2_500_000);
    }

    #[test]
    fn without_an_estimate_the_ceiling_is_used() {
        let mut ladder = Ladder::new(640, 480, 30, 1_000_000);
        let d = ladder.decide(0, Instant::now());
        assert_eq!((d.rung.width, d.bitrate_bps), (640, 1_000_000));
    }
}
