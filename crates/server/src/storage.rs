//! Durable state in SQLite: reports, blocks, ratings, friendships and pending friend
//! requests, with schema migrations. Plain blocking SQLite and nothing else: the server writes through one
//! dedicated thread (`hub_task::spawn_writer`), never from async tasks. Writes use WAL
//! with `synchronous = FULL`, so a record acknowledged to a client survives a crash of
//! the process or the machine.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use chingu_proto::{CallId, FriendId};

use crate::hub::Record;
use crate::ids::Identity;

/// Schema steps, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_ratings.sql"),
    include_str!("../migrations/0003_friends.sql"),
];

/// A friendship as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFriendship {
    pub id: FriendId,
    pub devices: [Identity; 2],
    /// Each device's nickname when they met, as the other saw it.
    pub nicknames: [String; 2],
    pub last_call_unix: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this server's {known}; upgrade the server"
    )]
    TooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
}

#[derive(Debug)]
pub struct Storage {
    conn: Connection,
    path: PathBuf,
}

impl Storage {
    /// Opens (creating if needed) `chingu.sqlite3` in `dir` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("chingu.sqlite3");
        let sql = |source| StorageError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        let version: usize = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sql)?;
        if version > MIGRATIONS.len() {
            return Err(StorageError::TooNew {
                path,
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (step, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(sql)?;
            tx.execute_batch(migration).map_err(sql)?;
            tx.pragma_update(None, "user_version", step + 1)
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        Ok(Self { conn, path })
    }

    /// Every stored block, as (blocker, blocked). Rows that do not parse are skipped with a
    /// warning rather than stopping the server.
    pub fn blocks(&self) -> Result<Vec<(Identity, Identity)>, StorageError> {
        let sql = |source| StorageError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut stmt = self
            .conn
            .prepare("SELECT blocker, blocked FROM blocks")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sql)?;
        let mut blocks = Vec::new();
        for row in rows {
            let (a, b) = row.map_err(sql)?;
            match (Identity::from_hex(&a), Identity::from_hex(&b)) {
                (Some(a), Some(b)) => blocks.push((a, b)),
                _ => tracing::warn!(blocker = %a, blocked = %b, "skipping a malformed block row"),
            }
        }
        Ok(blocks)
    }

    /// Every stored friendship. Rows that do not parse are skipped with a warning.
    pub fn friendships(&self) -> Result<Vec<StoredFriendship>, StorageError> {
        let sql = |source| StorageError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut stmt = self
            .conn
            .prepare("SELECT id, a, b, a_nickname, b_nickname, last_call_at FROM friendships")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, a, b, a_nickname, b_nickname, last) = row.map_err(sql)?;
            match (Identity::from_hex(&a), Identity::from_hex(&b)) {
                (Some(a), Some(b)) => out.push(StoredFriendship {
                    id: FriendId(id),
                    devices: [a, b],
                    nicknames: [a_nickname, b_nickname],
                    last_call_unix: u64::try_from(last).unwrap_or(0),
                }),
                _ => tracing::warn!(%id, "skipping a malformed friendship row"),
            }
        }
        Ok(out)
    }

    /// Stores many friendships in one transaction (load tests, imports): a fsync per row
    /// would take minutes for a few hundred thousand.
    pub fn seed_friendships(
        &mut self,
        rows: &[StoredFriendship],
        at_unix: i64,
    ) -> Result<(), StorageError> {
        let path = self.path.clone();
        let sql = move |source| StorageError::Sqlite { path, source };
        let tx = self.conn.transaction().map_err(sql.clone())?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO friendships (id, a, b, a_nickname, b_nickname, created_at, \
                     last_call_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )
                .map_err(sql.clone())?;
            for f in rows {
                insert
                    .execute(params![
                        f.id.0,
                        f.devices[0].to_hex(),
                        f.devices[1].to_hex(),
                        f.nicknames[0],
                        f.nicknames[1],
                        at_unix
                    ])
                    .map_err(sql.clone())?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Friend requests not yet expired at `now_unix`, as [`Record::FriendRequest`]s;
    /// expired ones are deleted.
    pub fn friend_requests(&self, now_unix: i64) -> Result<Vec<Record>, StorageError> {
        let sql = |source| StorageError::Sqlite {
            path: self.path.clone(),
            source,
        };
        self.conn
            .execute(
                "DELETE FROM friend_requests WHERE expires_at <= ?1",
                [now_unix],
            )
            .map_err(sql)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT call_id, requester, requested, requester_nickname, requested_nickname, \
                 expires_at FROM friend_requests",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (call_id, from, to, from_nickname, to_nickname, expires) = row.map_err(sql)?;
            match (Identity::from_hex(&from), Identity::from_hex(&to)) {
                (Some(from), Some(to)) => out.push(Record::FriendRequest {
                    call_id: CallId(call_id),
                    from,
                    to,
                    from_nickname,
                    to_nickname,
                    expires_unix: u64::try_from(expires).unwrap_or(0),
                }),
                _ => tracing::warn!(%call_id, "skipping a malformed friend request row"),
            }
        }
        Ok(out)
    }

    pub fn store(&mut self, record: &Record, now_unix: i64) -> Result<(), StorageError> {
        let path = self.path.clone();
        let sql = move |source| StorageError::Sqlite { path, source };
        let unix = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        let result = match record {
            Record::FriendRequest {
                call_id,
                from,
                to,
                from_nickname,
                to_nickname,
                expires_unix,
            } => self.conn.execute(
                "INSERT OR REPLACE INTO friend_requests (call_id, requester, requested, \
                 requester_nickname, requested_nickname, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    call_id.0,
                    from.to_hex(),
                    to.to_hex(),
                    from_nickname,
                    to_nickname,
                    unix(*expires_unix)
                ],
            ),
            Record::Friendship {
                id,
                call_id,
                a,
                b,
                a_nickname,
                b_nickname,
                at_unix,
            } => {
                // The friendship and the end of the call's requests, together.
                let tx = self.conn.transaction().map_err(sql.clone())?;
                tx.execute(
                    "INSERT INTO friendships (id, a, b, a_nickname, b_nickname, created_at, \
                     last_call_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![
                        id.0,
                        a.to_hex(),
                        b.to_hex(),
                        a_nickname,
                        b_nickname,
                        unix(*at_unix)
                    ],
                )
                .map_err(sql.clone())?;
                tx.execute(
                    "DELETE FROM friend_requests WHERE call_id = ?1",
                    [&call_id.0],
                )
                .map_err(sql.clone())?;
                tx.commit().map(|()| 0)
            }
            Record::Unfriend { id } => self
                .conn
                .execute("DELETE FROM friendships WHERE id = ?1", [&id.0]),
            Record::FriendsTalked { id, at_unix } => self.conn.execute(
                "UPDATE friendships SET last_call_at = ?2 WHERE id = ?1",
                params![id.0, unix(*at_unix)],
            ),
            Record::Report {
                reporter,
                reported,
                call_id,
                reason,
                note,
            } => self.conn.execute(
                "INSERT INTO reports (created_at, call_id, reporter, reported, reason, note) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    now_unix,
                    call_id.0,
                    reporter.to_hex(),
                    reported.to_hex(),
                    reason.as_str(),
                    note
                ],
            ),
            Record::Rating {
                rater,
                call_id,
                stars,
            } => self.conn.execute(
                "INSERT OR REPLACE INTO ratings (call_id, rater, stars, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![call_id.0, rater.to_hex(), stars, now_unix],
            ),
            Record::Block { blocker, blocked } => self.conn.execute(
                "INSERT OR IGNORE INTO blocks (blocker, blocked, created_at) VALUES (?1, ?2, ?3)",
                params![blocker.to_hex(), blocked.to_hex(), now_unix],
            ),
        };
        result.map(drop).map_err(sql)
    }

    /// How many reports name this device; for moderation tools and tests.
    pub fn reports_against(&self, reported: Identity) -> Result<u64, StorageError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM reports WHERE reported = ?1",
                [reported.to_hex()],
                |row| row.get(0),
            )
            .map_err(|source| StorageError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chingu_proto::{CallId, ReportReason};

    fn id(n: u8) -> Identity {
        Identity([n; 16])
    }

    #[test]
    fn records_survive_reopening() {
        let dir = chingu_testkit::tempdir().expect("temp dir");
        {
            let mut storage = Storage::open(dir.path()).expect("open");
            let block = Record::Block {
                blocker: id(1),
                blocked: id(2),
            };
            storage.store(&block, 1).expect("block");
            storage
                .store(&block, 2)
                .expect("a repeated block is not an error");
            storage
                .store(
                    &Record::Report {
                        reporter: id(1),
                        reported: id(2),
                        call_id: CallId("c1".into()),
                        reason: ReportReason::Spam,
                        note: None,
                    },
                    3,
                )
                .expect("report");
        }
        let storage = Storage::open(dir.path()).expect("reopen");
        assert_eq!(storage.blocks().expect("blocks"), vec![(id(1), id(2))]);
        assert_eq!(storage.reports_against(id(2)).expect("count"), 1);
    }

    #[test]
    fn a_rating_is_stored_once_per_call_and_person() {
        let dir = chingu_testkit::tempdir().expect("temp dir");
        let mut storage = Storage::open(dir.path()).expect("open");
        let rating = |stars| Record::Rating {
            rater: id(1),
            call_id: CallId("c1".into()),
            stars,
        };
        storage.store(&rating(2), 1).expect("rating");
        storage.store(&rating(5), 2).expect("a changed rating");
        let stars: Vec<(String, u8)> = storage
            .conn
            .prepare("SELECT rater, stars FROM ratings")
            .expect("query")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(stars, vec![(id(1).to_hex(), 5)]);
        // The schema refuses what the protocol refuses.
        assert!(storage.store(&rating(9), 3).is_err());
    }

    #[test]
    fn friendships_and_requests_survive_reopening_and_expired_requests_do_not() {
        let dir = chingu_testkit::tempdir().expect("temp dir");
        let request = |call: &str, expires_unix| Record::FriendRequest {
            call_id: CallId(call.into()),
            from: id(1),
            to: id(2),
            from_nickname: "민지".into(),
            to_nickname: "Sam".into(),
            expires_unix,
        };
        {
            let mut storage = Storage::open(dir.path()).expect("open");
            storage.store(&request("c1", 100), 10).expect("request");
            storage.store(&request("c2", 1000), 10).expect("request");
            storage.store(&request("c3", 1000), 10).expect("request");
            // c3 returned: friends, and its request is gone.
            storage
                .store(
                    &Record::Friendship {
                        id: FriendId("f1".into()),
                        call_id: CallId("c3".into()),
                        a: id(1),
                        b: id(2),
                        a_nickname: "민지".into(),
                        b_nickname: "Sam".into(),
                        at_unix: 50,
                    },
                    50,
                )
                .expect("friendship");
            storage
                .store(
                    &Record::FriendsTalked {
                        id: FriendId("f1".into()),
                        at_unix: 70,
                    },
                    70,
                )
                .expect("talked");
            // The same pair cannot be friends twice, in either order.
            let twice = Record::Friendship {
                id: FriendId("f2".into()),
                call_id: CallId("c4".into()),
                a: id(2),
                b: id(1),
                a_nickname: "Sam".into(),
                b_nickname: "민지".into(),
                at_unix: 80,
            };
            assert!(storage.store(&twice, 80).is_err());
        }
        let mut storage = Storage::open(dir.path()).expect("reopen");
        assert_eq!(
            storage.friendships().expect("friendships"),
            vec![StoredFriendship {
                id: FriendId("f1".into()),
                devices: [id(1), id(2)],
                nicknames: ["민지".into(), "Sam".into()],
                last_call_unix: 70,
            }]
        );
        // At 200, c1's request has expired (and is deleted); c2's stands.
        assert_eq!(
            storage.friend_requests(200).expect("requests"),
            vec![request("c2", 1000)]
        );
        storage
            .store(
                &Record::Unfriend {
                    id: FriendId("f1".into()),
                },
                300,
            )
            .expect("unfriend");
        assert_eq!(storage.friendships().expect("friendships"), vec![]);
        let left: i64 = storage
            .conn
            .query_row("SELECT COUNT(*) FROM friend_requests", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 1);
    }

    #[test]
    fn a_database_from_a_newer_server_is_refused() {
        let dir = chingu_testkit::tempdir().expect("temp dir");
        drop(Storage::open(dir.path()).expect("open"));
        let conn = Connection::open(dir.path().join("chingu.sqlite3")).expect("raw open");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let err = Storage::open(dir.path()).expect_err("schema 99 is unknown");
        assert!(
            matches!(err, StorageError::TooNew { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn malformed_rows_are_skipped() {
        let dir = chingu_testkit::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path()).expect("open");
        storage
            .conn
            .execute("INSERT INTO blocks VALUES ('nothex', 'x', 0)", [])
            .expect("raw insert");
        assert_eq!(storage.blocks().expect("blocks"), vec![]);
    }
}
