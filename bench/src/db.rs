//! Where the PostgreSQL server is and how to connect to it.

use tokio_postgres::{Client, NoTls};

use crate::error::{BenchError, Result};

/// The connection string of the server to benchmark against, resolved like the
/// tests and the tour do: `DATABASE_URL`, else the local default
/// `postgres://root@localhost:5432/test`, else a throwaway cluster started from the
/// machine's PostgreSQL binaries (with `pg_stat_statements` preloaded when the
/// extension is installed) and stopped when the process ends. The runner passes
/// the resolved URL to its measuring children as `DATABASE_URL`.
pub async fn database_url() -> Result<String> {
    let server = matrx_orm_testkit::server()
        .await
        .map_err(|e| BenchError::other(e.to_string()))?;
    Ok(server.url().to_owned())
}

/// Opens one plain `tokio-postgres` connection (no TLS) and drives it on a
/// background tokio task.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("matrx-orm-bench: connection error: {e}");
        }
    });
    Ok(client)
}

/// Whether `name` is a plain lowercase SQL identifier (`[a-z_][a-z0-9_]*`, at
/// most 63 bytes), safe to splice into SQL text without quoting.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_lowercase())
        && chars.all(|c| c == '_' || c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_plain_identifier("matrx_bench"));
        assert!(is_plain_identifier("_x1"));
        assert!(!is_plain_identifier(""));
        assert!(!is_plain_identifier("1abc"));
        assert!(!is_plain_identifier("Shop"));
        assert!(!is_plain_identifier("a;drop"));
        assert!(!is_plain_identifier("a.b"));
    }
}
