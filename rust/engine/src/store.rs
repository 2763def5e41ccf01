//! The SQLite store: invocations, journals, timers, virtual-object state and idempotency keys.
//!
//! One [`Store`] owns one SQLite connection in WAL mode. Everything the engine changes goes
//! through [`Store::commit`], which writes a whole [`Batch`] (one group commit) in a single
//! `BEGIN IMMEDIATE` … `COMMIT` transaction: either all of it is on disk or none of it is.
//! With [`Durability::Fsync`] the commit returns only after the WAL has been fsynced, so the
//! engine may hand a completion to a handler or a client as soon as `commit` returns.
//!
//! The file is marked with an `application_id` (so a foreign SQLite database is refused
//! instead of being altered) and carries its schema version in `user_version`; migrations
//! run on open, and a database written by a newer version of durable-futures is refused.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use crate::model::{
    Batch, Caller, FailureInfo, InvocationId, InvocationRow, Outcome, PromiseKey, StateOp, Status,
    TimerRow,
};
use crate::query::{self, QueryResult, MAX_QUERY_ROWS, QUERY_TIME_LIMIT};

/// `PRAGMA application_id` of every durable-futures database: the ASCII bytes `DFut`.
pub const APPLICATION_ID: i32 = 0x4446_7574;

/// Schema migrations: `MIGRATIONS[i]` upgrades a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE invocations (
        id BLOB PRIMARY KEY,
        service TEXT NOT NULL,
        handler TEXT NOT NULL,
        key TEXT NOT NULL,
        idempotency_key TEXT NULL,
        status INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        next_retry_at INTEGER NOT NULL,
        caller_id BLOB NULL,
        caller_completion INTEGER NULL,
        created_at INTEGER NOT NULL,
        outcome_kind INTEGER NULL,
        outcome_value BLOB NULL,
        failure_code INTEGER NULL,
        failure_message TEXT NULL
    );
    CREATE INDEX invocations_status ON invocations(status);
    CREATE TABLE journal (
        invocation BLOB NOT NULL,
        idx INTEGER NOT NULL,
        frame BLOB NOT NULL,
        PRIMARY KEY (invocation, idx)
    ) WITHOUT ROWID;
    CREATE TABLE timers (
        invocation BLOB NOT NULL,
        completion_id INTEGER NOT NULL,
        wake_at INTEGER NOT NULL,
        PRIMARY KEY (invocation, completion_id)
    );
    CREATE INDEX timers_wake_at ON timers(wake_at);
    CREATE TABLE state (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (service, key, name)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency (
        service TEXT NOT NULL,
        handler TEXT NOT NULL,
        key TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        invocation BLOB NOT NULL,
        PRIMARY KEY (service, handler, key, idempotency_key)
    ) WITHOUT ROWID;",
    // v2: callers attached to a running invocation through an idempotency key (they were
    // kept in memory only, and lost their answer when the engine restarted).
    "CREATE TABLE attached_callers (
        callee BLOB NOT NULL,
        caller BLOB NOT NULL,
        completion_id INTEGER NOT NULL,
        PRIMARY KEY (callee, caller, completion_id)
    ) WITHOUT ROWID;",
    // v3: journal entries keyed by one integer, `seq << 32 | idx` (`seq` numbers the
    // invocations): an invocation's appends go to the end of its key range, which SQLite
    // fills page by page, instead of into an index keyed by a 16-byte id, which it splits
    // and rebalances over three pages. About half the pages written per step. The view
    // `journal` keeps the old shape for readers of the file.
    "ALTER TABLE invocations ADD COLUMN seq INTEGER;
    UPDATE invocations SET seq = rowid;
    CREATE UNIQUE INDEX invocations_seq ON invocations(seq);
    CREATE TABLE journal_entries (k INTEGER PRIMARY KEY, frame BLOB NOT NULL);
    INSERT INTO journal_entries (k, frame)
        SELECT (inv.seq << 32) | j.idx, j.frame
        FROM journal j JOIN invocations inv ON inv.id = j.invocation;
    DROP TABLE journal;
    CREATE VIEW journal (invocation, idx, frame) AS
        SELECT inv.id, e.k & 4294967295, e.frame
        FROM journal_entries e JOIN invocations inv ON inv.seq = e.k >> 32;",
    // v4: what an operator needs: the last failure of each invocation and the command it
    // failed at, when each row last changed and when it completed, when a completed one may
    // be deleted, and whether it was cancelled. Invocations completed before get the
    // default retention (one day) counted from their creation, the only time known of them.
    "ALTER TABLE invocations ADD COLUMN last_failure_code INTEGER NULL;
    ALTER TABLE invocations ADD COLUMN last_failure_message TEXT NULL;
    ALTER TABLE invocations ADD COLUMN last_failure_stacktrace TEXT NULL;
    ALTER TABLE invocations ADD COLUMN last_failure_command_index INTEGER NULL;
    ALTER TABLE invocations ADD COLUMN last_failure_command_type TEXT NULL;
    ALTER TABLE invocations ADD COLUMN last_failure_command_name TEXT NULL;
    ALTER TABLE invocations ADD COLUMN modified_at INTEGER NOT NULL DEFAULT 0;
    UPDATE invocations SET modified_at = created_at;
    ALTER TABLE invocations ADD COLUMN completed_at INTEGER NULL;
    ALTER TABLE invocations ADD COLUMN expires_at INTEGER NULL;
    UPDATE invocations SET expires_at = created_at + 86400000 WHERE status = 2;
    ALTER TABLE invocations ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX invocations_expires_at ON invocations(expires_at)
        WHERE expires_at IS NOT NULL;",
    // v5: workflows. Durable promises of a workflow instance (a value or a failure, set
    // once), the invocations waiting for one, and the invocations attached to another's
    // result. They live as long as the workflow's run invocation (purged with it).
    "CREATE TABLE promises (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        value BLOB NULL,
        failure_code INTEGER NULL,
        failure_message TEXT NULL,
        PRIMARY KEY (service, key, name)
    ) WITHOUT ROWID;
    CREATE TABLE promise_waiters (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        waiter BLOB NOT NULL,
        completion_id INTEGER NOT NULL,
        PRIMARY KEY (service, key, name, waiter, completion_id)
    ) WITHOUT ROWID;
    CREATE TABLE attach_waiters (
        callee BLOB NOT NULL,
        waiter BLOB NOT NULL,
        completion_id INTEGER NOT NULL,
        PRIMARY KEY (callee, waiter, completion_id)
    ) WITHOUT ROWID;",
];

/// Page size of databases this code creates, in bytes.
pub const NEW_DB_PAGE_SIZE: i64 = 1024;

/// Pages the WAL may hold before a commit checkpoints them into the database (SQLite's
/// default, made explicit because [`WAL_PREALLOCATED_BYTES`] is sized from it).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 1000;

/// Size the WAL file is given up front: room for a checkpoint interval of 1 KiB pages with
/// their frame headers, and as much again for a large transaction.
const WAL_PREALLOCATED_BYTES: i64 = 2 * WAL_AUTOCHECKPOINT_PAGES * (NEW_DB_PAGE_SIZE + 24) + 32;

/// The newest schema version this code knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Columns of `invocations`, in the order [`bind_invocation`] binds and [`read_invocation`]
/// reads them.
const INVOCATION_COLUMNS: &str = "id, service, handler, key, idempotency_key, status, attempt, \
     next_retry_at, caller_id, caller_completion, created_at, outcome_kind, outcome_value, \
     failure_code, failure_message, last_failure_code, last_failure_message, \
     last_failure_stacktrace, last_failure_command_index, last_failure_command_type, \
     last_failure_command_name, modified_at, completed_at, expires_at, cancel_requested";

const INSERT_INVOCATION: &str = "INSERT INTO invocations (id, service, handler, key, \
     idempotency_key, status, attempt, next_retry_at, caller_id, caller_completion, created_at, \
     outcome_kind, outcome_value, failure_code, failure_message, last_failure_code, \
     last_failure_message, last_failure_stacktrace, last_failure_command_index, \
     last_failure_command_type, last_failure_command_name, modified_at, completed_at, \
     expires_at, cancel_requested, seq) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)";

/// Updates the row (its `seq` stays); inserts it if missing (never expected).
const UPSERT_INVOCATION: &str = "INSERT INTO invocations (id, service, handler, key, \
     idempotency_key, status, attempt, next_retry_at, caller_id, caller_completion, created_at, \
     outcome_kind, outcome_value, failure_code, failure_message, last_failure_code, \
     last_failure_message, last_failure_stacktrace, last_failure_command_index, \
     last_failure_command_type, last_failure_command_name, modified_at, completed_at, \
     expires_at, cancel_requested, seq) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26) \
     ON CONFLICT (id) DO UPDATE SET service = excluded.service, handler = excluded.handler, \
     key = excluded.key, idempotency_key = excluded.idempotency_key, status = excluded.status, \
     attempt = excluded.attempt, next_retry_at = excluded.next_retry_at, \
     caller_id = excluded.caller_id, caller_completion = excluded.caller_completion, \
     created_at = excluded.created_at, outcome_kind = excluded.outcome_kind, \
     outcome_value = excluded.outcome_value, failure_code = excluded.failure_code, \
     failure_message = excluded.failure_message, \
     last_failure_code = excluded.last_failure_code, \
     last_failure_message = excluded.last_failure_message, \
     last_failure_stacktrace = excluded.last_failure_stacktrace, \
     last_failure_command_index = excluded.last_failure_command_index, \
     last_failure_command_type = excluded.last_failure_command_type, \
     last_failure_command_name = excluded.last_failure_command_name, \
     modified_at = excluded.modified_at, completed_at = excluded.completed_at, \
     expires_at = excluded.expires_at, cancel_requested = excluded.cancel_requested";

/// How hard a commit works to be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `PRAGMA synchronous=FULL` in WAL mode: every commit fsyncs the WAL before returning,
    /// so a completion is on disk before anyone sees it. The default.
    #[default]
    Fsync,
    /// `PRAGMA synchronous=OFF`: writes are handed to the operating system and not fsynced.
    /// Survives a crash of the process but not of the machine. For tests.
    Os,
}

/// What went wrong in the store. Every message names the database file.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The file is a SQLite database of some other application (or one that is not empty and
    /// lacks the durable-futures `application_id`). It was not modified.
    Foreign(PathBuf, String),
    /// The file is not a SQLite database at all, or is damaged.
    Corrupt(PathBuf, String),
    /// The database was written by a newer version of durable-futures.
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version found in the file.
        found: u32,
        /// The newest schema version this code supports.
        supported: u32,
    },
    /// A write failed because the disk (or the database's size limit) is full. The
    /// transaction was rolled back: nothing of the batch was written, and the store stays
    /// usable.
    Full(PathBuf, String),
    /// Any other SQLite error.
    Sqlite(PathBuf, rusqlite::Error),
}

impl StoreError {
    /// The database file the error is about (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        match self {
            StoreError::Foreign(p, _)
            | StoreError::Corrupt(p, _)
            | StoreError::Full(p, _)
            | StoreError::Sqlite(p, _) => p,
            StoreError::NewerSchema { path, .. } => path,
        }
    }

    /// Classifies a SQLite error: disk full and damaged files get their own variants.
    fn from_sqlite(path: &Path, err: rusqlite::Error) -> StoreError {
        match err.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full(path.to_path_buf(), err.to_string()),
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt(path.to_path_buf(), err.to_string())
            }
            _ => StoreError::Sqlite(path.to_path_buf(), err),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Foreign(path, detail) => write!(
                f,
                "{} is not a durable-futures database ({detail}); it was left untouched: \
                 choose another file for the database, or move this one away",
                path.display()
            ),
            StoreError::Corrupt(path, detail) => write!(
                f,
                "{} is not a database or is damaged: {detail}; restore it from a backup, or \
                 move it away to start with an empty database",
                path.display()
            ),
            StoreError::NewerSchema {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has schema version {found}, but this version of durable-futures knows \
                 versions up to {supported}: it was written by a newer durable-futures; \
                 upgrade durable-futures to open it",
                path.display()
            ),
            StoreError::Full(path, detail) => write!(
                f,
                "cannot write to {}: the disk is full ({detail}); the commit was rolled back \
                 and nothing of it was saved: free disk space and retry",
                path.display()
            ),
            StoreError::Sqlite(path, err) => {
                write!(f, "database {}: SQLite error: {err}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite(_, err) => Some(err),
            _ => None,
        }
    }
}

/// The durable store of the embedded engine: one SQLite connection.
///
/// Reads (`invocation`, `journal`, …) see everything committed so far. All writes go through
/// [`Store::commit`].
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// `invocations.seq` of invocations written through this store and not completed: the
    /// journal key of each append, without a lookup.
    seqs: HashMap<InvocationId, i64>,
    /// The `seq` of the next new invocation.
    next_seq: i64,
    /// The introspection views and functions are installed on the connection.
    introspection: bool,
}

/// How many `seq`s [`Store`] remembers before it starts over (they are looked up again).
const SEQ_CACHE_LIMIT: usize = 100_000;

/// The journal numbering of invocation `id`, from the file.
fn lookup_seq(conn: &Connection, id: &InvocationId) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT seq FROM invocations WHERE id = ?1")?
        .query_row(params![id.0], |r| r.get(0))
        .optional()
}

/// The journal key range of the invocation numbered `seq`.
fn journal_keys(seq: i64) -> (i64, i64) {
    (seq << 32, (seq + 1) << 32)
}

impl Store {
    /// Opens (or creates) the database at `path`.
    ///
    /// A missing or empty file becomes a fresh database. A SQLite database of another
    /// application is refused with [`StoreError::Foreign`] without being modified; a file that
    /// is not a SQLite database with [`StoreError::Corrupt`]; a database of a newer
    /// durable-futures with [`StoreError::NewerSchema`]. Older schemas are migrated.
    pub fn open(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|e| StoreError::from_sqlite(path, e))?;
        Store::init(conn, path.to_path_buf(), durability)
    }

    /// Opens a fresh in-memory database (nothing survives the `Store`). For tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| StoreError::from_sqlite(&path, e))?;
        Store::init(conn, path, Durability::Os)
    }

    /// The database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Caps the database at about `bytes` (SQLite's `max_page_count`, rounded down to whole
    /// pages and never below the current size; it holds for this connection and is not
    /// stored in the file). A commit that would grow the database beyond the cap fails with
    /// [`StoreError::Full`] and is rolled back, exactly as on a full disk. `None` lifts the
    /// cap. For tests of full-disk handling, and to bound a database's growth.
    pub fn set_size_limit(&mut self, bytes: Option<u64>) -> Result<(), StoreError> {
        let page_size: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let pages = match bytes {
            Some(b) => (b / page_size.max(1) as u64).clamp(1, i64::MAX as u64) as i64,
            None => i64::from(u32::MAX - 1), // SQLite clamps this to its own maximum
        };
        self.conn
            .pragma_update(None, "max_page_count", pages)
            .map_err(|e| self.err(e))
    }

    fn init(conn: Connection, path: PathBuf, durability: Durability) -> Result<Store, StoreError> {
        let sql = |e| StoreError::from_sqlite(&path, e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        conn.set_prepared_statement_cache_capacity(64);

        // Identify the file before changing anything in it (setting WAL mode writes the
        // header): a foreign database must be left exactly as it was.
        let (app_id, version, objects) =
            identify(&conn).map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                    StoreError::Corrupt(path.clone(), e.to_string())
                }
                _ => StoreError::Sqlite(path.clone(), e),
            })?;
        check_identity(&path, app_id, version, objects)?;

        if objects == 0 {
            // A new file: small pages, since each commit writes whole pages and journal
            // entries are small. 1 KiB pages bring a commit close to one raw fsync of the
            // disk (4 KiB pages measured at ~77% of it here). Must precede WAL mode.
            conn.pragma_update(None, "page_size", NEW_DB_PAGE_SIZE)
                .map_err(sql)?;
        }

        // WAL mode persists in the file; in-memory databases answer "memory" and stay so.
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql)?;
        let synchronous = match durability {
            Durability::Fsync => "FULL",
            Durability::Os => "OFF",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(sql)?;

        let mut store = Store {
            conn,
            path,
            seqs: HashMap::new(),
            next_seq: 0,
            introspection: false,
        };
        store.migrate()?;
        store.next_seq = store
            .conn
            .query_row(
                "SELECT coalesce(max(seq), 0) + 1 FROM invocations",
                [],
                |r| r.get(0),
            )
            .map_err(|e| store.err(e))?;
        if durability == Durability::Fsync {
            store.preallocate_wal()?;
        }
        Ok(store)
    }

    /// Gives the WAL file [`WAL_PREALLOCATED_BYTES`] of zeros, once. A commit then
    /// overwrites blocks that already belong to the file, so its fsync writes data only;
    /// appending would change the file's size and make every fsync also commit a metadata
    /// update, which costs a third more here (`benches/test_engine.py` shows both kinds of
    /// raw fsync). SQLite starts the WAL over from its beginning after each checkpoint
    /// (every [`WAL_AUTOCHECKPOINT_PAGES`] pages) and never reads past its last valid frame,
    /// so the zeros are never mistaken for frames. Done under the write lock, so no other
    /// connection is appending meanwhile; `journal_size_limit` keeps SQLite from cutting the
    /// file back below this size (and trims it to this size after an outsized transaction).
    fn preallocate_wal(&mut self) -> Result<(), StoreError> {
        use std::io::{Seek, SeekFrom, Write};

        let path = self.path.clone();
        let sql = |e| StoreError::from_sqlite(&path, e);
        self.conn
            .pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .map_err(sql)?;
        let _limit: i64 = self
            .conn
            .pragma_update_and_check(None, "journal_size_limit", WAL_PREALLOCATED_BYTES, |r| {
                r.get(0)
            })
            .map_err(sql)?;
        let mut wal_name = path.clone().into_os_string();
        wal_name.push("-wal");
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Best effort: it only saves time, and a disk too full for it fails the first
        // commit with a clear error anyway. Zeros written before a failure are harmless.
        let _ = (|| -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new().write(true).open(&wal_name)?;
            let len = file.metadata()?.len();
            let target = WAL_PREALLOCATED_BYTES as u64;
            if len >= target {
                return Ok(());
            }
            // Seek + write (not a positioned write): the same on every platform.
            file.seek(SeekFrom::Start(len))?;
            let zeros = vec![0u8; 64 * 1024];
            let mut offset = len;
            while offset < target {
                let n = (target - offset).min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n])?;
                offset += n as u64;
            }
            file.sync_all()
        })();
        drop(tx); // nothing was written through SQLite: rolls back
        Ok(())
    }

    /// Brings the schema to [`SCHEMA_VERSION`] in one transaction (re-checking the version
    /// under the write lock, in case another process initialised the file meanwhile).
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |e| StoreError::from_sqlite(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        let (app_id, version, objects) = identify(&tx).map_err(sql)?;
        check_identity(&path, app_id, version, objects)?;
        if version == SCHEMA_VERSION && app_id == APPLICATION_ID {
            return Ok(()); // dropping `tx` rolls back the (empty) transaction
        }
        for migration in &MIGRATIONS[version as usize..] {
            tx.execute_batch(migration).map_err(sql)?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sql)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Writes everything in `batch` in one transaction, in this order: new invocations,
    /// updated invocations (whole-row upserts), journal appends, timers added, timers
    /// removed, state changes in order, idempotency keys. An empty batch writes nothing.
    ///
    /// With [`Durability::Fsync`] the batch is on disk when this returns. On any error
    /// nothing of the batch is written (the transaction is rolled back) and the store stays
    /// usable. A new invocation whose id exists, a journal index that exists, or an
    /// idempotency key that is registered already fail the whole batch
    /// ([`StoreError::Sqlite`], a constraint violation): they are engine bugs.
    pub fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        if !self.conn.is_autocommit() {
            // A previous failure left a transaction open (its ROLLBACK failed too).
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        // Prepared once and cached: parsing even these two statements on every commit
        // cost about as much as the inserts of a step.
        let next_seq = self.next_seq;
        let result = self
            .conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut begin| begin.execute([]))
            .and_then(|_| self.apply(batch))
            .and_then(|()| self.conn.prepare_cached("COMMIT")?.execute([]))
            .map(|_| ());
        match result {
            Ok(()) => {
                for row in &batch.updated_invocations {
                    if row.status == Status::Completed {
                        self.seqs.remove(&row.id); // no more appends
                    }
                }
                if self.seqs.len() > SEQ_CACHE_LIMIT {
                    self.seqs.clear();
                }
                Ok(())
            }
            Err(err) => {
                self.next_seq = next_seq;
                for row in &batch.new_invocations {
                    self.seqs.remove(&row.id);
                }
                // SQLITE_FULL may or may not have rolled back already; finish the job.
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(StoreError::from_sqlite(&self.path, err))
            }
        }
    }

    fn apply(&mut self, batch: &Batch) -> rusqlite::Result<()> {
        let Store {
            conn: c,
            seqs,
            next_seq,
            ..
        } = self;
        if !batch.new_invocations.is_empty() {
            let mut stmt = c.prepare_cached(INSERT_INVOCATION)?;
            for row in &batch.new_invocations {
                bind_invocation(&mut stmt, row, Some(*next_seq))?;
                seqs.insert(row.id, *next_seq);
                *next_seq += 1;
            }
        }
        if !batch.updated_invocations.is_empty() {
            let mut stmt = c.prepare_cached(UPSERT_INVOCATION)?;
            for row in &batch.updated_invocations {
                bind_invocation(&mut stmt, row, None)?;
            }
        }
        if !batch.journal.is_empty() {
            let mut stmt =
                c.prepare_cached("INSERT INTO journal_entries (k, frame) VALUES (?1, ?2)")?;
            for (id, idx, frame) in &batch.journal {
                let seq = match seqs.get(id) {
                    Some(seq) => *seq,
                    None => {
                        let seq = lookup_seq(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                        seqs.insert(*id, seq);
                        seq
                    }
                };
                stmt.execute(params![journal_keys(seq).0 | i64::from(*idx), frame])?;
            }
        }
        if !batch.timers_added.is_empty() {
            let mut stmt = c.prepare_cached(
                "INSERT INTO timers (invocation, completion_id, wake_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (invocation, completion_id) DO UPDATE SET wake_at = excluded.wake_at",
            )?;
            for t in &batch.timers_added {
                stmt.execute(params![
                    t.invocation.0,
                    t.completion_id,
                    to_sql_u64(t.wake_at)
                ])?;
            }
        }
        if !batch.timers_removed.is_empty() {
            let mut stmt = c.prepare_cached(
                "DELETE FROM timers WHERE invocation = ?1 AND completion_id = ?2",
            )?;
            for (id, completion_id) in &batch.timers_removed {
                stmt.execute(params![id.0, completion_id])?;
            }
        }
        for op in &batch.state {
            match op {
                StateOp::Set {
                    service,
                    key,
                    name,
                    value,
                } => {
                    c.prepare_cached(
                        "INSERT INTO main.state (service, key, name, value) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT (service, key, name) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![service, key, name, value])?;
                }
                StateOp::Clear { service, key, name } => {
                    c.prepare_cached(
                        "DELETE FROM main.state WHERE service = ?1 AND key = ?2 AND name = ?3",
                    )?
                    .execute(params![service, key, name])?;
                }
                StateOp::ClearAll { service, key } => {
                    c.prepare_cached("DELETE FROM main.state WHERE service = ?1 AND key = ?2")?
                        .execute(params![service, key])?;
                }
            }
        }
        if !batch.callers_attached.is_empty() {
            let mut stmt = c.prepare_cached(
                "INSERT OR IGNORE INTO attached_callers (callee, caller, completion_id) \
                 VALUES (?1, ?2, ?3)",
            )?;
            for (callee, caller) in &batch.callers_attached {
                stmt.execute(params![
                    callee.0,
                    caller.invocation.0,
                    caller.result_completion_id
                ])?;
            }
        }
        if !batch.callers_released.is_empty() {
            let mut stmt = c.prepare_cached("DELETE FROM attached_callers WHERE callee = ?1")?;
            for callee in &batch.callers_released {
                stmt.execute(params![callee.0])?;
            }
        }
        for ((service, key, name), outcome) in &batch.promises {
            let (value, code, message) = match outcome {
                Outcome::Success(v) => (Some(v.as_slice()), None, None),
                Outcome::Failure { code, message } => (None, Some(*code), Some(message.as_str())),
            };
            c.prepare_cached(
                "INSERT INTO promises (service, key, name, value, failure_code, failure_message) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![service, key, name, value, code, message])?;
        }
        for ((service, key, name), w) in &batch.promise_waiters_added {
            c.prepare_cached(
                "INSERT OR IGNORE INTO promise_waiters (service, key, name, waiter, completion_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![service, key, name, w.invocation.0, w.result_completion_id])?;
        }
        for (service, key, name) in &batch.promise_waiters_released {
            c.prepare_cached(
                "DELETE FROM promise_waiters WHERE service = ?1 AND key = ?2 AND name = ?3",
            )?
            .execute(params![service, key, name])?;
        }
        for (callee, w) in &batch.attachers_added {
            c.prepare_cached(
                "INSERT OR IGNORE INTO attach_waiters (callee, waiter, completion_id) \
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![callee.0, w.invocation.0, w.result_completion_id])?;
        }
        for callee in &batch.attachers_released {
            c.prepare_cached("DELETE FROM attach_waiters WHERE callee = ?1")?
                .execute(params![callee.0])?;
        }
        if !batch.idempotency.is_empty() {
            let mut stmt = c.prepare_cached(
                "INSERT INTO idempotency (service, handler, key, idempotency_key, invocation) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (service, handler, key, idempotency_key, id) in &batch.idempotency {
                stmt.execute(params![service, handler, key, idempotency_key, id.0])?;
            }
        }
        Ok(())
    }

    /// Deletes invocations (completed ones: the engine holds no others here), in one
    /// transaction: each one's row, journal, idempotency key, attached callers and leftover
    /// timers. State of virtual objects is kept. Returns how many rows were deleted.
    pub fn purge(&mut self, rows: &[InvocationRow]) -> Result<usize, StoreError> {
        self.purge_with_objects(rows, &[])
    }

    /// [`Store::purge`], and in the same transaction the state and durable promises of the
    /// objects `(service, key)` in `objects` (the workflow instances whose run is purged).
    pub fn purge_with_objects(
        &mut self,
        rows: &[InvocationRow],
        objects: &[(String, String)],
    ) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let result = self
            .conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut begin| begin.execute([]))
            .and_then(|_| self.delete_rows(rows))
            .and_then(|n| {
                self.delete_objects(objects)?;
                Ok(n)
            })
            .and_then(|n| {
                self.conn.prepare_cached("COMMIT")?.execute([])?;
                Ok(n)
            });
        match result {
            Ok(n) => {
                for r in rows {
                    self.seqs.remove(&r.id);
                }
                Ok(n)
            }
            Err(err) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(StoreError::from_sqlite(&self.path, err))
            }
        }
    }

    fn delete_rows(&mut self, rows: &[InvocationRow]) -> rusqlite::Result<usize> {
        let c = &self.conn;
        let mut deleted = 0;
        for r in rows {
            if let Some(seq) = lookup_seq(c, &r.id)? {
                let (from, to) = journal_keys(seq);
                c.prepare_cached("DELETE FROM journal_entries WHERE k >= ?1 AND k < ?2")?
                    .execute(params![from, to])?;
            }
            deleted += c
                .prepare_cached("DELETE FROM invocations WHERE id = ?1")?
                .execute(params![r.id.0])?;
            // Its idempotency key, or the implicit key of a workflow run.
            c.prepare_cached(
                "DELETE FROM idempotency WHERE service = ?1 AND handler = ?2 AND key = ?3 \
                 AND invocation = ?4",
            )?
            .execute(params![r.service, r.handler, r.key, r.id.0])?;
            c.prepare_cached("DELETE FROM attached_callers WHERE callee = ?1")?
                .execute(params![r.id.0])?;
            c.prepare_cached("DELETE FROM attach_waiters WHERE callee = ?1")?
                .execute(params![r.id.0])?;
            c.prepare_cached("DELETE FROM timers WHERE invocation = ?1")?
                .execute(params![r.id.0])?;
        }
        Ok(deleted)
    }

    fn delete_objects(&mut self, objects: &[(String, String)]) -> rusqlite::Result<()> {
        let c = &self.conn;
        for (service, key) in objects {
            for table in ["main.state", "promises", "promise_waiters"] {
                c.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE service = ?1 AND key = ?2"
                ))?
                .execute(params![service, key])?;
            }
        }
        Ok(())
    }

    /// The outcome of a durable promise, `None` while it is not completed.
    pub fn promise(&self, p: &PromiseKey) -> Result<Option<Outcome>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT value, failure_code, failure_message FROM promises \
                 WHERE service = ?1 AND key = ?2 AND name = ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![p.0, p.1, p.2], |row| {
                    let value: Option<Vec<u8>> = row.get(0)?;
                    Ok(match value {
                        Some(v) => Outcome::Success(v),
                        None => Outcome::Failure {
                            code: row.get::<_, Option<u32>>(1)?.unwrap_or(500),
                            message: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        },
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Invocations waiting for durable promises: (promise, waiter), in no particular order.
    pub fn promise_waiters(&self) -> Result<Vec<(PromiseKey, Caller)>, StoreError> {
        let rows: Vec<(String, String, String, Vec<u8>, u32)> = self
            .conn
            .prepare_cached("SELECT service, key, name, waiter, completion_id FROM promise_waiters")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            })
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(s, k, n, w, c)| {
                Ok((
                    (s, k, n),
                    Caller {
                        invocation: self.id_of(w, "a promise waiter")?,
                        result_completion_id: c,
                    },
                ))
            })
            .collect()
    }

    /// Invocations attached to others' results: (callee, waiter), in no particular order.
    pub fn attach_waiters(&self) -> Result<Vec<(InvocationId, Caller)>, StoreError> {
        let rows: Vec<(Vec<u8>, Vec<u8>, u32)> = self
            .conn
            .prepare_cached("SELECT callee, waiter, completion_id FROM attach_waiters")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(callee, w, c)| {
                Ok((
                    self.id_of(callee, "an attached invocation")?,
                    Caller {
                        invocation: self.id_of(w, "an attached waiter")?,
                        result_completion_id: c,
                    },
                ))
            })
            .collect()
    }

    fn id_of(&self, b: Vec<u8>, what: &str) -> Result<InvocationId, StoreError> {
        <[u8; 16]>::try_from(b.as_slice())
            .map(InvocationId)
            .map_err(|_| {
                StoreError::Corrupt(
                    self.path.clone(),
                    format!("the invocation id of {what} is not 16 bytes"),
                )
            })
    }

    /// Runs one read-only SQL statement over the introspection views (see [`crate::query`]),
    /// after showing the unfinished invocations with the display statuses in `live`.
    /// `Ok(Err(message))` when the statement is refused or fails.
    pub fn query(
        &mut self,
        sql: &str,
        live: &[(InvocationId, &'static str)],
    ) -> Result<Result<QueryResult, String>, StoreError> {
        if !self.introspection {
            query::install(&self.conn).map_err(|e| self.err(e))?;
            self.introspection = true;
        }
        query::refresh_live(&self.conn, live).map_err(|e| self.err(e))?;
        Ok(query::run(
            &self.conn,
            sql,
            MAX_QUERY_ROWS,
            QUERY_TIME_LIMIT,
        ))
    }

    /// The invocation `id`, if it exists.
    pub fn invocation(&self, id: &InvocationId) -> Result<Option<InvocationRow>, StoreError> {
        let raw = self
            .conn
            .prepare_cached(&format!(
                "SELECT {INVOCATION_COLUMNS} FROM invocations WHERE id = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row(params![id.0], read_raw).optional())
            .map_err(|e| self.err(e))?;
        raw.map(|r| self.convert(r)).transpose()
    }

    /// Completed invocations whose expiry time is at or before `now`, earliest first, at
    /// most `limit` of them. (By the expiry index: `+status` keeps SQLite from choosing the
    /// status index, which would scan every completed invocation.)
    pub fn expired(&self, now: u64, limit: usize) -> Result<Vec<InvocationRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_invocations(
            &expired_sql(),
            params![to_sql_u64(now), Status::Completed.code(), limit],
        )
    }

    /// Every invocation not completed yet (ready or suspended), oldest first.
    pub fn unfinished(&self) -> Result<Vec<InvocationRow>, StoreError> {
        // `status < 2 OR status > 2` rather than `status != 2` lets SQLite use the index.
        self.query_invocations(
            &format!(
                "SELECT {INVOCATION_COLUMNS} FROM invocations \
                 WHERE status < ?1 OR status > ?1 ORDER BY created_at, rowid"
            ),
            params![Status::Completed.code()],
        )
    }

    /// The `limit` most recently created invocations, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<InvocationRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_invocations(
            &format!(
                "SELECT {INVOCATION_COLUMNS} FROM invocations \
                 ORDER BY created_at DESC, rowid DESC LIMIT ?1"
            ),
            params![limit],
        )
    }

    /// Callers attached to running invocations: (callee, caller), in no particular order.
    pub fn attached_callers(&self) -> Result<Vec<(InvocationId, Caller)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT callee, caller, completion_id FROM attached_callers")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, u32>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (callee, caller, completion_id) = row.map_err(|e| self.err(e))?;
            let id = |b: Vec<u8>| {
                <[u8; 16]>::try_from(b.as_slice())
                    .map(InvocationId)
                    .map_err(|_| {
                        StoreError::Corrupt(
                            self.path.clone(),
                            "an attached caller's invocation id is not 16 bytes".into(),
                        )
                    })
            };
            out.push((
                id(callee)?,
                Caller {
                    invocation: id(caller)?,
                    result_completion_id: completion_id,
                },
            ));
        }
        Ok(out)
    }

    /// The journal of `id`: its frames in index order (empty if there is none).
    pub fn journal(&self, id: &InvocationId) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some(seq) = self.seq(id)? else {
            return Ok(Vec::new());
        };
        let (from, to) = journal_keys(seq);
        self.conn
            .prepare_cached("SELECT frame FROM journal_entries WHERE k >= ?1 AND k < ?2 ORDER BY k")
            .and_then(|mut stmt| {
                stmt.query_map(params![from, to], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<Vec<u8>>>>()
            })
            .map_err(|e| self.err(e))
    }

    /// The journal numbering of `id` (`None`: no such invocation).
    fn seq(&self, id: &InvocationId) -> Result<Option<i64>, StoreError> {
        if let Some(seq) = self.seqs.get(id) {
            return Ok(Some(*seq));
        }
        lookup_seq(&self.conn, id).map_err(|e| self.err(e))
    }

    /// How many journal entries `id` has.
    pub fn journal_len(&self, id: &InvocationId) -> Result<u32, StoreError> {
        let Some(seq) = self.seq(id)? else {
            return Ok(0);
        };
        let (from, to) = journal_keys(seq);
        self.conn
            .prepare_cached("SELECT count(*) FROM journal_entries WHERE k >= ?1 AND k < ?2")
            .and_then(|mut stmt| stmt.query_row(params![from, to], |row| row.get(0)))
            .map_err(|e| self.err(e))
    }

    /// Every pending timer, earliest first.
    pub fn timers(&self) -> Result<Vec<TimerRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT invocation, completion_id, wake_at FROM timers \
                 ORDER BY wake_at, invocation, completion_id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |row| {
                    Ok(TimerRow {
                        invocation: InvocationId(row.get(0)?),
                        completion_id: row.get(1)?,
                        wake_at: from_sql_u64(row.get(2)?),
                    })
                })?
                .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// The state of the virtual object `service`/`key`: (name, value) pairs ordered by name.
    pub fn state(&self, service: &str, key: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT name, value FROM main.state WHERE service = ?1 AND key = ?2 ORDER BY name",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![service, key], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// The invocation registered under this idempotency key, if any.
    pub fn idempotent(
        &self,
        service: &str,
        handler: &str,
        key: &str,
        idempotency_key: &str,
    ) -> Result<Option<InvocationId>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT invocation FROM idempotency \
                 WHERE service = ?1 AND handler = ?2 AND key = ?3 AND idempotency_key = ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![service, handler, key, idempotency_key], |row| {
                    Ok(InvocationId(row.get(0)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    fn query_invocations(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<InvocationRow>, StoreError> {
        let raws = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut stmt| {
                stmt.query_map(params, read_raw)?
                    .collect::<rusqlite::Result<Vec<RawInvocation>>>()
            })
            .map_err(|e| self.err(e))?;
        raws.into_iter().map(|r| self.convert(r)).collect()
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(&self.path, e)
    }

    fn convert(&self, raw: RawInvocation) -> Result<InvocationRow, StoreError> {
        read_invocation(raw).map_err(|detail| StoreError::Corrupt(self.path.clone(), detail))
    }
}

/// The query of [`Store::expired`]: `?1` now, `?2` the completed status, `?3` the limit.
fn expired_sql() -> String {
    format!(
        "SELECT {INVOCATION_COLUMNS} FROM invocations \
         WHERE expires_at <= ?1 AND +status = ?2 ORDER BY expires_at LIMIT ?3"
    )
}

/// Reads (application_id, user_version, number of schema objects) without writing anything.
fn identify(conn: &Connection) -> rusqlite::Result<(i32, u32, i64)> {
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok((app_id, version, objects))
}

/// Decides from [`identify`]'s answer whether the file is ours (or fresh) and not too new.
fn check_identity(path: &Path, app_id: i32, version: u32, objects: i64) -> Result<(), StoreError> {
    if app_id == 0 && version == 0 && objects == 0 {
        return Ok(()); // a fresh (possibly zero-byte) database
    }
    if app_id != APPLICATION_ID {
        let detail = if app_id == 0 {
            format!(
                "it is a SQLite database with {objects} tables and indexes of another application"
            )
        } else {
            format!(
                "it is a SQLite database of another application (application_id {app_id:#010x})"
            )
        };
        return Err(StoreError::Foreign(path.to_path_buf(), detail));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Milliseconds are stored as SQLite integers (i64); larger values saturate.
fn to_sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn bind_invocation(
    stmt: &mut rusqlite::CachedStatement<'_>,
    r: &InvocationRow,
    seq: Option<i64>,
) -> rusqlite::Result<usize> {
    // outcome_kind (0 success, 1 failure), outcome_value, failure_code, failure_message
    let (kind, value, code, message) = match &r.outcome {
        None => (None, None, None, None),
        Some(Outcome::Success(v)) => (Some(0i64), Some(v.as_slice()), None, None),
        Some(Outcome::Failure { code, message }) => {
            (Some(1), None, Some(*code), Some(message.as_str()))
        }
    };
    let f = r.last_failure.as_ref();
    stmt.execute(params![
        r.id.0,
        r.service,
        r.handler,
        r.key,
        r.idempotency_key,
        r.status.code(),
        r.attempt,
        to_sql_u64(r.next_retry_at),
        r.caller.map(|c| c.invocation.0),
        r.caller.map(|c| c.result_completion_id),
        to_sql_u64(r.created_at),
        kind,
        value,
        code,
        message,
        f.map(|f| f.code),
        f.map(|f| f.message.as_str()),
        f.map(|f| f.stacktrace.as_str()),
        f.and_then(|f| f.related_command_index),
        f.and_then(|f| f.related_command_type.as_deref()),
        f.and_then(|f| f.related_command_name.as_deref()),
        to_sql_u64(r.modified_at),
        r.completed_at.map(to_sql_u64),
        r.expires_at.map(to_sql_u64),
        r.cancel_requested,
        seq,
    ])
}

/// An `invocations` row as SQLite returns it, before validation.
struct RawInvocation {
    id: [u8; 16],
    service: String,
    handler: String,
    key: String,
    idempotency_key: Option<String>,
    status: i64,
    attempt: u32,
    next_retry_at: i64,
    caller_id: Option<[u8; 16]>,
    caller_completion: Option<u32>,
    created_at: i64,
    outcome_kind: Option<i64>,
    outcome_value: Option<Vec<u8>>,
    failure_code: Option<u32>,
    failure_message: Option<String>,
    last_failure_code: Option<u32>,
    last_failure_message: Option<String>,
    last_failure_stacktrace: Option<String>,
    last_failure_command_index: Option<u32>,
    last_failure_command_type: Option<String>,
    last_failure_command_name: Option<String>,
    modified_at: i64,
    completed_at: Option<i64>,
    expires_at: Option<i64>,
    cancel_requested: bool,
}

fn read_raw(row: &Row<'_>) -> rusqlite::Result<RawInvocation> {
    Ok(RawInvocation {
        id: row.get(0)?,
        service: row.get(1)?,
        handler: row.get(2)?,
        key: row.get(3)?,
        idempotency_key: row.get(4)?,
        status: row.get(5)?,
        attempt: row.get(6)?,
        next_retry_at: row.get(7)?,
        caller_id: row.get(8)?,
        caller_completion: row.get(9)?,
        created_at: row.get(10)?,
        outcome_kind: row.get(11)?,
        outcome_value: row.get(12)?,
        failure_code: row.get(13)?,
        failure_message: row.get(14)?,
        last_failure_code: row.get(15)?,
        last_failure_message: row.get(16)?,
        last_failure_stacktrace: row.get(17)?,
        last_failure_command_index: row.get(18)?,
        last_failure_command_type: row.get(19)?,
        last_failure_command_name: row.get(20)?,
        modified_at: row.get(21)?,
        completed_at: row.get(22)?,
        expires_at: row.get(23)?,
        cancel_requested: row.get(24)?,
    })
}

/// Validates a raw row; the error names the invocation and what is wrong with it.
fn read_invocation(r: RawInvocation) -> Result<InvocationRow, String> {
    let id = InvocationId(r.id);
    let status = Status::from_code(r.status).ok_or_else(|| {
        format!(
            "invocation {} has unknown status {}",
            id.to_text(),
            r.status
        )
    })?;
    let caller = match (r.caller_id, r.caller_completion) {
        (None, None) => None,
        (Some(invocation), Some(result_completion_id)) => Some(Caller {
            invocation: InvocationId(invocation),
            result_completion_id,
        }),
        _ => {
            return Err(format!(
                "invocation {} has a caller id without a completion id or the reverse",
                id.to_text()
            ))
        }
    };
    let outcome = match r.outcome_kind {
        None => None,
        Some(0) => Some(Outcome::Success(r.outcome_value.unwrap_or_default())),
        Some(1) => Some(Outcome::Failure {
            code: r.failure_code.ok_or_else(|| {
                format!("invocation {} has a failure without a code", id.to_text())
            })?,
            message: r.failure_message.unwrap_or_default(),
        }),
        Some(k) => {
            return Err(format!(
                "invocation {} has unknown outcome kind {k}",
                id.to_text()
            ))
        }
    };
    Ok(InvocationRow {
        id,
        service: r.service,
        handler: r.handler,
        key: r.key,
        idempotency_key: r.idempotency_key,
        status,
        attempt: r.attempt,
        next_retry_at: from_sql_u64(r.next_retry_at),
        caller,
        created_at: from_sql_u64(r.created_at),
        outcome,
        last_failure: r.last_failure_code.map(|code| FailureInfo {
            code,
            message: r.last_failure_message.unwrap_or_default(),
            stacktrace: r.last_failure_stacktrace.unwrap_or_default(),
            related_command_index: r.last_failure_command_index,
            related_command_type: r.last_failure_command_type,
            related_command_name: r.last_failure_command_name,
        }),
        modified_at: from_sql_u64(r.modified_at),
        completed_at: r.completed_at.map(from_sql_u64),
        expires_at: r.expires_at.map(from_sql_u64),
        cancel_requested: r.cancel_requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> InvocationId {
        InvocationId([n; 16])
    }

    fn row(n: u8, created_at: u64) -> InvocationRow {
        InvocationRow {
            id: id(n),
            service: "Greeter".into(),
            handler: "greet".into(),
            key: String::new(),
            idempotency_key: None,
            status: Status::Ready,
            attempt: 0,
            next_retry_at: 0,
            caller: None,
            created_at,
            outcome: None,
            last_failure: None,
            modified_at: created_at,
            completed_at: None,
            expires_at: None,
            cancel_requested: false,
        }
    }

    /// A batch that uses every field of [`Batch`].
    fn full_batch() -> Batch {
        let mut called = row(2, 1_700_000_000_002);
        called.service = "Cart".into();
        called.handler = "add".into();
        called.key = "user-7".into();
        called.idempotency_key = Some("req-1".into());
        called.status = Status::Suspended;
        called.attempt = 3;
        called.next_retry_at = 1_700_000_009_000;
        called.caller = Some(Caller {
            invocation: id(1),
            result_completion_id: 4,
        });
        called.last_failure = Some(FailureInfo {
            code: 503,
            message: "unavailable ✗".into(),
            stacktrace: "at step\n  at main".into(),
            related_command_index: Some(2),
            related_command_type: Some("run".into()),
            related_command_name: Some("charge".into()),
        });
        called.modified_at = 1_700_000_000_102;
        called.cancel_requested = true;
        let mut failed = row(3, 1_700_000_000_003);
        failed.status = Status::Completed;
        failed.outcome = Some(Outcome::Failure {
            code: 500,
            message: "boom ✗".into(),
        });
        failed.last_failure = Some(FailureInfo::new(500, "worker lost"));
        failed.completed_at = Some(1_700_000_000_203);
        failed.expires_at = Some(1_700_086_400_203);
        failed.modified_at = 1_700_000_000_203;
        Batch {
            new_invocations: vec![row(1, 1_700_000_000_001), called, failed],
            updated_invocations: vec![],
            journal: vec![
                (id(1), 0, b"\x00\x00\x00\x00\x00\x00\x00\x02hi".to_vec()),
                (id(1), 1, vec![0xff; 300]),
                (id(2), 0, Vec::new()),
            ],
            timers_added: vec![
                TimerRow {
                    invocation: id(1),
                    completion_id: 2,
                    wake_at: 1_700_000_005_000,
                },
                TimerRow {
                    invocation: id(2),
                    completion_id: 1,
                    wake_at: 1_700_000_001_000,
                },
                TimerRow {
                    invocation: id(2),
                    completion_id: 9,
                    wake_at: 1_700_000_002_000,
                },
            ],
            timers_removed: vec![(id(2), 9), (id(9), 9)],
            state: vec![
                StateOp::Set {
                    service: "Cart".into(),
                    key: "user-7".into(),
                    name: "items".into(),
                    value: b"[1]".to_vec(),
                },
                StateOp::Set {
                    service: "Cart".into(),
                    key: "user-7".into(),
                    name: "count".into(),
                    value: b"1".to_vec(),
                },
                StateOp::Set {
                    service: "Cart".into(),
                    key: "user-7".into(),
                    name: "items".into(),
                    value: b"[1,2]".to_vec(),
                },
                StateOp::Set {
                    service: "Cart".into(),
                    key: "user-7".into(),
                    name: "tmp".into(),
                    value: b"x".to_vec(),
                },
                StateOp::Clear {
                    service: "Cart".into(),
                    key: "user-7".into(),
                    name: "tmp".into(),
                },
                StateOp::Set {
                    service: "Cart".into(),
                    key: "user-8".into(),
                    name: "items".into(),
                    value: b"[]".to_vec(),
                },
                StateOp::ClearAll {
                    service: "Cart".into(),
                    key: "user-8".into(),
                },
            ],
            idempotency: vec![(
                "Cart".into(),
                "add".into(),
                "user-7".into(),
                "req-1".into(),
                id(2),
            )],
            callers_attached: vec![
                (
                    id(2),
                    Caller {
                        invocation: id(3),
                        result_completion_id: 7,
                    },
                ),
                (
                    id(4),
                    Caller {
                        invocation: id(1),
                        result_completion_id: 2,
                    },
                ),
            ],
            callers_released: vec![id(4), id(5)],
            promises: vec![
                (pk("a"), Outcome::Success(b"\"yes\"".to_vec())),
                (
                    pk("b"),
                    Outcome::Failure {
                        code: 500,
                        message: "no ✗".into(),
                    },
                ),
            ],
            promise_waiters_added: vec![
                (pk("a"), waiter(1, 3)),
                (pk("c"), waiter(2, 4)),
                (pk("c"), waiter(2, 4)),
            ],
            promise_waiters_released: vec![pk("a")],
            attachers_added: vec![(id(2), waiter(3, 5)), (id(4), waiter(1, 6))],
            attachers_released: vec![id(4)],
        }
    }

    fn pk(name: &str) -> PromiseKey {
        ("Signup".into(), "k1".into(), name.into())
    }

    fn waiter(n: u8, completion: u32) -> Caller {
        Caller {
            invocation: id(n),
            result_completion_id: completion,
        }
    }

    /// Checks that `store` holds exactly what [`full_batch`] wrote.
    fn assert_full_batch(store: &Store) {
        let b = full_batch();
        for r in &b.new_invocations {
            assert_eq!(store.invocation(&r.id).unwrap().as_ref(), Some(r));
        }
        assert_eq!(store.invocation(&id(42)).unwrap(), None);
        assert_eq!(
            store.journal(&id(1)).unwrap(),
            vec![
                b"\x00\x00\x00\x00\x00\x00\x00\x02hi".to_vec(),
                vec![0xff; 300]
            ]
        );
        assert_eq!(store.journal(&id(2)).unwrap(), vec![Vec::<u8>::new()]);
        assert_eq!(store.journal_len(&id(1)).unwrap(), 2);
        assert_eq!(store.journal_len(&id(3)).unwrap(), 0);
        assert_eq!(
            store.timers().unwrap(),
            vec![b.timers_added[1], b.timers_added[0]],
            "ordered by wake_at, the removed one gone"
        );
        assert_eq!(
            store.state("Cart", "user-7").unwrap(),
            vec![
                ("count".into(), b"1".to_vec()),
                ("items".into(), b"[1,2]".to_vec())
            ]
        );
        assert!(store.state("Cart", "user-8").unwrap().is_empty());
        assert_eq!(
            store.idempotent("Cart", "add", "user-7", "req-1").unwrap(),
            Some(id(2))
        );
        assert_eq!(
            store.attached_callers().unwrap(),
            vec![b.callers_attached[0]],
            "the released callee's caller gone"
        );
        assert_eq!(
            store.promise(&pk("a")).unwrap(),
            Some(b.promises[0].1.clone())
        );
        assert_eq!(
            store.promise(&pk("b")).unwrap(),
            Some(b.promises[1].1.clone())
        );
        assert_eq!(store.promise(&pk("c")).unwrap(), None);
        assert_eq!(
            store.promise_waiters().unwrap(),
            vec![(pk("c"), waiter(2, 4))],
            "the released promise's waiter gone, the repeated one once"
        );
        assert_eq!(
            store.attach_waiters().unwrap(),
            vec![b.attachers_added[0]],
            "the released callee's attacher gone"
        );
        assert_eq!(
            store.idempotent("Cart", "add", "user-7", "req-2").unwrap(),
            None
        );
        assert_eq!(
            store.idempotent("Cart", "add", "user-8", "req-1").unwrap(),
            None
        );
        let unfinished: Vec<_> = store.unfinished().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(unfinished, vec![id(1), id(2)]);
        let listed: Vec<_> = store.list(10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(listed, vec![id(3), id(2), id(1)]);
    }

    fn db_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("engine.db")
    }

    #[test]
    fn round_trip_of_every_batch_field() {
        let mut store = Store::open_in_memory().unwrap();
        store.commit(&full_batch()).unwrap();
        assert_full_batch(&store);

        // Whole-row updates: completion with a success, and an upsert of an unknown id.
        let mut done = store.invocation(&id(1)).unwrap().unwrap();
        done.status = Status::Completed;
        done.attempt = 1;
        done.outcome = Some(Outcome::Success(b"\"hello\"".to_vec()));
        let mut resumed = store.invocation(&id(2)).unwrap().unwrap();
        resumed.status = Status::Ready;
        resumed.caller = None;
        resumed.idempotency_key = None;
        let fresh = row(4, 1_700_000_000_004);
        store
            .commit(&Batch {
                updated_invocations: vec![done.clone(), resumed.clone(), fresh.clone()],
                journal: vec![(id(1), 2, b"out".to_vec())],
                timers_removed: vec![(id(2), 1)],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.invocation(&id(1)).unwrap(), Some(done));
        assert_eq!(store.invocation(&id(2)).unwrap(), Some(resumed));
        assert_eq!(store.invocation(&id(4)).unwrap(), Some(fresh));
        assert_eq!(store.journal_len(&id(1)).unwrap(), 3);
        assert_eq!(store.journal(&id(1)).unwrap()[2], b"out");
        assert_eq!(store.timers().unwrap().len(), 1);
        let unfinished: Vec<_> = store.unfinished().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(unfinished, vec![id(2), id(4)]);
        let listed: Vec<_> = store.list(2).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(listed, vec![id(4), id(3)]);
        assert!(store.list(0).unwrap().is_empty());

        // Timer re-added: same key, new due time.
        let t = TimerRow {
            invocation: id(1),
            completion_id: 2,
            wake_at: 5,
        };
        store
            .commit(&Batch {
                timers_added: vec![t],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.timers().unwrap(), vec![t]);

        // An empty batch is a no-op.
        store.commit(&Batch::default()).unwrap();
    }

    #[test]
    fn reopen_after_commit_sees_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        {
            let mut store = Store::open(&path, Durability::Fsync).unwrap();
            store.commit(&full_batch()).unwrap();
        }
        let store = Store::open(&path, Durability::Fsync).unwrap();
        assert_full_batch(&store);
        drop(store);
        // Opened a third time, with the other durability, nothing is migrated or lost.
        let store = Store::open(&path, Durability::Os).unwrap();
        assert_full_batch(&store);
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn empty_file_is_a_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        std::fs::File::create(&path).unwrap();
        let mut store = Store::open(&path, Durability::Os).unwrap();
        assert!(store.unfinished().unwrap().is_empty());
        store.commit(&full_batch()).unwrap();
        let app_id: i32 = store
            .conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        assert_eq!(app_id, APPLICATION_ID);
        let version: u32 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn foreign_sqlite_database_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path, Durability::Os).unwrap_err();
        assert!(
            matches!(err, StoreError::Foreign(ref p, _) if p == &path),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("is not a durable-futures database"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was modified"
        );

        // Another application's id, even without tables.
        let other = dir.path().join("other.db");
        {
            let conn = Connection::open(&other).unwrap();
            conn.pragma_update(None, "application_id", 0x1234_i32)
                .unwrap();
        }
        let err = Store::open(&other, Durability::Os).unwrap_err();
        assert!(matches!(err, StoreError::Foreign(..)), "{err:?}");
        assert!(err.to_string().contains("0x00001234"), "{err}");
    }

    #[test]
    fn random_bytes_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        // Deterministic pseudo-random bytes (xorshift), 8 KiB.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let bytes: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(&path, Durability::Os).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(ref p, _) if p == &path),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("is not a database or is damaged"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);

        // A text file too.
        std::fs::write(&path, "hello, this is not a database\n").unwrap();
        let err = Store::open(&path, Durability::Os).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(..)), "{err:?}");
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        {
            // What the first release wrote: schema v1 only.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let journals: [(u8, &[&[u8]]); 2] = [(3, &[b"c0", b"c1"]), (1, &[b"a0"])];
            for (n, frames) in journals {
                conn.execute(
                    "INSERT INTO invocations (id, service, handler, key, status, attempt, \
                     next_retry_at, created_at) VALUES (?1, 'Greeter', 'greet', '', 1, 0, 0, 7)",
                    params![id(n).0],
                )
                .unwrap();
                for (idx, frame) in frames.iter().enumerate() {
                    conn.execute(
                        "INSERT INTO journal (invocation, idx, frame) VALUES (?1, ?2, ?3)",
                        params![id(n).0, idx as u32, frame],
                    )
                    .unwrap();
                }
            }
        }
        let mut store = Store::open(&path, Durability::Fsync).unwrap();
        let version: u32 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.journal(&id(1)).unwrap(), vec![b"a0".to_vec()]);
        assert_eq!(
            store.journal(&id(3)).unwrap(),
            vec![b"c0".to_vec(), b"c1".to_vec()]
        );
        assert_eq!(
            store.invocation(&id(3)).unwrap().unwrap().service,
            "Greeter"
        );
        // Appends after the migration land in the same journals; a new invocation gets
        // its own.
        store
            .commit(&Batch {
                new_invocations: vec![row(4, 9)],
                journal: vec![(id(3), 2, b"c2".to_vec()), (id(4), 0, b"d0".to_vec())],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.journal_len(&id(3)).unwrap(), 3);
        assert_eq!(store.journal(&id(4)).unwrap(), vec![b"d0".to_vec()]);
        // The view keeps the old table's shape for readers of the file.
        let via_view: Vec<(Vec<u8>, u32, Vec<u8>)> = store
            .conn
            .prepare("SELECT invocation, idx, frame FROM journal ORDER BY invocation, idx")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            via_view,
            vec![
                (id(1).0.to_vec(), 0, b"a0".to_vec()),
                (id(3).0.to_vec(), 0, b"c0".to_vec()),
                (id(3).0.to_vec(), 1, b"c1".to_vec()),
                (id(3).0.to_vec(), 2, b"c2".to_vec()),
                (id(4).0.to_vec(), 0, b"d0".to_vec()),
            ]
        );
        let caller = Caller {
            invocation: id(2),
            result_completion_id: 3,
        };
        store
            .commit(&Batch {
                callers_attached: vec![(id(1), caller)],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.attached_callers().unwrap(), vec![(id(1), caller)]);
    }

    #[test]
    fn a_version_3_database_gains_the_columns_of_version_4_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        {
            let conn = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..3] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
            // A suspended invocation and a completed one, as version 3 wrote them.
            for (n, status, created) in [(1u8, 1, 1_000i64), (2, 2, 2_000)] {
                conn.execute(
                    "INSERT INTO invocations (id, service, handler, key, status, attempt, \
                     next_retry_at, created_at, seq, outcome_kind, outcome_value) \
                     VALUES (?1, 'Greeter', 'greet', '', ?2, 2, 0, ?3, ?4, ?5, ?6)",
                    params![
                        id(n).0,
                        status,
                        created,
                        i64::from(n),
                        (status == 2).then_some(0),
                        (status == 2).then_some(b"\"hi\"".to_vec()),
                    ],
                )
                .unwrap();
            }
        }
        let mut store = Store::open(&path, Durability::Os).unwrap();
        let suspended = store.invocation(&id(1)).unwrap().unwrap();
        assert_eq!(suspended.status, Status::Suspended);
        assert_eq!(suspended.attempt, 2);
        assert_eq!(suspended.last_failure, None);
        assert_eq!(suspended.modified_at, 1_000, "the creation time");
        assert_eq!(suspended.completed_at, None);
        assert_eq!(suspended.expires_at, None);
        assert!(!suspended.cancel_requested);
        let done = store.invocation(&id(2)).unwrap().unwrap();
        assert_eq!(done.outcome, Some(Outcome::Success(b"\"hi\"".to_vec())));
        assert_eq!(done.completed_at, None, "not recorded then");
        assert_eq!(done.expires_at, Some(2_000 + 86_400_000));
        assert_eq!(done.modified_at, 2_000);
        // The new columns are written and read back like the old ones.
        let mut paused = suspended.clone();
        paused.status = Status::Paused;
        paused.last_failure = Some(FailureInfo::new(500, "lost"));
        paused.modified_at = 5_000;
        store
            .commit(&Batch {
                updated_invocations: vec![paused.clone()],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.invocation(&id(1)).unwrap(), Some(paused));
        let unfinished: Vec<_> = store.unfinished().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(unfinished, vec![id(1)], "a paused invocation is unfinished");
    }

    #[test]
    fn expired_invocations_are_found_by_their_index_and_purged_with_everything_they_own() {
        let mut store = Store::open_in_memory().unwrap();
        let done = |n: u8, expires_at: u64| {
            let mut r = row(n, u64::from(n));
            r.status = Status::Completed;
            r.outcome = Some(Outcome::Success(vec![n]));
            r.completed_at = Some(u64::from(n));
            r.expires_at = Some(expires_at);
            r.idempotency_key = Some(format!("key-{n}"));
            r
        };
        let rows = vec![
            done(1, 300),
            done(2, 100),
            done(3, 200),
            done(4, 900),
            row(5, 5),
        ];
        store
            .commit(&Batch {
                new_invocations: rows.clone(),
                journal: (1..=5).map(|n| (id(n), 0, vec![n])).collect(),
                idempotency: (1..=4)
                    .map(|n| {
                        let key = format!("key-{n}");
                        ("Greeter".into(), "greet".into(), String::new(), key, id(n))
                    })
                    .collect(),
                callers_attached: vec![(
                    id(2),
                    Caller {
                        invocation: id(5),
                        result_completion_id: 1,
                    },
                )],
                timers_added: vec![TimerRow {
                    invocation: id(2),
                    completion_id: 3,
                    wake_at: 50,
                }],
                ..Batch::default()
            })
            .unwrap();
        let ids = |rows: Vec<InvocationRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(store.expired(299, 10).unwrap()), vec![id(2), id(3)]);
        assert_eq!(ids(store.expired(300, 2).unwrap()), vec![id(2), id(3)]);
        assert_eq!(
            ids(store.expired(300, 10).unwrap()),
            vec![id(2), id(3), id(1)]
        );
        assert!(store.expired(99, 10).unwrap().is_empty());
        let plan: String = store
            .conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN {}", expired_sql()),
                params![1, 2, 5],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("invocations_expires_at"), "{plan}");

        let expired = store.expired(200, 10).unwrap();
        assert_eq!(store.purge(&expired).unwrap(), 2);
        for n in [2, 3] {
            assert_eq!(store.invocation(&id(n)).unwrap(), None);
            assert_eq!(store.journal_len(&id(n)).unwrap(), 0);
            let key = format!("key-{n}");
            assert_eq!(
                store.idempotent("Greeter", "greet", "", &key).unwrap(),
                None
            );
        }
        assert!(store.attached_callers().unwrap().is_empty());
        assert!(store.timers().unwrap().is_empty());
        // The others are untouched.
        for n in [1, 4, 5] {
            assert_eq!(store.journal(&id(n)).unwrap(), vec![vec![n]]);
        }
        assert_eq!(
            store.idempotent("Greeter", "greet", "", "key-1").unwrap(),
            Some(id(1))
        );
        assert_eq!(store.purge(&[]).unwrap(), 0);
        assert_eq!(store.purge(&expired).unwrap(), 0, "already gone");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        drop(Store::open(&path, Durability::Os).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = Store::open(&path, Durability::Os).unwrap_err();
        match &err {
            StoreError::NewerSchema {
                path: p,
                found,
                supported,
            } => {
                assert_eq!(p, &path);
                assert_eq!(*found, 99);
                assert_eq!(*supported, SCHEMA_VERSION);
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        assert!(err.to_string().contains("upgrade durable-futures"), "{err}");
    }

    #[test]
    fn disk_full_rolls_back_and_store_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let mut store = Store::open(&path, Durability::Os).unwrap();
        store.commit(&full_batch()).unwrap();
        let pages: i64 = store
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        store
            .conn
            .pragma_update(None, "max_page_count", pages + 2)
            .unwrap();

        // ~1 MiB of journal: far more than two pages.
        let big = Batch {
            new_invocations: vec![row(5, 1_700_000_000_005)],
            journal: (0..256).map(|i| (id(5), i, vec![7u8; 4096])).collect(),
            state: vec![StateOp::ClearAll {
                service: "Cart".into(),
                key: "user-7".into(),
            }],
            ..Batch::default()
        };
        let err = store.commit(&big).unwrap_err();
        assert!(
            matches!(err, StoreError::Full(ref p, _) if p == &path),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("the disk is full"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");

        // Nothing of the failed batch is visible; what was committed before is intact.
        assert!(store.conn.is_autocommit());
        assert_eq!(store.invocation(&id(5)).unwrap(), None);
        assert_eq!(store.journal_len(&id(5)).unwrap(), 0);
        assert_full_batch(&store);

        // Still usable: a small commit fits, and once there is room the big one succeeds.
        store
            .commit(&Batch {
                journal: vec![(id(1), 2, b"small".to_vec())],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.journal_len(&id(1)).unwrap(), 3);
        store
            .conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        store.commit(&big).unwrap();
        assert_eq!(store.journal_len(&id(5)).unwrap(), 256);
        drop(store);
        let store = Store::open(&path, Durability::Os).unwrap();
        assert_eq!(store.journal_len(&id(5)).unwrap(), 256);
        assert_eq!(store.journal_len(&id(1)).unwrap(), 3);
    }

    fn wal_len(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len())
    }

    fn one_entry(n: u32) -> Batch {
        Batch {
            journal: vec![(id(1), n, format!("entry {n}").into_bytes())],
            ..Batch::default()
        }
    }

    /// A store on `path` holding invocation 1, with an empty journal.
    fn store_with_invocation_1(path: &Path) -> Store {
        let mut store = Store::open(path, Durability::Fsync).unwrap();
        store
            .commit(&Batch {
                new_invocations: vec![row(1, 0)],
                ..Batch::default()
            })
            .unwrap();
        store
    }

    /// The journal of invocation 1 holds exactly the entries `one_entry(0..n)` wrote.
    fn assert_entries(store: &Store, n: u32) {
        let journal = store.journal(&id(1)).unwrap();
        assert_eq!(journal.len(), n as usize);
        for (k, entry) in journal.iter().enumerate() {
            assert_eq!(entry, &format!("entry {k}").into_bytes());
        }
    }

    #[test]
    fn wal_is_preallocated_and_commits_past_it_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let mut store = store_with_invocation_1(&path);
        assert!(wal_len(&path) >= WAL_PREALLOCATED_BYTES as u64);
        // Several checkpoint intervals: the WAL starts over at its beginning each time and
        // stays at the preallocated size.
        let n = 3 * WAL_AUTOCHECKPOINT_PAGES as u32;
        for k in 0..n {
            store.commit(&one_entry(k)).unwrap();
        }
        assert_eq!(wal_len(&path), WAL_PREALLOCATED_BYTES as u64);
        drop(store);
        assert_entries(&Store::open(&path, Durability::Os).unwrap(), n);
    }

    #[test]
    fn a_crash_copy_recovers_every_commit_from_the_preallocated_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let mut store = store_with_invocation_1(&path);
        let n = WAL_AUTOCHECKPOINT_PAGES as u32 + 50; // past one checkpoint and WAL restart
        for k in 0..n {
            store.commit(&one_entry(k)).unwrap();
        }
        // What a crash leaves: the database and its WAL as they are on disk now, without
        // the shared-memory index (copied under new names, so SQLite rebuilds the index by
        // reading the WAL: its valid frames, then the stale frames and zeros after them).
        let copy = dir.path().join("crashed.db");
        std::fs::copy(&path, &copy).unwrap();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let mut copy_wal = copy.as_os_str().to_owned();
        copy_wal.push("-wal");
        std::fs::copy(PathBuf::from(wal), PathBuf::from(copy_wal)).unwrap();
        drop(store);
        assert_entries(&Store::open(&copy, Durability::Fsync).unwrap(), n);
    }

    #[test]
    fn ten_thousand_journal_appends_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let mut store = Store::open(&path, Durability::Fsync).unwrap();
        store
            .commit(&Batch {
                new_invocations: (1..=4).map(|n| row(n, 0)).collect(),
                ..Batch::default()
            })
            .unwrap();
        let frames = |n: u32| -> Vec<(InvocationId, u32, Vec<u8>)> {
            (0..n)
                .map(|i| (id(1 + (i % 4) as u8), i / 4, i.to_le_bytes().to_vec()))
                .collect()
        };

        // Atomic: the last of 10,000 appends collides with the first, so none is written.
        let mut bad = Batch {
            journal: frames(10_000),
            ..Batch::default()
        };
        bad.journal[9_999] = (id(1), 0, b"duplicate".to_vec());
        let err = store.commit(&bad).unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(..)), "{err:?}");
        for n in 1..=4 {
            assert_eq!(store.journal_len(&id(n)).unwrap(), 0);
        }

        let batch = Batch {
            journal: frames(10_000),
            ..Batch::default()
        };
        store.commit(&batch).unwrap();
        let total: u32 = (1..=4).map(|n| store.journal_len(&id(n)).unwrap()).sum();
        assert_eq!(total, 10_000);
        let journal = store.journal(&id(2)).unwrap();
        assert_eq!(journal.len(), 2_500);
        for (k, frame) in journal.iter().enumerate() {
            assert_eq!(frame, &(k as u32 * 4 + 1).to_le_bytes(), "entry {k}");
        }
    }

    #[test]
    fn invalid_rows_are_reported_as_damage() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .commit(&Batch {
                new_invocations: vec![row(1, 1)],
                ..Batch::default()
            })
            .unwrap();
        store
            .conn
            .execute("UPDATE invocations SET status = 7", [])
            .unwrap();
        let err = store.invocation(&id(1)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(..)), "{err:?}");
        assert!(err.to_string().contains("unknown status 7"), "{err}");
    }

    #[test]
    fn missing_directory_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/engine.db");
        let err = Store::open(&path, Durability::Os).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    /// The connection's value of `pragma`, as SQLite reports it.
    fn pragma<T: rusqlite::types::FromSql>(store: &Store, pragma: &str) -> T {
        store
            .conn
            .pragma_query_value(None, pragma, |r| r.get(0))
            .unwrap()
    }

    /// The settings the durability promise of each mode rests on. `synchronous` is a setting
    /// of the connection, not of the file, so it must follow the mode asked for at each open
    /// whatever mode the file was opened with before. Weakening `FULL` to `NORMAL` would still
    /// survive every crash test (a killed process leaves its writes in the page cache) while
    /// losing acknowledged commits on a power cut: only this test and the fsync count in
    /// `tests/durability.rs` notice.
    #[test]
    fn each_durability_mode_configures_sqlite_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);

        let assert_fsync_mode = |store: &Store| {
            assert_eq!(pragma::<String>(store, "journal_mode"), "wal");
            // 2 = FULL: in WAL mode, the WAL is synced at every commit.
            assert_eq!(pragma::<i64>(store, "synchronous"), 2);
            assert_eq!(
                pragma::<i64>(store, "wal_autocheckpoint"),
                WAL_AUTOCHECKPOINT_PAGES
            );
            // The preallocated WAL is kept, not truncated back after each checkpoint.
            assert_eq!(
                pragma::<i64>(store, "journal_size_limit"),
                WAL_PREALLOCATED_BYTES
            );
            assert!(wal_len(&path) >= WAL_PREALLOCATED_BYTES as u64);
        };

        let store = Store::open(&path, Durability::Fsync).unwrap();
        assert_fsync_mode(&store);
        assert_eq!(pragma::<i64>(&store, "page_size"), NEW_DB_PAGE_SIZE);
        drop(store);

        // The weaker mode, on the same file: still WAL (one writer, readers alongside), but
        // commits are left to the operating system, as documented.
        let store = Store::open(&path, Durability::Os).unwrap();
        assert_eq!(pragma::<String>(&store, "journal_mode"), "wal");
        assert_eq!(pragma::<i64>(&store, "synchronous"), 0, "0 = OFF");
        drop(store);

        // Back to the default: nothing of the weaker mode lingers.
        let store = Store::open(&path, Durability::default()).unwrap();
        assert_fsync_mode(&store);

        // A file created in the weaker mode gets the full settings when opened durably.
        let other = dir.path().join("os-first.db");
        drop(Store::open(&other, Durability::Os).unwrap());
        let store = Store::open(&other, Durability::Fsync).unwrap();
        assert_eq!(pragma::<i64>(&store, "synchronous"), 2);
        assert_eq!(pragma::<String>(&store, "journal_mode"), "wal");
        assert_eq!(pragma::<i64>(&store, "page_size"), NEW_DB_PAGE_SIZE);
    }

    #[test]
    fn a_new_wal_holds_two_checkpoint_intervals_of_pages() {
        // 1,000 pages of 1 KiB between checkpoints, each WAL frame a 24-byte header plus the
        // page, twice over (room for a large transaction), plus the 32-byte WAL header: the
        // file is that size from the start, so commits never extend it.
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let _store = Store::open(&path, Durability::Fsync).unwrap();
        assert_eq!(wal_len(&path), 2 * 1000 * (1024 + 24) + 32);
    }

    #[test]
    fn a_size_limit_caps_growth_near_the_given_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let mut store = store_with_invocation_1(&path);
        store.set_size_limit(Some(256 * 1024)).unwrap();
        // 1 KiB entries until a commit is refused: the database then holds about 256 KiB.
        let mut written = 0u32;
        let err = loop {
            let batch = Batch {
                journal: vec![(id(1), written, vec![3u8; 1024])],
                ..Batch::default()
            };
            match store.commit(&batch) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 1024, "1 MiB written past a 256 KiB limit");
        };
        assert!(matches!(err, StoreError::Full(..)), "{err:?}");
        assert!(
            (100..=256).contains(&written),
            "{written} KiB of entries under a 256 KiB limit"
        );
        // Lifting the limit lets the same commit through.
        store.set_size_limit(None).unwrap();
        store
            .commit(&Batch {
                journal: vec![(id(1), written, vec![3u8; 1024])],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.journal_len(&id(1)).unwrap(), written + 1);
    }

    #[test]
    fn sqlite_errors_keep_their_cause() {
        // Callers that walk an error's sources (anyhow, logging) reach SQLite's own error.
        use std::error::Error as _;
        let path = PathBuf::from("engine.db");
        let err = StoreError::from_sqlite(&path, rusqlite::Error::QueryReturnedNoRows);
        let cause = err.source().expect("a SQLite error has a source");
        assert!(matches!(
            cause.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::QueryReturnedNoRows)
        ));
        let full = StoreError::Full(path.clone(), "disk full".into());
        assert!(full.source().is_none());
    }

    #[test]
    fn damage_found_after_opening_is_reported_as_such() {
        // The file opens (its header and schema are intact), but pages the journal lives on
        // were overwritten: reading them says the database is damaged, not "SQLite error".
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        {
            let mut store = store_with_invocation_1(&path);
            store
                .commit(&Batch {
                    journal: (0..400).map(|i| (id(1), i, vec![5u8; 900])).collect(),
                    ..Batch::default()
                })
                .unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 300 * 1024, "{} bytes", bytes.len());
        for b in &mut bytes[100 * 1024..300 * 1024] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open(&path, Durability::Os).unwrap();
        let err = store.journal(&id(1)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(..)), "{err:?}");
        assert!(err.to_string().contains("is damaged"), "{err}");
    }

    #[test]
    fn invocations_created_across_restarts_keep_separate_journals() {
        // Each invocation's journal lives under its own number; numbers handed out after a
        // restart must not reuse one still in use.
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let create = |store: &mut Store, ns: [u8; 3]| {
            store
                .commit(&Batch {
                    new_invocations: ns.iter().map(|&n| row(n, u64::from(n))).collect(),
                    journal: ns.iter().map(|&n| (id(n), 0, vec![n])).collect(),
                    ..Batch::default()
                })
                .unwrap();
        };
        create(&mut Store::open(&path, Durability::Os).unwrap(), [1, 2, 3]);
        let mut store = Store::open(&path, Durability::Os).unwrap();
        create(&mut store, [4, 5, 6]);
        for n in 1..=6u8 {
            assert_eq!(
                store.journal(&id(n)).unwrap(),
                vec![vec![n]],
                "invocation {n}"
            );
        }
    }

    #[test]
    fn a_transaction_left_open_does_not_block_the_next_commit() {
        // If a failed commit could not even roll back, its transaction is still open on the
        // connection; the next commit must finish it off rather than fail to begin.
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let mut store = store_with_invocation_1(&path);
        store.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        store.commit(&one_entry(0)).unwrap();
        drop(store);
        assert_entries(&Store::open(&path, Durability::Os).unwrap(), 1);
    }
}
