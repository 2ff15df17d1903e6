//! The codecs on synthetic media: what goes in comes out, in order, recognisably.

use chingu_media::barcode;
use chingu_media::h264::{EncoderSettings, H264Decoder, H264Encoder};
use chingu_media::h264_chain::{AfterLoss, ReferenceChain};
use chingu_media::h264_syntax::{self, HeaderReader};
use chingu_media::opus_codec::{
    FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings, is_dtx_packet,
};
use chingu_media::pattern::TestPattern;
use chingu_media::tone::{ToneGenerator, dominant_tone};
use chingu_media::{I420Frame, MediaError};

fn settings() -> EncoderSettings {
    EncoderSettings {
        bitrate_bps: 1_000_000,
        fps: 30.0,
    }
}

#[test]
fn h264_round_trip_keeps_every_frame_number_in_order() {
    let mut encoder = H264Encoder::new(settings()).expect("encoder");
    let mut decoder = H264Decoder::new().expect("decoder");
    let mut pattern = TestPattern::new();
    let mut frame = I420Frame::new(640, 480).expect("size");
    let mut decoded = I420Frame::new(2, 2).expect("size");
    let mut numbers = Vec::new();
    let mut bytes = 0usize;
    let frames = 90;
    for i in 0..frames {
        pattern.draw(&mut frame, 1_000_000 + i * 33_333);
        let encoded = encoder
            .encode(&frame, false)
            .expect("encode")
            .expect("no skipped frames");
        assert_eq!(
            encoded.keyframe,
            i == 0,
            "only the first frame is a keyframe unless asked"
        );
        bytes += encoded.data.len();
        let data = encoded.data.to_vec();
        assert!(
            decoder.decode(&data, &mut decoded).expect("decode"),
            "one picture per access unit"
        );
        assert_eq!((decoded.width(), decoded.height()), (640, 480));
        numbers.push(
            barcode::read(&decoded)
                .expect("the stamp survives encoding")
                .frame_number,
        );
    }
    assert_eq!(numbers, (0..frames as u32).collect::<Vec<_>>());
    // Rate control: 90 frames at 30 fps is 3 s; 1 Mbit/s is 375 KB. Measured 1,002 kbps;
    // the bound allows the first keyframe and settling, not a runaway.
    let kbps = bytes as f64 * 8.0 / 3.0 / 1000.0;
    eprintln!("640x480 test pattern at a 1,000 kbps target: {kbps:.0} kbps");
    assert!(
        kbps < 1_500.0,
        "bitrate should follow a 1,000 kbps target, got {kbps:.0} kbps"
    );
}

#[test]
fn the_rate_changes_at_run_time_without_keyframes() {
    let mut encoder = H264Encoder::new(EncoderSettings {
        bitrate_bps: 2_000_000,
        fps: 30.0,
    })
    .expect("encoder");
    let mut pattern = TestPattern::new();
    let mut frame = I420Frame::new(640, 480).expect("size");
    // Two seconds at 2 Mbit/s, then two at 700 kbit/s, then two at 2 Mbit/s again.
    let mut phase_bytes = [0usize; 3];
    for i in 0..180u64 {
        if i == 60 {
            encoder.set_rate(700_000, 30.0).expect("lower rate");
        }
        if i == 120 {
            encoder.set_rate(2_000_000, 30.0).expect("higher rate");
        }
        pattern.draw(&mut frame, 1_000_000 + i * 33_333);
        let encoded = encoder.encode(&frame, false).expect("encode");
        let Some(encoded) = encoded else { continue };
        assert_eq!(
            encoded.keyframe,
            i == 0,
            "frame {i}: no keyframe for a rate change"
        );
        // The second after each change, when rate control has settled.
        if i % 60 >= 30 {
            phase_bytes[(i / 60) as usize] += encoded.data.len();
        }
    }
    let kbps = phase_bytes.map(|b| b as f64 * 8.0 / 1000.0);
    eprintln!("kbps per phase (last second of each): {kbps:?}");
    assert!(
        kbps[1] < kbps[0] * 0.6,
        "the encoder did not follow 2 M -> 700 k: {kbps:?}"
    );
    assert!(
        kbps[2] > kbps[1] * 1.6,
        "the encoder did not follow 700 k -> 2 M: {kbps:?}"
    );
    // Built low, it may climb (the level is the one we offer, not one picked from the
    // first bitrate), and a rate set before the first frame applies to it.
    let mut small = H264Encoder::new(EncoderSettings {
        bitrate_bps: 300_000,
        fps: 30.0,
    })
    .expect("encoder");
    let mut other = I420Frame::new(480, 360).expect("size");
    pattern.draw(&mut other, 5);
    small
        .set_rate(200_000, 30.0)
        .expect("before the first frame");
    small.encode(&other, false).expect("encode");
    small.set_rate(2_000_000, 30.0).expect("up");
    small.set_rate(250_000, 15.0).expect("down");
    assert!(encoder.set_rate(0, 30.0).is_err());
    assert!(encoder.set_rate(500_000, 0.0).is_err());
}

#[test]
fn keyframes_come_on_request_and_after_reconfiguring() {
    let mut encoder = H264Encoder::new(settings()).expect("encoder");
    let mut pattern = TestPattern::new();
    let mut frame = I420Frame::new(320, 240).expect("size");
    let mut kinds = Vec::new();
    for i in 0..6 {
        pattern.draw(&mut frame, 0);
        if i == 4 {
            encoder
                .reconfigure(EncoderSettings {
                    bitrate_bps: 300_000,
                    fps: 15.0,
                })
                .expect("reconfigure");
        }
        kinds.push(
            encoder
                .encode(&frame, i == 2)
                .expect("encode")
                .expect("frame")
                .keyframe,
        );
    }
    assert_eq!(kinds, vec![true, false, true, false, true, false]);
    assert!(
        H264Encoder::new(EncoderSettings {
            bitrate_bps: 0,
            fps: 30.0
        })
        .is_err()
    );
}

/// Encoded frames of the test pattern, each with its frame number.
fn encoded_pattern(count: u64) -> Vec<Vec<u8>> {
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
            encoded.data.to_vec()
        })
        .collect()
}

#[test]
fn every_other_frame_is_one_no_other_frame_needs() {
    let frames = encoded_pattern(12);
    let mut sps = None;
    let mut kinds = Vec::new();
    for frame in &frames {
        for nal in h264_syntax::nal_units(frame) {
            match nal[0] & 0x1f {
                7 => sps = Some(h264_syntax::parse_sps(nal).expect("sps")),
                1 | 5 => {
                    let slice = h264_syntax::parse_slice(nal, sps.as_ref().expect("sps first"))
                        .expect("slice header");
                    kinds.push((slice.idr, slice.reference, slice.frame_num));
                    break;
                }
                _ => {}
            }
        }
    }
    // An IDR, then non-reference and reference pictures in turn; frame_num advances
    // after each reference picture only.
    assert_eq!(
        kinds,
        vec![
            (true, true, 0),
            (false, false, 1),
            (false, true, 1),
            (false, false, 2),
            (false, true, 2),
            (false, false, 3),
            (false, true, 3),
            (false, false, 4),
            (false, true, 4),
            (false, false, 5),
            (false, true, 5),
            (false, false, 6),
        ]
    );
}

#[test]
fn after_a_lost_frame_the_chain_tells_whether_the_next_one_decodes() {
    let frames = encoded_pattern(10);
    // Frame 3 (a non-reference picture) lost: frame 4 decodes, whole, and so do the rest.
    let mut chain = ReferenceChain::new();
    let mut decoder = H264Decoder::new().expect("decoder");
    let mut picture = I420Frame::new(2, 2).expect("size");
    for (i, frame) in frames.iter().enumerate() {
        if i == 3 {
            continue;
        }
        if i == 4 {
            assert!(
                chain.decodable_after_loss(frame),
                "only a non-reference frame was lost"
            );
        }
        assert!(decoder.decode(frame, &mut picture).expect("decode"));
        chain.decoded(frame);
        let stamp = barcode::read(&picture).expect("a whole picture after the loss");
        assert_eq!(stamp.frame_number, i as u32);
    }
    // Frame 4 (a reference picture) lost: neither frame 5 nor frame 6 may be decoded.
    let mut chain = ReferenceChain::new();
    for frame in &frames[..4] {
        chain.decoded(frame);
    }
    assert!(!chain.decodable_after_loss(&frames[5]));
    assert!(!chain.decodable_after_loss(&frames[6]));
    // Frames 3 and 4 lost (a non-reference picture and the reference after it): frame 5
    // may not be decoded either.
    let mut chain = ReferenceChain::new();
    for frame in &frames[..3] {
        chain.decoded(frame);
    }
    assert!(!chain.decodable_after_loss(&frames[5]));
    // A broken chain waits for an IDR.
    chain.broken();
    assert!(!chain.decodable_after_loss(&frames[3]));
    assert!(chain.decodable_after_loss(&frames[0]));
}

/// The sender's side of recovery: what each frame it sent is, by fingerprint.
#[derive(Default)]
struct Sent {
    reader: HeaderReader,
    idr_pic_id: u32,
    /// fingerprint → (frame_num, the frame_num it made long-term)
    frames: Vec<(u32, u32, Option<u32>)>,
}

impl Sent {
    fn note(&mut self, annex_b: &[u8]) {
        let (info, header) = self.reader.first_slice(annex_b).expect("own slice");
        let header = header.expect("own header whole");
        if let Some(id) = header.idr_pic_id {
            self.idr_pic_id = id;
            self.frames.clear();
        }
        let marked = header.long_term_marked(self.reader.sps().expect("sps"));
        let name = h264_syntax::fingerprint(annex_b).expect("fingerprint");
        self.frames.push((name, info.frame_num, marked));
    }

    fn find(&self, annex_b: &[u8]) -> (u32, u32, Option<u32>) {
        let name = h264_syntax::fingerprint(annex_b).expect("fingerprint");
        *self
            .frames
            .iter()
            .find(|f| f.0 == name)
            .expect("a frame sent since the IDR")
    }
}

#[test]
fn after_a_lost_reference_the_encoder_recovers_from_a_confirmed_long_term_picture() {
    let mut encoder = H264Encoder::with_long_term_references(EncoderSettings {
        bitrate_bps: 300_000,
        fps: 30.0,
    })
    .expect("encoder");
    let mut decoder = H264Decoder::new().expect("decoder");
    let mut pattern = TestPattern::new();
    let mut frame = I420Frame::new(320, 240).expect("size");
    let mut picture = I420Frame::new(2, 2).expect("size");
    let mut chain = ReferenceChain::new();
    let mut sent = Sent::default();
    let mut confirmed = 0;
    let mut last_decoded: Option<Vec<u8>> = None;
    let mut lost_before = false;
    let mut recovered = 0;
    let mut sizes = (0, 0);
    let mut min_psnr = f64::INFINITY;
    for i in 0..150u64 {
        pattern.draw(&mut frame, i * 33_333);
        let data = encoder
            .encode(&frame, false)
            .expect("encode")
            .expect("frame")
            .data
            .to_vec();
        sent.note(&data);
        if i == 0 {
            sizes.0 = data.len();
        }
        // Frames 70-72 and 110 are lost on the way.
        if (70..=72).contains(&i) || i == 110 {
            lost_before = true;
            continue;
        }
        if std::mem::take(&mut lost_before) {
            match chain.after_loss(&data) {
                AfterLoss::Broken => {
                    // The receiver asks to recover from the last frame it decoded; this
                    // frame and those until the answer are not decoded.
                    let (_, last_correct, _) = sent.find(last_decoded.as_ref().expect("one"));
                    let (_, current, _) = sent.find(&data);
                    encoder
                        .recover(sent.idr_pic_id, last_correct, current)
                        .expect("recovery request");
                    chain.broken();
                    lost_before = true;
                    continue;
                }
                AfterLoss::Recovers => {
                    recovered += 1;
                    sizes.1 = data.len();
                }
                other => panic!("frame {i}: {other:?} after a lost reference picture"),
            }
        }
        assert!(
            decoder.decode(&data, &mut picture).expect("decode"),
            "frame {i}"
        );
        let stamp = barcode::read(&picture).expect("a whole picture");
        assert_eq!(stamp.frame_number, i as u32);
        // A picture decoded against the wrong reference shows it all over.
        let psnr = chingu_media::y4m::psnr_y(&frame, &picture, 0).expect("same size");
        min_psnr = min_psnr.min(psnr);
        if chain.decoded(&data) {
            let (_, _, marked) = sent.find(&data);
            encoder
                .long_term_confirmed(sent.idr_pic_id, marked.expect("the sender saw the mark"))
                .expect("confirmation");
            confirmed += 1;
        }
        last_decoded = Some(data);
    }
    eprintln!(
        "keyframe {} bytes, recovery frame {} bytes, least Y-PSNR {min_psnr:.1} dB",
        sizes.0, sizes.1
    );
    // ~29-30 dB throughout at this rate; a picture decoded against the wrong reference
    // falls far below.
    assert!(min_psnr > 25.0, "every picture whole: {min_psnr:.1} dB");
    assert!(confirmed >= 3, "long-term pictures confirmed: {confirmed}");
    assert_eq!(recovered, 2, "both losses recovered without a keyframe");
}

#[test]
fn garbage_into_the_decoder_is_an_error_or_nothing_never_a_panic() {
    let mut decoder = H264Decoder::new().expect("decoder");
    let mut out = I420Frame::new(2, 2).expect("size");
    let inputs: [&[u8]; 4] = [
        &[],
        &[0, 0, 0, 1, 0x65, 0xFF, 0x00, 0x12],
        &[0xFF; 3000],
        &[0, 0, 1, 0x67],
    ];
    for input in inputs {
        let _ = decoder.decode(input, &mut out);
    }
    // Still works on a real stream afterwards.
    let mut encoder = H264Encoder::new(settings()).expect("encoder");
    let mut frame = I420Frame::new(320, 240).expect("size");
    TestPattern::new().draw(&mut frame, 0);
    let data = encoder
        .encode(&frame, true)
        .expect("encode")
        .expect("frame")
        .data
        .to_vec();
    assert!(decoder.decode(&data, &mut out).expect("decode"));
}

fn tone_frames(frequency: f64, count: usize) -> Vec<[i16; FRAME_SAMPLES]> {
    let mut tone = ToneGenerator::new(frequency, 0.3);
    (0..count)
        .map(|_| {
            let mut frame = [0i16; FRAME_SAMPLES];
            tone.fill(&mut frame);
            frame
        })
        .collect()
}

#[test]
fn opus_round_trip_keeps_the_tone() {
    let mut encoder = OpusEncoder::new(OpusSettings::default()).expect("encoder");
    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut out = [0i16; FRAME_SAMPLES];
    let mut received = Vec::new();
    for frame in tone_frames(660.0, 50) {
        let packet = encoder.encode(&frame).expect("encode").to_vec();
        assert!(
            packet.len() < 200,
            "32 kbit/s is ~80 bytes a frame, got {}",
            packet.len()
        );
        decoder.decode(&packet, &mut out).expect("decode");
        received.extend_from_slice(&out);
    }
    let settled = &received[10 * FRAME_SAMPLES..];
    assert_eq!(dominant_tone(settled, &[440.0, 660.0, 880.0]), Some(660.0));
}

#[test]
fn a_lost_packet_is_recovered_from_the_next_ones_fec() {
    let mut encoder = OpusEncoder::new(OpusSettings {
        expected_loss_pct: 20,
        ..OpusSettings::default()
    })
    .expect("encoder");
    let mut decoder = OpusDecoder::new().expect("decoder");
    let packets: Vec<Vec<u8>> = tone_frames(440.0, 40)
        .iter()
        .map(|f| encoder.encode(f).expect("encode").to_vec())
        .collect();
    let mut out = [0i16; FRAME_SAMPLES];
    for packet in &packets[..30] {
        decoder.decode(packet, &mut out).expect("decode");
    }
    // Packet 30 is lost; packet 31 carries it.
    let mut recovered = [0i16; FRAME_SAMPLES];
    decoder
        .decode_fec(&packets[31], &mut recovered)
        .expect("fec");
    assert_eq!(
        dominant_tone(&recovered, &[440.0, 880.0]),
        Some(440.0),
        "FEC restores the tone"
    );
    let mut concealed = [0i16; FRAME_SAMPLES];
    decoder.conceal(&mut concealed).expect("plc");
}

#[test]
fn with_dtx_silence_shrinks_to_packets_that_need_not_be_sent() {
    let mut encoder = OpusEncoder::new(OpusSettings::default()).expect("encoder");
    encoder.set_dtx(true).expect("dtx");
    let mut decoder = OpusDecoder::new().expect("decoder");
    let silence = vec![[0i16; FRAME_SAMPLES]; 100];
    let talk = tone_frames(440.0, 25);
    let frames = talk.iter().chain(&silence).chain(&talk);
    let packets: Vec<Vec<u8>> = frames
        .map(|f| encoder.encode(f).expect("encode").to_vec())
        .collect();
    let sizes: Vec<usize> = packets.iter().map(Vec::len).collect();
    let (first, rest) = sizes.split_at(25);
    let (quiet, second) = rest.split_at(100);
    assert!(first.iter().all(|&n| n > 2), "{first:?}");
    // Within a few frames of silence the encoder stops coding audio: most frames are
    // DTX frames, and the rest (comfort noise updates) stay far below speech.
    let dtx = packets[25..125].iter().filter(|p| is_dtx_packet(p)).count();
    assert!(dtx >= 80, "{dtx} of 100 silent frames were DTX: {quiet:?}");
    assert!(
        quiet[20..].iter().all(|&n| n <= 2 || n < first[20] / 2),
        "{quiet:?}"
    );
    // Speech resumes at once, at full size.
    assert!(second.iter().all(|&n| n > 2), "{second:?}");
    // A DTX frame decodes to a frame (comfort noise), and so does a frame never sent.
    let mut out = [0i16; FRAME_SAMPLES];
    decoder
        .decode(&[0x08], &mut out)
        .expect("a DTX frame decodes");
    decoder.conceal(&mut out).expect("comfort noise");
    assert_eq!(dominant_tone(&out, &[440.0]), None);
}

#[test]
fn bad_audio_input_is_an_error() {
    let mut encoder = OpusEncoder::new(OpusSettings::default()).expect("encoder");
    assert!(matches!(
        encoder.encode(&[0; 100]),
        Err(MediaError::Opus(_))
    ));
    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut out = [0i16; FRAME_SAMPLES];
    // TOC config 3 is SILK 60 ms: 2,880 samples do not fit a 20 ms frame.
    assert!(decoder.decode(&[3 << 3, 0xFF, 0xFF], &mut out).is_err());
    // Code 3 with a frame count of zero is malformed.
    assert!(decoder.decode(&[0x03, 0x00], &mut out).is_err());
}
