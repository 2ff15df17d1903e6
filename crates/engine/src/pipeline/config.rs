//! What a call's media is made of: sources, outputs, sinks for decoded media, and what
//! the media threads report.

use std::sync::Arc;

use chingu_media::I420Frame;
use chingu_media::camera::CameraRequest;
use chingu_media::processing::ProcessingSettings;
use serde::Serialize;

use super::relay::{AudioRelay, FrameRelay};

/// A kind of device, as device errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Device {
    Camera,
    Microphone,
    Speaker,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Camera => "camera",
            Device::Microphone => "microphone",
            Device::Speaker => "speaker",
        })
    }
}

/// Where the outgoing video comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoSource {
    /// Frames pushed by another part of the program (an echo peer).
    Relay(Arc<FrameRelay>),
    /// The synthetic pattern with a frame-number/timestamp barcode.
    TestPattern { width: u32, height: u32, fps: u32 },
    /// A `.y4m` file, looped at its own frame rate, each frame stamped with the same
    /// barcode as the pattern (so the same frames can be sent by any WebRTC stack).
    File(std::path::PathBuf),
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
    /// A tone in talkspurts (one second on, one off), as a speaker in a conversation:
    /// what discontinuous transmission (DTX) is measured with.
    Talk {
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
    /// When its first packet arrived ([`chingu_media::frame::now_us`] clock).
    pub received_us: u64,
    pub decoded_us: u64,
}

impl FrameInfo {
    /// For a frame shown where it was captured (the local preview).
    pub fn captured(frame: &I420Frame) -> Self {
        Self {
            rtp_timestamp: 0,
            received_us: frame.capture_us,
            decoded_us: frame.capture_us,
        }
    }
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
    /// What runs on a microphone before it is encoded (echo cancellation, noise
    /// suppression, gain control); other sources are sent as they are.
    pub processing: ProcessingSettings,
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
            .field("processing", &self.processing)
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
            processing: ProcessingSettings::default(),
            video_bitrate_bps: 1_000_000,
            camera_fallback: false,
            remote_video: None,
            local_preview: None,
            remote_audio: None,
        }
    }
}

/// The devices a person picked (`None`: the system's default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceChoice {
    pub camera: Option<String>,
    pub microphone: Option<String>,
    pub speaker: Option<String>,
}

impl MediaConfig {
    /// A person's call: the chosen camera at 640x480 (with the synthetic pattern, and a
    /// notice, when it cannot be opened), the chosen microphone and speaker where this
    /// machine has any (silence and no playback where it has none). Asks the sound
    /// server what exists, which can block: call it off the async runtime.
    pub fn for_devices(choice: &DeviceChoice) -> Self {
        use chingu_media::audio_device::{input_devices, output_devices};
        let has_mic = input_devices().is_ok_and(|d| !d.is_empty());
        let has_speaker = output_devices().is_ok_and(|d| !d.is_empty());
        Self {
            video: Some(VideoSource::Camera {
                id: choice.camera.clone(),
                request: CameraRequest::VGA,
            }),
            audio: has_mic.then(|| AudioSource::Microphone {
                id: choice.microphone.clone(),
            }),
            output: if has_speaker {
                AudioOutput::Speaker {
                    id: choice.speaker.clone(),
                }
            } else {
                AudioOutput::Discard
            },
            processing: ProcessingSettings::default(),
            video_bitrate_bps: 1_000_000,
            camera_fallback: true,
            remote_video: None,
            local_preview: None,
            remote_audio: None,
        }
    }
}

/// Something the media of a call reports to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaNotice {
    /// A device could not be opened, or stopped; the call goes on without it.
    DeviceError { device: Device, message: String },
    /// The decoder needs a keyframe: ask the peer (the actor sends the PLI; this is
    /// already rate-limited).
    KeyframeNeeded,
    /// Tell the peer what the decoder has (the actor sends it as RTCP).
    PictureFeedback(crate::packets::PictureFeedback),
}
