//! From a [`Catalog`] to model source files: one file per model, `enums.rs` for
//! PostgreSQL enums, and `mod.rs`.
//!
//! `names` turns SQL names into Rust names, `types` maps column types, `relations`
//! infers relations and junction tables, `emit` writes the files as rustfmt would.
//! The output depends only on the catalog and the options, so the same schema always
//! gives byte-identical files.

mod emit;
pub mod names;
mod relations;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::catalog::{Catalog, PgType, Table};
use crate::error::{Error, Result};
use names::{field_ident, singular, snake, type_ident, Namer};
use types::RustType;

/// What to do with a column whose type has no Rust type in matrx-orm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unsupported {
    /// Fail, naming every such column (the default).
    #[default]
    Error,
    /// Leave the column out of its model, with a comment saying so. A key column
    /// cannot be left out: its table gets no model.
    Skip,
}

/// Generation options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The schema read.
    pub schema: String,
    /// The output directory as the user wrote it (shown in the regenerate command).
    pub out: String,
    /// Unsupported column types.
    pub unsupported: Unsupported,
    /// Write `#[orm(schema = ..)]` (and `through_schema`) so the models do not depend
    /// on the connection's `search_path`.
    pub qualify: bool,
}

impl Options {
    /// Options for `schema`, written to `out`, with the defaults.
    pub fn new(schema: impl Into<String>, out: impl Into<String>) -> Options {
        Options {
            schema: schema.into(),
            out: out.into(),
            unsupported: Unsupported::Error,
            qualify: false,
        }
    }

    /// The command that regenerates the files (no database URL: it may hold a password).
    pub fn command(&self) -> String {
        let mut args = vec![
            "matrx-orm".to_owned(),
            "generate".to_owned(),
            "--schema".to_owned(),
            shell_word(&self.schema),
            "--out".to_owned(),
            shell_word(&self.out),
        ];
        if self.unsupported == Unsupported::Skip {
            args.push("--unsupported skip".to_owned());
        }
        if self.qualify {
            args.push("--qualify".to_owned());
        }
        args.join(" ")
    }
}

fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The generated files, by file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// File name (`customer.rs`, `mod.rs`) to contents.
    pub files: BTreeMap<String, String>,
}

impl Generated {
    /// Writes every file into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, text) in &self.files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        Ok(())
    }
}

/// A model to write.
#[derive(Debug)]
struct Model {
    table: String,
    ty: String,
    module: String,
    fields: Vec<Field>,
    relations: Vec<Rel>,
    notes: Vec<String>,
}

impl Model {
    fn field(&self, column: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.column == column)
    }
}

/// A column field.
#[derive(Debug)]
struct Field {
    column: String,
    ident: String,
    rust: RustType,
    display: String,
    nullable: bool,
    primary_key: bool,
    auto: bool,
    default: Option<String>,
    unique: bool,
    index: bool,
    notes: Vec<String>,
}

/// A relation field.
#[derive(Debug)]
struct Rel {
    ident: String,
    kind: &'static str,
    one: bool,
    target: String,
    args: Vec<(&'static str, String)>,
    doc: String,
}

/// A PostgreSQL enum to write.
#[derive(Debug)]
struct Enum {
    sql: String,
    ty: String,
    variants: Vec<(String, String)>,
}

/// Generates the model files for `catalog`.
pub fn generate(catalog: &Catalog, options: &Options) -> Result<Generated> {
    if catalog.tables.is_empty() {
        return Err(Error::EmptySchema(catalog.schema.clone()));
    }
    let mut types = Namer::default();
    let mut modules = Namer::default();
    modules.reserve("enums");
    modules.reserve("mod");
    let mut type_of_table = HashMap::new();
    let mut module_of_table = HashMap::new();
    for (i, t) in catalog.tables.iter().enumerate() {
        let singular = singular(&snake(&t.name));
        let fallback = format!("Table{}", i + 1);
        type_of_table.insert(
            t.name.clone(),
            types.claim_type(&type_ident(&singular, &fallback)),
        );
        let module = field_ident(&singular, &format!("table_{}", i + 1));
        module_of_table.insert(t.name.clone(), modules.claim(&module));
    }
    let enums = plan_enums(catalog, &mut types);
    let enum_type = |name: &str| {
        enums
            .iter()
            .find(|e| e.sql == name)
            .map(|e| format!("super::{}", e.ty))
    };

    // Column types first: every unsupported column is reported at once.
    let mut unsupported = Vec::new();
    let mut rust_types: HashMap<(&str, &str), RustType> = HashMap::new();
    for t in &catalog.tables {
        for c in &t.columns {
            match types::rust_type(&c.ty, &enum_type) {
                Some(r) => {
                    rust_types.insert((&t.name, &c.name), r);
                }
                None => unsupported.push(format!(
                    "{:?}.{:?} ({})",
                    t.name,
                    c.name,
                    describe(&c.ty.resolved, &c.ty.display)
                )),
            }
        }
    }
    if !unsupported.is_empty() && options.unsupported == Unsupported::Error {
        return Err(Error::UnsupportedTypes(unsupported));
    }

    let mut skipped: Vec<String> = Vec::new();
    let mut models: Vec<Model> = Vec::new();
    for t in &catalog.tables {
        match model_for(t, &rust_types, options) {
            Ok(mut model) => {
                model.ty = type_of_table[&t.name].clone();
                model.module = module_of_table[&t.name].clone();
                models.push(model);
            }
            Err(reason) => skipped.push(format!("{:?}: {reason}", t.name)),
        }
    }
    let inferred = relations::infer(catalog, &mut models, options);
    skipped.extend(inferred.notes);
    models.retain(|m| !inferred.junctions.contains(&m.table));

    let header = emit::header(catalog, options);
    let mut files = BTreeMap::new();
    for m in &models {
        files.insert(
            format!("{}.rs", names::unraw(&m.module)),
            emit::model_file(&header, m, options),
        );
    }
    if !enums.is_empty() {
        files.insert("enums.rs".to_owned(), emit::enums_file(&header, &enums));
    }
    skipped.sort();
    files.insert(
        "mod.rs".to_owned(),
        emit::mod_file(&header, &models, &enums, &skipped),
    );
    Ok(Generated { files })
}

fn describe(ty: &PgType, display: &str) -> String {
    match ty {
        PgType::Other(name) if name != display => format!("{display}: {name}"),
        _ => display.to_owned(),
    }
}

fn plan_enums(catalog: &Catalog, types: &mut Namer) -> Vec<Enum> {
    catalog
        .enums
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let ty = types.claim_type(&type_ident(&e.name, &format!("Enum{}", i + 1)));
            let mut variants = Namer::default();
            let variants = e
                .labels
                .iter()
                .enumerate()
                .map(|(j, label)| {
                    let v = variants.claim_type(&type_ident(label, &format!("V{}", j + 1)));
                    (v, label.clone())
                })
                .collect();
            Enum {
                sql: e.name.clone(),
                ty,
                variants,
            }
        })
        .collect()
}

/// The largest key the derive supports.
const MAX_KEY: usize = 4;

/// The model of a table, or why it has none.
fn model_for(
    t: &Table,
    rust_types: &HashMap<(&str, &str), RustType>,
    options: &Options,
) -> std::result::Result<Model, String> {
    let pk = t.primary_key_columns();
    if pk.is_empty() {
        return Err("no primary key; #[derive(Model)] needs one".to_owned());
    }
    if pk.len() > MAX_KEY {
        return Err(format!(
            "a primary key of {} columns; the derive supports at most {MAX_KEY}",
            pk.len()
        ));
    }
    for col in pk {
        match rust_types.get(&(t.name.as_str(), col.as_str())) {
            None => {
                return Err(format!(
                    "primary-key column {col:?} has an unsupported type"
                ))
            }
            Some(r) if !r.key => {
                return Err(format!(
                    "primary-key column {col:?} is a {} (not a key type of matrx-orm)",
                    r.ty
                ))
            }
            Some(_) => {}
        }
    }
    let mut namer = Namer::default();
    let mut fields = Vec::new();
    let mut notes = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        let Some(rust) = rust_types.get(&(t.name.as_str(), c.name.as_str())) else {
            notes.push(format!(
                "column {:?} ({}) is left out: matrx-orm has no Rust type for it{}",
                c.name,
                c.ty.display,
                if c.nullable || c.default.is_some() {
                    ""
                } else {
                    " (it is NOT NULL without a default: inserts through this model fail)"
                }
            ));
            continue;
        };
        let ident = namer.claim(&field_ident(&c.name, &format!("column_{}", i + 1)));
        let serial = c
            .default
            .as_deref()
            .is_some_and(|d| d.starts_with("nextval("));
        let mut field_notes = Vec::new();
        if c.generated {
            field_notes.push(
                "a generated column: the database computes it; the derive cannot mark a \
                 column read-only, so do not write it"
                    .to_owned(),
            );
        }
        let single = |cols: &[String]| cols.len() == 1 && cols[0] == c.name;
        let is_pk = pk.contains(&c.name);
        let unique = !(is_pk && pk.len() == 1) && t.uniques.iter().any(|u| single(&u.columns));
        let fk_column = t.foreign_keys.iter().any(|f| single(&f.columns));
        let index = !is_pk
            && !unique
            && !fk_column
            && t.indexes.iter().any(|ix| {
                !ix.unique
                    && !ix.partial
                    && ix.method == "btree"
                    && ix.columns.len() == 1
                    && ix.columns[0].as_deref() == Some(c.name.as_str())
            });
        fields.push(Field {
            column: c.name.clone(),
            ident,
            rust: rust.clone(),
            display: c.ty.display.clone(),
            nullable: c.nullable,
            primary_key: is_pk,
            auto: c.identity || c.default.is_some() || c.generated,
            default: c
                .default
                .clone()
                .filter(|_| !serial && !c.identity && !c.generated),
            unique,
            index,
            notes: field_notes,
        });
    }
    let order: Vec<&String> = fields
        .iter()
        .filter(|f| f.primary_key)
        .map(|f| &f.column)
        .collect();
    if order.iter().zip(pk).any(|(a, b)| *a != b) {
        notes.push(format!(
            "the primary key is ({}) but the derive takes key columns in field order, so \
             `Model::key` is ({})",
            pk.join(", "),
            order
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for u in &t.uniques {
        if u.columns.len() > 1 {
            notes.push(format!(
                "unique key {:?} ({}) is not expressible by #[orm(unique)] (one column only): \
                 keep it in a migration",
                u.name,
                u.columns.join(", ")
            ));
        }
    }
    for ix in &t.indexes {
        let cols = ix.plain_columns();
        let covered_by_fk = cols.as_ref().is_some_and(|cols| {
            t.foreign_keys.iter().any(|f| {
                f.columns
                    .iter()
                    .map(String::as_str)
                    .eq(cols.iter().copied())
            })
        });
        let expressed = fields.iter().any(|f| {
            f.index
                && cols.as_deref() == Some(&[f.column.as_str()][..])
                && !ix.partial
                && ix.method == "btree"
        });
        if covered_by_fk || expressed {
            continue;
        }
        let what = match cols {
            Some(cols) => cols.join(", "),
            None => "an expression".to_owned(),
        };
        notes.push(format!(
            "index {:?} ({what}{}{}) is not expressible by #[orm(index)] (one plain btree \
             column only): keep it in a migration",
            ix.name,
            if ix.method == "btree" {
                String::new()
            } else {
                format!(", {}", ix.method)
            },
            if ix.partial { ", partial" } else { "" },
        ));
    }
    let _ = options;
    Ok(Model {
        table: t.name.clone(),
        ty: String::new(),
        module: String::new(),
        fields,
        relations: Vec::new(),
        notes,
    })
}
