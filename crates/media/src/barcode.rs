//! A block barcode in the top rows of the luma plane that carries a frame number and a
//! capture time through lossy encoding, so the receiver can check order and completeness
//! and measure capture-to-render latency from the pixels alone.
//!
//! Layout: 64 payload bits (frame number: 32, capture time in µs mod 2^32: 32) and an
//! 8-bit CRC, one bit per 16x16 block (an H.264 macroblock, so each block is coded on its
//! own), white (235) for 1 and black (16) for 0, row-major from the top-left. Reading
//! averages each block's inner half, so blur and ringing at block edges do not matter,
//! and refuses a frame where any block is neither clearly white nor clearly black (a
//! frame with no barcode, or a corrupted one). The chroma under the barcode is neutral.
//!
//! A sender may scale its frames down before encoding (congestion control's resolution
//! ladder); [`read`] also tries the frame as the 3/4, 1/2, 3/8 and 1/4 scale of a
//! stamped one.

use crate::I420Frame;

const BLOCK: usize = 16;
const BITS: usize = 72;

/// What a frame's barcode says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub frame_number: u32,
    /// Capture time in microseconds, modulo 2^32 (wraps every ~71 minutes; compare with
    /// [`Stamp::elapsed_us`]).
    pub capture_us: u32,
}

impl Stamp {
    pub fn new(frame_number: u32, capture_us: u64) -> Self {
        Self {
            frame_number,
            capture_us: capture_us as u32,
        }
    }

    /// Microseconds from this stamp's capture to `now_us` (same clock), tolerant of the
    /// 32-bit wrap.
    pub fn elapsed_us(&self, now_us: u64) -> u32 {
        (now_us as u32).wrapping_sub(self.capture_us)
    }
}

/// Rows of pixels the barcode occupies at this width, or `None` if the frame is too small.
pub fn band_height(width: usize, height: usize) -> Option<usize> {
    let per_row = width / BLOCK;
    if per_row == 0 {
        return None;
    }
    let rows = BITS.div_ceil(per_row);
    (rows * BLOCK <= height / 2).then_some(rows * BLOCK)
}

/// Draws the stamp. Returns false (and draws nothing) if the frame is too small.
pub fn write(frame: &mut I420Frame, stamp: Stamp) -> bool {
    let (width, height) = (frame.width(), frame.height());
    let Some(band) = band_height(width, height) else {
        return false;
    };
    let bits = to_bits(stamp);
    let per_row = width / BLOCK;
    for row in 0..band {
        let line = &mut frame.y[row * width..(row + 1) * width];
        for (col, px) in line.iter_mut().enumerate() {
            let index = (row / BLOCK) * per_row + col / BLOCK;
            let bit = col / BLOCK < per_row && index < BITS && bits >> index & 1 == 1;
            *px = if bit { 235 } else { 16 };
        }
    }
    let chroma_rows = band / 2;
    let chroma_width = width / 2;
    frame.u[..chroma_rows * chroma_width].fill(128);
    frame.v[..chroma_rows * chroma_width].fill(128);
    true
}

/// The scales (numerator, denominator) a stamped frame may have been reduced by.
const SCALES: [(usize, usize); 5] = [(1, 1), (3, 4), (1, 2), (3, 8), (1, 4)];
/// A block's mean must be below this (black) or at least [`WHITE_ABOVE`] (white).
const BLACK_BELOW: u32 = 80;
const WHITE_ABOVE: u32 = 170;

/// Reads the stamp, or `None` if the frame is too small, carries none, or the CRC does
/// not match.
pub fn read(frame: &I420Frame) -> Option<Stamp> {
    SCALES.iter().find_map(|&(num, den)| {
        let (w, h) = (frame.width() * den, frame.height() * den);
        (w % num == 0 && h % num == 0)
            .then(|| read_scaled(frame, w / num, h / num))
            .flatten()
    })
}

/// Reads `frame` as a stamped frame of `source_width` x `source_height` scaled to its size.
fn read_scaled(frame: &I420Frame, source_width: usize, source_height: usize) -> Option<Stamp> {
    let (width, height) = (frame.width(), frame.height());
    band_height(source_width, source_height)?;
    let per_row = source_width / BLOCK;
    let scale = width as f64 / source_width as f64;
    // The inner half of each block, at least one pixel.
    let span = |start: usize| -> (usize, usize) {
        let from = ((start as f64 + BLOCK as f64 / 4.0) * scale) as usize;
        let to = (((start as f64 + BLOCK as f64 * 3.0 / 4.0) * scale) as usize).max(from + 1);
        (from, to)
    };
    let mut bits: u128 = 0;
    for index in 0..BITS {
        let (x0, x1) = span((index % per_row) * BLOCK);
        let (y0, y1) = span((index / per_row) * BLOCK);
        if x1 > width || y1 > height {
            return None;
        }
        let mut sum = 0u32;
        for y in y0..y1 {
            let row = &frame.y[y * width + x0..y * width + x1];
            sum += row.iter().map(|&p| u32::from(p)).sum::<u32>();
        }
        let mean = sum / ((x1 - x0) * (y1 - y0)) as u32;
        if mean >= WHITE_ABOVE {
            bits |= 1 << index;
        } else if mean >= BLACK_BELOW {
            return None;
        }
    }
    let payload = (bits & u128::from(u64::MAX)) as u64;
    let crc = (bits >> 64) as u8;
    (crc8(payload) == crc).then_some(Stamp {
        frame_number: (payload >> 32) as u32,
        capture_us: payload as u32,
    })
}

fn to_bits(stamp: Stamp) -> u128 {
    let payload = (u64::from(stamp.frame_number) << 32) | u64::from(stamp.capture_us);
    u128::from(payload) | (u128::from(crc8(payload)) << 64)
}

/// CRC-8 (polynomial 0x07) over the payload's bytes, from a non-zero start so that an
/// all-black band (payload 0, CRC 0) is not a valid stamp.
fn crc8(payload: u64) -> u8 {
    payload.to_be_bytes().iter().fold(0xA5u8, |mut crc, &byte| {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
        crc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_common_sizes() {
        for (w, h) in [(320, 240), (640, 480), (1280, 720), (1920, 1080)] {
            let mut frame = I420Frame::new(w, h).expect("size");
            let stamp = Stamp::new(0xDEAD_BEEF, 0x0123_4567_89AB_CDEF);
            assert!(write(&mut frame, stamp));
            assert_eq!(read(&frame), Some(stamp), "{w}x{h}");
        }
    }

    #[test]
    fn survives_noise_and_rejects_corruption() {
        let mut frame = I420Frame::new(640, 480).expect("size");
        let stamp = Stamp::new(42, 1_000_000);
        write(&mut frame, stamp);
        // Heavy but bounded noise, as lossy coding adds.
        for (i, px) in frame.y.iter_mut().enumerate() {
            let noise = (i.wrapping_mul(2_654_435_761) >> 7) % 81;
            *px = (i32::from(*px) + noise as i32 - 40).clamp(0, 255) as u8;
        }
        assert_eq!(read(&frame), Some(stamp));
        // Flip one block: the CRC catches it.
        for y in 0..16 {
            for x in 0..16 {
                frame.y[y * 640 + x] = 255 - frame.y[y * 640 + x];
            }
        }
        assert_eq!(read(&frame), None);
    }

    #[test]
    fn reads_frames_scaled_down_by_the_ladder() {
        let mut source = I420Frame::new(1280, 720).expect("size");
        let stamp = Stamp::new(7, 123_456);
        write(&mut source, stamp);
        for (w, h) in [(960, 540), (640, 360), (480, 270), (320, 180)] {
            let mut scaled = I420Frame::new(w, h).expect("size");
            crate::scale::scale(&source, &mut scaled);
            assert_eq!(read(&scaled), Some(stamp), "{w}x{h}");
        }
    }

    #[test]
    fn a_frame_without_a_barcode_is_refused() {
        // Mid-grey blocks and a picture: neither black nor white.
        let mut frame = I420Frame::new(640, 480).expect("size");
        frame.y.fill(128);
        assert_eq!(read(&frame), None);
        // A picture: texture of every brightness.
        let mut picture = I420Frame::new(640, 480).expect("size");
        for (i, px) in picture.y.iter_mut().enumerate() {
            *px = ((i * 7 + i / 640 * 13) % 251) as u8;
        }
        assert_eq!(read(&picture), None);
    }

    #[test]
    fn too_small_frames_are_refused_without_panicking() {
        let mut frame = I420Frame::new(16, 16).expect("size");
        assert!(!write(&mut frame, Stamp::new(1, 1)));
        assert_eq!(read(&frame), None);
    }

    #[test]
    fn elapsed_time_survives_the_wrap() {
        let stamp = Stamp::new(0, u64::from(u32::MAX) - 10);
        assert_eq!(stamp.elapsed_us(u64::from(u32::MAX) + 20), 30);
    }
}
