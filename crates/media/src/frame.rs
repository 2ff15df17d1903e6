//! Planar YUV 4:2:0 frames, the one format every stage after capture works in.

use crate::MediaError;

/// An I420 frame: full-resolution Y, quarter-resolution U and V, tightly packed.
/// Buffers are reused across frames; nothing here allocates per frame once sized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: usize,
    height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    /// When the frame was captured, in microseconds of [`crate::frame::now_us`]'s clock.
    pub capture_us: u64,
}

/// Microseconds since the Unix epoch: comparable between processes on one machine, which
/// is what latency measurements between two peers need.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl I420Frame {
    /// A black frame. Width and height must be even and non-zero.
    pub fn new(width: usize, height: usize) -> Result<Self, MediaError> {
        let mut frame = Self {
            width: 0,
            height: 0,
            y: Vec::new(),
            u: Vec::new(),
            v: Vec::new(),
            capture_us: 0,
        };
        frame.resize(width, height)?;
        Ok(frame)
    }

    /// Changes the size, reusing the buffers' capacity.
    pub fn resize(&mut self, width: usize, height: usize) -> Result<(), MediaError> {
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
            return Err(MediaError::BadSize {
                width,
                height,
                why: "width and height must be even and non-zero",
            });
        }
        if width > 7680 || height > 4320 {
            return Err(MediaError::BadSize {
                width,
                height,
                why: "larger than 8K",
            });
        }
        self.width = width;
        self.height = height;
        self.y.resize(width * height, 16);
        self.u.resize(width * height / 4, 128);
        self.v.resize(width * height / 4, 128);
        Ok(())
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Bytes in all three planes.
    pub fn byte_len(&self) -> usize {
        self.width * self.height * 3 / 2
    }
}

impl openh264::formats::YUVSource for I420Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_zero_and_huge_sizes_are_refused() {
        assert!(I420Frame::new(641, 480).is_err());
        assert!(I420Frame::new(0, 480).is_err());
        assert!(I420Frame::new(10_000, 480).is_err());
        let frame = I420Frame::new(640, 480).expect("valid");
        assert_eq!(
            (frame.y.len(), frame.u.len(), frame.byte_len()),
            (307_200, 76_800, 460_800)
        );
    }

    #[test]
    fn resizing_down_keeps_capacity() {
        let mut frame = I420Frame::new(1280, 720).expect("valid");
        let capacity = frame.y.capacity();
        frame.resize(640, 480).expect("valid");
        assert_eq!(frame.y.capacity(), capacity, "no reallocation");
        assert_eq!(frame.y.len(), 640 * 480);
    }
}
