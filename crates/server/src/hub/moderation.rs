//! Reports, blocks and ratings: what a client may say about a current or recent call of
//! its device, and the records the hub asks the shell to store.

use std::time::Instant;

use chingu_proto::{CallId, ErrorCode, PeerLeftReason, ReportReason, ServerMessage};

use super::recent::ReportRefusal;
use super::{Hub, Output, Record, Status};
use crate::ids::{ClientId, Identity};

impl Hub {
    pub(super) fn report(
        &mut self,
        client: ClientId,
        call_id: CallId,
        reason: ReportReason,
        note: Option<String>,
        now: Instant,
    ) {
        let reporter = self.client_mut(client).identity;
        let per_day = self.config.reports_per_device_per_day;
        match self.recent.report(reporter, &call_id, per_day, now) {
            Ok(reported) => {
                // Stored text is for moderators' tools: no terminal escapes, NUL or
                // direction overrides.
                let note = note
                    .map(|n| chingu_proto::text::sanitize(&n))
                    .filter(|n| !n.is_empty());
                let record = Record::Report {
                    reporter,
                    reported,
                    call_id: call_id.clone(),
                    reason,
                    note,
                };
                self.outputs.push_back(Output::Persist {
                    client: Some(client),
                    record,
                    acks: vec![(client, ServerMessage::Reported { call_id })],
                });
            }
            Err(ReportRefusal::UnknownCall) => self.unknown_call(client, &call_id),
            Err(ReportRefusal::AlreadyReported) => {
                self.reports_refused_total += 1;
                self.send(
                    client,
                    ServerMessage::error(
                        ErrorCode::InvalidState,
                        format!("{call_id} was already reported"),
                    ),
                );
            }
            Err(ReportRefusal::OverBudget) => {
                self.reports_refused_total += 1;
                self.send(
                    client,
                    ServerMessage::error(
                        ErrorCode::RateLimited,
                        format!("at most {per_day} reports a day"),
                    ),
                );
            }
        }
    }

    pub(super) fn block(&mut self, client: ClientId, call_id: CallId, now: Instant) {
        let Some(peer) = self.recent_peer(client, &call_id) else {
            return;
        };
        if self.client_mut(client).status == Status::InCall(call_id.clone()) {
            self.end_call(&call_id, client, PeerLeftReason::HungUp, now);
        }
        let blocker = self.client_mut(client).identity;
        self.matchmaker.block(blocker, peer);
        self.outputs.push_back(Output::Persist {
            client: Some(client),
            record: Record::Block {
                blocker,
                blocked: peer,
            },
            acks: vec![(client, ServerMessage::Blocked { call_id })],
        });
        // Friends no more: no presence, no rings, for both, at once.
        self.unfriend(blocker, peer, Some(client));
    }

    pub(super) fn rate(&mut self, client: ClientId, call_id: CallId, stars: u8) {
        if self.recent_peer(client, &call_id).is_some() {
            let record = Record::Rating {
                rater: self.client_mut(client).identity,
                call_id: call_id.clone(),
                stars,
            };
            self.outputs.push_back(Output::Persist {
                client: Some(client),
                record,
                acks: vec![(client, ServerMessage::Rated { call_id })],
            });
        }
    }

    /// The peer device of a current or recent call of `client`'s device; otherwise tells
    /// the client.
    fn recent_peer(&mut self, client: ClientId, call_id: &CallId) -> Option<Identity> {
        let found = self.recent.peer(self.clients[&client].identity, call_id);
        if found.is_none() {
            self.unknown_call(client, call_id);
        }
        found
    }

    fn unknown_call(&mut self, client: ClientId, call_id: &CallId) {
        self.send(
            client,
            ServerMessage::error(
                ErrorCode::UnknownCall,
                format!("{call_id} is not one of your recent calls"),
            ),
        );
    }
}
