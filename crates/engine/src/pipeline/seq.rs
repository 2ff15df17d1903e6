//! RTP sequence numbers are 16 bits and wrap every 65,536 packets (about 30 minutes of
//! 720p video); buffers key packets by a 64-bit extension instead.

/// Extends 16-bit sequence numbers to 64 bits, each to the value nearest the highest
/// seen so far, so reordering across a wrap keeps the right order.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            // Start well above zero so a packet from just before the first can be placed.
            None => (1u64 << 32) + u64::from(seq),
            Some(highest) => {
                let base = highest & !0xFFFF;
                [base.wrapping_sub(0x1_0000), base, base + 0x1_0000]
                    .into_iter()
                    .map(|b| b + u64::from(seq))
                    .min_by_key(|c| c.abs_diff(highest))
                    .unwrap_or(base + u64::from(seq))
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
        let a = s.extend(65_534);
        let b = s.extend(65_535);
        let c = s.extend(1);
        let d = s.extend(0); // late, across the wrap
        assert_eq!((b - a, c - b, c - d), (1, 2, 1));
        let e = s.extend(65_535); // very late, before the wrap
        assert_eq!(e, b);
    }
}
