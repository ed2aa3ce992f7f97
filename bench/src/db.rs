//! Where the PostgreSQL server is and how to connect to it.

use tokio_postgres::{Client, NoTls};

use crate::error::Result;

/// The server used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://root@localhost:5432/test";

/// The connection string of the server to benchmark against.
///
/// `DATABASE_URL` if set, else [`DEFAULT_DATABASE_URL`].  This is the single
/// place to change when the bench switches to `matrx_orm_testkit::server()`.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
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
