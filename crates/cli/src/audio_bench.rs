//! `chingu-cli audio-bench`: the microphone's processing stage (the engine's own,
//! `chingu_media::processing`) measured in a simulated room (`chingu_media::room`).
//!
//! Two voices made on this machine by espeak-ng: the far end talks alone for 8 s, then
//! both talk for 3 s, then the near end talks alone for 5 s. Each condition (an echo
//! delay) runs four times, each through a fresh stage: the call in a quiet room through
//! the whole stage (latency, CPU); the call and the near talker alone (what double talk
//! is compared with) through the stage without its gain control (echo figures: a gain
//! control lifts the echo left and the talker alike, which is not echo); the near talker
//! with background noise 10 dB under its speech and nothing played, through the whole
//! stage (noise figures: the noise alone for 8 s, then the talker).
//! Every room has an RT60 of 300 ms, a soft-clipping speaker and a microphone clock
//! 100 ppm faster than the speaker's.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use chingu_media::echo_metrics::{Timeline, echo_figures, noise_figures};
use chingu_media::processing::{ProcessingSettings, RATE};
use chingu_media::room::{ChinguStage, EchoStage, RoomSettings, drive, resample, simulate};
use serde::Serialize;

#[cfg(feature = "webrtc-legacy")]
mod legacy;

/// Echo delays measured by default, ms.
pub const DELAYS_MS: &[u64] = &[20, 60, 120, 250];
const FAR_ONLY_S: f64 = 8.0;
const DOUBLE_TALK_S: f64 = 3.0;
const NEAR_ONLY_S: f64 = 5.0;
/// Talkers' levels while talking, dBFS: a loud far end (laptop speakers turned up), a
/// near talker at a usual microphone level.
const FAR_DBFS: f64 = -18.0;
const NEAR_DBFS: f64 = -26.0;
const NOISE_SNR_DB: f64 = 10.0;

const FAR_TEXT: &str = "Hello, can you hear me? I am calling from Seoul, where it is raining \
    again tonight. I wanted to ask how your trip went, and whether you found the little \
    restaurant near the station that I told you about last week.";
const NEAR_TEXT: &str = "Yes, I can hear you very well. The trip was wonderful, thank you. \
    We found the restaurant on the second evening and the soup was even better than you \
    said it would be.";

/// One condition's figures, as `audio-bench --json` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct AudioFigures {
    pub condition: String,
    pub echo_delay_ms: u64,
    pub rt60_ms: u64,
    pub drift_ppm: f64,
    pub noise_snr_db: f64,
    pub erle_db: Option<f64>,
    pub convergence_s: Option<f64>,
    pub residual_echo_dbfs: Option<f64>,
    /// The echo canceller's (and noise suppressor's) effect on the near talker during
    /// double talk, dB (gain control off).
    pub double_talk_near_end_db: Option<f64>,
    /// The same through the whole stage: the gain control lifts a talker the canceller
    /// turned down.
    pub double_talk_near_end_whole_stage_db: Option<f64>,
    pub noise_reduction_db: Option<f64>,
    pub noise_level_change_db: Option<f64>,
    pub added_latency_ms: Option<f64>,
    /// Processing time over audio time, for one call's microphone (and far end).
    pub cpu_pct_one_core: f64,
    /// The slowest 1 % of 20 ms frames took at least this long, µs.
    pub frame_p99_us: u64,
}

/// Reads a 16-bit PCM mono WAV file (what espeak-ng writes).
pub fn read_wav(bytes: &[u8]) -> anyhow::Result<(u32, Vec<i16>)> {
    let u16_at = |i: usize| {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        bail!("not a WAV file");
    }
    let (mut at, mut format) = (12, None);
    while let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_at(at + 4)) {
        let body = at + 8;
        let size = size as usize;
        let Some(end) = body.checked_add(size).filter(|&e| e <= bytes.len()) else {
            bail!(
                "WAV chunk {:?} runs past the end of the file",
                String::from_utf8_lossy(id)
            );
        };
        match id {
            b"fmt " => {
                let (Some(tag), Some(channels), Some(rate), Some(bits)) = (
                    u16_at(body),
                    u16_at(body + 2),
                    u32_at(body + 4),
                    u16_at(body + 14),
                ) else {
                    bail!("WAV format chunk too short");
                };
                if tag != 1 || channels != 1 || bits != 16 || rate == 0 {
                    bail!(
                        "WAV is not 16-bit PCM mono (format {tag}, {channels} channels, {bits} bits)"
                    );
                }
                format = Some(rate);
            }
            b"data" => {
                let Some(rate) = format else {
                    bail!("WAV data before its format");
                };
                let samples = bytes[body..end]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Ok((rate, samples));
            }
            _ => {}
        }
        at = end + (size & 1);
    }
    bail!("WAV file has no data")
}

/// `text` spoken by espeak-ng's `voice`, at 48 kHz, scaled so its speech is at `dbfs`,
/// cut or padded to `seconds`.
pub fn speech(voice: &str, text: &str, dbfs: f64, seconds: f64) -> anyhow::Result<Vec<f32>> {
    let dir = std::env::temp_dir().join(format!("chingu-audio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{voice}.wav"));
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "165", "-w"])
        .arg(&file)
        .arg(text)
        .status();
    let wav = match status {
        Ok(s) if s.success() => std::fs::read(&file),
        Ok(s) => bail!("espeak-ng failed ({s})"),
        Err(e) => bail!(
            "espeak-ng makes the test speech and could not be run ({e}); install it (Debian: \
             apt-get install espeak-ng) or run `cargo xtask bench`, which does"
        ),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let (rate, samples) = read_wav(&wav.context("reading espeak-ng's output")?)?;
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s)).collect();
    let mut voice = resample(&input, f64::from(rate) / f64::from(RATE));
    voice.resize((seconds * f64::from(RATE)) as usize, 0.0);
    // Level: the RMS of the frames that carry speech.
    let block = RATE as usize / 100;
    let (mut energy, mut n) = (0.0, 0usize);
    for frame in voice.chunks(block) {
        let e: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
        if e / frame.len() as f64 > 1e4 {
            energy += e;
            n += frame.len();
        }
    }
    if n == 0 {
        bail!("espeak-ng produced silence");
    }
    let gain = 32768.0 * 10f64.powf(dbfs / 20.0) / (energy / n as f64).sqrt();
    Ok(voice
        .iter()
        .map(|&s| (f64::from(s) * gain) as f32)
        .collect())
}

/// The two talkers placed on the timeline: far end from 0 s, near end from 8 s.
#[derive(Debug)]
pub struct Talkers {
    pub far: Vec<f32>,
    pub near: Vec<f32>,
    pub timeline: Timeline,
}

pub fn talkers() -> anyhow::Result<Talkers> {
    let far = speech("en-us", FAR_TEXT, FAR_DBFS, FAR_ONLY_S + DOUBLE_TALK_S)?;
    let near_voice = speech(
        "en-us+f3",
        NEAR_TEXT,
        NEAR_DBFS,
        DOUBLE_TALK_S + NEAR_ONLY_S,
    )?;
    let start = (FAR_ONLY_S * f64::from(RATE)) as usize;
    let mut near = vec![0.0; start];
    near.extend_from_slice(&near_voice);
    near.resize(near.len() + RATE as usize / 2, 0.0);
    Ok(Talkers {
        far,
        near,
        timeline: Timeline {
            far_only_end: FAR_ONLY_S,
            double_talk_end: FAR_ONLY_S + DOUBLE_TALK_S,
        },
    })
}

/// Which stage is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// The engine's own.
    Chingu(ProcessingSettings),
    /// The C++ WebRTC audio processing of Debian's libwebrtc-audio-processing (0.3: the
    /// legacy AEC), through the `webrtc-audio-processing` crate: the comparison in
    /// decision 0011 (`--features webrtc-legacy`).
    #[cfg(feature = "webrtc-legacy")]
    WebrtcLegacy(ProcessingSettings),
}

impl Stage {
    fn settings(&self) -> ProcessingSettings {
        match *self {
            Stage::Chingu(s) => s,
            #[cfg(feature = "webrtc-legacy")]
            Stage::WebrtcLegacy(s) => s,
        }
    }

    fn make(&self, settings: ProcessingSettings) -> Box<dyn EchoStage> {
        match self {
            Stage::Chingu(_) => Box::new(ChinguStage::new(settings)),
            #[cfg(feature = "webrtc-legacy")]
            Stage::WebrtcLegacy(_) => Box::new(legacy::Legacy::new(settings)),
        }
    }
}

/// Runs one condition: a room with this echo delay, quiet and then noisy.
pub fn measure(talkers: &Talkers, delay: Duration, drift_ppm: f64, stage: Stage) -> AudioFigures {
    let room = RoomSettings {
        echo_delay: delay,
        drift_ppm,
        ..RoomSettings::default()
    };
    let settings = stage.settings();
    let run = |room: &RoomSettings, far: &[f32], settings: ProcessingSettings| {
        let scene = simulate(room, far, &talkers.near);
        let processed = drive(stage.make(settings).as_mut(), &scene, room.drift_ppm);
        (scene, processed)
    };
    let no_far = vec![0.0f32; talkers.far.len()];
    // The call through the whole stage: latency and CPU.
    let (quiet, processed) = run(&room, &talkers.far, settings);
    // The echo figures without the gain control, which lifts what is left of the echo
    // and the talker alike (by up to its initial 15 dB while it learns the talker's
    // level) and is not echo: the call, and the near talker alone in the same room
    // (what double talk is compared with).
    let echo_stage = ProcessingSettings {
        gain_control: false,
        ..settings
    };
    let (_, call) = run(&room, &talkers.far, echo_stage);
    let (_, reference) = run(&room, &no_far, echo_stage);
    let echo = echo_figures(&quiet, &call.out, &reference.out, &talkers.timeline);
    // The whole stage, against the near talker alone through the whole stage: what the
    // far end hears of the talker during double talk once the gain control acts.
    let (_, whole_reference) = run(&room, &no_far, settings);
    let whole = echo_figures(
        &quiet,
        &processed.out,
        &whole_reference.out,
        &talkers.timeline,
    );
    // The near talker in a noisy room with nothing played, through the whole stage.
    let noisy_room = RoomSettings {
        noise_snr_db: Some(NOISE_SNR_DB),
        ..room
    };
    let (noisy, noisy_out) = run(&noisy_room, &no_far, settings);
    let noise = noise_figures(&noisy, &noisy_out.out);
    let run = processed;

    let mut times: Vec<Duration> = run.frame_times.clone();
    times.sort();
    let busy: Duration = times.iter().sum();
    let audio = Duration::from_millis(20) * times.len() as u32;
    AudioFigures {
        condition: if drift_ppm == RoomSettings::default().drift_ppm {
            format!("echo {} ms", delay.as_millis())
        } else {
            format!("echo {} ms, drift {drift_ppm} ppm", delay.as_millis())
        },
        echo_delay_ms: delay.as_millis() as u64,
        rt60_ms: room.rt60.as_millis() as u64,
        drift_ppm: room.drift_ppm,
        noise_snr_db: NOISE_SNR_DB,
        erle_db: echo.erle_db,
        convergence_s: echo.convergence_s,
        residual_echo_dbfs: echo.residual_echo_dbfs,
        double_talk_near_end_db: echo.double_talk_near_end_db,
        noise_reduction_db: noise.noise_reduction_db,
        noise_level_change_db: noise.noise_level_change_db,
        double_talk_near_end_whole_stage_db: whole.double_talk_near_end_db,
        added_latency_ms: whole.added_latency_ms,
        cpu_pct_one_core: 100.0 * busy.as_secs_f64() / audio.as_secs_f64().max(1e-9),
        frame_p99_us: times
            .get(times.len() * 99 / 100)
            .map_or(0, |t| t.as_micros() as u64),
    }
}

/// The figures as a Markdown table (for docs/benchmarks.md).
pub fn markdown(rows: &[AudioFigures]) -> String {
    let f = |v: Option<f64>, digits: usize| v.map_or("–".into(), |v| format!("{v:.digits$}"));
    let mut out = String::from(
        "| condition | ERLE dB | converged s | residual echo dBFS | double talk near end dB \
         (whole stage) | noise reduction dB | added latency ms | CPU % of one core \
         | p99 per 20 ms µs |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} ({}) | {} | {} | {:.2} | {} |\n",
            r.condition,
            f(r.erle_db, 1),
            f(r.convergence_s, 2),
            f(r.residual_echo_dbfs, 1),
            f(r.double_talk_near_end_db, 1),
            f(r.double_talk_near_end_whole_stage_db, 1),
            f(r.noise_reduction_db, 1),
            f(r.added_latency_ms, 1),
            r.cpu_pct_one_core,
            r.frame_p99_us,
        ));
    }
    out
}

/// Writes `rows` as a table to `path`.
pub fn write_table(path: &Path, rows: &[AudioFigures]) -> anyhow::Result<()> {
    std::fs::write(path, markdown(rows)).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(fmt: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        out.extend_from_slice(fmt);
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn pcm_fmt(channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let mut f = 1u16.to_le_bytes().to_vec();
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * 2).to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    use chingu_media::echo_metrics::erle_between;
    use chingu_media::room::Scene;

    /// The room figures in generous bounds (the goals are in docs/benchmarks.md and
    /// measured by `cargo xtask bench`); the same room with the stage off shows what the
    /// bounds catch.
    #[test]
    fn in_a_room_the_stage_removes_echo_keeps_the_talker_and_reduces_noise() {
        let talkers = talkers().expect("espeak-ng (cargo xtask installs it)");
        let delay = Duration::from_millis(120);
        let on = measure(
            &talkers,
            delay,
            100.0,
            Stage::Chingu(ProcessingSettings::default()),
        );
        eprintln!("{on:?}");
        assert!(on.erle_db.unwrap() > 25.0, "{on:?}");
        assert!(on.convergence_s.unwrap() <= 4.0, "{on:?}");
        assert!(on.residual_echo_dbfs.unwrap() < -45.0, "{on:?}");
        assert!(on.double_talk_near_end_db.unwrap() > -10.0, "{on:?}");
        assert!(
            on.double_talk_near_end_whole_stage_db.unwrap() > -4.0,
            "{on:?}"
        );
        assert!(on.noise_reduction_db.unwrap() > 6.0, "{on:?}");
        assert!(on.added_latency_ms.unwrap() <= 30.0, "{on:?}");
        let off = measure(
            &talkers,
            delay,
            100.0,
            Stage::Chingu(ProcessingSettings::OFF),
        );
        assert!(off.erle_db.unwrap().abs() < 1.0, "{off:?}");
        assert_eq!(off.convergence_s, None, "{off:?}");
        assert!(off.noise_reduction_db.unwrap().abs() < 1.0, "{off:?}");
        assert_eq!(off.added_latency_ms, Some(0.0), "{off:?}");
    }

    /// The far end's speech with a gap: talking 0–6 s, silent 6–10 s, talking 10–16 s.
    fn far_with_a_gap(talkers: &Talkers) -> Vec<f32> {
        let rate = RATE as usize;
        let mut far = talkers.far[..6 * rate].to_vec();
        far.resize(10 * rate, 0.0);
        far.extend_from_slice(&talkers.far[4 * rate..10 * rate]);
        far
    }

    fn run(room: &RoomSettings, far: &[f32]) -> (Scene, Vec<i16>) {
        let near = vec![0.0; far.len()];
        let scene = simulate(room, far, &near);
        let mut stage = ChinguStage::new(ProcessingSettings::default());
        let out = drive(&mut stage, &scene, room.drift_ppm).out;
        (scene, out)
    }

    /// Four seconds of far-end silence (nobody talks) do not undo the convergence: the
    /// echo is cancelled from the first half second of speech after it.
    #[test]
    fn a_silent_far_end_does_not_undo_convergence() {
        let talkers = talkers().expect("espeak-ng");
        let far = far_with_a_gap(&talkers);
        let (scene, out) = run(&RoomSettings::default(), &far);
        let before = erle_between(&scene, &out, 3.0, 6.0).unwrap();
        let after = erle_between(&scene, &out, 10.0, 10.5).unwrap();
        eprintln!("ERLE {before:.1} dB before the silence, {after:.1} dB just after");
        assert!(
            before > 25.0 && after > 20.0,
            "{before:.1} dB, then {after:.1} dB"
        );
    }

    /// A microphone and a speaker on separate clocks 300 ppm apart (three times the
    /// room's usual drift; the frames, too, come at the two clocks' rates): the echo
    /// slides 5 ms over the 16 s and the canceller follows it. (Further apart it falls
    /// behind: ERLE 29 dB at 1,000 ppm, 20 dB at 2,000, in docs/benchmarks.md.)
    #[test]
    fn the_canceller_follows_a_drifting_echo() {
        let talkers = talkers().expect("espeak-ng");
        let far = far_with_a_gap(&talkers);
        let room = RoomSettings {
            drift_ppm: 300.0,
            ..RoomSettings::default()
        };
        let (scene, out) = run(&room, &far);
        let early = erle_between(&scene, &out, 2.0, 6.0).unwrap();
        let late = erle_between(&scene, &out, 12.0, 16.0).unwrap();
        eprintln!("ERLE {early:.1} dB at 2–6 s, {late:.1} dB at 12–16 s");
        assert!(
            early > 25.0 && late > 25.0,
            "{early:.1} dB, then {late:.1} dB"
        );
    }

    /// A new speaker or microphone mid-call (another echo delay and level, from 10 s):
    /// the canceller finds the new path within a few seconds.
    #[test]
    fn the_canceller_follows_a_changed_echo_path() {
        let talkers = talkers().expect("espeak-ng");
        let far = far_with_a_gap(&talkers);
        let first = RoomSettings::default();
        let second = RoomSettings {
            echo_delay: Duration::from_millis(200),
            echo_gain_db: -2.0,
            seed: 9,
            ..first
        };
        let near = vec![0.0; far.len()];
        let (a, b) = (
            simulate(&first, &far, &near),
            simulate(&second, &far, &near),
        );
        let cut = 10 * RATE as usize;
        let splice = |x: &[f32], y: &[f32]| [&x[..cut], &y[cut..]].concat();
        let scene = Scene {
            far: a.far.clone(),
            mic: [&a.mic[..cut], &b.mic[cut..]].concat(),
            echo: splice(&a.echo, &b.echo),
            near: a.near.clone(),
            noise: a.noise.clone(),
        };
        let mut stage = ChinguStage::new(ProcessingSettings::default());
        let out = drive(&mut stage, &scene, first.drift_ppm).out;
        let settled = erle_between(&scene, &out, 13.0, 16.0).unwrap();
        let at_once = erle_between(&scene, &out, 10.0, 11.0).unwrap();
        eprintln!(
            "ERLE {at_once:.1} dB in the first second on the new path, {settled:.1} dB 3 s on"
        );
        assert!(
            settled > 20.0,
            "{settled:.1} dB three seconds after the change"
        );
    }

    #[test]
    fn wav_files_are_read_and_bad_ones_refused() {
        let good = wav(&pcm_fmt(1, 22_050, 16), &[1, 0, 0xff, 0xff]);
        assert_eq!(read_wav(&good).unwrap(), (22_050, vec![1, -1]));
        for bad in [
            Vec::new(),
            b"RIFF0000WAVX".to_vec(),
            wav(&pcm_fmt(2, 22_050, 16), &[0; 4]),
            wav(&pcm_fmt(1, 22_050, 8), &[0; 4]),
            wav(&pcm_fmt(1, 0, 16), &[0; 4]),
            wav(&[1, 0], &[0; 4]),
            good[..good.len() - 2].to_vec(),
            b"RIFF\0\0\0\0WAVE".to_vec(),
        ] {
            assert!(read_wav(&bad).is_err(), "{bad:?}");
        }
    }
}
