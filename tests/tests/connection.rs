//! Connecting: unreachable and silent servers fail within the connect timeout with
//! `Error::Connection`, malformed URLs are `InvalidInput`, and the pool's settings
//! (search_path with odd characters, size) take effect.

mod common;
mod fixtures;

use std::time::Duration;

use fixtures::*;
use matrx_orm::prelude::*;
use matrx_orm::Error;

#[tokio::test]
async fn a_refused_connection_is_a_connection_error_at_once() {
    let (result, elapsed) = timed(
        Db::builder("postgres://root@127.0.0.1:1/test")
            .connect_timeout(Duration::from_secs(2))
            .connect(),
    )
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    assert!(err.to_string().starts_with("connection error"), "{err}");
    assert!(
        elapsed < Duration::from_secs(2),
        "refused, not timed out: {elapsed:?}"
    );
}

/// A server that accepts TCP connections and never says a word.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_silent_server_is_a_connection_error_within_the_connect_timeout() {
    let (addr, task) = silent_server().await;
    let url = format!("postgres://root@{addr}/test");
    let limit = Duration::from_millis(500);
    let (result, elapsed) = timed(Db::builder(&url).connect_timeout(limit).connect()).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    assert!(
        elapsed >= limit - Duration::from_millis(50),
        "gave up early: {elapsed:?}"
    );
    assert!(
        elapsed < limit + Duration::from_millis(1000),
        "no hang: {elapsed:?}"
    );
    task.abort();
}

#[tokio::test]
async fn a_malformed_url_is_invalid_input() {
    for url in [
        "postgres://root@localhost:notaport/test",
        "postgres://root@localhost:5432/test?sslmode=sometimes",
        "postgres://root@localhost:5432/test?connect_timeout=soon",
        "postgres://[::1/test",
        "host=localhost port=",
    ] {
        let (result, elapsed) = timed(Db::connect(url)).await;
        match result {
            Err(Error::InvalidInput(m)) => {
                assert!(m.contains("invalid database URL"), "{url}: {m}")
            }
            other => panic!("{url:?}: expected InvalidInput, got {other:?}"),
        }
        assert!(
            elapsed < Duration::from_secs(1),
            "{url:?} rejected without connecting"
        );
    }
}

/// A URL that parses but names no host cannot work either; it should be refused as
/// invalid input naming the cause, like any other unusable URL.
#[tokio::test]
async fn a_url_without_a_host_is_invalid_input() {
    for url in ["", "postgres:///test", "user=root dbname=test"] {
        let err = Db::connect(url).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput(_)),
            "{url:?}: expected InvalidInput, got {err:?}"
        );
        assert!(
            err.to_string().contains("host"),
            "{url:?}: the message names the cause: {err}"
        );
    }
}

#[tokio::test]
async fn an_unknown_database_is_a_typed_error() {
    let server = matrx_orm_testkit::server().await.unwrap();
    let mut url = server.url().to_owned();
    let slash = url.rfind('/').unwrap();
    url.truncate(slash + 1);
    url.push_str("matrx_no_such_database");
    let err = Db::connect(&url).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("3D000"), "{err:?}");
    assert!(err.to_string().contains("matrx_no_such_database"), "{err}");
}

#[tokio::test]
async fn the_search_path_may_hold_any_character() {
    let tdb = common::test_db("conn_search_path").await;
    let weird = format!("{} we\"ird\\ sch'ema", tdb.schema.name());
    let quoted = matrx_orm::sql::quote_ident(&weird);
    tdb.batch_execute(&format!("CREATE SCHEMA {quoted}"))
        .await
        .unwrap();
    let db = Db::builder(tdb.schema.url())
        .search_path(&weird)
        .pool_size(2)
        .connect()
        .await
        .unwrap();
    let current: String = db
        .query_sql("SELECT current_schema()::text", &[])
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(current, weird);
    matrx_orm::ddl::create_tables(&db, &[common::shop::Tag::META])
        .await
        .unwrap();
    common::shop::Tag {
        id: 0,
        name: "t".into(),
    }
    .insert(&db)
    .await
    .unwrap();
    let in_schema: i64 = tdb
        .query_sql(&format!("SELECT count(*) FROM {quoted}.\"tags\""), &[])
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(in_schema, 1);
    drop(db);
    tdb.batch_execute(&format!("DROP SCHEMA {quoted} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_pool_honours_its_size_and_clones_share_it() {
    let tdb = common::test_db("conn_pool").await;
    let db = pool_on(&tdb, 3, Duration::from_secs(5)).await;
    let status = db.pool_status();
    assert_eq!(status.max_size, 3);
    assert!(
        status.size >= 1,
        "connect() opened a connection: {status:?}"
    );
    // Ten concurrent statements on three connections.
    let pids = futures_util::future::join_all((0..10).map(|_| async {
        db.query_sql("SELECT pg_backend_pid(), pg_sleep(0.05)::text", &[])
            .await
            .unwrap()[0]
            .get::<_, i32>(0)
    }))
    .await;
    let distinct: std::collections::BTreeSet<i32> = pids.into_iter().collect();
    assert!(distinct.len() <= 3 && distinct.len() >= 2, "{distinct:?}");
    assert!(db.pool_status().size <= 3);
    let clone = db.clone();
    let before = db.query_count();
    clone.execute_sql("SELECT 1", &[]).await.unwrap();
    assert_eq!(db.query_count(), before + 1, "clones share the counter");
    // pool_size(0) is raised to 1 rather than building a pool that can never serve.
    let one = Db::builder(tdb.schema.url())
        .pool_size(0)
        .connect()
        .await
        .unwrap();
    assert_eq!(one.pool_status().max_size, 1);
    assert!(one.execute_sql("SELECT 1", &[]).await.is_ok());
}

#[tokio::test]
async fn a_killed_connection_is_an_error_then_replaced() {
    let tdb = common::test_db("conn_killed").await;
    let db = pool_on(&tdb, 1, Duration::from_secs(5)).await;
    let pid: i32 = db.query_sql("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0);
    let killed: bool = tdb
        .query_sql("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()[0]
        .get(0);
    assert!(killed);
    // Give the server a moment to close the socket.
    let closed = eventually(Duration::from_secs(5), || async {
        tdb.query_sql("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    assert!(closed);
    // The next statement either fails with a connection error or is served by a
    // fresh connection; a later one must succeed on a new backend.
    if let Err(err) = db.execute_sql("SELECT 1", &[]).await {
        assert!(matches!(err, Error::Connection(_)), "{err:?}");
    }
    let new_pid: i32 = db.query_sql("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0);
    assert_ne!(new_pid, pid);
}

#[tokio::test]
async fn errors_never_show_the_password() {
    for url in [
        "postgres://root:s3cr3t-pw@127.0.0.1:1/test",
        "postgres://root:s3cr3t-pw@localhost:notaport/test",
        "postgres://root:s3cr3t-pw@localhost:5432/test?sslmode=sometimes",
    ] {
        let err = Db::builder(url)
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap_err();
        assert!(
            !format!("{err} {err:?}").contains("s3cr3t"),
            "{url}: {err:?}"
        );
    }
}
