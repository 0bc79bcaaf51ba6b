//! The embedded store: SQLite (permalinks, usage and the result cache's index) and the
//! on-disk result cache.
//!
//! The cache keeps each result as one file `<data>/cache/<key>` holding the archive-form answer
//! (`<u32 len><RunResult JSON><cpio>`), and one row per file (key, size, last use) so it can be
//! bounded in bytes: when it grows past its budget the least recently used entries go, read a
//! few at a time from the `used` index. The total is kept beside the connection (summed once at
//! open), so a write costs no scan. Each write goes to a temporary file of its own, renamed
//! into place: concurrent writers of one key never share one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{BoxFuture, StoreError, now};

/// SQLite plus the cache directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sqlite {
    db: Arc<Mutex<Db>>,
    cache_dir: PathBuf,
    cache_budget: u64,
}

/// The connection, and the cache's total size in bytes (what `SUM(size)` would say).
#[derive(Debug)]
struct Db {
    conn: Connection,
    cache_total: i64,
}

/// Tells temporary files of this process apart.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Cache rows read per step of an eviction.
const EVICT_BATCH: i64 = 32;

impl super::Backend for Sqlite {
    fn put_link(&self, id: String, state: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.put_link(id, state))
    }
    fn get_link(&self, id: String) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(self.get_link(id))
    }
    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(self.cache_get(key))
    }
    fn cache_put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.cache_put(key, bytes))
    }
    fn record_run(&self, container: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.record_run(container))
    }
    fn most_used(
        &self,
        limit: usize,
        within_secs: i64,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.most_used(limit, within_secs))
    }
    fn cache_size(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.cache_size())
    }
    fn gc(&self, max_age_secs: i64) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(self.gc(max_age_secs))
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.with_db(|db| Ok(db.query_row("SELECT 1", [], |_| Ok(()))?)))
    }
    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

impl Sqlite {
    /// Opens (creating) `<data_dir>/pe.sqlite3` and `<data_dir>/cache/`.
    pub fn open(data_dir: &Path, cache_budget: u64) -> Result<Sqlite, StoreError> {
        let cache_dir = data_dir.join("cache");
        std::fs::create_dir_all(&cache_dir)
            .map_err(|source| StoreError::Io { path: cache_dir.clone(), source })?;
        let db = Connection::open(data_dir.join("pe.sqlite3"))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS links (
                 id TEXT PRIMARY KEY, state TEXT NOT NULL, created INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS cache (
                 key TEXT PRIMARY KEY, size INTEGER NOT NULL, used INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS cache_used ON cache (used);
             CREATE TABLE IF NOT EXISTS usage (
                 container TEXT PRIMARY KEY, runs INTEGER NOT NULL, last INTEGER NOT NULL);",
        )?;
        let cache_total: i64 =
            db.query_row("SELECT COALESCE(SUM(size), 0) FROM cache", [], |r| r.get(0))?;
        Ok(Sqlite {
            db: Arc::new(Mutex::new(Db { conn: db, cache_total })),
            cache_dir,
            cache_budget,
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.with_state(move |db| f(&db.conn)).await
    }

    /// Runs `f` with the connection and the cache total on a blocking thread.
    async fn with_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut db)
        })
        .await?
    }

    /// Stores a permalink's state (links are immutable: the same id always holds the same
    /// state, since the id is derived from it).
    pub async fn put_link(&self, id: String, state: String) -> Result<(), StoreError> {
        self.with_db(move |db| {
            db.execute(
                "INSERT OR IGNORE INTO links (id, state, created) VALUES (?1, ?2, ?3)",
                params![id, state, now()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn get_link(&self, id: String) -> Result<Option<String>, StoreError> {
        self.with_db(move |db| {
            Ok(db
                .query_row("SELECT state FROM links WHERE id = ?1", [id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    fn cache_path(&self, key: &str) -> PathBuf {
        self.cache_dir.join(key)
    }

    /// A cached answer, and marks it used.
    pub async fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.cache_path(key);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let key = key.to_owned();
        self.with_db(move |db| {
            db.execute("UPDATE cache SET used = ?2 WHERE key = ?1", params![key, now()])?;
            Ok(())
        })
        .await?;
        Ok(Some(bytes))
    }

    /// Stores an answer, then evicts the least recently used entries beyond the budget.
    pub async fn cache_put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        if bytes.len() as u64 > self.cache_budget / 4 {
            return Ok(()); // one entry may not crowd out the rest
        }
        let path = self.cache_path(key);
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.cache_dir.join(format!(".{key}.{}.{n}.tmp", std::process::id()));
        let size = bytes.len() as i64;
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|source| StoreError::Io { path: tmp.clone(), source })?;
        if let Err(source) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(StoreError::Io { path: path.clone(), source });
        }
        let key = key.to_owned();
        let budget = self.cache_budget as i64;
        let dir = self.cache_dir.clone();
        self.with_state(move |db| {
            let old: Option<i64> = db
                .conn
                .query_row("SELECT size FROM cache WHERE key = ?1", [&key], |r| r.get(0))
                .optional()?;
            db.conn.execute(
                "INSERT OR REPLACE INTO cache (key, size, used) VALUES (?1, ?2, ?3)",
                params![key, size, now()],
            )?;
            db.cache_total += size - old.unwrap_or(0);
            while db.cache_total > budget {
                let victims: Vec<(String, i64)> = db
                    .conn
                    .prepare_cached("SELECT key, size FROM cache ORDER BY used ASC LIMIT ?1")?
                    .query_map([EVICT_BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                if victims.is_empty() {
                    break;
                }
                for (victim, size) in victims {
                    if db.cache_total <= budget {
                        break;
                    }
                    let _ = std::fs::remove_file(dir.join(&victim));
                    db.conn.execute("DELETE FROM cache WHERE key = ?1", [&victim])?;
                    db.cache_total -= size;
                }
            }
            Ok(())
        })
        .await
    }

    /// Counts a run of `container` that reached the executor (for `--warm auto`).
    pub async fn record_run(&self, container: String) -> Result<(), StoreError> {
        self.with_db(move |db| {
            db.execute(
                "INSERT INTO usage (container, runs, last) VALUES (?1, 1, ?2)
                 ON CONFLICT (container) DO UPDATE SET runs = runs + 1, last = ?2",
                params![container, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// The containers run most, most first, among those run in the last `within_secs`.
    pub async fn most_used(
        &self,
        limit: usize,
        within_secs: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.with_db(move |db| {
            let mut stmt = db.prepare(
                "SELECT container FROM usage WHERE last >= ?1
                 ORDER BY runs DESC, container LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![now() - within_secs, limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Bytes held by the cache.
    pub async fn cache_size(&self) -> Result<u64, StoreError> {
        self.with_state(|db| Ok(db.cache_total.max(0) as u64)).await
    }

    /// Removes cache entries unused for `max_age_secs` and stray temporary files. Returns how
    /// many entries were removed.
    pub async fn gc(&self, max_age_secs: i64) -> Result<usize, StoreError> {
        let dir = self.cache_dir.clone();
        self.with_state(move |state| {
            let cutoff = now() - max_age_secs;
            let db = &state.conn;
            let mut stmt = db.prepare("SELECT key, size FROM cache WHERE used < ?1")?;
            let old: Vec<(String, i64)> = stmt
                .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (key, size) in &old {
                let _ = std::fs::remove_file(dir.join(key));
                db.execute("DELETE FROM cache WHERE key = ?1", [key])?;
                state.cache_total -= size;
            }
            // Files without a row (a crash between write and insert) and temporary files.
            if let Ok(read) = std::fs::read_dir(&dir) {
                for entry in read.filter_map(Result::ok) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let known: bool = db
                        .query_row("SELECT 1 FROM cache WHERE key = ?1", [&name], |_| Ok(true))
                        .optional()?
                        .unwrap_or(false);
                    if !known {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            Ok(old.len())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn links_round_trip_and_are_immutable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path(), 1 << 20).unwrap();
        store.put_link("abc".into(), "{\"x\":1}".into()).await.unwrap();
        store.put_link("abc".into(), "{\"x\":2}".into()).await.unwrap();
        assert_eq!(store.get_link("abc".into()).await.unwrap().as_deref(), Some("{\"x\":1}"));
        assert_eq!(store.get_link("nope".into()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn usage_ranks_containers_by_runs_and_forgets_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path(), 1 << 20).unwrap();
        for (container, runs) in [("gcc", 3), ("python", 5), ("jq", 1), ("old", 9)] {
            for _ in 0..runs {
                store.record_run(container.into()).await.unwrap();
            }
        }
        store
            .with_db(|db| Ok(db.execute("UPDATE usage SET last = 0 WHERE container = 'old'", [])?))
            .await
            .unwrap();
        assert_eq!(store.most_used(2, 3600).await.unwrap(), ["python", "gcc"]);
        assert_eq!(store.most_used(10, 3600).await.unwrap(), ["python", "gcc", "jq"]);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path(), 1000).unwrap();
        store.cache_put("a", vec![1; 200]).await.unwrap();
        store.cache_put("b", vec![2; 200]).await.unwrap();
        // Make "a" the oldest by use time.
        store
            .with_db(|db| Ok(db.execute("UPDATE cache SET used = 0 WHERE key = 'a'", [])?))
            .await
            .unwrap();
        // Replacing an entry counts its size once.
        store.cache_put("b", vec![2; 200]).await.unwrap();
        assert_eq!(store.cache_size().await.unwrap(), 400);
        for key in ["c", "d", "e"] {
            store.cache_put(key, vec![3; 200]).await.unwrap();
        }
        store.cache_put("f", vec![4; 200]).await.unwrap();
        assert!(store.cache_size().await.unwrap() <= 1000);
        assert_eq!(store.cache_get("a").await.unwrap(), None, "least recently used went first");
        assert_eq!(store.cache_get("f").await.unwrap(), Some(vec![4; 200]));
        // An entry larger than a quarter of the budget is not kept.
        store.cache_put("big", vec![0; 600]).await.unwrap();
        assert_eq!(store.cache_get("big").await.unwrap(), None);
        // The kept total is what the rows say, also after reopening.
        let summed: i64 = store
            .with_db(|db| Ok(db.query_row("SELECT SUM(size) FROM cache", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(store.cache_size().await.unwrap(), summed as u64);
        drop(store);
        let reopened = Sqlite::open(dir.path(), 1000).unwrap();
        assert_eq!(reopened.cache_size().await.unwrap(), summed as u64);
    }

    #[tokio::test]
    async fn concurrent_writers_of_one_key_each_use_a_file_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path(), 1 << 30).unwrap();
        let writers: Vec<_> = (0..32u8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.cache_put("k", vec![n; 64 * 1024]).await })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().expect("every writer succeeds");
        }
        let kept = store.cache_get("k").await.unwrap().unwrap();
        assert_eq!(kept.len(), 64 * 1024);
        assert!(kept.iter().all(|b| *b == kept[0]), "one writer's whole answer, not a mix");
        assert_eq!(store.cache_size().await.unwrap(), 64 * 1024);
        let strays = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
        assert_eq!(strays, 1, "no temporary file is left");
    }
}
