//! The real device path: cpal capturing from and playing to PulseAudio's virtual devices,
//! as on a desktop. The "microphone" is the monitor of a null sink that `pacat` plays a
//! 440 Hz tone into; the "speaker" is another null sink whose monitor we record.
//! (module-sine-source would be simpler, but it delivers audio in 2-second blocks, which
//! no real microphone does.)
//! The test starts its own user-space PulseAudio (`chingu_testkit::pulse`).

use std::time::{Duration, Instant};

use chingu_media::audio_device::{Microphone, Speaker, input_devices, output_devices};
use chingu_media::tone::{ToneGenerator, dominant_tone};

use chingu_testkit::pulse::{Pulse, pactl};

/// Reads `seconds` of 48 kHz audio from the microphone.
fn record(mic: &mut Microphone, seconds: f64) -> Vec<i16> {
    let want = (48_000.0 * seconds) as usize;
    let mut out = Vec::with_capacity(want);
    let mut frame = [0i16; 960];
    let deadline = Instant::now() + Duration::from_secs_f64(seconds * 4.0 + 2.0);
    while out.len() < want {
        assert!(
            Instant::now() < deadline,
            "the microphone delivered {} of {want} samples",
            out.len()
        );
        if mic.read(&mut frame) {
            out.extend_from_slice(&frame);
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(mic.poll_event(), None, "the stream must not end");
    }
    out
}

#[test]
fn capture_and_playback_through_real_devices() {
    let Some(mut pulse) = Pulse::start() else {
        return;
    };
    assert!(
        !input_devices().expect("list inputs").is_empty(),
        "ALSA shows PulseAudio's devices"
    );
    assert!(!output_devices().expect("list outputs").is_empty());

    // The microphone: a 440 Hz tone played into vmic by pacat, at real-time pace.
    let mut feed = pulse.play_into("vmic");
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let mut tone = ToneGenerator::new(440.0, 0.5);
        let mut samples = vec![0i16; 48_000 * 4];
        tone.fill(&mut samples);
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let _ = feed.write_all(&bytes); // pacat paces the write
    });
    let mut mic = Microphone::open(None).expect("open the default microphone");
    let heard = record(&mut mic, 1.0);
    let tail = &heard[9600..];
    assert_eq!(
        dominant_tone(tail, &[440.0, 880.0]),
        Some(440.0),
        "the mic hears the 440 Hz source: share {:.1} dB, rms {:.0}, {:?}",
        chingu_media::tone::tone_share_db(tail, 440.0),
        (tail.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / tail.len() as f64).sqrt(),
        mic.stats
    );
    drop(mic);
    // The feeder ends when pacat does, with the daemon at the end of the test.
    drop(feeder);

    // The speaker: play 880 Hz into the null sink and record its monitor.
    pactl(&["set-default-source", "vsink.monitor"]);
    let mut speaker = Speaker::open(None).expect("open the default speaker");
    let mut mic = Microphone::open(None).expect("open the monitor");
    let mut tone = ToneGenerator::new(880.0, 0.5);
    let mut chunk = [0i16; 960];
    let mut heard = Vec::new();
    let mut frame = [0i16; 960];
    let deadline = Instant::now() + Duration::from_secs(10);
    while heard.len() < 48_000 {
        assert!(
            Instant::now() < deadline,
            "playback never reached the monitor"
        );
        tone.fill(&mut chunk);
        let mut written = 0;
        while written < chunk.len() {
            written += speaker.write(&chunk[written..]);
            if written < chunk.len() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        while mic.read(&mut frame) {
            heard.extend_from_slice(&frame);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let tail = &heard[heard.len() - 24_000..];
    assert_eq!(
        dominant_tone(tail, &[440.0, 880.0]),
        Some(880.0),
        "the speaker's tone reaches the monitor"
    );
    assert_eq!(speaker.poll_event(), None);
}

#[test]
fn unknown_devices_get_a_typed_error() {
    let err = Microphone::open(Some("alsa:no-such-device-xyz")).expect_err("no such device");
    assert!(
        matches!(
            err,
            chingu_media::MediaError::DeviceNotFound { .. } | chingu_media::MediaError::Device(_)
        ),
        "{err}"
    );
    let err = Speaker::open(Some("not an id")).expect_err("unparseable");
    assert!(
        matches!(err, chingu_media::MediaError::DeviceNotFound { .. }),
        "{err}"
    );
}
