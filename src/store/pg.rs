//! The store on PostgreSQL: a pool of connections (deadpool-postgres) whose tasks run on the
//! store's own small runtime, so that the store's synchronous calls work from any thread, the
//! server's async ones included, as they do on SQLite.

use std::time::Duration;

use std::sync::OnceLock;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};

use super::db::postgres::PgConn;
use super::db::{Conn, DbError, params};

/// Advisory lock keys (PostgreSQL's one 64-bit space, per database): whoever holds the write
/// lock writes alone, as SQLite's `BEGIN IMMEDIATE` makes a writer; the migration lock keeps
/// instances started together from migrating twice.
const WRITE_LOCK: i64 = 0x6661_6365_6c69_0001;
const MIGRATION_LOCK: i64 = 0x6661_6365_6c69_0002;

/// The most connections one instance opens.
const POOL_SIZE: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Postgres {
    pool: Pool,
    config: tokio_postgres::Config,
    /// Where this database's notices are sent (`NOTIFY`), listened to once someone subscribes.
    channel: String,
    listening: OnceLock<()>,
    /// Runs the connections' tasks; shut down without waiting when the store goes, which may
    /// be on an async thread.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Postgres {
    /// Connects (the first connection is made here, so a wrong URL fails now) and migrates.
    pub fn connect(url: &str, migrations: &[&str]) -> Result<Self, DbError> {
        let config: tokio_postgres::Config = url.parse()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("facelift-db")
            .enable_all()
            .build()
            .map_err(|e| DbError::Postgres(format!("starting the database runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| DbError::Postgres(e.to_string()))?;
        let mut postgres = Self {
            pool,
            config,
            channel: String::new(),
            listening: OnceLock::new(),
            runtime: Some(runtime),
        };
        postgres.migrate(migrations)?;
        // one channel per schema, so that systems (and tests) sharing a database do not hear
        // each other
        let schema: String = postgres.with(|c| {
            (c as &dyn Conn).query_row("SELECT current_schema()", params![], |r| r.get(0))
        })?;
        postgres.channel = format!(
            "facelift_{}",
            schema
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                })
                .collect::<String>()
        );
        Ok(postgres)
    }

    fn client(&self) -> Result<Object, DbError> {
        let pool = self.pool.clone();
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| DbError::Postgres("the store is closed".into()))?;
        let task = runtime.spawn(async move { pool.get().await });
        futures_executor::block_on(task)
            .map_err(|e| DbError::Postgres(format!("the database task stopped: {e}")))?
            .map_err(|e| DbError::Postgres(pool_error(e)))
    }

    pub fn with<T>(&self, f: impl FnOnce(&dyn Conn) -> Result<T, DbError>) -> Result<T, DbError> {
        let client = self.client()?;
        f(&PgConn { client: &client })
    }

    /// Runs `f` in one transaction holding the write lock from its start, committed when it
    /// returns Ok and rolled back otherwise. A connection left inside a transaction by a panic
    /// is closed, not returned to the pool.
    pub fn with_transaction<T>(
        &self,
        f: impl FnOnce(&dyn Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.locked_transaction(WRITE_LOCK, f)
    }

    /// Runs `f` in one transaction holding the advisory lock `lock` from its start.
    fn locked_transaction<T>(
        &self,
        lock: i64,
        f: impl FnOnce(&dyn Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut lent = Lent {
            client: Some(self.client()?),
            settled: false,
        };
        let client = lent
            .client
            .as_ref()
            .ok_or_else(|| DbError::Postgres("the store is closed".into()))?;
        let conn = PgConn { client };
        conn.execute_batch("BEGIN")?;
        let result = (&conn as &dyn Conn)
            .query("SELECT pg_advisory_xact_lock(?1)", params![lock])
            .and_then(|_| f(&conn));
        let settled = match &result {
            Ok(_) => conn.execute_batch("COMMIT"),
            Err(_) => conn.execute_batch("ROLLBACK"),
        };
        lent.settled = settled.is_ok();
        let value = result?;
        settled?;
        Ok(value)
    }

    /// Applies the migrations not yet applied, in one transaction, one instance at a time;
    /// `facelift_schema` records how many ran.
    fn migrate(&self, migrations: &[&str]) -> Result<(), DbError> {
        self.locked_transaction(MIGRATION_LOCK, |c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS facelift_schema (version BIGINT NOT NULL)",
            )?;
            let applied: Option<usize> = c
                .query("SELECT version FROM facelift_schema", params![])?
                .first()
                .map(|row| row.get(0))
                .transpose()?;
            if applied.is_none() {
                c.execute(
                    "INSERT INTO facelift_schema (version) VALUES (0)",
                    params![],
                )?;
            }
            let applied = applied.unwrap_or(0);
            if applied > migrations.len() {
                return Err(DbError::Postgres(format!(
                    "the database's schema ({applied}) is newer than this facelift's ({}): \
                     upgrade facelift",
                    migrations.len()
                )));
            }
            for (index, migration) in migrations.iter().enumerate().skip(applied) {
                c.execute_batch(migration)?;
                c.execute(
                    "UPDATE facelift_schema SET version = ?1",
                    params![index + 1],
                )?;
            }
            Ok(())
        })
    }
}

impl Postgres {
    /// Sends `payload` to every instance listening on this database (this one too), when the
    /// transaction it runs in commits (now, outside one).
    pub fn notify(&self, payload: &str) -> Result<(), DbError> {
        self.with(|c| {
            c.query(
                "SELECT pg_notify(?1, ?2)",
                params![self.channel.as_str(), payload],
            )
            .map(drop)
        })
    }

    /// Starts (once) the task that listens on its own connection and passes each notice to
    /// `notices`, and waits (up to `CONNECT_TIMEOUT`) until it listens. After the connection
    /// is lost and made again it sends `Notice::Missed`: what was sent in between is lost, and
    /// listeners must read again what they keep.
    pub fn listen(&self, notices: &broadcast::Sender<super::Notice>) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        self.listening.get_or_init(|| {
            let (config, channel, notices) =
                (self.config.clone(), self.channel.clone(), notices.clone());
            let (ready, listening) = std::sync::mpsc::channel();
            runtime.spawn(listen_forever(config, channel, notices, ready));
            if listening.recv_timeout(CONNECT_TIMEOUT).is_err() {
                tracing::warn!("the database listener is not listening yet");
            }
        });
    }
}

async fn listen_forever(
    config: tokio_postgres::Config,
    channel: String,
    notices: broadcast::Sender<super::Notice>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let mut connected_before = false;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut forward = std::pin::pin!(async {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                let _ =
                                    notices.send(super::Notice::Changed(n.payload().to_string()));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("the database listener's connection: {e}");
                                break;
                            }
                        }
                    }
                });
                let listen = format!("LISTEN \"{channel}\"");
                let listening = tokio::select! {
                    answer = client.batch_execute(&listen) => answer.is_ok(),
                    () = &mut forward => false,
                };
                if listening {
                    if connected_before {
                        let _ = notices.send(super::Notice::Missed);
                    }
                    connected_before = true;
                    let _ = ready.send(());
                    forward.await;
                }
                drop(client);
            }
            Err(e) => tracing::warn!("the database listener cannot connect: {}", DbError::from(e)),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => DbError::from(e).to_string(),
        other => other.to_string(),
    }
}

/// A pooled connection lent to a transaction.
struct Lent {
    client: Option<Object>,
    settled: bool,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if !self.settled
            && let Some(client) = self.client.take()
        {
            drop(Object::take(client));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
