//! A simulated room for measuring the microphone's processing stage: the far end played
//! on a cheap speaker (soft clipping), carried to the microphone after a delay through a
//! room's echo (RT60 ~300 ms), picked up with a near talker and background noise by a
//! microphone whose clock runs at a slightly different rate from the speaker's.
//!
//! [`simulate`] builds the signals and keeps each part of the microphone's signal apart
//! (echo, near talker, noise), so [`crate::echo_metrics`] can tell what the stage did to
//! each; [`drive`] feeds a scene through an [`AudioProcessor`] exactly as a call does:
//! 20 ms far-end frames through the far-end queue as they are "played", 20 ms microphone
//! frames as they are "captured", in the order the two clocks put them.

use std::time::{Duration, Instant};

use crate::processing::{
    AudioProcessor, FarEndReceiver, FarEndSender, ProcessingSettings, RATE, far_end_queue,
};

/// One frame as the call moves audio: 20 ms.
pub const FRAME: usize = RATE as usize / 50;

/// How the room, the speaker and the microphone behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoomSettings {
    /// From the moment a far-end sample is handed to the speaker until its direct sound
    /// reaches the microphone.
    pub echo_delay: Duration,
    /// Time for the room's echo to decay by 60 dB.
    pub rt60: Duration,
    /// The echo's level at the microphone relative to what was played, dB.
    pub echo_gain_db: f64,
    /// How hard the speaker clips: 0 is clean; 2 compresses full scale to ~0.48.
    pub speaker_drive: f64,
    /// How much faster the microphone's clock runs than the speaker's, parts per million.
    pub drift_ppm: f64,
    /// Background noise relative to the near talker's speech level, dB; `None`: quiet.
    pub noise_snr_db: Option<f64>,
    pub seed: u64,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            echo_delay: Duration::from_millis(60),
            rt60: Duration::from_millis(300),
            echo_gain_db: -6.0,
            speaker_drive: 2.0,
            drift_ppm: 100.0,
            noise_snr_db: None,
            seed: 1,
        }
    }
}

/// The signals of one simulated call, 48 kHz, in i16 units.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    /// What is handed to the speaker (the speaker's clock).
    pub far: Vec<i16>,
    /// What the microphone records (its own clock): `echo + near + noise`, rounded.
    pub mic: Vec<i16>,
    /// The parts of `mic`, kept apart for measuring.
    pub echo: Vec<f32>,
    pub near: Vec<f32>,
    pub noise: Vec<f32>,
}

/// A small xorshift generator: the scene depends only on the seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// The room's impulse response as sparse taps `(delay in samples, gain)`: the direct
/// sound, then reflections whose density and decay follow the RT60.
fn impulse_response(settings: &RoomSettings, rng: &mut Rng) -> Vec<(usize, f64)> {
    let rate = f64::from(RATE);
    let direct = (settings.echo_delay.as_secs_f64() * rate).round() as usize;
    let tail = (settings.rt60.as_secs_f64() * rate) as usize;
    let mut taps = vec![(direct, 1.0)];
    // Reflections start ~2 ms after the direct sound; 1,000 spread over the tail, each
    // decaying 60 dB over the RT60, summing to about the direct sound's energy.
    let count = 1000;
    let scale = (1.0 / (count as f64 * 0.08)).sqrt();
    for _ in 0..count {
        let t = 96 + (rng.next() % tail.max(1) as u64) as usize;
        let decay = (-6.91 * t as f64 / tail.max(1) as f64).exp();
        taps.push((direct + t, rng.uniform() * 2.0 * decay * scale));
    }
    // Scale so the echo's level matches `echo_gain_db`.
    let energy: f64 = taps.iter().map(|(_, g)| g * g).sum();
    let gain = 10f64.powf(settings.echo_gain_db / 20.0) / energy.sqrt();
    for tap in &mut taps {
        tap.1 *= gain;
    }
    taps
}

/// `input` read at `step` input samples per output sample, through a Hann-windowed sinc
/// (16 taps each side): a clock difference, or a rate change when `step` is a ratio.
pub fn resample(input: &[f32], step: f64) -> Vec<f32> {
    const HALF: isize = 16;
    if input.is_empty() || !step.is_finite() || step <= 0.0 {
        return Vec::new();
    }
    // Downsampling also low-passes at the new Nyquist frequency.
    let cutoff = (1.0 / step).min(1.0);
    let len = (input.len() as f64 / step) as usize;
    let mut out = Vec::with_capacity(len);
    for n in 0..len {
        let pos = n as f64 * step;
        let centre = pos.floor() as isize;
        let mut acc = 0.0;
        for k in (centre - HALF + 1)..=(centre + HALF) {
            if k < 0 || k as usize >= input.len() {
                continue;
            }
            let x = pos - k as f64;
            let sinc = if x.abs() < 1e-9 {
                1.0
            } else {
                let a = std::f64::consts::PI * x * cutoff;
                a.sin() / a
            };
            let window = 0.5 + 0.5 * (std::f64::consts::PI * x / HALF as f64).cos();
            acc += f64::from(input[k as usize]) * sinc * cutoff * window;
        }
        out.push(acc as f32);
    }
    out
}

/// The RMS of the frames where `speech` is talking (louder than -55 dBFS).
fn active_rms(speech: &[f32]) -> f64 {
    let (mut energy, mut count) = (0.0, 0usize);
    for frame in speech.chunks(RATE as usize / 100) {
        let e: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        if e / frame.len() as f64 > (32768.0 * 10f64.powf(-55.0 / 20.0)).powi(2) {
            energy += e;
            count += frame.len();
        }
    }
    if count == 0 {
        0.0
    } else {
        (energy / count as f64).sqrt()
    }
}

/// Plays `far` into the room and records the microphone, with `near` talking into it.
/// Both are 48 kHz in i16 units; the scene is as long as `near`.
pub fn simulate(settings: &RoomSettings, far: &[f32], near: &[f32]) -> Scene {
    let mut rng = Rng(settings.seed.max(1));
    let len = near.len();
    let drive = settings.speaker_drive;
    let played: Vec<f64> = far
        .iter()
        .map(|&s| {
            let x = f64::from(s) / 32768.0;
            if drive > 0.0 {
                32768.0 * (drive * x).tanh() / drive
            } else {
                32768.0 * x
            }
        })
        .collect();
    // The echo on the speaker's clock: the played sound through the room.
    let taps = impulse_response(settings, &mut rng);
    let mut echo = vec![0.0f64; len + 2];
    for &(delay, gain) in &taps {
        if delay >= echo.len() {
            continue;
        }
        for (e, &p) in echo[delay..].iter_mut().zip(&played) {
            *e += gain * p;
        }
    }
    // Read on the microphone's clock, which runs `drift_ppm` faster.
    let echo: Vec<f32> = echo.iter().map(|&e| e as f32).collect();
    let mut echo = resample(&echo, 1.0 / (1.0 + settings.drift_ppm * 1e-6));
    echo.resize(len, 0.0);
    // Pink-ish noise (Paul Kellet's economy filter) at the asked SNR.
    let mut noise = vec![0.0f32; len];
    if let Some(snr) = settings.noise_snr_db {
        let (mut b0, mut b1, mut b2) = (0.0, 0.0, 0.0);
        let raw: Vec<f64> = (0..len)
            .map(|_| {
                let white = rng.uniform();
                b0 = 0.99765 * b0 + white * 0.099_046;
                b1 = 0.96300 * b1 + white * 0.296_516_4;
                b2 = 0.57000 * b2 + white * 1.052_691_3;
                b0 + b1 + b2 + white * 0.1848
            })
            .collect();
        let rms = (raw.iter().map(|x| x * x).sum::<f64>() / len.max(1) as f64).sqrt();
        let want = active_rms(near) / 10f64.powf(snr / 20.0);
        if rms > 0.0 {
            for (n, r) in noise.iter_mut().zip(&raw) {
                *n = (r * want / rms) as f32;
            }
        }
    }
    let near = near.to_vec();
    let mic = (0..len)
        .map(|i| {
            (f64::from(echo[i]) + f64::from(near[i]) + f64::from(noise[i]))
                .round()
                .clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let far = far
        .iter()
        .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    Scene {
        far,
        mic,
        echo,
        near,
        noise,
    }
}

/// What [`drive`] measured.
#[derive(Debug, Clone, Default)]
pub struct Processed {
    /// The stage's output, aligned with `Scene::mic`.
    pub out: Vec<i16>,
    /// Time spent in the stage for each 20 ms microphone frame (far end included).
    pub frame_times: Vec<Duration>,
}

/// A processing stage as [`drive`] feeds it: the far end as it is handed to the speaker,
/// the microphone frame by frame. Chingu's own is [`ChinguStage`]; other libraries can be
/// measured in the same room through this.
pub trait EchoStage {
    fn far_end(&mut self, far: &[i16]);
    /// Processes the microphone's frame in place.
    fn near_end(&mut self, near: &mut [i16]);
}

/// The engine's stage, driven the engine's way: the far end through the far-end queue,
/// drained by the processor before each microphone frame.
#[derive(Debug)]
pub struct ChinguStage {
    pub processor: AudioProcessor,
    tx: FarEndSender,
    rx: FarEndReceiver,
}

impl ChinguStage {
    pub fn new(settings: ProcessingSettings) -> Self {
        let (tx, rx) = far_end_queue();
        Self {
            processor: AudioProcessor::new(settings),
            tx,
            rx,
        }
    }
}

impl EchoStage for ChinguStage {
    fn far_end(&mut self, far: &[i16]) {
        self.tx.push(far);
    }

    fn near_end(&mut self, near: &mut [i16]) {
        // Whole frames of 10 ms blocks: cannot fail.
        let _ = self.processor.capture_with(&mut self.rx, near);
    }
}

/// Runs a scene through `stage` as a call would. The speaker's frames are due every
/// 20 ms of its clock; the microphone's every 20 ms of its own (`drift_ppm` faster).
pub fn drive(stage: &mut dyn EchoStage, scene: &Scene, drift_ppm: f64) -> Processed {
    let frames = scene.mic.len() / FRAME;
    let mic_period = 1.0 / (1.0 + drift_ppm * 1e-6);
    let mut out = Vec::with_capacity(frames * FRAME);
    let mut frame_times = Vec::with_capacity(frames);
    let mut played = 0usize;
    let mut frame = [0i16; FRAME];
    for j in 0..frames {
        // The microphone's frame j is complete at (j + 1) of its periods; every speaker
        // frame handed over by then (at k of the speaker's periods) goes first.
        let ready = (j + 1) as f64 * mic_period;
        let start = Instant::now();
        // Past the end of `far` the speaker plays silence, and the engine's playout
        // thread hands that over too.
        while (played as f64) <= ready {
            match scene.far.get(played * FRAME..(played + 1) * FRAME) {
                Some(far) => stage.far_end(far),
                None => stage.far_end(&[0; FRAME]),
            }
            played += 1;
        }
        frame.copy_from_slice(&scene.mic[j * FRAME..(j + 1) * FRAME]);
        stage.near_end(&mut frame);
        frame_times.push(start.elapsed());
        out.extend_from_slice(&frame);
    }
    Processed { out, frame_times }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(s: &[f32]) -> f64 {
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn resampling_keeps_a_tone_and_follows_the_step() {
        let tone: Vec<f32> = (0..48_000)
            .map(|i| (1000.0 * (i as f64 * 440.0 * std::f64::consts::TAU / 48_000.0).sin()) as f32)
            .collect();
        let up = resample(&tone, 0.5);
        assert_eq!(up.len(), 96_000);
        // Away from the edges, the level is kept within 1 %.
        let mid = level(&up[1000..95_000]) / level(&tone[500..47_500]);
        assert!((mid - 1.0).abs() < 0.01, "{mid}");
        // A drift of 100 ppm: sample n of the output is input at n / (1 + 1e-4).
        let drifted = resample(&tone, 1.0 / (1.0 + 1e-4));
        let n = 40_000;
        let pos = n as f64 / (1.0 + 1e-4);
        let want = 1000.0 * (pos * 440.0 * std::f64::consts::TAU / 48_000.0).sin();
        assert!((f64::from(drifted[n]) - want).abs() < 5.0);
        assert!(resample(&[], 1.0).is_empty());
        assert!(resample(&tone, 0.0).is_empty());
        assert!(resample(&tone, f64::NAN).is_empty());
    }

    #[test]
    fn the_scene_is_its_parts_and_depends_only_on_the_seed() {
        let far: Vec<f32> = (0..48_000)
            .map(|i| ((i % 97) as f32 - 48.0) * 100.0)
            .collect();
        let near: Vec<f32> = (0..48_000)
            .map(|i| ((i % 53) as f32 - 26.0) * 50.0)
            .collect();
        let settings = RoomSettings {
            noise_snr_db: Some(10.0),
            ..RoomSettings::default()
        };
        let a = simulate(&settings, &far, &near);
        let b = simulate(&settings, &far, &near);
        assert_eq!(a.mic, b.mic);
        assert_eq!(a.mic.len(), near.len());
        for i in (0..48_000).step_by(997) {
            let sum = a.echo[i] + a.near[i] + a.noise[i];
            assert!((f32::from(a.mic[i]) - sum).abs() <= 0.5 + 1e-3, "{i}");
        }
        // Nothing of the far end before the echo's delay; then it arrives.
        let delay = 60 * 48;
        assert!(a.echo[..delay - 40].iter().all(|&e| e.abs() < 1.0));
        assert!(level(&a.echo[delay..]) > 100.0);
        // The noise sits 10 dB under the near talker.
        let snr = 20.0 * (level(&a.near) / level(&a.noise)).log10();
        assert!((snr - 10.0).abs() < 0.5, "{snr}");
        let other = simulate(
            &RoomSettings {
                seed: 2,
                ..settings
            },
            &far,
            &near,
        );
        assert_ne!(a.mic, other.mic);
    }

    #[test]
    fn drive_hands_the_processor_every_frame_in_clock_order() {
        let scene = Scene {
            far: vec![1000; 48_000],
            mic: (0..48_000).map(|i| (i % 100) as i16).collect(),
            ..Scene::default()
        };
        let mut off = ChinguStage::new(ProcessingSettings::OFF);
        let run = drive(&mut off, &scene, 100.0);
        assert_eq!(
            run.out, scene.mic,
            "with the stage off, the microphone passes"
        );
        assert_eq!(run.frame_times.len(), 50);
    }
}
