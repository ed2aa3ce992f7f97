//! Behind a real PgBouncer in transaction pooling mode (started by the testkit, with 2
//! server connections per pool so that many client connections share them): the
//! prepared mode breaks, and `StatementMode::Unnamed` runs relation loads (prefetch,
//! select_related, balanced, lazy fetch), transactions with savepoints, streams and
//! the DataLoader from many concurrent tasks, with results and query counts checked
//! against the same loads on a direct connection. Session state is refused with a
//! typed error in that mode.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeZone, Utc};
use common::shop::*;
use futures_util::future::{join, try_join_all};
use futures_util::TryStreamExt;
use matrx_orm::prelude::*;
use matrx_orm::{Error, Select, StatementMode};
use matrx_orm_testkit::{connect, PgBouncer, TestSchema, TestkitError};

const CUSTOMERS: i64 = 10;
const PRODUCTS: i64 = 6;
const ORDERS: i64 = 60;
const TAGS: i64 = 4;
/// Server connections PgBouncer keeps per pool.
const SERVER_CONNECTIONS: u32 = 2;

/// A schema with the shop tables and data, a direct pool on it, and a PgBouncer in
/// front of it whose server connections have the schema as `search_path`.
struct Pooled {
    direct: Db,
    bouncer: PgBouncer,
    schema: TestSchema,
}

impl Pooled {
    /// A pool through PgBouncer in `mode`.
    async fn db(&self, mode: StatementMode, size: usize) -> Db {
        Db::builder(self.bouncer.url())
            .statement_mode(mode)
            .pool_size(size)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect through pgbouncer: {e}\n{}", self.bouncer.log()))
    }
}

/// `None` (after saying why) when PgBouncer cannot run on this machine.
async fn pooled(prefix: &str) -> Option<Pooled> {
    let schema = TestSchema::create(prefix)
        .await
        .expect("create test schema");
    let bouncer = match PgBouncer::builder(schema.url())
        .pool_size(SERVER_CONNECTIONS)
        .search_path(schema.name())
        .start()
        .await
    {
        Ok(bouncer) => bouncer,
        Err(err @ TestkitError::ServiceUnavailable { .. }) => {
            eprintln!("SKIPPED: PgBouncer is not available here: {err}");
            return None;
        }
        Err(err) => panic!("starting pgbouncer: {err}"),
    };
    let direct = Db::builder(schema.url())
        .search_path(schema.name())
        .pool_size(4)
        .connect()
        .await
        .expect("connect to the test server");
    matrx_orm::ddl::create_tables(&direct, &common::shop::models())
        .await
        .unwrap();
    insert_data(&direct).await;
    Some(Pooled {
        direct,
        bouncer,
        schema,
    })
}

fn customer_of(order: i64) -> i64 {
    order % CUSTOMERS + 1
}

fn items_of(order: i64) -> Vec<(i64, i64)> {
    // (item id, product id): 0 to 2 items per order.
    (0..order % 3)
        .map(|j| (order * 10 + j, (order + j) % PRODUCTS + 1))
        .collect()
}

fn tags_of(order: i64) -> BTreeSet<i64> {
    if order % 7 == 0 {
        return BTreeSet::new();
    }
    [order % TAGS + 1, (order / 2) % TAGS + 1]
        .into_iter()
        .collect()
}

async fn insert_data(db: &Db) {
    let ts = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
    let customers: Vec<Customer> = (1..=CUSTOMERS)
        .map(|id| Customer {
            id,
            name: format!("customer {id}"),
            email: format!("c{id}@example.com"),
            created_at: ts(id),
            referred_by: (id > 1).then_some(id - 1),
            referrer: Default::default(),
            orders: Default::default(),
        })
        .collect();
    Customer::insert_rows(&customers)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    let products: Vec<Product> = (1..=PRODUCTS)
        .map(|id| Product {
            id,
            sku: format!("SKU-{id}"),
            name: format!("product {id}"),
            price_cents: id as i32 * 100,
            stock: Default::default(),
            warehouses: Default::default(),
        })
        .collect();
    Product::insert_rows(&products)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    let tags: Vec<Tag> = (1..=TAGS)
        .map(|id| Tag {
            id,
            name: format!("tag {id}"),
        })
        .collect();
    Tag::insert_rows(&tags)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    db.batch_execute("SELECT setval(pg_get_serial_sequence('tags', 'id'), 1000)")
        .await
        .unwrap();
    let orders: Vec<Order> = (1..=ORDERS)
        .map(|id| Order {
            id,
            customer_id: customer_of(id),
            status: if id % 2 == 0 { "paid" } else { "new" }.to_owned(),
            placed_at: ts(1000 + id),
            total_cents: id * 100,
            customer: Default::default(),
            items: Default::default(),
            tags: Default::default(),
        })
        .collect();
    Order::insert_rows(&orders)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    let items: Vec<OrderItem> = (1..=ORDERS)
        .flat_map(|order| {
            items_of(order)
                .into_iter()
                .map(move |(id, product)| OrderItem {
                    id,
                    order_id: order,
                    product_id: product,
                    quantity: 1,
                    unit_price_cents: 100,
                    order: Default::default(),
                    product: Default::default(),
                })
        })
        .collect();
    OrderItem::insert_rows(&items)
        .include_auto()
        .exec(db)
        .await
        .unwrap();
    let links: Vec<String> = (1..=ORDERS)
        .flat_map(|o| tags_of(o).into_iter().map(move |t| format!("({o}, {t})")))
        .collect();
    db.batch_execute(&format!(
        "INSERT INTO order_tags (order_id, tag_id) VALUES {}",
        links.join(", ")
    ))
    .await
    .unwrap();
}

/// What a loaded order shows: its customer's name, its items' product names and its
/// tag names (`None` where a relation was not loaded).
type Shape = (
    i64,
    Option<String>,
    Option<Vec<(i64, Option<String>)>>,
    Option<BTreeSet<String>>,
);

fn shape(order: &Order) -> Shape {
    (
        order.id,
        order.customer.get().map(|c| c.name.clone()),
        order.items.get().map(|items| {
            let mut items: Vec<_> = items
                .iter()
                .map(|i| (i.id, i.product.get().map(|p| p.name.clone())))
                .collect();
            items.sort();
            items
        }),
        order
            .tags
            .get()
            .map(|tags| tags.iter().map(|t| t.name.clone()).collect()),
    )
}

/// The shape every full load of order `id` must have.
fn expected(id: i64) -> Shape {
    (
        id,
        Some(format!("customer {}", customer_of(id))),
        Some(
            items_of(id)
                .into_iter()
                .map(|(item, product)| (item, Some(format!("product {product}"))))
                .collect(),
        ),
        Some(
            tags_of(id)
                .into_iter()
                .map(|t| format!("tag {t}"))
                .collect(),
        ),
    )
}

fn full_tree() -> Select<Order> {
    Order::query()
        .prefetch(Order::CUSTOMER)
        .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
        .prefetch(Order::TAGS)
}

/// The first `n` orders (by id) whose id is at least `from`.
fn window(from: i64, n: usize) -> Select<Order> {
    Order::query()
        .filter(Order::ID.gte(from))
        .order_by(Order::ID.asc())
        .limit(n as u64)
}

/// One task's loads, each checked and counted on a session of `db`: prefetch (1 + 4
/// edges), select_related (1), balanced (its count on the direct pool), and lazy
/// fetches batched by the session's DataLoader (3 waves: orders, then customers and
/// tags together... counted).
async fn loads(db: &Db, from: i64, balanced_count: u64) {
    let n = 12;
    let want: Vec<Shape> = (from..from + n as i64).map(expected).collect();

    let trees = [
        (
            window(from, n)
                .prefetch(Order::CUSTOMER)
                .prefetch(Order::ITEMS.with(OrderItem::PRODUCT))
                .prefetch(Order::TAGS),
            5,
            "prefetch: the root and one per edge",
        ),
        (
            window(from, n)
                .select_related(Order::CUSTOMER)
                .select_related(Order::ITEMS.with(OrderItem::PRODUCT))
                .select_related(Order::TAGS),
            1,
            "select_related: one statement",
        ),
        (
            window(from, n)
                .balanced(Order::CUSTOMER)
                .balanced(Order::ITEMS.with(OrderItem::PRODUCT))
                .balanced(Order::TAGS),
            balanced_count,
            "balanced: as on a direct connection",
        ),
    ];
    for (tree, statements, what) in trees {
        let s = db.session();
        let got = tree.all(&s).await.unwrap();
        assert_eq!(got.iter().map(shape).collect::<Vec<_>>(), want, "{what}");
        assert_eq!(s.query_count(), statements, "{what}");
    }

    // Lazy, per object, concurrently: the session batches each wave.
    let s = db.session();
    let ids: Vec<i64> = (from..from + n as i64).collect();
    let got = try_join_all(ids.iter().map(|&id| {
        let s = &s;
        async move {
            let order = Order::get(s, &id).await?;
            let (customer, tags) = join(
                order.fetch_fk(s, Order::CUSTOMER),
                order.fetch_m2m(s, Order::TAGS),
            )
            .await;
            Ok::<_, Error>((id, customer?.map(|c| c.name.clone()), tags?.len()))
        }
    }))
    .await
    .unwrap();
    for (id, customer, tags) in got {
        assert_eq!(customer, Some(format!("customer {}", customer_of(id))));
        assert_eq!(tags, tags_of(id).len());
    }
    assert_eq!(
        s.query_count(),
        3,
        "DataLoader: orders, then customers and tags"
    );
}

/// The balanced load's statement count on a direct connection (prepared mode).
async fn balanced_count(direct: &Db) -> u64 {
    let s = direct.session();
    window(1, 12)
        .balanced(Order::CUSTOMER)
        .balanced(Order::ITEMS.with(OrderItem::PRODUCT))
        .balanced(Order::TAGS)
        .all(&s)
        .await
        .unwrap();
    s.query_count()
}

const PROBE: &str = "SELECT count(*) FROM orders WHERE id > $1";

/// A statement prepared on one server connection is missing on the next one PgBouncer
/// hands out: the prepared mode fails where the unnamed mode does not. Two raw
/// clients pin the server connections in turn, so the ORM's second statement lands
/// on the other server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_mode_fails_behind_transaction_pooling_and_unnamed_mode_works() {
    let Some(p) = pooled("pooler_prepared").await else {
        return;
    };
    for mode in [StatementMode::Prepared, StatementMode::Unnamed] {
        let db = p.db(mode, 1).await;
        let first = connect(p.bouncer.url()).await.unwrap();
        first.batch_execute("BEGIN; SELECT 1").await.unwrap();
        // The only free server connection: the statement is prepared there.
        let rows = db.query_sql(PROBE, &[&0i64]).await.unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), ORDERS);
        let second = connect(p.bouncer.url()).await.unwrap();
        second.batch_execute("BEGIN; SELECT 1").await.unwrap();
        first.batch_execute("COMMIT").await.unwrap();
        // Now the only free server connection is the first one.
        let again = db.query_sql(PROBE, &[&10i64]).await;
        second.batch_execute("COMMIT").await.unwrap();
        match mode {
            StatementMode::Prepared => {
                let err = again.expect_err("a prepared statement on another server connection");
                assert_eq!(err.sqlstate(), Some("26000"), "{err}");
            }
            StatementMode::Unnamed => {
                assert_eq!(again.unwrap()[0].get::<_, i64>(0), ORDERS - 10);
            }
        }
    }
    p.schema.drop_now().await.unwrap();
}

/// Many tasks, 16 client connections, 2 server connections: every load of every task
/// gives the right rows in its stated number of statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relation_loads_and_the_dataloader_share_server_connections() {
    let Some(p) = pooled("pooler_loads").await else {
        return;
    };
    let balanced = balanced_count(&p.direct).await;
    let db = p.db(StatementMode::Unnamed, 16).await;
    let tasks: Vec<_> = (0..24)
        .map(|task| {
            let db = db.clone();
            tokio::spawn(async move {
                for round in 0..3 {
                    loads(&db, 1 + (task * 7 + round * 13) % (ORDERS - 12), balanced).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // The pool opened more client connections than PgBouncer has server connections,
    // and they really were shared.
    assert!(db.pool_status().size > SERVER_CONNECTIONS as usize);
    let pids = try_join_all((0..32).map(|_| {
        let db = db.clone();
        async move {
            let rows = db
                .query_sql("SELECT pg_backend_pid(), pg_sleep(0.01)::text", &[])
                .await?;
            Ok::<i32, Error>(rows[0].get(0))
        }
    }))
    .await
    .unwrap();
    let distinct: BTreeSet<i32> = pids.into_iter().collect();
    assert!(
        distinct.len() <= SERVER_CONNECTIONS as usize,
        "{distinct:?}"
    );
    // The whole tree from the Db (no session) too.
    let all = full_tree().all(&db).await.unwrap();
    let want: Vec<Shape> = (1..=ORDERS).map(expected).collect();
    let mut got: Vec<Shape> = all.iter().map(shape).collect();
    got.sort();
    assert_eq!(got, want);
    p.schema.drop_now().await.unwrap();
}

/// Transactions with savepoints, from many tasks at once: each sees its own writes,
/// a rolled-back savepoint undoes only its part, a rolled-back transaction leaves
/// nothing, and reads (loads, a cursor stream) inside run on the transaction's
/// server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_and_savepoints_through_pgbouncer() {
    let Some(p) = pooled("pooler_tx").await else {
        return;
    };
    let db = p.db(StatementMode::Unnamed, 12).await;
    let tasks: Vec<_> = (0..16i64)
        .map(|task| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin().await?;
                let kept = Tag::create()
                    .set(Tag::NAME, format!("kept-{task}"))
                    .exec(&tx)
                    .await?;
                {
                    let sp = tx.savepoint().await?;
                    Tag::create()
                        .set(Tag::NAME, format!("undone-{task}"))
                        .exec(&sp)
                        .await?;
                    sp.rollback().await?;
                }
                let seen = Tag::query()
                    .filter(Tag::NAME.like(format!("%-{task}")))
                    .all(&tx)
                    .await?;
                assert_eq!(seen.iter().map(|t| t.id).collect::<Vec<_>>(), vec![kept.id]);
                // A cursor inside the transaction, with a prefetch edge per chunk.
                let chunks: Vec<Vec<Order>> = Order::query()
                    .order_by(Order::ID.asc())
                    .prefetch(Order::CUSTOMER)
                    .stream_chunks(&tx, 25)
                    .try_collect()
                    .await?;
                let ids: Vec<i64> = chunks.iter().flatten().map(|o| o.id).collect();
                assert_eq!(ids, (1..=ORDERS).collect::<Vec<_>>());
                assert!(chunks.iter().flatten().all(|o| o.customer.get().is_some()));
                tx.commit().await?;

                let tx = db.begin().await?;
                Tag::create()
                    .set(Tag::NAME, format!("rolled-back-{task}"))
                    .exec(&tx)
                    .await?;
                tx.rollback().await?;
                Ok::<_, Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let names: BTreeSet<String> = Tag::query()
        .filter(Tag::ID.gt(TAGS))
        .all(&p.direct)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let want: BTreeSet<String> = (0..16).map(|t| format!("kept-{t}")).collect();
    assert_eq!(names, want);
    p.schema.drop_now().await.unwrap();
}

/// A pooled stream holds its server connection until its last row; one dropped early
/// closes its client connection, and the pool goes on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_through_pgbouncer() {
    let Some(p) = pooled("pooler_stream").await else {
        return;
    };
    let db = p.db(StatementMode::Unnamed, 4).await;
    let before = db.query_count();
    let ids: Vec<i64> = Order::query()
        .filter(Order::ID.gt(5i64))
        .order_by(Order::ID.asc())
        .stream(&db)
        .map_ok(|o| o.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids, (6..=ORDERS).collect::<Vec<_>>());
    assert_eq!(db.query_count() - before, 1);
    {
        let mut early = Order::query().order_by(Order::ID.asc()).stream(&db);
        let first = early.try_next().await.unwrap().unwrap();
        assert_eq!(first.id, 1);
    }
    let (n, _) = join(Order::query().count(&db), Order::query().count(&db)).await;
    assert_eq!(n.unwrap(), ORDERS as u64);
    p.schema.drop_now().await.unwrap();
}

/// The unnamed mode refuses session state with a typed error, before connecting.
#[tokio::test]
async fn session_state_is_refused_in_unnamed_mode() {
    let url = "postgres://nobody@127.0.0.1:1/none";
    let refused = [
        Db::builder(url)
            .statement_mode(StatementMode::Unnamed)
            .search_path("app")
            .connect()
            .await,
        Db::builder(url)
            .statement_mode(StatementMode::Unnamed)
            .statement_timeout(std::time::Duration::from_secs(1))
            .connect()
            .await,
        Db::builder(format!("{url}?statement_mode=unnamed"))
            .search_path("app")
            .connect()
            .await,
    ];
    for outcome in refused {
        match outcome {
            Err(Error::Unsupported(message)) => assert!(message.contains("session state")),
            other => panic!("expected Error::Unsupported, got {other:?}"),
        }
    }
    assert!(matches!(
        Db::connect("postgres://nobody@127.0.0.1:1/none?statement_mode=sometimes").await,
        Err(Error::InvalidInput(_))
    ));
}

/// A user-defined type cannot be looked up behind a transaction pooler: refused with
/// a typed error, and the pool goes on working; so is a text of several statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_defined_types_are_refused_in_unnamed_mode() {
    let Some(p) = pooled("pooler_enum").await else {
        return;
    };
    p.direct
        .batch_execute("CREATE TYPE mood AS ENUM ('ok', 'sad')")
        .await
        .unwrap();
    let db = p.db(StatementMode::Unnamed, 2).await;
    let major = matrx_orm_testkit::server().await.unwrap().major_version();
    for _ in 0..2 {
        // A parameter of that type: refused on every server.
        let err = db
            .query_sql(
                "SELECT count(*) FROM orders WHERE $1::text = 'ok'::mood::text OR $2 = 'ok'::mood",
                &[&"ok", &"ok"],
            )
            .await
            .expect_err("a user-defined parameter type");
        assert!(
            matches!(&err, Error::Unsupported(m) if m.contains("user-defined type")),
            "{err}"
        );
        // A result column of that type: refused where the server reports result
        // types of prepared statements (PostgreSQL 16 and later).
        if major >= 16 {
            let err = db
                .query_sql("SELECT 'ok'::mood AS m", &[])
                .await
                .expect_err("a user-defined column type");
            assert!(
                matches!(&err, Error::Unsupported(m) if m.contains("user-defined type")),
                "{err}"
            );
        }
        let rows = db.query_sql(PROBE, &[&0i64]).await.unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), ORDERS);
    }
    // One statement per text: several are refused, as SQL text they could not be
    // described without running the rest.
    let err = db
        .query_sql("SELECT 1; SELECT 2", &[])
        .await
        .expect_err("two statements");
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("';'")),
        "{err}"
    );
    // Statements PREPARE does not take run undescribed (no parameters).
    db.execute_sql("CREATE TABLE pooled_notes (id int)", &[])
        .await
        .unwrap();
    assert_eq!(
        db.execute_sql(
            "INSERT INTO pooled_notes VALUES ($1), ($2)",
            &[&1i32, &2i32]
        )
        .await
        .unwrap(),
        2
    );
    // Statements whose text differs only in values share one description.
    let counts: BTreeMap<i64, i64> = try_join_all((0..20i64).map(|i| {
        let db = db.clone();
        async move {
            let rows = db.query_sql(PROBE, &[&i]).await?;
            Ok::<_, Error>((i, rows[0].get::<_, i64>(0)))
        }
    }))
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(counts.iter().all(|(i, n)| *n == ORDERS - i));
    p.schema.drop_now().await.unwrap();
}
