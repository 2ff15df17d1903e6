//! The microphone's processing stage: high-pass, echo cancellation (AEC3), noise
//! suppression and automatic gain control (AGC2), through `sonora`, a pure-Rust port of
//! WebRTC's audio processing (decision 0011).
//!
//! Sans-IO: [`AudioProcessor`] takes frames and gives frames; it owns no thread, device
//! or clock. The far end (what is handed to the speaker) and the near end (the
//! microphone) live on different threads in a call, so the far end crosses through a
//! [`far_end_queue`]: the speaker's device callback pushes every sample as the device
//! takes it ([`crate::audio_device::Speaker::open_with_far_end`]), and the capture side
//! drains the queue into the processor before each microphone frame, which is how
//! WebRTC's own audio processing is driven. Both sides
//! take 48 kHz mono i16 in any multiple of 10 ms; anything else is an error, never a
//! panic (the library itself panics on a frame of the wrong length).

use std::time::Duration;

use sonora::config::{
    AdaptiveDigital, EchoCanceller, GainController2, HighPassFilter, NoiseSuppression,
    NoiseSuppressionLevel,
};
use sonora::{AudioProcessing, Config, StreamConfig};

use crate::MediaError;

/// The processing's sample rate.
pub const RATE: u32 = 48_000;
/// One processing block: 10 ms.
pub const BLOCK: usize = RATE as usize / 100;
/// The far end kept for the processor at most: older audio is dropped when the capture
/// side falls behind (AEC3 follows echo delays up to ~500 ms).
pub const FAR_END_BACKLOG: Duration = Duration::from_millis(300);
/// The queue between the playout and capture threads (1 s).
const QUEUE_SAMPLES: usize = RATE as usize;
/// How far the far end may fall behind the microphone before the processor takes it
/// as silence: 500 ms (no speaker, or one not started yet: AEC3 with no far end at all
/// suppresses the microphone as if it were all echo). A far end that is merely late (a
/// busy machine) must not get silence inserted, which would shift the canceller's
/// reference; when a far end comes back after silence stood in, counting restarts.
const FAR_END_SLACK: i64 = 50;

/// Which parts of the stage run. The high-pass filter runs whenever any part does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessingSettings {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub gain_control: bool,
}

impl Default for ProcessingSettings {
    /// Everything on: what a person on laptop speakers needs.
    fn default() -> Self {
        Self {
            echo_cancellation: true,
            noise_suppression: true,
            gain_control: true,
        }
    }
}

impl ProcessingSettings {
    /// Nothing runs: the microphone is sent as it is.
    pub const OFF: Self = Self {
        echo_cancellation: false,
        noise_suppression: false,
        gain_control: false,
    };

    pub fn any(&self) -> bool {
        self.echo_cancellation || self.noise_suppression || self.gain_control
    }

    fn config(&self) -> Config {
        Config {
            high_pass_filter: self.any().then(HighPassFilter::default),
            echo_canceller: self.echo_cancellation.then(EchoCanceller::default),
            noise_suppression: self.noise_suppression.then(|| NoiseSuppression {
                level: NoiseSuppressionLevel::High,
                ..Default::default()
            }),
            gain_controller2: self.gain_control.then(|| GainController2 {
                adaptive_digital: Some(AdaptiveDigital::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// What the echo canceller reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessingStats {
    /// Echo return loss enhancement, dB (the canceller's own estimate).
    pub erle_db: Option<f64>,
    /// The echo delay the canceller found, ms.
    pub delay_ms: Option<i32>,
    /// Far-end samples dropped: the queue was full, or older than [`FAR_END_BACKLOG`].
    pub far_end_dropped: u64,
    /// Far-end samples of silence stood in for a far end that stopped coming.
    pub far_end_filled: u64,
}

/// The processing itself: far-end frames in, microphone frames processed in place.
pub struct AudioProcessor {
    apm: AudioProcessing,
    settings: ProcessingSettings,
    out: [i16; BLOCK],
    far_end_dropped: u64,
    far_end_filled_blocks: u64,
    /// Microphone blocks processed minus far-end blocks given to the echo canceller.
    far_end_owed: i64,
    /// Silence stands in for a far end that stopped: when it comes back (a speaker
    /// that started late, or was reopened), counting starts again from there.
    far_end_filled: bool,
}

impl std::fmt::Debug for AudioProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioProcessor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn check_len(samples: usize) -> Result<(), MediaError> {
    if samples == 0 || !samples.is_multiple_of(BLOCK) {
        return Err(MediaError::AudioFrame {
            got: samples,
            block: BLOCK,
        });
    }
    Ok(())
}

impl AudioProcessor {
    pub fn new(settings: ProcessingSettings) -> Self {
        let stream = StreamConfig::new(RATE, 1);
        let apm = AudioProcessing::builder()
            .config(settings.config())
            .capture_config(stream)
            .render_config(stream)
            .build();
        Self {
            apm,
            settings,
            out: [0; BLOCK],
            far_end_dropped: 0,
            far_end_filled_blocks: 0,
            far_end_owed: 0,
            far_end_filled: false,
        }
    }

    pub fn settings(&self) -> ProcessingSettings {
        self.settings
    }

    /// Turns parts on or off. A part turned on starts afresh (the echo canceller
    /// converges again); parts left as they were keep their state.
    pub fn set_settings(&mut self, settings: ProcessingSettings) {
        if settings != self.settings {
            self.settings = settings;
            self.apm.apply_config(settings.config());
        }
    }

    /// The far end: what is handed to the speaker, as it is handed over.
    pub fn render(&mut self, far: &[i16]) -> Result<(), MediaError> {
        check_len(far.len())?;
        if !self.settings.echo_cancellation {
            return Ok(());
        }
        if std::mem::take(&mut self.far_end_filled) {
            self.far_end_owed = 0;
        }
        for block in far.chunks_exact(BLOCK) {
            self.far_end_owed = (self.far_end_owed - 1).max(-FAR_END_SLACK);
            self.apm
                .process_render_i16(block, &mut self.out)
                .map_err(|e| MediaError::Processing(format!("{e:?}")))?;
        }
        Ok(())
    }

    /// The near end: the microphone's frame, processed in place.
    pub fn capture(&mut self, near: &mut [i16]) -> Result<(), MediaError> {
        check_len(near.len())?;
        if !self.settings.any() {
            return Ok(());
        }
        for block in near.chunks_exact_mut(BLOCK) {
            // AEC3 without a far end suppresses the microphone as if it were all echo:
            // a far end that stopped coming is a speaker playing silence.
            if self.settings.echo_cancellation {
                self.far_end_owed += 1;
                while self.far_end_owed > FAR_END_SLACK {
                    self.far_end_owed -= 1;
                    self.far_end_filled = true;
                    self.far_end_filled_blocks += 1;
                    self.apm
                        .process_render_i16(&[0; BLOCK], &mut self.out)
                        .map_err(|e| MediaError::Processing(format!("{e:?}")))?;
                }
            }
            self.apm
                .process_capture_i16(block, &mut self.out)
                .map_err(|e| MediaError::Processing(format!("{e:?}")))?;
            block.copy_from_slice(&self.out);
        }
        Ok(())
    }

    /// Drains the far end queued by the speaker, then processes the microphone's frame:
    /// what the capture thread calls once per frame. A capture thread that was late
    /// hands the canceller a burst of far end, as WebRTC's own audio processing does;
    /// AEC3's render buffer absorbs that (measured: the same echo removed, the same
    /// delay found, with the thread 120 ms late every 200 ms).
    pub fn capture_with(
        &mut self,
        far: &mut FarEndReceiver,
        near: &mut [i16],
    ) -> Result<(), MediaError> {
        let most = FAR_END_BACKLOG.as_millis() as usize * BLOCK / 10;
        let skip = far.consumer.slots().saturating_sub(most);
        if skip > 0 {
            self.far_end_dropped += skip as u64;
            if let Ok(chunk) = far.consumer.read_chunk(skip) {
                chunk.commit_all();
            }
        }
        let mut block = [0i16; BLOCK];
        while far.consumer.slots() >= BLOCK {
            let Ok(chunk) = far.consumer.read_chunk(BLOCK) else {
                break;
            };
            let (a, b) = chunk.as_slices();
            block[..a.len()].copy_from_slice(a);
            block[a.len()..].copy_from_slice(b);
            chunk.commit_all();
            self.render(&block)?;
        }
        self.capture(near)
    }

    pub fn stats(&self, far: Option<&FarEndReceiver>) -> ProcessingStats {
        let s = self.apm.statistics();
        let queue_dropped = far.map_or(0, |f| f.dropped.load(std::sync::atomic::Ordering::Relaxed));
        ProcessingStats {
            erle_db: s.echo_return_loss_enhancement,
            delay_ms: s.delay_ms,
            far_end_dropped: self.far_end_dropped + queue_dropped,
            far_end_filled: self.far_end_filled_blocks * BLOCK as u64,
        }
    }
}

/// The playout thread's end of the far-end queue.
#[derive(Debug)]
pub struct FarEndSender {
    producer: rtrb::Producer<i16>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The capture thread's end of the far-end queue.
#[derive(Debug)]
pub struct FarEndReceiver {
    consumer: rtrb::Consumer<i16>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A lock-free queue for the far end, from the thread that feeds the speaker to the one
/// that processes the microphone. Pushing never blocks: a full queue drops (and counts)
/// what does not fit.
pub fn far_end_queue() -> (FarEndSender, FarEndReceiver) {
    let (producer, consumer) = rtrb::RingBuffer::new(QUEUE_SAMPLES);
    let dropped = std::sync::Arc::default();
    (
        FarEndSender {
            producer,
            dropped: std::sync::Arc::clone(&dropped),
        },
        FarEndReceiver { consumer, dropped },
    )
}

impl FarEndSender {
    /// Queues what was just handed to the speaker.
    pub fn push(&mut self, far: &[i16]) {
        let n = far.len().min(self.producer.slots());
        if n < far.len() {
            self.dropped
                .fetch_add((far.len() - n) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(chunk) = self.producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(far[..n].iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize, freq: f64, amp: f64, phase: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + phase) as f64 / f64::from(RATE);
                (amp * 32767.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    /// A far end like speech in its spectrum's spread: noise, in 300 ms bursts with
    /// 100 ms pauses.
    fn bursts_of_noise(samples: usize, mut seed: u64) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if (i / 4800) % 4 != 3 {
                    (seed >> 52) as i16 * 4 - 8192
                } else {
                    0
                }
            })
            .collect()
    }

    fn energy(s: &[i16]) -> f64 {
        s.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
    }

    #[test]
    fn frames_that_are_not_whole_blocks_are_errors() {
        let mut p = AudioProcessor::new(ProcessingSettings::default());
        for len in [0, 1, 479, 481, 959] {
            let mut frame = vec![0i16; len];
            assert!(matches!(
                p.capture(&mut frame),
                Err(MediaError::AudioFrame { got, .. }) if got == len
            ));
            assert!(p.render(&frame).is_err());
        }
        let mut frame = vec![0i16; 960];
        p.capture(&mut frame).unwrap();
        p.render(&frame).unwrap();
    }

    #[test]
    fn off_leaves_the_microphone_untouched() {
        let mut p = AudioProcessor::new(ProcessingSettings::OFF);
        let input = sine(960, 440.0, 0.3, 0);
        let mut frame = input.clone();
        p.render(&input).unwrap();
        p.capture(&mut frame).unwrap();
        assert_eq!(frame, input);
    }

    /// A far-end signal that reaches the microphone 40 ms later, attenuated, is removed;
    /// the same signal with no far end (nothing played) is kept.
    #[test]
    fn echo_of_the_far_end_is_removed_and_a_near_talker_is_kept() {
        let settings = ProcessingSettings {
            echo_cancellation: true,
            noise_suppression: false,
            gain_control: false,
        };
        let mut p = AudioProcessor::new(settings);
        let (mut tx, mut rx) = far_end_queue();
        let delay = 40 * BLOCK / 10;
        let total = 6 * RATE as usize;
        let far = bursts_of_noise(total, 0x2545_f491_4f6c_dd1d);
        let mut in_energy = 0.0;
        let mut out_energy = 0.0;
        for start in (0..total).step_by(960) {
            tx.push(&far[start..start + 960]);
            let mut mic: Vec<i16> = (start..start + 960)
                .map(|i| if i >= delay { far[i - delay] / 3 } else { 0 })
                .collect();
            let last_second = start >= total - RATE as usize;
            if last_second {
                in_energy += energy(&mic);
            }
            p.capture_with(&mut rx, &mut mic).unwrap();
            if last_second {
                out_energy += energy(&mic);
            }
        }
        let erle = 10.0 * (in_energy / out_energy.max(1.0)).log10();
        assert!(erle > 20.0, "echo reduced by only {erle:.1} dB");

        // A near talker with nothing played (no far end at all, as with no speaker):
        // passes. AEC3 alone would take the whole microphone for echo.
        let mut p = AudioProcessor::new(settings);
        let (_tx, mut rx) = far_end_queue();
        let mut kept = 0.0;
        let mut fed = 0.0;
        for k in 0..300 {
            let mut mic = sine(960, 523.0, 0.2, k * 960);
            let input = energy(&mic);
            p.capture_with(&mut rx, &mut mic).unwrap();
            if k >= 100 {
                fed += input;
                kept += energy(&mic);
            }
        }
        let change = 10.0 * (kept / fed).log10();
        assert!(change > -3.0, "a near talker lost {change:.1} dB");
    }

    /// The capture thread late by 120 ms every 200 ms (a busy machine): the speaker's
    /// callback has pushed the far end meanwhile, and the microphone's frames wait in its
    /// ring; the far end reaches the canceller in bursts, and the echo stays cancelled.
    #[test]
    fn a_late_capture_thread_keeps_the_far_end_in_step() {
        let settings = ProcessingSettings {
            echo_cancellation: true,
            noise_suppression: false,
            gain_control: false,
        };
        let mut p = AudioProcessor::new(settings);
        let (mut tx, mut rx) = far_end_queue();
        let delay = 60 * BLOCK / 10;
        let total = 8 * RATE as usize;
        let far = bursts_of_noise(total, 0x9e37_79b9_7f4a_7c15);
        let (mut in_energy, mut out_energy) = (0.0, 0.0);
        let mut capture = |rx: &mut FarEndReceiver, start: usize| {
            let mut mic: Vec<i16> = (start..start + 960)
                .map(|i| if i >= delay { far[i - delay] / 3 } else { 0 })
                .collect();
            let before = energy(&mic);
            p.capture_with(rx, &mut mic).unwrap();
            if start >= total - 2 * RATE as usize {
                in_energy += before;
                out_energy += energy(&mic);
            }
        };
        let frames: Vec<usize> = (0..total).step_by(960).collect();
        for burst in frames.chunks(10) {
            // The first six frames are played (and recorded) while the thread sleeps.
            let (late, on_time) = burst.split_at(6);
            for &start in late {
                tx.push(&far[start..start + 960]);
            }
            for &start in late {
                capture(&mut rx, start);
            }
            for &start in on_time {
                tx.push(&far[start..start + 960]);
                capture(&mut rx, start);
            }
        }
        let erle = 10.0 * (in_energy / out_energy.max(1.0)).log10();
        let delay_ms = p.stats(Some(&rx)).delay_ms;
        assert!(
            erle > 20.0,
            "echo reduced by only {erle:.1} dB (delay found: {delay_ms:?} ms)"
        );
    }

    /// The microphone runs a second before the speaker starts (silence stands in for
    /// the far end meanwhile); from then on the far end comes with the microphone, at
    /// times a frame behind it, and no more silence is inserted into it.
    #[test]
    fn a_far_end_that_starts_late_is_followed_from_when_it_starts() {
        let mut p = AudioProcessor::new(ProcessingSettings::default());
        let (mut tx, mut rx) = far_end_queue();
        for _ in 0..50 {
            p.capture_with(&mut rx, &mut [0; 960]).unwrap();
        }
        let filled = p.stats(Some(&rx)).far_end_filled;
        assert!(filled > 0, "silence stood in for the missing far end");
        for k in 0..250 {
            // Every fifth frame the speaker's callback runs after the capture thread.
            if k % 5 == 4 {
                p.capture_with(&mut rx, &mut [0; 960]).unwrap();
                tx.push(&[0; 960]);
            } else {
                tx.push(&[0; 960]);
                p.capture_with(&mut rx, &mut [0; 960]).unwrap();
            }
        }
        assert_eq!(p.stats(Some(&rx)).far_end_filled, filled);
    }

    #[test]
    fn a_far_end_the_capture_side_never_drained_is_dropped_not_replayed() {
        let mut p = AudioProcessor::new(ProcessingSettings::default());
        let (mut tx, mut rx) = far_end_queue();
        // 1.5 s pushed with no capture: the queue keeps 1 s, then the processor keeps
        // only the last FAR_END_BACKLOG of it.
        for _ in 0..75 {
            tx.push(&[100; 960]);
        }
        let mut mic = [0i16; 960];
        p.capture_with(&mut rx, &mut mic).unwrap();
        let stats = p.stats(Some(&rx));
        assert_eq!(stats.far_end_dropped, (75 * 960 - 30 * BLOCK) as u64);
        assert_eq!(rx.consumer.slots(), 0);
    }

    #[test]
    fn settings_change_at_run_time() {
        let mut p = AudioProcessor::new(ProcessingSettings::OFF);
        let input = sine(960, 440.0, 0.3, 0);
        let mut frame = input.clone();
        p.set_settings(ProcessingSettings::default());
        for _ in 0..50 {
            frame.copy_from_slice(&input);
            p.capture(&mut frame).unwrap();
        }
        assert_ne!(frame, input, "the stage is on");
        p.set_settings(ProcessingSettings::OFF);
        frame.copy_from_slice(&input);
        p.capture(&mut frame).unwrap();
        assert_eq!(frame, input, "and off again");
    }
}
