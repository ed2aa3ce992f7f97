//! DDL from model metadata: tables with primary keys, unique columns, foreign keys
//! (composite too), junction tables of many-to-many relations, and indexes on
//! foreign-key columns. Meant for tests, prototypes and examples; production schemas
//! belong to a migration tool.
//!
//! ```no_run
//! # use matrx_orm::{Model, One};
//! # #[derive(Model, Debug)] #[orm(table = "customers")]
//! # pub struct Customer { #[orm(primary_key, auto)] pub id: i64, pub email: String }
//! # #[derive(Model, Debug)] #[orm(table = "orders")]
//! # pub struct Order { #[orm(primary_key, auto)] pub id: i64, pub customer_id: i64,
//! #   #[orm(belongs_to(key = "customer_id"))] pub customer: One<Customer> }
//! # async fn demo(db: &matrx_orm::Db) -> matrx_orm::Result<()> {
//! matrx_orm::ddl::create_tables(db, &[Customer::META, Order::META]).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;

use crate::base::error::Result;
use crate::base::meta::{ColumnMeta, ModelMeta, RelationKind, RelationMeta, Through};
use crate::base::sql::{push_ident, qualified, table_name};
use crate::executor::{Atomic, Executor};

/// The statements that create `models` and their junction tables: schemas, then
/// tables, then foreign keys (so the order of `models` does not matter and cycles
/// work), then indexes.
pub fn create_statements(models: &[&'static ModelMeta]) -> Result<Vec<String>> {
    let mut schemas = BTreeSet::new();
    let mut tables = Vec::new();
    let mut constraints = Vec::new();
    let mut indexes = BTreeSet::new();
    let mut junctions = BTreeSet::new();
    for meta in models {
        if let Some(schema) = meta.schema {
            schemas.insert(format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)));
        }
        tables.push(create_table(meta));
        for rel in meta.relations {
            match rel.kind {
                RelationKind::BelongsTo => {
                    constraints.push(foreign_key(meta, rel.name, rel.source_columns, rel)?);
                    indexes.insert(index(&table_name(meta), meta.table, rel.source_columns));
                }
                RelationKind::HasMany | RelationKind::HasOne => {
                    let target = (rel.target)();
                    if models.iter().any(|m| std::ptr::eq(*m, target)) {
                        let cols = rel.target_columns()?;
                        indexes.insert(index(&table_name(target), target.table, &cols));
                    }
                }
                RelationKind::ManyToMany => {
                    let Some(through) = &rel.through else {
                        continue;
                    };
                    let schema = through.schema.or(meta.schema);
                    let taken = models
                        .iter()
                        .any(|m| m.schema == schema && m.table == through.table);
                    if !taken && junctions.insert((schema, through.table)) {
                        let (table, fks, idx) = junction(meta, rel, through, schema)?;
                        tables.push(table);
                        constraints.extend(fks);
                        indexes.insert(idx);
                    }
                }
            }
        }
    }
    let mut out: Vec<String> = schemas.into_iter().collect();
    out.extend(tables);
    out.extend(constraints.into_iter().map(|c| if_absent(&c)));
    out.extend(indexes);
    Ok(out)
}

/// The statements that drop `models` and their junction tables (`IF EXISTS ... CASCADE`).
pub fn drop_statements(models: &[&'static ModelMeta]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for meta in models {
        out.insert(format!("DROP TABLE IF EXISTS {} CASCADE", table_name(meta)));
        for rel in meta.relations {
            if let Some(through) = &rel.through {
                let name = qualified(through.schema.or(meta.schema), through.table);
                out.insert(format!("DROP TABLE IF EXISTS {name} CASCADE"));
            }
        }
    }
    out.into_iter().collect()
}

/// Creates `models` (see [`create_statements`]) atomically.
pub async fn create_tables<E: Executor>(ex: &E, models: &[&'static ModelMeta]) -> Result<()> {
    run_all(ex, &create_statements(models)?).await
}

/// Drops `models` and their junction tables atomically.
pub async fn drop_tables<E: Executor>(ex: &E, models: &[&'static ModelMeta]) -> Result<()> {
    run_all(ex, &drop_statements(models)).await
}

async fn run_all<E: Executor>(ex: &E, statements: &[String]) -> Result<()> {
    let tx = ex.atomic().await?;
    tx.batch_execute(&statements.join(";\n")).await?;
    tx.commit().await
}

/// Runs `statement` (an `ADD CONSTRAINT`) unless the constraint exists already, so
/// creating tables twice is harmless.
fn if_absent(statement: &str) -> String {
    format!(
        "DO $matrx_ddl$ BEGIN {statement}; \
         EXCEPTION WHEN duplicate_object OR duplicate_table THEN NULL; END $matrx_ddl$"
    )
}

/// PostgreSQL truncates identifiers to 63 bytes, so two long generated names could
/// collide: past the limit, keep a prefix and append a hash of the whole name.
fn object_name(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name.to_owned();
    }
    // FNV-1a: stable across platforms and releases, unlike the std hasher.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut cut = MAX - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash:08x}", &name[..cut])
}

fn quote(ident: &str) -> String {
    let mut out = String::new();
    push_ident(&mut out, ident);
    out
}

fn column_list(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn column_ddl(col: &ColumnMeta) -> String {
    let sql_type = (col.sql_type)();
    let mut out = format!("{} {}", quote(col.name), sql_type);
    let integer = matches!(&*sql_type, "smallint" | "integer" | "bigint");
    match col.default_sql {
        Some(default) => out.push_str(&format!(" DEFAULT {default}")),
        None if col.auto && integer => out.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
        None => {}
    }
    if !col.nullable {
        out.push_str(" NOT NULL");
    }
    if col.unique {
        out.push_str(" UNIQUE");
    }
    out
}

fn create_table(meta: &ModelMeta) -> String {
    let mut parts: Vec<String> = meta.columns.iter().map(column_ddl).collect();
    let pk: Vec<&str> = meta.primary_key_columns().map(|c| c.name).collect();
    parts.push(format!("PRIMARY KEY ({})", column_list(&pk)));
    let mut indexed = Vec::new();
    for col in meta.columns.iter().filter(|c| c.indexed) {
        indexed.push(col.name);
    }
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (\n    {}\n)",
        table_name(meta),
        parts.join(",\n    ")
    );
    for name in indexed {
        sql.push_str(";\n");
        sql.push_str(&index(&table_name(meta), meta.table, &[name]));
    }
    sql
}

fn foreign_key(
    meta: &ModelMeta,
    name: &str,
    columns: &[&str],
    rel: &RelationMeta,
) -> Result<String> {
    let target = (rel.target)();
    let target_cols = rel.target_columns()?;
    Ok(format!(
        "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
        table_name(meta),
        quote(&object_name(&format!("{}_{}_fkey", meta.table, name))),
        column_list(columns),
        table_name(target),
        column_list(&target_cols),
    ))
}

fn index(table: &str, bare_table: &str, columns: &[&str]) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
        quote(&object_name(&format!(
            "{}_{}_idx",
            bare_table,
            columns.join("_")
        ))),
        table,
        column_list(columns),
    )
}

fn junction(
    source: &ModelMeta,
    rel: &RelationMeta,
    through: &Through,
    schema: Option<&str>,
) -> Result<(String, Vec<String>, String)> {
    let target = (rel.target)();
    let name = qualified(schema, through.table);
    let mut parts = Vec::new();
    let typed = |cols: &[&str], meta: &ModelMeta| -> Vec<String> {
        cols.iter()
            .zip(meta.primary_key_columns())
            .map(|(c, pk)| format!("{} {} NOT NULL", quote(c), (pk.sql_type)()))
            .collect()
    };
    parts.extend(typed(through.source_columns, source));
    parts.extend(typed(through.target_columns, target));
    let all: Vec<&str> = through
        .source_columns
        .iter()
        .chain(through.target_columns)
        .copied()
        .collect();
    parts.push(format!("PRIMARY KEY ({})", column_list(&all)));
    let table = format!(
        "CREATE TABLE IF NOT EXISTS {name} (\n    {}\n)",
        parts.join(",\n    ")
    );
    let fk = |cols: &[&str], meta: &ModelMeta, side: &str| {
        let pk: Vec<&str> = meta.primary_key_columns().map(|c| c.name).collect();
        format!(
            "ALTER TABLE {name} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
            quote(&object_name(&format!("{}_{side}_fkey", through.table))),
            column_list(cols),
            table_name(meta),
            column_list(&pk),
        )
    };
    let fks = vec![
        fk(through.source_columns, source, "source"),
        fk(through.target_columns, target, "target"),
    ];
    Ok((
        table,
        fks,
        index(&name, through.table, through.target_columns),
    ))
}
