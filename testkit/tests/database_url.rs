//! `DATABASE_URL` wins over everything else, even when nothing answers there.

mod common;

use common::{block_on, is_child, run_child, TestResult};
use matrx_orm_testkit::{server, TestkitError};

#[test]
fn unreachable_database_url_is_an_error_naming_it() -> TestResult {
    const NAME: &str = "unreachable_database_url_is_an_error_naming_it";
    if is_child(NAME) {
        return block_on(expect_database_url_error());
    }
    run_child(NAME, |child| {
        child
            .env(
                "DATABASE_URL",
                "postgres://nobody:secret@127.0.0.1:1/nowhere",
            )
            .env_remove("MATRX_TEST_THROWAWAY")
    })?;
    Ok(())
}

async fn expect_database_url_error() -> TestResult {
    let err = match server().await {
        Ok(server) => return Err(format!("expected an error, got {server:?}").into()),
        Err(err) => err,
    };
    assert!(
        matches!(err, TestkitError::DatabaseUrlUnreachable { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.starts_with("DATABASE_URL is set to "), "{message}");
    assert!(message.contains("did not answer"), "{message}");
    assert!(!message.contains("secret"), "password leaked: {message}");
    // The failure is cached: the second call gives the same error at once.
    assert_eq!(server().await.err(), Some(err));
    Ok(())
}
