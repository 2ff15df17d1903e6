//! Decoding: round trips of every message, and the error code of each class of bad input.

use chingu_proto::{
    CallId, ClientMessage, ErrorCode, Friend, FriendCallFailure, FriendId, IceServer,
    PeerLeftReason, PeerProfile, Presence, ReportReason, Role, ServerMessage, SessionId, Signal,
    decode_client, decode_server, encode, limits,
};

fn call() -> CallId {
    CallId("c0ffee00c0ffee00c0ffee00c0ffee00".into())
}

fn every_client_message() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Hello {
            protocol_version: 1,
            client_version: "chingu/0.1.0".into(),
            device_id: "3f2a9c1e7b5d4e8fa0b1c2d3e4f5a6b7".into(),
        },
        ClientMessage::JoinQueue {
            nickname: "민지".into(),
            languages: vec!["ko".into(), "en-US".into()],
            interests: vec!["music".into(), "등산".into()],
        },
        ClientMessage::LeaveQueue,
        ClientMessage::Signal {
            call_id: call(),
            signal: Signal::Offer {
                sdp: "v=0\r\n".into(),
            },
        },
        ClientMessage::Signal {
            call_id: call(),
            signal: Signal::Answer {
                sdp: "v=0\r\n".into(),
            },
        },
        ClientMessage::Signal {
            call_id: call(),
            signal: Signal::Candidate {
                candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            },
        },
        ClientMessage::Signal {
            call_id: call(),
            signal: Signal::EndOfCandidates,
        },
        ClientMessage::Next { call_id: call() },
        ClientMessage::HangUp { call_id: call() },
        ClientMessage::Report {
            call_id: call(),
            reason: ReportReason::Harassment,
            note: Some("rude".into()),
        },
        ClientMessage::Block { call_id: call() },
        ClientMessage::Rate {
            call_id: call(),
            stars: 4,
        },
        ClientMessage::Ping { nonce: 7 },
        ClientMessage::ResumeCall { call_id: call() },
        ClientMessage::Signal {
            call_id: call(),
            signal: Signal::IceRestart,
        },
        ClientMessage::AddFriend { call_id: call() },
        ClientMessage::RemoveFriend {
            friend: FriendId("f1".into()),
        },
        ClientMessage::BlockFriend {
            friend: FriendId("f1".into()),
        },
        ClientMessage::CallFriend {
            friend: FriendId("f1".into()),
        },
        ClientMessage::CancelFriendCall {
            friend: FriendId("f1".into()),
        },
        ClientMessage::AnswerFriendCall {
            friend: FriendId("f1".into()),
            accept: false,
        },
    ]
}

fn every_server_message() -> Vec<ServerMessage> {
    vec![
        ServerMessage::Welcome {
            protocol_version: 1,
            session_id: SessionId("5e55".into()),
            ice_servers: vec![IceServer {
                urls: vec!["turn:turn.example.org:3478".into()],
                username: Some("1700000000:5e55".into()),
                credential: Some("c2VjcmV0".into()),
            }],
            heartbeat_interval_ms: 4000,
        },
        ServerMessage::Queued,
        ServerMessage::LeftQueue,
        ServerMessage::Matched {
            call_id: call(),
            role: Role::Offerer,
            peer: PeerProfile {
                nickname: "Sam".into(),
                languages: vec!["en".into()],
                shared_interests: vec!["music".into()],
            },
            friend: None,
        },
        ServerMessage::Matched {
            call_id: call(),
            role: Role::Answerer,
            peer: PeerProfile {
                nickname: "Sam".into(),
                languages: vec![],
                shared_interests: vec![],
            },
            friend: Some(FriendId("f1".into())),
        },
        ServerMessage::Friends {
            friends: vec![Friend {
                id: FriendId("f1".into()),
                nickname: "민지".into(),
                presence: Presence::InCall,
                last_call_unix: 1_764_547_200,
            }],
            more: true,
        },
        ServerMessage::FriendRequested { call_id: call() },
        ServerMessage::FriendAdded {
            friend: Friend {
                id: FriendId("f1".into()),
                nickname: "Sam".into(),
                presence: Presence::Online,
                last_call_unix: 0,
            },
        },
        ServerMessage::FriendRemoved {
            friend: FriendId("f1".into()),
        },
        ServerMessage::Presence {
            friend: FriendId("f1".into()),
            presence: Presence::Offline,
        },
        ServerMessage::Ringing {
            friend: FriendId("f1".into()),
        },
        ServerMessage::IncomingCall {
            friend: FriendId("f1".into()),
        },
        ServerMessage::RingEnded {
            friend: FriendId("f1".into()),
        },
        ServerMessage::FriendCallFailed {
            friend: FriendId("f1".into()),
            reason: FriendCallFailure::Missed,
        },
        ServerMessage::Signal {
            call_id: call(),
            signal: Signal::EndOfCandidates,
        },
        ServerMessage::PeerLeft {
            call_id: call(),
            reason: PeerLeftReason::Next,
        },
        ServerMessage::Reported { call_id: call() },
        ServerMessage::Blocked { call_id: call() },
        ServerMessage::Rated { call_id: call() },
        ServerMessage::OnlineCount {
            online: 10,
            waiting: 3,
        },
        ServerMessage::Pong { nonce: 7 },
        ServerMessage::error(ErrorCode::RateLimited, "slow down"),
        ServerMessage::ShuttingDown {
            retry_after_ms: 1000,
        },
        ServerMessage::IceServers {
            ice_servers: vec![IceServer {
                urls: vec!["stun:turn.example.org:3478".into()],
                username: None,
                credential: None,
            }],
        },
        ServerMessage::CallResumed { call_id: call() },
    ]
}

#[test]
fn every_message_round_trips() {
    for msg in every_client_message() {
        let text = encode(&msg);
        assert_eq!(decode_client(&text), Ok(msg), "client message {text}");
    }
    for msg in every_server_message() {
        let text = encode(&msg);
        assert_eq!(decode_server(&text), Ok(msg), "server message {text}");
    }
}

#[test]
fn type_lists_name_every_variant() {
    let client: Vec<_> = every_client_message()
        .iter()
        .map(|m| m.type_name())
        .collect();
    for name in ClientMessage::TYPES {
        assert!(client.contains(name), "{name} has no example here");
    }
    let server: Vec<_> = every_server_message()
        .iter()
        .map(|m| m.type_name())
        .collect();
    for name in ServerMessage::TYPES {
        assert!(server.contains(name), "{name} has no example here");
    }
}

fn code_of(text: &str) -> ErrorCode {
    decode_client(text)
        .expect_err(&format!("{text} should be rejected"))
        .code
}

#[test]
fn bad_input_gets_the_right_code() {
    let cases: &[(&str, ErrorCode)] = &[
        ("", ErrorCode::Malformed),
        ("not json", ErrorCode::Malformed),
        ("{\"type\":\"ping\",", ErrorCode::Malformed),
        ("[1,2,3]", ErrorCode::Malformed),
        ("42", ErrorCode::Malformed),
        ("{\"nonce\":1}", ErrorCode::Malformed),
        ("{\"type\":7}", ErrorCode::Malformed),
        ("{\"type\":\"teleport\"}", ErrorCode::UnknownType),
        // Server-to-client types are unknown when a client sends them.
        ("{\"type\":\"welcome\"}", ErrorCode::UnknownType),
        ("{\"type\":\"ping\"}", ErrorCode::InvalidField),
        ("{\"type\":\"ping\",\"nonce\":-1}", ErrorCode::InvalidField),
        (
            "{\"type\":\"ping\",\"nonce\":1,\"extra\":true}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"hello\",\"protocol_version\":1,\"client_version\":\"x\",\"device_id\":\"short\"}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"join_queue\",\"nickname\":\"a\",\"languages\":[]}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"join_queue\",\"nickname\":\"   \",\"languages\":[\"ko\"]}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"join_queue\",\"nickname\":\"a\\u0000b\",\"languages\":[\"ko\"]}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"join_queue\",\"nickname\":\"a\",\"languages\":[\"not a tag\"]}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"signal\",\"call_id\":\"../etc\",\"signal\":{\"kind\":\"end_of_candidates\"}}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"signal\",\"call_id\":\"c1\",\"signal\":{\"kind\":\"offer\",\"sdp\":\"\"}}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"signal\",\"call_id\":\"c1\",\"signal\":{\"kind\":\"hologram\"}}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"report\",\"call_id\":\"c1\",\"reason\":\"boring\"}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"call_friend\",\"friend\":\"../../x\"}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"answer_friend_call\",\"friend\":\"f1\"}",
            ErrorCode::InvalidField,
        ),
        (
            "{\"type\":\"add_friend\",\"call_id\":\"c1\",\"nickname\":\"x\"}",
            ErrorCode::InvalidField,
        ),
    ];
    for (text, code) in cases {
        assert_eq!(code_of(text), *code, "input {text}");
    }
}

#[test]
fn oversized_messages_are_rejected_before_parsing() {
    let big = format!(
        "{{\"type\":\"ping\",\"nonce\":1,\"pad\":\"{}\"}}",
        "x".repeat(limits::MAX_MESSAGE_BYTES)
    );
    assert_eq!(code_of(&big), ErrorCode::TooLarge);
    let sdp = "a".repeat(limits::MAX_SDP_BYTES + 1);
    let offer = format!(
        "{{\"type\":\"signal\",\"call_id\":\"c1\",\"signal\":{{\"kind\":\"offer\",\"sdp\":\"{sdp}\"}}}}"
    );
    assert_eq!(code_of(&offer), ErrorCode::InvalidField);
}

#[test]
fn error_messages_do_not_echo_huge_unknown_types() {
    let long_type = "t".repeat(10_000);
    let err = decode_client(&format!("{{\"type\":\"{long_type}\"}}")).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownType);
    assert!(
        err.message.len() < 100,
        "the error should quote a bounded prefix, got {} bytes",
        err.message.len()
    );
}

#[test]
fn nicknames_are_trimmed_and_bounded_in_one_place() {
    use chingu_proto::normalize_nickname;
    assert_eq!(normalize_nickname("  민지 ").expect("valid"), "민지");
    let longest = "가".repeat(chingu_proto::limits::MAX_NICKNAME_CHARS);
    assert_eq!(
        normalize_nickname(&format!(" {longest} ")).expect("the limit counts what is shown"),
        longest
    );
    for bad in ["", "   ", "a\u{7}b", &format!("{longest}x")] {
        let err = normalize_nickname(bad).expect_err(bad);
        assert_eq!(err.code, ErrorCode::InvalidField, "{bad:?}");
    }
}

#[test]
fn peer_left_reasons_read_as_on_the_wire() {
    use chingu_proto::PeerLeftReason as R;
    for reason in [R::HungUp, R::Next, R::Disconnected, R::ServerShutdown] {
        assert_eq!(
            serde_json::to_value(reason).unwrap(),
            serde_json::json!(reason.as_str())
        );
    }
}

#[test]
fn messages_without_fields_refuse_extra_ones_too() {
    for text in [
        r#"{"type":"leave_queue","x":1}"#,
        r#"{"type":"signal","call_id":"c1","signal":{"kind":"end_of_candidates","x":1}}"#,
        r#"{"type":"signal","call_id":"c1","x":1,"signal":{"kind":"end_of_candidates"}}"#,
    ] {
        let err = decode_client(text).expect_err(text);
        assert_eq!(err.code, ErrorCode::InvalidField, "{text}");
        assert!(err.message.contains("unknown field"), "{}", err.message);
    }
    assert!(decode_client(r#"{"type":"leave_queue"}"#).is_ok());
    assert!(
        decode_client(r#"{"type":"signal","call_id":"c1","signal":{"kind":"end_of_candidates"}}"#)
            .is_ok()
    );
    assert!(chingu_proto::decode_server(r#"{"type":"queued","extra":0}"#).is_err());
}

#[test]
fn a_number_too_large_for_its_field_is_a_bad_field_not_a_bad_message() {
    assert_eq!(
        code_of(r#"{"type":"ping","nonce":1e999}"#),
        ErrorCode::InvalidField
    );
    assert_eq!(code_of("1e999"), ErrorCode::Malformed);
}

#[test]
fn error_messages_quote_at_most_a_short_escaped_excerpt() {
    // A bad enum value is quoted by serde; 30 KB of it must not come back.
    let huge = format!(
        r#"{{"type":"report","call_id":"c1","reason":"{}\u001b[2J"}}"#,
        "x".repeat(30_000)
    );
    let err = decode_client(&huge).expect_err("unknown reason");
    assert_eq!(err.code, ErrorCode::InvalidField);
    assert!(
        err.message.chars().count() <= chingu_proto::MAX_ERROR_MESSAGE_CHARS + 1,
        "{} characters",
        err.message.chars().count()
    );
    assert!(
        !err.message.contains('\u{1b}'),
        "escape sequences are escaped"
    );
}

#[test]
fn nicknames_need_something_visible_and_no_direction_tricks() {
    use chingu_proto::normalize_nickname;
    for invisible in [
        "\u{200B}\u{200B}",
        "\u{3164}",
        "\u{2800}\u{2800}",
        "\u{0301}\u{0301}",
        "\u{115F}\u{1160}",
        "\u{FEFF}",
    ] {
        assert!(
            normalize_nickname(invisible).is_err(),
            "{:?} looks empty",
            invisible.escape_unicode().to_string()
        );
    }
    assert!(normalize_nickname("evil\u{202E}gnp.exe").is_err());
    assert_eq!(
        normalize_nickname("é\u{0301}").expect("a mark on a letter"),
        "é\u{0301}"
    );
}

/// The longest friend list page a server sends — every nickname as long as the rules
/// allow, in four-byte characters — is a message a client accepts; a longer page is not.
#[test]
fn a_full_page_of_friends_fits_what_a_client_accepts() {
    let nickname: String = "😀".repeat(limits::MAX_NICKNAME_CHARS);
    let friend = |i: usize| Friend {
        id: FriendId(format!("{i:0>64}")),
        nickname: nickname.clone(),
        presence: Presence::InCall,
        last_call_unix: u64::MAX,
    };
    let page = |n: usize| ServerMessage::Friends {
        friends: (0..n).map(friend).collect(),
        more: true,
    };
    let full = encode(&page(limits::FRIENDS_PER_PAGE));
    assert_eq!(
        decode_server(&full).expect("a full page decodes"),
        page(limits::FRIENDS_PER_PAGE)
    );
    let over = encode(&page(limits::FRIENDS_PER_PAGE + 1));
    assert!(decode_server(&over).is_err());
}
