//! Keeps docs/protocol.md true: every example parses as the message it documents, and
//! every message type has an example.

use std::collections::BTreeSet;

use chingu_proto::{ClientMessage, ServerMessage, decode_client, decode_server, encode};

fn json_blocks(markdown: &str) -> Vec<&str> {
    markdown
        .split("```json\n")
        .skip(1)
        .map(|rest| rest.split("\n```").next().expect("a closed code block"))
        .collect()
}

#[test]
fn every_example_in_the_protocol_doc_parses_and_every_type_has_one() {
    let doc = include_str!("../../../docs/protocol.md");
    let (client_part, server_part) = doc
        .split_once("## Server → client")
        .expect("the doc has a server section");
    // Peer-to-peer messages (the data channel) follow; the engine's tests check those.
    let server_part = server_part
        .split_once("## Peer to peer")
        .map_or(server_part, |(server, _)| server);
    let mut seen = BTreeSet::new();
    for block in json_blocks(client_part) {
        let msg = decode_client(block).unwrap_or_else(|e| panic!("{block}\n{e}"));
        let again: serde_json::Value = serde_json::from_str(&encode(&msg)).expect("json");
        let original: serde_json::Value = serde_json::from_str(block).expect("json");
        assert_eq!(again, original, "the example is in canonical form");
        seen.insert(msg.type_name());
    }
    let expected: BTreeSet<_> = ClientMessage::TYPES.iter().copied().collect();
    assert_eq!(seen, expected, "client message examples");
    seen.clear();
    for block in json_blocks(server_part) {
        let msg = decode_server(block).unwrap_or_else(|e| panic!("{block}\n{e}"));
        let again: serde_json::Value = serde_json::from_str(&encode(&msg)).expect("json");
        let original: serde_json::Value = serde_json::from_str(block).expect("json");
        assert_eq!(again, original, "the example is in canonical form");
        seen.insert(msg.type_name());
    }
    let expected: BTreeSet<_> = ServerMessage::TYPES.iter().copied().collect();
    assert_eq!(seen, expected, "server message examples");
}
