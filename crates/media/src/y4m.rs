//! YUV4MPEG2 (`.y4m`) files: the raw-video format other WebRTC stacks take as a fake
//! camera (Chromium's `--use-file-for-fake-video-capture`), so a call can be measured on
//! the same frames. 4:2:0 only (`C420`, `C420jpeg`, `C420paldv`, `C420mpeg2`, or no `C`
//! tag); interlacing and aspect tags are read and ignored. Frames are read from the file
//! on demand (an index of their offsets is built when the file is opened), so a long
//! file costs no memory.
//!
//! ```text
//! YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n
//! FRAME\n <w*h bytes of Y> <w*h/4 of U> <w*h/4 of V>
//! FRAME\n ...
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::{I420Frame, MediaError};

/// The longest header line accepted.
const MAX_LINE: usize = 1024;

/// The stream header's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Y4mHeader {
    pub width: usize,
    pub height: usize,
    /// Frames per second (`F` tag; 30 when absent).
    pub fps: f64,
}

fn bad(why: impl Into<String>) -> MediaError {
    MediaError::VideoFile(why.into())
}

/// Parses the stream header line (without its newline).
pub fn parse_header(line: &str) -> Result<Y4mHeader, MediaError> {
    let mut tags = line.split(' ');
    if tags.next() != Some("YUV4MPEG2") {
        return Err(bad("not a YUV4MPEG2 file"));
    }
    let (mut width, mut height, mut fps) = (None, None, 30.0);
    for tag in tags.filter(|t| !t.is_empty()) {
        let (key, value) = tag.split_at(1);
        match key {
            "W" => width = value.parse::<usize>().ok(),
            "H" => height = value.parse::<usize>().ok(),
            "F" => {
                let (num, den) = value
                    .split_once(':')
                    .ok_or_else(|| bad(format!("frame rate {value:?}")))?;
                let (num, den) = (num.parse::<f64>(), den.parse::<f64>());
                match (num, den) {
                    (Ok(n), Ok(d)) if n > 0.0 && d > 0.0 && n / d <= 240.0 => fps = n / d,
                    _ => return Err(bad(format!("frame rate {value:?}"))),
                }
            }
            "C" if !value.starts_with("420") => {
                return Err(bad(format!(
                    "colour space C{value} (only 4:2:0 is supported)"
                )));
            }
            _ => {}
        }
    }
    let (Some(width), Some(height)) = (width, height) else {
        return Err(bad("the header has no W and H"));
    };
    if width == 0
        || height == 0
        || width % 2 == 1
        || height % 2 == 1
        || width * height > 4096 * 2304
    {
        return Err(bad(format!("frame size {width}x{height}")));
    }
    Ok(Y4mHeader { width, height, fps })
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes; `None` at the end.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, MediaError> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| bad(e.to_string()))?;
    if n == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(bad("a header line is too long or unterminated"));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| bad("a header line is not text"))
}

/// An open `.y4m` file.
#[derive(Debug)]
pub struct Y4mFile {
    file: File,
    header: Y4mHeader,
    /// Where each frame's pixels start.
    offsets: Vec<u64>,
}

impl Y4mFile {
    /// Opens the file and indexes its frames. A file with no whole frame is an error; a
    /// truncated last frame is left out.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let file = File::open(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let len = file.metadata().map_err(|e| bad(e.to_string()))?.len();
        let mut reader = BufReader::new(file);
        let header = parse_header(&read_line(&mut reader)?.ok_or_else(|| bad("empty file"))?)?;
        let frame_bytes = (header.width * header.height * 3 / 2) as u64;
        let mut offsets = Vec::new();
        while let Some(line) = read_line(&mut reader)? {
            if line != "FRAME" && !line.starts_with("FRAME ") {
                return Err(bad(format!("expected FRAME, found {line:?}")));
            }
            let at = reader.stream_position().map_err(|e| bad(e.to_string()))?;
            if at + frame_bytes > len {
                break;
            }
            offsets.push(at);
            reader
                .seek(SeekFrom::Start(at + frame_bytes))
                .map_err(|e| bad(e.to_string()))?;
        }
        if offsets.is_empty() {
            return Err(bad("the file holds no whole frame"));
        }
        Ok(Self {
            file: reader.into_inner(),
            header,
            offsets,
        })
    }

    pub fn header(&self) -> Y4mHeader {
        self.header
    }

    pub fn frame_count(&self) -> usize {
        self.offsets.len()
    }

    /// Reads frame `index` (modulo the frame count: a file loops) into `frame`, resizing it.
    pub fn read(&mut self, index: usize, frame: &mut I420Frame) -> Result<(), MediaError> {
        let at = self.offsets[index % self.offsets.len()];
        frame.resize(self.header.width, self.header.height)?;
        self.file
            .seek(SeekFrom::Start(at))
            .map_err(|e| bad(e.to_string()))?;
        for plane in [&mut frame.y, &mut frame.u, &mut frame.v] {
            self.file
                .read_exact(plane)
                .map_err(|e| bad(format!("reading a frame: {e}")))?;
        }
        Ok(())
    }
}

/// Writes `frames` as a `.y4m` stream at `fps` (for tests and for making a reference
/// file from the test pattern).
pub fn write(out: &mut impl std::io::Write, frames: &[I420Frame], fps: u32) -> std::io::Result<()> {
    let Some(first) = frames.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "YUV4MPEG2 W{} H{} F{fps}:1 Ip A1:1 C420jpeg",
        first.width(),
        first.height()
    )?;
    for frame in frames {
        out.write_all(b"FRAME\n")?;
        out.write_all(&frame.y)?;
        out.write_all(&frame.u)?;
        out.write_all(&frame.v)?;
    }
    Ok(())
}

/// Y-PSNR of `received` against `reference` (same size), in dB, skipping the first
/// `skip_rows` rows (a barcode band); 100 for identical pictures, `None` for different
/// sizes.
pub fn psnr_y(reference: &I420Frame, received: &I420Frame, skip_rows: usize) -> Option<f64> {
    if (reference.width(), reference.height()) != (received.width(), received.height()) {
        return None;
    }
    let start = (skip_rows * reference.width()).min(reference.y.len());
    let (a, b) = (&reference.y[start..], &received.y[start..]);
    if a.is_empty() {
        return None;
    }
    let squared: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i64::from(x) - i64::from(y);
            (d * d) as u64
        })
        .sum();
    if squared == 0 {
        return Some(100.0);
    }
    let mse = squared as f64 / a.len() as f64;
    Some((10.0 * (255.0 * 255.0 / mse).log10()).min(100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: usize, height: usize, shade: u8) -> I420Frame {
        let mut f = I420Frame::new(width, height).unwrap();
        f.y.iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = shade.wrapping_add((i % 200) as u8));
        f.u.fill(100);
        f.v.fill(150);
        f
    }

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("chingu-y4m-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn headers_parse_and_bad_ones_are_clear_errors() {
        assert_eq!(
            parse_header("YUV4MPEG2 W640 H480 F30000:1001 Ip A1:1 C420jpeg").unwrap(),
            Y4mHeader {
                width: 640,
                height: 480,
                fps: 30000.0 / 1001.0
            }
        );
        assert_eq!(parse_header("YUV4MPEG2 W2 H2").unwrap().fps, 30.0);
        for bad in [
            "",
            "YUV4MPEG W640 H480",
            "YUV4MPEG2 W640",
            "YUV4MPEG2 W641 H480",
            "YUV4MPEG2 W0 H480",
            "YUV4MPEG2 W640 H480 F0:1",
            "YUV4MPEG2 W640 H480 F30",
            "YUV4MPEG2 W640 H480 C444",
            "YUV4MPEG2 W99999999 H99999999",
        ] {
            let err = parse_header(bad).expect_err(bad);
            assert!(matches!(err, MediaError::VideoFile(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn frames_round_trip_and_the_file_loops() {
        let frames = [frame(16, 8, 0), frame(16, 8, 50), frame(16, 8, 99)];
        let mut bytes = Vec::new();
        write(&mut bytes, &frames, 25).unwrap();
        // A truncated fourth frame is left out.
        bytes.extend_from_slice(b"FRAME\n\x01\x02");
        let path = temp("loop.y4m", &bytes);
        let mut file = Y4mFile::open(&path).unwrap();
        assert_eq!(file.frame_count(), 3);
        assert_eq!(file.header().fps, 25.0);
        let mut out = I420Frame::new(2, 2).unwrap();
        for i in [0, 2, 1, 3, 5] {
            file.read(i, &mut out).unwrap();
            assert_eq!(out, frames[i % 3], "frame {i}");
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn broken_files_are_errors_never_panics() {
        let cases: [(&str, &[u8]); 5] = [
            ("empty", b""),
            ("no-frames", b"YUV4MPEG2 W16 H8\n"),
            ("short", b"YUV4MPEG2 W16 H8\nFRAME\nabc"),
            ("junk", b"YUV4MPEG2 W16 H8\nNOPE\n"),
            ("long-line", &[b'Y'; 5000]),
        ];
        for (name, bytes) in cases {
            let path = temp(name, bytes);
            let err = Y4mFile::open(&path).expect_err(name);
            assert!(matches!(err, MediaError::VideoFile(_)), "{name}: {err}");
            std::fs::remove_file(path).unwrap();
        }
        let missing = Y4mFile::open(Path::new("/nonexistent/chingu.y4m")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/chingu.y4m"),
            "{missing}"
        );
    }

    #[test]
    fn psnr_measures_the_difference() {
        let a = frame(32, 32, 0);
        assert_eq!(psnr_y(&a, &a, 0), Some(100.0));
        let mut b = a.clone();
        // Every pixel off by 4: MSE 16, 10·log10(65025/16) ≈ 36.09 dB.
        b.y.iter_mut().for_each(|p| *p = p.wrapping_add(4));
        let db = psnr_y(&a, &b, 0).unwrap();
        assert!((db - 36.09).abs() < 0.01, "{db}");
        // Differences only in skipped rows do not count.
        let mut c = a.clone();
        c.y[..32 * 4].fill(0);
        assert_eq!(psnr_y(&a, &c, 4), Some(100.0));
        assert_eq!(psnr_y(&a, &frame(16, 16, 0), 0), None);
    }
}
