//! Scaling a frame down (congestion control's resolution ladder): each output pixel is
//! the mean of the source pixels it covers (an area filter), which keeps fine texture
//! from aliasing into noise the encoder would spend bits on. Writes into a frame the
//! caller reuses; allocates nothing.

use crate::I420Frame;

/// Scales `src` into `dst` at `dst`'s size (which must not be larger).
pub fn scale(src: &I420Frame, dst: &mut I420Frame) {
    let (sw, sh, dw, dh) = (src.width(), src.height(), dst.width(), dst.height());
    dst.capture_us = src.capture_us;
    if (sw, sh) == (dw, dh) {
        dst.y.copy_from_slice(&src.y);
        dst.u.copy_from_slice(&src.u);
        dst.v.copy_from_slice(&src.v);
        return;
    }
    plane(&src.y, sw, sh, &mut dst.y, dw, dh);
    plane(&src.u, sw / 2, sh / 2, &mut dst.u, dw / 2, dh / 2);
    plane(&src.v, sw / 2, sh / 2, &mut dst.v, dw / 2, dh / 2);
}

fn plane(src: &[u8], sw: usize, sh: usize, dst: &mut [u8], dw: usize, dh: usize) {
    if dw == 0 || dh == 0 {
        return;
    }
    for (dy, row) in dst.chunks_exact_mut(dw).take(dh).enumerate() {
        let y0 = dy * sh / dh;
        let y1 = ((dy + 1) * sh / dh).clamp(y0 + 1, sh);
        for (dx, out) in row.iter_mut().enumerate() {
            let x0 = dx * sw / dw;
            let x1 = ((dx + 1) * sw / dw).clamp(x0 + 1, sw);
            let mut sum = 0u32;
            for line in src[y0 * sw..y1 * sw].chunks_exact(sw) {
                sum += line[x0..x1].iter().map(|&p| u32::from(p)).sum::<u32>();
            }
            *out = (sum / ((x1 - x0) * (y1 - y0)) as u32) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_each_two_by_two_block() {
        let mut src = I420Frame::new(4, 4).expect("size");
        src.y = (0..16).map(|i| (i * 10) as u8).collect();
        src.capture_us = 77;
        let mut dst = I420Frame::new(2, 2).expect("size");
        scale(&src, &mut dst);
        // Top-left block: 0, 10, 40, 50.
        assert_eq!(dst.y, vec![25, 45, 105, 125]);
        assert_eq!(dst.capture_us, 77);
    }

    #[test]
    fn the_same_size_is_a_copy_and_three_quarters_keeps_flat_areas_flat() {
        let mut src = I420Frame::new(640, 480).expect("size");
        src.y.fill(200);
        let mut same = I420Frame::new(640, 480).expect("size");
        scale(&src, &mut same);
        assert_eq!(same, src);
        let mut dst = I420Frame::new(480, 360).expect("size");
        scale(&src, &mut dst);
        assert!(dst.y.iter().all(|&p| p == 200));
        assert!(dst.u.iter().all(|&p| p == 128));
    }
}
