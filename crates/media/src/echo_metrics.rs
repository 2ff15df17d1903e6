//! What the processing stage did to each part of a [`crate::room::Scene`]: how much echo
//! it removed, how fast, what it did to a near talker during double talk, how much
//! noise it took away and how late its output is. Measured on 10 ms frames of the
//! microphone's clock; definitions in docs/benchmarks.md ("Audio processing").

use crate::processing::BLOCK;
use crate::room::Scene;

/// A frame counts as speech (or echo) when louder than this.
pub const ACTIVE_DBFS: f64 = -55.0;
/// ERLE windows for the convergence time (250 ms).
pub const WINDOW_FRAMES: usize = 25;
/// Echo reduced by this much (99 % of its power) counts as converged.
pub const CONVERGED_DB: f64 = 20.0;
/// What a frame of digital silence reads as in the ERLE (-100 dBFS): a stage that
/// outputs exact zeros scores at most ~100 dB instead of infinity.
const FLOOR: f64 = 32768.0 * 32768.0 * 1e-10 * BLOCK as f64;

fn frame_energy<T: Copy + Into<f64>>(s: &[T], frame: usize) -> f64 {
    s.get(frame * BLOCK..(frame + 1) * BLOCK)
        .map_or(0.0, |f| f.iter().map(|&x| x.into().powi(2)).sum())
}

fn active(energy: f64) -> bool {
    energy / BLOCK as f64 > (32768.0 * 10f64.powf(ACTIVE_DBFS / 20.0)).powi(2)
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

/// Where the parts of a scene's timeline are, in seconds of the microphone's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    /// The far end talks alone from the start until here.
    pub far_only_end: f64,
    /// Both talk from `far_only_end` until here; then the near end alone to the end.
    pub double_talk_end: f64,
}

/// The figures for one run of a scene through the stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EchoFigures {
    /// Echo reduction over the far-only part from 2 s after the far end starts.
    pub erle_db: Option<f64>,
    /// From the far end's first speech until every later 250 ms window of the far-only
    /// part has its echo reduced by at least [`CONVERGED_DB`].
    pub convergence_s: Option<f64>,
    /// The output's level while only the far end talks, after those 2 s (dBFS).
    pub residual_echo_dbfs: Option<f64>,
    /// The output's level during double talk relative to the same stage's output for
    /// the near talker alone, dB (0: the talker untouched by the echo canceller;
    /// negative: cut; residual echo counts as positive).
    pub double_talk_near_end_db: Option<f64>,
    /// How late the output is against the microphone (near talker alone), ms.
    pub added_latency_ms: Option<f64>,
}

/// The gain of `out` (shifted `lag` samples later) projected on `part`, over `frames`.
fn projection_gain(out: &[i16], part: &[f32], lag: usize, frames: &[usize]) -> Option<f64> {
    let (mut cross, mut energy) = (0.0, 0.0);
    for &f in frames {
        for i in f * BLOCK..(f + 1) * BLOCK {
            let (Some(&o), Some(&p)) = (out.get(i + lag), part.get(i)) else {
                continue;
            };
            cross += f64::from(o) * f64::from(p);
            energy += f64::from(p) * f64::from(p);
        }
    }
    (energy > 0.0).then(|| cross / energy)
}

/// The lag (0–60 ms) at which `out` best matches `part` over `frames`, in samples.
fn best_lag(out: &[i16], part: &[f32], frames: &[usize]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    // Every 8th frame is plenty to find a peak; the search is per sample.
    let sampled: Vec<usize> = frames.iter().copied().step_by(8).collect();
    for lag in 0..=60 * BLOCK / 10 {
        let Some(g) = projection_gain(out, part, lag, &sampled) else {
            continue;
        };
        if best.is_none_or(|(_, b)| g > b) {
            best = Some((lag, g));
        }
    }
    best.map(|(lag, _)| lag)
}

/// The echo reduction between `from` and `to` seconds, over the frames with echo and no
/// near talker; `None` if there are none.
pub fn erle_between(scene: &Scene, out: &[i16], from: f64, to: f64) -> Option<f64> {
    let frames = scene.mic.len().min(out.len()) / BLOCK;
    let (from, to) = (
        ((from * 100.0) as usize).min(frames),
        ((to * 100.0) as usize).min(frames),
    );
    let (mut echo, mut left, mut n) = (0.0, 0.0, 0);
    for f in from..to {
        if active(frame_energy(&scene.echo, f)) && !active(frame_energy(&scene.near, f)) {
            echo += frame_energy(&scene.mic, f);
            left += frame_energy(out, f) + FLOOR;
            n += 1;
        }
    }
    (n > 0).then(|| db(echo / left))
}

/// Measures a run that had no background noise (`scene.noise` silent).
///
/// `reference` is the output of a fresh stage given the same scene without the far end
/// (the near talker alone): the double-talk figure compares the near talker's frames
/// with it, so what the gain control and the noise suppressor do to the talker either
/// way cancels out.
pub fn echo_figures(
    scene: &Scene,
    out: &[i16],
    reference: &[i16],
    timeline: &Timeline,
) -> EchoFigures {
    let frames = scene.mic.len().min(out.len()) / BLOCK;
    let at = |s: f64| ((s * 100.0) as usize).min(frames);
    let (far_end, dt_end) = (at(timeline.far_only_end), at(timeline.double_talk_end));
    let echo_on: Vec<bool> = (0..frames)
        .map(|f| active(frame_energy(&scene.echo, f)))
        .collect();
    let near_on: Vec<bool> = (0..frames)
        .map(|f| active(frame_energy(&scene.near, f)))
        .collect();
    let mut figures = EchoFigures::default();

    // Echo alone.
    if let Some(first) = (0..far_end).find(|&f| echo_on[f] && !near_on[f]) {
        let settled = (first + 200).min(far_end);
        let (mut echo, mut left, mut n) = (0.0, 0.0, 0usize);
        for f in (settled..far_end).filter(|&f| echo_on[f] && !near_on[f]) {
            echo += frame_energy(&scene.mic, f);
            left += frame_energy(out, f) + FLOOR;
            n += 1;
        }
        if n > 0 {
            figures.erle_db = Some(db(echo / left));
            let rms = (left / (n * BLOCK) as f64).sqrt() / 32768.0;
            figures.residual_echo_dbfs = Some(20.0 * rms.log10());
        }
        // Windowed ERLE; converged from the first window after which none is below.
        let windows: Vec<(usize, f64)> = (first..far_end)
            .step_by(WINDOW_FRAMES)
            .filter_map(|w| {
                let (mut echo, mut left, mut n) = (0.0, 0.0, 0);
                for f in (w..(w + WINDOW_FRAMES).min(far_end)).filter(|&f| echo_on[f]) {
                    echo += frame_energy(&scene.mic, f);
                    left += frame_energy(out, f) + FLOOR;
                    n += 1;
                }
                (n >= WINDOW_FRAMES / 5).then(|| (w, db(echo / left)))
            })
            .collect();
        let converged = (!windows.is_empty())
            .then(|| windows.iter().rposition(|&(_, erle)| erle < CONVERGED_DB))
            .and_then(|last_bad| match last_bad {
                None => Some(0),
                Some(i) => (i + 1 < windows.len()).then_some(i + 1),
            });
        figures.convergence_s = converged.map(|i| (windows[i].0 - first) as f64 / 100.0);
    }

    // The near talker alone: the output's lag; both talking: the talker's level.
    let alone: Vec<usize> = (dt_end..frames)
        .filter(|&f| near_on[f] && !echo_on[f])
        .collect();
    let lag = best_lag(out, &scene.near, &alone);
    figures.added_latency_ms = lag.map(|l| l as f64 * 10.0 / BLOCK as f64);
    let together: Vec<usize> = (far_end..dt_end)
        .filter(|&f| near_on[f] && echo_on[f])
        .collect();
    let energy = |s: &[i16]| -> f64 { together.iter().map(|&f| frame_energy(s, f)).sum() };
    let (with_echo, alone_out) = (energy(out), energy(reference));
    if !together.is_empty() && alone_out > 0.0 {
        figures.double_talk_near_end_db = Some(db((with_echo + FLOOR) / alone_out));
    }
    figures
}

/// The noise figures of a run with background noise and no far end: the noise alone
/// until the near talker starts, then the talker over it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NoiseFigures {
    /// How much the signal-to-noise ratio improved, dB: the talker's level change minus
    /// the noise's (so the gain control's level changes cancel out).
    pub noise_reduction_db: Option<f64>,
    /// The noise's own level change, dB (gain control included), from 2 s after the
    /// start (the suppressor has learnt the noise) until the talker starts.
    pub noise_level_change_db: Option<f64>,
}

pub fn noise_figures(scene: &Scene, out: &[i16]) -> NoiseFigures {
    let frames = scene.mic.len().min(out.len()) / BLOCK;
    let near_on: Vec<bool> = (0..frames)
        .map(|f| active(frame_energy(&scene.near, f)))
        .collect();
    let Some(first_talk) = near_on.iter().position(|&on| on) else {
        return NoiseFigures::default();
    };
    let noise: Vec<usize> = (200..first_talk).collect();
    let talk: Vec<usize> = (first_talk..frames).filter(|&f| near_on[f]).collect();
    let sum = |frames: &[usize], s: &dyn Fn(usize) -> f64| -> f64 {
        frames.iter().map(|&i| s(i)).sum::<f64>() / frames.len().max(1) as f64
    };
    let noise_in = sum(&noise, &|f| frame_energy(&scene.noise, f));
    let noise_out = sum(&noise, &|f| frame_energy(out, f));
    if noise.is_empty() || noise_in <= 0.0 {
        return NoiseFigures::default();
    }
    let noise_change = db((noise_out + FLOOR) / noise_in);
    let mut figures = NoiseFigures {
        noise_level_change_db: Some(noise_change),
        ..NoiseFigures::default()
    };
    // The talker's level out: what its frames carry beyond the noise left.
    let lag = best_lag(out, &scene.near, &talk).unwrap_or(0);
    let talk_out = sum(&talk, &|f| {
        (f * BLOCK..(f + 1) * BLOCK)
            .filter_map(|i| out.get(i + lag))
            .map(|&o| f64::from(o) * f64::from(o))
            .sum::<f64>()
    });
    let speech_in = sum(&talk, &|f| frame_energy(&scene.near, f));
    if !talk.is_empty() && speech_in > 0.0 {
        let speech_out = (talk_out - noise_out).max(0.0) + FLOOR;
        figures.noise_reduction_db = Some(db(speech_out / speech_in) - noise_change);
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst(len: usize, from: usize, to: usize, amp: f32, seed: u32) -> Vec<f32> {
        let mut x = seed;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if (from..to).contains(&i) && (i / 4800) % 3 != 2 {
                    amp * ((x >> 16) as f32 / 32768.0 - 1.0)
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn scene(len: usize) -> (Scene, Timeline) {
        let echo = burst(len, 0, 48_000 * 6, 3000.0, 1);
        let near = burst(len, 48_000 * 4, len, 3000.0, 2);
        let mic = echo
            .iter()
            .zip(&near)
            .map(|(e, n)| (e + n).round() as i16)
            .collect();
        let noise = vec![0.0; len];
        let timeline = Timeline {
            far_only_end: 4.0,
            double_talk_end: 6.0,
        };
        (
            Scene {
                far: Vec::new(),
                mic,
                echo,
                near,
                noise,
            },
            timeline,
        )
    }

    #[test]
    fn a_perfect_canceller_is_measured_as_one() {
        let len = 48_000 * 9;
        let (scene, timeline) = scene(len);
        // Output: the near talker only, 5 ms late, halved during double talk.
        let lag = 240;
        let out: Vec<i16> = (0..len)
            .map(|i| {
                let Some(src) = i.checked_sub(lag) else {
                    return 0;
                };
                let halve = (4 * 48_000..6 * 48_000).contains(&src);
                (scene.near[src] * if halve { 0.5 } else { 1.0 }).round() as i16
            })
            .collect();
        let reference: Vec<i16> = (0..len)
            .map(|i| {
                i.checked_sub(lag)
                    .map_or(0, |src| scene.near[src].round() as i16)
            })
            .collect();
        let f = echo_figures(&scene, &out, &reference, &timeline);
        assert!(f.erle_db.unwrap() > 60.0, "{f:?}");
        assert_eq!(f.convergence_s, Some(0.0));
        assert_eq!(f.added_latency_ms, Some(5.0));
        let dt = f.double_talk_near_end_db.unwrap();
        assert!((dt + 6.02).abs() < 0.2, "{dt}");
    }

    #[test]
    fn no_canceller_has_no_erle_and_never_converges() {
        let (scene, timeline) = scene(48_000 * 9);
        let reference: Vec<i16> = scene.near.iter().map(|&n| n.round() as i16).collect();
        let f = echo_figures(&scene, &scene.mic, &reference, &timeline);
        assert!(f.erle_db.unwrap().abs() < 0.1, "{f:?}");
        assert_eq!(f.convergence_s, None);
        assert_eq!(f.added_latency_ms, Some(0.0));
        // The echo left in reads as the talker louder: same level, +3 dB.
        let dt = f.double_talk_near_end_db.unwrap();
        assert!((dt - 3.0).abs() < 0.5, "{dt}");
    }

    #[test]
    fn noise_reduction_is_the_snr_gained() {
        let len = 48_000 * 9;
        let (mut scene, _) = scene(len);
        scene.echo = vec![0.0; len];
        let mut x = 7u32;
        scene.noise = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                300.0 * ((x >> 16) as f32 / 32768.0 - 1.0)
            })
            .collect();
        // Output: near talker intact, noise cut to a tenth (-20 dB).
        let out: Vec<i16> = (0..len)
            .map(|i| (scene.near[i] + scene.noise[i] * 0.1).round() as i16)
            .collect();
        scene.mic = (0..len)
            .map(|i| (scene.near[i] + scene.noise[i]).round() as i16)
            .collect();
        let f = noise_figures(&scene, &out);
        let nr = f.noise_reduction_db.unwrap();
        assert!((nr - 20.0).abs() < 1.0, "{f:?}");
        assert!(
            (f.noise_level_change_db.unwrap() + 20.0).abs() < 0.1,
            "{f:?}"
        );
        // The same with the gain control doubling everything: the SNR gain is the same.
        let louder: Vec<i16> = out.iter().map(|&o| o.saturating_mul(2)).collect();
        let f2 = noise_figures(&scene, &louder);
        assert!((f2.noise_reduction_db.unwrap() - nr).abs() < 0.5, "{f2:?}");
        // Nothing to measure without a talker or noise.
        let empty = noise_figures(&Scene::default(), &[]);
        assert_eq!(empty, NoiseFigures::default());
    }
}
