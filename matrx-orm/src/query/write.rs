//! Inserts, upserts, and writes of single instances.

use std::borrow::Cow;
use std::marker::PhantomData;

use postgres_types::ToSql;

use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::base::sql::{SqlBuf, ROOT};
use crate::base::value::{as_sql_refs, ArrayParam, Param};
use crate::executor::{Atomic, Executor};
use crate::query::announce::{execute_announced, wrap, wrap_model, Names, Output};
use crate::query::evict::{evicting, EvictOnDrop};
use crate::query::rows::{fetch_models, single};
use crate::schema::column::{Column, ColumnRef};
use crate::schema::model::Model;
use crate::statement::run::MAX_PARAMS;

#[derive(Debug, Clone)]
enum Conflict {
    Error,
    DoNothing(Vec<&'static str>),
    DoUpdate(Vec<&'static str>, Vec<&'static str>),
}

/// An insert of existing instances, with optional `ON CONFLICT` handling. Start it
/// with [`ModelExt::insert_rows`](crate::ModelExt::insert_rows); run it with [`exec`](Self::exec).
///
/// Columns marked `auto` (identity columns, columns with defaults) are left to the
/// database unless [`include_auto`](Self::include_auto) is called.
///
/// ```no_run
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "customers")]
/// # pub struct Customer { #[orm(primary_key, auto)] pub id: i64, #[orm(unique)] pub email: String, pub name: String }
/// # async fn demo(db: &matrx_orm::Db, rows: Vec<Customer>) -> matrx_orm::Result<()> {
/// // Insert or refresh the name of customers matched by email, in one statement.
/// let stored = Customer::insert_rows(&rows)
///     .on_conflict_update(&[Customer::EMAIL.into()], &[Customer::NAME.into()])
///     .exec(db)
///     .await?;
/// # Ok(()) }
/// ```
pub struct InsertRows<'r, M> {
    rows: &'r [M],
    include_auto: bool,
    conflict: Conflict,
    path: InsertPath,
}

/// How an insert's rows travel: chosen by row count, or forced (benchmarks, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InsertPath {
    ByRowCount,
    Values,
    Arrays,
}

impl<'r, M: Model> InsertRows<'r, M> {
    pub(crate) fn new(rows: &'r [M]) -> Self {
        InsertRows {
            rows,
            include_auto: false,
            conflict: Conflict::Error,
            path: InsertPath::ByRowCount,
        }
    }

    /// Sends the rows as `VALUES` lists even where one array per column could carry
    /// them (chunked in a transaction past the parameter limit): the insert as it was
    /// before arrays, and the path of models with array columns. For benchmarks and
    /// tests of that path; not a stable API.
    #[doc(hidden)]
    pub fn values_only(mut self) -> Self {
        self.path = InsertPath::Values;
        self
    }

    /// Sends the rows as one array per column even when they are few (a model whose
    /// columns arrays cannot carry still uses `VALUES` lists). For benchmarks and
    /// tests; not a stable API.
    #[doc(hidden)]
    pub fn arrays_only(mut self) -> Self {
        self.path = InsertPath::Arrays;
        self
    }

    /// Writes `auto` columns too (explicit ids, for example).
    pub fn include_auto(mut self) -> Self {
        self.include_auto = true;
        self
    }

    /// `ON CONFLICT (target) DO NOTHING`; an empty target means any conflict.
    /// Rows skipped this way are not returned.
    pub fn on_conflict_do_nothing(mut self, target: &[ColumnRef<M>]) -> Self {
        self.conflict = Conflict::DoNothing(target.iter().map(ColumnRef::name).collect());
        self
    }

    /// `ON CONFLICT (target) DO UPDATE SET col = EXCLUDED.col` for the `update`
    /// columns; an empty `update` means every written column outside the target.
    pub fn on_conflict_update(mut self, target: &[ColumnRef<M>], update: &[ColumnRef<M>]) -> Self {
        self.conflict = Conflict::DoUpdate(
            target.iter().map(ColumnRef::name).collect(),
            update.iter().map(ColumnRef::name).collect(),
        );
        self
    }

    /// Whether an `ON CONFLICT DO UPDATE` may rewrite a primary key (then every cached
    /// row of the model is evicted, not just the returned keys).
    fn updates_primary_key(&self) -> bool {
        let Conflict::DoUpdate(target, update) = &self.conflict else {
            return false;
        };
        let is_key = |name: &str| M::META.primary_key_columns().any(|c| c.name == name);
        if update.is_empty() {
            // Every written column outside the target is updated.
            return self.columns().into_iter().any(|i| {
                let name = M::META.columns[i].name;
                is_key(name) && !target.contains(&name)
            });
        }
        update.iter().any(|name| is_key(name))
    }

    fn columns(&self) -> Vec<usize> {
        (0..M::META.columns.len())
            .filter(|&i| self.include_auto || !M::META.columns[i].auto)
            .collect()
    }

    /// Runs the insert; returns the stored rows (defaults filled) in input order
    /// (rows an `ON CONFLICT DO NOTHING` skipped are left out).
    ///
    /// Any number of rows is **one statement**. From 10 rows it binds one array
    /// parameter per column,
    /// `INSERT INTO t (a, b) SELECT unnest($1::bigint[]), unnest($2::text[]) .. RETURNING ..`,
    /// whose text does not depend on the row count (prepared once per connection);
    /// fewer rows go as a `VALUES` list (measured faster for a handful of rows). Being
    /// one statement, it is atomic on its own; inside a transaction a failed insert
    /// aborts the transaction like any failed statement (run it in a
    /// [`savepoint`](crate::Transaction::savepoint) to go on after a failure).
    ///
    /// A model with a column whose type is itself an array (`Vec<T>` but `Vec<u8>`, an
    /// `sql_type` ending in `[]`), or a `bit` column, cannot travel as arrays (`unnest`
    /// would flatten an array of arrays): its rows go as `VALUES` lists, one statement
    /// up to PostgreSQL's 65,535 parameters and past it several statements inside one
    /// transaction (or a savepoint when already in one), so the insert stays atomic and
    /// a failure undoes it alone. Other column types with a modifier are cast without
    /// it (`varchar(20)` as `varchar`), so the column checks length and precision as it
    /// does for a single value.
    pub async fn exec<E: Executor>(&self, ex: &E) -> Result<Vec<M>> {
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let rewrites_keys = self.updates_primary_key();
        evicting(ex.scope(), rewrites_keys, self.exec_all(ex)).await
    }

    async fn exec_all<E: Executor>(&self, ex: &E) -> Result<Vec<M>> {
        let columns = self.columns();
        let arrays = match self.path {
            InsertPath::ByRowCount => self.rows.len() >= ARRAYS_FROM_ROWS,
            InsertPath::Values => false,
            InsertPath::Arrays => true,
        };
        if arrays {
            if let Some(element_types) = element_types::<M>(&columns) {
                return self.exec_unnest(ex, &columns, &element_types).await;
            }
        }
        let per_statement = (MAX_PARAMS / columns.len().max(1)).max(1);
        if self.rows.len() <= per_statement {
            return self.exec_chunk(ex, self.rows, &columns).await;
        }
        let tx = ex.atomic().await?;
        let mut stored = Vec::with_capacity(self.rows.len());
        for chunk in self.rows.chunks(per_statement) {
            stored.extend(self.exec_chunk(&tx, chunk, &columns).await?);
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn exec_chunk<E: Executor>(
        &self,
        ex: &E,
        rows: &[M],
        columns: &[usize],
    ) -> Result<Vec<M>> {
        let mut text = self.render(rows.len(), columns)?;
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(rows.len() * columns.len());
        for row in rows {
            params.extend(columns.iter().map(|&i| row.value(i)));
        }
        let extra = self.announce(ex, &mut text, params.len());
        params.extend(extra.iter().flatten().map(Param::as_sql));
        let result = ex.query(&text, &params).await?;
        result.iter().map(|r| M::decode(r, 0)).collect()
    }

    /// The whole insert as one statement, one array parameter per column.
    async fn exec_unnest<E: Executor>(
        &self,
        ex: &E,
        columns: &[usize],
        element_types: &[Cow<'static, str>],
    ) -> Result<Vec<M>> {
        let mut text = self.render_unnest(columns, element_types)?;
        let arrays: Vec<ArrayParam<'_, M>> = columns
            .iter()
            .map(|&i| ArrayParam::new(self.rows, i, M::value))
            .collect();
        let mut params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let extra = self.announce(ex, &mut text, params.len());
        params.extend(extra.iter().flatten().map(Param::as_sql));
        let result = ex.query(&text, &params).await?;
        result.iter().map(|r| M::decode(r, 0)).collect()
    }

    /// Wraps an insert statement so it announces its rows (the whole table when an
    /// upsert may rewrite primary keys); the parameters to bind after its own.
    fn announce<E: Executor>(&self, ex: &E, text: &mut String, bound: usize) -> Option<[Param; 2]> {
        let names = if self.updates_primary_key() {
            Names::Table
        } else {
            Names::Keys
        };
        let keys: Vec<&str> = M::META.primary_key_columns().map(|c| c.name).collect();
        let table = M::META.table;
        wrap::<M::Key>(ex.scope(), text, bound, table, &keys, names, Output::Rows)
    }

    /// `INSERT INTO .. (a, b) SELECT unnest($1::T1[]), unnest($2::T2[]) [ON CONFLICT ..]
    /// RETURNING ..`: the same text for any number of rows, so it is prepared once per
    /// connection.
    ///
    /// Set-returning functions in a select list run in lockstep, element `i` of every
    /// array making row `i`, and stream (a `ProjectSet` over one row: no sort, nothing
    /// materialised; `FROM unnest(..) WITH ORDINALITY .. ORDER BY` was measured slower,
    /// its function scan stores every row first and spills past `work_mem`). The rows
    /// reach the insert in array order, and `RETURNING` gives each row as it is
    /// inserted: the input order, as with `VALUES` lists.
    fn render_unnest(
        &self,
        columns: &[usize],
        element_types: &[Cow<'static, str>],
    ) -> Result<String> {
        let meta = M::META;
        let mut sql = SqlBuf::new();
        sql.push("INSERT INTO ").table_as(meta, ROOT).push(" (");
        push_names(&mut sql, columns.iter().map(|&i| meta.columns[i].name));
        sql.push(") SELECT ");
        for (n, element_type) in (1..).zip(element_types) {
            if n > 1 {
                sql.push(", ");
            }
            sql.push("unnest($")
                .push(&n.to_string())
                .push("::")
                .push(element_type)
                .push("[])");
        }
        self.render_conflict(&mut sql, columns)?;
        sql.push(" RETURNING ").columns(ROOT, meta);
        Ok(sql.text)
    }

    fn render(&self, rows: usize, columns: &[usize]) -> Result<String> {
        let meta = M::META;
        let mut sql = SqlBuf::new();
        sql.push("INSERT INTO ").table_as(meta, ROOT);
        if columns.is_empty() {
            if rows > 1 {
                return Err(Error::InvalidInput(format!(
                    "{}: every column is auto; insert the rows one by one or include_auto()",
                    meta.name
                )));
            }
            sql.push(" DEFAULT VALUES");
        } else {
            sql.push(" (");
            push_names(&mut sql, columns.iter().map(|&i| meta.columns[i].name));
            sql.push(") VALUES ");
            let mut n = 0;
            for r in 0..rows {
                sql.push(if r > 0 { ", (" } else { "(" });
                for c in 0..columns.len() {
                    n += 1;
                    sql.push(if c > 0 { ", $" } else { "$" })
                        .push(&n.to_string());
                }
                sql.push(")");
            }
        }
        self.render_conflict(&mut sql, columns)?;
        sql.push(" RETURNING ").columns(ROOT, meta);
        Ok(sql.text)
    }

    fn render_conflict(&self, sql: &mut SqlBuf, columns: &[usize]) -> Result<()> {
        match &self.conflict {
            Conflict::Error => {}
            Conflict::DoNothing(target) => {
                sql.push(" ON CONFLICT ");
                if !target.is_empty() {
                    sql.push("(");
                    push_names(sql, target.iter().copied());
                    sql.push(") ");
                }
                sql.push("DO NOTHING");
            }
            Conflict::DoUpdate(target, update) => {
                if target.is_empty() {
                    return Err(Error::InvalidInput(format!(
                        "{}: an upsert needs the conflict target columns",
                        M::META.name
                    )));
                }
                let update: Vec<&str> = if update.is_empty() {
                    columns
                        .iter()
                        .map(|&i| M::META.columns[i].name)
                        .filter(|name| !target.contains(name))
                        .collect()
                } else {
                    update.clone()
                };
                sql.push(" ON CONFLICT (");
                push_names(sql, target.iter().copied());
                sql.push(") DO ");
                if update.is_empty() {
                    // Nothing to change, but the row must still come back: touch the
                    // first target column with its own value.
                    sql.push("UPDATE SET ")
                        .ident(target[0])
                        .push(" = EXCLUDED.")
                        .ident(target[0]);
                    return Ok(());
                }
                sql.push("UPDATE SET ");
                for (i, name) in update.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.ident(name).push(" = EXCLUDED.").ident(name);
                }
            }
        }
        Ok(())
    }
}

/// From this many rows an insert sends one array per column; fewer go as `VALUES`
/// lists, measured 5-12% faster for 1 to 5 rows and even at 10, where arrays win from
/// 20 rows on (docs/BENCHMARKS.md, "Inserting many rows"). The `VALUES` texts of
/// fewer rows are at most nine per model and options.
const ARRAYS_FROM_ROWS: usize = 10;

/// The element type of each written column's array (`$n::T[]`), or `None` when a
/// column cannot travel as an element of a one-dimensional array and the insert must
/// go as `VALUES` lists (see [`element_type`]). `None` for no columns too (`DEFAULT
/// VALUES`).
fn element_types<M: Model>(columns: &[usize]) -> Option<Vec<Cow<'static, str>>> {
    if columns.is_empty() {
        return None;
    }
    columns
        .iter()
        .map(|&i| element_type((M::META.columns[i].sql_type)()))
        .collect()
}

/// The type to cast a column's array parameter to, from the column's DDL type:
///
/// - `None` (the `VALUES` path) for a type that is itself an array (`integer[]`,
///   `text ARRAY`, `_int4`): `unnest` would flatten a two-dimensional array, and
///   arrays of unequal lengths cannot form one. `bit` with a length falls back too
///   (bare `bit` is `bit(1)` in a cast, which would cut the value).
/// - Type modifiers are dropped (`varchar(20)` -> `varchar`, `numeric(10,2)` ->
///   `numeric`): an explicit cast to `varchar(20)` would silently truncate, while the
///   assignment to the column checks the length (and rounds, and refuses) exactly as
///   it does for a `VALUES` parameter. `char(n)` becomes `bpchar` (bare `char` is
///   `char(1)`), and the `serial` pseudo-types their integer types.
/// - A type written with quotes is taken as written, unless it has a modifier.
fn element_type(sql_type: Cow<'static, str>) -> Option<Cow<'static, str>> {
    let written = sql_type.trim();
    if written.is_empty()
        || written.ends_with(']')
        || written.to_ascii_lowercase().ends_with(" array")
        || written.starts_with('_')
    {
        return None;
    }
    if written.contains('"') {
        return (!written.contains('(')).then(|| Cow::Owned(written.to_owned()));
    }
    // Drop every "(..)"; unquoted names are case-insensitive.
    let mut bare = String::with_capacity(written.len());
    let mut depth = 0usize;
    for ch in written.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1)?,
            _ if depth == 0 => bare.push(ch.to_ascii_lowercase()),
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    let bare = bare.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(Cow::Borrowed(match bare.as_str() {
        // Bare `bit` is `bit(1)`: a cast would cut longer values the column refuses.
        "" | "bit" => return None,
        "smallserial" | "serial2" => "smallint",
        "serial" | "serial4" => "integer",
        "bigserial" | "serial8" => "bigint",
        "char" | "character" | "nchar" | "national character" => "bpchar",
        _ => return Some(Cow::Owned(bare)),
    }))
}

fn push_names<'a>(sql: &mut SqlBuf, names: impl Iterator<Item = &'a str>) {
    for (i, name) in names.enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.ident(name);
    }
}

/// An insert of one row from the columns you set; the database fills the rest.
/// Start it with [`ModelExt::create`](crate::ModelExt::create).
///
/// ```no_run
/// # use matrx_orm::prelude::*;
/// # #[derive(Model, Debug)] #[orm(table = "customers")]
/// # pub struct Customer { #[orm(primary_key, auto)] pub id: i64, pub email: String, pub name: String }
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
/// let ann = Customer::create()
///     .set(Customer::NAME, "Ann")
///     .set(Customer::EMAIL, "ann@example.com")
///     .exec(db)
///     .await?;
/// assert!(ann.id > 0);
/// # Ok(()) }
/// ```
pub struct Create<M> {
    sets: Vec<(&'static str, Param)>,
    _marker: PhantomData<fn() -> M>,
}

impl<M: Model> Create<M> {
    pub(crate) fn new() -> Self {
        Create {
            sets: Vec::new(),
            _marker: PhantomData,
        }
    }

    /// Sets `column` to `value`.
    pub fn set<T, V>(mut self, column: Column<M, T>, value: V) -> Self
    where
        V: Into<T>,
        T: ToSql + Send + Sync + 'static,
    {
        self.sets.retain(|(name, _)| *name != column.name());
        self.sets.push((column.name(), Param::new(value.into())));
        self
    }

    /// Sets a nullable `column` to NULL.
    pub fn set_null<T: ToSql + Send + Sync + 'static>(mut self, column: Column<M, T>) -> Self {
        self.sets.retain(|(name, _)| *name != column.name());
        self.sets.push((column.name(), Param::new(None::<T>)));
        self
    }

    /// Inserts the row and returns it as stored.
    pub async fn exec<E: Executor>(&self, ex: &E) -> Result<M> {
        let mut sql = SqlBuf::new();
        sql.push("INSERT INTO ").table_as(M::META, ROOT);
        if self.sets.is_empty() {
            sql.push(" DEFAULT VALUES");
        } else {
            sql.push(" (");
            push_names(&mut sql, self.sets.iter().map(|(name, _)| *name));
            sql.push(") VALUES (");
            for (i, (_, value)) in self.sets.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.param(value.clone());
            }
            sql.push(")");
        }
        sql.push(" RETURNING ").columns(ROOT, M::META);
        wrap_model::<M>(ex.scope(), &mut sql, Names::Keys, Output::Rows);
        single(evicting(ex.scope(), false, fetch_models(ex, &sql)).await?)
    }
}

/// Writes `WHERE ("t"."a", "t"."b") = ($1, $2)` for a primary key.
pub(crate) fn render_key_filter<M: Model>(key: &M::Key, sql: &mut SqlBuf) {
    let meta = M::META;
    let params = key.params();
    let composite = params.len() > 1;
    sql.push(if composite { " WHERE (" } else { " WHERE " });
    for (i, &col) in meta.primary_key.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.column(ROOT, meta.columns[col].name);
    }
    sql.push(if composite { ") = (" } else { " = " });
    for (i, p) in params.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.param(p);
    }
    if composite {
        sql.push(")");
    }
}

/// `UPDATE ... SET <non-key columns> WHERE pk = key RETURNING ...`.
pub(crate) async fn update_instance<M: Model, E: Executor>(ex: &E, row: &M) -> Result<M> {
    let guard = EvictOnDrop::<M>::new(ex.scope());
    let result = update_row(ex, row).await;
    guard.disarm();
    let remote = match &result {
        Ok(_) => ex
            .scope()
            .evict::<M>(Some(std::slice::from_ref(&row.key()))),
        Err(_) => ex.scope().evict::<M>(None),
    };
    remote.wait().await;
    result
}

async fn update_row<M: Model, E: Executor>(ex: &E, row: &M) -> Result<M> {
    let meta = M::META;
    // The key takes $1..$k; the new values follow.
    let mut key_sql = SqlBuf::new();
    render_key_filter::<M>(&row.key(), &mut key_sql);
    let mut params: Vec<&(dyn ToSql + Sync)> = as_sql_refs(&key_sql.params);
    let mut sql = SqlBuf::new();
    sql.push("UPDATE ").table_as(meta, ROOT).push(" SET ");
    let mut first = true;
    for (i, col) in meta
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.primary_key)
    {
        if !first {
            sql.push(", ");
        }
        first = false;
        params.push(row.value(i));
        sql.ident(col.name)
            .push(" = $")
            .push(&params.len().to_string());
    }
    if first {
        return Err(Error::InvalidInput(format!(
            "{} has only primary-key columns: nothing to update",
            meta.name
        )));
    }
    sql.push(&key_sql.text)
        .push(" RETURNING ")
        .columns(ROOT, meta);
    let keys: Vec<&str> = meta.primary_key_columns().map(|c| c.name).collect();
    let (names, output) = (Names::Keys, Output::Rows);
    let bound = params.len();
    let extra = wrap::<M::Key>(
        ex.scope(),
        &mut sql.text,
        bound,
        meta.table,
        &keys,
        names,
        output,
    );
    params.extend(extra.iter().flatten().map(Param::as_sql));
    let rows = ex.query(&sql.text, &params).await?;
    let updated: Result<Vec<M>> = rows.iter().map(|r| M::decode(r, 0)).collect();
    single(updated?)
}

/// `DELETE ... WHERE pk = key`; `NotFound` when no row had that key.
pub(crate) async fn delete_by_key<M: Model, E: Executor>(ex: &E, key: &M::Key) -> Result<()> {
    let mut sql = SqlBuf::new();
    sql.push("DELETE FROM ").table_as(M::META, ROOT);
    render_key_filter::<M>(key, &mut sql);
    let guard = EvictOnDrop::<M>::new(ex.scope());
    let result = execute_announced::<M, E>(ex, sql).await;
    guard.disarm();
    ex.scope()
        .evict::<M>(Some(std::slice::from_ref(key)))
        .wait()
        .await;
    match result? {
        0 => Err(Error::NotFound {
            model: M::META.name,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(sql_type: &'static str) -> Option<String> {
        element_type(Cow::Borrowed(sql_type)).map(Cow::into_owned)
    }

    #[test]
    fn element_types_from_column_types() {
        assert_eq!(cast("bigint").as_deref(), Some("bigint"));
        assert_eq!(
            cast("double precision").as_deref(),
            Some("double precision")
        );
        assert_eq!(cast("timestamptz").as_deref(), Some("timestamptz"));
        assert_eq!(cast("VARCHAR(20)").as_deref(), Some("varchar"));
        assert_eq!(cast("numeric(10, 2)").as_deref(), Some("numeric"));
        assert_eq!(
            cast("timestamp(3) with time zone").as_deref(),
            Some("timestamp with time zone")
        );
        assert_eq!(cast("char(3)").as_deref(), Some("bpchar"));
        assert_eq!(cast("character").as_deref(), Some("bpchar"));
        assert_eq!(cast("bigserial").as_deref(), Some("bigint"));
        assert_eq!(cast("bit varying(4)").as_deref(), Some("bit varying"));
        assert_eq!(cast(r#""My Type""#).as_deref(), Some(r#""My Type""#));
        for array_or_unsafe in [
            "integer[]",
            "text[][]",
            "integer ARRAY",
            "int4 array[3]",
            "_int4",
            "bit",
            "bit(8)",
            r#""t"(1)"#,
            "numeric(10",
            "",
        ] {
            assert_eq!(cast(array_or_unsafe), None, "{array_or_unsafe}");
        }
    }
}
