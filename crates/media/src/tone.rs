//! A synthetic microphone (a sine tone) and a detector that tells which tone arrived.

use std::f64::consts::TAU;

/// 48 kHz mono, the rate everything after capture runs at.
pub const SAMPLE_RATE: u32 = 48_000;

/// A sine wave, phase-continuous across calls: continuous, or in talkspurts.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    step: f64,
    phase: f64,
    amplitude: f64,
    /// In talkspurts: samples on, then samples of silence, repeated.
    spurts: Option<(u64, u64)>,
    position: u64,
    /// The state of the pauses' faint noise (xorshift).
    noise: u32,
}

/// The noise in a talker's pauses: a quiet room through a microphone and its noise
/// suppression, -70 dBFS peak.
const ROOM_NOISE: f64 = 0.0003;

impl ToneGenerator {
    /// `level` is the peak as a fraction of full scale (0.0..=1.0).
    pub fn new(frequency_hz: f64, level: f64) -> Self {
        Self {
            step: TAU * frequency_hz / f64::from(SAMPLE_RATE),
            phase: 0.0,
            amplitude: level.clamp(0.0, 1.0) * f64::from(i16::MAX),
            spurts: None,
            position: 0,
            noise: 0x2545_f491,
        }
    }

    /// The tone for `on`, then a pause for `off`, over and over: a speaker in a
    /// conversation rather than one who never stops. The pauses carry a quiet room's
    /// noise (-70 dBFS), as a microphone's do, not digital silence.
    pub fn in_spurts(mut self, on: std::time::Duration, off: std::time::Duration) -> Self {
        let samples =
            |d: std::time::Duration| (d.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as u64;
        self.spurts = Some((samples(on).max(1), samples(off)));
        self
    }

    pub fn fill(&mut self, out: &mut [i16]) {
        for sample in out {
            let silent = self
                .spurts
                .is_some_and(|(on, off)| self.position % (on + off) >= on);
            *sample = if silent {
                self.noise ^= self.noise << 13;
                self.noise ^= self.noise >> 17;
                self.noise ^= self.noise << 5;
                let uniform = f64::from(self.noise) / f64::from(u32::MAX) * 2.0 - 1.0;
                (uniform * ROOM_NOISE * f64::from(i16::MAX)) as i16
            } else {
                (self.phase.sin() * self.amplitude) as i16
            };
            self.phase = (self.phase + self.step) % TAU;
            self.position += 1;
        }
    }
}

/// The share of the signal's energy at `frequency_hz` (Goertzel), in dB: near 0 for a
/// pure tone at that frequency, very negative for silence or another tone.
pub fn tone_share_db(samples: &[i16], frequency_hz: f64) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let coeff = 2.0 * (TAU * frequency_hz / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0f64;
    for &x in samples {
        let x = f64::from(x);
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // A pure tone's Goertzel power is energy * N / 2.
    let share = 2.0 * power / (energy * samples.len() as f64).max(f64::MIN_POSITIVE);
    10.0 * share.max(1e-12).log10()
}

/// Which of `candidates` carries most of the signal, if any carries at least half of it.
pub fn dominant_tone(samples: &[i16], candidates: &[f64]) -> Option<f64> {
    candidates
        .iter()
        .map(|&f| (f, tone_share_db(samples, f)))
        .filter(|&(_, db)| db > -3.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_tone_that_was_played() {
        let mut buf = vec![0i16; 4800];
        ToneGenerator::new(440.0, 0.5).fill(&mut buf);
        assert!(tone_share_db(&buf, 440.0) > -1.0);
        assert!(tone_share_db(&buf, 880.0) < -20.0);
        assert_eq!(dominant_tone(&buf, &[440.0, 660.0, 880.0]), Some(440.0));
    }

    #[test]
    fn silence_and_empty_input_have_no_tone() {
        assert_eq!(dominant_tone(&[0; 4800], &[440.0]), None);
        assert_eq!(dominant_tone(&[], &[440.0]), None);
    }

    #[test]
    fn in_spurts_the_tone_alternates_with_silence() {
        let second = std::time::Duration::from_secs(1);
        let mut g = ToneGenerator::new(440.0, 0.5).in_spurts(second, second / 2);
        let mut buf = vec![0i16; 48_000 * 3];
        g.fill(&mut buf);
        let (talk, rest) = buf.split_at(48_000);
        let (quiet, again) = rest.split_at(24_000);
        assert_eq!(dominant_tone(talk, &[440.0]), Some(440.0));
        let faint =
            |s: &[i16]| s.iter().all(|&x| x.unsigned_abs() <= 10) && s.iter().any(|&x| x != 0);
        assert!(faint(quiet), "a pause is a quiet room's noise");
        assert_eq!(dominant_tone(&again[..48_000], &[440.0]), Some(440.0));
        assert!(faint(&again[48_000..]));
    }

    #[test]
    fn phase_continues_across_buffers() {
        let mut whole = vec![0i16; 960];
        ToneGenerator::new(1000.0, 0.5).fill(&mut whole);
        let mut split = vec![0i16; 960];
        let mut g = ToneGenerator::new(1000.0, 0.5);
        g.fill(&mut split[..480]);
        g.fill(&mut split[480..]);
        let max_diff = whole.iter().zip(&split).map(|(a, b)| (a - b).abs()).max();
        assert!(max_diff <= Some(1), "{max_diff:?}");
    }
}
