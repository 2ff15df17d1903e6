//! Cost of the media pipeline per frame on one core: test pattern drawing, H.264 encode
//! and decode at 640x480 and 1280x720, and Opus per 20 ms frame. Prints one JSON object
//! per case. Run: `cargo run --release -p chingu-media --example codec_bench`
//! (also part of `cargo xtask bench`).

use std::time::Instant;

use chingu_media::I420Frame;
use chingu_media::h264::{EncoderSettings, H264Decoder, H264Encoder};
use chingu_media::opus_codec::{FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings};
use chingu_media::pattern::TestPattern;
use chingu_media::tone::ToneGenerator;

fn main() -> Result<(), chingu_media::MediaError> {
    for (width, height, bitrate_bps) in [(640, 480, 1_000_000), (1280, 720, 2_500_000)] {
        let frames = 300u32;
        let mut pattern = TestPattern::new();
        let mut encoder = H264Encoder::new(EncoderSettings {
            bitrate_bps,
            fps: 30.0,
        })?;
        let mut decoder = H264Decoder::new()?;
        let mut frame = I420Frame::new(width, height)?;
        let mut decoded = I420Frame::new(2, 2)?;
        let (mut draw_s, mut encode_s, mut decode_s, mut bytes) = (0.0, 0.0, 0.0, 0usize);
        let mut squared_error = 0.0f64;
        let mut packet = Vec::new();
        for i in 0..frames {
            let t = Instant::now();
            pattern.draw(&mut frame, u64::from(i));
            draw_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            if let Some(encoded) = encoder.encode(&frame, false)? {
                packet.clear();
                packet.extend_from_slice(encoded.data);
            }
            encode_s += t.elapsed().as_secs_f64();
            bytes += packet.len();
            let t = Instant::now();
            decoder.decode(&packet, &mut decoded)?;
            decode_s += t.elapsed().as_secs_f64();
            // Quality: luma mean squared error against the source frame.
            squared_error += frame
                .y
                .iter()
                .zip(&decoded.y)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum::<f64>()
                / frame.y.len() as f64;
        }
        let mse = (squared_error / f64::from(frames)).max(1e-9);
        let psnr = 10.0 * (255.0f64 * 255.0 / mse).log10();
        let per = |s: f64| s * 1000.0 / f64::from(frames);
        println!(
            "{{\"case\":\"h264\",\"width\":{width},\"height\":{height},\"target_kbps\":{},\"kbps\":{:.0},\"pattern_ms_per_frame\":{:.2},\"encode_ms_per_frame\":{:.2},\"decode_ms_per_frame\":{:.2},\"y_psnr_db\":{:.2}}}",
            bitrate_bps / 1000,
            bytes as f64 * 8.0 / (f64::from(frames) / 30.0) / 1000.0,
            per(draw_s),
            per(encode_s),
            per(decode_s),
            psnr
        );
    }
    let mut tone = ToneGenerator::new(440.0, 0.3);
    let mut encoder = OpusEncoder::new(OpusSettings::default())?;
    let mut decoder = OpusDecoder::new()?;
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut out = [0i16; FRAME_SAMPLES];
    let frames = 2_500u32;
    let (mut encode_s, mut decode_s) = (0.0, 0.0);
    for _ in 0..frames {
        tone.fill(&mut pcm);
        let t = Instant::now();
        let packet = encoder.encode(&pcm)?.to_vec();
        encode_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        decoder.decode(&packet, &mut out)?;
        decode_s += t.elapsed().as_secs_f64();
    }
    println!(
        "{{\"case\":\"opus\",\"frame_ms\":20,\"encode_us_per_frame\":{:.0},\"decode_us_per_frame\":{:.0}}}",
        encode_s * 1e6 / f64::from(frames),
        decode_s * 1e6 / f64::from(frames)
    );
    Ok(())
}
