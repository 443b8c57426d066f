//! Storage, on SQLite (embedded, the default) or PostgreSQL (`database_url`, for several
//! instances): the embedding cache (by photo hash and model id, so a restart does not
//! recompute the gallery and a changed photo is recomputed), web sessions, people's access,
//! devices, tokens, and the audit log.

mod audit;
pub(crate) mod db;
mod gallery;
mod lift;
mod limits;
mod people;
mod pg;
mod private;
mod profiles;
mod sessions;
mod tokens;

pub use audit::{AuditRow, ChainBreak, ChainReport};
pub use db::{DbError, Dialect};
pub use gallery::SharedTemplate;
pub use lift::{CarRecord, REQUEST_MEMORY_SECS};
pub use limits::{ClientCounts, STALE_ATTEMPT_SECS};
pub use people::{Disabled, Standing, TRUSTED_BROWSER_SECS};
pub use profiles::{Profile, VisitorPass};
pub use sessions::StoreSessions;
pub use tokens::{KeySecret, RefreshRow, RefreshUse, TokenKey};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

use db::{Conn, OptionalRow, params};

use crate::face::Embedding;
use crate::face::gallery::{EmbeddingCache, FileStamp};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("creating {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the database task stopped: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.into())
    }
}

/// SQLite's migrations, applied in order; `PRAGMA user_version` records how many ran. A change
/// to the schema is a new entry here and one in `POSTGRES_MIGRATIONS`.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE embeddings (
        model_id   TEXT NOT NULL,
        sha256     TEXT NOT NULL,
        dimensions INTEGER NOT NULL,
        vector     BLOB NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        PRIMARY KEY (model_id, sha256)
    ) WITHOUT ROWID;",
    "CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        data       TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);
    CREATE TABLE audit (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        client     TEXT NOT NULL,
        person     TEXT,
        similarity REAL,
        outcome    TEXT NOT NULL,
        detail     TEXT
    );
    CREATE INDEX audit_by_kind ON audit (kind, id);",
    "CREATE TABLE devices (
        name       TEXT PRIMARY KEY,
        secret     TEXT NOT NULL,
        link       TEXT NOT NULL,
        address    TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    ) WITHOUT ROWID;",
    // the key became the model id plus the preprocessing and pipeline revision
    "ALTER TABLE embeddings RENAME COLUMN model_id TO cache_key;",
    // administrators named by `facelift person add --admin`, besides the configured ones
    "CREATE TABLE admins (
        person     TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    ) WITHOUT ROWID;",
    // audit outcomes became a fixed set of names; what varied moved to the detail
    "UPDATE audit SET outcome = 'fault_cleared' WHERE outcome = 'fault cleared';
    UPDATE audit SET outcome = 'command_fetched' WHERE outcome = 'command fetched';
    UPDATE audit SET outcome = 'duplicate' WHERE outcome LIKE 'duplicate%';
    UPDATE audit SET detail = COALESCE(detail || ', ', '') || substr(outcome, 17),
                     outcome = 'device_refused' WHERE outcome LIKE 'device refused: %';
    UPDATE audit SET detail = COALESCE(detail || ', ', '') || substr(outcome, 10),
                     outcome = 'refused' WHERE outcome LIKE 'refused: %';
    UPDATE audit SET detail = 'status ' || substr(outcome, 10) || COALESCE(', ' || detail, ''),
                     outcome = 'answered' WHERE outcome LIKE 'answered %';",
    // who may log in with their face: off by an administrator or after failures in a row
    "CREATE TABLE person_access (
        person            TEXT PRIMARY KEY,
        disabled          TEXT,
        failures_in_a_row INTEGER NOT NULL DEFAULT 0,
        last_failure      INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE trusted_browsers (
        token_sha256 TEXT PRIMARY KEY,
        person       TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // the faces of accepted login bursts, to refuse them sent again (after a restart too)
    "CREATE TABLE seen_faces (at INTEGER NOT NULL, hash INTEGER NOT NULL);
    CREATE INDEX seen_faces_at ON seen_faces (at);",
    // replay protection and move dedupe that survive a restart
    "CREATE TABLE device_nonces (
        device TEXT NOT NULL,
        nonce  TEXT NOT NULL,
        at     INTEGER NOT NULL,
        PRIMARY KEY (device, nonce)
    ) WITHOUT ROWID;
    CREATE INDEX device_nonces_at ON device_nonces (at);
    CREATE TABLE lift_requests (
        request_id TEXT PRIMARY KEY,
        floor      INTEGER NOT NULL,
        at         INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX lift_requests_at ON lift_requests (at);",
    // sessions are filed under the hash of their id; rows under raw ids cannot be found again
    "DELETE FROM sessions;",
    // who may go where and when; visitor passes; the building's fire-service recall
    "CREATE TABLE person_profiles (
        person       TEXT PRIMARY KEY,
        display_name TEXT,
        home_floor   INTEGER,
        floors       TEXT,
        hours        TEXT NOT NULL DEFAULT '[]',
        visitor      INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE visitor_passes (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        person     TEXT NOT NULL,
        floors     TEXT NOT NULL,
        valid_from INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        issued_by  TEXT NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX visitor_passes_by_person ON visitor_passes (person, expires_at);
    CREATE TABLE building_state (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE devices ADD COLUMN role TEXT NOT NULL DEFAULT 'lift';",
    // bearer tokens: signing keys by id, refresh tokens (by hash), revoked ids until they expire
    "CREATE TABLE token_keys (
        kid         TEXT PRIMARY KEY,
        secret      BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        replaced_at INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE refresh_tokens (
        hash       TEXT PRIMARY KEY,
        family     TEXT NOT NULL,
        subject    TEXT NOT NULL,
        kind       TEXT NOT NULL,
        scope      TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER,
        revoked_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
    CREATE TABLE revoked_tokens (
        id         TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // each photo file's hash under its size and modification time: a start reads only the
    // photos that changed
    "CREATE TABLE photo_files (
        path        TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        modified_ns INTEGER NOT NULL,
        sha256      TEXT NOT NULL
    ) WITHOUT ROWID;",
    // the audit log becomes a hash chain; the rows already there are sealed in order, once
    // (`SEAL_AUDIT_AFTER`)
    "ALTER TABLE audit ADD COLUMN prev_hash TEXT;
    ALTER TABLE audit ADD COLUMN hash TEXT;",
    // login attempt counters, shared by instances and kept across restarts (`store::limits`)
    "CREATE TABLE login_clients (
        client           TEXT PRIMARY KEY,
        failures         INTEGER NOT NULL,
        in_flight        INTEGER NOT NULL,
        in_flight_at     INTEGER NOT NULL,
        blocked_until    INTEGER NOT NULL,
        last_failure     INTEGER NOT NULL,
        probation_minute INTEGER NOT NULL,
        probation_used   INTEGER NOT NULL,
        probation_since  INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX login_clients_by_last_failure ON login_clients (last_failure);
    CREATE TABLE login_failures (at INTEGER NOT NULL);
    CREATE INDEX login_failures_at ON login_failures (at);
    CREATE TABLE login_ceiling (
        id           INTEGER PRIMARY KEY,
        in_flight    INTEGER NOT NULL,
        in_flight_at INTEGER NOT NULL
    );",
    // each car's owner (a lease), shared state and the command its device has yet to fetch
    "CREATE TABLE lift_cars (
        car         TEXT PRIMARY KEY,
        owner       TEXT NOT NULL DEFAULT '',
        lease_until INTEGER NOT NULL DEFAULT 0,
        version     INTEGER NOT NULL DEFAULT 0,
        state       TEXT,
        pending     TEXT
    ) WITHOUT ROWID;",
    // the gallery of record, shared by instances (`store::gallery`)
    "CREATE TABLE gallery_templates (
        cache_key TEXT NOT NULL,
        person    TEXT NOT NULL,
        file      TEXT NOT NULL,
        vector    BLOB NOT NULL,
        PRIMARY KEY (cache_key, person, file)
    ) WITHOUT ROWID;
    CREATE INDEX gallery_templates_by_person ON gallery_templates (person);
    CREATE TABLE gallery_removals (person TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;",
    // the car's newest long poll, on whichever instance: only it may take the command
    "ALTER TABLE lift_cars ADD COLUMN poll TEXT;",
];

/// The migration (its index) after which the audit rows written before the chain are sealed.
const SEAL_AUDIT_AFTER: usize = 13;

/// PostgreSQL's migrations: the schema SQLite's reached when PostgreSQL came, then each later
/// change beside its SQLite twin. The types are those SQLite's values read back as: BIGINT,
/// DOUBLE PRECISION, TEXT, BYTEA.
const POSTGRES_MIGRATIONS: &[&str] = &["
    CREATE TABLE embeddings (
        cache_key  TEXT NOT NULL,
        sha256     TEXT NOT NULL,
        dimensions BIGINT NOT NULL,
        vector     BYTEA NOT NULL,
        created_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
        PRIMARY KEY (cache_key, sha256)
    );
    CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        data       TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);
    CREATE TABLE audit (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at         BIGINT NOT NULL,
        kind       TEXT NOT NULL,
        client     TEXT NOT NULL,
        person     TEXT,
        similarity DOUBLE PRECISION,
        outcome    TEXT NOT NULL,
        detail     TEXT,
        prev_hash  TEXT,
        hash       TEXT
    );
    CREATE INDEX audit_by_kind ON audit (kind, id);
    CREATE INDEX audit_by_hash ON audit (hash);
    CREATE TABLE devices (
        name       TEXT PRIMARY KEY,
        secret     TEXT NOT NULL,
        link       TEXT NOT NULL,
        address    TEXT,
        created_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
        role       TEXT NOT NULL DEFAULT 'lift'
    );
    CREATE TABLE admins (
        person     TEXT PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
    );
    CREATE TABLE person_access (
        person            TEXT PRIMARY KEY,
        disabled          TEXT,
        failures_in_a_row BIGINT NOT NULL DEFAULT 0,
        last_failure      BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE trusted_browsers (
        token_sha256 TEXT PRIMARY KEY,
        person       TEXT NOT NULL,
        created_at   BIGINT NOT NULL
    );
    CREATE TABLE seen_faces (at BIGINT NOT NULL, hash BIGINT NOT NULL);
    CREATE INDEX seen_faces_at ON seen_faces (at);
    CREATE TABLE device_nonces (
        device TEXT NOT NULL,
        nonce  TEXT NOT NULL,
        at     BIGINT NOT NULL,
        PRIMARY KEY (device, nonce)
    );
    CREATE INDEX device_nonces_at ON device_nonces (at);
    CREATE TABLE lift_requests (
        request_id TEXT PRIMARY KEY,
        floor      BIGINT NOT NULL,
        at         BIGINT NOT NULL
    );
    CREATE INDEX lift_requests_at ON lift_requests (at);
    CREATE TABLE person_profiles (
        person       TEXT PRIMARY KEY,
        display_name TEXT,
        home_floor   BIGINT,
        floors       TEXT,
        hours        TEXT NOT NULL DEFAULT '[]',
        visitor      BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE visitor_passes (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        person     TEXT NOT NULL,
        floors     TEXT NOT NULL,
        valid_from BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        issued_by  TEXT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX visitor_passes_by_person ON visitor_passes (person, expires_at);
    CREATE TABLE building_state (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE token_keys (
        kid         TEXT PRIMARY KEY,
        secret      BYTEA NOT NULL,
        created_at  BIGINT NOT NULL,
        replaced_at BIGINT
    );
    CREATE TABLE refresh_tokens (
        hash       TEXT PRIMARY KEY,
        family     TEXT NOT NULL,
        subject    TEXT NOT NULL,
        kind       TEXT NOT NULL,
        scope      TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at    BIGINT,
        revoked_at BIGINT
    );
    CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
    CREATE TABLE revoked_tokens (
        id         TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL
    );
    CREATE TABLE photo_files (
        path        TEXT PRIMARY KEY,
        size        BIGINT NOT NULL,
        modified_ns BIGINT NOT NULL,
        sha256      TEXT NOT NULL
    );",
    "CREATE TABLE login_clients (
        client           TEXT PRIMARY KEY,
        failures         BIGINT NOT NULL,
        in_flight        BIGINT NOT NULL,
        in_flight_at     BIGINT NOT NULL,
        blocked_until    BIGINT NOT NULL,
        last_failure     BIGINT NOT NULL,
        probation_minute BIGINT NOT NULL,
        probation_used   BIGINT NOT NULL,
        probation_since  BIGINT
    );
    CREATE INDEX login_clients_by_last_failure ON login_clients (last_failure);
    CREATE TABLE login_failures (at BIGINT NOT NULL);
    CREATE INDEX login_failures_at ON login_failures (at);
    CREATE TABLE login_ceiling (
        id           BIGINT PRIMARY KEY,
        in_flight    BIGINT NOT NULL,
        in_flight_at BIGINT NOT NULL
    );",
    "CREATE TABLE lift_cars (
        car         TEXT PRIMARY KEY,
        owner       TEXT NOT NULL DEFAULT '',
        lease_until BIGINT NOT NULL DEFAULT 0,
        version     BIGINT NOT NULL DEFAULT 0,
        state       TEXT,
        pending     TEXT
    );",
    "CREATE TABLE gallery_templates (
        cache_key TEXT NOT NULL,
        person    TEXT NOT NULL,
        file      TEXT NOT NULL,
        vector    BYTEA NOT NULL,
        PRIMARY KEY (cache_key, person, file)
    );
    CREATE INDEX gallery_templates_by_person ON gallery_templates (person);
    CREATE TABLE gallery_removals (person TEXT PRIMARY KEY, at BIGINT NOT NULL);",
    "ALTER TABLE lift_cars ADD COLUMN poll TEXT;",
];

const UPSERT_EMBEDDING: &str = "INSERT INTO embeddings (cache_key, sha256, dimensions, vector)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (cache_key, sha256) DO UPDATE SET
        dimensions = excluded.dimensions, vector = excluded.vector";

/// What a session is filed under: the SHA-256 of its id, never the id (the cookie) itself.
fn session_key(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

/// How a device is reached, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// the server POSTs commands to the device's URL
    Push,
    /// the device long-polls the server
    Pull,
    /// a USB serial line
    Serial,
}

/// A registered device as stored: `address` is a lift controller's push URL or serial port.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub name: String,
    pub secret: String,
    pub link: LinkKind,
    pub address: Option<String>,
    pub role: DeviceRole,
}

/// What a registered device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRole {
    /// drives a car
    Lift,
    /// a camera board that captures faces for a kiosk (ESP32-CAM)
    Camera,
    /// a tablet showing a kiosk page
    Kiosk,
}

impl std::fmt::Debug for DeviceRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRow")
            .field("name", &self.name)
            .field("link", &self.link)
            .field("address", &self.address)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

pub struct Store {
    backend: Backend,
    /// What `announce` sends and `subscribe` hears: in this process on SQLite (one instance),
    /// through PostgreSQL's LISTEN/NOTIFY from every instance on it.
    notices: tokio::sync::broadcast::Sender<Notice>,
}

/// A change announced by an instance (`Store::announce`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// what changed, as its announcer put it
    Changed(String),
    /// notices may have been lost (the listener's connection was made again): read again
    /// whatever is kept from the store
    Missed,
}

impl Notice {
    /// The next notice `receiver` hears; falling behind counts as `Missed`. None once the
    /// store is gone.
    pub async fn next(receiver: &mut tokio::sync::broadcast::Receiver<Notice>) -> Option<Notice> {
        use tokio::sync::broadcast::error::RecvError;
        match receiver.recv().await {
            Ok(notice) => Some(notice),
            Err(RecvError::Lagged(_)) => Some(Notice::Missed),
            Err(RecvError::Closed) => None,
        }
    }
}

/// Notices a slow subscriber may fall behind by before it hears `Lagged` (and reads again).
const NOTICE_BACKLOG: usize = 256;

enum Backend {
    Sqlite(Mutex<Connection>),
    Postgres(Box<pg::Postgres>),
}

impl Store {
    /// Opens (creating if needed) `facelift.db` in `data_dir`.
    /// The folder is made readable by its owner only (0700), and the database by its owner
    /// only (0600; SQLite gives its `-wal` and `-shm` files the same mode): they hold device
    /// secrets and CSRF tokens.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| StoreError::Io { path, source }
        };
        private::create_dir(data_dir).map_err(io(data_dir))?;
        let database = data_dir.join("facelift.db");
        private::create_file(&database).map_err(io(&database))?;
        Self::from_connection(Connection::open(&database)?)
    }

    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    /// Connects to PostgreSQL at `url` ("postgres://user:password@host:port/database") and
    /// brings its schema up to date. Several instances may share it.
    pub fn open_postgres(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Postgres(Box::new(pg::Postgres::connect(url, POSTGRES_MIGRATIONS)?)),
            notices: tokio::sync::broadcast::channel(NOTICE_BACKLOG).0,
        })
    }

    /// A URL on the PostgreSQL server at `base` whose connections work in `schema`, a new
    /// empty schema made here: tests, and trials of several instances, each get their own
    /// state on one server.
    pub fn postgres_schema_url(base: &str, schema: &str) -> Result<String, StoreError> {
        if !schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(StoreError::Database(DbError::Postgres(format!(
                "{schema:?} is not a plain schema name"
            ))));
        }
        pg::Postgres::connect(base, &[])?
            .with(|c| c.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")))?;
        let joiner = if base.contains('?') { '&' } else { '?' };
        Ok(format!("{base}{joiner}options=-c%20search_path%3D{schema}"))
    }

    /// Tells every instance on this database (this one too) that `what` changed.
    pub fn announce(&self, what: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => {
                let _ = self.notices.send(Notice::Changed(what.to_string()));
                Ok(())
            }
            Backend::Postgres(postgres) => Ok(waiting_on_the_network(|| postgres.notify(what))?),
        }
    }

    /// Hears what any instance announces from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        let receiver = self.notices.subscribe();
        if let Backend::Postgres(postgres) = &self.backend {
            postgres.listen(&self.notices);
        }
        receiver
    }

    /// Which database this is.
    pub fn dialect(&self) -> db::Dialect {
        match self.backend {
            Backend::Sqlite(_) => db::Dialect::Sqlite,
            Backend::Postgres(_) => db::Dialect::Postgres,
        }
    }

    fn from_connection(mut connection: Connection) -> Result<Self, StoreError> {
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let applied: usize = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let transaction = connection.transaction()?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            transaction.execute_batch(migration)?;
            if index == SEAL_AUDIT_AFTER {
                audit::seal_existing(&*transaction)?;
            }
            transaction.pragma_update(None, "user_version", index + 1)?;
        }
        transaction.commit()?;
        Ok(Self {
            backend: Backend::Sqlite(Mutex::new(connection)),
            notices: tokio::sync::broadcast::channel(NOTICE_BACKLOG).0,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&dyn Conn) -> Result<T, DbError>) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(connection) => {
                let connection = connection
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Ok(f(&*connection)?)
            }
            Backend::Postgres(postgres) => Ok(waiting_on_the_network(|| postgres.with(f))?),
        }
    }

    /// Runs `f` in one transaction, committed when it returns Ok. It takes the write lock at
    /// once: a transaction that reads and then writes (the audit chain's head, then the new
    /// row) would otherwise fail, not wait, when another process (a `facelift` command beside
    /// the server, another instance) wrote in between.
    fn with_transaction<T>(
        &self,
        f: impl FnOnce(&dyn Conn) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(connection) => {
                let connection = connection
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let transaction = rusqlite::Transaction::new_unchecked(
                    &connection,
                    rusqlite::TransactionBehavior::Immediate,
                )?;
                let value = f(&*transaction)?;
                transaction.commit()?;
                Ok(value)
            }
            Backend::Postgres(postgres) => {
                Ok(waiting_on_the_network(|| postgres.with_transaction(f))?)
            }
        }
    }

    pub fn cached_embedding(
        &self,
        cache_key: &str,
        sha256: &str,
    ) -> Result<Option<Embedding>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT vector FROM embeddings WHERE cache_key = ?1 AND sha256 = ?2",
                params![cache_key, sha256],
                |row| row.get::<Vec<u8>>(0),
            )
            .optional()
        })
        .map(|blob| blob.map(|b| decode_vector(&b)))
    }

    pub fn cache_embedding(
        &self,
        cache_key: &str,
        sha256: &str,
        embedding: &[f32],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                UPSERT_EMBEDDING,
                params![cache_key, sha256, embedding.len(), encode_vector(embedding)],
            )
        })
        .map(|_| ())
    }

    /// Every embedding made with `cache_key`, by photo hash.
    pub fn cached_embeddings(
        &self,
        cache_key: &str,
    ) -> Result<HashMap<String, Embedding>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT sha256, vector FROM embeddings WHERE cache_key = ?1",
                params![cache_key],
                |row| {
                    Ok((
                        row.get::<String>(0)?,
                        decode_vector(&row.get::<Vec<u8>>(1)?),
                    ))
                },
            )
        })
    }

    /// Caches many embeddings in one transaction.
    pub fn cache_embeddings(
        &self,
        cache_key: &str,
        embeddings: &[(String, Embedding)],
    ) -> Result<(), StoreError> {
        self.with_transaction(|t| {
            for (sha256, embedding) in embeddings {
                t.execute(
                    UPSERT_EMBEDDING,
                    params![cache_key, sha256, embedding.len(), encode_vector(embedding)],
                )?;
            }
            Ok(())
        })
    }

    pub fn photo_files(&self) -> Result<HashMap<PathBuf, FileStamp>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT path, size, modified_ns, sha256 FROM photo_files",
                params![],
                |row| {
                    Ok((
                        PathBuf::from(row.get::<String>(0)?),
                        FileStamp {
                            size: row.get(1)?,
                            modified_ns: row.get(2)?,
                            sha256: row.get(3)?,
                        },
                    ))
                },
            )
        })
    }

    pub fn remember_photo_files(&self, files: &[(PathBuf, FileStamp)]) -> Result<(), StoreError> {
        self.with_transaction(|t| {
            for (path, stamp) in files {
                t.execute(
                    "INSERT INTO photo_files (path, size, modified_ns, sha256)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (path) DO UPDATE SET size = excluded.size,
                         modified_ns = excluded.modified_ns, sha256 = excluded.sha256",
                    params![
                        path.to_string_lossy(),
                        stamp.size,
                        stamp.modified_ns,
                        stamp.sha256
                    ],
                )?;
            }
            Ok(())
        })
    }

    pub fn forget_photo_files(&self, files: &[PathBuf]) -> Result<(), StoreError> {
        self.with_transaction(|t| {
            for path in files {
                t.execute(
                    "DELETE FROM photo_files WHERE path = ?1",
                    params![path.to_string_lossy()],
                )?;
            }
            Ok(())
        })
    }

    pub fn cached_embedding_count(&self, cache_key: &str) -> Result<usize, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM embeddings WHERE cache_key = ?1",
                params![cache_key],
                |row| row.get(0),
            )
        })
    }
}

/// The fixed names of stored values: written as these words, read back by them.
macro_rules! stored_names {
    ($($kind:ty: $($variant:ident = $name:literal),+;)+) => {$(
        impl $kind {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }

        impl std::fmt::Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $kind {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl db::ToValue for $kind {
            fn to_value(&self) -> db::Value {
                db::Value::Text(self.as_str().to_string())
            }
        }

        impl db::FromValue for $kind {
            fn from_value(value: &db::Value) -> Result<Self, String> {
                match value {
                    $(db::Value::Text(name) if name == $name => Ok(Self::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($kind))),
                }
            }
        }
    )+};
}

/// What an audit line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    /// a face login attempt
    Login,
    /// the lift: moves asked for, arrivals, faults
    Lift,
    /// messages to and from the lift's device
    Device,
    /// who may go where: access changes, visitor passes, the recall
    Access,
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    Recognized,
    NotRecognized,
    RateLimited,
    NoFace,
    FaceTooSmall,
    BadImage,
    /// the face engine's queue was full
    Busy,
    /// the server failed (the log says why)
    Failed,
    /// recognised, but their face login is off
    LoginDisabled,
    /// recognised or near someone who must wait after failures in a row
    PersonWait,
    /// presentation attack detection refused it (the detail says why)
    PadRefused,
    /// a move accepted and sent
    Accepted,
    /// a repeated request id: answered again, not sent again
    Duplicate,
    /// a move refused (the detail says why)
    Refused,
    FaultCleared,
    /// the device answered a command with a refusal
    DeviceRefused,
    Arrived,
    Fault,
    Offline,
    Online,
    Recovered,
    /// a device's status report
    Report,
    /// a device fetched its command by long poll
    CommandFetched,
    /// a device answered a pushed command (the detail has the status)
    Answered,
    /// a move to a floor outside the person's access
    FloorNotAllowed,
    /// a move outside the person's access hours
    OutsideHours,
    /// recognised, but with no access now (a visitor whose pass has ended)
    NoAccess,
    /// a person's access changed (the detail says how)
    AccessChanged,
    PassIssued,
    PassRevoked,
    RecallStarted,
    RecallCleared,
    /// a bearer token pair issued or refreshed (the detail has the scopes)
    TokenIssued,
    /// a token or a whole grant revoked (a refresh token used twice revokes its grant)
    TokenRevoked,
    /// a new token signing key
    KeyRotated,
    /// a signing key withdrawn: its tokens are refused
    KeyWithdrawn,
}

stored_names! {
    AuditKind: Login = "login", Lift = "lift", Device = "device", Access = "access";
    AuditOutcome: Recognized = "recognized", NotRecognized = "not_recognized",
        RateLimited = "rate_limited", NoFace = "no_face", FaceTooSmall = "face_too_small",
        BadImage = "bad_image", Busy = "busy", Failed = "failed",
        LoginDisabled = "login_disabled", PersonWait = "person_wait",
        PadRefused = "pad_refused", Accepted = "accepted",
        Duplicate = "duplicate", Refused = "refused", FaultCleared = "fault_cleared",
        DeviceRefused = "device_refused", Arrived = "arrived", Fault = "fault",
        Offline = "offline", Online = "online", Recovered = "recovered", Report = "report",
        CommandFetched = "command_fetched", Answered = "answered",
        FloorNotAllowed = "floor_not_allowed", OutsideHours = "outside_hours",
        NoAccess = "no_access", AccessChanged = "access_changed", PassIssued = "pass_issued",
        PassRevoked = "pass_revoked", RecallStarted = "recall_started",
        RecallCleared = "recall_cleared", TokenIssued = "token_issued",
        TokenRevoked = "token_revoked", KeyRotated = "key_rotated",
        KeyWithdrawn = "key_withdrawn";
    LinkKind: Push = "push", Pull = "pull", Serial = "serial";
    DeviceRole: Lift = "lift", Camera = "camera", Kiosk = "kiosk";
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Unix time, seconds
    pub at: i64,
    pub kind: AuditKind,
    /// who or what asked: a client address, a device id
    pub client: String,
    pub person: Option<String>,
    pub similarity: Option<f32>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
}

impl Store {
    /// Adds a device, or replaces the one of the same name (a new secret).
    pub fn put_device(&self, device: &DeviceRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO devices (name, secret, link, address, role)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET secret = excluded.secret,
                     link = excluded.link, address = excluded.address, role = excluded.role",
                params![
                    device.name,
                    device.secret,
                    device.link,
                    device.address,
                    device.role
                ],
            )
        })
        .map(|_| ())
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT name, secret, link, address, role FROM devices ORDER BY name",
                params![],
                |row| {
                    Ok(DeviceRow {
                        name: row.get(0)?,
                        secret: row.get(1)?,
                        link: row.get(2)?,
                        address: row.get(3)?,
                        role: row.get(4)?,
                    })
                },
            )
        })
    }

    /// Whether a device of that name was there to remove.
    pub fn remove_device(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| c.execute("DELETE FROM devices WHERE name = ?1", params![name]))
            .map(|n| n > 0)
    }

    /// Makes `person` an administrator (`admin`) or not.
    pub fn set_admin(&self, person: &str, admin: bool) -> Result<(), StoreError> {
        let sql = if admin {
            "INSERT INTO admins (person) VALUES (?1) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM admins WHERE person = ?1"
        };
        self.with(|c| c.execute(sql, params![person])).map(|_| ())
    }

    pub fn is_admin(&self, person: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM admins WHERE person = ?1",
                params![person],
                |_| Ok(()),
            )
            .optional()
        })
        .map(|found| found.is_some())
    }

    pub fn admins(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT person FROM admins ORDER BY person",
                params![],
                |row| row.get(0),
            )
        })
    }

    /// The session's data and expiry (unix seconds), unless it has expired. Sessions are
    /// filed under the SHA-256 of their id: a copy of the database lets no one use them.
    pub fn session_load(&self, id: &str, now: i64) -> Result<Option<(String, i64)>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT data, expires_at FROM sessions WHERE id = ?1 AND expires_at > ?2",
                params![session_key(id), now],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
        })
    }

    /// Inserts or replaces; with `only_new`, false when the id is taken.
    pub fn session_save(
        &self,
        id: &str,
        data: &str,
        expires_at: i64,
        only_new: bool,
    ) -> Result<bool, StoreError> {
        let sql = if only_new {
            "INSERT INTO sessions (id, data, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING"
        } else {
            "INSERT INTO sessions (id, data, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
        };
        self.with(|c| c.execute(sql, params![session_key(id), data, expires_at]))
            .map(|changed| changed == 1)
    }

    pub fn session_delete(&self, id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE id = ?1",
                params![session_key(id)],
            )
        })
        .map(|_| ())
    }

    /// Deletes the sessions that expired before `now`; returns how many.
    pub fn delete_expired_sessions(&self, now: i64) -> Result<usize, StoreError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now]))
    }

    /// Sessions that have not expired by `now`.
    pub fn alive_sessions(&self, now: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sessions WHERE expires_at > ?1",
                params![now],
                |row| row.get(0),
            )
        })
    }
}

impl EmbeddingCache for Store {
    fn get(&self, cache_key: &str, sha256: &str) -> Option<Embedding> {
        self.cached_embedding(cache_key, sha256)
            .inspect_err(|e| tracing::warn!("embedding cache read failed: {e}"))
            .ok()
            .flatten()
    }

    fn put(&self, cache_key: &str, sha256: &str, embedding: &Embedding) {
        if let Err(e) = self.cache_embedding(cache_key, sha256, embedding) {
            tracing::warn!("embedding cache write failed: {e}");
        }
    }

    fn all(&self, cache_key: &str) -> HashMap<String, Embedding> {
        self.cached_embeddings(cache_key)
            .inspect_err(|e| tracing::warn!("embedding cache read failed: {e}"))
            .unwrap_or_default()
    }

    fn known_files(&self) -> HashMap<PathBuf, FileStamp> {
        self.photo_files()
            .inspect_err(|e| tracing::warn!("photo list read failed: {e}"))
            .unwrap_or_default()
    }

    fn remember_files(&self, files: &[(PathBuf, FileStamp)]) {
        if let Err(e) = self.remember_photo_files(files) {
            tracing::warn!("photo list write failed: {e}");
        }
    }

    fn forget_files(&self, files: &[PathBuf]) {
        if let Err(e) = self.forget_photo_files(files) {
            tracing::warn!("photo list write failed: {e}");
        }
    }
}

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(bytes: &[u8]) -> Embedding {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The stores every store test runs on: SQLite in memory, and PostgreSQL in a new schema when
/// `TEST_POSTGRES_URL` names a server.
#[cfg(test)]
pub(crate) fn test_stores() -> Vec<Store> {
    let mut stores = vec![Store::open_in_memory().expect("sqlite store")];
    if let Some(url) = test_postgres_url() {
        stores.push(Store::open_postgres(&url).expect("postgres store"));
    }
    stores
}

/// A new schema on the server `TEST_POSTGRES_URL` names, if it names one. `scripts/test`
/// starts a server and sets `TEST_POSTGRES_REQUIRED`, so that there a missing one fails
/// instead of skipping.
#[cfg(test)]
pub(crate) fn test_postgres_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(base) => {
            let schema = format!("unit_{}", hex::encode(rand::random::<[u8; 6]>()));
            Some(Store::postgres_schema_url(&base, &schema).expect("test schema"))
        }
        Err(_) if std::env::var_os("TEST_POSTGRES_REQUIRED").is_some() => {
            panic!("TEST_POSTGRES_REQUIRED is set but TEST_POSTGRES_URL is not")
        }
        Err(_) => None,
    }
}

/// Runs `call`, which waits on the database server. Called on a worker of the server's
/// (multi-threaded) runtime, the worker hands its other tasks on first, so that a slow or
/// locked database stalls only the requests that need it, not every request on the worker.
fn waiting_on_the_network<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_data_folder_and_database_are_the_owners_only_and_hold_no_session_id() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().expect("tempdir");
        let data_dir = parent.path().join("data");
        let store = Store::open(&data_dir).expect("store");
        store
            .put_device(&DeviceRow {
                name: "lift-a".into(),
                secret: "0123456789abcdef".into(),
                link: LinkKind::Pull,
                address: None,
                role: DeviceRole::Lift,
            })
            .expect("device");
        let id = "Aq3vXyZ0sessionid";
        assert!(store.session_save(id, "{}", i64::MAX, true).expect("save"));
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("exists")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&data_dir), 0o700, "the folder");
        for file in ["facelift.db", "facelift.db-wal", "facelift.db-shm"] {
            assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
        }
        let stored: Vec<String> = store
            .with(|c| c.query_map("SELECT id FROM sessions", params![], |row| row.get(0)))
            .expect("ids");
        assert_eq!(stored, [session_key(id)]);
        assert_ne!(stored[0], id);
        assert!(
            store.session_load(id, 0).expect("load").is_some(),
            "found by its id"
        );
        drop(store);

        // a database left world-readable by an older version is tightened on open
        let loose = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(data_dir.join("facelift.db"), loose).expect("chmod");
        let _store = Store::open(&data_dir).expect("reopen");
        assert_eq!(mode(&data_dir.join("facelift.db")), 0o600);
    }

    /// Outcomes written as free text before migration 6 read back as names, the rest in the detail.
    #[test]
    fn old_audit_outcomes_are_carried_over_to_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let connection = Connection::open(dir.path().join("facelift.db")).expect("db");
            for migration in &MIGRATIONS[..5] {
                connection.execute_batch(migration).expect("migration");
            }
            connection
                .pragma_update(None, "user_version", 5)
                .expect("version");
            for (kind, outcome, detail) in [
                (
                    "lift",
                    "refused: the lift is already moving",
                    Some("move to floor 2"),
                ),
                ("lift", "duplicate: not sent again", None),
                ("lift", "device refused: busy", Some("request r1")),
                (
                    "device",
                    "answered 202",
                    Some("move to floor 2, request r1"),
                ),
                ("lift", "fault cleared", None),
            ] {
                connection
                    .execute(
                        "INSERT INTO audit (at, kind, client, outcome, detail)
                         VALUES (1, ?1, 'x', ?2, ?3)",
                        rusqlite::params![kind, outcome, detail],
                    )
                    .expect("insert");
            }
        }
        let store = Store::open(dir.path()).expect("reopen");
        let lift: Vec<(AuditOutcome, Option<String>)> = store
            .recent_audit(AuditKind::Lift, 10)
            .expect("lift entries")
            .into_iter()
            .map(|e| (e.outcome, e.detail))
            .collect();
        assert_eq!(
            lift,
            [
                (AuditOutcome::FaultCleared, None),
                (AuditOutcome::DeviceRefused, Some("request r1, busy".into())),
                (AuditOutcome::Duplicate, None),
                (
                    AuditOutcome::Refused,
                    Some("move to floor 2, the lift is already moving".into())
                ),
            ]
        );
        let device = store.recent_audit(AuditKind::Device, 1).expect("device");
        assert_eq!(device[0].outcome, AuditOutcome::Answered);
        assert_eq!(
            device[0].detail.as_deref(),
            Some("status 202, move to floor 2, request r1")
        );
        // the rows from before the hash chain are sealed into it, and new ones follow them
        store
            .with(|c| c.execute("UPDATE audit SET at = 1 WHERE id = 1", params![]))
            .expect("an honest no-op update");
        store.audit(&device[0]).expect("append");
        let chain = store.verify_audit().expect("verify");
        assert_eq!((chain.rows, chain.first_break), (6, None));
    }

    #[test]
    fn embeddings_round_trip_per_model_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .cache_embedding("m1", "abc", &[0.25, -1.5, 3.0])
                .expect("put");
            assert_eq!(
                store.cached_embedding("m2", "abc").expect("get"),
                None,
                "other model"
            );
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.cached_embedding("m1", "abc").expect("get"),
            Some(vec![0.25, -1.5, 3.0])
        );
        assert_eq!(store.cached_embedding_count("m1").expect("count"), 1);
    }

    #[test]
    fn a_database_from_before_the_cache_key_rename_keeps_its_embeddings() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // the schema as the first three migrations left it, with one cached embedding
            let connection = Connection::open(dir.path().join("facelift.db")).expect("create");
            for migration in &MIGRATIONS[..3] {
                connection.execute_batch(migration).expect("old schema");
            }
            connection
                .pragma_update(None, "user_version", 3)
                .expect("version");
            connection
                .execute(
                    "INSERT INTO embeddings (model_id, sha256, dimensions, vector) \
                     VALUES ('m1', 'abc', 2, ?1)",
                    rusqlite::params![encode_vector(&[0.5, -2.0])],
                )
                .expect("old row");
        }
        let store = Store::open(dir.path()).expect("migrate");
        assert_eq!(
            store.cached_embedding("m1", "abc").expect("get"),
            Some(vec![0.5, -2.0])
        );
    }

    /// The next notice within 5 s, if one comes.
    fn next_notice(
        notices: &mut tokio::sync::broadcast::Receiver<Notice>,
    ) -> Option<(Notice, std::time::Duration)> {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(5) {
            if let Ok(notice) = notices.try_recv() {
                return Some((notice, start.elapsed()));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        None
    }

    #[test]
    fn an_announcement_reaches_every_instance_on_the_database_and_no_other() {
        let sqlite = Store::open_in_memory().expect("store");
        let mut heard = sqlite.subscribe();
        sqlite.announce("gallery").expect("announce");
        assert_eq!(
            next_notice(&mut heard).map(|(n, _)| n),
            Some(Notice::Changed("gallery".into()))
        );
        let Some(url) = test_postgres_url() else {
            return;
        };
        let (one, two) = (
            Store::open_postgres(&url).expect("first instance"),
            Store::open_postgres(&url).expect("second instance"),
        );
        let elsewhere = Store::open_postgres(&test_postgres_url().expect("url")).expect("other");
        let (mut on_two, mut on_elsewhere) = (two.subscribe(), elsewhere.subscribe());
        one.announce("gallery person01").expect("announce");
        let (notice, _) = next_notice(&mut on_two).expect("heard by the other instance");
        assert_eq!(notice, Notice::Changed("gallery person01".into()));
        assert_eq!(
            on_elsewhere.try_recv().ok(),
            None,
            "another schema's system hears nothing"
        );
    }

    #[test]
    fn administrators_are_added_and_removed() {
        for store in crate::store::test_stores() {
            assert!(!store.is_admin("alice").expect("read"));
            store.set_admin("alice", true).expect("add");
            store.set_admin("alice", true).expect("twice is once");
            assert!(store.is_admin("alice").expect("read"));
            assert_eq!(store.admins().expect("list"), ["alice"]);
            store.set_admin("alice", false).expect("remove");
            assert!(store.admins().expect("list").is_empty());
        }
    }
}
