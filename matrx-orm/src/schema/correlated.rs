//! A relation read from inside a statement on its source rows: the `FROM` item (the
//! target, or the junction joined to the target for a many-to-many relation) and the
//! condition pairing its keys with the parent row's. Relation filters (`EXISTS`),
//! relation aggregates (scalar subqueries) and joined loads (`LATERAL`) all render
//! their subqueries through this, so the pairing of keys is written once.

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
}
