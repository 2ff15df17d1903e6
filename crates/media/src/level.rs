//! Audio levels in dBFS (0 = a full-scale square wave's RMS, silence = [`SILENCE_DBFS`]),
//! the one definition the call's level meters and the device check both use.

/// What silence (or anything quieter) reads as.
pub const SILENCE_DBFS: f32 = -120.0;

/// The RMS level of `samples` in dBFS.
pub fn dbfs(samples: &[i16]) -> f32 {
    let mut meter = LevelMeter::default();
    meter.push(samples);
    meter.dbfs()
}

/// Accumulates samples and reads their RMS level: for levels over windows longer than
/// one buffer (the device check's 100 ms).
#[derive(Debug, Clone, Copy, Default)]
pub struct LevelMeter {
    energy: f64,
    samples: usize,
}

impl LevelMeter {
    pub fn push(&mut self, samples: &[i16]) {
        self.energy += samples
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>();
        self.samples += samples.len();
    }

    /// The level of everything pushed since the last [`Self::reset`].
    pub fn dbfs(&self) -> f32 {
        if self.samples == 0 {
            return SILENCE_DBFS;
        }
        let rms = (self.energy / self.samples as f64).sqrt() / 32768.0;
        if rms > 1e-6 {
            ((20.0 * rms.log10()) as f32).max(SILENCE_DBFS)
        } else {
            SILENCE_DBFS
        }
    }

    /// Reads the level and starts a new window.
    pub fn take_dbfs(&mut self) -> f32 {
        let level = self.dbfs();
        *self = Self::default();
        level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_dbfs() {
        assert_eq!(dbfs(&[]), SILENCE_DBFS);
        assert_eq!(dbfs(&[0; 480]), SILENCE_DBFS);
        assert!(dbfs(&[i16::MAX; 480]).abs() < 0.01, "full scale is 0 dBFS");
        assert!(
            (dbfs(&[16384; 480]) + 6.02).abs() < 0.05,
            "half amplitude is -6 dB"
        );
    }

    #[test]
    fn a_meter_averages_over_its_window_and_restarts() {
        let mut meter = LevelMeter::default();
        meter.push(&[16384; 480]);
        meter.push(&[16384; 480]);
        assert!((meter.take_dbfs() + 6.02).abs() < 0.05);
        assert_eq!(meter.take_dbfs(), SILENCE_DBFS, "a new, empty window");
    }
}
