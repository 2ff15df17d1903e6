//! The scenario table `chingu-cli bench --table` writes (docs/benchmarks.md).

use super::{DirectionResult, Row};

/// A direction's video figures as the Markdown cells the tables share: decoded / sent,
/// freezes (frozen; the longest still picture), capture→render p50 / p95, kbit/s (estimate), last size.
pub fn video_cells(d: &DirectionResult) -> String {
    let ms = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
    format!(
        "{} / {} | {} ({:.1} s; {}) | {} / {} ms | {:.0} ({}) | {}x{}",
        d.frames_decoded,
        d.frames_sent,
        d.freeze_count,
        d.total_freezes_duration,
        d.longest_still_ms
            .map_or("–".to_owned(), |v| format!("{:.2} s", v / 1000.0)),
        ms(d.capture_to_render_ms.p50),
        ms(d.capture_to_render_ms.p95),
        d.video_kbps,
        d.estimate_kbps
            .map_or("–".to_owned(), |e| format!("{e:.0}")),
        d.frame_width,
        d.frame_height,
    )
}

/// The scenario table as Markdown (docs/benchmarks.md), one line per direction.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | connected | direction | decoded / sent | freezes (frozen; longest still) | capture→render p50 / p95 | video kbit/s (estimate) | last size | link kbit/s | audio concealed (discarded) | CPU, both ends |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        match row {
            Ok(r) => {
                let name = r.net.as_deref().unwrap_or("loopback");
                let carried = r.link_kbps.map(|c| [c.up, c.down]);
                for (i, (label, d)) in [("up (A→B)", &r.up), ("down (B→A)", &r.down)]
                    .into_iter()
                    .enumerate()
                {
                    let link = carried.map_or("–".to_owned(), |c| format!("{:.0}", c[i]));
                    out.push_str(&format!(
                        "| {name} | {} ms | {label} | {} | {link} | {:.1} % ({:.1} %) | {:.0} % |\n",
                        r.connected_ms,
                        video_cells(d),
                        d.audio_concealed_pct,
                        d.audio_discarded_pct,
                        r.cpu_pct_one_core,
                    ));
                }
            }
            Err((name, error)) => {
                out.push_str(&format!(
                    "| {name} | {} | | | | | | | | | |\n",
                    error.replace('|', "/").replace('\n', " ")
                ));
            }
        }
    }
    out
}
