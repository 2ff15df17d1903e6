//! Outgoing audio: one thread reads 20 ms at a time (microphone, relay or tone), runs a
//! microphone through the processing stage (echo cancellation against what the speaker
//! played, noise suppression, gain control), measures its level,
//! encodes Opus and queues the packet for the transport. A microphone or relay paces the
//! thread by waking it when audio arrives; a tone or silence follows the clock.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chingu_media::audio_device::{DeviceEvent, Microphone};
use chingu_media::opus_codec::{FRAME_SAMPLES, OpusEncoder, OpusSettings};
use chingu_media::processing::{AudioProcessor, FarEndReceiver, ProcessingSettings};
use chingu_media::tone::ToneGenerator;
use tokio::sync::mpsc;

use super::config::{AudioSource, Device, MediaNotice};
use super::relay::AudioRelay;
use super::reopen::Reopener;
use super::video_send::SOURCE_WAIT;
use crate::packets::EncodedAudio;
use crate::peer::duration_for_ticks;
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
        match encoder.encode(&pcm) {
            Ok(packet) => {
                let packet = EncodedAudio {
                    data: Bytes::copy_from_slice(packet),
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
