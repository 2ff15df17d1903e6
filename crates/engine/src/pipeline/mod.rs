//! The media of one call, from capture to the network and from the network to render and
//! playback. Capture+encode, decode and audio playout each run on a dedicated thread;
//! small async tasks move encoded data to and from the peer connection. Every queue is
//! bounded; a full queue drops and counts (and a dropped video frame forces a keyframe,
//! because the frames after it reference it).

pub mod assembler;
pub mod jitter;
pub mod seq;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chingu_media::audio_device::{DeviceEvent, Microphone, Speaker};
use chingu_media::camera::{Camera, CameraRequest};
use chingu_media::frame::now_us;
use chingu_media::h264::{EncoderSettings, H264Decoder, H264Encoder};
use chingu_media::opus_codec::{FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings};
use chingu_media::pattern::TestPattern;
use chingu_media::tone::ToneGenerator;
use chingu_media::{I420Frame, MediaError};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use tokio::sync::mpsc;

use crate::peer::{Peer, RtpIn, duration_for_ticks};
use assembler::FrameAssembler;
use jitter::{JitterBuffer, Playout};

/// Hands frames from one thread to another, newest wins (an echo peer sends back what
/// it decodes). Buffers are recycled: no allocation per frame once sized.
#[derive(Debug, Default)]
pub struct FrameRelay {
    slot: std::sync::Mutex<(Option<I420Frame>, Option<I420Frame>)>,
}

impl PartialEq for FrameRelay {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl FrameRelay {
    /// Copies `frame` in, replacing a frame not yet taken.
    pub fn push(&self, frame: &I420Frame) {
        let Ok(mut slot) = self.slot.lock() else {
            return;
        };
        let (latest, free) = &mut *slot;
        let mut buf = latest
            .take()
            .or_else(|| free.take())
            .unwrap_or_else(|| frame.clone());
        if buf.resize(frame.width(), frame.height()).is_ok() {
            buf.y.copy_from_slice(&frame.y);
            buf.u.copy_from_slice(&frame.u);
            buf.v.copy_from_slice(&frame.v);
            buf.capture_us = frame.capture_us;
            *latest = Some(buf);
        }
    }

    /// Swaps the newest frame into `frame`, if one came since the last take.
    pub fn take(&self, frame: &mut I420Frame) -> bool {
        let Ok(mut slot) = self.slot.lock() else {
            return false;
        };
        let (latest, free) = &mut *slot;
        match latest.take() {
            Some(mut newest) => {
                std::mem::swap(frame, &mut newest);
                *free = Some(newest);
                true
            }
            None => false,
        }
    }
}

/// Hands 48 kHz mono audio from one thread to another; holds at most 200 ms.
#[derive(Debug, Default)]
pub struct AudioRelay {
    buf: std::sync::Mutex<std::collections::VecDeque<i16>>,
}

impl PartialEq for AudioRelay {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl AudioRelay {
    const MAX: usize = 9_600;

    pub fn push(&self, pcm: &[i16]) {
        let Ok(mut buf) = self.buf.lock() else { return };
        buf.extend(pcm.iter().copied());
        let excess = buf.len().saturating_sub(Self::MAX);
        buf.drain(..excess);
    }

    /// Fills `out` if that much is buffered.
    pub fn pop(&self, out: &mut [i16]) -> bool {
        let Ok(mut buf) = self.buf.lock() else {
            return false;
        };
        if buf.len() < out.len() {
            return false;
        }
        let n = out.len();
        for (o, s) in out.iter_mut().zip(buf.drain(..n)) {
            *o = s;
        }
        true
    }
}

/// Where the outgoing video comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoSource {
    /// Frames pushed by another part of the program (an echo peer).
    Relay(Arc<FrameRelay>),
    /// The synthetic pattern with a frame-number/timestamp barcode.
    TestPattern { width: u32, height: u32, fps: u32 },
    /// A camera (`None`: the first one), nearest mode to the request.
    Camera {
        id: Option<String>,
        request: CameraRequest,
    },
}

/// Where the outgoing audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    Tone {
        frequency_hz: f64,
    },
    /// Audio pushed by another part of the program (an echo peer).
    Relay(Arc<AudioRelay>),
    Microphone {
        id: Option<String>,
    },
}

/// Where the peer's audio goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioOutput {
    Speaker { id: Option<String> },
    Discard,
}

/// About one decoded (or captured) frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    pub rtp_timestamp: u32,
    /// When its first packet arrived ([`now_us`] clock).
    pub received_us: u64,
    pub decoded_us: u64,
}

/// Receives frames on the decoding (or capture) thread; must return quickly.
pub type VideoSink = Arc<dyn Fn(&I420Frame, &FrameInfo) + Send + Sync>;
/// Receives the peer's decoded audio, 20 ms at a time, on the playout thread.
pub type AudioTap = Arc<dyn Fn(&[i16]) + Send + Sync>;

/// What the call's media needs to start.
#[derive(Clone)]
pub struct MediaConfig {
    pub video: Option<VideoSource>,
    pub audio: Option<AudioSource>,
    pub output: AudioOutput,
    pub video_bitrate_bps: u32,
    /// When the camera cannot be opened, send the synthetic pattern (and say so) rather
    /// than nothing.
    pub camera_fallback: bool,
    pub remote_video: Option<VideoSink>,
    pub local_preview: Option<VideoSink>,
    pub remote_audio: Option<AudioTap>,
}

impl std::fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaConfig")
            .field("video", &self.video)
            .field("audio", &self.audio)
            .field("output", &self.output)
            .field("video_bitrate_bps", &self.video_bitrate_bps)
            .field("camera_fallback", &self.camera_fallback)
            .finish_non_exhaustive()
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            video: Some(VideoSource::TestPattern {
                width: 640,
                height: 480,
                fps: 30,
            }),
            audio: Some(AudioSource::Tone {
                frequency_hz: 440.0,
            }),
            output: AudioOutput::Discard,
            video_bitrate_bps: 1_000_000,
            camera_fallback: false,
            remote_video: None,
            local_preview: None,
            remote_audio: None,
        }
    }
}

/// Something the media threads report to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaNotice {
    /// A device could not be opened, or stopped; the call goes on without it.
    DeviceError {
        device: &'static str,
        message: String,
    },
}

/// Counters the media threads keep; read for stats.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames_encoded: AtomicU64,
    pub key_frames_encoded: AtomicU64,
    pub total_encode_time_us: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_dropped_before_send: AtomicU64,
    pub bytes_encoded: AtomicU64,
    pub encode_width: AtomicU32,
    pub encode_height: AtomicU32,
    pub frames_assembled: AtomicU64,
    pub frames_decoded: AtomicU64,
    pub key_frames_decoded: AtomicU64,
    pub total_decode_time_us: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub decode_errors: AtomicU64,
    pub freeze_count: AtomicU64,
    pub total_freezes_duration_us: AtomicU64,
    pub decode_width: AtomicU32,
    pub decode_height: AtomicU32,
    pub pli_sent: AtomicU64,
    pub keyframes_requested_by_peer: AtomicU64,
    pub audio_packets_sent: AtomicU64,
    pub audio_packets_received: AtomicU64,
    pub concealed_samples: AtomicU64,
    pub fec_recovered: AtomicU64,
    pub jitter_buffer_delay_us: AtomicU64,
    pub jitter_buffer_emitted: AtomicU64,
    pub total_samples_received: AtomicU64,
    /// Audio levels in dBFS ×100, negated (0 = full scale; 12_000 = -120 dBFS).
    pub local_level: AtomicU32,
    pub remote_level: AtomicU32,
}

impl Counters {
    pub fn local_level_dbfs(&self) -> f32 {
        -(self.local_level.load(Relaxed) as f32) / 100.0
    }
    pub fn remote_level_dbfs(&self) -> f32 {
        -(self.remote_level.load(Relaxed) as f32) / 100.0
    }
}

fn store_level(slot: &AtomicU32, samples: &[i16]) {
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / samples.len().max(1) as f64).sqrt() / 32768.0;
    let db = if rms > 1e-6 {
        20.0 * rms.log10()
    } else {
        -120.0
    };
    slot.store((-db * 100.0).clamp(0.0, 12_000.0) as u32, Relaxed);
}

enum VideoCtl {
    Source(Option<VideoSource>),
    Enabled(bool),
}

enum AudioCtl {
    Source(Option<AudioSource>),
    Muted(bool),
}

struct EncodedVideo {
    data: Bytes,
    ticks: u32,
}

/// The running media of one call. [`CallMedia::stop`] joins every thread.
pub struct CallMedia {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    video_ctl: std_mpsc::Sender<VideoCtl>,
    audio_ctl: std_mpsc::Sender<AudioCtl>,
    keyframe: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl CallMedia {
    /// Starts capture, encoding, decoding and playout for a connected peer.
    pub fn start(
        peer: Arc<Peer>,
        config: MediaConfig,
        video_rtp: mpsc::Receiver<RtpIn>,
        audio_rtp: mpsc::Receiver<RtpIn>,
        notices: mpsc::Sender<MediaNotice>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let keyframe = Arc::new(AtomicBool::new(true));
        let decoder_wants_keyframe = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut tasks = Vec::new();

        // Outgoing video: capture+encode thread -> writer task -> peer.
        let (video_ctl, video_ctl_rx) = std_mpsc::channel();
        let (enc_tx, mut enc_rx) = mpsc::channel::<EncodedVideo>(4);
        {
            let ctx = VideoSendCtx {
                source: config.video.clone(),
                camera_fallback: config.camera_fallback,
                bitrate_bps: config.video_bitrate_bps,
                ctl: video_ctl_rx,
                out: enc_tx,
                keyframe: Arc::clone(&keyframe),
                counters: Arc::clone(&counters),
                stop: Arc::clone(&stop),
                preview: config.local_preview.clone(),
                notices: notices.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name("chingu-video-enc".into())
                    .spawn(move || video_send_thread(ctx))?,
            );
        }
        let p = Arc::clone(&peer);
        let c = Arc::clone(&counters);
        tasks.push(tokio::spawn(async move {
            while let Some(frame) = enc_rx.recv().await {
                match p.write_video(frame.data, frame.ticks).await {
                    Ok(()) => {
                        c.frames_sent.fetch_add(1, Relaxed);
                    }
                    Err(e) => tracing::debug!("video not sent: {e}"),
                }
            }
        }));

        // Incoming video: assembler task -> decoder thread -> sink.
        // Room for a burst: frames held back for a retransmission are released together.
        let (dec_tx, dec_rx) = std_mpsc::sync_channel::<DecodeJob>(16);
        {
            let counters = Arc::clone(&counters);
            let sink = config.remote_video.clone();
            let wants = Arc::clone(&decoder_wants_keyframe);
            threads.push(
                std::thread::Builder::new()
                    .name("chingu-video-dec".into())
                    .spawn(move || video_decode_thread(dec_rx, sink, counters, wants))?,
            );
        }
        tasks.push(tokio::spawn(video_receive_task(
            Arc::clone(&peer),
            video_rtp,
            dec_tx,
            Arc::clone(&counters),
            decoder_wants_keyframe,
        )));

        // Outgoing audio: capture+encode thread -> writer task -> peer.
        let (audio_ctl, audio_ctl_rx) = std_mpsc::channel();
        let (aenc_tx, mut aenc_rx) = mpsc::channel::<Bytes>(8);
        {
            let ctx = AudioSendCtx {
                source: config.audio.clone(),
                ctl: audio_ctl_rx,
                out: aenc_tx,
                counters: Arc::clone(&counters),
                stop: Arc::clone(&stop),
                notices: notices.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name("chingu-audio-enc".into())
                    .spawn(move || audio_send_thread(ctx))?,
            );
        }
        let p = Arc::clone(&peer);
        let c = Arc::clone(&counters);
        tasks.push(tokio::spawn(async move {
            let duration = duration_for_ticks(FRAME_SAMPLES as u32, 48_000);
            while let Some(packet) = aenc_rx.recv().await {
                if p.write_audio(packet, duration).await.is_ok() {
                    c.audio_packets_sent.fetch_add(1, Relaxed);
                }
            }
        }));

        // Incoming audio: forwarder task -> playout thread (jitter buffer, decode, output).
        // Stamped on arrival: the jitter estimate must not include the playout tick.
        let (play_tx, play_rx) = std_mpsc::sync_channel::<(RtpIn, Instant)>(64);
        {
            let ctx = PlayoutCtx {
                rx: play_rx,
                output: config.output.clone(),
                tap: config.remote_audio.clone(),
                counters: Arc::clone(&counters),
                stop: Arc::clone(&stop),
                notices,
            };
            threads.push(
                std::thread::Builder::new()
                    .name("chingu-audio-play".into())
                    .spawn(move || audio_playout_thread(ctx))?,
            );
        }
        let mut audio_rtp = audio_rtp;
        let c = Arc::clone(&counters);
        tasks.push(tokio::spawn(async move {
            while let Some(packet) = audio_rtp.recv().await {
                c.audio_packets_received.fetch_add(1, Relaxed);
                if let Err(std_mpsc::TrySendError::Disconnected(_)) =
                    play_tx.try_send((packet, Instant::now()))
                {
                    break;
                }
            }
        }));

        Ok(Self {
            stop,
            threads,
            tasks,
            video_ctl,
            audio_ctl,
            keyframe,
            counters,
        })
    }

    /// The peer lost a picture: the next frame is a keyframe.
    pub fn request_keyframe(&self) {
        self.counters
            .keyframes_requested_by_peer
            .fetch_add(1, Relaxed);
        self.keyframe.store(true, Relaxed);
    }

    pub fn set_video_enabled(&self, enabled: bool) {
        let _ = self.video_ctl.send(VideoCtl::Enabled(enabled));
    }

    pub fn set_muted(&self, muted: bool) {
        let _ = self.audio_ctl.send(AudioCtl::Muted(muted));
    }

    pub fn set_video_source(&self, source: Option<VideoSource>) {
        let _ = self.video_ctl.send(VideoCtl::Source(source));
    }

    pub fn set_audio_source(&self, source: Option<AudioSource>) {
        let _ = self.audio_ctl.send(AudioCtl::Source(source));
    }

    /// Stops every task and joins every thread (devices close with them).
    pub async fn stop(mut self) {
        self.stop.store(true, Relaxed);
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a media thread panicked");
                }
            }
        })
        .await;
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        // Not stopped with `stop()` (a panic path): at least let the threads end.
        self.stop.store(true, Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------- outgoing video

pub(crate) enum FrameSource {
    Pattern {
        pattern: TestPattern,
        interval: Duration,
        due: Instant,
    },
    Camera(Camera),
    Relay(Arc<FrameRelay>),
}

impl FrameSource {
    /// Waits briefly for the next frame and writes it into `frame`; false when none was
    /// due yet.
    pub(crate) fn poll(&mut self, frame: &mut I420Frame) -> bool {
        match self {
            FrameSource::Pattern {
                pattern,
                interval,
                due,
            } => {
                let now = Instant::now();
                if *due > now {
                    std::thread::sleep((*due - now).min(Duration::from_millis(20)));
                    false
                } else {
                    // Late by more than a frame (a stall): skip ahead, do not burst.
                    *due = (*due + *interval).max(now);
                    let capture = now_us();
                    frame.capture_us = capture;
                    pattern.draw(frame, capture);
                    true
                }
            }
            FrameSource::Relay(relay) => {
                if relay.take(frame) {
                    true
                } else {
                    std::thread::sleep(Duration::from_millis(2));
                    false
                }
            }
            FrameSource::Camera(camera) => {
                if camera.take_frame(frame) {
                    true
                } else {
                    std::thread::sleep(Duration::from_millis(2));
                    false
                }
            }
        }
    }
}

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
    }
}

/// What a call sends when the camera cannot be opened and fallback is on.
pub(crate) const FALLBACK_PATTERN: VideoSource = VideoSource::TestPattern {
    width: 640,
    height: 480,
    fps: 30,
};

struct VideoSendCtx {
    source: Option<VideoSource>,
    camera_fallback: bool,
    bitrate_bps: u32,
    ctl: std_mpsc::Receiver<VideoCtl>,
    out: mpsc::Sender<EncodedVideo>,
    keyframe: Arc<AtomicBool>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    preview: Option<VideoSink>,
    notices: mpsc::Sender<MediaNotice>,
}

fn video_send_thread(ctx: VideoSendCtx) {
    let Ok(mut frame) = I420Frame::new(640, 480) else {
        return;
    };
    let open = |spec: &Option<VideoSource>, frame: &mut I420Frame| match spec {
        None => None,
        Some(spec) => match open_video(spec, frame) {
            Ok(s) => Some(s),
            Err(e) if ctx.camera_fallback => {
                // The call goes on with the synthetic pattern, and the user is told.
                let _ = ctx.notices.try_send(MediaNotice::DeviceError {
                    device: "camera",
                    message: format!("{e}; sending a test pattern instead"),
                });
                open_video(&FALLBACK_PATTERN, frame).ok()
            }
            Err(e) => {
                let _ = ctx.notices.try_send(MediaNotice::DeviceError {
                    device: "camera",
                    message: e.to_string(),
                });
                None
            }
        },
    };
    let mut source = open(&ctx.source, &mut frame);
    let mut enabled = true;
    let mut encoder: Option<(H264Encoder, usize, usize)> = None;
    let mut last_ticks: Option<u64> = None;
    while !ctx.stop.load(Relaxed) {
        while let Ok(ctl) = ctx.ctl.try_recv() {
            match ctl {
                VideoCtl::Enabled(on) => {
                    enabled = on;
                    ctx.keyframe.store(true, Relaxed);
                }
                VideoCtl::Source(spec) => {
                    drop(source.take()); // close the old device before opening the new one
                    source = open(&spec, &mut frame);
                    ctx.keyframe.store(true, Relaxed);
                }
            }
        }
        let got = match &mut source {
            None => {
                std::thread::sleep(Duration::from_millis(20));
                false
            }
            Some(source) => source.poll(&mut frame),
        };
        if !got {
            continue;
        }
        if let Some(preview) = &ctx.preview {
            preview(
                &frame,
                &FrameInfo {
                    rtp_timestamp: 0,
                    received_us: frame.capture_us,
                    decoded_us: frame.capture_us,
                },
            );
        }
        if !enabled {
            continue;
        }
        let (w, h) = (frame.width(), frame.height());
        if encoder
            .as_ref()
            .is_none_or(|(_, ew, eh)| (*ew, *eh) != (w, h))
        {
            let settings = EncoderSettings {
                bitrate_bps: ctx.bitrate_bps,
                fps: 30.0,
            };
            match H264Encoder::new(settings) {
                Ok(e) => encoder = Some((e, w, h)),
                Err(e) => {
                    tracing::error!("H.264 encoder: {e}");
                    return;
                }
            }
            ctx.counters.encode_width.store(w as u32, Relaxed);
            ctx.counters.encode_height.store(h as u32, Relaxed);
            ctx.keyframe.store(true, Relaxed);
        }
        let Some((enc, _, _)) = encoder.as_mut() else {
            continue;
        };
        let force = ctx.keyframe.swap(false, Relaxed);
        let started = Instant::now();
        let encoded = match enc.encode(&frame, force) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("encode failed: {e}");
                ctx.keyframe.store(true, Relaxed);
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
        }
        // RTP time from capture time, cumulatively, so rounding never drifts.
        let ticks_now = frame.capture_us * 9 / 100;
        let ticks = last_ticks.map_or(3000, |last| ticks_now.saturating_sub(last).max(1));
        last_ticks = Some(ticks_now);
        let out = EncodedVideo {
            data: Bytes::copy_from_slice(encoded.data),
            ticks: ticks.min(u64::from(u32::MAX)) as u32,
        };
        match ctx.out.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                c.frames_dropped_before_send.fetch_add(1, Relaxed);
                ctx.keyframe.store(true, Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

// ---------------------------------------------------------------- incoming video

struct DecodeJob {
    annex_b: Vec<u8>,
    rtp_timestamp: u32,
    received_us: u64,
}

/// Whether an Annex B access unit holds an IDR slice.
pub fn contains_idr(annex_b: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 < annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            if annex_b[i + 3] & 0x1F == 5 {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// A device stream that ends is reopened this many times per call before it is reported,
/// waiting 50, 100, 200, 400 then 800 ms (PulseAudio's ALSA plugin sometimes fails a
/// fresh stream with EIO; a moment later the same device opens fine).
const MAX_REOPENS: u32 = 5;

fn reopen_delay(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.min(5))
}

const PLI_INTERVAL: Duration = Duration::from_millis(250);

async fn video_receive_task(
    peer: Arc<Peer>,
    mut rtp: mpsc::Receiver<RtpIn>,
    decoder: std_mpsc::SyncSender<DecodeJob>,
    counters: Arc<Counters>,
    decoder_wants_keyframe: Arc<AtomicBool>,
) {
    let mut assembler = FrameAssembler::new();
    let mut depacketizer = H264Packet::default();
    let mut need_keyframe = true;
    let mut last_pli: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let epoch_offset_us = now_us();
    let epoch = Instant::now();
    let to_us =
        |t: Instant| epoch_offset_us + t.saturating_duration_since(epoch).as_micros() as u64;
    loop {
        tokio::select! {
            packet = rtp.recv() => {
                let Some(p) = packet else { break };
                assembler.push(p.sequence, p.timestamp, p.marker, p.payload, Instant::now());
            }
            _ = tick.tick() => {}
        }
        if decoder_wants_keyframe.swap(false, Relaxed) {
            need_keyframe = true;
        }
        let mut gave_up = false;
        while let Some(frame) = assembler.pop(Instant::now(), &mut gave_up) {
            counters.frames_assembled.fetch_add(1, Relaxed);
            let mut annex_b = Vec::with_capacity(frame.payloads.iter().map(|p| p.len() + 4).sum());
            let mut broken = false;
            for payload in &frame.payloads {
                match depacketizer.depacketize(payload) {
                    Ok(out) => annex_b.extend_from_slice(&out),
                    Err(_) => broken = true,
                }
            }
            if broken || gave_up {
                tracing::debug!(
                    broken,
                    gave_up,
                    lost = assembler.frames_lost,
                    "video frame lost; waiting for a keyframe"
                );
                need_keyframe = true;
                depacketizer = H264Packet::default();
            }
            if broken || annex_b.is_empty() {
                counters.frames_dropped.fetch_add(1, Relaxed);
                continue;
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
            let job = DecodeJob {
                annex_b,
                rtp_timestamp: frame.timestamp,
                received_us: to_us(frame.first_arrival),
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
        if need_keyframe && last_pli.is_none_or(|t| t.elapsed() >= PLI_INTERVAL) {
            // Nothing decodable until a keyframe: ask, at most every 250 ms.
            if last_pli.is_some() || gave_up || counters.frames_assembled.load(Relaxed) > 0 {
                peer.request_keyframe().await;
                counters.pli_sent.fetch_add(1, Relaxed);
            }
            last_pli = Some(Instant::now());
        }
    }
}

fn video_decode_thread(
    jobs: std_mpsc::Receiver<DecodeJob>,
    sink: Option<VideoSink>,
    counters: Arc<Counters>,
    wants_keyframe: Arc<AtomicBool>,
) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("H.264 decoder: {e}");
            return;
        }
    };
    let Ok(mut frame) = I420Frame::new(2, 2) else {
        return;
    };
    let mut last_frame: Option<Instant> = None;
    let mut avg_interval = Duration::from_millis(33);
    for job in jobs {
        let started = Instant::now();
        match decoder.decode(&job.annex_b, &mut frame) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::debug!("decode failed: {e}");
                counters.decode_errors.fetch_add(1, Relaxed);
                wants_keyframe.store(true, Relaxed);
                continue;
            }
        }
        let now = Instant::now();
        counters
            .total_decode_time_us
            .fetch_add((now - started).as_micros() as u64, Relaxed);
        counters.frames_decoded.fetch_add(1, Relaxed);
        if contains_idr(&job.annex_b) {
            counters.key_frames_decoded.fetch_add(1, Relaxed);
        }
        counters.decode_width.store(frame.width() as u32, Relaxed);
        counters.decode_height.store(frame.height() as u32, Relaxed);
        // A freeze as W3C defines it: a gap over max(3 × average, average + 150 ms).
        if let Some(last) = last_frame {
            let gap = now - last;
            let threshold = (avg_interval * 3).max(avg_interval + Duration::from_millis(150));
            if gap > threshold {
                counters.freeze_count.fetch_add(1, Relaxed);
                counters
                    .total_freezes_duration_us
                    .fetch_add(gap.as_micros() as u64, Relaxed);
            } else {
                avg_interval = (avg_interval * 7 + gap) / 8;
            }
        }
        last_frame = Some(now);
        if let Some(sink) = &sink {
            sink(
                &frame,
                &FrameInfo {
                    rtp_timestamp: job.rtp_timestamp,
                    received_us: job.received_us,
                    decoded_us: now_us(),
                },
            );
        }
    }
}

// ---------------------------------------------------------------- outgoing audio

enum SoundSource {
    Tone(ToneGenerator),
    Mic(Microphone),
    Relay(Arc<AudioRelay>),
}

struct AudioSendCtx {
    source: Option<AudioSource>,
    ctl: std_mpsc::Receiver<AudioCtl>,
    out: mpsc::Sender<Bytes>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    notices: mpsc::Sender<MediaNotice>,
}

fn audio_send_thread(ctx: AudioSendCtx) {
    let mut encoder = match OpusEncoder::new(OpusSettings::default()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("Opus encoder: {e}");
            return;
        }
    };
    let notify = |message: String| {
        let _ = ctx.notices.try_send(MediaNotice::DeviceError {
            device: "microphone",
            message,
        });
    };
    let open = |spec: &Option<AudioSource>| match spec {
        None => None,
        Some(AudioSource::Tone { frequency_hz }) => {
            Some(SoundSource::Tone(ToneGenerator::new(*frequency_hz, 0.3)))
        }
        Some(AudioSource::Relay(relay)) => Some(SoundSource::Relay(Arc::clone(relay))),
        Some(AudioSource::Microphone { id }) => match Microphone::open(id.as_deref()) {
            Ok(m) => Some(SoundSource::Mic(m)),
            Err(e) => {
                notify(e.to_string());
                None
            }
        },
    };
    let mut current = ctx.source.clone();
    let mut source = open(&current);
    let mut reopened = 0;
    let mut muted = false;
    let mut pcm = [0i16; FRAME_SAMPLES];
    let frame = Duration::from_millis(20);
    let mut due = Instant::now();
    while !ctx.stop.load(Relaxed) {
        while let Ok(ctl) = ctx.ctl.try_recv() {
            match ctl {
                AudioCtl::Muted(m) => muted = m,
                AudioCtl::Source(spec) => {
                    drop(source.take());
                    source = open(&spec);
                    current = spec;
                    reopened = 0;
                }
            }
        }
        // The microphone paces itself; a tone (or nothing) follows the clock.
        let got = match &mut source {
            Some(SoundSource::Mic(mic)) => {
                if let Some(DeviceEvent::Ended { reason }) = mic.poll_event() {
                    source = None;
                    if let Some(AudioSource::Microphone { id }) = &current
                        && reopened < MAX_REOPENS
                    {
                        tracing::info!(%reason, reopened, "microphone stream ended; reopening");
                        std::thread::sleep(reopen_delay(reopened));
                        reopened += 1;
                        source = Microphone::open(id.as_deref()).ok().map(SoundSource::Mic);
                    }
                    if source.is_none() {
                        notify(reason);
                    }
                    continue;
                }
                if mic.read(&mut pcm) {
                    true
                } else {
                    std::thread::sleep(Duration::from_millis(4));
                    false
                }
            }
            Some(SoundSource::Relay(relay)) => {
                if relay.pop(&mut pcm) {
                    true
                } else {
                    std::thread::sleep(Duration::from_millis(4));
                    false
                }
            }
            other => {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                due = (due + frame).max(Instant::now() - frame);
                match other {
                    Some(SoundSource::Tone(tone)) => tone.fill(&mut pcm),
                    _ => pcm.fill(0),
                }
                true
            }
        };
        if !got {
            continue;
        }
        if muted {
            pcm.fill(0);
        }
        store_level(&ctx.counters.local_level, &pcm);
        match encoder.encode(&pcm) {
            Ok(packet) => match ctx.out.try_send(Bytes::copy_from_slice(packet)) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            Err(e) => tracing::warn!("Opus encode: {e}"),
        }
    }
}

// ---------------------------------------------------------------- incoming audio

struct PlayoutCtx {
    rx: std_mpsc::Receiver<(RtpIn, Instant)>,
    output: AudioOutput,
    tap: Option<AudioTap>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    notices: mpsc::Sender<MediaNotice>,
}

fn audio_playout_thread(ctx: PlayoutCtx) {
    let mut decoder = match OpusDecoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("Opus decoder: {e}");
            return;
        }
    };
    let mut speaker = match &ctx.output {
        AudioOutput::Discard => None,
        AudioOutput::Speaker { id } => match Speaker::open(id.as_deref()) {
            Ok(s) => Some(s),
            Err(e) => {
                let _ = ctx.notices.try_send(MediaNotice::DeviceError {
                    device: "speaker",
                    message: e.to_string(),
                });
                None
            }
        },
    };
    let mut jitter = JitterBuffer::new();
    let mut reopened = 0;
    let mut pcm = [0i16; FRAME_SAMPLES];
    let frame = Duration::from_millis(20);
    let mut due = Instant::now() + frame;
    while !ctx.stop.load(Relaxed) {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        due = (due + frame).max(Instant::now() - frame);
        loop {
            match ctx.rx.try_recv() {
                Ok((p, arrived)) => jitter.push(p.sequence, p.payload, arrived),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let result = match jitter.pop(Instant::now()) {
            Playout::Waiting => continue,
            Playout::Packet(p) => decoder.decode(&p, &mut pcm),
            Playout::Fec(next) => decoder.decode_fec(&next, &mut pcm),
            Playout::Conceal => decoder.conceal(&mut pcm),
        };
        if let Err(e) = result {
            tracing::debug!("audio decode: {e}");
            pcm.fill(0);
        }
        let c = &ctx.counters;
        c.total_samples_received
            .fetch_add(FRAME_SAMPLES as u64, Relaxed);
        c.concealed_samples
            .store(jitter.concealed * FRAME_SAMPLES as u64, Relaxed);
        c.fec_recovered.store(jitter.fec_recovered, Relaxed);
        c.jitter_buffer_delay_us
            .store(jitter.total_delay.as_micros() as u64, Relaxed);
        c.jitter_buffer_emitted.store(jitter.emitted, Relaxed);
        store_level(&c.remote_level, &pcm);
        if let Some(tap) = &ctx.tap {
            tap(&pcm);
        }
        if let Some(s) = speaker.as_mut() {
            if let Some(DeviceEvent::Ended { reason }) = s.poll_event() {
                // Transient failures happen (PulseAudio's ALSA plugin sometimes fails a
                // fresh stream with EIO): reopen a few times before giving up.
                speaker = None;
                if let AudioOutput::Speaker { id } = &ctx.output
                    && reopened < MAX_REOPENS
                {
                    tracing::info!(%reason, reopened, "speaker stream ended; reopening");
                    std::thread::sleep(reopen_delay(reopened));
                    reopened += 1;
                    speaker = Speaker::open(id.as_deref()).ok();
                }
                if speaker.is_none() {
                    let _ = ctx.notices.try_send(MediaNotice::DeviceError {
                        device: "speaker",
                        message: reason,
                    });
                }
                continue;
            }
            s.write(&pcm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idr_detection_reads_nal_types() {
        assert!(contains_idr(&[0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x65, 9]));
        assert!(!contains_idr(&[0, 0, 0, 1, 0x41, 1, 2, 3]));
        assert!(!contains_idr(&[]));
        assert!(!contains_idr(&[0, 0, 1]));
    }

    #[test]
    fn levels_are_dbfs() {
        let slot = AtomicU32::new(0);
        store_level(&slot, &[0; 960]);
        assert_eq!(slot.load(Relaxed), 12_000);
        store_level(&slot, &[i16::MAX; 960]);
        assert!(slot.load(Relaxed) < 10);
    }
}
