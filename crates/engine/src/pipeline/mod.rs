//! The media of one call, from capture to the transport and from the transport to render
//! and playback ([`CallMedia`]). Capture+encode, decode and audio playout each run on a
//! dedicated thread; small async tasks move inbound packets to them. Every queue is
//! bounded; a full queue drops and counts (and a dropped video frame forces a keyframe,
//! because the frames after it reference it).
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | sources, outputs, sinks, what the media reports |
//! | [`relay`] | handing media between two parts of the program (echo) |
//! | `video_send` | the capture+encode thread |
//! | `video_recv` | frame assembly (task) |
//! | `video_decode` | the decoding thread: playout, decode, freezes |
//! | `audio_send` | the capture (+ echo cancellation, noise suppression, gain) +encode thread for audio |
//! | `audio_play` | the jitter buffer, decode and playout thread |
//! | `reopen` | the one reopen policy for device streams that end |
//! | [`assembler`], [`jitter`], [`playout`], [`seq`] | the sans-IO parts, unit-tested |
//!
//! The pipeline never touches the peer connection: encoded media leaves and RTP arrives
//! through [`crate::packets`], and keyframe requests go through the engine both ways
//! ([`MediaNotice::KeyframeNeeded`] out, [`CallMedia::request_keyframe`] in).

pub mod assembler;
mod audio_play;
mod audio_send;
pub mod config;
pub mod jitter;
pub mod ladder;
pub mod playout;
mod recovery;
pub mod relay;
mod reopen;
pub mod seq;
mod video_decode;
mod video_recv;
mod video_send;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::{Notify, mpsc};

use crate::packets::{Bandwidth, InboundMedia, OutboundMedia};
use crate::stats::MediaCounters;
use audio_send::AudioCtl;
use video_send::VideoCtl;

pub use chingu_media::processing::ProcessingSettings;
pub use config::{
    AudioOutput, AudioSource, AudioTap, Device, DeviceChoice, FrameInfo, MediaConfig, MediaNotice,
    VideoSink, VideoSource,
};
pub use relay::{AudioRelay, FrameRelay};
pub use video_recv::contains_idr;
pub(crate) use video_send::{SOURCE_WAIT, open_video_or_pattern};

/// Control messages queued for a media thread (a person clicks far slower than a
/// thread drains this).
const CONTROL_QUEUE: usize = 8;

/// The running media of one call. [`CallMedia::stop`] ends every task and joins every
/// thread (their devices close with them).
pub struct CallMedia {
    threads: Vec<JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    video_ctl: std_mpsc::SyncSender<VideoCtl>,
    audio_ctl: std_mpsc::SyncSender<AudioCtl>,
    keyframe: Arc<AtomicBool>,
    pub counters: Arc<MediaCounters>,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

fn spawn_thread(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(body)
}

impl CallMedia {
    /// Starts capture, encoding, decoding and playout for a connected call. Returns the
    /// encoded media for the transport to send.
    pub fn start(
        config: MediaConfig,
        inbound: InboundMedia,
        notices: mpsc::Sender<MediaNotice>,
        bandwidth: Arc<Bandwidth>,
    ) -> std::io::Result<(Self, OutboundMedia)> {
        let counters = Arc::new(MediaCounters::default());
        let keyframe = Arc::new(AtomicBool::new(true));
        let (out, outbound) = crate::packets::outbound();
        let (video_ctl, video_ctl_rx) = std_mpsc::sync_channel(CONTROL_QUEUE);
        let (audio_ctl, audio_ctl_rx) = std_mpsc::sync_channel(CONTROL_QUEUE);
        let mut media = Self {
            threads: Vec::new(),
            tasks: Vec::new(),
            video_ctl,
            audio_ctl,
            keyframe: Arc::clone(&keyframe),
            counters: Arc::clone(&counters),
        };
        // On an error below, dropping `media` stops what already started.

        // Outgoing video: capture+encode thread -> transport.
        let ctx = video_send::VideoSendCtx {
            source: config.video.clone(),
            camera_fallback: config.camera_fallback,
            bitrate_bps: config.video_bitrate_bps,
            bandwidth: Arc::clone(&bandwidth),
            ctl: video_ctl_rx,
            out: out.video,
            keyframe,
            counters: Arc::clone(&counters),
            preview: config.local_preview.clone(),
            notices: notices.clone(),
        };
        media
            .threads
            .push(spawn_thread("chingu-video-enc", move || {
                video_send::video_send_thread(ctx)
            })?);

        // Incoming video: assembler task -> decoder thread -> sink.
        let (decode_tx, decode_rx) = std_mpsc::sync_channel(video_recv::DECODE_QUEUE);
        let wants_keyframe = Arc::new(Notify::new());
        {
            let counters = Arc::clone(&counters);
            let sink = config.remote_video.clone();
            let wants = Arc::clone(&wants_keyframe);
            media
                .threads
                .push(spawn_thread("chingu-video-dec", move || {
                    video_decode::video_decode_thread(decode_rx, sink, counters, wants)
                })?);
        }
        media
            .tasks
            .push(tokio::spawn(video_recv::video_receive_task(
                video_recv::ReceiveCtx {
                    rtp: inbound.video,
                    decoder: decode_tx,
                    counters: Arc::clone(&counters),
                    decoder_wants_keyframe: wants_keyframe,
                    notices: notices.clone(),
                    bandwidth: Arc::clone(&bandwidth),
                },
            )));

        // The far end crosses from the speaker's callback (as the device takes it) to the
        // capture thread's echo canceller; the playout thread, which opens speakers, hands
        // each one's queue over (newest wins: an older speaker's is of no use).
        let far_ends = Arc::new(chingu_media::latest::Latest::new());

        // Outgoing audio: capture+encode thread -> transport.
        let ctx = audio_send::AudioSendCtx {
            source: config.audio.clone(),
            processing: config.processing,
            far_ends: Arc::clone(&far_ends),
            ctl: audio_ctl_rx,
            out: out.audio,
            counters: Arc::clone(&counters),
            notices: notices.clone(),
            bandwidth: Arc::clone(&bandwidth),
        };
        media
            .threads
            .push(spawn_thread("chingu-audio-enc", move || {
                audio_send::audio_send_thread(ctx)
            })?);

        // Incoming audio: forwarder task -> playout thread (jitter buffer, decode, output).
        let (play_tx, play_rx) = std_mpsc::sync_channel(audio_play::PLAYOUT_QUEUE);
        let ctx = audio_play::PlayoutCtx {
            rx: play_rx,
            output: config.output.clone(),
            far_ends,
            tap: config.remote_audio.clone(),
            counters: Arc::clone(&counters),
            notices,
        };
        media
            .threads
            .push(spawn_thread("chingu-audio-play", move || {
                audio_play::audio_playout_thread(ctx)
            })?);
        media.tasks.push(tokio::spawn(audio_play::forward_audio(
            inbound.audio,
            play_tx,
            Arc::clone(&counters),
        )));
        Ok((media, outbound))
    }

    /// The peer lost a picture: the next frame is a keyframe.
    pub fn request_keyframe(&self) {
        self.counters
            .keyframes_requested_by_peer
            .fetch_add(1, Relaxed);
        self.keyframe.store(true, Relaxed);
    }

    /// The peer's decoder tells what it has of our video: the encoder recovers from a
    /// long-term picture, or marks the next one.
    pub fn picture_feedback(&self, feedback: crate::packets::PictureFeedback) {
        if matches!(feedback, crate::packets::PictureFeedback::Recover { .. }) {
            self.counters
                .keyframes_requested_by_peer
                .fetch_add(1, Relaxed);
        }
        self.control_video(VideoCtl::Feedback(feedback));
    }

    pub fn set_video_enabled(&self, enabled: bool) {
        self.control_video(VideoCtl::Enabled(enabled));
    }

    pub fn set_muted(&self, muted: bool) {
        self.control_audio(AudioCtl::Muted(muted));
    }

    pub fn set_video_source(&self, source: Option<VideoSource>) {
        self.control_video(VideoCtl::Source(source));
    }

    pub fn set_audio_source(&self, source: Option<AudioSource>) {
        self.control_audio(AudioCtl::Source(source));
    }

    pub fn set_processing(&self, settings: ProcessingSettings) {
        self.control_audio(AudioCtl::Processing(settings));
    }

    fn control_video(&self, ctl: VideoCtl) {
        if let Err(e) = self.video_ctl.try_send(ctl) {
            tracing::warn!("video control not delivered: {e}");
        }
    }

    fn control_audio(&self, ctl: AudioCtl) {
        if let Err(e) = self.audio_ctl.try_send(ctl) {
            tracing::warn!("audio control not delivered: {e}");
        }
    }

    /// Stops every task and joins every thread (devices close with them). Threads end
    /// when their inputs close: the control channels (dropped here) and the queues fed by
    /// the tasks (aborted here).
    pub async fn stop(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        let threads = std::mem::take(&mut self.threads);
        drop(self);
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
        // Not stopped with `stop()` (a panic path): the threads still end, once their
        // control channels (dropped with `self`) and queues close.
        for task in &self.tasks {
            task.abort();
        }
    }
}
