//! Relations inferred from foreign keys, and junction tables.
//!
//! - Every foreign key between two models gives a `belongs_to` on the referencing
//!   model (key columns in constraint order) and, on the referenced model, a `has_one`
//!   when the key columns are the referencing table's primary key or a unique key,
//!   else a `has_many`.
//! - A **junction table** is a table with exactly two foreign keys whose columns are
//!   disjoint and together are exactly its primary key or a unique key. With no other
//!   column, both foreign keys pointing at primary keys of models, and no table
//!   referencing it, it gets no model: each side gets a `many_to_many` through it (a
//!   table joining a model to itself gives that model two, one per direction). A
//!   junction with other ("payload") columns stays a model of its own, and says so.
//!
//! Relation names, each then claimed in the model's namespace (columns first; a taken
//! name gets `_2`, `_3`, ... in this order: `belongs_to` by constraint name, then
//! `has_one`/`has_many` by referencing table and constraint name, then
//! `many_to_many` by junction table and direction):
//!
//! | relation | name |
//! |---|---|
//! | `belongs_to`, one column `x_id` | `x` (`author_id` -> `author`, `reviewer_id` -> `reviewer`) |
//! | `belongs_to`, one column `id` or a composite key | the target table, singular (`warehouse`) |
//! | `belongs_to`, any other column `c` | `c_<target singular>` (`referred_by` -> `referred_by_customer`) |
//! | `has_many` / `has_one` | the referencing table (singular for `has_one`); when that table has several foreign keys to this model, or refers to itself: `<table>_by_<belongs_to name>` (`documents_by_author`) |
//! | `many_to_many` | the target table (`tags`); when the model has several `many_to_many` to the same target: the plural of the target side's `belongs_to` name (`friends`) |

use std::collections::HashMap;

use crate::catalog::{Catalog, ForeignKey, Table};
use crate::generate::names::{field_ident, plural, singular, snake, Namer};
use crate::generate::{Model, Options, Rel, MAX_KEY};

/// What inference found besides relations.
pub struct Inferred {
    /// Lines for `mod.rs` about tables that got no model.
    pub notes: Vec<String>,
    /// Tables that are pure junctions (no model of their own).
    pub junctions: Vec<String>,
}

/// A foreign key usable as a relation between two models.
struct Edge<'a> {
    source: usize,
    target: usize,
    fk: &'a ForeignKey,
}

/// A pure junction: source side `a`, target side `b` (constraint-name order).
struct Junction<'a> {
    table: &'a Table,
    a: &'a ForeignKey,
    b: &'a ForeignKey,
}

/// Adds the relations to `models` and reports the junction tables.
pub fn infer(catalog: &Catalog, models: &mut [Model], options: &Options) -> Inferred {
    let index: HashMap<String, usize> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.table.clone(), i))
        .collect();
    let mut notes = Vec::new();
    let mut junctions: Vec<Junction> = Vec::new();
    let mut model_notes: Vec<(usize, String)> = Vec::new();
    for t in &catalog.tables {
        let Some((a, b)) = junction_pair(t) else {
            continue;
        };
        let payload: Vec<&str> = t
            .columns
            .iter()
            .filter(|c| !a.columns.contains(&c.name) && !b.columns.contains(&c.name))
            .map(|c| c.name.as_str())
            .collect();
        let why_not = if !payload.is_empty() {
            Some(format!(
                "it has payload columns ({}), so it is a model of its own; reach the other \
                 side through its belongs_to relations",
                payload.join(", ")
            ))
        } else {
            [a, b]
                .into_iter()
                .find_map(|fk| m2m_side_problem(catalog, t, fk, models, &index))
        };
        match why_not {
            None => junctions.push(Junction { table: t, a, b }),
            Some(reason) => {
                let note = format!(
                    "junction of {:?} and {:?}: {reason}",
                    a.target_table, b.target_table
                );
                match index.get(&t.name) {
                    Some(&i) => model_notes.push((i, note)),
                    None => notes.push(format!("{:?}: {note}", t.name)),
                }
            }
        }
    }
    let junction_names: Vec<String> = junctions.iter().map(|j| j.table.name.clone()).collect();

    // Foreign keys between models (junctions excluded).
    let mut edges: Vec<Edge> = Vec::new();
    for t in &catalog.tables {
        let Some(&source) = index.get(&t.name) else {
            continue;
        };
        if junction_names.contains(&t.name) {
            continue;
        }
        for fk in &t.foreign_keys {
            match edge_problem(catalog, models, &index, &junction_names, source, fk) {
                Ok(target) => edges.push(Edge { source, target, fk }),
                Err(reason) => model_notes.push((
                    source,
                    format!("foreign key {:?} has no relation: {reason}", fk.name),
                )),
            }
        }
    }

    let mut planned: Vec<Vec<(String, Rel)>> = (0..models.len()).map(|_| Vec::new()).collect();
    for e in &edges {
        planned[e.source].push(belongs_to(models, e));
    }
    let mut inverse: Vec<&Edge> = edges.iter().collect();
    inverse.sort_by(|x, y| {
        (&models[x.source].table, &x.fk.name).cmp(&(&models[y.source].table, &y.fk.name))
    });
    for e in inverse {
        let siblings = edges
            .iter()
            .filter(|o| o.source == e.source && o.target == e.target)
            .count();
        planned[e.target].push(has(
            catalog,
            models,
            e,
            siblings > 1 || e.source == e.target,
        ));
    }
    let mut linked = Vec::new();
    for j in &junctions {
        let (Some(&ia), Some(&ib)) = (index.get(&j.a.target_table), index.get(&j.b.target_table))
        else {
            continue;
        };
        let several = ia == ib
            || junctions.iter().any(|o| {
                !std::ptr::eq(o, j)
                    && ((o.a.target_table == j.a.target_table
                        && o.b.target_table == j.b.target_table)
                        || (o.a.target_table == j.b.target_table
                            && o.b.target_table == j.a.target_table))
            });
        planned[ia].push(many_to_many(
            catalog, models, j, j.a, j.b, ia, ib, several, options,
        ));
        let pos_a = planned[ia].len() - 1;
        planned[ib].push(many_to_many(
            catalog, models, j, j.b, j.a, ib, ia, several, options,
        ));
        let pos_b = planned[ib].len() - 1;
        linked.push((j.table.name.as_str(), ia, pos_a, ib, pos_b));
    }
    // Claim names: columns first, then relations in the documented order.
    for (i, rels) in planned.into_iter().enumerate() {
        let mut namer = Namer::default();
        for f in &models[i].fields {
            namer.reserve(&f.ident);
        }
        for (base, mut rel) in rels {
            rel.ident = namer.claim(&field_ident(&base, "relation"));
            models[i].relations.push(rel);
        }
    }
    for (table, ia, pos_a, ib, pos_b) in linked {
        let (a, b) = (&models[ia], &models[ib]);
        notes.push(format!(
            "{table:?}: a junction table, no model: {}::{} and {}::{} (many_to_many)",
            a.ty,
            a.relations.get(pos_a).map_or("", |r| r.ident.as_str()),
            b.ty,
            b.relations.get(pos_b).map_or("", |r| r.ident.as_str()),
        ));
    }
    for (i, note) in model_notes {
        models[i].notes.push(note);
    }
    Inferred {
        notes,
        junctions: junction_names,
    }
}

/// The two foreign keys of a junction table, if it is one.
fn junction_pair(t: &Table) -> Option<(&ForeignKey, &ForeignKey)> {
    let [a, b] = t.foreign_keys.as_slice() else {
        return None;
    };
    if a.columns.iter().any(|c| b.columns.contains(c)) {
        return None;
    }
    let both: Vec<String> = a.columns.iter().chain(&b.columns).cloned().collect();
    t.is_unique_set(&both).then_some((a, b))
}

/// Why a junction's foreign key cannot be a side of a `many_to_many`, if it cannot.
fn m2m_side_problem(
    catalog: &Catalog,
    junction: &Table,
    fk: &ForeignKey,
    models: &[Model],
    index: &HashMap<String, usize>,
) -> Option<String> {
    if fk.target_schema != catalog.schema {
        return Some(format!("{:?} is in another schema", fk.target_table));
    }
    let Some(&target) = index.get(&fk.target_table) else {
        return Some(format!("{:?} has no model", fk.target_table));
    };
    let pk: Vec<&String> = models[target]
        .fields
        .iter()
        .filter(|f| f.primary_key)
        .map(|f| &f.column)
        .collect();
    if pk.len() != fk.target_columns.len() || !pk.iter().all(|c| fk.target_columns.contains(c)) {
        return Some(format!(
            "foreign key {:?} does not reference the primary key of {:?} (many_to_many joins primary keys)",
            fk.name, fk.target_table
        ));
    }
    if fk
        .columns
        .iter()
        .any(|c| c.contains(',') || c.trim() != c.as_str())
    {
        return Some(format!(
            "a column of {:?} holds a comma or outer spaces, which a many_to_many column list cannot spell",
            fk.name
        ));
    }
    let referenced = catalog.tables.iter().any(|t| {
        t.foreign_keys
            .iter()
            .any(|f| f.target_table == junction.name && f.target_schema == catalog.schema)
    });
    referenced.then(|| "other tables reference it, so it is a model of its own".to_owned())
}

/// The target model of a foreign key usable as a relation, or why it is not usable.
fn edge_problem(
    catalog: &Catalog,
    models: &[Model],
    index: &HashMap<String, usize>,
    junctions: &[String],
    source: usize,
    fk: &ForeignKey,
) -> Result<usize, String> {
    if fk.target_schema != catalog.schema {
        return Err(format!(
            "it references {:?}.{:?}, outside the schema",
            fk.target_schema, fk.target_table
        ));
    }
    let target = match index.get(&fk.target_table) {
        Some(&t) if !junctions.contains(&fk.target_table) => t,
        _ => return Err(format!("{:?} has no model", fk.target_table)),
    };
    if fk.columns.len() > MAX_KEY {
        return Err(format!("a key of more than {MAX_KEY} columns"));
    }
    for (c, tc) in fk.columns.iter().zip(&fk.target_columns) {
        let (Some(f), Some(tf)) = (models[source].field(c), models[target].field(tc)) else {
            return Err(format!("column {c:?} or {tc:?} is left out"));
        };
        if !f.rust.key {
            return Err(format!(
                "column {c:?} is a {} (not a key type of matrx-orm)",
                f.rust.ty
            ));
        }
        if f.rust.ty != tf.rust.ty {
            return Err(format!(
                "column {c:?} is a {} but {tc:?} is a {}; a relation key pairs equal types",
                f.rust.ty, tf.rust.ty
            ));
        }
    }
    Ok(target)
}

/// Idents of the fields of `model` for `columns`, as a name list.
fn field_list(model: &Model, columns: &[String]) -> String {
    columns
        .iter()
        .filter_map(|c| model.field(c))
        .map(|f| f.ident.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `columns` are the primary key of `model` in field order.
fn is_pk_in_order(model: &Model, columns: &[String]) -> bool {
    let pk: Vec<&String> = model
        .fields
        .iter()
        .filter(|f| f.primary_key)
        .map(|f| &f.column)
        .collect();
    pk.len() == columns.len() && pk.iter().zip(columns).all(|(a, b)| *a == b)
}

fn belongs_to_base(fk: &ForeignKey) -> String {
    let target = singular(&snake(&fk.target_table));
    match fk.columns.as_slice() {
        [one] => {
            let col = snake(one);
            match col.strip_suffix("_id") {
                Some(stem) if !stem.is_empty() => stem.to_owned(),
                _ if col == "id" || col.is_empty() => target,
                _ => format!("{col}_{target}"),
            }
        }
        _ => target,
    }
}

fn cols(columns: &[String]) -> String {
    columns.join(", ")
}

fn belongs_to(models: &[Model], e: &Edge) -> (String, Rel) {
    let source = &models[e.source];
    let target = &models[e.target];
    let mut args = vec![("key", field_list(source, &e.fk.columns))];
    if !is_pk_in_order(target, &e.fk.target_columns) {
        args.push(("references", field_list(target, &e.fk.target_columns)));
    }
    let rel = Rel {
        ident: String::new(),
        kind: "belongs_to",
        one: true,
        target: target.ty.clone(),
        args,
        doc: format!(
            "The {:?} row this one references: ({}) -> ({}).",
            target.table,
            cols(&e.fk.columns),
            cols(&e.fk.target_columns)
        ),
    };
    (belongs_to_base(e.fk), rel)
}

fn has(catalog: &Catalog, models: &[Model], e: &Edge, qualify_name: bool) -> (String, Rel) {
    let source = &models[e.source];
    let target = &models[e.target];
    let unique = catalog
        .table(&source.table)
        .is_some_and(|t| t.is_unique_set(&e.fk.columns));
    let table = snake(&source.table);
    let mut base = if unique { singular(&table) } else { table };
    if qualify_name {
        base = format!("{base}_by_{}", belongs_to_base(e.fk));
    }
    let mut args = vec![("foreign_key", field_list(source, &e.fk.columns))];
    if !is_pk_in_order(target, &e.fk.target_columns) {
        args.push(("references", field_list(target, &e.fk.target_columns)));
    }
    let rel = Rel {
        ident: String::new(),
        kind: if unique { "has_one" } else { "has_many" },
        one: unique,
        target: source.ty.clone(),
        args,
        doc: format!(
            "The {:?} row{} referencing this one by ({}){}.",
            source.table,
            if unique { "" } else { "s" },
            cols(&e.fk.columns),
            if unique { ", a unique key" } else { "" },
        ),
    };
    (base, rel)
}

/// The junction's columns of `fk`, ordered as the referenced primary key's fields.
fn in_pk_order(target: &Model, fk: &ForeignKey) -> Vec<String> {
    target
        .fields
        .iter()
        .filter(|f| f.primary_key)
        .filter_map(|f| {
            fk.target_columns
                .iter()
                .position(|c| *c == f.column)
                .map(|i| fk.columns[i].clone())
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn many_to_many(
    catalog: &Catalog,
    models: &[Model],
    j: &Junction,
    source_fk: &ForeignKey,
    target_fk: &ForeignKey,
    source: usize,
    target: usize,
    several: bool,
    options: &Options,
) -> (String, Rel) {
    let source = &models[source];
    let target = &models[target];
    let mut args = vec![("through", j.table.name.clone())];
    if options.qualify {
        args.push(("through_schema", catalog.schema.clone()));
    }
    args.push(("source", in_pk_order(source, source_fk).join(", ")));
    args.push(("target", in_pk_order(target, target_fk).join(", ")));
    let base = if several {
        plural(&belongs_to_base(target_fk))
    } else {
        snake(&target.table)
    };
    let rel = Rel {
        ident: String::new(),
        kind: "many_to_many",
        one: false,
        target: target.ty.clone(),
        args,
        doc: format!(
            "The {:?} rows linked through junction table {:?} ({}) -> ({}).",
            target.table,
            j.table.name,
            cols(&source_fk.columns),
            cols(&target_fk.columns)
        ),
    };
    (base, rel)
}
