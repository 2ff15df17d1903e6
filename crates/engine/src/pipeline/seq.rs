//! RTP sequence numbers are 16 bits and wrap every 65,536 packets (about 30 minutes of
//! 720p video), RTP timestamps 32 bits (a day at 48 kHz); buffers key packets by a 64-bit
//! extension instead.

/// Extends `BITS`-bit counters to 64 bits, each to the value nearest the highest seen so
/// far, so reordering across a wrap keeps the right order.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extender<const BITS: u32> {
    highest: Option<u64>,
}

/// For sequence numbers.
pub type SeqExtender = Extender<16>;
/// For RTP timestamps.
pub type TimestampExtender = Extender<32>;

impl<const BITS: u32> Extender<BITS> {
    const SPAN: u64 = 1 << BITS;

    pub fn extend(&mut self, value: impl Into<u64>) -> u64 {
        let value = value.into() & (Self::SPAN - 1);
        let ext = match self.highest {
            // Start well above zero so a value from just before the first can be placed.
            None => (1u64 << 48) + value,
            Some(highest) => {
                let base = highest & !(Self::SPAN - 1);
                [base.wrapping_sub(Self::SPAN), base, base + Self::SPAN]
                    .into_iter()
                    .map(|b| b + value)
                    .min_by_key(|c| c.abs_diff(highest))
                    .unwrap_or(base + value)
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_reorders() {
        let mut s = SeqExtender::default();
        let a = s.extend(65_534u16);
        let b = s.extend(65_535u16);
        let c = s.extend(1u16);
        let d = s.extend(0u16); // late, across the wrap
        assert_eq!((b - a, c - b, c - d), (1, 2, 1));
        let e = s.extend(65_535u16); // very late, before the wrap
        assert_eq!(e, b);
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let mut t = TimestampExtender::default();
        let a = t.extend(u32::MAX - 959);
        let b = t.extend(0u32);
        let c = t.extend(u32::MAX - 1919); // late, across the wrap
        assert_eq!((b - a, a - c), (960, 960));
        assert_eq!(t.extend(960u32) - b, 960);
    }
}
