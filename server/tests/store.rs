//! The store trait's two implementations pass the same tests: SQLite in a temporary
//! directory, and a real PostgreSQL started for the test (throwaway, on loopback). Then what
//! only PostgreSQL has: migrations run once by servers starting together, and a database that
//! goes away and comes back.

mod common;

use common::cluster::Postgres;
use server::store::Store;

/// What every store must do.
async fn behaves(store: &Store) {
    // Links are immutable: the first state stays.
    store.put_link("abc".into(), "{\"x\":1}".into()).await.unwrap();
    store.put_link("abc".into(), "{\"x\":2}".into()).await.unwrap();
    assert_eq!(store.get_link("abc".into()).await.unwrap().as_deref(), Some("{\"x\":1}"));
    assert_eq!(store.get_link("nope".into()).await.unwrap(), None);

    // Usage ranks containers by runs.
    for (container, runs) in [("gcc", 3), ("python", 5), ("jq", 1)] {
        for _ in 0..runs {
            store.record_run(container.into()).await.unwrap();
        }
    }
    assert_eq!(store.most_used(2, 3600).await.unwrap(), ["python", "gcc"]);

    // The cache: a round trip, a replaced entry counted once, a bound in bytes.
    assert_eq!(store.cache_get("a").await.unwrap(), None);
    store.cache_put("a", vec![1; 200]).await.unwrap();
    store.cache_put("a", vec![2; 200]).await.unwrap();
    assert_eq!(store.cache_get("a").await.unwrap(), Some(vec![2; 200]));
    assert_eq!(store.cache_size().await.unwrap(), 200);
    for key in ["b", "c", "d", "e", "f", "g"] {
        store.cache_put(key, vec![3; 200]).await.unwrap();
    }
    assert!(store.cache_size().await.unwrap() <= 1000, "the budget holds");
    assert_eq!(store.cache_get("g").await.unwrap(), Some(vec![3; 200]), "the newest stays");
    // An entry larger than a quarter of the budget is not kept.
    store.cache_put("big", vec![0; 600]).await.unwrap();
    assert_eq!(store.cache_get("big").await.unwrap(), None);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1000).unwrap();
    assert_eq!(store.kind(), "sqlite");
    behaves(&store).await;
}

#[tokio::test]
async fn postgres_behaves_migrates_once_and_survives_a_restart() {
    let pg = Postgres::start();
    // Three servers starting at once: the migrations run once, and each server works.
    let url = pg.url();
    let stores = futures_util::future::join_all((0..3).map(|_| Store::postgres(&url, 1000))).await;
    let stores: Vec<Store> = stores.into_iter().map(Result::unwrap).collect();
    assert_eq!(stores[0].kind(), "postgres");
    behaves(&stores[0]).await;
    // What one server stored, another reads.
    assert_eq!(stores[1].get_link("abc".into()).await.unwrap().as_deref(), Some("{\"x\":1}"));
    assert_eq!(stores[2].cache_get("g").await.unwrap(), Some(vec![3; 200]));

    // The database goes away: calls fail as "unavailable", quickly.
    pg.stop();
    let started = std::time::Instant::now();
    let err = stores[0].get_link("abc".into()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(6), "took {:?}", started.elapsed());
    // It comes back: the same store connects again by itself.
    pg.start_again();
    assert_eq!(stores[0].get_link("abc".into()).await.unwrap().as_deref(), Some("{\"x\":1}"));
    // A fourth server finds the schema in place.
    let late = Store::postgres(&pg.url(), 1000).await.unwrap();
    assert_eq!(late.get_link("abc".into()).await.unwrap().as_deref(), Some("{\"x\":1}"));
}

/// The measurement behind the choice of PostgreSQL for the shared result cache (docs/
/// SCALING.md): put then get N answers of a few sizes through PostgreSQL's `cache` table and
/// through a JetStream object store bucket, on loopback. Run with
/// `cargo test -p server --test store -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn shared_cache_postgres_vs_object_store() {
    use common::cluster::Nats;
    use std::time::Instant;
    let pg = Postgres::start();
    let nats = Nats::start();
    let store = Store::postgres(&pg.url(), 1 << 30).await.unwrap();
    let bucket = server::cluster::images::open_bucket(&nats.url()).await.unwrap();
    const N: usize = 200;
    for size in [4 << 10, 64 << 10, 512 << 10] {
        let data = vec![7u8; size];
        let t = Instant::now();
        for i in 0..N {
            store.cache_put(&format!("k{size}-{i}"), data.clone()).await.unwrap();
        }
        let pg_put = t.elapsed() / N as u32;
        let t = Instant::now();
        for i in 0..N {
            assert_eq!(
                store.cache_get(&format!("k{size}-{i}")).await.unwrap().unwrap().len(),
                size
            );
        }
        let pg_get = t.elapsed() / N as u32;
        let t = Instant::now();
        for i in 0..N {
            let digest = format!("sha256:{:064x}", size * 1000 + i);
            server::cluster::images::upload(&bucket, &digest, &mut data.as_slice()).await.unwrap();
        }
        let os_put = t.elapsed() / N as u32;
        let t = Instant::now();
        for i in 0..N {
            let name = format!("sha256-{:064x}", size * 1000 + i);
            let mut object = bucket.get(name.as_str()).await.unwrap();
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes).await.unwrap();
            assert_eq!(bytes.len(), size);
        }
        let os_get = t.elapsed() / N as u32;
        println!(
            "| {} KiB | {pg_put:.2?} | {pg_get:.2?} | {os_put:.2?} | {os_get:.2?} |",
            size >> 10
        );
    }
}
