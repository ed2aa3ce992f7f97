//! Small connection helpers shared by the rest of the crate.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::TestkitError;

/// How long [`connect`] waits for a server before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `url` without TLS and drives the connection on a spawned task.
///
/// Must be called from within a Tokio runtime. Gives up after 10 seconds.
///
/// ```no_run
/// # async fn demo() -> Result<(), matrx_orm_testkit::TestkitError> {
/// let server = matrx_orm_testkit::server().await?;
/// let client = matrx_orm_testkit::connect(server.url()).await?;
/// client.simple_query("SELECT 1").await.ok();
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Client, TestkitError> {
    connect_within(url, CONNECT_TIMEOUT).await
}

/// Like [`connect`], with an explicit time limit.
pub(crate) async fn connect_within(url: &str, limit: Duration) -> Result<Client, TestkitError> {
    let connect_error = |reason: String| TestkitError::Connect {
        url: redact_password(url),
        reason,
    };
    let attempt = tokio_postgres::connect(url, NoTls);
    let (client, connection) = match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => return Err(connect_error(error_chain(&err))),
        Err(_) => return Err(connect_error(format!("no answer within {limit:?}"))),
    };
    tokio::spawn(async move {
        // The client reports any error to its caller; nothing to add here.
        let _ = connection.await;
    });
    Ok(client)
}

/// Runs `sql` and returns the first column of the first row, as text.
pub(crate) async fn query_text(client: &Client, sql: &str) -> Result<String, TestkitError> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|err| TestkitError::query(sql, error_chain(&err)))?;
    messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or_default()),
            _ => None,
        })
        .map(str::to_owned)
        .ok_or_else(|| TestkitError::query(sql, "returned no row"))
}

/// Runs `sql`, ignoring any rows.
pub(crate) async fn execute(client: &Client, sql: &str) -> Result<(), TestkitError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|err| TestkitError::query(sql, error_chain(&err)))
}

/// The error and all its sources, e.g. `db error: ERROR: schema "x" already exists`
/// rather than tokio-postgres's bare `db error`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Masks the password of a `postgres://user:password@host/db` URL for messages.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[tokio::test]
    async fn errors_carry_their_cause() {
        let err = super::connect_within(
            "postgres://nobody@127.0.0.1:1/x",
            std::time::Duration::from_secs(2),
        )
        .await
        .err()
        .map(|err| err.to_string())
        .unwrap_or_default();
        assert!(err.contains("error connecting to server: "), "{err}");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_password("postgres://bob:s3cret@db:5432/app"),
            "postgres://bob:***@db:5432/app"
        );
        assert_eq!(
            redact_password("postgres://root@localhost:5432/test"),
            "postgres://root@localhost:5432/test"
        );
        assert_eq!(redact_password("host=/tmp user=x"), "host=/tmp user=x");
    }
}
