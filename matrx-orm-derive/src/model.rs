//! The checked description of a model, built from the derive input: every cross-field
//! rule (primary key present, key fields exist, key arities agree, slot types) is
//! enforced here, so code generation cannot fail.

use proc_macro2::{Ident, Span};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Field, Fields, Result, Type, Visibility};

use crate::attrs::{self, ColumnAttrs, FieldAttrs, RelationAttr, RelationKind};
use crate::names::{field_ident, join, screaming_snake_case, snake_case, unraw, NameList};
use crate::types::{self, SlotKind};

/// The largest key arity the runtime's `Key` trait supports (tuples up to four).
const MAX_KEY_ARITY: usize = 4;

/// A model: the struct and its columns and relations, in field order.
pub struct ModelDef {
    pub ident: Ident,
    pub vis: Visibility,
    pub table: String,
    pub schema: Option<String>,
    pub columns: Vec<ColumnDef>,
    pub relations: Vec<RelationDef>,
}

/// A column field.
pub struct ColumnDef {
    pub ident: Ident,
    /// The field type as written.
    pub ty: Type,
    /// The field type without one outer `Option`.
    pub value_ty: Type,
    pub nullable: bool,
    pub name: String,
    pub primary_key: bool,
    pub auto: bool,
    pub default_sql: Option<String>,
    pub unique: bool,
    pub indexed: bool,
    pub sql_type: Option<String>,
}

/// A relation field, with its key lists resolved.
pub struct RelationDef {
    pub ident: Ident,
    pub kind: RelationKind,
    /// The field type (`One<T>` / `Many<T>`).
    pub slot_ty: Type,
    /// `T`.
    pub target: Type,
    /// `RelationMeta::source_columns`.
    pub source_columns: Vec<String>,
    /// `RelationMeta::target_fields`.
    pub target_fields: Vec<String>,
    pub through: Option<ThroughDef>,
    /// How the source side of the join key is read.
    pub source_key: SourceKey,
    /// How the target side of the join key is read.
    pub target_key: TargetKey,
    /// The attribute string naming the keys that must match the target (`key`,
    /// `foreign_key`, many-to-many `target`): type errors of the join key point there.
    pub key_span: Span,
}

/// The junction table of a many-to-many relation.
pub struct ThroughDef {
    pub schema: Option<String>,
    pub table: String,
    pub source_columns: Vec<String>,
    pub target_columns: Vec<String>,
}

/// The source side of a relation key.
pub enum SourceKey {
    /// The source model's primary key (`Model::key`).
    PrimaryKey,
    /// These column fields (indexes into `ModelDef::columns`), through `KeyField`.
    Fields(Vec<usize>),
}

/// The target side of a relation key.
pub enum TargetKey {
    /// The target model's primary key (`Model::key`).
    PrimaryKey,
    /// These fields of the target, through `KeyField`.
    Fields(Vec<Ident>),
    /// Not read (many-to-many rows carry the source key from the junction table).
    Unused,
}

impl ModelDef {
    /// The Rust type name (`Order`).
    pub fn name(&self) -> String {
        unraw(&self.ident)
    }

    /// Indexes into `columns` of the primary-key columns, in field order.
    pub fn primary_key(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.columns[i].primary_key)
            .collect()
    }

    /// Builds and checks the model from the derive input.
    pub fn from_input(input: &DeriveInput) -> Result<Self> {
        reject_generics(input)?;
        let fields = named_fields(input)?;
        let struct_attrs = attrs::parse_struct_attrs(&input.attrs)?;
        let mut model = ModelDef {
            ident: input.ident.clone(),
            vis: input.vis.clone(),
            table: struct_attrs
                .table
                .map_or_else(|| snake_case(&unraw(&input.ident)), |t| t.value()),
            schema: struct_attrs.schema.map(|s| s.value()),
            columns: Vec::new(),
            relations: Vec::new(),
        };
        let pending = model.collect_fields(fields)?;
        model.check_columns()?;
        model.resolve_relations(pending)?;
        model.check_const_names()?;
        Ok(model)
    }

    /// Parses every field; columns are stored, relations returned for a second pass
    /// (they refer to columns, including ones declared after them).
    fn collect_fields<'a>(
        &mut self,
        fields: impl Iterator<Item = &'a Field>,
    ) -> Result<Vec<(&'a Field, RelationAttr)>> {
        let mut errors = Errors::default();
        let mut pending = Vec::new();
        for field in fields {
            if let Err(e) = self.collect_field(field, &mut pending) {
                errors.push(e);
            }
        }
        errors.finish()?;
        Ok(pending)
    }

    fn collect_field<'a>(
        &mut self,
        field: &'a Field,
        pending: &mut Vec<(&'a Field, RelationAttr)>,
    ) -> Result<()> {
        let FieldAttrs { column, relation } = attrs::parse_field_attrs(&field.attrs)?;
        let Some(relation) = relation else {
            self.columns.push(column_def(field, column)?);
            return Ok(());
        };
        if let Some(span) = column.first_span {
            return Err(Error::new(
                span,
                "a relation field is not a column and takes no column attributes",
            ));
        }
        pending.push((field, relation));
        Ok(())
    }

    fn check_columns(&self) -> Result<()> {
        for (i, column) in self.columns.iter().enumerate() {
            if let Some(other) = self.columns[..i].iter().find(|c| c.name == column.name) {
                return Err(Error::new(
                    column.ident.span(),
                    format!(
                        "fields `{}` and `{}` both map to column `{}`",
                        unraw(&other.ident),
                        unraw(&column.ident),
                        column.name
                    ),
                ));
            }
        }
        let pk = self.primary_key().len();
        if pk == 0 {
            return Err(Error::new(
                self.ident.span(),
                format!(
                    "`{}` has no primary key: mark a field #[orm(primary_key)]",
                    self.name()
                ),
            ));
        }
        if pk > MAX_KEY_ARITY {
            return Err(Error::new(
                self.ident.span(),
                format!(
                    "`{}` has a primary key of {pk} columns; at most {MAX_KEY_ARITY} are supported",
                    self.name()
                ),
            ));
        }
        Ok(())
    }

    fn resolve_relations(&mut self, pending: Vec<(&Field, RelationAttr)>) -> Result<()> {
        let mut errors = Errors::default();
        for (field, rel) in pending {
            match self.relation_def(field, rel) {
                Ok(def) => self.relations.push(def),
                Err(e) => errors.push(e),
            }
        }
        errors.finish()
    }

    /// Every associated constant (column and relation) needs a distinct name.
    fn check_const_names(&self) -> Result<()> {
        let idents = self
            .columns
            .iter()
            .map(|c| &c.ident)
            .chain(self.relations.iter().map(|r| &r.ident));
        let mut seen: Vec<(String, &Ident)> = Vec::new();
        for ident in idents {
            let name = screaming_snake_case(&unraw(ident));
            if let Some((_, other)) = seen.iter().find(|(n, _)| *n == name) {
                return Err(Error::new(
                    ident.span(),
                    format!(
                        "fields `{}` and `{}` would both get the constant `{name}`",
                        unraw(other),
                        unraw(ident)
                    ),
                ));
            }
            seen.push((name, ident));
        }
        Ok(())
    }

    fn relation_def(&self, field: &Field, rel: RelationAttr) -> Result<RelationDef> {
        let ident = field.ident.clone().expect("named field");
        let target = slot_target(field, rel.kind)?;
        let mut def = RelationDef {
            ident,
            kind: rel.kind,
            slot_ty: field.ty.clone(),
            target,
            source_columns: Vec::new(),
            target_fields: Vec::new(),
            through: None,
            source_key: SourceKey::PrimaryKey,
            target_key: TargetKey::PrimaryKey,
            key_span: rel.span,
        };
        match rel.kind {
            RelationKind::BelongsTo => self.belongs_to(&mut def, rel)?,
            RelationKind::HasMany | RelationKind::HasOne => self.has(&mut def, rel)?,
            RelationKind::ManyToMany => self.many_to_many(&mut def, rel)?,
        }
        Ok(def)
    }

    fn belongs_to(&self, def: &mut RelationDef, rel: RelationAttr) -> Result<()> {
        let key = rel.key.expect("checked by attrs");
        let columns = self.key_columns(&key)?;
        check_arity(&key, &rel.references, "key", "references")?;
        def.key_span = key.span;
        def.source_columns = columns
            .iter()
            .map(|&i| self.columns[i].name.clone())
            .collect();
        def.source_key = SourceKey::Fields(columns);
        if let Some(references) = rel.references {
            def.target_fields = bare_names(&references);
            def.target_key = TargetKey::Fields(target_idents(&references)?);
        }
        Ok(())
    }

    fn has(&self, def: &mut RelationDef, rel: RelationAttr) -> Result<()> {
        let foreign_key = rel.foreign_key.expect("checked by attrs");
        def.key_span = foreign_key.span;
        match &rel.references {
            Some(references) => {
                check_arity(&foreign_key, &rel.references, "foreign_key", "references")?;
                let columns = self.key_columns(references)?;
                def.source_columns = columns
                    .iter()
                    .map(|&i| self.columns[i].name.clone())
                    .collect();
                def.source_key = SourceKey::Fields(columns);
            }
            None => {
                self.check_pk_arity(&foreign_key, rel.kind, "foreign_key")?;
                def.source_columns = self.pk_column_names();
            }
        }
        def.target_fields = bare_names(&foreign_key);
        def.target_key = TargetKey::Fields(target_idents(&foreign_key)?);
        Ok(())
    }

    fn many_to_many(&self, def: &mut RelationDef, rel: RelationAttr) -> Result<()> {
        let source = rel.source.expect("checked by attrs");
        let target = rel.target.expect("checked by attrs");
        self.check_pk_arity(&source, rel.kind, "source")?;
        if target.len() > MAX_KEY_ARITY {
            return Err(Error::new(
                target.span,
                format!("at most {MAX_KEY_ARITY} key columns are supported"),
            ));
        }
        def.source_columns = self.pk_column_names();
        def.target_key = TargetKey::Unused;
        def.key_span = target.span;
        def.through = Some(ThroughDef {
            schema: rel.through_schema.map(|s| s.value()),
            table: rel.through.expect("checked by attrs").value(),
            source_columns: source.names,
            target_columns: target.names,
        });
        Ok(())
    }

    /// Resolves names of this struct's fields to column indexes.
    fn key_columns(&self, names: &NameList) -> Result<Vec<usize>> {
        if names.len() > MAX_KEY_ARITY {
            return Err(Error::new(
                names.span,
                format!("at most {MAX_KEY_ARITY} key columns are supported"),
            ));
        }
        names
            .names
            .iter()
            .map(|name| self.column_index(name, names.span))
            .collect()
    }

    fn column_index(&self, name: &str, span: Span) -> Result<usize> {
        let bare = name.strip_prefix("r#").unwrap_or(name);
        if let Some(i) = self.columns.iter().position(|c| unraw(&c.ident) == bare) {
            return Ok(i);
        }
        Err(Error::new(
            span,
            format!(
                "`{name}` is not a column field of `{}`; its column fields are: {}",
                self.name(),
                join(self.columns.iter().map(|c| unraw(&c.ident)))
            ),
        ))
    }

    fn check_pk_arity(&self, names: &NameList, kind: RelationKind, what: &str) -> Result<()> {
        let pk = self.primary_key();
        if names.len() == pk.len() {
            return Ok(());
        }
        Err(Error::new(
            names.span,
            format!(
                "{} `{what}` lists {} name(s) but `{}`'s primary key ({}) has {}",
                kind.attr_name(),
                names.len(),
                self.name(),
                join(pk.iter().map(|&i| unraw(&self.columns[i].ident))),
                pk.len()
            ),
        ))
    }

    fn pk_column_names(&self) -> Vec<String> {
        self.primary_key()
            .into_iter()
            .map(|i| self.columns[i].name.clone())
            .collect()
    }
}

fn reject_generics(input: &DeriveInput) -> Result<()> {
    let generics = &input.generics;
    if generics.params.is_empty() && generics.where_clause.is_none() {
        return Ok(());
    }
    Err(Error::new(
        generics.span(),
        "#[derive(Model)] does not support generic structs (type, lifetime or const parameters)",
    ))
}

fn named_fields(input: &DeriveInput) -> Result<impl Iterator<Item = &Field>> {
    let message = "#[derive(Model)] needs a struct with named fields";
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Ok(named.named.iter()),
            Fields::Unnamed(f) => Err(Error::new(
                f.span(),
                format!("{message}, not a tuple struct"),
            )),
            Fields::Unit => Err(Error::new(
                input.ident.span(),
                format!("{message}, not a unit struct"),
            )),
        },
        Data::Enum(e) => Err(Error::new(
            e.enum_token.span,
            format!("{message}, not an enum"),
        )),
        Data::Union(u) => Err(Error::new(
            u.union_token.span,
            format!("{message}, not a union"),
        )),
    }
}

fn column_def(field: &Field, attrs: ColumnAttrs) -> Result<ColumnDef> {
    let ident = field.ident.clone().expect("named field");
    if let Some((kind, _)) = types::slot(&field.ty) {
        return Err(Error::new(
            field.ty.span(),
            format!(
                "field `{}` of type `{}<_>` needs a relation attribute, e.g. #[orm({}(...))]",
                unraw(&ident),
                kind.name(),
                if kind == SlotKind::One {
                    "belongs_to"
                } else {
                    "has_many"
                }
            ),
        ));
    }
    let inner = types::option_inner(&field.ty);
    if attrs.primary_key && inner.is_some() {
        return Err(Error::new(
            field.ty.span(),
            "a primary-key field cannot be an `Option`",
        ));
    }
    Ok(ColumnDef {
        name: attrs.column.map_or_else(|| unraw(&ident), |c| c.value()),
        ident,
        ty: field.ty.clone(),
        value_ty: inner.unwrap_or(&field.ty).clone(),
        nullable: inner.is_some(),
        primary_key: attrs.primary_key,
        auto: attrs.auto || attrs.default.is_some(),
        default_sql: attrs.default.map(|d| d.value()),
        unique: attrs.unique,
        indexed: attrs.index,
        sql_type: attrs.sql_type.map(|s| s.value()),
    })
}

/// Checks the field type against the relation kind and returns the target type.
fn slot_target(field: &Field, kind: RelationKind) -> Result<Type> {
    let expected = match kind {
        RelationKind::BelongsTo | RelationKind::HasOne => SlotKind::One,
        RelationKind::HasMany | RelationKind::ManyToMany => SlotKind::Many,
    };
    match types::slot(&field.ty) {
        Some((found, target)) if found == expected && types::is_path(target) => Ok(target.clone()),
        Some((found, target)) if found == expected => {
            Err(Error::new(target.span(), "the target of a relation must be a model type (a path)"))
        }
        _ => Err(Error::new(
            field.ty.span(),
            format!(
                "a {} field must be of type `{}<Target>` (matrx_orm::{}), where Target is the related model",
                kind.attr_name(),
                expected.name(),
                expected.name()
            ),
        )),
    }
}

fn check_arity(
    left: &NameList,
    right: &Option<NameList>,
    left_name: &str,
    right_name: &str,
) -> Result<()> {
    match right {
        Some(right) if right.len() != left.len() => Err(Error::new(
            right.span,
            format!(
                "`{right_name}` lists {} name(s) but `{left_name}` lists {}; they pair up position by position",
                right.len(),
                left.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// Field names as `ColumnMeta::field` spells them (without `r#`).
fn bare_names(names: &NameList) -> Vec<String> {
    names
        .names
        .iter()
        .map(|n| n.strip_prefix("r#").unwrap_or(n).to_owned())
        .collect()
}

fn target_idents(names: &NameList) -> Result<Vec<Ident>> {
    if names.len() > MAX_KEY_ARITY {
        return Err(Error::new(
            names.span,
            format!("at most {MAX_KEY_ARITY} key columns are supported"),
        ));
    }
    names
        .names
        .iter()
        .map(|n| field_ident(n, names.span))
        .collect()
}

/// Collects errors so that one compilation reports every bad field.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn error(input: DeriveInput) -> String {
        match ModelDef::from_input(&input) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn builds_columns_and_relations() {
        let model = ModelDef::from_input(&parse_quote! {
            #[orm(schema = "shop")]
            pub struct OrderItem {
                #[orm(primary_key, auto)]
                id: i64,
                #[orm(column = "order_ref")]
                order_id: Option<i64>,
                #[orm(belongs_to(key = "order_id"))]
                order: One<Order>,
                #[orm(many_to_many(through = "item_tags", source = "item_id", target = "tag_id"))]
                tags: Many<Tag>,
            }
        })
        .unwrap();
        assert_eq!(model.table, "order_item");
        assert_eq!(model.schema.as_deref(), Some("shop"));
        assert_eq!(model.primary_key(), [0]);
        let order_ref = &model.columns[1];
        assert_eq!(
            (order_ref.name.as_str(), order_ref.nullable),
            ("order_ref", true)
        );
        assert_eq!(model.relations[0].source_columns, ["order_ref"]);
        assert!(matches!(model.relations[0].source_key, SourceKey::Fields(ref f) if f == &[1]));
        assert!(matches!(
            model.relations[0].target_key,
            TargetKey::PrimaryKey
        ));
        assert_eq!(model.relations[1].source_columns, ["id"]);
        assert!(matches!(model.relations[1].target_key, TargetKey::Unused));
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            error(parse_quote!(
                struct A(i64);
            )),
            "#[derive(Model)] needs a struct with named fields, not a tuple struct"
        );
        assert_eq!(
            error(parse_quote!(
                enum A {
                    X,
                }
            )),
            "#[derive(Model)] needs a struct with named fields, not an enum"
        );
        assert!(error(parse_quote!(
            struct A<T> {
                #[orm(primary_key)]
                id: T,
            }
        ))
        .contains("does not support generic"));
        assert_eq!(
            error(parse_quote!(
                struct Tag {
                    id: i64,
                }
            )),
            "`Tag` has no primary key: mark a field #[orm(primary_key)]"
        );
        assert_eq!(
            error(parse_quote!(
                struct A {
                    #[orm(primary_key)]
                    id: Option<i64>,
                }
            )),
            "a primary-key field cannot be an `Option`"
        );
    }

    #[test]
    fn column_errors() {
        assert_eq!(
            error(parse_quote!(
                struct A {
                    #[orm(primary_key)]
                    id: i64,
                    #[orm(column = "id")]
                    other: i64,
                }
            )),
            "fields `id` and `other` both map to column `id`"
        );
        assert!(error(parse_quote!(
            struct A {
                #[orm(primary_key)]
                id: i64,
                b: One<B>,
            }
        ))
        .starts_with("field `b` of type `One<_>` needs a relation attribute"));
        assert_eq!(
            error(parse_quote!(
                struct A {
                    #[orm(primary_key)]
                    id: i64,
                    #[orm(unique, belongs_to(key = "id"))]
                    b: One<B>,
                }
            )),
            "a relation field is not a column and takes no column attributes"
        );
    }

    #[test]
    fn relation_errors() {
        assert_eq!(
            error(parse_quote!(
                struct Order {
                    #[orm(primary_key)]
                    id: i64,
                    customer_id: i64,
                    #[orm(belongs_to(key = "customer"))]
                    customer: One<Customer>,
                }
            )),
            "`customer` is not a column field of `Order`; its column fields are: id, customer_id"
        );
        assert_eq!(
            error(parse_quote!(
                struct Stock {
                    #[orm(primary_key)]
                    id: i64,
                    code: i32,
                    #[orm(belongs_to(key = "code", references = "region, code"))]
                    w: One<Warehouse>,
                }
            )),
            "`references` lists 2 name(s) but `key` lists 1; they pair up position by position"
        );
        assert_eq!(
            error(parse_quote!(
                struct Order {
                    #[orm(primary_key)]
                    id: i64,
                    #[orm(has_many(foreign_key = "order_id, line"))]
                    items: Many<Item>,
                }
            )),
            "has_many `foreign_key` lists 2 name(s) but `Order`'s primary key (id) has 1"
        );
        assert_eq!(
            error(parse_quote!(
                struct Order {
                    #[orm(primary_key)]
                    region: String,
                    #[orm(primary_key)]
                    code: i32,
                    #[orm(many_to_many(through = "t", source = "a", target = "b"))]
                    tags: Many<Tag>,
                }
            )),
            "many_to_many `source` lists 1 name(s) but `Order`'s primary key (region, code) has 2"
        );
        assert!(error(parse_quote!(
            struct Order {
                #[orm(primary_key)]
                id: i64,
                #[orm(has_many(foreign_key = "order_id"))]
                items: One<Item>,
            }
        ))
        .starts_with("a has_many field must be of type `Many<Target>`"));
    }

    #[test]
    fn errors_of_several_fields_are_all_reported() {
        let message = error(parse_quote!(
            struct A {
                #[orm(primary_key, bogus)]
                id: i64,
                #[orm(belongs_to(key = "x", key = "y"))]
                b: One<B>,
            }
        ));
        assert_eq!(message.lines().count(), 2, "{message}");
    }

    #[test]
    fn constant_names_must_differ() {
        assert_eq!(
            error(parse_quote!(
                struct A {
                    #[orm(primary_key)]
                    a_b: i64,
                    aB: i64,
                }
            )),
            "fields `a_b` and `aB` would both get the constant `A_B`"
        );
    }
}
