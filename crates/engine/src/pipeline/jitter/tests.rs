use super::*;

/// Payloads of 3 bytes or more: not DTX frames.
fn p(x: u8) -> Bytes {
    Bytes::from(vec![x, 0, 0])
}

/// The timestamp of frame `n` (20 ms each).
fn ts(n: u16) -> u32 {
    u32::from(n) * 960
}

#[test]
fn a_copy_fills_a_loss_and_the_delay_grows_to_cover_the_copies() {
    let frame = Duration::from_millis(20);
    let t0 = Instant::now();
    let at = |n: u32| t0 + frame * n;
    let mut j = JitterBuffer::new();
    // A packet every 20 ms; playout starts 40 ms after the first.
    j.push(ts(1), p(1), at(1));
    j.push(ts(2), p(2), at(2));
    assert_eq!(j.pop(at(3)), Playout::Packet(p(1)));
    // Copies now come from two frames back: the target covers them.
    j.set_min_delay(MIN_DELAY + frame);
    assert_eq!(j.target_delay(), Duration::from_millis(60));
    j.push(ts(4), p(4), at(4));
    assert_eq!(j.pop(at(4)), Playout::Packet(p(2)));
    // 3 was lost; its copy comes with 5, just after 3 is due. The buffer holds less
    // than its target, so it waits a frame instead of moving on ...
    assert_eq!(j.pop(at(5)), Playout::Conceal);
    j.push(ts(5), p(5), at(5));
    j.push_copy(ts(3), p(3), at(5));
    // ... and plays the copy.
    assert_eq!(j.pop(at(6)), Playout::Packet(p(3)));
    j.push(ts(6), p(6), at(6));
    // A copy of a frame that came itself, and one of a frame already played: ignored.
    j.push_copy(ts(5), p(99), at(6));
    j.push_copy(ts(1), p(98), at(6));
    assert_eq!(j.pop(at(7)), Playout::Packet(p(4)));
    assert_eq!(j.pop(at(8)), Playout::Packet(p(5)));
    assert_eq!(
        (j.concealed, j.late),
        (1, 0),
        "unneeded copies are not late"
    );
}

#[test]
fn at_its_target_a_loss_is_skipped_not_waited_for() {
    let frame = Duration::from_millis(20);
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    // 40 ms target; 1, 2, 4, 5 arrive; 3 never does.
    let mut out = Vec::new();
    for seq in [1u16, 2, 4, 5, 6] {
        let t = t0 + frame * u32::from(seq);
        j.push(ts(seq), p(seq as u8), t);
        out.push(j.pop(t));
    }
    assert!(out.contains(&Playout::Fec(p(4))), "{out:?}");
    assert_eq!(j.concealed, 0);
}

#[test]
fn waits_the_target_delay_then_plays_in_order() {
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    j.push(ts(7), p(7), t0);
    assert_eq!(j.pop(t0), Playout::Waiting);
    j.push(ts(8), p(8), t0 + FRAME);
    assert_eq!(j.pop(t0 + MIN_DELAY), Playout::Packet(p(7)));
    assert_eq!(j.pop(t0 + MIN_DELAY + FRAME), Playout::Packet(p(8)));
}

#[test]
fn reorders_and_recovers_a_loss_with_fec() {
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    j.push(ts(1), p(1), t0);
    j.push(ts(3), p(3), t0 + FRAME);
    j.push(ts(2), p(2), t0 + FRAME);
    j.push(ts(5), p(5), t0 + FRAME * 2);
    let t = t0 + MIN_DELAY;
    assert_eq!(j.pop(t), Playout::Packet(p(1)));
    assert_eq!(j.pop(t + FRAME), Playout::Packet(p(2)));
    assert_eq!(j.pop(t + FRAME * 2), Playout::Packet(p(3)));
    assert_eq!(
        j.pop(t + FRAME * 3),
        Playout::Fec(p(5)),
        "4 lost, 5 carries its FEC"
    );
    assert_eq!(j.pop(t + FRAME * 4), Playout::Packet(p(5)));
    assert_eq!(j.pop(t + FRAME * 5), Playout::Conceal);
    assert_eq!(
        (j.fec_recovered, j.concealed),
        (1, 1),
        "FEC is not concealment"
    );
    // A packet for a slot already played is late.
    j.push(ts(4), p(4), t);
    assert_eq!(j.late, 1);
}

#[test]
fn long_silence_pauses_instead_of_concealing_forever() {
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    j.push(ts(1), p(1), t0);
    let mut t = t0 + MIN_DELAY;
    assert_eq!(j.pop(t), Playout::Packet(p(1)));
    let mut waiting = false;
    for _ in 0..40 {
        t += FRAME;
        waiting |= j.pop(t) == Playout::Waiting;
    }
    assert!(waiting);
    j.push(ts(100), p(100), t);
    assert_eq!(j.pop(t + MIN_DELAY), Playout::Packet(p(100)));
}

/// Plays `sent` (frame number, payload size, extra transit in ms beyond 5 ms), each
/// arriving in order at its frame time plus its transit, one pop per 20 ms tick;
/// returns each frame played with how long after it was sent it played, in ticks.
fn play(j: &mut JitterBuffer, sent: &[(u16, usize, u32)]) -> Vec<(u16, u32)> {
    let t0 = Instant::now();
    let arrival = |&(n, _, extra): &(u16, usize, u32)| {
        t0 + FRAME * u32::from(n) + Duration::from_millis(5 + u64::from(extra))
    };
    let last = sent.last().map_or(0, |s| u32::from(s.0)) + 40;
    let (mut pending, mut played) = (sent.iter().peekable(), Vec::new());
    for tick in 0..last {
        let now = t0 + FRAME * tick;
        while let Some(s) = pending.next_if(|s| arrival(s) <= now) {
            j.push(ts(s.0), Bytes::from(vec![s.0 as u8; s.1]), arrival(s));
        }
        if let Playout::Packet(b) = j.pop(now) {
            let n = sent.iter().find(|s| s.0 as u8 == b[0] && s.1 == b.len());
            let n = n.expect("a frame that was sent");
            let sent_at = t0 + FRAME * u32::from(n.0);
            played.push((n.0, (now - sent_at).as_millis() as u32 / 20));
            if played.len() == sent.len() {
                break;
            }
        }
    }
    played
}

#[test]
fn through_a_dtx_silence_comfort_noise_plays_and_the_next_talk_is_on_time() {
    // Talk (frames 0-9), a DTX frame (1 byte) and silence, a comfort noise update
    // at 30 and its DTX frame, silence, talk again from 50: as Opus DTX sends.
    let mut sent: Vec<(u16, usize, u32)> = (0..10).map(|n| (n, 80, 0)).collect();
    sent.extend([(10, 1, 0), (30, 6, 0), (31, 1, 0)]);
    sent.extend((50..60).map(|n| (n, 80, 0)));
    let mut j = JitterBuffer::new();
    let played = play(&mut j, &sent);
    let frames: Vec<u16> = played.iter().map(|p| p.0).collect();
    assert_eq!(frames, sent.iter().map(|s| s.0).collect::<Vec<_>>());
    let delay_before = played[0].1;
    assert!(
        played.iter().all(|p| p.1 == delay_before),
        "every frame at the delay it had: {played:?}"
    );
    assert_eq!((j.concealed, j.late), (0, 0), "silence is not loss");
    assert_eq!(j.comfort_noise, 19 + 18);
}

#[test]
fn a_talkspurt_later_than_the_clock_is_played_not_thrown_away() {
    // After a silence, talk resumes 60 ms later than the path took before (jitter):
    // the clock that ran on through the silence goes back to it.
    let mut sent: Vec<(u16, usize, u32)> = (0..10).map(|n| (n, 80, 0)).collect();
    sent.extend([(10, 1, 0)]);
    sent.extend((50..60).map(|n| (n, 80, 60)));
    let mut j = JitterBuffer::new();
    let played = play(&mut j, &sent);
    assert_eq!(played.len(), sent.len(), "{played:?}");
    assert_eq!((j.late, j.concealed), (0, 0));
    let delays = |range: std::ops::Range<u16>| -> Vec<u32> {
        let frames = played.iter().filter(|p| range.contains(&p.0));
        frames.map(|p| p.1).collect()
    };
    let (before, after) = (delays(0..10), delays(50..60));
    assert!(
        after.iter().all(|&d| d == after[0] && d > before[0]),
        "{played:?}"
    );
}

#[test]
fn a_sender_clock_that_jumps_ahead_restarts_playout() {
    // Frames 0-9, then the sender's timestamps jump 100 s ahead (it restarted).
    let mut j = JitterBuffer::new();
    let t0 = Instant::now();
    let mut played = 0;
    for n in 0..12u16 {
        let now = t0 + FRAME * u32::from(n);
        if n < 10 {
            j.push(ts(n), p(n as u8), now);
        }
        played += u32::from(matches!(j.pop(now), Playout::Packet(_)));
    }
    assert_eq!(played, 10);
    let jumped = |n: u16| ts(n).wrapping_add(48_000 * 100);
    let t = t0 + FRAME * 12;
    j.push(jumped(10), p(10), t);
    j.push(jumped(11), p(11), t + FRAME);
    assert_eq!(j.pop(t + MIN_DELAY), Playout::Packet(p(10)));
    assert_eq!(j.pop(t + MIN_DELAY + FRAME), Playout::Packet(p(11)));
}

#[test]
fn a_delay_that_grows_is_waited_out_not_thrown_away() {
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    // Packets every 20 ms; from packet 10 on a queue on the path holds each one
    // 10 ms longer than the one before, up to 100 ms (video filling a bottleneck).
    let arrival = |i: u16| {
        let extra = u64::from(i.saturating_sub(9).min(10)) * 10;
        t0 + FRAME * u32::from(i) + Duration::from_millis(extra)
    };
    let mut pushed = 0u16;
    let mut played = Vec::new();
    let mut t = t0;
    while played.len() < 40 {
        while pushed < 60 && arrival(pushed) <= t {
            j.push(ts(pushed), p(pushed as u8), arrival(pushed));
            pushed += 1;
        }
        match j.pop(t) {
            Playout::Packet(b) => played.push(Some(b[0])),
            Playout::Conceal => played.push(None),
            Playout::Waiting => {}
            Playout::Fec(_) | Playout::ComfortNoise => panic!("nothing was lost"),
        }
        t += FRAME;
    }
    let packets: Vec<u8> = played.iter().flatten().copied().collect();
    assert_eq!(
        packets,
        (0..packets.len() as u8).collect::<Vec<_>>(),
        "every packet played, in order: {played:?}"
    );
    assert_eq!(j.late, 0);
    assert_eq!(
        j.concealed, 3,
        "once, for the 100 ms the delay grew by less the 40 ms it already had"
    );
}

#[test]
fn without_a_queue_a_missing_packet_is_lost_not_waited_for() {
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    // On time every 20 ms, but 10, 11 and 12 never come.
    let mut t = t0;
    let mut played = Vec::new();
    for tick in 0..20u16 {
        if !(10..=12).contains(&tick) {
            j.push(ts(tick), p(tick as u8), t);
        }
        played.push(j.pop(t));
        t += FRAME;
    }
    let at = |seq: u8| played.iter().position(|x| *x == Playout::Packet(p(seq)));
    assert_eq!(at(13), at(9).map(|i| i + 4), "13 plays on time: {played:?}");
    assert_eq!((j.concealed, j.fec_recovered), (2, 1));
}

#[test]
fn a_burst_after_a_stall_is_trimmed_a_frame_at_a_time() {
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    j.push(ts(0), p(0), t0);
    assert_eq!(j.pop(t0 + MIN_DELAY), Playout::Packet(p(0)));
    // Twenty packets arrive at once, far more than the 40 ms target holds.
    let t = t0 + MIN_DELAY + FRAME;
    for i in 1..=20u16 {
        j.push(ts(i), p(i as u8), t);
    }
    let mut played = Vec::new();
    for tick in 0..20u32 {
        let before = j.discarded;
        if let Playout::Packet(b) = j.pop(t + FRAME * tick) {
            played.push(b[0]);
        }
        assert!(j.discarded - before <= 1, "one dropped per tick at most");
    }
    assert!(
        played.windows(2).all(|w| w[0] < w[1]),
        "in order: {played:?}"
    );
    // 20 held: each tick drops one and plays one until 7 (40 ms + 5 frames) are left.
    assert_eq!(j.discarded, 7);
    assert_eq!(played.len(), 13);
    assert_eq!(played.last(), Some(&20));
}

#[test]
fn jitter_raises_the_target_within_bounds() {
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    for i in 0..200u16 {
        // Arrivals alternate 0 and 40 ms late.
        let late = if i % 2 == 0 { 0 } else { 40 };
        j.push(
            ts(i),
            p(0),
            t0 + FRAME * u32::from(i) + Duration::from_millis(late),
        );
    }
    assert!(j.target_delay() > MIN_DELAY, "{:?}", j.target_delay());
    assert!(j.target_delay() <= MAX_DELAY);
}

/// Packets every 20 ms with 0–20 ms of jitter, `loss` % of them lost at random, each
/// carrying `copies` earlier frames (RED) from the 50th on, as a sender does once it
/// has heard of the loss; returns the share of frames concealed, %.
fn concealed_pct(loss: u32, copies: u16) -> f64 {
    let t0 = Instant::now();
    let mut j = JitterBuffer::new();
    let mut x = 0x2545_f491u32;
    let mut random = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let frames = 5000u32;
    let mut arrivals: Vec<(u64, u16)> = (0..frames)
        .filter_map(|seq| {
            let lost = random() % 100 < loss;
            let jitter_us = u64::from(random() % 20_000);
            (!lost).then_some((u64::from(seq) * 20_000 + 10_000 + jitter_us, seq as u16))
        })
        .collect();
    arrivals.sort_unstable();
    let mut arrivals = arrivals.into_iter().peekable();
    let (mut played, mut concealed) = (0u32, 0u32);
    for tick in 0..u64::from(frames) {
        let now_us = tick * 20_000;
        while let Some((at_us, seq)) = arrivals.next_if(|&(at, _)| at <= now_us) {
            let at = t0 + Duration::from_micros(at_us);
            let carried = if seq >= 50 { copies } else { 0 };
            for back in (1..=carried).filter(|&b| b <= seq) {
                j.push_copy(ts(seq - back), p(0), at);
            }
            if carried > 0 {
                j.set_min_delay(MIN_DELAY + FRAME * u32::from(carried - 1));
            }
            j.push(ts(seq), p(1), at);
        }
        match j.pop(t0 + Duration::from_micros(now_us)) {
            Playout::Waiting => {}
            Playout::Conceal => (played, concealed) = (played + 1, concealed + 1),
            _ => played += 1,
        }
    }
    f64::from(concealed) * 100.0 / f64::from(played)
}

#[test]
fn redundancy_keeps_audio_going_through_heavy_random_loss() {
    // Opus's own FEC alone: a frame is concealed when it and the next are lost.
    let alone = concealed_pct(40, 0);
    assert!((12.0..20.0).contains(&alone), "{alone}");
    // Three copies (the sender's choice above 25 % loss): the delay grows to cover
    // them, and a frame is lost only if four packets in a row are.
    let red = concealed_pct(40, 3);
    assert!(
        red < 3.0,
        "{red} % concealed with three copies at 40 % loss"
    );
    // And no loss, no concealment, whatever the copies.
    assert_eq!(concealed_pct(0, 2), 0.0);
}
