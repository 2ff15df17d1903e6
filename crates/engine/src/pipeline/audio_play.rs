//! Incoming audio: a task forwards RTP from the transport to the playout thread, which
//! keeps the jitter buffer and, every 20 ms by the clock, decodes one Opus frame (the
//! packet, FEC from the next one, or concealment) for the tap and the speaker. Between
//! ticks it blocks on its packet queue.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use chingu_media::audio_device::{DeviceEvent, Speaker};
use chingu_media::latest::Latest;
use chingu_media::opus_codec::{FRAME_SAMPLES, OpusDecoder};
use chingu_media::processing::{FarEndReceiver, far_end_queue};
use tokio::sync::mpsc;

use super::config::{AudioOutput, AudioTap, Device, MediaNotice};
use super::jitter::{JitterBuffer, MIN_DELAY, Playout};
use super::reopen::Reopener;
use crate::packets::RtpIn;
use crate::stats::MediaCounters;

/// Packets queued for the playout thread (1.3 s of audio).
pub(crate) const PLAYOUT_QUEUE: usize = 64;
/// The most audio left queued for the speaker when a frame is written (60 ms): three
/// frames of the playout clock's jitter against the device's.
const SPEAKER_QUEUE: usize = 2_880;

/// Moves packets from the transport's async queue to the playout thread's.
pub(crate) async fn forward_audio(
    mut rtp: mpsc::Receiver<RtpIn>,
    playout: std_mpsc::SyncSender<RtpIn>,
    counters: Arc<MediaCounters>,
) {
    while let Some(packet) = rtp.recv().await {
        counters.audio_packets_received.fetch_add(1, Relaxed);
        if let Err(std_mpsc::TrySendError::Disconnected(_)) = playout.try_send(packet) {
            break;
        }
    }
}

pub(crate) struct PlayoutCtx {
    pub(crate) rx: std_mpsc::Receiver<RtpIn>,
    pub(crate) output: AudioOutput,
    /// For the echo canceller: the far end of each speaker opened, which its device
    /// callback fills with what it plays.
    pub(crate) far_ends: Arc<Latest<FarEndReceiver>>,
    pub(crate) tap: Option<AudioTap>,
    pub(crate) counters: Arc<MediaCounters>,
    pub(crate) notices: mpsc::Sender<MediaNotice>,
}

/// Runs until the forwarder ends (its queue closes).
pub(crate) fn audio_playout_thread(ctx: PlayoutCtx) {
    let mut decoder = match OpusDecoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("Opus decoder: {e}");
            return;
        }
    };
    let report = |message: String| {
        let _ = ctx.notices.try_send(MediaNotice::DeviceError {
            device: Device::Speaker,
            message,
        });
    };
    let mut speaker = match &ctx.output {
        AudioOutput::Discard => None,
        AudioOutput::Speaker { id } => match open_speaker(id.as_deref(), &ctx.far_ends) {
            Ok(s) => Some(s),
            Err(e) => {
                report(e.to_string());
                None
            }
        },
    };
    let mut reopener = Reopener::new(Device::Speaker);
    let mut jitter = JitterBuffer::new();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let frame = Duration::from_millis(20);
    let mut due = Instant::now() + frame;
    loop {
        // Take packets as they come until the next 20 ms are due.
        let now = Instant::now();
        if due > now {
            match ctx.rx.recv_timeout(due - now) {
                Ok(p) if p.copy => {
                    jitter.push_copy(p.timestamp, p.payload, p.arrived);
                    continue;
                }
                Ok(p) => {
                    // Copies from n frames back arrive n frames late: wait for them.
                    let back = u32::from(p.copies.max(1)) - 1;
                    jitter.set_min_delay(MIN_DELAY + frame * back);
                    jitter.push(p.timestamp, p.payload, p.arrived);
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        due = (due + frame).max(Instant::now() - frame);
        let result = match jitter.pop(Instant::now()) {
            Playout::Waiting => continue,
            Playout::Packet(p) => decoder.decode(&p, &mut pcm),
            Playout::Fec(next) => decoder.decode_fec(&next, &mut pcm),
            // After a DTX frame the decoder makes comfort noise where it would conceal.
            Playout::Conceal | Playout::ComfortNoise => decoder.conceal(&mut pcm),
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
        c.comfort_noise_samples
            .store(jitter.comfort_noise * FRAME_SAMPLES as u64, Relaxed);
        c.audio_packets_discarded
            .store(jitter.late + jitter.discarded, Relaxed);
        c.jitter_buffer_delay_us
            .store(jitter.total_delay.as_micros() as u64, Relaxed);
        c.jitter_buffer_emitted.store(jitter.emitted, Relaxed);
        c.set_remote_level(&pcm);
        if let Some(tap) = &ctx.tap {
            tap(&pcm);
        }
        let Some(s) = speaker.as_mut() else {
            continue;
        };
        if let Some(DeviceEvent::Ended { reason }) = s.poll_event() {
            speaker = None;
            if let AudioOutput::Speaker { id } = &ctx.output {
                match reopener.reopen(&reason, || open_speaker(id.as_deref(), &ctx.far_ends)) {
                    Ok(s) => speaker = Some(s),
                    Err(reason) => report(reason),
                }
            }
            continue;
        }
        // A speaker that started late or stalled would otherwise keep everything queued
        // meanwhile (up to its ring's 500 ms) as delay for the rest of the call: past
        // SPEAKER_QUEUE, a frame is dropped instead.
        if s.queued() > SPEAKER_QUEUE {
            c.speaker_frames_dropped.fetch_add(1, Relaxed);
            continue;
        }
        s.write(&pcm);
    }
}

/// Opens a speaker whose callback feeds a new far-end queue, and hands the queue's other
/// end to the capture thread's echo canceller.
fn open_speaker(
    id: Option<&str>,
    far_ends: &Latest<FarEndReceiver>,
) -> Result<Speaker, chingu_media::MediaError> {
    let (tx, rx) = far_end_queue();
    let speaker = Speaker::open_with_far_end(id, Some(tx))?;
    far_ends.put(rx);
    Ok(speaker)
}
