//! Incoming video: a task assembles RTP packets into frames ([`FrameAssembler`]),
//! depacketizes them, and after a lost frame goes on if the lost one was a picture no
//! other refers to ([`ReferenceChain`]), else gates decoding until a keyframe or a frame
//! that refers only to a long-term picture the decoder holds, and asks the sender for
//! one (through the engine, at most every 250 ms: to recover from the last frame decoded
//! when the peer takes picture feedback, [`Mending`], else a keyframe), then queues each
//! frame for the decoding thread (`video_decode`). The task sleeps until a packet, the
//! assembler's deadline, the next request or the next confirmation is due.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use chingu_media::frame::now_us;
use chingu_media::h264_chain::{AfterLoss, ReferenceChain};
use chingu_media::h264_syntax::{fingerprint, nal_units};
use tokio::sync::{Notify, mpsc};

use super::assembler::FrameAssembler;
use super::config::MediaNotice;
use super::recovery::{Ask, Mending};
use crate::packets::{Bandwidth, RtpIn};
use crate::peer::depacketize::{H264Depacketizer, starts_picture};
use crate::stats::MediaCounters;

/// Keyframe requests are sent at most this often.
const PLI_INTERVAL: Duration = Duration::from_millis(250);
/// Pictures stop this long while frames keep arriving: logged once, with what the
/// pipeline saw (the log is what a user's bug report carries).
const STALL: Duration = Duration::from_secs(2);
/// Frames queued for the decoder: room for a burst (frames held back for a
/// retransmission are released together).
pub(crate) const DECODE_QUEUE: usize = 16;

/// One complete frame for the decoding thread (`video_decode`).
pub(crate) struct DecodeJob {
    pub(super) annex_b: Vec<u8>,
    pub(super) rtp_timestamp: u32,
    pub(super) received_us: u64,
    /// From its first packet's arrival to complete (waiting for repairs).
    pub(super) assembly: Duration,
    /// When the frame was complete.
    pub(super) complete: Instant,
    /// It waited for a repair (a packet came out of order).
    pub(super) repaired: bool,
    /// The path's round trip then.
    pub(super) rtt: Duration,
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
    // What to ask the sender for when the chain breaks: to recover from a long-term
    // picture (a peer that takes picture feedback), or a keyframe.
    let mut mending = Mending::default();
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
        let peer_recovers = bandwidth.peer_recovers.load(Relaxed);
        let confirm_due = mending.next_confirmation().filter(|_| peer_recovers);
        let wake = [
            assembler.poll_timeout(),
            pli_due,
            stall.next_check(),
            confirm_due,
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            packet = rtp.recv() => {
                let Some(p) = packet else { break };
                let starts = starts_picture(&p.payload);
                assembler.push_packet(p.sequence, p.timestamp, p.marker, starts, p.payload, p.arrived);
            }
            () = decoder_wants_keyframe.notified() => {
                need_keyframe = true;
                mending.keyframe_only();
            }
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
                match chain.after_loss(&annex_b) {
                    AfterLoss::Continues => {
                        counters.frames_lost_unreferenced.fetch_add(1, Relaxed);
                    }
                    AfterLoss::Keyframe | AfterLoss::Recovers => {}
                    AfterLoss::Broken => {
                        tracing::debug!("a reference picture was lost; the picture stops");
                        chain.broken();
                        need_keyframe = true;
                    }
                }
            }
            if need_keyframe {
                let recovers =
                    mending.takes_recovery() && chain.after_loss(&annex_b) == AfterLoss::Recovers;
                if !recovers && !contains_idr(&annex_b) {
                    tracing::debug!(
                        ts = frame.timestamp,
                        "frame dropped: waiting for a keyframe or a recovery"
                    );
                    counters.frames_dropped.fetch_add(1, Relaxed);
                    mending.held_back(fingerprint(&annex_b));
                    continue;
                }
                if recovers {
                    tracing::debug!(ts = frame.timestamp, "recovered from a long-term picture");
                    counters.frames_recovered.fetch_add(1, Relaxed);
                }
                need_keyframe = false;
            }
            let marked = chain.decoded(&annex_b);
            if let Some(confirm) = mending.decoded(fingerprint(&annex_b), marked, Instant::now())
                && peer_recovers
            {
                let _ = notices.try_send(MediaNotice::PictureFeedback(confirm));
            }
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
                    mending.keyframe_only();
                }
                Err(std_mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
        let may_ask = last_pli.is_some() || counters.frames_assembled.load(Relaxed) > 0;
        if need_keyframe
            && may_ask
            && last_pli.is_none_or(|t| t.elapsed() >= pli_interval(&bandwidth))
        {
            let notice = match mending.ask(bandwidth.peer_recovers.load(Relaxed)) {
                Ask::Keyframe => MediaNotice::KeyframeNeeded,
                Ask::Feedback(recover) => MediaNotice::PictureFeedback(recover),
            };
            let _ = notices.try_send(notice);
            counters.pli_sent.fetch_add(1, Relaxed);
            last_pli = Some(Instant::now());
        }
        if peer_recovers && let Some(confirm) = mending.confirm_again(Instant::now()) {
            let _ = notices.try_send(MediaNotice::PictureFeedback(confirm));
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chingu_media::I420Frame;
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

    #[tokio::test]
    async fn a_lost_reference_is_mended_by_a_recovery_frame_from_a_peer_that_takes_feedback() {
        use super::super::recovery::{Answer, SentFrames};
        let (rtp_tx, rtp) = mpsc::channel(1024);
        let (decoder, decoded) = std_mpsc::sync_channel(64);
        let (notices, mut notices_rx) = mpsc::channel(16);
        let counters = Arc::new(MediaCounters::default());
        let bandwidth = Arc::new(Bandwidth::default());
        bandwidth.peer_recovers.store(true, Relaxed);
        let task = tokio::spawn(video_receive_task(ReceiveCtx {
            rtp,
            decoder,
            counters: Arc::clone(&counters),
            decoder_wants_keyframe: Arc::new(Notify::new()),
            notices,
            bandwidth,
        }));
        // The sender: an encoder with long-term references and what it sent.
        let settings = EncoderSettings {
            bitrate_bps: 300_000,
            fps: 30.0,
        };
        let mut encoder = H264Encoder::with_long_term_references(settings).expect("encoder");
        let mut sent = SentFrames::default();
        let mut pattern = TestPattern::new();
        let mut picture = I420Frame::new(320, 240).expect("size");
        let mut sequence = 0u16;
        let mut keyframe_requests = 0;
        for i in 0..12u32 {
            // What the receiver said so far reaches the sender before this frame.
            while let Ok(notice) = notices_rx.try_recv() {
                match notice {
                    MediaNotice::PictureFeedback(feedback) => match sent.answer(feedback) {
                        Answer::Confirm {
                            idr_pic_id,
                            frame_num,
                        } => encoder
                            .long_term_confirmed(idr_pic_id, frame_num)
                            .expect("confirm"),
                        Answer::Recover {
                            idr_pic_id,
                            last_correct,
                            current,
                        } => encoder
                            .recover(idr_pic_id, last_correct, current)
                            .expect("recover"),
                        other => panic!("{feedback:?} answered with {other:?}"),
                    },
                    _ => keyframe_requests += 1,
                }
            }
            pattern.draw(&mut picture, u64::from(i) * 33_333);
            let data = encoder
                .encode(&picture, false)
                .expect("encode")
                .expect("frame");
            let this = sent.read(data.data).expect("own frame");
            sent.record(this);
            let payloads: Vec<Bytes> = nal_units(data.data).map(Bytes::copy_from_slice).collect();
            let last = payloads.len() - 1;
            for (n, payload) in payloads.into_iter().enumerate() {
                // Frame 5, a reference picture, is lost.
                if i != 5 {
                    let packet = RtpIn {
                        sequence,
                        timestamp: i * 3000,
                        marker: n == last,
                        payload,
                        copy: false,
                        copies: 0,
                        arrived: Instant::now(),
                    };
                    rtp_tx.send(packet).await.expect("task runs");
                }
                sequence = sequence.wrapping_add(1);
            }
            // Frames 6 and 7 show the loss; the assembler gives frame 5 up after its
            // 250 ms, and the task then asks to recover (a notice, read before frame 8).
            if i == 7 {
                for _ in 0..1000 {
                    if counters.frames_dropped.load(Relaxed) >= 2 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::task::yield_now().await;
            }
        }
        let mut got = Vec::new();
        for _ in 0..1000 {
            got.extend(decoded.try_iter().map(|job| job.rtp_timestamp / 3000));
            if got.last() == Some(&11) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(got, [0, 1, 2, 3, 4, 8, 9, 10, 11], "mended at frame 8");
        assert_eq!(counters.frames_recovered.load(Relaxed), 1);
        assert_eq!(keyframe_requests, 0, "no keyframe asked for");
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
}
