//! Cache coherence across processes: every write announces what it wrote in its own
//! statement (`pg_notify`), a coherent `Db` listens and evicts, a lost listener
//! flushes the cache and refuses to serve until it is back, and opt-in triggers
//! announce writes made outside the ORM. Two `Db`s share one schema; one test runs
//! the writer in a second OS process.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matrx_orm::cache::CachePolicy;
use matrx_orm::prelude::*;
use matrx_orm::sql::quote_ident;
use matrx_orm::{CoherenceTriggers, Db, DbBuilder};
use matrx_orm_testkit::TestSchema;
use matrx_orm_tests::coherence::{counter, Counter, Label, Shelf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

/// A key of every other key-part type: invalidations carry each in binary form.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "stamps")]
pub struct Stamp {
    #[orm(primary_key)]
    pub id: uuid::Uuid,
    #[orm(primary_key)]
    pub at: chrono::DateTime<chrono::Utc>,
    #[orm(primary_key)]
    pub amount: rust_decimal::Decimal,
    #[orm(primary_key)]
    pub day: chrono::NaiveDate,
    pub note: String,
}

/// And the rest of them.
#[derive(Model, Debug, Clone, PartialEq)]
#[orm(table = "flags")]
pub struct Flag {
    #[orm(primary_key)]
    pub on: bool,
    #[orm(primary_key)]
    pub level: i16,
    #[orm(primary_key)]
    pub seen: chrono::NaiveDateTime,
    #[orm(primary_key)]
    pub n: i32,
    pub note: String,
}

/// How long a notification may take to reach a listener before a test fails.
const DELIVERY_BOUND: Duration = Duration::from_secs(2);

/// A schema with counters 1..=8 at version 0, labels 1..=3 and shelf ("eu", 7).
async fn schema(prefix: &str) -> TestSchema {
    let schema = TestSchema::create(prefix)
        .await
        .expect("create test schema");
    let db = plain(&schema).await;
    let models = [Counter::META, Label::META, Shelf::META];
    matrx_orm::ddl::create_tables(&db, &models).await.unwrap();
    db.batch_execute(
        "INSERT INTO counters (id, version) SELECT g, 0 FROM generate_series(1, 8) AS g;
         INSERT INTO labels (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c');
         INSERT INTO shelves (region, code, label) VALUES ('eu', 7, 'x');",
    )
    .await
    .unwrap();
    schema
}

/// The schema's pool; invalidations on a channel named after the schema, so tests
/// running side by side on one server do not hear each other.
fn builder(schema: &TestSchema) -> DbBuilder {
    Db::builder(schema.url())
        .search_path(schema.name())
        .pool_size(4)
        .coherence_channel(schema.name())
}

/// No cache, announces nothing: a program that knows nothing of coherence.
async fn plain(schema: &TestSchema) -> Db {
    builder(schema).connect().await.unwrap()
}

/// Announces its writes, caches nothing.
async fn writer(schema: &TestSchema) -> Db {
    builder(schema).notify_writes(true).connect().await.unwrap()
}

fn caching(builder: DbBuilder) -> DbBuilder {
    builder
        .cache::<Counter>(CachePolicy::Permanent)
        .cache::<Shelf>(CachePolicy::Permanent)
        .coherent_cache(true)
}

/// Caches counters and shelves, listens, announces.
async fn coherent(schema: &TestSchema) -> Db {
    let db = caching(builder(schema)).connect().await.unwrap();
    assert!(
        db.cache_listening(),
        "the listener is up once connect returns"
    );
    db
}

/// The payloads heard on the schema's channel by a connection of the test's own.
struct Heard {
    payloads: mpsc::UnboundedReceiver<String>,
    _client: tokio_postgres::Client,
    task: JoinHandle<()>,
}

impl Drop for Heard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(schema: &TestSchema) -> Heard {
    let (client, mut connection) = tokio_postgres::connect(schema.url(), NoTls).await.unwrap();
    let (tx, payloads) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                // A coherent Db's listener syncing with itself on the channel.
                AsyncMessage::Notification(n) if n.payload().starts_with("sync ") => {}
                AsyncMessage::Notification(n) => {
                    let _ = tx.send(n.payload().to_owned());
                }
                _ => {}
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", quote_ident(schema.name())))
        .await
        .unwrap();
    Heard {
        payloads,
        _client: client,
        task,
    }
}

impl Heard {
    async fn next(&mut self) -> String {
        tokio::time::timeout(DELIVERY_BOUND, self.payloads.recv())
            .await
            .expect("a notification within the delivery bound")
            .expect("the test's listener is alive")
    }

    /// Asserts nothing arrives for a while (what was sent has arrived by then: the
    /// writes before are acknowledged, and delivery is far below this wait).
    async fn nothing(&mut self, after: &str) {
        let quiet = tokio::time::timeout(Duration::from_millis(300), self.payloads.recv()).await;
        assert!(
            quiet.is_err(),
            "{after}: nothing announced, heard {quiet:?}"
        );
    }
}

fn key(id: i64) -> String {
    format!("{id:016x}")
}

/// A payload's keys, sorted (an update by filter returns its rows in no set order).
fn keys_of(payload: &str, table: &str) -> Vec<String> {
    let keys = payload
        .strip_prefix("1 ")
        .and_then(|rest| rest.strip_suffix(&format!(" {table}")))
        .unwrap_or_else(|| panic!("not a payload of {table}: {payload}"));
    let mut keys: Vec<String> = keys.split(';').map(str::to_owned).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn every_write_path_announces_what_it_wrote() {
    let schema = schema("coh_paths").await;
    let db = writer(&schema).await;
    let mut heard = listen(&schema).await;

    let created = Counter::create()
        .set(Counter::ID, 100i64)
        .set(Counter::VERSION, 1i64)
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(created.version, 1, "the write still returns its row");
    assert_eq!(heard.next().await, format!("1 {} counters", key(100)));

    counter(101, 1).insert(&db).await.unwrap();
    assert_eq!(heard.next().await, format!("1 {} counters", key(101)));

    // Twelve rows: one array per column, and the keys in input order.
    let rows: Vec<Counter> = (110..122).map(|id| counter(id, 1)).collect();
    let stored = Counter::insert_many(&db, &rows).await.unwrap();
    let ids: Vec<i64> = stored.iter().map(|c| c.id).collect();
    assert_eq!(ids, (110..122).collect::<Vec<_>>());
    let expected: Vec<String> = (110..122).map(key).collect();
    assert_eq!(
        heard.next().await,
        format!("1 {} counters", expected.join(";"))
    );

    let mut one = Counter::get(&db, &1).await.unwrap();
    one.version = 5;
    one.update(&db).await.unwrap();
    assert_eq!(one.version, 5);
    assert_eq!(heard.next().await, format!("1 {} counters", key(1)));

    let updated = Counter::query()
        .filter(Counter::ID.is_in([2i64, 3]))
        .update()
        .set(Counter::VERSION, 9i64)
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(updated.len(), 2);
    assert_eq!(
        keys_of(&heard.next().await, "counters"),
        vec![key(2), key(3)]
    );

    // An update that matches nothing wrote nothing: nothing to announce.
    let none = Counter::query()
        .filter(Counter::ID.eq(9999i64))
        .update()
        .set(Counter::VERSION, 1i64)
        .exec(&db)
        .await
        .unwrap();
    assert!(none.is_empty());
    heard.nothing("an update of no row").await;

    // A new primary key: the old one is not in the rows returned, so the whole table.
    Counter::query()
        .filter(Counter::ID.eq(101i64))
        .update()
        .set(Counter::ID, 102i64)
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(heard.next().await, "1 * counters");

    // An upsert that updates the conflicting row names it.
    let upserted = counter(4, 44)
        .upsert(&db, &[Counter::ID.into()])
        .await
        .unwrap();
    assert_eq!(upserted.version, 44);
    assert_eq!(heard.next().await, format!("1 {} counters", key(4)));

    counter(5, 0).delete(&db).await.unwrap();
    assert_eq!(heard.next().await, format!("1 {} counters", key(5)));

    let deleted = Counter::query()
        .filter(Counter::ID.is_in([6i64, 7]))
        .delete(&db)
        .await
        .unwrap();
    assert_eq!(deleted.len(), 2);
    assert_eq!(
        keys_of(&heard.next().await, "counters"),
        vec![key(6), key(7)]
    );

    // A thousand keys do not fit the 8000-byte payload: the whole table.
    let many: Vec<Counter> = (1000..2000).map(|id| counter(id, 1)).collect();
    assert_eq!(Counter::insert_many(&db, &many).await.unwrap().len(), 1000);
    assert_eq!(heard.next().await, "1 * counters");

    // A composite key of text and integer, each in its binary form.
    Shelf::create()
        .set(Shelf::REGION, "us")
        .set(Shelf::CODE, 9)
        .set(Shelf::LABEL, "y")
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(heard.next().await, "1 7573,00000009 shelves");
    // A key too long for the payload: the whole table.
    Shelf::create()
        .set(Shelf::REGION, "r".repeat(5000))
        .set(Shelf::CODE, 1)
        .set(Shelf::LABEL, "long")
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(heard.next().await, "1 * shelves");

    // Link writes name their junction table.
    let mut c8 = Counter::get(&db, &8).await.unwrap();
    assert_eq!(c8.m2m_add(&db, Counter::LABELS, [1, 2]).await.unwrap(), 2);
    assert_eq!(heard.next().await, "1 * counter_labels");
    assert_eq!(c8.m2m_remove(&db, Counter::LABELS, [1]).await.unwrap(), 1);
    assert_eq!(heard.next().await, "1 * counter_labels");
    let outcome = c8.m2m_set(&db, Counter::LABELS, [2, 3]).await.unwrap();
    assert_eq!((outcome.added, outcome.removed), (1, 0));
    assert_eq!(heard.next().await, "1 * counter_labels");
    let same = c8.m2m_set(&db, Counter::LABELS, [2, 3]).await.unwrap();
    assert_eq!((same.added, same.removed), (0, 0));
    heard.nothing("a link set that changed nothing").await;
    assert_eq!(c8.m2m_clear(&db, Counter::LABELS).await.unwrap(), 2);
    assert_eq!(heard.next().await, "1 * counter_labels");
    assert_eq!(c8.m2m_add(&db, Counter::LABELS, [1]).await.unwrap(), 1);
    assert_eq!(heard.next().await, "1 * counter_labels");
    // Adding a link that exists writes no row.
    assert_eq!(c8.m2m_add(&db, Counter::LABELS, [1]).await.unwrap(), 0);
    heard.nothing("a link add that wrote nothing").await;

    // A session and a transaction of an announcing Db announce too.
    let session = db.session();
    counter(3, 30).update(&session).await.unwrap();
    assert_eq!(heard.next().await, format!("1 {} counters", key(3)));
    db.transaction(async |tx| counter(3, 31).update(tx).await)
        .await
        .unwrap();
    assert_eq!(heard.next().await, format!("1 {} counters", key(3)));

    // Raw SQL is not a write the ORM can read: not announced (see the triggers).
    db.execute_sql("UPDATE counters SET version = 32 WHERE id = 3", &[])
        .await
        .unwrap();
    heard.nothing("raw SQL").await;

    // A Db that does not announce sends nothing.
    let silent = plain(&schema).await;
    counter(3, 0).update(&silent).await.unwrap();
    heard
        .nothing("a write through a Db that does not announce")
        .await;
}

#[tokio::test]
async fn keys_of_every_type_evict_exactly_their_row() {
    use chrono::{NaiveDate, TimeZone, Utc};
    use rust_decimal::Decimal;
    let schema = schema("coh_types").await;
    let setup = plain(&schema).await;
    matrx_orm::ddl::create_tables(&setup, &[Stamp::META, Flag::META])
        .await
        .unwrap();
    // The writer's session speaks another time zone and date style: keys travel in
    // binary, so they still name the same rows.
    let a = builder(&schema)
        .pool_size(1)
        .notify_writes(true)
        .connect()
        .await
        .unwrap();
    a.execute_sql("SET TimeZone = 'Asia/Kathmandu'", &[])
        .await
        .unwrap();
    a.execute_sql("SET DateStyle = 'SQL, DMY'", &[])
        .await
        .unwrap();
    let b = builder(&schema)
        .cache::<Stamp>(CachePolicy::Permanent)
        .cache::<Flag>(CachePolicy::Permanent)
        .coherent_cache(true)
        .connect()
        .await
        .unwrap();
    let day = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let stamps: Vec<Stamp> = (0..3)
        .map(|i| Stamp {
            id: uuid::Uuid::from_u128(0xfeed_0000 + i),
            at: Utc
                .timestamp_opt(1_700_000_000 + i as i64, 123_456_000)
                .unwrap(),
            amount: Decimal::new(1250 + i as i64, 2),
            day,
            note: "n".to_owned(),
        })
        .collect();
    let flags: Vec<Flag> = (0..3)
        .map(|i| Flag {
            on: i % 2 == 0,
            level: -7 - i as i16,
            seen: day.and_hms_micro_opt(23, 59, 58, 999_999).unwrap(),
            n: i32::MIN + i,
            note: "n".to_owned(),
        })
        .collect();
    Stamp::insert_many(&setup, &stamps).await.unwrap();
    Flag::insert_many(&setup, &flags).await.unwrap();
    for s in &stamps {
        Stamp::get(&b, &s.key()).await.unwrap();
    }
    for f in &flags {
        Flag::get(&b, &f.key()).await.unwrap();
    }
    assert_eq!(b.cache_stats::<Stamp>().len, 3);
    assert_eq!(b.cache_stats::<Flag>().len, 3);

    let mut one = stamps[1].clone();
    one.note = "changed".to_owned();
    one.update(&a).await.unwrap();
    let mut other = flags[2].clone();
    other.note = "changed".to_owned();
    other.update(&a).await.unwrap();
    b.cache_sync().await;
    assert_eq!(b.cache_stats::<Stamp>().len, 2, "exactly the written stamp");
    assert_eq!(b.cache_stats::<Flag>().len, 2, "exactly the written flag");
    assert_eq!(Stamp::get(&b, &one.key()).await.unwrap().note, "changed");
    assert_eq!(Flag::get(&b, &other.key()).await.unwrap().note, "changed");
    let before = b.query_count();
    Stamp::get(&b, &stamps[0].key()).await.unwrap();
    Flag::get(&b, &flags[0].key()).await.unwrap();
    assert_eq!(
        b.query_count(),
        before,
        "the rows not written are still cached"
    );
}

#[tokio::test]
async fn a_rolled_back_or_failed_write_announces_nothing() {
    let schema = schema("coh_rollback").await;
    let db = writer(&schema).await;
    let mut heard = listen(&schema).await;

    let tx = db.begin().await.unwrap();
    counter(1, 10).update(&tx).await.unwrap();
    tx.rollback().await.unwrap();
    heard.nothing("a rolled-back transaction").await;

    // Dropped without commit: rolled back too.
    {
        let tx = db.begin().await.unwrap();
        counter(1, 11).update(&tx).await.unwrap();
    }
    heard.nothing("a dropped transaction").await;

    // A savepoint rolled back takes its notification with it.
    let mut tx = db.begin().await.unwrap();
    let sp = tx.savepoint().await.unwrap();
    counter(2, 12).update(&sp).await.unwrap();
    sp.rollback().await.unwrap();
    counter(3, 13).update(&tx).await.unwrap();
    heard.nothing("a write inside an open transaction").await;
    tx.commit().await.unwrap();
    assert_eq!(
        heard.next().await,
        format!("1 {} counters", key(3)),
        "only the committed write, once the transaction commits"
    );
    heard.nothing("after the commit").await;

    // A statement that fails (a duplicate key) writes nothing and sends nothing.
    let failed = counter(1, 0).insert(&db).await;
    assert!(failed.is_err());
    heard.nothing("a failed insert").await;
    let in_tx = db.begin().await.unwrap();
    counter(4, 14).update(&in_tx).await.unwrap();
    assert!(counter(1, 0).insert(&in_tx).await.is_err());
    assert!(
        in_tx.commit().await.is_err(),
        "an aborted transaction cannot commit"
    );
    heard.nothing("a transaction a failure aborted").await;
    let row = Counter::get(&db, &4).await.unwrap();
    assert_eq!(row.version, 0);
}

/// Polls `done` until it holds; how long that took, or a panic past `bound`.
async fn within(bound: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// Reads counter `id` through `db` and how many statements that took.
async fn read(db: &Db, id: i64) -> (i64, u64) {
    let before = db.query_count();
    let row = Counter::get(db, &id).await.unwrap();
    (row.version, db.query_count() - before)
}

#[tokio::test]
async fn a_write_in_one_db_is_not_served_stale_by_the_other() {
    let schema = schema("coh_two_dbs").await;
    let (a, b) = (coherent(&schema).await, coherent(&schema).await);

    assert_eq!(read(&b, 1).await, (0, 1), "a miss");
    assert_eq!(read(&b, 1).await, (0, 0), "a hit: no statement");

    let before = b.cache_stats::<Counter>().invalidations;
    let mut row = Counter::get(&a, &1).await.unwrap();
    row.version = 1;
    row.update(&a).await.unwrap();
    let lag = within(DELIVERY_BOUND, "the other Db evicts", || {
        b.cache_stats::<Counter>().invalidations > before
    })
    .await;
    assert_eq!(
        read(&b, 1).await,
        (1, 1),
        "evicted: read again, the new row"
    );
    assert_eq!(read(&b, 1).await, (1, 0), "and cached again");
    println!("notification reached the other Db in {lag:?}");

    // Without waiting: cache_sync returns once everything committed is heard.
    row.version = 2;
    row.update(&a).await.unwrap();
    b.cache_sync().await;
    assert_eq!(read(&b, 1).await, (2, 1));

    // A composite key names the one row.
    assert_eq!(b.cache_stats::<Shelf>().len, 0);
    let eu = ("eu".to_owned(), 7);
    Shelf::get(&b, &eu).await.unwrap();
    Shelf::create()
        .set(Shelf::REGION, "eu")
        .set(Shelf::CODE, 8)
        .set(Shelf::LABEL, "z")
        .exec(&b)
        .await
        .unwrap();
    // A Db hears its own writes too: let that eviction pass before caching the row.
    b.cache_sync().await;
    Shelf::get(&b, &("eu".to_owned(), 8)).await.unwrap();
    assert_eq!(b.cache_stats::<Shelf>().len, 2);
    Shelf::query()
        .filter(Shelf::CODE.eq(7))
        .update()
        .set(Shelf::LABEL, "moved")
        .exec(&a)
        .await
        .unwrap();
    b.cache_sync().await;
    assert_eq!(b.cache_stats::<Shelf>().len, 1, "only (eu, 7) evicted");
    let shelf = Shelf::get(&b, &eu).await.unwrap();
    assert_eq!(shelf.label, "moved");

    // A rolled-back write evicts locally (the ORM cannot tell) but sends nothing.
    let before = b.cache_stats::<Counter>().invalidations;
    let tx = a.begin().await.unwrap();
    counter(1, 99).update(&tx).await.unwrap();
    tx.rollback().await.unwrap();
    b.cache_sync().await;
    assert_eq!(b.cache_stats::<Counter>().invalidations, before);
    assert_eq!(read(&b, 1).await, (2, 0), "still a hit");
}

/// A TCP proxy to the server that can refuse new connections, cut open ones, or
/// freeze them (bytes stop flowing, the sockets stay open: a network gone quiet): a
/// network the test controls, for the listener's connection only.
struct Proxy {
    addr: SocketAddr,
    accepting: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

impl Proxy {
    async fn to(server: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = Arc::new(AtomicBool::new(true));
        let frozen = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (open, still, held) = (accepting.clone(), frozen.clone(), links.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !open.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let still = still.clone();
                let link = tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(server).await else {
                        return;
                    };
                    let ((cr, cw), (ur, uw)) = (client.into_split(), upstream.into_split());
                    let up = tokio::spawn(pump(cr, uw, still.clone()));
                    pump(ur, cw, still).await;
                    up.abort();
                });
                held.lock().unwrap().push(link);
            }
        });
        Proxy {
            addr,
            accepting,
            frozen,
            links,
            task,
        }
    }

    fn refuse(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    fn accept(&self) {
        self.accepting.store(true, Ordering::SeqCst);
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// Copies bytes from `from` to `to` until either side closes; holds them while
/// `frozen` (the sockets stay open, nothing flows).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
}

/// The server's TCP address, from the testkit's URL.
fn server_addr(url: &str) -> Option<SocketAddr> {
    let config: tokio_postgres::Config = url.parse().ok()?;
    let host = match config.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()?
        .next()
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or(user);
    let mut out = format!(
        "host={} port={} user={user} dbname={dbname}",
        addr.ip(),
        addr.port()
    );
    if let Some(password) = config.get_password() {
        out.push_str(&format!(
            " password='{}'",
            String::from_utf8_lossy(password)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        ));
    }
    out
}

#[tokio::test]
async fn a_lost_listener_flushes_the_cache_which_refuses_until_it_is_back() {
    let schema = schema("coh_gap").await;
    let Some(server) = server_addr(schema.url()) else {
        println!("SKIPPED: the test server is not reachable over TCP, so no proxy can stand in front of it");
        return;
    };
    let proxy = Proxy::to(server).await;
    let a = writer(&schema).await;
    let b = caching(builder(&schema))
        .coherence_listen_url(via(schema.url(), proxy.addr))
        .connect()
        .await
        .unwrap();
    assert!(b.cache_listening());
    assert_eq!(read(&b, 1).await, (0, 1));
    assert_eq!(read(&b, 1).await, (0, 0), "cached");

    // The server ends the listener's backend; the proxy refuses the reconnection,
    // so the gap lasts until the test lets it end.
    proxy.refuse();
    let killer = plain(&schema).await;
    let name = format!("matrx-orm listener {}", schema.name());
    let killed = killer
        .query_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "one listener of this schema's channel");
    within(DELIVERY_BOUND, "the listener notices", || {
        !b.cache_listening()
    })
    .await;
    assert_eq!(b.cache_stats::<Counter>().len, 0, "flushed");

    // A write nobody hears: the cache must not serve the old row, nor store any.
    counter(1, 1).update(&a).await.unwrap();
    let refused = b.cache_stats::<Counter>().refusals;
    assert_eq!(read(&b, 1).await, (1, 1), "no stale hit in the gap");
    assert_eq!(read(&b, 1).await, (1, 1), "nothing stored in the gap");
    assert_eq!(b.cache_stats::<Counter>().refusals, refused + 2);
    assert_eq!(b.cache_stats::<Counter>().len, 0);
    b.cache_sync().await; // returns at once while the listener is down
    assert!(!b.cache_listening(), "the proxy still refuses");

    // A cut connection (no server goodbye) is a loss too, once back.
    proxy.accept();
    within(Duration::from_secs(10), "the listener is back", || {
        b.cache_listening()
    })
    .await;
    assert_eq!(read(&b, 1).await, (1, 1), "recovered: a miss");
    assert_eq!(read(&b, 1).await, (1, 0), "then a hit");
    counter(1, 2).update(&a).await.unwrap();
    b.cache_sync().await;
    assert_eq!(read(&b, 1).await, (2, 1), "writes are heard again");

    proxy.refuse();
    proxy.cut();
    within(DELIVERY_BOUND * 5, "a cut connection is noticed", || {
        !b.cache_listening()
    })
    .await;
    counter(1, 3).update(&a).await.unwrap();
    assert_eq!(read(&b, 1).await, (3, 1), "no stale hit after a cut");
    proxy.accept();
    within(Duration::from_secs(10), "the listener is back", || {
        b.cache_listening()
    })
    .await;
    assert_eq!(read(&b, 1).await, (3, 1));
    assert_eq!(read(&b, 1).await, (3, 0));
}

#[tokio::test]
async fn a_listener_whose_connection_goes_quiet_is_found_out_by_its_heartbeat() {
    let schema = schema("coh_quiet").await;
    let Some(server) = server_addr(schema.url()) else {
        println!("SKIPPED: the test server is not reachable over TCP, so no proxy can stand in front of it");
        return;
    };
    let proxy = Proxy::to(server).await;
    let a = writer(&schema).await;
    let b = caching(builder(&schema))
        .coherence_listen_url(via(schema.url(), proxy.addr))
        .coherence_heartbeat(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    assert!(b.cache_listening());
    // Idle for several heartbeats: they are answered, the listener stays.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(b.cache_listening(), "answered heartbeats keep the listener");
    assert_eq!(read(&b, 1).await, (0, 1));
    assert_eq!(read(&b, 1).await, (0, 0));

    // Nothing flows any more, and no socket closes: only the heartbeat can tell.
    proxy.refuse();
    proxy.freeze();
    let noticed = within(
        Duration::from_secs(3),
        "an unanswered heartbeat is noticed",
        || !b.cache_listening(),
    )
    .await;
    assert_eq!(b.cache_stats::<Counter>().len, 0, "flushed");
    counter(1, 1).update(&a).await.unwrap();
    assert_eq!(read(&b, 1).await, (1, 1), "no stale hit while deaf");
    proxy.thaw();
    proxy.cut();
    proxy.accept();
    within(Duration::from_secs(10), "the listener is back", || {
        b.cache_listening()
    })
    .await;
    assert_eq!(read(&b, 1).await, (1, 1));
    assert_eq!(read(&b, 1).await, (1, 0));
    println!("a quiet connection was noticed after {noticed:?}");
}

#[tokio::test]
async fn opt_in_triggers_announce_writes_made_outside_the_orm() {
    let schema = schema("coh_triggers").await;
    let raw = plain(&schema).await;
    let ddl = CoherenceTriggers::new()
        .channel(schema.name())
        .model::<Counter>()
        .model::<Shelf>()
        .sql()
        .unwrap();
    raw.batch_execute(&ddl).await.unwrap();
    raw.batch_execute(&ddl).await.expect("the DDL runs twice");
    let b = coherent(&schema).await;
    let mut heard = listen(&schema).await;

    assert_eq!(read(&b, 1).await, (0, 1));
    assert_eq!(read(&b, 1).await, (0, 0));
    raw.execute_sql("UPDATE counters SET version = 7 WHERE id = 1", &[])
        .await
        .unwrap();
    // The trigger's payload is the one an ORM write sends.
    assert_eq!(heard.next().await, format!("1 {} counters", key(1)));
    b.cache_sync().await;
    assert_eq!(
        read(&b, 1).await,
        (7, 1),
        "evicted by the trigger's notification"
    );

    raw.execute_sql("UPDATE counters SET id = 50 WHERE id = 2", &[])
        .await
        .unwrap();
    let mut both = vec![heard.next().await, heard.next().await];
    both.sort();
    assert_eq!(
        both,
        vec![
            format!("1 {} counters", key(2)),
            format!("1 {} counters", key(50))
        ],
        "a changed key names the old and the new"
    );
    raw.execute_sql("DELETE FROM shelves WHERE region = 'eu'", &[])
        .await
        .unwrap();
    assert_eq!(heard.next().await, "1 6575,00000007 shelves");
    raw.execute_sql("INSERT INTO counter_labels VALUES (1, 1), (1, 2)", &[])
        .await
        .unwrap();
    assert_eq!(
        heard.next().await,
        "1 * counter_labels",
        "once per statement"
    );
    raw.batch_execute("TRUNCATE counter_labels").await.unwrap();
    assert_eq!(heard.next().await, "1 * counter_labels");
    assert_eq!(read(&b, 3).await, (0, 1));
    raw.batch_execute("TRUNCATE counters CASCADE")
        .await
        .unwrap();
    let mut both = vec![heard.next().await, heard.next().await];
    both.sort();
    assert_eq!(
        both,
        ["1 * counter_labels", "1 * counters"],
        "the cascade truncates the junction too"
    );
    b.cache_sync().await;
    assert_eq!(
        b.cache_stats::<Counter>().len,
        0,
        "a truncate evicts the model"
    );
    heard.nothing("after the truncate").await;

    let bad = CoherenceTriggers::new()
        .channel("no-dashes")
        .model::<Counter>();
    assert!(bad.sql().is_err());
}

/// One key's acknowledged versions and when each was acknowledged.
type Commits = Vec<(i64, Instant)>;

/// Counts stale reads under concurrent writes through one `Db` and reads through
/// another for `length`, and checks the cache served from memory meanwhile.
///
/// A read is stale when it returns a version older than the last version whose
/// commit was acknowledged before the read started: exactly for reads that first
/// call `cache_sync`, and, for plain reads, allowing the notification
/// [`DELIVERY_BOUND`] to arrive.
async fn soak(prefix: &str, length: Duration) {
    const KEYS: i64 = 8;
    let schema = schema(prefix).await;
    let (a, b) = (coherent(&schema).await, coherent(&schema).await);
    // Per key: the last acknowledged version, and every (version, ack time).
    let committed: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS).map(|_| AtomicI64::new(0)).collect());
    let history: Arc<Mutex<Vec<Commits>>> = Arc::new(Mutex::new(vec![Vec::new(); KEYS as usize]));
    let stop = Instant::now() + length;
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let (a, committed, history) = (a.clone(), committed.clone(), history.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop {
                // Writer w owns the keys of its parity: versions of a key only grow.
                let id = 1 + (w + 2 * (n as i64 % (KEYS / 2))) % KEYS;
                let version = committed[(id - 1) as usize].load(Ordering::SeqCst) + 1;
                let mut row = counter(id, version);
                row.update(&a).await.unwrap();
                committed[(id - 1) as usize].store(version, Ordering::SeqCst);
                history.lock().unwrap()[(id - 1) as usize].push((version, Instant::now()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        }));
    }
    let (stale, reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut readers = Vec::new();
    for r in 0..4i64 {
        let (b, committed, history) = (b.clone(), committed.clone(), history.clone());
        let (stale, reads) = (stale.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let mut n = 0i64;
            while Instant::now() < stop {
                let id = 1 + (r + n) % KEYS;
                let synced = n % 2 == 0;
                let start = Instant::now();
                let floor = if synced {
                    let floor = committed[(id - 1) as usize].load(Ordering::SeqCst);
                    b.cache_sync().await;
                    floor
                } else {
                    let history = history.lock().unwrap();
                    history[(id - 1) as usize]
                        .iter()
                        .filter(|(_, at)| *at + DELIVERY_BOUND <= start)
                        .map(|(v, _)| *v)
                        .max()
                        .unwrap_or(0)
                };
                let got = Counter::get(&b, &id).await.unwrap().version;
                if got < floor {
                    stale.fetch_add(1, Ordering::SeqCst);
                    eprintln!(
                        "stale: key {id} read {got}, {floor} committed before (synced: {synced})"
                    );
                }
                reads.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    let stats = b.cache_stats::<Counter>();
    println!(
        "{length:?}: {writes} writes, {} reads, {} hits, {} invalidations",
        reads.load(Ordering::SeqCst),
        stats.hits,
        stats.invalidations
    );
    assert_eq!(stale.load(Ordering::SeqCst), 0, "stale reads");
    assert!(writes > 100, "the writers wrote ({writes})");
    assert!(stats.hits > 100, "the cache served reads: {stats:?}");
    assert!(stats.invalidations > 100, "writes evicted rows: {stats:?}");
    // Every key ends at its last version, read through the cache.
    b.cache_sync().await;
    for id in 1..=KEYS {
        let last = committed[(id - 1) as usize].load(Ordering::SeqCst);
        assert_eq!(Counter::get(&b, &id).await.unwrap().version, last);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_and_reads_are_never_stale() {
    soak("coh_soak", Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "30 s: run with --ignored"]
async fn concurrent_writes_and_reads_are_never_stale_for_30_s() {
    soak("coh_soak_long", Duration::from_secs(30)).await;
}

/// A child process, killed if the test ends before it does.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test]
async fn a_write_in_another_process_is_not_served_stale() {
    let schema = schema("coh_process").await;
    let b = coherent(&schema).await;
    assert_eq!(read(&b, 1).await, (0, 1));
    assert_eq!(read(&b, 1).await, (0, 0));
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_coherence_writer"))
            .args([schema.url(), schema.name(), schema.name(), "1", "1", "40"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the writer process"),
    );
    let stdout = child.0.stdout.take().expect("the writer's stdout");
    // The writer's lines, read on a blocking thread as they come.
    let (tx, mut lines) = mpsc::unbounded_channel();
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut longest = Duration::ZERO;
    let mut seen = 0;
    while let Some(line) = lines.recv().await {
        let version: i64 = line
            .strip_prefix("committed ")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line from the writer: {line}"));
        // The commit was acknowledged in the other process: within the delivery
        // bound, this process's cache stops serving anything older.
        let acknowledged = Instant::now();
        loop {
            let (got, _) = read(&b, 1).await;
            if got >= version {
                break;
            }
            assert!(
                acknowledged.elapsed() < DELIVERY_BOUND,
                "version {got} served {:?} after {version} committed",
                acknowledged.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        longest = longest.max(acknowledged.elapsed());
        seen = version;
    }
    reader.await.unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "the writer process failed: {status}");
    assert_eq!(seen, 40, "every commit reported");
    b.cache_sync().await;
    assert_eq!(read(&b, 1).await.0, 40);
    assert_eq!(read(&b, 1).await, (40, 0), "served from the cache again");
    assert!(b.cache_stats::<Counter>().invalidations >= 1);
    println!("longest wait for another process's write to be seen: {longest:?}");
}
