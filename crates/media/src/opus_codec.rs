//! Opus at 48 kHz mono in 20 ms frames, with in-band FEC and DTX available.

use crate::MediaError;

/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Opus never needs more than this for one frame at the rates we use.
pub const MAX_PACKET: usize = 1500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusSettings {
    pub bitrate_bps: i32,
    /// In-band forward error correction: each packet carries a low-rate copy of the
    /// previous one, recovered with [`OpusDecoder::decode_fec`].
    pub fec: bool,
    /// Expected loss (0–100), which sizes the FEC.
    pub expected_loss_pct: i32,
    /// Discontinuous transmission: near-silent frames shrink to a few bytes.
    pub dtx: bool,
}

impl Default for OpusSettings {
    fn default() -> Self {
        Self {
            bitrate_bps: 32_000,
            fec: true,
            expected_loss_pct: 10,
            dtx: false,
        }
    }
}

fn opus_err(err: opus::Error) -> MediaError {
    MediaError::Opus(err.to_string())
}

pub struct OpusEncoder {
    encoder: opus::Encoder,
    out: [u8; MAX_PACKET],
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    pub fn new(settings: OpusSettings) -> Result<Self, MediaError> {
        let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .map_err(opus_err)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(settings.bitrate_bps))
            .map_err(opus_err)?;
        encoder.set_inband_fec(settings.fec).map_err(opus_err)?;
        encoder
            .set_packet_loss_perc(settings.expected_loss_pct.clamp(0, 100))
            .map_err(opus_err)?;
        encoder.set_dtx(settings.dtx).map_err(opus_err)?;
        Ok(Self {
            encoder,
            out: [0; MAX_PACKET],
        })
    }

    /// Sizes the in-band FEC for this expected loss (0–100 %): none at 0, more of each
    /// packet's bits for a copy of the previous frame as it rises.
    pub fn set_expected_loss(&mut self, pct: i32) -> Result<(), MediaError> {
        self.encoder
            .set_packet_loss_perc(pct.clamp(0, 100))
            .map_err(opus_err)
    }

    /// Turns discontinuous transmission on or off: with it, after ~200 ms of silence
    /// each frame shrinks to a packet of at most 2 bytes ([`is_dtx_packet`]) that need
    /// not be sent, with a frame that updates the far end's comfort noise every 400 ms.
    pub fn set_dtx(&mut self, on: bool) -> Result<(), MediaError> {
        self.encoder.set_dtx(on).map_err(opus_err)
    }

    /// Encodes exactly one 20 ms frame.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], MediaError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(MediaError::Opus(format!(
                "a frame is {FRAME_SAMPLES} samples, got {}",
                pcm.len()
            )));
        }
        let len = self.encoder.encode(pcm, &mut self.out).map_err(opus_err)?;
        Ok(&self.out[..len])
    }
}

/// Whether an encoded packet is a DTX frame: a table-of-contents byte and no audio, which
/// the encoder makes in silence with DTX on and the decoder turns into comfort noise
/// (libwebrtc's test is the same: 2 bytes or fewer).
pub fn is_dtx_packet(packet: &[u8]) -> bool {
    packet.len() <= 2
}

pub struct OpusDecoder {
    decoder: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            decoder: opus::Decoder::new(48_000, opus::Channels::Mono).map_err(opus_err)?,
        })
    }

    /// Decodes a packet into one 20 ms frame; corrupt packets are errors, not panics.
    pub fn decode(
        &mut self,
        packet: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), MediaError> {
        self.run(packet, out, false)
    }

    /// Conceals a lost frame (packet loss concealment); after a DTX frame, comfort noise.
    pub fn conceal(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> Result<(), MediaError> {
        self.run(&[], out, false)
    }

    /// Recovers the frame *before* `next_packet` from the FEC data it carries.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), MediaError> {
        self.run(next_packet, out, true)
    }

    fn run(
        &mut self,
        packet: &[u8],
        out: &mut [i16; FRAME_SAMPLES],
        fec: bool,
    ) -> Result<(), MediaError> {
        let samples = self.decoder.decode(packet, out, fec).map_err(opus_err)?;
        if samples != FRAME_SAMPLES {
            return Err(MediaError::Opus(format!(
                "decoded {samples} samples, expected {FRAME_SAMPLES}"
            )));
        }
        Ok(())
    }
}
