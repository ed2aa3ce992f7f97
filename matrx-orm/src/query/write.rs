//! Inserts, upserts, and writes of single instances.

use std::marker::PhantomData;

use postgres_types::ToSql;

use crate::base::error::{Error, Result};
use crate::base::key::Key;
use crate::base::sql::{SqlBuf, ROOT};
use crate::base::value::{as_sql_refs, Param};
use crate::executor::{Atomic, Executor};
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
}

impl<'r, M: Model> InsertRows<'r, M> {
    pub(crate) fn new(rows: &'r [M]) -> Self {
        InsertRows {
            rows,
            include_auto: false,
            conflict: Conflict::Error,
        }
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
        let Conflict::DoUpdate(_, update) = &self.conflict else {
            return false;
        };
        let is_key = |name: &str| M::META.primary_key_columns().any(|c| c.name == name);
        update.is_empty() || update.iter().any(|name| is_key(name))
    }

    fn columns(&self) -> Vec<usize> {
        (0..M::META.columns.len())
            .filter(|&i| self.include_auto || !M::META.columns[i].auto)
            .collect()
    }

    /// Runs the insert; returns the stored rows (defaults filled) in input order.
    /// Many rows go in one statement; past PostgreSQL's parameter limit, in several
    /// statements inside one transaction (or savepoint), so the insert stays atomic.
    pub async fn exec<E: Executor>(&self, ex: &E) -> Result<Vec<M>> {
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let rewrites_keys = self.updates_primary_key();
        evicting(ex.scope(), rewrites_keys, self.exec_all(ex)).await
    }

    async fn exec_all<E: Executor>(&self, ex: &E) -> Result<Vec<M>> {
        let columns = self.columns();
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
        let text = self.render(rows.len(), columns)?;
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(rows.len() * columns.len());
        for row in rows {
            params.extend(columns.iter().map(|&i| row.value(i)));
        }
        let result = ex.query(&text, &params).await?;
        result.iter().map(|r| M::decode(r, 0)).collect()
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
    match &result {
        Ok(_) => ex
            .scope()
            .evict::<M>(Some(std::slice::from_ref(&row.key()))),
        Err(_) => ex.scope().evict::<M>(None),
    }
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
    let result = ex.execute(&sql.text, &as_sql_refs(&sql.params)).await;
    guard.disarm();
    ex.scope().evict::<M>(Some(std::slice::from_ref(key)));
    match result? {
        0 => Err(Error::NotFound {
            model: M::META.name,
        }),
        _ => Ok(()),
    }
}
