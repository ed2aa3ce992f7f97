//! The shared cache in Redis (`DbBuilder::redis_cache`): several `Db`s (standing for
//! the processes of a fleet) read one warm cache; every write through the ORM evicts
//! there before it returns; with coherence, writes outside the ORM are evicted by the
//! listeners; Redis going away costs misses, never an error or a stale row. Each test
//! starts a `redis-server` of its own.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use matrx_orm::cache::CachePolicy;
use matrx_orm::prelude::*;
use matrx_orm::{CoherenceTriggers, Db, DbBuilder};
use matrx_orm_testkit::{RedisServer, TestSchema, TestkitError};
use matrx_orm_tests::coherence::{Counter, Label};
use rust_decimal::Decimal;

#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "authors")]
pub struct Author {
    #[orm(primary_key)]
    pub id: i64,
    pub version: i64,
    pub name: String,
}

#[derive(Model, Debug, Clone)]
#[orm(table = "books")]
pub struct Book {
    #[orm(primary_key)]
    pub id: i64,
    pub author_id: Option<i64>,
    pub title: String,
    #[orm(belongs_to(key = "author_id"))]
    pub author: One<Author>,
}

/// A composite key of text, integer and numeric (whose equal values have several
/// binary forms: `1.5` and `1.50`).
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "shelves")]
pub struct Shelf {
    #[orm(primary_key)]
    pub region: String,
    #[orm(primary_key)]
    pub code: i32,
    #[orm(primary_key)]
    pub size: Decimal,
    pub label: String,
}

/// Columns of many types, NULLs included, read back from Redis's bytes.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "gadgets")]
pub struct Gadget {
    #[orm(primary_key)]
    pub id: uuid::Uuid,
    pub small: i16,
    pub real: f32,
    pub double: f64,
    pub price: Decimal,
    pub flag: bool,
    pub at: chrono::DateTime<chrono::Utc>,
    pub day: chrono::NaiveDate,
    pub doc: serde_json::Value,
    pub bytes: Vec<u8>,
    pub tags: Vec<String>,
    pub note: Option<String>,
    pub maybe: Option<i32>,
}

/// A `redis-server` of the test's own, or `None` (the test then skips, saying why)
/// when none can be started here.
async fn redis() -> Option<RedisServer> {
    match RedisServer::start().await {
        Ok(server) => Some(server),
        Err(err @ TestkitError::ServiceUnavailable { .. }) => {
            eprintln!("SKIPPED: no redis-server can be started here: {err}");
            None
        }
        Err(err) => panic!("starting redis-server: {err}"),
    }
}

/// Authors 1..=4 (version 0), books 1..=3 by authors 1, 1, 2 and book 4 by nobody,
/// shelf ("eu", 7, 1.50), one gadget.
async fn schema(prefix: &str) -> TestSchema {
    let schema = TestSchema::create(prefix)
        .await
        .expect("create test schema");
    let db = plain(&schema).await;
    let models = [
        Author::META,
        Book::META,
        Shelf::META,
        Gadget::META,
        Label::META,
        Counter::META,
    ];
    matrx_orm::ddl::create_tables(&db, &models).await.unwrap();
    db.batch_execute(
        "INSERT INTO authors (id, version, name) SELECT g, 0, 'author ' || g FROM generate_series(1, 4) AS g;
         INSERT INTO books (id, author_id, title) VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c'), (4, NULL, 'd');
         INSERT INTO shelves (region, code, size, label) VALUES ('eu', 7, 1.50, 'x');
         INSERT INTO counters (id, version) VALUES (1, 0);",
    )
    .await
    .unwrap();
    schema
}

fn builder(schema: &TestSchema) -> DbBuilder {
    Db::builder(schema.url())
        .search_path(schema.name())
        .pool_size(4)
        .coherence_channel(schema.name())
}

/// No cache at all.
async fn plain(schema: &TestSchema) -> Db {
    builder(schema).connect().await.unwrap()
}

/// Caches authors, shelves and gadgets in `redis`.
fn cached(schema: &TestSchema, redis: &RedisServer) -> DbBuilder {
    builder(schema)
        .cache::<Author>(CachePolicy::Permanent)
        .cache::<Shelf>(CachePolicy::Permanent)
        .cache::<Gadget>(CachePolicy::Permanent)
        .redis_cache(redis.url())
}

/// Author `id`'s version read through `db`, and the statements that took.
async fn read(db: &Db, id: i64) -> (i64, u64) {
    let before = db.query_count();
    let author = Author::get(db, &id).await.unwrap();
    (author.version, db.query_count() - before)
}

#[tokio::test]
async fn one_process_reads_what_another_cached() {
    let Some(redis) = redis().await else { return };
    let schema = schema("redis_shared").await;
    let (a, b) = (
        cached(&schema, &redis).connect().await.unwrap(),
        cached(&schema, &redis).connect().await.unwrap(),
    );
    // The default namespace: the database's name and the schema models resolve in.
    let database: String = plain(&schema)
        .await
        .query_sql("SELECT current_database()::text", &[])
        .await
        .unwrap()[0]
        .get(0);
    let namespace = format!("matrx_orm:{database}:{}", schema.name());
    assert_eq!(a.redis_namespace(), Some(namespace.as_str()));
    assert_eq!(b.redis_namespace(), Some(namespace.as_str()));

    assert_eq!(read(&a, 1).await, (0, 1), "a miss in a");
    assert_eq!(read(&b, 1).await, (0, 0), "b is answered by what a stored");
    assert_eq!(b.cache_stats::<Author>().hits, 1);
    assert_eq!(a.cache_stats::<Author>().misses, 1);

    // Belongs-to loads read Redis once per edge: authors 1 and 2 are one lookup.
    read(&a, 2).await;
    let before = b.query_count();
    let books = Book::query()
        .prefetch(Book::AUTHOR)
        .order_by(Book::ID.asc())
        .all(&b)
        .await
        .unwrap();
    assert_eq!(b.query_count() - before, 1, "only the books' statement");
    let names: Vec<Option<String>> = books
        .iter()
        .map(|book| {
            let loaded = book.author.state().expect("the edge is loaded");
            loaded.map(|author| author.name.clone())
        })
        .collect();
    assert_eq!(
        names,
        [
            Some("author 1".to_owned()),
            Some("author 1".to_owned()),
            Some("author 2".to_owned()),
            None
        ]
    );

    // A composite key with a numeric part: found whatever its written scale.
    let key = ("eu".to_owned(), 7, Decimal::new(15, 1));
    let before = a.query_count();
    assert_eq!(Shelf::get(&a, &key).await.unwrap().label, "x");
    let wider = ("eu".to_owned(), 7, Decimal::new(150, 2));
    assert_eq!(Shelf::get(&b, &wider).await.unwrap().label, "x");
    assert_eq!(a.query_count() - before, 1);
    assert_eq!(
        b.cache_stats::<Shelf>().hits,
        1,
        "1.50 names the row 1.5 stored"
    );
}

#[tokio::test]
async fn values_of_every_type_and_nulls_come_back_from_redis_unchanged() {
    let Some(redis) = redis().await else { return };
    let schema = schema("redis_types").await;
    let (a, b) = (
        cached(&schema, &redis).connect().await.unwrap(),
        cached(&schema, &redis).connect().await.unwrap(),
    );
    let at = chrono::DateTime::parse_from_rfc3339("2024-02-29T13:45:01.123456Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let gadgets = [
        Gadget {
            id: uuid::Uuid::from_u128(1),
            small: i16::MIN,
            real: 1.5,
            double: -0.0,
            price: "-12345678901234567890.1234567890".parse().unwrap(),
            flag: true,
            at,
            day: at.date_naive(),
            doc: serde_json::json!({"a": [1, 2, null], "é": "ü"}),
            bytes: vec![0, 1, 0xff, b'|', b'\r', b'\n'],
            tags: vec![String::new(), "x|y".to_owned(), "\u{1F600}".to_owned()],
            note: Some("0|1|".to_owned()),
            maybe: Some(-1),
        },
        Gadget {
            id: uuid::Uuid::from_u128(2),
            small: 0,
            real: f32::INFINITY,
            double: f64::MIN_POSITIVE,
            price: Decimal::ZERO,
            flag: false,
            at,
            day: chrono::NaiveDate::from_ymd_opt(1, 1, 1).unwrap(),
            doc: serde_json::Value::Null,
            bytes: Vec::new(),
            tags: Vec::new(),
            note: None,
            maybe: None,
        },
    ];
    for gadget in &gadgets {
        gadget.insert(&a).await.unwrap();
    }
    for gadget in &gadgets {
        let before = a.query_count();
        assert_eq!(&Gadget::get(&a, &gadget.id).await.unwrap(), gadget);
        assert_eq!(a.query_count() - before, 1, "a miss stores the row");
        let before = b.query_count();
        assert_eq!(&Gadget::get(&b, &gadget.id).await.unwrap(), gadget);
        assert_eq!(
            b.query_count() - before,
            0,
            "the other Db decodes Redis's bytes"
        );
    }
}

#[tokio::test]
async fn every_write_through_the_orm_evicts_redis_before_it_returns() {
    let Some(redis) = redis().await else { return };
    let schema = schema("redis_writes").await;
    // No coherence: the writer's own eviction is what keeps the reader right.
    let (a, b) = (
        cached(&schema, &redis).connect().await.unwrap(),
        cached(&schema, &redis).connect().await.unwrap(),
    );
    for id in 1..=4 {
        read(&a, id).await;
        assert_eq!(read(&b, id).await.1, 0, "author {id} cached");
    }

    // An instance update.
    let mut author = Author::get(&a, &1).await.unwrap();
    author.version = 1;
    author.update(&a).await.unwrap();
    assert_eq!(read(&b, 1).await, (1, 1), "evicted: read again");
    assert_eq!(read(&b, 1).await, (1, 0), "and cached again");
    assert_eq!(read(&b, 2).await, (0, 0), "other rows kept");

    // An update by filter.
    Author::query()
        .filter(Author::ID.eq(2))
        .update()
        .set(Author::VERSION, 2i64)
        .exec(&a)
        .await
        .unwrap();
    assert_eq!(read(&b, 2).await, (2, 1));

    // A transaction: evicted by its statement, and again when it commits (a read
    // between the two may store the old row again).
    let tx = a.begin().await.unwrap();
    Author::query()
        .filter(Author::ID.eq(3))
        .update()
        .set(Author::VERSION, 3i64)
        .exec(&tx)
        .await
        .unwrap();
    assert_eq!(read(&b, 3).await, (0, 1), "not committed yet: the old row");
    assert_eq!(read(&b, 3).await, (0, 0), "stored again");
    tx.commit().await.unwrap();
    assert_eq!(read(&b, 3).await, (3, 1), "the commit evicted it again");

    // A delete by key.
    Author::get(&a, &4).await.unwrap().delete(&a).await.unwrap();
    let before = b.query_count();
    assert!(matches!(
        Author::get(&b, &4).await,
        Err(matrx_orm::Error::NotFound { .. })
    ));
    assert_eq!(b.query_count() - before, 1, "not served from Redis");

    // A write the server refuses evicts the whole table (the ORM cannot tell what
    // it touched).
    a.batch_execute("ALTER TABLE authors ADD CHECK (version < 1000)")
        .await
        .unwrap();
    read(&b, 2).await;
    assert_eq!(read(&b, 2).await.1, 0);
    let failed = Author::query()
        .filter(Author::ID.eq(1))
        .update()
        .set(Author::VERSION, 1000i64)
        .exec(&a)
        .await;
    assert!(
        matches!(failed, Err(matrx_orm::Error::CheckViolation { .. })),
        "{failed:?}"
    );
    assert_eq!(read(&b, 2).await.1, 1, "evicted with its table");
}

#[tokio::test]
async fn with_coherence_writes_outside_the_orm_are_evicted_by_the_listeners() {
    let Some(redis) = redis().await else { return };
    let schema = schema("redis_triggers").await;
    let raw = plain(&schema).await;
    let ddl = CoherenceTriggers::new()
        .channel(schema.name())
        .model::<Author>()
        .sql()
        .unwrap();
    raw.batch_execute(&ddl).await.unwrap();
    let coherent = || cached(&schema, &redis).coherent_cache(true).connect();
    let (a, b) = (coherent().await.unwrap(), coherent().await.unwrap());
    assert!(a.cache_listening() && b.cache_listening());

    assert_eq!(read(&a, 1).await, (0, 1));
    assert_eq!(read(&b, 1).await, (0, 0), "shared through Redis");

    raw.execute_sql("UPDATE authors SET version = 7 WHERE id = 1", &[])
        .await
        .unwrap();
    a.cache_sync().await;
    b.cache_sync().await;
    assert_eq!(
        read(&b, 1).await,
        (7, 1),
        "the trigger's notification evicted Redis"
    );
    assert_eq!(
        read(&a, 1).await,
        (7, 0),
        "and b stored the new row for everyone"
    );

    // A Db whose listener starts evicts every cached table in Redis once: it
    // cannot know what was written while it was not listening.
    raw.batch_execute("ALTER TABLE authors DISABLE TRIGGER USER")
        .await
        .unwrap();
    raw.execute_sql("UPDATE authors SET version = 8 WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(read(&a, 1).await, (7, 0), "nobody heard that write");
    let c = coherent().await.unwrap();
    assert_eq!(
        read(&c, 1).await,
        (8, 1),
        "the newcomer flushed Redis first"
    );
    assert_eq!(read(&a, 1).await, (8, 0), "which every process then reads");
}

#[tokio::test]
async fn redis_going_away_costs_misses_never_errors_or_stale_rows() {
    let Some(mut redis) = redis().await else {
        return;
    };
    let schema = schema("redis_down").await;
    let (a, b) = (
        cached(&schema, &redis).connect().await.unwrap(),
        cached(&schema, &redis).connect().await.unwrap(),
    );
    assert_eq!(read(&a, 1).await, (0, 1));
    assert_eq!(read(&b, 1).await, (0, 0));

    redis.stop();
    // Reads go to the database; writes succeed.
    assert_eq!(read(&b, 1).await, (0, 1));
    assert_eq!(
        read(&b, 1).await,
        (0, 1),
        "nothing cached while Redis is away"
    );
    let mut author = Author::get(&a, &1).await.unwrap();
    author.version = 5;
    author.update(&a).await.unwrap();
    assert_eq!(read(&b, 1).await, (5, 1));

    // Connecting needs Redis to answer.
    let refused = cached(&schema, &redis).connect().await;
    assert!(
        matches!(refused, Err(matrx_orm::Error::Cache(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn connecting_to_a_redis_that_is_not_there_is_a_typed_error() {
    let schema = schema("redis_absent").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let result = builder(&schema)
        .cache::<Author>(CachePolicy::Permanent)
        .redis_cache(format!("redis://127.0.0.1:{port}/"))
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await;
    assert!(
        matches!(result, Err(matrx_orm::Error::Cache(_))),
        "{result:?}"
    );
    let result = builder(&schema)
        .cache::<Author>(CachePolicy::Permanent)
        .redis_cache("not a url")
        .connect()
        .await;
    assert!(
        matches!(result, Err(matrx_orm::Error::InvalidInput(_))),
        "{result:?}"
    );
}

/// Writers update authors through one `Db` while readers read them through others
/// (Redis shared by all, no coherence listener): a read that returns a version older
/// than one whose write had returned before the read started is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_and_reads_through_redis_are_never_stale() {
    const KEYS: i64 = 4;
    let Some(redis) = redis().await else { return };
    let schema = schema("redis_soak").await;
    let writer = cached(&schema, &redis).connect().await.unwrap();
    let readers = [
        cached(&schema, &redis).connect().await.unwrap(),
        cached(&schema, &redis).connect().await.unwrap(),
    ];
    let committed: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS).map(|_| AtomicI64::new(0)).collect());
    let stop = Instant::now() + Duration::from_secs(4);
    let write = {
        let committed = committed.clone();
        tokio::spawn(async move {
            let mut n = 0i64;
            while Instant::now() < stop {
                let id = 1 + n % KEYS;
                let version = committed[(id - 1) as usize].load(Ordering::SeqCst) + 1;
                Author {
                    id,
                    version,
                    name: format!("author {id}"),
                }
                .update(&writer)
                .await
                .unwrap();
                committed[(id - 1) as usize].store(version, Ordering::SeqCst);
                n += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            n
        })
    };
    let (stale, reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for (r, db) in readers.iter().enumerate() {
        for t in 0..2i64 {
            let (db, committed) = (db.clone(), committed.clone());
            let (stale, reads) = (stale.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = r as i64 + t;
                while Instant::now() < stop {
                    let id = 1 + n % KEYS;
                    let floor = committed[(id - 1) as usize].load(Ordering::SeqCst);
                    let got = Author::get(&db, &id).await.unwrap().version;
                    if got < floor {
                        stale.fetch_add(1, Ordering::SeqCst);
                        eprintln!("stale: author {id} read {got}, {floor} written before");
                    }
                    reads.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                }
            }));
        }
    }
    let writes = write.await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let hits: u64 = readers
        .iter()
        .map(|db| db.cache_stats::<Author>().hits)
        .sum();
    println!(
        "{writes} writes, {} reads, {hits} hits",
        reads.load(Ordering::SeqCst)
    );
    assert_eq!(stale.load(Ordering::SeqCst), 0, "stale reads");
    assert!(writes > 100, "the writer wrote ({writes})");
    assert!(hits > 100, "Redis served reads ({hits})");
    // Every key ends at its last version, whoever reads it.
    for id in 1..=KEYS {
        let last = committed[(id - 1) as usize].load(Ordering::SeqCst);
        for db in &readers {
            assert_eq!(Author::get(db, &id).await.unwrap().version, last);
        }
    }
}

/// Stops the child process if a test fails before it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A second OS process writes versions of a counter through its own `Db` caching in
/// the same Redis; this process (no listener) reads after each write the other
/// reported: never older, with no delivery bound to allow, because the writer
/// evicted Redis before its write returned.
#[tokio::test]
async fn a_write_in_another_process_evicts_redis_before_it_returns() {
    let Some(redis) = redis().await else { return };
    let schema = schema("redis_process").await;
    let b = cached(&schema, &redis)
        .cache::<Counter>(CachePolicy::Permanent)
        .connect()
        .await
        .unwrap();
    let counter = |db: &Db| {
        let db = db.clone();
        async move {
            let before = db.query_count();
            let version = Counter::get(&db, &1).await.unwrap().version;
            (version, db.query_count() - before)
        }
    };
    assert_eq!(counter(&b).await, (0, 1));
    assert_eq!(counter(&b).await, (0, 0));
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_coherence_writer"))
            .args([schema.url(), schema.name(), schema.name(), "1", "1", "30"])
            .arg(redis.url())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the writer process"),
    );
    let stdout = child.0.stdout.take().expect("the writer's stdout");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut seen, mut hits) = (0, 0);
    while let Some(line) = lines.recv().await {
        let version: i64 = line
            .strip_prefix("committed ")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line from the writer: {line}"));
        let (got, statements) = counter(&b).await;
        assert!(
            got >= version,
            "version {got} served after {version} was written"
        );
        // The writer may have written again in between: never older.
        let (again, cached) = counter(&b).await;
        assert!(again >= got, "version {again} read after {got}");
        hits += u64::from(cached == 0);
        assert!(statements <= 1);
        seen = version;
    }
    reader.await.unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "the writer process failed: {status}");
    assert_eq!(seen, 30, "every commit reported");
    assert!(
        hits > 0,
        "the rows read were cached in Redis between writes"
    );
}

/// Concurrent gets in a session each ask Redis, then meet in one batch for what
/// Redis did not have: one statement for the misses, none once cached.
#[tokio::test]
async fn concurrent_gets_in_a_session_batch_their_misses() {
    let Some(redis) = redis().await else { return };
    let schema = schema("redis_session").await;
    let (a, b) = (
        cached(&schema, &redis).connect().await.unwrap(),
        cached(&schema, &redis).connect().await.unwrap(),
    );
    for round in 0..5 {
        let session = a.session();
        let before = a.query_count();
        let ids = [1i64, 2, 3, 4];
        let gets = ids.iter().map(|id| Author::get(&session, id));
        let authors = futures_util::future::try_join_all(gets).await.unwrap();
        assert_eq!(authors.len(), 4);
        let expected = u64::from(round == 0);
        assert_eq!(
            a.query_count() - before,
            expected,
            "round {round}: one statement for the misses, then none"
        );
    }
    let session = b.session();
    let before = b.query_count();
    let ids = [1i64, 2, 3, 4];
    let gets = ids.iter().map(|id| Author::get(&session, id));
    futures_util::future::try_join_all(gets).await.unwrap();
    assert_eq!(
        b.query_count() - before,
        0,
        "another process reads them from Redis"
    );
}
