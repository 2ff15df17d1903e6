//! Network scenarios by name or by description, for `chingu-cli bench --net`.
//!
//! A scenario is a comma-separated list: optionally a preset's name first, then
//! `key=value` settings for both directions, or for one with `up.` (from the peer that is
//! routed through the simulator) or `down.` (towards it):
//!
//! | key | value | example |
//! |---|---|---|
//! | `rate` | bits/s, or a schedule `R;R@T;…` | `1M`, `3M;500k@10s;3M@20s`, `off` |
//! | `queue` | the bottleneck's longest wait | `300ms` |
//! | `loss` | random loss | `20%`, `0.2` |
//! | `burst` | Gilbert–Elliott: enter/leave the lossy state, per packet | `2%/25%` |
//! | `delay` | one-way delay | `50ms` |
//! | `jitter` | each packet's delay varies by up to this either way | `30ms` |
//! | `reorder` | let jitter reorder packets | `yes` |
//! | `seed` | for every random choice (both directions) | `7` |

use std::str::FromStr;
use std::time::Duration;

use super::link::{GilbertElliott, LinkConfig, RateStep};

/// Both directions of a simulated path.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// From the routed peer.
    pub up: LinkConfig,
    /// Towards the routed peer.
    pub down: LinkConfig,
    pub seed: u64,
}

/// The presets the benchmark table runs, with what each stands for.
pub const PRESETS: &[(&str, &str, &str)] = &[
    ("clean", "", "no impairment (the simulator's own cost)"),
    ("loss5", "loss=5%", "5 % random loss each way"),
    ("loss20", "loss=20%", "20 % random loss each way"),
    ("loss40", "loss=40%", "40 % random loss each way"),
    (
        "burst",
        "burst=2%/25%",
        "bursty loss each way (Gilbert–Elliott, ~7 % in bursts of ~4 packets)",
    ),
    (
        "cap1m",
        "up.rate=1M",
        "the routed peer's uplink capped at 1 Mbit/s",
    ),
    (
        "cap500k",
        "up.rate=500k",
        "the routed peer's uplink capped at 500 kbit/s",
    ),
    (
        "step",
        "up.rate=3M;500k@10s;3M@20s",
        "uplink 3 Mbit/s, 500 kbit/s from 10 s, 3 Mbit/s again from 20 s",
    ),
    (
        "jitter",
        "delay=50ms,jitter=30ms",
        "100 ms round trip, each packet's delay ±30 ms",
    ),
    (
        "farloss",
        "delay=100ms,loss=10%",
        "200 ms round trip and 10 % random loss each way (a far, lossy path)",
    ),
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScenarioError {
    #[error("unknown scenario or setting {0:?} (presets: {1})")]
    Unknown(String, String),
    #[error("{key}: {value:?} is not {expected}")]
    Value {
        key: String,
        value: String,
        expected: &'static str,
    },
}

fn bad(key: &str, value: &str, expected: &'static str) -> ScenarioError {
    ScenarioError::Value {
        key: key.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

fn duration(key: &str, value: &str) -> Result<Duration, ScenarioError> {
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else {
        (value, 0.001)
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && (0.0..=3600.0).contains(&(n * scale)) => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(bad(key, value, "a duration like 50ms or 10s")),
    }
}

fn fraction(key: &str, value: &str) -> Result<f64, ScenarioError> {
    let parsed = match value.strip_suffix('%') {
        Some(n) => n.trim().parse::<f64>().map(|n| n / 100.0),
        None => value.trim().parse::<f64>(),
    };
    match parsed {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(bad(key, value, "a fraction like 20% or 0.2")),
    }
}

fn rate(key: &str, value: &str) -> Result<Option<u64>, ScenarioError> {
    if value == "off" {
        return Ok(None);
    }
    let (number, scale) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 1e3),
        Some(b'M' | b'm') => (&value[..value.len() - 1], 1e6),
        Some(b'G' | b'g') => (&value[..value.len() - 1], 1e9),
        _ => (value, 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n * scale >= 8_000.0 && n * scale <= 1e11 => {
            Ok(Some((n * scale) as u64))
        }
        _ => Err(bad(
            key,
            value,
            "a rate from 8k to 100G bit/s, like 1M or 500k",
        )),
    }
}

fn schedule(key: &str, value: &str) -> Result<Vec<RateStep>, ScenarioError> {
    let mut steps = Vec::new();
    for (i, part) in value.split(';').enumerate() {
        let (r, at) = match part.split_once('@') {
            Some((r, at)) => (r, duration(key, at)?),
            None if i == 0 => (part, Duration::ZERO),
            None => return Err(bad(key, value, "a schedule like 3M;500k@10s;3M@20s")),
        };
        if steps.last().is_some_and(|s: &RateStep| s.at >= at) {
            return Err(bad(key, value, "a schedule in time order"));
        }
        steps.push(RateStep {
            at,
            bps: rate(key, r)?,
        });
    }
    Ok(steps)
}

fn apply(link: &mut LinkConfig, key: &str, value: &str) -> Result<(), ScenarioError> {
    match key {
        "rate" => link.rate = schedule(key, value)?,
        "queue" => link.queue = duration(key, value)?,
        "loss" => link.loss = fraction(key, value)?,
        "burst" => {
            let (enter, leave) = value
                .split_once('/')
                .ok_or_else(|| bad(key, value, "enter/leave chances like 2%/25%"))?;
            let (enter, leave) = (fraction(key, enter)?, fraction(key, leave)?);
            if leave == 0.0 {
                return Err(bad(key, value, "a burst that ends (leave > 0)"));
            }
            link.burst = (enter > 0.0).then_some(GilbertElliott { enter, leave });
        }
        "delay" => link.delay = duration(key, value)?,
        "jitter" => link.jitter = duration(key, value)?,
        "reorder" => {
            link.reorder = match value {
                "yes" | "true" | "1" | "on" => true,
                "no" | "false" | "0" | "off" => false,
                _ => return Err(bad(key, value, "yes or no")),
            }
        }
        _ => return Err(ScenarioError::Unknown(key.to_owned(), preset_names())),
    }
    Ok(())
}

fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|(name, ..)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Scenario {
    type Err = ScenarioError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut scenario = Scenario {
            name: text.to_owned(),
            up: LinkConfig::default(),
            down: LinkConfig::default(),
            seed: 1,
        };
        let mut items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(first) = items.first()
            && !first.contains('=')
        {
            let Some((_, spec, _)) = PRESETS.iter().find(|(name, ..)| name == first) else {
                return Err(ScenarioError::Unknown((*first).to_owned(), preset_names()));
            };
            items.remove(0);
            let preset: Vec<&str> = spec.split(',').filter(|s| !s.is_empty()).collect();
            items.splice(0..0, preset);
        }
        for item in items {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ScenarioError::Unknown(item.to_owned(), preset_names()))?;
            let (key, value) = (key.trim(), value.trim());
            if key == "seed" {
                scenario.seed = value
                    .parse()
                    .map_err(|_| bad(key, value, "a whole number"))?;
            } else if let Some(key) = key.strip_prefix("up.") {
                apply(&mut scenario.up, key, value)?;
            } else if let Some(key) = key.strip_prefix("down.") {
                apply(&mut scenario.down, key, value)?;
            } else {
                apply(&mut scenario.up, key, value)?;
                apply(&mut scenario.down, key, value)?;
            }
        }
        Ok(scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses() {
        for (name, ..) in PRESETS {
            let s: Scenario = name.parse().unwrap();
            assert_eq!(s.name, *name);
        }
        let clean: Scenario = "clean".parse().unwrap();
        assert!(clean.up.is_clean() && clean.down.is_clean());
    }

    #[test]
    fn settings_apply_to_both_directions_or_one() {
        let s: Scenario = "loss=20%,up.rate=1M,down.delay=50ms,jitter=10,seed=9"
            .parse()
            .unwrap();
        assert_eq!((s.up.loss, s.down.loss), (0.2, 0.2));
        assert_eq!(s.up.rate_at(Duration::ZERO), Some(1_000_000));
        assert_eq!(s.down.rate_at(Duration::ZERO), None);
        assert_eq!(s.down.delay, Duration::from_millis(50));
        assert_eq!(s.up.delay, Duration::ZERO);
        assert_eq!(s.up.jitter, Duration::from_millis(10));
        assert_eq!(s.seed, 9);
    }

    #[test]
    fn a_preset_can_be_adjusted() {
        let s: Scenario = "step,seed=3,up.queue=100ms".parse().unwrap();
        assert_eq!(s.up.rate_at(Duration::from_secs(11)), Some(500_000));
        assert_eq!(s.up.rate_at(Duration::from_secs(21)), Some(3_000_000));
        assert_eq!(s.up.queue, Duration::from_millis(100));
        assert_eq!(s.seed, 3);
    }

    #[test]
    fn bursts_parse() {
        let s: Scenario = "burst=2%/25%".parse().unwrap();
        let ge = s.up.burst.unwrap();
        assert!((ge.enter - 0.02).abs() < 1e-9 && (ge.leave - 0.25).abs() < 1e-9);
    }

    #[test]
    fn nonsense_is_refused_with_a_clear_error() {
        for bad in [
            "wifi",
            "loss=120%",
            "loss=x",
            "rate=fast",
            "rate=3M;1M",
            "rate=1M@5s;2M@1s",
            "rate=1",
            "delay=-5ms",
            "delay=9999s",
            "burst=5%",
            "burst=5%/0",
            "reorder=maybe",
            "up.colour=red",
            "seed=-1",
            "nokey",
        ] {
            let err = bad.parse::<Scenario>().unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad}");
        }
    }
}
