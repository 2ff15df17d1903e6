//! The life of a call: started by a match or by a friend accepting a ring, ended by
//! either side (or a lost connection), and what each step tells whom.

use super::*;

impl Hub {
    pub(super) fn start_matched_calls(&mut self, now: Instant) {
        while let Some(m) = self.matchmaker.poll_match() {
            self.start_call(m, now);
        }
    }

    fn start_call(&mut self, m: Match, now: Instant) {
        let offerer = m.waited_longer;
        let answerer = m.newer;
        let profiles = [
            self.public_profile(offerer, &m.shared_interests),
            self.public_profile(answerer, &m.shared_interests),
        ];
        self.begin_call([offerer, answerer], profiles, None, now);
        self.matches_total += 1;
    }

    /// Puts two connections in a new call: `clients[0]` offers; `profiles[i]` is how
    /// `clients[i]` is shown to the other.
    pub(super) fn begin_call(
        &mut self,
        clients: [ClientId; 2],
        profiles: [PeerProfile; 2],
        friend: Option<FriendId>,
        now: Instant,
    ) {
        let call_id = CallId(random_token());
        let [offerer, answerer] = clients;
        let identities = clients.map(|c| self.clients[&c].identity);
        let nicknames = [profiles[0].nickname.clone(), profiles[1].nickname.clone()];
        let [offerer_profile, answerer_profile] = profiles;
        for (me, peer, role) in [
            (offerer, answerer_profile, Role::Offerer),
            (answerer, offerer_profile, Role::Answerer),
        ] {
            self.client_mut(me).status = Status::InCall(call_id.clone());
            self.send(
                me,
                ServerMessage::Matched {
                    call_id: call_id.clone(),
                    role,
                    peer,
                    friend: friend.clone(),
                },
            );
        }
        // Either may have been ringing someone, or been rung: not any more.
        self.end_rings_of(clients);
        let [a, b] = identities;
        self.recent.remember(a, call_id.clone(), b, now);
        self.recent.remember(b, call_id.clone(), a, now);
        self.call_started(
            &call_id,
            CallMembers {
                identities,
                nicknames,
            },
            now,
        );
        self.calls.insert(
            call_id,
            Call {
                clients,
                identities,
                away: [None, None],
            },
        );
        self.presence_may_have_changed(a, now);
        self.presence_may_have_changed(b, now);
    }

    fn public_profile(&self, client: ClientId, shared_interests: &[String]) -> PeerProfile {
        let entry = self.clients[&client]
            .queue_entry
            .as_ref()
            .expect("a matched client joined the queue with a profile");
        PeerProfile {
            nickname: entry.nickname.clone(),
            languages: entry.languages.clone(),
            shared_interests: shared_interests.to_vec(),
        }
    }

    /// The peer of `call_id` if it is `client`'s current call; otherwise tells the client.
    pub(super) fn peer_in_call(&mut self, client: ClientId, call_id: &CallId) -> Option<ClientId> {
        if self.clients[&client].status == Status::InCall(call_id.clone()) {
            let call = &self.calls[call_id];
            return Some(if call.clients[0] == client {
                call.clients[1]
            } else {
                call.clients[0]
            });
        }
        self.send(
            client,
            ServerMessage::error(
                ErrorCode::NotInCall,
                format!("{call_id} is not your current call"),
            ),
        );
        None
    }

    /// Ends a call that `by` is in; the other client hears `reason`.
    pub(super) fn end_call(
        &mut self,
        call_id: &CallId,
        by: ClientId,
        reason: PeerLeftReason,
        now: Instant,
    ) {
        let call = self
            .calls
            .remove(call_id)
            .expect("end_call is only called for a live call");
        let [a, b] = call.clients;
        let [ida, idb] = call.identities;
        for me in [a, b] {
            // An away member's connection is gone; a lingering one no longer holds it.
            if let Some(state) = self.clients.get_mut(&me)
                && state.status == Status::InCall(call_id.clone())
            {
                state.status = Status::Idle;
            }
        }
        self.matchmaker.cool_down(ida, idb, now);
        let other = if a == by { b } else { a };
        self.send(
            other,
            ServerMessage::PeerLeft {
                call_id: call_id.clone(),
                reason,
            },
        );
        self.call_ended(call_id, now);
        self.presence_may_have_changed(ida, now);
        self.presence_may_have_changed(idb, now);
    }

    pub(super) fn on_disconnect(&mut self, client: ClientId, silent: bool, now: Instant) {
        let Some(state) = self.clients.get(&client) else {
            return;
        };
        let identity = state.identity;
        match state.status.clone() {
            Status::Idle => {}
            Status::Queued => {
                self.matchmaker.leave(client);
            }
            Status::InCall(call_id) if !silent || self.config.resume_grace.is_zero() => {
                self.end_call(&call_id, client, PeerLeftReason::Disconnected, now);
            }
            Status::InCall(call_id) => {
                // Media may still flow peer to peer: give the device time to come back.
                let deadline = now + self.config.resume_grace;
                let call = self
                    .calls
                    .get_mut(&call_id)
                    .expect("a client's call exists");
                let me = usize::from(call.clients[1] == client);
                call.away[me] = Some(deadline);
                self.away_deadlines.push_back((deadline, call_id));
            }
        }
        self.clients.remove(&client);
        if let Some(open) = self.connections.get_mut(&identity) {
            open.retain(|&c| c != client);
            if open.is_empty() {
                self.connections.remove(&identity);
            }
        }
        self.connection_gone(client, identity);
        self.presence_may_have_changed(identity, now);
    }
}
