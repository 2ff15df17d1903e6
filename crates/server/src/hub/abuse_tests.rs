//! The hub under clients that stay within every message limit but try to hurt others:
//! one device in many connections, repeated reports, hostile notes, reconnects, races.

use super::tests::{World, identity};
use super::*;

impl World {
    fn join_wide(&mut self, n: u64) {
        self.say(
            n,
            ClientMessage::JoinQueue {
                nickname: format!("storm{n}"),
                languages: (0..8).map(|i| format!("l{i}a")).collect(),
                interests: (0..16).map(|i| format!("interest{i}")).collect(),
            },
        );
    }

    fn report(&mut self, n: u64, call_id: &CallId, note: Option<&str>) -> Vec<Output> {
        self.say(
            n,
            ClientMessage::Report {
                call_id: call_id.clone(),
                reason: ReportReason::Harassment,
                note: note.map(String::from),
            },
        );
        self.outputs()
    }
}

fn error_code(outputs: &[Output], client: u64) -> Option<ErrorCode> {
    outputs.iter().find_map(|o| match o {
        Output::Send(c, ServerMessage::Error { code, .. }) if c.0 == client => Some(*code),
        _ => None,
    })
}

#[test]
fn a_device_holds_one_place_in_the_queue_whatever_its_connections_do() {
    let mut w = World::new();
    for n in 1..=96 {
        w.connect_as(n, 7);
    }
    for round in 0..20 {
        for n in 1..=96 {
            w.join_wide(n);
        }
        assert_eq!(
            w.hub.stats().waiting,
            1,
            "round {round}: one entry for device 7"
        );
    }
    let displaced = w
        .sent()
        .into_iter()
        .filter(|(_, m)| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::InvalidState,
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        displaced as u64,
        96 * 20 - 1,
        "every replaced connection is told"
    );
    assert_eq!(w.hub.stats().queue_displaced_total, 96 * 20 - 1);
    // An honest pair still meets at once, and the storm's device meets one of them.
    w.connect(1001);
    w.connect(1002);
    w.join(1001, &["music"]);
    w.join(1002, &["music"]);
    assert!(
        w.sent()
            .iter()
            .any(|(c, m)| *c == 1002 && matches!(m, ServerMessage::Matched { .. })),
        "the honest pair is matched"
    );
}

#[test]
fn a_call_is_reported_once_and_a_device_has_a_daily_budget() {
    let mut w = World::new();
    let first = w.call(1, 2);
    let outputs = w.report(1, &first, None);
    assert!(
        matches!(outputs.as_slice(), [Output::Persist { .. }]),
        "{outputs:?}"
    );
    let again = w.report(1, &first, None);
    assert_eq!(
        error_code(&again, 1),
        Some(ErrorCode::InvalidState),
        "{again:?}"
    );
    assert!(!again.iter().any(|o| matches!(o, Output::Persist { .. })));
    // Four more calls with new people: the budget (5 a day) runs out on the sixth.
    w.say(1, ClientMessage::HangUp { call_id: first });
    let mut last = None;
    for peer in 3..=7 {
        w.advance(1);
        w.connect(peer);
        w.join(1, &["music"]);
        w.join(peer, &["music"]);
        let call_id = w
            .sent()
            .into_iter()
            .find_map(|(c, m)| match m {
                ServerMessage::Matched { call_id, .. } if c == 1 => Some(call_id),
                _ => None,
            })
            .expect("matched");
        last = Some(w.report(1, &call_id, None));
        w.say(1, ClientMessage::HangUp { call_id });
    }
    let last = last.expect("reported");
    assert_eq!(
        error_code(&last, 1),
        Some(ErrorCode::RateLimited),
        "{last:?}"
    );
    assert_eq!(w.hub.stats().reports_refused_total, 2);
}

#[test]
fn stored_notes_lose_escapes_nul_and_direction_overrides() {
    let mut w = World::new();
    let call = w.call(1, 2);
    let outputs = w.report(1, &call, Some("\u{1b}[2J\u{0}spam \u{202E}moc.live\t!"));
    let Some(Output::Persist {
        record: Record::Report { note, .. },
        ..
    }) = outputs.first()
    else {
        panic!("{outputs:?}");
    };
    assert_eq!(note.as_deref(), Some("[2Jspam moc.live !"));
    let blank = w.call(3, 4);
    let outputs = w.report(3, &blank, Some("\u{7}\u{200F}  "));
    assert!(
        matches!(
            outputs.first(),
            Some(Output::Persist {
                record: Record::Report { note: None, .. },
                ..
            })
        ),
        "nothing left: no note, {outputs:?}"
    );
}

#[test]
fn after_a_reconnect_the_last_call_can_still_be_reported_and_rated() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(1),
            silent: false,
        },
        w.now,
    );
    w.sent();
    // The same device, a new connection.
    w.connect_as(11, 1);
    w.outputs();
    let outputs = w.report(11, &call, None);
    assert!(
        matches!(outputs.as_slice(), [Output::Persist { record: Record::Report { reported, .. }, .. }] if *reported == identity(2)),
        "{outputs:?}"
    );
    w.say(
        11,
        ClientMessage::Rate {
            call_id: call,
            stars: 2,
        },
    );
    assert!(matches!(
        w.outputs().as_slice(),
        [Output::Persist {
            record: Record::Rating { .. },
            ..
        }]
    ));
}

#[test]
fn when_both_press_next_at_once_both_are_queued_again() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.say(
        1,
        ClientMessage::Next {
            call_id: call.clone(),
        },
    );
    w.say(2, ClientMessage::Next { call_id: call });
    let sent = w.sent();
    for client in [1, 2] {
        assert!(
            sent.contains(&(client, ServerMessage::Queued)),
            "{client} is queued: {sent:?}"
        );
    }
    assert!(
        !sent
            .iter()
            .any(|(_, m)| matches!(m, ServerMessage::Error { .. })),
        "no error for the slower one: {sent:?}"
    );
    assert_eq!(
        w.hub.stats().waiting,
        2,
        "both wait (they just met: cooldown)"
    );
}

#[test]
fn leaving_the_queue_during_a_call_is_refused_and_the_call_goes_on() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.say(1, ClientMessage::LeaveQueue);
    let sent = w.sent();
    assert!(
        matches!(
            sent.as_slice(),
            [(
                1,
                ServerMessage::Error {
                    code: ErrorCode::InvalidState,
                    ..
                }
            )]
        ),
        "{sent:?}"
    );
    assert_eq!(w.hub.stats().calls_active, 1);
    w.say(1, ClientMessage::HangUp { call_id: call });
    assert!(
        w.sent()
            .iter()
            .any(|(c, m)| *c == 2 && matches!(m, ServerMessage::PeerLeft { .. })),
        "still in the call until hung up"
    );
}

#[test]
fn a_new_search_from_the_same_device_replaces_a_stale_one() {
    // A stale connection of device 5 still waits when the same device comes back.
    let mut w = World::new();
    w.connect_as(50, 5);
    w.join(50, &["music"]);
    w.connect_as(51, 5);
    w.join(51, &["music"]);
    let sent = w.sent();
    assert!(sent.contains(&(51, ServerMessage::Queued)), "{sent:?}");
    assert!(
        sent.iter().any(|(c, m)| *c == 50
            && matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::InvalidState,
                    ..
                }
            )),
        "the stale one is told: {sent:?}"
    );
    assert_eq!(w.hub.stats().waiting, 1);
}
