//! Autogenerate: the SQL that takes a live schema to what the models describe.
//!
//! The wanted schema is the library's own description of the models
//! ([`matrx_orm::ddl::table_defs`]: the tables `create_tables` would create, junction
//! tables included); the live one is the [`Catalog`] `introspect` reads. Both are
//! compared table by table, by name, within the one schema diffed (the models'
//! `schema` attributes are not consulted, and the SQL names no schema: it runs with
//! the `search_path` of whoever applies it). Columns compare by name, type (as
//! [`same_type`] does for `check`), nullability, default and identity; primary keys by
//! their ordered columns; unique constraints, foreign keys and indexes by their
//! columns (and target), never by name. Renames are not guessed: a renamed column is a
//! drop and an add.
//!
//! Each difference becomes a [`Step`] with the statements applying it and those
//! reverting it. Steps are ordered so that each statement finds what it needs: new
//! tables, then dropped foreign keys, dropped keys and indexes, column changes, new
//! keys, new foreign keys, new indexes, dropped columns, dropped tables. Steps that
//! lose data (a dropped table or column, a narrowing type change) are
//! [`destructive`](Step::destructive): unless allowed, they are written commented out
//! under a warning, in both files.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use matrx_orm::ddl::{table_defs, ColumnDef, ForeignKeyDef, IndexDef, TableDef};
use matrx_orm::migrate::DEFAULT_TABLE;
use matrx_orm::sql::{qualified, quote_ident};
use matrx_orm::{Db, ModelMeta, RelationKind};

use crate::catalog::{introspect, Catalog, Column, Table};
use crate::check::{canonical, same_type};
use crate::error::Result;

/// How [`diff`] writes its SQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Write destructive steps as live SQL instead of commented out.
    pub allow_destructive: bool,
}

/// One change: what it does, the statements applying it, those reverting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// One line saying what changes (`add column "orders"."note"`).
    pub summary: String,
    /// The statements that apply it.
    pub up: Vec<String>,
    /// The statements that revert it, in order.
    pub down: Vec<String>,
    /// Whether applying it can lose data.
    pub destructive: bool,
    phase: u8,
}

/// The steps from a live schema to the models; empty when they match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// The steps, in the order they apply.
    pub steps: Vec<Step>,
    /// The options it was made with.
    pub options: DiffOptions,
}

impl Diff {
    /// Whether the schema already matches the models.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The destructive steps.
    pub fn destructive(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.destructive)
    }

    /// The text of `up.sql`.
    pub fn up_sql(&self) -> String {
        self.render("", self.steps.iter().map(|s| (s, &s.up)))
    }

    /// The text of `down.sql`: each step's revert, last step first.
    pub fn down_sql(&self) -> String {
        self.render("revert: ", self.steps.iter().rev().map(|s| (s, &s.down)))
    }

    fn render<'a>(
        &self,
        prefix: &str,
        steps: impl Iterator<Item = (&'a Step, &'a Vec<String>)>,
    ) -> String {
        let mut out = String::new();
        for (step, statements) in steps {
            let commented = step.destructive && !self.options.allow_destructive;
            let _ = writeln!(out, "-- {prefix}{}", step.summary);
            if commented {
                out.push_str(
                    "-- WARNING: destructive (data is lost). Written commented out; \
                     uncomment it in up.sql and down.sql, or diff with --allow-destructive.\n",
                );
            }
            for statement in statements {
                let text = format!("{statement};");
                for line in text.lines() {
                    if commented {
                        out.push_str("-- ");
                    }
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Compares `models` with schema `schema` of the database behind `db`.
///
/// ```no_run
/// # use matrx_orm::Model;
/// # #[derive(Model, Debug)] #[orm(table = "tags")]
/// # pub struct Tag { #[orm(primary_key, auto)] pub id: i64, pub name: String }
/// # async fn demo(db: &matrx_orm::Db) -> matrx_orm_cli::Result<()> {
/// use matrx_orm_cli::migrate::{diff, new_migration, DiffOptions};
///
/// let diff = diff(db, "public", &[Tag::META], DiffOptions::default()).await?;
/// if !diff.is_empty() {
///     new_migration("migrations", "sync_models", &diff.up_sql(), &diff.down_sql())?;
/// }
/// # Ok(()) }
/// ```
pub async fn diff(
    db: &Db,
    schema: &str,
    models: &[&'static ModelMeta],
    options: DiffOptions,
) -> Result<Diff> {
    let catalog = introspect(db, schema).await?;
    diff_catalog(&catalog, models, options)
}

/// [`diff`] against a catalog already read.
pub fn diff_catalog(
    catalog: &Catalog,
    models: &[&'static ModelMeta],
    options: DiffOptions,
) -> Result<Diff> {
    let mut wanted = table_defs(models)?;
    for def in &mut wanted {
        def.schema = None;
        for fk in &mut def.foreign_keys {
            fk.target_schema = None;
        }
    }
    let implied = implied_foreign_keys(models)?;
    let mut steps = Vec::new();
    for def in &wanted {
        match catalog.table(&def.name) {
            None => create_table(def, &mut steps),
            Some(live) => alter_table(def, live, &implied, &mut steps),
        }
    }
    for live in &catalog.tables {
        let kept = wanted.iter().any(|d| d.name == live.name);
        if !kept && live.name != DEFAULT_TABLE {
            drop_table(catalog, live, &mut steps);
        }
    }
    steps.sort_by_key(|s| s.phase);
    Ok(Diff { steps, options })
}

const CREATE_TABLE: u8 = 0;
const DROP_FOREIGN_KEY: u8 = 1;
const DROP_KEY: u8 = 2;
const COLUMN: u8 = 3;
const ADD_KEY: u8 = 4;
const ADD_FOREIGN_KEY: u8 = 5;
const ADD_INDEX: u8 = 6;
const DROP_COLUMN: u8 = 7;
const DROP_TABLE: u8 = 8;

fn step(phase: u8, summary: String, up: Vec<String>, down: Vec<String>) -> Step {
    Step {
        summary,
        up,
        down,
        destructive: false,
        phase,
    }
}

fn q(name: &str) -> String {
    quote_ident(name)
}

fn list<S: AsRef<str>>(columns: &[S]) -> String {
    columns
        .iter()
        .map(|c| q(c.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Foreign keys a has-many or has-one relation implies on its target's table (the
/// target model may not declare the belongs-to side): they are kept, not dropped.
fn implied_foreign_keys(models: &[&'static ModelMeta]) -> Result<Vec<(String, FkShape)>> {
    let mut out = Vec::new();
    for meta in models {
        for rel in meta.relations {
            if matches!(rel.kind, RelationKind::HasMany | RelationKind::HasOne) {
                let target = (rel.target)();
                let columns: Vec<String> = rel
                    .target_columns()?
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect();
                let target_columns: Vec<String> =
                    rel.source_columns.iter().map(|c| (*c).to_owned()).collect();
                out.push((
                    target.table.to_owned(),
                    FkShape::new(&columns, meta.table, &target_columns),
                ));
            }
        }
    }
    Ok(out)
}

/// A foreign key as compared: its target and its column pairs as a set.
#[derive(Debug, PartialEq, Eq)]
struct FkShape {
    target: String,
    pairs: BTreeSet<(String, String)>,
}

impl FkShape {
    fn new(columns: &[String], target: &str, target_columns: &[String]) -> FkShape {
        FkShape {
            target: target.to_owned(),
            pairs: columns
                .iter()
                .cloned()
                .zip(target_columns.iter().cloned())
                .collect(),
        }
    }
}

fn create_table(def: &TableDef, steps: &mut Vec<Step>) {
    let name = def.qualified_name();
    steps.push(step(
        CREATE_TABLE,
        format!("create table {name}"),
        vec![def.create_sql(false)],
        vec![format!("DROP TABLE {name}")],
    ));
    for fk in &def.foreign_keys {
        add_foreign_key(&name, fk, steps);
    }
    for ix in &def.indexes {
        add_index(&name, ix, steps);
    }
}

fn add_foreign_key(table: &str, fk: &ForeignKeyDef, steps: &mut Vec<Step>) {
    steps.push(step(
        ADD_FOREIGN_KEY,
        format!(
            "add foreign key {table} ({}) -> {}",
            list(&fk.columns),
            q(&fk.target_table)
        ),
        vec![fk.add_sql(table)],
        vec![format!(
            "ALTER TABLE {table} DROP CONSTRAINT {}",
            q(&fk.name)
        )],
    ));
}

fn add_index(table: &str, ix: &IndexDef, steps: &mut Vec<Step>) {
    steps.push(step(
        ADD_INDEX,
        format!("add index {} on {table}", q(&ix.name)),
        vec![ix.create_sql(table, false)],
        vec![format!("DROP INDEX {}", q(&ix.name))],
    ));
}

fn alter_table(def: &TableDef, live: &Table, implied: &[(String, FkShape)], steps: &mut Vec<Step>) {
    let table = def.qualified_name();
    for col in &def.columns {
        match live.column(&col.name) {
            None => add_column(&table, col, steps),
            Some(existing) => alter_column(&table, col, existing, steps),
        }
    }
    for existing in &live.columns {
        if def.column(&existing.name).is_none() {
            let mut s = step(
                DROP_COLUMN,
                format!("drop column {table}.{}", q(&existing.name)),
                vec![format!(
                    "ALTER TABLE {table} DROP COLUMN {}",
                    q(&existing.name)
                )],
                vec![format!(
                    "ALTER TABLE {table} ADD COLUMN {}",
                    live_column_sql(existing)
                )],
            );
            s.destructive = true;
            steps.push(s);
        }
    }
    primary_key(&table, def, live, steps);
    uniques(&table, def, live, steps);
    foreign_keys(&table, def, live, implied, steps);
    indexes(&table, def, live, steps);
}

fn add_column(table: &str, col: &ColumnDef, steps: &mut Vec<Step>) {
    // The unique constraint is its own step (compared by columns, like any other).
    let plain = ColumnDef {
        unique: false,
        ..col.clone()
    };
    let mut up = Vec::new();
    if !col.nullable && col.default.is_none() && !col.identity {
        up.push(format!(
            "-- NOT NULL without a default: fails if {table} has rows; add a DEFAULT or fill it in steps"
        ));
    }
    up.push(format!("ALTER TABLE {table} ADD COLUMN {}", plain.sql()));
    let up = vec![up.join("\n")];
    steps.push(step(
        COLUMN,
        format!("add column {table}.{}", q(&col.name)),
        up,
        vec![format!("ALTER TABLE {table} DROP COLUMN {}", q(&col.name))],
    ));
}

fn alter_column(table: &str, col: &ColumnDef, live: &Column, steps: &mut Vec<Step>) {
    let alter = format!("ALTER TABLE {table} ALTER COLUMN {}", q(&col.name));
    let name = format!("{table}.{}", q(&col.name));
    if !same_type(&col.sql_type, &live.ty.display) {
        let to = |ty: &str| format!("{alter} TYPE {ty} USING {}::{ty}", q(&col.name));
        let mut s = step(
            COLUMN,
            format!(
                "change type of {name}: {} -> {}",
                live.ty.display, col.sql_type
            ),
            vec![to(&col.sql_type)],
            vec![to(&live.ty.display)],
        );
        s.destructive = !widens(&live.ty.display, &col.sql_type);
        steps.push(s);
    }
    if col.nullable != live.nullable {
        let (up, down) = if col.nullable {
            ("DROP NOT NULL", "SET NOT NULL")
        } else {
            ("SET NOT NULL", "DROP NOT NULL")
        };
        steps.push(step(
            COLUMN,
            format!(
                "make {name} {}",
                if col.nullable { "nullable" } else { "NOT NULL" }
            ),
            vec![format!("{alter} {up}")],
            vec![format!("{alter} {down}")],
        ));
    }
    // Identity before default: a column cannot have both.
    let live_default = live.default.as_deref();
    if live.identity && !col.identity && !col.auto {
        steps.push(step(
            COLUMN,
            format!("drop identity of {name}"),
            vec![format!("{alter} DROP IDENTITY")],
            vec![format!("{alter} ADD GENERATED BY DEFAULT AS IDENTITY")],
        ));
    } else if col.identity && !live.identity && live_default.is_none() {
        steps.push(step(
            COLUMN,
            format!("make {name} an identity column"),
            vec![format!("{alter} ADD GENERATED BY DEFAULT AS IDENTITY")],
            vec![format!("{alter} DROP IDENTITY")],
        ));
    }
    let restore = |d: Option<&str>| match d {
        Some(d) => format!("{alter} SET DEFAULT {d}"),
        None => format!("{alter} DROP DEFAULT"),
    };
    match (col.default.as_deref(), live_default) {
        (Some(wanted), found)
            if found.map(normalize_default) != Some(normalize_default(wanted)) =>
        {
            steps.push(step(
                COLUMN,
                format!("set default of {name}"),
                vec![format!("{alter} SET DEFAULT {wanted}")],
                vec![restore(found)],
            ))
        }
        (None, Some(found)) if !col.auto && !live.identity => steps.push(step(
            COLUMN,
            format!("drop default of {name}"),
            vec![format!("{alter} DROP DEFAULT")],
            vec![restore(Some(found))],
        )),
        _ => {}
    }
}

fn primary_key(table: &str, def: &TableDef, live: &Table, steps: &mut Vec<Step>) {
    let found = live.primary_key_columns();
    if found == def.primary_key.as_slice() {
        return;
    }
    let new_name = q(&format!("{}_pkey", def.name));
    if let Some(pk) = &live.primary_key {
        steps.push(step(
            DROP_KEY,
            format!("drop primary key {} of {table}", q(&pk.name)),
            vec![format!(
                "ALTER TABLE {table} DROP CONSTRAINT {}",
                q(&pk.name)
            )],
            vec![format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} PRIMARY KEY ({})",
                q(&pk.name),
                list(&pk.columns)
            )],
        ));
    }
    if !def.primary_key.is_empty() {
        steps.push(step(
            ADD_KEY,
            format!("add primary key ({}) to {table}", list(&def.primary_key)),
            vec![format!(
                "ALTER TABLE {table} ADD CONSTRAINT {new_name} PRIMARY KEY ({})",
                list(&def.primary_key)
            )],
            vec![format!("ALTER TABLE {table} DROP CONSTRAINT {new_name}")],
        ));
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|c| b.contains(c))
}

fn uniques(table: &str, def: &TableDef, live: &Table, steps: &mut Vec<Step>) {
    let wanted: Vec<Vec<String>> = def
        .columns
        .iter()
        .filter(|c| c.unique)
        .map(|c| vec![c.name.clone()])
        .collect();
    for cols in &wanted {
        if !live.uniques.iter().any(|u| same_set(&u.columns, cols)) {
            let name = q(&format!("{}_{}_key", def.name, cols.join("_")));
            steps.push(step(
                ADD_KEY,
                format!("add unique ({}) to {table}", list(cols)),
                vec![format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({})",
                    list(cols)
                )],
                vec![format!("ALTER TABLE {table} DROP CONSTRAINT {name}")],
            ));
        }
    }
    for u in &live.uniques {
        if !wanted.iter().any(|cols| same_set(&u.columns, cols)) {
            // A unique constraint, or a unique index without one: drop whichever it is.
            steps.push(step(
                DROP_KEY,
                format!(
                    "drop unique {} ({}) of {table}",
                    q(&u.name),
                    list(&u.columns)
                ),
                vec![
                    format!(
                        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                        q(&u.name)
                    ),
                    format!("DROP INDEX IF EXISTS {}", q(&u.name)),
                ],
                vec![format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} UNIQUE ({})",
                    q(&u.name),
                    list(&u.columns)
                )],
            ));
        }
    }
}

fn foreign_keys(
    table: &str,
    def: &TableDef,
    live: &Table,
    implied: &[(String, FkShape)],
    steps: &mut Vec<Step>,
) {
    let live_shapes: Vec<FkShape> = live
        .foreign_keys
        .iter()
        .map(|fk| FkShape::new(&fk.columns, &fk.target_table, &fk.target_columns))
        .collect();
    let wanted: Vec<FkShape> = def
        .foreign_keys
        .iter()
        .map(|fk| FkShape::new(&fk.columns, &fk.target_table, &fk.target_columns))
        .collect();
    for (fk, shape) in def.foreign_keys.iter().zip(&wanted) {
        if !live_shapes.contains(shape) {
            add_foreign_key(table, fk, steps);
        }
    }
    for (fk, shape) in live.foreign_keys.iter().zip(&live_shapes) {
        let implied_here = implied.iter().any(|(t, s)| *t == def.name && s == shape);
        if !wanted.contains(shape) && !implied_here {
            steps.push(drop_live_foreign_key(table, fk));
        }
    }
}

fn drop_live_foreign_key(table: &str, fk: &crate::catalog::ForeignKey) -> Step {
    step(
        DROP_FOREIGN_KEY,
        format!("drop foreign key {} of {table}", q(&fk.name)),
        vec![format!(
            "ALTER TABLE {table} DROP CONSTRAINT {}",
            q(&fk.name)
        )],
        vec![format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
            q(&fk.name),
            list(&fk.columns),
            q(&fk.target_table),
            list(&fk.target_columns)
        )],
    )
}

/// Indexes the models can describe: plain columns, no predicate, not unique, btree.
fn comparable(ix: &crate::catalog::Index) -> Option<Vec<String>> {
    if ix.unique || ix.partial || ix.method != "btree" {
        return None;
    }
    ix.plain_columns()
        .map(|cols| cols.into_iter().map(str::to_owned).collect())
}

fn indexes(table: &str, def: &TableDef, live: &Table, steps: &mut Vec<Step>) {
    for ix in &def.indexes {
        if !live
            .indexes
            .iter()
            .any(|l| comparable(l).as_ref() == Some(&ix.columns))
        {
            add_index(table, ix, steps);
        }
    }
    for l in &live.indexes {
        let Some(cols) = comparable(l) else {
            continue;
        };
        if !def.indexes.iter().any(|ix| ix.columns == cols) {
            steps.push(step(
                DROP_KEY,
                format!("drop index {} of {table}", q(&l.name)),
                vec![format!("DROP INDEX {}", q(&l.name))],
                vec![format!(
                    "CREATE INDEX {} ON {table} ({})",
                    q(&l.name),
                    list(&cols)
                )],
            ));
        }
    }
}

/// A live column's definition, to add it back.
fn live_column_sql(c: &Column) -> String {
    let mut out = format!("{} {}", q(&c.name), c.ty.display);
    if let Some(d) = &c.default {
        out.push_str(&format!(" DEFAULT {d}"));
    } else if c.identity {
        out.push_str(" GENERATED BY DEFAULT AS IDENTITY");
    }
    if !c.nullable {
        out.push_str(" NOT NULL");
    }
    out
}

fn drop_table(catalog: &Catalog, live: &Table, steps: &mut Vec<Step>) {
    let table = qualified(None, &live.name);
    for fk in &live.foreign_keys {
        let mut s = drop_live_foreign_key(&table, fk);
        s.summary.push_str(" (its table is dropped)");
        s.destructive = true;
        steps.push(s);
    }
    let mut parts: Vec<String> = live.columns.iter().map(live_column_sql).collect();
    if let Some(pk) = &live.primary_key {
        parts.push(format!(
            "CONSTRAINT {} PRIMARY KEY ({})",
            q(&pk.name),
            list(&pk.columns)
        ));
    }
    for u in &live.uniques {
        parts.push(format!(
            "CONSTRAINT {} UNIQUE ({})",
            q(&u.name),
            list(&u.columns)
        ));
    }
    let mut down = vec![format!(
        "CREATE TABLE {table} (\n    {}\n)",
        parts.join(",\n    ")
    )];
    for ix in &live.indexes {
        if let Some(cols) = comparable(ix) {
            down.push(format!(
                "CREATE INDEX {} ON {table} ({})",
                q(&ix.name),
                list(&cols)
            ));
        }
    }
    let mut s = step(
        DROP_TABLE,
        format!(
            "drop table {table} (not in the models of schema {:?})",
            catalog.schema
        ),
        vec![format!("DROP TABLE {table}")],
        down,
    );
    s.destructive = true;
    steps.push(s);
}

/// Whether changing a column from type `from` to `to` keeps every value.
fn widens(from: &str, to: &str) -> bool {
    let (f, f_mods, f_dims) = canonical(from);
    let (t, t_mods, t_dims) = canonical(to);
    if f_dims != t_dims {
        return false;
    }
    let int_rank = |b: &str, mods: &Option<String>| match (b, mods) {
        ("smallint", _) => Some(1),
        ("integer", _) => Some(2),
        ("bigint", _) => Some(3),
        ("numeric", None) => Some(4),
        _ => None,
    };
    if let (Some(a), Some(b)) = (int_rank(&f, &f_mods), int_rank(&t, &t_mods)) {
        return a <= b;
    }
    let length = |m: &Option<String>| m.as_deref().and_then(|m| m.parse::<u64>().ok());
    match (f.as_str(), t.as_str()) {
        ("real", "double precision") => true,
        ("character varying" | "character" | "text", "text") => true,
        ("character varying", "character varying") => {
            t_mods.is_none()
                || matches!((length(&f_mods), length(&t_mods)), (Some(a), Some(b)) if a <= b)
        }
        ("numeric", "numeric") => t_mods.is_none(),
        _ => false,
    }
}

/// A default expression as compared: casts (`'x'::text`), case and spaces outside
/// quotes, and quotes around a number (`'-1'::integer`) removed, so the model's
/// `'x'` matches the server's `'x'::text`.
fn normalize_default(expr: &str) -> String {
    let mut out = String::new();
    let mut chars = expr.chars().peekable();
    let mut in_quote = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_quote = !in_quote;
            out.push(c);
            continue;
        }
        if in_quote {
            out.push(c);
            continue;
        }
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            // The cast's type: words, spaces, dots, quotes, modifiers, array brackets.
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || matches!(n, '_' | ' ' | '.' | '"' | '[' | ']') {
                    chars.next();
                } else if n == '(' {
                    // A modifier list `(10,2)`, not a call.
                    let rest: String = chars.clone().take_while(|&x| x != ')').collect();
                    if rest[1..]
                        .chars()
                        .all(|x| x.is_ascii_digit() || x == ',' || x == ' ')
                    {
                        for _ in 0..=rest.len() {
                            chars.next();
                        }
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
            continue;
        }
        if !c.is_whitespace() {
            out.extend(c.to_lowercase());
        }
    }
    while out.starts_with('(') && out.ends_with(')') && balanced(&out[1..out.len() - 1]) {
        out = out[1..out.len() - 1].to_owned();
    }
    if let Some(inner) = out.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        if inner.parse::<f64>().is_ok() {
            return inner.to_owned();
        }
    }
    out
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_compare_without_casts() {
        assert_eq!(normalize_default("'x'::text"), normalize_default("'x'"));
        assert_eq!(normalize_default("'-1'::integer"), normalize_default("-1"));
        assert_eq!(normalize_default("now()"), normalize_default("NOW( )"));
        assert_eq!(
            normalize_default("'a b'::character varying(20)"),
            normalize_default("'a b'")
        );
        assert_eq!(normalize_default("(0)::numeric(10,2)"), "0");
        assert_ne!(normalize_default("'A'"), normalize_default("'a'"));
        assert_ne!(normalize_default("1"), normalize_default("2"));
    }

    #[test]
    fn widening() {
        assert!(widens("integer", "bigint"));
        assert!(widens("character varying(20)", "text"));
        assert!(widens("character varying(20)", "varchar(40)"));
        assert!(widens("real", "double precision"));
        assert!(!widens("bigint", "integer"));
        assert!(!widens("text", "varchar(10)"));
        assert!(!widens("character varying(40)", "varchar(20)"));
        assert!(!widens("integer", "text"));
    }
}
