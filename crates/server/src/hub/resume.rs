//! Calls that outlive a lost connection: `resume_call` moves a call to the device's new
//! connection (docs/protocol.md, "resume_call"; the grace itself is in `on_disconnect`
//! and `handle_timeout`).

use super::*;

impl Hub {
    /// `resume_call`: the device's new connection takes over its call, from an away
    /// member or from a connection of the same device that has not noticed it is dead.
    pub(super) fn resume_call(&mut self, client: ClientId, call_id: CallId, now: Instant) {
        let identity = self.clients[&client].identity;
        let Some(call) = self.calls.get(&call_id) else {
            // Over (the grace ran out, or the peer left): say so the usual way.
            self.send(
                client,
                ServerMessage::PeerLeft {
                    call_id,
                    reason: PeerLeftReason::Disconnected,
                },
            );
            return;
        };
        let Some(me) = call.identities.iter().position(|i| *i == identity) else {
            self.send(
                client,
                ServerMessage::error(ErrorCode::NotInCall, format!("{call_id} is not your call")),
            );
            return;
        };
        let old = call.clients[me];
        if old != client {
            match self.clients[&client].status.clone() {
                Status::InCall(_) => {
                    self.send(
                        client,
                        ServerMessage::error(ErrorCode::InvalidState, "already in another call"),
                    );
                    return;
                }
                Status::Queued => {
                    self.matchmaker.leave(client);
                }
                Status::Idle => {}
            }
            if let Some(lingering) = self.clients.get_mut(&old)
                && lingering.status == Status::InCall(call_id.clone())
            {
                lingering.status = Status::Idle;
            }
            let call = self.calls.get_mut(&call_id).expect("checked above");
            call.clients[me] = client;
            call.away[me] = None;
            self.client_mut(client).status = Status::InCall(call_id.clone());
            self.presence_may_have_changed(identity, now);
        }
        self.send(client, ServerMessage::CallResumed { call_id });
    }
}
