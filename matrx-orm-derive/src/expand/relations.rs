//! Relation code: `RelationMeta` entries, and per relation field a hidden zero-sized
//! type implementing `::matrx_orm::Relation` plus the constant that names it.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::columns::const_ident;
use super::model_impl::tuple_if_many;
use super::option_str;
use crate::attrs::RelationKind;
use crate::model::{ModelDef, RelationDef, SourceKey, TargetKey, ThroughDef};
use crate::names::unraw;
use crate::types::replace_self;

/// One `::matrx_orm::RelationMeta { .. }` per relation field, in field order.
pub fn metas(model: &ModelDef) -> Vec<TokenStream> {
    model.relations.iter().map(relation_meta).collect()
}

fn relation_meta(relation: &RelationDef) -> TokenStream {
    let name = unraw(&relation.ident);
    let kind = kind_variant(relation.kind);
    let target = &relation.target;
    let source_columns = &relation.source_columns;
    let target_fields = &relation.target_fields;
    let through = match &relation.through {
        Some(through) => {
            let through = through_meta(through);
            quote!(::core::option::Option::Some(#through))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        ::matrx_orm::RelationMeta {
            name: #name,
            kind: ::matrx_orm::RelationKind::#kind,
            target: || <#target as ::matrx_orm::Model>::META,
            source_columns: &[#(#source_columns),*],
            target_fields: &[#(#target_fields),*],
            through: #through,
        }
    }
}

fn kind_variant(kind: RelationKind) -> Ident {
    let name = match kind {
        RelationKind::BelongsTo => "BelongsTo",
        RelationKind::HasMany => "HasMany",
        RelationKind::HasOne => "HasOne",
        RelationKind::ManyToMany => "ManyToMany",
    };
    Ident::new(name, Span::call_site())
}

fn through_meta(through: &ThroughDef) -> TokenStream {
    let schema = option_str(through.schema.as_deref());
    let table = &through.table;
    let source_columns = &through.source_columns;
    let target_columns = &through.target_columns;
    quote! {
        ::matrx_orm::Through {
            schema: #schema,
            table: #table,
            source_columns: &[#(#source_columns),*],
            target_columns: &[#(#target_columns),*],
        }
    }
}

/// `fn visit_relations()`: each relation handed to a visitor as its type, with its
/// name, for string paths and `fetch_all_related`. Omitted (the trait's empty default)
/// when there are none.
pub fn dyn_table(model: &ModelDef) -> TokenStream {
    if model.relations.is_empty() {
        return TokenStream::new();
    }
    let visits = model.relations.iter().map(|relation| {
        let ty = type_ident(model, relation);
        let name = unraw(&relation.ident).to_string();
        quote! { visitor.visit::<#ty>(#name); }
    });
    quote! {
        fn visit_relations<V: ::matrx_orm::RelationVisitor<Self>>(visitor: &mut V) {
            #(#visits)*
        }
    }
}

/// The name of the hidden type of a relation: `__OrderRel_customer`.
fn type_ident(model: &ModelDef, relation: &RelationDef) -> Ident {
    format_ident!("__{}Rel_{}", model.name(), unraw(&relation.ident))
}

/// `pub const CUSTOMER: __OrderRel_customer = __OrderRel_customer;` per relation.
pub fn consts(model: &ModelDef) -> Vec<TokenStream> {
    let vis = &model.vis;
    model
        .relations
        .iter()
        .map(|relation| {
            let name = const_ident(&relation.ident);
            let ty = type_ident(model, relation);
            let doc = format!(
                "Relation `{}` of `{}` ({}).",
                unraw(&relation.ident),
                model.name(),
                relation.kind.attr_name()
            );
            quote! {
                #[doc = #doc]
                #vis const #name: #ty = #ty;
            }
        })
        .collect()
}

/// The hidden types, their `Relation` impls and the many-to-many arity checks.
pub fn items(model: &ModelDef) -> Vec<TokenStream> {
    model
        .relations
        .iter()
        .enumerate()
        .map(|(index, relation)| {
            let relation_type = relation_type(model, relation, index);
            let check = target_arity_check(model, relation);
            quote!(#relation_type #check)
        })
        .collect()
}

fn relation_type(model: &ModelDef, relation: &RelationDef, index: usize) -> TokenStream {
    let vis = &model.vis;
    let source = &model.ident;
    let ty = type_ident(model, relation);
    let field = &relation.ident;
    let target = replace_self(&relation.target, source);
    let slot = replace_self(&relation.slot_ty, source);
    let key = key_type(model, relation);
    let source_key = source_key(model, relation);
    let target_key = target_key(relation);
    let index = Literal::usize_unsuffixed(index);
    let doc = format!("The relation `{}.{}`.", model.name(), unraw(field));
    quote! {
        #[doc = #doc]
        #[doc(hidden)]
        #[derive(Clone, Copy, Debug, Default)]
        #[allow(non_camel_case_types, dead_code)]
        #[non_exhaustive]
        #vis struct #ty;

        #[automatically_derived]
        impl ::matrx_orm::Relation for #ty {
            type Source = #source;
            type Target = #target;
            type Key = #key;
            type Slot = #slot;

            const META: &'static ::matrx_orm::RelationMeta =
                &<#source as ::matrx_orm::Model>::META.relations[#index];

            #[inline]
            fn slot(source: &#source) -> &Self::Slot {
                &source.#field
            }

            #[inline]
            fn slot_mut(source: &mut #source) -> &mut Self::Slot {
                &mut source.#field
            }

            #[inline]
            fn source_key(source: &#source) -> ::core::option::Option<Self::Key> {
                #source_key
            }

            #[inline]
            fn target_key(target: &#target) -> ::core::option::Option<Self::Key> {
                #target_key
            }
        }
    }
}

/// The join key type: the source's primary key, or the `KeyField::Part`s of the key
/// fields.
fn key_type(model: &ModelDef, relation: &RelationDef) -> TokenStream {
    let source = &model.ident;
    match &relation.source_key {
        SourceKey::PrimaryKey => quote!(<#source as ::matrx_orm::Model>::Key),
        SourceKey::Fields(columns) => {
            let parts = columns.iter().map(|&i| {
                let ty = replace_self(&model.columns[i].ty, source);
                quote!(<#ty as ::matrx_orm::KeyField>::Part)
            });
            tuple_if_many(parts.collect())
        }
    }
}

fn source_key(model: &ModelDef, relation: &RelationDef) -> TokenStream {
    match &relation.source_key {
        SourceKey::PrimaryKey => quote!(::core::option::Option::Some(::matrx_orm::Model::key(
            source
        ))),
        SourceKey::Fields(columns) => {
            let fields: Vec<&Ident> = columns.iter().map(|&i| &model.columns[i].ident).collect();
            key_parts(&quote!(source), &fields, Span::call_site())
        }
    }
}

/// Spanned at the key attribute: a key that does not match the target's is a type
/// error here, and should point at the attribute rather than at the derive.
fn target_key(relation: &RelationDef) -> TokenStream {
    let span = relation.key_span;
    match &relation.target_key {
        TargetKey::PrimaryKey => {
            quote_spanned!(span=> ::core::option::Option::Some(::matrx_orm::Model::key(target)))
        }
        TargetKey::Fields(fields) => {
            key_parts(&quote!(target), &fields.iter().collect::<Vec<_>>(), span)
        }
        TargetKey::Unused => quote! {
            let _ = target;
            ::core::option::Option::None
        },
    }
}

/// `KeyField::key_part(&s.a)`, or for composite keys
/// `match (key_part(&s.a), key_part(&s.b)) { (Some(matrx_key_0), Some(matrx_key_1)) => Some((..)), _ => None }`.
fn key_parts(instance: &TokenStream, fields: &[&Ident], span: Span) -> TokenStream {
    let parts = fields
        .iter()
        .map(|field| quote_spanned!(span=> ::matrx_orm::KeyField::key_part(&#instance.#field)));
    if let [_] = fields {
        return quote!(#(#parts)*);
    }
    let bindings: Vec<Ident> = (0..fields.len())
        .map(|i| format_ident!("matrx_key_{}", i, span = span))
        .collect();
    quote_spanned! {span=>
        match (#(#parts,)*) {
            (#(::core::option::Option::Some(#bindings),)*) => ::core::option::Option::Some((#(#bindings),*)),
            _ => ::core::option::Option::None,
        }
    }
}

/// For many-to-many: a compile-time check that the target's primary key has as many
/// columns as the junction's `target` list.
fn target_arity_check(model: &ModelDef, relation: &RelationDef) -> TokenStream {
    let Some(through) = &relation.through else {
        return TokenStream::new();
    };
    let target = replace_self(&relation.target, &model.ident);
    let count = through.target_columns.len();
    let message = format!(
        "{}.{}: many_to_many target lists {count} column(s) but {}'s primary key has a different number",
        model.name(),
        unraw(&relation.ident),
        target_name(relation),
    );
    quote_spanned! {relation.key_span=>
        const _: () = ::core::assert!(
            <#target as ::matrx_orm::Model>::META.primary_key.len() == #count,
            #message
        );
    }
}

/// The last segment of the target's path, for messages.
fn target_name(relation: &RelationDef) -> String {
    match &relation.target {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        other => quote!(#other).to_string(),
    }
}
