//! Outgoing video: one thread captures (camera, pattern or relay), shows the local
//! preview, encodes H.264 and queues the frame for the transport. It blocks on its
//! source (the camera's or relay's slot, or the pattern's clock), never on a sleep loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chingu_media::audio_device::DeviceEvent;
use chingu_media::barcode::{self, Stamp};
use chingu_media::camera::Camera;
use chingu_media::frame::now_us;
use chingu_media::h264::{EncoderSettings, H264Encoder};
use chingu_media::pattern::TestPattern;
use chingu_media::y4m::Y4mFile;
use chingu_media::{I420Frame, MediaError};
use tokio::sync::mpsc;

use super::config::{Device, FrameInfo, MediaNotice, VideoSink, VideoSource};
use super::ladder::{Decision, Ladder};
use super::recovery::{Answer, SentFrames};
use super::relay::FrameRelay;
use super::reopen::Reopener;
use crate::packets::{Bandwidth, EncodedVideo, PictureFeedback};
use crate::stats::MediaCounters;

/// A frame is not encoded while the transport still holds this much video, at the
/// estimated rate: skipping a frame before encoding costs nothing else, while queueing
/// it would delay every later frame.
const MAX_BACKLOG: Duration = Duration::from_millis(250);
/// Keyframes the peer asks for (PLI) come at most this often (or every two round trips,
/// if longer): each costs many frames' worth of bits, and on a congested link a keyframe
/// answered before the last one could arrive is wasted.
const KEYFRAME_SPACING: Duration = Duration::from_millis(300);
/// An encoder rebuilt for a new rung makes its first keyframe at this share of the
/// rate (see where it is used).
const RESTART_IDR_RATE: f64 = 0.5;
/// A bitrate change smaller than this is not worth telling the encoder.
const RATE_STEP: f64 = 0.05;
/// Picture feedback held between two frames at most (it comes a few times a second).
const MAX_FEEDBACK: usize = 16;

/// The longest a source is waited on before the thread looks at its controls again.
pub(crate) const SOURCE_WAIT: Duration = Duration::from_millis(50);

/// What a call sends when the camera cannot be opened and fallback is on.
pub(crate) const FALLBACK_PATTERN: VideoSource = VideoSource::TestPattern {
    width: 640,
    height: 480,
    fps: 30,
};

/// Changes to the outgoing video during a call.
#[derive(Debug)]
pub(crate) enum VideoCtl {
    Source(Option<VideoSource>),
    Enabled(bool),
    /// What the peer's decoder has (recovery without keyframes).
    Feedback(PictureFeedback),
}

/// An open video source.
pub(crate) enum FrameSource {
    Pattern {
        pattern: TestPattern,
        interval: Duration,
        due: Instant,
    },
    Camera(Camera),
    Relay(Arc<FrameRelay>),
    File {
        file: Y4mFile,
        frames: u32,
        interval: Duration,
        due: Instant,
    },
}

/// Waits for the next tick of a clocked source (pattern, file): false if it is not due
/// within `max_wait`. Late by more than a frame (a stall), it skips ahead, not bursts.
fn tick(due: &mut Instant, interval: Duration, max_wait: Duration) -> bool {
    let now = Instant::now();
    if *due > now {
        std::thread::sleep((*due - now).min(max_wait));
    }
    let now = Instant::now();
    if *due > now {
        return false;
    }
    *due = (*due + interval).max(now);
    true
}

impl FrameSource {
    /// Waits up to `max_wait` for the next frame and writes it into `frame`; false when
    /// none came (`max_wait` zero: only looks).
    pub(crate) fn next_frame(&mut self, frame: &mut I420Frame, max_wait: Duration) -> bool {
        match self {
            FrameSource::Pattern {
                pattern,
                interval,
                due,
            } => {
                if !tick(due, *interval, max_wait) {
                    return false;
                }
                let capture = now_us();
                frame.capture_us = capture;
                pattern.draw(frame, capture);
                true
            }
            FrameSource::File {
                file,
                frames,
                interval,
                due,
            } => {
                if !tick(due, *interval, max_wait) {
                    return false;
                }
                let number = *frames;
                if let Err(e) = file.read(number as usize, frame) {
                    tracing::warn!("video file: {e}");
                    return false;
                }
                *frames = frames.wrapping_add(1);
                let capture = now_us();
                frame.capture_us = capture;
                barcode::write(frame, Stamp::new(number, capture));
                true
            }
            FrameSource::Relay(relay) => relay.wait_take(frame, max_wait),
            FrameSource::Camera(camera) => camera.wait_frame(frame, max_wait),
        }
    }

    /// Why the source stopped for good, if it did (a camera unplugged).
    pub(crate) fn ended(&self) -> Option<String> {
        match self {
            FrameSource::Camera(camera) => match camera.events.try_recv() {
                Ok(DeviceEvent::Ended { reason }) => Some(reason),
                Err(_) => None,
            },
            _ => None,
        }
    }
}

/// Opens `source`, writing its first size into `frame` where it is known.
pub(crate) fn open_video(
    source: &VideoSource,
    frame: &mut I420Frame,
) -> Result<FrameSource, MediaError> {
    match source {
        VideoSource::TestPattern { width, height, fps } => {
            frame.resize(*width as usize, *height as usize)?;
            Ok(FrameSource::Pattern {
                pattern: TestPattern::new(),
                interval: Duration::from_secs(1) / (*fps).clamp(1, 60),
                due: Instant::now(),
            })
        }
        VideoSource::Camera { id, request } => {
            Ok(FrameSource::Camera(Camera::open(id.as_deref(), *request)?))
        }
        VideoSource::Relay(relay) => Ok(FrameSource::Relay(Arc::clone(relay))),
        VideoSource::File(path) => {
            let file = Y4mFile::open(path)?;
            let header = file.header();
            frame.resize(header.width, header.height)?;
            Ok(FrameSource::File {
                file,
                frames: 0,
                interval: Duration::from_secs_f64(1.0 / header.fps.clamp(1.0, 60.0)),
                due: Instant::now(),
            })
        }
    }
}

/// Opens `source`; when that fails and `fallback` is on, the synthetic pattern instead.
/// A failure is reported through `report` (saying when the pattern stands in).
pub(crate) fn open_video_or_pattern(
    source: &VideoSource,
    fallback: bool,
    frame: &mut I420Frame,
    report: impl FnOnce(Device, String),
) -> Option<FrameSource> {
    match open_video(source, frame) {
        Ok(source) => Some(source),
        Err(e) if fallback => {
            report(
                Device::Camera,
                format!("{e}; sending a test pattern instead"),
            );
            open_video(&FALLBACK_PATTERN, frame).ok()
        }
        Err(e) => {
            report(Device::Camera, e.to_string());
            None
        }
    }
}

pub(crate) struct VideoSendCtx {
    pub(crate) source: Option<VideoSource>,
    pub(crate) camera_fallback: bool,
    /// The most the encoder is ever asked for (congestion control asks for less).
    pub(crate) bitrate_bps: u32,
    pub(crate) bandwidth: Arc<Bandwidth>,
    pub(crate) ctl: std_mpsc::Receiver<VideoCtl>,
    pub(crate) out: mpsc::Sender<EncodedVideo>,
    pub(crate) keyframe: Arc<AtomicBool>,
    pub(crate) counters: Arc<MediaCounters>,
    pub(crate) preview: Option<VideoSink>,
    pub(crate) notices: mpsc::Sender<MediaNotice>,
}

/// Runs until the call's media stops (its control channel closes).
pub(crate) fn video_send_thread(ctx: VideoSendCtx) {
    let Ok(mut frame) = I420Frame::new(640, 480) else {
        return;
    };
    let notices = ctx.notices.clone();
    let report = move |device, message| {
        let _ = notices.try_send(MediaNotice::DeviceError { device, message });
    };
    let open = |spec: &Option<VideoSource>, frame: &mut I420Frame| {
        spec.as_ref()
            .and_then(|spec| open_video_or_pattern(spec, ctx.camera_fallback, frame, &report))
    };
    let mut current = ctx.source.clone();
    let mut source = open(&current, &mut frame);
    let mut reopener = Reopener::new(Device::Camera);
    let mut enabled = true;
    let mut encoder: Option<(H264Encoder, usize, usize)> = None;
    let mut ladder: Option<Ladder> = None;
    let mut scaled = frame.clone();
    let mut last_encoded_at: Option<Instant> = None;
    let mut last_keyframe: Option<Instant> = None;
    let mut keyframes = 0u64;
    // A frame was dropped after encoding: the next must be a keyframe.
    let mut broken = false;
    let mut last_ticks: Option<u64> = None;
    // The peer's picture feedback, applied before the next frame is encoded, and what
    // we sent since our last IDR (to read it).
    let mut feedback: Vec<PictureFeedback> = Vec::new();
    let mut sent = SentFrames::default();
    loop {
        loop {
            match ctx.ctl.try_recv() {
                Ok(VideoCtl::Enabled(on)) => {
                    enabled = on;
                    broken = true;
                }
                Ok(VideoCtl::Source(spec)) => {
                    drop(source.take()); // close the old device before opening the new one
                    source = open(&spec, &mut frame);
                    current = spec;
                    reopener = Reopener::new(Device::Camera);
                    broken = true;
                }
                Ok(VideoCtl::Feedback(f)) if feedback.len() < MAX_FEEDBACK => feedback.push(f),
                Ok(VideoCtl::Feedback(_)) => {}
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let Some(src) = source.as_mut() else {
            // Nothing to send: wait for a control message (or the end of the call).
            match ctx.ctl.recv_timeout(SOURCE_WAIT) {
                Ok(VideoCtl::Enabled(on)) => enabled = on,
                Ok(VideoCtl::Source(spec)) => {
                    source = open(&spec, &mut frame);
                    current = spec;
                    reopener = Reopener::new(Device::Camera);
                    broken = true;
                }
                Ok(VideoCtl::Feedback(_)) => {}
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            continue;
        };
        if let Some(reason) = src.ended() {
            drop(source.take());
            if let Some(VideoSource::Camera { id, request }) = &current {
                match reopener.reopen(&reason, || Camera::open(id.as_deref(), *request)) {
                    Ok(camera) => source = Some(FrameSource::Camera(camera)),
                    Err(reason) if ctx.camera_fallback => {
                        report(
                            Device::Camera,
                            format!("{reason}; sending a test pattern instead"),
                        );
                        source = open_video(&FALLBACK_PATTERN, &mut frame).ok();
                    }
                    Err(reason) => report(Device::Camera, reason),
                }
            }
            broken = true;
            continue;
        }
        if !src.next_frame(&mut frame, SOURCE_WAIT) {
            continue;
        }
        if let Some(preview) = &ctx.preview {
            preview(&frame, &FrameInfo::captured(&frame));
        }
        if !enabled {
            continue;
        }
        let (sw, sh) = (frame.width(), frame.height());
        if ladder
            .as_ref()
            .is_none_or(|l| (l.source().width, l.source().height) != (sw, sh))
        {
            ladder = Some(Ladder::new(sw, sh, 30, ctx.bitrate_bps));
        }
        let Some(ladder) = ladder.as_mut() else {
            continue;
        };
        // Audio redundancy (RED copies under loss) comes out of video's share (0 stays
        // "no estimate yet"; an estimate never becomes 0).
        let target = match ctx.bandwidth.target_bps.load(Relaxed) {
            0 => 0,
            t => t
                .saturating_sub(ctx.bandwidth.audio_redundancy_bps.load(Relaxed))
                .max(1),
        };
        ladder.hold_frame_rate(ctx.bandwidth.random_loss());
        let Decision { rung, bitrate_bps } = ladder.decide(target, Instant::now());
        // The rung's frame rate: skip source frames that come too soon (by our clock:
        // relayed frames carry no capture time of their own).
        let interval = Duration::from_secs(1) / rung.fps.max(1);
        if last_encoded_at.is_some_and(|last: Instant| last.elapsed() < interval * 3 / 4) {
            continue;
        }
        // Congestion: the transport has not sent what we gave it yet.
        let backlog = ctx.bandwidth.video_backlog_bytes.load(Relaxed);
        if target > 0 && backlog * 8 > target * MAX_BACKLOG.as_millis() as u64 / 1000 {
            tracing::trace!(backlog, target, "frame skipped: the transport is behind");
            ctx.counters
                .frames_dropped_before_send
                .fetch_add(1, Relaxed);
            continue;
        }
        let (w, h) = (rung.width, rung.height);
        let mut restarted = false;
        if encoder
            .as_ref()
            .is_none_or(|(_, ew, eh)| (*ew, *eh) != (w, h))
        {
            // A rung change mid-call: the new stream's first keyframe is sized from
            // the bitrate the encoder is built with (openh264 takes its first IDR's QP
            // from a table of bits per pixel), so it is built at a fraction of the rate
            // and given the whole rate after that frame.
            let first_rate = if encoder.is_some() {
                (f64::from(bitrate_bps) * RESTART_IDR_RATE) as u32
            } else {
                bitrate_bps
            };
            restarted = encoder.is_some();
            let settings = EncoderSettings {
                bitrate_bps: first_rate.max(10_000),
                fps: rung.fps as f32,
            };
            tracing::debug!(w, h, bitrate_bps, target, "video encoder (re)started");
            sent.reset();
            match H264Encoder::with_long_term_references(settings) {
                Ok(e) => encoder = Some((e, w, h)),
                Err(e) => {
                    tracing::error!("H.264 encoder: {e}");
                    return;
                }
            }
            if scaled.resize(w, h).is_err() {
                return;
            }
            ctx.counters.encode_width.store(w as u32, Relaxed);
            ctx.counters.encode_height.store(h as u32, Relaxed);
            broken = true;
        }
        let Some((enc, _, _)) = encoder.as_mut() else {
            continue;
        };
        let current = enc.settings();
        if !restarted
            && ((f64::from(bitrate_bps) - f64::from(current.bitrate_bps)).abs()
                > f64::from(current.bitrate_bps) * RATE_STEP
                || current.fps != rung.fps as f32)
            && let Err(e) = enc.set_rate(bitrate_bps, rung.fps as f32)
        {
            tracing::debug!("encoder rate not changed: {e}");
        }
        let input = if (w, h) == (sw, sh) {
            &frame
        } else {
            chingu_media::scale::scale(&frame, &mut scaled);
            &scaled
        };
        for f in feedback.drain(..) {
            let done = match sent.answer(f) {
                Answer::Confirm {
                    idr_pic_id,
                    frame_num,
                } => enc.long_term_confirmed(idr_pic_id, frame_num),
                Answer::Recover {
                    idr_pic_id,
                    last_correct,
                    current,
                } => {
                    tracing::debug!(last_correct, current, "recovering from a long-term picture");
                    enc.recover(idr_pic_id, last_correct, current)
                }
                Answer::Keyframe => {
                    ctx.keyframe.store(true, Relaxed);
                    Ok(())
                }
                Answer::Nothing => Ok(()),
            };
            if let Err(e) = done {
                tracing::debug!("picture feedback not taken: {e}");
                ctx.keyframe.store(true, Relaxed);
            }
        }
        let mut force = ctx.keyframe.swap(false, Relaxed);
        let rtt = Duration::from_millis(u64::from(ctx.bandwidth.rtt_ms.load(Relaxed)));
        let spacing = KEYFRAME_SPACING.max(rtt * 2);
        // Spacing applies to the peer's requests; a stream we broke ourselves (a frame
        // dropped after encoding) cannot wait: every frame after it is undecodable. Nor
        // can a request after the stream's first keyframe only: the peer never had a
        // picture (that keyframe left before its keys were ready), and a receiver does
        // not ask while a keyframe is still arriving (frames are released in order).
        if std::mem::take(&mut broken) {
            force = true;
        } else if force && keyframes > 1 && last_keyframe.is_some_and(|at| at.elapsed() < spacing) {
            // Not yet: keep the request for a later frame.
            ctx.keyframe.store(true, Relaxed);
            force = false;
        }
        let started = Instant::now();
        let encoded = match enc.encode(input, force) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("encode failed: {e}");
                broken = true;
                continue;
            }
        };
        let c = &ctx.counters;
        c.total_encode_time_us
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        c.frames_encoded.fetch_add(1, Relaxed);
        c.bytes_encoded
            .fetch_add(encoded.data.len() as u64, Relaxed);
        if encoded.keyframe {
            c.key_frames_encoded.fetch_add(1, Relaxed);
            keyframes += 1;
            last_keyframe = Some(Instant::now());
        }
        // RTP time from capture time, cumulatively, so rounding never drifts.
        let ticks_now = frame.capture_us * 9 / 100;
        let ticks = last_ticks.map_or(3000, |last| ticks_now.saturating_sub(last).max(1));
        last_ticks = Some(ticks_now);
        last_encoded_at = Some(started);
        let this = sent.read(encoded.data);
        let out = EncodedVideo::new(
            Bytes::copy_from_slice(encoded.data),
            ticks.min(u64::from(u32::MAX)) as u32,
            &ctx.bandwidth,
        );
        match ctx.out.try_send(out) {
            Ok(()) => {
                if let Some(this) = this {
                    sent.record(this);
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                c.frames_dropped_before_send.fetch_add(1, Relaxed);
                // The frames after a dropped one would refer to it: the next refers
                // only to a long-term picture the peer confirmed (the peer sees no
                // loss: it never had this frame's packets), or is a keyframe.
                let recovered = match (sent.last(), this) {
                    (Some((idr_pic_id, last)), Some(this)) if !this.is_idr() => {
                        enc.recover(idr_pic_id, last, this.frame_num()).is_ok()
                    }
                    _ => false,
                };
                broken = !recovered;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
