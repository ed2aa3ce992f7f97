//! A server restart and a server outage under a running workload, on a private
//! cluster this test starts and controls (the shared test server is never touched).
//!
//! In-flight calls must fail with typed errors (never a panic, never an opaque
//! `Driver` error), and later calls must succeed on the same `Db`, without rebuilding
//! it: the pool replaces its dead connections by itself.

mod common;
mod fixtures;
mod reliability;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::shop::*;
use fixtures::customer;
use matrx_orm::prelude::*;
use matrx_orm::Error;
use reliability::cluster::PrivateCluster;
use reliability::Rng;

/// What one workload call did, and when (relative to the test's start).
#[derive(Debug)]
struct Outcome {
    started: Duration,
    kind: &'static str,
    result: Result<(), Error>,
}

/// Whether `err` is one of the typed errors a restart may cause.
fn restart_error(err: &Error) -> bool {
    match err {
        Error::Connection(_) => true,
        // 57P03 "the database system is starting up / shutting down" and the other
        // operator-intervention codes are reported with their SQLSTATE.
        Error::Database { code, .. } => code.starts_with("57"),
        _ => false,
    }
}

async fn workload_call(db: &Db, rng: &mut Rng, kind: u64) -> (&'static str, Result<(), Error>) {
    match kind {
        0 => {
            let v = rng.below(1_000_000) as i64;
            let r = db
                .query_sql("SELECT $1::int8, pg_sleep(0.02)", &[&v])
                .await
                .map(|rows| {
                    assert_eq!(rows.len(), 1);
                    assert_eq!(rows[0].get::<_, i64>(0), v, "a row answering another call");
                });
            ("raw", r)
        }
        1 => {
            let r = Customer::query()
                .filter(Customer::ID.is_in(1..=20i64))
                .prefetch(Customer::ORDERS.with(Order::ITEMS))
                .all(db)
                .await
                .map(|cs| {
                    for c in &cs {
                        for o in c.orders.get().unwrap() {
                            assert_eq!(o.customer_id, c.id);
                        }
                    }
                });
            ("prefetch", r)
        }
        2 => {
            let session = db.session();
            let ids: Vec<i64> = (0..5).map(|_| rng.below(40) as i64 + 1).collect();
            let r = futures_util::future::try_join_all(ids.iter().map(|id| {
                let session = &session;
                async move {
                    let o = Order::get(session, id).await?;
                    let c = o.fetch(session, Order::CUSTOMER).await?;
                    assert_eq!(c.map(|c| c.id), Some(o.customer_id));
                    Ok::<_, Error>(())
                }
            }))
            .await
            .map(drop);
            ("session", r)
        }
        _ => {
            let email = format!("w{}@x", rng.next_u64());
            let r = async {
                let tx = db.begin().await?;
                customer("W", &email).insert(&tx).await?;
                tx.query_sql("SELECT pg_sleep(0.01)", &[]).await?;
                tx.commit().await
            }
            .await;
            ("transaction", r)
        }
    }
}

async fn seed_shop(db: &Db) {
    matrx_orm::ddl::create_tables(db, &models()).await.unwrap();
    let cs: Vec<Customer> = (0..20)
        .map(|i| customer(&format!("c{i}"), &format!("c{i}@x")))
        .collect();
    let cs = Customer::insert_many(db, &cs).await.unwrap();
    let orders: Vec<Order> = (0..40)
        .map(|i| fixtures::order(cs[i % cs.len()].id, "paid", i as i64))
        .collect();
    let orders = Order::insert_many(db, &orders).await.unwrap();
    let products = Product::insert_many(db, &[fixtures::product("p", "P", 1)])
        .await
        .unwrap();
    let items: Vec<OrderItem> = orders
        .iter()
        .map(|o| OrderItem {
            id: 0,
            order_id: o.id,
            product_id: products[0].id,
            quantity: 1,
            unit_price_cents: 1,
            order: Default::default(),
            product: Default::default(),
        })
        .collect();
    OrderItem::insert_many(db, &items).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_and_an_outage_fail_in_flight_calls_with_typed_errors_then_recover() {
    let Some(cluster) = tokio::task::spawn_blocking(|| PrivateCluster::start("restart"))
        .await
        .unwrap()
    else {
        eprintln!("skipped: no PostgreSQL binaries (initdb, pg_ctl) on this machine");
        return;
    };
    let cluster = Arc::new(cluster);
    let db = Db::builder(cluster.url())
        .pool_size(4)
        .pool_wait(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    seed_shop(&db).await;
    let committed_before: u64 = Customer::query().count(&db).await.unwrap();

    // Workers run the workload in a loop until told to stop.
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng::new(reliability::seed("faults_restart"));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let db = db.clone();
            let stop = stop.clone();
            let mut rng = rng.fork();
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut i = w as u64;
                while !stop.load(Ordering::Relaxed) {
                    let started = t0.elapsed();
                    let (kind, result) = workload_call(&db, &mut rng, i % 4).await;
                    if result.is_err() {
                        // Do not spin while the server is down.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    out.push(Outcome {
                        started,
                        kind,
                        result,
                    });
                    i += 1;
                }
                out
            })
        })
        .collect();

    // A transaction open across the restart.
    let open_tx = db.begin().await.unwrap();
    customer("tx", "tx@x").insert(&open_tx).await.unwrap();

    tokio::time::sleep(Duration::from_millis(400)).await;
    let restart_began = t0.elapsed();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart_fast())
        .await
        .unwrap()
        .unwrap();
    let restart_done = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // The open transaction lost its connection: typed errors, no panic, no commit.
    let err = customer("tx2", "tx2@x").insert(&open_tx).await.unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    assert!(open_tx.commit().await.is_err());

    // An outage: calls fail fast with a connection error while the server is down.
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_fast())
        .await
        .unwrap()
        .unwrap();
    let outage_began = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let down = db.query_sql("SELECT 1", &[]).await.unwrap_err();
    assert!(
        matches!(down, Error::Connection(_)),
        "refused connections are connection errors: {down:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "fails within the connect timeout, not after the pool wait: {:?}",
        started.elapsed()
    );
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_again())
        .await
        .unwrap()
        .unwrap();
    let outage_done = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);

    let mut outcomes = Vec::new();
    for w in workers {
        outcomes.extend(w.await.expect("a worker panicked"));
    }
    // Dead pooled connections are noticed by their tasks within moments of the
    // server going away; a second of slack keeps a loaded machine from flaking.
    let settle = Duration::from_secs(1);
    let mut failures = 0;
    let mut successes_after = 0;
    let mut failed_kinds = std::collections::BTreeSet::new();
    for o in &outcomes {
        match &o.result {
            Ok(()) => {
                if o.started > outage_done + settle {
                    successes_after += 1;
                }
            }
            Err(e) => {
                failures += 1;
                failed_kinds.insert(o.kind);
                assert!(
                    restart_error(e),
                    "{} call failed with an unexpected error: {e:?}",
                    o.kind
                );
                assert!(
                    !matches!(e, Error::Driver(_)),
                    "no opaque driver errors: {e:?}"
                );
                let during_restart = o.started + Duration::from_secs(1) >= restart_began
                    && o.started <= restart_done + settle;
                let during_outage = o.started + Duration::from_secs(1) >= outage_began
                    && o.started <= outage_done + settle;
                assert!(
                    during_restart || during_outage,
                    "a {} call started at {:?} failed outside the fault windows \
                     (restart {restart_began:?}..{restart_done:?}, outage {outage_began:?}..{outage_done:?}): {e:?}",
                    o.kind,
                    o.started
                );
            }
        }
    }
    eprintln!(
        "{} calls, {failures} failed ({failed_kinds:?}), {successes_after} succeeded after recovery",
        outcomes.len()
    );
    assert!(failures > 0, "the restart interrupted in-flight calls");
    assert!(successes_after >= 6, "calls succeed again after recovery");

    // The same Db serves every kind of call again; committed data survived.
    let mut rng = Rng::new(7);
    for kind in 0..4 {
        let (name, result) = workload_call(&db, &mut rng, kind).await;
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    assert!(Customer::query().count(&db).await.unwrap() > committed_before);
    assert_eq!(
        Customer::query()
            .filter(Customer::EMAIL.eq("tx@x"))
            .count(&db)
            .await
            .unwrap(),
        0,
        "the transaction open across the restart was not committed"
    );
    let status = db.pool_status();
    assert!(status.size <= 4, "{status:?}");
}
