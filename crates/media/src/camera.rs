//! Cameras through nokhwa. One thread owns the camera for its life; it converts every
//! frame to I420 and hands it over through a newest-wins [`Latest`] slot (a consumer
//! that falls behind gets the latest frame, never a backlog), which counts the frames it
//! replaced. Buffers circulate: the consumer swaps its used frame in for the new one and
//! the capture thread fills that one next, so steady state allocates nothing per frame.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use crate::audio_device::DeviceEvent;
use crate::latest::Latest;
use crate::{I420Frame, MediaError, convert, frame::now_us};

/// A camera as the user picks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    /// The index nokhwa uses (on Linux the N of /dev/videoN), as text.
    pub id: String,
    pub name: String,
}

/// What to ask the camera for; the nearest mode it supports is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraRequest {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl CameraRequest {
    pub const VGA: Self = Self {
        width: 640,
        height: 480,
        fps: 30,
    };
    pub const HD: Self = Self {
        width: 1280,
        height: 720,
        fps: 30,
    };
}

/// The cameras on this machine; empty when there are none.
pub fn cameras() -> Result<Vec<CameraInfo>, MediaError> {
    let found = nokhwa::query(ApiBackend::Auto).map_err(|e| MediaError::Device(e.to_string()))?;
    Ok(found
        .into_iter()
        .map(|info| CameraInfo {
            id: info.index().to_string(),
            name: info.human_name(),
        })
        .collect())
}

/// A running camera. Dropping it stops the capture thread and joins it.
#[derive(Debug)]
pub struct Camera {
    slot: Arc<Latest<I420Frame>>,
    /// Frames that could not be converted (corrupt data) and were skipped.
    pub skipped: Arc<AtomicU64>,
    pub events: mpsc::Receiver<DeviceEvent>,
    /// The mode the camera actually delivers.
    pub format: CameraRequest,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Camera {
    /// Opens camera `id` (from [`cameras`]) or the first one, in the mode nearest `request`.
    /// With no camera at all this is [`MediaError::NoDevice`]`("camera")`.
    pub fn open(id: Option<&str>, request: CameraRequest) -> Result<Self, MediaError> {
        let available = cameras().unwrap_or_default();
        let id = match id {
            Some(id) => id.to_owned(),
            None => available
                .first()
                .ok_or(MediaError::NoDevice("camera"))?
                .id
                .clone(),
        };
        let index = id
            .parse()
            .map(CameraIndex::Index)
            .map_err(|_| MediaError::DeviceNotFound {
                kind: "camera",
                id: id.clone(),
            })?;
        let slot = Arc::new(Latest::new());
        let skipped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (events_tx, events) = mpsc::sync_channel(8);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (thread_slot, thread_skipped, thread_stop) =
            (Arc::clone(&slot), Arc::clone(&skipped), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("chingu-camera".into())
            .spawn(move || {
                let wanted = CameraFormat::new(
                    Resolution::new(request.width, request.height),
                    FrameFormat::MJPEG,
                    request.fps,
                );
                let format =
                    RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
                let opened = nokhwa::Camera::new(index, format)
                    .and_then(|mut camera| camera.open_stream().map(|()| camera));
                let mut camera = match opened {
                    Ok(camera) => camera,
                    Err(err) => {
                        let _ = ready_tx.send(Err(MediaError::Device(format!(
                            "cannot open the camera: {err}"
                        ))));
                        return;
                    }
                };
                let actual = camera.camera_format();
                let _ = ready_tx.send(Ok(CameraRequest {
                    width: actual.width(),
                    height: actual.height(),
                    fps: actual.frame_rate(),
                }));
                capture_loop(
                    &mut camera,
                    &thread_slot,
                    &thread_skipped,
                    &thread_stop,
                    &events_tx,
                );
                let _ = camera.stop_stream();
            })
            .map_err(|e| MediaError::Device(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(format)) => Ok(Self {
                slot,
                skipped,
                events,
                format,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => Err(MediaError::Device(
                "the camera thread ended while opening".into(),
            )),
        }
    }

    /// Swaps the newest frame into `frame` if one arrived since the last call; the
    /// buffer `frame` held goes back to the capture thread for reuse.
    pub fn take_frame(&self, frame: &mut I420Frame) -> bool {
        self.slot.swap(frame)
    }

    /// Like [`Self::take_frame`], waiting up to `timeout` for the next frame.
    pub fn wait_frame(&self, frame: &mut I420Frame, timeout: Duration) -> bool {
        self.slot.wait_swap(frame, timeout)
    }

    /// Frames replaced in the slot before anyone took them.
    pub fn replaced(&self) -> u64 {
        self.slot.replaced()
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn capture_loop(
    camera: &mut nokhwa::Camera,
    slot: &Latest<I420Frame>,
    skipped: &AtomicU64,
    stop: &AtomicBool,
    events: &mpsc::SyncSender<DeviceEvent>,
) {
    // Frames circulate through the slot: one being filled here, one in the slot, one
    // with the consumer.
    let mut spare: Option<I420Frame> = None;
    let mut rgb = Vec::new();
    while !stop.load(Relaxed) {
        let buffer = match camera.frame() {
            Ok(buffer) => buffer,
            Err(err) => {
                let _ = events.try_send(DeviceEvent::Ended {
                    reason: err.to_string(),
                });
                return;
            }
        };
        let captured = now_us();
        let (w, h) = (
            buffer.resolution().width() as usize,
            buffer.resolution().height() as usize,
        );
        let recycled = spare.take().or_else(|| slot.take_buffer());
        let mut frame = match recycled {
            Some(frame) => frame,
            None => match I420Frame::new(w & !1, h & !1) {
                Ok(frame) => frame,
                Err(err) => {
                    let _ = events.try_send(DeviceEvent::Ended {
                        reason: err.to_string(),
                    });
                    return;
                }
            },
        };
        let converted = match buffer.source_frame_format() {
            FrameFormat::YUYV => convert::yuyv_to_i420(buffer.buffer(), w, h, &mut frame),
            FrameFormat::NV12 => convert::nv12_to_i420(buffer.buffer(), w, h, &mut frame),
            FrameFormat::RAWRGB => convert::rgb24_to_i420(buffer.buffer(), w, h, &mut frame),
            _ => {
                // MJPEG, grey and BGR: let nokhwa decode to RGB, into a reused buffer.
                rgb.resize(w * h * 3, 0);
                buffer
                    .decode_image_to_buffer::<RgbFormat>(&mut rgb)
                    .map_err(|e| MediaError::Device(e.to_string()))
                    .and_then(|()| convert::rgb24_to_i420(&rgb, w, h, &mut frame))
            }
        };
        if converted.is_err() {
            // One bad frame (a corrupt JPEG, say) is skipped and counted, not fatal.
            skipped.fetch_add(1, Relaxed);
            spare = Some(frame);
            continue;
        }
        frame.capture_us = captured;
        slot.put(frame);
    }
}
