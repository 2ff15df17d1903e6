//! The decoding thread of incoming video: holds each frame until its playout time
//! ([`Playout`]: at once unless repairs are slow), decodes it, counts W3C freezes and
//! judder, and hands the picture to the sink. It blocks on its queue until a frame or
//! the next held frame's playout time, and drains the queue while it holds frames.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use chingu_media::I420Frame;
use chingu_media::frame::now_us;
use chingu_media::h264::H264Decoder;
use chingu_media::h264_syntax::nal_units;
use tokio::sync::Notify;

use super::config::{FrameInfo, VideoSink};
use super::playout::Playout;
use super::video_recv::{DecodeJob, contains_idr};
use crate::stats::MediaCounters;

/// The decoder gives a picture for every complete frame; this many in a row without one
/// mean it lost its references without saying so, and only a keyframe helps.
const FRAMES_WITHOUT_PICTURE: u32 = 3;

/// W3C's freeze: an interval between rendered frames over max(3 × the average interval,
/// the average + 150 ms).
#[derive(Debug)]
struct FreezeDetector {
    last: Option<Instant>,
    average: Duration,
}

impl FreezeDetector {
    fn new() -> Self {
        Self {
            last: None,
            average: Duration::from_millis(33),
        }
    }

    /// A frame was rendered at `now`; returns how long the picture was frozen before it.
    fn rendered(&mut self, now: Instant) -> Option<Duration> {
        let gap = self.last.replace(now).map(|last| now - last)?;
        let threshold = (self.average * 3).max(self.average + Duration::from_millis(150));
        if gap > threshold {
            Some(gap)
        } else {
            self.average = (self.average * 7 + gap) / 8;
            None
        }
    }
}

/// Decodes until the receive task ends (its queue closes). Each frame is scheduled on
/// arrival ([`Playout`]) and decoded and shown when due; the queue is drained meanwhile,
/// so holding frames never fills it.
pub(crate) fn video_decode_thread(
    jobs: std_mpsc::Receiver<DecodeJob>,
    sink: Option<VideoSink>,
    counters: Arc<MediaCounters>,
    wants_keyframe: Arc<Notify>,
) {
    let decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("H.264 decoder: {e}");
            return;
        }
    };
    let Ok(frame) = I420Frame::new(2, 2) else {
        return;
    };
    let mut renderer = Renderer {
        decoder,
        frame,
        sink,
        counters,
        wants_keyframe,
        freezes: FreezeDetector::new(),
        last_shown: None,
        last_rtp: None,
        without_picture: 0,
    };
    let mut playout = Playout::new(Instant::now());
    let mut held: VecDeque<(Instant, DecodeJob)> = VecDeque::new();
    let mut logged_delay = Duration::ZERO;
    loop {
        let next = match held.front().map(|&(due, _)| due) {
            None => jobs.recv().map(Some).map_err(drop),
            Some(due) => {
                let wait = due.saturating_duration_since(Instant::now());
                if wait.is_zero() || held.len() >= MAX_HELD {
                    Ok(None)
                } else {
                    match jobs.recv_timeout(wait) {
                        Ok(job) => Ok(Some(job)),
                        Err(std_mpsc::RecvTimeoutError::Timeout) => Ok(None),
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(()),
                    }
                }
            }
        };
        match next {
            Err(()) => return,
            Ok(Some(job)) => {
                let due = playout.schedule(job.rtp_timestamp, job.complete, job.repaired, job.rtt);
                let delay = playout.delay();
                if delay.abs_diff(logged_delay) >= Duration::from_millis(25) {
                    tracing::debug!(delay_ms = delay.as_millis() as u64, "video playout delay");
                    logged_delay = delay;
                }
                held.push_back((due, job));
            }
            Ok(None) => {
                if let Some((_, job)) = held.pop_front() {
                    renderer.show(job);
                }
            }
        }
    }
}

/// Frames held for their playout time at most (a safety bound: at 30 fps the longest
/// delay holds 12).
const MAX_HELD: usize = 64;

/// The decoder and what it shows to.
struct Renderer {
    decoder: H264Decoder,
    frame: I420Frame,
    sink: Option<VideoSink>,
    counters: Arc<MediaCounters>,
    wants_keyframe: Arc<Notify>,
    freezes: FreezeDetector,
    last_shown: Option<Instant>,
    last_rtp: Option<u32>,
    without_picture: u32,
}

impl Renderer {
    /// Decodes a frame that is due and hands its picture to the sink.
    fn show(&mut self, job: DecodeJob) {
        let counters = &self.counters;
        let started = Instant::now();
        match self.decoder.decode(&job.annex_b, &mut self.frame) {
            Ok(true) => self.without_picture = 0,
            Ok(false) => {
                counters.frames_without_picture.fetch_add(1, Relaxed);
                self.without_picture += 1;
                if self.without_picture >= FRAMES_WITHOUT_PICTURE {
                    tracing::debug!(
                        without_picture = self.without_picture,
                        "the decoder gives no pictures"
                    );
                    self.wants_keyframe.notify_one();
                    self.without_picture = 0;
                }
                return;
            }
            Err(e) => {
                // What went in: the frame's NAL unit types and sizes (a corrupt one).
                let nals: Vec<(u8, usize)> = nal_units(&job.annex_b)
                    .map(|nal| (nal[0] & 0x1f, nal.len()))
                    .collect();
                tracing::debug!(ts = job.rtp_timestamp, ?nals, "decode failed: {e}");
                counters.decode_errors.fetch_add(1, Relaxed);
                self.wants_keyframe.notify_one();
                return;
            }
        }
        let frame = &self.frame;
        let now = Instant::now();
        counters
            .total_decode_time_us
            .fetch_add((now - started).as_micros() as u64, Relaxed);
        // From complete to shown: the playout delay and the decoding.
        counters.video_jitter_buffer_delay_us.fetch_add(
            now.saturating_duration_since(job.complete).as_micros() as u64,
            Relaxed,
        );
        counters.video_jitter_buffer_emitted.fetch_add(1, Relaxed);
        if let Some(last) = self.last_shown.replace(now) {
            let gap = now.saturating_duration_since(last).as_micros() as u64;
            counters.total_inter_frame_delay_us.fetch_add(gap, Relaxed);
            counters
                .total_squared_inter_frame_delay_us2
                .fetch_add(gap.saturating_mul(gap), Relaxed);
        }
        counters.frames_decoded.fetch_add(1, Relaxed);
        if contains_idr(&job.annex_b) {
            counters.key_frames_decoded.fetch_add(1, Relaxed);
        }
        if counters.decode_width.swap(frame.width() as u32, Relaxed) != frame.width() as u32 {
            tracing::debug!(
                width = frame.width(),
                height = frame.height(),
                "incoming video: picture size"
            );
        }
        counters.decode_height.store(frame.height() as u32, Relaxed);
        let rtp_gap_ms = self
            .last_rtp
            .replace(job.rtp_timestamp)
            .map_or(0, |last| job.rtp_timestamp.wrapping_sub(last) / 90);
        if let Some(frozen) = self.freezes.rendered(now) {
            // What the freeze was: frames not sent (the media clock jumped as far), or a
            // frame that waited for its packets (assembly) or for a keyframe.
            tracing::debug!(
                frozen_ms = frozen.as_millis() as u64,
                rtp_gap_ms,
                assembly_ms = job.assembly.as_millis() as u64,
                keyframe = contains_idr(&job.annex_b),
                "incoming video: a freeze"
            );
            counters.freeze_count.fetch_add(1, Relaxed);
            counters
                .total_freezes_duration_us
                .fetch_add(frozen.as_micros() as u64, Relaxed);
        }
        if let Some(sink) = &self.sink {
            sink(
                frame,
                &FrameInfo {
                    rtp_timestamp: job.rtp_timestamp,
                    received_us: job.received_us,
                    decoded_us: now_us(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_well_over_the_frame_interval_is_a_freeze() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut freezes = FreezeDetector::new();
        assert_eq!(freezes.rendered(t0), None, "the first frame");
        let mut t = t0;
        for _ in 0..30 {
            t += ms(33);
            assert_eq!(freezes.rendered(t), None, "steady 30 fps");
        }
        t += ms(150);
        assert_eq!(freezes.rendered(t), None, "150 ms is under 33 + 150");
        t += ms(400);
        assert_eq!(freezes.rendered(t), Some(ms(400)));
    }
}
