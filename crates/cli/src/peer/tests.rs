use super::*;

#[test]
fn delay_settles_when_it_stays_under_the_limit_for_the_hold() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let limit = ms(300);
    let mut p = Probe::default();
    // Late, under, late again, then under for good; a spike seconds later is
    // another event.
    for (at, late) in [(100, 400), (200, 250), (300, 350)] {
        p.latencies.push((t0 + ms(at), late * 1000));
    }
    for at in (400..=1600).step_by(100) {
        p.latencies.push((t0 + ms(at), 100_000));
    }
    p.latencies.push((t0 + ms(3000), 500_000));
    assert_eq!(
        p.settled(t0, t0 + ms(5000), limit, ms(1000)),
        Some(t0 + ms(400))
    );
    // Never late: settled from the start.
    assert_eq!(
        p.settled(t0 + ms(400), t0 + ms(1600), limit, ms(1000)),
        Some(t0 + ms(400))
    );
    // Late up to the end: never settled.
    assert_eq!(
        p.settled(t0 + ms(2000), t0 + ms(3000), limit, ms(1000)),
        None
    );
    // Under for less than the hold when the span ends: settled where that began.
    assert_eq!(
        p.settled(t0, t0 + ms(900), limit, ms(1000)),
        Some(t0 + ms(400))
    );
}

#[test]
fn a_barcode_that_says_minutes_ago_is_a_misread_and_left_out() {
    let probe = Arc::new(Mutex::new(Probe::default()));
    let sink = Probe::sink(&probe);
    let mut frame = chingu_media::I420Frame::new(640, 480).expect("frame");
    let now_us = chingu_media::frame::now_us();
    for (number, ago_us) in [(1, 20_000), (2, 100_000_000), (3, 30_000)] {
        barcode::write(
            &mut frame,
            barcode::Stamp::new(number, now_us.wrapping_sub(ago_us)),
        );
        let info = chingu_engine::pipeline::FrameInfo::captured(&frame);
        sink(&frame, &info);
    }
    let p = probe.lock().expect("probe");
    assert_eq!((p.frames, p.implausible), (3, 1));
    assert_eq!(p.latencies.len(), 2);
    assert!(p.latencies.iter().all(|&(_, us)| us < PLAUSIBLE_US));
    assert_eq!((p.last_frame_number, p.out_of_order), (Some(3), 0));
}

#[test]
fn the_longest_still_counts_the_wait_after_the_last_frame() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut p = Probe::default();
    for at in [0, 33, 66, 400, 433] {
        let now = t0 + ms(at);
        if let Some(gap) = p.last_shown.replace(now).map(|last| now - last) {
            p.gaps.push((now, gap));
        }
    }
    assert_eq!(p.longest_still(t0, t0 + ms(450)), ms(334));
    // From a window starting mid-wait, only its part in the window counts.
    assert_eq!(p.longest_still(t0 + ms(300), t0 + ms(450)), ms(100));
    // Nothing shown after 433: at 1,000 the picture has stood still 567 ms.
    assert_eq!(p.longest_still(t0, t0 + ms(1000)), ms(567));
}
