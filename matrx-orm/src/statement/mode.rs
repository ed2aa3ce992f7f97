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
//! value is checked and encoded exactly as in the prepared mode. Outside a
//! transaction the describe runs inside `BEGIN` .. `COMMIT`, so the statement it
//! prepares and closes stays on one server connection; inside one it is on the
//! transaction's connection already. Statement texts do not depend on the number of
//! keys, so the cache holds one entry per statement shape.
//!
//! User-defined types (enums, composites, domains over them) are refused in this mode
//! with [`Error::Unsupported`]: the driver looks their definitions up through named
//! statements of its own, which a transaction pooler would scatter.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use deadpool_postgres::ClientWrapper;
use postgres_types::{ToSql, Type};

use crate::base::error::{Error, Result};

/// How statements are sent. Choose with `DbBuilder::statement_mode` or the URL option
/// `statement_mode=unnamed`.
///
/// ```
/// use matrx_orm::StatementMode;
/// assert_eq!("unnamed".parse::<StatementMode>(), Ok(StatementMode::Unnamed));
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

    /// The parameter types of `sql`, from the cache or a describe on `client`.
    /// `in_transaction`: whether `client` is inside a transaction (pinned to one
    /// server connection by the pooler).
    pub(crate) async fn param_types(
        &self,
        client: &ClientWrapper,
        sql: &str,
        in_transaction: bool,
    ) -> Result<Arc<[Type]>> {
        if let Some(types) = self.cached(sql) {
            return Ok(types);
        }
        let types = describe(client, sql, in_transaction).await?;
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

/// Describes `sql`: prepares it (a named statement, closed right after) and reads its
/// parameter and column types. Outside a transaction the prepare and its close are
/// wrapped in `BEGIN` .. `COMMIT`, sent without waiting in between, so a transaction
/// pooler keeps both on one server connection.
async fn describe(client: &ClientWrapper, sql: &str, in_transaction: bool) -> Result<Arc<[Type]>> {
    let span = tracing::debug_span!("matrx_orm.describe", sql);
    let described = async {
        if in_transaction {
            let stmt = client.prepare(sql).await?;
            return builtin_types(client, &stmt).await;
        }
        // Both requests leave in this order on the first poll (pipelined).
        let (begun, prepared) =
            futures_util::join!(client.batch_execute("BEGIN"), client.prepare(sql));
        begun?;
        let outcome = match prepared {
            Ok(stmt) => builtin_types(client, &stmt).await,
            Err(err) => Err(err.into()),
        };
        // The statement's Close was queued when it was dropped: it reaches the server
        // before the end of the transaction.
        let end = if outcome.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        client.batch_execute(end).await?;
        outcome
    };
    tracing::Instrument::instrument(described, span).await
}

/// The statement's parameter types, or [`Error::Unsupported`] if a parameter or a
/// column has a type the driver had to look up (user-defined). Those lookups prepared
/// named statements that stay on the server connection: they are deallocated, and a
/// pooled connection that saw this error is closed (`run::discard_if_broken`), as its
/// driver still holds the lookup statement.
async fn builtin_types(
    client: &ClientWrapper,
    stmt: &tokio_postgres::Statement,
) -> Result<Arc<[Type]>> {
    let custom = stmt
        .params()
        .iter()
        .chain(stmt.columns().iter().map(|c| c.type_()))
        .find(|ty| Type::from_oid(ty.oid()).is_none());
    let Some(custom) = custom else {
        return Ok(stmt.params().into());
    };
    let name = custom.name().to_owned();
    client.batch_execute("DEALLOCATE ALL").await?;
    Err(Error::Unsupported(format!(
        "the user-defined type {name} with StatementMode::Unnamed (the driver looks it \
         up through named statements, which a transaction pooler cannot keep)"
    )))
}
