//! Read replicas on a real primary and streaming standby (started by the testkit):
//! ORM reads go to the replica, writes and transactions to the primary, a session
//! that wrote reads its own writes, a lagging replica is skipped until it catches up,
//! and a replica killed while loads run sends them to the primary without an error.
//!
//! The standby's replay is paused (`pg_wal_replay_pause()`) to tell the two servers
//! apart: a row written then is on the primary only, so whether a read sees it says
//! which server answered.

mod common;
mod differential;

use std::time::{Duration, Instant};

use common::shop::*;
use differential::Data;
use futures_util::TryStreamExt;
use matrx_orm::prelude::*;
use matrx_orm::Error;
use matrx_orm_testkit::{connect, StreamingPair};

struct Fixture {
    pair: StreamingPair,
    db: Db,
}

/// A primary with the shop schema and three orders, its standby caught up, and a
/// `Db` reading from the standby (lag bound `max_lag`, rechecked every 20 ms). `None`
/// (with the reason printed) when this machine cannot start a standby.
async fn fixture(max_lag: Duration) -> Option<Fixture> {
    let pair = match tokio::task::spawn_blocking(StreamingPair::start).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => {
            eprintln!("SKIPPED: no primary + standby pair could be started here: {err}");
            return None;
        }
        Err(err) => panic!("starting the pair panicked: {err}"),
    };
    let standby = pair.standby_url().expect("the standby runs");
    let db = Db::builder(pair.primary_url())
        .replica(standby)
        .replica_max_lag(max_lag)
        .replica_recheck(Duration::from_millis(20))
        .pool_size(8)
        .connect()
        .await
        .expect("connect to the primary");
    matrx_orm::ddl::create_tables(&db, &common::shop::models())
        .await
        .expect("create the shop tables");
    let data = Data::small();
    data.insert(&db).await.expect("insert the shop rows");
    pair.wait_replayed().await.expect("the standby catches up");
    Some(Fixture { pair, db })
}

impl Fixture {
    async fn standby(&self) -> tokio_postgres::Client {
        let url = self.pair.standby_url().expect("the standby runs");
        connect(&url).await.expect("connect to the standby")
    }

    async fn pause_replay(&self) {
        self.standby()
            .await
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .expect("pause replay");
    }

    async fn resume_replay(&self) {
        self.standby()
            .await
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .expect("resume replay");
        self.pair
            .wait_replayed()
            .await
            .expect("the standby catches up");
    }

    /// Writes order `id` for customer 1 through the ORM (on the primary).
    async fn write_order(&self, ex: &impl Executor, id: i64) {
        let order = Order {
            id,
            customer_id: 1,
            status: "new".into(),
            placed_at: differential::ts(id),
            total_cents: id,
            customer: Default::default(),
            items: Default::default(),
            tags: Default::default(),
        };
        Order::insert_rows(&[order])
            .include_auto()
            .exec(ex)
            .await
            .expect("insert an order");
    }

    /// The number of orders on the primary, asked directly.
    async fn primary_orders(&self) -> i64 {
        self.db
            .query_sql("SELECT count(*) FROM orders", &[])
            .await
            .expect("count on the primary")[0]
            .get(0)
    }
}

#[tokio::test]
async fn reads_go_to_the_replica_and_writes_and_transactions_to_the_primary() {
    let Some(f) = fixture(Duration::from_secs(30)).await else {
        return;
    };
    let db = &f.db;

    // A load with an edge: both statements answered by the replica, counted as usual.
    let (reads, queries) = (db.replica_reads(), db.query_count());
    let orders = Order::query()
        .order_by(Order::ID.asc())
        .prefetch(Order::CUSTOMER)
        .all(db)
        .await
        .unwrap();
    assert_eq!(orders.len(), 3);
    assert!(orders.iter().all(|o| o.customer.get().is_some()));
    assert_eq!(db.query_count() - queries, 2);
    assert_eq!(
        db.replica_reads() - reads,
        2,
        "root and edge on the replica"
    );

    // With replay paused, a row written now exists on the primary only.
    f.pause_replay().await;
    f.write_order(db, 10).await;
    assert_eq!(f.primary_orders().await, 4, "the write went to the primary");
    assert_eq!(
        Order::query().count(db).await.unwrap(),
        3,
        "read on the replica"
    );
    assert!(
        matches!(Order::get(db, &10).await, Err(Error::NotFound { .. })),
        "a get by key reads the replica"
    );
    let streamed: Vec<Order> = Order::query().stream(db).try_collect().await.unwrap();
    assert_eq!(streamed.len(), 3, "a stream reads the replica");

    // A transaction runs on the primary and sees everything committed there.
    let reads = db.replica_reads();
    let in_tx = db
        .transaction(async |tx| Order::query().count(tx).await)
        .await
        .unwrap();
    assert_eq!(in_tx, 4);
    assert_eq!(
        db.replica_reads(),
        reads,
        "nothing in a transaction reads the replica"
    );

    // Raw SQL may write, so it runs on the primary.
    let rows = db
        .query_sql("SELECT count(*) FROM orders", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 4);

    f.resume_replay().await;
    assert_eq!(Order::query().count(db).await.unwrap(), 4, "replayed");
}

#[tokio::test]
async fn a_session_that_wrote_reads_its_own_writes() {
    let Some(f) = fixture(Duration::from_secs(30)).await else {
        return;
    };
    f.pause_replay().await;

    let session = f.db.session();
    assert_eq!(Order::query().count(&session).await.unwrap(), 3);
    let reads = f.db.replica_reads();
    f.write_order(&session, 11).await;
    // From its first write on, the session reads from the primary: it sees its row.
    let mine = Order::get(&session, &11).await.unwrap();
    assert_eq!(mine.id, 11);
    assert_eq!(Order::query().count(&session).await.unwrap(), 4);
    assert_eq!(
        f.db.replica_reads(),
        reads,
        "the session stopped using the replica"
    );

    // Another session has not written: it still reads the (paused) replica.
    let other = f.db.session();
    assert_eq!(Order::query().count(&other).await.unwrap(), 3);
    assert!(f.db.replica_reads() > reads);
    f.resume_replay().await;
}

/// Which backend answered each of `n` concurrent reads of `ex`, and whether it was
/// a standby.
async fn read_backends(ex: &impl Executor, n: usize) -> Vec<(i32, bool)> {
    futures_util::future::try_join_all((0..n).map(|_| async {
        let rows = ex
            .query_read(
                "SELECT pg_backend_pid(), pg_is_in_recovery(), pg_sleep(0.01)::text",
                &[],
            )
            .await?;
        Ok::<_, matrx_orm::Error>((rows[0].get(0), rows[0].get(1)))
    }))
    .await
    .unwrap()
}

#[tokio::test]
async fn a_session_reads_on_one_replica_connection_then_one_primary_connection() {
    let Some(f) = fixture(Duration::from_secs(30)).await else {
        return;
    };
    let session = f.db.session();
    let reads = read_backends(&session, 6).await;
    assert!(reads.iter().all(|&r| r == (reads[0].0, true)), "{reads:?}");
    f.write_order(&session, 12).await;
    let after = read_backends(&session, 6).await;
    assert!(after.iter().all(|&r| r == (after[0].0, false)), "{after:?}");
}

#[tokio::test]
async fn a_lagging_replica_is_skipped_until_it_catches_up() {
    let max_lag = Duration::from_millis(300);
    let Some(f) = fixture(max_lag).await else {
        return;
    };
    let db = &f.db;
    assert_eq!(Order::query().count(db).await.unwrap(), 3);
    assert!(db.replica_status()[0].usable);

    f.pause_replay().await;
    f.write_order(db, 12).await;
    // The standby receives the write but does not replay it: its lag grows past the
    // bound, and reads go to the primary (which has the row).
    let started = Instant::now();
    loop {
        let reads = db.replica_reads();
        let n = Order::query().count(db).await.unwrap();
        if n == 4 {
            assert_eq!(db.replica_reads(), reads, "the primary answered");
            break;
        }
        assert_eq!(n, 3, "the replica answered with what it replayed");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the lagging replica was never skipped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = &db.replica_status()[0];
    assert!(!status.usable, "{status:?}");
    assert!(status.lag.is_some_and(|lag| lag > max_lag), "{status:?}");

    f.resume_replay().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reads = db.replica_reads();
    assert_eq!(Order::query().count(db).await.unwrap(), 4);
    assert_eq!(db.replica_reads() - reads, 1, "back on the replica");
    assert!(db.replica_status()[0].usable);
}

#[tokio::test]
async fn a_replica_killed_mid_load_sends_reads_to_the_primary() {
    let Some(mut f) = fixture(Duration::from_secs(30)).await else {
        return;
    };
    let db = f.db.clone();
    let deadline = Instant::now() + Duration::from_millis(1500);
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut loads = 0;
                while Instant::now() < deadline {
                    let orders = Order::query()
                        .order_by(Order::ID.asc())
                        .prefetch(Order::CUSTOMER)
                        .prefetch(Order::ITEMS)
                        .all(&db)
                        .await?;
                    let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
                    assert_eq!(ids, [1, 2, 3]);
                    assert!(orders.iter().all(|o| o.customer.get().is_some()));
                    assert!(orders.iter().all(|o| o.items.get().is_some()));
                    loads += 1;
                }
                Ok::<_, Error>(loads)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reads_before_kill = db.replica_reads();
    assert!(reads_before_kill > 0, "the loads used the replica");
    let pair = tokio::task::spawn_blocking(move || {
        f.pair.kill_standby();
        f.pair
    })
    .await
    .unwrap();
    let mut loads = 0;
    for loader in loaders {
        loads += loader.await.unwrap().expect("every load succeeds");
    }
    assert!(loads > 4, "the loads kept running ({loads})");
    let status = &db.replica_status()[0];
    assert!(!status.usable, "{status:?}");
    // Later reads go to the primary.
    let reads = db.replica_reads();
    assert_eq!(Order::query().count(&db).await.unwrap(), 3);
    assert_eq!(db.replica_reads(), reads);
    drop(pair);
}

#[tokio::test]
async fn rows_read_from_a_replica_never_fill_the_shared_cache() {
    let Some(f) = fixture(Duration::from_secs(30)).await else {
        return;
    };
    let standby = f.pair.standby_url().expect("the standby runs");
    let cached = |replica: Option<String>| {
        let mut builder = Db::builder(f.pair.primary_url())
            .cache::<Customer>(matrx_orm::cache::CachePolicy::Permanent);
        if let Some(url) = replica {
            builder = builder.replica(url);
        }
        builder.connect()
    };
    // A replica may be behind the primary: what it answered is never stored, so a
    // later read (on the primary, in a session that wrote) cannot be served an older row.
    let with_replica = cached(Some(standby)).await.unwrap();
    let orders = Order::query()
        .prefetch(Order::CUSTOMER)
        .all(&with_replica)
        .await
        .unwrap();
    assert!(orders.iter().all(|o| o.customer.get().is_some()));
    assert!(with_replica.replica_reads() > 0);
    assert_eq!(with_replica.cache_stats::<Customer>().len, 0);

    // The same load on the primary alone fills it.
    let primary_only = cached(None).await.unwrap();
    Order::query()
        .prefetch(Order::CUSTOMER)
        .all(&primary_only)
        .await
        .unwrap();
    assert_eq!(primary_only.cache_stats::<Customer>().len, 2);
}
