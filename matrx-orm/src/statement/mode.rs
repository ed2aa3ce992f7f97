//! How statements reach the server: prepared and cached per connection (the default),
//! or unnamed, for transaction poolers.
//!
//! A named prepared statement lives on one server connection. Behind PgBouncer in
//! transaction mode consecutive transactions of one client connection run on
//! different server connections, so a statement prepared in one is missing in the
//! next ("prepared statement \"s3\" does not exist"), or collides with a name another
//! client left there. [`StatementMode::Unnamed`] sends every statement as one
//! Parse/Bind/Describe/Execute/Sync exchange of the unnamed statement
//! (`query_typed`): nothing outlives the exchange, which a transaction pooler keeps
//! on one server connection.
//!
//! Binding a value needs its parameter type. The types come from a describe of the SQL
//! text, cached per `Db` by text ([`Statements`]): the types the server infers, so a
//! value is checked and encoded exactly as in the prepared mode. The describe is one
//! simple-query message (`PREPARE` under a name unique to the process, a read of
//! `pg_prepared_statements`, `DEALLOCATE`), which a pooler keeps on one server
//! connection and which leaves nothing behind, even if its caller is cancelled.
//! Statement texts do not depend on the number of keys, so the cache holds one entry
//! per statement shape: one extra round trip per shape and `Db`.
//!
//! Refused in this mode with [`Error::Unsupported`]: user-defined types (enums,
//! composites; the driver would look their definitions up through named statements
//! of its own, which a transaction pooler scatters), and texts of several statements
//! (the describe splices the text into `PREPARE`, so it must be one statement).
//! Result column types are checked from PostgreSQL 16 on
//! (`pg_prepared_statements.result_types`); on older servers a user-defined result
//! column fails with the driver's error instead.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::ClientWrapper;
use postgres_types::{ToSql, Type};
use tokio_postgres::SimpleQueryMessage;

use crate::base::error::{Error, Result};

/// How statements are sent. Choose with `DbBuilder::statement_mode` or the URL option
/// `statement_mode=unnamed`.
///
/// ```
/// use matrx_orm::StatementMode;
/// assert_eq!("unnamed".parse::<StatementMode>().ok(), Some(StatementMode::Unnamed));
/// assert_eq!(StatementMode::default(), StatementMode::Prepared);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum StatementMode {
    /// Each statement is prepared once per connection and its plan reused (the
    /// default): the fastest with a direct connection or a session pooler.
    #[default]
    Prepared,
    /// Each statement is sent as the unnamed statement in one round trip, with no
    /// state left on the connection: for transaction poolers (PgBouncer
    /// `pool_mode = transaction`). Session state (`search_path`,
    /// `statement_timeout` set by the pool) is refused with [`Error::Unsupported`]:
    /// set it on the role or the database (`ALTER ROLE .. SET search_path = ..`) or
    /// in the pooler (PgBouncer's `connect_query`).
    Unnamed,
}

impl FromStr for StatementMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "prepared" => Ok(StatementMode::Prepared),
            "unnamed" => Ok(StatementMode::Unnamed),
            other => Err(Error::InvalidInput(format!(
                "statement_mode={other:?}: expected \"prepared\" or \"unnamed\""
            ))),
        }
    }
}

/// The most statement shapes whose parameter types are kept; past it the cache starts
/// over (texts built by the ORM are a bounded set, hand-written ones may not be).
const MAX_DESCRIBED: usize = 4096;

/// A `Db`'s statement mode and, in the unnamed mode, the parameter types of each
/// statement text described so far.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    pub(crate) mode: StatementMode,
    described: Mutex<HashMap<String, Arc<[Type]>>>,
}

impl Statements {
    pub(crate) fn new(mode: StatementMode) -> Statements {
        Statements {
            mode,
            described: Mutex::default(),
        }
    }

    /// The parameter types of `sql` (which `params` values are bound to), from the
    /// cache or a describe on `client`.
    pub(crate) async fn param_types(
        &self,
        client: &ClientWrapper,
        sql: &str,
        params: usize,
    ) -> Result<Arc<[Type]>> {
        if let Some(types) = self.cached(sql) {
            return Ok(types);
        }
        if params > 0 && !describable(sql) {
            return Err(Error::Unsupported(
                "parameters in a statement PREPARE does not take (only SELECT, INSERT, \
                 UPDATE, DELETE, MERGE, VALUES and WITH are described) with \
                 StatementMode::Unnamed"
                    .to_owned(),
            ));
        }
        let types = describe(client, sql).await?;
        if let Ok(mut described) = self.described.lock() {
            if described.len() >= MAX_DESCRIBED {
                described.clear();
            }
            described.insert(sql.to_owned(), types.clone());
        }
        Ok(types)
    }

    fn cached(&self, sql: &str) -> Option<Arc<[Type]>> {
        self.described.lock().ok()?.get(sql).cloned()
    }

    /// Forgets the types of `sql` (after the server refused the statement: a schema
    /// change may have changed them).
    pub(crate) fn forget(&self, sql: &str) {
        if let Ok(mut described) = self.described.lock() {
            described.remove(sql);
        }
    }
}

/// Pairs each parameter with its described type, as `query_typed` takes them.
pub(crate) fn typed<'a>(
    params: &[&'a (dyn ToSql + Sync)],
    types: &[Type],
) -> Result<Vec<(&'a (dyn ToSql + Sync), Type)>> {
    if params.len() != types.len() {
        return Err(Error::InvalidInput(format!(
            "the statement takes {} parameters, {} were given",
            types.len(),
            params.len()
        )));
    }
    Ok(params.iter().copied().zip(types.iter().cloned()).collect())
}

/// A name for one describe's SQL-level prepared statement: unique in the process, so
/// it never meets a name another describe (or another client) left on a server
/// connection.
fn describe_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "matrx_describe_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether `PREPARE` accepts the statement (its first keyword): the statements that
/// return rows or write them. Others (DDL, `SET`, `CALL`) are not described.
fn describable(sql: &str) -> bool {
    let word: String = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    [
        "select", "with", "insert", "update", "delete", "merge", "values", "table",
    ]
    .iter()
    .any(|keyword| word.eq_ignore_ascii_case(keyword))
}

/// Describes `sql` in one simple-query message that a pooler runs on one server
/// connection: `PREPARE` under a fresh name, read its parameter and result types
/// from `pg_prepared_statements`, `DEALLOCATE`. Nothing is left on the connection,
/// even if the caller is cancelled (the message is sent whole), and the driver's own
/// type lookups (named statements) are never needed: a user-defined type is refused.
///
/// The text is spliced into `PREPARE`, so it must be one statement: a text holding `;`
/// outside quotes and comments is refused in this mode (values travel as parameters, never in the text). Texts
/// that `PREPARE` does not take (DDL, `SET`) are sent without a describe and may take
/// no parameters.
async fn describe(client: &ClientWrapper, sql: &str) -> Result<Arc<[Type]>> {
    if !single_statement(sql) {
        return Err(Error::Unsupported(
            "a statement text containing ';' with StatementMode::Unnamed (it is described \
             as SQL text; send one statement, values as parameters, or use batch_execute)"
                .to_owned(),
        ));
    }
    if !describable(sql) {
        return Ok(Arc::from(Vec::new()));
    }
    let name = describe_name();
    let text = format!(
        "PREPARE {name} AS {sql};\n\
         SELECT parameter_types::oid[]::text, \
         (SELECT array_agg(t::regtype::oid)::text \
          FROM jsonb_array_elements_text(to_jsonb(p) -> 'result_types') AS t) \
         FROM pg_prepared_statements AS p WHERE name = '{name}';\n\
         DEALLOCATE {name}"
    );
    // Not a counted statement: its span names the text `statement`, not `sql`.
    let span = tracing::debug_span!("matrx_orm.describe", statement = sql);
    let messages = tracing::Instrument::instrument(client.simple_query(&text), span).await?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| Error::Driver(format!("describing {sql:?} returned no row")))?;
    let params = oids(row.get(0))?;
    let results = oids(row.get(1))?;
    let custom = params
        .iter()
        .chain(&results)
        .find(|oid| Type::from_oid(**oid).is_none());
    if let Some(oid) = custom {
        return Err(Error::Unsupported(format!(
            "the user-defined type with OID {oid} with StatementMode::Unnamed (the driver \
             looks such types up through named statements, which a transaction pooler \
             cannot keep)"
        )));
    }
    Ok(params
        .into_iter()
        .filter_map(Type::from_oid)
        .collect::<Vec<_>>()
        .into())
}

/// Whether `sql` is one statement: no `;` outside quoted identifiers, string literals
/// and comments. Conservative: a text with a `;` and a backslash (escape strings) or a
/// `$` that is not a parameter (dollar quoting) counts as several.
fn single_statement(sql: &str) -> bool {
    if !sql.contains(';') {
        return true;
    }
    let bytes = sql.as_bytes();
    let ambiguous = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'\\' || (b == b'$' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
    });
    if ambiguous {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b';' => return false,
            quote @ (b'\'' | b'"') => {
                // Until the closing quote; a doubled quote is part of the text.
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return false,
                        Some(&b) if b == quote => {
                            if bytes.get(i + 1) == Some(&quote) {
                                i += 2;
                                continue;
                            }
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while depth > 0 {
                    match (bytes.get(i), bytes.get(i + 1)) {
                        (None, _) => return false,
                        (Some(b'/'), Some(b'*')) => {
                            depth += 1;
                            i += 1;
                        }
                        (Some(b'*'), Some(b'/')) => {
                            depth -= 1;
                            i += 1;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// `{20,1016}` → `[20, 1016]`; NULL (a statement without results) → `[]`.
fn oids(text: Option<&str>) -> Result<Vec<u32>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse()
                .map_err(|_| Error::Driver(format!("unexpected type list {text:?}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_lists_and_describable_statements() {
        assert_eq!(oids(Some("{20,1016}")).unwrap(), vec![20, 1016]);
        assert_eq!(oids(Some("{}")).unwrap(), Vec::<u32>::new());
        assert_eq!(oids(None).unwrap(), Vec::<u32>::new());
        assert!(describable("  (SELECT 1)"));
        assert!(describable("with x as (select 1) select * from x"));
        assert!(describable("INSERT INTO t VALUES ($1)"));
        assert!(!describable("CREATE TABLE t (id int)"));
        assert!(!describable("SET search_path = x"));
        assert!(single_statement(
            r#"SELECT "a;b--" FROM "t" WHERE x = ';' -- ;"#
        ));
        assert!(single_statement("SELECT 1 /* ; /* ; */ ; */ + $1"));
        assert!(!single_statement("SELECT 1; SELECT 2"));
        assert!(!single_statement("SELECT 'it''s'; DROP TABLE t"));
        assert!(!single_statement(r"SELECT E'\'' ; DROP TABLE t"));
        assert!(!single_statement("SELECT $x$;$x$"));
    }
}
