//! A relation read from inside a statement on its source rows: the `FROM` item (the
//! target, or the junction joined to the target for a many-to-many relation) and the
//! condition pairing its keys with the parent row's. Relation filters (`EXISTS`),
//! relation aggregates (scalar subqueries) and joined loads (`LATERAL`) all render
//! their subqueries through this, so the pairing of keys is written once.
//!
//! The set-oriented form of the same pairing serves joined loads that aggregate a
//! relation once for a whole set of parents: the relation's key columns (to group by
//! and to join back on, [`Correlated::push_keys`], [`Correlated::push_rejoin`]) and the
//! restriction of its rows to the keys of a set of parent rows
//! ([`Correlated::push_in_parents`]).

use crate::base::error::{Error, Result};
use crate::base::meta::{ModelMeta, RelationKind, RelationMeta};
use crate::base::sql::{qualified, SqlBuf};

/// How relation `rel` of `source` is reached from a parent row.
#[derive(Debug, Clone)]
pub(crate) struct Correlated {
    target: &'static ModelMeta,
    junction: Option<Junction>,
    /// (column of the target or junction, column of the parent) pairs.
    keys: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, Clone)]
struct Junction {
    schema: Option<&'static str>,
    table: &'static str,
    /// (target primary-key column, junction column) pairs.
    target_keys: Vec<(&'static str, &'static str)>,
}

impl Correlated {
    /// Resolves the key pairs of `rel`; an error names a relation whose two sides do
    /// not have the same number of key columns.
    pub(crate) fn new(source: &'static ModelMeta, rel: &'static RelationMeta) -> Result<Self> {
        let target = (rel.target)();
        let arity = |a: usize, b: usize| -> Result<()> {
            if a == b {
                return Ok(());
            }
            Err(Error::InvalidInput(format!(
                "relation {}.{}: {a} key columns on one side, {b} on the other",
                source.name, rel.name
            )))
        };
        let (junction, keys) = match (&rel.through, rel.kind) {
            (Some(through), RelationKind::ManyToMany) => {
                let pk: Vec<&'static str> = target.primary_key_columns().map(|c| c.name).collect();
                arity(pk.len(), through.target_columns.len())?;
                arity(through.source_columns.len(), rel.source_columns.len())?;
                let junction = Junction {
                    schema: through.schema.or(source.schema),
                    table: through.table,
                    target_keys: pk
                        .into_iter()
                        .zip(through.target_columns.iter().copied())
                        .collect(),
                };
                let keys = through
                    .source_columns
                    .iter()
                    .copied()
                    .zip(rel.source_columns.iter().copied())
                    .collect();
                (Some(junction), keys)
            }
            (None, RelationKind::ManyToMany) => {
                return Err(Error::InvalidInput(format!(
                    "relation {}.{} is many-to-many but names no junction table",
                    source.name, rel.name
                )))
            }
            _ => {
                let columns = rel.target_columns()?;
                arity(columns.len(), rel.source_columns.len())?;
                let keys = columns
                    .into_iter()
                    .zip(rel.source_columns.iter().copied())
                    .collect();
                (None, keys)
            }
        };
        Ok(Correlated {
            target,
            junction,
            keys,
        })
    }

    /// Appends the `FROM` item: `<target> AS "alias"`, or for a many-to-many relation
    /// `<junction> AS "junction" JOIN <target> AS "alias" ON <pk = junction's>`.
    pub(crate) fn push_from(&self, sql: &mut SqlBuf, alias: &str, junction: &str) {
        match &self.junction {
            Some(j) => {
                sql.push(&qualified(j.schema, j.table));
                sql.push(" AS ")
                    .ident(junction)
                    .push(" JOIN ")
                    .table_as(self.target, alias)
                    .push(" ON ");
                for (i, (pk, jc)) in j.target_keys.iter().enumerate() {
                    if i > 0 {
                        sql.push(" AND ");
                    }
                    sql.column(alias, pk).push(" = ").column(junction, jc);
                }
            }
            None => {
                sql.table_as(self.target, alias);
            }
        }
    }

    /// Appends `<keys> = <the parent's>` (no leading `WHERE`): the keys are the
    /// junction's (`junction`) for a many-to-many relation, the target's (`alias`)
    /// otherwise.
    pub(crate) fn push_match(&self, sql: &mut SqlBuf, alias: &str, junction: &str, parent: &str) {
        let side = if self.junction.is_some() {
            junction
        } else {
            alias
        };
        for (i, (inner, outer)) in self.keys.iter().enumerate() {
            if i > 0 {
                sql.push(" AND ");
            }
            sql.column(side, inner).push(" = ").column(parent, outer);
        }
    }

    /// The alias holding the relation's key columns: the junction's for a
    /// many-to-many relation, the target's otherwise.
    fn key_side<'a>(&self, alias: &'a str, junction: &'a str) -> &'a str {
        if self.junction.is_some() {
            junction
        } else {
            alias
        }
    }

    /// Appends the relation's key columns, comma-separated; with `named`, each as
    /// `AS "k0"`, `AS "k1"`, ... (the names [`Correlated::push_rejoin`] joins on).
    pub(crate) fn push_keys(&self, sql: &mut SqlBuf, alias: &str, junction: &str, named: bool) {
        let side = self.key_side(alias, junction);
        for (i, (inner, _)) in self.keys.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.column(side, inner);
            if named {
                sql.push(" AS ").ident(&format!("k{i}"));
            }
        }
    }

    /// Appends `"group"."k0" = "parent"."<col>" AND ...`: rows keyed by
    /// [`Correlated::push_keys`] (under alias `group`) paired with the parent row.
    pub(crate) fn push_rejoin(&self, sql: &mut SqlBuf, group: &str, parent: &str) {
        for (i, (_, outer)) in self.keys.iter().enumerate() {
            if i > 0 {
                sql.push(" AND ");
            }
            sql.column(group, &format!("k{i}"))
                .push(" = ")
                .column(parent, outer);
        }
    }

    /// Appends the condition restricting the relation's rows to the keys of a set of
    /// parent rows: `parents` is a `FROM` item holding them (a table, a CTE or a
    /// parenthesised subquery) and `set` an alias for it. With `as_array` and a
    /// single key column, `"k" = ANY(ARRAY(SELECT "set"."col" FROM parents AS "set"))`
    /// (the keys computed once, then one index probe each); otherwise a semi-join,
    /// `("k0", "k1") IN (SELECT "set"."c0", "set"."c1" FROM parents AS "set")`.
    pub(crate) fn push_in_parents(
        &self,
        sql: &mut SqlBuf,
        alias: &str,
        junction: &str,
        parents: &str,
        set: &str,
        as_array: bool,
    ) {
        let side = self.key_side(alias, junction);
        let outer = |sql: &mut SqlBuf| {
            for (i, (_, outer)) in self.keys.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.column(set, outer);
            }
            sql.push(" FROM ").push(parents).push(" AS ").ident(set);
        };
        if let (true, [(inner, _)]) = (as_array, self.keys.as_slice()) {
            sql.column(side, inner).push(" = ANY(ARRAY(SELECT ");
            outer(sql);
            sql.push("))");
            return;
        }
        sql.push("(");
        for (i, (inner, _)) in self.keys.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.column(side, inner);
        }
        sql.push(") IN (SELECT ");
        outer(sql);
        sql.push(")");
    }
}
