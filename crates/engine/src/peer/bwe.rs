//! Our bandwidth estimate: how fast we may send, from the peer's transport-wide feedback
//! (TWCC). Sans-IO: reports and instants in, a target bitrate out, published to the
//! encoder through [`Bandwidth`].
//!
//! Built from the delay-based parts of GCC in webrtc-rs's interceptors (the trend of the
//! one-way delay gradient, the overuse detector and its AIMD rate controller), with two
//! changes measured in `chingu-cli bench --net` (docs/decisions/0010-congestion-control.md):
//! - **Startup**: the controller's 8 %/s climb takes ~15 s from 300 kbit/s to 1 Mbit/s.
//!   Until the first overuse (or 10 s), the target grows by a quarter every 200 ms while
//!   the peer receives at least half of it, and backs off at the first sign of a queue.
//! - **A standing queue counts as overuse.** GCC's delay half reacts to a *growing* queue;
//!   a drop-tail queue that filled (during startup, or a keyframe into a slow uplink)
//!   stays full at constant delay, loses what does not fit, and shows no gradient. So the
//!   one-way delay is also compared with its minimum over the last [`BASE_WINDOW`]: more
//!   than [`QUEUE_LIMIT`] above it is overuse.
//! - **Recovery.** After a back-off GCC climbs additively near the rate that last caused
//!   it (~60 kbit/s per second): a link that dipped for a few seconds and came back took
//!   minutes to be used again. After [`CALM_AFTER`] without a queue, overuse or loss, the
//!   target grows by a tenth every 200 ms again, up to 90 % of what the path carried when
//!   a queue last formed (remembered for [`LIMIT_MEMORY`]), and by 3 % per step beyond.
//! - **Loss alone does not drive the rate down.** GCC's loss half cuts the rate when
//!   more than 10 % is lost, so on a lossy Wi-Fi link (random loss, no queue) it falls to
//!   its floor and the picture with it, while the link has room. Here loss above 10 % stops
//!   the rate from climbing, and brings it down only together with a queue (above
//!   [`LOSSY_QUEUE_LIMIT`]): loss from a full queue is congestion, loss without one is the
//!   medium. Retransmission and FEC deal with random loss.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    BandwidthEstimator, EstimatorStats, OveruseDetector, PacketReport, RateController,
    SlopeEstimator, Usage,
};

use crate::packets::Bandwidth;

mod coverage;
pub use coverage::FeedbackCoverage;
pub(super) use coverage::LossRecorder;

/// Where the estimate starts (libwebrtc: 300 kbit/s).
pub const INITIAL_BPS: f64 = 500_000.0;
/// The floor: audio and a small picture still fit.
pub const MIN_BPS: f64 = 80_000.0;
/// How often the startup ramp steps.
const RAMP_INTERVAL: Duration = Duration::from_millis(200);
const RAMP_FACTOR: f64 = 1.25;
/// The ramp ends by this time even if nothing has pushed back.
const STARTUP_LIMIT: Duration = Duration::from_secs(10);
/// Calm (no queue, no overuse, little loss) for this long lets the target grow fast again.
pub const CALM_AFTER: Duration = Duration::from_secs(2);
/// Growth per step while calm, below what the path last carried before a queue formed ...
const RECOVERY_FACTOR: f64 = 1.1;
/// ... and above it (probing carefully past a known limit).
const PROBE_FACTOR: f64 = 1.03;
/// What the path last carried is forgotten after this long (the link may have changed).
const LIMIT_MEMORY: Duration = Duration::from_secs(10);
/// A queue below this (ms) is calm.
const CALM_QUEUE_MS: f64 = 15.0;
/// Above this loss fraction the target does not grow.
const HIGH_LOSS: f64 = 0.10;
/// Above this, the target comes down even without a queue: every frame of many packets
/// is then likely to lose one, and a smaller, slower picture (fewer packets per frame)
/// gets through where a large one freezes.
const SEVERE_LOSS: f64 = 0.32;
/// Where severe loss stops bringing the target down (the lowest rung and audio).
const SEVERE_LOSS_FLOOR: f64 = 150_000.0;
/// Smoothing of the loss fraction per feedback batch.
const LOSS_WEIGHT: f64 = 0.2;
/// The base (queue-free) one-way delay is the least seen over this long.
pub const BASE_WINDOW: Duration = Duration::from_secs(10);
/// One-way delay this far above the base is a standing queue: overuse. (A batch's mean
/// under ±30 ms of jitter sits ~30 ms above the least.)
pub const QUEUE_LIMIT: Duration = Duration::from_millis(60);
/// With more than [`HIGH_LOSS`], a smaller queue is enough.
pub const LOSSY_QUEUE_LIMIT: Duration = Duration::from_millis(30);

/// Packets sent at most this far apart make a pair whose spacing on arrival tells
/// whether a bottleneck narrower than our pace spread them out.
const PAIR_GAP: Duration = Duration::from_millis(10);
/// A batch whose pairs arrive (three in four) this much further apart than they were
/// sent went through such a bottleneck ...
const DILATION_MS: f64 = 0.5;
/// ... and the path counts as one for this long after.
const BOTTLENECK_MEMORY: Duration = Duration::from_secs(2);

/// What the peer received, from the arrival times it reports (not from when its
/// reports reach us, which come in bursts): bytes over the last [`DELIVERY_WINDOW`] of
/// arrivals.
#[derive(Debug, Default)]
struct DeliveryRate {
    arrivals: std::collections::VecDeque<(f64, usize)>,
    bytes: usize,
}

/// The span of arrivals the delivery rate is measured over, ms.
const DELIVERY_WINDOW_MS: f64 = 1000.0;
/// ... and, while a queue stands (the link is saturated, so a short span measures it),
/// the span the rate it carries is measured over, ms.
const SATURATED_WINDOW_MS: f64 = 300.0;

impl DeliveryRate {
    fn add(&mut self, arrival_ms: f64, size: usize) {
        // Reports are in send order; arrivals are close to it.
        self.arrivals.push_back((arrival_ms, size));
        self.bytes += size;
        let newest = self
            .arrivals
            .iter()
            .map(|(a, _)| *a)
            .fold(f64::MIN, f64::max);
        while let Some(&(oldest, size)) = self.arrivals.front() {
            if newest - oldest <= DELIVERY_WINDOW_MS {
                break;
            }
            self.arrivals.pop_front();
            self.bytes -= size;
        }
    }

    /// Bits per second over the last `window_ms` of arrivals, once a tenth of a second of
    /// them is known: the bytes that arrived after the window's first packet, over the
    /// time since it.
    fn recent_rate(&self, window_ms: f64) -> Option<f64> {
        let newest = self
            .arrivals
            .iter()
            .map(|(a, _)| *a)
            .fold(f64::MIN, f64::max);
        let mut first = f64::MAX;
        let mut first_size = 0;
        let mut bytes = 0;
        for &(arrival, size) in self
            .arrivals
            .iter()
            .filter(|(a, _)| newest - *a <= window_ms)
        {
            bytes += size;
            if arrival < first {
                first = arrival;
                first_size = size;
            }
        }
        let span_ms = newest - first;
        (span_ms >= 100.0).then(|| (bytes - first_size) as f64 * 8.0 * 1000.0 / span_ms)
    }

    /// Bits per second, once a tenth of a second of arrivals is known.
    fn rate(&self) -> Option<f64> {
        let (min, max) = self
            .arrivals
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), (a, _)| {
                (lo.min(*a), hi.max(*a))
            });
        let span_ms = max - min;
        (span_ms >= 100.0).then(|| self.bytes as f64 * 8.0 * 1000.0 / span_ms)
    }
}

/// The least one-way delay (receiver clock minus sender clock, so only differences
/// mean anything) over a sliding window, in 1 s buckets.
#[derive(Debug, Default)]
struct BaseDelay {
    buckets: std::collections::VecDeque<(Instant, f64)>,
}

impl BaseDelay {
    fn add(&mut self, now: Instant, delay_ms: f64) {
        match self.buckets.back_mut() {
            Some((start, min))
                if now.saturating_duration_since(*start) < Duration::from_secs(1) =>
            {
                *min = min.min(delay_ms);
            }
            _ => self.buckets.push_back((now, delay_ms)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) > BASE_WINDOW)
        {
            self.buckets.pop_front();
        }
    }

    fn min(&self) -> Option<f64> {
        self.buckets.iter().map(|(_, m)| *m).reduce(f64::min)
    }
}

/// Whether pairs of consecutive reports sent at most [`PAIR_GAP`] apart (and both
/// received) went through a bottleneck narrower than our pace: three in four of them
/// arrived more than [`DILATION_MS`] further apart than they were sent. `None` without
/// three such pairs.
///
/// A narrow link spreads every pair out by its own packet time (1,200 bytes at 1 Mbit/s:
/// 9.6 ms, less what our pace already spaced). Jitter does not spread most of them: a
/// queue in an access point that keeps packets in order bunches about half the pairs
/// (the second waits for the first) and spreads the others, and jitter that reorders
/// brings half of them closer. (The median alone swung by several milliseconds from one
/// batch to the next under ±30 ms of jitter.)
fn dilated(reports: &[PacketReport]) -> Option<bool> {
    let mut dilations: Vec<f64> = reports
        .windows(2)
        .filter_map(|pair| {
            let (first, second) = (&pair[0], &pair[1]);
            let sent = second.departure.checked_duration_since(first.departure)?;
            if sent > PAIR_GAP {
                return None;
            }
            let arrived =
                second.arrival?.as_secs_f64() * 1000.0 - first.arrival?.as_secs_f64() * 1000.0;
            Some(arrived - sent.as_secs_f64() * 1000.0)
        })
        .collect();
    if dilations.len() < 3 {
        return None;
    }
    dilations.sort_by(f64::total_cmp);
    Some(dilations[dilations.len() / 4] > DILATION_MS)
}

pub struct Estimator {
    slope: SlopeEstimator,
    detector: OveruseDetector,
    received: DeliveryRate,
    control: RateController,
    min: f64,
    max: f64,
    started: Option<Instant>,
    /// The startup ramp is on.
    startup: bool,
    last_ramp: Option<Instant>,
    /// Since when nothing has pushed back (queue, overuse, loss).
    calm_since: Option<Instant>,
    /// The delivered rate when a standing queue last formed, and when.
    known_limit: Option<(f64, Instant)>,
    loss: Option<f64>,
    target: f64,
    shared: Arc<Bandwidth>,
    /// Departure times are measured from here.
    epoch: Option<Instant>,
    base: BaseDelay,
    /// When pairs of our packets last arrived spread out (see [`PAIR_GAP`]), and whether
    /// any pair has been measured yet.
    dilated_at: Option<Instant>,
    pairs_seen: bool,
    /// What the peer's feedback named as lost ([`coverage`]).
    coverage: Arc<FeedbackCoverage>,
}

impl Estimator {
    /// Starting at `initial`, within `MIN_BPS..=max`; every change is published to `shared`.
    pub fn new(initial: f64, max: f64, shared: Arc<Bandwidth>) -> Self {
        let max = max.max(MIN_BPS);
        let initial = initial.clamp(MIN_BPS, max);
        shared.target_bps.store(initial as u64, Relaxed);
        Self {
            slope: SlopeEstimator::new(),
            detector: OveruseDetector::new(),
            received: DeliveryRate::default(),
            control: RateController::new(initial, MIN_BPS, max),
            min: MIN_BPS,
            max,
            started: None,
            startup: true,
            last_ramp: None,
            calm_since: None,
            known_limit: None,
            loss: None,
            target: initial,
            shared,
            epoch: None,
            base: BaseDelay::default(),
            dilated_at: None,
            pairs_seen: false,
            coverage: Arc::default(),
        }
    }

    /// Where a [`LossRecorder`] marks what the peer's feedback names as lost; without
    /// one, no packet counts as lost.
    pub fn coverage(&self) -> Arc<FeedbackCoverage> {
        Arc::clone(&self.coverage)
    }

    fn publish(&self) {
        self.shared.target_bps.store(self.target as u64, Relaxed);
        if let Some(loss) = self.loss {
            self.shared
                .loss_permille
                .store((loss * 1000.0).round() as u32, Relaxed);
        }
    }
}

impl BandwidthEstimator for Estimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        let started = *self.started.get_or_insert(now);
        let mut usage = self.detector.usage();
        for report in reports {
            if let Some(arrival) = report.arrival {
                self.received
                    .add(arrival.as_secs_f64() * 1000.0, report.size);
            }
            if let Some(trend) = self.slope.accumulate(report) {
                usage = self.detector.update(trend.at, trend.estimate_ms);
            }
        }
        // Queueing delay: this batch's mean one-way delay above the window's least.
        let epoch = *self.epoch.get_or_insert(reports[0].departure);
        let delays: Vec<f64> = reports
            .iter()
            .filter_map(|r| {
                let arrival = r.arrival?.as_secs_f64() * 1000.0;
                let departure = r.departure.checked_duration_since(epoch)?.as_secs_f64() * 1000.0;
                Some(arrival - departure)
            })
            .collect();
        let mut queue_ms = 0.0;
        if !delays.is_empty() {
            for &d in &delays {
                self.base.add(now, d);
            }
            let mean = delays.iter().sum::<f64>() / delays.len() as f64;
            queue_ms = self.base.min().map_or(0.0, |base| mean - base);
        }
        let dilation = dilated(reports);
        if let Some(dilation) = dilation {
            self.pairs_seen = true;
            if dilation {
                self.dilated_at = Some(now);
            }
        }
        let bottleneck = !self.pairs_seen
            || self
                .dilated_at
                .is_some_and(|at| now.saturating_duration_since(at) < BOTTLENECK_MEMORY);
        let received = self.received.rate();
        // A packet no feedback named (that feedback was lost) is neither lost nor arrived,
        // and nor is the second copy of a packet (coverage.rs).
        let (mut lost, mut known) = (0usize, 0usize);
        for report in reports {
            let said = if report.is_twcc {
                self.coverage
                    .take(report.twcc_sequence_number, report.arrived)
            } else {
                Some(false)
            };
            match said {
                None => {}
                Some(true) => {
                    known += 1;
                    lost += 1;
                }
                Some(false) => known += usize::from(report.arrived),
            }
        }
        let loss = match (self.loss, known) {
            (previous, 0) => previous.unwrap_or(0.0),
            (Some(avg), _) => avg + LOSS_WEIGHT * (lost as f64 / known as f64 - avg),
            (None, _) => lost as f64 / known as f64,
        };
        self.loss = Some(loss);
        let queue_limit = if loss > HIGH_LOSS {
            LOSSY_QUEUE_LIMIT
        } else {
            QUEUE_LIMIT
        };
        if queue_ms > queue_limit.as_secs_f64() * 1000.0 {
            usage = Usage::Over;
        }
        self.shared
            .queue_delay_ms
            .store(queue_ms.max(0.0) as u32, Relaxed);
        self.shared.bottleneck.store(bottleneck, Relaxed);
        tracing::trace!(
            ?usage,
            received,
            target = self.target,
            queue_ms,
            ?dilation,
            bottleneck,
            loss,
            startup = self.startup,
            reports = reports.len(),
            unknown = reports.len() - known,
            "feedback"
        );

        if self.startup {
            if usage == Usage::Over || now.saturating_duration_since(started) > STARTUP_LIMIT {
                self.startup = false;
                // The controller takes over from here (and backs off from what arrives).
                self.control = RateController::new(self.target, self.min, self.max);
            } else {
                let due = self
                    .last_ramp
                    .is_none_or(|at| now.saturating_duration_since(at) >= RAMP_INTERVAL);
                let keeping_up = received.is_some_and(|r| r >= self.target * 0.5);
                if due && keeping_up && loss < HIGH_LOSS {
                    self.target = (self.target * RAMP_FACTOR).clamp(self.min, self.max);
                    self.last_ramp = Some(now);
                }
                self.control = RateController::new(self.target, self.min, self.max);
                self.publish();
                return;
            }
        }
        let before = self.target;
        let mut next = self.control.update(now, usage, received);
        if queue_ms > queue_limit.as_secs_f64() * 1000.0
            && let Some(received) = self.received.recent_rate(SATURATED_WINDOW_MS).or(received)
        {
            // Below what arrives by enough to drain the queue within about a second
            // (the controller alone takes ~0.85: seconds of a full queue). With a queue
            // standing, the link is busy, so what arrived over the last moment is what it
            // carries: the second-long average still holds the rate from before a drop.
            self.known_limit = Some((received, now));
            let drain = (0.85 - queue_ms / 1000.0).max(0.5);
            let drained = (received * drain).clamp(self.min, self.max);
            if drained < next {
                next = drained;
                self.control = RateController::new(next, self.min, self.max);
            }
        }
        let calm = usage != Usage::Over && queue_ms < CALM_QUEUE_MS && loss < HIGH_LOSS / 2.0;
        if !calm {
            self.calm_since = None;
        } else {
            let since = *self.calm_since.get_or_insert(now);
            let due = self
                .last_ramp
                .is_none_or(|at| now.saturating_duration_since(at) >= RAMP_INTERVAL);
            let using_it = received.is_some_and(|r| r >= before * 0.5);
            if now.saturating_duration_since(since) >= CALM_AFTER && due && using_it {
                let limit = self
                    .known_limit
                    .filter(|(_, at)| now.saturating_duration_since(*at) < LIMIT_MEMORY)
                    .map(|(rate, _)| rate * 0.9);
                let factor = match limit {
                    Some(limit) if before * RECOVERY_FACTOR > limit => PROBE_FACTOR,
                    _ => RECOVERY_FACTOR,
                };
                let grown = (before * factor).clamp(self.min, self.max);
                if grown > next {
                    next = grown;
                    self.control = RateController::new(next, self.min, self.max);
                }
                self.last_ramp = Some(now);
            }
        }
        self.target = if loss > SEVERE_LOSS {
            // Cut a little per report (~10 %/s at 10 reports a second), not below the floor.
            let cut = (before * (1.0 - 0.02 * loss / SEVERE_LOSS)).max(SEVERE_LOSS_FLOOR);
            let down = next.min(cut);
            self.control = RateController::new(down, self.min, self.max);
            down
        } else if loss > HIGH_LOSS && next > before {
            // Losing a lot but not queueing: hold, do not climb.
            self.control = RateController::new(before, self.min, self.max);
            before
        } else {
            next
        }
        .clamp(self.min, self.max);
        self.publish();
    }

    fn target_bitrate(&self) -> f64 {
        self.target
    }

    fn stats(&self) -> EstimatorStats {
        let mut stats = EstimatorStats::default();
        stats.delay_based_bitrate = Some(self.control.target());
        stats.packet_loss = self.loss;
        stats
    }
}

#[cfg(test)]
mod tests;
