//! A synthetic camera: moving, textured content (so the encoder works as hard as on a
//! real scene) with a barcode stamp in every frame.

use crate::I420Frame;
use crate::barcode::{self, Stamp};

/// Draws test-pattern frames. Cheap enough for 720p30 on one core.
#[derive(Debug, Default)]
pub struct TestPattern {
    frames: u32,
}

impl TestPattern {
    pub fn new() -> Self {
        Self::default()
    }

    /// Draws the next frame into `frame` (any even size), stamped with its number and
    /// `capture_us`. Returns the stamp.
    pub fn draw(&mut self, frame: &mut I420Frame, capture_us: u64) -> Stamp {
        let number = self.frames;
        self.frames = self.frames.wrapping_add(1);
        let (width, height) = (frame.width(), frame.height());
        let t = number as usize;
        // Diagonal stripes drifting right, with fine texture, and a bright box bouncing
        // across: motion everywhere plus detail that does not compress away.
        let box_size = height / 4;
        let box_x = bounce(t * 7, width - box_size);
        let box_y = bounce(t * 5, height - box_size);
        for (row, line) in frame.y.chunks_exact_mut(width).enumerate() {
            let in_box_rows = row >= box_y && row < box_y + box_size;
            for (col, px) in line.iter_mut().enumerate() {
                let stripe = ((col + 2 * row + 3 * t) & 127) as u8;
                let texture = (((col ^ row).wrapping_mul(37)) & 31) as u8;
                *px = 48 + stripe + texture;
            }
            if in_box_rows {
                line[box_x..box_x + box_size].fill(230);
            }
        }
        let (cw, ch) = (width / 2, height / 2);
        for row in 0..ch {
            for col in 0..cw {
                frame.u[row * cw + col] = (64 + ((col + t) & 127)) as u8;
                frame.v[row * cw + col] = (64 + ((row + 2 * t) & 127)) as u8;
            }
        }
        frame.capture_us = capture_us;
        let stamp = Stamp::new(number, capture_us);
        barcode::write(frame, stamp);
        stamp
    }
}

/// Position moving back and forth over `0..=span`.
fn bounce(step: usize, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let phase = step % (2 * span);
    if phase <= span {
        phase
    } else {
        2 * span - phase
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_move_and_carry_their_number() {
        let mut pattern = TestPattern::new();
        let mut a = I420Frame::new(640, 480).expect("size");
        let mut b = a.clone();
        pattern.draw(&mut a, 1_000);
        let stamp = pattern.draw(&mut b, 34_333);
        assert_eq!(stamp, Stamp::new(1, 34_333));
        assert_eq!(barcode::read(&b), Some(stamp));
        let changed = a.y.iter().zip(&b.y).filter(|(x, y)| x != y).count();
        assert!(changed > a.y.len() / 2, "most pixels move: {changed}");
    }
}
