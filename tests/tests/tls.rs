//! TLS from the URL's `sslmode` and `sslrootcert`, against throwaway clusters the
//! testkit starts with a CA and a server certificate for `localhost` made in a
//! temporary directory: `verify-full` with the CA connects (and the connection is
//! encrypted, as `pg_stat_ssl` says), with another CA or another host name it fails
//! with `Error::Tls`; `verify-ca` accepts another host name; `require` needs no CA;
//! `disable` is refused by a `hostssl`-only server; `prefer` falls back to plaintext
//! on a server without TLS.

mod common;

use std::path::Path;

use matrx_orm::{Db, Error};
use matrx_orm_testkit::{TestkitError, TlsCluster};

/// Starts a cluster on a blocking thread (initdb, openssl and pg_ctl take a while);
/// `None`, after saying why, when it cannot run here.
async fn cluster(start: fn() -> Result<TlsCluster, TestkitError>) -> Option<TlsCluster> {
    match tokio::task::spawn_blocking(start)
        .await
        .expect("start thread")
    {
        Ok(cluster) => Some(cluster),
        Err(err @ TestkitError::ServiceUnavailable { .. }) => {
            eprintln!("SKIPPED: no TLS cluster can be started here: {err}");
            None
        }
        Err(err) => panic!("starting a TLS cluster: {err}"),
    }
}

fn tls_only() -> Result<TlsCluster, TestkitError> {
    TlsCluster::builder().hostssl_only(true).start()
}

fn with(url: &str, options: &str) -> String {
    format!("{url}?{options}")
}

fn root_cert(path: &Path) -> String {
    format!("sslrootcert={}", path.display())
}

/// Whether the connection the statement ran on is encrypted.
async fn encrypted(db: &Db) -> bool {
    let rows = db
        .query_sql(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("read pg_stat_ssl");
    rows[0].get(0)
}

/// One cluster shared by the tests of this file that need TLS (starting one takes
/// seconds); each test uses its own pools.
static TLS: tokio::sync::OnceCell<Option<TlsCluster>> = tokio::sync::OnceCell::const_new();

async fn shared_tls() -> Option<&'static TlsCluster> {
    TLS.get_or_init(|| cluster(tls_only)).await.as_ref()
}

#[tokio::test]
async fn verify_full_with_the_ca_connects_encrypted() {
    let Some(server) = shared_tls().await else {
        return;
    };
    let url = with(
        &server.url(),
        &format!("sslmode=verify-full&{}", root_cert(&server.ca_file())),
    );
    let db = Db::connect(&url)
        .await
        .expect("verify-full with the right CA");
    assert!(encrypted(&db).await);
}

#[tokio::test]
async fn verify_full_with_another_ca_fails_with_a_tls_error() {
    let Some(server) = shared_tls().await else {
        return;
    };
    let url = with(
        &server.url(),
        &format!("sslmode=verify-full&{}", root_cert(&server.other_ca_file())),
    );
    match Db::connect(&url).await {
        Err(Error::Tls(message)) => {
            assert!(message.contains("certificate"), "{message}")
        }
        other => panic!("expected Error::Tls, got {other:?}"),
    }
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let Some(server) = shared_tls().await else {
        return;
    };
    let ca = root_cert(&server.ca_file());
    // The certificate names `localhost`, not `127.0.0.1`.
    let by_address = server.url_by_address();
    match Db::connect(&with(&by_address, &format!("sslmode=verify-full&{ca}"))).await {
        Err(Error::Tls(message)) => assert!(message.contains("not valid for"), "{message}"),
        other => panic!("expected Error::Tls for the wrong name, got {other:?}"),
    }
    let db = Db::connect(&with(&by_address, &format!("sslmode=verify-ca&{ca}")))
        .await
        .expect("verify-ca ignores the name");
    assert!(encrypted(&db).await);
    // verify-ca still verifies the chain.
    let other = root_cert(&server.other_ca_file());
    assert!(matches!(
        Db::connect(&with(&by_address, &format!("sslmode=verify-ca&{other}"))).await,
        Err(Error::Tls(_))
    ));
}

#[tokio::test]
async fn require_encrypts_without_a_ca_and_prefer_uses_tls_when_offered() {
    let Some(server) = shared_tls().await else {
        return;
    };
    for mode in ["require", "prefer"] {
        let db = Db::builder(with(&server.url(), &format!("sslmode={mode}")))
            .pool_size(2)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert!(encrypted(&db).await, "sslmode={mode}");
    }
    // The default is prefer.
    let db = Db::connect(&server.url()).await.expect("default sslmode");
    assert!(encrypted(&db).await);
}

#[tokio::test]
async fn disable_is_refused_by_a_hostssl_only_server() {
    let Some(server) = shared_tls().await else {
        return;
    };
    match Db::connect(&with(&server.url(), "sslmode=disable")).await {
        Err(err) => {
            // pg_hba.conf has no line for a plaintext connection: 28000.
            assert_eq!(err.sqlstate(), Some("28000"), "{err}");
        }
        Ok(_) => panic!("a plaintext connection to a hostssl-only server"),
    }
}

#[tokio::test]
async fn prefer_falls_back_to_plaintext_and_require_fails_without_tls() {
    let Some(server) = cluster(TlsCluster::plain).await else {
        return;
    };
    let db = Db::connect(&with(&server.url(), "sslmode=prefer"))
        .await
        .expect("prefer against a server without TLS");
    assert!(!encrypted(&db).await);
    match Db::connect(&with(&server.url(), "sslmode=require")).await {
        Err(Error::Tls(message)) => assert!(message.contains("does not support TLS"), "{message}"),
        other => panic!("expected Error::Tls, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_tls_options_are_typed_errors() {
    assert!(matches!(
        Db::connect("postgres://nobody@127.0.0.1:1/none?sslmode=sometimes").await,
        Err(Error::InvalidInput(_))
    ));
    match Db::connect(
        "postgres://nobody@127.0.0.1:1/none?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    )
    .await
    {
        Err(Error::Tls(message)) => assert!(message.contains("/nonexistent/ca.pem"), "{message}"),
        other => panic!("expected Error::Tls, got {other:?}"),
    }
}
