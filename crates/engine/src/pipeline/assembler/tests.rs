use super::*;

fn b(x: u8) -> Bytes {
    Bytes::from(vec![x])
}

/// A small seeded pseudo-random sequence for the tests.
fn xorshift(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

#[test]
fn in_order_frames_come_out_on_the_marker() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    let mut lost = false;
    a.push(10, 100, false, b(1), now);
    assert_eq!(a.pop(now, &mut lost), None);
    a.push(11, 100, true, b(2), now);
    let f = a.pop(now, &mut lost).expect("frame");
    assert_eq!((f.timestamp, f.payloads), (100, vec![b(1), b(2)]));
    a.push(12, 200, true, b(3), now);
    assert_eq!(a.pop(now, &mut lost).unwrap().timestamp, 200);
    assert!(!lost);
}

#[test]
fn after_a_loss_a_frame_whose_start_is_missing_is_never_released() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    let mut lost = false;
    // Frame 100: packet 2 (its end) lost. Frame 200: packet 3 (its start) lost.
    // Frame 300: whole.
    a.push(1, 100, false, b(1), now);
    a.push(4, 200, false, b(4), now);
    a.push(5, 200, true, b(5), now);
    a.push(6, 300, true, b(6), now);
    let later = now + FRAME_WAIT;
    let f = a.pop(later, &mut lost).expect("frame 300");
    assert!(lost);
    assert_eq!(
        (f.timestamp, f.payloads),
        (300, vec![b(6)]),
        "frame 200 lacks its first packet"
    );
    assert_eq!(a.frames_lost, 2);
}

#[test]
fn a_frame_lost_whole_costs_only_itself_when_the_next_packet_is_known_to_start_one() {
    let now = Instant::now();
    let later = now + FRAME_WAIT;
    let mut lost = false;
    // One packet per frame; frame 200 (packet 2) lost whole.
    let mut knowing = FrameAssembler::new();
    knowing.push_packet(1, 100, true, true, b(1), now);
    knowing.push_packet(3, 300, true, true, b(3), now);
    knowing.push_packet(4, 400, true, true, b(4), now);
    assert_eq!(
        knowing.pop(now, &mut lost).expect("frame 100").timestamp,
        100
    );
    assert_eq!(
        knowing.pop(now, &mut lost),
        None,
        "waits for a repair first"
    );
    let out: Vec<u32> = std::iter::from_fn(|| knowing.pop(later, &mut lost))
        .map(|f| f.timestamp)
        .collect();
    assert_eq!(out, [300, 400]);
    assert!(lost);
    assert_eq!(knowing.frames_lost, 1);
    // Not knowing where frames start, packet 3 might be the rest of frame 200: it is
    // given up too.
    let mut blind = FrameAssembler::new();
    for (seq, ts) in [(1, 100), (3, 300), (4, 400)] {
        blind.push(seq, ts, true, b(seq as u8), now);
    }
    let out: Vec<u32> = std::iter::from_fn(|| blind.pop(later, &mut lost))
        .map(|f| f.timestamp)
        .collect();
    assert_eq!(out, [100, 400]);
    // A frame whose start is held but whose middle is lost is still given up whole.
    let mut a = FrameAssembler::new();
    a.push_packet(1, 100, false, true, b(1), now);
    a.push_packet(3, 100, true, false, b(3), now);
    a.push_packet(4, 200, true, true, b(4), now);
    let out: Vec<u32> = std::iter::from_fn(|| a.pop(later, &mut lost))
        .map(|f| f.timestamp)
        .collect();
    assert_eq!(out, [200]);
}

#[test]
fn the_end_of_a_frame_given_up_is_not_taken_for_a_frame_when_it_comes() {
    let now = Instant::now();
    let later = now + FRAME_WAIT;
    let mut lost = false;
    let mut a = FrameAssembler::new();
    a.push_packet(9, 90, true, true, b(9), now);
    assert_eq!(a.pop(now, &mut lost).expect("frame 90").timestamp, 90);
    // A keyframe in four packets (parameter sets, two of a slice, a last slice):
    // the first and the last are lost.
    a.push_packet(11, 100, false, false, b(11), now);
    a.push_packet(12, 100, false, false, b(12), now);
    assert_eq!(
        a.pop(later, &mut lost),
        None,
        "frame 100 given up; 13 missing"
    );
    assert!(lost);
    // The repair of the keyframe's last slice comes now, then a frame of one
    // packet: the repair is dropped, and that frame is released.
    a.push_packet(13, 100, true, false, b(13), later);
    a.push_packet(14, 200, true, true, b(14), later);
    let f = a.pop(later, &mut lost).expect("frame 200");
    assert_eq!((f.timestamp, f.payloads), (200, vec![b(14)]));
    assert_eq!(a.frames_lost, 1);
    assert_eq!(a.packets_late, 1);
}

#[test]
fn a_retransmitted_packet_completes_the_frame() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    let mut lost = false;
    a.push(1, 100, false, b(1), now);
    a.push(3, 100, true, b(3), now);
    a.push(4, 200, true, b(4), now);
    assert_eq!(a.pop(now, &mut lost), None, "packet 2 missing");
    a.push(2, 100, false, b(2), now + Duration::from_millis(40));
    let f = a.pop(now, &mut lost).unwrap();
    assert_eq!(f.payloads, vec![b(1), b(2), b(3)]);
    assert!(f.repaired, "it waited for packet 2");
    let next = a.pop(now, &mut lost).unwrap();
    assert_eq!(next.timestamp, 200);
    assert!(!next.repaired);
    assert!(!lost);
}

#[test]
fn the_timeout_runs_from_when_the_loss_showed() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    assert_eq!(a.poll_timeout(), None, "nothing held, nothing to wait for");
    a.push(1, 100, false, b(1), now);
    // Packet 2 is missing; 3 shows it at +5 ms.
    let showed = now + Duration::from_millis(5);
    a.push(3, 100, true, b(3), showed);
    assert_eq!(a.poll_timeout(), Some(showed + FRAME_WAIT));
    let mut lost = false;
    assert_eq!(
        a.pop(showed + FRAME_WAIT - Duration::from_millis(1), &mut lost),
        None
    );
    assert!(!lost, "not yet");
    assert_eq!(a.pop(showed + FRAME_WAIT, &mut lost), None);
    assert!(lost, "given up at the timeout");
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_frame_streaming_in_slowly_is_not_given_up() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    let mut lost = false;
    // A keyframe of 40 packets, one every 10 ms (400 ms, far over the wait).
    let mut t = now;
    for seq in 1..=40u16 {
        a.push(seq, 100, seq == 40, b(seq as u8), t);
        if seq < 40 {
            assert_eq!(a.pop(t, &mut lost), None);
            assert_eq!(
                a.poll_timeout(),
                Some(t + FRAME_WAIT),
                "from the last packet"
            );
        }
        t += Duration::from_millis(10);
    }
    let f = a.pop(t, &mut lost).expect("the whole keyframe");
    assert_eq!(f.payloads.len(), 40);
    assert!(!lost);
    // One whose end never comes is given up once nothing more arrived for the wait.
    a.push(41, 200, false, b(41), t);
    assert_eq!(
        a.pop(t + FRAME_WAIT - Duration::from_millis(1), &mut lost),
        None
    );
    assert_eq!(a.pop(t + FRAME_WAIT, &mut lost), None);
    assert!(lost);
}

#[test]
fn a_frame_that_never_completes_is_given_up() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    let mut lost = false;
    a.push(1, 100, false, b(1), now);
    a.push(3, 100, true, b(3), now);
    a.push(4, 200, false, b(4), now);
    a.push(5, 200, true, b(5), now);
    assert_eq!(a.pop(now, &mut lost), None);
    let later = now + FRAME_WAIT;
    let f = a.pop(later, &mut lost).expect("the next frame");
    assert!(lost);
    assert_eq!(f.timestamp, 200);
    assert_eq!(a.frames_lost, 1);
    // The lost packet arriving now is late, not a new frame.
    assert!(!a.push(2, 100, false, b(2), later));
}

#[test]
fn heavy_loss_waits_for_more_nack_rounds() {
    let now = Instant::now();
    let rtt = Duration::from_millis(2);
    let mut clean = FrameAssembler::new();
    let mut lossy = FrameAssembler::new();
    let mut lost = false;
    let mut x = 0x2545_f491u32;
    for seq in 0..2000u16 {
        clean.push(seq, u32::from(seq), true, b(0), now);
        while clean.pop(now, &mut lost).is_some() {}
        x = xorshift(x);
        // 40 % never come.
        if x % 10 >= 4 {
            lossy.push(seq, u32::from(seq), true, b(0), now);
        }
    }
    assert_eq!(clean.loss(), 0.0);
    assert!((0.3..0.5).contains(&lossy.loss()), "{}", lossy.loss());
    clean.set_wait(rtt);
    lossy.set_wait(rtt);
    assert_eq!(clean.wait, FRAME_WAIT);
    // About eleven NACK rounds 25 ms apart (as many as 40 % loss of each NACK and
    // each repair needs) and a round trip; never more rounds than the NACK sender asks.
    let rounds = (lossy.wait - rtt).as_secs_f64() / NACK_INTERVAL.as_secs_f64();
    assert!((8.0..=NACK_ROUNDS).contains(&rounds), "{rounds} rounds");
}

#[test]
fn padding_only_packets_cost_no_frame() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    let mut lost = false;
    let pad = Bytes::new;
    // Padding before the first frame, between frames (with the last frame's
    // timestamp, as browsers send it), inside a frame's run, and after a frame whose
    // retransmission is still on its way.
    a.push(1, 100, false, pad(), now);
    a.push(2, 100, true, b(2), now);
    a.push(3, 100, false, pad(), now);
    a.push(4, 100, false, pad(), now);
    a.push(5, 200, false, b(5), now);
    a.push(6, 200, false, pad(), now);
    a.push(7, 200, true, b(7), now);
    let f = a.pop(now, &mut lost).expect("frame 100");
    assert_eq!((f.timestamp, f.payloads), (100, vec![b(2)]));
    let f = a.pop(now, &mut lost).expect("frame 200");
    assert_eq!((f.timestamp, f.payloads), (200, vec![b(5), b(7)]));
    a.push(9, 300, true, b(9), now);
    a.push(10, 300, false, pad(), now);
    a.push(11, 400, true, b(11), now);
    assert_eq!(a.pop(now, &mut lost), None, "packet 8 is missing");
    a.push(8, 300, false, b(8), now + Duration::from_millis(30));
    let f = a.pop(now, &mut lost).expect("frame 300");
    assert_eq!(f.payloads, vec![b(8), b(9)]);
    assert_eq!(a.pop(now, &mut lost).expect("frame 400").timestamp, 400);
    assert_eq!(a.pop(now + MAX_FRAME_WAIT, &mut lost), None);
    assert!(!lost, "nothing was given up");
    assert_eq!(a.frames_lost, 0);
    assert!(a.packets.is_empty());
}

#[test]
fn sequence_numbers_wrap() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    let mut lost = false;
    a.push(65_535, 100, false, b(1), now);
    a.push(0, 100, true, b(2), now);
    assert_eq!(a.pop(now, &mut lost).unwrap().payloads.len(), 2);
    a.push(1, 200, true, b(3), now);
    assert_eq!(a.pop(now, &mut lost).unwrap().timestamp, 200);
}

#[test]
fn duplicates_and_garbage_never_panic() {
    let now = Instant::now();
    let mut a = FrameAssembler::new();
    let mut lost = false;
    let mut x = 0x1234_5678u32;
    for i in 0..20_000u32 {
        x = xorshift(x);
        a.push(x as u16, x >> 8, x & 3 == 0, b(x as u8), now);
        let t = now + Duration::from_millis(u64::from(i / 10));
        while a.pop(t, &mut lost).is_some() {}
    }
    assert!(a.packets.len() <= MAX_PACKETS + 1);
}
