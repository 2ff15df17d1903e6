//! Outgoing audio: one thread reads 20 ms at a time (microphone, relay or tone), runs a
//! microphone through the processing stage (echo cancellation against what the speaker
//! played, noise suppression, gain control), measures its level,
//! encodes Opus and queues the packet for the transport. A microphone or relay paces the
//! thread by waking it when audio arrives; a tone or silence follows the clock.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chingu_media::audio_device::{DeviceEvent, Microphone};
use chingu_media::opus_codec::{FRAME_SAMPLES, OpusEncoder, OpusSettings, is_dtx_packet};
use chingu_media::processing::{AudioProcessor, FarEndReceiver, ProcessingSettings};
use chingu_media::tone::ToneGenerator;
use tokio::sync::mpsc;

use super::config::{AudioSource, Device, MediaNotice};
use super::relay::AudioRelay;
use super::reopen::Reopener;
use super::video_send::SOURCE_WAIT;
use crate::packets::{Bandwidth, EncodedAudio};
use crate::peer::duration_for_ticks;
use crate::red::copies_for_loss;
use crate::stats::MediaCounters;

/// Changes to the outgoing audio during a call.
#[derive(Debug)]
pub(crate) enum AudioCtl {
    Source(Option<AudioSource>),
    Muted(bool),
    Processing(ProcessingSettings),
}

enum SoundSource {
    Tone(ToneGenerator),
    Mic(Microphone),
    Relay(Arc<AudioRelay>),
}

pub(crate) struct AudioSendCtx {
    pub(crate) source: Option<AudioSource>,
    pub(crate) processing: ProcessingSettings,
    /// The far end of each speaker the playout thread opens, newest last.
    pub(crate) far_ends: Arc<chingu_media::latest::Latest<FarEndReceiver>>,
    pub(crate) ctl: std_mpsc::Receiver<AudioCtl>,
    pub(crate) out: mpsc::Sender<EncodedAudio>,
    pub(crate) counters: Arc<MediaCounters>,
    pub(crate) notices: mpsc::Sender<MediaNotice>,
    /// The loss the peer reports, and whether audio goes in RED, for Opus's in-band FEC.
    pub(crate) bandwidth: Arc<Bandwidth>,
}

/// The loss Opus's in-band FEC is sized for (%), from the loss the peer reports (per
/// mille) and the level in use: one of 0, 1, 5, 10 and 20 %, moving to a level only
/// past a margin beyond it in the direction of travel (so a loss hovering at a level
/// does not flip the encoder every second), as libwebrtc's Opus wrapper does. FEC costs
/// the primary frame bits at the same bitrate, so a clean path gets none (the default
/// was 10 % whatever the path). None while audio goes in RED with copies (`red_copies`,
/// from 2 % loss, peer/tracks.rs): the next packet that could bring a frame's FEC brings
/// the frame itself, so the FEC's bits go to the frame instead.
fn fec_loss_pct(loss_permille: u32, red_copies: bool, current_pct: i32) -> i32 {
    if red_copies {
        return 0;
    }
    // (level %, margin per mille)
    const LEVELS: [(i32, u32); 4] = [(20, 20), (10, 10), (5, 10), (1, 0)];
    let current = current_pct as u32 * 10;
    for (pct, margin) in LEVELS {
        let level = pct as u32 * 10;
        let threshold = if level > current {
            level + margin
        } else {
            level.saturating_sub(margin)
        };
        if loss_permille >= threshold {
            return pct;
        }
    }
    0
}

/// How often the FEC level is revisited, in 20 ms frames (1 s).
const FEC_REVIEW_FRAMES: u64 = 50;

/// Which encoded frames go out in discontinuous transmission. As libwebrtc's Opus
/// wrapper decides, the first DTX frame of a silence goes (the peer's decoder turns to
/// comfort noise), those after it do not (only their time passes), and every other frame
/// (speech, and the comfort noise update every 400 ms) does. A peer that loses the DTX
/// frames cannot tell the silence from loss, and conceals up to 400 ms of it as lost
/// (at 20 % loss 2.6–6.7 % of audio concealed instead of 0.2–0.4 %), so on a lossy
/// path one DTX frame more goes for each copy RED would carry (each then carries the
/// ones before it), and every [`DTX_REMINDER`]th frame of the silence after them.
#[derive(Debug, Default)]
struct DtxGate {
    /// DTX frames in a row so far.
    run: usize,
}

/// On a lossy path, a DTX frame goes every this many frames of a silence (100 ms).
const DTX_REMINDER: usize = 5;

impl DtxGate {
    /// Whether `packet` goes, `extra` DTX frames going after the first.
    fn sends(&mut self, packet: &[u8], extra: usize) -> bool {
        if !is_dtx_packet(packet) {
            self.run = 0;
            return true;
        }
        self.run += 1;
        self.run <= 1 + extra || (extra > 0 && (self.run - 1 - extra).is_multiple_of(DTX_REMINDER))
    }
}

/// Runs until the call's media stops (its control channel closes).
pub(crate) fn audio_send_thread(ctx: AudioSendCtx) {
    let mut encoder = match OpusEncoder::new(OpusSettings::default()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("Opus encoder: {e}");
            return;
        }
    };
    let report = |message: String| {
        let _ = ctx.notices.try_send(MediaNotice::DeviceError {
            device: Device::Microphone,
            message,
        });
    };
    let open = |spec: &Option<AudioSource>| match spec {
        None => None,
        Some(AudioSource::Tone { frequency_hz }) => {
            Some(SoundSource::Tone(ToneGenerator::new(*frequency_hz, 0.3)))
        }
        Some(AudioSource::Talk { frequency_hz }) => {
            let second = Duration::from_secs(1);
            let tone = ToneGenerator::new(*frequency_hz, 0.3).in_spurts(second, second);
            Some(SoundSource::Tone(tone))
        }
        Some(AudioSource::Relay(relay)) => Some(SoundSource::Relay(Arc::clone(relay))),
        Some(AudioSource::Microphone { id }) => match Microphone::open(id.as_deref()) {
            Ok(m) => Some(SoundSource::Mic(m)),
            Err(e) => {
                report(e.to_string());
                None
            }
        },
    };
    let packet_duration = duration_for_ticks(FRAME_SAMPLES as u32, 48_000);
    let mut current = ctx.source.clone();
    let mut source = open(&current);
    let mut reopener = Reopener::new(Device::Microphone);
    let mut muted = false;
    // One processor for the call: it outlives a microphone switch (the echo path
    // changes, the canceller follows it) and muting (it keeps listening).
    let mut processor = AudioProcessor::new(ctx.processing);
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut frames_processed = 0u64;
    let mut far_end: Option<FarEndReceiver> = None;
    let mut fec_pct = OpusSettings::default().expected_loss_pct;
    let mut frames_encoded = 0u64;
    let (mut dtx, mut gate) = (false, DtxGate::default());
    let frame = Duration::from_millis(20);
    let mut due = Instant::now();
    loop {
        loop {
            match ctx.ctl.try_recv() {
                Ok(AudioCtl::Muted(m)) => muted = m,
                Ok(AudioCtl::Processing(settings)) => processor.set_settings(settings),
                Ok(AudioCtl::Source(spec)) => {
                    drop(source.take());
                    source = open(&spec);
                    current = spec;
                    reopener = Reopener::new(Device::Microphone);
                }
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let got = match &mut source {
            Some(SoundSource::Mic(mic)) => {
                if let Some(DeviceEvent::Ended { reason }) = mic.poll_event() {
                    source = None;
                    if let Some(AudioSource::Microphone { id }) = &current {
                        match reopener.reopen(&reason, || Microphone::open(id.as_deref())) {
                            Ok(mic) => source = Some(SoundSource::Mic(mic)),
                            Err(reason) => report(reason),
                        }
                    }
                    continue;
                }
                mic.read_timeout(&mut pcm, SOURCE_WAIT)
            }
            Some(SoundSource::Relay(relay)) => relay.pop_timeout(&mut pcm, SOURCE_WAIT),
            other => {
                // A tone, or silence with no source: 20 ms by the clock.
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
        if let Some(newest) = ctx.far_ends.take() {
            far_end = Some(newest);
        }
        if matches!(source, Some(SoundSource::Mic(_))) {
            let processed = match far_end.as_mut() {
                Some(far_end) => processor.capture_with(far_end, &mut pcm),
                // No speaker (yet): the processor stands silence in for the far end.
                None => processor.capture(&mut pcm),
            };
            if let Err(e) = processed {
                // Whole 20 ms frames of 10 ms blocks: not expected; the frame goes as it is.
                tracing::warn!("audio processing: {e}");
            }
            frames_processed += 1;
            if frames_processed.is_multiple_of(50) {
                let stats = processor.stats(far_end.as_ref());
                ctx.counters.set_echo(stats.erle_db, stats.delay_ms);
            }
        }
        if muted {
            pcm.fill(0);
        }
        ctx.counters.set_local_level(&pcm);
        frames_encoded += 1;
        if frames_encoded.is_multiple_of(FEC_REVIEW_FRAMES) {
            let loss = ctx.bandwidth.loss_permille.load(Relaxed);
            let red_copies = ctx.bandwidth.audio_redundancy_bps.load(Relaxed) > 0;
            let pct = fec_loss_pct(loss, red_copies, fec_pct);
            if pct != fec_pct {
                match encoder.set_expected_loss(pct) {
                    Ok(()) => {
                        tracing::debug!(loss_permille = loss, fec_pct = pct, "Opus FEC resized");
                        fec_pct = pct;
                    }
                    Err(e) => tracing::warn!("Opus FEC: {e}"),
                }
            }
        }
        let peer_takes_dtx = ctx.bandwidth.peer_takes_dtx.load(Relaxed);
        if peer_takes_dtx != dtx {
            match encoder.set_dtx(peer_takes_dtx) {
                Ok(()) => dtx = peer_takes_dtx,
                Err(e) => tracing::warn!("Opus DTX: {e}"),
            }
        }
        let dtx_extra = copies_for_loss(ctx.bandwidth.loss_permille.load(Relaxed));
        match encoder.encode(&pcm) {
            Ok(packet) => {
                let packet = EncodedAudio {
                    data: if gate.sends(packet, dtx_extra) {
                        Bytes::copy_from_slice(packet)
                    } else {
                        Bytes::new()
                    },
                    duration: packet_duration,
                };
                match ctx.out.try_send(packet) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            Err(e) => tracing::warn!("Opus encode: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_a_silence_only_the_first_dtx_frames_go() {
        let mut gate = DtxGate::default();
        let speech = [0u8; 60];
        let dtx = [0x08u8];
        let frames = [
            &speech[..],
            &dtx,
            &dtx,
            &dtx,
            &dtx,
            &speech[..6],
            &dtx,
            &dtx,
            &speech,
        ];
        let mut sent =
            |extra| -> Vec<bool> { frames.iter().map(|p| gate.sends(p, extra)).collect() };
        let (y, n) = (true, false);
        assert_eq!(sent(0), [y, y, n, n, n, y, y, n, y]);
        // On a lossy path, as many more as RED's copies ...
        assert_eq!(sent(2), [y, y, y, y, n, y, y, y, y]);
        // ... and one every 100 ms of the silence after them.
        let mut gate = DtxGate::default();
        let sent: Vec<usize> = (1..=20).filter(|_| gate.sends(&dtx, 1)).collect();
        assert_eq!(sent, [1, 2, 7, 12, 17]);
    }

    #[test]
    fn fec_follows_the_reported_loss_in_levels_with_a_margin() {
        // From the default 10 %: a clean path gets none, heavy loss the most.
        assert_eq!(fec_loss_pct(0, false, 10), 0);
        assert_eq!(fec_loss_pct(12, false, 10), 1);
        assert_eq!(fec_loss_pct(60, false, 10), 5);
        assert_eq!(
            fec_loss_pct(95, false, 10),
            10,
            "within the margin below 10 %"
        );
        assert_eq!(
            fec_loss_pct(215, false, 10),
            10,
            "not past the margin above 20 %"
        );
        assert_eq!(fec_loss_pct(225, false, 10), 20);
        assert_eq!(fec_loss_pct(400, false, 0), 20, "at most 20 %");
        // Climbing needs the margin; staying needs only the level less the margin.
        assert_eq!(fec_loss_pct(105, false, 5), 5);
        assert_eq!(fec_loss_pct(115, false, 5), 10);
        assert_eq!(fec_loss_pct(185, false, 20), 20);
        assert_eq!(fec_loss_pct(175, false, 20), 10);
        assert_eq!(fec_loss_pct(5, false, 1), 0);
        // Under RED with copies, none whatever the loss.
        assert_eq!(fec_loss_pct(400, true, 20), 0);
        assert_eq!(fec_loss_pct(60, true, 5), 0);
    }
}
