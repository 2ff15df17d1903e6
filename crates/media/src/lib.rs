//! Chingu media: video frames and pixel conversion, synthetic sources that carry their
//! own frame number and capture time, and the H.264 and Opus codecs. No networking.
//! Microphones and speakers ([`audio_device`], cpal) and cameras ([`camera`], nokhwa)
//! run on dedicated threads; frames cross threads through [`latest::Latest`].
//! Everything else needs no hardware and is tested on synthetic media.

pub mod audio_device;
pub mod barcode;
pub mod camera;
pub mod convert;
pub mod echo_metrics;
pub mod frame;
pub mod h264;
pub mod h264_chain;
pub mod h264_syntax;
pub mod latest;
pub mod level;
pub mod opus_codec;
pub mod pattern;
pub mod processing;
pub mod resample;
pub mod room;
pub mod scale;
pub mod tone;
pub mod y4m;

pub use frame::I420Frame;

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("frame size {width}x{height} is not supported: {why}")]
    BadSize {
        width: usize,
        height: usize,
        why: &'static str,
    },
    #[error("input of {got} bytes does not fit a {width}x{height} {format} frame (needs {need})")]
    BadInput {
        format: &'static str,
        width: usize,
        height: usize,
        got: usize,
        need: usize,
    },
    #[error("H.264 codec: {0}")]
    H264(String),
    #[error("Opus codec: {0}")]
    Opus(String),
    #[error("no {0} found on this machine")]
    NoDevice(&'static str),
    #[error("{kind} {id:?} not found")]
    DeviceNotFound { kind: &'static str, id: String },
    #[error("audio device: {0}")]
    Device(String),
    #[error("video file: {0}")]
    VideoFile(String),
    #[error("audio frame of {got} samples: the processing takes whole blocks of {block}")]
    AudioFrame { got: usize, block: usize },
    #[error("audio processing: {0}")]
    Processing(String),
}
