//! Camera pixel formats to I420, writing into a reused frame (no allocation per frame).
//! BT.601 studio range, as cameras deliver it.

use crate::{I420Frame, MediaError};

fn check(
    format: &'static str,
    src: &[u8],
    width: usize,
    height: usize,
    need: usize,
) -> Result<(), MediaError> {
    if src.len() < need {
        return Err(MediaError::BadInput {
            format,
            width,
            height,
            got: src.len(),
            need,
        });
    }
    Ok(())
}

/// Packed 4:2:2 Y0 U Y1 V. Chroma of each pair of rows is averaged.
pub fn yuyv_to_i420(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), MediaError> {
    dst.resize(width, height)?;
    check("YUYV", src, width, height, width * height * 2)?;
    let (cw, stride) = (width / 2, width * 2);
    for row in (0..height).step_by(2) {
        let top = &src[row * stride..(row + 1) * stride];
        let bottom = &src[(row + 1) * stride..(row + 2) * stride];
        for (pair, (t, b)) in top.chunks_exact(4).zip(bottom.chunks_exact(4)).enumerate() {
            dst.y[row * width + 2 * pair] = t[0];
            dst.y[row * width + 2 * pair + 1] = t[2];
            dst.y[(row + 1) * width + 2 * pair] = b[0];
            dst.y[(row + 1) * width + 2 * pair + 1] = b[2];
            let c = (row / 2) * cw + pair;
            dst.u[c] = (u16::from(t[1]) + u16::from(b[1])).div_ceil(2) as u8;
            dst.v[c] = (u16::from(t[3]) + u16::from(b[3])).div_ceil(2) as u8;
        }
    }
    Ok(())
}

/// Semi-planar 4:2:0: the Y plane, then interleaved U V.
pub fn nv12_to_i420(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), MediaError> {
    dst.resize(width, height)?;
    check("NV12", src, width, height, width * height * 3 / 2)?;
    let (luma, chroma) = src.split_at(width * height);
    dst.y.copy_from_slice(luma);
    for (i, uv) in chroma.chunks_exact(2).take(width * height / 4).enumerate() {
        dst.u[i] = uv[0];
        dst.v[i] = uv[1];
    }
    Ok(())
}

/// Packed RGB, 3 bytes a pixel (what an MJPEG decoder hands back).
pub fn rgb24_to_i420(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut I420Frame,
) -> Result<(), MediaError> {
    dst.resize(width, height)?;
    check("RGB24", src, width, height, width * height * 3)?;
    let luma = |p: &[u8]| -> i32 {
        (66 * i32::from(p[0]) + 129 * i32::from(p[1]) + 25 * i32::from(p[2]) + 128) >> 8
    };
    for (i, px) in src.chunks_exact(3).take(width * height).enumerate() {
        dst.y[i] = (luma(px) + 16) as u8;
    }
    let cw = width / 2;
    for row in 0..height / 2 {
        for col in 0..cw {
            let mut sum = [0i32; 3];
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let at = ((2 * row + dy) * width + 2 * col + dx) * 3;
                for (s, &c) in sum.iter_mut().zip(&src[at..at + 3]) {
                    *s += i32::from(c);
                }
            }
            let [r, g, b] = sum.map(|s| s / 4);
            dst.u[row * cw + col] =
                (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128).clamp(0, 255) as u8;
            dst.v[row * cw + col] =
                (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128).clamp(0, 255) as u8;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_keeps_luma_and_averages_chroma() {
        let (w, h) = (4, 2);
        let src = [
            10, 100, 20, 200, 30, 110, 40, 210, // row 0
            50, 102, 60, 202, 70, 112, 80, 212, // row 1
        ];
        let mut dst = I420Frame::new(2, 2).expect("size");
        yuyv_to_i420(&src, w, h, &mut dst).expect("fits");
        assert_eq!(dst.y, vec![10, 20, 30, 40, 50, 60, 70, 80]);
        assert_eq!(dst.u, vec![101, 111]);
        assert_eq!(dst.v, vec![201, 211]);
    }

    #[test]
    fn nv12_deinterleaves_chroma() {
        let mut src = vec![7u8; 4 * 2];
        src.extend_from_slice(&[1, 2, 3, 4]);
        let mut dst = I420Frame::new(4, 2).expect("size");
        nv12_to_i420(&src, 4, 2, &mut dst).expect("fits");
        assert_eq!((dst.u.clone(), dst.v.clone()), (vec![1, 3], vec![2, 4]));
    }

    #[test]
    fn rgb_primaries_land_where_bt601_puts_them() {
        let mut dst = I420Frame::new(2, 2).expect("size");
        rgb24_to_i420(&[255, 255, 255].repeat(4), 2, 2, &mut dst).expect("fits");
        assert_eq!((dst.y[0], dst.u[0], dst.v[0]), (235, 128, 128), "white");
        rgb24_to_i420(&[255, 0, 0].repeat(4), 2, 2, &mut dst).expect("fits");
        assert_eq!((dst.y[0], dst.u[0], dst.v[0]), (82, 90, 240), "red");
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut dst = I420Frame::new(2, 2).expect("size");
        assert!(matches!(
            yuyv_to_i420(&[0; 10], 640, 480, &mut dst),
            Err(MediaError::BadInput { .. })
        ));
        assert!(nv12_to_i420(&[0; 10], 640, 480, &mut dst).is_err());
        assert!(rgb24_to_i420(&[0; 10], 640, 480, &mut dst).is_err());
        assert!(yuyv_to_i420(&[0; 16], 3, 2, &mut dst).is_err(), "odd width");
    }
}
