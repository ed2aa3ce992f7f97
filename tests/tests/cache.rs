//! The cache layer: the session's identity map and relation entries, write
//! invalidation, transactions, and the process-wide row cache with its policies.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::shop::*;
use common::{count_queries, test_db, TestDb};
use matrx_orm::cache::{CachePolicy, ManualClock};
use matrx_orm::prelude::*;
use matrx_orm::Db;

/// Two customers (the second referred by the first), three orders of customer 1,
/// one of customer 2, tags 1..3.
async fn shop(prefix: &str) -> TestDb {
    let db = test_db(prefix).await;
    matrx_orm::ddl::create_tables(&*db, &common::shop::models())
        .await
        .unwrap();
    db.batch_execute(
        "INSERT INTO customers (id, name, email, created_at, referred_by) VALUES
           (1, 'Ann', 'ann@example.com', now(), NULL),
           (2, 'Bob', 'bob@example.com', now(), 1);
         INSERT INTO orders (id, customer_id, status, placed_at, total_cents) VALUES
           (1, 1, 'paid', now(), 10), (2, 1, 'paid', now(), 20),
           (3, 1, 'new', now(), 30), (4, 2, 'new', now(), 40);
         INSERT INTO tags (id, name) VALUES (1, 'gift'), (2, 'rush'), (3, 'b2b');
         INSERT INTO order_tags (order_id, tag_id) VALUES (1, 1), (1, 2), (2, 1);
         SELECT setval(pg_get_serial_sequence('orders', 'id'), 100);",
    )
    .await
    .unwrap();
    db
}

#[tokio::test]
async fn a_second_fetch_of_the_same_target_costs_no_query() {
    let db = shop("cache_second_fetch").await;
    let s = db.session();
    let first = Order::get(&s, &1).await.unwrap();
    let second = Order::get(&s, &2).await.unwrap();
    let (a, n1) = count_queries(&db, first.fetch_fk(&s, Order::CUSTOMER)).await;
    let (b, n2) = count_queries(&db, second.fetch_fk(&s, Order::CUSTOMER)).await;
    assert_eq!(
        (n1, n2),
        (1, 0),
        "the second order's customer 1 comes from the session"
    );
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert!(Arc::ptr_eq(&a, &b), "one instance per row in a session");
    // Without a session, every load is a query.
    let (_, n3) = count_queries(
        &db,
        Order::get(&*db, &3)
            .await
            .unwrap()
            .fetch_fk(&*db, Order::CUSTOMER),
    )
    .await;
    assert_eq!(n3, 1);
}

#[tokio::test]
async fn rows_loaded_by_two_paths_are_one_instance() {
    let db = shop("cache_identity").await;
    let s = db.session();
    let orders = Order::query()
        .order_by(Order::ID.asc())
        .prefetch(Order::CUSTOMER)
        .all(&s)
        .await
        .unwrap();
    let bob = Customer::get(&s, &2).await.unwrap();
    let (referrer, n) = count_queries(&db, bob.fetch_fk(&s, Customer::REFERRER)).await;
    let referrer = referrer.unwrap().unwrap();
    assert_eq!(n, 1, "a different relation edge: one query");
    let via_order = orders[0].customer.state().unwrap().unwrap();
    assert!(
        Arc::ptr_eq(via_order, &referrer),
        "Ann through orders.customer and through bob.referrer"
    );
}

#[tokio::test]
async fn relation_entries_answer_has_many_and_many_to_many_too() {
    let db = shop("cache_to_many").await;
    let s = db.session();
    let a = Order::get(&s, &1).await.unwrap();
    let b = Order::get(&s, &1).await.unwrap(); // another instance of the same row
    let (_, n1) = count_queries(&db, a.fetch_m2m(&s, Order::TAGS)).await;
    let (tags, n2) = count_queries(&db, b.fetch_m2m(&s, Order::TAGS)).await;
    assert_eq!((n1, n2), (1, 0));
    let names: Vec<String> = tags.unwrap().iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["gift", "rush"]);
    // An empty list is remembered too.
    let c = Order::get(&s, &3).await.unwrap();
    let d = Order::get(&s, &3).await.unwrap();
    let (_, n3) = count_queries(&db, c.fetch_ifk(&s, Order::ITEMS)).await;
    let (items, n4) = count_queries(&db, d.fetch_ifk(&s, Order::ITEMS)).await;
    assert_eq!((n3, n4), (1, 0));
    assert!(items.unwrap().is_empty());
    // Prefetch goes through the same entries: orders 1 and 3 are known, 2 and 4 are not.
    let (orders, n5) = count_queries(&db, async {
        Order::query().prefetch(Order::TAGS).all(&s).await.unwrap()
    })
    .await;
    assert_eq!(
        n5, 2,
        "the root query, then tags for the two orders not cached"
    );
    assert!(orders.iter().all(|o| o.tags.get().is_some()));
}

#[tokio::test]
async fn an_update_through_the_orm_is_seen_by_the_next_load() {
    let db = shop("cache_update").await;
    let s = db.session();
    let order = Order::get(&s, &1).await.unwrap();
    order.fetch_fk(&s, Order::CUSTOMER).await.unwrap();
    let mut ann = Customer::get(&s, &1).await.unwrap();
    ann.email = "ann@new.example.com".into();
    ann.update(&s).await.unwrap();
    let again = Order::get(&s, &2).await.unwrap();
    let (customer, n) = count_queries(&db, again.fetch_fk(&s, Order::CUSTOMER)).await;
    assert_eq!(
        n, 1,
        "the update evicted customer 1 and the relation entries to it"
    );
    assert_eq!(customer.unwrap().unwrap().email, "ann@new.example.com");
    // An update by filter evicts what it returned.
    Customer::query()
        .filter(Customer::ID.eq(1i64))
        .update()
        .set(Customer::NAME, "Annie")
        .exec(&s)
        .await
        .unwrap();
    let third = Order::get(&s, &3).await.unwrap();
    assert_eq!(
        third
            .fetch_fk(&s, Order::CUSTOMER)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Annie"
    );
}

#[tokio::test]
async fn a_deleted_row_is_gone_from_the_next_load() {
    let db = shop("cache_delete").await;
    let s = db.session();
    let order = Order::get(&s, &3).await.unwrap();
    assert_eq!(order.fetch_m2m(&s, Order::TAGS).await.unwrap().len(), 0);
    let first = Order::get(&s, &1).await.unwrap();
    assert_eq!(first.fetch_m2m(&s, Order::TAGS).await.unwrap().len(), 2);
    // Remove tag 2's links, then tag 2 itself (by filter).
    s.execute_sql("DELETE FROM order_tags WHERE tag_id = 2", &[])
        .await
        .unwrap();
    Tag::query()
        .filter(Tag::ID.eq(2i64))
        .delete(&s)
        .await
        .unwrap();
    let again = Order::get(&s, &1).await.unwrap();
    let (tags, n) = count_queries(&db, again.fetch_m2m(&s, Order::TAGS)).await;
    assert_eq!(
        n, 1,
        "deleting a tag evicted every relation entry leading to tags"
    );
    let ids: Vec<i64> = tags.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(ids, [1]);
}

#[tokio::test]
async fn many_to_many_writes_are_seen_by_the_next_fetch() {
    let db = shop("cache_m2m").await;
    let s = db.session();
    let mut order = Order::get(&s, &2).await.unwrap();
    assert_eq!(order.fetch_m2m(&s, Order::TAGS).await.unwrap().len(), 1);
    order.m2m_add(&s, Order::TAGS, [3]).await.unwrap();
    let other = Order::get(&s, &2).await.unwrap();
    let ids: Vec<i64> = other
        .fetch_m2m(&s, Order::TAGS)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [1, 3]);
    order.m2m_remove(&s, Order::TAGS, [1]).await.unwrap();
    let third = Order::get(&s, &2).await.unwrap();
    let ids: Vec<i64> = third
        .fetch_m2m(&s, Order::TAGS)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [3]);
}

#[tokio::test]
async fn an_insert_is_seen_by_the_next_has_many_load() {
    let db = shop("cache_insert").await;
    let s = db.session();
    let bob = Customer::get(&s, &2).await.unwrap();
    assert_eq!(bob.fetch_ifk(&s, Customer::ORDERS).await.unwrap().len(), 1);
    Order::create()
        .set(Order::CUSTOMER_ID, 2i64)
        .set(Order::STATUS, "new")
        .set(Order::PLACED_AT, Utc::now())
        .set(Order::TOTAL_CENTS, 5i64)
        .exec(&s)
        .await
        .unwrap();
    let again = Customer::get(&s, &2).await.unwrap();
    assert_eq!(
        again.fetch_ifk(&s, Customer::ORDERS).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn a_filtered_lookup_never_comes_from_the_cache() {
    let db = shop("cache_filtered").await;
    let s = db.session();
    let order = Order::get(&s, &1).await.unwrap();
    order.fetch_fk(&s, Order::CUSTOMER).await.unwrap(); // customer 1 is now held
                                                        // An ownership check: customer 1 asked for with a filter it does not match.
    let (found, n) = count_queries(&db, async {
        Customer::query()
            .filter(Customer::ID.eq(1i64) & Customer::EMAIL.eq("mallory@example.com"))
            .one_or_none(&s)
            .await
            .unwrap()
    })
    .await;
    assert!(found.is_none(), "the filter is checked, not the cache");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn nothing_cached_in_a_rolled_back_transaction_survives_it() {
    let db = shop("cache_rollback").await;
    let s = db.session();
    let order = Order::get(&s, &1).await.unwrap();
    assert_eq!(
        order
            .fetch_fk(&s, Order::CUSTOMER)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Ann"
    );
    let tx = s.begin().await.unwrap();
    let mut ann = Customer::get(&tx, &1).await.unwrap();
    ann.name = "Changed in tx".into();
    ann.update(&tx).await.unwrap();
    let inside = Order::get(&tx, &2).await.unwrap();
    assert_eq!(
        inside
            .fetch_fk(&tx, Order::CUSTOMER)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Changed in tx"
    );
    tx.rollback().await.unwrap();
    let after = Order::get(&s, &3).await.unwrap();
    assert_eq!(
        after
            .fetch_fk(&s, Order::CUSTOMER)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Ann"
    );
}

#[tokio::test]
async fn a_committed_transaction_write_is_seen_by_its_session() {
    let db = shop("cache_commit").await;
    let s = db.session();
    let order = Order::get(&s, &1).await.unwrap();
    order.fetch_fk(&s, Order::CUSTOMER).await.unwrap();
    let tx = s.begin().await.unwrap();
    let mut ann = Customer::get(&tx, &1).await.unwrap();
    ann.name = "Committed".into();
    ann.update(&tx).await.unwrap();
    tx.commit().await.unwrap();
    let after = Order::get(&s, &2).await.unwrap();
    assert_eq!(
        after
            .fetch_fk(&s, Order::CUSTOMER)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Committed"
    );
}

#[tokio::test]
async fn strict_mode_allows_what_the_session_already_holds() {
    let db = shop("cache_strict").await;
    let mut s = db.session();
    let a = Order::get(&s, &1).await.unwrap();
    a.fetch_fk(&s, Order::CUSTOMER).await.unwrap();
    s.set_strict(true);
    let b = Order::get(&s, &2).await.unwrap();
    assert!(
        b.fetch_fk(&s, Order::CUSTOMER).await.unwrap().is_some(),
        "held: no query, allowed"
    );
    let c = Order::get(&s, &4).await.unwrap();
    assert!(matches!(
        c.fetch_fk(&s, Order::CUSTOMER).await,
        Err(matrx_orm::Error::StrictLoad {
            model: "Order",
            relation: "customer"
        })
    ));
}

async fn cached_db(db: &TestDb, clock: &ManualClock, policy: CachePolicy) -> Db {
    Db::builder(db.schema.url())
        .search_path(db.schema.name())
        .cache::<Customer>(policy)
        .cache_clock(Arc::new(clock.clone()))
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_shared_cache_serves_gets_and_belongs_to_loads_across_sessions() {
    let base = shop("cache_shared").await;
    let clock = ManualClock::new();
    let db = cached_db(&base, &clock, CachePolicy::ShortTerm).await;
    let (_, n1) = count_queries(&db, Customer::get(&db.session(), &1)).await;
    let (ann, n2) = count_queries(&db, Customer::get(&db.session(), &1)).await;
    assert_eq!(
        (n1, n2),
        (1, 0),
        "another session, same row: from the shared cache"
    );
    assert_eq!(ann.unwrap().email, "ann@example.com");
    let order = Order::get(&db, &1).await.unwrap();
    let (customer, n3) = count_queries(&db, order.fetch_fk(&db, Order::CUSTOMER)).await;
    assert_eq!(n3, 0, "a belongs-to load by primary key is a cached get");
    assert_eq!(customer.unwrap().unwrap().id, 1);
    let stats = db.cache_stats::<Customer>();
    assert_eq!((stats.hits, stats.misses, stats.len), (2, 1, 1));
    assert_eq!(db.cache_stats::<Order>().hits, 0, "orders are not cached");
}

#[tokio::test]
async fn the_shared_cache_sees_writes_of_other_sessions() {
    let base = shop("cache_shared_writes").await;
    let clock = ManualClock::new();
    let db = cached_db(&base, &clock, CachePolicy::Permanent).await;
    let (s1, s2) = (db.session(), db.session());
    assert_eq!(Customer::get(&s1, &1).await.unwrap().name, "Ann");
    let mut ann = Customer::get(&s2, &1).await.unwrap();
    ann.name = "Ann B.".into();
    ann.update(&s2).await.unwrap();
    assert_eq!(Customer::get(&s1, &1).await.unwrap().name, "Ann B.");
    Customer::query()
        .filter(Customer::ID.eq(1i64))
        .update()
        .set(Customer::NAME, "Ann C.")
        .exec(&s1)
        .await
        .unwrap();
    assert_eq!(Customer::get(&s2, &1).await.unwrap().name, "Ann C.");
    assert!(db.cache_stats::<Customer>().invalidations >= 2);
}

#[tokio::test]
async fn rows_expire_with_their_policy() {
    let base = shop("cache_ttl").await;
    let clock = ManualClock::new();
    let db = cached_db(&base, &clock, CachePolicy::Instant).await;
    Customer::get(&db, &1).await.unwrap();
    clock.advance(Duration::from_secs(59));
    let (_, fresh) = count_queries(&db, Customer::get(&db, &1)).await;
    clock.advance(Duration::from_secs(2));
    let (_, expired) = count_queries(&db, Customer::get(&db, &1)).await;
    assert_eq!(
        (fresh, expired),
        (0, 1),
        "one minute for the instant policy"
    );
    assert_eq!(db.cache_stats::<Customer>().expirations, 1);
}

#[tokio::test]
async fn the_shared_cache_is_bounded() {
    let base = shop("cache_bound").await;
    let clock = ManualClock::new();
    let db = Db::builder(base.schema.url())
        .search_path(base.schema.name())
        .cache::<Customer>(CachePolicy::Permanent)
        .cache_capacity(1)
        .cache_clock(Arc::new(clock.clone()))
        .connect()
        .await
        .unwrap();
    Customer::get(&db, &1).await.unwrap();
    Customer::get(&db, &2).await.unwrap(); // evicts 1, the least recently used
    let (_, n) = count_queries(&db, Customer::get(&db, &1)).await;
    assert_eq!(n, 1);
    let stats = db.cache_stats::<Customer>();
    assert_eq!((stats.len, stats.evictions), (1, 2));
}

#[tokio::test]
async fn reads_inside_a_transaction_never_fill_the_shared_cache() {
    let base = shop("cache_shared_tx").await;
    let clock = ManualClock::new();
    let db = cached_db(&base, &clock, CachePolicy::Permanent).await;
    let tx = db.begin().await.unwrap();
    let mut ann = Customer::get(&tx, &1).await.unwrap();
    ann.name = "Uncommitted".into();
    ann.update(&tx).await.unwrap();
    assert_eq!(Customer::get(&tx, &1).await.unwrap().name, "Uncommitted");
    tx.rollback().await.unwrap();
    assert_eq!(Customer::get(&db, &1).await.unwrap().name, "Ann");
    assert_eq!(
        db.cache_stats::<Customer>().len,
        1,
        "only the committed read was stored"
    );
}

#[tokio::test]
async fn joined_loads_share_the_session_identity_map() {
    let db = shop("cache_joined").await;
    let s = db.session();
    let prefetched = Order::query()
        .order_by(Order::ID.asc())
        .prefetch(Order::CUSTOMER)
        .all(&s)
        .await
        .unwrap();
    let joined = Order::query()
        .order_by(Order::ID.asc())
        .select_related(Order::CUSTOMER)
        .select_related(Order::TAGS)
        .all(&s)
        .await
        .unwrap();
    let a = prefetched[0].customer.state().unwrap().unwrap();
    let b = joined[0].customer.state().unwrap().unwrap();
    assert!(
        Arc::ptr_eq(a, b),
        "customer 1 through prefetch and through a join"
    );
    let tags: Vec<i64> = joined[0].tags.iter().map(|t| t.id).collect();
    assert_eq!(tags, [1, 2], "the joined edges are still filled");
    let balanced = Order::query()
        .order_by(Order::ID.asc())
        .balanced(Order::CUSTOMER.with(Customer::REFERRER))
        .all(&s)
        .await
        .unwrap();
    let bob = balanced[3].customer.state().unwrap().unwrap();
    let ann = bob.referrer.state().unwrap().unwrap();
    assert!(Arc::ptr_eq(ann, a), "Bob's referrer is the same Ann");
}
