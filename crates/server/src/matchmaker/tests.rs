use super::*;

const LANG_AFTER: Duration = Duration::from_secs(3);
const ANYONE_AFTER: Duration = Duration::from_secs(15);
const COOLDOWN: Duration = Duration::from_secs(60);

struct World {
    mm: Matchmaker,
    start: Instant,
    now: Instant,
}

impl World {
    fn new() -> Self {
        let start = Instant::now();
        Self {
            mm: Matchmaker::new(MatchConfig {
                language_only_after: LANG_AFTER,
                anyone_after: ANYONE_AFTER,
                cooldown: COOLDOWN,
                ..MatchConfig::default()
            }),
            start,
            now: start,
        }
    }

    fn join(&mut self, id: u64, languages: &[&str], interests: &[&str]) {
        self.join_as(id, id, languages, interests);
    }

    fn join_as(&mut self, id: u64, device: u64, languages: &[&str], interests: &[&str]) {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let prefs = Preferences::new(&strings(languages), &strings(interests));
        self.mm
            .join(ClientId(id), device_identity(device), prefs, self.now);
    }

    fn advance_to(&mut self, secs: f64) {
        let target = self.start + Duration::from_secs_f64(secs);
        // Step through every deadline in between, as the server's timer loop does.
        while let Some(due) = self.mm.poll_timeout().filter(|&due| due <= target) {
            self.now = self.now.max(due);
            self.mm.handle_timeout(self.now);
        }
        self.now = target;
        self.mm.handle_timeout(self.now);
    }

    fn matches(&mut self) -> Vec<(u64, u64, Fit)> {
        std::iter::from_fn(|| self.mm.poll_match())
            .map(|m| (m.waited_longer.0, m.newer.0, m.fit))
            .collect()
    }
}

fn device_identity(device: u64) -> Identity {
    Identity::from_device_id(&format!("device-{device:016}"))
}

#[test]
fn two_with_a_shared_language_and_interest_match_at_once() {
    let mut w = World::new();
    w.join(1, &["ko"], &["music", "hiking"]);
    assert!(w.matches().is_empty(), "one client alone cannot match");
    w.join(2, &["en", "KO"], &["Hiking"]);
    let m =
        w.mm.poll_match()
            .expect("shared language and interest should match at once");
    assert_eq!((m.waited_longer, m.newer), (ClientId(1), ClientId(2)));
    assert_eq!(m.fit, Fit::SharedInterest);
    assert_eq!(m.shared_interests, vec!["hiking".to_string()], "normalised");
    assert_eq!(m.shared_languages, vec!["ko".to_string()]);
    assert_eq!(w.mm.waiting(), 0);
}

#[test]
fn never_matches_a_device_with_itself() {
    let mut w = World::new();
    w.join_as(1, 7, &["ko"], &["music"]);
    w.join_as(2, 7, &["ko"], &["music"]);
    w.advance_to(60.0);
    assert!(
        w.matches().is_empty(),
        "two connections of one device must not meet"
    );
    assert_eq!(w.mm.waiting(), 2);
    w.join(3, &["ko"], &["music"]);
    assert_eq!(w.matches(), vec![(1, 3, Fit::SharedInterest)]);
}

#[test]
fn a_shared_language_alone_is_accepted_after_waiting() {
    let mut w = World::new();
    w.join(1, &["ko"], &["music"]);
    w.join(2, &["ko"], &["chess"]);
    assert!(
        w.matches().is_empty(),
        "no shared interest: both wait at first"
    );
    w.advance_to(2.9);
    assert!(w.matches().is_empty());
    w.advance_to(3.0);
    assert_eq!(w.matches(), vec![(1, 2, Fit::SharedLanguage)]);
}

#[test]
fn a_newcomer_is_offered_to_someone_who_waited_long_enough() {
    let mut w = World::new();
    w.join(1, &["ko"], &["music"]);
    w.advance_to(5.0);
    w.join(2, &["ko"], &["chess"]);
    assert_eq!(
        w.matches(),
        vec![(1, 2, Fit::SharedLanguage)],
        "client 1 has waited past the language-only step, so it accepts 2 at once"
    );
}

#[test]
fn no_interests_means_any_speaker_of_the_language() {
    let mut w = World::new();
    w.join(1, &["ko"], &["music"]);
    w.join(2, &["ko"], &[]);
    assert_eq!(w.matches(), vec![(1, 2, Fit::SharedLanguage)]);
}

#[test]
fn different_languages_meet_only_after_the_last_widening() {
    let mut w = World::new();
    w.join(1, &["ko"], &["music"]);
    w.join(2, &["en"], &["music"]);
    w.advance_to(14.9);
    assert!(
        w.matches().is_empty(),
        "no shared language before anyone_after"
    );
    w.advance_to(15.0);
    assert_eq!(w.matches(), vec![(1, 2, Fit::Anyone)]);
}

#[test]
fn a_better_fit_wins_over_a_longer_wait() {
    let mut w = World::new();
    w.mm.block(device_identity(1), device_identity(2));
    w.join(1, &["ko"], &["chess"]);
    w.advance_to(4.0); // 1 now accepts any Korean speaker
    w.join(2, &["ko"], &["music"]); // blocked with 1, so waits
    assert!(w.matches().is_empty());
    w.join(3, &["ko"], &["music"]);
    assert_eq!(
        w.matches(),
        vec![(2, 3, Fit::SharedInterest)],
        "3 shares an interest with 2; 1 only a language"
    );
}

#[test]
fn among_equal_fits_the_longest_waiting_wins() {
    let mut w = World::new();
    w.mm.block(device_identity(1), device_identity(2));
    w.join(1, &["ko"], &["music"]);
    w.join(2, &["ko"], &["music"]);
    w.join(3, &["ko"], &["music"]);
    assert_eq!(w.matches(), vec![(1, 3, Fit::SharedInterest)]);
}

#[test]
fn blocked_pairs_never_meet() {
    let mut w = World::new();
    w.mm.block(device_identity(2), device_identity(1));
    assert!(
        w.mm.is_blocked(device_identity(1), device_identity(2)),
        "symmetric"
    );
    w.join(1, &["ko"], &["music"]);
    w.join(2, &["ko"], &["music"]);
    w.advance_to(3600.0);
    assert!(
        w.matches().is_empty(),
        "a block holds however long both wait"
    );
}

#[test]
fn a_pair_in_cooldown_waits_and_then_meets() {
    let mut w = World::new();
    w.mm.cool_down(device_identity(1), device_identity(2), w.now);
    w.join(1, &["ko"], &["music"]);
    w.join(2, &["ko"], &["music"]);
    w.advance_to(59.0);
    assert!(
        w.matches().is_empty(),
        "they just met: not again during the cooldown"
    );
    w.join(3, &["ko"], &["music"]);
    assert_eq!(
        w.matches(),
        vec![(1, 3, Fit::SharedInterest)],
        "others are fine"
    );
    w.join(4, &["ko"], &["music"]);
    assert_eq!(w.matches(), vec![(2, 4, Fit::SharedInterest)]);
    w.join(1, &["ko"], &["music"]);
    w.join(2, &["ko"], &["music"]);
    w.advance_to(60.0);
    assert_eq!(
        w.matches(),
        vec![(1, 2, Fit::SharedInterest)],
        "cooldown over"
    );
}

#[test]
fn a_renewed_cooldown_is_not_cut_short_by_the_old_expiry() {
    let mut w = World::new();
    w.mm.cool_down(device_identity(1), device_identity(2), w.now);
    w.advance_to(30.0);
    w.mm.cool_down(device_identity(1), device_identity(2), w.now);
    w.join(1, &["ko"], &["music"]);
    w.join(2, &["ko"], &["music"]);
    w.advance_to(61.0);
    assert!(w.matches().is_empty(), "the second cooldown runs to 90 s");
    w.advance_to(90.0);
    assert_eq!(w.matches().len(), 1);
}

#[test]
fn leaving_and_rejoining() {
    let mut w = World::new();
    w.join(1, &["ko"], &["music"]);
    assert!(w.mm.leave(ClientId(1)));
    assert!(!w.mm.leave(ClientId(1)), "leaving twice is harmless");
    w.join(2, &["ko"], &["music"]);
    assert!(w.matches().is_empty(), "1 left the queue");
    // Changing preferences keeps the place in the queue.
    w.join(3, &["en"], &["chess"]);
    w.advance_to(1.0);
    w.join(3, &["en"], &["music"]);
    w.join(2, &["en"], &["music"]);
    assert_eq!(
        w.matches(),
        vec![(2, 3, Fit::SharedInterest)],
        "2 kept its place"
    );
}

#[test]
fn poll_timeout_names_the_next_widening() {
    let mut w = World::new();
    assert_eq!(w.mm.poll_timeout(), None, "nothing to wait for");
    w.join(1, &["ko"], &["music"]);
    assert_eq!(w.mm.poll_timeout(), Some(w.start + LANG_AFTER));
}

/// A deterministic random walk over joins, leaves, blocks, cooldowns and time, checking
/// the rules on every match and that the indexes hold exactly the waiting clients.
#[test]
fn random_operations_keep_every_rule() {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let languages = ["ko", "en", "ja", "es"];
    let interests = ["music", "games", "films", "food", "sport"];
    let mut w = World::new();
    let mut in_call = std::collections::HashSet::new();
    let mut clock = 0.0;
    let mut matched = 0;
    for step in 0..20_000u64 {
        let id = next(400);
        let device = id % 300; // some devices have two connections
        match next(10) {
            0..=4 if !in_call.contains(&id) => {
                let l = [languages[next(4) as usize], languages[next(4) as usize]];
                let i = [interests[next(5) as usize]];
                let n_interests = next(2) as usize;
                w.join_as(id, device, &l, &i[..n_interests]);
            }
            5 => {
                w.mm.leave(ClientId(id));
            }
            6 => {
                w.mm.block(device_identity(device), device_identity(next(300)))
            }
            7 => in_call.retain(|&c| c % 3 != step % 3),
            _ => {
                clock += next(2000) as f64 / 1000.0;
                w.advance_to(clock);
            }
        }
        while let Some(m) = w.mm.poll_match() {
            matched += 1;
            let (a, b) = (m.waited_longer.0, m.newer.0);
            let (da, db) = (device_identity(a % 300), device_identity(b % 300));
            assert_ne!(da, db, "a device met itself");
            assert!(!w.mm.is_blocked(da, db), "a blocked pair met");
            assert!(!w.mm.is_waiting(m.waited_longer) && !w.mm.is_waiting(m.newer));
            assert!(
                in_call.insert(a) && in_call.insert(b),
                "matched while in a call"
            );
            w.mm.cool_down(da, db, w.now);
        }
        let mm = &w.mm;
        assert_eq!(mm.all.len(), mm.waiting.len());
        for (client, entry) in &mm.waiting {
            assert_eq!(mm.all.get(&entry.seq), Some(client));
        }
    }
    assert!(
        matched > 100,
        "the walk should produce matches, got {matched}"
    );
    for id in 0..400 {
        w.mm.leave(ClientId(id));
    }
    let mm = &w.mm;
    assert!(
        mm.all.is_empty()
            && mm.by_language.is_empty()
            && mm.by_language_interest.is_empty()
            && mm.language_ready.is_empty()
            && mm.anyone_ready.is_empty()
            && mm.waiting_by_identity.is_empty(),
        "indexes must empty when the queue does"
    );
}

#[test]
fn tens_of_thousands_waiting_still_match_the_right_one() {
    let mut w = World::new();
    for id in 0..40_000u64 {
        let language = format!("x{id}");
        w.join(id, &[&language], &["music"]);
    }
    assert!(w.matches().is_empty(), "nobody shares a language");
    assert_eq!(w.mm.waiting(), 40_000);
    w.join(99_999, &["x20000"], &["music"]);
    assert_eq!(w.matches(), vec![(20_000, 99_999, Fit::SharedInterest)]);
    w.advance_to(15.0);
    assert_eq!(
        w.matches().len(),
        19_999,
        "after the last widening everyone pairs up"
    );
    assert_eq!(
        w.mm.waiting(),
        1,
        "39,999 left after the first match: one stays odd"
    );
}

/// An adversarial queue: thousands waiting in every index the seeker looks in (8
/// languages × 16 interests), all from one device (so they never meet each other) which
/// the seeker has blocked. A search still looks at a bounded number of candidates,
/// whatever the queue holds. (The hub also keeps one entry per device; this is the
/// matchmaker's own bound.)
#[test]
fn a_search_looks_at_a_bounded_number_of_candidates() {
    let mut w = World::new();
    let languages: Vec<String> = (0..8).map(|i| format!("l{i}a")).collect();
    let interests: Vec<String> = (0..16).map(|i| format!("interest{i}")).collect();
    let langs: Vec<&str> = languages.iter().map(String::as_str).collect();
    let ints: Vec<&str> = interests.iter().map(String::as_str).collect();
    let (seeker_device, crowd) = (1_000_000, 7);
    w.mm.block(device_identity(seeker_device), device_identity(crowd));
    for id in 0..4_000 {
        w.join_as(id, crowd, &langs, &ints);
    }
    assert!(w.matches().is_empty(), "one device never meets itself");
    let before = w.mm.candidates_checked();
    // The seeker waits long enough to accept anyone: every index is searched.
    w.advance_to(60.0);
    let _ = w.matches();
    let widening = w.mm.candidates_checked();
    w.join_as(seeker_device, seeker_device, &langs, &ints);
    let checked = w.mm.candidates_checked() - widening;
    assert!(
        checked <= MatchConfig::default().max_checks as u64,
        "one search looked at {checked} candidates (widening everyone took {})",
        widening - before
    );
    assert!(w.matches().is_empty(), "everyone is blocked");
}
