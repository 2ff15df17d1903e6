//! The real device path. Onboarding's device check lists the devices and meters the
//! microphone. In a call: engine A captures through cpal's real input (a
//! PulseAudio null sink's monitor, fed a 440 Hz tone by `pacat`) and plays through cpal's
//! real output (another null sink, recorded with `parec`); engine B uses synthetic
//! media. Each side must hear the other's tone. Also: with no camera, asking for one
//! gives the typed error and the call goes on.
//! The test starts its own user-space PulseAudio (`cargo xtask` installs it); outside CI
//! a machine without it skips with a message.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use chingu_engine::device_check::{self, CheckConfig, CheckEvent, DeviceCheck};
use chingu_engine::pipeline::{AudioOutput, AudioSource, Device, VideoSource};
use chingu_engine::{Command as EngineCommand, EngineEvent};
use chingu_media::camera::CameraRequest;
use chingu_media::tone::{ToneGenerator, dominant_tone};
use chingu_testkit::process::Owned;
use chingu_testkit::pulse::Pulse;
use common::{ClientOptions, client, server};

/// The "microphone": a tone played into vmic at real-time pace, for the whole test.
fn play_tone_into_vmic(pulse: &mut Pulse, frequency_hz: f64) {
    let mut feed = pulse.play_into("vmic");
    std::thread::spawn(move || {
        let mut tone = ToneGenerator::new(frequency_hz, 0.5);
        let mut samples = vec![0i16; 4800];
        loop {
            tone.fill(&mut samples);
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            if feed.write_all(&bytes).is_err() {
                break; // pacat was stopped
            }
        }
    });
}

/// Onboarding's device check on real devices: the pickers list PulseAudio's devices,
/// and the level meter reads the tone played into the microphone (a -9 dBFS sine;
/// silence reads -120).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_check_lists_devices_and_meters_the_microphone() {
    let Some(mut pulse) = Pulse::start() else {
        return;
    };
    let devices = tokio::task::spawn_blocking(device_check::devices)
        .await
        .expect("listed");
    assert!(!devices.microphones.is_empty(), "{devices:?}");
    assert!(!devices.speakers.is_empty(), "{devices:?}");
    play_tone_into_vmic(&mut pulse, 440.0);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let check = DeviceCheck::start(
        CheckConfig {
            camera: None,
            microphone: None,
            video: false,
            audio: true,
            camera_fallback: false,
            preview: std::sync::Arc::new(|_, _| {}),
        },
        tx,
    )
    .expect("check thread");
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let mut levels = Vec::new();
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no tone level within the deadline: {levels:?}"))
            .expect("the check runs");
        match event {
            CheckEvent::Level { dbfs } => {
                levels.push(dbfs);
                if dbfs > -15.0 {
                    assert!(dbfs < -6.0, "a -9 dBFS tone read {dbfs} dBFS");
                    break;
                }
            }
            CheckEvent::DeviceError { device, message } => panic!("{device}: {message}"),
        }
    }
    drop(check);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_real_audio_devices() {
    let Some(mut pulse) = Pulse::start() else {
        return;
    };
    play_tone_into_vmic(&mut pulse, 440.0);
    // The "speaker" is vsink; record its monitor.
    let mut parec = Owned::spawn(
        Command::new("parec")
            .args([
                "--device=vsink.monitor",
                "--format=s16le",
                "--rate=48000",
                "--channels=1",
                "--latency-msec=20",
            ])
            .stdout(Stdio::piped()),
    )
    .expect("run parec");
    let mut recorded = parec.child().stdout.take().expect("parec stdout");
    pulse.own(parec);
    let (heard_tx, heard_rx) = std::sync::mpsc::channel::<Vec<i16>>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 9600];
        while let Ok(n) = recorded.read(&mut buf) {
            if n == 0 {
                break;
            }
            let samples = buf[..n - n % 2]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            if heard_tx.send(samples).is_err() {
                break;
            }
        }
    });

    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(
        &url,
        "alice",
        ClientOptions {
            audio: Some(AudioSource::Microphone { id: None }),
            output: AudioOutput::Speaker { id: None },
            ..Default::default()
        },
    );
    let mut b = client(
        &url,
        "bob",
        ClientOptions {
            tone_hz: 880.0,
            ..Default::default()
        },
    );
    a.search().await;
    b.search().await;
    a.in_call().await;
    b.in_call().await;
    // Poll until each side hears the other's tone through the real devices (the device
    // path adds start-up latency), with a deadline.
    let mut speaker: Vec<i16> = Vec::new();
    let last_second = |v: &[i16]| v[v.len().saturating_sub(48_000)..].to_vec();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        while let Ok(chunk) = heard_rx.try_recv() {
            speaker.extend(chunk);
        }
        let bob = last_second(&b.seen.lock().expect("probe").audio);
        let spk = last_second(&speaker);
        let bob_ok = bob.len() == 48_000 && dominant_tone(&bob, &[440.0, 880.0]) == Some(440.0);
        let spk_ok = spk.len() == 48_000 && dominant_tone(&spk, &[440.0, 880.0]) == Some(880.0);
        if bob_ok && spk_ok {
            break;
        }
        let rms = |v: &[i16]| {
            (v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob hears alice's microphone: {bob_ok} ({} samples, rms {:.0}); \
             alice's speaker plays bob's tone: {spk_ok} ({} samples, rms {:.0})",
            bob.len(),
            rms(&bob),
            spk.len(),
            rms(&spk)
        );
    }

    // No camera on this machine: asking for one is a typed error, and the call goes on.
    a.send(EngineCommand::SetVideoSource(Some(VideoSource::Camera {
        id: None,
        request: CameraRequest::VGA,
    })))
    .await;
    let (device, message) = a
        .wait_for("device error", |e| match e {
            EngineEvent::DeviceError { device, message } => Some((*device, message.clone())),
            _ => None,
        })
        .await;
    assert_eq!(device, Device::Camera, "{message}");
    if chingu_media::camera::cameras().map_or(true, |c| c.is_empty()) {
        assert!(message.contains("no camera"), "{message}");
    }
    a.send(EngineCommand::HangUp).await;
    a.ended().await;
    b.ended().await;
    a.stop().await;
    b.stop().await;
}
