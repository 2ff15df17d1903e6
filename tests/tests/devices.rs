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

use chingu_engine::device_check::{self, CheckConfig, CheckEvent, DeviceCheck, MicTestStep};
use chingu_engine::pipeline::{AudioOutput, AudioSource, Device, ProcessingSettings, VideoSource};
use chingu_engine::{Command as EngineCommand, EngineEvent};
use chingu_media::camera::CameraRequest;
use chingu_media::tone::dominant_tone;
use chingu_testkit::process::Owned;
use chingu_testkit::pulse::Pulse;
use common::{ClientOptions, client, server};

/// The device check on the default (PulseAudio) microphone, metered as played: a noise
/// suppressor would learn the tests' steady tone as noise and take it away.
fn microphone_check(tx: tokio::sync::mpsc::Sender<CheckEvent>) -> DeviceCheck {
    DeviceCheck::start(
        CheckConfig {
            camera: None,
            microphone: None,
            video: false,
            audio: true,
            camera_fallback: false,
            processing: ProcessingSettings::OFF,
            preview: std::sync::Arc::new(|_, _| {}),
        },
        tx,
    )
    .expect("check thread")
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
    pulse.play_tone("vmic", 440.0);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let check = microphone_check(tx);
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
            CheckEvent::MicTest(step) => panic!("no microphone test was asked for: {step:?}"),
        }
    }
    drop(check);
}

/// Records `device`'s monitor (48 kHz mono) into a shared buffer, from now on.
fn record(pulse: &mut Pulse, device: &str) -> std::sync::Arc<std::sync::Mutex<Vec<i16>>> {
    let mut parec = Owned::spawn(
        Command::new("parec")
            .args([
                &format!("--device={device}"),
                "--format=s16le",
                "--rate=48000",
                "--channels=1",
                "--latency-msec=20",
            ])
            .stdout(Stdio::piped()),
    )
    .expect("run parec");
    let mut out = parec.child().stdout.take().expect("parec stdout");
    pulse.own(parec);
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&heard);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 9600];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut heard = sink.lock().expect("recording");
            heard.extend(
                buf[..n - n % 2]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
        }
    });
    heard
}

/// "Test my microphone" on real devices: three seconds of the microphone are recorded
/// (its level reported), then played on the speaker, where a recording of the speaker
/// finds the microphone's tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_microphone_test_records_and_plays_back() {
    let Some(mut pulse) = Pulse::start() else {
        return;
    };
    pulse.play_tone("vmic", 440.0);
    let speaker = record(&mut pulse, "vsink.monitor");
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let check = microphone_check(tx);
    check.test_microphone(None);
    let mut steps = Vec::new();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while !matches!(
        steps.last(),
        Some(MicTestStep::Done | MicTestStep::Failed { .. })
    ) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(CheckEvent::MicTest(step))) => steps.push(step),
            Ok(Some(_)) => {}
            other => panic!("the test did not finish: {steps:?} ({other:?})"),
        }
    }
    drop(check);
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[0], MicTestStep::Recording);
    let MicTestStep::Playing { dbfs } = steps[1] else {
        panic!("{steps:?}");
    };
    assert!(
        (-15.0..-6.0).contains(&dbfs),
        "a -9 dBFS tone recorded at {dbfs} dBFS"
    );
    assert_eq!(steps[2], MicTestStep::Done);
    let played = speaker.lock().expect("recording").clone();
    let loud: Vec<i16> = played
        .chunks(4800)
        .filter(|c| chingu_media::level::dbfs(c) > -20.0)
        .flatten()
        .copied()
        .collect();
    assert!(
        loud.len() >= 48_000 * 2,
        "{} ms of the playback reached the speaker",
        loud.len() / 48
    );
    assert_eq!(dominant_tone(&loud, &[440.0, 880.0]), Some(440.0));
}

/// Echo in a real call: engine A's speaker is looped back into its microphone through
/// PulseAudio (100 ms late), as laptop speakers are; engine B talks (espeak-ng speech).
/// What B's decoder receives from A is A's echo of B: with the processing on, it is far
/// below what A's speaker played; switched off mid-call, it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_a_speaker_to_microphone_loop_carries_no_echo() {
    let Some(mut pulse) = Pulse::start() else {
        return;
    };
    chingu_testkit::pulse::pactl(&[
        "load-module",
        "module-loopback",
        "source=vsink.monitor",
        "sink=vmic",
        "latency_msec=100",
    ]);
    let speaker = record(&mut pulse, "vsink.monitor");
    // B's voice: espeak-ng speech, looped at real-time pace.
    let voice = chingu_cli::audio_bench::talkers().expect("espeak-ng (cargo xtask installs it)");
    let voice: Vec<i16> = voice.far.iter().map(|&s| s as i16).collect();
    let relay = std::sync::Arc::new(chingu_engine::pipeline::AudioRelay::default());
    let talker = std::sync::Arc::clone(&relay);
    let talking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still = std::sync::Arc::clone(&talking);
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut sent = 0usize;
        while still.load(std::sync::atomic::Ordering::Relaxed) {
            let at = sent % (voice.len() - voice.len() % 960);
            talker.push(&voice[at..at + 960]);
            sent += 960;
            let due = start + Duration::from_micros(sent as u64 * 1_000_000 / 48_000);
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
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
            audio: Some(AudioSource::Relay(relay)),
            ..Default::default()
        },
    );
    a.search().await;
    b.search().await;
    a.in_call().await;
    b.in_call().await;
    // Echo return loss enhancement end to end: A's speaker (the echo at its microphone,
    // the loop having unity gain) over what reached B, over the same two seconds.
    let erle = |pulse_speaker: &[i16], at_b: &[i16]| {
        let n = 96_000.min(pulse_speaker.len()).min(at_b.len());
        let played = chingu_media::level::dbfs(&pulse_speaker[pulse_speaker.len() - n..]);
        let received = chingu_media::level::dbfs(&at_b[at_b.len() - n..]);
        (played, received, f64::from(played - received))
    };
    // Converged: speech has played for a while.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (played, received, on) = erle(
        &speaker.lock().expect("recording"),
        &b.seen.lock().expect("probe").audio,
    );
    eprintln!("processing on: speaker {played:.1} dBFS, at B {received:.1} dBFS: {on:.1} dB");
    a.send(EngineCommand::SetAudioProcessing(ProcessingSettings::OFF))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (played, received, off) = erle(
        &speaker.lock().expect("recording"),
        &b.seen.lock().expect("probe").audio,
    );
    eprintln!("processing off: speaker {played:.1} dBFS, at B {received:.1} dBFS: {off:.1} dB");
    talking.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(
        played > -40.0,
        "B's voice reached A's speaker ({played} dBFS)"
    );
    assert!(
        on > 20.0,
        "with the processing on, the echo is only {on:.1} dB down"
    );
    assert!(off < 10.0, "with it off, the echo is {off:.1} dB down");
    a.send(EngineCommand::HangUp).await;
    a.ended().await;
    b.ended().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_real_audio_devices() {
    let Some(mut pulse) = Pulse::start() else {
        return;
    };
    pulse.play_tone("vmic", 440.0);
    // The "speaker" is vsink; record its monitor.
    let recorded = record(&mut pulse, "vsink.monitor");

    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(
        &url,
        "alice",
        ClientOptions {
            audio: Some(AudioSource::Microphone { id: None }),
            output: AudioOutput::Speaker { id: None },
            processing: ProcessingSettings::OFF,
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
    let last_second = |v: &[i16]| v[v.len().saturating_sub(48_000)..].to_vec();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let bob = last_second(&b.seen.lock().expect("probe").audio);
        let spk = last_second(&recorded.lock().expect("recording"));
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

/// Echo on both sides: engine A (this process) and a `chingu-cli bot --devices` (B, its
/// own process, on its own PulseAudio speaker and microphone through PULSE_SINK and
/// PULSE_SOURCE) each have their speaker looped into their microphone, 100 ms late. One
/// talks at a time (espeak-ng speech into its microphone); what the other's speaker plays
/// besides is the talker's echo come back through the listener's loop and processing.
///
/// The "done when": neither hears itself back. Each canceller's reference is
/// what its speaker's device callback took (a reference pushed by the playout thread was
/// early by whatever the speaker had queued, and moved: AEC3's delay estimate jumped
/// 112 → 140 ms mid-call and the echo came back, 4–14 dB down in 3 of 6 runs). Ten runs
/// here with the callback's reference: 30.7–73.4 dB down, each canceller converging
/// within ~2 s on a voice it had not heard (docs/benchmarks.md); with another process
/// keeping a core busy, down to 19 dB (PulseAudio's own loopback starved too): this test
/// runs alone (.config/nextest.toml).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_loops_on_both_sides_carries_no_echo_either_way() {
    let Some(cli) = common::cli() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI builds chingu-cli first"
        );
        eprintln!("SKIPPED: chingu-cli is not built");
        return;
    };
    let Some(mut pulse) = Pulse::start() else {
        return;
    };
    use chingu_testkit::pulse::pactl;
    pactl(&["load-module", "module-null-sink", "sink_name=vsink_b"]);
    pactl(&["load-module", "module-null-sink", "sink_name=vmic_b"]);
    for (speaker, mic) in [("vsink", "vmic"), ("vsink_b", "vmic_b")] {
        pactl(&[
            "load-module",
            "module-loopback",
            &format!("source={speaker}.monitor"),
            &format!("sink={mic}"),
            "latency_msec=100",
        ]);
    }
    let speaker_a = record(&mut pulse, "vsink.monitor");
    let speaker_b = record(&mut pulse, "vsink_b.monitor");
    // Each side's voice: espeak-ng speech (B's is the far voice, A's the near one),
    // played into its microphone in turns: B for 10 s, then A for 10 s.
    let voices = chingu_cli::audio_bench::talkers().expect("espeak-ng (cargo xtask installs it)");
    let pcm = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|&s| (s as i16).to_le_bytes()).collect() };
    let voice_b = pcm(&voices.far);
    let voice_a = pcm(&voices.near[8 * 48_000..]);
    let mic_a = pulse.play_into("vmic");
    let mic_b = pulse.play_into("vmic_b");

    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let mut bot = chingu_testkit::process::Owned::spawn(
        Command::new(&cli)
            .args(["bot", "--server", &server.ws_url(), "--udp", "127.0.0.1:0"])
            .args(["--devices", "--duration", "40", "--json"])
            .env("PULSE_SINK", "vsink_b")
            .env("PULSE_SOURCE", "vmic_b.monitor")
            .stdout(Stdio::null()),
    )
    .expect("run chingu-cli bot");
    let mut a = client(
        &server.ws_url(),
        "alice",
        ClientOptions {
            audio: Some(AudioSource::Microphone { id: None }),
            output: AudioOutput::Speaker { id: None },
            ..Default::default()
        },
    );
    a.search().await;
    a.in_call().await;
    // Let both sides' media and cancellers start on silence, then B talks.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Each turn: the talker's voice on the listener's speaker, and its echo come back
    // through the listener's loop and processing, on the talker's own speaker, from 2.5 s
    // after the talker starts (2 s for the listener's canceller to converge on a voice it
    // has not heard before, the goal, and time for the voice to get there) for
    // 5 s. Also printed: the echo in 250 ms windows, convergence included.
    type Recording = std::sync::Arc<std::sync::Mutex<Vec<i16>>>;
    async fn turn(
        who: &str,
        mut talker: std::process::ChildStdin,
        voice: Vec<u8>,
        own: &Recording,
        other: &Recording,
    ) -> (f32, f32) {
        let level = |rec: &Recording, from: usize, to: usize| {
            let rec = rec.lock().expect("recording");
            let to = to.min(rec.len());
            chingu_media::level::dbfs(&rec[from.min(to)..to])
        };
        let from = |rec: &Recording| rec.lock().expect("recording").len();
        let (own_at, other_at) = (from(own), from(other));
        let seconds = voice.len() as f64 / 96_000.0;
        // pacat takes the voice faster than it plays it: the sleep is the clock.
        let playing = std::thread::spawn(move || {
            let _ = talker.write_all(&voice); // an error: the daemon stopped
            talker
        });
        tokio::time::sleep(Duration::from_secs_f64(seconds + 0.5)).await;
        drop(playing);
        let window = |at: usize| (at + 5 * 24_000, at + 15 * 24_000);
        let (v0, v1) = window(other_at);
        let (e0, e1) = window(own_at);
        let voice_dbfs = level(other, v0, v1);
        let echo_dbfs = level(own, e0, e1);
        let profile: Vec<String> = (0..32)
            .map(|k| {
                let at = own_at + k * 12_000;
                format!("{:.0}", level(own, at, at + 12_000))
            })
            .collect();
        eprintln!(
            "{who} talks: {voice_dbfs:.1} dBFS on the other's speaker, its echo \
             {echo_dbfs:.1} dBFS on its own ({:.1} dB down); its own speaker by 250 ms: {}",
            voice_dbfs - echo_dbfs,
            profile.join(" ")
        );
        (voice_dbfs, voice_dbfs - echo_dbfs)
    }
    let (b_voice, b_down) = turn("B", mic_b, voice_b, &speaker_b, &speaker_a).await;
    let (a_voice, a_down) = turn("A", mic_a, voice_a, &speaker_a, &speaker_b).await;
    assert!(
        b_voice > -45.0 && a_voice > -45.0,
        "each voice reached the other side"
    );
    assert!(b_down > 20.0, "B heard itself back, {b_down:.1} dB down");
    assert!(a_down > 20.0, "A heard itself back, {a_down:.1} dB down");
    a.send(EngineCommand::HangUp).await;
    a.ended().await;
    a.stop().await;
    drop(bot.child().kill());
}
