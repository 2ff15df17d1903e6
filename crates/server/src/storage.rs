//! Durable moderation state in SQLite: reports, blocks and ratings, with schema
//! migrations. Plain blocking SQLite and nothing else: the server writes through one
//! dedicated thread (`hub_task::spawn_writer`), never from async tasks. Writes use WAL
//! with `synchronous = FULL`, so a record acknowledged to a client survives a crash of
//! the process or the machine.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::hub::Record;
use crate::ids::Identity;

/// Schema steps, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_ratings.sql"),
];

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

    pub fn store(&self, record: &Record, now_unix: i64) -> Result<(), StorageError> {
        let result = match record {
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
        result.map(drop).map_err(|source| StorageError::Sqlite {
            path: self.path.clone(),
            source,
        })
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
            let storage = Storage::open(dir.path()).expect("open");
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
        let storage = Storage::open(dir.path()).expect("open");
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
