//! Who talks to whom: the waiting queue and the pairing rules. Sans-IO: no clock, no
//! sockets; time comes in as an argument and matches are drained with [`Matchmaker::poll_match`].
//!
//! Rules, in order of precedence:
//! 1. Never a client with itself (same connection or same device), never a blocked pair,
//!    never a pair inside its cooldown (set after every call between them).
//! 2. Prefer a partner who shares a language *and* an interest; after
//!    [`MatchConfig::language_only_after`] of waiting accept a shared language alone;
//!    after [`MatchConfig::anyone_after`] accept anyone. A wait counts for both sides:
//!    a newcomer is offered to whoever has waited long enough to accept them.
//!    A client with no interests accepts a shared language at once.
//! 3. Among partners of the same preference, the one who has waited longest wins.
//!
//! Every operation is O(k·log n) for n waiting and k = (languages × interests) of the
//! client at hand, bounded by the protocol limits. To stay so when a client has blocked
//! or recently met many waiting people, each index lookup skips at most
//! [`MatchConfig::max_skip`] ineligible heads, and one search looks at no more than
//! [`MatchConfig::max_checks`] candidates in all, whatever the queue holds; a partner
//! hidden behind more is found at the client's next widening or when a cooldown expires.
//! (The hub keeps one queue entry per device, so no device fills the queue with
//! entries that are ineligible for each other.)

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::ids::{ClientId, Identity};

/// Matching policy.
#[derive(Debug, Clone)]
pub struct MatchConfig {
    pub language_only_after: Duration,
    pub anyone_after: Duration,
    pub cooldown: Duration,
    /// Ineligible heads skipped per index lookup.
    pub max_skip: usize,
    /// Candidates looked at per search, over all its lookups.
    pub max_checks: usize,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            language_only_after: Duration::from_secs(3),
            anyone_after: Duration::from_secs(15),
            cooldown: Duration::from_secs(120),
            max_skip: 64,
            max_checks: 256,
        }
    }
}

/// What a client asks for. Normalised on entry: lowercase, trimmed, de-duplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub languages: Vec<String>,
    pub interests: Vec<String>,
}

impl Preferences {
    pub fn new(languages: &[String], interests: &[String]) -> Self {
        Self {
            languages: normalise(languages),
            interests: normalise(interests),
        }
    }
}

fn normalise(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let item = item.trim().to_lowercase();
        if !item.is_empty() && !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// How well a pair fits; also how long someone must have waited to accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    SharedInterest,
    SharedLanguage,
    Anyone,
}

/// Two clients to connect. `waited_longer` had been in the queue first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub waited_longer: ClientId,
    pub newer: ClientId,
    pub fit: Fit,
    /// Interests both listed, in `waited_longer`'s order.
    pub shared_interests: Vec<String>,
    pub shared_languages: Vec<String>,
}

#[derive(Debug)]
struct Waiting {
    client: ClientId,
    identity: Identity,
    prefs: Preferences,
    seq: u64,
    joined: Instant,
    /// The loosest fit this client accepts now.
    accepts: Fit,
}

/// An ordered index of waiting clients: oldest (lowest sequence number) first.
type Queue = BTreeMap<u64, ClientId>;

/// A canonical unordered pair of devices.
type Pair = (Identity, Identity);

fn pair(a: Identity, b: Identity) -> Pair {
    if a <= b { (a, b) } else { (b, a) }
}

/// The waiting queue and its indexes.
#[derive(Debug, Default)]
pub struct Matchmaker {
    config: MatchConfig,
    next_seq: u64,
    waiting: HashMap<ClientId, Waiting>,
    waiting_by_identity: HashMap<Identity, Vec<ClientId>>,
    /// Everyone, oldest first.
    all: Queue,
    by_language: HashMap<String, Queue>,
    /// language -> interest -> clients: nested so lookups by `&str` need no allocation.
    by_language_interest: HashMap<String, HashMap<String, Queue>>,
    /// Clients who accept a shared language alone, by language.
    language_ready: HashMap<String, Queue>,
    /// Clients who accept anyone.
    anyone_ready: Queue,
    /// (due, seq, client): when each client starts to accept a shared language alone,
    /// in due order. Entries of clients who left or re-joined are skipped by `seq`.
    widen_to_language: VecDeque<(Instant, u64, ClientId)>,
    /// Likewise, when each client starts to accept anyone.
    widen_to_anyone: VecDeque<(Instant, u64, ClientId)>,
    blocked: HashSet<Pair>,
    cooldown_until: HashMap<Pair, Instant>,
    cooldown_expiry: VecDeque<(Instant, Pair)>,
    matches: VecDeque<Match>,
    /// Candidates looked at by every search so far.
    checked: std::cell::Cell<u64>,
}

impl Matchmaker {
    pub fn new(config: MatchConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// How many clients are waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_waiting(&self, client: ClientId) -> bool {
        self.waiting.contains_key(&client)
    }

    /// The clients of `identity`'s device that are waiting.
    pub fn waiting_from(&self, identity: Identity) -> Vec<ClientId> {
        self.waiting_by_identity
            .get(&identity)
            .cloned()
            .unwrap_or_default()
    }

    /// Never match these two devices again.
    pub fn block(&mut self, a: Identity, b: Identity) {
        self.blocked.insert(pair(a, b));
    }

    pub fn is_blocked(&self, a: Identity, b: Identity) -> bool {
        self.blocked.contains(&pair(a, b))
    }

    /// Do not match these two devices again for [`MatchConfig::cooldown`].
    pub fn cool_down(&mut self, a: Identity, b: Identity, now: Instant) {
        let until = now + self.config.cooldown;
        let key = pair(a, b);
        self.cooldown_until.insert(key, until);
        self.cooldown_expiry.push_back((until, key));
    }

    /// Puts a client in the queue, or updates its preferences keeping its place.
    /// A match may become available through [`Self::poll_match`].
    pub fn join(&mut self, client: ClientId, identity: Identity, prefs: Preferences, now: Instant) {
        let (seq, joined) = match self.remove(client) {
            Some(old) => (old.seq, old.joined),
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.widen_to_language.push_back((
                    now + self.config.language_only_after,
                    seq,
                    client,
                ));
                self.widen_to_anyone
                    .push_back((now + self.config.anyone_after, seq, client));
                (seq, now)
            }
        };
        let accepts = self.accepts(&prefs, now.saturating_duration_since(joined));
        let entry = Waiting {
            client,
            identity,
            prefs,
            seq,
            joined,
            accepts,
        };
        self.seek_or_wait(entry, now);
    }

    /// Takes a client out of the queue. Returns whether it was waiting.
    pub fn leave(&mut self, client: ClientId) -> bool {
        self.remove(client).is_some()
    }

    /// Applies every widening and cooldown expiry due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(until, key)) = self.cooldown_expiry.front() {
            if until > now {
                break;
            }
            self.cooldown_expiry.pop_front();
            if self.cooldown_until.get(&key) == Some(&until) {
                self.cooldown_until.remove(&key);
                // Two people who just met may both still be waiting: look again for them.
                for identity in [key.0, key.1] {
                    let clients = self
                        .waiting_by_identity
                        .get(&identity)
                        .cloned()
                        .unwrap_or_default();
                    for client in clients {
                        self.reseek(client, None, now);
                    }
                }
            }
        }
        while let Some(&(due, seq, client)) = self.widen_to_language.front() {
            if due > now {
                break;
            }
            self.widen_to_language.pop_front();
            self.widen(client, seq, Fit::SharedLanguage, now);
        }
        while let Some(&(due, seq, client)) = self.widen_to_anyone.front() {
            if due > now {
                break;
            }
            self.widen_to_anyone.pop_front();
            self.widen(client, seq, Fit::Anyone, now);
        }
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.cooldown_expiry.front().map(|e| e.0),
            self.widen_to_language.front().map(|e| e.0),
            self.widen_to_anyone.front().map(|e| e.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next pair to connect, if any.
    pub fn poll_match(&mut self) -> Option<Match> {
        self.matches.pop_front()
    }

    fn accepts(&self, prefs: &Preferences, waited: Duration) -> Fit {
        if waited >= self.config.anyone_after {
            Fit::Anyone
        } else if waited >= self.config.language_only_after || prefs.interests.is_empty() {
            Fit::SharedLanguage
        } else {
            Fit::SharedInterest
        }
    }

    fn widen(&mut self, client: ClientId, seq: u64, fit: Fit, now: Instant) {
        let current = self.waiting.get(&client);
        if current.is_some_and(|w| w.seq == seq && w.accepts < fit) {
            self.reseek(client, Some(fit), now);
        }
    }

    /// Takes a waiting client out and looks for a partner again, optionally widening.
    fn reseek(&mut self, client: ClientId, widen_to: Option<Fit>, now: Instant) {
        if let Some(mut entry) = self.remove(client) {
            if let Some(fit) = widen_to {
                entry.accepts = entry.accepts.max(fit);
            }
            self.seek_or_wait(entry, now);
        }
    }

    fn seek_or_wait(&mut self, seeker: Waiting, now: Instant) {
        match self.find_partner(&seeker, now) {
            Some((partner, fit)) => {
                let partner = self
                    .remove(partner)
                    .expect("a partner found in an index is waiting");
                self.matches.push_back(make_match(partner, seeker, fit));
            }
            None => self.insert(seeker),
        }
    }

    fn find_partner(&self, seeker: &Waiting, now: Instant) -> Option<(ClientId, Fit)> {
        let budget = std::cell::Cell::new(self.config.max_checks);
        let oldest = |queues: &mut dyn Iterator<Item = &Queue>| {
            queues
                .filter_map(|queue| self.first_eligible(queue, seeker, now, &budget))
                .min()
                .map(|(_, client)| client)
        };
        let prefs = &seeker.prefs;
        let by_interest = prefs.languages.iter().flat_map(|language| {
            let interests = self.by_language_interest.get(language);
            prefs
                .interests
                .iter()
                .filter_map(move |interest| interests.and_then(|m| m.get(interest)))
        });
        if let Some(client) = oldest(&mut { by_interest }) {
            return Some((client, Fit::SharedInterest));
        }
        // A seeker who accepts a shared language takes anyone who speaks it; one who does
        // not yet is offered only to those who already accept a shared language.
        let pool = if seeker.accepts >= Fit::SharedLanguage {
            &self.by_language
        } else {
            &self.language_ready
        };
        let by_language = prefs.languages.iter().filter_map(|l| pool.get(l));
        if let Some(client) = oldest(&mut { by_language }) {
            return Some((client, Fit::SharedLanguage));
        }
        let pool = if seeker.accepts >= Fit::Anyone {
            &self.all
        } else {
            &self.anyone_ready
        };
        self.first_eligible(pool, seeker, now, &budget)
            .map(|(_, client)| (client, Fit::Anyone))
    }

    /// The oldest client in `queue` the seeker may meet, looking at no more than
    /// `max_skip` of them and what is left of the search's `budget`.
    fn first_eligible(
        &self,
        queue: &Queue,
        seeker: &Waiting,
        now: Instant,
        budget: &std::cell::Cell<usize>,
    ) -> Option<(u64, ClientId)> {
        let allowed = self.config.max_skip.min(budget.get());
        let mut looked = 0;
        let found = queue
            .iter()
            .take(allowed)
            .map(|(&seq, &client)| (seq, client))
            .find(|&(_, client)| {
                looked += 1;
                let other = &self.waiting[&client];
                self.may_meet(seeker, other, now)
            });
        budget.set(budget.get() - looked);
        self.checked.set(self.checked.get() + looked as u64);
        found
    }

    /// Candidates looked at so far, over every search (for tests of the bound).
    pub fn candidates_checked(&self) -> u64 {
        self.checked.get()
    }

    fn may_meet(&self, a: &Waiting, b: &Waiting, now: Instant) -> bool {
        let key = pair(a.identity, b.identity);
        a.client != b.client
            && a.identity != b.identity
            && !self.blocked.contains(&key)
            && self
                .cooldown_until
                .get(&key)
                .is_none_or(|&until| until <= now)
    }

    fn insert(&mut self, entry: Waiting) {
        let (seq, client) = (entry.seq, entry.client);
        self.all.insert(seq, client);
        for language in &entry.prefs.languages {
            self.by_language
                .entry(language.clone())
                .or_default()
                .insert(seq, client);
            let interests = self
                .by_language_interest
                .entry(language.clone())
                .or_default();
            for interest in &entry.prefs.interests {
                interests
                    .entry(interest.clone())
                    .or_default()
                    .insert(seq, client);
            }
            if entry.accepts >= Fit::SharedLanguage {
                self.language_ready
                    .entry(language.clone())
                    .or_default()
                    .insert(seq, client);
            }
        }
        if entry.accepts >= Fit::Anyone {
            self.anyone_ready.insert(seq, client);
        }
        self.waiting_by_identity
            .entry(entry.identity)
            .or_default()
            .push(client);
        self.waiting.insert(client, entry);
    }

    fn remove(&mut self, client: ClientId) -> Option<Waiting> {
        let entry = self.waiting.remove(&client)?;
        let seq = entry.seq;
        self.all.remove(&seq);
        self.anyone_ready.remove(&seq);
        for language in &entry.prefs.languages {
            remove_from(&mut self.by_language, language, seq);
            remove_from(&mut self.language_ready, language, seq);
            if let Some(interests) = self.by_language_interest.get_mut(language) {
                for interest in &entry.prefs.interests {
                    remove_from(interests, interest, seq);
                }
                if interests.is_empty() {
                    self.by_language_interest.remove(language);
                }
            }
        }
        if let Some(clients) = self.waiting_by_identity.get_mut(&entry.identity) {
            clients.retain(|&c| c != client);
            if clients.is_empty() {
                self.waiting_by_identity.remove(&entry.identity);
            }
        }
        Some(entry)
    }
}

/// Removes `seq` from the queue under `key`, dropping the queue when it empties so that
/// memory follows the number of waiting clients, not the number of distinct tags seen.
fn remove_from(map: &mut HashMap<String, Queue>, key: &str, seq: u64) {
    if let Some(queue) = map.get_mut(key) {
        queue.remove(&seq);
        if queue.is_empty() {
            map.remove(key);
        }
    }
}

fn make_match(a: Waiting, b: Waiting, fit: Fit) -> Match {
    let (older, newer) = if a.seq < b.seq { (a, b) } else { (b, a) };
    let shared = |mine: &[String], theirs: &[String]| -> Vec<String> {
        mine.iter()
            .filter(|x| theirs.contains(x))
            .cloned()
            .collect()
    };
    Match {
        shared_interests: shared(&older.prefs.interests, &newer.prefs.interests),
        shared_languages: shared(&older.prefs.languages, &newer.prefs.languages),
        waited_longer: older.client,
        newer: newer.client,
        fit,
    }
}

#[cfg(test)]
mod tests;
