//! Cameras: with none on the machine, opening one is a typed error; with one, frames
//! arrive as I420 with a capture time.

use std::time::{Duration, Instant};

use chingu_media::MediaError;
use chingu_media::camera::{Camera, CameraRequest, cameras};

#[test]
fn the_default_camera_opens_or_says_there_is_none() {
    let found = cameras().unwrap_or_default();
    match Camera::open(None, CameraRequest::VGA) {
        Err(MediaError::NoDevice(kind)) => {
            assert!(found.is_empty(), "NoDevice although {found:?} were listed");
            assert_eq!(kind, "camera");
        }
        Err(other) => panic!("a listed camera failed to open ({found:?}): {other}"),
        Ok(camera) => {
            // Real hardware: a frame must arrive within a few seconds.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut frame = chingu_media::I420Frame::new(2, 2).expect("size");
            loop {
                if camera.take_frame(&mut frame) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no frame from {:?}",
                    camera.format
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(frame.width() >= 2 && frame.capture_us > 0);
        }
    }
}

#[test]
fn a_camera_that_does_not_exist_is_an_error_not_a_panic() {
    assert!(matches!(
        Camera::open(Some("not-a-number"), CameraRequest::VGA),
        Err(MediaError::DeviceNotFound { kind: "camera", .. })
    ));
    let err = Camera::open(Some("97"), CameraRequest::HD).expect_err("/dev/video97 does not exist");
    assert!(matches!(err, MediaError::Device(_)), "{err}");
    assert!(
        err.to_string().contains("camera"),
        "says what failed: {err}"
    );
}
