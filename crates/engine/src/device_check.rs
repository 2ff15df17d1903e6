//! The device check outside a call (onboarding and settings): the devices there are,
//! a preview of the chosen camera, and the chosen microphone's level. One thread owns
//! both devices for the check's life, blocking on the microphone (or, without one, on
//! the video source); dropping the check stops and joins it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chingu_media::audio_device::{self, Microphone, Speaker};
use chingu_media::level::LevelMeter;
use chingu_media::processing::{AudioProcessor, ProcessingSettings};
use chingu_media::{I420Frame, camera};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::pipeline::{
    Device, FrameInfo, SOURCE_WAIT, VideoSink, VideoSource, open_video_or_pattern,
};

/// A device as the pickers show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub is_default: bool,
}

/// The devices on this machine. A host that cannot be asked lists nothing for that
/// kind (and says why in `problems`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Devices {
    pub cameras: Vec<DeviceInfo>,
    pub microphones: Vec<DeviceInfo>,
    pub speakers: Vec<DeviceInfo>,
    pub problems: Vec<String>,
}

/// Lists cameras, microphones and speakers. Blocks on the device servers: call it
/// off the async runtime.
pub fn devices() -> Devices {
    let mut devices = Devices::default();
    match camera::cameras() {
        Ok(found) => {
            devices.cameras = found
                .into_iter()
                .enumerate()
                .map(|(i, c)| DeviceInfo {
                    id: c.id,
                    name: c.name,
                    is_default: i == 0,
                })
                .collect();
        }
        Err(e) => devices.problems.push(format!("cameras: {e}")),
    }
    let audio = |list: Result<Vec<audio_device::AudioDeviceInfo>, _>,
                 kind: &str,
                 problems: &mut Vec<String>| match list {
        Ok(found) => found
            .into_iter()
            .map(|d| DeviceInfo {
                id: d.id,
                name: d.name,
                is_default: d.is_default,
            })
            .collect(),
        Err(e) => {
            problems.push(format!("{kind}: {e}"));
            Vec::new()
        }
    };
    devices.microphones = audio(
        audio_device::input_devices(),
        "microphones",
        &mut devices.problems,
    );
    devices.speakers = audio(
        audio_device::output_devices(),
        "speakers",
        &mut devices.problems,
    );
    devices
}

/// What the check reports.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckEvent {
    /// The microphone's level over the last 100 ms, in dBFS (-120 for silence).
    Level { dbfs: f32 },
    /// "Test my microphone" ([`DeviceCheck::test_microphone`]) moved on.
    MicTest(MicTestStep),
    /// A device could not be opened or stopped working (for the camera, the message
    /// says when the synthetic pattern is shown instead).
    DeviceError { device: Device, message: String },
}

/// Where a microphone test is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum MicTestStep {
    /// Recording [`MIC_TEST`] of the microphone, processed as a call would send it.
    Recording,
    /// Playing it back; `dbfs` is the recording's level.
    Playing {
        dbfs: f32,
    },
    Done,
    /// No microphone, or the speaker could not be opened or stopped.
    Failed {
        message: String,
    },
}

/// How long "test my microphone" records.
pub const MIC_TEST: Duration = Duration::from_secs(3);
/// Playback is queued this far ahead of the speaker (60 ms), and given to the echo
/// canceller as it is queued, so the meter does not show the playback as the voice.
const PLAYBACK_AHEAD: usize = 2_880;

enum MicTest {
    Recording {
        speaker: Option<String>,
        recorded: Vec<i16>,
    },
    Playing {
        speaker: Speaker,
        recorded: Vec<i16>,
        at: usize,
        /// Done by then even if the speaker stopped taking samples.
        until: Instant,
    },
}

/// What to check.
#[derive(Clone)]
pub struct CheckConfig {
    pub camera: Option<String>,
    pub microphone: Option<String>,
    /// Whether to use a camera at all (false: only the microphone).
    pub video: bool,
    /// Whether to open a microphone at all.
    pub audio: bool,
    /// Show the synthetic pattern when the camera cannot be opened.
    pub camera_fallback: bool,
    /// The level shown is the microphone after this processing: what a call would send.
    pub processing: ProcessingSettings,
    pub preview: VideoSink,
}

impl std::fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckConfig")
            .field("camera", &self.camera)
            .field("microphone", &self.microphone)
            .field("video", &self.video)
            .field("audio", &self.audio)
            .field("camera_fallback", &self.camera_fallback)
            .field("processing", &self.processing)
            .finish_non_exhaustive()
    }
}

/// What a running check is asked to do.
#[derive(Debug)]
enum CheckCtl {
    /// "Test my microphone", played back on this speaker.
    TestMicrophone(Option<String>),
    /// The microphone's processing changed (the meter shows it at once).
    Processing(ProcessingSettings),
}

/// A running device check.
#[derive(Debug)]
pub struct DeviceCheck {
    stop: Arc<AtomicBool>,
    /// Requests to the check's thread.
    ctl: std::sync::mpsc::Sender<CheckCtl>,
    thread: Option<JoinHandle<()>>,
}

const LEVEL_INTERVAL: Duration = Duration::from_millis(100);
/// A microphone delivers about every 10 ms; the camera is looked at in between.
const MIC_WAIT: Duration = Duration::from_millis(10);

impl DeviceCheck {
    pub fn start(config: CheckConfig, events: mpsc::Sender<CheckEvent>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let (ctl, ctl_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chingu-device-check".into())
            .spawn(move || check_thread(config, events, &thread_stop, &ctl_rx))?;
        Ok(Self {
            stop,
            ctl,
            thread: Some(thread),
        })
    }

    /// Records [`MIC_TEST`] of the microphone (processed), then plays it on `speaker`
    /// (`None`: the default); progress comes as [`CheckEvent::MicTest`]. A test asked
    /// for during another starts over.
    pub fn test_microphone(&self, speaker: Option<String>) {
        let _ = self.ctl.send(CheckCtl::TestMicrophone(speaker));
    }

    /// Changes the microphone's processing without restarting the check.
    pub fn set_processing(&self, settings: ProcessingSettings) {
        let _ = self.ctl.send(CheckCtl::Processing(settings));
    }
}

impl Drop for DeviceCheck {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn check_thread(
    config: CheckConfig,
    events: mpsc::Sender<CheckEvent>,
    stop: &AtomicBool,
    ctl: &std::sync::mpsc::Receiver<CheckCtl>,
) {
    let report = |device, message| {
        let _ = events.try_send(CheckEvent::DeviceError { device, message });
    };
    let step = |step| {
        let _ = events.try_send(CheckEvent::MicTest(step));
    };
    let mut test: Option<MicTest> = None;
    let Ok(mut frame) = I420Frame::new(640, 480) else {
        return;
    };
    let mut video = None;
    if config.video {
        let camera = VideoSource::Camera {
            id: config.camera.clone(),
            request: chingu_media::camera::CameraRequest::VGA,
        };
        video = open_video_or_pattern(&camera, config.camera_fallback, &mut frame, report);
    }
    let mut mic = None;
    if config.audio {
        match Microphone::open(config.microphone.as_deref()) {
            Ok(m) => mic = Some(m),
            Err(e) => report(Device::Microphone, e.to_string()),
        }
    }
    let mut pcm = vec![0i16; 480]; // 10 ms at 48 kHz
    let mut processor = AudioProcessor::new(config.processing);
    let mut meter = LevelMeter::default();
    let mut next_level = Instant::now() + LEVEL_INTERVAL;
    while !stop.load(Relaxed) {
        // Block on whichever device paces us: the microphone (every ~10 ms) when there is
        // one, else the video source.
        if let Some(m) = mic.as_mut() {
            while m.read_timeout(&mut pcm, MIC_WAIT) {
                // Only a microphone test's playback is played here, and it is given to
                // the echo canceller as it is queued.
                if let Err(e) = processor.capture(&mut pcm) {
                    tracing::warn!("audio processing: {e}");
                }
                meter.push(&pcm);
                if let Some(MicTest::Recording { recorded, .. }) = test.as_mut() {
                    recorded.extend_from_slice(&pcm);
                }
                if m.buffered() < pcm.len() {
                    break;
                }
            }
            if let Some(audio_device::DeviceEvent::Ended { reason }) = m.poll_event() {
                report(Device::Microphone, reason);
                mic = None;
            }
        }
        while let Ok(request) = ctl.try_recv() {
            let speaker = match request {
                CheckCtl::Processing(settings) => {
                    processor.set_settings(settings);
                    continue;
                }
                CheckCtl::TestMicrophone(speaker) => speaker,
            };
            test = if mic.is_some() {
                step(MicTestStep::Recording);
                Some(MicTest::Recording {
                    speaker,
                    recorded: Vec::with_capacity(MIC_TEST.as_millis() as usize * 48),
                })
            } else {
                step(MicTestStep::Failed {
                    message: "no microphone".into(),
                });
                None
            };
        }
        test = mic_test(test, &mut processor, &step);
        let video_wait = if mic.is_some() {
            Duration::ZERO
        } else {
            SOURCE_WAIT
        };
        let shown = match video.as_mut() {
            Some(source) => source.next_frame(&mut frame, video_wait),
            None if mic.is_none() => {
                std::thread::sleep(SOURCE_WAIT);
                false
            }
            None => false,
        };
        if shown {
            (config.preview)(&frame, &FrameInfo::captured(&frame));
        }
        if Instant::now() >= next_level {
            next_level += LEVEL_INTERVAL;
            let dbfs = meter.take_dbfs();
            if mic.is_some() {
                let _ = events.try_send(CheckEvent::Level { dbfs });
            }
        }
    }
}

/// Moves a microphone test on: from recording to playing once [`MIC_TEST`] is recorded,
/// and keeps the speaker fed until everything was played.
fn mic_test(
    test: Option<MicTest>,
    processor: &mut AudioProcessor,
    step: &dyn Fn(MicTestStep),
) -> Option<MicTest> {
    match test? {
        MicTest::Recording { speaker, recorded }
            if recorded.len() >= MIC_TEST.as_millis() as usize * 48 =>
        {
            match Speaker::open(speaker.as_deref()) {
                Ok(speaker) => {
                    step(MicTestStep::Playing {
                        dbfs: chingu_media::level::dbfs(&recorded),
                    });
                    Some(MicTest::Playing {
                        speaker,
                        recorded,
                        at: 0,
                        until: Instant::now() + MIC_TEST + Duration::from_secs(2),
                    })
                }
                Err(e) => {
                    step(MicTestStep::Failed {
                        message: e.to_string(),
                    });
                    None
                }
            }
        }
        MicTest::Playing {
            mut speaker,
            recorded,
            mut at,
            until,
        } => {
            if let Some(audio_device::DeviceEvent::Ended { reason }) = speaker.poll_event() {
                step(MicTestStep::Failed { message: reason });
                return None;
            }
            while speaker.queued() < PLAYBACK_AHEAD && at < recorded.len() {
                let block = &recorded[at..(at + 480).min(recorded.len())];
                at += speaker.write(block);
                if block.len() == 480 {
                    let _ = processor.render(block);
                }
            }
            if (at >= recorded.len() && speaker.queued() == 0) || Instant::now() > until {
                step(MicTestStep::Done);
                return None;
            }
            Some(MicTest::Playing {
                speaker,
                recorded,
                at,
                until,
            })
        }
        recording => Some(recording),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn without_a_camera_the_preview_shows_the_pattern_and_says_why() {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&frames);
        let preview: VideoSink = Arc::new(move |frame: &I420Frame, _: &FrameInfo| {
            seen.lock()
                .unwrap()
                .push((frame.width(), frame.height(), frame.capture_us));
        });
        let (tx, mut rx) = mpsc::channel(16);
        let check = DeviceCheck::start(
            CheckConfig {
                // No camera here; on a machine with one, an id that cannot exist.
                camera: Some("chingu-no-such-camera".into()),
                microphone: None,
                video: true,
                audio: false,
                camera_fallback: true,
                processing: ProcessingSettings::OFF,
                preview,
            },
            tx,
        )
        .expect("thread");
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event in time")
            .expect("an event");
        assert!(
            matches!(&event, CheckEvent::DeviceError { device: Device::Camera, message } if message.contains("test pattern")),
            "{event:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while frames.lock().unwrap().len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(check); // joins the thread
        let frames = frames.lock().unwrap().clone();
        assert!(frames.len() >= 3, "{} preview frames", frames.len());
        assert!(frames.iter().all(|&(w, h, _)| (w, h) == (640, 480)));
        assert!(
            frames.windows(2).all(|p| p[1].2 > p[0].2),
            "capture times increase"
        );
    }
}
