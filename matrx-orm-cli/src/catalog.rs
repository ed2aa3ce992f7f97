//! Reading `pg_catalog` into a plain [`Catalog`]: tables, columns in `attnum` order,
//! types (domains, arrays and enums resolved through `pg_type`), nullability,
//! defaults, identity, primary keys, unique constraints, foreign keys with their
//! columns in constraint order (`conkey` / `confkey`), indexes, and enum labels in
//! `enumsortorder`.
//!
//! `information_schema` alone cannot be used: it does not keep the pairing order of a
//! composite foreign key's columns. Every query binds the schema name as a parameter.

use std::collections::{BTreeMap, HashMap};

use matrx_orm::{Db, Transaction};
use tokio_postgres::Row;

use crate::error::{Error, Result};

/// One schema as the generator and the checker see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// The schema read.
    pub schema: String,
    /// Its tables (ordinary and partitioned, not partitions), by name.
    pub tables: Vec<Table>,
    /// The enum types its columns use (and those defined in it), by name.
    pub enums: Vec<EnumType>,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The table name.
    pub name: String,
    /// Columns in `attnum` order.
    pub columns: Vec<Column>,
    /// The primary key, if any.
    pub primary_key: Option<Constraint>,
    /// Unique constraints, and unique indexes on plain columns without a predicate,
    /// by name.
    pub uniques: Vec<Constraint>,
    /// Foreign keys, by name.
    pub foreign_keys: Vec<ForeignKey>,
    /// Indexes that back no constraint, by name.
    pub indexes: Vec<Index>,
}

/// A column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column name.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The default expression (`pg_get_expr`), if any.
    pub default: Option<String>,
    /// An identity column (`GENERATED ... AS IDENTITY`).
    pub identity: bool,
    /// A generated column (`GENERATED ALWAYS AS (...) STORED`).
    pub generated: bool,
}

/// A column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    /// The type as PostgreSQL prints it (`format_type`): `integer`,
    /// `character varying(20)`, `numeric(10,2)[]`, a domain's or enum's name.
    pub display: String,
    /// The type after resolving domains.
    pub resolved: PgType,
    /// The domain the column is declared with, if any.
    pub domain: Option<String>,
}

/// A resolved PostgreSQL type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// A built-in base type of `pg_catalog`, by `typname` (`int4`, `varchar`, ...).
    Builtin(String),
    /// An enum type.
    Enum(String),
    /// An array of the element type.
    Array(Box<PgType>),
    /// Anything else (composite, range, multirange, an extension's base type), with
    /// its qualified name.
    Other(String),
}

/// A primary key or unique constraint (or unique index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// The constraint (or index) name.
    pub name: String,
    /// Its columns, in key order.
    pub columns: Vec<String>,
}

/// A foreign key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// The constraint name.
    pub name: String,
    /// The referencing columns, in constraint order (`conkey`).
    pub columns: Vec<String>,
    /// The referenced table's schema.
    pub target_schema: String,
    /// The referenced table.
    pub target_table: String,
    /// The referenced columns, paired with `columns` (`confkey`).
    pub target_columns: Vec<String>,
}

/// An index that backs no constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The index name.
    pub name: String,
    /// Key columns in order; `None` for an expression.
    pub columns: Vec<Option<String>>,
    /// A unique index.
    pub unique: bool,
    /// A partial index (`WHERE ...`).
    pub partial: bool,
    /// The access method (`btree`, `gin`, ...).
    pub method: String,
}

impl Index {
    /// The key columns when they are all plain columns.
    pub fn plain_columns(&self) -> Option<Vec<&str>> {
        self.columns.iter().map(|c| c.as_deref()).collect()
    }
}

/// An enum type and its labels in `enumsortorder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumType {
    /// The type name (unqualified).
    pub name: String,
    /// The labels, in sort order.
    pub labels: Vec<String>,
}

impl Catalog {
    /// The table with this name.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The enum type with this name.
    pub fn enum_type(&self, name: &str) -> Option<&EnumType> {
        self.enums.iter().find(|e| e.name == name)
    }
}

impl Table {
    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The primary-key columns (empty without a primary key).
    pub fn primary_key_columns(&self) -> &[String] {
        self.primary_key.as_ref().map_or(&[], |pk| &pk.columns)
    }

    /// Whether exactly these columns (in any order) are the primary key or a unique key.
    pub fn is_unique_set(&self, columns: &[String]) -> bool {
        let same =
            |key: &[String]| key.len() == columns.len() && key.iter().all(|k| columns.contains(k));
        self.primary_key.iter().any(|pk| same(&pk.columns))
            || self.uniques.iter().any(|u| same(&u.columns))
    }
}

const TYPES: &str = "\
SELECT t.oid, t.typname::text, n.nspname::text, t.typtype::text, t.typelem, t.typbasetype, \
       t.typcategory::text \
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace";

const SCHEMA_EXISTS: &str = "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = $1";

const COLUMNS: &str = "\
SELECT c.relname::text, a.attname::text, a.atttypid, \
       pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, \
       pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
ORDER BY c.relname, a.attnum";

const CONSTRAINTS: &str = "\
SELECT c.relname::text, con.conname::text, con.contype::text, \
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(num, pos) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num \
             ORDER BY k.pos), \
       fn.nspname::text, fc.relname::text, \
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(num, pos) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num \
             ORDER BY k.pos) \
FROM pg_catalog.pg_constraint con \
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid \
LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace \
WHERE n.nspname = $1 AND con.contype IN ('p', 'u', 'f') \
ORDER BY c.relname, con.conname";

const INDEXES: &str = "\
SELECT c.relname::text, i.relname::text, x.indisunique, x.indpred IS NOT NULL, am.amname::text, \
       ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(num, pos) \
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.num \
             WHERE k.pos <= x.indnkeyatts ORDER BY k.pos) \
FROM pg_catalog.pg_index x \
JOIN pg_catalog.pg_class c ON c.oid = x.indrelid \
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
JOIN pg_catalog.pg_am am ON am.oid = i.relam \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE n.nspname = $1 \
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con WHERE con.conindid = x.indexrelid \
                  AND con.conrelid = x.indrelid) \
ORDER BY c.relname, i.relname";

const ENUMS: &str = "\
SELECT t.oid, t.typname::text, n.nspname = $1, e.enumlabel::text \
FROM pg_catalog.pg_enum e \
JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid \
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
ORDER BY t.typname, t.oid, e.enumsortorder";

/// Reads the schema `schema` through `db`.
///
/// The catalog is read in one read-only transaction whose `search_path` is the
/// schema, so type names and defaults print unqualified (`status`, not
/// `shop.status`), as the generated models (which use the connection's
/// `search_path` unless `--qualify` is given) name them.
pub async fn introspect(db: &Db, schema: &str) -> Result<Catalog> {
    let tx = db.begin().await?;
    let path = format!("\"{}\", pg_catalog", schema.replace('"', "\"\""));
    tx.query_sql(
        "SELECT pg_catalog.set_config('search_path', $1, true)",
        &[&path],
    )
    .await?;
    tx.execute_sql("SET TRANSACTION READ ONLY", &[]).await?;
    let catalog = read(&tx, schema).await;
    tx.rollback().await?;
    catalog
}

async fn read(db: &Transaction<'_>, schema: &str) -> Result<Catalog> {
    let exists = db.query_sql(SCHEMA_EXISTS, &[&schema]).await?;
    let count: i64 = get(exists.first().ok_or_else(|| shape("count"))?, 0)?;
    if count == 0 {
        return Err(Error::NoSuchSchema(schema.to_owned()));
    }
    let types = read_types(db).await?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut used_enums: Vec<u32> = Vec::new();
    for row in db.query_sql(COLUMNS, &[&schema]).await? {
        let table: String = get(&row, 0)?;
        let type_oid: u32 = get(&row, 2)?;
        let display: String = get(&row, 3)?;
        let (resolved, domain) = resolve(&types, type_oid, &display, &mut used_enums)?;
        let identity: String = get(&row, 6)?;
        let generated: String = get(&row, 7)?;
        let column = Column {
            name: get(&row, 1)?,
            ty: ColumnType {
                display,
                resolved,
                domain,
            },
            nullable: !get::<bool>(&row, 4)?,
            default: get(&row, 5)?,
            identity: !identity.is_empty(),
            generated: !generated.is_empty(),
        };
        tables
            .entry(table.clone())
            .or_insert_with(|| empty_table(table))
            .columns
            .push(column);
    }
    for row in db.query_sql(CONSTRAINTS, &[&schema]).await? {
        let table: String = get(&row, 0)?;
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        let name: String = get(&row, 1)?;
        let kind: String = get(&row, 2)?;
        let columns: Vec<String> = get(&row, 3)?;
        match kind.as_str() {
            "p" => t.primary_key = Some(Constraint { name, columns }),
            "u" => t.uniques.push(Constraint { name, columns }),
            _ => t.foreign_keys.push(ForeignKey {
                name,
                columns,
                target_schema: get::<Option<String>>(&row, 4)?.ok_or_else(|| shape("fk"))?,
                target_table: get::<Option<String>>(&row, 5)?.ok_or_else(|| shape("fk"))?,
                target_columns: get(&row, 6)?,
            }),
        }
    }
    for row in db.query_sql(INDEXES, &[&schema]).await? {
        let table: String = get(&row, 0)?;
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        let index = Index {
            name: get(&row, 1)?,
            unique: get(&row, 2)?,
            partial: get(&row, 3)?,
            method: get(&row, 4)?,
            columns: get(&row, 5)?,
        };
        match (index.unique, index.partial, index.plain_columns()) {
            (true, false, Some(columns)) => t.uniques.push(Constraint {
                name: index.name.clone(),
                columns: columns.into_iter().map(str::to_owned).collect(),
            }),
            _ => t.indexes.push(index),
        }
    }
    for t in tables.values_mut() {
        t.uniques.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let enums = read_enums(db, schema, &used_enums).await?;
    Ok(Catalog {
        schema: schema.to_owned(),
        tables: tables.into_values().collect(),
        enums,
    })
}

fn empty_table(name: String) -> Table {
    Table {
        name,
        columns: Vec::new(),
        primary_key: None,
        uniques: Vec::new(),
        foreign_keys: Vec::new(),
        indexes: Vec::new(),
    }
}

struct TypeRow {
    name: String,
    schema: String,
    kind: String,
    elem: u32,
    base: u32,
    category: String,
}

async fn read_types(db: &Transaction<'_>) -> Result<HashMap<u32, TypeRow>> {
    let mut out = HashMap::new();
    for row in db.query_sql(TYPES, &[]).await? {
        let oid: u32 = get(&row, 0)?;
        out.insert(
            oid,
            TypeRow {
                name: get(&row, 1)?,
                schema: get(&row, 2)?,
                kind: get(&row, 3)?,
                elem: get(&row, 4)?,
                base: get(&row, 5)?,
                category: get(&row, 6)?,
            },
        );
    }
    Ok(out)
}

/// Resolves a column's type: domains to their base (remembering the outermost domain),
/// arrays to their element, enums by name.
fn resolve(
    types: &HashMap<u32, TypeRow>,
    oid: u32,
    display: &str,
    used_enums: &mut Vec<u32>,
) -> Result<(PgType, Option<String>)> {
    let mut domain = None;
    let mut oid = oid;
    // Domains over domains: bounded, so a corrupt catalog cannot loop forever.
    for _ in 0..32 {
        let t = types
            .get(&oid)
            .ok_or_else(|| Error::Catalog(format!("type oid {oid} not in pg_type")))?;
        if t.kind == "d" {
            domain.get_or_insert_with(|| display.to_owned());
            oid = t.base;
            continue;
        }
        return Ok((plain(types, oid, used_enums, 0)?, domain));
    }
    Err(Error::Catalog(format!(
        "domain chain too deep for {display}"
    )))
}

fn plain(
    types: &HashMap<u32, TypeRow>,
    oid: u32,
    used_enums: &mut Vec<u32>,
    depth: usize,
) -> Result<PgType> {
    let t = types
        .get(&oid)
        .ok_or_else(|| Error::Catalog(format!("type oid {oid} not in pg_type")))?;
    if t.category == "A" && t.elem != 0 && depth < 8 {
        return Ok(PgType::Array(Box::new(plain(
            types,
            t.elem,
            used_enums,
            depth + 1,
        )?)));
    }
    Ok(match t.kind.as_str() {
        "e" => {
            if !used_enums.contains(&oid) {
                used_enums.push(oid);
            }
            PgType::Enum(t.name.clone())
        }
        "b" if t.schema == "pg_catalog" => PgType::Builtin(t.name.clone()),
        _ => PgType::Other(format!("{}.{}", t.schema, t.name)),
    })
}

async fn read_enums(db: &Transaction<'_>, schema: &str, used: &[u32]) -> Result<Vec<EnumType>> {
    let mut out: Vec<EnumType> = Vec::new();
    let mut last_oid = None;
    for row in db.query_sql(ENUMS, &[&schema]).await? {
        let oid: u32 = get(&row, 0)?;
        let in_schema: bool = get(&row, 2)?;
        if !in_schema && !used.contains(&oid) {
            continue;
        }
        let label: String = get(&row, 3)?;
        if last_oid == Some(oid) {
            if let Some(e) = out.last_mut() {
                e.labels.push(label);
            }
            continue;
        }
        last_oid = Some(oid);
        out.push(EnumType {
            name: get(&row, 1)?,
            labels: vec![label],
        });
    }
    Ok(out)
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> Result<T> {
    row.try_get(index)
        .map_err(|e| Error::Catalog(format!("column {index}: {e}")))
}

fn shape(what: &str) -> Error {
    Error::Catalog(format!("unexpected shape of a {what} row"))
}
