//! The estimator's tests: deterministic feedback batches through modelled paths.

use super::*;
use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

/// Feedback for `seconds` of traffic sent at the estimator's own target, 20 packets
/// per 100 ms report, through a path of `capacity` bits/s that queues what it cannot
/// carry (a deep buffer) and loses `loss` of packets at random (every n-th).
fn drive(est: &mut Estimator, start: Instant, seconds: u64, capacity: f64, lose_every: u64) {
    drive_with(est, start, seconds, |_| capacity, lose_every);
}

/// As [`drive`], with the capacity a function of the time into the run (s).
fn drive_with(
    est: &mut Estimator,
    start: Instant,
    seconds: u64,
    capacity: impl Fn(f64) -> f64,
    lose_every: u64,
) {
    let mut id = 0u64;
    let mut path_free = Duration::ZERO; // when the bottleneck is next idle, from start
    for report in 0..seconds * 10 {
        let t0 = Duration::from_millis(report * 100);
        let size = (est.target_bitrate() / 8.0 / 200.0).max(100.0) as usize; // 20 per 100 ms
        let mut batch = Vec::new();
        for i in 0..20u64 {
            let sent = t0 + Duration::from_millis(i * 5);
            let begin = path_free.max(sent);
            let capacity = capacity(sent.as_secs_f64());
            path_free = begin + Duration::from_secs_f64(size as f64 * 8.0 / capacity);
            id += 1;
            let arrived = lose_every == 0 || !id.is_multiple_of(lose_every);
            if !arrived {
                est.coverage().mark_lost(id as u16);
            }
            batch.push(PacketReport {
                ssrc: 1,
                id,
                rtp_sequence_number: id as u16,
                is_twcc: true,
                twcc_sequence_number: id as u16,
                size,
                arrived,
                departure: start + sent,
                arrival: arrived.then_some(path_free + Duration::from_millis(20)),
                ecn: Ecn::default(),
            });
        }
        est.on_reports(start + t0 + Duration::from_millis(100), &batch);
    }
}

#[test]
fn on_an_open_path_it_climbs_fast_to_the_ceiling() {
    let shared = Arc::new(Bandwidth::default());
    let mut est = Estimator::new(INITIAL_BPS, 2_500_000.0, Arc::clone(&shared));
    drive(&mut est, Instant::now(), 5, 100e6, 0);
    assert_eq!(est.target_bitrate(), 2_500_000.0);
    assert_eq!(shared.target_bps.load(Relaxed), 2_500_000);
}

#[test]
fn under_a_cap_it_settles_below_the_cap() {
    let shared = Arc::new(Bandwidth::default());
    let mut est = Estimator::new(INITIAL_BPS, 2_500_000.0, shared);
    drive(&mut est, Instant::now(), 30, 1_000_000.0, 0);
    let target = est.target_bitrate();
    assert!((300_000.0..=1_000_000.0).contains(&target), "{target}");
}

#[test]
fn severe_loss_brings_the_rate_down_to_its_floor_but_no_further() {
    let shared = Arc::new(Bandwidth::default());
    let mut est = Estimator::new(1_000_000.0, 2_500_000.0, shared);
    // 50 % loss (every second packet) for 30 s.
    drive(&mut est, Instant::now(), 30, 100e6, 2);
    assert_eq!(est.target_bitrate(), SEVERE_LOSS_FLOOR);
}

#[test]
fn after_a_cap_is_lifted_the_rate_climbs_back_within_seconds() {
    let shared = Arc::new(Bandwidth::default());
    let mut est = Estimator::new(INITIAL_BPS, 2_500_000.0, shared);
    let capped = |t: f64| if t < 20.0 { 300_000.0 } else { 100e6 };
    drive_with(&mut est, Instant::now(), 20, capped, 0);
    assert!(est.target_bitrate() < 400_000.0, "{}", est.target_bitrate());
    let mut est2 = Estimator::new(INITIAL_BPS, 2_500_000.0, Arc::new(Bandwidth::default()));
    drive_with(&mut est2, Instant::now(), 28, capped, 0);
    assert!(
        est2.target_bitrate() > 1_000_000.0,
        "{}",
        est2.target_bitrate()
    );
}

#[test]
fn random_loss_without_a_queue_holds_the_rate_instead_of_cutting_it() {
    let shared = Arc::new(Bandwidth::default());
    let mut est = Estimator::new(1_000_000.0, 2_500_000.0, Arc::clone(&shared));
    // 20 % loss from the start: no ramp, no collapse.
    drive(&mut est, Instant::now(), 20, 100e6, 5);
    assert_eq!(est.target_bitrate(), 1_000_000.0);
    let loss = shared.loss_permille.load(Relaxed);
    assert!((150..=250).contains(&loss), "{loss}");
}

/// Feeds 100 ms batches of 20 packets sent 5 ms apart, each arriving after 50 ms plus
/// up to ±30 ms of jitter (a fixed pseudo-random sequence), in order or not, and
/// returns the published queue (ms) and bottleneck after each batch.
fn under_jitter(seconds: u64, in_order: bool) -> Vec<(u32, bool)> {
    let shared = Arc::new(Bandwidth::default());
    let mut est = Estimator::new(INITIAL_BPS, 2_500_000.0, Arc::clone(&shared));
    let start = Instant::now();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut jitter = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 61) as f64 - 30.0
    };
    let mut published = Vec::new();
    let mut id = 0u64;
    let mut latest = Duration::ZERO;
    for report in 0..seconds * 10 {
        let t0 = Duration::from_millis(report * 100);
        let batch: Vec<PacketReport> = (0..20u64)
            .map(|i| {
                let sent = t0 + Duration::from_millis(i * 5);
                let mut arrival = sent + Duration::from_secs_f64((50.0 + jitter()) / 1000.0);
                if in_order {
                    arrival = arrival.max(latest);
                    latest = arrival;
                }
                id += 1;
                PacketReport {
                    ssrc: 1,
                    id,
                    rtp_sequence_number: id as u16,
                    is_twcc: true,
                    twcc_sequence_number: id as u16,
                    size: 1000,
                    arrived: true,
                    departure: start + sent,
                    arrival: Some(arrival),
                    ecn: Ecn::default(),
                }
            })
            .collect();
        est.on_reports(start + t0 + Duration::from_millis(100), &batch);
        published.push((
            shared.queue_delay_ms.load(Relaxed),
            shared.bottleneck.load(Relaxed),
        ));
    }
    published
}

#[test]
fn jitter_is_not_taken_for_a_narrow_link() {
    // Jitter that keeps packets in order (a queue in a Wi-Fi access point or a modem)
    // and jitter of each packet its own (reordering): the mean delay sits ~30 ms above
    // the least, a queue by that measure, but neither is a narrow link.
    for in_order in [true, false] {
        let published = under_jitter(5, in_order);
        assert!(
            published[10..].iter().any(|(q, _)| *q >= 20),
            "{published:?}"
        );
        assert!(
            published.iter().all(|(_, b)| !b),
            "{in_order} {published:?}"
        );
    }
}

/// Reports of `count` packets of 1,200 bytes sent `every` apart through a link of
/// `rate` bits/s (a queue, no loss).
fn through(count: u64, every: Duration, rate: f64) -> Vec<PacketReport> {
    let start = Instant::now();
    let mut free = Duration::ZERO;
    (0..count)
        .map(|i| {
            let sent = every * i as u32;
            free = free.max(sent) + Duration::from_secs_f64(1200.0 * 8.0 / rate);
            PacketReport {
                ssrc: 1,
                id: i,
                rtp_sequence_number: i as u16,
                is_twcc: true,
                twcc_sequence_number: i as u16,
                size: 1200,
                arrived: true,
                departure: start + sent,
                arrival: Some(free + Duration::from_millis(20)),
                ecn: Ecn::default(),
            }
        })
        .collect()
}

#[test]
fn a_link_narrower_than_our_pace_spreads_pairs_out() {
    let ms = Duration::from_millis;
    // A frame paced at 2 Mbit/s (4.8 ms apart) into 1 Mbit/s (9.6 ms each): dilated.
    assert_eq!(
        dilated(&through(10, Duration::from_micros(4800), 1e6)),
        Some(true)
    );
    // The same into 10 Mbit/s: not.
    assert_eq!(
        dilated(&through(10, Duration::from_micros(4800), 10e6)),
        Some(false)
    );
    // Packets too far apart to pair (audio every 20 ms), or too few: nothing said.
    assert_eq!(dilated(&through(10, ms(20), 1e6)), None);
    assert_eq!(dilated(&through(3, ms(1), 1e6)), None);
}

/// 20 s of an open path at the estimator's target, where the feedback on every third
/// 100 ms batch is lost: its packets reach the estimator with the next batch, as not
/// arrived. Returns the final target and the published loss (‰). `named` says whether
/// the peer named them lost (they were) or no feedback covered them (they arrived).
fn with_every_third_feedback_lost(named: bool) -> (f64, u32) {
    let shared = Arc::new(Bandwidth::default());
    let mut est = Estimator::new(INITIAL_BPS, 2_500_000.0, Arc::clone(&shared));
    let start = Instant::now();
    let mut unreported: Vec<PacketReport> = Vec::new();
    let mut id = 0u64;
    for batch in 0..200u64 {
        let t0 = Duration::from_millis(batch * 100);
        let size = (est.target_bitrate() / 8.0 / 200.0).max(100.0) as usize;
        let mut reports = std::mem::take(&mut unreported);
        let mut fresh = Vec::new();
        for i in 0..20u64 {
            id += 1;
            let sent = t0 + Duration::from_millis(i * 5);
            fresh.push(PacketReport {
                ssrc: 1,
                id,
                rtp_sequence_number: id as u16,
                is_twcc: true,
                twcc_sequence_number: id as u16,
                size,
                arrived: true,
                departure: start + sent,
                arrival: Some(sent + Duration::from_millis(20)),
                ecn: Ecn::default(),
            });
        }
        if batch % 3 == 1 {
            for report in &mut fresh {
                report.arrived = false;
                report.arrival = None;
            }
            unreported = fresh;
            continue;
        }
        for report in &reports {
            if named {
                est.coverage().mark_lost(report.twcc_sequence_number);
            }
        }
        reports.extend(fresh);
        est.on_reports(start + t0 + Duration::from_millis(100), &reports);
    }
    (est.target_bitrate(), shared.loss_permille.load(Relaxed))
}

#[test]
fn packets_whose_feedback_was_lost_are_not_counted_lost() {
    let (target, loss) = with_every_third_feedback_lost(false);
    assert_eq!(loss, 0);
    assert_eq!(target, 2_500_000.0, "an open path is used in full");
    // The same packets, named lost by the peer: a third of them, and the rate holds.
    let (target, loss) = with_every_third_feedback_lost(true);
    assert!((150..=450).contains(&loss), "{loss}");
    assert!(target < 1_000_000.0, "{target}");
}

#[test]
fn right_after_a_drop_the_recent_rate_is_the_new_one() {
    // 1,200-byte packets: one second at 1 Mbit/s (one per 9.6 ms), then 300 ms at
    // 500 kbit/s (one per 19.2 ms).
    let mut rate = DeliveryRate::default();
    let mut at = 0.0;
    while at < 1000.0 {
        rate.add(at, 1200);
        at += 9.6;
    }
    while at < 1300.0 {
        rate.add(at, 1200);
        at += 19.2;
    }
    let second = rate.rate().expect("a second of arrivals");
    let recent = rate
        .recent_rate(SATURATED_WINDOW_MS)
        .expect("300 ms of arrivals");
    assert!(second > 700_000.0, "{second}");
    assert!((450_000.0..=550_000.0).contains(&recent), "{recent}");
    // Too short a span says nothing.
    let mut few = DeliveryRate::default();
    few.add(0.0, 1200);
    few.add(50.0, 1200);
    assert_eq!(few.recent_rate(SATURATED_WINDOW_MS), None);
}
