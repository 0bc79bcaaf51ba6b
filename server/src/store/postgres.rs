//! The shared store: PostgreSQL, for every server of a cluster (`pe serve --database
//! postgres://...`).
//!
//! 1. [`Postgres::connect`] connects and runs the [`MIGRATIONS`] not yet applied, in one
//!    transaction under an advisory lock, so servers starting together migrate once.
//! 2. One connection is shared (tokio-postgres pipelines concurrent queries on it); when it
//!    breaks (the database restarted), the next call connects again. Every call has a deadline,
//!    so a database that hangs is reported as unavailable instead of holding requests.
//! 3. The result cache keeps each answer's bytes in its row. Once this process has written a
//!    sixteenth of the budget since it last evicted, the least recently used rows beyond the
//!    budget go, in one statement (a running sum over `used`): the eviction's scan is paid
//!    every few writes, not on each, and the cache stays within the budget plus what the
//!    servers wrote since their last eviction.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use super::{BoxFuture, StoreError, now};

/// How long one call may take before the database counts as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Any constant the servers agree on: the advisory lock the migrations take.
const MIGRATION_LOCK: i64 = 0x7065_6d69_6772;

/// Schema versions, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE links (id TEXT PRIMARY KEY, state TEXT NOT NULL, created BIGINT NOT NULL);
     CREATE TABLE cache (key TEXT PRIMARY KEY, size BIGINT NOT NULL, used BIGINT NOT NULL,
                         data BYTEA NOT NULL);
     CREATE INDEX cache_used ON cache (used);
     CREATE TABLE usage (container TEXT PRIMARY KEY, runs BIGINT NOT NULL, last BIGINT NOT NULL);",
)];

/// A connection to PostgreSQL, made again when it breaks.
#[derive(Debug)]
pub struct Postgres {
    config: Config,
    client: Mutex<Option<Arc<Client>>>,
    cache_budget: i64,
    /// Bytes this process wrote to the cache since it last evicted.
    written: AtomicI64,
}

impl Postgres {
    /// Connects and migrates.
    pub async fn connect(url: &str, cache_budget: u64) -> Result<Postgres, StoreError> {
        let mut config = Config::from_str(url)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let mut client = open(&config).await?;
        migrate(&mut client).await?;
        Ok(Postgres {
            config,
            client: Mutex::new(Some(Arc::new(client))),
            cache_budget: cache_budget.min(i64::MAX as u64) as i64,
            written: AtomicI64::new(0),
        })
    }

    /// The connection, made again if it broke.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        *slot = None;
        let client = Arc::new(open(&self.config).await?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `f` with the connection, within [`CALL_TIMEOUT`].
    async fn call<'a, T, F, Fut>(&'a self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Client>) -> Fut + Send + 'a,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'a,
    {
        let work = async {
            let client = self.client().await?;
            Ok(f(client).await?)
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .unwrap_or(Err(StoreError::Timeout(CALL_TIMEOUT)))
    }
}

/// Connects, and drives the connection on a task of its own.
async fn open(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_elapsed| StoreError::Timeout(CONNECT_TIMEOUT))??;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %shared::error::chain(&err), "the PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Applies the migrations not applied yet, under an advisory lock.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS pe_schema (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i32> =
        tx.query("SELECT version FROM pe_schema", &[]).await?.iter().map(|r| r.get(0)).collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tracing::info!(version, "migrating the PostgreSQL schema");
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO pe_schema (version, applied) VALUES ($1, $2)", &[version, &now()])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

impl super::Backend for Postgres {
    fn put_link(&self, id: String, state: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.call(move |c| async move {
            c.execute(
                "INSERT INTO links (id, state, created) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &state, &now()],
            )
            .await
            .map(drop)
        }))
    }

    fn get_link(&self, id: String) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(self.call(move |c| async move {
            let row = c.query_opt("SELECT state FROM links WHERE id = $1", &[&id]).await?;
            Ok(row.map(|r| r.get(0)))
        }))
    }

    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(self.call(move |c| async move {
            let row = c
                .query_opt(
                    "UPDATE cache SET used = $2 WHERE key = $1 RETURNING data",
                    &[&key, &now()],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        }))
    }

    fn cache_put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let budget = self.cache_budget;
        let size = bytes.len() as i64;
        let evict = size <= budget / 4
            && self.written.fetch_add(size, Ordering::Relaxed) + size >= budget / 16;
        if evict {
            self.written.store(0, Ordering::Relaxed);
        }
        Box::pin(self.call(move |c| async move {
            if size > budget / 4 {
                return Ok(()); // one entry may not crowd out the rest
            }
            c.execute(
                "INSERT INTO cache (key, size, used, data) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET size = $2, used = $3, data = $4",
                &[&key, &size, &now(), &bytes],
            )
            .await?;
            if !evict {
                return Ok(());
            }
            // Keep the most recently used rows whose sizes add up to the budget, this one
            // first (`used` is in seconds: ties are common).
            c.execute(
                "DELETE FROM cache WHERE key IN (
                     SELECT key FROM (
                         SELECT key, (SUM(size) OVER (
                             ORDER BY (key = $2) DESC, used DESC, key))::BIGINT AS running
                         FROM cache) kept
                     WHERE running > $1)",
                &[&budget, &key],
            )
            .await?;
            Ok(())
        }))
    }

    fn record_run(&self, container: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.call(move |c| async move {
            c.execute(
                "INSERT INTO usage (container, runs, last) VALUES ($1, 1, $2)
                 ON CONFLICT (container) DO UPDATE SET runs = usage.runs + 1, last = $2",
                &[&container, &now()],
            )
            .await
            .map(drop)
        }))
    }

    fn most_used(
        &self,
        limit: usize,
        within_secs: i64,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.call(move |c| async move {
            let rows = c
                .query(
                    "SELECT container FROM usage WHERE last >= $1
                     ORDER BY runs DESC, container LIMIT $2",
                    &[&(now() - within_secs), &(limit as i64)],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        }))
    }

    fn cache_size(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.call(|c| async move {
            let row = c.query_one("SELECT COALESCE(SUM(size), 0)::BIGINT FROM cache", &[]).await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        }))
    }

    fn gc(&self, max_age_secs: i64) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(self.call(move |c| async move {
            let n =
                c.execute("DELETE FROM cache WHERE used < $1", &[&(now() - max_age_secs)]).await?;
            Ok(n as usize)
        }))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.call(|c| async move { c.batch_execute("SELECT 1").await }))
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}
