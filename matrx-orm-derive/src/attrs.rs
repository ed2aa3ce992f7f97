//! Parsing of `#[orm(...)]` attributes into plain data (no cross-field checks here).

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{token, Attribute, Error, LitStr, Result, Token};

use crate::names::{join, NameList};

/// Keys accepted on the struct.
pub const STRUCT_KEYS: &[&str] = &["table", "schema"];

/// Keys accepted on a field.
pub const FIELD_KEYS: &[&str] = &[
    "primary_key",
    "auto",
    "default",
    "column",
    "unique",
    "index",
    "sql_type",
    "belongs_to",
    "has_many",
    "has_one",
    "many_to_many",
];

const BELONGS_TO_KEYS: &[&str] = &["key", "references"];
const HAS_KEYS: &[&str] = &["foreign_key", "references"];
const MANY_TO_MANY_KEYS: &[&str] = &["through", "through_schema", "source", "target"];

/// `#[orm(table = "...", schema = "...")]` on the struct.
#[derive(Default)]
pub struct StructAttrs {
    pub table: Option<LitStr>,
    pub schema: Option<LitStr>,
}

/// The column options of a field.
#[derive(Default)]
pub struct ColumnAttrs {
    pub primary_key: bool,
    pub auto: bool,
    pub default: Option<LitStr>,
    pub column: Option<LitStr>,
    pub unique: bool,
    pub index: bool,
    pub sql_type: Option<LitStr>,
    /// Where the first column option was written (for "relation fields take no column
    /// options").
    pub first_span: Option<Span>,
}

/// The four relation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    BelongsTo,
    HasMany,
    HasOne,
    ManyToMany,
}

impl RelationKind {
    /// The attribute name (`belongs_to`, ...).
    pub fn attr_name(self) -> &'static str {
        match self {
            RelationKind::BelongsTo => "belongs_to",
            RelationKind::HasMany => "has_many",
            RelationKind::HasOne => "has_one",
            RelationKind::ManyToMany => "many_to_many",
        }
    }

    fn from_attr_name(name: &str) -> Option<Self> {
        [
            Self::BelongsTo,
            Self::HasMany,
            Self::HasOne,
            Self::ManyToMany,
        ]
        .into_iter()
        .find(|k| k.attr_name() == name)
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            RelationKind::BelongsTo => BELONGS_TO_KEYS,
            RelationKind::HasMany | RelationKind::HasOne => HAS_KEYS,
            RelationKind::ManyToMany => MANY_TO_MANY_KEYS,
        }
    }

    fn example(self) -> &'static str {
        match self {
            RelationKind::BelongsTo => "belongs_to(key = \"customer_id\")",
            RelationKind::HasMany => "has_many(foreign_key = \"order_id\")",
            RelationKind::HasOne => "has_one(foreign_key = \"customer_id\")",
            RelationKind::ManyToMany => {
                "many_to_many(through = \"order_tags\", source = \"order_id\", target = \"tag_id\")"
            }
        }
    }
}

/// A relation attribute: its kind and arguments (which ones are set depends on the kind).
pub struct RelationAttr {
    pub kind: RelationKind,
    /// The span of the `belongs_to` / `has_many` / ... keyword.
    pub span: Span,
    /// `belongs_to(key)`: fields of this struct.
    pub key: Option<NameList>,
    /// `belongs_to`: fields of the target; `has_many`/`has_one`: fields of this struct.
    pub references: Option<NameList>,
    /// `has_many`/`has_one(foreign_key)`: fields of the target.
    pub foreign_key: Option<NameList>,
    /// `many_to_many(through)`: the junction table.
    pub through: Option<LitStr>,
    /// `many_to_many(through_schema)`.
    pub through_schema: Option<LitStr>,
    /// `many_to_many(source)`: junction columns holding this struct's key.
    pub source: Option<NameList>,
    /// `many_to_many(target)`: junction columns holding the target's key.
    pub target: Option<NameList>,
}

/// Everything written in the `#[orm(...)]` attributes of one field.
#[derive(Default)]
pub struct FieldAttrs {
    pub column: ColumnAttrs,
    pub relation: Option<RelationAttr>,
}

fn orm_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("orm"))
}

/// The key of a nested meta as written (`table`, or `a::b` for a path).
fn key_name(meta: &ParseNestedMeta) -> String {
    meta.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn unknown(meta: &ParseNestedMeta, place: &str, valid: &[&str]) -> Error {
    meta.error(format!(
        "unknown {place} attribute `{}`; expected one of: {}",
        key_name(meta),
        join(valid)
    ))
}

fn duplicate(meta: &ParseNestedMeta) -> Error {
    meta.error(format!("`{}` is given more than once", key_name(meta)))
}

/// Parses `key = "string"`, refusing an empty string and a second occurrence.
fn set_str(slot: &mut Option<LitStr>, meta: &ParseNestedMeta) -> Result<()> {
    if slot.is_some() {
        return Err(duplicate(meta));
    }
    let lit = string_value(meta)?;
    if lit.value().trim().is_empty() {
        return Err(Error::new(
            lit.span(),
            format!("`{}` cannot be empty", key_name(meta)),
        ));
    }
    *slot = Some(lit);
    Ok(())
}

fn string_value(meta: &ParseNestedMeta) -> Result<LitStr> {
    let name = key_name(meta);
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("`{name}` needs a value: {name} = \"...\"")));
    }
    meta.value()?.parse::<LitStr>().map_err(|e| {
        Error::new(
            e.span(),
            format!("`{name}` takes a string: {name} = \"...\""),
        )
    })
}

/// Parses `key = "a, b"` into a name list.
fn set_names(slot: &mut Option<NameList>, meta: &ParseNestedMeta) -> Result<()> {
    if slot.is_some() {
        return Err(duplicate(meta));
    }
    *slot = Some(NameList::parse(&string_value(meta)?)?);
    Ok(())
}

/// Parses a bare flag (`primary_key`), refusing a value and a second occurrence.
fn set_flag(slot: &mut bool, meta: &ParseNestedMeta) -> Result<()> {
    if !(meta.input.is_empty() || meta.input.peek(Token![,])) {
        return Err(meta.error(format!("`{}` takes no value", key_name(meta))));
    }
    if *slot {
        return Err(duplicate(meta));
    }
    *slot = true;
    Ok(())
}

/// Parses the struct's `#[orm(...)]` attributes.
pub fn parse_struct_attrs(attrs: &[Attribute]) -> Result<StructAttrs> {
    let mut out = StructAttrs::default();
    for attr in orm_attrs(attrs) {
        attr.parse_nested_meta(|meta| match key_name(&meta).as_str() {
            "table" => set_str(&mut out.table, &meta),
            "schema" => set_str(&mut out.schema, &meta),
            _ => Err(unknown(&meta, "struct", STRUCT_KEYS)),
        })?;
    }
    Ok(out)
}

/// Parses a field's `#[orm(...)]` attributes.
pub fn parse_field_attrs(attrs: &[Attribute]) -> Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in orm_attrs(attrs) {
        attr.parse_nested_meta(|meta| parse_field_key(&mut out, &meta))?;
    }
    Ok(out)
}

fn parse_field_key(out: &mut FieldAttrs, meta: &ParseNestedMeta) -> Result<()> {
    let name = key_name(meta);
    if let Some(kind) = RelationKind::from_attr_name(&name) {
        if let Some(previous) = &out.relation {
            return Err(meta.error(format!(
                "a field holds one relation; it is already `{}`",
                previous.kind.attr_name()
            )));
        }
        out.relation = Some(parse_relation(kind, meta)?);
        return Ok(());
    }
    let column = &mut out.column;
    column.first_span.get_or_insert(meta.path.span());
    match name.as_str() {
        "primary_key" => set_flag(&mut column.primary_key, meta),
        "auto" => set_flag(&mut column.auto, meta),
        "unique" => set_flag(&mut column.unique, meta),
        "index" => set_flag(&mut column.index, meta),
        "default" => set_str(&mut column.default, meta),
        "column" => set_str(&mut column.column, meta),
        "sql_type" => set_str(&mut column.sql_type, meta),
        _ => Err(unknown(meta, "field", FIELD_KEYS)),
    }
}

fn parse_relation(kind: RelationKind, meta: &ParseNestedMeta) -> Result<RelationAttr> {
    if !meta.input.peek(token::Paren) {
        return Err(meta.error(format!(
            "`{}` takes arguments, e.g. #[orm({})]",
            kind.attr_name(),
            kind.example()
        )));
    }
    let mut rel = RelationAttr {
        kind,
        span: meta.path.span(),
        key: None,
        references: None,
        foreign_key: None,
        through: None,
        through_schema: None,
        source: None,
        target: None,
    };
    meta.parse_nested_meta(|inner| parse_relation_key(&mut rel, &inner))?;
    check_required(&rel)?;
    Ok(rel)
}

fn parse_relation_key(rel: &mut RelationAttr, meta: &ParseNestedMeta) -> Result<()> {
    let name = key_name(meta);
    if !rel.kind.keys().contains(&name.as_str()) {
        return Err(unknown(meta, rel.kind.attr_name(), rel.kind.keys()));
    }
    match name.as_str() {
        "key" => set_names(&mut rel.key, meta),
        "references" => set_names(&mut rel.references, meta),
        "foreign_key" => set_names(&mut rel.foreign_key, meta),
        "through" => set_str(&mut rel.through, meta),
        "through_schema" => set_str(&mut rel.through_schema, meta),
        "source" => set_names(&mut rel.source, meta),
        _ => set_names(&mut rel.target, meta),
    }
}

fn check_required(rel: &RelationAttr) -> Result<()> {
    let missing = match rel.kind {
        RelationKind::BelongsTo => required(&[("key", rel.key.is_some())]),
        RelationKind::HasMany | RelationKind::HasOne => {
            required(&[("foreign_key", rel.foreign_key.is_some())])
        }
        RelationKind::ManyToMany => required(&[
            ("through", rel.through.is_some()),
            ("source", rel.source.is_some()),
            ("target", rel.target.is_some()),
        ]),
    };
    match missing {
        Some(key) => Err(Error::new(
            rel.span,
            format!(
                "`{}` needs `{key} = \"...\"`, e.g. #[orm({})]",
                rel.kind.attr_name(),
                rel.kind.example()
            ),
        )),
        None => Ok(()),
    }
}

fn required(keys: &[(&'static str, bool)]) -> Option<&'static str> {
    keys.iter()
        .find(|(_, present)| !present)
        .map(|(key, _)| *key)
}

/// Parses a `#[derive(FromRow)]` field's `#[orm(...)]` attributes: only
/// `column = "sql_name"`.
pub fn parse_from_row_field(attrs: &[Attribute]) -> Result<Option<LitStr>> {
    let mut column = None;
    for attr in orm_attrs(attrs) {
        attr.parse_nested_meta(|meta| match key_name(&meta).as_str() {
            "column" => set_str(&mut column, &meta),
            _ => Err(unknown(&meta, "FromRow field", &["column"])),
        })?;
    }
    Ok(column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn field(attrs: Vec<Attribute>) -> Result<FieldAttrs> {
        parse_field_attrs(&attrs)
    }

    fn err(attrs: Vec<Attribute>) -> String {
        match field(attrs) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn struct_attrs() {
        let attrs: Vec<Attribute> = vec![parse_quote!(#[orm(table = "orders", schema = "shop")])];
        let parsed = parse_struct_attrs(&attrs).unwrap();
        assert_eq!(parsed.table.unwrap().value(), "orders");
        assert_eq!(parsed.schema.unwrap().value(), "shop");

        let attrs: Vec<Attribute> = vec![parse_quote!(#[orm(tabel = "orders")])];
        let message = parse_struct_attrs(&attrs).err().unwrap().to_string();
        assert_eq!(
            message,
            "unknown struct attribute `tabel`; expected one of: table, schema"
        );

        let attrs: Vec<Attribute> = vec![parse_quote!(#[orm(table = "")])];
        assert!(parse_struct_attrs(&attrs).is_err());
    }

    #[test]
    fn column_attrs() {
        let parsed = field(vec![
            parse_quote!(#[orm(primary_key, auto)]),
            parse_quote!(#[orm(column = "sku_code", unique, index, sql_type = "varchar(20)")]),
            parse_quote!(#[serde(skip)]),
        ])
        .unwrap();
        let c = parsed.column;
        assert!(c.primary_key && c.auto && c.unique && c.index);
        assert_eq!(c.column.unwrap().value(), "sku_code");
        assert_eq!(c.sql_type.unwrap().value(), "varchar(20)");
        assert!(c.default.is_none());
        assert!(parsed.relation.is_none());
    }

    #[test]
    fn column_attr_errors() {
        assert!(err(vec![parse_quote!(#[orm(primary)])]).starts_with(
            "unknown field attribute `primary`; expected one of: primary_key, auto, default"
        ));
        assert_eq!(
            err(vec![parse_quote!(#[orm(unique, unique)])]),
            "`unique` is given more than once"
        );
        assert_eq!(
            err(vec![parse_quote!(#[orm(auto = true)])]),
            "`auto` takes no value"
        );
        assert_eq!(
            err(vec![parse_quote!(#[orm(column)])]),
            "`column` needs a value: column = \"...\""
        );
        assert_eq!(
            err(vec![parse_quote!(#[orm(column = 3)])]),
            "`column` takes a string: column = \"...\""
        );
    }

    #[test]
    fn relations() {
        let parsed = field(vec![
            parse_quote!(#[orm(belongs_to(key = "region, code", references = "region, code"))]),
        ])
        .unwrap();
        let rel = parsed.relation.unwrap();
        assert_eq!(rel.kind, RelationKind::BelongsTo);
        assert_eq!(rel.key.unwrap().names, ["region", "code"]);
        assert_eq!(rel.references.unwrap().len(), 2);

        let parsed = field(vec![parse_quote!(
            #[orm(many_to_many(through = "order_tags", through_schema = "shop", source = "order_id", target = "tag_id"))]
        )])
        .unwrap();
        let rel = parsed.relation.unwrap();
        assert_eq!(rel.kind, RelationKind::ManyToMany);
        assert_eq!(rel.through.unwrap().value(), "order_tags");
        assert_eq!(rel.through_schema.unwrap().value(), "shop");
        assert_eq!(rel.target.unwrap().names, ["tag_id"]);
    }

    #[test]
    fn relation_errors() {
        assert_eq!(
            err(vec![parse_quote!(#[orm(has_many(key = "order_id"))])]),
            "unknown has_many attribute `key`; expected one of: foreign_key, references"
        );
        assert!(
            err(vec![parse_quote!(#[orm(belongs_to)])]).starts_with("`belongs_to` takes arguments")
        );
        assert!(err(vec![
            parse_quote!(#[orm(many_to_many(through = "t", source = "a"))])
        ])
        .starts_with("`many_to_many` needs `target = \"...\"`"));
        assert!(err(vec![
            parse_quote!(#[orm(has_one(foreign_key = "a"), has_many(foreign_key = "a"))])
        ])
        .starts_with("a field holds one relation"));
    }
}
