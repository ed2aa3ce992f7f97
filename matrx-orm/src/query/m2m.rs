//! Writes to many-to-many links: add, remove, set, clear. Each is one statement
//! (so `set` is atomic: it applies the difference in one data-modifying CTE), with
//! target keys sent as one array per key column.

use std::borrow::Cow;

use crate::base::decode::decode_column;
use crate::base::error::{Error, Result};
use crate::base::key::{dedup_keys, Key};
use crate::base::meta::{RelationKind, Through};
use crate::base::sql::{qualified, SqlBuf};
use crate::base::value::{as_sql_refs, Param};
use crate::cache::coherence::push_notify_rows;
use crate::executor::{Executor, Scope};
use crate::query::announce::{count, wrap, Names, Output};
use crate::schema::model::{Model, Relation};

/// The target key type of relation `R`.
pub type TargetKey<R> = <<R as Relation>::Target as Model>::Key;

/// Evicts the cached links of `R` when dropped: after the write, whether it
/// succeeded, failed, or was cancelled after it was sent.
struct EvictLinksOnDrop<'s, R: Relation> {
    scope: &'s Scope,
    _relation: std::marker::PhantomData<fn() -> R>,
}

impl<'s, R: Relation> EvictLinksOnDrop<'s, R> {
    fn new(scope: &'s Scope) -> Self {
        EvictLinksOnDrop {
            scope,
            _relation: std::marker::PhantomData,
        }
    }
}

impl<R: Relation> Drop for EvictLinksOnDrop<'_, R> {
    fn drop(&mut self) {
        self.scope.evict_links::<R>();
    }
}

/// Counts returned by [`m2m_set`](crate::ModelExt::m2m_set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOutcome {
    /// Links created.
    pub added: u64,
    /// Links deleted.
    pub removed: u64,
}

fn through<R: Relation>() -> Result<&'static Through> {
    match (&R::META.kind, &R::META.through) {
        (RelationKind::ManyToMany, Some(through)) => Ok(through),
        _ => Err(Error::InvalidInput(format!(
            "{}.{} is not a many-to-many relation",
            <R::Source as Model>::META.name,
            R::META.name
        ))),
    }
}

/// The pieces every junction statement shares.
struct Junction {
    table: String,
    /// The unqualified junction table, as invalidations name it.
    name: &'static str,
    source: &'static [&'static str],
    target: &'static [&'static str],
}

impl Junction {
    fn of<R: Relation>() -> Result<Junction> {
        let t = through::<R>()?;
        if t.target_columns.len() != TargetKey::<R>::ARITY
            || t.source_columns.len() != R::Key::ARITY
        {
            return Err(Error::InvalidInput(format!(
                "{}.{}: the junction's key columns do not match the key arity",
                <R::Source as Model>::META.name,
                R::META.name
            )));
        }
        let schema = t.schema.or(<R::Source as Model>::META.schema);
        Ok(Junction {
            table: qualified(schema, t.table),
            name: t.table,
            source: t.source_columns,
            target: t.target_columns,
        })
    }

    /// `"j"."s0" = $1 AND ...` binding the source key.
    fn source_match(
        &self,
        sql: &mut SqlBuf,
        alias: &str,
        key: &[Param],
        types: &[Cow<'static, str>],
    ) {
        for (i, ((col, p), ty)) in self.source.iter().zip(key).zip(types).enumerate() {
            if i > 0 {
                sql.push(" AND ");
            }
            sql.column(alias, col).push(" = ").param_cast(p.clone(), ty);
        }
    }

    /// [`wanted`](Self::wanted) for a list of target keys.
    fn wanted_keys<K: Key>(&self, sql: &mut SqlBuf, keys: &[K]) {
        self.wanted(sql, K::array_params(keys), &K::column_types());
    }

    /// `unnest($a::T[], ...) AS "w"("k0", ...)` binding the target keys.
    fn wanted(&self, sql: &mut SqlBuf, keys: Vec<Param>, types: &[Cow<'static, str>]) {
        sql.push("unnest(");
        for (i, (p, ty)) in keys.into_iter().zip(types).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.param_cast(p, &format!("{ty}[]"));
        }
        sql.push(") AS \"w\"(");
        self.key_names(sql, "");
        sql.push(")");
    }

    fn key_names(&self, sql: &mut SqlBuf, alias: &str) {
        for i in 0..self.target.len() {
            if i > 0 {
                sql.push(", ");
            }
            if !alias.is_empty() {
                sql.ident(alias).push(".");
            }
            sql.ident(&format!("k{i}"));
        }
    }

    /// `("j"."t0", ...) = ("w"."k0", ...)`
    fn target_match(&self, sql: &mut SqlBuf) {
        sql.push("(");
        for (i, col) in self.target.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.column("j", col);
        }
        sql.push(") = (");
        self.key_names(sql, "w");
        sql.push(")");
    }

    /// `INSERT INTO junction (s.., t..) SELECT $s.., w.k.. FROM <wanted> WHERE NOT EXISTS (link)`
    fn insert_missing(
        &self,
        sql: &mut SqlBuf,
        source: &[Param],
        types: &[Cow<'static, str>],
        from: &str,
    ) {
        sql.push("INSERT INTO ").push(&self.table).push(" (");
        for (i, col) in self.source.iter().chain(self.target).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.ident(col);
        }
        sql.push(") SELECT ");
        for (p, ty) in source.iter().zip(types) {
            sql.param_cast(p.clone(), ty).push(", ");
        }
        self.key_names(sql, "w");
        sql.push(" FROM ")
            .push(from)
            .push(" WHERE NOT EXISTS (SELECT 1 FROM ")
            .push(&self.table);
        sql.push(" AS \"j\" WHERE ");
        self.source_match(sql, "j", source, types);
        sql.push(" AND ");
        self.target_match(sql);
        sql.push(") ON CONFLICT DO NOTHING");
    }
}

fn source_key<R: Relation>(source: &R::Source) -> Result<Vec<Param>> {
    R::source_key(source).map(|k| k.params()).ok_or_else(|| {
        Error::InvalidInput(format!(
            "{}.{}: the instance's key is NULL",
            <R::Source as Model>::META.name,
            R::META.name
        ))
    })
}

/// Runs one link write; the cached links go whether it succeeds, fails or is
/// cancelled after it was sent. When the `Db` announces writes, the statement also
/// announces the junction table (every link of it: caches hold links per relation,
/// not per row).
async fn execute<R: Relation, E: Executor>(ex: &E, j: &Junction, mut sql: SqlBuf) -> Result<u64> {
    let _evict = EvictLinksOnDrop::<R>::new(ex.scope());
    if ex.scope().notify.is_none() {
        return ex.execute(&sql.text, &as_sql_refs(&sql.params)).await;
    }
    sql.push(" RETURNING 1");
    let bound = sql.params.len();
    let (names, output) = (Names::Table, Output::Count);
    if let Some(extra) =
        wrap::<R::Key>(ex.scope(), &mut sql.text, bound, j.name, &[], names, output)
    {
        sql.params.extend(extra);
    }
    count(ex, &sql, <R::Source as Model>::META.name).await
}

/// Links `source` to each of `targets` not linked yet; returns how many links were
/// created (adding an existing link is a no-op).
pub(crate) async fn add<R: Relation, E: Executor>(
    ex: &E,
    source: &R::Source,
    targets: Vec<TargetKey<R>>,
) -> Result<u64> {
    let j = Junction::of::<R>()?;
    let targets = dedup_keys(targets);
    if targets.is_empty() {
        return Ok(0);
    }
    let key = source_key::<R>(source)?;
    // The unnest is rendered first so its parameters come first; the INSERT around it
    // binds the source key after them.
    let mut sql = SqlBuf::new();
    j.wanted_keys(&mut sql, &targets);
    let from = std::mem::take(&mut sql.text);
    j.insert_missing(&mut sql, &key, &R::Key::column_types(), &from);
    execute::<R, E>(ex, &j, sql).await
}

/// Unlinks `source` from each of `targets`; returns how many links were deleted.
pub(crate) async fn remove<R: Relation, E: Executor>(
    ex: &E,
    source: &R::Source,
    targets: Vec<TargetKey<R>>,
) -> Result<u64> {
    let j = Junction::of::<R>()?;
    let targets = dedup_keys(targets);
    if targets.is_empty() {
        return Ok(0);
    }
    let key = source_key::<R>(source)?;
    let mut sql = SqlBuf::new();
    sql.push("DELETE FROM ")
        .push(&j.table)
        .push(" AS \"j\" USING ");
    j.wanted_keys(&mut sql, &targets);
    sql.push(" WHERE ");
    j.source_match(&mut sql, "j", &key, &R::Key::column_types());
    sql.push(" AND ");
    j.target_match(&mut sql);
    execute::<R, E>(ex, &j, sql).await
}

/// Unlinks `source` from every target; returns how many links were deleted.
pub(crate) async fn clear<R: Relation, E: Executor>(ex: &E, source: &R::Source) -> Result<u64> {
    let j = Junction::of::<R>()?;
    let key = source_key::<R>(source)?;
    let mut sql = SqlBuf::new();
    sql.push("DELETE FROM ")
        .push(&j.table)
        .push(" AS \"j\" WHERE ");
    j.source_match(&mut sql, "j", &key, &R::Key::column_types());
    execute::<R, E>(ex, &j, sql).await
}

/// Makes `targets` exactly the linked set of `source`, in one statement: links not
/// wanted are deleted, missing ones inserted, the rest untouched. Atomic: if any part
/// fails (a target that does not exist, say), no link changes.
pub(crate) async fn set<R: Relation, E: Executor>(
    ex: &E,
    source: &R::Source,
    targets: Vec<TargetKey<R>>,
) -> Result<SetOutcome> {
    let j = Junction::of::<R>()?;
    let targets = dedup_keys(targets);
    let key = source_key::<R>(source)?;
    let key_types = R::Key::column_types();
    let mut sql = SqlBuf::new();
    sql.push("WITH \"w\" AS (SELECT * FROM ");
    j.wanted_keys(&mut sql, &targets);
    sql.push("), \"removed\" AS (DELETE FROM ")
        .push(&j.table)
        .push(" AS \"j\" WHERE ");
    j.source_match(&mut sql, "j", &key, &key_types);
    sql.push(" AND NOT EXISTS (SELECT 1 FROM \"w\" WHERE ");
    j.target_match(&mut sql);
    sql.push(") RETURNING 1), \"added\" AS (");
    j.insert_missing(&mut sql, &key, &key_types, "\"w\"");
    sql.push(" RETURNING 1)");
    if let Some(channel) = &ex.scope().notify {
        // Announce the junction when a link changed, in the same statement.
        let channel = sql.bind(Param::new(channel.to_string()));
        let table = sql.bind(Param::new(j.name.to_owned()));
        sql.push(", \"changed\" AS (SELECT 1 FROM \"removed\" UNION ALL SELECT 1 FROM \"added\"), \"announced\" AS (");
        push_notify_rows::<R::Key>(&mut sql, &channel, &table, "changed", None);
        sql.push(")");
    }
    sql.push(" SELECT (SELECT count(*) FROM \"removed\"), (SELECT count(*) FROM \"added\")");
    if ex.scope().notify.is_some() {
        sql.push(" WHERE (SELECT count(*) FROM \"announced\") >= 0");
    }
    let rows = {
        let _evict = EvictLinksOnDrop::<R>::new(ex.scope());
        ex.query(&sql.text, &as_sql_refs(&sql.params)).await?
    };
    let name = <R::Source as Model>::META.name;
    let Some(row) = rows.first() else {
        return Ok(SetOutcome::default());
    };
    let removed: i64 = decode_column(row, 0, name)?;
    let added: i64 = decode_column(row, 1, name)?;
    Ok(SetOutcome {
        added: added.max(0) as u64,
        removed: removed.max(0) as u64,
    })
}
