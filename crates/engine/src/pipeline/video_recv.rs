//! Incoming video: a task assembles RTP packets into frames ([`FrameAssembler`]),
//! depacketizes them, and after a lost frame goes on if the lost one was a picture no
//! other refers to ([`ReferenceChain`]), else gates decoding on a keyframe and asks for
//! one (through the engine, at most every 250 ms); a thread holds each frame until its
//! playout time ([`Playout`]: at once unless repairs are slow), decodes it, counts
//! freezes and hands it to the sink. The task sleeps until a packet, the assembler's
//! deadline or the next keyframe request is due; the thread blocks on its queue until a
//! frame or the next held frame's playout time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use chingu_media::I420Frame;
use chingu_media::frame::now_us;
use chingu_media::h264::H264Decoder;
use chingu_media::h264_syntax::{ReferenceChain, nal_units};
use tokio::sync::{Notify, mpsc};

use super::assembler::FrameAssembler;
use super::config::{FrameInfo, MediaNotice, VideoSink};
use super::playout::Playout;
use crate::packets::{Bandwidth, RtpIn};
use crate::peer::depacketize::{H264Depacketizer, starts_picture};
use crate::stats::MediaCounters;

/// Keyframe requests are sent at most this often.
const PLI_INTERVAL: Duration = Duration::from_millis(250);
/// Pictures stop this long while frames keep arriving: logged once, with what the
/// pipeline saw (the log is what a user's bug report carries).
const STALL: Duration = Duration::from_secs(2);
/// The decoder gives a picture for every complete frame; this many in a row without one
/// mean it lost its references without saying so, and only a keyframe helps.
const FRAMES_WITHOUT_PICTURE: u32 = 3;
/// Frames queued for the decoder: room for a burst (frames held back for a
/// retransmission are released together).
pub(crate) const DECODE_QUEUE: usize = 16;

pub(crate) struct DecodeJob {
    annex_b: Vec<u8>,
    rtp_timestamp: u32,
    received_us: u64,
    /// From its first packet's arrival to complete (waiting for repairs).
    assembly: Duration,
    /// When the frame was complete.
    complete: Instant,
    /// It waited for a repair (a packet came out of order).
    repaired: bool,
    /// The path's round trip then.
    rtt: Duration,
}

/// Whether an Annex B access unit holds an IDR slice.
pub fn contains_idr(annex_b: &[u8]) -> bool {
    nal_units(annex_b).any(|nal| nal[0] & 0x1f == 5)
}

pub(crate) struct ReceiveCtx {
    pub(crate) rtp: mpsc::Receiver<RtpIn>,
    pub(crate) decoder: std_mpsc::SyncSender<DecodeJob>,
    pub(crate) counters: Arc<MediaCounters>,
    /// Signalled by the decoding thread when it cannot go on without a keyframe.
    pub(crate) decoder_wants_keyframe: Arc<Notify>,
    pub(crate) notices: mpsc::Sender<MediaNotice>,
    /// The path's round-trip time (how long retransmissions take).
    pub(crate) bandwidth: Arc<Bandwidth>,
}

/// How long to wait before asking again for a keyframe: the keyframe asked for needs a
/// round trip, and more on a slow path, to arrive.
fn pli_interval(bandwidth: &Bandwidth) -> Duration {
    PLI_INTERVAL.max(Duration::from_millis(u64::from(bandwidth.rtt_ms.load(Relaxed))) * 2)
}

pub(crate) async fn video_receive_task(ctx: ReceiveCtx) {
    let ReceiveCtx {
        mut rtp,
        decoder,
        counters,
        decoder_wants_keyframe,
        notices,
        bandwidth,
    } = ctx;
    let mut assembler = FrameAssembler::new();
    let mut stall = StallWatch::default();
    let mut depacketizer = H264Depacketizer::default();
    let mut need_keyframe = true;
    // Which reference pictures the decoder has: after a lost frame, whether the next one
    // still decodes (the lost one was a picture nothing refers to) or a keyframe is due.
    let mut chain = ReferenceChain::new();
    let mut lost_before_this = false;
    let mut last_pli: Option<Instant> = None;
    let epoch_offset_us = now_us();
    let epoch = Instant::now();
    let to_us =
        |t: Instant| epoch_offset_us + t.saturating_duration_since(epoch).as_micros() as u64;
    loop {
        // Before any frame arrived there is nothing to ask for: the sender's first frame
        // is a keyframe. Once frames arrive that cannot be decoded (that keyframe was
        // lost, or sent before our keys were ready), ask at once, then every 250 ms.
        let may_ask = last_pli.is_some() || counters.frames_assembled.load(Relaxed) > 0;
        let pli_due = (need_keyframe && may_ask)
            .then(|| last_pli.map_or(Instant::now(), |t| t + pli_interval(&bandwidth)));
        let wake = [assembler.poll_timeout(), pli_due, stall.next_check()]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            packet = rtp.recv() => {
                let Some(p) = packet else { break };
                let starts = starts_picture(&p.payload);
                assembler.push_packet(p.sequence, p.timestamp, p.marker, starts, p.payload, p.arrived);
            }
            () = decoder_wants_keyframe.notified() => need_keyframe = true,
            () = sleep_until(wake) => {}
        }
        assembler.set_wait(Duration::from_millis(u64::from(
            bandwidth.rtt_ms.load(Relaxed),
        )));
        let mut gave_up = false;
        while let Some(frame) = assembler.pop(Instant::now(), &mut gave_up) {
            if counters.frames_assembled.fetch_add(1, Relaxed) == 0 {
                tracing::debug!("incoming video: first frame assembled");
            }
            let mut annex_b = Vec::with_capacity(frame.payloads.iter().map(|p| p.len() + 4).sum());
            let mut broken = false;
            for payload in &frame.payloads {
                if depacketizer.push(payload, &mut annex_b).is_err() {
                    broken = true;
                }
            }
            if broken || gave_up {
                tracing::debug!(
                    broken,
                    gave_up,
                    lost = assembler.frames_lost,
                    "video frame lost"
                );
                lost_before_this = true;
                gave_up = false;
                depacketizer.reset();
            }
            if broken || annex_b.is_empty() {
                counters.frames_dropped.fetch_add(1, Relaxed);
                continue;
            }
            if std::mem::take(&mut lost_before_this) && !need_keyframe {
                if chain.decodable_after_loss(&annex_b) {
                    counters.frames_lost_unreferenced.fetch_add(1, Relaxed);
                } else {
                    tracing::debug!("a reference picture was lost; waiting for a keyframe");
                    chain.broken();
                    need_keyframe = true;
                }
            }
            if need_keyframe {
                if !contains_idr(&annex_b) {
                    tracing::debug!(
                        ts = frame.timestamp,
                        "frame dropped: waiting for a keyframe"
                    );
                    counters.frames_dropped.fetch_add(1, Relaxed);
                    continue;
                }
                need_keyframe = false;
            }
            chain.decoded(&annex_b);
            let complete = Instant::now();
            let job = DecodeJob {
                annex_b,
                rtp_timestamp: frame.timestamp,
                received_us: to_us(frame.first_arrival),
                assembly: complete.saturating_duration_since(frame.first_arrival),
                complete,
                repaired: frame.repaired,
                rtt: Duration::from_millis(u64::from(bandwidth.rtt_ms.load(Relaxed))),
            };
            match decoder.try_send(job) {
                Ok(()) => {}
                Err(std_mpsc::TrySendError::Full(_)) => {
                    tracing::debug!("decoder behind: frame dropped");
                    counters.frames_dropped.fetch_add(1, Relaxed);
                    need_keyframe = true;
                }
                Err(std_mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
        let may_ask = last_pli.is_some() || counters.frames_assembled.load(Relaxed) > 0;
        if need_keyframe
            && may_ask
            && last_pli.is_none_or(|t| t.elapsed() >= pli_interval(&bandwidth))
        {
            let _ = notices.try_send(MediaNotice::KeyframeNeeded);
            counters.pli_sent.fetch_add(1, Relaxed);
            last_pli = Some(Instant::now());
        }
        let now = Instant::now();
        let seen = (
            counters.frames_assembled.load(Relaxed),
            counters.frames_decoded.load(Relaxed),
        );
        if let Some(stalled) = stall.check(now, seen.0, seen.1) {
            tracing::warn!(
                stalled_ms = stalled.as_millis() as u64,
                frames_assembled = seen.0,
                frames_decoded = seen.1,
                frames_dropped = counters.frames_dropped.load(Relaxed),
                frames_lost = assembler.frames_lost,
                packets_late = assembler.packets_late,
                decode_errors = counters.decode_errors.load(Relaxed),
                without_picture = counters.frames_without_picture.load(Relaxed),
                keyframes_decoded = counters.key_frames_decoded.load(Relaxed),
                pli_sent = counters.pli_sent.load(Relaxed),
                need_keyframe,
                "incoming video: frames arrive but no picture"
            );
        }
    }
}

/// Notices a picture that stopped while frames still arrive (a decoder or keyframe
/// problem rather than a network one): once per stall.
#[derive(Debug, Default)]
struct StallWatch {
    /// Frames assembled and decoded when the decoded count last moved.
    assembled: u64,
    decoded: u64,
    /// When a frame was first seen assembled with no picture since.
    waiting_since: Option<Instant>,
    warned: bool,
}

impl StallWatch {
    /// When to look again (`None` while no frame waits for a picture, or once this stall
    /// was reported: packets wake the task anyway).
    fn next_check(&self) -> Option<Instant> {
        self.waiting_since
            .filter(|_| !self.warned)
            .map(|since| since + STALL)
    }

    /// Returns how long frames have arrived without a picture, the first time that is
    /// `STALL` or more.
    fn check(&mut self, now: Instant, assembled: u64, decoded: u64) -> Option<Duration> {
        if decoded != self.decoded {
            *self = Self {
                assembled,
                decoded,
                ..Self::default()
            };
            return None;
        }
        if assembled != self.assembled && self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
        let stalled = now.duration_since(self.waiting_since?);
        if stalled < STALL || self.warned {
            return None;
        }
        self.warned = true;
        Some(stalled)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

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
    use bytes::Bytes;
    use chingu_media::h264::{EncoderSettings, H264Encoder};
    use chingu_media::pattern::TestPattern;

    /// Each frame of the test pattern (320x240) as RTP payloads, one NAL unit each.
    fn packetized(count: u64) -> Vec<Vec<Bytes>> {
        let mut encoder = H264Encoder::with_temporal_layers(
            EncoderSettings {
                bitrate_bps: 300_000,
                fps: 30.0,
            },
            2,
        )
        .expect("encoder");
        let mut pattern = TestPattern::new();
        let mut frame = I420Frame::new(320, 240).expect("size");
        (0..count)
            .map(|i| {
                pattern.draw(&mut frame, i * 33_333);
                let encoded = encoder
                    .encode(&frame, false)
                    .expect("encode")
                    .expect("frame");
                nal_units(encoded.data)
                    .map(Bytes::copy_from_slice)
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_lost_frame_nothing_refers_to_is_skipped_and_a_lost_reference_asks_for_a_keyframe() {
        let (rtp_tx, rtp) = mpsc::channel(1024);
        let (decoder, decoded) = std_mpsc::sync_channel(64);
        let (notices, mut notices_rx) = mpsc::channel(16);
        let counters = Arc::new(MediaCounters::default());
        let task = tokio::spawn(video_receive_task(ReceiveCtx {
            rtp,
            decoder,
            counters: Arc::clone(&counters),
            decoder_wants_keyframe: Arc::new(Notify::new()),
            notices,
            bandwidth: Arc::new(Bandwidth::default()),
        }));
        let frames = packetized(10);
        let mut sequence = 0u16;
        // Sends frames `range`, except `lost`, whose packets are numbered but never sent.
        let mut send = async |range: std::ops::Range<usize>, lost: usize| {
            for i in range {
                let last = frames[i].len() - 1;
                for (n, payload) in frames[i].iter().enumerate() {
                    if i != lost {
                        let packet = RtpIn {
                            sequence,
                            timestamp: i as u32 * 3000,
                            marker: n == last,
                            payload: payload.clone(),
                            copy: false,
                            copies: 0,
                            arrived: Instant::now(),
                        };
                        rtp_tx.send(packet).await.expect("task runs");
                    }
                    sequence = sequence.wrapping_add(1);
                }
            }
        };
        // Waits (without a time limit that matters: 10 s) until `n` frames went to the
        // decoder; the assembler first waits its 250 ms for a repair of the lost one.
        let decoded_frames = async |n: usize| {
            let mut got = Vec::new();
            for _ in 0..1000 {
                got.extend(decoded.try_iter().map(|job| job.rtp_timestamp / 3000));
                if got.len() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            got
        };
        // Frame 3 is a picture nothing refers to (every odd one is): skipped, decoding
        // goes on, no keyframe asked for. (This test runs on one thread: the task sends
        // a keyframe request, if any, before this one runs again.)
        send(0..6, 3).await;
        assert_eq!(decoded_frames(5).await, [0, 1, 2, 4, 5]);
        assert!(notices_rx.try_recv().is_err(), "no keyframe request");
        assert_eq!(counters.frames_lost_unreferenced.load(Relaxed), 1);
        // Frame 6 is a reference picture: 7 and 8 cannot be decoded without it; a
        // keyframe is asked for (after the task has dropped them).
        send(6..9, 6).await;
        let notice = tokio::time::timeout(Duration::from_secs(10), notices_rx.recv()).await;
        assert!(matches!(notice, Ok(Some(MediaNotice::KeyframeNeeded))));
        assert_eq!(decoded.try_iter().count(), 0, "frames 7 and 8 were decoded");
        assert_eq!(counters.frames_lost_unreferenced.load(Relaxed), 1);
        task.abort();
    }

    #[test]
    fn idr_detection_reads_nal_types() {
        assert!(contains_idr(&[0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x65, 9]));
        assert!(!contains_idr(&[0, 0, 0, 1, 0x41, 1, 2, 3]));
        assert!(!contains_idr(&[]));
        assert!(!contains_idr(&[0, 0, 1]));
    }

    #[test]
    fn a_picture_that_stops_while_frames_arrive_is_reported_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut watch = StallWatch::default();
        assert_eq!(watch.check(t0 + ms(1000), 30, 30), None, "pictures come");
        assert_eq!(watch.next_check(), None, "nothing waits for a picture");
        // Checked on every packet: most see no new frame; the stall runs from the first
        // frame without a picture.
        assert_eq!(watch.check(t0 + ms(1100), 31, 30), None);
        assert_eq!(watch.check(t0 + ms(1110), 31, 30), None);
        assert_eq!(watch.next_check(), Some(t0 + ms(3100)));
        assert_eq!(watch.check(t0 + ms(3000), 90, 30), None, "1.9 s");
        assert_eq!(watch.check(t0 + ms(3100), 93, 30), Some(ms(2000)));
        assert_eq!(watch.next_check(), None, "reported: no more timed checks");
        assert_eq!(watch.check(t0 + ms(4000), 120, 30), None, "once per stall");
        assert_eq!(watch.check(t0 + ms(5000), 150, 31), None, "pictures again");
        assert_eq!(watch.check(t0 + ms(5100), 151, 31), None);
        assert_eq!(
            watch.check(t0 + ms(7100), 210, 31),
            Some(ms(2000)),
            "a second stall"
        );
    }

    #[test]
    fn no_frames_at_all_is_not_a_decoder_stall() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut watch = StallWatch::default();
        for t in 1..10 {
            assert_eq!(watch.check(t0 + s(t), 0, 0), None);
        }
        assert_eq!(watch.next_check(), None);
        // Frames come after the quiet: the stall counts from the first of them.
        assert_eq!(watch.check(t0 + s(10), 30, 0), None);
        assert_eq!(watch.check(t0 + s(11), 60, 0), None);
        assert_eq!(watch.check(t0 + s(12), 90, 0), Some(s(2)));
    }

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
