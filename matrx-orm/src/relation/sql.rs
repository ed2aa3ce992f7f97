//! The one place that writes the SQL loading a relation for a set of parent keys.
//!
//! Shapes (`t` is the target, `j` the junction, keys travel as one array per column):
//!
//! ```text
//! FK / IFK, one key column:  SELECT t.* FROM target t WHERE t.k = ANY($1) ORDER BY ...
//! FK / IFK, composite key:   SELECT t.* FROM target t
//!                            JOIN unnest($1::text[], $2::int4[]) AS k(k0, k1) ON (t.a, t.b) = (k.k0, k.k1)
//! M2M:                       SELECT j.<source key>, j.<target key>, t.* FROM junction j
//!                            JOIN target t ON t.pk = j.<target key> WHERE j.<source key> = ANY($1)
//! ordering:                  a custom ordering is an ORDER BY; the default (target
//!                            primary key) is applied per parent in memory (batch.rs)
//! per-parent limit:          SELECT * FROM (SELECT ..., row_number() OVER (PARTITION BY <key>
//!                            ORDER BY ...) AS "__rn" FROM ...) s WHERE "__rn" <= $n ORDER BY "__rn"
//! ```
//!
//! The text depends only on the relation and its customisation, never on how many keys
//! are sent, so each statement is prepared once per connection.

use std::any::TypeId;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::base::error::{Error, Result};
use crate::base::hash::KeyMap;
use crate::base::key::Key;
use crate::base::meta::{ModelMeta, RelationKind, RelationMeta};
use crate::base::sql::{qualified, SqlBuf};
use crate::base::value::Param;
use crate::schema::aggregate::Aggregate;
use crate::schema::model::{Model, Relation};
use crate::schema::related::Related;

const TARGET: &str = "t";
const JUNCTION: &str = "j";
const KEYS: &str = "k";

/// Where the key columns of an edge live: the table alias and column names the parent
/// keys are matched against.
struct KeySide {
    alias: &'static str,
    columns: Vec<&'static str>,
}

/// The statement loading `rel` for the keys in `key_params` (one array per key column,
/// typed `key_types`). Rows come back as: for many-to-many, the source key columns,
/// then the target key columns, then the target's columns; otherwise the target's
/// columns only.
pub(crate) fn edge_statement<T>(
    source: &ModelMeta,
    rel: &RelationMeta,
    key_params: Vec<Param>,
    key_types: &[Cow<'static, str>],
    related: &Related<T>,
) -> Result<SqlBuf> {
    let target = (rel.target)();
    let mut sql = SqlBuf::new();
    let key_side = key_side(source, rel, &key_params, key_types)?;
    let limited = related.limit_per_parent.is_some();
    if limited {
        sql.push("SELECT * FROM (");
    }
    sql.push("SELECT ");
    if let Some(through) = &rel.through {
        for col in through.source_columns.iter().chain(through.target_columns) {
            sql.column(JUNCTION, col).push(", ");
        }
    }
    sql.columns(TARGET, target);
    if limited {
        sql.push(", row_number() OVER (PARTITION BY ");
        push_columns(&mut sql, key_side.alias, &key_side.columns);
        sql.push(" ORDER BY ");
        render_order(&mut sql, target, related);
        sql.push(") AS \"__rn\"");
    }
    sql.push(" FROM ");
    push_edge_from(&mut sql, source, rel)?;
    push_key_match(
        &mut sql,
        key_side.alias,
        &key_side.columns,
        key_params,
        key_types,
    );
    if let Some(filter) = &related.filter {
        filter.check()?;
        sql.push(" AND ");
        filter.render(TARGET, &mut sql);
    }
    match related.limit_per_parent {
        Some(n) => {
            let n = i64::try_from(n).map_err(|_| {
                Error::InvalidInput(format!("limit per parent {n} is out of range"))
            })?;
            sql.push(") AS \"s\" WHERE \"s\".\"__rn\" <= ")
                .param(Param::new(n));
            sql.push(" ORDER BY \"s\".\"__rn\"");
        }
        // The default order (target primary key) is applied in memory by the caller,
        // per parent: cheaper than sorting the whole result in the database.
        None if related.order.is_empty() => {}
        None => {
            sql.push(" ORDER BY ");
            render_order(&mut sql, target, related);
        }
    }
    Ok(sql)
}

/// The `FROM` item of an edge statement: the target (`t`), or the junction (`j`)
/// joined to the target on its primary key.
fn push_edge_from(sql: &mut SqlBuf, source: &ModelMeta, rel: &RelationMeta) -> Result<()> {
    let target = (rel.target)();
    match &rel.through {
        Some(through) => {
            sql.push(&qualified(through.schema.or(source.schema), through.table));
            sql.push(" AS ")
                .ident(JUNCTION)
                .push(" JOIN ")
                .table_as(target, TARGET)
                .push(" ON ");
            let pk: Vec<&str> = target.primary_key_columns().map(|c| c.name).collect();
            if pk.len() != through.target_columns.len() {
                return Err(Error::InvalidInput(format!(
                    "relation {}.{}: the junction lists {} target columns but {} has a {}-column primary key",
                    source.name,
                    rel.name,
                    through.target_columns.len(),
                    target.name,
                    pk.len()
                )));
            }
            for (i, (t, j)) in pk.iter().zip(through.target_columns).enumerate() {
                if i > 0 {
                    sql.push(" AND ");
                }
                sql.column(TARGET, t).push(" = ").column(JUNCTION, j);
            }
        }
        None => {
            sql.table_as(target, TARGET);
        }
    }
    Ok(())
}

/// The statement aggregating `R`'s targets per parent key for the keys in
/// `key_params`: `SELECT <key columns>, <aggregate> FROM <edge> WHERE <key set>
/// [AND <filter>] GROUP BY <key columns>` — one row per parent key with targets.
pub(crate) fn aggregate_statement<R: Relation, T>(
    aggregate: &Aggregate<R, T>,
    key_params: Vec<Param>,
    key_types: &[Cow<'static, str>],
) -> Result<SqlBuf> {
    let source = <R::Source as Model>::META;
    let rel = R::META;
    let key_side = key_side(source, rel, &key_params, key_types)?;
    let mut sql = SqlBuf::new();
    sql.push("SELECT ");
    push_columns(&mut sql, key_side.alias, &key_side.columns);
    sql.push(", ");
    aggregate.push_expr(&mut sql, TARGET);
    sql.push(" FROM ");
    push_edge_from(&mut sql, source, rel)?;
    push_key_match(
        &mut sql,
        key_side.alias,
        &key_side.columns,
        key_params,
        key_types,
    );
    if let Some(filter) = &aggregate.filter {
        filter.check()?;
        sql.push(" AND ");
        filter.render(TARGET, &mut sql);
    }
    sql.push(" GROUP BY ");
    push_columns(&mut sql, key_side.alias, &key_side.columns);
    Ok(sql)
}

/// Restricts `alias`'s `columns` to the key set: ` WHERE "a"."c" = ANY($n::T[])` for
/// one column; ` JOIN unnest($n::T[], ...) AS "k"("k0", ...) ON (...) = (...) WHERE TRUE`
/// for several. Either way the text ends in a WHERE clause more conditions can extend
/// with ` AND ...`.
fn push_key_match(
    sql: &mut SqlBuf,
    alias: &str,
    columns: &[&str],
    key_params: Vec<Param>,
    key_types: &[Cow<'static, str>],
) {
    if let ([column], [param], [ty]) = (columns, key_params.as_slice(), key_types) {
        sql.push(" WHERE ").column(alias, column).push(" = ANY(");
        sql.param_cast(param.clone(), &format!("{ty}[]")).push(")");
        return;
    }
    sql.push(" JOIN unnest(");
    for (i, (p, ty)) in key_params.into_iter().zip(key_types).enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.param_cast(p, &format!("{ty}[]"));
    }
    sql.push(") AS ").ident(KEYS).push("(");
    let names: Vec<String> = (0..columns.len()).map(|i| format!("k{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.ident(name);
    }
    sql.push(") ON (");
    push_columns(sql, alias, columns);
    sql.push(") = (");
    push_columns(sql, KEYS, &names);
    sql.push(") WHERE TRUE");
}

/// The statement loading rows of `meta` by primary key for a key set: the key columns
/// first, then the model's columns.
pub(crate) fn keys_statement(
    meta: &ModelMeta,
    key_params: Vec<Param>,
    key_types: &[Cow<'static, str>],
) -> Result<SqlBuf> {
    let pk: Vec<&str> = meta.primary_key_columns().map(|c| c.name).collect();
    if pk.len() != key_params.len() || key_types.len() != key_params.len() {
        return Err(Error::InvalidInput(format!(
            "{}: a {}-column primary key, but {} values per key",
            meta.name,
            pk.len(),
            key_params.len()
        )));
    }
    let mut sql = SqlBuf::new();
    sql.push("SELECT ");
    for col in &pk {
        sql.column(TARGET, col).push(", ");
    }
    sql.columns(TARGET, meta)
        .push(" FROM ")
        .table_as(meta, TARGET);
    push_key_match(&mut sql, TARGET, &pk, key_params, key_types);
    Ok(sql)
}

/// Statement texts that depend only on a type, by the type and the statement's kind.
type Texts = Mutex<KeyMap<(TypeId, &'static str), Arc<str>>>;

/// The text `build` writes for type `T` and statement kind `kind`, written once per
/// process. Only for statements whose text is the same for any number of keys and
/// whose only parameters are the key arrays.
///
/// Writing a statement costs about 7,000 instructions: 3.5% of a request workload's
/// load, where every batch is a statement (docs/BENCHMARKS.md, "Session batching").
fn cached_text<T: 'static>(
    kind: &'static str,
    build: impl FnOnce() -> Result<SqlBuf>,
) -> Result<Arc<str>> {
    static TEXTS: OnceLock<Texts> = OnceLock::new();
    let texts = TEXTS.get_or_init(Texts::default);
    let id = (TypeId::of::<T>(), kind);
    if let Some(text) = texts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        return Ok(text.clone());
    }
    let text: Arc<str> = build()?.text.into();
    texts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, text.clone());
    Ok(text)
}

/// [`edge_statement`] for `R` without customisation, for `keys`: the text (written
/// once per process) and its parameters, one array per key column.
pub(crate) fn default_edge_statement<R: Relation>(
    keys: &[R::Key],
) -> Result<(Arc<str>, Vec<Param>)> {
    let text = cached_text::<R>("edge", || {
        edge_statement(
            <R::Source as Model>::META,
            R::META,
            R::Key::array_params(&[]),
            &R::Key::column_types(),
            &Related::<R::Target>::default(),
        )
    })?;
    Ok((text, R::Key::array_params(keys)))
}

/// [`keys_statement`] for `M` and `keys`: the text (written once per process) and its
/// parameters, one array per key column.
pub(crate) fn model_keys_statement<M: Model>(keys: &[M::Key]) -> Result<(Arc<str>, Vec<Param>)> {
    let text = cached_text::<M>("keys", || {
        keys_statement(M::META, M::Key::array_params(&[]), &M::Key::column_types())
    })?;
    Ok((text, M::Key::array_params(keys)))
}

/// Where the keys of `rel` are matched, checked against the key values sent (one
/// array, of a named type, per key column).
fn key_side(
    source: &ModelMeta,
    rel: &RelationMeta,
    key_params: &[Param],
    key_types: &[Cow<'static, str>],
) -> Result<KeySide> {
    let side = match rel.kind {
        // Target rows are matched on the columns the source's foreign key references.
        RelationKind::BelongsTo => KeySide {
            alias: TARGET,
            columns: rel.target_columns()?,
        },
        // Target rows are matched on their foreign-key columns.
        RelationKind::HasMany | RelationKind::HasOne => KeySide {
            alias: TARGET,
            columns: rel.target_columns()?,
        },
        RelationKind::ManyToMany => match &rel.through {
            Some(through) => KeySide {
                alias: JUNCTION,
                columns: through.source_columns.to_vec(),
            },
            None => {
                return Err(Error::InvalidInput(format!(
                    "relation {}.{} is many-to-many but names no junction table",
                    source.name, rel.name
                )))
            }
        },
    };
    if side.columns.len() != key_params.len() || key_types.len() != key_params.len() {
        return Err(Error::InvalidInput(format!(
            "relation {}.{}: {} key columns but {} key values per parent",
            source.name,
            rel.name,
            side.columns.len(),
            key_params.len()
        )));
    }
    Ok(side)
}

fn push_columns(sql: &mut SqlBuf, alias: &str, columns: &[&str]) {
    for (i, col) in columns.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.column(alias, col);
    }
}

/// The related query's ordering, else the target's primary key.
fn render_order<T>(sql: &mut SqlBuf, target: &ModelMeta, related: &Related<T>) {
    if related.order.is_empty() {
        let pk: Vec<&str> = target.primary_key_columns().map(|c| c.name).collect();
        push_columns(sql, TARGET, &pk);
        return;
    }
    for (i, term) in related.order.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        term.render(TARGET, sql);
    }
}
