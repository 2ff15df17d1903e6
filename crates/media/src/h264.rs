//! H.264 Constrained Baseline with openh264 (built from source, with nasm for SIMD).
//!
//! openh264 0.9's builder sets bitrate and frame rate only at construction; congestion
//! control changes them during a call through openh264's own option API
//! ([`H264Encoder::set_rate`]), without a keyframe. A new size rebuilds the encoder
//! ([`H264Encoder::reconfigure`]; the next frame is an IDR). Keyframes
//! are produced only on request ([`H264Encoder::encode`]'s `force_keyframe`) and on the
//! first frame: the call engine asks for one when the call connects and on every PLI.
//! An encoder can make temporal layers ([`H264Encoder::with_temporal_layers`]).

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Level,
    Profile, RateControlMode, UsageType,
};
use openh264::formats::YUVSource;

use crate::{I420Frame, MediaError};

/// What the encoder aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    pub bitrate_bps: u32,
    pub fps: f32,
}

/// One encoded picture, Annex B (start codes), ready to packetise.
#[derive(Debug)]
pub struct EncodedFrame<'a> {
    pub data: &'a [u8],
    pub keyframe: bool,
}

pub struct H264Encoder {
    encoder: Encoder,
    settings: EncoderSettings,
    out: Vec<u8>,
    clock_ms: f64,
    /// A frame has been encoded (openh264 takes options only after its first frame).
    started: bool,
    /// Temporal layers wanted (see [`DEFAULT_TEMPORAL_LAYERS`]), and whether they are set.
    temporal_layers: i32,
    layered: bool,
    /// Long-term reference pictures, for recovery without a keyframe
    /// ([`H264Encoder::recover`]).
    long_term: bool,
}

/// Temporal layers: with two, every other frame is one no other frame refers to
/// (`nal_ref_idc` 0), so losing it costs that frame alone, where with one layer every
/// lost frame breaks the chain until a keyframe (`h264_chain::ReferenceChain` tells the
/// two apart). The wrapper builds one layer; more are set through openh264's option API
/// once the encoder is initialised, which openh264 does on its first frame: so such an
/// encoder first encodes a blank frame it throws away. Calls use one layer for now: with
/// two, a call on a 250 kbit/s uplink lost its picture (decision 10, "Two temporal
/// layers").
const DEFAULT_TEMPORAL_LAYERS: u8 = 1;

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn h264_err(err: impl std::fmt::Display) -> MediaError {
    MediaError::H264(err.to_string())
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, MediaError> {
        Self::with_temporal_layers(settings, DEFAULT_TEMPORAL_LAYERS)
    }

    /// An encoder making `layers` temporal layers (1 to 4).
    pub fn with_temporal_layers(settings: EncoderSettings, layers: u8) -> Result<Self, MediaError> {
        Self::build(settings, layers, false)
    }

    /// An encoder that keeps long-term reference pictures (openh264's LTR): an IDR and,
    /// each time the receiver confirms the last one ([`Self::long_term_confirmed`]), a
    /// picture every 30 frames or more. After a loss it can encode a picture that refers
    /// only to a confirmed one ([`Self::recover`]) instead of a keyframe: a P frame,
    /// several times smaller. The pictures themselves are standard H.264: any decoder
    /// takes them.
    pub fn with_long_term_references(settings: EncoderSettings) -> Result<Self, MediaError> {
        Self::build(settings, DEFAULT_TEMPORAL_LAYERS, true)
    }

    fn build(settings: EncoderSettings, layers: u8, long_term: bool) -> Result<Self, MediaError> {
        if !(1..=4).contains(&layers) {
            return Err(MediaError::H264(format!("{layers} temporal layers")));
        }
        Ok(Self {
            encoder: build_encoder(settings, long_term)?,
            settings,
            out: Vec::with_capacity(256 * 1024),
            clock_ms: 0.0,
            started: false,
            temporal_layers: i32::from(layers),
            // One layer is what the wrapper builds.
            layered: layers == 1,
            long_term,
        })
    }

    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Applies new targets; the next frame will be a keyframe.
    pub fn reconfigure(&mut self, settings: EncoderSettings) -> Result<(), MediaError> {
        if settings != self.settings {
            self.encoder = build_encoder(settings, self.long_term)?;
            self.settings = settings;
            self.started = false;
            self.layered = self.temporal_layers == 1;
        }
        Ok(())
    }

    /// Changes the target bitrate and frame rate: the next frames follow it, with no
    /// keyframe. Before the first frame (openh264 initialises on it) the encoder is
    /// rebuilt with the new settings instead.
    pub fn set_rate(&mut self, bitrate_bps: u32, fps: f32) -> Result<(), MediaError> {
        let wanted = EncoderSettings { bitrate_bps, fps };
        if wanted == self.settings {
            return Ok(());
        }
        validate(wanted)?;
        if !self.started {
            self.encoder = build_encoder(wanted, self.long_term)?;
            self.settings = wanted;
            self.layered = self.temporal_layers == 1;
            return Ok(());
        }
        let mut target = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: i32::try_from(bitrate_bps).map_err(h264_err)?,
        };
        // Both the stream's maximum and the (one) spatial layer's.
        let mut max = target;
        let mut layer_max = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_0,
            ..target
        };
        let mut frame_rate = fps;
        // The layer's maximum moves with the target (as the encoder was built): raised
        // before the target when going up, lowered after it when going down, since
        // openh264 refuses a target above the maximum and a maximum below the target.
        let up = bitrate_bps > self.settings.bitrate_bps;
        // SAFETY: the encoder is initialised (it has encoded a frame: `started`), each
        // option is given a pointer to the type openh264's API documents for it
        // (SBitrateInfo for the two bitrates, float for the frame rate), and the pointers
        // live for the call; these options are openh264's documented way to change the
        // rate at run time and do not touch anything the wrapper relies on (size,
        // threads, format).
        #[allow(unsafe_code)]
        let results = unsafe {
            let api = self.encoder.raw_api();
            let mut set_max = || {
                api.set_option(
                    openh264_sys2::ENCODER_OPTION_MAX_BITRATE,
                    (&raw mut layer_max).cast(),
                ) | api.set_option(
                    openh264_sys2::ENCODER_OPTION_MAX_BITRATE,
                    (&raw mut max).cast(),
                )
            };
            let first = if up { set_max() } else { 0 };
            let bitrate = api.set_option(
                openh264_sys2::ENCODER_OPTION_BITRATE,
                (&raw mut target).cast(),
            );
            let last = if up { 0 } else { set_max() };
            let frame_rate = api.set_option(
                openh264_sys2::ENCODER_OPTION_FRAME_RATE,
                (&raw mut frame_rate).cast(),
            );
            [first, bitrate, last, frame_rate]
        };
        if results.iter().any(|&r| r != 0) {
            return Err(MediaError::H264(format!(
                "openh264 refused {wanted:?} (codes {results:?})"
            )));
        }
        self.settings = wanted;
        Ok(())
    }

    /// Encodes one frame. `None` when the encoder dropped it (rate control).
    pub fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
    ) -> Result<Option<EncodedFrame<'_>>, MediaError> {
        if force_keyframe {
            self.encoder.force_intra_frame();
        }
        // Rate control is given a clock that advances one frame interval per frame at
        // the configured rate (capture times are not always there: relayed frames).
        let at = openh264::Timestamp::from_millis(self.clock_ms as u64);
        self.clock_ms += 1000.0 / f64::from(self.settings.fps);
        if !self.layered {
            // openh264 initialises on its first frame and takes the layers only then:
            // a blank frame of this size first (its output is not used), and the real
            // one is the IDR the new layers begin with.
            let blank = I420Frame::new(frame.width(), frame.height())?;
            self.encoder
                .encode_at(&blank, openh264::Timestamp::from_millis(0))
                .map_err(h264_err)?;
            self.set_temporal_layers()?;
            self.encoder.force_intra_frame();
        }
        let bitstream = self.encoder.encode_at(frame, at).map_err(h264_err)?;
        self.started = true;
        let keyframe = match bitstream.frame_type() {
            FrameType::Skip | FrameType::Invalid => return Ok(None),
            FrameType::IDR | FrameType::I => true,
            FrameType::P | FrameType::IPMixed => false,
        };
        self.out.clear();
        bitstream.write_vec(&mut self.out);
        Ok(Some(EncodedFrame {
            data: &self.out,
            keyframe,
        }))
    }
}

impl H264Encoder {
    /// The receiver decoded the frame that made picture `frame_num` (of the stream begun
    /// by IDR `idr_pic_id`) long-term: the encoder may recover from it, and marks the
    /// next one. Ignored by an encoder without long-term references, or for a picture it
    /// no longer has.
    pub fn long_term_confirmed(
        &mut self,
        idr_pic_id: u32,
        frame_num: u32,
    ) -> Result<(), MediaError> {
        if !self.long_term || !self.started {
            return Ok(());
        }
        let mut feedback = openh264_sys2::SLTRMarkingFeedback {
            uiFeedbackType: openh264_sys2::LTR_MARKING_SUCCESS as u32,
            uiIDRPicId: idr_pic_id,
            iLTRFrameNum: i32::try_from(frame_num).map_err(h264_err)?,
            iLayerId: 0,
        };
        self.ltr_option(
            openh264_sys2::ENCODER_LTR_MARKING_FEEDBACK,
            (&raw mut feedback).cast(),
        )
    }

    /// The receiver lost pictures after `last_correct` (the `frame_num` of the last it
    /// decoded, in the stream begun by IDR `idr_pic_id`) and is at `current`: the next
    /// frame refers only to a long-term picture it confirmed, or is an IDR when there is
    /// none. Without long-term references, the next frame is an IDR.
    pub fn recover(
        &mut self,
        idr_pic_id: u32,
        last_correct: u32,
        current: u32,
    ) -> Result<(), MediaError> {
        if !self.long_term || !self.started {
            self.encoder.force_intra_frame();
            return Ok(());
        }
        let mut request = openh264_sys2::SLTRRecoverRequest {
            uiFeedbackType: openh264_sys2::LTR_RECOVERY_REQUEST as u32,
            uiIDRPicId: idr_pic_id,
            iLastCorrectFrameNum: i32::try_from(last_correct).map_err(h264_err)?,
            iCurrentFrameNum: i32::try_from(current).map_err(h264_err)?,
            iLayerId: 0,
        };
        self.ltr_option(
            openh264_sys2::ENCODER_LTR_RECOVERY_REQUEST,
            (&raw mut request).cast(),
        )
    }

    fn ltr_option(
        &mut self,
        option: openh264_sys2::ENCODER_OPTION,
        value: *mut std::ffi::c_void,
    ) -> Result<(), MediaError> {
        // SAFETY: the encoder is initialised (`started`), and `value` points to the
        // structure openh264's API documents for `option` (SLTRMarkingFeedback for
        // ENCODER_LTR_MARKING_FEEDBACK, SLTRRecoverRequest for
        // ENCODER_LTR_RECOVERY_REQUEST), which the caller keeps alive for the call.
        // openh264 copies what it needs and checks the IDR and layer it names.
        #[allow(unsafe_code)]
        let code = unsafe { self.encoder.raw_api().set_option(option, value) };
        if code != 0 {
            return Err(MediaError::H264(format!(
                "openh264 refused long-term option {option} (code {code})"
            )));
        }
        Ok(())
    }

    /// Gives the (initialised) encoder its temporal layers, keeping every other parameter
    /// as it is.
    fn set_temporal_layers(&mut self) -> Result<(), MediaError> {
        let mut params = openh264_sys2::SEncParamExt::default();
        // SAFETY: the encoder is initialised (it has encoded a frame), and both calls are
        // given a pointer to an `SEncParamExt`, the type openh264 documents for this
        // option, that lives for the call. The parameters set are the encoder's own, read
        // just before, with only the temporal layer count changed: size, threads and
        // format, which the wrapper relies on, stay as they are.
        #[allow(unsafe_code)]
        let (got, set) = unsafe {
            let api = self.encoder.raw_api();
            let got = api.get_option(
                openh264_sys2::ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                (&raw mut params).cast(),
            );
            params.iTemporalLayerNum = self.temporal_layers;
            let set = if got == 0 {
                api.set_option(
                    openh264_sys2::ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                    (&raw mut params).cast(),
                )
            } else {
                got
            };
            (got, set)
        };
        if got != 0 || set != 0 {
            return Err(MediaError::H264(format!(
                "openh264 refused {} temporal layers (codes {got}, {set})",
                self.temporal_layers
            )));
        }
        self.layered = true;
        Ok(())
    }
}

fn validate(settings: EncoderSettings) -> Result<(), MediaError> {
    if !(1.0..=120.0).contains(&settings.fps)
        || !(10_000..=50_000_000).contains(&settings.bitrate_bps)
    {
        return Err(MediaError::H264(format!(
            "unsupported settings {settings:?}"
        )));
    }
    Ok(())
}

fn build_encoder(settings: EncoderSettings, long_term: bool) -> Result<Encoder, MediaError> {
    validate(settings)?;
    let config = EncoderConfig::new()
        .long_term_reference(long_term)
        .profile(Profile::Baseline)
        // The level we offer (profile-level-id 42e01f): without it openh264 picks one
        // from the first bitrate and refuses a higher rate later.
        .level(Level::Level_3_1)
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(settings.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(settings.fps))
        // Dropping frames is our decision (the pacer and congestion control), not the
        // encoder's: a skipped frame is a visible stutter. openh264 warns that bitrate
        // "can't be controlled" this way, but its QP control held 1,002 kbps against a
        // 1,000 kbps target on the test pattern (tests/codecs.rs).
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(0))
        // Low complexity: 18-22 % less encode time than the default (medium) at equal or
        // better luma PSNR on the test pattern (docs/benchmarks.md, codec_bench).
        .complexity(Complexity::Low);
    Encoder::with_api_config(OpenH264API::from_source(), config).map_err(h264_err)
}

pub struct H264Decoder {
    decoder: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    pub fn new() -> Result<Self, MediaError> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(h264_err)?;
        Ok(Self { decoder })
    }

    /// Decodes one Annex B access unit into `out` (resized as needed). Returns whether a
    /// picture came out; corrupt input is an error, never a panic.
    pub fn decode(&mut self, annex_b: &[u8], out: &mut I420Frame) -> Result<bool, MediaError> {
        let Some(yuv) = self.decoder.decode(annex_b).map_err(h264_err)? else {
            return Ok(false);
        };
        let (width, height) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        out.resize(width, height)?;
        copy_plane(yuv.y(), ys, &mut out.y, width, height);
        copy_plane(yuv.u(), us, &mut out.u, width / 2, height / 2);
        copy_plane(yuv.v(), vs, &mut out.v, width / 2, height / 2);
        Ok(true)
    }
}

fn copy_plane(src: &[u8], stride: usize, dst: &mut [u8], width: usize, height: usize) {
    for (row, line) in dst.chunks_exact_mut(width).take(height).enumerate() {
        line.copy_from_slice(&src[row * stride..row * stride + width]);
    }
}
