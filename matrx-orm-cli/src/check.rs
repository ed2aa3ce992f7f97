//! Drift between models and a live database.
//!
//! Two forms:
//! - [`check`] compares models' metadata ([`ModelMeta`], what `#[derive(Model)]`
//!   emits) to the schema: missing tables and columns, type and nullability
//!   mismatches, primary keys, foreign keys behind relations, junction tables, and
//!   NOT NULL columns without a default that a model leaves out (inserts would fail).
//!   Call it from a test of the crate that owns the models.
//! - [`compare_dir`] compares a directory of generated models to a fresh generation
//!   (what `matrx-orm check` runs, since a binary cannot load a user's models).

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use matrx_orm::{Db, ModelMeta, RelationKind};

use crate::catalog::{introspect, Catalog, Table};
use crate::error::{Error, Result};
use crate::generate::Generated;

/// One difference between the models and the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The model's table does not exist.
    MissingTable { model: String, table: String },
    /// A model column does not exist in the table.
    MissingColumn {
        model: String,
        table: String,
        column: String,
    },
    /// The column's type differs.
    TypeMismatch {
        model: String,
        table: String,
        column: String,
        model_type: String,
        database_type: String,
    },
    /// The column's nullability differs (`model_nullable`: the field is an `Option`).
    Nullability {
        model: String,
        table: String,
        column: String,
        model_nullable: bool,
    },
    /// The primary keys differ.
    PrimaryKey {
        model: String,
        table: String,
        model_key: Vec<String>,
        database_key: Vec<String>,
    },
    /// No foreign key backs a relation.
    MissingForeignKey {
        model: String,
        relation: String,
        table: String,
        columns: Vec<String>,
        target_table: String,
        target_columns: Vec<String>,
    },
    /// A NOT NULL column without a default is not in the model: inserts fail.
    RequiredColumnNotInModel {
        model: String,
        table: String,
        column: String,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::MissingTable { model, table } => {
                write!(f, "{model}: table {table:?} does not exist")
            }
            Drift::MissingColumn {
                model,
                table,
                column,
            } => write!(f, "{model}: column {table:?}.{column:?} does not exist"),
            Drift::TypeMismatch {
                model,
                table,
                column,
                model_type,
                database_type,
            } => write!(
                f,
                "{model}: column {table:?}.{column:?} is {database_type} in the database, {model_type} in the model"
            ),
            Drift::Nullability {
                model,
                table,
                column,
                model_nullable,
            } => write!(
                f,
                "{model}: column {table:?}.{column:?} is {} in the database, {} in the model",
                if *model_nullable { "NOT NULL" } else { "nullable" },
                if *model_nullable { "an Option" } else { "not an Option" },
            ),
            Drift::PrimaryKey {
                model,
                table,
                model_key,
                database_key,
            } => write!(
                f,
                "{model}: primary key of {table:?} is ({}) in the database, ({}) in the model",
                database_key.join(", "),
                model_key.join(", ")
            ),
            Drift::MissingForeignKey {
                model,
                relation,
                table,
                columns,
                target_table,
                target_columns,
            } => write!(
                f,
                "{model}.{relation}: no foreign key {table:?} ({}) -> {target_table:?} ({})",
                columns.join(", "),
                target_columns.join(", ")
            ),
            Drift::RequiredColumnNotInModel {
                model,
                table,
                column,
            } => write!(
                f,
                "{model}: column {table:?}.{column:?} is NOT NULL without a default but not in the model (inserts fail)"
            ),
        }
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every difference found, model by model.
    pub drift: Vec<Drift>,
}

impl Report {
    /// Whether the models match the database.
    pub fn is_clean(&self) -> bool {
        self.drift.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.drift.is_empty() {
            return writeln!(f, "models match the database");
        }
        writeln!(f, "{} difference(s):", self.drift.len())?;
        for d in &self.drift {
            writeln!(f, "- {d}")?;
        }
        Ok(())
    }
}

/// Compares `models` to schema `schema` of the database behind `db` (the models'
/// own `schema` attribute is not consulted: the schema checked is the one named here).
pub async fn check(db: &Db, schema: &str, models: &[&'static ModelMeta]) -> Result<Report> {
    let catalog = introspect(db, schema).await?;
    check_catalog(&catalog, models)
}

/// [`check`] against a catalog already read.
pub fn check_catalog(catalog: &Catalog, models: &[&'static ModelMeta]) -> Result<Report> {
    let mut drift = Vec::new();
    for meta in models {
        check_model(catalog, meta, &mut drift)?;
    }
    Ok(Report { drift })
}

fn check_model(catalog: &Catalog, meta: &'static ModelMeta, out: &mut Vec<Drift>) -> Result<()> {
    let model = meta.name.to_owned();
    let Some(table) = catalog.table(meta.table) else {
        out.push(Drift::MissingTable {
            model,
            table: meta.table.to_owned(),
        });
        return Ok(());
    };
    for col in meta.columns {
        let Some(db_col) = table.column(col.name) else {
            out.push(Drift::MissingColumn {
                model: model.clone(),
                table: table.name.clone(),
                column: col.name.to_owned(),
            });
            continue;
        };
        let model_type = (col.sql_type)();
        if !same_type(&model_type, &db_col.ty.display) {
            out.push(Drift::TypeMismatch {
                model: model.clone(),
                table: table.name.clone(),
                column: col.name.to_owned(),
                model_type: model_type.into_owned(),
                database_type: db_col.ty.display.clone(),
            });
        }
        if col.nullable != db_col.nullable {
            out.push(Drift::Nullability {
                model: model.clone(),
                table: table.name.clone(),
                column: col.name.to_owned(),
                model_nullable: col.nullable,
            });
        }
    }
    for db_col in &table.columns {
        let required =
            !db_col.nullable && db_col.default.is_none() && !db_col.identity && !db_col.generated;
        if required && meta.column(&db_col.name).is_none() {
            out.push(Drift::RequiredColumnNotInModel {
                model: model.clone(),
                table: table.name.clone(),
                column: db_col.name.clone(),
            });
        }
    }
    let model_key: Vec<String> = meta
        .primary_key_columns()
        .map(|c| c.name.to_owned())
        .collect();
    let database_key = table.primary_key_columns().to_vec();
    let same_key =
        model_key.len() == database_key.len() && model_key.iter().all(|c| database_key.contains(c));
    if !same_key {
        out.push(Drift::PrimaryKey {
            model: model.clone(),
            table: table.name.clone(),
            model_key,
            database_key,
        });
    }
    for rel in meta.relations {
        let target = (rel.target)();
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut expected = Vec::new();
        match rel.kind {
            RelationKind::BelongsTo => {
                let target_columns = rel.target_columns()?;
                expected.push((
                    meta.table,
                    strings(rel.source_columns),
                    target.table,
                    strings(&target_columns),
                ));
            }
            RelationKind::HasMany | RelationKind::HasOne => {
                let target_columns = rel.target_columns()?;
                expected.push((
                    target.table,
                    strings(&target_columns),
                    meta.table,
                    strings(rel.source_columns),
                ));
            }
            RelationKind::ManyToMany => {
                if let Some(through) = &rel.through {
                    let target_pk: Vec<&str> =
                        target.primary_key_columns().map(|c| c.name).collect();
                    expected.push((
                        through.table,
                        strings(through.source_columns),
                        meta.table,
                        strings(rel.source_columns),
                    ));
                    expected.push((
                        through.table,
                        strings(through.target_columns),
                        target.table,
                        strings(&target_pk),
                    ));
                }
            }
        }
        for (from, columns, to, target_columns) in expected {
            if !has_fk(catalog.table(from), &columns, to, &target_columns) {
                out.push(Drift::MissingForeignKey {
                    model: model.clone(),
                    relation: rel.name.to_owned(),
                    table: from.to_owned(),
                    columns,
                    target_table: to.to_owned(),
                    target_columns,
                });
            }
        }
    }
    Ok(())
}

/// Whether `table` has a foreign key pairing `columns` with `target_columns` of `target`
/// (the pairs as a set: the key's column order does not matter).
fn has_fk(
    table: Option<&Table>,
    columns: &[String],
    target: &str,
    target_columns: &[String],
) -> bool {
    let wanted: BTreeSet<(&String, &String)> = columns.iter().zip(target_columns).collect();
    table.is_some_and(|t| {
        t.foreign_keys.iter().any(|fk| {
            fk.target_table == target
                && fk.columns.len() == columns.len()
                && fk
                    .columns
                    .iter()
                    .zip(&fk.target_columns)
                    .collect::<BTreeSet<_>>()
                    == wanted
        })
    })
}

/// Whether a model's DDL type and the database's `format_type` name the same type.
/// A model type without modifiers (`numeric`) accepts any (`numeric(10,2)`).
pub fn same_type(model: &str, database: &str) -> bool {
    let (m_base, m_mods, m_dims) = canonical(model);
    let (d_base, d_mods, d_dims) = canonical(database);
    m_base == d_base && m_dims == d_dims && (m_mods.is_none() || m_mods == d_mods)
}

/// (base name with aliases resolved, modifiers, array dimensions).
pub(crate) fn canonical(ty: &str) -> (String, Option<String>, usize) {
    let mut t = ty.trim().to_owned();
    let mut dims = 0;
    while let Some(stripped) = t.strip_suffix("[]") {
        t = stripped.trim_end().to_owned();
        dims += 1;
    }
    let quoted = t.starts_with('"');
    if !quoted {
        t = t.to_ascii_lowercase();
    }
    let (base, mods) = match (t.find('('), t.find(')')) {
        (Some(open), Some(close)) if open < close && !quoted => {
            let base = format!("{} {}", t[..open].trim(), t[close + 1..].trim());
            (
                base.trim().to_owned(),
                Some(t[open + 1..close].replace(' ', "")),
            )
        }
        _ => (t, None),
    };
    let base = match base.as_str() {
        "int" | "int4" | "serial" | "serial4" => "integer",
        "int2" | "smallserial" | "serial2" => "smallint",
        "int8" | "bigserial" | "serial8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
        "timestamp" | "timestamp without time zone" => "timestamp without time zone",
        "timetz" | "time with time zone" => "time with time zone",
        "time" | "time without time zone" => "time without time zone",
        "varchar" | "character varying" => "character varying",
        "char" | "bpchar" | "character" => "character",
        "decimal" => "numeric",
        other => other,
    }
    .to_owned();
    (base, mods, dims)
}

/// A generated file that differs from the one on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDrift {
    /// The file name.
    pub file: String,
    /// A line diff (`-` on disk, `+` generated), or what is missing.
    pub diff: String,
}

/// Compares the `.rs` files in `dir` to `generated`: changed, missing and extra files.
pub fn compare_dir(generated: &Generated, dir: &Path) -> Result<Vec<FileDrift>> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") {
            on_disk.insert(name);
        }
    }
    let mut out = Vec::new();
    for (name, text) in &generated.files {
        if !on_disk.contains(name) {
            out.push(FileDrift {
                file: name.clone(),
                diff: "missing: the database has it, the directory does not".to_owned(),
            });
            continue;
        }
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).map_err(io(&path))?;
        if current != *text {
            out.push(FileDrift {
                file: name.clone(),
                diff: line_diff(&current, text),
            });
        }
    }
    for name in on_disk {
        if !generated.files.contains_key(&name) {
            out.push(FileDrift {
                diff: "extra: the directory has it, the database does not".to_owned(),
                file: name,
            });
        }
    }
    Ok(out)
}

/// A minimal line diff (longest common subsequence): changed lines only, each with
/// `-` (old) or `+` (new) and its line number.
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+{:>5} {}\n", j + 1, b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{:>5} {}\n", i + 1, a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        assert!(same_type("timestamptz", "timestamp with time zone"));
        assert!(same_type("bigint", "bigint"));
        assert!(same_type("text[]", "text[]"));
        assert!(same_type("numeric", "numeric(10,2)"));
        assert!(same_type("varchar(20)", "character varying(20)"));
        assert!(same_type("timestamptz(3)", "timestamp(3) with time zone"));
        assert!(!same_type("text", "character varying(20)"));
        assert!(!same_type("integer", "bigint"));
        assert!(!same_type("integer[]", "integer"));
    }

    #[test]
    fn diff() {
        assert_eq!(line_diff("a\nb\nc\n", "a\nx\nc\n"), "+    2 x\n-    2 b\n");
    }
}
