//! What the server keeps: permalinks, the result cache and usage counts, behind one trait with
//! two implementations.
//!
//! 1. [`sqlite`]: the embedded default (`pe serve`): one SQLite file in the data directory, and
//!    the cached answers as files beside it.
//! 2. [`postgres`]: `pe serve --database postgres://...`: every server of a cluster shares it,
//!    cached answers included (rows with their bytes); schema migrations run at start.
//!
//! Handlers hold a [`Store`], which is cheap to clone and hides which one is behind it.

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A boxed future, so stores can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Sql(#[from] rusqlite::Error),
    #[error("PostgreSQL error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("cannot use {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the database worker stopped")]
    Join(#[from] tokio::task::JoinError),
}

impl StoreError {
    /// Whether the database is unreachable (down, restarting, overloaded) rather than the
    /// request or the data being wrong: worth a 503 and a retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Postgres(err) => err.is_closed() || err.as_db_error().is_none(),
            _ => false,
        }
    }
}

/// What a store does. Links are immutable (the same id always holds the same state); the cache
/// is bounded in bytes and evicts the least recently used entries.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    fn put_link(&self, id: String, state: String) -> BoxFuture<'_, Result<(), StoreError>>;
    fn get_link(&self, id: String) -> BoxFuture<'_, Result<Option<String>, StoreError>>;
    /// A cached answer, marked used.
    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
    /// Stores an answer, then evicts beyond the budget.
    fn cache_put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn record_run(&self, container: String) -> BoxFuture<'_, Result<(), StoreError>>;
    fn most_used(
        &self,
        limit: usize,
        within_secs: i64,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    fn cache_size(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
    fn gc(&self, max_age_secs: i64) -> BoxFuture<'_, Result<usize, StoreError>>;
    /// Whether the database answers now (for `/readyz`).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;
}

/// The store the server uses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn Backend>,
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// The embedded store: opens (creating) `<data_dir>/pe.sqlite3` and `<data_dir>/cache/`.
    pub fn open(data_dir: &Path, cache_budget: u64) -> Result<Store, StoreError> {
        Ok(Store { inner: Arc::new(sqlite::Sqlite::open(data_dir, cache_budget)?) })
    }

    /// The shared store: connects to PostgreSQL at `url` and migrates its schema.
    pub async fn postgres(url: &str, cache_budget: u64) -> Result<Store, StoreError> {
        Ok(Store { inner: Arc::new(postgres::Postgres::connect(url, cache_budget).await?) })
    }

    /// `--database`: a `postgres://` (or `postgresql://`) URL, else the SQLite store in
    /// `data_dir`.
    pub async fn from_url(
        url: Option<&str>,
        data_dir: &Path,
        cache_budget: u64,
    ) -> Result<Store, StoreError> {
        match url {
            Some(url) => Store::postgres(url, cache_budget).await,
            None => Store::open(data_dir, cache_budget),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    /// Stores a permalink's state (links are immutable: the same id always holds the same
    /// state, since the id is derived from it).
    pub async fn put_link(&self, id: String, state: String) -> Result<(), StoreError> {
        self.inner.put_link(id, state).await
    }

    pub async fn get_link(&self, id: String) -> Result<Option<String>, StoreError> {
        self.inner.get_link(id).await
    }

    /// A cached answer, and marks it used.
    pub async fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.cache_get(key).await
    }

    /// Stores an answer, then evicts the least recently used entries beyond the budget.
    pub async fn cache_put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.inner.cache_put(key, bytes).await
    }

    /// Counts a run of `container` that reached the executor (for `--warm auto`).
    pub async fn record_run(&self, container: String) -> Result<(), StoreError> {
        self.inner.record_run(container).await
    }

    /// The containers run most, most first, among those run in the last `within_secs`.
    pub async fn most_used(
        &self,
        limit: usize,
        within_secs: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.most_used(limit, within_secs).await
    }

    /// Bytes held by the cache.
    pub async fn cache_size(&self) -> Result<u64, StoreError> {
        self.inner.cache_size().await
    }

    /// Removes cache entries unused for `max_age_secs` (and, for SQLite, stray files). Returns
    /// how many entries were removed.
    pub async fn gc(&self, max_age_secs: i64) -> Result<usize, StoreError> {
        self.inner.gc(max_age_secs).await
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
