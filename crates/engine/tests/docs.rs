//! Every peer-to-peer example in docs/protocol.md parses as a `ControlMessage` and
//! serialises back to the same JSON; every message type has an example.

use std::collections::BTreeSet;

use chingu_engine::control::ControlMessage;

#[test]
fn every_peer_to_peer_example_parses() {
    let doc = include_str!("../../../docs/protocol.md");
    let (_, peer_part) = doc
        .split_once("## Peer to peer")
        .expect("the doc has a peer-to-peer section");
    let mut seen = BTreeSet::new();
    for block in peer_part.split("```json\n").skip(1) {
        let block = block.split("```").next().expect("closed block").trim();
        let msg: ControlMessage =
            serde_json::from_str(block).unwrap_or_else(|e| panic!("{block}\n{e}"));
        let again = serde_json::to_value(&msg).expect("serialise");
        let original: serde_json::Value = serde_json::from_str(block).expect("json");
        assert_eq!(again, original);
        seen.insert(again["type"].as_str().expect("type").to_owned());
    }
    let expected: BTreeSet<String> = ["chat", "media", "net"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, expected);
}
