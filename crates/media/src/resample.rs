//! Linear-interpolation sample-rate conversion for device audio (any rate <-> 48 kHz).
//! Allocation-free and per sample, so it can run inside a device callback. Good enough
//! for speech between common rates (44.1/48 kHz); not a mastering-grade resampler.

#[derive(Debug, Clone)]
pub struct LinearResampler {
    /// Input samples per output sample.
    step: f64,
    /// Position of the next output, in input samples after `prev`.
    at: f64,
    prev: f32,
}

impl LinearResampler {
    pub fn new(from_hz: u32, to_hz: u32) -> Self {
        Self {
            step: f64::from(from_hz.max(1)) / f64::from(to_hz.max(1)),
            at: 0.0,
            prev: 0.0,
        }
    }

    /// Feeds one input sample; calls `emit` for each output sample it completes.
    #[inline]
    pub fn push(&mut self, sample: f32, mut emit: impl FnMut(f32)) {
        while self.at < 1.0 {
            emit(self.prev + (sample - self.prev) * self.at as f32);
            self.at += self.step;
        }
        self.at -= 1.0;
        self.prev = sample;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{ToneGenerator, dominant_tone};

    #[test]
    fn converts_44100_to_48000_keeping_length_and_pitch() {
        let mut tone_44k = ToneGenerator::new(440.0 * 48_000.0 / 44_100.0, 0.5);
        let mut input = vec![0i16; 44_100];
        tone_44k.fill(&mut input); // sounds at 440 Hz once read at 44.1 kHz
        let mut r = LinearResampler::new(44_100, 48_000);
        let mut out = Vec::new();
        for &x in &input {
            r.push(f32::from(x), |y| out.push(y as i16));
        }
        assert!(
            (out.len() as i64 - 48_000).abs() <= 2,
            "{} samples",
            out.len()
        );
        assert_eq!(
            dominant_tone(&out[4800..], &[440.0, 478.9, 404.3]),
            Some(440.0)
        );
    }

    #[test]
    fn same_rate_is_identity_after_one_sample_delay() {
        let mut r = LinearResampler::new(48_000, 48_000);
        let mut out = Vec::new();
        for x in [1.0, 2.0, 3.0] {
            r.push(x, |y| out.push(y));
        }
        assert_eq!(out, vec![0.0, 1.0, 2.0]);
    }
}
